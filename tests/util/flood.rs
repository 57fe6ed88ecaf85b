//! Flood clients (idle connections, slowloris) and the probes that count
//! what still gets through (liveness probes on new connections, scrapes as
//! Prometheus makes them), for the tests of SPEC §17's HTTP side.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::wait::eventually;

/// Probes that succeed and probes made.
#[derive(Debug, Default)]
pub struct Tally {
    pub ok: usize,
    pub all: usize,
    pub failures: Vec<String>,
}

impl Tally {
    pub fn add(&mut self, outcome: Result<(), String>) {
        self.all += 1;
        match outcome {
            Ok(()) => self.ok += 1,
            Err(e) if self.failures.len() < 5 => self.failures.push(e),
            Err(_) => {}
        }
    }

    /// Asserts that at least 99 % succeeded.
    pub fn assert_99(&self, what: &str) {
        assert!(
            self.ok * 100 >= self.all * 99,
            "{what}: {} of {} succeeded; first failures: {:?}",
            self.ok,
            self.all,
            self.failures
        );
    }

    pub fn rate(&self) -> f64 {
        100.0 * self.ok as f64 / self.all.max(1) as f64
    }
}

/// An error with its causes, which say what failed (reqwest's own text
/// only says "error sending request").
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// The liveness prober's client: a new connection for each probe, as the
/// kubelet makes them. Built once: building a client loads the system's
/// CA certificates, slow enough under load to starve the test's own
/// requests when done for every probe.
pub fn prober() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A liveness probe through `prober()`'s client.
pub async fn healthy(prober: &reqwest::Client, addr: SocketAddr) -> Result<(), String> {
    let r = prober
        .get(format!("http://{addr}/-/healthy"))
        .send()
        .await
        .map_err(|e| format!("healthy: {}", chain(&e)))?;
    if r.status() == 200 {
        Ok(())
    } else {
        Err(format!("healthy: {}", r.status()))
    }
}

/// A scrape as Prometheus makes it: its client keeps connections open, it
/// asks for gzip and gives up after 10 s.
pub async fn scrape(
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
    let r = req
        .send()
        .await
        .map_err(|e| format!("scrape: {}", chain(&e)))?;
    let status = r.status();
    let body = r
        .bytes()
        .await
        .map_err(|e| format!("scrape body: {}", chain(&e)))?;
    if status == 200 && !body.is_empty() {
        Ok(())
    } else {
        Err(format!("scrape: {status}"))
    }
}

/// Idle and slowloris clients on a runtime (two threads) of their own, so
/// that the attack's 800 tasks do not queue ahead of the probes and scrapes
/// the test counts: a probe that waited behind them to send its request
/// was the test starving itself, not the daemon failing it. Stops (its
/// connections closed) when dropped.
pub struct Flood {
    stop: Arc<AtomicBool>,
    connected: Arc<AtomicUsize>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Flood {
    /// Starts `idle` idle clients and `slowloris` slowloris clients
    /// against `addr`.
    pub fn start(addr: SocketAddr, idle: usize, slowloris: usize) -> Flood {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("flood")
            .enable_all()
            .build()
            .expect("the flood's runtime");
        let (stop, connected) = (Arc::default(), Arc::default());
        for _ in 0..idle {
            runtime.spawn(idle_client(addr, Arc::clone(&stop), Arc::clone(&connected)));
        }
        for _ in 0..slowloris {
            runtime.spawn(slowloris_client(
                addr,
                Arc::clone(&stop),
                Arc::clone(&connected),
            ));
        }
        Flood {
            stop,
            connected,
            runtime: Some(runtime),
        }
    }

    /// Connections made so far.
    pub fn connected(&self) -> usize {
        self.connected.load(Ordering::Relaxed)
    }

    pub async fn until_connected(&self, n: usize) {
        eventually("the flood connects", Duration::from_secs(60), || {
            let seen = self.connected();
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
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(runtime) = self.runtime.take() {
            // Drops every client task and with it its connection.
            runtime.shutdown_background();
        }
    }
}

/// A client that connects and sends nothing, and connects again a quarter
/// of a second after the server closes it.
async fn idle_client(addr: SocketAddr, stop: Arc<AtomicBool>, connected: Arc<AtomicUsize>) {
    while !stop.load(Ordering::Relaxed) {
        if let Ok(mut tcp) = TcpStream::connect(addr).await {
            connected.fetch_add(1, Ordering::Relaxed);
            let mut buf = [0u8; 64];
            let closed = tcp.read(&mut buf);
            let _ = tokio::time::timeout(Duration::from_secs(30), closed).await;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Slowloris: request headers one line a second, never finished.
async fn slowloris_client(addr: SocketAddr, stop: Arc<AtomicBool>, connected: Arc<AtomicUsize>) {
    while !stop.load(Ordering::Relaxed) {
        if let Ok(mut tcp) = TcpStream::connect(addr).await {
            connected.fetch_add(1, Ordering::Relaxed);
            let mut line = b"GET /metrics HTTP/1.1\r\nHost: exporter\r\n".to_vec();
            for n in 0..60 {
                if stop.load(Ordering::Relaxed) || tcp.write_all(&line).await.is_err() {
                    break;
                }
                line = format!("X-Slow-{n}: {n}\r\n").into_bytes();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
