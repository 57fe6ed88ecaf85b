//! OpenMetrics as its consumers read it: prometheus_client's strict
//! parser (from the test venv that `scripts/test.sh` creates).

use crate::util::openmetrics::{PROMETHEUS_ACCEPT, get_with, harness_with_errors};
use crate::util::programs::run_python;

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
