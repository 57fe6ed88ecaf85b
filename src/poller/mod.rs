//! The poll cycle: check every target once, at most `max_concurrency` at a
//! time and at most `max_requests_per_second` (the [`Pacer`]), and record each
//! outcome in the target table. One bad target never stops a cycle: every
//! check ends in an [`Outcome`], never an error.
//!
//! A fixed pool of worker tasks pulls work from a shared cursor. This keeps
//! memory flat however many targets there are (no task per target) and lets
//! checks run on every core. A unit of work is one target of a per-user
//! product, or one whole list-mode product (`listing`: one paged listing
//! answers for all its targets); listings are queued first because they
//! take longest. When to run a cycle is the exporter's business
//! (`exporter::Exporter::run_poller`); this module only knows how.

pub mod check;
pub mod inventory;
pub mod lanes;
pub mod listing;
pub mod pacer;
pub mod plan;
pub mod request;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::store::{StoreClient, TokenSource};
use crate::targets::{ErrorCode, Outcome, ProductGroup, Target, TargetTable, Transition};

pub use inventory::InventoryReport;
pub use lanes::{LaneThreads, Lanes, MAX_LANES};
pub use pacer::Pacer;
use plan::Work;
pub use plan::{Scope, cycle_fit_warning};
pub use request::RetryPolicy;

/// Everything derived from one loaded configuration: what a cycle runs
/// over. The exporter swaps it whole on a reload.
pub struct Generation {
    /// The configuration.
    pub config: Arc<Config>,
    /// This shard's targets.
    pub table: Arc<TargetTable>,
    /// HTTP client for `[store]`.
    pub client: StoreClient,
    /// Token cache for `[auth]`.
    pub tokens: Arc<TokenSource>,
}

/// What a cycle did, for logs and `--once`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CycleReport {
    /// Targets checked.
    pub checked: usize,
    /// Of those, conclusive.
    pub conclusive: usize,
    /// Inconclusive checks by `code` label (a failed listing counts once
    /// per target it covers, and once if it covers none yet).
    pub failures: BTreeMap<String, usize>,
    /// Seat listings run (list-mode products).
    pub listings: usize,
    /// Of those, incomplete.
    pub listings_failed: usize,
    /// Wall time.
    pub duration: Duration,
}

impl CycleReport {
    /// Whether every check was conclusive (and every listing complete, which
    /// matters for a discovery product that has no target yet).
    pub fn all_conclusive(&self) -> bool {
        self.checked == self.conclusive && self.listings_failed == 0
    }

    /// Counts `n` inconclusive checks under `code`.
    fn count_failures(&mut self, code: ErrorCode, n: usize) {
        *self.failures.entry(code.label().into_owned()).or_default() += n;
    }

    /// Adds a worker's report to this one.
    fn add(&mut self, r: CycleReport) {
        self.checked += r.checked;
        self.conclusive += r.conclusive;
        self.listings += r.listings;
        self.listings_failed += r.listings_failed;
        for (code, n) in r.failures {
            *self.failures.entry(code).or_default() += n;
        }
    }
}

/// Runs one cycle over `generation`'s targets. Returns `None` if `cancel`
/// fired first; in-flight checks are then aborted and record nothing.
pub async fn run_cycle(
    generation: Arc<Generation>,
    pacer: Arc<Pacer>,
    retry: RetryPolicy,
    scope: Scope,
    lanes: &Lanes,
    cancel: &CancellationToken,
) -> Option<CycleReport> {
    let started = Instant::now();
    let work = Arc::new(plan::plan(&generation.table, scope));
    let cursor = Arc::new(AtomicUsize::new(0));
    let workers = generation.config.store.max_concurrency.min(work.len());
    let mut set = JoinSet::new();
    for i in 0..workers {
        let lane = lanes.lane_of(i);
        let task = worker(
            generation.client.for_lane(lane),
            Arc::clone(&generation),
            Arc::clone(&pacer),
            retry,
            Arc::clone(&work),
            Arc::clone(&cursor),
        );
        lanes.spawn_on(&mut set, lane, task);
    }
    let mut total = join(set, cancel).await?;
    total.duration = started.elapsed();
    Some(total)
}

/// One worker of the pool: takes the next unit of work from the shared
/// cursor until there is none, and reports what it did. `client` is the
/// Store client of the lane the worker runs on.
async fn worker(
    client: StoreClient,
    generation: Arc<Generation>,
    pacer: Arc<Pacer>,
    retry: RetryPolicy,
    work: Arc<Vec<Work>>,
    cursor: Arc<AtomicUsize>,
) -> CycleReport {
    let mut report = CycleReport::default();
    let ctx = request::CheckContext {
        client: &client,
        tokens: &generation.tokens,
        pacer: &pacer,
        retry,
    };
    while let Some(unit) = work.get(cursor.fetch_add(1, Ordering::Relaxed)) {
        match unit {
            Work::Listing(g) => {
                let r = listing::check_group(&ctx, &generation.table.groups[*g]).await;
                report.listings += 1;
                report.checked += r.covered;
                match r.failed {
                    None => report.conclusive += r.covered,
                    Some(code) => {
                        report.listings_failed += 1;
                        report.count_failures(code, r.covered.max(1));
                    }
                }
            }
            Work::Target(g, target) => {
                let group = &generation.table.groups[*g];
                let product = &group.product;
                let outcome =
                    check::check(&ctx, &product.product_id, &product.sku_id, target.upn()).await;
                record(group, target, &outcome);
                report.checked += 1;
                match &outcome {
                    Outcome::Conclusive { .. } => report.conclusive += 1,
                    Outcome::Inconclusive(why) => report.count_failures(why.code, 1),
                }
            }
        }
    }
    report
}

/// Waits for every worker and adds up their reports; `None`, with the
/// workers aborted, if `cancel` fires first.
async fn join(mut set: JoinSet<CycleReport>, cancel: &CancellationToken) -> Option<CycleReport> {
    let mut total = CycleReport::default();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                set.abort_all();
                return None;
            }
            next = set.join_next() => match next {
                Some(Ok(r)) => total.add(r),
                Some(Err(e)) => {
                    // A worker can only end abnormally by panicking, which
                    // no check path does; log it rather than lose the cycle.
                    tracing::error!(error = %e, "poll worker ended abnormally");
                }
                None => return Some(total),
            }
        }
    }
}

/// Stores an outcome of one of `group`'s targets, counts a loss for the
/// product too, and logs a change of seat state (SPEC §5).
fn record(group: &ProductGroup, target: &Target, outcome: &Outcome) {
    let product = &group.product;
    let transition = target.state().record(outcome, unix_now());
    let user = target.user_label();
    match transition {
        Transition::Lost => {
            group.state.status().seats_lost += 1;
            tracing::info!(
                product_id = %product.product_id, sku_id = %product.sku_id, user = %user,
                "seat lost"
            );
        }
        Transition::Assigned => tracing::info!(
            product_id = %product.product_id, sku_id = %product.sku_id, user = %user,
            "seat assigned"
        ),
        Transition::First { active } => tracing::debug!(
            product_id = %product.product_id, sku_id = %product.sku_id, user = %user,
            active, "first conclusive check"
        ),
        Transition::None => {}
    }
    if let Outcome::Inconclusive(why) = outcome {
        tracing::debug!(
            product_id = %product.product_id, sku_id = %product.sku_id, user = %user,
            code = %why.code.label(), reason = why.reason.label(), error = %why.detail,
            "check inconclusive"
        );
    }
}

/// Current Unix time in seconds.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    //! The cycle without the network: what it plans, how the pool's
    //! reports add up, and cancellation, on tokio's paused clock.

    use std::time::Duration;

    use super::*;
    use crate::config;
    use crate::metrics::Telemetry;

    /// A per-user product of two users and a list-mode product of one.
    fn generation() -> Arc<Generation> {
        let config = config::for_tests(
            "[[products]]\nproduct_id = \"P\"\nsku_id = \"S\"\nusers = [\"a@x.y\", \"b@x.y\"]\n\n\
             [[products]]\nproduct_id = \"L\"\nsku_id = \"S\"\nmode = \"list\"\nusers = [\"c@x.y\"]\n",
        );
        let telemetry = Telemetry::new();
        let client = StoreClient::new(&config.store, telemetry.clone()).expect("client");
        let tokens = Arc::new(TokenSource::new(
            client.http().clone(),
            config.auth.clone(),
            telemetry,
        ));
        Arc::new(Generation {
            table: Arc::new(TargetTable::build(&config, None)),
            config: Arc::new(config),
            client,
            tokens,
        })
    }

    fn checked(t: &Target) {
        let outcome = Outcome::Conclusive {
            active: true,
            assigned_at: None,
            negative: None,
        };
        t.state().record(&outcome, 1.0);
    }

    fn described(work: &[Work]) -> Vec<String> {
        work.iter()
            .map(|w| match w {
                Work::Listing(g) => format!("listing {g}"),
                Work::Target(_, t) => t.upn().to_owned(),
            })
            .collect()
    }

    #[test]
    fn listings_are_planned_first_and_unchecked_means_never_checked() {
        let g = generation();
        let table = &g.table;
        assert_eq!(
            described(&plan::plan(table, Scope::All)),
            ["listing 1", "a@x.y", "b@x.y"]
        );
        checked(&table.groups[0].targets[0]);
        assert_eq!(
            described(&plan::plan(table, Scope::Unchecked)),
            ["listing 1", "b@x.y"]
        );
        checked(&table.groups[0].targets[1]);
        checked(&table.groups[1].targets[0]);
        assert!(plan::plan(table, Scope::Unchecked).is_empty());
        assert_eq!(plan::plan(table, Scope::All).len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cycle_with_nothing_due_checks_nothing() {
        let g = generation();
        for group in &g.table.groups {
            group.targets.iter().for_each(|t| checked(t));
        }
        let report = run_cycle(
            Arc::clone(&g),
            Arc::new(Pacer::new(None)),
            RetryPolicy::new(0),
            Scope::Unchecked,
            &Lanes::here(),
            &CancellationToken::new(),
        )
        .await
        .expect("not cancelled");
        assert_eq!((report.checked, report.listings), (0, 0));
        assert!(report.all_conclusive());
    }

    fn report(checked: usize, conclusive: usize, failures: &[(ErrorCode, usize)]) -> CycleReport {
        let mut r = CycleReport {
            checked,
            conclusive,
            ..CycleReport::default()
        };
        for (code, n) in failures {
            r.count_failures(*code, *n);
        }
        r
    }

    #[tokio::test(start_paused = true)]
    async fn the_pool_s_reports_add_up_whenever_each_worker_ends() {
        let mut set = JoinSet::new();
        set.spawn(async { report(3, 2, &[(ErrorCode::Timeout, 1)]) });
        set.spawn(async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            report(
                2,
                0,
                &[(ErrorCode::Timeout, 1), (ErrorCode::Status(503), 1)],
            )
        });
        let total = join(set, &CancellationToken::new()).await.expect("joined");
        assert_eq!((total.checked, total.conclusive), (5, 2));
        assert_eq!(
            total.failures,
            BTreeMap::from([("503".to_owned(), 1), ("timeout".to_owned(), 2)])
        );
        assert!(!total.all_conclusive());
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_cycle_reports_nothing_and_stops_its_workers() {
        let cancel = CancellationToken::new();
        let running = Arc::new(());
        let mut set = JoinSet::new();
        let held = Arc::clone(&running);
        set.spawn(async move {
            let _held = held;
            std::future::pending::<()>().await;
            CycleReport::default()
        });
        let joined = tokio::spawn({
            let cancel = cancel.clone();
            async move { join(set, &cancel).await }
        });
        tokio::time::sleep(Duration::from_secs(3600)).await;
        cancel.cancel();
        assert_eq!(joined.await.expect("join ends"), None);
        for _ in 0..100 {
            if Arc::strong_count(&running) == 1 {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the worker was not stopped");
    }
}
