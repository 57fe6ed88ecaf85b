//! Hostile peers, the HTTP side (SPEC §17): the real daemon, on loopback,
//! under a flood of idle connections and slowloris clients, of password
//! guesses, and of readers that stop reading, while Prometheus-like scrapes
//! and liveness probes go on. These tests count successes; they assert no
//! time. Their flood sizes are the ones SPEC §17 names.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use msfb_seat_exporter::fake_store::FakeSeat;

use crate::util::daemon::Daemon;
use crate::util::flood::{Flood, Tally, chain, healthy, prober, scrape};
use crate::util::{P, S, product, users};

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
    let flood = Flood::start(d.addr, 600, 200);
    flood.until_connected(800).await;

    let (prober, prometheus) = (prober(), reqwest::Client::new());
    let (mut probes, mut scrapes) = (Tally::default(), Tally::default());
    for _ in 0..200 {
        probes.add(healthy(&prober, d.addr).await);
        scrapes.add(scrape(&prometheus, d.addr, None).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let made = flood.connected();
    let rss = d.rss();
    drop(flood);
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
    // Each guesser has its own client (its own connection), built before
    // any guess: building one loads the system's CA certificates, and 60
    // of them built on the test's runtime delayed the guessers that had
    // already connected past the daemon's 10 s header timeout, which
    // closed their connections (counted as unanswered guesses).
    let clients: Vec<_> = (0..60).map(|_| reqwest::Client::new()).collect();
    let guessers: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, http)| {
            let (stop, counts, addr) = (Arc::clone(&stop), Arc::clone(&counts), d.addr);
            tokio::spawn(async move {
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
                        other => {
                            let text = match other {
                                Ok(status) => format!("status {status}"),
                                Err(e) => chain(&e),
                            };
                            eprintln!("guess {i}-{n}: {text}");
                            2
                        }
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
