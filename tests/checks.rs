//! What each upstream answer does (SPEC §5): the seat gauge, the success
//! gauge and the error counters, through real HTTP to the fake Store.

use std::time::Duration;

use msfb_seat_exporter::fake_store::{Action, Casing, FakeSeat, Fault, Match, NotFoundShape};

use crate::util::{ALICE, BOB, Harness, P, S, product, users};

/// A harness with alice active and bob known but without a seat, after one
/// clean cycle.
async fn started(store_extra: &str) -> Harness {
    let h = Harness::new(&product(&[ALICE, BOB]), store_extra).await;
    h.fake.set_seat(P, S, ALICE, FakeSeat::active());
    h.fake.add_user(BOB);
    let report = h.cycle().await;
    assert!(report.all_conclusive(), "{report:?}");
    h
}

#[tokio::test]
async fn active_and_revoked_seats() {
    let h = started("").await;
    h.fake.set_seat(P, S, BOB, FakeSeat::revoked());
    h.cycle().await;
    let m = h.scrape().await;
    assert_eq!(m.active(ALICE), Some(1.0));
    assert_eq!(m.active(BOB), Some(0.0));
    assert_eq!(m.success(BOB), Some(1.0));
    // The revoked seat is an answer, not an error: only the first cycle's
    // 404 (no seat yet) is counted.
    assert_eq!(
        m.find("msfb_seat_check_errors_total", &[("user", BOB)])
            .len(),
        1
    );
    assert_eq!(m.errors(BOB, "404", "seat"), Some(1.0));
    // dateAssigned "2024-05-06T07:08:09.1234567Z" of the active seat.
    let assigned = m
        .value("msfb_seat_assigned_timestamp_seconds", &[("user", ALICE)])
        .expect("assigned timestamp");
    assert!(
        (assigned - 1_714_979_289.123_456).abs() < 1e-3,
        "{assigned}"
    );
    assert_eq!(
        m.value("msfb_seat_assigned_timestamp_seconds", &[("user", BOB)]),
        None
    );
}

#[tokio::test]
async fn both_wire_casings_are_read() {
    let h = started("").await;
    h.fake.set_casing(Casing::Camel);
    h.cycle().await;
    assert_eq!(h.scrape().await.active(ALICE), Some(1.0));
}

#[tokio::test]
async fn an_unknown_state_is_no_seat() {
    let h = started("").await;
    h.fake.set_seat(
        P,
        S,
        ALICE,
        FakeSeat {
            state: "Suspended".into(),
            date_assigned: None,
        },
    );
    h.cycle().await;
    let m = h.scrape().await;
    assert_eq!(m.active(ALICE), Some(0.0));
    assert_eq!(m.success(ALICE), Some(1.0));
    assert_eq!(m.lost(ALICE), Some(1.0));
}

#[tokio::test]
async fn not_found_reasons_from_each_body_shape() {
    for shape in [
        NotFoundShape::KeyValue,
        NotFoundShape::Flat,
        NotFoundShape::Nested,
    ] {
        let carol = "carol@contoso.com"; // not in the directory
        let h = Harness::new(
            &format!(
                "{}\n[[products]]\nproduct_id = \"NOTOWNED\"\nsku_id = \"0001\"\nusers = [\"{ALICE}\"]\n",
                product(&[ALICE, BOB, carol])
            ),
            "",
        )
        .await;
        h.fake.set_not_found_shape(shape);
        h.fake.set_seat(P, S, ALICE, FakeSeat::active());
        h.fake.add_user(BOB);
        let report = h.cycle().await;
        assert!(report.all_conclusive(), "404 is conclusive: {report:?}");
        let m = h.scrape().await;
        assert_eq!(m.active(BOB), Some(0.0), "{shape:?}");
        assert_eq!(m.errors(BOB, "404", "seat"), Some(1.0), "{shape:?}");
        assert_eq!(m.active(carol), Some(0.0));
        assert_eq!(m.errors(carol, "404", "user"), Some(1.0), "{shape:?}");
        assert_eq!(
            m.value(
                "msfb_seat_check_errors_total",
                &[("product_id", "NOTOWNED"), ("user", ALICE), ("code", "404")]
            ),
            Some(1.0)
        );
        assert_eq!(
            m.value(
                "msfb_seat_check_errors_total",
                &[("product_id", "NOTOWNED"), ("reason", "inventory")]
            ),
            Some(1.0),
            "{shape:?}"
        );
    }
}

/// The Store's own JSON 404 naming no item type (an HTML 404 is not the
/// Store's since SPEC §17: `not_store`, in `answers`).
#[tokio::test]
async fn a_404_without_item_type_is_unknown() {
    let h = started("").await;
    h.fake.add_fault(Fault::always(
        Match::User(ALICE.into()),
        Action::Status {
            code: 404,
            body: r#"{"code":"NotFound","message":"gone"}"#.into(),
            retry_after: None,
        },
    ));
    h.cycle().await;
    let m = h.scrape().await;
    assert_eq!(m.active(ALICE), Some(0.0));
    assert_eq!(m.errors(ALICE, "404", "unknown"), Some(1.0));
}

/// One fault for alice that outlasts the retries: the seat stays 1, the
/// check fails, the counter moves, and no retry happens where none is due.
async fn inconclusive_case(action: Action, code: &str, reason: &str, retried: bool) {
    let h = started("max_retries = 2").await;
    h.fake.reset_counts();
    h.fake
        .add_fault(Fault::always(Match::User(ALICE.into()), action.clone()));
    let report = h.cycle().await;
    assert!(!report.all_conclusive());
    let m = h.scrape().await;
    assert_eq!(
        m.active(ALICE),
        Some(1.0),
        "{action:?} must not look like a lost seat"
    );
    assert_eq!(m.success(ALICE), Some(0.0), "{action:?}");
    assert_eq!(
        m.errors(ALICE, code, reason),
        Some(1.0),
        "{action:?}: {}",
        m.text
    );
    assert_eq!(m.lost(ALICE), Some(0.0));
    // bob (no fault) is unaffected.
    assert_eq!(m.success(BOB), Some(1.0));
    let expected = if retried { 3 + 1 } else { 1 + 1 };
    assert_eq!(h.fake.counts().seat_requests, expected, "{action:?}");
    // Healing restores the real answer.
    h.fake.clear_faults();
    h.fake.remove_seat(P, S, ALICE);
    h.cycle().await;
    let m = h.scrape().await;
    assert_eq!(m.success(ALICE), Some(1.0));
    assert_eq!(m.active(ALICE), Some(0.0));
    assert_eq!(m.lost(ALICE), Some(1.0));
}

#[tokio::test]
async fn status_400_is_inconclusive_and_not_retried() {
    inconclusive_case(Fault::status(400), "400", "", false).await;
}

#[tokio::test]
async fn status_409_is_not_online_and_not_retried() {
    inconclusive_case(Fault::status(409), "409", "not_online", false).await;
}

#[tokio::test]
async fn status_429_is_retried_then_inconclusive() {
    inconclusive_case(Fault::status(429), "429", "", true).await;
}

#[tokio::test]
async fn status_500_is_retried_then_inconclusive() {
    inconclusive_case(Fault::status(500), "500", "", true).await;
}

#[tokio::test]
async fn malformed_json_is_a_decode_error() {
    inconclusive_case(Action::Malformed, "decode", "", false).await;
}

#[tokio::test]
async fn a_200_that_is_not_seat_details_is_a_decode_error() {
    inconclusive_case(Action::Body("{\"seats\":[]}".into()), "decode", "", false).await;
}

#[tokio::test]
async fn an_oversized_body_is_a_body_error() {
    inconclusive_case(Action::Oversized(2 * 1024 * 1024), "body", "", true).await;
}

#[tokio::test]
async fn a_dropped_connection_is_a_connect_error() {
    inconclusive_case(Action::Drop, "connect", "", true).await;
}

#[tokio::test]
async fn a_slow_answer_is_a_timeout() {
    // The harness timeout is 2 s; a 3 s delay times out. No retries here to
    // keep the test short.
    let h = started("max_retries = 0").await;
    h.fake.add_fault(Fault::always(
        Match::User(ALICE.into()),
        Action::Delay(Duration::from_secs(3)),
    ));
    h.cycle().await;
    let m = h.scrape().await;
    assert_eq!(m.active(ALICE), Some(1.0));
    assert_eq!(m.success(ALICE), Some(0.0));
    assert_eq!(m.errors(ALICE, "timeout", ""), Some(1.0));
    assert_eq!(m.api("get_seat", "timeout"), Some(1.0));
}

#[tokio::test]
async fn a_transient_failure_that_heals_within_the_retries_is_conclusive() {
    let h = started("max_retries = 2").await;
    h.fake.reset_counts();
    h.fake.add_fault(Fault::times(
        2,
        Match::User(ALICE.into()),
        Fault::status(503),
    ));
    let report = h.cycle().await;
    assert!(report.all_conclusive());
    let m = h.scrape().await;
    assert_eq!(m.success(ALICE), Some(1.0));
    assert!(
        m.find("msfb_seat_check_errors_total", &[("user", ALICE)])
            .is_empty()
    );
    assert_eq!(m.api("get_seat", "503"), Some(2.0));
    assert_eq!(h.fake.counts().seat_requests, 4);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let h = started("max_retries = 1").await;
    h.fake.add_fault(Fault::times(
        1,
        Match::User(ALICE.into()),
        Fault::status_retry_after(429, "1"),
    ));
    let started = std::time::Instant::now();
    let report = h.cycle().await;
    assert!(report.all_conclusive());
    // The backoff base in tests is 5 ms; only Retry-After explains a wait
    // of a second.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn upns_with_special_characters_stay_one_path_segment() {
    let odd = "o'brien+test#1?x=y/z@contoso.com";
    let h = Harness::new(&product(&[odd]), "").await;
    h.fake.set_seat(P, S, odd, FakeSeat::active());
    let report = h.cycle().await;
    assert!(report.all_conclusive(), "{report:?}");
    assert_eq!(h.scrape().await.active(odd), Some(1.0));
    let seat_paths: Vec<String> = h
        .fake
        .request_log()
        .into_iter()
        .filter(|p| p.starts_with("/V1/"))
        .collect();
    assert_eq!(
        seat_paths,
        vec![format!(
            "/V1/Inventory/{P}/{S}/Seats/o%27brien%2Btest%231%3Fx%3Dy%2Fz@contoso.com"
        )]
    );
}

#[tokio::test]
async fn one_token_serves_every_check() {
    let h = Harness::with_seats(20, "max_concurrency = 8").await;
    h.cycle().await;
    h.cycle().await;
    let counts = h.fake.counts();
    assert_eq!(counts.seat_requests, 40);
    assert_eq!(counts.token_requests, 1);
    let m = h.scrape().await;
    assert_eq!(m.value("msfb_oauth_token_requests_total", &[]), Some(1.0));
    assert!(
        m.value("msfb_oauth_token_expiry_timestamp_seconds", &[])
            .unwrap()
            > 1.7e9
    );
}

#[tokio::test]
async fn a_401_fetches_a_new_token_and_retries_once() {
    let h = started("max_retries = 0").await;
    h.fake.revoke_tokens();
    h.fake.reset_counts();
    let report = h.cycle().await;
    assert!(report.all_conclusive(), "{report:?}");
    let counts = h.fake.counts();
    assert_eq!(
        counts.token_requests, 1,
        "one refresh for the whole burst of 401s"
    );
    let m = h.scrape().await;
    assert_eq!(m.active(ALICE), Some(1.0));
    assert_eq!(
        m.api("get_seat", "401"),
        Some(counts.seat_requests as f64 - 2.0)
    );
}

#[tokio::test]
async fn a_second_401_is_inconclusive() {
    let h = started("max_retries = 3").await;
    h.fake
        .add_fault(Fault::always(Match::User(ALICE.into()), Fault::status(401)));
    h.fake.reset_counts();
    h.cycle().await;
    let m = h.scrape().await;
    assert_eq!(m.active(ALICE), Some(1.0));
    assert_eq!(m.errors(ALICE, "401", ""), Some(1.0));
    // Exactly two attempts for alice (the 401 retry is not a transient retry).
    let alice_requests = h
        .fake
        .request_log()
        .iter()
        .filter(|p| p.ends_with(ALICE))
        .count();
    assert_eq!(alice_requests, 2);
}

#[tokio::test]
async fn a_failing_token_endpoint_leaves_seats_alone() {
    let h = started("").await;
    h.fake.revoke_tokens();
    h.fake
        .add_fault(Fault::always(Match::Token, Fault::status(500)));
    h.cycle().await;
    let m = h.scrape().await;
    assert_eq!(m.active(ALICE), Some(1.0));
    assert_eq!(m.active(BOB), Some(0.0));
    assert_eq!(m.success(ALICE), Some(0.0));
    assert_eq!(
        m.value(
            "msfb_oauth_token_request_failures_total",
            &[("reason", "500")]
        ),
        Some(1.0),
        "backoff: one token request for the whole cycle"
    );
}

#[tokio::test]
async fn at_most_max_concurrency_checks_are_in_flight() {
    let h = Harness::with_seats(12, "max_concurrency = 3").await;
    h.fake.add_fault(Fault::always(
        Match::AllSeats,
        Action::Delay(Duration::from_millis(150)),
    ));
    h.cycle().await;
    h.fake.reset_counts();
    assert!(h.cycle().await.all_conclusive());
    let counts = h.fake.counts();
    assert_eq!(counts.seat_requests, 12);
    assert_eq!(counts.max_in_flight, 3, "{counts:?}");
}

#[tokio::test]
async fn requests_are_paced_to_max_requests_per_second() {
    let users = users(11);
    let refs: Vec<&str> = users.iter().map(String::as_str).collect();
    let h = Harness::new(&product(&refs), "max_concurrency = 8").await;
    // The harness config is unlimited; reload with 20 requests/s.
    h.write_config(&product(&refs), "max_concurrency = 8");
    let text = std::fs::read_to_string(h.config_path()).unwrap().replace(
        "max_requests_per_second = 0",
        "max_requests_per_second = 20",
    );
    std::fs::write(h.config_path(), text).unwrap();
    h.exporter.reload().await.expect("reload");
    for u in &users {
        h.fake.set_seat(P, S, u, FakeSeat::active());
    }
    let started = std::time::Instant::now();
    let report = h.cycle().await;
    assert!(report.all_conclusive());
    // 11 requests at 20/s: the first at once, then 10 gaps of 50 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    let m = h.scrape().await;
    assert_eq!(
        m.value("msfb_poll_rate_limit_requests_per_second", &[]),
        Some(20.0)
    );
}

/// The daemon runs a cycle's checks on poll lanes (one thread and one
/// connection pool each): every answer is recorded exactly as on the
/// calling runtime, with `max_concurrency` still the bound on requests in
/// flight.
#[tokio::test]
async fn checks_on_poll_lanes_record_every_answer_as_on_one_runtime() {
    let lane_threads = msfb_seat_exporter::poller::LaneThreads::start(3, || {}).expect("lanes");
    let names = users(40);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut options = crate::util::fast_options();
    options.lanes = lane_threads.lanes();
    let store = "max_concurrency = 5\nmax_retries = 0";
    let on_lanes = Harness::with_options(&product(&refs), store, options).await;
    let here = Harness::new(&product(&refs), store).await;
    for h in [&on_lanes, &here] {
        for (i, u) in names.iter().enumerate() {
            match i % 4 {
                0 => h.fake.set_seat(P, S, u, FakeSeat::active()),
                1 => h.fake.set_seat(P, S, u, FakeSeat::revoked()),
                2 => h.fake.add_user(u),
                _ => {
                    h.fake.set_seat(P, S, u, FakeSeat::active());
                    h.fake
                        .add_fault(Fault::always(Match::User(u.clone()), Fault::status(503)));
                }
            }
        }
    }
    let (lanes_report, here_report) = (on_lanes.cycle().await, here.cycle().await);
    assert_eq!(
        (lanes_report.checked, lanes_report.conclusive),
        (40, 30),
        "{lanes_report:?}"
    );
    assert_eq!(lanes_report.failures, here_report.failures);
    assert!(on_lanes.fake.counts().max_in_flight <= 5);
    let (m, expected) = (on_lanes.scrape().await, here.scrape().await);
    for (i, u) in names.iter().enumerate() {
        let want = [Some(1.0), Some(0.0), Some(0.0), None][i % 4];
        assert_eq!(m.active(u), want, "{u}");
        assert_eq!(m.active(u), expected.active(u), "{u}");
        assert_eq!(m.success(u), expected.success(u), "{u}");
    }
}
