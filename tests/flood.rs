//! Hostile peers, the HTTP side (SPEC §17): the real daemon, on loopback,
//! under a flood of idle connections and slowloris clients, of password
//! guesses, and of readers that stop reading, while Prometheus-like scrapes
//! and liveness probes go on. These tests count successes; they assert no
//! time. Their flood sizes are the ones SPEC §17 names.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use msfb_seat_exporter::fake_store::{self, FakeSeat, FakeStore};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::served::eventually;
use crate::util::{P, S, product, write_private};

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
        // A free port: bound and released (loopback, nobody else races).
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
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
        let http = reqwest::Client::new();
        eventually("the daemon listens", Duration::from_secs(60), || {
            let http = http.clone();
            async move {
                match http.get(format!("http://{addr}/-/healthy")).send().await {
                    Ok(r) if r.status() == 200 => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            }
        })
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
        let pid = self.child.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS");
        kib * 1024
    }
}

/// Probes that succeed and probes made.
#[derive(Debug, Default)]
struct Tally {
    ok: usize,
    all: usize,
    failures: Vec<String>,
}

impl Tally {
    fn add(&mut self, outcome: Result<(), String>) {
        self.all += 1;
        match outcome {
            Ok(()) => self.ok += 1,
            Err(e) if self.failures.len() < 5 => self.failures.push(e),
            Err(_) => {}
        }
    }

    /// Asserts that at least 99 % succeeded.
    fn assert_99(&self, what: &str) {
        assert!(
            self.ok * 100 >= self.all * 99,
            "{what}: {} of {} succeeded; first failures: {:?}",
            self.ok,
            self.all,
            self.failures
        );
    }

    fn rate(&self) -> f64 {
        100.0 * self.ok as f64 / self.all.max(1) as f64
    }
}

/// A liveness probe as the kubelet makes it: a new connection each time.
async fn healthy(addr: SocketAddr) -> Result<(), String> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let r = http
        .get(format!("http://{addr}/-/healthy"))
        .send()
        .await
        .map_err(|e| format!("healthy: {e}"))?;
    if r.status() == 200 {
        Ok(())
    } else {
        Err(format!("healthy: {}", r.status()))
    }
}

/// A scrape as Prometheus makes it: its client keeps connections open, it
/// asks for gzip and gives up after 10 s.
async fn scrape(
    http: &reqwest::Client,
    addr: SocketAddr,
    auth: Option<&str>,
) -> Result<(), String> {
    let mut req = http
        .get(format!("http://{addr}/metrics"))
        .header("Accept-Encoding", "gzip")
        .timeout(Duration::from_secs(10));
    if let Some(password) = auth {
        req = req.basic_auth("prometheus", Some(password));
    }
    let r = req.send().await.map_err(|e| format!("scrape: {e}"))?;
    let status = r.status();
    let body = r.bytes().await.map_err(|e| format!("scrape body: {e}"))?;
    if status == 200 && !body.is_empty() {
        Ok(())
    } else {
        Err(format!("scrape: {status}"))
    }
}

/// Flood clients run until `stop`; `connected` counts connections made.
#[derive(Clone, Default)]
struct Flood {
    stop: Arc<AtomicBool>,
    connected: Arc<AtomicUsize>,
}

impl Flood {
    /// A client that connects and sends nothing, and connects again a
    /// quarter of a second after the server closes it.
    fn idle(&self, addr: SocketAddr) -> tokio::task::JoinHandle<()> {
        let flood = self.clone();
        tokio::spawn(async move {
            while !flood.stop.load(Ordering::Relaxed) {
                if let Ok(mut tcp) = TcpStream::connect(addr).await {
                    flood.connected.fetch_add(1, Ordering::Relaxed);
                    let mut buf = [0u8; 64];
                    let closed = tcp.read(&mut buf);
                    let _ = tokio::time::timeout(Duration::from_secs(30), closed).await;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    }

    /// Slowloris: request headers one line a second, never finished.
    fn slowloris(&self, addr: SocketAddr) -> tokio::task::JoinHandle<()> {
        let flood = self.clone();
        tokio::spawn(async move {
            while !flood.stop.load(Ordering::Relaxed) {
                if let Ok(mut tcp) = TcpStream::connect(addr).await {
                    flood.connected.fetch_add(1, Ordering::Relaxed);
                    let mut line = b"GET /metrics HTTP/1.1\r\nHost: exporter\r\n".to_vec();
                    for n in 0..60 {
                        if flood.stop.load(Ordering::Relaxed) || tcp.write_all(&line).await.is_err()
                        {
                            break;
                        }
                        line = format!("X-Slow-{n}: {n}\r\n").into_bytes();
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    }

    async fn until_connected(&self, n: usize) {
        let connected = Arc::clone(&self.connected);
        eventually("the flood connects", Duration::from_secs(60), || {
            let seen = connected.load(Ordering::Relaxed);
            async move {
                if seen >= n {
                    Ok(())
                } else {
                    Err(format!("{seen} connections"))
                }
            }
        })
        .await;
    }

    async fn stop(self, tasks: Vec<tokio::task::JoinHandle<()>>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.abort();
        }
    }
}

fn users(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user{i}@contoso.com")).collect()
}

async fn checked_daemon(web: &str) -> Daemon {
    let users = users(20);
    let refs: Vec<&str> = users.iter().map(String::as_str).collect();
    let d = Daemon::start(web, &product(&refs), &[]).await;
    for u in &users {
        d.fake.set_seat(P, S, u, FakeSeat::active());
    }
    d
}

/// 600 idle connections and 200 slowloris clients, far past the cap of 512
/// connections: scrapes and liveness probes keep answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slowloris_floods_do_not_lock_out_scrapes_or_probes() {
    let d = checked_daemon("").await;
    let flood = Flood::default();
    let mut tasks: Vec<_> = (0..600).map(|_| flood.idle(d.addr)).collect();
    tasks.extend((0..200).map(|_| flood.slowloris(d.addr)));
    flood.until_connected(800).await;

    let prometheus = reqwest::Client::new();
    let (mut probes, mut scrapes) = (Tally::default(), Tally::default());
    for _ in 0..200 {
        probes.add(healthy(d.addr).await);
        scrapes.add(scrape(&prometheus, d.addr, None).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let made = flood.connected.load(Ordering::Relaxed);
    let rss = d.rss();
    flood.stop(tasks).await;
    eprintln!(
        "flood: {made} idle/slowloris connections, daemon RSS {} MiB; /-/healthy {:.1} % of {}, \
         /metrics {:.1} % of {}",
        rss >> 20,
        probes.rate(),
        probes.all,
        scrapes.rate(),
        scrapes.all
    );
    probes.assert_99("/-/healthy");
    scrapes.assert_99("/metrics");
}

/// 60 clients guessing passwords: authenticated scrapes keep succeeding,
/// and the guesses are throttled (429 without a bcrypt run) once an
/// address has failed ten times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_guessing_does_not_starve_authenticated_scrapes() {
    let hash = bcrypt::hash("the-password", 10).unwrap();
    let d = checked_daemon(&format!("basic_auth_users = {{ prometheus = {hash:?} }}")).await;
    let prometheus = reqwest::Client::new();
    // Prometheus has scraped before the attack (its credentials are known).
    scrape(&prometheus, d.addr, Some("the-password"))
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let counts: Arc<[AtomicUsize; 3]> = Arc::default(); // 401, 429, other
    let guessers: Vec<_> = (0..60)
        .map(|i| {
            let (stop, counts, addr) = (Arc::clone(&stop), Arc::clone(&counts), d.addr);
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let r = http
                        .get(format!("http://{addr}/metrics"))
                        .basic_auth("prometheus", Some(format!("guess-{i}-{n}")))
                        .send()
                        .await;
                    let slot = match r.map(|r| r.status().as_u16()) {
                        Ok(401) => 0,
                        Ok(429) => 1,
                        _ => 2,
                    };
                    counts[slot].fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        })
        .collect();
    let mut scrapes = Tally::default();
    for _ in 0..150 {
        scrapes.add(scrape(&prometheus, d.addr, Some("the-password")).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for g in guessers {
        let _ = g.await;
    }
    let [refused, throttled, other] = counts.each_ref().map(|c| c.load(Ordering::Relaxed));
    eprintln!(
        "guessing: authenticated scrapes {:.1} % of {}; guesses: {refused} refused after bcrypt, \
         {throttled} throttled, {other} other",
        scrapes.rate(),
        scrapes.all
    );
    scrapes.assert_99("authenticated /metrics");
    assert_eq!(other, 0, "every guess is refused (401) or throttled (429)");
    assert!(
        throttled > 9 * refused,
        "most guesses are throttled: {refused} refused, {throttled} throttled"
    );
}
