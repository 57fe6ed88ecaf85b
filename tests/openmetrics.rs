//! OpenMetrics 1.0.0 by content negotiation (SPEC §14): who gets which
//! format, what OpenMetrics adds (`_created` only where a series appears
//! with its first increment, `# UNIT`, `info`, `# EOF`), gzip for both.

use std::io::Read as _;

use axum::body::Body;
use http_body_util::BodyExt as _;
use msfb_seat_exporter::fake_store::{FakeSeat, Fault, Match};
use tower::ServiceExt as _;

use crate::util::*;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

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

#[tokio::test]
async fn each_scraper_gets_the_format_it_prefers() {
    let h = harness_with_errors().await;
    for (who, accept, want) in [
        ("Prometheus", Some(PROMETHEUS_ACCEPT), OPENMETRICS),
        (
            "Prometheus 3",
            Some(
                "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
            ),
            OPENMETRICS,
        ),
        ("curl", Some("*/*"), TEXT),
        (
            "a browser",
            Some(
                "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
            ),
            TEXT,
        ),
        (
            "a q-value tie",
            Some("application/openmetrics-text;q=0.5,text/plain;q=0.5"),
            TEXT,
        ),
        (
            "OpenMetrics ahead by a little",
            Some("text/plain;q=0.5,application/openmetrics-text;q=0.51"),
            OPENMETRICS,
        ),
        (
            "OpenMetrics refused",
            Some("application/openmetrics-text;q=0,*/*"),
            TEXT,
        ),
        ("no Accept", None, TEXT),
    ] {
        let headers: Vec<(&str, &str)> = accept.iter().map(|a| ("accept", *a)).collect();
        let a = get_with(&h.router, "/metrics", &headers).await;
        assert_eq!(a.status, 200, "{who}");
        assert_eq!(a.content_type, want, "{who}");
        let eof = a.body.ends_with("\n# EOF\n");
        assert_eq!(eof, want == OPENMETRICS, "{who}: # EOF only in OpenMetrics");
        // The same samples either way.
        let m = Scrape::parse(&a.body);
        assert_eq!(m.active("alice@contoso.com"), Some(1.0), "{who}");
        assert_eq!(m.errors("bob@contoso.com", "503", ""), Some(1.0), "{who}");
    }
}

#[tokio::test]
async fn openmetrics_adds_created_where_a_series_starts_with_its_first_increment() {
    let h = harness_with_errors().await;
    let a = get_with(&h.router, "/metrics", &[("accept", PROMETHEUS_ACCEPT)]).await;
    let lines: Vec<&str> = a.body.lines().collect();
    let has = |l: &str| lines.contains(&l);
    let starting = |p: &str| lines.iter().filter(|l| l.starts_with(p)).count();
    let labels = format!("product_id=\"{P}\",sku_id=\"{S}\"");

    // Counter families are named without _total; their samples keep it.
    assert!(has("# TYPE msfb_seat_check_errors counter"), "{}", a.body);
    let bob = format!("{labels},user=\"bob@contoso.com\",code=\"503\",reason=\"\"");
    let errors_at = lines
        .iter()
        .position(|l| *l == format!("msfb_seat_check_errors_total{{{bob}}} 1"))
        .expect("bob's error series");
    // Its _created follows it at once, with a plausible Unix time.
    let created = lines[errors_at + 1]
        .strip_prefix(&format!("msfb_seat_check_errors_created{{{bob}}} "))
        .unwrap_or_else(|| panic!("no _created after {}", lines[errors_at]));
    let created: f64 = created.parse().expect("a number");
    assert!(created > 1.7e9, "{created}");
    // carol's 404 series too; one _created per error series.
    assert_eq!(
        starting("msfb_seat_check_errors_created{"),
        starting("msfb_seat_check_errors_total{")
    );
    assert_eq!(starting("msfb_seat_check_errors_total{"), 2);
    // The exporter's own labelled counters and histograms appear with
    // their first increment as well.
    assert_eq!(
        starting("msfb_api_requests_created{"),
        starting("msfb_api_requests_total{")
    );
    assert!(
        starting("msfb_api_requests_created{") >= 3,
        "200, 404, 503 and token"
    );
    assert!(starting("msfb_api_request_duration_seconds_created{") >= 1);

    // Counters exported from the start at 0 get none.
    for family in [
        "msfb_seat_lost",
        "msfb_poll_cycles",
        "msfb_oauth_token_requests",
    ] {
        assert!(starting(&format!("{family}_total")) >= 1, "{family}");
        assert_eq!(starting(&format!("{family}_created")), 0, "{family}");
    }

    // Units where the name ends in one; info families typed as such.
    for line in [
        "# UNIT msfb_seat_last_success_timestamp_seconds seconds",
        "# UNIT msfb_api_request_duration_seconds seconds",
        "# UNIT process_resident_memory_bytes bytes",
        "# TYPE msfb_product info",
        "# TYPE msfb_seat_exporter_build info",
        "# TYPE msfb_seats gauge",
    ] {
        assert!(has(line), "{line} missing from\n{}", a.body);
    }
    assert_eq!(starting("# UNIT msfb_seat_active"), 0);
    assert!(a.body.contains(&format!(
        "msfb_product_info{{{labels},name=\"Contoso Notes\"}} 1\n"
    )));
    // Histogram bounds are floats, as OpenMetrics wants them.
    assert!(
        a.body.contains(
            "msfb_api_request_duration_seconds_bucket{operation=\"get_seat\",le=\"1.0\"} "
        )
    );
    assert!(
        a.body.contains(
            "msfb_api_request_duration_seconds_bucket{operation=\"get_seat\",le=\"+Inf\"} "
        )
    );
    assert_eq!(starting("# EOF"), 1);
    assert_eq!(lines.last(), Some(&"# EOF"));

    // The text format has none of it.
    let text = get_with(&h.router, "/metrics", &[]).await.body;
    for absent in ["_created", "# UNIT", "# EOF", " info\n"] {
        assert!(!text.contains(absent), "{absent} in the text format");
    }
    assert!(text.contains("# TYPE msfb_seat_check_errors_total counter\n"));
}

#[tokio::test]
async fn both_formats_are_gzipped_when_asked() {
    let h = harness_with_errors().await;
    for accept in [PROMETHEUS_ACCEPT, "*/*"] {
        let plain = get_with(&h.router, "/metrics", &[("accept", accept)]).await;
        let zipped = get_with(
            &h.router,
            "/metrics",
            &[("accept", accept), ("accept-encoding", "gzip")],
        )
        .await;
        assert_eq!(plain.encoding, None);
        assert_eq!(zipped.encoding.as_deref(), Some("gzip"), "{accept}");
        assert_eq!(zipped.content_type, plain.content_type);
        // Same families (values such as process metrics may move).
        let types = |body: &str| -> Vec<String> {
            body.lines()
                .filter(|l| l.starts_with("# TYPE"))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(types(&zipped.body), types(&plain.body), "{accept}");
    }
}

#[tokio::test]
async fn shard_metrics_are_always_present() {
    let h = harness_with_errors().await;
    let m = h.scrape().await;
    assert_eq!(m.value("msfb_seat_exporter_shard_index", &[]), Some(0.0));
    assert_eq!(m.value("msfb_seat_exporter_shard_count", &[]), Some(1.0));
}

/// The Python interpreter of the test venv (`scripts/test.sh` creates it
/// under `target/venv` with `prometheus-client` and `kubernetes-validate`).
pub fn venv_python() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("MSFB_TEST_PYTHON") {
        return p.into();
    }
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run `bash scripts/test.sh`, which creates the test venv",
        p.display()
    );
    p
}

/// Runs `script` (under tests/python/) with `input` on stdin; its stdout.
pub fn run_python(script: &str, input: &str) -> String {
    use std::io::Write as _;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let mut child = std::process::Command::new(venv_python())
        .arg(&script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("python ran");
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[tokio::test]
async fn a_strict_openmetrics_parser_reads_every_family() {
    let h = harness_with_errors().await;
    let a = get_with(&h.router, "/metrics", &[("accept", PROMETHEUS_ACCEPT)]).await;
    let parsed: serde_json::Value =
        serde_json::from_str(&run_python("check_openmetrics.py", &a.body)).expect("json");
    let family = |name: &str| {
        parsed
            .get(name)
            .unwrap_or_else(|| panic!("{name} not parsed: {parsed:#}"))
            .clone()
    };
    let errors = family("msfb_seat_check_errors");
    assert_eq!(errors["type"], "counter");
    assert_eq!(
        errors["samples"],
        serde_json::json!([
            "msfb_seat_check_errors_created",
            "msfb_seat_check_errors_total"
        ])
    );
    assert_eq!(
        family("msfb_seat_lost")["samples"],
        serde_json::json!(["msfb_seat_lost_total"])
    );
    assert_eq!(family("msfb_product")["type"], "info");
    assert_eq!(family("msfb_seat_exporter_build")["type"], "info");
    assert_eq!(
        family("msfb_seat_last_success_timestamp_seconds")["unit"],
        "seconds"
    );
    let histogram = family("msfb_api_request_duration_seconds");
    assert_eq!(histogram["type"], "histogram");
    assert_eq!(histogram["unit"], "seconds");
    assert!(
        histogram["samples"]
            .as_array()
            .expect("list")
            .contains(&serde_json::json!(
                "msfb_api_request_duration_seconds_created"
            ))
    );
    assert_eq!(family("msfb_seat_exporter_shard_count")["type"], "gauge");
    // Every family of the text format is there (names as OpenMetrics has them).
    let text = get_with(&h.router, "/metrics", &[]).await.body;
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split(' ').nth(2).expect("name");
        let name = name
            .strip_suffix("_total")
            .or_else(|| name.strip_suffix("_info"))
            .unwrap_or(name);
        assert!(parsed.get(name).is_some(), "{name} missing: {parsed:#}");
    }
}
