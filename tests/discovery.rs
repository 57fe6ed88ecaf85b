//! Discovery (`users = "all"`, SPEC §11): targets appear as the Store lists
//! seats, a seat that disappears counts as lost and stays exported at 0 for
//! `forget_after`, then is forgotten.
//!
//! `forget_after` is measured on tokio's monotonic clock, so the tests move
//! time forward with `tokio::time::advance` instead of sleeping (as the tokio
//! testing guide suggests); requests in between still run in real time.

use std::time::Duration;

use msfb_seat_exporter::config::{self, LoadOptions};
use msfb_seat_exporter::exporter::Exporter;
use msfb_seat_exporter::fake_store::{FakeSeat, Fault, Match};

use crate::util::{
    ALICE, BOB, CAROL, DAVE, Harness, P, S, Scrape, capture_info_lines, fast_options, request,
};

/// A discovery product for `P`/`S` forgetting lost seats after an hour.
fn discovered(extra: &str) -> String {
    format!(
        "[inventory]\nenabled = false\n\n[[products]]\nproduct_id = \"{P}\"\nsku_id = \"{S}\"\n\
         users = \"all\"\nforget_after = \"1h\"\n{extra}\n"
    )
}

/// Two listings: alice and bob both discovered, then bob's seat gone.
async fn alice_held_and_bob_lost(h: &Harness) {
    h.fake.set_seat(P, S, ALICE, FakeSeat::active());
    h.fake.set_seat(P, S, BOB, FakeSeat::active());
    h.cycle().await;
    h.fake.remove_seat(P, S, BOB);
    h.cycle().await;
}

/// Moves tokio's clock forward by `by`, then lets it run on in real time.
async fn advance(by: Duration) {
    tokio::time::pause();
    tokio::time::advance(by).await;
    tokio::time::resume();
}

/// The users that have any series in `family` for the product.
fn users_in(m: &Scrape, family: &str) -> Vec<String> {
    let mut users: Vec<String> = m
        .find(family, &[("product_id", P)])
        .iter()
        .map(|s| s.labels["user"].clone())
        .collect();
    users.sort();
    users
}

fn lost(m: &Scrape, user: &str) -> Option<f64> {
    m.value("msfb_seat_lost_total", &[("user", user)])
}

fn seats(m: &Scrape, state: &str) -> Option<f64> {
    m.value("msfb_seats", &[("product_id", P), ("state", state)])
}

#[tokio::test]
async fn discovery_assign_revoke_reassign_forget() {
    let h = Harness::new(&discovered(""), "").await;
    // Held by alice and bob; carol's seat is revoked, which is nothing to
    // watch for someone never seen holding it.
    h.fake.set_seat(P, S, ALICE, FakeSeat::active());
    h.fake.set_seat(P, S, BOB, FakeSeat::active());
    h.fake.set_seat(P, S, CAROL, FakeSeat::revoked());
    assert!(h.cycle().await.all_conclusive());
    let m = h.scrape().await;
    assert_eq!(users_in(&m, "msfb_seat_active"), [ALICE, BOB]);
    assert_eq!((m.active(ALICE), m.active(BOB)), (Some(1.0), Some(1.0)));
    assert_eq!(lost(&m, ALICE), Some(0.0));
    assert_eq!(seats(&m, "active"), Some(2.0));

    // Assign: dave's new seat is picked up by the next listing.
    h.fake.set_seat(P, S, DAVE, FakeSeat::active());
    h.cycle().await;
    let m = h.scrape().await;
    assert_eq!(users_in(&m, "msfb_seat_active"), [ALICE, BOB, DAVE]);
    assert_eq!(m.active(DAVE), Some(1.0));

    // Revoke: alice's seat is no longer listed, bob's is listed as revoked.
    // Both count as lost and stay exported at 0.
    h.fake.remove_seat(P, S, ALICE);
    h.fake.set_seat(P, S, BOB, FakeSeat::revoked());
    h.cycle().await;
    let m = h.scrape().await;
    assert_eq!((m.active(ALICE), m.active(BOB)), (Some(0.0), Some(0.0)));
    assert_eq!((lost(&m, ALICE), lost(&m, BOB)), (Some(1.0), Some(1.0)));
    assert_eq!(m.errors(ALICE, "404", "seat"), Some(1.0));
    assert_eq!(m.success(ALICE), Some(1.0));
    assert_eq!(seats(&m, "inactive"), Some(2.0));

    // Half the forget_after later, still there at 0.
    advance(Duration::from_secs(30 * 60)).await;
    h.cycle().await;
    let m = h.scrape().await;
    assert_eq!(m.active(BOB), Some(0.0));
    assert_eq!(lost(&m, BOB), Some(1.0), "a loss is counted once");

    // Reassign: alice gets a seat back within the window — same series.
    h.fake.set_seat(P, S, ALICE, FakeSeat::active());
    h.cycle().await;
    let m = h.scrape().await;
    assert_eq!(m.active(ALICE), Some(1.0));
    assert_eq!(lost(&m, ALICE), Some(1.0));

    // Forget: an hour after bob's loss his series are gone, from every
    // family; the others stay.
    advance(Duration::from_secs(31 * 60)).await;
    h.cycle().await;
    let m = h.scrape().await;
    for family in [
        "msfb_seat_active",
        "msfb_seat_check_success",
        "msfb_seat_lost_total",
        "msfb_seat_check_errors_total",
        "msfb_seat_last_success_timestamp_seconds",
    ] {
        assert!(
            !users_in(&m, family).contains(&BOB.to_owned()),
            "{family} still has bob"
        );
    }
    assert_eq!(users_in(&m, "msfb_seat_active"), [ALICE, DAVE]);
    assert_eq!(seats(&m, "inactive"), Some(0.0));
    let (_, status) = h.get("/status?format=json").await;
    assert!(!status.contains(BOB), "{status}");
    assert!(status.contains(DAVE));

    // A forgotten user who gets a seat again starts afresh.
    h.fake.set_seat(P, S, BOB, FakeSeat::active());
    h.cycle().await;
    let m = h.scrape().await;
    assert_eq!(m.active(BOB), Some(1.0));
    assert_eq!(lost(&m, BOB), Some(0.0));
}

#[tokio::test]
async fn a_forgotten_seat_is_logged_once_with_its_target() {
    let (_guard, lines) = capture_info_lines();
    let h = Harness::new(&discovered(""), "").await;
    alice_held_and_bob_lost(&h).await;
    let forgotten = || {
        lines()
            .into_iter()
            .filter(|e| e["message"] == "lost seat forgotten")
            .collect::<Vec<_>>()
    };
    let messages: Vec<String> = lines().into_iter().map(|e| e["message"].clone()).collect();
    assert!(messages.contains(&"seat lost".to_owned()), "{messages:?}");
    // Not before forget_after has passed.
    advance(Duration::from_secs(59 * 60)).await;
    h.cycle().await;
    assert!(forgotten().is_empty(), "{:?}", lines());
    advance(Duration::from_secs(2 * 60)).await;
    h.cycle().await;
    // Later cycles do not log it again.
    h.cycle().await;
    let events = forgotten();
    assert_eq!(events.len(), 1, "{:?}", lines());
    let field = |key: &str| events[0].get(key).map(String::as_str);
    assert_eq!(field("level"), Some("INFO"), "{events:?}");
    assert_eq!(field("user"), Some(BOB), "{events:?}");
    assert_eq!(field("product_id"), Some(P), "{events:?}");
    assert_eq!(field("sku_id"), Some(S), "{events:?}");
    assert_eq!(field("forget_after"), Some("1h"), "{events:?}");
    assert_eq!(h.scrape().await.active(BOB), None);
}

#[tokio::test]
async fn a_failed_listing_neither_loses_nor_forgets_a_discovered_seat() {
    let h = Harness::new(&discovered(""), "max_retries = 0").await;
    alice_held_and_bob_lost(&h).await;
    // Now everything goes: the Store reclaims alice's seat too, but every
    // listing fails, for longer than forget_after.
    h.fake.remove_seat(P, S, ALICE);
    h.fake
        .add_fault(Fault::always(Match::AllListings, Fault::status(500)));
    advance(Duration::from_secs(2 * 3600)).await;
    let report = h.cycle().await;
    assert!(!report.all_conclusive());
    let m = h.scrape().await;
    assert_eq!(m.active(ALICE), Some(1.0), "no loss from a failed listing");
    assert_eq!(m.active(BOB), Some(0.0), "not forgotten without a listing");
    assert_eq!(m.errors(ALICE, "500", ""), Some(1.0));
    assert_eq!(
        m.value("msfb_seat_listing_success", &[("product_id", P)]),
        Some(0.0)
    );
    // Once a listing completes, alice's loss is real and bob is forgotten.
    h.fake.clear_faults();
    h.cycle().await;
    let m = h.scrape().await;
    assert_eq!(m.active(ALICE), Some(0.0));
    assert_eq!(m.active(BOB), None);
}

#[tokio::test]
async fn a_discovery_product_is_not_ready_before_its_first_listing() {
    let h = Harness::new(&discovered(""), "max_retries = 0").await;
    assert_eq!(h.get("/-/ready").await.0, 503);
    // A failed first listing still counts as checked (as for targets).
    h.fake
        .add_fault(Fault::times(1, Match::AllListings, Fault::status(500)));
    let report = h.cycle().await;
    assert!(!report.all_conclusive(), "{report:?}");
    assert_eq!(report.listings_failed, 1);
    assert_eq!(h.get("/-/ready").await.0, 200);
}

#[tokio::test]
async fn discovered_targets_survive_a_reload_and_go_with_their_product() {
    let h = Harness::new(&discovered(""), "").await;
    alice_held_and_bob_lost(&h).await;
    // An unrelated change: everything is kept, counters included.
    h.write_config(&discovered(""), "max_retries = 1");
    h.exporter.reload().await.expect("reload");
    let m = h.scrape().await;
    assert_eq!((m.active(ALICE), m.active(BOB)), (Some(1.0), Some(0.0)));
    assert_eq!(lost(&m, BOB), Some(1.0));
    // Hashed labels: the same targets, relabelled, state kept.
    std::fs::write(h.dir.path().join("key"), "k").unwrap();
    h.write_config(
        &format!(
            "[metrics]\nuser_label = \"hash\"\nuser_hash_key_file = \"key\"\n\n{}",
            discovered("")
        ),
        "",
    );
    h.exporter.reload().await.expect("reload");
    let m = h.scrape().await;
    let labels = users_in(&m, "msfb_seat_lost_total");
    assert_eq!(labels.len(), 2);
    assert!(
        labels.iter().all(|l| l.len() == 16 && !l.contains('@')),
        "{labels:?}"
    );
    assert_eq!(
        m.find("msfb_seat_lost_total", &[])
            .iter()
            .map(|s| s.value)
            .sum::<f64>(),
        1.0
    );
    // The product removed: its series go at once.
    h.write_config(
        "[inventory]\nenabled = false\n\n[[products]]\nproduct_id = \"OTHER\"\nsku_id = \"1\"\nusers = [\"x@y.z\"]\n",
        "",
    );
    h.exporter.reload().await.expect("reload");
    let m = h.scrape().await;
    assert!(m.find("msfb_seat_active", &[("product_id", P)]).is_empty());
    assert!(m.find("msfb_seat_listing_success", &[]).is_empty());
}

/// An exporter for shard `index` of 2 against the harness's fake.
fn shard(h: &Harness, index: u32) -> Exporter {
    let path = h.dir.path().join(format!("shard{index}.toml"));
    std::fs::write(&path, h.fake.config_toml("secret", &discovered(""))).unwrap();
    let options = LoadOptions {
        shard_index: Some(index),
        shard_count: Some(2),
        ..LoadOptions::default()
    };
    let config = config::load(&path, &options).expect("valid config");
    Exporter::new(config, fast_options()).expect("exporter")
}

#[tokio::test]
async fn shards_split_the_discovered_seats() {
    let h = Harness::new(&discovered(""), "").await;
    let all: Vec<String> = (0..60).map(|i| format!("u{i}@contoso.com")).collect();
    for u in &all {
        h.fake.set_seat(P, S, u, FakeSeat::active());
    }
    let mut seen = Vec::new();
    for index in 0..2 {
        let e = shard(&h, index);
        e.run_cycle(&tokio_util::sync::CancellationToken::new())
            .await
            .unwrap();
        let (_, text) = request(&e, "GET", "/metrics").await;
        let users = users_in(&Scrape::parse(&text), "msfb_seat_active");
        assert!(
            !users.is_empty() && users.len() < 60,
            "{index}: {}",
            users.len()
        );
        seen.extend(users);
    }
    seen.sort();
    let mut want = all.clone();
    want.sort();
    assert_eq!(seen, want, "every seat in exactly one shard");
}

#[tokio::test]
async fn a_listing_past_max_discovered_is_failed_and_changes_nothing() {
    let h = Harness::new(&discovered("max_discovered = 2"), "max_retries = 0").await;
    h.fake.set_seat(P, S, ALICE, FakeSeat::active());
    h.fake.set_seat(P, S, BOB, FakeSeat::active());
    assert!(h.cycle().await.all_conclusive());
    // A third seat: more than this instance may keep. The listing fails,
    // nobody is added, and alice and bob keep their seats.
    h.fake.set_seat(P, S, CAROL, FakeSeat::active());
    assert!(!h.cycle().await.all_conclusive());
    let m = h.scrape().await;
    assert_eq!(m.active(ALICE), Some(1.0));
    assert_eq!(m.active(BOB), Some(1.0));
    assert_eq!(m.success(BOB), Some(0.0));
    assert_eq!(m.active(CAROL), None);
    assert_eq!(
        m.value(
            "msfb_seat_listing_errors_total",
            &[("product_id", P), ("code", "paging")]
        ),
        Some(1.0)
    );
    // Back within the limit: the listing is applied again.
    h.fake.remove_seat(P, S, CAROL);
    h.fake.remove_seat(P, S, BOB);
    assert!(h.cycle().await.all_conclusive());
    let m = h.scrape().await;
    assert_eq!(m.active(BOB), Some(0.0));
    assert_eq!(m.active(CAROL), None);
}
