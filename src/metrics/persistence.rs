//! The state file's instruments (SPEC §13), apart from [`super::Telemetry`]'s
//! own list so that the persistence metrics are one unit, set only by the
//! exporter around a load or a save.

use prometheus::{Gauge, GaugeVec, IntCounter};

use super::{VALID, gauge, gauge_vec};

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
    /// Makes the instruments (`Telemetry` registers them).
    pub(super) fn new() -> PersistenceMetrics {
        PersistenceMetrics {
            restored_targets: gauge(
                "msfb_seat_exporter_persistence_restored_targets",
                "Targets whose seat state was restored from the state file at start.",
            ),
            last_save_success: gauge_vec(
                "msfb_seat_exporter_persistence_last_save_success_timestamp_seconds",
                "Unix time the seat state was last saved to the state file.",
                &[],
            ),
            save_failures: IntCounter::new(
                "msfb_seat_exporter_persistence_save_failures_total",
                "Saves of the state file that failed (full disk, read-only or missing directory).",
            )
            .expect(VALID),
        }
    }
}
