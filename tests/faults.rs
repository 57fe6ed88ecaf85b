//! The fault-injection suite: every case starts with known seats, injects one
//! fault for a while, then heals, and shows that
//! (a) no `msfb_seat_active` went 1 → 0 while faulted,
//! (b) the right `code`/`reason` counters moved,
//! (c) `msfb_seat_check_success` went 0 and then back to 1,
//! (d) the real state after healing is reported — including a seat that was
//!     really revoked while the Store was failing.

use std::time::{Duration, Instant};

use msfb_seat_exporter::fake_store::{Action, FakeSeat, FakeStore, Fault, Match};

use crate::util::{ALICE, BOB, CAROL, Harness, P, S, Scrape, product};

const USERS: [&str; 3] = [ALICE, BOB, CAROL];

/// alice and bob hold seats, carol is known without one; one clean cycle.
async fn baseline(store_extra: &str) -> Harness {
    let h = Harness::new(&product(&USERS), store_extra).await;
    h.fake.set_seat(P, S, ALICE, FakeSeat::active());
    h.fake.set_seat(P, S, BOB, FakeSeat::active());
    h.fake.add_user(CAROL);
    let report = h.cycle().await;
    assert!(report.all_conclusive(), "{report:?}");
    let m = h.scrape().await;
    assert_eq!(m.active(ALICE), Some(1.0));
    assert_eq!(m.active(BOB), Some(1.0));
    assert_eq!(m.active(CAROL), Some(0.0));
    h
}

fn lost_total(m: &Scrape) -> f64 {
    m.find("msfb_seat_lost_total", &[])
        .iter()
        .map(|s| s.value)
        .sum()
}

fn errors_total(m: &Scrape, code: &str, reason: &str) -> f64 {
    m.find(
        "msfb_seat_check_errors_total",
        &[("code", code), ("reason", reason)],
    )
    .iter()
    .map(|s| s.value)
    .sum()
}

/// Runs cycles until every check is conclusive (a healed token endpoint may
/// still be in its backoff for a second or two), within a generous deadline.
async fn cycle_until_healed(h: &Harness) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if h.cycle().await.all_conclusive() {
            return;
        }
        assert!(Instant::now() < deadline, "did not heal");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The common shape of a case: `inject`, two faulted cycles, then `heal`.
async fn fault_case(
    store_extra: &str,
    inject: impl Fn(&FakeStore),
    heal: impl Fn(&FakeStore),
    code: &str,
    reason: &str,
) -> Harness {
    let h = baseline(store_extra).await;
    inject(&h.fake);
    // The Store really revokes bob's seat while it is failing.
    h.fake.set_seat(P, S, BOB, FakeSeat::revoked());
    for round in 0..2 {
        let report = h.cycle().await;
        assert_eq!(report.conclusive, 0, "round {round}: {report:?}");
        let m = h.scrape().await;
        // (a) nothing looks lost while the Store is failing.
        assert_eq!(m.active(ALICE), Some(1.0), "round {round}");
        assert_eq!(m.active(BOB), Some(1.0), "round {round}");
        assert_eq!(m.active(CAROL), Some(0.0), "round {round}");
        assert_eq!(lost_total(&m), 0.0, "round {round}");
        // (c) the checks are reported as failing.
        for u in USERS {
            assert_eq!(m.success(u), Some(0.0), "round {round} {u}");
        }
        // (b) the right counter moved, once per check.
        assert_eq!(
            errors_total(&m, code, reason),
            3.0 * f64::from(round + 1),
            "round {round}: {}",
            m.text
        );
    }
    heal(&h.fake);
    cycle_until_healed(&h).await;
    let m = h.scrape().await;
    // (c) back to conclusive, (d) the real state, bob's loss counted once.
    for u in USERS {
        assert_eq!(m.success(u), Some(1.0), "{u}");
    }
    assert_eq!(m.active(ALICE), Some(1.0));
    assert_eq!(m.active(BOB), Some(0.0));
    assert_eq!(m.active(CAROL), Some(0.0));
    assert_eq!(m.lost(BOB), Some(1.0));
    assert_eq!(lost_total(&m), 1.0);
    h
}

fn clear(fake: &FakeStore) {
    fake.clear_faults();
}

#[tokio::test]
async fn throttled_without_retry_after() {
    let h = fault_case(
        "max_retries = 1",
        |f| f.add_fault(Fault::always(Match::AllSeats, Fault::status(429))),
        clear,
        "429",
        "",
    )
    .await;
    // The poller slowed down: an unlimited pacer now has a limit.
    let m = h.scrape().await;
    let rate = m
        .value("msfb_poll_rate_limit_requests_per_second", &[])
        .unwrap();
    assert!(rate > 0.0, "throttling gave the pacer a limit");
}

#[tokio::test]
async fn throttled_with_retry_after() {
    let h = fault_case(
        "max_retries = 1",
        |f| {
            f.add_fault(Fault::always(
                Match::AllSeats,
                Fault::status_retry_after(429, "1"),
            ))
        },
        clear,
        "429",
        "",
    )
    .await;
    let m = h.scrape().await;
    assert!(m.api("get_seat", "429").unwrap() >= 12.0);
}

#[tokio::test]
async fn server_error_bursts() {
    for code in [500u16, 502, 503] {
        fault_case(
            "max_retries = 2",
            |f| f.add_fault(Fault::always(Match::AllSeats, Fault::status(code))),
            clear,
            &code.to_string(),
            "",
        )
        .await;
    }
}

#[tokio::test]
async fn timeouts() {
    fault_case(
        "max_retries = 0",
        |f| {
            f.add_fault(Fault::always(
                Match::AllSeats,
                Action::Delay(Duration::from_secs(3)),
            ))
        },
        clear,
        "timeout",
        "",
    )
    .await;
}

#[tokio::test]
async fn dropped_connections() {
    fault_case(
        "max_retries = 1",
        |f| f.add_fault(Fault::always(Match::AllSeats, Action::Drop)),
        clear,
        "connect",
        "",
    )
    .await;
}

#[tokio::test]
async fn malformed_bodies() {
    fault_case(
        "",
        |f| f.add_fault(Fault::always(Match::AllSeats, Action::Malformed)),
        clear,
        "decode",
        "",
    )
    .await;
}

#[tokio::test]
async fn oversized_bodies() {
    fault_case(
        "max_retries = 1",
        |f| f.add_fault(Fault::always(Match::AllSeats, Action::Oversized(3 << 20))),
        clear,
        "body",
        "",
    )
    .await;
}

/// A `body` fault with one retry per check: both faulted cycles together
/// must have made two requests per check (SPEC §5: an unreadable body is
/// retried).
async fn body_fault_case(action: Action) {
    fault_case(
        "max_retries = 1",
        |f| {
            f.reset_counts();
            f.add_fault(Fault::always(Match::AllSeats, action.clone()));
        },
        |f| {
            assert_eq!(
                f.counts().seat_requests,
                2 * 3 * 2,
                "two cycles, three checks, each retried once"
            );
            f.clear_faults();
        },
        "body",
        "",
    )
    .await;
}

#[tokio::test]
async fn oversized_chunked_bodies() {
    // No Content-Length: only counting the bytes read finds the cap. The
    // body is an active seat, so reading it whole would be conclusive.
    body_fault_case(Action::OversizedChunked(3 << 20)).await;
}

#[tokio::test]
async fn bodies_cut_off_mid_stream() {
    body_fault_case(Action::CutMidBody).await;
}

/// The two streamed faults really are what the cases above rely on: a 200
/// with no `Content-Length` whose body is over 1 MiB, and a 200 whose body
/// starts and then fails.
#[tokio::test]
async fn the_fake_streams_bodies_without_a_length_and_cuts_them() {
    let fake = FakeStore::start().await.unwrap();
    let url = format!("{}/V1/Inventory/{P}/{S}/Seats/{ALICE}", fake.base_url());
    let http = reqwest::Client::new();

    fake.add_fault(Fault::times(
        1,
        Match::AllSeats,
        Action::OversizedChunked(3 << 20),
    ));
    let resp = http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers().get("content-length"), None);
    assert_eq!(
        resp.headers()
            .get("transfer-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("chunked")
    );
    let body = resp.bytes().await.unwrap();
    assert_eq!(body.len(), 3 << 20);
    assert!(body.starts_with(b"{\"State\":\"Active\""));

    fake.add_fault(Fault::times(1, Match::AllSeats, Action::CutMidBody));
    let mut resp = http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let first = resp.chunk().await.expect("the first chunk arrives");
    assert!(first.is_some_and(|c| !c.is_empty()));
    let err = loop {
        match resp.chunk().await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the body ended cleanly"),
            Err(e) => break e,
        }
    };
    // reqwest reports a failed body read as a body or decode error; the
    // client counts both as `body`.
    assert!(err.is_body() || err.is_decode(), "{err:?}");
}

#[tokio::test]
async fn a_200_without_a_usable_state() {
    // A 200 whose state is missing, not a string or blank is garbage, not
    // "no seat". (A named unknown state is a conclusive 0 per SPEC §5; see
    // checks.)
    for body in [
        "{\"State\":7,\"AssignedTo\":\"x\"}",
        "{\"AssignedTo\":\"x\"}",
        "{\"state\":\"  \",\"assignedTo\":\"x\"}",
    ] {
        fault_case(
            "",
            |f| f.add_fault(Fault::always(Match::AllSeats, Action::Body(body.into()))),
            clear,
            "decode",
            "",
        )
        .await;
    }
}

#[tokio::test]
async fn token_endpoint_failing_in_every_way() {
    let variants: [(Action, &str); 4] = [
        (Fault::status(500), "500"),
        (Action::Delay(Duration::from_secs(3)), "timeout"),
        (Action::Body("<html>login</html>".into()), "decode"),
        (
            Action::Status {
                code: 400,
                body: "{\"error\":\"invalid_client\",\"error_description\":\"AADSTS7000215: Invalid client secret is provided.\"}".into(),
                retry_after: None,
            },
            "invalid_client",
        ),
    ];
    for (action, reason) in variants {
        let h = fault_case(
            "max_retries = 0",
            |f| {
                f.revoke_tokens();
                f.add_fault(Fault::always(Match::Token, action.clone()));
            },
            clear,
            "token",
            "",
        )
        .await;
        let m = h.scrape().await;
        let failures = m
            .value(
                "msfb_oauth_token_request_failures_total",
                &[("reason", reason)],
            )
            .unwrap_or(0.0);
        assert!(failures >= 1.0, "{reason}: {}", m.text);
    }
}

#[tokio::test]
async fn token_endpoint_down_before_the_first_token() {
    // No token was ever cached: every check fails with code "token".
    let h = Harness::new(&product(&USERS), "").await;
    h.fake.set_seat(P, S, ALICE, FakeSeat::active());
    h.fake
        .add_fault(Fault::always(Match::Token, Fault::status(503)));
    h.cycle().await;
    let m = h.scrape().await;
    assert_eq!(m.active(ALICE), None, "no answer, no seat series");
    assert_eq!(errors_total(&m, "token", ""), 3.0);
    assert_eq!(
        m.value(
            "msfb_oauth_token_request_failures_total",
            &[("reason", "503")]
        ),
        Some(1.0),
        "one request, then backoff"
    );
    h.fake.clear_faults();
    cycle_until_healed(&h).await;
    assert_eq!(h.scrape().await.active(ALICE), Some(1.0));
}

#[tokio::test]
async fn a_token_expiring_mid_cycle_is_refreshed_before_it_fails() {
    let h = Harness::new(&product(&USERS), "max_concurrency = 1").await;
    for u in USERS {
        h.fake.set_seat(P, S, u, FakeSeat::active());
    }
    // Tokens live 2 s and every request takes 0.4 s, so a 3-target cycle
    // outlives the first token's refresh point.
    h.fake.set_token_lifetime(Duration::from_secs(2));
    h.fake.set_expires_in_as_number(true);
    h.fake.add_fault(Fault::always(
        Match::AllSeats,
        Action::Delay(Duration::from_millis(400)),
    ));
    for _ in 0..3 {
        assert!(h.cycle().await.all_conclusive());
    }
    let m = h.scrape().await;
    assert_eq!(
        m.api("get_seat", "401"),
        None,
        "no request went out with a stale token"
    );
    assert!(h.fake.counts().token_requests >= 2);
}

#[tokio::test]
async fn an_absurd_token_lifetime_is_no_crash() {
    let h = Harness::new(&product(&["a@contoso.com"]), "").await;
    h.fake.set_seat(P, S, "a@contoso.com", FakeSeat::active());
    for number in [false, true] {
        h.fake.set_expires_in_as_number(number);
        h.fake.set_token_lifetime(Duration::from_secs(u64::MAX));
        h.fake.revoke_tokens();
        for _ in 0..2 {
            assert!(h.cycle().await.all_conclusive());
        }
    }
    assert_eq!(h.scrape().await.active("a@contoso.com"), Some(1.0));
}

#[tokio::test]
async fn a_token_revoked_mid_cycle_is_replaced() {
    let h = Harness::with_seats(8, "max_concurrency = 1\nmax_retries = 0").await;
    h.fake.add_fault(Fault::always(
        Match::AllSeats,
        Action::Delay(Duration::from_millis(100)),
    ));
    let cycle = h.cycle();
    let revoke = async {
        tokio::time::sleep(Duration::from_millis(350)).await;
        h.fake.revoke_tokens();
    };
    let (report, ()) = tokio::join!(cycle, revoke);
    assert!(report.all_conclusive(), "{report:?}");
    let m = h.scrape().await;
    assert_eq!(
        m.api("get_seat", "401"),
        Some(1.0),
        "one 401, then a new token"
    );
    assert_eq!(h.fake.counts().token_requests, 2);
}

#[tokio::test]
async fn a_401_storm() {
    let h = fault_case(
        "max_retries = 2",
        |f| f.add_fault(Fault::always(Match::AllSeats, Fault::status(401))),
        clear,
        "401",
        "",
    )
    .await;
    // One forced refresh for the whole storm, not one per check.
    assert!(h.fake.counts().token_requests <= 2, "{:?}", h.fake.counts());
}

/// Waits (blocking) until nothing accepts connections on `fake`'s port.
fn wait_until_refused(fake: &FakeStore) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(fake.addr()).is_ok() {
        assert!(Instant::now() < deadline, "the fake did not stop");
        std::thread::sleep(Duration::from_millis(10));
    }
}

// Multi-threaded: the fake's server task must run while this test's
// thread waits for the port to close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_refusing_connections() {
    fault_case(
        "max_retries = 1",
        |f| {
            f.stop();
            wait_until_refused(f);
        },
        |f| {
            // Restart on the same port; the seats are the same data.
            futures::executor::block_on(f.restart()).expect("restart the fake");
        },
        "connect",
        "",
    )
    .await;
}

#[tokio::test]
async fn a_seat_revoked_during_a_throttling_storm_is_reported_after_it() {
    let h = baseline("max_retries = 0").await;
    h.fake.add_fault(Fault::always(
        Match::AllSeats,
        Fault::status_retry_after(429, "0"),
    ));
    h.cycle().await;
    h.fake.remove_seat(P, S, ALICE);
    for _ in 0..3 {
        h.cycle().await;
        assert_eq!(h.scrape().await.active(ALICE), Some(1.0));
    }
    h.fake.clear_faults();
    h.cycle().await;
    let m = h.scrape().await;
    assert_eq!(m.active(ALICE), Some(0.0));
    assert_eq!(m.errors(ALICE, "404", "seat"), Some(1.0));
    assert_eq!(m.lost(ALICE), Some(1.0));
}

#[tokio::test]
async fn a_token_revoked_right_after_a_forced_refresh_is_still_replaced() {
    // In order: alice's 401 forces a new token, bob and carol use it
    // successfully; then the tenant revokes it.
    let h = baseline("max_retries = 0\nmax_concurrency = 1").await;
    h.fake
        .add_fault(Fault::always(Match::User(ALICE.into()), Fault::status(401)));
    let report = h.cycle().await;
    assert_eq!(report.conclusive, 2);
    h.fake.revoke_tokens();
    let report = h.cycle().await;
    assert_eq!(
        report.conclusive, 2,
        "bob and carol get a new token: {report:?}"
    );
    let m = h.scrape().await;
    assert_eq!(m.success(BOB), Some(1.0));
    assert_eq!(m.errors(ALICE, "401", ""), Some(2.0));
}
