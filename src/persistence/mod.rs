//! Nothing forgotten across restarts (SPEC §13): the seat state saved to
//! `[persistence] file` after every completed cycle and at shutdown, and
//! put back into the target table at start, before the listener opens.
//!
//! Without it, a restart forgets every seat: at 100k targets the first
//! cycle takes hours, `msfb_seat_active` is absent meanwhile, a seat lost
//! while the exporter was down reads as unknown → 0 (not a loss), and a
//! discovered seat lost around the restart is never seen again. With it,
//! restored values are exported at once and the first check compares
//! against them, so such a loss is counted like any other.
//!
//! - `format`: the bytes (JSON Lines with a version and a checksum);
//! - `file`: crash-safe replace, read, move aside;
//! - `table`: what goes from the target table into the file and back.
//!
//! What is saved per target: the last conclusive seat, its time,
//! `dateAssigned`, `msfb_seat_lost_total`, whether the latest check was
//! conclusive, and for discovered seats the time they were first seen gone.
//! With `user_label = "hash"` a target is saved by its hashed label, so the
//! file holds no UPN; discovered targets restored that way are matched to
//! listed seats by hashing each new UPN until all are found.

mod file;
mod format;
mod table;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::config::Config;
use crate::targets::TargetTable;

pub use format::DecodeError;
pub use table::{Applied, Mismatch};

/// What a load at start found.
#[derive(Debug)]
pub enum Loaded {
    /// No file: a first start.
    Missing,
    /// Restored (the counts say how much).
    Restored(Applied),
    /// A good file whose ids this configuration cannot match; nothing was
    /// restored and the next save replaces it.
    NotApplicable(Mismatch),
    /// Unreadable, truncated, corrupt or from a newer exporter: moved aside
    /// (or left, if even that failed), nothing restored.
    Unusable {
        /// Why.
        error: LoadError,
        /// Where it went.
        moved_to: io::Result<PathBuf>,
    },
}

impl Loaded {
    /// Targets that got their saved state.
    pub fn restored(&self) -> usize {
        match self {
            Loaded::Restored(a) => a.restored,
            _ => 0,
        }
    }
}

/// Why a file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// It could not be read.
    #[error("cannot read it: {0}")]
    Unreadable(#[from] io::Error),
    /// Its contents are not a complete state file of this version.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// What a save did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaveReport {
    /// Targets written.
    pub targets: usize,
    /// File size.
    pub bytes: u64,
    /// Wall time, including the fsyncs.
    pub duration: Duration,
    /// CPU time of the thread that saved: the save's own cost, without the
    /// waits for the disk (`scripts/bench.sh` sets it against a cycle's).
    pub cpu: Duration,
}

/// CPU time the calling thread has used so far. A save runs on one thread
/// from start to end, so the difference around it is the save's CPU.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    let nanos = u32::try_from(t.tv_nsec).unwrap_or(0);
    Duration::new(u64::try_from(t.tv_sec).unwrap_or(0), nanos)
}

/// Current Unix time in seconds (the poller has its own; this layer sits
/// below it).
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Reads `path` and restores what it holds into `table`, which must be
/// freshly built (no check yet). An unusable file is moved aside to
/// `FILE.corrupt` and logged at warn; nothing in the table changes then.
pub fn load(path: &Path, table: &TargetTable, config: &Config) -> Loaded {
    let decoded = match file::read(path) {
        Ok(None) => return Loaded::Missing,
        Ok(Some(bytes)) => format::decode(&bytes).map_err(LoadError::from),
        // Not a regular file (a pipe, a device, a directory put there since
        // the configuration was checked): left where it is, as it is not
        // ours to move; saves fail until it is gone.
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
            return Loaded::Unusable {
                error: LoadError::from(e),
                moved_to: Err(io::Error::other("only a regular file is moved aside")),
            };
        }
        Err(e) => Err(LoadError::from(e)),
    };
    match decoded {
        Ok(d) => {
            let now = (unix_now(), tokio::time::Instant::now());
            match table::apply(d, table, config, now.0, now.1) {
                Ok(a) => Loaded::Restored(a),
                Err(m) => Loaded::NotApplicable(m),
            }
        }
        Err(error) => Loaded::Unusable {
            error,
            moved_to: file::move_aside(path),
        },
    }
}

/// Logs what [`load`] found: info for a restore or a first start, warn for
/// a file that could not be used.
pub fn log_loaded(path: &Path, loaded: &Loaded) {
    let file = path.display();
    match loaded {
        Loaded::Missing => tracing::info!(%file, "no saved seat state; first start"),
        Loaded::Restored(a) => tracing::info!(
            %file, restored = a.restored, dropped = a.dropped, "saved seat state restored"
        ),
        Loaded::NotApplicable(m) => tracing::warn!(
            %file, error = %m, "saved seat state not restored; starting empty"
        ),
        Loaded::Unusable { error, moved_to } => match moved_to {
            Ok(to) => tracing::warn!(
                %file, error = %error, moved_to = %to.display(),
                "saved seat state unusable; moved aside, starting empty"
            ),
            Err(e) => tracing::warn!(
                %file, error = %error, move_error = %e,
                "saved seat state unusable and cannot be moved aside; starting empty"
            ),
        },
    }
}

/// Saves tables to the state file, one save at a time (a save at the end
/// of a cycle and the one at shutdown may overlap; both write the same
/// temporary file).
#[derive(Debug, Default)]
pub struct Saver {
    /// Held for the whole save, on a blocking thread: a std mutex, as no
    /// `.await` happens under it.
    lock: Mutex<()>,
}

impl Saver {
    /// Writes `table` to `path` crash-safely (see `file`). Blocks for the
    /// write and the fsyncs: call it off the async workers.
    ///
    /// # Errors
    /// Any I/O error; the previous file is then untouched.
    /// `clean` marks the save at shutdown, after the last check (see
    /// `format::Header::clean`).
    pub fn save(
        &self,
        path: &Path,
        table: &TargetTable,
        config: &Config,
        clean: bool,
    ) -> io::Result<SaveReport> {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let started = Instant::now();
        let cpu_before = thread_cpu();
        let now = (unix_now(), tokio::time::Instant::now());
        let mut targets = 0;
        let bytes = file::replace(path, |w| {
            targets = table::write(w, table, config, clean, now.0, now.1)?;
            Ok(())
        })?;
        Ok(SaveReport {
            targets,
            bytes,
            duration: started.elapsed(),
            cpu: thread_cpu().saturating_sub(cpu_before),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn thread_cpu_counts_this_threads_work() {
        let before = super::thread_cpu();
        let mut x = 0u64;
        for i in 0..1_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(std::hint::black_box(i));
        }
        std::hint::black_box(x);
        assert!(super::thread_cpu() > before);
    }
}
