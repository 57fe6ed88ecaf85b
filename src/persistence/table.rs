//! Between the target table and the file: what a save copies out of each
//! target, and what a load puts back. The table is touched only through
//! its public reads, [`Target::state`], and [`Discovery`](crate::targets::Discovery)'s
//! `saved`/`restore` pair, each holding one lock for a few field copies.

use std::collections::HashMap;
use std::io::{self, Write};
use std::time::Duration;

use secrecy::ExposeSecret;

use super::format::{Decoded, Encoder, FORMAT, Header, ProductLine, Record, VERSION};
use crate::config::{Config, UserLabel};
use crate::targets::{
    ProductGroup, RestoredTarget, Seat, Target, TargetState, TargetTable, hash_user,
};

/// What the file's target ids are (see [`Header::users`]). The key's
/// fingerprint is a keyed hash of a constant, so it tells keys apart
/// without revealing one.
pub(super) fn users_id(config: &Config) -> String {
    match &config.metrics.user_label {
        UserLabel::Upn => "upn".into(),
        UserLabel::Hash(key) => format!(
            "hash:{}",
            hash_user(key.expose_secret(), "msfb_seat_exporter state file")
        ),
    }
}

/// What a save copies out of one target under its lock.
struct Copied {
    active: bool,
    at: f64,
    assigned_at: Option<f64>,
    lost_total: u64,
    ok: bool,
}

/// A target's saved fields; `None` before its first conclusive check
/// (nothing worth keeping: it starts unknown again).
fn copy(t: &Target) -> Option<Copied> {
    let s = t.state();
    let seat = s.seat?;
    Some(Copied {
        active: seat.active,
        at: s.last_success_at?,
        assigned_at: seat.assigned_at,
        lost_total: s.lost_total,
        ok: s.last_check_ok,
    })
}

/// Unix seconds to the millisecond, which keeps a time at 14 characters.
fn ms(t: f64) -> f64 {
    (t * 1000.0).round() / 1000.0
}

/// Writes the whole table. Returns the number of targets written.
///
/// # Errors
/// Those of `w`.
pub(super) fn write(
    w: &mut dyn Write,
    table: &TargetTable,
    config: &Config,
    clean: bool,
    now_unix: f64,
    now: tokio::time::Instant,
) -> io::Result<usize> {
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        saved_at: ms(now_unix),
        clean,
        users: users_id(config),
        shard: [config.poll.shard_index, config.poll.shard_count],
        products: table.groups.len(),
    };
    let mut enc = Encoder::new(w, &header)?;
    let mut targets = 0;
    for g in &table.groups {
        targets += write_group(&mut enc, g, now_unix, now)?;
    }
    enc.finish()?;
    Ok(targets)
}

fn write_group(
    enc: &mut Encoder<&mut dyn Write>,
    g: &ProductGroup,
    now_unix: f64,
    now: tokio::time::Instant,
) -> io::Result<usize> {
    let discovered = g
        .discovery
        .as_ref()
        .map(|d| d.saved(now))
        .unwrap_or_default();
    let rows: Vec<(&Target, Copied, Option<Duration>)> = g
        .targets
        .iter()
        .map(|t| (&**t, None))
        .chain(discovered.iter().map(|(t, lost_for)| (&**t, *lost_for)))
        .filter_map(|(t, lost_for)| copy(t).map(|c| (t, c, lost_for)))
        .collect();
    enc.product(&ProductLine {
        product_id: g.product.product_id.clone(),
        sku_id: g.product.sku_id.clone(),
        discovery: g.discovery.is_some(),
        targets: rows.len(),
    })?;
    for (t, c, lost_for) in &rows {
        enc.record(&Record(
            t.user_label().into(),
            u8::from(c.active),
            ms(c.at),
            c.assigned_at.map(ms),
            c.lost_total,
            u8::from(c.ok),
            lost_for.map(|d| ms(now_unix - d.as_secs_f64())),
        ))?;
    }
    Ok(rows.len())
}

/// What a load put into the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Targets that got their saved state.
    pub restored: usize,
    /// Saved targets left out: no longer configured, another shard's, or
    /// past `max_discovered`.
    pub dropped: usize,
    /// Whether every configured target and every discovery product was in
    /// the file, so that `/-/ready` need not wait for a first check.
    pub complete: bool,
}

/// Why nothing in a readable file applies.
#[derive(Debug, thiserror::Error)]
#[error(
    "the file was saved with user ids {saved:?} and this configuration makes {now:?} (user_label or its key changed)"
)]
pub struct Mismatch {
    saved: String,
    now: String,
}

/// The saved state of a target. After an unclean stop (`clean` false) a
/// seat saved as not active is withheld (unknown until its first check)
/// while its loss count is kept: the exporter may have found it active
/// again after the save and shown that, and exporting the stale 0 would
/// then be a 1 → 0 the Store never gave. A stale 1 is harmless: it can
/// only stand for a seat that was shown at 1 and has since gone, which the
/// first check reports as the loss it is.
fn state_of(r: &Record<'_>, clean: bool) -> TargetState {
    let active = r.1 == 1;
    if !active && !clean {
        return TargetState {
            lost_total: r.4,
            ..TargetState::default()
        };
    }
    TargetState {
        seat: Some(Seat {
            active,
            assigned_at: if active { r.3 } else { None },
        }),
        last_check_at: Some(r.2),
        last_check_ok: r.5 == 1,
        last_success_at: Some(r.2),
        lost_total: r.4,
        ..TargetState::default()
    }
}

/// The key a saved id and a target are matched by: the UPN in any case, or
/// the hashed label (which is already of the lower-cased UPN).
fn match_key(id: &str, hashed: bool) -> String {
    if hashed {
        id.to_owned()
    } else {
        id.to_lowercase()
    }
}

/// Puts a decoded file into a freshly built table: configured targets by
/// id, discovered ones into their product's set (see the module header).
///
/// # Errors
/// [`Mismatch`] when the file's ids are not of this configuration's kind.
pub(super) fn apply(
    file: Decoded,
    table: &TargetTable,
    config: &Config,
    now_unix: f64,
    now: tokio::time::Instant,
) -> Result<Applied, Mismatch> {
    let users = users_id(config);
    if file.header.users != users {
        return Err(Mismatch {
            saved: file.header.users,
            now: users,
        });
    }
    let hashed = matches!(config.metrics.user_label, UserLabel::Hash(_));
    let clean = file.header.clean;
    let same_shard = file.header.shard == [config.poll.shard_index, config.poll.shard_count];
    let total: usize = file.products.iter().map(|(_, r)| r.len()).sum();
    let mut saved: HashMap<(String, String), (ProductLine, Vec<Record<'static>>)> = file
        .products
        .into_iter()
        .map(|(p, r)| ((p.product_id.clone(), p.sku_id.clone()), (p, r)))
        .collect();
    let mut applied = Applied {
        restored: 0,
        dropped: 0,
        complete: true,
    };
    for g in &table.groups {
        let key = (g.product.product_id.clone(), g.product.sku_id.clone());
        let Some((line, records)) = saved.remove(&key) else {
            applied.complete &= g.targets.is_empty() && g.discovery.is_none();
            continue;
        };
        let mut by_id: HashMap<String, Record<'static>> = records
            .into_iter()
            .map(|r| (match_key(&r.0, hashed), r))
            .collect();
        for t in &g.targets {
            let id = if hashed { t.user_label() } else { t.upn() };
            match by_id.remove(&match_key(id, hashed)) {
                Some(r) => {
                    *t.state() = state_of(&r, clean);
                    applied.restored += 1;
                }
                None => applied.complete = false,
            }
        }
        let Some(d) = &g.discovery else { continue };
        applied.complete &= line.discovery;
        // A hashed label does not tell which shard owns the seat.
        if hashed && !same_shard {
            continue;
        }
        let lost_for = |at: f64| Duration::try_from_secs_f64((now_unix - at).max(0.0)).ok();
        let items = by_id
            .into_values()
            .map(|r| RestoredTarget {
                state: state_of(&r, clean),
                lost_for: r.6.map(|at| lost_for(at).unwrap_or(Duration::ZERO)),
                id: r.0.into_owned(),
            })
            .collect();
        applied.restored += d.restore(&g.product, items, g.product.max_discovered, now);
    }
    applied.dropped = total - applied.restored;
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config;
    use crate::persistence::format::decode;
    use crate::targets::{
        Discovery, DiscoveryPlan, ErrorCode, Outcome, Reason, Sighting, Transition,
    };

    const USERS: [&str; 3] = ["Alice@X.Y", "bob@x.y", "carol@x.y"];

    /// A per-user product with [`USERS`] and a discovery product, labelled
    /// by UPN or (with a `hash` key) by keyed hash; the key file sits in
    /// `dir`.
    fn config(dir: &std::path::Path, hash: Option<&str>) -> Config {
        let key = dir.join("key");
        std::fs::write(&key, format!("{}\n", hash.unwrap_or("unused"))).unwrap();
        let metrics = match hash {
            Some(_) => format!(
                "[metrics]\nuser_label = \"hash\"\nuser_hash_key_file = {:?}\n\n",
                key.display().to_string()
            ),
            None => String::new(),
        };
        let users: Vec<String> = USERS.iter().map(|u| format!("{u:?}")).collect();
        config::for_tests(&format!(
            "{metrics}[[products]]\nproduct_id = \"P\"\nsku_id = \"0016\"\nusers = [{}]\n\n\
             [[products]]\nproduct_id = \"D\"\nsku_id = \"0001\"\nmode = \"list\"\nusers = \"all\"\n",
            users.join(", ")
        ))
    }

    fn seat(active: bool) -> Outcome {
        Outcome::Conclusive {
            active,
            assigned_at: active.then_some(1_700_000_000.25),
            negative: None,
        }
    }

    fn unlisted() -> Outcome {
        Outcome::Conclusive {
            active: false,
            assigned_at: None,
            negative: Some((ErrorCode::Status(404), Reason::Seat)),
        }
    }

    fn listing(held: &[&str]) -> HashMap<String, Sighting> {
        held.iter()
            .map(|u| {
                let s = Sighting {
                    upn: (*u).to_owned(),
                    outcome: seat(true),
                };
                (u.to_lowercase(), s)
            })
            .collect()
    }

    /// Alice held, bob lost, carol never checked; discovered x held and y
    /// lost an hour before `now`.
    fn run_before(table: &TargetTable, now: tokio::time::Instant) {
        let t = &table.groups[0].targets;
        t[0].state().record(&seat(true), 100.0);
        t[1].state().record(&seat(true), 100.0);
        t[1].state().record(&seat(false), 200.0);
        let d = table.groups[1].discovery.as_ref().unwrap();
        let hour = Duration::from_secs(3600);
        for (held, at) in [
            (&["x@d.e", "y@d.e"][..], now - 2 * hour),
            (&["x@d.e"], now - hour),
        ] {
            let plan = d.plan(&listing(held), &unlisted(), 24 * hour, 100, at);
            for (t, o) in plan.record {
                t.state().record(&o, 300.0);
            }
        }
    }

    /// A table run as in [`run_before`] and saved (cleanly, or as a save
    /// at the end of a cycle before a crash), with what it was built from.
    struct Saved {
        dir: tempfile::TempDir,
        config: Config,
        before: TargetTable,
        bytes: Vec<u8>,
        now: tokio::time::Instant,
    }

    fn saved(hash: Option<&str>, clean: bool) -> Saved {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), hash);
        let before = TargetTable::build(&config, None);
        let now = tokio::time::Instant::now() + Duration::from_secs(7200);
        run_before(&before, now);
        let mut bytes = Vec::new();
        let n = write(&mut bytes, &before, &config, clean, 10_000.0, now).unwrap();
        assert_eq!(n, 4, "carol has nothing to save");
        Saved {
            dir,
            config,
            before,
            bytes,
            now,
        }
    }

    impl Saved {
        /// The file loaded into a fresh table built from `config`.
        fn load(&self, config: &Config) -> (TargetTable, Result<Applied, Mismatch>) {
            let after = TargetTable::build(config, None);
            let file = decode(&self.bytes).unwrap();
            let applied = apply(file, &after, config, 10_000.0, self.now);
            (after, applied)
        }
    }

    /// The plan of a listing at `now` that shows `held`.
    fn relist(d: &Discovery, held: &[&str], now: tokio::time::Instant) -> DiscoveryPlan {
        let forget_after = Duration::from_secs(86_400);
        d.plan(&listing(held), &unlisted(), forget_after, 100, now)
    }

    /// How long each discovered seat has been gone at `now`.
    fn loss_clocks(d: &Discovery, now: tokio::time::Instant) -> Vec<Option<Duration>> {
        d.saved(now).into_iter().map(|(_, l)| l).collect()
    }

    fn seats(table: &TargetTable) -> Vec<(String, Option<bool>, u64)> {
        table
            .iter()
            .map(|(_, t)| {
                let s = t.state();
                (
                    t.user_label().to_owned(),
                    s.seat.map(|s| s.active),
                    s.lost_total,
                )
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_restart_restores_every_seat_counter_and_loss_clock() {
        let s = saved(None, true);
        let (after, applied) = s.load(&s.config);
        assert_eq!(
            applied.unwrap(),
            Applied {
                restored: 4,
                dropped: 0,
                // carol was never checked: readiness waits for her.
                complete: false
            }
        );
        assert_eq!(seats(&after), seats(&s.before));
        let alice = after.groups[0].targets[0].state().clone();
        assert_eq!(alice.last_success_at, Some(100.0));
        assert_eq!(alice.seat.unwrap().assigned_at, Some(1_700_000_000.25));
        assert!(alice.last_check_ok && alice.last_check_at.is_some());
        // y's seat went an hour ago: the clock goes on from there.
        let d = after.groups[1].discovery.as_ref().unwrap();
        assert_eq!(
            loss_clocks(d, s.now),
            [None, Some(Duration::from_secs(3600))]
        );
        // And x, saved held, gone from the first listing: a loss.
        let plan = relist(d, &[], s.now);
        let x = plan
            .record
            .iter()
            .find(|(t, _)| t.upn() == "x@d.e")
            .unwrap();
        assert_eq!(x.0.state().record(&x.1, 10_001.0), Transition::Lost);
        assert_eq!(x.0.state().lost_total, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn hashed_state_holds_no_upn_and_finds_its_seats_again() {
        let s = saved(Some("k3y"), true);
        let text = String::from_utf8(s.bytes.clone()).unwrap().to_lowercase();
        for upn in USERS.iter().chain(&["x@d.e", "y@d.e"]) {
            let local = upn.split('@').next().unwrap().to_lowercase();
            assert!(!text.contains(&format!("{local}@")), "{upn} in\n{text}");
        }
        let (after, applied) = s.load(&s.config);
        assert_eq!(applied.unwrap().restored, 4);
        assert_eq!(seats(&after), seats(&s.before));
        // x is listed again: it gets its UPN back with its state; y, not
        // listed, stays lost without a second loss.
        let d = after.groups[1].discovery.as_ref().unwrap();
        let plan = relist(d, &["x@d.e"], s.now);
        for (t, o) in &plan.record {
            assert_eq!(t.state().record(o, 10_001.0), Transition::None);
        }
        assert!(plan.discovered.is_empty());
        let upns: Vec<String> = d.snapshot().iter().map(|t| t.upn().to_owned()).collect();
        assert_eq!(upns, ["x@d.e", ""]);
        // The same file under another key restores nothing.
        let other = s.dir.path().join("other");
        std::fs::create_dir(&other).unwrap();
        let mut rekeyed = s.config.clone();
        rekeyed.metrics = config(&other, Some("another")).metrics;
        assert!(s.load(&rekeyed).1.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn targets_no_longer_configured_are_dropped() {
        let s = saved(None, true);
        let mut fewer = s.config.clone();
        fewer.products[0].users.retain(|u| u != "bob@x.y");
        fewer.products.truncate(1);
        let (after, applied) = s.load(&fewer);
        let applied = applied.unwrap();
        assert_eq!((applied.restored, applied.dropped), (1, 3));
        assert_eq!(after.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_crash_only_held_seats_are_shown_at_once() {
        let s = saved(None, false);
        let (after, applied) = s.load(&s.config);
        assert_eq!(applied.unwrap().restored, 4);
        // bob and y were saved at 0: unknown until checked, losses kept.
        let want = [
            ("Alice@X.Y", Some(true), 0),
            ("bob@x.y", None, 1),
            ("carol@x.y", None, 0),
            ("x@d.e", Some(true), 0),
            ("y@d.e", None, 1),
        ];
        let want: Vec<(String, Option<bool>, u64)> = want
            .iter()
            .map(|(u, a, l)| ((*u).to_owned(), *a, *l))
            .collect();
        assert_eq!(seats(&after), want);
        // y keeps its loss clock, and its first listing is no second loss.
        let d = after.groups[1].discovery.as_ref().unwrap();
        let plan = relist(d, &["x@d.e"], s.now);
        for (t, o) in &plan.record {
            let transition = t.state().record(o, 10_001.0);
            assert!(!matches!(transition, Transition::Lost), "{}", t.upn());
        }
        assert_eq!(
            loss_clocks(d, s.now),
            [None, Some(Duration::from_secs(3600))]
        );
    }
}
