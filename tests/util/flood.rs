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

/// A liveness probe as the kubelet makes it: a new connection each time.
pub async fn healthy(addr: SocketAddr) -> Result<(), String> {
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
pub struct Flood {
    pub stop: Arc<AtomicBool>,
    pub connected: Arc<AtomicUsize>,
}

impl Flood {
    /// A client that connects and sends nothing, and connects again a
    /// quarter of a second after the server closes it.
    pub fn idle(&self, addr: SocketAddr) -> tokio::task::JoinHandle<()> {
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
    pub fn slowloris(&self, addr: SocketAddr) -> tokio::task::JoinHandle<()> {
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

    pub async fn until_connected(&self, n: usize) {
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

    pub async fn stop(self, tasks: Vec<tokio::task::JoinHandle<()>>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.abort();
        }
    }
}
