//! The state file's instruments (SPEC §13), apart from [`super::Telemetry`]'s
//! own list so that the persistence metrics are one unit: made and
//! registered together, set only by the daemon around a load or a save.

use prometheus::{Gauge, GaugeVec, IntCounter, Opts, Registry};

/// `msfb_seat_exporter_persistence_*`.
#[derive(Clone)]
pub struct PersistenceMetrics {
    /// `…_restored_targets`: targets that got their state from the file
    /// at start (0 without a file or with an unusable one).
    pub restored_targets: Gauge,
    /// `…_last_save_success_timestamp_seconds`: a label-less vector, so the
    /// series is absent until the first save (and without a file).
    pub last_save_success: GaugeVec,
    /// `…_save_failures_total`.
    pub save_failures: IntCounter,
}

impl PersistenceMetrics {
    /// Makes the instruments and registers them in `registry`.
    pub(super) fn register(registry: &Registry) -> PersistenceMetrics {
        let m = PersistenceMetrics {
            restored_targets: Gauge::new(
                "msfb_seat_exporter_persistence_restored_targets",
                "Targets whose seat state was restored from the state file at start.",
            )
            .expect("static metric definition is valid"),
            last_save_success: GaugeVec::new(
                Opts::new(
                    "msfb_seat_exporter_persistence_last_save_success_timestamp_seconds",
                    "Unix time the seat state was last saved to the state file.",
                ),
                &[],
            )
            .expect("static metric definition is valid"),
            save_failures: IntCounter::new(
                "msfb_seat_exporter_persistence_save_failures_total",
                "Saves of the state file that failed (full disk, read-only or missing directory).",
            )
            .expect("static metric definition is valid"),
        };
        let collectors: [Box<dyn prometheus::core::Collector>; 3] = [
            Box::new(m.restored_targets.clone()),
            Box::new(m.last_save_success.clone()),
            Box::new(m.save_failures.clone()),
        ];
        for c in collectors {
            // Distinct constant names in a registry made for one exporter.
            registry
                .register(c)
                .expect("each metric is registered once");
        }
        m
    }
}
