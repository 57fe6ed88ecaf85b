//! A client certificate and its RSA key, loaded and checked (SPEC §12); the
//! client assertion signed with them is built in `store::credential`.
//!
//! Everything that touches ASN.1 or keys is done by crates that do it for a
//! living: `pem` splits the files into blocks, `x509-parser` reads the
//! certificate, `jsonwebtoken` (on aws-lc-rs, the provider rustls already
//! uses here; no OpenSSL) reads the key. The only thing computed here is
//! what Entra identifies the certificate by: the base64url SHA-1 (`x5t`)
//! and SHA-256 (`x5t#S256`) of its DER bytes.
//!
//! That the key belongs to the certificate is checked the way a TLS stack
//! would find out, by signing a probe with the key and verifying it with the
//! certificate's public key, so a mismatched pair is refused when loaded
//! instead of being discovered as an `invalid_client` at 3 a.m.
//!
//! The key never leaves [`EncodingKey`] (zeroised on drop, no `Debug`);
//! errors name files and what is wrong with them, never their contents.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use sha1::Sha1;
use sha2::{Digest as _, Sha256};

/// Why a certificate or key cannot be used. Names files, never contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// A file could not be read.
    #[error("cannot read {}: {reason}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// What the operating system said.
        reason: String,
    },
    /// The certificate file holds no usable certificate.
    #[error("{}: {reason}", file.display())]
    Certificate {
        /// The file.
        file: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key file holds no usable RSA private key.
    #[error("{}: {reason}", file.display())]
    Key {
        /// The file.
        file: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key does not belong to the certificate.
    #[error(
        "the private key in {} does not belong to the certificate in {} (thumbprint {thumbprint})",
        key.display(), certificate.display()
    )]
    Mismatch {
        /// The certificate file.
        certificate: PathBuf,
        /// The key file.
        key: PathBuf,
        /// The certificate's SHA-1 thumbprint, as the Azure portal shows it.
        thumbprint: String,
    },
}

/// A loaded certificate with its key: everything needed to sign assertions.
#[derive(Clone)]
pub struct ClientCertificate {
    key: EncodingKey,
    x5t: String,
    x5t_s256: String,
    thumbprint: String,
    not_after: i64,
    not_before: i64,
    subject: String,
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("subject", &self.subject)
            .field("thumbprint", &self.thumbprint)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl ClientCertificate {
    /// Reads the certificate (the first of the file is the leaf) and the
    /// key (the first private key of its file; the two may be one file).
    ///
    /// # Errors
    /// [`CertificateError`] naming the file at fault.
    pub fn load(certificate: &Path, key: &Path) -> Result<ClientCertificate, CertificateError> {
        let cert_pem = read(certificate)?;
        let key_pem = if key == certificate {
            cert_pem.clone()
        } else {
            read(key)?
        };
        Self::from_pem(&cert_pem, certificate, &key_pem, key)
    }

    /// As [`load`](Self::load), from file contents (`*_file` only names them).
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub fn from_pem(
        cert_pem: &[u8],
        cert_file: &Path,
        key_pem: &[u8],
        key_file: &Path,
    ) -> Result<ClientCertificate, CertificateError> {
        let cert_err = |reason: String| CertificateError::Certificate {
            file: cert_file.to_path_buf(),
            reason,
        };
        let key_err = |reason: &str| CertificateError::Key {
            file: key_file.to_path_buf(),
            reason: reason.to_owned(),
        };
        let der = pem_blocks(cert_pem)
            .map_err(|e| cert_err(format!("not PEM: {e}")))?
            .into_iter()
            .find(|b| b.tag() == "CERTIFICATE")
            .ok_or_else(|| {
                cert_err("no PEM certificate (-----BEGIN CERTIFICATE-----) found".into())
            })?
            .into_contents();
        let (_, parsed) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| cert_err(format!("not an X.509 certificate: {e}")))?;
        let public = DecodingKey::from_rsa_der(&parsed.public_key().subject_public_key.data);
        let validity = parsed.validity();
        let (not_before, not_after) = (
            validity.not_before.timestamp(),
            validity.not_after.timestamp(),
        );
        let subject = parsed.subject().to_string();
        let key = signing_key(key_pem).map_err(key_err)?;
        let sha1 = Sha1::digest(&der);
        let thumbprint: String = sha1.iter().map(|b| format!("{b:02X}")).collect();
        let probe = b"msfb_seat_exporter key probe";
        let matches = jsonwebtoken::crypto::sign(probe, &key, Algorithm::RS256)
            .ok()
            .and_then(|sig| {
                jsonwebtoken::crypto::verify(&sig, probe, &public, Algorithm::RS256).ok()
            })
            .unwrap_or(false);
        if !matches {
            return Err(CertificateError::Mismatch {
                certificate: cert_file.to_path_buf(),
                key: key_file.to_path_buf(),
                thumbprint,
            });
        }
        Ok(ClientCertificate {
            key,
            x5t: URL_SAFE_NO_PAD.encode(sha1),
            x5t_s256: URL_SAFE_NO_PAD.encode(Sha256::digest(&der)),
            thumbprint,
            not_after,
            not_before,
            subject,
        })
    }

    /// The end of the certificate's validity (notAfter).
    pub fn not_after(&self) -> SystemTime {
        unix_time(self.not_after)
    }

    /// The start of the certificate's validity (notBefore).
    pub fn not_before(&self) -> SystemTime {
        unix_time(self.not_before)
    }

    /// The SHA-1 thumbprint in upper-case hex, as the Azure portal lists
    /// uploaded certificates.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// The certificate's subject (`CN=…`), for messages.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The signing key (for `store::credential`, which signs assertions).
    pub fn signing_key(&self) -> &EncodingKey {
        &self.key
    }

    /// Base64url SHA-1 of the DER certificate (the JWT `x5t` header).
    pub fn x5t(&self) -> &str {
        &self.x5t
    }

    /// Base64url SHA-256 of the DER certificate (the JWT `x5t#S256` header).
    pub fn x5t_s256(&self) -> &str {
        &self.x5t_s256
    }
}

fn read(file: &Path) -> Result<Vec<u8>, CertificateError> {
    super::files::read_text(file)
        .map(String::into_bytes)
        .map_err(|e: io::Error| CertificateError::Read {
            file: file.to_path_buf(),
            reason: e.to_string(),
        })
}

fn pem_blocks(text: &[u8]) -> Result<Vec<pem::Pem>, pem::PemError> {
    pem::parse_many(text)
}

/// The first private key block of `text` as an RSA signing key.
fn signing_key(text: &[u8]) -> Result<EncodingKey, &'static str> {
    let blocks = pem_blocks(text).map_err(|_| "not PEM")?;
    let block = blocks
        .iter()
        .find(|b| b.tag().ends_with("PRIVATE KEY"))
        .ok_or("no PEM private key (-----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----) found")?;
    match block.tag() {
        "PRIVATE KEY" | "RSA PRIVATE KEY" => {}
        "ENCRYPTED PRIVATE KEY" => {
            return Err("the private key is encrypted; store it unencrypted with \
                        `openssl pkcs8 -in key.pem -out plain.pem` and protect the file instead");
        }
        _ => return Err("the private key is not an RSA key (Entra ID needs RS256)"),
    }
    EncodingKey::from_rsa_pem(pem::encode(block).as_bytes())
        .map_err(|_| "the private key is not an RSA key in PKCS#8 or PKCS#1 form")
}

fn unix_time(secs: i64) -> SystemTime {
    if secs >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed RSA certificate and its PKCS#8 key, made by rcgen.
    pub(crate) fn pair(days: i64) -> (String, String) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("rsa key");
        let mut params = rcgen::CertificateParams::new(vec!["msfb-test".into()]).unwrap();
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(days);
        let cert = params.self_signed(&key).expect("self-signed");
        (cert.pem(), key.serialize_pem())
    }

    fn load(cert: &str, key: &str) -> Result<ClientCertificate, CertificateError> {
        ClientCertificate::from_pem(
            cert.as_bytes(),
            Path::new("cert.pem"),
            key.as_bytes(),
            Path::new("key.pem"),
        )
    }

    #[test]
    fn thumbprints_are_the_digests_of_the_der_certificate() {
        let (cert, key) = pair(30);
        let c = load(&cert, &key).expect("pair loads");
        assert_eq!(c.x5t().len(), 27, "base64url of 20 bytes");
        assert_eq!(c.x5t_s256().len(), 43, "base64url of 32 bytes");
        assert_eq!(c.thumbprint().len(), 40);
        assert!(!format!("{c:?}").contains("PRIVATE"));
    }

    #[test]
    fn one_file_and_both_key_forms_load() {
        let (cert, key) = pair(30);
        let both = format!("{cert}{key}");
        assert!(load(&both, &both).is_ok());
        let reversed = format!("{key}{cert}");
        assert!(load(&reversed, &reversed).is_ok());
    }

    #[test]
    fn mismatched_encrypted_and_missing_keys_are_refused() {
        let (cert, _) = pair(30);
        let (_, other_key) = pair(30);
        assert!(matches!(
            load(&cert, &other_key),
            Err(CertificateError::Mismatch { .. })
        ));
        let encrypted =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let err = load(&cert, encrypted).unwrap_err().to_string();
        assert!(err.contains("encrypted"), "{err}");
        let err = load(&cert, &cert).unwrap_err().to_string();
        assert!(err.starts_with("key.pem: no PEM private key"), "{err}");
        let err = load("nothing", &cert).unwrap_err().to_string();
        assert!(err.starts_with("cert.pem: no PEM certificate"), "{err}");
    }
}
