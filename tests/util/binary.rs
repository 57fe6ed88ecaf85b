//! The real binary, started against a fake Store with its stderr
//! collected, and its log lines parsed in both formats (`logfmt`, `json`):
//! for tests of logs, signals and anything only the daemon does.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use msfb_seat_exporter::fake_store::{self, FakeStore};

use super::harness::{product, temp_dir};
use super::process::spawn_collecting;
use super::wait::eventually;

/// The three users the binary is started for.
pub use super::harness::{ALICE, BOB, CAROL};
/// The key in the `hash_key` file written next to the config.
pub const HASH_KEY: &str = "log-test-key";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    Logfmt,
    Json,
}

/// One log line as key → value.
pub type Event = BTreeMap<String, String>;

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
pub fn parse(format: Format, line: &str) -> Event {
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
pub struct Running {
    format: Format,
    child: tokio::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: tokio::task::JoinHandle<()>,
    pub fake: FakeStore,
    dir: tempfile::TempDir,
}

impl Running {
    /// Starts the binary for alice, bob and carol with `metrics` in the
    /// `[metrics]` table and the config text passed through `edit`, after
    /// `setup` prepared the fake Store.
    pub async fn start_with(
        format: Format,
        level: &str,
        metrics: &str,
        edit: impl FnOnce(String) -> String,
        setup: impl FnOnce(&FakeStore),
    ) -> Running {
        let fake = FakeStore::start().await.unwrap();
        setup(&fake);
        let dir = temp_dir(&[
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
        let (child, lines, reader) = spawn_collecting(
            tokio::process::Command::new(env!("CARGO_BIN_EXE_msfb_seat_exporter"))
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
                )),
        );
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
    pub fn config_path(&self) -> std::path::PathBuf {
        self.dir.path().join("config.toml")
    }

    pub fn events(&self) -> Vec<Event> {
        let lines = self.lines.lock().unwrap().clone();
        lines.iter().map(|l| parse(self.format, l)).collect()
    }

    /// Waits until the fake Store has seen at least `n` Get seat requests.
    pub async fn wait_for_seat_requests(&self, n: u64) {
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
    pub async fn wait_for(&self, message: &str) -> Event {
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

    pub fn signal(&self, signal: libc::c_int) {
        let pid = self.child.id().expect("running") as libc::pid_t;
        // SAFETY: kill(2) with our own child's pid and a plain signal.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// SIGTERM, then the exit code and every line.
    pub async fn stop(self) -> (Option<i32>, Vec<String>) {
        self.stop_with(libc::SIGTERM).await
    }

    /// `signal` (SIGTERM or SIGINT), then the exit code and every line.
    pub async fn stop_with(mut self, signal: libc::c_int) -> (Option<i32>, Vec<String>) {
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
