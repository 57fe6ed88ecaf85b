//! How every upstream request is made (SPEC §5): wait for the shared
//! pacer, take the cached token, and judge a failure — retry it with
//! backoff when transient (a 429 also slows the pacer down), fetch a new
//! token once on a 401, or give up. Get seat, the Get seats pages and the
//! Get Inventory pages all go through [`with_retries`], so all three follow
//! one table; what a successful answer means is the caller's business
//! (`check`, `listing`, `inventory`).

use std::future::Future;
use std::time::Duration;

use crate::store::{AccessToken, Failure, StoreClient, TokenSource};
use crate::targets::{ErrorCode, Inconclusive, Reason};

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

/// What to do with one failed request.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Stop: the request is inconclusive.
    Final(Inconclusive),
    /// 401: refresh the token and try once more; this is the result if the
    /// second attempt is also a 401.
    Unauthorized(Inconclusive),
    /// Worth retrying within the cycle.
    Transient {
        /// The result if no retry is left.
        inconclusive: Inconclusive,
        /// `Retry-After`, if sent.
        retry_after: Option<Duration>,
        /// A 429: the pacer should slow down.
        throttled: bool,
    },
}

/// A failure as the `code` and `reason` labels see it: a 409 is
/// `not_online`, a 404 that failed is one whose body was not the Store's
/// (`not_store`), everything else has no reason.
fn inconclusive(failure: Failure) -> Inconclusive {
    let reason = match failure.code {
        ErrorCode::Status(409) => Reason::NotOnline,
        ErrorCode::Status(404) => Reason::NotStore,
        _ => Reason::None,
    };
    Inconclusive {
        code: failure.code,
        reason,
        detail: failure.detail,
    }
}

/// SPEC §5's table for an answer that is not a seat or a 404: whether it
/// is retried, refreshes the token, or ends the check.
pub fn classify_failure(f: Failure) -> Verdict {
    match f.code {
        ErrorCode::Status(401) => Verdict::Unauthorized(inconclusive(f)),
        ErrorCode::Status(429) => Verdict::Transient {
            retry_after: f.retry_after,
            throttled: true,
            inconclusive: inconclusive(f),
        },
        ErrorCode::Status(500..=599)
        | ErrorCode::Timeout
        | ErrorCode::Connect
        | ErrorCode::Body => Verdict::Transient {
            retry_after: f.retry_after,
            throttled: false,
            inconclusive: inconclusive(f),
        },
        // 400 (docs: Retry No), 409, other statuses, decode errors.
        _ => Verdict::Final(inconclusive(f)),
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

/// Makes one upstream request with SPEC §5's rules around it: every
/// attempt waits for the pacer and takes the cached token; a transient
/// failure is retried with backoff up to `max_retries` (a 429 also slows the
/// pacer down); a 401 drops the token and tries once more with a new one.
/// `attempt` makes the request and returns its result, or the failure for
/// these rules to judge. Shared by Get seat, Get seats pages and Get
/// Inventory pages, so all three follow one table.
///
/// # Errors
/// Why the request stayed inconclusive when no attempt succeeded.
pub async fn with_retries<T, F, Fut>(
    ctx: &CheckContext<'_>,
    mut attempt: F,
) -> Result<T, Inconclusive>
where
    F: FnMut(AccessToken) -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let mut retries = 0;
    let mut refreshed = false;
    loop {
        ctx.pacer.acquire().await;
        let token = ctx.tokens.get().await.map_err(|e| Inconclusive {
            code: ErrorCode::Token,
            reason: Reason::None,
            detail: e.to_string(),
        })?;
        let failure = match attempt(token.clone()).await {
            Ok(value) => {
                token.mark_accepted();
                return Ok(value);
            }
            Err(failure) => failure,
        };
        match classify_failure(failure) {
            Verdict::Final(inconclusive) => return Err(inconclusive),
            Verdict::Unauthorized(inconclusive) => {
                if refreshed {
                    return Err(inconclusive);
                }
                ctx.tokens.invalidate(&token).await;
                refreshed = true;
            }
            Verdict::Transient {
                inconclusive,
                retry_after,
                throttled,
            } => {
                if throttled {
                    ctx.pacer.throttled();
                }
                if retries >= ctx.retry.max_retries {
                    return Err(inconclusive);
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

    fn failed(code: ErrorCode) -> Failure {
        Failure {
            code,
            retry_after: None,
            detail: String::new(),
        }
    }

    /// SPEC §5's table for answers that say nothing about the seat (the
    /// conclusive rows are `check`'s).
    #[test]
    fn the_spec_table_for_failures() {
        for code in [400, 403, 409, 302] {
            let v = classify_failure(failed(ErrorCode::Status(code)));
            assert!(matches!(v, Verdict::Final(Inconclusive { .. })), "{code}");
        }
        assert!(matches!(
            classify_failure(failed(ErrorCode::Status(409))),
            Verdict::Final(Inconclusive {
                reason: Reason::NotOnline,
                ..
            })
        ));
        assert!(matches!(
            classify_failure(failed(ErrorCode::Decode)),
            Verdict::Final(Inconclusive { .. })
        ));
        assert!(matches!(
            classify_failure(failed(ErrorCode::Status(401))),
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
            let v = classify_failure(failed(code));
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

    #[test]
    fn backoff_ceiling_doubles_per_retry_up_to_the_cap() {
        // Full jitter: retry `r` waits up to min(cap, base·2^r). The largest
        // of many samples for retry `r` exceeds everything retry `r - 1`
        // can produce, so a fixed (or linear) ceiling fails here. Each
        // assertion fails by chance with probability 2^-400.
        let p = RetryPolicy::new(8);
        let max_of = |retry: u32| (0..400).map(|_| p.delay(retry, None)).max().unwrap();
        for retry in 1..5 {
            let previous_ceiling = p.base * (1 << (retry - 1));
            let max = max_of(retry);
            assert!(
                max > previous_ceiling,
                "retry {retry}: max {max:?} <= {previous_ceiling:?}"
            );
        }
        // Attempt 3 (retry 2, ceiling 4 s) against attempt 1 (retry 0,
        // ceiling 1 s): beyond anything the first backoff can produce.
        assert!(max_of(2) > p.base * 2);
        // Past the cap the ceiling stays at 30 s: 2^6 s would be 64 s.
        let late = max_of(6);
        assert!(late > Duration::from_secs(16) && late <= p.cap, "{late:?}");
    }

    mod retries {
        //! The retry loop on tokio's paused clock: the waits are exact, and
        //! the test takes no real time.

        use std::sync::atomic::{AtomicU32, Ordering};
        use std::time::Duration;

        use tokio::time::Instant;

        use super::super::*;
        use crate::config::{AuthConfig, StoreConfig};
        use crate::metrics::Telemetry;

        fn failure(code: ErrorCode, retry_after: Option<Duration>) -> Failure {
            Failure {
                code,
                retry_after,
                detail: String::new(),
            }
        }

        struct Fixture {
            client: StoreClient,
            tokens: TokenSource,
            pacer: Pacer,
        }

        fn fixture() -> Fixture {
            let telemetry = Telemetry::new();
            let store = StoreConfig::for_tests("http://127.0.0.1:9");
            let auth = AuthConfig::for_tests("http://127.0.0.1:9/token");
            Fixture {
                client: StoreClient::new(&store, telemetry.clone()).unwrap(),
                tokens: TokenSource::preloaded("tok", auth, telemetry),
                pacer: Pacer::new(None),
            }
        }

        fn ctx(f: &Fixture, max_retries: u32) -> CheckContext<'_> {
            CheckContext {
                client: &f.client,
                tokens: &f.tokens,
                pacer: &f.pacer,
                retry: RetryPolicy::new(max_retries),
            }
        }

        /// Fails with `failures` in order, then succeeds; counts attempts.
        async fn run(
            ctx: &CheckContext<'_>,
            failures: &[Failure],
            attempts: &AtomicU32,
        ) -> Result<u32, Inconclusive> {
            with_retries(ctx, |_token| async {
                let n = attempts.fetch_add(1, Ordering::SeqCst);
                match failures.get(n as usize) {
                    Some(f) => Err(f.clone()),
                    None => Ok(n),
                }
            })
            .await
        }

        #[tokio::test(start_paused = true)]
        async fn retry_after_is_waited_exactly() {
            let f = fixture();
            let attempts = AtomicU32::new(0);
            let start = Instant::now();
            let r = run(
                &ctx(&f, 2),
                &[failure(
                    ErrorCode::Status(429),
                    Some(Duration::from_secs(7)),
                )],
                &attempts,
            )
            .await;
            assert_eq!(r, Ok(1));
            assert_eq!(start.elapsed(), Duration::from_secs(7));
        }

        /// A failure whose `Retry-After` is read from `value` as the
        /// client reads a response header, at the time of the attempt.
        fn failure_with_header(code: ErrorCode, value: &str) -> Failure {
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(
                reqwest::header::RETRY_AFTER,
                reqwest::header::HeaderValue::from_str(value).unwrap(),
            );
            let retry_after =
                crate::store::parse_retry_after(&headers, std::time::SystemTime::now());
            failure(code, retry_after)
        }

        #[tokio::test(start_paused = true)]
        async fn retry_after_as_an_http_date_is_waited_for() {
            let f = fixture();
            let attempts = AtomicU32::new(0);
            // 45 s from now, to the second (HTTP dates have no fraction):
            // between 44 and 45 s, far beyond the 1 s first backoff.
            let date =
                httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(45));
            let fail = failure_with_header(ErrorCode::Status(503), &date);
            let expected = fail.retry_after.expect("an HTTP date is understood");
            assert!(expected > Duration::from_secs(44), "{expected:?}");
            let start = Instant::now();
            let r = run(&ctx(&f, 1), &[fail], &attempts).await;
            assert_eq!(r, Ok(1));
            // Tokio's timer rounds a sleep up to the next millisecond.
            let waited = start.elapsed();
            assert!(
                waited >= expected && waited <= expected + Duration::from_millis(1),
                "waited {waited:?} for {expected:?}"
            );
        }

        #[tokio::test(start_paused = true)]
        async fn retry_after_over_60_seconds_is_capped_at_60() {
            let later =
                httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(7200));
            for value in ["3600", later.as_str()] {
                let f = fixture();
                let attempts = AtomicU32::new(0);
                let fail = failure_with_header(ErrorCode::Status(429), value);
                let start = Instant::now();
                let r = run(&ctx(&f, 2), &[fail.clone(), fail], &attempts).await;
                assert_eq!(r, Ok(2), "{value}");
                assert_eq!(start.elapsed(), Duration::from_secs(120), "{value}");
            }
        }

        #[tokio::test(start_paused = true)]
        async fn backoff_stays_below_the_doubling_ceiling() {
            let f = fixture();
            let attempts = AtomicU32::new(0);
            let start = Instant::now();
            let fail = failure(ErrorCode::Status(503), None);
            let r = run(&ctx(&f, 3), &[fail.clone(), fail.clone(), fail], &attempts).await;
            assert_eq!(r, Ok(3));
            // Ceilings 1 s + 2 s + 4 s with full jitter below them.
            assert!(
                start.elapsed() <= Duration::from_secs(7),
                "{:?}",
                start.elapsed()
            );
        }

        #[tokio::test(start_paused = true)]
        async fn retries_end_at_max_retries_with_the_last_failure() {
            let f = fixture();
            let attempts = AtomicU32::new(0);
            let fail = failure(ErrorCode::Timeout, None);
            let r = run(&ctx(&f, 2), &vec![fail; 10], &attempts).await;
            assert!(matches!(
                r,
                Err(Inconclusive {
                    code: ErrorCode::Timeout,
                    ..
                })
            ));
            assert_eq!(attempts.load(Ordering::SeqCst), 3);
        }

        #[tokio::test(start_paused = true)]
        async fn final_failures_are_not_retried_and_do_not_wait() {
            for code in [400, 404, 409, 403] {
                let f = fixture();
                let attempts = AtomicU32::new(0);
                let start = Instant::now();
                let r = run(
                    &ctx(&f, 5),
                    &[failure(ErrorCode::Status(code), None)],
                    &attempts,
                )
                .await;
                assert!(r.is_err(), "{code}");
                assert_eq!(attempts.load(Ordering::SeqCst), 1, "{code}");
                assert_eq!(start.elapsed(), Duration::ZERO);
            }
        }

        #[tokio::test(start_paused = true)]
        async fn a_429_slows_the_shared_pacer() {
            let f = fixture();
            let attempts = AtomicU32::new(0);
            assert_eq!(f.pacer.current_rate(), None);
            let _ = run(
                &ctx(&f, 0),
                &[failure(ErrorCode::Status(429), None)],
                &attempts,
            )
            .await;
            assert!(f.pacer.current_rate().is_some());
        }
    }
}
