//! msfb_seat_exporter: a Prometheus exporter that checks, on an interval,
//! whether each configured user still holds an active seat for each
//! configured Microsoft Store for Business product, and serves the answers
//! on `/metrics` (see `SPEC.md` for the contract).
//!
//! # Layout
//!
//! Data flows top to bottom:
//!
//! - [`config`]: read and validate the TOML file into a typed [`config::Config`];
//!   every error names file, line and key.
//! - [`targets`]: the target table — one entry per (product, SKU, user) with
//!   its last conclusive answer and counters; the single source of truth for
//!   every page.
//! - [`store`]: the Store API — OAuth2 token cache, one Get seat request,
//!   tolerant decoding, classification of every answer.
//! - [`poller`]: one cycle over the table with concurrency and rate caps and
//!   the retry rules of SPEC §5; list-mode products are checked by paging
//!   through Get seats, with `users = "all"` discovery (SPEC §11).
//! - [`inventory`]: seat capacity from Get Inventory on its own schedule.
//! - [`exporter`]: the running whole — current configuration generation,
//!   poll loop, reload, readiness.
//! - [`metrics`]: the exposition, written from the table at scrape time, plus
//!   the exporter's own instruments in an owned registry.
//! - [`web`]: the HTTP endpoints, the human pages, the accept loop, TLS with
//!   certificate reload, and basic auth.
//! - [`fake_store`]: a fake Store API on a loopback port, for tests, `--demo`
//!   and benchmarks.
//! - [`demo`]: the `--demo` scenario.
//!
//! The binary (`src/bin/msfb_seat_exporter/`) parses the command line, sets
//! up logging and signals, and calls into this library.

pub mod config;
pub mod demo;
pub mod exporter;
pub mod fake_store;
pub mod inventory;
pub mod metrics;
pub mod persistence;
pub mod poller;
pub mod store;
pub mod targets;
pub mod web;

pub use exporter::Exporter;
