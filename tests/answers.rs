//! Hostile peers, the Store side (SPEC §17): answers that are not the
//! Store's, or that cannot be read one way only, never move a seat — a 404
//! that is not the Store's JSON, a body naming `state` twice, a listing
//! page without a seat list — and token lifetimes in every number form
//! work. Real HTTP to the fake Store, through the real poller and router.

use msfb_seat_exporter::fake_store::{Action, FakeSeat, Fault, Match};

use crate::util::{ALICE, BOB, Harness, P, S, product};

/// A harness where alice held a seat at the last check.
async fn alice_active(store_extra: &str) -> Harness {
    let h = Harness::new(&product(&[ALICE]), store_extra).await;
    h.fake.set_seat(P, S, ALICE, FakeSeat::active());
    assert!(h.cycle().await.all_conclusive());
    assert_eq!(h.scrape().await.active(ALICE), Some(1.0));
    h
}

#[tokio::test]
async fn a_404_that_is_not_the_stores_json_changes_no_seat() {
    let h = alice_active("").await;
    for (n, body) in ["<html><body>404 Not Found</body></html>", ""]
        .into_iter()
        .enumerate()
    {
        h.fake.clear_faults();
        h.fake.add_fault(Fault::always(
            Match::User(ALICE.into()),
            Fault::not_found_body(body),
        ));
        assert!(!h.cycle().await.all_conclusive(), "{body:?}");
        let m = h.scrape().await;
        assert_eq!(m.active(ALICE), Some(1.0), "seat unchanged ({body:?})");
        assert_eq!(m.success(ALICE), Some(0.0));
        assert_eq!(m.errors(ALICE, "404", "not_store"), Some((n + 1) as f64));
        assert_eq!(m.errors(ALICE, "404", "unknown"), None);
        assert_eq!(m.lost(ALICE), Some(0.0));
    }
    // The Store's own JSON 404 without an item type stays conclusive.
    h.fake.clear_faults();
    h.fake
        .add_fault(Fault::always(Match::User(ALICE.into()), Fault::status(404)));
    h.cycle().await;
    let m = h.scrape().await;
    assert_eq!(m.active(ALICE), Some(0.0));
    assert_eq!(m.errors(ALICE, "404", "unknown"), Some(1.0));
}

#[tokio::test]
async fn non_json_404_conclusive_reads_a_bare_404_as_no_seat() {
    let h = alice_active("non_json_404 = \"conclusive\"").await;
    h.fake.add_fault(Fault::always(
        Match::User(ALICE.into()),
        Fault::not_found_body("<html>Not Found</html>"),
    ));
    assert!(h.cycle().await.all_conclusive());
    let m = h.scrape().await;
    assert_eq!(m.active(ALICE), Some(0.0));
    assert_eq!(m.errors(ALICE, "404", "unknown"), Some(1.0));
}

#[tokio::test]
async fn a_state_named_twice_differently_is_a_decode_error() {
    let h = alice_active("").await;
    for body in [
        r#"{"state":"Revoked","State":"Active"}"#,
        r#"{"State":"Active","state":"Revoked"}"#,
        r#"{"state":"active","STATE":"revoked"}"#,
    ] {
        h.fake.clear_faults();
        h.fake.add_fault(Fault::always(
            Match::User(ALICE.into()),
            Action::Body(body.into()),
        ));
        h.cycle().await;
        let m = h.scrape().await;
        assert_eq!(m.active(ALICE), Some(1.0), "{body}");
        assert_eq!(m.success(ALICE), Some(0.0), "{body}");
    }
    assert_eq!(h.scrape().await.errors(ALICE, "decode", ""), Some(3.0));
    // The same value twice is still one answer.
    h.fake.clear_faults();
    h.fake.add_fault(Fault::always(
        Match::User(ALICE.into()),
        Action::Body(r#"{"state":"Revoked","STATE":"revoked"}"#.into()),
    ));
    assert!(h.cycle().await.all_conclusive());
    assert_eq!(h.scrape().await.active(ALICE), Some(0.0));
}

#[tokio::test]
async fn a_listing_page_without_a_seat_list_changes_nothing() {
    let h = Harness::new(&format!("{}mode = \"list\"\n", product(&[ALICE, BOB])), "").await;
    for u in [ALICE, BOB] {
        h.fake.set_seat(P, S, u, FakeSeat::active());
    }
    assert!(h.cycle().await.all_conclusive());
    for (n, body) in [
        r#"{"seats":null}"#,
        "{}",
        r#"{"Seats":"none"}"#,
        r#"{"seats":{}}"#,
    ]
    .into_iter()
    .enumerate()
    {
        h.fake.clear_faults();
        h.fake
            .add_fault(Fault::always(Match::AllListings, Action::Body(body.into())));
        assert!(!h.cycle().await.all_conclusive(), "{body}");
        let m = h.scrape().await;
        for u in [ALICE, BOB] {
            assert_eq!(m.active(u), Some(1.0), "{u} after {body}");
            assert_eq!(m.success(u), Some(0.0));
            assert_eq!(m.errors(u, "decode", ""), Some((n + 1) as f64));
        }
    }
}

/// `expires_in` as the token endpoints send it: a JSON number with or
/// without a fraction, a numeric string; 0 or less means the token serves
/// one check and the next check fetches another.
#[tokio::test]
async fn token_lifetimes_in_every_number_form() {
    for (raw, refreshed) in [
        (serde_json::json!(3600.0), false),
        (serde_json::json!(3599.5), false),
        (serde_json::json!("3600"), false),
        (serde_json::json!(0), true),
        (serde_json::json!(-5), true),
    ] {
        let h = Harness::new(&product(&[ALICE]), "").await;
        h.fake.set_seat(P, S, ALICE, FakeSeat::active());
        h.fake.set_expires_in_raw(Some(raw.clone()));
        assert!(h.cycle().await.all_conclusive(), "{raw}");
        assert!(h.cycle().await.all_conclusive(), "{raw}");
        let m = h.scrape().await;
        assert_eq!(m.active(ALICE), Some(1.0), "{raw}");
        assert_eq!(
            m.find("msfb_oauth_token_request_failures_total", &[]).len(),
            0,
            "{raw}"
        );
        let tokens = h.fake.counts().token_requests;
        assert_eq!(
            tokens,
            if refreshed { 2 } else { 1 },
            "{raw}: {tokens} token requests"
        );
    }
}
