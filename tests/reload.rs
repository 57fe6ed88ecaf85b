//! Reload (SPEC §9): validate first, change nothing on a bad file, swap the
//! target set atomically on a good one, re-read secret and users files, and
//! never block a scrape.

use std::time::{Duration, Instant};

use msfb_seat_exporter::fake_store::{FakeSeat, Fault, Match};
use tokio_util::sync::CancellationToken;

use crate::util::{ALICE, BOB, CAROL, Harness, LoadGate, P, S, eventually, product};

async fn reload(h: &Harness) -> (u16, String) {
    h.request("POST", "/-/reload").await
}

#[tokio::test]
async fn bad_files_change_nothing_and_name_the_problem() {
    let h = Harness::new(&product(&[ALICE, BOB]), "").await;
    h.fake.set_seat(P, S, ALICE, FakeSeat::active());
    h.fake.add_user(BOB);
    h.cycle().await;
    let good = std::fs::read_to_string(h.config_path()).unwrap();
    let ok_time = h
        .scrape()
        .await
        .value(
            "msfb_seat_exporter_config_last_reload_success_timestamp_seconds",
            &[],
        )
        .unwrap();

    let bad: [(&str, String); 10] = [
        ("syntax", good.replace("[poll]", "[poll")),
        (
            "unknown key",
            good.replace("[poll]\n", "[poll]\nintervall = \"5m\"\n"),
        ),
        (
            "interval",
            good.replace("interval = \"10s\"", "interval = \"1s\""),
        ),
        (
            "no products",
            good.split("[[products]]").next().unwrap().to_owned(),
        ),
        ("bad user", good.replace(BOB, "bob-at-contoso")),
        ("duplicate", format!("{good}\n{}", product(&[CAROL]))),
        (
            "secret file",
            good.replace(
                "client_secret_file = \"secret\"",
                "client_secret_file = \"gone\"",
            ),
        ),
        (
            "timeout",
            good.replace("timeout = \"2s\"", "timeout = \"20s\""),
        ),
        (
            "base url",
            good.replace("base_url = \"http://", "base_url = \"gopher://"),
        ),
        (
            "users file",
            good.replace("users = [", "users_file = \"nobody.txt\"\nusers = ["),
        ),
    ];
    let keys = [
        "config.toml:",
        "poll.intervall",
        "poll.interval",
        "products:",
        "products[0].users[1]",
        "products[1]: duplicate product",
        "auth.client_secret_file",
        "store.timeout",
        "store.base_url",
        "products[0].users_file",
    ];
    for ((what, text), key) in bad.iter().zip(keys) {
        std::fs::write(h.config_path(), text).unwrap();
        let (status, body) = reload(&h).await;
        assert_eq!(status, 500, "{what}");
        assert!(body.contains(key), "{what}: {body}");
        assert_eq!(h.reload_gauge().await, Some(0.0), "{what}");
        // The old configuration keeps serving.
        assert_eq!(h.exporter.generation().table.len(), 2, "{what}");
        let m = h.scrape().await;
        assert_eq!(m.active(ALICE), Some(1.0), "{what}");
        assert_eq!(m.active(BOB), Some(0.0), "{what}");
        assert!(h.cycle().await.all_conclusive(), "{what}: still polling");
    }
    std::fs::write(h.config_path(), good).unwrap();
    assert_eq!(reload(&h).await.0, 200);
    let m = h.scrape().await;
    assert_eq!(
        m.value("msfb_seat_exporter_config_last_reload_successful", &[]),
        Some(1.0)
    );
    assert!(
        m.value(
            "msfb_seat_exporter_config_last_reload_success_timestamp_seconds",
            &[]
        )
        .unwrap()
            >= ok_time
    );
}

#[tokio::test]
async fn adding_and_removing_users_keeps_state_of_the_kept() {
    let h = Harness::new(&product(&[ALICE, BOB]), "max_retries = 0").await;
    h.fake.set_seat(P, S, ALICE, FakeSeat::active());
    h.fake.set_seat(P, S, BOB, FakeSeat::active());
    h.fake.set_seat(P, S, CAROL, FakeSeat::active());
    h.cycle().await;
    // Give alice history: a loss, a regain and an error.
    h.fake.remove_seat(P, S, ALICE);
    h.cycle().await;
    h.fake.set_seat(P, S, ALICE, FakeSeat::active());
    h.fake.add_fault(Fault::times(
        1,
        Match::User(ALICE.into()),
        Fault::status(500),
    ));
    h.cycle().await;
    h.cycle().await;
    let before = h.scrape().await;
    assert_eq!(
        before.value("msfb_seat_lost_total", &[("user", ALICE)]),
        Some(1.0)
    );

    // Run the real poll loop so the reload's catch-up check is exercised.
    let cancel = CancellationToken::new();
    let poller = tokio::spawn({
        let exporter = h.exporter.clone();
        let cancel = cancel.clone();
        async move { exporter.run_poller(cancel).await }
    });

    h.write_config(&product(&[ALICE, CAROL]), "max_retries = 0");
    assert_eq!(reload(&h).await.0, 200);
    let m = h.scrape().await;
    // bob vanished at once, from every family.
    assert!(!m.text.contains(BOB), "removed target still exported");
    // alice kept her counters.
    for name in [
        "msfb_seat_lost_total",
        "msfb_seat_check_errors_total",
        "msfb_seat_active",
    ] {
        assert_eq!(
            m.find(name, &[("user", ALICE)]),
            before.find(name, &[("user", ALICE)]),
            "{name}"
        );
    }
    // carol is checked right after the reload, not at the next tick.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = h.scrape().await;
        if m.active(CAROL) == Some(1.0) {
            assert_eq!(m.value("msfb_seats", &[("state", "unknown")]), Some(0.0));
            break;
        }
        assert!(Instant::now() < deadline, "carol was never checked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cancel.cancel();
    poller.await.unwrap();
}

#[tokio::test]
async fn a_new_target_starts_unknown() {
    let h = Harness::new(&product(&[ALICE]), "").await;
    h.fake.set_seat(P, S, ALICE, FakeSeat::active());
    h.cycle().await;
    h.write_config(&product(&[ALICE, CAROL]), "");
    assert_eq!(reload(&h).await.0, 200);
    let m = h.scrape().await;
    assert_eq!(m.active(CAROL), None);
    assert_eq!(m.lost(CAROL), Some(0.0));
    assert_eq!(m.value("msfb_seats", &[("state", "unknown")]), Some(1.0));
    assert_eq!(m.value("msfb_seats", &[("state", "active")]), Some(1.0));
}

#[tokio::test]
async fn users_files_are_re_read() {
    let users = format!("{ALICE}\n");
    let h = Harness::with_files(
        &format!(
            "[[products]]\nproduct_id = \"{P}\"\nsku_id = \"{S}\"\nusers_file = \"users.txt\"\n"
        ),
        "",
        &[("users.txt", &users)],
    )
    .await;
    assert_eq!(h.exporter.generation().table.len(), 1);
    h.write_file("users.txt", &format!("{ALICE}\n{BOB}\n# {CAROL}\n"));
    assert_eq!(reload(&h).await.0, 200);
    assert_eq!(h.exporter.generation().table.len(), 2);
}

#[tokio::test]
async fn rotating_the_secret() {
    let h = Harness::new(&product(&[ALICE]), "max_retries = 0").await;
    h.fake.set_seat(P, S, ALICE, FakeSeat::active());
    assert!(h.cycle().await.all_conclusive());
    // The tenant rotates the secret: old tokens die, the old secret fails.
    h.fake.set_client_secret("rotated-secret");
    h.fake.revoke_tokens();
    assert!(!h.cycle().await.all_conclusive());
    let m = h.scrape().await;
    assert_eq!(m.active(ALICE), Some(1.0));
    assert_eq!(
        m.value(
            "msfb_oauth_token_request_failures_total",
            &[("reason", "invalid_client")]
        ),
        Some(1.0)
    );
    // The operator writes the new secret and reloads.
    h.write_file("secret", "rotated-secret\n");
    assert_eq!(reload(&h).await.0, 200);
    assert!(h.cycle().await.all_conclusive());
    assert_eq!(h.scrape().await.success(ALICE), Some(1.0));
}

#[tokio::test]
async fn concurrent_reloads_are_serialised_and_all_succeed() {
    let h = Harness::new(&product(&[ALICE]), "").await;
    h.write_config(&product(&[ALICE, BOB, CAROL]), "");
    let reloads: Vec<_> = (0..20).map(|_| reload(&h)).collect();
    for (status, body) in futures::future::join_all(reloads).await {
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(h.exporter.generation().table.len(), 3);
}

/// Reloads that wait until released: the harness's loads wait at its
/// [`LoadGate`] (a FIFO config did this before FIFOs were refused). The
/// reload deadline is far away, so only the test decides when they end.
struct SlowReloads {
    gate: LoadGate,
}

impl SlowReloads {
    async fn harness(products: &str) -> (Harness, SlowReloads) {
        let (h, gate) = Harness::gated(products, Duration::from_secs(600)).await;
        gate.close();
        (h, SlowReloads { gate })
    }

    /// Waits until a reload is waiting at the gate. A spawned reload gets
    /// there when its task and its blocking load are scheduled, which on a
    /// busy machine may be long after the spawn.
    async fn wait_for_reader(&mut self) {
        let gate = self.gate.clone();
        eventually(
            "a reload waiting at the gate",
            Duration::from_secs(60),
            || {
                let waiting = gate.waiting();
                async move {
                    if waiting > 0 {
                        Ok(())
                    } else {
                        Err("no reload waiting".to_owned())
                    }
                }
            },
        )
        .await;
    }

    /// Lets the waiting reloads read the configuration.
    fn release(self) {
        self.gate.open();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reload_never_blocks_a_scrape() {
    let (h, mut slow) = SlowReloads::harness(&product(&[ALICE])).await;
    h.fake.set_seat(P, S, ALICE, FakeSeat::active());
    h.cycle().await;
    let router = h.router.clone();
    let pending = tokio::spawn(crate::util::send(router, "POST", "/-/reload"));
    slow.wait_for_reader().await;
    // The reload is stuck at the gate; scrapes and pages still answer.
    for path in ["/metrics", "/status", "/", "/-/ready"] {
        let (status, _) = tokio::time::timeout(Duration::from_secs(5), h.get(path))
            .await
            .expect("answered while a reload is in progress");
        assert_eq!(status, 200, "{path}");
    }
    assert!(!pending.is_finished());
    slow.release();
    assert_eq!(pending.await.unwrap().0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_forty_requests_are_served_at_once() {
    let (h, mut slow) = SlowReloads::harness(&product(&[ALICE])).await;
    // 41 reloads: one waits at the gate and 39 wait for it, each holding a
    // slot; exactly one finds no slot and is refused at once.
    let mut pending: Vec<_> = (0..41)
        .map(|_| tokio::spawn(crate::util::send(h.router.clone(), "POST", "/-/reload")))
        .collect();
    slow.wait_for_reader().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let refused = loop {
        if let Some(i) = pending.iter().position(|p| p.is_finished()) {
            break pending.swap_remove(i).await.unwrap();
        }
        assert!(Instant::now() < deadline, "no request was refused");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(refused, (503, "too many concurrent requests\n".to_owned()));
    // While the 40 are in, scrapes are refused too; liveness is exempt.
    assert_eq!(h.get("/metrics").await.0, 503);
    assert_eq!(h.get("/-/healthy").await.0, 200);
    slow.release();
    for p in pending {
        assert_eq!(p.await.unwrap().0, 200);
    }
    assert_eq!(h.get("/metrics").await.0, 200);
}

/// Reloads that queue up behind a running one share the next reload: ten
/// requests made while one is stuck reading the file cost one more reload,
/// not ten (one log line each), and all succeed.
#[tokio::test]
async fn queued_reloads_share_one_reload() {
    let (_guard, lines) = crate::util::capture_info_lines();
    let (h, mut slow) = SlowReloads::harness(&product(&[ALICE])).await;
    let first = tokio::spawn(crate::util::send(h.router.clone(), "POST", "/-/reload"));
    // It waits at the gate until release.
    slow.wait_for_reader().await;
    let queued: Vec<_> = (0..10)
        .map(|_| tokio::spawn(crate::util::send(h.router.clone(), "POST", "/-/reload")))
        .collect();
    // On this one-thread runtime, yielding lets every queued request take
    // its ticket and wait on the lock.
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    slow.release();
    assert_eq!(first.await.unwrap().0, 200);
    for q in queued {
        assert_eq!(q.await.unwrap().0, 200);
    }
    let reloads = lines()
        .into_iter()
        .filter(|e| e["message"] == "configuration reloaded")
        .count();
    assert_eq!(reloads, 2, "{:?}", lines());
}
