//! One Get seat request and the classification of its answer.
//!
//! This layer makes exactly one HTTP request per call and never retries: what
//! to do with an answer (retry, refresh the token, give up) is the poller's
//! decision (SPEC §5). It does guarantee that every answer is bounded (body
//! cap, timeout), counted in `msfb_api_requests_total`, and described without
//! the URL, so that a hashed user label is not undone by a log line.

use std::error::Error as _;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, RETRY_AFTER};

use super::auth::AccessToken;
use super::model::{ItemType, SeatDetails};
use super::{ErrorCode, MAX_BODY_BYTES, MAX_RETRY_AFTER};
use crate::config::StoreConfig;
use crate::metrics::Telemetry;

/// Characters escaped in a path segment: everything but RFC 3986 unreserved
/// characters and `@` (SPEC §4), so a UPN can never add a segment or a query.
pub(crate) const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'@');

/// `/V1/Inventory/{productId}/{skuId}/Seats/{username}`, each segment
/// percent-encoded.
pub fn seat_path(product_id: &str, sku_id: &str, upn: &str) -> String {
    let mut path = String::with_capacity(64 + upn.len());
    push_seat_path(&mut path, product_id, sku_id, upn);
    path
}

/// Appends [`seat_path`] to `out`.
fn push_seat_path(out: &mut String, product_id: &str, sku_id: &str, upn: &str) {
    out.push_str("/V1/Inventory/");
    out.extend(utf8_percent_encode(product_id, SEGMENT));
    out.push('/');
    out.extend(utf8_percent_encode(sku_id, SEGMENT));
    out.push_str("/Seats/");
    out.extend(utf8_percent_encode(upn, SEGMENT));
}

/// A client builder with the timeouts, user agent, redirect policy and
/// trusted CAs of `config`, and no proxy (the caller adds those).
fn http_builder(config: &StoreConfig) -> Result<reqwest::ClientBuilder, reqwest::Error> {
    let mut builder = reqwest::Client::builder()
        .timeout(config.timeout)
        .connect_timeout(config.timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("msfb_seat_exporter/", env!("CARGO_PKG_VERSION")))
        // A redirect could carry the bearer token elsewhere; the Store
        // does not redirect, so a 3xx is just an unexpected status.
        .redirect(reqwest::redirect::Policy::none())
        // The proxy environment is read by the configuration, not here.
        .no_proxy();
    if let Some(bundle) = &config.ca_file {
        builder = builder.tls_certs_merge(bundle.certificates()?);
    }
    Ok(builder)
}

/// What one Get seat request came back with.
#[derive(Debug)]
pub enum Answer {
    /// A 2xx with a SeatDetails body.
    Seat(SeatDetails),
    /// A 404, with the item type its body names.
    NotFound(ItemType),
    /// Anything else.
    Failed(Failure),
}

/// A request that gave no usable answer.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The `code` label.
    pub code: ErrorCode,
    /// `Retry-After`, capped at [`MAX_RETRY_AFTER`], when the Store sent one.
    pub retry_after: Option<Duration>,
    /// A short description for logs and the status page; never contains the
    /// URL, a token or a body.
    pub detail: String,
}

/// The HTTP side of the Store API: a pooled client with timeouts.
#[derive(Clone)]
pub struct StoreClient {
    // Visible to `list`, which adds the paged calls beside Get seat.
    pub(super) http: reqwest::Client,
    /// The same without a proxy (managed identity requests).
    direct: reqwest::Client,
    pub(super) base_url: String,
    /// `base_url` parsed once. A Get seat URL is a copy of it with the path
    /// set, which spares parsing scheme, host and port again for every
    /// check (a full parse per request was 4% of a check's CPU). `None`
    /// only if the validated base URL does not parse, in which case the
    /// request is built from the text and fails as it always would.
    base: Option<reqwest::Url>,
    pub(super) telemetry: Telemetry,
}

impl StoreClient {
    /// Builds the HTTP client for `config`.
    ///
    /// # Errors
    /// When the TLS backend cannot be initialised.
    pub fn new(config: &StoreConfig, telemetry: Telemetry) -> Result<StoreClient, reqwest::Error> {
        let mut builder = http_builder(config)?.pool_max_idle_per_host(config.max_concurrency);
        for proxy in config.proxy.proxies()? {
            builder = builder.proxy(proxy);
        }
        let http = builder.build()?;
        Ok(StoreClient {
            http,
            direct: http_builder(config)?.build()?,
            base_url: config.base_url.clone(),
            base: reqwest::Url::parse(&config.base_url).ok(),
            telemetry,
        })
    }

    /// The client for token requests: for a managed identity one that
    /// never uses a proxy, as the identity endpoint is link-local (only the
    /// machine itself can reach it); for the others the Store's, proxy
    /// included, as Entra ID is as far away as the Store.
    pub fn token_http(&self, auth: &crate::config::AuthConfig) -> &reqwest::Client {
        match auth.credential {
            crate::config::Credential::ManagedIdentity => &self.direct,
            _ => &self.http,
        }
    }

    /// The underlying client, shared with the token source so both use one
    /// connection pool and one TLS configuration.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Get seat for one target.
    pub async fn get_seat(
        &self,
        product_id: &str,
        sku_id: &str,
        upn: &str,
        token: &AccessToken,
    ) -> Answer {
        let request = match self.seat_url(product_id, sku_id, upn) {
            Some(url) => self.http.get(url),
            None => self.http.get(format!(
                "{}{}",
                self.base_url,
                seat_path(product_id, sku_id, upn)
            )),
        };
        let started = Instant::now();
        let sent = request
            .header(AUTHORIZATION, token.header_value())
            .header(ACCEPT, "application/json")
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                let failure = transport_failure(&e);
                self.telemetry
                    .observe_get_seat(failure.code, started.elapsed().as_secs_f64());
                return Answer::Failed(failure);
            }
        };
        let status = response.status().as_u16();
        let retry_after = parse_retry_after(response.headers(), SystemTime::now());
        let body = read_body(response).await;
        self.telemetry
            .observe_get_seat(ErrorCode::Status(status), started.elapsed().as_secs_f64());
        match interpret(status, body, retry_after, |b| {
            SeatDetails::decode(b).map_err(|e| e.to_string())
        }) {
            Reply::Body(seat) => Answer::Seat(seat),
            Reply::NotFound(item) => Answer::NotFound(item),
            Reply::Failed(failure) => Answer::Failed(failure),
        }
    }
}

/// What an answered request says, before the caller's own answer type.
pub(crate) enum Reply<T> {
    /// A 2xx whose body decoded.
    Body(T),
    /// A 404, with the item type its body names.
    NotFound(ItemType),
    /// Anything else: inconclusive.
    Failed(Failure),
}

/// Reads an answer the same way for every request (SPEC §4, §5): a 2xx body
/// that does not decode is `decode`, an unreadable one keeps the body
/// read's failure; a 404 is a 404 whatever its body (the item type is a
/// detail, `unknown` when the body cannot be read); any other status is a
/// failure carrying its `Retry-After`.
pub(crate) fn interpret<T>(
    status: u16,
    body: Result<Bytes, Failure>,
    retry_after: Option<Duration>,
    decode: impl FnOnce(&[u8]) -> Result<T, String>,
) -> Reply<T> {
    match (status, body) {
        (200..=299, Ok(body)) => match decode(&body) {
            Ok(value) => Reply::Body(value),
            Err(detail) => Reply::Failed(Failure {
                code: ErrorCode::Decode,
                retry_after: None,
                detail,
            }),
        },
        (200..=299, Err(failure)) => Reply::Failed(failure),
        (404, body) => {
            Reply::NotFound(body.map_or(ItemType::Unknown, |b| ItemType::from_not_found_body(&b)))
        }
        (status, _) => Reply::Failed(Failure {
            code: ErrorCode::Status(status),
            retry_after,
            detail: format!("HTTP {status}"),
        }),
    }
}

impl StoreClient {
    /// The Get seat URL from the pre-parsed base: the same URL as parsing
    /// `base_url` + [`seat_path`] as text.
    fn seat_url(&self, product_id: &str, sku_id: &str, upn: &str) -> Option<reqwest::Url> {
        let base = self.base.as_ref()?;
        let mut path = String::with_capacity(base.path().len() + 64 + upn.len());
        // A base without a path prefix has the path "/".
        path.push_str(base.path().trim_end_matches('/'));
        push_seat_path(&mut path, product_id, sku_id, upn);
        let mut url = base.clone();
        url.set_path(&path);
        Some(url)
    }
}

/// Describes a transport failure by class, without the URL.
pub(crate) fn transport_failure(e: &reqwest::Error) -> Failure {
    let code = if e.is_timeout() {
        ErrorCode::Timeout
    } else if e.is_body() || e.is_decode() {
        ErrorCode::Body
    } else {
        ErrorCode::Connect
    };
    Failure {
        code,
        retry_after: None,
        detail: describe(e),
    }
}

/// The error chain of a reqwest error, without the URL.
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "request timed out".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Reads at most [`MAX_BODY_BYTES`]; a longer body is an error and the rest
/// is left unread (the connection is dropped rather than drained).
pub(crate) async fn read_body(mut response: reqwest::Response) -> Result<Bytes, Failure> {
    let too_large = || Failure {
        code: ErrorCode::Body,
        retry_after: None,
        detail: format!("response body is larger than {MAX_BODY_BYTES} bytes"),
    };
    if response
        .content_length()
        .is_some_and(|n| n > MAX_BODY_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut buf = BytesMut::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(too_large());
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(buf.freeze()),
            Err(e) => {
                let mut failure = transport_failure(&e);
                if failure.code == ErrorCode::Connect {
                    failure.code = ErrorCode::Body;
                }
                return Err(failure);
            }
        }
    }
}

/// `Retry-After` as delay-seconds or an HTTP date, capped at
/// [`MAX_RETRY_AFTER`]; `None` when absent or unreadable.
pub(crate) fn parse_retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let delay = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn segments_are_encoded_so_a_upn_stays_one_segment() {
        assert_eq!(
            seat_path("9NBLGGH4R315", "0016", "alice@contoso.com"),
            "/V1/Inventory/9NBLGGH4R315/0016/Seats/alice@contoso.com"
        );
        assert_eq!(
            seat_path("P", "S", "o'b+r#i?e/n@x.y"),
            "/V1/Inventory/P/S/Seats/o%27b%2Br%23i%3Fe%2Fn@x.y"
        );
        assert_eq!(
            seat_path("P", "S", "a b%@x"),
            "/V1/Inventory/P/S/Seats/a%20b%25@x"
        );
    }

    #[test]
    fn seat_urls_from_the_parsed_base_equal_parsing_the_text() {
        let upns = [
            "alice@contoso.com",
            "o'b+r#i?e/n@x.y",
            "a b%@x",
            "ünï@çødé.example",
            "..@x",
            "%41@x",
        ];
        for base in [
            "http://127.0.0.1:8080",
            "https://bspmts.mp.microsoft.com",
            "https://proxy.example/store/api",
            "http://[::1]:9",
        ] {
            let config = StoreConfig {
                base_url: base.to_owned(),
                timeout: Duration::from_secs(1),
                max_concurrency: 1,
                max_requests_per_second: None,
                max_retries: 0,
                proxy: Default::default(),
                ca_file: None,
            };
            let client = StoreClient::new(&config, Telemetry::new()).unwrap();
            for upn in upns {
                let text = format!("{base}{}", seat_path("9NBLGGH4R315", "0016", upn));
                assert_eq!(
                    client.seat_url("9NBLGGH4R315", "0016", upn).unwrap(),
                    reqwest::Url::parse(&text).unwrap(),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn retry_after_seconds_dates_and_cap() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut h = HeaderMap::new();
        assert_eq!(parse_retry_after(&h, now), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(parse_retry_after(&h, now), Some(Duration::from_secs(7)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("86400"));
        assert_eq!(parse_retry_after(&h, now), Some(MAX_RETRY_AFTER));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&date).unwrap());
        assert_eq!(parse_retry_after(&h, now), Some(Duration::from_secs(30)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&past).unwrap());
        assert_eq!(parse_retry_after(&h, now), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(parse_retry_after(&h, now), None);
    }
}
