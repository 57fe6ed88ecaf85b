//! Throttling of failed basic-auth attempts per client address (SPEC §17).
//!
//! Each wrong password costs a full bcrypt run (about 55 ms at cost 10), so
//! 60 clients guessing passwords used to keep every scrape slot busy with
//! bcrypt and starve the real scrapes. Credentials that were verified once
//! pass without bcrypt (`auth`), so what needs bounding is the work done for
//! credentials that are *not* known good:
//!
//! - per client address, a leaky bucket of failures: [`BURST`] failures
//!   pass, then one more per [`LEAK`] of time; an address over its budget
//!   is answered 429 with `Retry-After` at once, without bcrypt. An attempt
//!   is charged when it is let through to bcrypt and refunded if the
//!   credentials turn out good: counted only once bcrypt had refused them,
//!   60 guesses sent at once from one address all passed the check (none
//!   had failed yet) and queued 60 bcrypt runs, past the burst. IPv6
//!   addresses count per /64 (one host usually holds a whole /64), and
//!   IPv4-mapped IPv6 addresses as the IPv4 address;
//! - across all addresses, at most [`VERIFYING`] bcrypt runs at once; more
//!   wait their turn, outside the scrape slots.
//!
//! The table of addresses is bounded ([`MAX_ADDRESSES`]): buckets that have
//! leaked empty are dropped when it fills; while it is full of addresses
//! that are all still failing, a new address is throttled too.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Failures an address may have in a row before it is throttled.
pub const BURST: u32 = 10;
/// Time after which one failure is forgiven.
pub const LEAK: Duration = Duration::from_secs(1);
/// bcrypt verifications running at once, over all clients.
pub const VERIFYING: usize = 4;
/// Addresses remembered at most.
pub const MAX_ADDRESSES: usize = 16_384;

/// Who a request comes from, as far as throttling cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client {
    /// An IPv4 address.
    V4([u8; 4]),
    /// The /64 network of an IPv6 address.
    V6([u8; 8]),
    /// No address known (requests that did not come over a socket).
    Unknown,
}

impl Client {
    /// The client of a peer address.
    pub fn of(peer: Option<SocketAddr>) -> Client {
        match peer.map(|p| p.ip()) {
            None => Client::Unknown,
            Some(IpAddr::V4(v4)) => Client::V4(v4.octets()),
            Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => Client::V4(v4.octets()),
                None => {
                    let mut net = [0; 8];
                    net.copy_from_slice(&v6.octets()[..8]);
                    Client::V6(net)
                }
            },
        }
    }
}

/// Failures of one client: `level` failures counted as of `at`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    level: f64,
    at: Instant,
}

impl Bucket {
    fn level_at(&self, now: Instant) -> f64 {
        let leaked = now.saturating_duration_since(self.at).as_secs_f64() / LEAK.as_secs_f64();
        (self.level - leaked).max(0.0)
    }
}

/// The throttle of one router.
#[derive(Debug)]
pub struct Throttle {
    buckets: Mutex<HashMap<Client, Bucket>>,
    verifying: tokio::sync::Semaphore,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle {
            buckets: Mutex::new(HashMap::new()),
            verifying: tokio::sync::Semaphore::new(VERIFYING),
        }
    }
}

impl Throttle {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Client, Bucket>> {
        // Buckets are plain values, valid after any partial update.
        self.buckets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Err(wait)` when `client` has failed too often and must wait that
    /// long before its next attempt is verified; else the attempt is
    /// charged as a failure until [`Throttle::refund`] (so attempts in
    /// flight count against the burst too).
    pub fn check(&self, client: Client) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.lock();
        if !buckets.contains_key(&client) && buckets.len() >= MAX_ADDRESSES {
            buckets.retain(|_, b| b.level_at(now) > 0.0);
            if buckets.len() >= MAX_ADDRESSES {
                return Err(LEAK);
            }
        }
        let level = buckets.get(&client).map_or(0.0, |b| b.level_at(now));
        let over = level + 1.0 - f64::from(BURST);
        if over > 0.0 {
            return Err(LEAK.mul_f64(over).max(Duration::from_millis(1)));
        }
        buckets.insert(
            client,
            Bucket {
                level: level + 1.0,
                at: now,
            },
        );
        Ok(())
    }

    /// Gives back the charge of an attempt of `client` whose credentials
    /// were good.
    pub fn refund(&self, client: Client) {
        let now = Instant::now();
        let mut buckets = self.lock();
        if let Some(b) = buckets.get_mut(&client) {
            *b = Bucket {
                level: (b.level_at(now) - 1.0).max(0.0),
                at: now,
            };
        }
    }

    /// Runs `verify` (a bcrypt check) once one of the [`VERIFYING`] places
    /// is free.
    pub async fn verify<F: std::future::Future<Output = bool>>(&self, verify: F) -> bool {
        // The semaphore is never closed, so acquiring only waits.
        let Ok(_place) = self.verifying.acquire().await else {
            return false;
        };
        verify.await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn clients_by_address_v6_per_64_and_mapped_v4_as_v4() {
        assert_eq!(Client::of(addr("10.0.0.1:5")), Client::V4([10, 0, 0, 1]));
        assert_eq!(
            Client::of(addr("[::ffff:10.0.0.1]:5")),
            Client::V4([10, 0, 0, 1])
        );
        assert_eq!(
            Client::of(addr("[2001:db8:1:2::1]:5")),
            Client::of(addr("[2001:db8:1:2:ffff::9]:7"))
        );
        assert_ne!(
            Client::of(addr("[2001:db8:1:2::1]:5")),
            Client::of(addr("[2001:db8:1:3::1]:5"))
        );
        assert_eq!(Client::of(None), Client::Unknown);
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_failures_then_one_per_second() {
        let t = Throttle::default();
        let a = Client::V4([10, 0, 0, 1]);
        let b = Client::V4([10, 0, 0, 2]);
        for _ in 0..BURST {
            assert_eq!(t.check(a), Ok(()));
        }
        // Over budget: the next attempt must wait a second.
        assert_eq!(t.check(a), Err(LEAK));
        assert_eq!(t.check(b), Ok(()), "other addresses are not affected");
        tokio::time::advance(LEAK / 2).await;
        assert_eq!(t.check(a), Err(LEAK / 2));
        tokio::time::advance(LEAK / 2).await;
        assert_eq!(t.check(a), Ok(()));
        assert!(t.check(a).is_err());
        // A long pause forgives everything.
        tokio::time::advance(LEAK * BURST).await;
        for _ in 0..BURST {
            assert_eq!(t.check(a), Ok(()));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_in_flight_count_and_good_ones_are_refunded() {
        let t = Throttle::default();
        let a = Client::V4([10, 0, 0, 1]);
        // Ten attempts let through at once, none answered yet: the
        // eleventh waits, though no failure has been counted.
        for _ in 0..BURST {
            assert_eq!(t.check(a), Ok(()));
        }
        assert!(t.check(a).is_err(), "a burst in flight is a burst");
        // Two of them had good credentials: two more may go.
        t.refund(a);
        t.refund(a);
        assert_eq!(t.check(a), Ok(()));
        assert_eq!(t.check(a), Ok(()));
        assert!(t.check(a).is_err());
        // A refund never goes below nothing.
        let b = Client::V4([10, 0, 0, 2]);
        t.refund(b);
        for _ in 0..BURST {
            assert_eq!(t.check(b), Ok(()));
        }
        assert!(t.check(b).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn the_table_is_bounded() {
        let t = Throttle::default();
        for i in 0..MAX_ADDRESSES as u32 {
            assert_eq!(t.check(Client::V4(i.to_be_bytes())), Ok(()));
        }
        let new = Client::V4([255, 255, 255, 255]);
        assert!(t.check(new).is_err(), "full of failing addresses");
        tokio::time::advance(LEAK).await;
        assert_eq!(t.check(new), Ok(()), "emptied buckets make room");
        assert_eq!(t.lock().len(), 1, "only the new address, charged");
    }
}
