//! The fake's Entra ID side (SPEC §8, §12): the v1 and v2 token endpoints
//! for every credential, and an IMDS-style managed identity endpoint.
//!
//! It checks what Entra checks, so that a test passing against it means
//! something: a client secret by value; a certificate assertion by its
//! RS256 signature against a trusted certificate found by `x5t` and
//! `x5t#S256`, its `aud` (the URL it was posted to), `iss` = `sub` = the
//! client id, `nbf`/`exp` (at most 10 minutes apart) and a `jti` never seen
//! before; a federated token by value (the platform's issuer is not
//! faked); IMDS by the `Metadata: true` header, the API version and the
//! identity asked for. The verification is written against `x509-parser`
//! and `jsonwebtoken` directly rather than through the exporter's own
//! certificate code, so a bug there cannot hide itself.
//!
//! Each kind can be told to refuse ([`super::FakeStore::reject_credential`]),
//! and every grant is recorded ([`Grant`]) for tests to assert on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Value, json};
use sha1::Sha1;
use sha2::{Digest as _, Sha256};

use super::{Shared, State as FakeState};

/// The IMDS path the fake serves (the real one's path).
pub const IMDS_PATH: &str = "/metadata/identity/oauth2/token";

/// `client_assertion_type` for JWT bearer assertions.
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The ways to ask the fake for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CredentialKind {
    /// `client_secret`.
    Secret,
    /// A client assertion signed with a certificate.
    Certificate,
    /// A federated token as the client assertion.
    WorkloadIdentity,
    /// The IMDS endpoint.
    ManagedIdentity,
}

/// One token the fake issued, and how it was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Which credential.
    pub credential: CredentialKind,
    /// `"v1"`, `"v2"` or `"imds"`.
    pub endpoint: &'static str,
    /// `resource` (v1, IMDS) or `scope` (v2) as sent.
    pub audience: String,
    /// IMDS: the `client_id` asked for (a user-assigned identity).
    pub identity: Option<String>,
}

/// A certificate the fake trusts for assertions.
#[derive(Clone)]
pub(crate) struct Trusted {
    key: DecodingKey,
    x5t: String,
    x5t_s256: String,
}

impl std::fmt::Debug for Trusted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trusted").field("x5t", &self.x5t).finish()
    }
}

impl Trusted {
    /// The first certificate of `pem`.
    pub(crate) fn from_pem(pem: &str) -> Result<Trusted, String> {
        let block = pem::parse_many(pem)
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|b| b.tag() == "CERTIFICATE")
            .ok_or("no certificate")?;
        let der = block.contents();
        let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
        Ok(Trusted {
            key: DecodingKey::from_rsa_der(&cert.public_key().subject_public_key.data),
            x5t: URL_SAFE_NO_PAD.encode(Sha1::digest(der)),
            x5t_s256: URL_SAFE_NO_PAD.encode(Sha256::digest(der)),
        })
    }
}

/// What the fake knows of the Entra side.
#[derive(Debug, Default)]
pub(crate) struct Directory {
    /// Certificates registered on the app.
    pub trusted: Vec<Trusted>,
    /// Federated tokens accepted as assertions.
    pub federated: Vec<String>,
    /// `jti`s of assertions already used.
    pub seen_jti: std::collections::HashSet<String>,
    /// Accepted user-assigned identities (client ids); the system-assigned
    /// one is always there.
    pub identities: Vec<String>,
    /// Kinds told to refuse.
    pub rejected: std::collections::HashSet<CredentialKind>,
    /// Every token issued, oldest first.
    pub grants: Vec<Grant>,
    /// Why the latest refused request was refused.
    pub last_refusal: Option<String>,
}

#[derive(Deserialize, Default)]
struct Claims {
    jti: Option<String>,
    nbf: Option<i64>,
    exp: Option<i64>,
}

/// Checks a certificate assertion posted to `audience`; the `Err` is
/// `(AADSTS code, why)`.
fn verify_assertion(
    dir: &mut Directory,
    jwt: &str,
    audience: &str,
    client_id: &str,
) -> Result<(), (&'static str, String)> {
    let header =
        jsonwebtoken::decode_header(jwt).map_err(|e| ("AADSTS50027", format!("not a JWT: {e}")))?;
    if header.alg != Algorithm::RS256 {
        return Err(("AADSTS5002730", format!("alg {:?}, not RS256", header.alg)));
    }
    let trusted = dir
        .trusted
        .iter()
        .find(|t| {
            header.x5t.as_deref() == Some(t.x5t.as_str())
                && header.x5t_s256.as_deref() == Some(t.x5t_s256.as_str())
        })
        .ok_or((
            "AADSTS700027",
            "no registered certificate has this x5t/x5t#S256".to_owned(),
        ))?;
    let mut v = Validation::new(Algorithm::RS256);
    v.set_audience(&[audience]);
    v.set_issuer(&[client_id]);
    v.sub = Some(client_id.to_owned());
    v.set_required_spec_claims(&["exp", "nbf", "aud", "iss", "sub"]);
    v.validate_nbf = true;
    v.leeway = 5;
    let claims = jsonwebtoken::decode::<Claims>(jwt, &trusted.key, &v)
        .map_err(|e| ("AADSTS700027", format!("assertion refused: {e}")))?
        .claims;
    let (nbf, exp) = (claims.nbf.unwrap_or(0), claims.exp.unwrap_or(0));
    if exp - nbf > 600 {
        return Err((
            "AADSTS700024",
            format!("lifetime {}s is over 10 minutes", exp - nbf),
        ));
    }
    let jti = claims
        .jti
        .filter(|j| !j.is_empty())
        .ok_or(("AADSTS700027", "no jti".to_owned()))?;
    if !dir.seen_jti.insert(jti) {
        return Err(("AADSTS700025", "jti replayed".to_owned()));
    }
    Ok(())
}

/// The token endpoint of `endpoint`: `v1` takes `resource=`, `v2`
/// `scope=…/.default`.
pub(crate) fn token_endpoint(endpoint: &'static str) -> MethodRouter<Arc<Shared>> {
    post(
        move |State(shared): State<Arc<Shared>>,
              uri: Uri,
              headers: HeaderMap,
              Form(form): Form<HashMap<String, String>>| async move {
            token(&shared, endpoint, &uri, &headers, &form)
        },
    )
}

fn token(
    shared: &Shared,
    endpoint: &'static str,
    uri: &Uri,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Response {
    let mut s = shared.lock();
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    if field("grant_type") != "client_credentials" {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "AADSTS70003",
        );
    }
    if field("client_id") != s.client_id {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "AADSTS7000215");
    }
    let kind = match client_authentication(&mut s, uri, headers, form) {
        Ok(kind) => kind,
        Err((code, why)) => {
            s.directory.last_refusal = Some(format!("{code}: {why}"));
            return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", code);
        }
    };
    let audience = match endpoint {
        "v1" if !form.contains_key("scope") => field("resource"),
        "v2" if !form.contains_key("resource") && field("scope").ends_with("/.default") => {
            field("scope")
        }
        _ => "",
    };
    if audience.is_empty() {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "AADSTS900144");
    }
    if s.directory.rejected.contains(&kind) {
        s.directory.last_refusal = Some(format!("{kind:?} told to refuse"));
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "AADSTS7000222");
    }
    let grant = Grant {
        credential: kind,
        endpoint,
        audience: audience.to_owned(),
        identity: None,
    };
    issue(&mut s, grant)
}

/// Which credential authenticated the client, or why none did.
fn client_authentication(
    s: &mut FakeState,
    uri: &Uri,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<CredentialKind, (&'static str, String)> {
    let field = |k: &str| form.get(k).map(String::as_str);
    match (field("client_secret"), field("client_assertion_type")) {
        (Some(secret), None) if secret == s.client_secret => Ok(CredentialKind::Secret),
        (Some(_), None) => Err(("AADSTS7000215", "invalid client secret".into())),
        (None, Some(ASSERTION_TYPE)) => {
            let assertion = field("client_assertion").unwrap_or("");
            if s.directory.federated.iter().any(|t| t == assertion) {
                return Ok(CredentialKind::WorkloadIdentity);
            }
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            let scheme = if s.https { "https" } else { "http" };
            let audience = format!("{scheme}://{host}{}", uri.path());
            let client_id = s.client_id.clone();
            verify_assertion(&mut s.directory, assertion, &audience, &client_id)
                .map(|()| CredentialKind::Certificate)
        }
        _ => Err((
            "AADSTS7000218",
            "neither client_secret nor a client assertion".into(),
        )),
    }
}

/// Issues a token for `grant` in the fake's current token format.
fn issue(s: &mut FakeState, grant: Grant) -> Response {
    let now = tokio::time::Instant::now();
    s.tokens.retain(|_, expires| *expires > now);
    s.token_serial += 1;
    let token = format!(
        "fake-token-{}-{:016x}",
        s.token_serial,
        rand::random::<u64>()
    );
    let lifetime = s.token_lifetime;
    // A lifetime past the clock's range (a test of absurd `expires_in`)
    // never expires here.
    let expires = now
        .checked_add(lifetime)
        .unwrap_or(now + Duration::from_secs(1 << 32));
    s.tokens.insert(token.clone(), expires);
    let secs = lifetime.as_secs();
    let expires_in = if let Some(raw) = &s.expires_in_raw {
        raw.clone()
    } else if s.expires_in_as_string {
        Value::String(secs.to_string())
    } else {
        Value::from(secs)
    };
    let mut body = json!({
        "token_type": "Bearer",
        "expires_in": expires_in,
        "access_token": token,
    });
    if grant.endpoint == "imds" {
        let on = std::time::SystemTime::now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .saturating_add(secs);
        body["expires_on"] = Value::String(on.to_string());
        body["resource"] = Value::String(grant.audience.clone());
        body["client_id"] = Value::String(grant.identity.clone().unwrap_or_default());
    } else if grant.endpoint == "v1" {
        body["resource"] = Value::String(grant.audience.clone());
    }
    s.directory.grants.push(grant);
    axum::Json(body).into_response()
}

pub(crate) fn oauth_error(status: StatusCode, error: &str, code: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "error": error,
            "error_description": format!("{code}: the fake token endpoint refused the request."),
        })),
    )
        .into_response()
}

/// The managed identity endpoint, as IMDS answers (its error bodies have
/// the OAuth shape).
pub(crate) async fn imds(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let mut s = shared.lock();
    let imds_error = |error: &str, description: &str| {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": error, "error_description": description})),
        )
            .into_response()
    };
    if headers.get("metadata").and_then(|v| v.to_str().ok()) != Some("true") {
        s.directory.last_refusal = Some("no Metadata: true header".into());
        return imds_error("invalid_request", "Required metadata header not specified");
    }
    if query.get("api-version").map(String::as_str) != Some("2018-02-01") {
        return imds_error("invalid_request", "Invalid api-version");
    }
    let resource = query.get("resource").cloned().unwrap_or_default();
    if resource.is_empty() {
        return imds_error(
            "invalid_request",
            "Required query variable 'resource' is missing",
        );
    }
    let identity = query.get("client_id").cloned();
    if let Some(id) = &identity
        && !s.directory.identities.contains(id)
    {
        s.directory.last_refusal = Some(format!("unknown identity {id}"));
        return imds_error("invalid_request", "Identity not found");
    }
    if s.directory
        .rejected
        .contains(&CredentialKind::ManagedIdentity)
    {
        s.directory.last_refusal = Some("ManagedIdentity told to refuse".into());
        return imds_error("invalid_request", "Identity not found");
    }
    let grant = Grant {
        credential: CredentialKind::ManagedIdentity,
        endpoint: "imds",
        audience: resource,
        identity,
    };
    issue(&mut s, grant)
}
