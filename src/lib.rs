//! msfb_seat_exporter: a Prometheus exporter that checks, on an interval,
//! whether each configured user still holds an active seat for each
//! configured Microsoft Store for Business product, and serves the answers
//! on `/metrics` (see `SPEC.md` for the contract).
//!
//! # Layers
//!
//! The modules form layers, lowest first. A module uses only the modules
//! listed before it, never one after it, so there is no cycle; the unit
//! test in `layering` reads every `crate::` path in `src/` and fails on an
//! import that runs upwards, or on a module missing from this list.
//!
//! 1. [`config`]: read and validate the TOML file into a typed
//!    [`config::Config`]; every error names file, line and key.
//! 2. [`targets`]: the target table — one entry per (product, SKU, user)
//!    with its last conclusive answer and counters, the single source of
//!    truth for every page — and the vocabulary everything above speaks:
//!    `Outcome` with its `code`/`reason` labels, the inventory facts.
//! 3. [`metrics`]: the exposition, written from the table at scrape time,
//!    plus the exporter's own instruments in an owned registry.
//! 4. [`persistence`]: the state file — the table's seat state saved
//!    crash-safely after each cycle and at shutdown, and restored at start
//!    (SPEC §13); it knows only the table and the configuration.
//! 5. [`store`]: the Store API — one HTTP exchange for every request, the
//!    token cache, Get seat, the listing pages, every wire type.
//! 6. [`poller`]: one cycle over the table (planning, then a worker pool)
//!    with concurrency and rate caps; the retry rules of SPEC §5 for every
//!    request (`request`), what an answer means (`check`), list mode and
//!    discovery (`listing`), the Get Inventory poll (`inventory`).
//! 7. [`exporter`]: the running whole — current configuration generation,
//!    the poll and inventory loops, reload, readiness, loading and saving
//!    the state file.
//! 8. [`web`]: the HTTP endpoints, the human pages, the accept loop, TLS
//!    with certificate reload, and basic auth; it sees the exporter only as
//!    a `web::Site`.
//! 9. [`daemon`]: starts and stops the loops and the endpoints together,
//!    and makes the exporter a `web::Site`.
//! 10. [`fake_store`]: a fake Store API on a loopback port, for tests,
//!     `--demo` and benchmarks.
//! 11. [`demo`]: the `--demo` scenario.
//!
//! Data flows config → store → poller → targets → metrics → web: the
//! layers are ordered by what uses what, so the shared vocabulary
//! (`targets`) and the instruments (`metrics`) sit below the client that
//! produces answers.
//!
//! The binary (`src/bin/msfb_seat_exporter/`) parses the command line, sets
//! up logging and signals, and calls into this library.

pub mod config;
pub mod daemon;
pub mod demo;
pub mod exporter;
pub mod fake_store;
pub mod metrics;
pub mod persistence;
pub mod poller;
pub mod store;
pub mod targets;
pub mod web;

#[cfg(test)]
mod layering;

pub use exporter::Exporter;
