//! Black-box tests: one integration binary (one link instead of many), one
//! module per area. Everything goes through real HTTP to the crate's fake
//! Store API and through the real router. This binary needs nothing outside
//! cargo (`cargo test --test tests`); checks by outside programs (promtool,
//! prometheus, systemd-analyze, node, PyYAML) are the second binary,
//! `tests/contract/`. Helpers live in `tests/util/`, shared by both.

mod util;

// Configuration: every rejected case by its exact message, the example file.
mod config;
// What each upstream answer does to the metrics (SPEC §4, §5).
mod checks;
// The exposition as a whole against a golden file.
mod scrape;
// Metric profiles: compact per-product families, switching on reload.
mod profile;
// The fault-injection suite: no false loss under any upstream failure.
mod faults;
// Reload: bad files change nothing, good ones swap atomically.
mod reload;
// The daemon under faults: SIGTERM during slow checks, no secret in any output.
mod lifecycle;
// Soak (ignored by default): memory and series flat under random faults.
mod soak;
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
// The landing and status pages: escaping, offline, CSP, JSON, the script.
mod pages;
// TLS and basic auth.
mod security;
// The binary's log lines in both formats; hashed users in logs and pages.
mod logs;
// user_label = "hash": labels and pages.
mod privacy;
// Scale-out: shards over one config cover every target exactly once.
mod sharding;
// The documentation: links and anchors, the README as a front door.
mod docs;
// Entra ID credentials, the v2 endpoint, proxies and CAs (SPEC §12).
mod credentials;
// OpenMetrics by content negotiation, gzip, shard self-metrics.
mod openmetrics;
// --web.config.file: mTLS per client_auth_type, TLS versions, headers, reload.
mod webconfig;
// /status under 40 stalled readers at 100k targets: the daemon's memory.
mod status_load;
// Hostile peers, files: pipes, devices and directories, the reload
// deadline, secrets others can read (SPEC §17).
mod hostile;
// Hostile peers, HTTP: idle and slowloris floods, password guessing,
// stalled readers, against the real daemon (SPEC §17).
mod flood;
// Hostile peers, the Store: bare 404s, a state named twice, pages without
// a seat list, token lifetimes in every number form (SPEC §17).
mod answers;
// Persistence: restarts, kill -9, bad state files (SPEC §13).
mod persistence;
