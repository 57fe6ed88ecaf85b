//! `[auth]` as the rest of the crate sees it (SPEC §4, §12): which
//! credential, with what it needs, and which token endpoint version. The
//! files a credential names are loaded here when the configuration is
//! (so `--config.check` and a reload catch a bad one); reading them again
//! at each token fetch, and building the request, is `store::credential`'s
//! job.
//!
//! Secrets (the client secret, the key, the federated token) stay inside
//! `SecretString` or `jsonwebtoken::EncodingKey`; no `Debug` here prints
//! them.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use secrecy::{ExposeSecret, SecretString};

use super::certificate::{CertificateError, ClientCertificate};

/// The Azure Instance Metadata Service identity endpoint.
pub const IMDS_ENDPOINT: &str = "http://169.254.169.254/metadata/identity/oauth2/token";
/// Entra ID in the public cloud.
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";

/// `[auth] endpoint`: which version of the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `…/oauth2/token` with `resource=`.
    V1,
    /// `…/oauth2/v2.0/token` with `scope={resource}/.default`.
    V2,
}

/// `[auth] credential`, with what each needs.
#[derive(Clone)]
pub enum Credential {
    /// A client secret (read from its file or variable at load).
    Secret(SecretString),
    /// A certificate and its private key.
    Certificate(Arc<CertificateFiles>),
    /// A federated token from the platform (AKS workload identity).
    WorkloadIdentity {
        /// Re-read at every fetch.
        federated_token_file: PathBuf,
    },
    /// The managed identity of the VM (IMDS); `client_id` picks a
    /// user-assigned one.
    ManagedIdentity,
}

impl Credential {
    /// The configuration word for this credential.
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::Secret(_) => "secret",
            Credential::Certificate(_) => "certificate",
            Credential::WorkloadIdentity { .. } => "workload_identity",
            Credential::ManagedIdentity => "managed_identity",
        }
    }

    /// The client secret, for `credential = "secret"`.
    pub fn client_secret(&self) -> Option<&SecretString> {
        match self {
            Credential::Secret(s) => Some(s),
            _ => None,
        }
    }

    /// The certificate's notAfter, for `credential = "certificate"`.
    pub fn expiry(&self) -> Option<SystemTime> {
        match self {
            Credential::Certificate(files) => Some(files.current().not_after()),
            _ => None,
        }
    }
}

impl PartialEq for Credential {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Credential::Secret(a), Credential::Secret(b)) => {
                a.expose_secret() == b.expose_secret()
            }
            (Credential::Certificate(a), Credential::Certificate(b)) => {
                a.certificate == b.certificate
                    && a.key == b.key
                    && a.current().thumbprint() == b.current().thumbprint()
            }
            (
                Credential::WorkloadIdentity {
                    federated_token_file: a,
                },
                Credential::WorkloadIdentity {
                    federated_token_file: b,
                },
            ) => a == b,
            (Credential::ManagedIdentity, Credential::ManagedIdentity) => true,
            _ => false,
        }
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Secret(_) => f.write_str("Secret([redacted])"),
            Credential::Certificate(files) => f
                .debug_struct("Certificate")
                .field("certificate", &files.certificate)
                .field("key", &files.key)
                .field("loaded", &*files.current())
                .finish(),
            Credential::WorkloadIdentity {
                federated_token_file,
            } => f
                .debug_struct("WorkloadIdentity")
                .field("federated_token_file", federated_token_file)
                .finish(),
            Credential::ManagedIdentity => f.write_str("ManagedIdentity"),
        }
    }
}

/// The certificate and key files and the pair last loaded from them.
pub struct CertificateFiles {
    /// PEM certificate (the first is the leaf).
    pub certificate: PathBuf,
    /// PEM private key; may be the certificate file.
    pub key: PathBuf,
    current: Mutex<Arc<ClientCertificate>>,
}

impl CertificateFiles {
    /// Files and the pair loaded from them at configuration time.
    pub fn new(certificate: PathBuf, key: PathBuf, loaded: ClientCertificate) -> CertificateFiles {
        CertificateFiles {
            certificate,
            key,
            current: Mutex::new(Arc::new(loaded)),
        }
    }

    /// The pair in force.
    pub fn current(&self) -> Arc<ClientCertificate> {
        Arc::clone(&self.current.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Reads the files again. A pair that loads replaces the one in force;
    /// one that does not leaves it in force and is returned as the error.
    ///
    /// # Errors
    /// Why the files as they are now cannot be used.
    pub fn reread(&self) -> Result<Arc<ClientCertificate>, CertificateError> {
        let fresh = Arc::new(ClientCertificate::load(&self.certificate, &self.key)?);
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.thumbprint() != fresh.thumbprint() {
            tracing::info!(thumbprint = fresh.thumbprint(), subject = fresh.subject(),
                not_after = %humantime::format_rfc3339_seconds(fresh.not_after()),
                "client certificate rotated");
        }
        *current = Arc::clone(&fresh);
        Ok(fresh)
    }
}

/// Reads the federated token: the whole file, surrounding whitespace
/// dropped, which must not be empty.
///
/// # Errors
/// A message naming the file when it cannot be read or is empty.
pub fn read_federated_token(file: &std::path::Path) -> Result<SecretString, String> {
    let text = super::files::read_text(file).map_err(|e| {
        format!(
            "cannot read the federated token file {}: {e}",
            file.display()
        )
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!(
            "the federated token file {} is empty",
            file.display()
        ));
    }
    Ok(SecretString::from(token.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_or_missing_federated_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, " \n").unwrap();
        let err = read_federated_token(&file).unwrap_err().to_string();
        assert!(err.ends_with("/token is empty"), "{err}");
        std::fs::write(&file, "eyJfederated\n").unwrap();
        assert_eq!(
            read_federated_token(&file).unwrap().expose_secret(),
            "eyJfederated"
        );
        std::fs::remove_file(&file).unwrap();
        assert!(read_federated_token(&file).is_err());
    }
}
