//! The target table: one entry per (product, SKU, user) this instance checks,
//! holding the last conclusive answer, the latest check, and the counters
//! (SPEC §5, §6). It is the single source of truth for `/metrics`, `/status`
//! and `/-/ready`.
//!
//! Concurrency: each [`Target`] keeps its state behind its own
//! `std::sync::Mutex`. A check writes one target; a scrape reads each target
//! in turn; both hold a lock for a few field copies and never across an
//! `.await`, so a std mutex is cheaper than a tokio one and contention is
//! per target, not per table. The table itself is immutable: a reload builds
//! a new one and the exporter swaps the `Arc` (see `exporter`). Kept targets
//! are the *same* `Arc<Target>` in both tables, so a check that was in flight
//! during the swap still lands in the state the new table exports.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use hmac::{Hmac, KeyInit, Mac};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use crate::config::{Config, Mode, ProductConfig, UserLabel};
use crate::store::{ErrorCode, Reason};

/// What one check concluded (SPEC §5).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The Store answered about the seat.
    Conclusive {
        /// Whether an active seat is held.
        active: bool,
        /// `dateAssigned` of an active seat, Unix seconds.
        assigned_at: Option<f64>,
        /// A negative answer that is also counted as an error (404).
        negative: Option<(ErrorCode, Reason)>,
    },
    /// No answer about the seat; the last conclusive value stays.
    Inconclusive {
        /// The `code` label.
        code: ErrorCode,
        /// The `reason` label.
        reason: Reason,
        /// For logs and the status page.
        detail: String,
    },
}

impl Outcome {
    /// Whether the check gave an answer about the seat.
    pub fn is_conclusive(&self) -> bool {
        matches!(self, Outcome::Conclusive { .. })
    }
}

/// The last conclusive answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seat {
    /// 1 or 0 in `msfb_seat_active`.
    pub active: bool,
    /// `msfb_seat_assigned_timestamp_seconds`, when active and known.
    pub assigned_at: Option<f64>,
}

/// One `msfb_seat_check_errors_total` series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCount {
    /// `code` label.
    pub code: ErrorCode,
    /// `reason` label.
    pub reason: Reason,
    /// Counter value.
    pub count: u64,
}

/// The most recent failed or negative check, for the status page.
#[derive(Debug, Clone, PartialEq)]
pub struct LastError {
    /// Unix seconds.
    pub at: f64,
    /// `code` label.
    pub code: ErrorCode,
    /// `reason` label.
    pub reason: Reason,
    /// Human description.
    pub detail: String,
}

/// Everything known about one target.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetState {
    /// Last conclusive answer; `None` until there is one.
    pub seat: Option<Seat>,
    /// Unix seconds of the latest check, conclusive or not.
    pub last_check_at: Option<f64>,
    /// Whether the latest check was conclusive.
    pub last_check_ok: bool,
    /// Unix seconds of the latest conclusive check.
    pub last_success_at: Option<f64>,
    /// Transitions from active to not active.
    pub lost_total: u64,
    /// Error series, each created at its first increment. Bounded by the
    /// number of distinct (code, reason) pairs, which is small and closed.
    pub errors: Vec<ErrorCount>,
    /// Latest failure, if any.
    pub last_error: Option<LastError>,
}

/// A state change worth a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing changed.
    None,
    /// First conclusive answer.
    First {
        /// The state found.
        active: bool,
    },
    /// 1 → 0.
    Lost,
    /// 0 → 1.
    Assigned,
}

impl TargetState {
    /// Applies one check's outcome at time `now` (Unix seconds).
    pub fn record(&mut self, outcome: &Outcome, now: f64) -> Transition {
        self.last_check_at = Some(now);
        self.last_check_ok = outcome.is_conclusive();
        match outcome {
            Outcome::Conclusive {
                active,
                assigned_at,
                negative,
            } => {
                let before = self.seat.map(|s| s.active);
                self.seat = Some(Seat {
                    active: *active,
                    assigned_at: if *active { *assigned_at } else { None },
                });
                self.last_success_at = Some(now);
                if let Some((code, reason)) = negative {
                    self.count_error(*code, *reason, now, "not found".to_owned());
                }
                match (before, *active) {
                    (None, a) => Transition::First { active: a },
                    (Some(true), false) => {
                        self.lost_total += 1;
                        Transition::Lost
                    }
                    (Some(false), true) => Transition::Assigned,
                    _ => Transition::None,
                }
            }
            Outcome::Inconclusive {
                code,
                reason,
                detail,
            } => {
                self.count_error(*code, *reason, now, detail.clone());
                Transition::None
            }
        }
    }

    fn count_error(&mut self, code: ErrorCode, reason: Reason, now: f64, detail: String) {
        match self
            .errors
            .iter_mut()
            .find(|e| e.code == code && e.reason == reason)
        {
            Some(e) => e.count += 1,
            None => {
                self.errors.push(ErrorCount {
                    code,
                    reason,
                    count: 1,
                });
                self.errors.sort_by_key(|e| (e.code, e.reason));
            }
        }
        self.last_error = Some(LastError {
            at: now,
            code,
            reason,
            detail,
        });
    }
}

/// One (product, SKU, user).
#[derive(Debug)]
pub struct Target {
    upn: Box<str>,
    /// The hashed label when `user_label = "hash"`.
    hashed: Option<Box<str>>,
    state: Mutex<TargetState>,
}

impl Target {
    fn new(upn: &str, hashed: Option<Box<str>>, state: TargetState) -> Target {
        Target {
            upn: upn.into(),
            hashed,
            state: Mutex::new(state),
        }
    }

    /// The UPN: used for the request, never for output.
    pub fn upn(&self) -> &str {
        &self.upn
    }

    /// What identifies the user in labels, logs and pages.
    pub fn user_label(&self) -> &str {
        self.hashed.as_deref().unwrap_or(&self.upn)
    }

    /// Locks the state for a short read or write. A poisoned lock (a panic
    /// while holding it, which no code path here can cause) still yields the
    /// data: the state is plain values, valid after any partial update.
    pub fn state(&self) -> MutexGuard<'_, TargetState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A product as configured, shared by its targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    /// Store product id.
    pub product_id: String,
    /// Store SKU id.
    pub sku_id: String,
    /// Human name from the config, if any.
    pub name: Option<String>,
    /// How its seats are checked.
    pub mode: Mode,
}

/// A product and this instance's targets for it.
#[derive(Debug)]
pub struct ProductGroup {
    /// The product (shared with in-flight checks).
    pub product: Arc<Product>,
    /// Its targets in configuration order.
    pub targets: Vec<Arc<Target>>,
}

/// Targets by state, for `msfb_seats` and the landing page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateCounts {
    /// Last conclusive answer: active.
    pub active: usize,
    /// Last conclusive answer: not active.
    pub inactive: usize,
    /// No conclusive answer yet.
    pub unknown: usize,
}

impl StateCounts {
    /// Sum of all three.
    pub fn total(&self) -> usize {
        self.active + self.inactive + self.unknown
    }

    /// Adds another count.
    pub fn add(&mut self, other: StateCounts) {
        self.active += other.active;
        self.inactive += other.inactive;
        self.unknown += other.unknown;
    }
}

/// The targets of one configuration generation, for this shard.
#[derive(Debug, Default)]
pub struct TargetTable {
    /// Products in configuration order.
    pub groups: Vec<ProductGroup>,
    len: usize,
}

impl TargetTable {
    /// Builds the table for `config`. Targets also in `previous` (same
    /// product, SKU and user, compared case-insensitively for the user) are
    /// carried over with their state; new ones start unknown; the rest are
    /// dropped.
    pub fn build(config: &Config, previous: Option<&TargetTable>) -> TargetTable {
        let mut kept: HashMap<(&str, &str, String), &Arc<Target>> = HashMap::new();
        if let Some(prev) = previous {
            for g in &prev.groups {
                for t in &g.targets {
                    kept.insert(
                        (
                            g.product.product_id.as_str(),
                            g.product.sku_id.as_str(),
                            t.upn.to_lowercase(),
                        ),
                        t,
                    );
                }
            }
        }
        let mut len = 0;
        let groups = config
            .products
            .iter()
            .map(|p| {
                let targets: Vec<Arc<Target>> = p
                    .users
                    .iter()
                    .filter(|u| in_shard(p, u, config.poll.shard_index, config.poll.shard_count))
                    .map(|upn| {
                        let hashed = match &config.metrics.user_label {
                            UserLabel::Upn => None,
                            UserLabel::Hash(key) => Some(hash_user(key.expose_secret(), upn)),
                        };
                        let key = (p.product_id.as_str(), p.sku_id.as_str(), upn.to_lowercase());
                        match kept.get(&key) {
                            Some(old) if old.hashed == hashed && *old.upn == **upn => {
                                Arc::clone(old)
                            }
                            Some(old) => Arc::new(Target::new(upn, hashed, old.state().clone())),
                            None => Arc::new(Target::new(upn, hashed, TargetState::default())),
                        }
                    })
                    .collect();
                len += targets.len();
                ProductGroup {
                    product: Arc::new(Product {
                        product_id: p.product_id.clone(),
                        sku_id: p.sku_id.clone(),
                        name: p.name.clone(),
                        mode: p.mode,
                    }),
                    targets,
                }
            })
            .collect();
        TargetTable { groups, len }
    }

    /// Number of targets.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no targets (possible in a shard).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every target with its product, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&Product, &Arc<Target>)> {
        self.groups
            .iter()
            .flat_map(|g| g.targets.iter().map(move |t| (&*g.product, t)))
    }

    /// Counts by state for one group.
    pub fn counts(group: &ProductGroup) -> StateCounts {
        let mut c = StateCounts::default();
        for t in &group.targets {
            match t.state().seat {
                Some(Seat { active: true, .. }) => c.active += 1,
                Some(Seat { active: false, .. }) => c.inactive += 1,
                None => c.unknown += 1,
            }
        }
        c
    }

    /// Whether every target has been checked at least once.
    pub fn all_checked(&self) -> bool {
        self.iter().all(|(_, t)| t.state().last_check_at.is_some())
    }
}

/// Whether this instance's shard owns the target: a stable hash (SHA-256 of
/// product, SKU and lower-cased UPN) modulo the shard count. Stable across
/// versions and platforms, unlike `std`'s hasher.
pub fn in_shard(product: &ProductConfig, upn: &str, index: u32, count: u32) -> bool {
    if count <= 1 {
        return true;
    }
    shard_of(&product.product_id, &product.sku_id, upn, count) == index
}

/// The shard that owns a target.
pub fn shard_of(product_id: &str, sku_id: &str, upn: &str, count: u32) -> u32 {
    let mut h = Sha256::new();
    h.update(product_id.as_bytes());
    h.update([0]);
    h.update(sku_id.as_bytes());
    h.update([0]);
    h.update(upn.to_lowercase().as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % u64::from(count.max(1))) as u32
}

/// The keyed hash shown instead of a UPN: HMAC-SHA256 of the lower-cased UPN,
/// first 16 hex digits. Same key and UPN always give the same label.
pub fn hash_user(key: &str, upn: &str) -> Box<str> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(upn.to_lowercase().as_bytes());
    let bytes = mac.finalize().into_bytes();
    let mut out = String::with_capacity(16);
    for b in &bytes[..8] {
        out.push_str(&format!("{b:02x}"));
    }
    out.into_boxed_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conclusive(active: bool) -> Outcome {
        Outcome::Conclusive {
            active,
            assigned_at: Some(5.0),
            negative: None,
        }
    }

    fn failed(code: ErrorCode) -> Outcome {
        Outcome::Inconclusive {
            code,
            reason: Reason::None,
            detail: "x".into(),
        }
    }

    #[test]
    fn inconclusive_answers_keep_the_last_conclusive_seat() {
        let mut s = TargetState::default();
        assert_eq!(
            s.record(&conclusive(true), 1.0),
            Transition::First { active: true }
        );
        for code in [
            ErrorCode::Status(500),
            ErrorCode::Timeout,
            ErrorCode::Decode,
        ] {
            assert_eq!(s.record(&failed(code), 2.0), Transition::None);
            assert_eq!(s.seat.map(|s| s.active), Some(true));
            assert!(!s.last_check_ok);
        }
        assert_eq!(s.last_success_at, Some(1.0));
        assert_eq!(s.lost_total, 0);
        assert_eq!(s.errors.len(), 3);
    }

    #[test]
    fn losses_are_counted_once_per_transition() {
        let mut s = TargetState::default();
        s.record(&conclusive(true), 1.0);
        assert_eq!(s.record(&conclusive(false), 2.0), Transition::Lost);
        assert_eq!(s.record(&conclusive(false), 3.0), Transition::None);
        assert_eq!(s.record(&conclusive(true), 4.0), Transition::Assigned);
        assert_eq!(s.record(&conclusive(false), 5.0), Transition::Lost);
        assert_eq!(s.lost_total, 2);
        // A first answer of "no seat" is not a loss.
        let mut fresh = TargetState::default();
        fresh.record(&conclusive(false), 1.0);
        assert_eq!(fresh.lost_total, 0);
    }

    #[test]
    fn error_series_are_one_per_code_and_reason() {
        let mut s = TargetState::default();
        for _ in 0..1000 {
            s.record(&failed(ErrorCode::Status(429)), 1.0);
            s.record(
                &Outcome::Conclusive {
                    active: false,
                    assigned_at: None,
                    negative: Some((ErrorCode::Status(404), Reason::Seat)),
                },
                1.0,
            );
        }
        assert_eq!(s.errors.len(), 2);
        assert!(s.errors.iter().all(|e| e.count == 1000));
    }

    #[test]
    fn shards_partition_targets() {
        let n = 4;
        let mut seen = [0usize; 4];
        for i in 0..1000 {
            let s = shard_of("P", "S", &format!("user{i}@x.y"), n);
            seen[s as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 150), "{seen:?}");
        assert_eq!(
            shard_of("P", "S", "A@X.Y", 7),
            shard_of("P", "S", "a@x.y", 7)
        );
    }

    #[test]
    fn user_hash_is_stable_and_keyed() {
        let a = hash_user("k1", "alice@contoso.com");
        assert_eq!(a.len(), 16);
        assert_eq!(a, hash_user("k1", "Alice@Contoso.com"));
        assert_ne!(a, hash_user("k2", "alice@contoso.com"));
        assert_ne!(a, hash_user("k1", "bob@contoso.com"));
    }
}
