//! An exporter served on a real loopback socket (the `Harness` in
//! `harness.rs` drives the router without one): for TLS, for a real
//! Prometheus, and for anything that needs `[web]` or `[metrics]` settings.

use std::net::SocketAddr;
use std::path::PathBuf;

use msfb_seat_exporter::config::{self, LoadOptions};
use msfb_seat_exporter::exporter::{Exporter, Options};
use msfb_seat_exporter::fake_store::{self, FakeStore};
use msfb_seat_exporter::web;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

use super::harness::fast_options;

/// A fake Store, a config directory, an exporter and its HTTP server.
pub struct Served {
    pub fake: FakeStore,
    pub dir: TempDir,
    pub exporter: Exporter,
    pub addr: SocketAddr,
    stop: CancellationToken,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The config a served exporter starts with.
pub struct Setup<'a> {
    /// Lines for `[web]` (listen_address is set here).
    pub web: &'a str,
    /// Lines for `[metrics]`.
    pub metrics: &'a str,
    /// `[[products]]` tables.
    pub products: &'a str,
    /// Extra files written into the config directory first.
    pub files: Vec<(&'a str, Vec<u8>)>,
}

impl Served {
    /// Writes the files and config, starts the fake Store and serves the
    /// exporter on a free loopback port. Polling is left to the test.
    pub async fn start(setup: Setup<'_>) -> Served {
        Self::start_with(setup, None).await
    }

    /// [`Served::start`] with `--web.config.file` naming `web_config`, a
    /// file of `setup.files`.
    pub async fn start_with(setup: Setup<'_>, web_config: Option<&str>) -> Served {
        let fake = FakeStore::start().await.expect("fake store");
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("secret"), fake_store::CLIENT_SECRET).unwrap();
        for (name, bytes) in &setup.files {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        let text = format!(
            "[web]\nlisten_address = \"127.0.0.1:0\"\n{}\n\n[metrics]\n{}\n\n{}",
            setup.web,
            setup.metrics,
            fake.config_toml("secret", setup.products)
        );
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        let options = LoadOptions {
            web_config_file: web_config.map(|f| dir.path().join(f)),
            ..LoadOptions::default()
        };
        let exporter_options = Options {
            load: options.clone(),
            ..fast_options()
        };
        let config = config::load(&path, &options).expect("valid config");
        let transport = web::Transport::from_config(&config.web).expect("usable TLS files");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let exporter = Exporter::new(config, exporter_options).expect("exporter");
        let stop = CancellationToken::new();
        tokio::spawn(web::run(
            exporter.clone(),
            listener,
            transport,
            stop.clone(),
        ));
        Served {
            fake,
            dir,
            exporter,
            addr,
            stop,
        }
    }

    /// A path in the config directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Runs one full poll cycle.
    pub async fn cycle(&self) {
        self.exporter
            .run_cycle(&CancellationToken::new())
            .await
            .expect("cycle not cancelled");
    }
}

/// An HTTP client for an exporter on a socket that opens a connection per
/// request. The exporter closes a keep-alive connection after 10 s idle
/// (its header read timeout), and tests wait about that long between
/// requests (a poll cycle): a pooled connection could be reused just as the
/// exporter closes it, and the request fail with a reset.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("HTTP client")
}
