//! Scraping with request headers (`Accept`, `Accept-Encoding`) and the
//! scenario the OpenMetrics tests share.

use std::io::Read as _;

use axum::body::Body;
use http_body_util::BodyExt as _;
use msfb_seat_exporter::fake_store::{FakeSeat, Fault, Match};
use tower::ServiceExt as _;

use super::harness::{Harness, P, S, product};

/// Prometheus 2.x's default scrape `Accept` header.
pub const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// An answer: status, content type, content encoding, body (decompressed).
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub encoding: Option<String>,
    pub body: String,
}

/// GET `path` through `router` with request `headers`.
pub async fn get_with(router: &axum::Router, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = http::Request::builder().method("GET").uri(path);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = router
        .clone()
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let header = |name| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().expect("ascii header").to_owned())
    };
    let status = resp.status().as_u16();
    let content_type = header(http::header::CONTENT_TYPE).unwrap_or_default();
    let encoding = header(http::header::CONTENT_ENCODING);
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let body = if encoding.as_deref() == Some("gzip") {
        let mut text = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .expect("valid gzip");
        text
    } else {
        String::from_utf8(bytes.to_vec()).expect("utf-8 body")
    };
    Answer {
        status,
        content_type,
        encoding,
        body,
    }
}

/// A harness after two cycles: alice's seat active, bob's check failing
/// (503, a counter series that appears with its first increment), carol
/// without a seat (404).
pub async fn harness_with_errors() -> Harness {
    let h = Harness::new(
        &product(&["alice@contoso.com", "bob@contoso.com", "carol@contoso.com"]),
        "max_retries = 0",
    )
    .await;
    h.fake
        .set_seat(P, S, "alice@contoso.com", FakeSeat::active());
    h.fake.set_seat(P, S, "bob@contoso.com", FakeSeat::active());
    h.fake.add_user("carol@contoso.com");
    h.cycle().await;
    h.fake.add_fault(Fault::always(
        Match::User("bob@contoso.com".into()),
        Fault::status(503),
    ));
    h.cycle().await;
    h
}
