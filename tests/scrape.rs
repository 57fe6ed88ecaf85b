//! The exposition as a whole: a golden file for the seat families, and the
//! presence and shape of every metric SPEC §6 names; scrapes under load and
//! while a poll hangs (SPEC §10).

use msfb_seat_exporter::fake_store::{FakeSeat, Fault, Match};

use crate::util::{Harness, P, S, Scrape, product, testdata};

/// Keeps the families derived from the target table; replaces the values of
/// wall-clock timestamps so the text is stable.
fn seat_families(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let name = line
            .trim_start_matches("# HELP ")
            .trim_start_matches("# TYPE ")
            .split(['{', ' '])
            .next()
            .unwrap_or("");
        let keep = name.starts_with("msfb_seat_") && !name.starts_with("msfb_seat_exporter")
            || name == "msfb_seats"
            || name == "msfb_product_info";
        if !keep {
            continue;
        }
        let wall_clock = name == "msfb_seat_last_success_timestamp_seconds"
            || name == "msfb_seat_oldest_success_timestamp_seconds";
        if wall_clock && !line.starts_with('#') {
            let (series, _) = line.rsplit_once(' ').expect("sample");
            out.push_str(series);
            out.push_str(" <timestamp>\n");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[tokio::test]
async fn golden_scrape() {
    golden_scenario("", "expected-metrics.prom").await;
}

/// The same scenario in the compact profile: per target only
/// `msfb_seat_active` and the error counters, the rest per product.
#[tokio::test]
async fn golden_scrape_compact() {
    golden_scenario(
        "\n[metrics]\nper_target = \"compact\"\n",
        "expected-metrics-compact.prom",
    )
    .await;
}

/// Six users of one product and one of another, a loss and a failing
/// check, with `config` appended to the configuration; compares the seat
/// families with the golden file `golden`.
async fn golden_scenario(config: &str, golden: &str) {
    let users = [
        "alice@contoso.com",
        "bob@contoso.com",
        "carol@contoso.com",
        "dave@contoso.com",
        "mallory@contoso.com",
        "quote\"back\\slash@contoso.com",
    ];
    let products = format!(
        "{}\n[[products]]\nproduct_id = \"9WZDNCRFJ3PS\"\nsku_id = \"0010\"\nusers = [\"alice@contoso.com\"]\n{config}",
        product(&users)
    );
    let h = Harness::new(&products, "max_retries = 0").await;
    h.fake
        .set_seat(P, S, "alice@contoso.com", FakeSeat::active());
    h.fake.set_seat(P, S, "bob@contoso.com", FakeSeat::active());
    h.fake
        .set_seat(P, S, "carol@contoso.com", FakeSeat::revoked());
    h.fake.add_user("dave@contoso.com");
    h.fake.set_seat(P, S, users[5], FakeSeat::active());
    h.fake.add_product("9WZDNCRFJ3PS", "0010");
    h.cycle().await;
    // bob loses his seat; alice's check fails; carol is fine.
    h.lose_and_fail("bob@contoso.com", "alice@contoso.com")
        .await;

    let (status, body) = h.get("/metrics").await;
    assert_eq!(status, 200);
    let got = seat_families(&body);
    let path = testdata(golden);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).expect("write golden file");
    }
    let want = std::fs::read_to_string(&path).expect("golden file");
    assert_eq!(
        got, want,
        "run with UPDATE_GOLDEN=1 to accept a deliberate change"
    );
}

#[tokio::test]
async fn every_spec_metric_is_exposed_with_help_and_type() {
    let h = Harness::new(&product(&["alice@contoso.com"]), "").await;
    h.fake
        .set_seat(P, S, "alice@contoso.com", FakeSeat::active());
    h.cycle().await;
    let m = h.scrape().await;
    for (name, kind) in [
        ("msfb_seat_active", "gauge"),
        ("msfb_seat_check_success", "gauge"),
        ("msfb_seat_last_success_timestamp_seconds", "gauge"),
        ("msfb_seat_assigned_timestamp_seconds", "gauge"),
        ("msfb_seat_lost_total", "counter"),
        ("msfb_seats", "gauge"),
        ("msfb_product_info", "gauge"),
        ("msfb_api_requests_total", "counter"),
        ("msfb_api_request_duration_seconds", "histogram"),
        ("msfb_poll_cycles_total", "counter"),
        ("msfb_poll_cycle_duration_seconds", "gauge"),
        ("msfb_poll_last_cycle_end_timestamp_seconds", "gauge"),
        ("msfb_oauth_token_requests_total", "counter"),
        ("msfb_oauth_token_expiry_timestamp_seconds", "gauge"),
        ("msfb_seat_exporter_build_info", "gauge"),
        ("msfb_seat_exporter_config_last_reload_successful", "gauge"),
        (
            "msfb_seat_exporter_config_last_reload_success_timestamp_seconds",
            "gauge",
        ),
        ("process_resident_memory_bytes", "gauge"),
    ] {
        assert!(
            m.text.contains(&format!("# TYPE {name} {kind}\n")),
            "missing TYPE of {name}"
        );
        assert!(
            m.text.contains(&format!("# HELP {name} ")),
            "missing HELP of {name}"
        );
    }
    for cached in ["msfb_seat_active", "msfb_seats", "msfb_seat_lost_total"] {
        let help = m
            .text
            .lines()
            .find(|l| l.starts_with(&format!("# HELP {cached} ")))
            .expect("help line");
        assert!(help.contains("not fetched at scrape time"), "{help}");
    }
    assert_eq!(m.value("msfb_poll_cycles_total", &[]), Some(1.0));
    assert_eq!(m.api("get_seat", "200"), Some(1.0));
    assert_eq!(m.api("token", "200"), Some(1.0));
    let info = m.find("msfb_seat_exporter_build_info", &[]);
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].labels["version"], env!("CARGO_PKG_VERSION"));
    assert!(info[0].labels.contains_key("revision"));
    assert!(info[0].labels.contains_key("rustc_version"));
    assert_eq!(
        m.value("msfb_seat_exporter_config_last_reload_successful", &[]),
        Some(1.0)
    );
}

#[tokio::test]
async fn targets_have_no_seat_series_before_their_first_conclusive_check() {
    let h = Harness::new(&product(&["alice@contoso.com"]), "max_retries = 0").await;
    let m = h.scrape().await;
    assert_eq!(m.active("alice@contoso.com"), None);
    assert_eq!(m.success("alice@contoso.com"), None);
    assert_eq!(m.value("msfb_seats", &[("state", "unknown")]), Some(1.0));
    // An inconclusive first check still creates no seat series.
    h.fake
        .add_fault(Fault::always(Match::AllSeats, Fault::status(500)));
    h.cycle().await;
    let m = h.scrape().await;
    assert_eq!(m.active("alice@contoso.com"), None);
    assert_eq!(m.success("alice@contoso.com"), Some(0.0));
    assert_eq!(m.value("msfb_seats", &[("state", "unknown")]), Some(1.0));
}

#[tokio::test]
async fn metrics_are_gzipped_when_asked() {
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    let h = Harness::new(&product(&["alice@contoso.com"]), "").await;
    let router = msfb_seat_exporter::web::router(h.exporter.clone());
    let req = http::Request::get("/metrics")
        .header("accept-encoding", "gzip")
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = router.oneshot(req).await.unwrap();
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&bytes[..2], &[0x1f, 0x8b]);
}

/// A scrape is streamed in chunks: a scraper that stops reading holds only
/// its own scrape, never another's, and a body read later is whole.
#[tokio::test]
async fn a_scraper_that_stops_reading_delays_no_other() {
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    let users: Vec<String> = (0..10_000)
        .map(|i| format!("user{i:05}@contoso.com"))
        .collect();
    let products = format!(
        "[[products]]\nproduct_id = \"{P}\"\nsku_id = \"{S}\"\nusers_file = \"users.txt\"\n"
    );
    let h = Harness::with_files(&products, "", &[("users.txt", &users.join("\n"))]).await;
    let get = || {
        http::Request::get("/metrics")
            .body(axum::body::Body::empty())
            .unwrap()
    };
    // The first scraper takes the headers and then reads nothing; its
    // render waits with a few chunks in flight.
    let stalled = h.router.clone().oneshot(get()).await.unwrap();
    assert_eq!(stalled.status(), 200);
    // Meanwhile a whole scrape goes through (the guard only turns a
    // deadlock into a failure; it measures nothing).
    let other = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        let resp = h.router.clone().oneshot(get()).await.unwrap();
        resp.into_body().collect().await.unwrap().to_bytes()
    })
    .await
    .expect("the second scrape finished while the first was stalled");
    let other = String::from_utf8(other.to_vec()).unwrap();
    assert!(other.len() > 500_000, "{} bytes", other.len());
    // The stalled body, read now, is complete: the same seat families.
    let late = stalled.into_body().collect().await.unwrap().to_bytes();
    let late = String::from_utf8(late.to_vec()).unwrap();
    assert_eq!(seat_families(&late), seat_families(&other));
    assert_eq!(
        Scrape::parse(&late).find("msfb_seat_lost_total", &[]).len(),
        10_000
    );
}

/// The 40-request limit counts a request until its body is sent: clients
/// that take the headers and stop reading hold their slots (and with them
/// the memory of their pages), so the 41st is refused; once they go, the
/// slots are free again.
#[tokio::test]
async fn an_unread_body_keeps_its_slot_until_it_is_dropped() {
    use tower::ServiceExt as _;
    let h = Harness::new(&product(&["a@contoso.com"]), "").await;
    h.cycle().await;
    let get = |path: &str| {
        http::Request::get(path)
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let mut unread = Vec::new();
    for i in 0..40 {
        let path = ["/metrics", "/status", "/status?format=json", "/"][i % 4];
        let response = h.router.clone().oneshot(get(path)).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        unread.push(response);
    }
    assert_eq!(h.get("/metrics").await.0, 503);
    assert_eq!(h.get("/-/healthy").await.0, 200);
    drop(unread.pop());
    assert_eq!(h.get("/metrics").await.0, 200);
    drop(unread);
    for path in ["/metrics", "/status", "/"] {
        assert_eq!(h.get(path).await.0, 200, "{path}");
    }
}

/// SPEC §10: a scrape never waits for a poll. The daemon's first cycle
/// hangs (every Get seat is delayed 30 s, within a 45 s timeout) while
/// /metrics and /-/healthy are asked with a 2 s client timeout: they answer,
/// and the metrics show that the cycle had not finished.
#[tokio::test]
async fn scrapes_and_health_checks_answer_while_every_check_hangs() {
    use std::time::Duration;

    use msfb_seat_exporter::fake_store::Action;

    use crate::util::binary::{Format, Running};

    let edit = |config: String| {
        config
            .replace("timeout = \"2s\"", "timeout = \"45s\"")
            .replace("interval = \"10s\"", "interval = \"2m\"")
            .replace("[store]\n", "[store]\nmax_retries = 0\n")
    };
    let running = Running::start_with(Format::Logfmt, "info", "", edit, |fake| {
        for u in ["alice@contoso.com", "bob@contoso.com", "carol@contoso.com"] {
            fake.set_seat(P, S, u, FakeSeat::active());
        }
        fake.add_fault(Fault::always(
            Match::AllSeats,
            Action::Delay(Duration::from_secs(30)),
        ));
    })
    .await;
    let started = running.wait_for("msfb_seat_exporter started").await;
    let base = format!("http://{}", started["address"]);
    // Every check of the first cycle is waiting on the Store.
    running.wait_for_seat_requests(3).await;
    // The timeout is the assertion: a scrape that waited for the poll
    // would take most of 30 s.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let resp = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("/metrics answers while checks are in flight");
    assert_eq!(resp.status(), 200);
    let m = Scrape::parse(&resp.text().await.expect("the whole body within 2 s"));
    assert_eq!(
        m.find("msfb_seat_exporter_build_info", &[]).len(),
        1,
        "{}",
        m.text
    );
    // Taken before the first cycle ended: no conclusive answer yet.
    assert!(m.find("msfb_seat_active", &[]).is_empty(), "{}", m.text);
    let resp = http
        .get(format!("{base}/-/healthy"))
        .send()
        .await
        .expect("/-/healthy answers while checks are in flight");
    assert_eq!(resp.status(), 200);
    // Still the same cycle: no check was answered in the meantime.
    assert_eq!(running.fake.counts().seat_requests, 3);
    let (code, lines) = running.stop().await;
    assert_eq!(code, Some(0), "{lines:#?}");
}
