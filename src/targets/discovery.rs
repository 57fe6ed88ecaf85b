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

/// The targets of a `users = "all"` product (see the module header).
#[derive(Debug)]
pub struct Discovery {
    settings: DiscoverySettings,
    /// Keyed by lower-cased `assignedTo`; ordered so the exposition is stable.
    entries: Mutex<BTreeMap<String, Discovered>>,
}

impl Discovery {
    fn new(settings: DiscoverySettings) -> Discovery {
        Discovery {
            settings,
            entries: Mutex::new(BTreeMap::new()),
        }
    }

    fn entries(&self) -> MutexGuard<'_, BTreeMap<String, Discovered>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current targets, in order. The lock is released on return.
    pub fn snapshot(&self) -> Vec<Arc<Target>> {
        self.entries()
            .values()
            .map(|d| Arc::clone(&d.target))
            .collect()
    }

    /// Number of targets.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// Whether no target has been discovered (or all were forgotten).
    pub fn is_empty(&self) -> bool {
        self.entries().is_empty()
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
        let held = |key: &str| {
            seen.get(key)
                .is_some_and(|s| matches!(s.outcome, Outcome::Conclusive { active: true, .. }))
        };
        let mut plan = DiscoveryPlan::default();
        let mut entries = self.entries();
        let new = seen
            .keys()
            .filter(|k| held(k) && !entries.contains_key(*k))
            .count();
        let excess = (entries.len() + new).saturating_sub(limit);
        if excess > 0 {
            // Lost earlier first (oldest `inactive_since`), then those lost
            // in this listing (no `inactive_since` yet).
            let mut lost: Vec<(bool, Option<tokio::time::Instant>, String)> = entries
                .iter()
                .filter(|(k, _)| !held(k))
                .map(|(k, d)| (d.inactive_since.is_none(), d.inactive_since, k.clone()))
                .collect();
            lost.sort();
            for (_, _, key) in lost.into_iter().take(excess) {
                if let Some(d) = entries.remove(&key) {
                    plan.evicted.push(d.target);
                }
            }
        }
        entries.retain(|key, d| {
            let outcome = seen.get(key).map_or(unlisted, |s| &s.outcome);
            let active = matches!(outcome, Outcome::Conclusive { active: true, .. });
            if active {
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
        });
        for (key, sighting) in seen {
            if entries.contains_key(key)
                || !matches!(sighting.outcome, Outcome::Conclusive { active: true, .. })
                || entries.len() >= limit
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
                .iter()
                .map(|(k, e)| (k.clone(), e.inactive_since))
                .collect()
        })
        .unwrap_or_default();
    {
        let mut entries = fresh.entries();
        for t in prev.all_targets() {
            let key = t.upn.to_lowercase();
            if !fresh.owns(product, &t.upn) {
                continue;
            }
            let old = kept.get(&(
                product.product_id.as_str(),
                product.sku_id.as_str(),
                key.clone(),
            ));
            let target = carry(&t.upn, settings.hashed(&t.upn), old);
            let inactive_since = old_since.get(&key).copied().flatten();
            entries.insert(
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
}
