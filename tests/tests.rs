//! Black-box tests: one integration binary (one link instead of many), one
//! module per area. Everything goes through real HTTP to the crate's fake
//! Store API and through the real router.

#[macro_use]
mod util;

// Configuration: every rejected case by its exact message, the example file.
mod config;
// What each upstream answer does to the metrics (SPEC §4, §5).
mod checks;
// The exposition as a whole against a golden file.
mod scrape;
// The fault-injection suite: no false loss under any upstream failure.
mod faults;
// Reload: bad files change nothing, good ones swap atomically.
mod reload;
// The binary: --config.check, --once, exit codes.
mod cli;
// HTTP endpoints other than the metrics.
mod web;
// List mode: paging, identical metrics, no false loss (SPEC §11).
mod listing;
// Discovery: users = "all", lost seats, forget_after (SPEC §11).
mod discovery;
// Get Inventory: capacity gauges, removed and missing products (SPEC §11).
mod inventory;
