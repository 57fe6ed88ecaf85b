//! The token request of each credential (SPEC §12): a client secret, a
//! certificate assertion, a federated workload identity token, or a
//! managed identity's IMDS request. The token cache around it
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
//! The assertion is signed by `jsonwebtoken` (RS256 on aws-lc-rs, no
//! OpenSSL) with the `x5t` and `x5t#S256` headers Entra looks the
//! certificate up by; it lives in a `SecretString` from the moment it is
//! made.

mod assertion;

use std::time::SystemTime;

use secrecy::SecretString;

pub use assertion::{ASSERTION_LIFETIME, assertion};

use crate::config::{AuthConfig, Credential, Endpoint, read_federated_token};

/// The IMDS API version the request names.
pub const IMDS_API_VERSION: &str = "2018-02-01";
/// `client_assertion_type` of a JWT bearer client assertion (RFC 7523).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
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

/// Builds the token request for `auth` to the token endpoint `url` (the
/// audience of a certificate assertion) at `now`, reading whatever files
/// the credential needs.
///
/// # Errors
/// [`CredentialError`] when a file the credential needs cannot be used.
pub(crate) fn token_request(
    auth: &AuthConfig,
    url: &str,
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
            let assertion = assertion(&pair, &auth.client_id, url, now)?;
            form.push(("client_assertion_type", plain(ASSERTION_TYPE)));
            form.push(("client_assertion", assertion));
        }
        Credential::WorkloadIdentity {
            federated_token_file,
        } => {
            form.push(("client_assertion_type", plain(ASSERTION_TYPE)));
            let token = read_federated_token(federated_token_file).map_err(CredentialError)?;
            form.push(("client_assertion", token));
        }
        Credential::ManagedIdentity => return imds_url(auth, url).map(TokenRequest::Imds),
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

fn imds_url(auth: &AuthConfig, endpoint: &str) -> Result<reqwest::Url, CredentialError> {
    let mut url = reqwest::Url::parse(endpoint)
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
    use crate::config::IMDS_ENDPOINT;
    use secrecy::ExposeSecret as _;

    const URL: &str = "https://login.example/t/oauth2/token";

    fn auth(credential: Credential, endpoint: Endpoint) -> AuthConfig {
        AuthConfig {
            credential,
            endpoint,
            resource: "https://onestore.microsoft.com/".into(),
            ..AuthConfig::for_tests(URL)
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
        let v1 = form(token_request(&auth(secret.clone(), Endpoint::V1), URL, now).unwrap());
        assert!(v1.contains(&("resource", "https://onestore.microsoft.com/".into())));
        assert!(v1.contains(&("client_secret", "s".into())));
        let v2 = form(token_request(&auth(secret, Endpoint::V2), URL, now).unwrap());
        assert!(v2.contains(&("scope", "https://onestore.microsoft.com/.default".into())));
        assert!(!v2.iter().any(|(k, _)| *k == "resource"));
    }

    #[test]
    fn managed_identity_asks_imds_for_the_resource_and_the_user_assigned_id() {
        let mut a = auth(Credential::ManagedIdentity, Endpoint::V1);
        a.token_url = IMDS_ENDPOINT.into();
        let TokenRequest::Imds(url) = token_request(&a, IMDS_ENDPOINT, SystemTime::now()).unwrap()
        else {
            panic!("IMDS expected");
        };
        assert_eq!(
            url.as_str(),
            "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01\
             &resource=https%3A%2F%2Fonestore.microsoft.com%2F&client_id=c"
        );
        a.client_id.clear();
        let TokenRequest::Imds(url) = token_request(&a, IMDS_ENDPOINT, SystemTime::now()).unwrap()
        else {
            panic!("IMDS expected");
        };
        assert!(!url.as_str().contains("client_id"), "{url}");
    }
}
