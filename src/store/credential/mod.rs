//! How the exporter proves who it is to Entra ID (SPEC §12): a client
//! secret, a certificate, a federated workload identity token, or the
//! managed identity of the machine it runs on.
//!
//! This module turns an `[auth]` configuration into the one HTTP request
//! that fetches an access token; the token cache around it
//! ([`super::TokenSource`]) is the same for every credential, so caching,
//! refresh, 401 handling, backoff and metrics cannot drift apart.
//!
//! Files are read when the request is built, not once at start: the
//! federated token file at every fetch (the platform rotates it every
//! hour or so), and the certificate and key too, so that a renewed
//! certificate is used at the next fetch without a reload. A certificate
//! pair that does not load at that moment (a renewal caught between writing
//! the certificate and the key) is not used; the previous pair stays in
//! force and the failure is logged.
//!
//! Secrets (the client secret, the key, assertions, the federated token)
//! stay inside `SecretString` or `EncodingKey`; no `Debug` here prints them.

mod certificate;

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use secrecy::{ExposeSecret, SecretString};

pub use certificate::{ASSERTION_LIFETIME, CertificateError, ClientCertificate};

use crate::config::AuthConfig;

/// `client_assertion_type` of a JWT bearer client assertion (RFC 7523).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The Azure Instance Metadata Service identity endpoint.
pub const IMDS_ENDPOINT: &str = "http://169.254.169.254/metadata/identity/oauth2/token";
/// The IMDS API version the request names.
pub const IMDS_API_VERSION: &str = "2018-02-01";
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

/// Why no token request could be built; becomes a token failure with
/// reason `credential`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CredentialError(pub String);

/// The one HTTP request that fetches a token.
pub(crate) enum TokenRequest {
    /// A form POST to the token endpoint.
    Form(Vec<(&'static str, SecretString)>),
    /// A GET to the managed identity endpoint with `Metadata: true`.
    Imds(reqwest::Url),
}

/// Builds the token request for `auth` at `now`, reading whatever files the
/// credential needs.
///
/// # Errors
/// [`CredentialError`] when a file the credential needs cannot be used.
pub(crate) fn token_request(
    auth: &AuthConfig,
    now: SystemTime,
) -> Result<TokenRequest, CredentialError> {
    let plain = |s: &str| SecretString::from(s.to_owned());
    let mut form = vec![
        ("grant_type", plain("client_credentials")),
        ("client_id", plain(&auth.client_id)),
    ];
    match &auth.credential {
        Credential::Secret(secret) => form.push(("client_secret", secret.clone())),
        Credential::Certificate(files) => {
            let pair = files.reread().unwrap_or_else(|e| {
                tracing::warn!(error = %e,
                    "cannot re-read the client certificate; the one loaded before stays in use");
                files.current()
            });
            let assertion = pair
                .assertion(&auth.client_id, &auth.token_url, now)
                .map_err(|e| CredentialError(e.to_string()))?;
            form.push(("client_assertion_type", plain(ASSERTION_TYPE)));
            form.push(("client_assertion", assertion));
        }
        Credential::WorkloadIdentity {
            federated_token_file,
        } => {
            form.push(("client_assertion_type", plain(ASSERTION_TYPE)));
            form.push(("client_assertion", federated_token(federated_token_file)?));
        }
        Credential::ManagedIdentity => return imds_url(auth).map(TokenRequest::Imds),
    }
    match auth.endpoint {
        Endpoint::V1 => form.push(("resource", plain(&auth.resource))),
        Endpoint::V2 => form.push(("scope", SecretString::from(scope(&auth.resource)))),
    }
    Ok(TokenRequest::Form(form))
}

/// `{resource}/.default`: the v2 endpoint's way to ask for every permission
/// granted to the app on the resource.
pub fn scope(resource: &str) -> String {
    format!("{}/.default", resource.trim_end_matches('/'))
}

/// Reads the federated token: the whole file, surrounding whitespace
/// dropped, which must not be empty.
///
/// # Errors
/// [`CredentialError`] naming the file when it cannot be read or is empty.
pub fn federated_token(file: &std::path::Path) -> Result<SecretString, CredentialError> {
    let text = crate::config::read_limited(file).map_err(|e| {
        CredentialError(format!(
            "cannot read the federated token file {}: {e}",
            file.display()
        ))
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(CredentialError(format!(
            "the federated token file {} is empty",
            file.display()
        )));
    }
    Ok(SecretString::from(token.to_owned()))
}

fn imds_url(auth: &AuthConfig) -> Result<reqwest::Url, CredentialError> {
    let mut url = reqwest::Url::parse(&auth.token_url)
        .map_err(|e| CredentialError(format!("managed identity endpoint is not a URL: {e}")))?;
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("api-version", IMDS_API_VERSION);
        query.append_pair("resource", &auth.resource);
        if !auth.client_id.is_empty() {
            query.append_pair("client_id", &auth.client_id);
        }
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(credential: Credential, endpoint: Endpoint) -> AuthConfig {
        AuthConfig {
            tenant_id: "t".into(),
            client_id: "c".into(),
            credential,
            endpoint,
            token_url: "https://login.example/t/oauth2/token".into(),
            resource: "https://onestore.microsoft.com/".into(),
        }
    }

    fn form(request: TokenRequest) -> Vec<(&'static str, String)> {
        match request {
            TokenRequest::Form(f) => f
                .into_iter()
                .map(|(k, v)| (k, v.expose_secret().to_owned()))
                .collect(),
            TokenRequest::Imds(url) => panic!("unexpected IMDS request {url}"),
        }
    }

    #[test]
    fn v2_asks_for_a_scope_and_v1_for_a_resource() {
        let secret = Credential::Secret(SecretString::from("s".to_owned()));
        let now = SystemTime::now();
        let v1 = form(token_request(&auth(secret.clone(), Endpoint::V1), now).unwrap());
        assert!(v1.contains(&("resource", "https://onestore.microsoft.com/".into())));
        assert!(v1.contains(&("client_secret", "s".into())));
        let v2 = form(token_request(&auth(secret, Endpoint::V2), now).unwrap());
        assert!(v2.contains(&("scope", "https://onestore.microsoft.com/.default".into())));
        assert!(!v2.iter().any(|(k, _)| *k == "resource"));
    }

    #[test]
    fn managed_identity_asks_imds_for_the_resource_and_the_user_assigned_id() {
        let mut a = auth(Credential::ManagedIdentity, Endpoint::V1);
        a.token_url = IMDS_ENDPOINT.into();
        let TokenRequest::Imds(url) = token_request(&a, SystemTime::now()).unwrap() else {
            panic!("IMDS expected");
        };
        assert_eq!(
            url.as_str(),
            "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01\
             &resource=https%3A%2F%2Fonestore.microsoft.com%2F&client_id=c"
        );
        a.client_id.clear();
        let TokenRequest::Imds(url) = token_request(&a, SystemTime::now()).unwrap() else {
            panic!("IMDS expected");
        };
        assert!(!url.as_str().contains("client_id"), "{url}");
    }

    #[test]
    fn an_empty_or_missing_federated_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, " \n").unwrap();
        let err = federated_token(&file).unwrap_err().to_string();
        assert!(err.ends_with("/token is empty"), "{err}");
        std::fs::write(&file, "eyJfederated\n").unwrap();
        assert_eq!(
            federated_token(&file).unwrap().expose_secret(),
            "eyJfederated"
        );
        std::fs::remove_file(&file).unwrap();
        assert!(federated_token(&file).is_err());
    }
}
