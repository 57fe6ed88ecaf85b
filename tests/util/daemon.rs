//! The daemon (the real binary) on a free loopback port against a fake
//! Store, with whatever `[web]` settings and products a test gives, and its
//! resident memory: for tests of the HTTP side under load.

use std::net::SocketAddr;
use std::time::Duration;

use msfb_seat_exporter::fake_store::{self, FakeStore};
use tempfile::TempDir;

use super::harness::write_private;
use super::process::{free_port, rss};
use super::wait::until_200;

/// The daemon (`msfb_seat_exporter` binary) against a fake Store.
pub struct Daemon {
    pub child: tokio::process::Child,
    pub addr: SocketAddr,
    pub fake: FakeStore,
    _dir: TempDir,
}

impl Daemon {
    /// Starts the daemon with `web` lines in `[web]`, `products`, and extra
    /// files beside the config; returns once `/-/healthy` answers.
    pub async fn start(web: &str, products: &str, files: &[(&str, &str)]) -> Daemon {
        let fake = FakeStore::start().await.expect("fake store");
        let dir = tempfile::tempdir().unwrap();
        write_private(&dir.path().join("secret"), fake_store::CLIENT_SECRET);
        for (name, text) in files {
            write_private(&dir.path().join(name), text);
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let config = dir.path().join("config.toml");
        let text = format!(
            "[web]\nlisten_address = \"{addr}\"\n{web}\n\n{}",
            fake.config_toml("secret", products)
        );
        write_private(&config, &text);
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_msfb_seat_exporter"))
            .arg(format!("--config.file={}", config.display()))
            .arg("--log.level=warn")
            .env_remove("CREDENTIALS_DIRECTORY")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start the daemon");
        until_200(
            "the daemon listens",
            Duration::from_secs(60),
            &format!("http://{addr}/-/healthy"),
        )
        .await;
        Daemon {
            child,
            addr,
            fake,
            _dir: dir,
        }
    }

    /// Resident memory of the daemon process, in bytes.
    pub fn rss(&self) -> u64 {
        rss(self.child.id().expect("running"))
    }
}
