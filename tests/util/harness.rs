//! The in-process harness: a fake Store, a config directory and an
//! exporter pointed at the fake, driven through the real router without a
//! socket; plus the small builders (config text, temporary files, options
//! with short backoff) most tests start from.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Body;
use http_body_util::BodyExt as _;
use msfb_seat_exporter::config::{self, Config, LoadOptions};
use msfb_seat_exporter::exporter::{Exporter, Options};
use msfb_seat_exporter::fake_store::{self, FakeSeat, FakeStore, Fault, Match};
use msfb_seat_exporter::poller::CycleReport;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use super::exposition::Scrape;

/// Product used by most tests.
pub const P: &str = "9NBLGGH4R315";
/// Its SKU.
pub const S: &str = "0016";
/// The users most tests check.
pub const ALICE: &str = "alice@contoso.com";
pub const BOB: &str = "bob@contoso.com";
pub const CAROL: &str = "carol@contoso.com";
pub const DAVE: &str = "dave@contoso.com";

/// Writes `files` into a fresh temporary directory, readable by their
/// owner only, as an operator installs secrets (a secret others can read
/// is warned about).
pub fn temp_dir(files: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in files {
        write_private(&dir.path().join(name), text);
    }
    dir
}

/// Writes `text` to `path` with mode 0600.
pub fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).expect("write file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// Options for tests: short backoff so retries do not slow the suite.
pub fn fast_options() -> Options {
    Options {
        retry_base: Duration::from_millis(5),
        retry_cap: Duration::from_millis(20),
        ..Options::default()
    }
}

/// `user0@contoso.com` up to `user{n-1}@contoso.com`.
pub fn users(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user{i}@contoso.com")).collect()
}

/// A `[[products]]` table for `P`/`S` with `users`.
pub fn product(users: &[&str]) -> String {
    let list: Vec<String> = users.iter().map(|u| format!("{u:?}")).collect();
    format!(
        "[[products]]\nproduct_id = \"{P}\"\nsku_id = \"{S}\"\nname = \"Contoso Notes\"\nusers = [{}]\n",
        list.join(", ")
    )
}

/// A fake Store, a config directory and an exporter pointed at the fake.
pub struct Harness {
    pub fake: FakeStore,
    pub dir: TempDir,
    pub exporter: Exporter,
    /// One router for every request, as a server has: limits are shared.
    pub router: axum::Router,
    /// How the config names the secret file (`write_config` keeps it).
    secret_ref: String,
}

/// A gate on configuration loading, for reloads that take as long as a
/// test wants: a [`Harness::gated`] config names its secret under
/// `$CREDENTIALS_DIRECTORY`, and while the gate is closed, looking that
/// variable up waits. Loading is otherwise the real thing. Dropping the
/// last handle opens the gate, so a failing test never leaves a loader
/// thread (and with it the runtime's shutdown) waiting.
#[derive(Clone, Default)]
pub struct LoadGate(std::sync::Arc<GateState>);

#[derive(Default)]
pub struct GateState {
    closed: std::sync::Mutex<bool>,
    opened: std::sync::Condvar,
    /// Loads waiting at the gate now.
    waiting: std::sync::atomic::AtomicUsize,
}

impl LoadGate {
    /// Loads from now on wait until [`open`](Self::open).
    pub fn close(&self) {
        *self.0.closed.lock().unwrap() = true;
    }

    /// Lets waiting and later loads through.
    pub fn open(&self) {
        *self.0.closed.lock().unwrap() = false;
        self.0.opened.notify_all();
    }

    /// Loads waiting at the gate now.
    pub fn waiting(&self) -> usize {
        self.0.waiting.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn wait(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        let mut closed = self.0.closed.lock().unwrap();
        self.0.waiting.fetch_add(1, SeqCst);
        while *closed {
            closed = self.0.opened.wait(closed).unwrap();
        }
        self.0.waiting.fetch_sub(1, SeqCst);
    }
}

impl Drop for LoadGate {
    fn drop(&mut self) {
        // The harness's loader holds a clone: open when only it and this
        // one are left, i.e. when the test lets go of its handle.
        if std::sync::Arc::strong_count(&self.0) <= 2 {
            self.open();
        }
    }
}

impl Harness {
    /// Starts a fake and an exporter for `products` (TOML) with `extra`
    /// TOML appended to the `[store]` table (e.g. "max_retries = 0").
    pub async fn new(products: &str, store_extra: &str) -> Harness {
        Self::with_files(products, store_extra, &[]).await
    }

    /// [`new`](Self::new) for the product `P`/`S` of [`users`]`(n)`, each
    /// holding a seat.
    pub async fn with_seats(n: usize, store_extra: &str) -> Harness {
        let users = users(n);
        let refs: Vec<&str> = users.iter().map(String::as_str).collect();
        let h = Harness::new(&product(&refs), store_extra).await;
        for u in &users {
            h.fake.set_seat(P, S, u, FakeSeat::active());
        }
        h
    }

    /// [`new`](Self::new) with `options` (say, poll lanes).
    pub async fn with_options(products: &str, store_extra: &str, options: Options) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::build(products, store_extra, &[], dir, "secret", options).await
    }

    /// [`new`](Self::new) with extra files (say, a users file) written
    /// next to the config before it is loaded.
    pub async fn with_files(products: &str, store_extra: &str, files: &[(&str, &str)]) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::build(products, store_extra, files, dir, "secret", fast_options()).await
    }

    /// A harness whose configuration loads wait while the returned gate is
    /// closed (see [`LoadGate`]); reloads give up after `reload_deadline`.
    pub async fn gated(products: &str, reload_deadline: Duration) -> (Harness, LoadGate) {
        let gate = LoadGate::default();
        let waiting = gate.clone();
        let dir = tempfile::tempdir().expect("temp dir");
        let credentials = dir.path().display().to_string();
        let mut options = fast_options();
        options.reload_deadline = reload_deadline;
        options.load.env = std::sync::Arc::new(move |name| {
            (name == "CREDENTIALS_DIRECTORY").then(|| {
                waiting.wait();
                credentials.clone()
            })
        });
        let secret = "$CREDENTIALS_DIRECTORY/secret";
        let h = Self::build(products, "", &[], dir, secret, options).await;
        (h, gate)
    }

    async fn build(
        products: &str,
        store_extra: &str,
        files: &[(&str, &str)],
        dir: TempDir,
        secret_ref: &str,
        options: Options,
    ) -> Harness {
        let fake = FakeStore::start().await.expect("fake store");
        write_private(&dir.path().join("secret"), fake_store::CLIENT_SECRET);
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write file");
        }
        let text = fake
            .config_toml(secret_ref, products)
            .replace("[store]\n", &format!("[store]\n{store_extra}\n"));
        let path = dir.path().join("config.toml");
        std::fs::write(&path, &text).expect("write config");
        let config = config::load(&path, &options.load).expect("valid config");
        let exporter = Exporter::new(config, options).expect("exporter");
        let router = msfb_seat_exporter::web::router(exporter.clone());
        Harness {
            fake,
            dir,
            exporter,
            router,
            secret_ref: secret_ref.to_owned(),
        }
    }

    /// Reloads through the router and asserts it worked.
    pub async fn reload(&self) {
        let (status, body) = self.request("POST", "/-/reload").await;
        assert_eq!(status, 200, "{body}");
    }

    /// Writes a file next to the config.
    pub fn write_file(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(name), text).expect("write file");
    }

    /// Sends a request through the shared router.
    pub async fn request(&self, method: &str, path: &str) -> (u16, String) {
        send(self.router.clone(), method, path).await
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    /// Rewrites the config file (for reload tests).
    pub fn write_config(&self, products: &str, store_extra: &str) {
        let text = self
            .fake
            .config_toml(&self.secret_ref, products)
            .replace("[store]\n", &format!("[store]\n{store_extra}\n"));
        std::fs::write(self.config_path(), text).expect("write config");
    }

    /// Runs one full cycle.
    pub async fn cycle(&self) -> CycleReport {
        self.exporter
            .run_cycle(&CancellationToken::new())
            .await
            .expect("cycle not cancelled")
    }

    /// A cycle after `lost` lost the seat of `P`/`S` and while checks of
    /// `failing` answer 503: one lost seat and one failing check to show.
    pub async fn lose_and_fail(&self, lost: &str, failing: &str) {
        self.fake.remove_seat(P, S, lost);
        self.fake.add_fault(Fault::always(
            Match::User(failing.into()),
            Fault::status(503),
        ));
        self.cycle().await;
    }

    /// GET `path` through the real router: status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        self.request("GET", path).await
    }

    /// Scrapes `/metrics`.
    pub async fn scrape(&self) -> Scrape {
        let (status, body) = self.get("/metrics").await;
        assert_eq!(status, 200, "scrape failed: {body}");
        Scrape::parse(&body)
    }

    /// `msfb_seat_exporter_config_last_reload_successful` now.
    pub async fn reload_gauge(&self) -> Option<f64> {
        self.scrape()
            .await
            .value("msfb_seat_exporter_config_last_reload_successful", &[])
    }
}

/// Sends one request through a fresh router for `exporter`.
pub async fn request(exporter: &Exporter, method: &str, path: &str) -> (u16, String) {
    send(
        msfb_seat_exporter::web::router(exporter.clone()),
        method,
        path,
    )
    .await
}

/// Sends one request through `router`.
pub async fn send(router: axum::Router, method: &str, path: &str) -> (u16, String) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .body(Body::empty())
        .expect("request");
    let resp = router.oneshot(req).await.expect("infallible");
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// Path of a file in `tests/testdata`.
pub fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("testdata")
        .join(name)
}

/// Loads a config file with the process environment replaced by `env`.
pub fn load_with_env(path: &Path, env: &[(&str, &str)]) -> Result<Config, config::ConfigError> {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let options = LoadOptions {
        env: std::sync::Arc::new(move |name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        }),
        ..LoadOptions::default()
    };
    config::load(path, &options)
}
