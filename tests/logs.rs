//! The binary's log lines (issue 4): `--log.format=logfmt` and `json` both
//! parse line by line; at info there is one line per seat state change and
//! per reload and none per successful check; a failed reload is one error
//! line naming file, line and key; with `user_label = "hash"` no UPN appears
//! in the logs, the metrics or the pages of the running binary.
//!
//! These run the real binary against the fake Store for three poll cycles,
//! so each takes a little over twice the 10 s minimum interval.

use std::time::Duration;

use msfb_seat_exporter::fake_store::{self, FakeSeat, Fault, Match};
use msfb_seat_exporter::targets::hash_user;

use crate::util::binary::{ALICE, BOB, CAROL, Event, Format, HASH_KEY, Running, parse};
use crate::util::served::client;
use crate::util::{P, S, until_200};

/// A plain password in the bad file of the failed reload: refused, never
/// repeated.
const PLAIN_PASSWORD: &str = "hunter2-plain-password";
/// What the failed reload logs.
const RELOAD_FAILED: &str = "configuration reload failed; keeping the previous configuration";

/// The binary for alice, bob and carol, carol's checks failing; the
/// config with `max_retries = 0`.
async fn start(format: Format, level: &str, metrics: &str) -> Running {
    let edit = |config: String| config.replace("[store]\n", "[store]\nmax_retries = 0\n");
    Running::start_with(format, level, metrics, edit, |fake| {
        for u in [ALICE, BOB, CAROL] {
            fake.set_seat(P, S, u, FakeSeat::active());
        }
        // carol's checks fail: warnings and debug lines, never a lost seat.
        fake.add_fault(Fault::always(Match::User(CAROL.into()), Fault::status(503)));
    })
    .await
}

/// Runs the story: start, first cycle, bob's seat revoked, seen at the
/// second cycle, given back, seen at the third, SIGHUP with a good file,
/// SIGHUP with a bad one, SIGTERM. Returns the lines and what the running
/// binary served on the way.
async fn story(format: Format, level: &str, metrics: &str) -> (Vec<String>, Vec<String>) {
    let running = start(format, level, metrics).await;
    let started = running.wait_for("msfb_seat_exporter started").await;
    let base = format!("http://{}", started["address"]);
    let http = client();
    until_200(
        "the first cycle",
        Duration::from_secs(60),
        &format!("{base}/-/ready"),
    )
    .await;
    running.fake.remove_seat(P, S, BOB);
    running.wait_for("seat lost").await;
    let mut pages = Vec::new();
    for path in ["/metrics", "/status", "/status?format=json", "/"] {
        let resp = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        pages.push(resp.text().await.unwrap());
    }
    running.fake.set_seat(P, S, BOB, FakeSeat::active());
    running.wait_for("seat assigned").await;
    running.signal(libc::SIGHUP);
    running.wait_for("configuration reloaded").await;
    // A bad file: a plain password where a bcrypt hash belongs (line 2).
    let good = std::fs::read_to_string(running.config_path()).unwrap();
    std::fs::write(
        running.config_path(),
        format!("[web]\nbasic_auth_users = {{ prom = \"{PLAIN_PASSWORD}\" }}\n\n{good}"),
    )
    .unwrap();
    running.signal(libc::SIGHUP);
    running.wait_for(RELOAD_FAILED).await;
    let (code, lines) = running.stop().await;
    assert_eq!(code, Some(0), "{lines:#?}");
    (lines, pages)
}

/// The info lines of a run: exactly these, in this order.
fn assert_info_lines(format: Format, lines: &[String], user: &str) {
    let events: Vec<Event> = lines.iter().map(|l| parse(format, l)).collect();
    let info: Vec<&Event> = events.iter().filter(|e| e["level"] == "info").collect();
    let messages: Vec<&str> = info.iter().map(|e| e["message"].as_str()).collect();
    assert_eq!(
        messages,
        [
            "msfb_seat_exporter started",
            "seat lost",
            "seat assigned",
            "configuration reloaded",
            "shutting down",
            "msfb_seat_exporter stopped",
        ],
        "{lines:#?}"
    );
    for change in &info[1..3] {
        assert_eq!(change["user"], user, "{change:?}");
        assert_eq!(change["product_id"], P, "{change:?}");
        assert_eq!(change["sku_id"], S, "{change:?}");
    }
    assert_eq!(info[3]["targets"], "3");
    // The bad file's reload: one error line naming file, line, key and
    // problem, without the password it refused; no secret in any line.
    let errors: Vec<&Event> = events.iter().filter(|e| e["level"] == "error").collect();
    assert_eq!(errors.len(), 1, "{lines:#?}");
    assert_eq!(errors[0]["message"], RELOAD_FAILED);
    let error = &errors[0]["error"];
    assert!(
        error.ends_with(
            "/config.toml:2: web.basic_auth_users.prom: must be a bcrypt hash (\"$2b$...\"), \
             not a plain password"
        ),
        "{error}"
    );
    for line in lines {
        assert!(!line.contains(PLAIN_PASSWORD), "{line}");
        assert!(!line.contains(fake_store::CLIENT_SECRET), "{line}");
    }
    // carol's failures are reported once per cycle (two or more ran), as a
    // warning with counts, not per check; the only other warning is the
    // fake Store's plain-http URL, at start and at the reload.
    let warnings: Vec<&str> = events
        .iter()
        .filter(|e| e["level"] == "warn")
        .map(|e| e["message"].as_str())
        .collect();
    let cycles = warnings
        .iter()
        .filter(|m| **m == "poll cycle finished with inconclusive checks")
        .count();
    assert!(cycles >= 2, "{lines:#?}");
    assert!(
        warnings
            .iter()
            .all(|m| *m == "poll cycle finished with inconclusive checks" || *m == "configuration"),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn logfmt_has_one_line_per_state_change_and_reload_and_none_per_check() {
    let (lines, _) = story(Format::Logfmt, "info", "user_label = \"upn\"").await;
    assert_info_lines(Format::Logfmt, &lines, BOB);
    assert!(lines.iter().all(|l| !l.contains("level=debug")));
}

#[tokio::test]
async fn json_lines_with_hashed_users_never_show_a_upn() {
    let (lines, pages) = story(
        Format::Json,
        "debug",
        "user_label = \"hash\"\nuser_hash_key_file = \"hash_key\"",
    )
    .await;
    let hashed = |u: &str| hash_user(HASH_KEY, u).to_string();
    assert_info_lines(Format::Json, &lines, &hashed(BOB));
    // Debug lines exist (and name users), all with the hash.
    let events: Vec<Event> = lines.iter().map(|l| parse(Format::Json, l)).collect();
    let inconclusive: Vec<&Event> = events
        .iter()
        .filter(|e| e["message"] == "check inconclusive")
        .collect();
    assert!(!inconclusive.is_empty(), "{lines:#?}");
    assert!(inconclusive.iter().all(|e| e["user"] == hashed(CAROL)));
    let everything = format!("{}\n{}", lines.join("\n"), pages.join("\n"));
    for upn in [ALICE, BOB, CAROL] {
        let local = upn.split('@').next().unwrap();
        assert!(
            !everything.contains(local),
            "{local} appears:\n{everything}"
        );
    }
    assert!(!everything.contains("@contoso.com"));
    for page in &pages[..3] {
        for u in [ALICE, BOB, CAROL] {
            assert!(page.contains(&hashed(u)), "{page}");
        }
    }
}
