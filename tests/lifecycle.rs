//! The daemon's life under faults (SPEC §2, §10): SIGTERM while checks hang
//! on a slow Store, and secrets and tokens staying out of every log line and
//! page while the token endpoint and the API misbehave.

use std::time::{Duration, Instant};

use msfb_seat_exporter::fake_store::{self, Action, FakeSeat, Fault, Match};
use msfb_seat_exporter::poller::MAX_LANES;

use crate::util::binary::{Format, Running};
use crate::util::daemon::Daemon;
use crate::util::process::threads;

use crate::util::{P, S, eventually};

const USERS: [&str; 3] = ["alice@contoso.com", "bob@contoso.com", "carol@contoso.com"];

#[tokio::test]
async fn sigterm_during_slow_checks_exits_0_within_5_seconds() {
    // Every Get seat hangs for 60 s; the timeout (9 s) and two retries would
    // keep a cycle busy for half a minute.
    let edit = |config: String| {
        config
            .replace("timeout = \"2s\"", "timeout = \"9s\"")
            .replace("[store]\n", "[store]\nmax_retries = 2\n")
    };
    let running = Running::start_with(Format::Logfmt, "info", "", edit, |fake| {
        for u in USERS {
            fake.set_seat(P, S, u, FakeSeat::active());
        }
        fake.add_fault(Fault::always(
            Match::AllSeats,
            Action::Delay(Duration::from_secs(60)),
        ));
    })
    .await;
    running.wait_for("msfb_seat_exporter started").await;
    running.wait_for_seat_requests(3).await;
    let asked = Instant::now();
    let (code, lines) = running.stop().await;
    let took = asked.elapsed();
    assert_eq!(code, Some(0), "{lines:#?}");
    assert!(took < Duration::from_secs(5), "took {took:?} to stop");
}

#[tokio::test]
async fn sigint_shuts_down_like_sigterm() {
    let running = Running::start_with(
        Format::Logfmt,
        "info",
        "",
        |c| c,
        |fake| {
            for u in USERS {
                fake.set_seat(P, S, u, FakeSeat::active());
            }
        },
    )
    .await;
    running.wait_for("msfb_seat_exporter started").await;
    let asked = Instant::now();
    let (code, lines) = running.stop_with(libc::SIGINT).await;
    let took = asked.elapsed();
    assert_eq!(code, Some(0), "{lines:#?}");
    assert!(took < Duration::from_secs(5), "took {took:?} to stop");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("msfb_seat_exporter stopped")),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn secrets_and_tokens_never_reach_logs_or_pages() {
    let running = Running::start_with(Format::Json, "debug", "", |c| c, |fake| {
        for u in USERS {
            fake.set_seat(P, S, u, FakeSeat::active());
        }
        // The first token request is refused with a body that echoes the
        // secret (a badly behaved proxy); later ones succeed.
        fake.add_fault(Fault::times(
            1,
            Match::Token,
            Action::Status {
                code: 400,
                body: format!(
                    "{{\"error\":\"invalid_client\",\"error_description\":\"AADSTS7000215: bad secret {}\"}}",
                    fake_store::CLIENT_SECRET
                ),
                retry_after: None,
            },
        ));
        // alice's checks get 401s, bob's connections drop.
        fake.add_fault(Fault::always(Match::User(USERS[0].into()), Fault::status(401)));
        fake.add_fault(Fault::always(Match::User(USERS[1].into()), Action::Drop));
    })
    .await;
    let started = running.wait_for("msfb_seat_exporter started").await;
    let base = format!("http://{}", started["address"]);
    // Two cycles: the first without a token, the second with one.
    eventually("two cycles", Duration::from_secs(60), || async {
        let n = running.fake.counts().token_requests;
        if n >= 2 && running.fake.counts().seat_requests >= 5 {
            Ok(())
        } else {
            Err(format!("{:?}", running.fake.counts()))
        }
    })
    .await;
    let http = reqwest::Client::new();
    let mut pages = String::new();
    for path in ["/metrics", "/status", "/status?format=json", "/"] {
        pages.push_str(
            &http
                .get(format!("{base}{path}"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
    }
    let (code, lines) = running.stop().await;
    assert_eq!(code, Some(0));
    let logs = lines.join("\n");
    assert!(
        logs.contains("token request failed"),
        "the failure is logged: {logs}"
    );
    assert!(logs.contains("invalid_client"), "by its reason");
    for (what, text) in [("logs", &logs), ("pages", &pages)] {
        assert!(
            !text.contains(fake_store::CLIENT_SECRET),
            "secret in {what}"
        );
        assert!(!text.contains("fake-token-"), "token in {what}");
        assert!(!text.contains("Bearer"), "authorization header in {what}");
    }
}

/// The daemon checks on one poll lane per core (at most `MAX_LANES`), each a
/// thread of its own at nice +19, so a scrape gets a core first; the
/// threads that serve HTTP keep the process's priority (docs/design.md).
/// A persistence file makes the lane save after each cycle, so the lanes'
/// blocking threads (`msfb-poll-io`) are seen too.
#[tokio::test]
async fn the_daemon_polls_on_one_lane_per_core_at_the_lowest_priority() {
    let products = crate::util::product(&USERS) + "\n[persistence]\nfile = \"state\"\n";
    let d = Daemon::start("", &products, &[]).await;
    let pid = d.child.id().expect("running");
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let expected: Vec<String> = (0..cores.min(MAX_LANES))
        .map(|i| format!("msfb-poll-{i}"))
        .collect();
    let all = eventually(
        "a save on a lane's blocking thread",
        Duration::from_secs(30),
        || async {
            let all = threads(pid);
            if all.iter().any(|(name, _)| name == "msfb-poll-io") {
                Ok(all)
            } else {
                Err(format!("{all:?}"))
            }
        },
    )
    .await;
    let lanes: Vec<&str> = all
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| name.starts_with("msfb-poll-") && *name != "msfb-poll-io")
        .collect();
    assert_eq!(lanes, expected, "{all:?}");
    // The daemon inherits this test's priority (CI may run it niced).
    let own = rustix::process::getpriority_process(None).expect("own priority");
    for (name, nice) in &all {
        let polling = name.starts_with("msfb-poll");
        assert_eq!(*nice, if polling { 19 } else { own }, "{name}: {all:?}");
    }
    assert!(
        all.iter().any(|(name, _)| name.starts_with("tokio-rt")),
        "{all:?}"
    );
}
