//! The targets of a `users = "all"` product, found by listing: they appear
//! as seats are assigned and are forgotten `forget_after` after their seat
//! went (SPEC §11). Readers take a snapshot of the `Arc`s and drop the lock
//! before touching any target; the listing decides under the lock which
//! targets exist and records outcomes after releasing it. Lock order, where
//! two are held at once, is always discovery set → target. The set is
//! bounded by what the Store lists (at most `max_pages` pages of at most
//! 1 MiB, about 100 seats a page when the Store honours `maxResults`) plus
//! the lost seats still inside `forget_after`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use secrecy::ExposeSecret;

use super::{Outcome, Product, ProductGroup, Target, TargetState, carry, hash_user, shard_of};
use crate::config::UserLabel;

/// What makes discovered targets what they are: which shard keeps them and
/// how their user label is made. A reload that changes either rebuilds the
/// set; otherwise the same [`Discovery`] carries on.
#[derive(Debug, Clone)]
pub(super) struct DiscoverySettings {
    pub(super) shard_index: u32,
    pub(super) shard_count: u32,
    pub(super) user_label: UserLabel,
}

impl DiscoverySettings {
    fn same_as(&self, other: &DiscoverySettings) -> bool {
        let label = match (&self.user_label, &other.user_label) {
            (UserLabel::Upn, UserLabel::Upn) => true,
            (UserLabel::Hash(a), UserLabel::Hash(b)) => a.expose_secret() == b.expose_secret(),
            _ => false,
        };
        label && self.shard_index == other.shard_index && self.shard_count == other.shard_count
    }

    pub(super) fn hashed(&self, upn: &str) -> Option<Box<str>> {
        match &self.user_label {
            UserLabel::Upn => None,
            UserLabel::Hash(key) => Some(hash_user(key.expose_secret(), upn)),
        }
    }
}

/// A discovered target and when its seat went, for `forget_after`.
#[derive(Debug)]
struct Discovered {
    target: Arc<Target>,
    /// Monotonic time of the first listing that showed the seat gone (not
    /// listed, or not active); `None` while it is active. Monotonic, so a
    /// wall-clock step never forgets a lost seat early.
    inactive_since: Option<tokio::time::Instant>,
}

/// What one complete listing means for a discovered target.
#[derive(Debug, Clone, PartialEq)]
pub struct Sighting {
    /// `assignedTo` as the Store spelled it.
    pub upn: String,
    /// The outcome to record.
    pub outcome: Outcome,
}

/// The targets of one complete listing, decided under the lock and recorded
/// by the caller after it is released.
#[derive(Debug, Default)]
pub struct DiscoveryPlan {
    /// Every target to record an outcome for.
    pub record: Vec<(Arc<Target>, Outcome)>,
    /// Targets seen for the first time.
    pub discovered: Vec<Arc<Target>>,
    /// Targets forgotten (lost for longer than `forget_after`).
    pub forgotten: Vec<Arc<Target>>,
    /// Lost targets forgotten before `forget_after` to keep the set within
    /// its limit.
    pub evicted: Vec<Arc<Target>>,
}

/// The discovered targets behind the set's lock.
#[derive(Debug, Default)]
struct Entries {
    /// Keyed by lower-cased `assignedTo`; ordered so the exposition is stable.
    by_upn: BTreeMap<String, Discovered>,
    /// Targets restored from a state file written with `user_label =
    /// "hash"`, which holds no UPN: keyed by their hashed label until a
    /// listing shows a seat whose UPN hashes to it. One that no listing
    /// shows is treated as unlisted, like any other target.
    unresolved: BTreeMap<Box<str>, Discovered>,
}

impl Entries {
    fn len(&self) -> usize {
        self.by_upn.len() + self.unresolved.len()
    }

    /// Every target, in exposition order: by UPN, then the unresolved.
    fn all(&self) -> impl Iterator<Item = &Discovered> {
        self.by_upn.values().chain(self.unresolved.values())
    }
}

/// A target restored from the state file (see [`Discovery::restore`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RestoredTarget {
    /// The UPN, or with `user_label = "hash"` the hashed label.
    pub id: String,
    /// Its saved state.
    pub state: TargetState,
    /// How long its seat had been gone when the state was saved, plus the
    /// time since; `None` while it was held.
    pub lost_for: Option<Duration>,
}

/// The targets of a `users = "all"` product (see the module header).
#[derive(Debug)]
pub struct Discovery {
    settings: DiscoverySettings,
    entries: Mutex<Entries>,
}

impl Discovery {
    fn new(settings: DiscoverySettings) -> Discovery {
        Discovery {
            settings,
            entries: Mutex::new(Entries::default()),
        }
    }

    fn entries(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current targets, in order. The lock is released on return.
    pub fn snapshot(&self) -> Vec<Arc<Target>> {
        let entries = self.entries();
        entries.all().map(|d| Arc::clone(&d.target)).collect()
    }

    /// The current targets with how long each one's seat has been gone at
    /// `now` (`None` while held), for the state file.
    pub fn saved(&self, now: tokio::time::Instant) -> Vec<(Arc<Target>, Option<Duration>)> {
        let entries = self.entries();
        entries
            .all()
            .map(|d| {
                let lost_for = d.inactive_since.map(|s| now.saturating_duration_since(s));
                (Arc::clone(&d.target), lost_for)
            })
            .collect()
    }

    /// Adds targets saved by an earlier run, before the first listing. With
    /// UPNs, targets another shard owns now are left out; with hashed
    /// labels the caller must have checked that the shard is unchanged, as
    /// ownership cannot be told from a label. A lost seat keeps its
    /// `forget_after` clock: `lost_for` before `now`. At most `limit`
    /// targets are kept. Returns how many were added.
    pub fn restore(
        &self,
        product: &Product,
        saved: Vec<RestoredTarget>,
        limit: usize,
        now: tokio::time::Instant,
    ) -> usize {
        let mut entries = self.entries();
        let mut added = 0;
        for r in saved {
            if entries.len() >= limit {
                break;
            }
            let inactive_since = r.lost_for.map(|d| now.checked_sub(d).unwrap_or(now));
            match &self.settings.user_label {
                UserLabel::Upn => {
                    let key = r.id.to_lowercase();
                    if !self.owns(product, &r.id) || entries.by_upn.contains_key(&key) {
                        continue;
                    }
                    let target = Arc::new(Target::new(&r.id, None, r.state));
                    let d = Discovered {
                        target,
                        inactive_since,
                    };
                    entries.by_upn.insert(key, d);
                }
                UserLabel::Hash(_) => {
                    let label: Box<str> = r.id.into();
                    if entries.unresolved.contains_key(&label) {
                        continue;
                    }
                    let target = Arc::new(Target::new("", Some(label.clone()), r.state));
                    let d = Discovered {
                        target,
                        inactive_since,
                    };
                    entries.unresolved.insert(label, d);
                }
            }
            added += 1;
        }
        added
    }

    /// Number of targets.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// Whether no target has been discovered (or all were forgotten).
    pub fn is_empty(&self) -> bool {
        self.entries().len() == 0
    }

    /// Whether this instance's shard watches `upn` of `product`.
    pub fn owns(&self, product: &Product, upn: &str) -> bool {
        let s = &self.settings;
        s.shard_count <= 1
            || shard_of(&product.product_id, &product.sku_id, upn, s.shard_count) == s.shard_index
    }

    /// Applies a complete listing. `seen` holds every seat of this shard the
    /// listing showed (keyed by lower-cased `assignedTo`); a known target
    /// missing from it gets `unlisted`. A seat seen for the first time
    /// becomes a target only if it is active (a revoked seat nobody here
    /// ever saw held is nothing to watch). A target whose seat has been gone
    /// for `forget_after`, measured from the listing that first showed it
    /// gone, is forgotten instead of recorded — so a lost seat is always
    /// exported at 0 until at least the next listing.
    ///
    /// The set holds at most `limit` targets (`max_discovered`; the listing
    /// never passes more than that many seats). When new seats would take
    /// it past the limit, lost targets make room, the longest lost first,
    /// before their `forget_after` (in [`DiscoveryPlan::evicted`]).
    pub fn plan(
        &self,
        seen: &HashMap<String, Sighting>,
        unlisted: &Outcome,
        forget_after: Duration,
        limit: usize,
        now: tokio::time::Instant,
    ) -> DiscoveryPlan {
        let held = |key: &str| seen.get(key).is_some_and(|s| is_held(&s.outcome));
        let mut plan = DiscoveryPlan::default();
        let mut guard = self.entries();
        if !guard.unresolved.is_empty() {
            self.resolve(&mut guard, seen);
        }
        let Entries {
            by_upn: entries,
            unresolved,
        } = &mut *guard;
        let new = seen
            .keys()
            .filter(|k| held(k) && !entries.contains_key(*k))
            .count();
        let excess = (entries.len() + unresolved.len() + new).saturating_sub(limit);
        if excess > 0 {
            evict(entries, unresolved, &held, excess, &mut plan);
        }
        entries.retain(|key, d| {
            let outcome = seen.get(key).map_or(unlisted, |s| &s.outcome);
            settle(d, outcome, now, forget_after, &mut plan)
        });
        unresolved.retain(|_, d| settle(d, unlisted, now, forget_after, &mut plan));
        for (key, sighting) in seen {
            if entries.contains_key(key)
                || !is_held(&sighting.outcome)
                || entries.len() + unresolved.len() >= limit
            {
                continue;
            }
            let target = Arc::new(Target::new(
                &sighting.upn,
                self.settings.hashed(&sighting.upn),
                TargetState::default(),
            ));
            entries.insert(
                key.clone(),
                Discovered {
                    target: Arc::clone(&target),
                    inactive_since: None,
                },
            );
            plan.record
                .push((Arc::clone(&target), sighting.outcome.clone()));
            plan.discovered.push(target);
        }
        plan
    }

    /// Gives restored targets known only by their hashed label the UPN of
    /// the listed seat that hashes to it, with their state and loss clock.
    /// Costs a hash per listed seat not yet known, and only while some
    /// restored target is unresolved.
    fn resolve(&self, entries: &mut Entries, seen: &HashMap<String, Sighting>) {
        for (key, sighting) in seen {
            if entries.unresolved.is_empty() {
                break;
            }
            if entries.by_upn.contains_key(key) {
                continue;
            }
            let Some(label) = self.settings.hashed(&sighting.upn) else {
                continue;
            };
            if let Some(d) = entries.unresolved.remove(&label) {
                let state = d.target.state().clone();
                let target = Arc::new(Target::new(&sighting.upn, Some(label), state));
                let resolved = Discovered {
                    target,
                    inactive_since: d.inactive_since,
                };
                entries.by_upn.insert(key.clone(), resolved);
            }
        }
    }
}

/// Whether an outcome says the seat is held.
fn is_held(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Conclusive { active: true, .. })
}

/// Makes room for `excess` new targets: lost ones go, those lost earlier
/// first (oldest `inactive_since`), then those lost in this listing (no
/// `inactive_since` yet). Unresolved restored targets are not listed, so
/// they count as lost.
fn evict(
    entries: &mut BTreeMap<String, Discovered>,
    unresolved: &mut BTreeMap<Box<str>, Discovered>,
    held: &dyn Fn(&str) -> bool,
    excess: usize,
    plan: &mut DiscoveryPlan,
) {
    type Candidate = (bool, Option<tokio::time::Instant>, bool, String);
    let mut lost: Vec<Candidate> = entries
        .iter()
        .filter(|(k, _)| !held(k))
        .map(|(k, d)| {
            (
                d.inactive_since.is_none(),
                d.inactive_since,
                false,
                k.clone(),
            )
        })
        .chain(unresolved.iter().map(|(k, d)| {
            (
                d.inactive_since.is_none(),
                d.inactive_since,
                true,
                k.to_string(),
            )
        }))
        .collect();
    lost.sort();
    for (_, _, restored, key) in lost.into_iter().take(excess) {
        let gone = if restored {
            unresolved.remove(key.as_str())
        } else {
            entries.remove(&key)
        };
        if let Some(d) = gone {
            plan.evicted.push(d.target);
        }
    }
}

/// Applies one listing's `outcome` to a discovered target's loss clock:
/// `false` when it is to be forgotten (lost for `forget_after`), else it is
/// queued for recording and kept.
fn settle(
    d: &mut Discovered,
    outcome: &Outcome,
    now: tokio::time::Instant,
    forget_after: Duration,
    plan: &mut DiscoveryPlan,
) -> bool {
    if is_held(outcome) {
        d.inactive_since = None;
    } else if let Some(since) = d.inactive_since {
        if now.saturating_duration_since(since) >= forget_after {
            plan.forgotten.push(Arc::clone(&d.target));
            return false;
        }
    } else {
        d.inactive_since = Some(now);
    }
    plan.record.push((Arc::clone(&d.target), outcome.clone()));
    true
}

/// The discovered set of a `users = "all"` product after a reload: the same
/// set when shard and label settings are unchanged (so a listing in flight
/// still lands in it), else a new set holding the previous targets that this
/// shard still owns, relabelled. Targets the product had in list or
/// per-user mode are taken over, so switching to discovery keeps their state.
pub(super) fn carry_discovery(
    product: &Product,
    prev: Option<&ProductGroup>,
    settings: &DiscoverySettings,
    kept: &HashMap<(&str, &str, String), Arc<Target>>,
) -> Arc<Discovery> {
    if let Some(d) = prev.and_then(|g| g.discovery.as_ref())
        && d.settings.same_as(settings)
    {
        return Arc::clone(d);
    }
    let fresh = Discovery::new(settings.clone());
    let Some(prev) = prev else {
        return Arc::new(fresh);
    };
    let old_since: HashMap<String, Option<tokio::time::Instant>> = prev
        .discovery
        .as_ref()
        .map(|d| {
            d.entries()
                .by_upn
                .iter()
                .map(|(k, e)| (k.clone(), e.inactive_since))
                .collect()
        })
        .unwrap_or_default();
    {
        let mut entries = fresh.entries();
        for t in prev.all_targets() {
            let key = t.upn.to_lowercase();
            // A restored target not yet resolved has no UPN to re-key or
            // relabel by: it is dropped like one of another shard.
            if t.upn.is_empty() || !fresh.owns(product, &t.upn) {
                continue;
            }
            let old = kept.get(&(
                product.product_id.as_str(),
                product.sku_id.as_str(),
                key.clone(),
            ));
            let target = carry(&t.upn, settings.hashed(&t.upn), old);
            let inactive_since = old_since.get(&key).copied().flatten();
            entries.by_upn.insert(
                key,
                Discovered {
                    target,
                    inactive_since,
                },
            );
        }
    }
    Arc::new(fresh)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::state::tests::conclusive;
    use crate::targets::{ErrorCode, Reason};

    fn sighting(upn: &str, active: bool) -> (String, Sighting) {
        (
            upn.to_lowercase(),
            Sighting {
                upn: upn.to_owned(),
                outcome: conclusive(active),
            },
        )
    }

    /// A set for one shard of one, and what a listing says of a seat it
    /// does not show.
    fn unsharded() -> (Discovery, Outcome) {
        let d = Discovery::new(DiscoverySettings {
            shard_index: 0,
            shard_count: 1,
            user_label: UserLabel::Upn,
        });
        let unlisted = Outcome::Conclusive {
            active: false,
            assigned_at: None,
            negative: Some((ErrorCode::Status(404), Reason::Seat)),
        };
        (d, unlisted)
    }

    #[test]
    fn discovery_assigns_revokes_and_forgets() {
        let (d, unlisted) = unsharded();
        let day = Duration::from_secs(86_400);
        let t0 = tokio::time::Instant::now();
        let apply = |plan: &DiscoveryPlan| {
            for (t, o) in &plan.record {
                t.state().record(o, 1.0);
            }
        };
        // A revoked seat nobody saw held is not a target.
        let seen: HashMap<_, _> = [sighting("Alice@X.Y", true), sighting("carol@x.y", false)]
            .into_iter()
            .collect();
        let plan = d.plan(&seen, &unlisted, day, 100, t0);
        apply(&plan);
        assert_eq!(plan.discovered.len(), 1);
        assert_eq!(plan.discovered[0].upn(), "Alice@X.Y");
        assert_eq!(d.len(), 1);
        // No longer listed: lost, kept at 0 until forget_after has passed
        // since the listing that first showed it gone.
        let none = HashMap::new();
        for (at, kept) in [
            (t0 + day, true),
            (t0 + 2 * day - Duration::from_secs(1), true),
        ] {
            let plan = d.plan(&none, &unlisted, day, 100, at);
            apply(&plan);
            assert!(plan.forgotten.is_empty());
            assert_eq!(d.len(), usize::from(kept));
        }
        let alice = d.snapshot().pop().unwrap();
        assert_eq!(alice.state().seat.map(|s| s.active), Some(false));
        assert_eq!(alice.state().lost_total, 1);
        let plan = d.plan(&none, &unlisted, day, 100, t0 + 2 * day);
        assert_eq!(plan.forgotten.len(), 1);
        assert!(plan.record.is_empty());
        assert!(d.is_empty());
        // Assigned again: a new target with fresh counters.
        let plan = d.plan(&seen, &unlisted, day, 100, t0 + 3 * day);
        apply(&plan);
        assert_eq!(plan.discovered.len(), 1);
        assert_eq!(d.snapshot()[0].state().lost_total, 0);
        // Reassigned within the window: the same target, clock reset.
        d.plan(&none, &unlisted, day, 100, t0 + 4 * day);
        let plan = d.plan(&seen, &unlisted, day, 100, t0 + 4 * day + day / 2);
        assert!(plan.discovered.is_empty());
        let plan = d.plan(&none, &unlisted, day, 100, t0 + 5 * day + day / 4);
        assert!(plan.forgotten.is_empty(), "the loss clock restarted");
    }

    #[test]
    fn a_full_set_makes_room_from_the_longest_lost() {
        let (d, unlisted) = unsharded();
        let day = Duration::from_secs(86_400);
        let t0 = tokio::time::Instant::now();
        let listing = |held: &[&str]| -> HashMap<String, Sighting> {
            held.iter().map(|u| sighting(u, true)).collect()
        };
        let names = |targets: &[Arc<Target>]| {
            let mut n: Vec<String> = targets.iter().map(|t| t.upn().to_owned()).collect();
            n.sort();
            n
        };
        // a and b are lost one after the other; c stays.
        d.plan(&listing(&["a", "b", "c"]), &unlisted, day, 3, t0);
        d.plan(
            &listing(&["b", "c"]),
            &unlisted,
            day,
            3,
            t0 + Duration::from_secs(60),
        );
        d.plan(
            &listing(&["c"]),
            &unlisted,
            day,
            3,
            t0 + Duration::from_secs(120),
        );
        assert_eq!(d.len(), 3);
        // d is new and the set is full: a, lost longest, makes room.
        let plan = d.plan(
            &listing(&["c", "d"]),
            &unlisted,
            day,
            3,
            t0 + Duration::from_secs(180),
        );
        assert_eq!(names(&plan.evicted), ["a"]);
        assert!(plan.forgotten.is_empty());
        assert_eq!(names(&d.snapshot()), ["b", "c", "d"]);
        // Two more new seats, with c now gone too: b (lost earlier) and then
        // c (lost in this very listing) make room.
        let plan = d.plan(
            &listing(&["d", "e", "f"]),
            &unlisted,
            day,
            3,
            t0 + Duration::from_secs(240),
        );
        assert_eq!(names(&plan.evicted), ["b", "c"]);
        assert_eq!(names(&d.snapshot()), ["d", "e", "f"]);
        // Held seats are never evicted: a seventh cannot get in.
        let plan = d.plan(
            &listing(&["d", "e", "f", "g"]),
            &unlisted,
            day,
            3,
            t0 + Duration::from_secs(300),
        );
        assert!(plan.evicted.is_empty());
        assert_eq!(d.len(), 3);
    }

    #[test]
    fn a_restored_loss_keeps_its_forget_after_clock() {
        let (d, unlisted) = unsharded();
        let day = Duration::from_secs(86_400);
        let t0 = tokio::time::Instant::now() + 3 * day;
        let product = Product {
            product_id: "P".into(),
            sku_id: "S".into(),
            name: None,
            mode: crate::config::Mode::List,
            discover: true,
            forget_after: day,
            max_pages: 10,
            max_discovered: 2,
        };
        let mut gone = TargetState::default();
        gone.record(&conclusive(true), 1.0);
        gone.record(&conclusive(false), 2.0);
        let restored = |id: &str, lost_for| RestoredTarget {
            id: id.into(),
            state: gone.clone(),
            lost_for,
        };
        let saved = vec![
            restored("Old@X.Y", Some(day - Duration::from_secs(60))),
            restored("new@x.y", Some(Duration::from_secs(60))),
            restored("over@x.y", None),
        ];
        // At most max_discovered are taken.
        assert_eq!(d.restore(&product, saved, 2, t0), 2);
        assert_eq!(d.snapshot()[0].upn(), "new@x.y");
        let plan = d.plan(
            &HashMap::new(),
            &unlisted,
            day,
            2,
            t0 + Duration::from_secs(60),
        );
        let forgotten: Vec<&str> = plan.forgotten.iter().map(|t| t.upn()).collect();
        assert_eq!(forgotten, ["Old@X.Y"]);
        assert_eq!(d.len(), 1);
    }
}
