//! Soak: thousands of cycles against a Store failing at random must keep
//! memory and the number of exported series flat (issue: bounded
//! everything). Ignored by default because it is long; CI runs it with a
//! short `MSFB_SOAK_CYCLES` (see `.ci/run`):
//!
//! ```sh
//! MSFB_SOAK_CYCLES=2000 cargo test --test tests soak -- --ignored --nocapture
//! ```
//!
//! Two products hold the same users: `P`/`S` checked per user, where seats
//! change and faults hit single checks, and a list-mode product whose seats
//! never change while its listing answers with faults now and then
//! (SPEC §17's page without a seat list among them): it must never show a
//! seat lost.

use std::time::Duration;

use msfb_seat_exporter::fake_store::{Action, FakeSeat, Fault, Match};
use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng as _};

use crate::util::{Harness, P, S, product, users};

/// The list-mode product: its seats stay active all along.
const LISTED: &str = "9NLISTED0001";
const LISTED_SKU: &str = "0001";

/// Resident set size of this process, from /proc.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    pages * 4096
}

fn random_fault(rng: &mut StdRng) -> Action {
    // Rare: a check that times out (the fake config's timeout is 2 s) and a
    // 429. Each costs real time (a timeout per attempt; a 429 halves the
    // poller's request rate, recovering slowly, as tested in `faults`), so
    // they are one fault in a hundred, not one in ten.
    match rng.random_range(0..200) {
        0 => return Action::Delay(Duration::from_secs(3)),
        1 => return Fault::status_retry_after(429, "0"),
        _ => {}
    }
    match rng.random_range(0..14) {
        0 => Fault::status(500),
        1 => Fault::status(503),
        2 => Fault::status_retry_after(502, "0"),
        3 => Fault::status(400),
        4 => Fault::status(409),
        5 => Fault::status(401),
        6 => Action::Drop,
        7 => Action::Malformed,
        8 => Action::Oversized(2 << 20),
        9 => Action::OversizedChunked(2 << 20),
        10 => Action::CutMidBody,
        // SPEC §17: a proxy's 404 page, a state named twice.
        11 => Fault::not_found_body("<html><body>404 Not Found</body></html>"),
        12 => Action::Body(r#"{"state":"Revoked","State":"Active"}"#.into()),
        _ => Action::Body("{\"unexpected\":true}".into()),
    }
}

/// What a listing answers instead of its page, now and then.
fn random_listing_fault(rng: &mut StdRng) -> Action {
    match rng.random_range(0..8) {
        0 => Action::Body(r#"{"seats":null}"#.into()),
        1 => Action::Body("{}".into()),
        2 => Fault::status(500),
        3 => Fault::not_found_body("<html><body>404 Not Found</body></html>"),
        4 => Action::Malformed,
        5 => Action::CutMidBody,
        6 => Action::Drop,
        _ => Action::Body(r#"{"seats":{}}"#.into()),
    }
}

#[tokio::test]
#[ignore = "long; run with --ignored (CI does, with a short MSFB_SOAK_CYCLES)"]
async fn random_faults_keep_memory_and_series_flat() {
    let cycles: usize = std::env::var("MSFB_SOAK_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let seed: u64 = std::env::var("MSFB_SOAK_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20261124);
    let mut rng = StdRng::seed_from_u64(seed);
    let users = users(50);
    let refs: Vec<&str> = users.iter().map(String::as_str).collect();
    let listed = product(&refs).replace(P, LISTED).replace(
        &format!("sku_id = \"{S}\""),
        &format!("sku_id = \"{LISTED_SKU}\""),
    ) + "mode = \"list\"\n";
    let products = format!("{}{listed}", product(&refs));
    let h = Harness::new(&products, "max_retries = 1\nmax_concurrency = 16").await;
    for u in &users {
        h.fake.set_seat(P, S, u, FakeSeat::active());
        h.fake.set_seat(LISTED, LISTED_SKU, u, FakeSeat::active());
    }

    let warmup = (cycles / 5).max(1);
    let mut baseline = None;
    let mut max_series = 0;
    for cycle in 0..cycles {
        h.fake.clear_faults();
        for _ in 0..rng.random_range(0..8) {
            let user = &users[rng.random_range(0..users.len())];
            h.fake.add_fault(Fault::always(
                Match::User(user.clone()),
                random_fault(&mut rng),
            ));
        }
        if rng.random_bool(0.2) {
            h.fake.add_fault(Fault::always(
                Match::AllListings,
                random_listing_fault(&mut rng),
            ));
        }
        if rng.random_bool(0.05) {
            h.fake
                .add_fault(Fault::times(1, Match::Token, Fault::status(500)));
            h.fake.revoke_tokens();
        }
        // Token lifetimes in every number form (SPEC §17), now and then.
        if rng.random_bool(0.05) {
            let forms = [
                serde_json::json!(3600.0),
                serde_json::json!(3599.5),
                serde_json::json!("3600"),
                serde_json::json!(0),
                serde_json::json!(-5),
            ];
            let raw = forms[rng.random_range(0..forms.len())].clone();
            h.fake.set_expires_in_raw(Some(raw));
            h.fake.revoke_tokens();
        }
        let user = &users[rng.random_range(0..users.len())];
        match rng.random_range(0..3) {
            0 => h.fake.set_seat(P, S, user, FakeSeat::active()),
            1 => h.fake.set_seat(P, S, user, FakeSeat::revoked()),
            _ => h.fake.remove_seat(P, S, user),
        }
        let t0 = std::time::Instant::now();
        let rep = h.cycle().await;
        if std::env::var_os("SOAK_DEBUG").is_some() {
            eprintln!("cycle {cycle}: {:?} {:?}", t0.elapsed(), rep.failures);
        }
        let m = h.scrape().await;
        // The listed seats never change: no fault may show one lost.
        for u in &users {
            let active = m.value("msfb_seat_active", &[("product_id", LISTED), ("user", u)]);
            assert_ne!(
                active,
                Some(0.0),
                "cycle {cycle}: {u} shown lost in the listing"
            );
        }
        max_series = max_series.max(m.samples.len());
        if cycle + 1 == warmup {
            baseline = Some((rss_bytes(), m.samples.len()));
        }
        // Let a backed-off token endpoint recover now and then.
        if cycle % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
    }
    let (rss_then, series_then) = baseline.expect("warm-up finished");
    let rss_now = rss_bytes();
    let m = h.scrape().await;
    eprintln!(
        "soak: {cycles} cycles, seed {seed}: RSS {} KiB after warm-up, {} KiB at the end; \
         series {series_then} after warm-up, {} at the end, {max_series} at most",
        rss_then / 1024,
        rss_now / 1024,
        m.samples.len()
    );
    // Series: every target has exactly one series in each per-target family
    // but the assigned timestamp (only while active) and the errors (one
    // per (code, reason) pair seen: 500, 502, 503, 429, 400, 409
    // not_online, 401, connect, timeout, decode, body, 404 seat, 404
    // not_store, token: 14), at the end as after warm-up.
    for family in [
        "msfb_seat_active",
        "msfb_seat_check_success",
        "msfb_seat_last_success_timestamp_seconds",
        "msfb_seat_lost_total",
    ] {
        let n = m.samples.iter().filter(|s| s.name == family).count();
        assert_eq!(n, 2 * users.len(), "{family}: {n} series");
    }
    let errors = m
        .samples
        .iter()
        .filter(|s| s.name == "msfb_seat_check_errors_total")
        .count();
    assert!(errors <= 2 * users.len() * 14, "{errors} error series");
    assert!(
        m.samples.len() <= series_then + 2 * users.len() * 14,
        "{} series at the end, {series_then} after warm-up",
        m.samples.len()
    );
    let per_target_bound = 2 * users.len() * (5 + 14);
    let fixed = m
        .samples
        .iter()
        .filter(|s| !s.labels.contains_key("user"))
        .count();
    assert!(
        max_series <= per_target_bound + fixed,
        "{max_series} series"
    );
    // Memory: flat after warm-up, within allocator noise.
    assert!(
        rss_now <= rss_then + 8 * 1024 * 1024,
        "RSS grew from {} KiB to {} KiB",
        rss_then / 1024,
        rss_now / 1024
    );
}
