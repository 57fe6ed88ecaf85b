//! The Store client and its one Get seat request (SPEC §4).
//!
//! One call is exactly one HTTP request, never retried: what to do with an
//! answer (retry, refresh the token, give up) is the poller's decision
//! (SPEC §5). The request goes through `http::exchange`, which bounds,
//! counts and classifies every answer alike.

use std::sync::Arc;
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{ACCEPT, AUTHORIZATION};

use super::auth::AccessToken;
use super::http::{Answer, exchange, interpret};
use super::wire::SeatDetails;
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

/// A client with a connection pool as large as the concurrency and the
/// proxies of `config`.
fn pooled_client(config: &StoreConfig) -> Result<reqwest::Client, reqwest::Error> {
    let mut builder = http_builder(config)?.pool_max_idle_per_host(config.max_concurrency);
    for proxy in config.proxy.proxies()? {
        builder = builder.proxy(proxy);
    }
    builder.build()
}

/// The HTTP side of the Store API: a pooled client with timeouts.
#[derive(Clone)]
pub struct StoreClient {
    // Visible to `list`, which adds the paged calls beside Get seat.
    pub(super) http: reqwest::Client,
    /// One client (and so one connection pool) per poll lane
    /// (`poller::lanes`), the first being `http`: a check on a lane then
    /// uses only connections whose tasks run on that lane's thread, instead
    /// of waking another lane for every request.
    lanes: Arc<[reqwest::Client]>,
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
    /// What a 404 that is not the Store's JSON means (`[store] non_json_404`).
    pub(super) non_json_404: crate::config::NonJson404,
}

impl StoreClient {
    /// Builds the HTTP client for `config`.
    ///
    /// # Errors
    /// When the TLS backend cannot be initialised.
    pub fn new(config: &StoreConfig, telemetry: Telemetry) -> Result<StoreClient, reqwest::Error> {
        StoreClient::with_lanes(config, telemetry, 1)
    }

    /// [`new`](Self::new) with a client for each of `lanes` poll lanes
    /// (at least one); see [`for_lane`](Self::for_lane).
    ///
    /// # Errors
    /// When the TLS backend cannot be initialised.
    pub fn with_lanes(
        config: &StoreConfig,
        telemetry: Telemetry,
        lanes: usize,
    ) -> Result<StoreClient, reqwest::Error> {
        let clients = (0..lanes.max(1))
            .map(|_| pooled_client(config))
            .collect::<Result<Arc<[_]>, _>>()?;
        Ok(StoreClient {
            http: clients[0].clone(),
            lanes: clients,
            direct: http_builder(config)?.build()?,
            base_url: config.base_url.clone(),
            base: reqwest::Url::parse(&config.base_url).ok(),
            telemetry,
            non_json_404: config.non_json_404,
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

    /// This client for the checks that run on poll lane `lane`: the same
    /// configuration, telemetry and base URL, with that lane's connection
    /// pool.
    pub fn for_lane(&self, lane: usize) -> StoreClient {
        StoreClient {
            http: self.lanes[lane % self.lanes.len()].clone(),
            ..self.clone()
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
    ) -> Answer<SeatDetails> {
        let request = match self.seat_url(product_id, sku_id, upn) {
            Some(url) => self.http.get(url),
            None => self.http.get(format!(
                "{}{}",
                self.base_url,
                seat_path(product_id, sku_id, upn)
            )),
        };
        let request = request
            .header(AUTHORIZATION, token.header_value())
            .header(ACCEPT, "application/json");
        let sent = exchange(request, |code, seconds| {
            self.telemetry.observe_get_seat(code, seconds);
        })
        .await;
        interpret(sent, self.non_json_404, |b| {
            SeatDetails::decode(b).map_err(|e| e.to_string())
        })
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[tokio::test]
    async fn each_lane_has_its_own_connection_pool() {
        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}".to_vec();
        let (url, accepted) = crate::store::canned_server(answer).await;
        let config = StoreConfig::for_tests(&url);
        for (lanes, connections) in [(1, 1), (2, 2), (3, 3)] {
            let before = accepted.load(std::sync::atomic::Ordering::SeqCst);
            let client = StoreClient::with_lanes(&config, Telemetry::new(), lanes).unwrap();
            // One request after another: a lane reuses its idle connection,
            // and lane 4 is lane 4 % lanes.
            for lane in 0..5 {
                let answer = client.for_lane(lane).http().get(&url).send().await.unwrap();
                assert_eq!(answer.text().await.unwrap(), "{}");
            }
            let opened = accepted.load(std::sync::atomic::Ordering::SeqCst) - before;
            assert_eq!(opened, connections, "{lanes} lanes");
        }
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
            let config = StoreConfig::for_tests(base);
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
}
