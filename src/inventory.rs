//! Seat capacity from Get Inventory (SPEC §11): on its own schedule
//! (`[inventory] interval`, default 1 h — capacity changes when someone buys
//! seats, not every few minutes), page through the tenant's inventory and
//! keep, for each configured product, what the Store says about it: seat
//! capacity, available seats, licence type, distribution policy, status.
//!
//! The facts live in each product group's [`ProductState`](crate::targets::ProductState),
//! so the exposition writes them straight from the table like the seat
//! families, and a product removed by a reload takes its series with it.
//!
//! Failures follow the seat rules: page requests go through the shared
//! pacer and are retried when transient (`poller::listing::fetch_all`); an
//! incomplete inventory changes nothing — the last complete one stays
//! exported — and is counted in `msfb_inventory_poll_errors_total{code}`.
//! Only a complete inventory can say that a configured product is missing
//! from it (`status="missing"`); an entry the Store marks removed is shown
//! with `status="removed"`.
//!
//! Memory: only the entries of configured products are kept while paging;
//! a listing longer than `[inventory] max_pages` pages is cut off.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Exporter;
use crate::poller::check::CheckContext;
use crate::poller::listing::{ListingEnd, fetch_all};
use crate::poller::unix_now;
use crate::store::{InventoryEntry, InventoryListing};

/// What the latest complete inventory says about a configured product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InventoryView {
    /// The product is in the inventory.
    Listed(InventoryFacts),
    /// It is not (`msfb_inventory_info{status="missing"}`).
    Missing,
}

/// An inventory entry as exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryFacts {
    /// `msfb_inventory_seat_capacity`, when the Store gave an integer.
    pub seat_capacity: Option<i64>,
    /// `msfb_inventory_available_seats`, likewise.
    pub available_seats: Option<i64>,
    /// `license_type` label.
    pub license_type: String,
    /// `distribution_policy` label.
    pub distribution_policy: String,
    /// `status` label.
    pub status: String,
}

impl InventoryFacts {
    fn from_entry(e: &InventoryEntry) -> InventoryFacts {
        InventoryFacts {
            seat_capacity: e.seat_capacity,
            available_seats: e.available_seats,
            license_type: enum_label(e.license_type.as_deref()),
            distribution_policy: enum_label(e.distribution_policy.as_deref()),
            status: enum_label(e.status.as_deref()),
        }
    }

    fn is_active(&self) -> bool {
        self.status == "active"
    }
}

/// An enum value as a label: lower-cased, since the Store spells them both
/// ways (`online`/`Online`); empty when absent; `other` when it is not a
/// short word, so a strange value cannot make a strange label.
pub fn enum_label(value: Option<&str>) -> String {
    let Some(v) = value.map(str::trim) else {
        return String::new();
    };
    if !v.is_empty()
        && v.len() <= 32
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        v.to_ascii_lowercase()
    } else {
        "other".to_owned()
    }
}

/// What one inventory poll did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryReport {
    /// Whether the listing was complete (and the facts updated).
    pub complete: bool,
    /// Pages read.
    pub pages: u32,
    /// Configured products found in it.
    pub found: usize,
    /// Configured products missing from it.
    pub missing: usize,
}

/// Product ids compared as the config validation compares them.
fn key(product_id: &str, sku_id: &str) -> (String, String) {
    (product_id.to_uppercase(), sku_id.to_uppercase())
}

impl Exporter {
    /// Polls Get Inventory once and updates the products of the current
    /// configuration. Returns `None` if `cancel` fired first.
    pub async fn poll_inventory(&self, cancel: &CancellationToken) -> Option<InventoryReport> {
        let generation = self.generation();
        let wanted: HashSet<(String, String)> = generation
            .table
            .groups
            .iter()
            .map(|g| key(&g.product.product_id, &g.product.sku_id))
            .collect();
        let ctx = CheckContext {
            client: &generation.client,
            tokens: &generation.tokens,
            pacer: self.pacer(),
            retry: self.retry_policy(&generation.config),
        };
        let mut found: HashMap<(String, String), InventoryFacts> = HashMap::new();
        let listing = fetch_all(
            &ctx,
            &InventoryListing,
            generation.config.inventory.max_pages,
            |page| {
                for entry in &page.entries {
                    let k = key(&entry.product_id, &entry.sku_id);
                    if !wanted.contains(&k) {
                        continue;
                    }
                    let facts = InventoryFacts::from_entry(entry);
                    // Listed twice (an old removed entry beside the live one):
                    // the active entry is the one that says something.
                    match found.get(&k) {
                        Some(old) if old.is_active() && !facts.is_active() => {}
                        _ => {
                            found.insert(k, facts);
                        }
                    }
                }
            },
        );
        let end = tokio::select! {
            _ = cancel.cancelled() => return None,
            end = listing => end,
        };
        let t = self.telemetry();
        let now = unix_now();
        let (code, detail, pages) = match end {
            ListingEnd::Complete { pages } => {
                let mut missing = 0;
                for g in &generation.table.groups {
                    let view = match found.get(&key(&g.product.product_id, &g.product.sku_id)) {
                        Some(facts) => InventoryView::Listed(facts.clone()),
                        None => {
                            missing += 1;
                            InventoryView::Missing
                        }
                    };
                    g.state.status().inventory = Some(view);
                }
                t.inventory_success.with_label_values::<&str>(&[]).set(1.0);
                t.inventory_last_success
                    .with_label_values::<&str>(&[])
                    .set(now);
                if missing > 0 {
                    tracing::warn!(
                        missing,
                        "configured products missing from the Store inventory"
                    );
                }
                tracing::debug!(pages, found = found.len(), missing, "inventory polled");
                return Some(InventoryReport {
                    complete: true,
                    pages,
                    found: found.len(),
                    missing,
                });
            }
            // Get Inventory has no item to be missing; a 404 is just a failure.
            ListingEnd::NotFound { .. } => (
                crate::store::ErrorCode::Status(404),
                "Get Inventory answered 404".to_owned(),
                0,
            ),
            ListingEnd::Failed {
                code,
                detail,
                pages,
                ..
            } => (code, detail, pages),
        };
        t.inventory_success.with_label_values::<&str>(&[]).set(0.0);
        t.count_inventory_error(&code.label());
        tracing::warn!(code = %code.label(), error = %detail,
            "inventory poll failed; keeping the last complete inventory");
        Some(InventoryReport {
            complete: false,
            pages,
            found: 0,
            missing: 0,
        })
    }

    /// Polls the inventory every `[inventory] interval` until `cancel`
    /// fires, starting at once. After a reload it polls at once if a
    /// configured product has no inventory facts yet or polling was just
    /// enabled, and otherwise keeps its schedule (with the new interval).
    pub async fn run_inventory(&self, cancel: CancellationToken) {
        let mut reloads = self.reloads();
        let mut enabled = self.generation().config.inventory.enabled;
        let mut last_start: Option<Instant> = None;
        let mut next = Instant::now();
        // Stands in for "never" while polling is disabled.
        const IDLE: Duration = Duration::from_secs(365 * 24 * 3600);
        loop {
            let deadline = if enabled { next } else { Instant::now() + IDLE };
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep_until(deadline), if enabled => {
                    let started = Instant::now();
                    last_start = Some(started);
                    if self.poll_inventory(&cancel).await.is_none() {
                        break;
                    }
                    next = started + self.generation().config.inventory.interval;
                }
                Ok(()) = reloads.changed() => {
                    let generation = self.generation();
                    let config = &generation.config.inventory;
                    let was_enabled = enabled;
                    enabled = config.enabled;
                    let unknown = generation
                        .table
                        .groups
                        .iter()
                        .any(|g| g.state.status().inventory.is_none());
                    next = match last_start {
                        Some(s) if was_enabled && !unknown => s + config.interval,
                        _ => Instant::now(),
                    };
                }
            }
        }
        tracing::debug!("inventory poller stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_values_become_tidy_labels() {
        assert_eq!(enum_label(Some("Online")), "online");
        assert_eq!(enum_label(Some("restricted")), "restricted");
        assert_eq!(enum_label(None), "");
        assert_eq!(enum_label(Some("a b")), "other");
        assert_eq!(enum_label(Some(&"x".repeat(40))), "other");
    }
}
