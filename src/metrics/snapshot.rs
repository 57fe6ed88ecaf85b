//! What a scrape shows of every target, copied once from the target table
//! and shared by the scrapes that run at the same time (SPEC §17: 40
//! clients that ask for `/metrics` and stop reading must not hold 40
//! copies).
//!
//! Why a copy at all: every family of one scrape must agree (a target in
//! `msfb_seat_active` is counted in `msfb_seats`, a discovered target never
//! appears in one family and not the next), and the families are written
//! one after another, so the state of every target is copied first, under
//! that target's lock, once. At 100k targets the copy is about 4 MB of
//! [`Row`]s plus the discovered targets' labels, and a scrape holds it for
//! as long as its client reads — for a client that stopped reading, until
//! the write-stall drop closes its connection (30 s). Forty of them each
//! with their own copy held about 300 MB.
//!
//! So [`Snapshots`] hands out one shared [`TableSnapshot`] to many
//! scrapes: a scrape reuses the newest snapshot still held by another
//! scrape when that one is younger than [`REUSE_AGE`], or, whatever its
//! age, when the snapshots held together would otherwise exceed
//! [`BUDGET`]. Memory for snapshots is then bounded by the budget plus one
//! snapshot, whatever the clients do; the price is that under such an
//! attack a scrape may show data up to the write-stall limit old — never
//! data older than a previous scrape's (a reused snapshot is always the
//! newest one taken, so counters never go back). With nobody holding a
//! snapshot, the next scrape takes a fresh one, so Prometheus alone always
//! sees the table as it is. Nothing is kept once the last scrape holding a
//! snapshot ends: the cache holds weak references only.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::time::Instant;

use crate::targets::{
    ErrorCount, ProductGroup, ProductStatus, Seat, TargetTable, escape_label_value,
};

/// How long a snapshot held by a scrape is reused by the scrapes that
/// start meanwhile: Prometheus replicas scraping together share one, and a
/// burst of clients costs one copy.
pub const REUSE_AGE: Duration = Duration::from_secs(1);

/// Most bytes of snapshots held by scrapes at once before a new scrape
/// reuses the newest instead of copying (about five copies of a
/// 100k-target table).
pub const BUDGET: usize = 32 * 1024 * 1024;

/// What one scrape shows of one target, copied under its lock. Absent
/// timestamps are NaN and the user label lives in its group's `users`
/// string, so a row is 40 bytes and a 100k-target scrape copies about 4 MB
/// plus the labels. Each family's pass then reads rows and labels in order
/// instead of chasing a pointer to every target (cache misses on the
/// targets were half the time of a 100k-target render).
#[derive(Clone, Copy)]
pub(super) struct Row {
    /// `msfb_seat_last_success_timestamp_seconds`.
    pub(super) last_success_at: f64,
    /// `msfb_seat_assigned_timestamp_seconds` (active seats only).
    pub(super) assigned_at: f64,
    /// `msfb_seat_lost_total`.
    pub(super) lost_total: u64,
    /// The escaped user label: `users[user_start..user_end]` of the
    /// snapshot with [`Row::OWN_LABEL`], else of the group's `user_labels`.
    user_start: u32,
    user_end: u32,
    /// This target's error series: `errors[first..first + len]` of the
    /// snapshot's shared error list (no allocation per target).
    pub(super) first_error: u32,
    pub(super) error_count: u16,
    /// [`Row::SEAT_KNOWN`] and friends.
    flags: u8,
}

impl Row {
    pub(super) const SEAT_KNOWN: u8 = 1;
    pub(super) const SEAT_ACTIVE: u8 = 2;
    pub(super) const CHECKED: u8 = 4;
    pub(super) const CHECK_OK: u8 = 8;
    /// A discovered target: its label was copied into the snapshot.
    const OWN_LABEL: u8 = 16;

    pub(super) fn has(self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// One group's labels, rows and product status, fixed for the scrapes
/// that share the snapshot.
pub(super) struct GroupRows {
    /// `product_id="…",sku_id="…"`.
    pub(super) labels: String,
    /// The escaped user labels of discovered targets, back to back
    /// (configured targets' labels are the group's `user_labels`).
    users: String,
    pub(super) rows: Vec<Row>,
    /// The product's listing and inventory state, copied with the rows so
    /// that the product families agree with the per-target ones.
    pub(super) status: ProductStatus,
}

/// Every group's rows, the error series they point into, and the table
/// they were copied from (for the labels that do not change with it).
pub struct TableSnapshot {
    table: Arc<TargetTable>,
    groups: Vec<GroupRows>,
    errors: Vec<ErrorCount>,
    /// Heap bytes held, for [`BUDGET`].
    bytes: usize,
}

impl TableSnapshot {
    /// Copies every target's state of `table`, once, under its lock.
    pub fn take(table: &Arc<TargetTable>) -> TableSnapshot {
        let mut errors = Vec::new();
        let groups: Vec<GroupRows> = table
            .groups
            .iter()
            .map(|g| group_rows(g, &mut errors))
            .collect();
        let bytes = errors.capacity() * size_of::<ErrorCount>()
            + groups
                .iter()
                .map(|g| {
                    size_of::<GroupRows>()
                        + g.labels.capacity()
                        + g.users.capacity()
                        + g.rows.capacity() * size_of::<Row>()
                })
                .sum::<usize>();
        TableSnapshot {
            table: Arc::clone(table),
            groups,
            errors,
            bytes,
        }
    }

    /// The table the rows were copied from.
    pub fn table(&self) -> &TargetTable {
        &self.table
    }

    /// Each group of the table with its rows, in configuration order.
    pub(super) fn groups(&self) -> impl Iterator<Item = (&ProductGroup, &GroupRows)> {
        self.table.groups.iter().zip(&self.groups)
    }

    /// The error series rows point into.
    pub(super) fn errors(&self) -> &[ErrorCount] {
        &self.errors
    }

    /// Heap bytes the snapshot holds.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl GroupRows {
    /// The escaped user label of `row` of `group`.
    pub(super) fn user<'s>(&'s self, group: &'s ProductGroup, row: Row) -> &'s str {
        let arena = if row.has(Row::OWN_LABEL) {
            self.users.as_str()
        } else {
            group.user_labels.text()
        };
        arena
            .get(row.user_start as usize..row.user_end as usize)
            .unwrap_or("")
    }
}

/// `product_id="…",sku_id="…"` for a group.
fn product_labels(group: &ProductGroup) -> String {
    let mut s = String::with_capacity(48);
    s.push_str("product_id=\"");
    escape_label_value(&mut s, &group.product.product_id);
    s.push_str("\",sku_id=\"");
    escape_label_value(&mut s, &group.product.sku_id);
    s.push('"');
    s
}

/// Copies one group's targets, appending their error series to `errors`.
fn group_rows(group: &ProductGroup, errors: &mut Vec<ErrorCount>) -> GroupRows {
    // Configured targets are read in place; discovered ones are a
    // snapshot, since the set changes under its own lock.
    let discovered = group
        .discovery
        .as_ref()
        .map(|d| d.snapshot())
        .unwrap_or_default();
    let count = group.targets.len() + discovered.len();
    let mut users = String::new();
    let mut rows = Vec::with_capacity(count);
    let configured = group.targets.iter().map(|t| (t, None));
    let found = discovered.iter().map(|t| (t, Some(t.user_label())));
    for (i, (t, own)) in configured.chain(found).enumerate() {
        let mut flags = 0;
        let (user_start, user_end) = match own {
            None => group.user_labels.span(i),
            Some(label) => {
                flags |= Row::OWN_LABEL;
                let start = offset(&users);
                escape_label_value(&mut users, label);
                (start, offset(&users))
            }
        };
        let s = t.state();
        let mut assigned_at = f64::NAN;
        match s.seat {
            Some(Seat {
                active: true,
                assigned_at: a,
            }) => {
                flags |= Row::SEAT_KNOWN | Row::SEAT_ACTIVE;
                assigned_at = a.unwrap_or(f64::NAN);
            }
            Some(Seat { active: false, .. }) => flags |= Row::SEAT_KNOWN,
            None => {}
        }
        if s.last_check_at.is_some() {
            flags |= Row::CHECKED;
            if s.last_check_ok {
                flags |= Row::CHECK_OK;
            }
        }
        // At most one series per (code, reason): a handful.
        let first_error = u32::try_from(errors.len()).unwrap_or(u32::MAX);
        let error_count = u16::try_from(s.errors.len()).unwrap_or(u16::MAX);
        errors.extend(s.errors.iter().take(usize::from(error_count)));
        rows.push(Row {
            last_success_at: s.last_success_at.unwrap_or(f64::NAN),
            assigned_at,
            lost_total: s.lost_total,
            user_start,
            user_end,
            first_error,
            error_count,
            flags,
        });
    }
    users.shrink_to_fit();
    GroupRows {
        labels: product_labels(group),
        users,
        rows,
        status: group.state.status().clone(),
    }
}

/// A position in a group's label string (which stays far below 4 GiB: a
/// target's label is bounded by the config file size limit).
fn offset(s: &str) -> u32 {
    u32::try_from(s.len()).unwrap_or(u32::MAX)
}

/// A snapshot handed out and possibly still held by a scrape.
struct Live {
    /// Order of taking: the newest has the highest.
    seq: u64,
    taken: Instant,
    bytes: usize,
    snapshot: Weak<TableSnapshot>,
}

#[derive(Default)]
struct Held {
    live: Vec<Live>,
    /// The `seq` of the latest snapshot taken.
    last_seq: u64,
}

/// The snapshots held by scrapes in progress (see the module header). One
/// per exporter.
pub struct Snapshots {
    /// Held while a snapshot is taken, so that scrapes arriving meanwhile
    /// wait and share it instead of copying the table again. A std mutex:
    /// scrapes take snapshots on blocking threads.
    held: Mutex<Held>,
    /// [`BUDGET`], or less in tests.
    budget: usize,
}

impl Default for Snapshots {
    fn default() -> Self {
        Snapshots::with_budget(BUDGET)
    }
}

impl Snapshots {
    /// A cache that shares once held snapshots would exceed `budget` bytes.
    pub fn with_budget(budget: usize) -> Snapshots {
        Snapshots {
            held: Mutex::default(),
            budget,
        }
    }

    /// A snapshot of `table` for one scrape: shared with scrapes in
    /// progress when one of theirs is recent enough or memory is at the
    /// budget, else freshly taken. Blocks for the copy: call it off the
    /// async workers.
    pub fn take(&self, table: &Arc<TargetTable>) -> Arc<TableSnapshot> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.live.retain(|l| l.snapshot.strong_count() > 0);
        let held_bytes: usize = held.live.iter().map(|l| l.bytes).sum();
        let last_seq = held.last_seq;
        // Only the latest snapshot taken is reused: one older than a
        // snapshot some scrape already showed would move counters back.
        let newest = held
            .live
            .iter()
            .find(|l| l.seq == last_seq)
            .and_then(|l| Some((l, l.snapshot.upgrade()?)))
            .filter(|(_, s)| Arc::ptr_eq(&s.table, table));
        if let Some((live, snapshot)) = newest
            && (live.taken.elapsed() < REUSE_AGE || held_bytes + live.bytes > self.budget)
        {
            return snapshot;
        }
        let snapshot = Arc::new(TableSnapshot::take(table));
        held.last_seq += 1;
        let seq = held.last_seq;
        held.live.push(Live {
            seq,
            taken: Instant::now(),
            bytes: snapshot.bytes,
            snapshot: Arc::downgrade(&snapshot),
        });
        snapshot
    }

    /// Bytes of the snapshots scrapes hold now.
    pub fn held_bytes(&self) -> usize {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.live
            .iter()
            .filter(|l| l.snapshot.strong_count() > 0)
            .map(|l| l.bytes)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    //! Which scrapes share a snapshot, on tokio's paused clock.

    use super::*;
    use crate::config;

    /// A table of three configured targets, one checked.
    fn table() -> Arc<TargetTable> {
        let config = config::for_tests(
            "[[products]]\nproduct_id = \"P\"\nsku_id = \"0016\"\n\
             users = [\"a@x.y\", \"b@x.y\", \"c@x.y\"]\n",
        );
        Arc::new(TargetTable::build(&config, None))
    }

    fn lost_total(s: &TableSnapshot) -> u64 {
        s.groups().map(|(_, g)| g.rows[0].lost_total).sum()
    }

    /// Records a loss on the first target (1 → 0), so that a snapshot
    /// taken after it differs from one taken before.
    fn lose_a_seat(table: &TargetTable) {
        let t = &table.groups[0].targets[0];
        let held = crate::targets::Outcome::Conclusive {
            active: true,
            assigned_at: None,
            negative: None,
        };
        let gone = crate::targets::Outcome::Conclusive {
            active: false,
            assigned_at: None,
            negative: None,
        };
        t.state().record(&held, 1.0);
        t.state().record(&gone, 2.0);
    }

    #[tokio::test(start_paused = true)]
    async fn scrapes_in_progress_share_a_recent_snapshot_and_nobody_keeps_one() {
        let cache = Snapshots::default();
        let table = table();
        let first = cache.take(&table);
        assert!(first.bytes() > 0);
        assert_eq!(cache.held_bytes(), first.bytes());
        lose_a_seat(&table);
        let second = cache.take(&table);
        assert!(Arc::ptr_eq(&first, &second), "held and recent: shared");
        assert_eq!(lost_total(&second), 0, "the shared copy, not the table");

        tokio::time::advance(REUSE_AGE).await;
        let third = cache.take(&table);
        assert!(!Arc::ptr_eq(&first, &third), "a second old: a new copy");
        assert_eq!(lost_total(&third), 1);

        drop((first, second, third));
        assert_eq!(cache.held_bytes(), 0, "only weak references are kept");
        lose_a_seat(&table);
        let fresh = cache.take(&table);
        assert_eq!(lost_total(&fresh), 2, "nothing held: the table as it is");
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_budget_the_newest_is_shared_whatever_its_age() {
        let table = table();
        let size = TableSnapshot::take(&table).bytes();
        // Room for two snapshots held at once.
        let cache = Snapshots::with_budget(2 * size);
        let mut held = vec![cache.take(&table)];
        tokio::time::advance(REUSE_AGE).await;
        held.push(cache.take(&table));
        assert!(!Arc::ptr_eq(&held[0], &held[1]));
        for _ in 0..10 {
            tokio::time::advance(Duration::from_secs(10)).await;
            lose_a_seat(&table);
            held.push(cache.take(&table));
        }
        assert!(held[2..].iter().all(|s| Arc::ptr_eq(s, &held[1])));
        assert!(cache.held_bytes() <= 2 * size, "{}", cache.held_bytes());

        // The newest gone (its scrapes done) while an older one is held:
        // the next scrape takes a new copy rather than the older one, whose
        // counters a scrape has already seen move on.
        let oldest = held.remove(0);
        held.clear();
        let next = cache.take(&table);
        assert!(!Arc::ptr_eq(&next, &oldest));
        assert_eq!(lost_total(&next), 10);
        assert!(cache.held_bytes() <= 2 * size);
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_table_gets_its_own_snapshot() {
        let cache = Snapshots::with_budget(0);
        let old = table();
        let held = cache.take(&old);
        let new = table();
        let after_reload = cache.take(&new);
        assert!(!Arc::ptr_eq(&held, &after_reload));
        assert!(std::ptr::eq(after_reload.table(), &*new));
    }
}
