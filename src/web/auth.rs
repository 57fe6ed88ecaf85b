//! HTTP basic authentication against bcrypt hashes (SPEC §7:
//! `basic_auth_users`). When users are configured, every request but
//! `/-/healthy` needs valid credentials; the user list is read from the
//! current configuration on each request, so a reload adds or removes users
//! without a restart.
//!
//! bcrypt is slow on purpose (a quarter of a second at cost 12), and a
//! Prometheus server sends the same credentials every few seconds. So a
//! successful verification is remembered — as an HMAC of user, password and
//! stored hash under a key drawn at start, never as the password — and the
//! next request with the same credentials skips bcrypt. Failures are not
//! remembered: each costs a full bcrypt run, on the blocking pool. This
//! layer sits *outside* the scrape slots, so a refused request never takes
//! one, and `throttle` bounds the bcrypt work: failures are throttled per
//! client address (429 with `Retry-After`, no bcrypt) and only a few bcrypt
//! runs go at once. Remembered credentials are checked first, so a client
//! whose address is throttled still gets in with known-good credentials.
//!
//! Timing: an unknown user's password is checked against the costliest
//! configured hash and then refused anyway, so a refusal for an unknown user
//! takes at least as long as for any known one, and exactly as long when all
//! hashes have the same cost (the configuration warns when they do not);
//! bcrypt compares in constant time.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::SharedSite;
use super::throttle::{Client, Throttle};

/// `WWW-Authenticate` of a 401.
const CHALLENGE: &str = "Basic realm=\"msfb_seat_exporter\", charset=\"UTF-8\"";

/// Remembered verifications; beyond this the memory is cleared (a handful of
/// scrapers use it, so this is only reached by someone cycling passwords
/// that bcrypt accepted, which needs the passwords).
const CACHE_ENTRIES: usize = 1024;

/// Remembers which credentials bcrypt accepted. One per router.
pub struct CredentialCache {
    /// Per-process HMAC key: entries cannot be checked against guesses
    /// without it, unlike a plain hash of the password.
    key: [u8; 32],
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl std::fmt::Debug for CredentialCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialCache").finish_non_exhaustive()
    }
}

impl Default for CredentialCache {
    fn default() -> Self {
        CredentialCache {
            key: rand::random(),
            verified: Mutex::new(HashSet::new()),
        }
    }
}

impl CredentialCache {
    fn entry(&self, user: &str, password: &[u8], hash: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .expect("HMAC takes any key length");
        // Length prefixes keep ("ab", "c") and ("a", "bc") apart.
        for part in [user.as_bytes(), password, hash.as_bytes()] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        // A set of digests is valid after any partial update.
        self.verified.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `user` with `password` were verified before (no bcrypt).
    pub fn remembered(
        &self,
        users: &BTreeMap<String, String>,
        user: &str,
        password: &[u8],
    ) -> bool {
        users
            .get(user)
            .is_some_and(|hash| self.lock().contains(&self.entry(user, password, hash)))
    }

    /// Whether `user` with `password` may pass, given the configured
    /// `users` (name → bcrypt hash, not empty).
    pub async fn check(
        self: &Arc<Self>,
        users: &BTreeMap<String, String>,
        user: &str,
        password: Vec<u8>,
    ) -> bool {
        let (known, hash) = match users.get(user) {
            Some(h) => (true, h.clone()),
            // At least the work of any known user, then refuse.
            None => match decoy(users) {
                Some(h) => (false, h.to_owned()),
                None => return false,
            },
        };
        let entry = self.entry(user, &password, &hash);
        if known && self.lock().contains(&entry) {
            return true;
        }
        // Only the few bcrypt runs the throttle allows at once.
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(&password, &hash))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false);
        if ok && known {
            let mut verified = self.lock();
            if verified.len() >= CACHE_ENTRIES {
                verified.clear();
            }
            verified.insert(entry);
        }
        ok && known
    }
}

/// The hash an unknown user is checked against, so that a refusal takes at
/// least as long as the slowest known user's check: the configured hash of
/// the highest bcrypt cost (`$2b$12$…` has cost 12).
fn decoy(users: &BTreeMap<String, String>) -> Option<&str> {
    let cost = |h: &str| h.split('$').nth(2).and_then(|c| c.parse::<u32>().ok());
    users
        .values()
        .max_by_key(|h| cost(h).unwrap_or(0))
        .map(String::as_str)
}

/// State of the middleware.
#[derive(Clone)]
pub struct AuthState {
    /// Where the configured users come from.
    pub site: SharedSite,
    /// Verifications already paid for.
    pub cache: Arc<CredentialCache>,
    /// Failed attempts per client, and the bcrypt runs at once.
    pub throttle: Arc<Throttle>,
}

/// Splits an `Authorization: Basic …` header into user and password.
fn credentials(value: &HeaderValue) -> Option<(String, Vec<u8>)> {
    let value = value.to_str().ok()?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, CHALLENGE)],
        "unauthorized\n",
    )
        .into_response()
}

/// The middleware: passes the request on when no users are configured or
/// the credentials are valid, else answers 401 with a challenge, or 429
/// when the client has failed too often lately.
pub async fn require(State(state): State<AuthState>, req: Request, next: Next) -> Response {
    let generation = state.site.generation();
    let users = &generation.config.web.basic_auth_users;
    if users.is_empty() {
        return next.run(req).await;
    }
    let Some((user, password)) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(credentials)
    else {
        return unauthorized();
    };
    if state.cache.remembered(users, &user, &password) {
        return next.run(req).await;
    }
    let client = Client::of(
        req.extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0),
    );
    if let Err(wait) = state.throttle.check(client) {
        tracing::debug!("request from a client with too many failed attempts refused");
        return throttled(wait);
    }
    let verified = state
        .throttle
        .verify(state.cache.check(users, &user, password))
        .await;
    if verified {
        state.throttle.refund(client);
        next.run(req).await
    } else {
        tracing::debug!("request with wrong credentials refused");
        unauthorized()
    }
}

/// 429 with `Retry-After` in whole seconds, rounded up.
fn throttled(wait: std::time::Duration) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, seconds.to_string())],
        "too many failed authentication attempts; retry later\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_users_are_checked_against_the_costliest_hash() {
        let users = BTreeMap::from([
            ("a".to_owned(), "$2b$05$aaaaaaaaaaaaaaaaaaaaaa".to_owned()),
            ("b".to_owned(), "$2y$12$bbbbbbbbbbbbbbbbbbbbbb".to_owned()),
            ("c".to_owned(), "$2b$10$cccccccccccccccccccccc".to_owned()),
        ]);
        assert_eq!(decoy(&users), Some("$2y$12$bbbbbbbbbbbbbbbbbbbbbb"));
        assert_eq!(decoy(&BTreeMap::new()), None);
    }

    /// Cost 4, the minimum: these tests are about the logic, not the cost.
    fn users() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("prometheus".to_owned(), bcrypt::hash("s3cret", 4).unwrap()),
            ("grafana".to_owned(), bcrypt::hash("other", 4).unwrap()),
        ])
    }

    #[test]
    fn basic_header_is_parsed() {
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        // "user:pa:ss" — the password may contain colons.
        assert_eq!(
            credentials(&h("Basic dXNlcjpwYTpzcw==")),
            Some(("user".to_owned(), b"pa:ss".to_vec()))
        );
        assert_eq!(
            credentials(&h("basic dXNlcjpwYTpzcw==")).map(|c| c.0),
            Some("user".to_owned())
        );
        assert_eq!(credentials(&h("Bearer dXNlcjpwYTpzcw==")), None);
        assert_eq!(credentials(&h("Basic !!!")), None);
        // No colon at all.
        assert_eq!(credentials(&h("Basic dXNlcg==")), None);
    }

    #[tokio::test]
    async fn right_password_passes_and_is_remembered_wrong_ones_are_not() {
        let cache = Arc::new(CredentialCache::default());
        let users = users();
        assert!(cache.check(&users, "prometheus", b"s3cret".to_vec()).await);
        assert_eq!(cache.lock().len(), 1);
        // Remembered: a second check passes without a new entry.
        assert!(cache.check(&users, "prometheus", b"s3cret".to_vec()).await);
        assert_eq!(cache.lock().len(), 1);

        assert!(!cache.check(&users, "prometheus", b"wrong".to_vec()).await);
        assert!(!cache.check(&users, "prometheus", b"other".to_vec()).await);
        // An unknown user is refused even with a password that matches the
        // hash it is compared against.
        assert!(!cache.check(&users, "nobody", b"other".to_vec()).await);
        assert!(!cache.check(&users, "", b"".to_vec()).await);
        assert_eq!(cache.lock().len(), 1, "failures are not remembered");
    }

    #[tokio::test]
    async fn a_changed_hash_invalidates_what_was_remembered() {
        let cache = Arc::new(CredentialCache::default());
        let mut users = users();
        assert!(cache.check(&users, "prometheus", b"s3cret".to_vec()).await);
        // Password rotated in the config: the old password no longer passes.
        users.insert("prometheus".to_owned(), bcrypt::hash("new", 4).unwrap());
        assert!(!cache.check(&users, "prometheus", b"s3cret".to_vec()).await);
        assert!(cache.check(&users, "prometheus", b"new".to_vec()).await);
    }

    #[test]
    fn entries_differ_per_process_and_per_split() {
        let a = CredentialCache::default();
        let b = CredentialCache::default();
        let e = a.entry("u", b"pw", "h");
        assert_ne!(e, b.entry("u", b"pw", "h"));
        assert_ne!(a.entry("u", b"pw", "h"), a.entry("up", b"w", "h"));
        assert_eq!(format!("{a:?}"), "CredentialCache { .. }");
    }
}
