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
//!
//! Two things change without a reload, and each sits behind its own short
//! std `Mutex` in the group, shared by `Arc` across generations like targets:
//! - [`ProductState`]: per product, the latest Get Inventory facts and the
//!   health of the seat listing (SPEC §11).
//! - [`Discovery`]: for `users = "all"`, the targets found by listing, which
//!   appear as seats are assigned and are forgotten `forget_after` after
//!   their seat went (SPEC §11). Readers take a snapshot of the `Arc`s and
//!   drop the lock before touching any target; the listing decides under the
//!   lock which targets exist and records outcomes after releasing it. Lock
//!   order, where two are held at once, is always discovery set → target.
//!   The set is bounded by what the Store lists (at most `max_pages` pages of
//!   at most 1 MiB, about 100 seats a page when the Store honours
//!   `maxResults`) plus the lost seats still inside `forget_after`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use crate::config::{Config, Mode, ProductConfig, UserLabel};
use crate::inventory::InventoryView;
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
    /// `users = "all"`: targets come from the listing.
    pub discover: bool,
    /// Discovery: how long a lost seat stays exported.
    pub forget_after: Duration,
    /// Listing safety cut-off.
    pub max_pages: u32,
}

/// How the latest seat listings of a product went (list mode).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListingStatus {
    /// Unix seconds of the latest listing, complete or not.
    pub last_at: Option<f64>,
    /// Whether it was complete.
    pub ok: bool,
    /// Unix seconds of the latest complete listing.
    pub last_success_at: Option<f64>,
    /// Pages of the latest complete listing.
    pub pages: Option<u32>,
    /// Failed listings by `code`, each series created at its first failure.
    pub errors: Vec<(ErrorCode, u64)>,
}

impl ListingStatus {
    /// Records a complete listing of `pages` pages at `now`.
    pub fn complete(&mut self, pages: u32, now: f64) {
        self.last_at = Some(now);
        self.ok = true;
        self.last_success_at = Some(now);
        self.pages = Some(pages);
    }

    /// Records a failed listing at `now`.
    pub fn failed(&mut self, code: ErrorCode, now: f64) {
        self.last_at = Some(now);
        self.ok = false;
        match self.errors.iter_mut().find(|(c, _)| *c == code) {
            Some((_, n)) => *n += 1,
            None => {
                self.errors.push((code, 1));
                self.errors.sort_by_key(|(c, _)| *c);
            }
        }
    }
}

/// What is known about a product as a whole.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProductStatus {
    /// The latest complete Get Inventory's word on it; `None` before one.
    pub inventory: Option<InventoryView>,
    /// Seat listing health (list mode only).
    pub listing: ListingStatus,
}

/// Product-level state, shared by the groups of every generation that has
/// the product, so a reload never loses it.
#[derive(Debug, Default)]
pub struct ProductState {
    status: Mutex<ProductStatus>,
}

impl ProductState {
    /// Locks the status for a short read or write (poisoning ignored, as
    /// for [`Target::state`]).
    pub fn status(&self) -> MutexGuard<'_, ProductStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What makes discovered targets what they are: which shard keeps them and
/// how their user label is made. A reload that changes either rebuilds the
/// set; otherwise the same [`Discovery`] carries on.
#[derive(Debug, Clone)]
struct DiscoverySettings {
    shard_index: u32,
    shard_count: u32,
    user_label: UserLabel,
}

impl DiscoverySettings {
    fn same_as(&self, other: &DiscoverySettings) -> bool {
        let label = match (&self.user_label, &other.user_label) {
            (UserLabel::Upn, UserLabel::Upn) => true,
            (UserLabel::Hash(a), UserLabel::Hash(b)) => a.expose_secret() == b.expose_secret(),
            _ => false,
        };
        label && self.shard_index == other.shard_index && self.shard_count == other.shard_count
    }

    fn hashed(&self, upn: &str) -> Option<Box<str>> {
        match &self.user_label {
            UserLabel::Upn => None,
            UserLabel::Hash(key) => Some(hash_user(key.expose_secret(), upn)),
        }
    }
}

/// A discovered target and when its seat went, for `forget_after`.
#[derive(Debug)]
struct Discovered {
    target: Arc<Target>,
    /// Monotonic time of the first listing that showed the seat gone (not
    /// listed, or not active); `None` while it is active. Monotonic, so a
    /// wall-clock step never forgets a lost seat early.
    inactive_since: Option<tokio::time::Instant>,
}

/// What one complete listing means for a discovered target.
#[derive(Debug, Clone, PartialEq)]
pub struct Sighting {
    /// `assignedTo` as the Store spelled it.
    pub upn: String,
    /// The outcome to record.
    pub outcome: Outcome,
}

/// The targets of one complete listing, decided under the lock and recorded
/// by the caller after it is released.
#[derive(Debug, Default)]
pub struct DiscoveryPlan {
    /// Every target to record an outcome for.
    pub record: Vec<(Arc<Target>, Outcome)>,
    /// Targets seen for the first time.
    pub discovered: Vec<Arc<Target>>,
    /// Targets forgotten (lost for longer than `forget_after`).
    pub forgotten: Vec<Arc<Target>>,
}

/// The targets of a `users = "all"` product (see the module header).
#[derive(Debug)]
pub struct Discovery {
    settings: DiscoverySettings,
    /// Keyed by lower-cased `assignedTo`; ordered so the exposition is stable.
    entries: Mutex<BTreeMap<String, Discovered>>,
}

impl Discovery {
    fn new(settings: DiscoverySettings) -> Discovery {
        Discovery {
            settings,
            entries: Mutex::new(BTreeMap::new()),
        }
    }

    fn entries(&self) -> MutexGuard<'_, BTreeMap<String, Discovered>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current targets, in order. The lock is released on return.
    pub fn snapshot(&self) -> Vec<Arc<Target>> {
        self.entries()
            .values()
            .map(|d| Arc::clone(&d.target))
            .collect()
    }

    /// Number of targets.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// Whether no target has been discovered (or all were forgotten).
    pub fn is_empty(&self) -> bool {
        self.entries().is_empty()
    }

    /// Whether this instance's shard watches `upn` of `product`.
    pub fn owns(&self, product: &Product, upn: &str) -> bool {
        let s = &self.settings;
        s.shard_count <= 1
            || shard_of(&product.product_id, &product.sku_id, upn, s.shard_count) == s.shard_index
    }

    /// Applies a complete listing. `seen` holds every seat of this shard the
    /// listing showed (keyed by lower-cased `assignedTo`); a known target
    /// missing from it gets `unlisted`. A seat seen for the first time
    /// becomes a target only if it is active (a revoked seat nobody here
    /// ever saw held is nothing to watch). A target whose seat has been gone
    /// for `forget_after`, measured from the listing that first showed it
    /// gone, is forgotten instead of recorded — so a lost seat is always
    /// exported at 0 until at least the next listing.
    pub fn plan(
        &self,
        seen: &HashMap<String, Sighting>,
        unlisted: &Outcome,
        forget_after: Duration,
        now: tokio::time::Instant,
    ) -> DiscoveryPlan {
        let mut plan = DiscoveryPlan::default();
        let mut entries = self.entries();
        entries.retain(|key, d| {
            let outcome = seen.get(key).map_or(unlisted, |s| &s.outcome);
            let active = matches!(outcome, Outcome::Conclusive { active: true, .. });
            if active {
                d.inactive_since = None;
            } else if let Some(since) = d.inactive_since {
                if now.saturating_duration_since(since) >= forget_after {
                    plan.forgotten.push(Arc::clone(&d.target));
                    return false;
                }
            } else {
                d.inactive_since = Some(now);
            }
            plan.record.push((Arc::clone(&d.target), outcome.clone()));
            true
        });
        for (key, sighting) in seen {
            if entries.contains_key(key)
                || !matches!(sighting.outcome, Outcome::Conclusive { active: true, .. })
            {
                continue;
            }
            let target = Arc::new(Target::new(
                &sighting.upn,
                self.settings.hashed(&sighting.upn),
                TargetState::default(),
            ));
            entries.insert(
                key.clone(),
                Discovered {
                    target: Arc::clone(&target),
                    inactive_since: None,
                },
            );
            plan.record
                .push((Arc::clone(&target), sighting.outcome.clone()));
            plan.discovered.push(target);
        }
        plan
    }
}

/// A product and this instance's targets for it.
#[derive(Debug)]
pub struct ProductGroup {
    /// The product (shared with in-flight checks).
    pub product: Arc<Product>,
    /// Its configured targets in configuration order (none with discovery).
    pub targets: Vec<Arc<Target>>,
    /// With `users = "all"`: the targets found by listing.
    pub discovery: Option<Arc<Discovery>>,
    /// Inventory and listing state, kept across reloads.
    pub state: Arc<ProductState>,
    /// The `user` label values of `targets`, escaped, in one string.
    pub user_labels: UserLabels,
}

/// The escaped `user` label values of a group's configured targets, back to
/// back in one string, built with the table. A scrape reads them in order
/// instead of following a pointer to each target's own string: at 100k
/// targets those cache misses were a quarter of the render time. Costs about
/// 30 bytes a target.
#[derive(Debug, Default)]
pub struct UserLabels {
    text: String,
    /// End of each label in `text`; label `i` starts where `i - 1` ends.
    ends: Vec<u32>,
}

impl UserLabels {
    fn build(targets: &[Arc<Target>]) -> UserLabels {
        let mut text = String::with_capacity(targets.iter().map(|t| t.user_label().len()).sum());
        let ends = targets
            .iter()
            .map(|t| {
                crate::metrics::exposition::escape_label_value(&mut text, t.user_label());
                // A label is bounded by the configuration file size limit
                // (64 MiB), so the total stays far below 4 GiB.
                u32::try_from(text.len()).unwrap_or(u32::MAX)
            })
            .collect();
        UserLabels { text, ends }
    }

    /// All labels, back to back.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Where the label of target `i` lies in [`UserLabels::text`]; empty
    /// past the end.
    pub fn span(&self, i: usize) -> (u32, u32) {
        let end = self.ends.get(i).copied().unwrap_or(0);
        let start = match i {
            0 => 0,
            _ => self.ends.get(i - 1).copied().unwrap_or(end),
        };
        (start, end)
    }
}

impl ProductGroup {
    /// Every target now: the configured ones, then the discovered ones.
    pub fn all_targets(&self) -> Vec<Arc<Target>> {
        match &self.discovery {
            None => self.targets.clone(),
            Some(d) => {
                let mut all = self.targets.clone();
                all.extend(d.snapshot());
                all
            }
        }
    }

    /// Number of targets now.
    pub fn len(&self) -> usize {
        self.targets.len() + self.discovery.as_ref().map_or(0, |d| d.len())
    }

    /// Whether the group has no target now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
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
    /// `[inventory] enabled`: whether the inventory families are exported.
    pub inventory_enabled: bool,
}

/// Identifies a product across generations (ids compared as configured;
/// validation already refuses case variants of one product).
type ProductKey = (String, String);

/// Makes the target for `upn`, reusing `old` (same `Arc`, so in-flight
/// checks land in the new table) when its spelling and label are unchanged,
/// or copying its state when only those changed.
fn carry(upn: &str, hashed: Option<Box<str>>, old: Option<&Arc<Target>>) -> Arc<Target> {
    match old {
        Some(old) if old.hashed == hashed && *old.upn == *upn => Arc::clone(old),
        Some(old) => Arc::new(Target::new(upn, hashed, old.state().clone())),
        None => Arc::new(Target::new(upn, hashed, TargetState::default())),
    }
}

impl TargetTable {
    /// Builds the table for `config`. Targets also in `previous` (same
    /// product, SKU and user, compared case-insensitively for the user,
    /// configured or discovered) are carried over with their state; new ones
    /// start unknown; the rest are dropped. Product state (inventory,
    /// listing health) and discovered sets are carried over too.
    pub fn build(config: &Config, previous: Option<&TargetTable>) -> TargetTable {
        let mut kept: HashMap<(&str, &str, String), Arc<Target>> = HashMap::new();
        let mut prev_groups: HashMap<ProductKey, &ProductGroup> = HashMap::new();
        if let Some(prev) = previous {
            for g in &prev.groups {
                let (pid, sku) = (g.product.product_id.as_str(), g.product.sku_id.as_str());
                prev_groups.insert((pid.to_owned(), sku.to_owned()), g);
                for t in g.all_targets() {
                    kept.insert((pid, sku, t.upn.to_lowercase()), t);
                }
            }
        }
        let settings = DiscoverySettings {
            shard_index: config.poll.shard_index,
            shard_count: config.poll.shard_count,
            user_label: config.metrics.user_label.clone(),
        };
        let groups = config
            .products
            .iter()
            .map(|p| {
                let targets: Vec<Arc<Target>> = p
                    .users
                    .iter()
                    .filter(|u| in_shard(p, u, config.poll.shard_index, config.poll.shard_count))
                    .map(|upn| {
                        let key = (p.product_id.as_str(), p.sku_id.as_str(), upn.to_lowercase());
                        carry(upn, settings.hashed(upn), kept.get(&key))
                    })
                    .collect();
                let product = Arc::new(Product {
                    product_id: p.product_id.clone(),
                    sku_id: p.sku_id.clone(),
                    name: p.name.clone(),
                    mode: p.mode,
                    discover: p.discover,
                    forget_after: p.forget_after,
                    max_pages: p.max_pages,
                });
                let prev = prev_groups
                    .get(&(p.product_id.clone(), p.sku_id.clone()))
                    .copied();
                let discovery = p
                    .discover
                    .then(|| carry_discovery(&product, prev, &settings, &kept));
                ProductGroup {
                    user_labels: UserLabels::build(&targets),
                    state: prev.map_or_else(Arc::default, |g| Arc::clone(&g.state)),
                    product,
                    targets,
                    discovery,
                }
            })
            .collect();
        TargetTable {
            groups,
            inventory_enabled: config.inventory.enabled,
        }
    }

    /// Number of targets now (discovered ones included).
    pub fn len(&self) -> usize {
        self.groups.iter().map(ProductGroup::len).sum()
    }

    /// Whether there is nothing to check: no target and no product whose
    /// targets are discovered (possible in a shard).
    pub fn is_empty(&self) -> bool {
        self.groups
            .iter()
            .all(|g| g.targets.is_empty() && g.discovery.is_none())
    }

    /// Every target with its product, in order (a snapshot of discovered
    /// targets, so no lock is held while the caller looks at them).
    pub fn iter(&self) -> impl Iterator<Item = (&Product, Arc<Target>)> {
        self.groups
            .iter()
            .flat_map(|g| g.all_targets().into_iter().map(move |t| (&*g.product, t)))
    }

    /// Counts by state for one group.
    pub fn counts(group: &ProductGroup) -> StateCounts {
        Self::count_states(&group.all_targets())
    }

    /// Counts by state for some targets.
    pub fn count_states(targets: &[Arc<Target>]) -> StateCounts {
        let mut c = StateCounts::default();
        for t in targets {
            match t.state().seat {
                Some(Seat { active: true, .. }) => c.active += 1,
                Some(Seat { active: false, .. }) => c.inactive += 1,
                None => c.unknown += 1,
            }
        }
        c
    }

    /// Whether every target has been checked at least once, and every
    /// discovery product listed at least once (before that, its targets are
    /// not even known).
    pub fn all_checked(&self) -> bool {
        self.groups
            .iter()
            .all(|g| g.discovery.is_none() || g.state.status().listing.last_at.is_some())
            && self.iter().all(|(_, t)| t.state().last_check_at.is_some())
    }
}

/// The discovered set of a `users = "all"` product after a reload: the same
/// set when shard and label settings are unchanged (so a listing in flight
/// still lands in it), else a new set holding the previous targets that this
/// shard still owns, relabelled. Targets the product had in list or
/// per-user mode are taken over, so switching to discovery keeps their state.
fn carry_discovery(
    product: &Product,
    prev: Option<&ProductGroup>,
    settings: &DiscoverySettings,
    kept: &HashMap<(&str, &str, String), Arc<Target>>,
) -> Arc<Discovery> {
    if let Some(d) = prev.and_then(|g| g.discovery.as_ref())
        && d.settings.same_as(settings)
    {
        return Arc::clone(d);
    }
    let fresh = Discovery::new(settings.clone());
    let Some(prev) = prev else {
        return Arc::new(fresh);
    };
    let old_since: HashMap<String, Option<tokio::time::Instant>> = prev
        .discovery
        .as_ref()
        .map(|d| {
            d.entries()
                .iter()
                .map(|(k, e)| (k.clone(), e.inactive_since))
                .collect()
        })
        .unwrap_or_default();
    {
        let mut entries = fresh.entries();
        for t in prev.all_targets() {
            let key = t.upn.to_lowercase();
            if !fresh.owns(product, &t.upn) {
                continue;
            }
            let old = kept.get(&(
                product.product_id.as_str(),
                product.sku_id.as_str(),
                key.clone(),
            ));
            let target = carry(&t.upn, settings.hashed(&t.upn), old);
            let inactive_since = old_since.get(&key).copied().flatten();
            entries.insert(
                key,
                Discovered {
                    target,
                    inactive_since,
                },
            );
        }
    }
    Arc::new(fresh)
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

    fn sighting(upn: &str, active: bool) -> (String, Sighting) {
        (
            upn.to_lowercase(),
            Sighting {
                upn: upn.to_owned(),
                outcome: conclusive(active),
            },
        )
    }

    #[test]
    fn discovery_assigns_revokes_and_forgets() {
        let d = Discovery::new(DiscoverySettings {
            shard_index: 0,
            shard_count: 1,
            user_label: UserLabel::Upn,
        });
        let unlisted = Outcome::Conclusive {
            active: false,
            assigned_at: None,
            negative: Some((ErrorCode::Status(404), Reason::Seat)),
        };
        let day = Duration::from_secs(86_400);
        let t0 = tokio::time::Instant::now();
        let apply = |plan: &DiscoveryPlan| {
            for (t, o) in &plan.record {
                t.state().record(o, 1.0);
            }
        };
        // A revoked seat nobody saw held is not a target.
        let seen: HashMap<_, _> = [sighting("Alice@X.Y", true), sighting("carol@x.y", false)]
            .into_iter()
            .collect();
        let plan = d.plan(&seen, &unlisted, day, t0);
        apply(&plan);
        assert_eq!(plan.discovered.len(), 1);
        assert_eq!(plan.discovered[0].upn(), "Alice@X.Y");
        assert_eq!(d.len(), 1);
        // No longer listed: lost, kept at 0 until forget_after has passed
        // since the listing that first showed it gone.
        let none = HashMap::new();
        for (at, kept) in [
            (t0 + day, true),
            (t0 + 2 * day - Duration::from_secs(1), true),
        ] {
            let plan = d.plan(&none, &unlisted, day, at);
            apply(&plan);
            assert!(plan.forgotten.is_empty());
            assert_eq!(d.len(), usize::from(kept));
        }
        let alice = d.snapshot().pop().unwrap();
        assert_eq!(alice.state().seat.map(|s| s.active), Some(false));
        assert_eq!(alice.state().lost_total, 1);
        let plan = d.plan(&none, &unlisted, day, t0 + 2 * day);
        assert_eq!(plan.forgotten.len(), 1);
        assert!(plan.record.is_empty());
        assert!(d.is_empty());
        // Assigned again: a new target with fresh counters.
        let plan = d.plan(&seen, &unlisted, day, t0 + 3 * day);
        apply(&plan);
        assert_eq!(plan.discovered.len(), 1);
        assert_eq!(d.snapshot()[0].state().lost_total, 0);
        // Reassigned within the window: the same target, clock reset.
        d.plan(&none, &unlisted, day, t0 + 4 * day);
        let plan = d.plan(&seen, &unlisted, day, t0 + 4 * day + day / 2);
        assert!(plan.discovered.is_empty());
        let plan = d.plan(&none, &unlisted, day, t0 + 5 * day + day / 4);
        assert!(plan.forgotten.is_empty(), "the loss clock restarted");
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
