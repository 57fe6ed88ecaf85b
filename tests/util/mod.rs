//! Helpers for both test binaries: `tests/tests.rs` (quick, needs nothing
//! outside cargo) and `tests/contract/main.rs` (checks by outside programs).
//! Every helper lives here, in the module of its job, and never in a module
//! that holds tests: a test module reads as its tests, and a helper two
//! modules need has one home. A fixture only one module uses may stay
//! private to that module.
//!
//! Each binary uses part of this folder, hence `dead_code` and
//! `unused_imports` are allowed here (and only here).
#![allow(dead_code, unused_imports)]

/// The real binary against a fake Store, and its log lines.
pub mod binary;
/// The library's own log lines, captured in-process.
pub mod capture;
/// The daemon on a loopback port with a given `[web]`, and its memory.
pub mod daemon;
/// Credential fixtures: certificates, an exporter for an `[auth]` (SPEC §12).
pub mod entra;
/// Reading the exposition back: samples by name and labels.
pub mod exposition;
/// Flood clients and the probes that count what gets through.
pub mod flood;
/// A fake Store and an exporter driven through the real router.
pub mod harness;
/// The inventory fixtures and a scrape with every new family.
pub mod inventory;
/// Scrapes with Accept headers; the OpenMetrics scenario.
pub mod openmetrics;
/// The landing and status pages as a browser gets them.
pub mod pages;
/// The binary's process: its stderr lines, its resident memory, a refusal.
pub mod process;
/// Outside programs: promtool, systemd-analyze, PyYAML.
pub mod programs;
/// The binary restarted over one state file (persistence).
pub mod restart;
/// An exporter on a real loopback socket.
pub mod served;
/// Polling until something another task or process does has happened.
pub mod wait;

pub use capture::capture_info_lines;
pub use exposition::{Sample, Scrape};
pub use harness::{
    ALICE, BOB, CAROL, DAVE, Harness, LoadGate, P, S, fast_options, load_with_env, product,
    request, send, temp_dir, testdata, users, write_private,
};
pub use served::{Served, Setup};
pub use wait::{eventually, until_200};
