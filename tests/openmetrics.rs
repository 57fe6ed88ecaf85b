//! OpenMetrics 1.0.0 by content negotiation (SPEC §14): who gets which
//! format, what OpenMetrics adds (`_created` only where a series appears
//! with its first increment, `# UNIT`, `info`, `# EOF`), gzip for both.

use crate::util::openmetrics::{PROMETHEUS_ACCEPT, get_with, harness_with_errors};
use crate::util::*;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

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
