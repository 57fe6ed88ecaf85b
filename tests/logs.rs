//! The binary's log lines (issue 4): `--log.format=logfmt` and `json` both
//! parse line by line; at info there is one line per seat state change and
//! per reload and none per successful check; a failed reload is one error
//! line naming file, line and key; with `user_label = "hash"` no UPN appears
//! in the logs, the metrics or the pages of the running binary.
//!
//! These run the real binary against the fake Store for three poll cycles,
//! so each takes a little over twice the 10 s minimum interval.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use msfb_seat_exporter::fake_store::{self, FakeSeat, FakeStore, Fault, Match};
use msfb_seat_exporter::targets::hash_user;
use tokio::io::AsyncBufReadExt as _;

use crate::served::eventually;
use crate::util::{P, S, product};

const ALICE: &str = "alice@contoso.com";
const BOB: &str = "bob@contoso.com";
const CAROL: &str = "carol@contoso.com";
const HASH_KEY: &str = "log-test-key";
/// A plain password in the bad file of the failed reload: refused, never
/// repeated.
const PLAIN_PASSWORD: &str = "hunter2-plain-password";
/// What the failed reload logs.
const RELOAD_FAILED: &str = "configuration reload failed; keeping the previous configuration";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Format {
    Logfmt,
    Json,
}

/// One log line as key → value.
pub(crate) type Event = BTreeMap<String, String>;

/// Splits a logfmt line: `key=value` pairs, values bare or double-quoted
/// with backslash escapes.
fn parse_logfmt(line: &str) -> Result<Event, String> {
    let mut event = Event::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(event);
        }
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        if key.is_empty() || key.contains(' ') || key.contains('"') {
            return Err(format!("bad key {key:?} in {line}"));
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => match chars.next() {
                        Some('n') => value.push('\n'),
                        Some(c) => value.push(c),
                        None => return Err(format!("dangling escape in {line}")),
                    },
                    Some('"') => break,
                    Some(c) => value.push(c),
                    None => return Err(format!("unterminated quote in {line}")),
                }
            }
            if chars.peek().is_some_and(|&c| c != ' ') {
                return Err(format!("text after a quoted value in {line}"));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                if c == '"' {
                    return Err(format!("quote inside a bare value in {line}"));
                }
                value.push(c);
                chars.next();
            }
        }
        if event.insert(key.clone(), value).is_some() {
            return Err(format!("duplicate key {key} in {line}"));
        }
    }
}

/// A JSON line: one flat object.
fn parse_json(line: &str) -> Result<Event, String> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("{e}: {line}"))?;
    let object = v
        .as_object()
        .ok_or_else(|| format!("not an object: {line}"))?;
    Ok(object
        .iter()
        .map(|(k, v)| {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), text)
        })
        .collect())
}

/// Parses a line and checks the fields every line has; `level` is
/// lower-cased (the JSON layer writes `INFO`).
fn parse(format: Format, line: &str) -> Event {
    let mut event = match format {
        Format::Logfmt => parse_logfmt(line),
        Format::Json => parse_json(line),
    }
    .unwrap_or_else(|e| panic!("unparsable {format:?} line: {e}"));
    let ts = if format == Format::Json {
        "timestamp"
    } else {
        "ts"
    };
    for key in [ts, "level", "message", "target"] {
        assert!(event.contains_key(key), "no {key} in {line}");
    }
    let level = event["level"].to_lowercase();
    event.insert("level".into(), level);
    event
}

/// The binary running against a fake Store, with its stderr collected.
pub(crate) struct Running {
    format: Format,
    child: tokio::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: tokio::task::JoinHandle<()>,
    pub(crate) fake: FakeStore,
    dir: tempfile::TempDir,
}

impl Running {
    async fn start(format: Format, level: &str, metrics: &str) -> Running {
        let edit = |config: String| config.replace("[store]\n", "[store]\nmax_retries = 0\n");
        Self::start_with(format, level, metrics, edit, |fake| {
            for u in [ALICE, BOB, CAROL] {
                fake.set_seat(P, S, u, FakeSeat::active());
            }
            // carol's checks fail: warnings and debug lines, never a lost seat.
            fake.add_fault(Fault::always(Match::User(CAROL.into()), Fault::status(503)));
        })
        .await
    }

    /// Starts the binary for alice, bob and carol with `metrics` in the
    /// `[metrics]` table and the config text passed through `edit`, after
    /// `setup` prepared the fake Store.
    pub(crate) async fn start_with(
        format: Format,
        level: &str,
        metrics: &str,
        edit: impl FnOnce(String) -> String,
        setup: impl FnOnce(&FakeStore),
    ) -> Running {
        let fake = FakeStore::start().await.unwrap();
        setup(&fake);
        let dir = crate::util::temp_dir(&[
            ("secret", fake_store::CLIENT_SECRET),
            ("hash_key", &format!("{HASH_KEY}\n")),
        ]);
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[metrics]\n{metrics}\n\n{}",
                edit(fake.config_toml("secret", &product(&[ALICE, BOB, CAROL])))
            ),
        )
        .unwrap();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_msfb_seat_exporter"))
            .arg(format!("--config.file={}", config.display()))
            .arg("--web.listen-address=127.0.0.1:0")
            .arg(format!("--log.level={level}"))
            .arg(format!(
                "--log.format={}",
                if format == Format::Json {
                    "json"
                } else {
                    "logfmt"
                }
            ))
            .env_remove("CREDENTIALS_DIRECTORY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let reader = tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        Running {
            format,
            child,
            lines,
            reader,
            fake,
            dir,
        }
    }

    /// The configuration file the binary was started with.
    pub(crate) fn config_path(&self) -> std::path::PathBuf {
        self.dir.path().join("config.toml")
    }

    pub(crate) fn events(&self) -> Vec<Event> {
        let lines = self.lines.lock().unwrap().clone();
        lines.iter().map(|l| parse(self.format, l)).collect()
    }

    /// Waits until the fake Store has seen at least `n` Get seat requests.
    pub(crate) async fn wait_for_seat_requests(&self, n: u64) {
        eventually("checks in flight", Duration::from_secs(60), || async {
            let seen = self.fake.counts().seat_requests;
            if seen >= n {
                Ok(())
            } else {
                Err(format!("{seen} requests"))
            }
        })
        .await;
    }

    /// Waits for a line with `message` (generous deadline: a busy machine).
    pub(crate) async fn wait_for(&self, message: &str) -> Event {
        eventually(message, Duration::from_secs(90), || async {
            let events = self.events();
            events
                .iter()
                .find(|e| e["message"] == message)
                .cloned()
                .ok_or_else(|| format!("{:#?}", self.lines.lock().unwrap()))
        })
        .await
    }

    pub(crate) fn signal(&self, signal: libc::c_int) {
        let pid = self.child.id().expect("running") as libc::pid_t;
        // SAFETY: kill(2) with our own child's pid and a plain signal.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// SIGTERM, then the exit code and every line.
    pub(crate) async fn stop(self) -> (Option<i32>, Vec<String>) {
        self.stop_with(libc::SIGTERM).await
    }

    /// `signal` (SIGTERM or SIGINT), then the exit code and every line.
    pub(crate) async fn stop_with(mut self, signal: libc::c_int) -> (Option<i32>, Vec<String>) {
        self.signal(signal);
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("exits after the signal")
            .unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.reader).await;
        let lines = self.lines.lock().unwrap().clone();
        (status.code(), lines)
    }
}

/// Runs the story: start, first cycle, bob's seat revoked, seen at the
/// second cycle, given back, seen at the third, SIGHUP with a good file,
/// SIGHUP with a bad one, SIGTERM. Returns the lines and what the running
/// binary served on the way.
async fn story(format: Format, level: &str, metrics: &str) -> (Vec<String>, Vec<String>) {
    let running = Running::start(format, level, metrics).await;
    let started = running.wait_for("msfb_seat_exporter started").await;
    let base = format!("http://{}", started["address"]);
    let http = reqwest::Client::new();
    eventually("the first cycle", Duration::from_secs(60), || async {
        match http.get(format!("{base}/-/ready")).send().await {
            Ok(r) if r.status() == 200 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
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
