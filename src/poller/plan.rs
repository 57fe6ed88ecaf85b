//! What a cycle will do, before it does it: the units of work in the order
//! the workers take them, and what a cycle costs in requests (for the
//! start-up warning that a cycle cannot fit its interval at the configured
//! rate). Knowing the listing page size belongs here, with the requests,
//! not in the configuration.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, Mode, ProductConfig};
use crate::store::list::PAGE_SIZE;
use crate::targets::{Target, TargetTable};

/// Which targets a cycle checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every target: a regular cycle.
    All,
    /// Only targets never checked (after a reload added some).
    Unchecked,
}

/// One unit of a cycle's work.
pub(super) enum Work {
    /// Get seat for one target of the per-user product at this index of
    /// the table.
    Target(usize, Arc<Target>),
    /// One listing for the list-mode product at this index of the table.
    Listing(usize),
}

/// The work of one cycle over `table`: the due listings first (they take
/// longest), then the due targets of per-user products in table order.
pub(super) fn plan(table: &TargetTable, scope: Scope) -> Vec<Work> {
    let unchecked = |t: &Target| t.state().last_check_at.is_none();
    let mut work: Vec<Work> = Vec::new();
    for (i, g) in table.groups.iter().enumerate() {
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
    for (i, g) in table.groups.iter().enumerate() {
        if g.product.mode == Mode::List {
            continue;
        }
        for t in &g.targets {
            if scope == Scope::All || unchecked(t) {
                work.push(Work::Target(i, Arc::clone(t)));
            }
        }
    }
    work
}

/// The fewest requests one instance makes in a cycle: one Get seat per
/// per-user target of its shard (about 1/`shard_count` of them), and for
/// each list-mode product the pages of one listing, which every shard reads
/// whole: at least one, and a page per [`PAGE_SIZE`] configured users if
/// they all hold a seat. Discovery products count one page, as their size
/// is unknown until listed.
fn requests_per_cycle(products: &[ProductConfig], shard_count: u32) -> usize {
    let per_user: usize = products
        .iter()
        .filter(|p| p.mode == Mode::PerUser)
        .map(|p| p.users.len())
        .sum();
    let pages: usize = products
        .iter()
        .filter(|p| p.mode == Mode::List)
        .map(|p| p.users.len().div_ceil(PAGE_SIZE as usize).max(1))
        .sum();
    per_user.div_ceil(shard_count.max(1) as usize) + pages
}

/// A warning when a cycle cannot fit `poll.interval` at
/// `store.max_requests_per_second`.
pub fn cycle_fit_warning(config: &Config) -> Option<String> {
    let rps = config.store.max_requests_per_second?;
    let requests = requests_per_cycle(&config.products, config.poll.shard_count);
    // A tiny rate gives more seconds than a Duration holds: no panic.
    let needed = Duration::try_from_secs_f64(requests as f64 / rps).unwrap_or(Duration::MAX);
    (needed > config.poll.interval).then(|| {
        format!(
            "a poll cycle cannot fit: {requests} requests at {rps} requests/s take at least {}, \
             longer than poll.interval ({}); raise store.max_requests_per_second or poll.interval",
            humantime::format_duration(Duration::from_secs(needed.as_secs())),
            humantime::format_duration(config.poll.interval)
        )
    })
}
