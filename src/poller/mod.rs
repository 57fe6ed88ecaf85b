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
//! (`exporter::run_poller`); this module only knows how.

pub mod check;
pub mod listing;
pub mod pacer;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Mode;
use crate::exporter::Generation;
use crate::targets::{Outcome, ProductGroup, Target, Transition};

pub use check::RetryPolicy;
pub use pacer::Pacer;

/// Which targets a cycle checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every target: a regular cycle.
    All,
    /// Only targets never checked (after a reload added some).
    Unchecked,
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
}

/// One unit of a cycle's work.
enum Work {
    /// Get seat for one target of the per-user product at this index of
    /// the table.
    Target(usize, Arc<Target>),
    /// One listing for the list-mode product at this index of the table.
    Listing(usize),
}

/// Runs one cycle over `generation`'s targets. Returns `None` if `cancel`
/// fired first; in-flight checks are then aborted and record nothing.
pub async fn run_cycle(
    generation: Arc<Generation>,
    pacer: Arc<Pacer>,
    retry: RetryPolicy,
    scope: Scope,
    cancel: &CancellationToken,
) -> Option<CycleReport> {
    let started = Instant::now();
    let unchecked = |t: &Target| t.state().last_check_at.is_none();
    let mut work: Vec<Work> = Vec::new();
    for (i, g) in generation.table.groups.iter().enumerate() {
        if g.product.mode != Mode::List {
            continue;
        }
        let never_listed = g.state.status().listing.last_at.is_none();
        let due = match scope {
            Scope::All => true,
            Scope::Unchecked => {
                (g.discovery.is_some() && never_listed) || g.targets.iter().any(|t| unchecked(t))
            }
        };
        if due && (g.discovery.is_some() || !g.targets.is_empty()) {
            work.push(Work::Listing(i));
        }
    }
    for (i, g) in generation.table.groups.iter().enumerate() {
        if g.product.mode == Mode::List {
            continue;
        }
        for t in &g.targets {
            if scope == Scope::All || unchecked(t) {
                work.push(Work::Target(i, Arc::clone(t)));
            }
        }
    }
    let work = Arc::new(work);
    let cursor = Arc::new(AtomicUsize::new(0));
    let workers = generation.config.store.max_concurrency.min(work.len());
    let mut set = JoinSet::new();
    for _ in 0..workers {
        let (generation, pacer, work, cursor) = (
            Arc::clone(&generation),
            Arc::clone(&pacer),
            Arc::clone(&work),
            Arc::clone(&cursor),
        );
        set.spawn(async move {
            let mut report = CycleReport::default();
            let ctx = check::CheckContext {
                client: &generation.client,
                tokens: &generation.tokens,
                pacer: &pacer,
                retry,
            };
            loop {
                let i = cursor.fetch_add(1, Ordering::Relaxed);
                let (group, target) = match work.get(i) {
                    None => break,
                    Some(Work::Target(g, target)) => (&generation.table.groups[*g], target),
                    Some(Work::Listing(g)) => {
                        let group = &generation.table.groups[*g];
                        let r = listing::check_group(&ctx, group).await;
                        report.listings += 1;
                        report.checked += r.covered;
                        match r.failed {
                            None => report.conclusive += r.covered,
                            Some(code) => {
                                report.listings_failed += 1;
                                *report
                                    .failures
                                    .entry(code.label().into_owned())
                                    .or_default() += r.covered.max(1);
                            }
                        }
                        continue;
                    }
                };
                let product = &group.product;
                let outcome =
                    check::check(&ctx, &product.product_id, &product.sku_id, target.upn()).await;
                record(group, target, &outcome);
                report.checked += 1;
                match &outcome {
                    Outcome::Conclusive { .. } => report.conclusive += 1,
                    Outcome::Inconclusive { code, .. } => {
                        *report
                            .failures
                            .entry(code.label().into_owned())
                            .or_default() += 1;
                    }
                }
            }
            report
        });
    }
    let mut total = CycleReport::default();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                set.abort_all();
                return None;
            }
            next = set.join_next() => match next {
                Some(Ok(r)) => {
                    total.checked += r.checked;
                    total.conclusive += r.conclusive;
                    total.listings += r.listings;
                    total.listings_failed += r.listings_failed;
                    for (code, n) in r.failures {
                        *total.failures.entry(code).or_default() += n;
                    }
                }
                Some(Err(e)) => {
                    // A worker can only end abnormally by panicking, which
                    // no check path does; log it rather than lose the cycle.
                    tracing::error!(error = %e, "poll worker ended abnormally");
                }
                None => break,
            }
        }
    }
    total.duration = started.elapsed();
    Some(total)
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
    if let Outcome::Inconclusive {
        code,
        reason,
        detail,
    } = outcome
    {
        tracing::debug!(
            product_id = %product.product_id, sku_id = %product.sku_id, user = %user,
            code = %code.label(), reason = reason.label(), error = %detail,
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
