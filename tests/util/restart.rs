//! The binary stopped, killed and restarted over one state file
//! (`[persistence] file = "state"` in a temporary directory), with its JSON
//! log lines and a real HTTP client: the persistence tests.

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use msfb_seat_exporter::fake_store::{self, FakeStore};
use tempfile::TempDir;

use super::process::spawn_collecting;
use super::{P, S, Scrape, eventually};

/// The key of `hash_key`, for `user_hash_key_file = "hash_key"`.
pub const HASH_KEY: &str = "persistence-test-key";

/// Generous: the machine running the tests may be slow and busy.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A fake Store and a config directory with `[persistence] file = "state"`.
pub struct Restarts {
    pub fake: FakeStore,
    pub dir: TempDir,
}

/// A product block for `P`/`S`: `users` listed, or `None` for discovery.
pub fn products(mode: &str, users: Option<&[&str]>) -> String {
    let users = match users {
        Some(list) => {
            let quoted: Vec<String> = list.iter().map(|u| format!("{u:?}")).collect();
            format!("[{}]", quoted.join(", "))
        }
        None => "\"all\"".into(),
    };
    format!(
        "[[products]]\nproduct_id = \"{P}\"\nsku_id = \"{S}\"\nmode = \"{mode}\"\nusers = {users}\n"
    )
}

impl Restarts {
    /// A fake and a directory with a secret, a hash key and a config for
    /// `products`, with `metrics` in `[metrics]`.
    pub async fn new(products: &str, metrics: &str) -> Restarts {
        let fake = FakeStore::start().await.expect("fake store");
        let dir = crate::util::temp_dir(&[
            ("secret", fake_store::CLIENT_SECRET),
            ("hash_key", &format!("{HASH_KEY}\n")),
        ]);
        let s = Restarts { fake, dir };
        s.write_config(products, metrics, "state");
        s
    }

    /// Rewrites the config, with the state file at `state` (relative).
    pub fn write_config(&self, products: &str, metrics: &str, state: &str) {
        let text = format!(
            "[metrics]\n{metrics}\n\n[persistence]\nfile = \"{state}\"\n\n{}",
            self.fake.config_toml("secret", products)
        );
        std::fs::write(self.dir.path().join("config.toml"), text).expect("write config");
    }

    /// The state file.
    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Starts the binary and waits until it listens.
    pub async fn start(&self) -> Daemon {
        self.start_as(None).await
    }

    /// Starts the binary, lets it save once and stops it: a state file to
    /// restart from.
    pub async fn save_once(&self) {
        let d = self.start().await;
        d.wait_for_saves(1).await;
        d.stop().await;
    }

    /// [`start`](Self::start) as another user (`setpriv`), for permission
    /// cases that root would not see.
    pub async fn start_as(&self, uid: Option<u32>) -> Daemon {
        self.start_with(uid, &[]).await
    }

    /// [`start_as`](Self::start_as) with `args` added to the command line
    /// (say `--persistence.file=…`, which overrides the config's file).
    pub async fn start_with(&self, uid: Option<u32>, args: &[String]) -> Daemon {
        let exe = env!("CARGO_BIN_EXE_msfb_seat_exporter");
        let mut command = match uid {
            Some(uid) => {
                // The other user must read what root wrote.
                for name in ["secret", "hash_key", "config.toml"] {
                    let path = self.dir.path().join(name);
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
                        .expect("chmod");
                }
                let mut c = tokio::process::Command::new("setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={uid}"))
                    .arg("--clear-groups")
                    .arg(exe);
                c
            }
            None => tokio::process::Command::new(exe),
        };
        let (child, lines, _) = spawn_collecting(
            command
                .arg(format!(
                    "--config.file={}",
                    self.dir.path().join("config.toml").display()
                ))
                .arg("--web.listen-address=127.0.0.1:0")
                .arg("--log.level=debug")
                .arg("--log.format=json")
                .args(args),
        );
        let mut d = Daemon {
            child,
            lines,
            addr: String::new(),
            http: reqwest::Client::new(),
        };
        let started = d.wait_for("msfb_seat_exporter started", |_| true).await;
        d.addr = started["address"].as_str().expect("address").to_owned();
        d
    }
}

/// The running binary.
pub struct Daemon {
    child: tokio::process::Child,
    /// Every stderr line so far.
    pub lines: Arc<Mutex<Vec<String>>>,
    addr: String,
    http: reqwest::Client,
}

impl Daemon {
    /// The log lines so far, parsed.
    pub fn events(&self) -> Vec<serde_json::Value> {
        let lines = self.lines.lock().unwrap().clone();
        lines
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// How many lines have `message`.
    pub fn count(&self, message: &str) -> usize {
        self.events()
            .iter()
            .filter(|e| e["message"] == message)
            .count()
    }

    /// Waits for a log line with `message` for which `matches` holds.
    pub async fn wait_for(
        &self,
        message: &str,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        eventually(message, PATIENCE, || async {
            self.events()
                .into_iter()
                .find(|e| e["message"] == message && matches(e))
                .ok_or_else(|| self.lines.lock().unwrap().join("\n"))
        })
        .await
    }

    /// Waits until `n` saves have been logged.
    pub async fn wait_for_saves(&self, n: usize) {
        eventually("saves", PATIENCE, || async {
            let saved = self.count("seat state saved");
            if saved >= n {
                Ok(())
            } else {
                Err(self.lines.lock().unwrap().join("\n"))
            }
        })
        .await;
    }

    /// GET `path`: status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("http://{}{path}", self.addr))
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.text().await.expect("body"))
    }

    /// Scrapes `/metrics`.
    pub async fn scrape(&self) -> Scrape {
        let (status, body) = self.get("/metrics").await;
        assert_eq!(status, 200, "{body}");
        Scrape::parse(&body)
    }

    /// Sends `signal`.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = self.child.id().expect("running") as libc::pid_t;
        // SAFETY: kill(2) on our own child with a plain signal.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill failed");
    }

    /// SIGTERM; the exit must be clean.
    pub async fn stop(mut self) -> Vec<String> {
        self.signal(libc::SIGTERM);
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("exits after SIGTERM")
            .expect("wait");
        let lines = self.lines.lock().unwrap().clone();
        assert_eq!(status.code(), Some(0), "{}", lines.join("\n"));
        lines
    }

    /// SIGKILL: no shutdown, no final save.
    pub async fn kill(mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait().await;
    }
}
