//! The HTTP side (SPEC §7): `router(site) -> Router` with the landing
//! page, the metrics (`scrape`), the status page, health, readiness and
//! reload; `serve` runs it with connection limits and graceful shutdown,
//! over plain TCP or TLS (`tls`); `auth` checks basic-auth credentials.
//!
//! The endpoints see the running exporter only through [`Site`]: the
//! generation in force, readiness, reload and the exposition. Every handler
//! reads the current generation and never waits for a poll. Scrapes beyond [`MAX_SCRAPES`] at once get a 503 at once rather
//! than queueing (as Prometheus exporters do); `/-/healthy` is outside that
//! limit, and outside authentication, so a scrape storm or a missing password
//! cannot fail a liveness probe. Authentication sits outside the limit too,
//! so a refused request never takes a slot (`throttle` bounds its cost);
//! `conns` keeps idle and stalled connections from taking the rest.

pub mod auth;
pub mod conns;
pub mod pages;
pub mod scrape;
pub mod serve;
pub mod status;
pub mod throttle;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt as _;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::CompressionLevel;
use tower_http::compression::CompressionLayer;

use crate::metrics::format::Format;
use crate::poller::Generation;

/// What the endpoints need from the running exporter, and no more.
pub trait Site: Send + Sync + 'static {
    /// The configuration and target table in force.
    fn generation(&self) -> Arc<Generation>;
    /// `/-/ready`: whether every target has been checked.
    fn is_ready(&self) -> bool;
    /// Re-reads the configuration; the error is the message to show.
    fn reload(&self) -> BoxFuture<'_, Result<(), String>>;
    /// The full exposition in `format`, in chunks of about `chunk` bytes,
    /// handed to `emit` until it returns `false`; whether every chunk was
    /// handed on.
    fn stream_metrics(
        &self,
        chunk: usize,
        format: Format,
        emit: &mut dyn FnMut(String) -> bool,
    ) -> bool;
}

/// The [`Site`] the handlers share.
pub type SharedSite = Arc<dyn Site>;

/// Scrapes (and page views) served at once (SPEC §7).
pub const MAX_SCRAPES: usize = 40;
/// Longest a handler may take before the client gets a 503.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Prometheus text format 0.0.4.
pub const TEXT_FORMAT: &str = crate::metrics::format::TEXT_CONTENT_TYPE;

/// What the listener speaks.
#[derive(Debug, Clone)]
pub enum Transport {
    /// Plain HTTP.
    Plain,
    /// HTTPS only, with the certificate re-read when its files change.
    Tls(tls::TlsAcceptor),
}

impl Transport {
    /// The transport `[web]` asks for. Call before binding, so that a bad
    /// certificate stops the start with a message naming the file.
    ///
    /// # Errors
    /// [`tls::TlsError`] when the certificate or key cannot be used.
    pub fn from_config(web: &crate::config::WebConfig) -> Result<Transport, tls::TlsError> {
        match &web.tls {
            None => Ok(Transport::Plain),
            Some(files) => Ok(Transport::Tls(tls::TlsAcceptor::new(files)?)),
        }
    }
}

/// Serves `site`'s endpoints on `listener` until `shutdown` fires, then
/// lets open requests finish (bounded by [`serve::Limits::shutdown_grace`]).
pub async fn run(
    site: impl Site,
    listener: tokio::net::TcpListener,
    transport: Transport,
    shutdown: CancellationToken,
) {
    let site: SharedSite = Arc::new(site);
    if let Transport::Tls(acceptor) = &transport {
        // Certificates and TLS settings follow reloads of the configuration.
        let source = Arc::clone(&site);
        acceptor.follow(move || source.generation().config.web.tls.clone());
    }
    let service = serve::hyper_service(router_shared(site));
    let limits = serve::Limits::default();
    let shutdown = shutdown.cancelled_owned();
    match transport {
        Transport::Plain => serve::serve(listener, serve::Plain, service, limits, shutdown).await,
        Transport::Tls(acceptor) => {
            serve::serve(listener, acceptor, service, limits, shutdown).await;
        }
    }
}

/// Takes one of the [`MAX_SCRAPES`] slots for the whole life of a request,
/// its body included, or answers 503 at once when none is free. The slot
/// travels with the response body and is freed when the last byte has gone
/// out or the client has gone: a limit that ended with the handler would let
/// clients that stop reading hold any number of rendered pages.
async fn hold_slot(
    State(slots): State<std::sync::Arc<tokio::sync::Semaphore>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let Ok(slot) = slots.try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many concurrent requests\n",
        )
            .into_response();
    };
    let (parts, body) = next.run(request).await.into_parts();
    let body = body.into_data_stream().map(move |chunk| {
        let _held = &slot;
        chunk
    });
    Response::from_parts(parts, axum::body::Body::from_stream(body))
}

/// Builds the router for `site`.
pub fn router(site: impl Site) -> Router {
    router_shared(Arc::new(site))
}

/// [`router`] for a site that is already shared.
fn router_shared(site: SharedSite) -> Router {
    let auth = auth::AuthState {
        site: Arc::clone(&site),
        cache: Arc::default(),
        throttle: Arc::default(),
    };
    // Layers wrap what is above them: authentication runs outside the
    // concurrency limit, so a refused request never takes a slot (guessing
    // is throttled in `auth` instead). One semaphore for every route of
    // this router (a per-route limit would make one per route).
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_SCRAPES));
    let limited = Router::new()
        .route("/", get(pages::landing))
        .route("/status", {
            let cache = Arc::new(status::PlanCache::default());
            get(move |site, query| status::status(site, query, Arc::clone(&cache)))
        })
        .route("/-/ready", get(ready))
        .route("/-/reload", axum::routing::post(reload).put(reload))
        .fallback({
            let scrapes = Arc::new(scrape::Scrapes::default());
            move |State(site): State<SharedSite>, request| {
                scrape::metrics_or_404(site, Arc::clone(&scrapes), request)
            }
        })
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|_: tower::BoxError| async move {
                    (StatusCode::SERVICE_UNAVAILABLE, "request timed out\n")
                }))
                .timeout(REQUEST_TIMEOUT),
        )
        .layer(axum::middleware::from_fn_with_state(slots, hold_slot))
        .layer(axum::middleware::from_fn_with_state(auth, auth::require));
    Router::new()
        .route("/-/healthy", get(|| async { "OK\n" }))
        .merge(limited)
        // Fastest: a scrape is mostly repeated label text, which even the
        // fastest level shrinks about 30-fold, at a fraction of the CPU of
        // the default level (measured by scripts/bench.sh).
        .layer(
            CompressionLayer::new()
                .gzip(true)
                .quality(CompressionLevel::Fastest),
        )
        // Outermost, so that every answer has them: 401, 404, 503 too.
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&site),
            add_headers,
        ))
        .with_state(site)
}

/// Adds the configured headers (`http_server_config.headers` of the web
/// configuration file, re-read on reload) to every answer.
async fn add_headers(
    State(site): State<SharedSite>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let generation = site.generation();
    let mut response = next.run(request).await;
    for (name, value) in &generation.config.web.headers {
        // Both were checked when the configuration was loaded.
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            header::HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

async fn ready(State(site): State<SharedSite>) -> Response {
    if site.is_ready() {
        return (StatusCode::OK, "ready\n").into_response();
    }
    let generation = site.generation();
    let checked = generation
        .table
        .iter()
        .filter(|(_, t)| t.state().last_check_at.is_some())
        .count();
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "not ready: {checked} of {} targets checked\n",
            generation.table.len()
        ),
    )
        .into_response()
}

async fn reload(State(site): State<SharedSite>) -> Response {
    match site.reload().await {
        Ok(()) => (StatusCode::OK, "configuration reloaded\n").into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    //! The router as a service, without a socket: the slot limit, the
    //! metrics path and readiness, on tokio's paused clock. The site is a
    //! real exporter whose one target was never checked (no cycle runs, so
    //! no request leaves).

    use axum::body::Body;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    use super::*;
    use crate::config;
    use crate::exporter::{Exporter, Options};

    /// An exporter with one target, never checked; also the generation
    /// behind `scrape`'s test site.
    pub(in crate::web) fn one_target_exporter() -> Exporter {
        let config = config::for_tests(
            "[[products]]\nproduct_id = \"P\"\nsku_id = \"S\"\nusers = [\"a@x.y\"]\n",
        );
        Exporter::new(config, Options::default()).expect("exporter")
    }

    fn router() -> Router {
        super::router(one_target_exporter())
    }

    async fn send(router: &Router, method: &str, path: &str) -> Response {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .expect("request");
        router.clone().oneshot(request).await.expect("infallible")
    }

    async fn text(response: Response) -> String {
        let body = response.into_body().collect().await.expect("body");
        String::from_utf8(body.to_bytes().to_vec()).expect("utf-8")
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_is_held_until_the_body_is_gone_and_health_needs_none() {
        let router = router();
        let mut held = Vec::new();
        for _ in 0..MAX_SCRAPES {
            let response = send(&router, "GET", "/").await;
            assert_eq!(response.status(), StatusCode::OK);
            held.push(response);
        }
        let refused = send(&router, "GET", "/metrics").await;
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(text(refused).await, "too many concurrent requests\n");
        let healthy = send(&router, "GET", "/-/healthy").await;
        assert_eq!(healthy.status(), StatusCode::OK);
        // One page read to its end and one dropped unread free two slots.
        let read = held.pop().expect("held");
        assert!(text(read).await.contains("msfb_seat_exporter"));
        drop(held.pop());
        for _ in 0..2 {
            let served = send(&router, "GET", "/-/ready").await;
            assert_ne!(served.status(), StatusCode::OK, "not ready yet");
            held.push(served);
        }
        let refused = send(&router, "GET", "/-/ready").await;
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(text(refused).await, "too many concurrent requests\n");
    }

    #[tokio::test(start_paused = true)]
    async fn metrics_are_served_on_their_path_only_and_by_get() {
        let router = router();
        let metrics = send(&router, "GET", "/metrics").await;
        assert_eq!(metrics.status(), StatusCode::OK);
        assert_eq!(metrics.headers()[header::CONTENT_TYPE], TEXT_FORMAT);
        assert!(text(metrics).await.contains("msfb_poll_cycles_total 0\n"));
        let other = send(&router, "GET", "/metricsx").await;
        assert_eq!(other.status(), StatusCode::NOT_FOUND);
        let posted = send(&router, "POST", "/metrics").await;
        assert_eq!(posted.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    /// A fresh router streams its first scrape and renders the next whole
    /// (`scrape`): the two must be the same answer, in every format, gzipped
    /// or not, and to HEAD, but for the process' own samples (memory, open
    /// files), which move between any two scrapes.
    #[tokio::test(start_paused = true)]
    async fn a_scrape_rendered_whole_answers_as_one_streamed() {
        let openmetrics = "application/openmetrics-text; version=1.0.0";
        for (method, accept, encoding) in [
            ("GET", "text/plain", "identity"),
            ("GET", openmetrics, "identity"),
            ("GET", "text/plain", "gzip"),
            ("GET", openmetrics, "gzip"),
            ("HEAD", "text/plain", "identity"),
        ] {
            let router = router();
            let mut answers = Vec::new();
            for _ in 0..2 {
                let request = Request::builder()
                    .method(method)
                    .uri("/metrics")
                    .header(header::ACCEPT, accept)
                    .header(header::ACCEPT_ENCODING, encoding)
                    .body(Body::empty())
                    .expect("request");
                let response = router.clone().oneshot(request).await.expect("infallible");
                let status = response.status();
                let headers = response.headers().clone();
                let body = response.into_body().collect().await.expect("body");
                let mut text = String::new();
                if encoding == "gzip" {
                    let bytes = body.to_bytes();
                    std::io::Read::read_to_string(
                        &mut flate2::read::GzDecoder::new(&bytes[..]),
                        &mut text,
                    )
                    .expect("gzip");
                } else {
                    text = String::from_utf8(body.to_bytes().to_vec()).expect("utf-8");
                }
                let own: String = text
                    .lines()
                    .filter(|line| !line.starts_with("process_"))
                    .map(|line| format!("{line}\n"))
                    .collect();
                answers.push((status, headers, own));
            }
            let case = format!("{method} {accept} {encoding}");
            assert_eq!(answers[0], answers[1], "{case}");
            let (status, headers, text) = &answers[0];
            assert_eq!(*status, StatusCode::OK, "{case}");
            let gzip = headers.get(header::CONTENT_ENCODING).map(|v| v.as_bytes());
            assert_eq!(gzip, (encoding == "gzip").then_some(&b"gzip"[..]), "{case}");
            if method == "HEAD" {
                assert_eq!(text, "", "{case}");
            } else {
                assert!(text.contains("\nmsfb_seats{"), "{case}");
                assert_eq!(text.ends_with("# EOF\n"), accept == openmetrics, "{case}");
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn readiness_says_how_many_targets_are_checked() {
        let response = send(&router(), "GET", "/-/ready").await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(text(response).await, "not ready: 0 of 1 targets checked\n");
    }
}
