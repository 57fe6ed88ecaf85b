//! TLS for the exporter's listener (SPEC §7: `tls_cert_file`, `tls_key_file`,
//! re-read when they change; SPEC §14: the exporter-toolkit settings of
//! `--web.config.file` — client certificates, TLS versions — re-read on
//! every reload).
//!
//! Client certificates follow Go's `tls.ClientAuthType`, as the toolkit
//! does: `RequestClientCert` and `RequireAnyClientCert` ask for one and
//! accept any (the handshake signature is still checked, so the client
//! holds the key), `VerifyClientCertIfGiven` and
//! `RequireAndVerifyClientCert` verify it against `client_ca_file` with
//! webpki. The settings in force follow the configuration: after a reload
//! the next handshake uses the new files and settings.
//!
//! Certificates are renewed under a running process (ACME clients, a
//! company CA every few weeks), so the files are watched rather than read
//! once: before each handshake the acceptor compares the files' metadata
//! (device, inode, size, modification and change times) with what it saw
//! last, and reads them again when any of that differs. A stat per new
//! connection is cheap — Prometheus keeps its scrape connections open — and
//! needs no watcher thread, no inotify and no state outside the acceptor.
//! What decides a reload is the content (a digest of both files), so a
//! `touch` costs one read and nothing else.
//!
//! File times are coarse (a kernel tick), so a file rewritten with the same
//! length within a tick of being read would look unchanged. As git does for
//! its index, metadata is only trusted once the files are older than the
//! moment they were read by a safety margin; until then each handshake
//! reads them again.
//!
//! A renewal writes two files, so a handshake can see a new certificate with
//! the old key. Such a pair is refused, the previous configuration stays in
//! force, and the pair is tried again as soon as either file changes; a
//! refused pair is logged once, not once per connection.
//!
//! The crypto provider is aws-lc-rs, chosen explicitly rather than through
//! rustls' process-wide default: it is the one reqwest already uses here, and
//! an explicit choice cannot fail at run time when some dependency enables a
//! second provider.

use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio_rustls::rustls::pki_types::pem::{Error as PemError, PemObject as _};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

use tokio_rustls::rustls::DistinguishedName;
use tokio_rustls::rustls::client::danger::HandshakeSignatureValid;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};

use crate::config::{ClientAuth, TlsFiles, TlsVersion};
use crate::web::serve::Acceptor;

/// Why the certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The certificate file holds no PEM certificate.
    #[error("{}: no PEM certificate found", file.display())]
    NoCertificate {
        /// The file.
        file: PathBuf,
    },
    /// The key file holds no usable PEM private key.
    #[error("{}: no PEM private key found ({reason})", file.display())]
    NoKey {
        /// The file.
        file: PathBuf,
        /// What is wrong, in fixed words (never a quote from the file).
        reason: String,
    },
    /// The client CA file holds no usable CA certificate.
    #[error("{}: no usable PEM CA certificate for client certificates ({reason})", file.display())]
    ClientCa {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the pair (unsupported key, key does not match the
    /// certificate …).
    #[error("{} and {}: {source}", cert.display(), key.display())]
    Invalid {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why.
        source: rustls::Error,
    },
}

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// Whether the file changed so close to `read_at` (Unix seconds) that
    /// a later change could carry the same times.
    fn racy(&self, read_at: i64) -> bool {
        self.mtime.0.max(self.ctime.0) + RACY_SECONDS >= read_at
    }
}

/// Margin beyond which file times are trusted (whole seconds, rounded up:
/// file times have at best a kernel tick of resolution).
const RACY_SECONDS: i64 = 2;

/// Stamps of the certificate, key and client CA files.
type Stamps = Vec<Stamp>;

/// Digest of the certificate and key file contents.
type Digest = [u8; 32];

struct Current {
    /// The files and settings it was built from.
    files: TlsFiles,
    /// The configuration handshakes use.
    config: Arc<ServerConfig>,
    /// Contents it was built from.
    loaded: Digest,
    /// Contents last refused (logged once).
    refused: Option<Digest>,
    /// Metadata when the files were last read, and when that was.
    seen: Stamps,
    seen_at: i64,
}

/// Where the TLS settings in force come from (the current configuration).
type Source = Arc<dyn Fn() -> Option<TlsFiles> + Send + Sync>;

/// An [`Acceptor`] that performs a TLS handshake with the certificate and
/// key currently on disk. Cheap to clone (shared state).
#[derive(Clone)]
pub struct TlsAcceptor {
    current: Arc<Mutex<Current>>,
    source: Arc<Mutex<Option<Source>>>,
}

/// Names the files only: the loaded configuration holds the private key.
impl std::fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let current = self.lock();
        f.debug_struct("TlsAcceptor")
            .field("cert", &current.files.cert)
            .field("key", &current.files.key)
            .field("client_auth", &current.files.client_auth)
            .finish_non_exhaustive()
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl TlsAcceptor {
    /// Loads the certificate and key once; a server should refuse to start
    /// when this fails.
    ///
    /// # Errors
    /// [`TlsError`] naming the file that cannot be used.
    pub fn new(files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
        let seen_at = unix_now();
        let seen = stamps(files)?;
        let pem = Pem::read(files)?;
        let config = pem.config(files)?;
        Ok(TlsAcceptor {
            source: Arc::default(),
            current: Arc::new(Mutex::new(Current {
                files: files.clone(),
                config,
                loaded: pem.digest(files),
                refused: None,
                seen,
                seen_at,
            })),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Current> {
        // Only plain values are written under the lock; a poisoned one still
        // holds a usable configuration.
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the TLS settings from `source` (the configuration in force)
    /// before each handshake, so that a reload that names other files or
    /// other settings applies from the next connection on. `None` from the
    /// source keeps what is loaded (turning TLS off needs a restart).
    pub fn follow(&self, source: impl Fn() -> Option<TlsFiles> + Send + Sync + 'static) {
        *self.source.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(source));
    }

    /// The settings the next handshake should use.
    fn wanted(&self) -> TlsFiles {
        let source = self
            .source
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        source
            .and_then(|s| s())
            .unwrap_or_else(|| self.lock().files.clone())
    }

    /// The configuration for the next handshake, reloading the files first
    /// when they changed. Blocking file access: call off the async workers.
    fn config_now(&self) -> Arc<ServerConfig> {
        let read_at = unix_now();
        let files = self.wanted();
        let stamps = match stamps(&files) {
            Ok(s) => s,
            Err(e) => {
                // Mid-rename or removed: keep serving what we have. The next
                // handshake looks again.
                tracing::debug!(error = %e, "cannot stat the TLS files; keeping the loaded certificate");
                return Arc::clone(&self.lock().config);
            }
        };
        {
            let current = self.lock();
            let racy = current.seen.iter().any(|s| s.racy(current.seen_at));
            if current.files == files && current.seen == stamps && !racy {
                return Arc::clone(&current.config);
            }
        }
        let pem = Pem::read(&files);
        let mut current = self.lock();
        current.seen = stamps;
        current.seen_at = read_at;
        let pem = match pem {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the TLS files; keeping the loaded certificate");
                return Arc::clone(&current.config);
            }
        };
        let digest = pem.digest(&files);
        if digest == current.loaded || current.refused == Some(digest) {
            return Arc::clone(&current.config);
        }
        match pem.config(&files) {
            Ok(config) => {
                tracing::info!(cert = %files.cert.display(), "TLS certificate reloaded");
                current.files = files;
                current.config = config;
                current.loaded = digest;
                current.refused = None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "new TLS certificate or key refused; keeping the previous one");
                current.refused = Some(digest);
            }
        }
        Arc::clone(&current.config)
    }
}

impl Acceptor for TlsAcceptor {
    type Stream = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

    async fn accept(&self, tcp: tokio::net::TcpStream) -> Option<Self::Stream> {
        let this = self.clone();
        let config = tokio::task::spawn_blocking(move || this.config_now())
            .await
            .ok()?;
        match tokio_rustls::TlsAcceptor::from(config).accept(tcp).await {
            Ok(stream) => Some(stream),
            Err(e) => {
                // Port scanners and plain-HTTP clients end up here.
                tracing::debug!(error = %e, "TLS handshake failed");
                None
            }
        }
    }
}

fn stamps(files: &TlsFiles) -> Result<Stamps, TlsError> {
    let stat = |file: &Path| {
        std::fs::metadata(file)
            .map(|m| Stamp::of(&m))
            .map_err(|source| TlsError::Read {
                file: file.to_path_buf(),
                source,
            })
    };
    [
        Some(&files.cert),
        Some(&files.key),
        files.client_ca.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|f| stat(f))
    .collect()
}

/// Reads a regular file without blocking (a pipe swapped in for the
/// certificate must not stall handshakes: `config::files`).
fn read(file: &Path) -> Result<Vec<u8>, TlsError> {
    use crate::config::files::{MAX_PEM_BYTES, read_bytes};
    read_bytes(file, MAX_PEM_BYTES).map_err(|source| TlsError::Read {
        file: file.to_path_buf(),
        source,
    })
}

/// What is wrong with a PEM file, in words that quote nothing from it: the
/// parser's own messages can carry a line or a byte of the key file.
fn pem_problem(e: &PemError) -> &'static str {
    match e {
        PemError::NoItemsFound => "none in the file",
        PemError::MissingSectionEnd { .. } => "a section has no END line",
        PemError::IllegalSectionStart { .. } => "a BEGIN line is malformed",
        PemError::Base64Decode(_) => "a section is not valid base64",
        PemError::Io(_) => "the file cannot be read",
        _ => "the file is not valid PEM",
    }
}

/// The files as read.
struct Pem {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Vec<u8>,
}

impl Pem {
    fn read(files: &TlsFiles) -> Result<Pem, TlsError> {
        Ok(Pem {
            cert: read(&files.cert)?,
            key: read(&files.key)?,
            client_ca: match &files.client_ca {
                Some(f) => read(f)?,
                None => Vec::new(),
            },
        })
    }

    /// A digest of the contents and of the settings they are used with.
    fn digest(&self, files: &TlsFiles) -> Digest {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        let settings = format!("{files:?}");
        for part in [&self.cert, &self.key, &self.client_ca, settings.as_bytes()] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.finalize().into()
    }

    /// Builds a server configuration (HTTP/1.1 only, as the server speaks
    /// nothing else).
    fn config(&self, files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&self.cert)
            .filter_map(Result::ok)
            .collect();
        if chain.is_empty() {
            return Err(TlsError::NoCertificate {
                file: files.cert.clone(),
            });
        }
        let key = PrivateKeyDer::from_pem_slice(&self.key).map_err(|e| TlsError::NoKey {
            file: files.key.clone(),
            reason: pem_problem(&e).to_owned(),
        })?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let invalid = |source| TlsError::Invalid {
            cert: files.cert.clone(),
            key: files.key.clone(),
            source,
        };
        let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
            (TlsVersion::Tls12, &rustls::version::TLS12),
            (TlsVersion::Tls13, &rustls::version::TLS13),
        ]
        .into_iter()
        .filter(|(v, _)| (files.min_version..=files.max_version).contains(v))
        .map(|(_, p)| p)
        .collect();
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&versions)
            .map_err(invalid)?;
        let builder = match files.client_auth {
            ClientAuth::NoClientCert => builder.with_no_client_auth(),
            auth => builder.with_client_cert_verifier(self.client_verifier(files, auth, provider)?),
        };
        let mut config = builder.with_single_cert(chain, key).map_err(invalid)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.ignore_client_order = files.prefer_server_cipher_suites;
        Ok(Arc::new(config))
    }

    /// The CA certificates of `client_ca_file`.
    fn client_roots(&self, files: &TlsFiles) -> Result<rustls::RootCertStore, TlsError> {
        let file = files.client_ca.clone().unwrap_or_default();
        let err = |reason: &str| TlsError::ClientCa {
            file: file.clone(),
            reason: reason.to_owned(),
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&self.client_ca) {
            let cert = cert.map_err(|e| err(pem_problem(&e)))?;
            roots
                .add(cert)
                .map_err(|_| err("a certificate is not a usable CA certificate"))?;
        }
        if roots.is_empty() {
            return Err(err("none in the file"));
        }
        Ok(roots)
    }

    fn client_verifier(
        &self,
        files: &TlsFiles,
        auth: ClientAuth,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
        let roots = match &files.client_ca {
            Some(_) => Some(self.client_roots(files)?),
            None => None,
        };
        if auth.verifies() {
            let roots = roots.ok_or_else(|| TlsError::ClientCa {
                file: PathBuf::new(),
                reason: format!("{} needs client_ca_file", auth.name()),
            })?;
            let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let builder = if auth.requires() {
                builder
            } else {
                builder.allow_unauthenticated()
            };
            return builder.build().map_err(|e| TlsError::ClientCa {
                file: files.client_ca.clone().unwrap_or_default(),
                reason: e.to_string(),
            });
        }
        Ok(Arc::new(AcceptAnyClientCert {
            mandatory: auth.requires(),
            hints: roots.map(|r| r.subjects()).unwrap_or_default(),
            provider,
        }))
    }
}

/// `RequestClientCert` and `RequireAnyClientCert`: ask for a certificate
/// and take any, as Go does. The handshake signature is still verified, so
/// a client that sends a certificate holds its key.
#[derive(Debug)]
struct AcceptAnyClientCert {
    mandatory: bool,
    /// Subjects of `client_ca_file`, sent as hints (Go sends its ClientCAs).
    hints: Vec<DistinguishedName>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ClientCertVerifier for AcceptAnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> TlsFiles {
        TlsFiles::new(dir.join("tls.crt"), dir.join("tls.key"))
    }

    fn write_pair(dir: &Path, name: &str) -> rcgen::CertifiedKey<rcgen::KeyPair> {
        let pair = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        std::fs::write(dir.join("tls.crt"), pair.cert.pem()).unwrap();
        std::fs::write(dir.join("tls.key"), pair.signing_key.serialize_pem()).unwrap();
        pair
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = files(dir.path());
        let e = TlsAcceptor::new(&f).unwrap_err();
        assert!(
            matches!(e, TlsError::Read { ref file, .. } if *file == f.cert),
            "{e}"
        );

        std::fs::write(&f.cert, "not a certificate").unwrap();
        std::fs::write(&f.key, "not a key").unwrap();
        let e = TlsAcceptor::new(&f).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{}: no PEM certificate found", f.cert.display())
        );

        let pair = write_pair(dir.path(), "localhost");
        std::fs::write(&f.key, "not a key").unwrap();
        let e = TlsAcceptor::new(&f).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: no PEM private key found (none in the file)",
                f.key.display()
            )
        );
        // A damaged key: the message says so without quoting the file.
        std::fs::write(
            &f.key,
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw@@\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let e = TlsAcceptor::new(&f).unwrap_err().to_string();
        assert!(e.ends_with("(a section is not valid base64)"), "{e}");
        assert!(!e.contains("c2Vj") && !e.contains('@'), "{e}");

        // A key that belongs to another certificate.
        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(&f.key, other.serialize_pem()).unwrap();
        let e = TlsAcceptor::new(&f).unwrap_err();
        assert!(matches!(e, TlsError::Invalid { .. }), "{e}");
        // The key never appears in a message.
        assert!(!e.to_string().contains("PRIVATE KEY"));
        drop(pair);
    }

    #[test]
    fn racy_only_close_to_the_read() {
        let stamp = Stamp {
            dev: 1,
            ino: 2,
            len: 3,
            mtime: (1000, 5),
            ctime: (1000, 5),
        };
        assert!(stamp.racy(1000));
        assert!(stamp.racy(1000 + RACY_SECONDS));
        assert!(!stamp.racy(1001 + RACY_SECONDS));
    }

    #[test]
    fn changed_files_are_reloaded_and_a_bad_pair_keeps_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let f = files(dir.path());
        write_pair(dir.path(), "one.test");
        let acceptor = TlsAcceptor::new(&f).unwrap();
        let first = acceptor.config_now();
        assert!(
            Arc::ptr_eq(&first, &acceptor.config_now()),
            "unchanged files are not re-read"
        );

        // Half a renewal: a new certificate with the old key is refused.
        // It has the same length as the old one and is written within the
        // same second, so only the content can tell them apart.
        let next = rcgen::generate_simple_self_signed(vec!["two.test".to_owned()]).unwrap();
        std::fs::write(&f.cert, next.cert.pem()).unwrap();
        assert!(Arc::ptr_eq(&first, &acceptor.config_now()));
        assert!(acceptor.lock().refused.is_some());

        // The other half arrives: the new pair is used.
        std::fs::write(&f.key, next.signing_key.serialize_pem()).unwrap();
        let second = acceptor.config_now();
        assert!(!Arc::ptr_eq(&first, &second));
        assert!(acceptor.lock().refused.is_none());

        // Old files: metadata is trusted and nothing is read.
        {
            let mut current = acceptor.lock();
            current.seen_at += 10;
        }
        let _ = acceptor.config_now();
        let before = acceptor.lock().seen_at;
        assert!(Arc::ptr_eq(&second, &acceptor.config_now()));
        assert_eq!(acceptor.lock().seen_at, before, "not read again");

        let debug = format!("{acceptor:?}");
        assert!(
            debug.contains("tls.key") && !debug.contains("PRIVATE"),
            "{debug}"
        );

        // Files removed: the loaded certificate stays in use.
        std::fs::remove_file(&f.cert).unwrap();
        assert!(Arc::ptr_eq(&second, &acceptor.config_now()));
    }
}
