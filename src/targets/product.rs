//! Product-level state that changes without a reload: the latest Get
//! Inventory facts and the health of the seat listing (SPEC §11). It is
//! shared by `Arc` between the groups of every generation that has the
//! product, so a reload never loses it.

use std::sync::{Mutex, MutexGuard};

use super::{ErrorCode, InventoryView};

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
    /// Failed listings by `code`, each series created at its first failure
    /// (the Unix seconds of which are the third field, OpenMetrics
    /// `_created`).
    pub errors: Vec<(ErrorCode, u64, f64)>,
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
        match self.errors.iter_mut().find(|(c, _, _)| *c == code) {
            Some((_, n, _)) => *n += 1,
            None => {
                self.errors.push((code, 1, now));
                self.errors.sort_by_key(|(c, _, _)| *c);
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
    /// Transitions of any of its targets from active to not active: the
    /// per-product `msfb_seat_lost_total` of the compact profile. Counted
    /// as they happen rather than summed over the targets, so that it never
    /// goes down when a reload or discovery drops a target that had lost a
    /// seat (Prometheus would read that as a reset and the sum's remainder
    /// as new losses).
    pub seats_lost: u64,
}

/// Product-level state, shared by the groups of every generation that has
/// the product, so a reload never loses it.
#[derive(Debug, Default)]
pub struct ProductState {
    status: Mutex<ProductStatus>,
}

impl ProductState {
    /// Locks the status for a short read or write (poisoning ignored, as
    /// for [`Target::state`](super::Target::state)).
    pub fn status(&self) -> MutexGuard<'_, ProductStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }
}
