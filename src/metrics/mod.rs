//! Everything `/metrics` shows (SPEC §6).
//!
//! Two sources make one exposition:
//! - [`Telemetry`]: the exporter's own counters and histograms (API requests,
//!   cycles, tokens, reloads, build info, `process_*`) in an owned
//!   `prometheus::Registry` — no global registry, so two exporters in one
//!   test process never share a counter.
//! - `exposition`: the per-target families and the `msfb_seats` /
//!   `msfb_product_info` aggregates, written straight from the target table
//!   at scrape time. With 100k targets, building one prometheus `Metric`
//!   object per series would cost more memory than the table itself; writing
//!   the text directly also means a target removed by a reload is simply not
//!   written any more.
//! - `snapshot`: what a scrape shows of every target, copied once and
//!   shared by the scrapes in progress, so that clients that stop reading
//!   cannot make the exporter hold one copy of the table each.
//! - `format`: which exposition format a scrape gets (text 0.0.4 or
//!   OpenMetrics 1.0.0, by the `Accept` header); both sources above write
//!   either.

pub mod exposition;
pub mod format;
mod persistence;
pub mod snapshot;

pub use persistence::PersistenceMetrics;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts,
    Registry,
};

use crate::targets::ErrorCode;

/// HELP suffix for every value that comes from the poller's cache.
pub(crate) const CACHED: &str = "Cached from the latest poll, not fetched at scrape time.";

/// `operation` label values of the API metrics.
pub mod operation {
    /// Get seat.
    pub const GET_SEAT: &str = "get_seat";
    /// The OAuth2 token endpoint.
    pub const TOKEN: &str = "token";
    /// Get seats: one page of a product's seat listing.
    pub const GET_SEATS: &str = "get_seats";
    /// Get Inventory: one page of the tenant's inventory.
    pub const GET_INVENTORY: &str = "get_inventory";
}

/// The exporter's own instruments. Cloning is cheap: every field is a handle
/// onto shared atomics inside the registry.
#[derive(Clone)]
pub struct Telemetry {
    registry: Registry,
    /// `msfb_api_requests_total{operation, code}`.
    pub api_requests: IntCounterVec,
    /// `msfb_api_request_duration_seconds{operation}`.
    pub api_duration: HistogramVec,
    /// `msfb_poll_cycles_total`.
    pub poll_cycles: IntCounter,
    /// `msfb_poll_cycle_duration_seconds`.
    pub poll_cycle_duration: Gauge,
    /// `msfb_poll_last_cycle_end_timestamp_seconds`.
    pub poll_last_cycle_end: Gauge,
    /// `msfb_poll_rate_limit_requests_per_second`: the pacing in force.
    pub effective_rate: Gauge,
    /// `msfb_oauth_token_requests_total`.
    pub token_requests: IntCounter,
    /// `msfb_oauth_token_request_failures_total{reason}`.
    pub token_failures: IntCounterVec,
    /// `msfb_oauth_token_expiry_timestamp_seconds`.
    pub token_expiry: Gauge,
    /// `msfb_oauth_credential_expiry_timestamp_seconds`: the client
    /// certificate's notAfter; a label-less vector so that the series is
    /// absent for credentials without an expiry.
    pub credential_expiry: GaugeVec,
    /// `msfb_inventory_poll_success`: whether the latest Get Inventory
    /// listing was complete. Label-less vectors so that the series is absent
    /// until the first poll (and with `[inventory] enabled = false`).
    pub inventory_success: GaugeVec,
    /// `msfb_inventory_last_success_timestamp_seconds`.
    pub inventory_last_success: GaugeVec,
    /// `msfb_inventory_poll_errors_total{code}`.
    pub inventory_errors: IntCounterVec,
    /// `msfb_seat_exporter_config_last_reload_successful`.
    pub reload_successful: Gauge,
    /// `msfb_seat_exporter_config_last_reload_success_timestamp_seconds`.
    pub reload_success_time: Gauge,
    /// `msfb_seat_exporter_shard_index`: this instance's shard (0 unsharded).
    pub shard_index: Gauge,
    /// `msfb_seat_exporter_shard_count`: shards of the job (1 unsharded).
    pub shard_count: Gauge,
    /// The state file's instruments (SPEC §13).
    pub persistence: PersistenceMetrics,
    /// Get seat's request series, looked up once (see [`SeriesCache`]).
    get_seat: Arc<SeriesCache>,
    /// When each series that appears with its first increment got it.
    created: Arc<Created>,
}

/// Unix seconds of the first increment of each series of the labelled
/// counters and histograms (`msfb_api_requests_total`,
/// `msfb_oauth_token_request_failures_total` …), for OpenMetrics
/// `_created` (SPEC §14). The `prometheus` crate keeps no creation time, so
/// each increment of such a series marks it here first. Keyed by family
/// and label pairs sorted by name, as the gathered series have them; the
/// label values are bounded sets (operations, codes, reasons), so this
/// stays a handful of entries.
#[derive(Default)]
struct Created {
    series: Mutex<HashMap<String, f64>>,
}

impl Created {
    fn key<'l>(family: &str, labels: impl Iterator<Item = (&'l str, &'l str)>) -> String {
        let mut pairs: Vec<(&str, &str)> = labels.collect();
        pairs.sort_unstable();
        let mut key = family.to_owned();
        for (name, value) in pairs {
            for part in ["\0", name, "=", value] {
                key.push_str(part);
            }
        }
        key
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, f64>> {
        // Only whole entries are inserted; a poisoned map is still valid.
        self.series.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records now as the creation time of the series, unless it has one.
    fn mark(&self, family: &str, names: &[&str], values: &[&str]) {
        let key = Created::key(family, names.iter().copied().zip(values.iter().copied()));
        self.lock().entry(key).or_insert_with(unix_now);
    }

    /// The creation time of a gathered series, if it was marked.
    fn of(&self, family: &str, m: &prometheus::proto::Metric) -> Option<f64> {
        let labels = m.get_label().iter().map(|p| (p.name(), p.value()));
        self.lock().get(&Created::key(family, labels)).copied()
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Label names of the labelled counters and histograms, as passed to
/// [`Created::mark`].
const API_LABELS: [&str; 2] = ["operation", "code"];
const API_DURATION_LABELS: [&str; 1] = ["operation"];
const TOKEN_FAILURE_LABELS: [&str; 1] = ["reason"];
const INVENTORY_ERROR_LABELS: [&str; 1] = ["code"];

/// The request series of one operation, each looked up in its vector the
/// first time it is used and kept: a Get seat check then counts its answer
/// with two atomic adds instead of two hashed label lookups and a formatted
/// status string. A series still appears only with its first observation.
struct SeriesCache {
    duration: OnceLock<Histogram>,
    /// Indexed by HTTP status (100–599).
    by_status: Box<[OnceLock<IntCounter>]>,
}

impl SeriesCache {
    fn new() -> SeriesCache {
        SeriesCache {
            duration: OnceLock::new(),
            by_status: (0..600).map(|_| OnceLock::new()).collect(),
        }
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    /// Creates every instrument in a fresh registry, with the process
    /// collector and build info.
    pub fn new() -> Telemetry {
        let t = Telemetry {
            api_requests: counter_vec(
                "msfb_api_requests_total",
                "Upstream responses by HTTP status, and transport failures by class.",
                &["operation", "code"],
            ),
            api_duration: api_duration(),
            poll_cycles: counter("msfb_poll_cycles_total", "Completed poll cycles."),
            poll_cycle_duration: gauge(
                "msfb_poll_cycle_duration_seconds",
                "Duration of the latest completed poll cycle.",
            ),
            poll_last_cycle_end: gauge(
                "msfb_poll_last_cycle_end_timestamp_seconds",
                "Unix time the latest poll cycle completed.",
            ),
            effective_rate: gauge(
                "msfb_poll_rate_limit_requests_per_second",
                "Upstream request rate the poller currently allows (lowered after 429 answers); 0 means unlimited.",
            ),
            token_requests: counter(
                "msfb_oauth_token_requests_total",
                "OAuth2 token requests made.",
            ),
            token_failures: counter_vec(
                "msfb_oauth_token_request_failures_total",
                "Failed OAuth2 token requests, by reason (OAuth error code, HTTP status, timeout, connect, body or decode).",
                &["reason"],
            ),
            token_expiry: gauge(
                "msfb_oauth_token_expiry_timestamp_seconds",
                "Unix time the OAuth2 token in use expires.",
            ),
            credential_expiry: gauge_vec(
                "msfb_oauth_credential_expiry_timestamp_seconds",
                "Unix time the client certificate in use expires (its notAfter); absent for credentials without an expiry.",
                &[],
            ),
            inventory_success: gauge_vec(
                "msfb_inventory_poll_success",
                "Whether the latest Get Inventory listing was complete (1) or failed (0).",
                &[],
            ),
            inventory_last_success: gauge_vec(
                "msfb_inventory_last_success_timestamp_seconds",
                "Unix time of the latest complete Get Inventory listing.",
                &[],
            ),
            inventory_errors: counter_vec(
                "msfb_inventory_poll_errors_total",
                "Failed Get Inventory listings, by HTTP status or failure class (code).",
                &["code"],
            ),
            reload_successful: gauge(
                "msfb_seat_exporter_config_last_reload_successful",
                "Whether the last configuration reload attempt succeeded.",
            ),
            reload_success_time: gauge(
                "msfb_seat_exporter_config_last_reload_success_timestamp_seconds",
                "Unix time of the last successful configuration load.",
            ),
            shard_index: gauge(
                "msfb_seat_exporter_shard_index",
                "This instance's shard of the configured targets (0 when unsharded).",
            ),
            shard_count: gauge(
                "msfb_seat_exporter_shard_count",
                "Shards the configured targets are split into (1 when unsharded); every instance of a job should agree.",
            ),
            persistence: PersistenceMetrics::new(),
            registry: Registry::new(),
            get_seat: Arc::new(SeriesCache::new()),
            created: Arc::default(),
        };
        t.shard_count.set(1.0);
        t.register();
        t
    }

    /// Registers every instrument, the build info and the process
    /// collector in the (fresh) registry.
    fn register(&self) {
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(self.api_requests.clone()),
            Box::new(self.api_duration.clone()),
            Box::new(self.poll_cycles.clone()),
            Box::new(self.poll_cycle_duration.clone()),
            Box::new(self.poll_last_cycle_end.clone()),
            Box::new(self.effective_rate.clone()),
            Box::new(self.token_requests.clone()),
            Box::new(self.token_failures.clone()),
            Box::new(self.token_expiry.clone()),
            Box::new(self.credential_expiry.clone()),
            Box::new(self.inventory_success.clone()),
            Box::new(self.inventory_last_success.clone()),
            Box::new(self.inventory_errors.clone()),
            Box::new(self.reload_successful.clone()),
            Box::new(self.reload_success_time.clone()),
            Box::new(self.shard_index.clone()),
            Box::new(self.shard_count.clone()),
            Box::new(self.persistence.restored_targets.clone()),
            Box::new(self.persistence.last_save_success.clone()),
            Box::new(self.persistence.save_failures.clone()),
            Box::new(build_info()),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ];
        for c in collectors {
            // Names are distinct constants and the registry is fresh.
            self.registry
                .register(c)
                .expect("each metric is registered once");
        }
    }

    /// Counts one upstream answer and its latency.
    pub fn observe_request(&self, operation: &str, code: &str, seconds: f64) {
        self.created
            .mark("msfb_api_requests_total", &API_LABELS, &[operation, code]);
        self.created.mark(
            "msfb_api_request_duration_seconds",
            &API_DURATION_LABELS,
            &[operation],
        );
        self.api_requests
            .with_label_values(&[operation, code])
            .inc();
        self.api_duration
            .with_label_values(&[operation])
            .observe(seconds);
    }

    /// Counts one Get seat answer and its latency, through the cached
    /// series (same series as [`Telemetry::observe_request`]).
    pub fn observe_get_seat(&self, code: ErrorCode, seconds: f64) {
        let cache = &self.get_seat;
        match code {
            ErrorCode::Status(status) if usize::from(status) < cache.by_status.len() => {
                cache.by_status[usize::from(status)]
                    .get_or_init(|| {
                        let labels = [operation::GET_SEAT, &code.label()];
                        self.created
                            .mark("msfb_api_requests_total", &API_LABELS, &labels);
                        self.api_requests
                            .with_label_values(&[operation::GET_SEAT, &code.label()])
                    })
                    .inc();
            }
            _ => {
                let labels = [operation::GET_SEAT, &code.label()];
                self.created
                    .mark("msfb_api_requests_total", &API_LABELS, &labels);
                self.api_requests.with_label_values(&labels).inc();
            }
        }
        cache
            .duration
            .get_or_init(|| {
                self.created.mark(
                    "msfb_api_request_duration_seconds",
                    &API_DURATION_LABELS,
                    &[operation::GET_SEAT],
                );
                self.api_duration.with_label_values(&[operation::GET_SEAT])
            })
            .observe(seconds);
    }

    /// Counts a failed token request (`msfb_oauth_token_request_failures_total`).
    pub fn count_token_failure(&self, reason: &str) {
        self.created.mark(
            "msfb_oauth_token_request_failures_total",
            &TOKEN_FAILURE_LABELS,
            &[reason],
        );
        self.token_failures.with_label_values(&[reason]).inc();
    }

    /// Counts a failed Get Inventory listing (`msfb_inventory_poll_errors_total`).
    pub fn count_inventory_error(&self, code: &str) {
        self.created.mark(
            "msfb_inventory_poll_errors_total",
            &INVENTORY_ERROR_LABELS,
            &[code],
        );
        self.inventory_errors.with_label_values(&[code]).inc();
    }

    /// Writes the registry's families in the format of `out`.
    pub fn encode_to(&self, out: &mut exposition::Out<'_>) {
        match out.format() {
            format::Format::Text => self.encode(out.text()),
            format::Format::OpenMetrics => {
                let families = self.registry.gather();
                let created =
                    |family: &str, m: &prometheus::proto::Metric| self.created.of(family, m);
                exposition::render_families(&families, &created, out);
            }
        }
    }

    /// Appends the registry's families in text format 0.0.4.
    pub fn encode(&self, out: &mut String) {
        let families = self.registry.gather();
        // Encoding into a String cannot fail for well-formed families.
        if let Err(e) = prometheus::TextEncoder::new().encode_utf8(&families, out) {
            tracing::error!(error = %e, "encoding self-metrics failed");
        }
    }
}

/// Why building a metric below cannot fail: its name, help and labels are
/// constants that satisfy the format.
const VALID: &str = "static metric definition is valid";

fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).expect(VALID)
}

fn gauge(name: &str, help: &str) -> Gauge {
    Gauge::new(name, help).expect(VALID)
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    GaugeVec::new(Opts::new(name, help), labels).expect(VALID)
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect(VALID)
}

/// `msfb_api_request_duration_seconds{operation}`.
fn api_duration() -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(
            "msfb_api_request_duration_seconds",
            "Latency of upstream requests, including reading the body.",
        )
        .buckets(vec![
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ]),
        &["operation"],
    )
    .expect(VALID)
}

/// `msfb_seat_exporter_build_info`, set to 1 for this build.
fn build_info() -> GaugeVec {
    let info = gauge_vec(
        "msfb_seat_exporter_build_info",
        "Build information of msfb_seat_exporter; the value is always 1.",
        &["version", "revision", "rustc_version"],
    );
    info.with_label_values(&[
        env!("CARGO_PKG_VERSION"),
        env!("MSFB_BUILD_REVISION"),
        env!("MSFB_RUSTC_VERSION"),
    ])
    .set(1.0);
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_get_seat_series_are_the_ordinary_ones() {
        let t = Telemetry::new();
        let mut text = String::new();
        t.encode(&mut text);
        assert!(
            !text.contains("operation=\"get_seat\""),
            "no series before use"
        );
        t.observe_request(operation::GET_SEAT, "200", 0.01);
        t.observe_get_seat(ErrorCode::Status(200), 0.01);
        t.observe_get_seat(ErrorCode::Status(200), 0.01);
        t.observe_get_seat(ErrorCode::Status(404), 0.01);
        t.observe_get_seat(ErrorCode::Timeout, 0.01);
        let mut text = String::new();
        t.encode(&mut text);
        for line in [
            "msfb_api_requests_total{code=\"200\",operation=\"get_seat\"} 3",
            "msfb_api_requests_total{code=\"404\",operation=\"get_seat\"} 1",
            "msfb_api_requests_total{code=\"timeout\",operation=\"get_seat\"} 1",
            "msfb_api_request_duration_seconds_count{operation=\"get_seat\"} 5",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }
}
