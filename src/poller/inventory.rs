//! Seat capacity from Get Inventory (SPEC §11): on its own schedule
//! (`[inventory] interval`, default 1 h — capacity changes when someone buys
//! seats, not every few minutes), page through the tenant's inventory and
//! keep, for each configured product, what the Store says about it: seat
//! capacity, available seats, licence type, distribution policy, status.
//!
//! The facts live in each product group's [`ProductState`](crate::targets::ProductState)
//! (`targets::inventory`). When to poll is the exporter's business
//! (`exporter::Exporter::run_inventory`); this module only knows how.
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

use tokio_util::sync::CancellationToken;

use super::listing::{ListingEnd, fetch_all};
use super::request::CheckContext;
use super::{Generation, unix_now};
use crate::metrics::Telemetry;
use crate::store::{InventoryEntry, InventoryListing};
use crate::targets::{ErrorCode, InventoryFacts, InventoryView, enum_label};

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
type Key = (String, String);

fn key(product_id: &str, sku_id: &str) -> Key {
    (product_id.to_uppercase(), sku_id.to_uppercase())
}

/// An inventory entry as exported.
fn facts(e: &InventoryEntry) -> InventoryFacts {
    InventoryFacts {
        seat_capacity: e.seat_capacity,
        available_seats: e.available_seats,
        license_type: enum_label(e.license_type.as_deref()),
        distribution_policy: enum_label(e.distribution_policy.as_deref()),
        status: enum_label(e.status.as_deref()),
    }
}

/// Polls Get Inventory once through `ctx` and updates the products of
/// `generation`. Returns `None` if `cancel` fired first.
pub async fn poll(
    generation: &Generation,
    ctx: &CheckContext<'_>,
    telemetry: &Telemetry,
    cancel: &CancellationToken,
) -> Option<InventoryReport> {
    let wanted: HashSet<Key> = generation
        .table
        .groups
        .iter()
        .map(|g| key(&g.product.product_id, &g.product.sku_id))
        .collect();
    let mut found: HashMap<Key, InventoryFacts> = HashMap::new();
    let listing = fetch_all(
        ctx,
        &InventoryListing,
        generation.config.inventory.max_pages,
        |page| collect(&wanted, &mut found, &page.entries),
    );
    let end = tokio::select! {
        _ = cancel.cancelled() => return None,
        end = listing => end,
    };
    Some(match end {
        ListingEnd::Complete { pages } => apply(generation, telemetry, &found, pages),
        // Get Inventory has no item to be missing; a 404 is just a failure.
        ListingEnd::NotFound { .. } => failed(
            telemetry,
            ErrorCode::Status(404),
            "Get Inventory answered 404",
            0,
        ),
        ListingEnd::Failed { pages, why } => failed(telemetry, why.code, &why.detail, pages),
    })
}

/// Keeps the entries of configured products from one page.
fn collect(
    wanted: &HashSet<Key>,
    found: &mut HashMap<Key, InventoryFacts>,
    page: &[InventoryEntry],
) {
    for entry in page {
        let k = key(&entry.product_id, &entry.sku_id);
        if !wanted.contains(&k) {
            continue;
        }
        let facts = facts(entry);
        // Listed twice (an old removed entry beside the live one): the
        // active entry is the one that says something.
        match found.get(&k) {
            Some(old) if old.is_active() && !facts.is_active() => {}
            _ => {
                found.insert(k, facts);
            }
        }
    }
}

/// A complete inventory: every configured product is listed or missing.
fn apply(
    generation: &Generation,
    t: &Telemetry,
    found: &HashMap<Key, InventoryFacts>,
    pages: u32,
) -> InventoryReport {
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
        .set(unix_now());
    if missing > 0 {
        tracing::warn!(
            missing,
            "configured products missing from the Store inventory"
        );
    }
    tracing::debug!(pages, found = found.len(), missing, "inventory polled");
    InventoryReport {
        complete: true,
        pages,
        found: found.len(),
        missing,
    }
}

/// An incomplete inventory: counted, and the last complete one stays.
fn failed(t: &Telemetry, code: ErrorCode, detail: &str, pages: u32) -> InventoryReport {
    t.inventory_success.with_label_values::<&str>(&[]).set(0.0);
    t.count_inventory_error(&code.label());
    tracing::warn!(code = %code.label(), error = %detail,
        "inventory poll failed; keeping the last complete inventory");
    InventoryReport {
        complete: false,
        pages,
        found: 0,
        missing: 0,
    }
}
