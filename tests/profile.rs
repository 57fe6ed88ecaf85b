//! Metric profiles (`[metrics] per_target`): the compact profile's
//! per-product families follow checks, losses and outages as the full
//! profile's per-target ones do; a reload switches the profile for the next
//! scrape; the status page shows every target in detail either way.

use msfb_seat_exporter::fake_store::{FakeSeat, Fault, Match};

use crate::util::{ALICE, BOB, CAROL, Harness, P, S, Scrape, product};

/// The `[metrics]` table that selects the compact profile.
const COMPACT: &str = "\n[metrics]\nper_target = \"compact\"\n";

/// Per-target families only the full profile exports.
const FULL_ONLY: [&str; 4] = [
    "msfb_seat_check_success",
    "msfb_seat_last_success_timestamp_seconds",
    "msfb_seat_assigned_timestamp_seconds",
    "msfb_seat_lost_total",
];

/// `(product_id, sku_id)` labels of the default product.
const PRODUCT: [(&str, &str); 2] = [("product_id", P), ("sku_id", S)];

/// alice and bob hold seats, carol's checks always fail (503, not
/// retried).
async fn harness(metrics: &str) -> Harness {
    let h = Harness::new(
        &format!("{}{metrics}", product(&[ALICE, BOB, CAROL])),
        "max_retries = 0",
    )
    .await;
    h.fake.set_seat(P, S, ALICE, FakeSeat::active());
    h.fake.set_seat(P, S, BOB, FakeSeat::active());
    h.fake
        .add_fault(Fault::always(Match::User(CAROL.into()), Fault::status(503)));
    h
}

/// Whether `m` has a per-target sample of `name` (one with a `user` label).
fn per_target(m: &Scrape, name: &str) -> bool {
    m.find(name, &[])
        .iter()
        .any(|s| s.labels.contains_key("user"))
}

/// The compact profile's per-product values: failing checks, oldest latest
/// success, losses.
fn compact_values(m: &Scrape) -> (Option<f64>, Option<f64>, Option<f64>) {
    (
        m.value("msfb_seat_checks_failing", &PRODUCT),
        m.value("msfb_seat_oldest_success_timestamp_seconds", &PRODUCT),
        m.value("msfb_seat_lost_total", &PRODUCT),
    )
}

#[tokio::test]
async fn compact_follows_checks_losses_and_outages_per_product() {
    let h = harness(COMPACT).await;
    // Before any check: no seat known, no success, losses present at 0.
    let m = h.scrape().await;
    assert_eq!(
        compact_values(&m),
        (Some(0.0), None, Some(0.0)),
        "{}",
        m.text
    );
    assert!(m.find("msfb_seat_active", &[]).is_empty());

    let before = now();
    h.cycle().await;
    let m = h.scrape().await;
    assert_eq!(m.active(ALICE), Some(1.0));
    assert_eq!(m.active(BOB), Some(1.0));
    assert_eq!(m.active(CAROL), None, "never conclusive");
    assert_eq!(m.errors(CAROL, "503", ""), Some(1.0));
    for family in FULL_ONLY {
        assert!(!per_target(&m, family), "{family} per target:\n{}", m.text);
    }
    let (failing, oldest, lost) = compact_values(&m);
    assert_eq!((failing, lost), (Some(1.0), Some(0.0)));
    let oldest = oldest.expect("alice and bob have succeeded");
    assert!(oldest >= before.floor() && oldest <= now(), "{oldest}");

    // The Store revokes bob's seat: one loss, counted for the product.
    h.fake.remove_seat(P, S, BOB);
    h.cycle().await;
    let m = h.scrape().await;
    assert_eq!(m.active(BOB), Some(0.0));
    assert_eq!(m.errors(BOB, "404", "seat"), Some(1.0));
    let (failing, newer, lost) = compact_values(&m);
    assert_eq!((failing, lost), (Some(1.0), Some(1.0)));
    assert!(newer.unwrap() > oldest, "a second success moves it on");

    // An outage: every check fails. The seats, the losses and the oldest
    // success stay; the failing checks and error counters move.
    h.fake
        .add_fault(Fault::always(Match::AllSeats, Fault::status(500)));
    h.cycle().await;
    let m = h.scrape().await;
    assert_eq!(m.active(ALICE), Some(1.0));
    assert_eq!(m.active(BOB), Some(0.0));
    assert_eq!(m.errors(ALICE, "500", ""), Some(1.0));
    assert_eq!(compact_values(&m), (Some(3.0), newer, Some(1.0)));
}

#[tokio::test]
async fn a_reload_switches_the_profile_for_the_next_scrape() {
    let h = harness("").await;
    h.cycle().await;
    h.fake.remove_seat(P, S, BOB);
    h.cycle().await;
    let full = h.scrape().await;
    for family in FULL_ONLY {
        assert!(
            per_target(&full, family),
            "{family} missing:\n{}",
            full.text
        );
    }
    assert_eq!(full.find("msfb_seat_checks_failing", &[]), Vec::<&_>::new());
    let bob_lost = [("user", BOB)];
    assert_eq!(full.value("msfb_seat_lost_total", &bob_lost), Some(1.0));

    // To compact, without a poll in between: the per-target families are
    // gone from the very next scrape, the per-product ones are there, and
    // the loss that happened under the full profile is counted.
    h.write_config(
        &format!("{}{COMPACT}", product(&[ALICE, BOB, CAROL])),
        "max_retries = 0",
    );
    assert_eq!(h.request("POST", "/-/reload").await.0, 200);
    let compact = h.scrape().await;
    for family in FULL_ONLY {
        assert!(!per_target(&compact, family), "{family} after the switch");
    }
    let (failing, oldest, lost) = compact_values(&compact);
    assert_eq!((failing, lost), (Some(1.0), Some(1.0)));
    assert!(oldest.is_some());
    assert_eq!(compact.active(BOB), Some(0.0));
    assert_eq!(compact.errors(CAROL, "503", ""), Some(2.0));
    assert_eq!(
        compact.text.matches("# TYPE msfb_seat_lost_total ").count(),
        1
    );

    // And back: the per-target series return with their values, the
    // per-product ones are gone.
    h.write_config(&product(&[ALICE, BOB, CAROL]), "max_retries = 0");
    assert_eq!(h.request("POST", "/-/reload").await.0, 200);
    let back = h.scrape().await;
    assert_eq!(back.value("msfb_seat_lost_total", &bob_lost), Some(1.0));
    assert_eq!(back.success(CAROL), Some(0.0));
    let lost = back.find("msfb_seat_lost_total", &[]);
    assert!(
        lost.iter().all(|s| s.labels.contains_key("user")),
        "{lost:?}"
    );
    for family in [
        "msfb_seat_checks_failing",
        "msfb_seat_oldest_success_timestamp_seconds",
    ] {
        assert!(
            back.find(family, &[]).is_empty(),
            "{family} after the switch back"
        );
    }
}

#[tokio::test]
async fn the_status_page_shows_every_target_in_detail_in_compact() {
    let h = harness(COMPACT).await;
    h.cycle().await;
    h.fake.remove_seat(P, S, BOB);
    h.cycle().await;

    let (status, json) = h.get("/status?format=json").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let targets = v["targets"].as_array().unwrap();
    let by_user = |u: &str| {
        targets
            .iter()
            .find(|t| t["user"] == u)
            .unwrap_or_else(|| panic!("{u} not in {json}"))
    };
    assert_eq!(targets.len(), 3);
    let bob = by_user(BOB);
    assert_eq!(bob["state"], "inactive");
    assert_eq!(bob["lost_total"], 1);
    assert_eq!(bob["last_error"]["code"], "404");
    let carol = by_user(CAROL);
    assert_eq!(carol["failing"], true);
    assert_eq!(carol["last_error"]["code"], "503");
    let alice = by_user(ALICE);
    assert_eq!(alice["state"], "active");
    for t in [alice, bob] {
        assert!(t["last_check"].as_str().unwrap().ends_with('Z'), "{t}");
        assert!(t["last_success"].as_str().unwrap().ends_with('Z'), "{t}");
    }

    let (status, html) = h.get("/status").await;
    assert_eq!(status, 200);
    for u in [ALICE, BOB, CAROL] {
        assert!(html.contains(u), "{u} not on the status page");
    }
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}
