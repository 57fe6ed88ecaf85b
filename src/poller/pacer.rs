//! The request pacer: spaces upstream requests to at most
//! `max_requests_per_second` across every check and retry, and slows down
//! when the Store answers 429 (issue: politeness under throttling).
//!
//! Each request reserves the next free slot under a short `std::sync::Mutex`
//! critical section (no `.await` inside) and then sleeps until its slot. There
//! is no burst allowance: a cycle starting after a pause does not fire a
//! volley at the Store.
//!
//! Throttling is multiplicative decrease, gradual increase: every 429 halves
//! the allowed rate (down to 1/64 of the configured rate); every
//! [`RECOVERY_STEP`] without a 429 raises it by a quarter until it is back to
//! the configured rate. With no configured limit, the first 429 starts
//! throttling from the rate measured over the last second.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Time without a 429 before the allowed rate is raised one step.
pub const RECOVERY_STEP: Duration = Duration::from_secs(5);
const MIN_FACTOR: f64 = 1.0 / 64.0;
const RECOVERY_GROWTH: f64 = 1.25;
/// Never pace slower than one request per this long.
const SLOWEST: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct State {
    /// Configured rate; `None` is unlimited.
    configured: Option<f64>,
    /// Base the factor applies to: the configured rate, or the measured rate
    /// when unlimited and throttled.
    base: Option<f64>,
    /// Fraction of `base` currently allowed.
    factor: f64,
    /// Next free slot.
    next: Instant,
    /// When the factor last changed (for recovery).
    changed_at: Instant,
    /// Requests started in the current one-second window (for the measured
    /// rate when unlimited).
    window_start: Instant,
    window_count: u32,
    last_window_rate: f64,
}

/// Shared by every check of every cycle; survives reloads.
#[derive(Debug)]
pub struct Pacer {
    state: Mutex<State>,
}

impl Pacer {
    /// A pacer for `rate` requests per second (`None`: unlimited).
    pub fn new(rate: Option<f64>) -> Pacer {
        let now = Instant::now();
        Pacer {
            state: Mutex::new(State {
                configured: rate,
                base: rate,
                factor: 1.0,
                next: now,
                changed_at: now,
                window_start: now,
                window_count: 0,
                last_window_rate: 0.0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is plain numbers, valid even after a panic elsewhere.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies a new configured rate (reload). Throttling in progress stays.
    pub fn set_rate(&self, rate: Option<f64>) {
        let mut s = self.lock();
        if s.configured != rate {
            s.configured = rate;
            s.base = rate;
            s.factor = 1.0;
        }
    }

    /// The rate currently allowed; `None` when unlimited.
    pub fn current_rate(&self) -> Option<f64> {
        let mut s = self.lock();
        recover(&mut s, Instant::now());
        s.base.map(|b| b * s.factor)
    }

    /// Waits for this request's slot.
    pub async fn acquire(&self) {
        let slot = {
            let mut s = self.lock();
            let now = Instant::now();
            recover(&mut s, now);
            if now.duration_since(s.window_start) >= Duration::from_secs(1) {
                s.last_window_rate =
                    f64::from(s.window_count) / now.duration_since(s.window_start).as_secs_f64();
                s.window_start = now;
                s.window_count = 0;
            }
            s.window_count = s.window_count.saturating_add(1);
            match s.base {
                None => None,
                Some(base) => {
                    // A tiny configured rate is more than a Duration holds.
                    let gap = Duration::try_from_secs_f64(1.0 / (base * s.factor))
                        .map_or(SLOWEST, |g| g.min(SLOWEST));
                    let slot = s.next.max(now);
                    s.next = slot + gap;
                    Some(slot)
                }
            }
        };
        if let Some(slot) = slot {
            tokio::time::sleep_until(slot).await;
        }
    }

    /// Reports a 429: halve the allowed rate.
    pub fn throttled(&self) {
        let mut s = self.lock();
        let now = Instant::now();
        if s.base.is_none() {
            let elapsed = now.duration_since(s.window_start).as_secs_f64();
            let current = if elapsed > 0.0 {
                f64::from(s.window_count) / elapsed
            } else {
                0.0
            };
            s.base = Some(current.max(s.last_window_rate).max(1.0));
            s.factor = 1.0;
        }
        s.factor = (s.factor / 2.0).max(MIN_FACTOR);
        s.changed_at = now;
    }
}

fn recover(s: &mut State, now: Instant) {
    if s.factor >= 1.0 {
        return;
    }
    while now.duration_since(s.changed_at) >= RECOVERY_STEP && s.factor < 1.0 {
        s.factor = (s.factor * RECOVERY_GROWTH).min(1.0);
        s.changed_at += RECOVERY_STEP;
    }
    if s.factor >= 1.0 {
        // Fully recovered: an unlimited pacer is unlimited again.
        s.base = s.configured;
        s.changed_at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn time_for(pacer: &Pacer, requests: u32) -> Duration {
        let start = Instant::now();
        for _ in 0..requests {
            pacer.acquire().await;
        }
        start.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn spaces_requests_to_the_configured_rate() {
        let pacer = Pacer::new(Some(10.0));
        // 21 requests at 10/s: the first is immediate, then 20 gaps of 100 ms.
        let t = time_for(&pacer, 21).await;
        assert_eq!(t, Duration::from_secs(2));
        // Fractional rates work too.
        let slow = Pacer::new(Some(0.5));
        assert_eq!(time_for(&slow, 3).await, Duration::from_secs(4));
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_too_small_for_a_duration_waits_the_slowest_gap() {
        let pacer = Pacer::new(Some(1e-300));
        assert_eq!(time_for(&pacer, 3).await, SLOWEST * 2);
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_never_waits() {
        let pacer = Pacer::new(None);
        assert_eq!(time_for(&pacer, 1000).await, Duration::ZERO);
        assert_eq!(pacer.current_rate(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_halves_the_rate_and_it_recovers_gradually() {
        let pacer = Pacer::new(Some(8.0));
        pacer.throttled();
        assert_eq!(pacer.current_rate(), Some(4.0));
        pacer.throttled();
        assert_eq!(pacer.current_rate(), Some(2.0));
        tokio::time::advance(RECOVERY_STEP).await;
        assert_eq!(pacer.current_rate(), Some(2.5));
        tokio::time::advance(RECOVERY_STEP * 10).await;
        assert_eq!(pacer.current_rate(), Some(8.0));
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_an_unlimited_pacer_starts_from_the_measured_rate() {
        let pacer = Pacer::new(None);
        for _ in 0..50 {
            pacer.acquire().await;
            tokio::time::advance(Duration::from_millis(20)).await;
        }
        pacer.throttled();
        let rate = pacer.current_rate().expect("throttled pacer has a rate");
        assert!((20.0..=30.0).contains(&rate), "{rate}");
        tokio::time::advance(RECOVERY_STEP * 20).await;
        assert_eq!(pacer.current_rate(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_never_drops_below_the_floor() {
        let pacer = Pacer::new(Some(64.0));
        for _ in 0..100 {
            pacer.throttled();
        }
        assert_eq!(pacer.current_rate(), Some(1.0));
    }
}
