//! The OAuth2 token cache (SPEC §4, §12), the same for every credential:
//! `credential` builds the request, this module sends it and keeps the answer.
//!
//! The token is cached until shortly before it expires and shared by every
//! check. Fetching is single-flight: a `tokio::sync::Mutex` is held across the
//! token request on purpose, so that when many checks find the token stale at
//! once, exactly one request goes out and the others wait for its result. A
//! failing endpoint is backed off (exponential, capped) and the checks that
//! need a token meanwhile fail fast with the last reason instead of hammering
//! it.
//!
//! The secret and the tokens live in `SecretString`s; nothing here formats
//! them, and errors carry only an OAuth error code or an HTTP status.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::MAX_BODY_BYTES;
use super::credential::{self, TokenRequest};
use super::http::{Exchanged, exchange};
use crate::config::{AuthConfig, TENANT_PLACEHOLDER};
use crate::metrics::{Telemetry, operation};

/// Refresh this long before expiry at most …
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// … or at half the lifetime for short-lived tokens.
const MIN_LIFETIME_FRACTION: u32 = 2;
/// Backoff after a failed token request: 1 s doubling to 60 s.
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// After a 401 forced a refresh, further 401s within this time keep the new
/// token, unless the API has accepted it meanwhile, instead of fetching yet
/// another: a 401 storm (an app whose access was withdrawn, say) costs one
/// token request per this period, not one per check, while a token that
/// worked and was then revoked is still replaced at once.
const FORCED_REFRESH_GAP: Duration = Duration::from_secs(10);
/// Assumed lifetime when the endpoint omits `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// The longest lifetime believed (Azure AD gives about an hour). A larger
/// `expires_in` is taken as this, so that an absurd value neither keeps a
/// revoked token forever nor overflows the clock arithmetic.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// OAuth error codes we pass through as the `reason` label (a closed set).
const OAUTH_ERRORS: &[&str] = &[
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "invalid_resource",
    "temporarily_unavailable",
    "server_error",
];

/// A bearer token. Cloning shares it; `Debug` does not print it.
#[derive(Clone)]
pub struct AccessToken(Arc<TokenInner>);

struct TokenInner {
    /// `Bearer …`, made once per token rather than once per request, and
    /// the only form the token is kept in.
    header: HeaderValue,
    /// The API has accepted this token at least once.
    accepted: AtomicBool,
}

impl AccessToken {
    /// Wraps a token string.
    pub fn new(token: String) -> AccessToken {
        let token = SecretString::from(token);
        let mut header = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid"));
        header.set_sensitive(true);
        AccessToken(Arc::new(TokenInner {
            header,
            accepted: AtomicBool::new(false),
        }))
    }

    /// Records that the API answered a request made with this token (not
    /// with a 401): it works, so a later 401 means it was revoked.
    pub fn mark_accepted(&self) {
        self.0.accepted.store(true, Ordering::Relaxed);
    }

    fn accepted(&self) -> bool {
        self.0.accepted.load(Ordering::Relaxed)
    }

    /// The `Authorization` header value, marked sensitive so that HTTP
    /// tracing never prints it (a cheap clone of shared bytes).
    pub fn header_value(&self) -> HeaderValue {
        self.0.header.clone()
    }

    fn same_as(&self, other: &AccessToken) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken([redacted])")
    }
}

/// Why no token is available. Carries no secret and no response body.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot get an OAuth2 token ({reason}): {detail}")]
pub struct TokenError {
    /// The `reason` label of `msfb_oauth_token_request_failures_total`.
    pub reason: String,
    /// A description fit for logs.
    pub detail: String,
}

struct Cached {
    token: AccessToken,
    refresh_at: Instant,
    expires_at: Instant,
    /// Set when this token was fetched because the API rejected the
    /// previous one; such a token is not dropped again for
    /// [`FORCED_REFRESH_GAP`].
    forced_at: Option<Instant>,
}

#[derive(Default)]
struct State {
    current: Option<Cached>,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<TokenError>,
    /// The next fetch replaces a token the API rejected.
    forced: bool,
}

/// The token cache for one `[auth]` configuration.
pub struct TokenSource {
    http: reqwest::Client,
    config: AuthConfig,
    /// `config.token_url` with the tenant filled in ([`token_url`]).
    url: String,
    telemetry: Telemetry,
    state: Mutex<State>,
    /// The cached token and when to refresh it, a copy of `state.current`
    /// readable without waiting: every check asks for the token, and on
    /// several poll lanes at once the async lock made them queue for each
    /// other (2% of a check's CPU). Written only under `state`'s lock.
    fresh: std::sync::RwLock<Option<(AccessToken, Instant)>>,
}

impl TokenSource {
    /// A source that will fetch with `http` (no request is made yet).
    pub fn new(http: reqwest::Client, config: AuthConfig, telemetry: Telemetry) -> TokenSource {
        let source = TokenSource {
            http,
            url: token_url(&config),
            config,
            telemetry,
            state: Mutex::new(State::default()),
            fresh: std::sync::RwLock::new(None),
        };
        source.publish_credential_expiry();
        source
    }

    /// Sets `msfb_oauth_credential_expiry_timestamp_seconds` to the
    /// certificate's notAfter, or removes it for credentials without one.
    fn publish_credential_expiry(&self) {
        let gauge = &self.telemetry.credential_expiry;
        match self.config.credential.expiry() {
            Some(at) => gauge.with_label_values::<&str>(&[]).set(unix_seconds(at)),
            None => {
                let _ = gauge.remove_label_values::<&str>(&[]);
            }
        }
    }

    /// A source already holding `token`, valid for an hour (unit tests that
    /// exercise callers without a token endpoint).
    #[cfg(test)]
    pub(crate) fn preloaded(token: &str, config: AuthConfig, telemetry: Telemetry) -> TokenSource {
        let source = TokenSource::new(reqwest::Client::new(), config, telemetry);
        let now = Instant::now();
        let mut state = source.state.try_lock().expect("fresh mutex");
        state.current = Some(Cached {
            token: AccessToken::new(token.to_owned()),
            refresh_at: now + Duration::from_secs(3000),
            expires_at: now + Duration::from_secs(3600),
            forced_at: None,
        });
        source.publish(&state);
        drop(state);
        source
    }

    /// The configuration this source was built for (to decide on reload
    /// whether the cached token can be kept).
    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// A valid token: the cached one, or a freshly fetched one.
    ///
    /// # Errors
    /// [`TokenError`] when the endpoint fails, or is being backed off after
    /// failing, and no unexpired token is cached.
    pub async fn get(&self) -> Result<AccessToken, TokenError> {
        if let Some(token) = self.fresh_token() {
            return Ok(token);
        }
        let mut state = self.state.lock().await;
        let now = Instant::now();
        if let Some(c) = &state.current
            && now < c.refresh_at
        {
            return Ok(c.token.clone());
        }
        if state.retry_at.is_some_and(|at| now < at) {
            return match &state.current {
                Some(c) if now < c.expires_at => Ok(c.token.clone()),
                _ => Err(state.last_error.clone().unwrap_or_else(|| TokenError {
                    reason: "backoff".into(),
                    detail: "waiting before the next token request".into(),
                })),
            };
        }
        match self.fetch().await {
            Ok((token, lifetime)) => {
                let now = Instant::now();
                let margin = REFRESH_MARGIN.min(lifetime / MIN_LIFETIME_FRACTION);
                state.current = Some(Cached {
                    token: token.clone(),
                    refresh_at: now + lifetime - margin,
                    expires_at: now + lifetime,
                    forced_at: std::mem::take(&mut state.forced).then_some(now),
                });
                self.publish(&state);
                state.failures = 0;
                state.retry_at = None;
                state.last_error = None;
                let expiry = SystemTime::now() + lifetime;
                self.telemetry.token_expiry.set(unix_seconds(expiry));
                Ok(token)
            }
            Err(err) => {
                self.telemetry.count_token_failure(err.reason.as_str());
                state.failures = state.failures.saturating_add(1);
                let backoff = backoff(state.failures);
                state.retry_at = Some(Instant::now() + backoff);
                state.last_error = Some(err.clone());
                tracing::warn!(reason = %err.reason, error = %err.detail,
                    retry_in = ?backoff, "token request failed");
                match &state.current {
                    Some(c) if Instant::now() < c.expires_at => Ok(c.token.clone()),
                    _ => Err(err),
                }
            }
        }
    }

    /// Drops `token` after the API rejected it (401), so the next
    /// [`get`](Self::get) fetches a new one. A token that was already
    /// replaced is left alone, so a burst of 401s causes one refresh; a
    /// token that was itself fetched because of a 401 less than
    /// [`FORCED_REFRESH_GAP`] ago and never accepted since is kept, so a
    /// storm of 401s causes one refresh per gap.
    pub async fn invalidate(&self, token: &AccessToken) {
        let mut state = self.state.lock().await;
        let Some(current) = &state.current else {
            return;
        };
        if !current.token.same_as(token) {
            return;
        }
        if !current.token.accepted()
            && current
                .forced_at
                .is_some_and(|at| at.elapsed() < FORCED_REFRESH_GAP)
        {
            return;
        }
        state.current = None;
        state.retry_at = None;
        state.forced = true;
        self.publish(&state);
    }

    /// The cached token if it is not due for a refresh, without waiting
    /// for the lock a refresh holds.
    fn fresh_token(&self) -> Option<AccessToken> {
        let fresh = self.fresh.read().unwrap_or_else(|p| p.into_inner());
        match &*fresh {
            Some((token, refresh_at)) if Instant::now() < *refresh_at => Some(token.clone()),
            _ => None,
        }
    }

    /// Copies `state.current` to `fresh`; called with `state` locked after
    /// every change to it.
    fn publish(&self, state: &State) {
        let mut fresh = self.fresh.write().unwrap_or_else(|p| p.into_inner());
        *fresh = state
            .current
            .as_ref()
            .map(|c| (c.token.clone(), c.refresh_at));
    }

    async fn fetch(&self) -> Result<(AccessToken, Duration), TokenError> {
        self.telemetry.token_requests.inc();
        let request = credential::token_request(&self.config, &self.url, SystemTime::now())
            .map_err(|e| TokenError {
                reason: "credential".into(),
                detail: e.0,
            })?;
        self.publish_credential_expiry();
        let request = match &request {
            TokenRequest::Form(form) => {
                let form: Vec<(&str, &str)> =
                    form.iter().map(|(k, v)| (*k, v.expose_secret())).collect();
                self.http.post(&self.url).form(&form)
            }
            TokenRequest::Imds(url) => self.http.get(url.clone()).header("Metadata", "true"),
        }
        .header(reqwest::header::ACCEPT, "application/json");
        let failed = |f: super::Failure| TokenError {
            reason: f.code.label().into_owned(),
            detail: f.detail,
        };
        let Exchanged { status, body, .. } = exchange(request, |code, seconds| {
            self.telemetry
                .observe_request(operation::TOKEN, &code.label(), seconds);
        })
        .await
        .map_err(failed)?;
        let body = body.map_err(failed)?;
        let json: Option<Value> = serde_json::from_slice(&body).ok();
        if !(200..300).contains(&status) {
            let oauth = json
                .as_ref()
                .and_then(|v| ci_str(v, "error"))
                .filter(|e| OAUTH_ERRORS.contains(e));
            let reason = oauth.map_or_else(|| status.to_string(), str::to_owned);
            let aadsts = json
                .as_ref()
                .and_then(|v| ci_str(v, "error_description"))
                .and_then(aadsts_code);
            let detail = match aadsts {
                Some(code) => format!("token endpoint answered HTTP {status} ({code})"),
                None => format!("token endpoint answered HTTP {status}"),
            };
            return Err(TokenError { reason, detail });
        }
        let decode = |what: &str| TokenError {
            reason: "decode".into(),
            detail: format!("token response is not usable: {what}"),
        };
        let json = json.ok_or_else(|| decode("not JSON"))?;
        let token = ci_str(&json, "access_token")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| decode("no access_token"))?;
        // SPEC §17: any JSON number (a fraction rounded down) or numeric
        // string; beyond MAX_LIFETIME capped; 0 or less means "refresh at
        // the next check" (the token serves this one).
        let lifetime = match ci_get(&json, "expires_in") {
            None | Some(Value::Null) => expires_on(&json).unwrap_or(DEFAULT_LIFETIME),
            Some(v) => lifetime_of(seconds(v).ok_or_else(|| decode("expires_in is not a number"))?),
        };
        debug_assert!(body.len() <= MAX_BODY_BYTES);
        Ok((AccessToken::new(token.to_owned()), lifetime))
    }
}

/// The lifetime left by `expires_on` (Unix seconds, a number or a numeric
/// string), which managed identity endpoints send beside or instead of
/// `expires_in`.
fn expires_on(json: &Value) -> Option<Duration> {
    let at = seconds(ci_get(json, "expires_on")?)?;
    Some(lifetime_of(at - unix_seconds(SystemTime::now())))
}

/// Seconds as token endpoints send them: a JSON number, whole or not, or a
/// numeric string; `None` for anything else (and for NaN or infinity).
fn seconds(v: &Value) -> Option<f64> {
    let n = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    n.is_finite().then_some(n)
}

/// A token lifetime from seconds: rounded down, 0 for none left, at most
/// [`MAX_LIFETIME`].
fn lifetime_of(seconds: f64) -> Duration {
    Duration::from_secs(seconds.floor().clamp(0.0, MAX_LIFETIME.as_secs_f64()) as u64)
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource")
            .field("credential", &self.config.credential.kind())
            .field("token_url", &self.url)
            .field("client_id", &self.config.client_id)
            .finish_non_exhaustive()
    }
}

/// The token endpoint of `config`: `token_url` with the tenant id
/// percent-encoded as one path segment in place of `{tenant_id}`, so a
/// tenant id can never add a segment or a query (SPEC §4).
pub fn token_url(config: &AuthConfig) -> String {
    let tenant = percent_encoding::utf8_percent_encode(&config.tenant_id, super::client::SEGMENT);
    config
        .token_url
        .replace(TENANT_PLACEHOLDER, &tenant.to_string())
}

fn backoff(failures: u32) -> Duration {
    let exp = BACKOFF_START.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    let capped = exp.min(BACKOFF_MAX);
    // Full jitter on the upper half keeps several exporters from
    // synchronising while never retrying sooner than half the backoff.
    capped / 2 + capped.mul_f64(rand::random_range(0.0..0.5))
}

fn ci_get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

fn ci_str<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    ci_get(v, key)?.as_str()
}

/// `AADSTS7000215` from an Azure AD error description: a public error code,
/// safe to log, and the fastest way to the cause.
fn aadsts_code(description: &str) -> Option<String> {
    let start = description.find("AADSTS")?;
    let digits: String = description[start + 6..]
        .chars()
        .take_while(char::is_ascii_digit)
        .take(10)
        .collect();
    (!digits.is_empty()).then(|| format!("AADSTS{digits}"))
}

pub(crate) fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_fresh_token_is_served_without_waiting_for_a_refresh_in_progress() {
        let config = AuthConfig::for_tests("http://127.0.0.1:9/token");
        let source = TokenSource::preloaded("tok", config, Telemetry::new());
        // A refresh in progress holds the lock across its request.
        let refreshing = source.state.lock().await;
        let cached = refreshing
            .current
            .as_ref()
            .expect("preloaded")
            .token
            .clone();
        let token = tokio::time::timeout(Duration::from_secs(1), source.get())
            .await
            .expect("served without waiting for the lock")
            .expect("a token");
        assert!(token.same_as(&cached));
        drop(refreshing);
        // Once due for a refresh it is not served from the copy: the
        // endpoint (nothing listens there) is asked, and fails.
        tokio::time::advance(Duration::from_secs(3001)).await;
        assert!(source.fresh_token().is_none());
        source.invalidate(&cached).await;
        assert!(source.get().await.is_err());
    }

    #[test]
    fn lifetimes_from_any_number_or_numeric_string() {
        let cases = [
            (serde_json::json!(3600), 3600),
            (serde_json::json!(3600.0), 3600),
            (serde_json::json!(3599.5), 3599),
            (serde_json::json!("3600"), 3600),
            (serde_json::json!(" 3599.9 "), 3599),
            (serde_json::json!(0), 0),
            (serde_json::json!(-5), 0),
            (serde_json::json!("-5"), 0),
            (serde_json::json!(1e12), 24 * 3600),
            (serde_json::json!(u64::MAX), 24 * 3600),
        ];
        for (value, expected) in cases {
            let secs = seconds(&value).unwrap_or_else(|| panic!("{value}"));
            assert_eq!(lifetime_of(secs), Duration::from_secs(expected), "{value}");
        }
        for value in [
            serde_json::json!("soon"),
            serde_json::json!("NaN"),
            serde_json::json!("inf"),
            serde_json::json!(true),
            serde_json::json!([1]),
        ] {
            assert_eq!(seconds(&value), None, "{value}");
        }
    }

    #[test]
    fn the_tenant_fills_the_template_as_one_segment() {
        let config = AuthConfig {
            tenant_id: "contoso.onmicrosoft.com".into(),
            ..AuthConfig::for_tests("https://login.example/{tenant_id}/oauth2/token")
        };
        assert_eq!(
            token_url(&config),
            "https://login.example/contoso.onmicrosoft.com/oauth2/token"
        );
        let odd = AuthConfig {
            tenant_id: "a/b?c d".into(),
            ..config
        };
        assert_eq!(
            token_url(&odd),
            "https://login.example/a%2Fb%3Fc%20d/oauth2/token"
        );
    }

    #[test]
    fn token_debug_is_redacted() {
        let t = AccessToken::new("eyJ-very-secret".into());
        assert!(!format!("{t:?}").contains("secret"));
        assert!(t.header_value().is_sensitive());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for failures in 1..40 {
            let b = backoff(failures);
            assert!(b <= BACKOFF_MAX, "{b:?}");
            assert!(b >= BACKOFF_START / 2, "{b:?}");
        }
        assert!(backoff(10) >= BACKOFF_MAX / 2);
    }

    #[test]
    fn aadsts_codes_are_extracted() {
        assert_eq!(
            aadsts_code("AADSTS7000215: Invalid client secret provided.").as_deref(),
            Some("AADSTS7000215")
        );
        assert_eq!(aadsts_code("nothing here"), None);
    }
}
