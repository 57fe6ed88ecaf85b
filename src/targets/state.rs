//! One target's state and what a check does to it: the last conclusive
//! answer, the latest check, the loss and error counters (SPEC §5, §6).
//! [`TargetState::record`] is the one place that decides what an outcome
//! changes, so the poller, the listing and discovery all apply SPEC §5 alike.

use std::sync::{Mutex, MutexGuard};

use super::{ErrorCode, Outcome, Reason};

/// The last conclusive answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seat {
    /// 1 or 0 in `msfb_seat_active`.
    pub active: bool,
    /// `msfb_seat_assigned_timestamp_seconds`, when active and known.
    pub assigned_at: Option<f64>,
}

/// One `msfb_seat_check_errors_total` series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErrorCount {
    /// `code` label.
    pub code: ErrorCode,
    /// `reason` label.
    pub reason: Reason,
    /// Counter value.
    pub count: u64,
    /// Unix seconds of the first increment (OpenMetrics `_created`).
    pub created: f64,
}

/// The most recent failed or negative check, for the status page.
#[derive(Debug, Clone, PartialEq)]
pub struct LastError {
    /// Unix seconds.
    pub at: f64,
    /// `code` label.
    pub code: ErrorCode,
    /// `reason` label.
    pub reason: Reason,
    /// Human description.
    pub detail: String,
}

/// Everything known about one target.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetState {
    /// Last conclusive answer; `None` until there is one.
    pub seat: Option<Seat>,
    /// Unix seconds of the latest check, conclusive or not.
    pub last_check_at: Option<f64>,
    /// Whether the latest check was conclusive.
    pub last_check_ok: bool,
    /// Unix seconds of the latest conclusive check.
    pub last_success_at: Option<f64>,
    /// Transitions from active to not active.
    pub lost_total: u64,
    /// Error series, each created at its first increment. Bounded by the
    /// number of distinct (code, reason) pairs, which is small and closed.
    pub errors: Vec<ErrorCount>,
    /// Latest failure, if any.
    pub last_error: Option<LastError>,
}

/// A state change worth a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing changed.
    None,
    /// First conclusive answer.
    First {
        /// The state found.
        active: bool,
    },
    /// 1 → 0.
    Lost,
    /// 0 → 1.
    Assigned,
}

impl TargetState {
    /// Applies one check's outcome at time `now` (Unix seconds).
    pub fn record(&mut self, outcome: &Outcome, now: f64) -> Transition {
        self.last_check_at = Some(now);
        self.last_check_ok = outcome.is_conclusive();
        match outcome {
            Outcome::Conclusive {
                active,
                assigned_at,
                negative,
            } => {
                let before = self.seat.map(|s| s.active);
                self.seat = Some(Seat {
                    active: *active,
                    assigned_at: if *active { *assigned_at } else { None },
                });
                self.last_success_at = Some(now);
                if let Some((code, reason)) = negative {
                    self.count_error(*code, *reason, now, "not found".to_owned());
                }
                match (before, *active) {
                    (None, a) => Transition::First { active: a },
                    (Some(true), false) => {
                        self.lost_total += 1;
                        Transition::Lost
                    }
                    (Some(false), true) => Transition::Assigned,
                    _ => Transition::None,
                }
            }
            Outcome::Inconclusive(why) => {
                self.count_error(why.code, why.reason, now, why.detail.clone());
                Transition::None
            }
        }
    }

    fn count_error(&mut self, code: ErrorCode, reason: Reason, now: f64, detail: String) {
        match self
            .errors
            .iter_mut()
            .find(|e| e.code == code && e.reason == reason)
        {
            Some(e) => e.count += 1,
            None => {
                self.errors.push(ErrorCount {
                    code,
                    reason,
                    count: 1,
                    created: now,
                });
                self.errors.sort_by_key(|e| (e.code, e.reason));
            }
        }
        self.last_error = Some(LastError {
            at: now,
            code,
            reason,
            detail: clip(detail),
        });
    }
}

/// Longest error detail kept per target: one is kept for every target, so
/// a detail that quoted an upstream body must not cost a megabyte each.
const MAX_DETAIL_BYTES: usize = 512;

/// `detail` cut to [`MAX_DETAIL_BYTES`] at a character boundary.
fn clip(mut detail: String) -> String {
    if detail.len() > MAX_DETAIL_BYTES {
        let mut end = MAX_DETAIL_BYTES;
        while !detail.is_char_boundary(end) {
            end -= 1;
        }
        detail.truncate(end);
        detail.push('…');
    }
    detail
}

/// One (product, SKU, user).
#[derive(Debug)]
pub struct Target {
    pub(super) upn: Box<str>,
    /// The hashed label when `user_label = "hash"`.
    pub(super) hashed: Option<Box<str>>,
    state: Mutex<TargetState>,
}

impl Target {
    pub(super) fn new(upn: &str, hashed: Option<Box<str>>, state: TargetState) -> Target {
        Target {
            upn: upn.into(),
            hashed,
            state: Mutex::new(state),
        }
    }

    /// The UPN: used for the request, never for output.
    pub fn upn(&self) -> &str {
        &self.upn
    }

    /// What identifies the user in labels, logs and pages.
    pub fn user_label(&self) -> &str {
        self.hashed.as_deref().unwrap_or(&self.upn)
    }

    /// Locks the state for a short read or write. A poisoned lock (a panic
    /// while holding it, which no code path here can cause) still yields the
    /// data: the state is plain values, valid after any partial update.
    pub fn state(&self) -> MutexGuard<'_, TargetState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::targets::Inconclusive;

    /// A conclusive answer, with a date when active (shared with the
    /// discovery tests).
    pub(in crate::targets) fn conclusive(active: bool) -> Outcome {
        Outcome::Conclusive {
            active,
            assigned_at: Some(5.0),
            negative: None,
        }
    }

    fn failed(code: ErrorCode) -> Outcome {
        Outcome::Inconclusive(Inconclusive {
            code,
            reason: Reason::None,
            detail: "x".into(),
        })
    }

    #[test]
    fn a_long_error_detail_is_clipped_at_a_character() {
        let mut s = TargetState::default();
        s.record(
            &Outcome::Inconclusive(Inconclusive {
                code: ErrorCode::Decode,
                reason: Reason::None,
                detail: "é".repeat(100_000),
            }),
            1.0,
        );
        let detail = s.last_error.unwrap().detail;
        assert!(detail.len() <= MAX_DETAIL_BYTES + '…'.len_utf8());
        assert!(detail.starts_with("éé") && detail.ends_with('…'));
    }

    #[test]
    fn inconclusive_answers_keep_the_last_conclusive_seat() {
        let mut s = TargetState::default();
        assert_eq!(
            s.record(&conclusive(true), 1.0),
            Transition::First { active: true }
        );
        for code in [
            ErrorCode::Status(500),
            ErrorCode::Timeout,
            ErrorCode::Decode,
        ] {
            assert_eq!(s.record(&failed(code), 2.0), Transition::None);
            assert_eq!(s.seat.map(|s| s.active), Some(true));
            assert!(!s.last_check_ok);
        }
        assert_eq!(s.last_success_at, Some(1.0));
        assert_eq!(s.lost_total, 0);
        assert_eq!(s.errors.len(), 3);
    }

    #[test]
    fn losses_are_counted_once_per_transition() {
        let mut s = TargetState::default();
        s.record(&conclusive(true), 1.0);
        assert_eq!(s.record(&conclusive(false), 2.0), Transition::Lost);
        assert_eq!(s.record(&conclusive(false), 3.0), Transition::None);
        assert_eq!(s.record(&conclusive(true), 4.0), Transition::Assigned);
        assert_eq!(s.record(&conclusive(false), 5.0), Transition::Lost);
        assert_eq!(s.lost_total, 2);
        // A first answer of "no seat" is not a loss.
        let mut fresh = TargetState::default();
        fresh.record(&conclusive(false), 1.0);
        assert_eq!(fresh.lost_total, 0);
    }

    #[test]
    fn error_series_are_one_per_code_and_reason() {
        let mut s = TargetState::default();
        for _ in 0..1000 {
            s.record(&failed(ErrorCode::Status(429)), 1.0);
            s.record(
                &Outcome::Conclusive {
                    active: false,
                    assigned_at: None,
                    negative: Some((ErrorCode::Status(404), Reason::Seat)),
                },
                1.0,
            );
        }
        assert_eq!(s.errors.len(), 2);
        assert!(s.errors.iter().all(|e| e.count == 1000));
    }
}
