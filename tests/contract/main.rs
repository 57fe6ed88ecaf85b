//! Contract tests: the shipped artifacts and the exposition checked by the
//! outside programs that consume them (promtool, prometheus,
//! systemd-analyze, node, python3 with PyYAML), and what needs root (a
//! tmpfs mounted to be filled). A second test binary, so that
//! `cargo test --test tests` stays quick and needs nothing outside cargo;
//! `cargo test --all-targets` (`scripts/test.sh`, which installs the
//! programs from Debian; CI runs as root) runs both. A missing program or
//! privilege fails, never skips.

#[path = "../util/mod.rs"]
mod util;

// contrib/prometheus/: alert rules, dashboard and a real Prometheus
// (promtool, prometheus); every family passes `promtool check metrics`.
mod prometheus;
// systemd/: the unit and the template, by systemd-analyze.
mod systemd;
// contrib/kubernetes/: the StatefulSet, Service and scrape config (PyYAML).
mod kubernetes;
// The status page's script, run in Node.
mod pages;
// The README's client certificate, made by openssl (SPEC §12).
mod credentials;
// The status page in headless Chromium at three widths (screenshots kept).
mod browser;
// OpenMetrics through prometheus_client's strict parser (test venv).
mod openmetrics;
// A full disk under the state file: a real tmpfs, filled (needs root).
mod disk;
// The alert rules are portable: severities, runbook links, job matchers.
mod rules;
