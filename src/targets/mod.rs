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
//! std `Mutex`, shared by `Arc` across generations like targets:
//! [`ProductState`] (inventory and listing health, `product`) and
//! [`Discovery`] (the targets of a `users = "all"` product, `discovery`).
//!
//! - `outcome`: what a check concluded, and its `code`/`reason` labels;
//! - `state`: one target and what a check does to it;
//! - `product`: product-level state;
//! - `discovery`: targets found by listing;
//! - `shard`: which instance owns a target, and hashed user labels;
//! - `inventory`: the Get Inventory facts kept per product;
//! - `labels`: label values escaped once, with the table.

mod discovery;
mod inventory;
mod labels;
mod outcome;
mod product;
mod shard;
mod state;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, Mode, PerTarget};

pub use discovery::{Discovery, DiscoveryPlan, RestoredTarget, Sighting};
use discovery::{DiscoverySettings, carry_discovery};
pub use inventory::{InventoryFacts, InventoryView, enum_label};
pub use labels::{UserLabels, escape_label_value};
pub use outcome::{ErrorCode, Inconclusive, Outcome, Reason};
pub use product::{ListingStatus, ProductState, ProductStatus};
pub use shard::{hash_user, in_shard, shard_of};
pub use state::{ErrorCount, LastError, Seat, Target, TargetState, Transition};

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
    /// Discovery: most targets kept (see [`Discovery::plan`]).
    pub max_discovered: usize,
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
    /// `[metrics] per_target`: which families are exported per target.
    pub per_target: PerTarget,
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
                    max_discovered: p.max_discovered,
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
            per_target: config.metrics.per_target,
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
