//! One check of one target: SPEC §5 as code. Each upstream answer is
//! classified into a [`Verdict`], and the loop in [`check`] decides whether to
//! retry (transient failures, with backoff), refresh the token and retry once
//! (401), or stop.
//!
//! Only a 2xx with SeatDetails or a 404 is conclusive: nothing else can move
//! `msfb_seat_active`, which is how an outage never looks like a lost seat.

use std::time::Duration;

use crate::store::{Answer, ErrorCode, Failure, Reason, SeatState, StoreClient, TokenSource};
use crate::targets::Outcome;

use super::pacer::Pacer;

/// How transient failures are retried within a cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// `store.max_retries`.
    pub max_retries: u32,
    /// First backoff ceiling; doubles per retry (full jitter below it).
    pub base: Duration,
    /// Largest backoff ceiling without `Retry-After`.
    pub cap: Duration,
}

impl RetryPolicy {
    /// Defaults for `max_retries`: 1 s doubling, capped at 30 s.
    pub fn new(max_retries: u32) -> RetryPolicy {
        RetryPolicy {
            max_retries,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(30),
        }
    }

    /// The wait before retry number `retry` (0-based): the Store's
    /// `Retry-After` when it gave one (already capped at 60 s), else "full
    /// jitter" — uniform in `[0, min(cap, base·2^retry)]` — which spreads
    /// retries of many targets instead of synchronising them.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(d) = retry_after {
            return d;
        }
        let ceiling = self
            .base
            .saturating_mul(1u32 << retry.min(16))
            .min(self.cap);
        ceiling.mul_f64(rand::random_range(0.0..=1.0))
    }
}

/// What to do with one upstream answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Stop: this is the outcome.
    Final(Outcome),
    /// 401: refresh the token and try once more; this is the outcome if the
    /// second attempt is also a 401.
    Unauthorized(Outcome),
    /// Worth retrying within the cycle.
    Transient {
        /// The outcome if no retry is left.
        outcome: Outcome,
        /// `Retry-After`, if sent.
        retry_after: Option<Duration>,
        /// A 429: the pacer should slow down.
        throttled: bool,
    },
}

fn inconclusive(failure: Failure) -> Outcome {
    let reason = if failure.code == ErrorCode::Status(409) {
        Reason::NotOnline
    } else {
        Reason::None
    };
    Outcome::Inconclusive {
        code: failure.code,
        reason,
        detail: failure.detail,
    }
}

/// SPEC §5's table.
pub fn classify(answer: Answer) -> Verdict {
    match answer {
        Answer::Seat(seat) => {
            let active = seat.state == SeatState::Active;
            Verdict::Final(Outcome::Conclusive {
                active,
                assigned_at: seat.date_assigned.filter(|_| active),
                negative: None,
            })
        }
        Answer::NotFound(item) => Verdict::Final(Outcome::Conclusive {
            active: false,
            assigned_at: None,
            negative: Some((ErrorCode::Status(404), Reason::from(item))),
        }),
        Answer::Failed(f) => match f.code {
            ErrorCode::Status(401) => Verdict::Unauthorized(inconclusive(f)),
            ErrorCode::Status(429) => Verdict::Transient {
                retry_after: f.retry_after,
                throttled: true,
                outcome: inconclusive(f),
            },
            ErrorCode::Status(500..=599)
            | ErrorCode::Timeout
            | ErrorCode::Connect
            | ErrorCode::Body => Verdict::Transient {
                retry_after: f.retry_after,
                throttled: false,
                outcome: inconclusive(f),
            },
            // 400 (docs: Retry No), 409, other statuses, decode errors.
            _ => Verdict::Final(inconclusive(f)),
        },
    }
}

/// Everything a check needs, borrowed from the current generation.
pub struct CheckContext<'a> {
    /// HTTP client.
    pub client: &'a StoreClient,
    /// Token cache.
    pub tokens: &'a TokenSource,
    /// Shared request pacer.
    pub pacer: &'a Pacer,
    /// Retry policy.
    pub retry: RetryPolicy,
}

/// Checks one target, retrying per SPEC §5. Every request, retries
/// included, waits for the pacer.
pub async fn check(ctx: &CheckContext<'_>, product_id: &str, sku_id: &str, upn: &str) -> Outcome {
    let mut retries = 0;
    let mut refreshed = false;
    loop {
        ctx.pacer.acquire().await;
        let token = match ctx.tokens.get().await {
            Ok(t) => t,
            Err(e) => {
                return Outcome::Inconclusive {
                    code: ErrorCode::Token,
                    reason: Reason::None,
                    detail: e.to_string(),
                };
            }
        };
        let answer = ctx.client.get_seat(product_id, sku_id, upn, &token).await;
        match classify(answer) {
            Verdict::Final(outcome) => return outcome,
            Verdict::Unauthorized(outcome) => {
                if refreshed {
                    return outcome;
                }
                ctx.tokens.invalidate(&token).await;
                refreshed = true;
            }
            Verdict::Transient {
                outcome,
                retry_after,
                throttled,
            } => {
                if throttled {
                    ctx.pacer.throttled();
                }
                if retries >= ctx.retry.max_retries {
                    return outcome;
                }
                tokio::time::sleep(ctx.retry.delay(retries, retry_after)).await;
                retries += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ItemType, SeatDetails};

    fn failed(code: ErrorCode) -> Answer {
        Answer::Failed(Failure {
            code,
            retry_after: None,
            detail: String::new(),
        })
    }

    #[test]
    fn the_spec_table() {
        let active = classify(Answer::Seat(SeatDetails {
            state: SeatState::Active,
            date_assigned: Some(7.0),
        }));
        assert_eq!(
            active,
            Verdict::Final(Outcome::Conclusive {
                active: true,
                assigned_at: Some(7.0),
                negative: None
            })
        );
        for state in [SeatState::Revoked, SeatState::Other("Frozen".into())] {
            let v = classify(Answer::Seat(SeatDetails {
                state,
                date_assigned: Some(7.0),
            }));
            assert!(matches!(
                v,
                Verdict::Final(Outcome::Conclusive {
                    active: false,
                    assigned_at: None,
                    ..
                })
            ));
        }
        for (item, reason) in [
            (ItemType::Seat, Reason::Seat),
            (ItemType::User, Reason::User),
            (ItemType::Inventory, Reason::Inventory),
            (ItemType::Unknown, Reason::Unknown),
        ] {
            assert_eq!(
                classify(Answer::NotFound(item)),
                Verdict::Final(Outcome::Conclusive {
                    active: false,
                    assigned_at: None,
                    negative: Some((ErrorCode::Status(404), reason))
                })
            );
        }
        for code in [400, 403, 409, 302] {
            let v = classify(failed(ErrorCode::Status(code)));
            assert!(
                matches!(v, Verdict::Final(Outcome::Inconclusive { .. })),
                "{code}"
            );
        }
        assert!(matches!(
            classify(failed(ErrorCode::Status(409))),
            Verdict::Final(Outcome::Inconclusive {
                reason: Reason::NotOnline,
                ..
            })
        ));
        assert!(matches!(
            classify(failed(ErrorCode::Decode)),
            Verdict::Final(Outcome::Inconclusive { .. })
        ));
        assert!(matches!(
            classify(failed(ErrorCode::Status(401))),
            Verdict::Unauthorized(_)
        ));
        for code in [
            ErrorCode::Status(429),
            ErrorCode::Status(500),
            ErrorCode::Status(503),
            ErrorCode::Timeout,
            ErrorCode::Connect,
            ErrorCode::Body,
        ] {
            let v = classify(failed(code));
            assert!(
                matches!(v, Verdict::Transient { throttled, .. } if throttled == (code == ErrorCode::Status(429))),
                "{code:?}"
            );
        }
    }

    #[test]
    fn backoff_is_jittered_below_a_doubling_ceiling() {
        let p = RetryPolicy::new(5);
        for retry in 0..8 {
            let ceiling = (Duration::from_secs(1) * (1 << retry)).min(p.cap);
            for _ in 0..50 {
                assert!(p.delay(retry, None) <= ceiling);
            }
        }
        let spread: std::collections::HashSet<_> = (0..20).map(|_| p.delay(3, None)).collect();
        assert!(spread.len() > 1, "delays are jittered");
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(42))),
            Duration::from_secs(42)
        );
    }
}
