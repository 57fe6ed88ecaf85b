//! Persistence (SPEC §13): the binary stopped, killed and restarted over one
//! state file while the fake Store's seats change in between. Restored
//! values are served before any new check, a seat that went while the
//! exporter was down is counted lost, bad files are moved aside, failed
//! saves are counted, and no `kill -9` ever yields a loss the Store did not
//! give.

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::time::Duration;

use msfb_seat_exporter::fake_store::{Action, FakeSeat, FakeStore, Fault, Match};
use msfb_seat_exporter::targets::hash_user;

use crate::util::process::assert_refused_exactly;
use crate::util::restart::{Daemon, HASH_KEY, PATIENCE, Restarts, products};
use crate::util::{ALICE, BOB, CAROL, P, S, Scrape, eventually};

fn restored(scrape: &Scrape) -> Option<f64> {
    scrape.value("msfb_seat_exporter_persistence_restored_targets", &[])
}

/// Alice and carol held, bob revoked, each configured (`per_user`), with
/// `metrics` in `[metrics]`.
async fn three_users(metrics: &str) -> Restarts {
    let s = Restarts::new(&products("per_user", Some(&[ALICE, BOB, CAROL])), metrics).await;
    s.fake.set_seat(P, S, ALICE, FakeSeat::active());
    s.fake.set_seat(P, S, BOB, FakeSeat::revoked());
    s.fake.set_seat(P, S, CAROL, FakeSeat::active());
    s
}

#[tokio::test]
async fn saved_values_are_served_at_once_after_a_restart() {
    let s = three_users("").await;
    let first = s.start().await;
    first.wait_for_saves(1).await;
    let before = first.scrape().await;
    first.stop().await;
    let mode = std::fs::metadata(s.state()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // Every check now hangs: whatever /metrics shows comes from the file.
    s.fake.add_fault(Fault::always(
        Match::AllSeats,
        Action::Delay(Duration::from_secs(60)),
    ));
    let second = s.start().await;
    assert_eq!(second.get("/-/ready").await.0, 200);
    let after = second.scrape().await;
    for (user, active) in [(ALICE, 1.0), (BOB, 0.0), (CAROL, 1.0)] {
        assert_eq!(after.active(user), Some(active), "{user}");
        assert_eq!(after.success(user), Some(1.0), "{user}");
        let stamp = |s: &Scrape| {
            s.value(
                "msfb_seat_last_success_timestamp_seconds",
                &[("user", user)],
            )
        };
        let (was, is) = (stamp(&before).unwrap(), stamp(&after).unwrap());
        assert!((was - is).abs() < 0.001, "{user}: {was} then {is}");
    }
    assert_eq!(restored(&after), Some(3.0));
    assert_eq!(after.api("get_seat", "200"), None, "no check has completed");
    second.stop().await;
}

/// A seat revoked while the exporter is stopped is a loss at the first
/// check after the restart, in per-user and list mode.
async fn revoked_while_stopped(mode: &str) {
    let s = Restarts::new(&products(mode, Some(&[ALICE, BOB, CAROL])), "").await;
    s.fake.set_seat(P, S, ALICE, FakeSeat::active());
    s.fake.set_seat(P, S, BOB, FakeSeat::active());
    s.fake.add_user(CAROL);
    s.save_once().await;
    s.fake.remove_seat(P, S, BOB);
    let second = s.start().await;
    second.wait_for("seat lost", |e| e["user"] == BOB).await;
    let m = second.scrape().await;
    assert_eq!(m.active(BOB), Some(0.0));
    assert_eq!(m.lost(BOB), Some(1.0));
    assert_eq!(m.active(ALICE), Some(1.0));
    assert_eq!(m.lost(ALICE).unwrap_or(0.0), 0.0);
    let lines = second.stop().await;
    let losses = lines.iter().filter(|l| l.contains("\"seat lost\"")).count();
    assert_eq!(losses, 1, "{lines:#?}");
}

#[tokio::test]
async fn a_seat_revoked_while_stopped_is_lost_after_restart() {
    revoked_while_stopped("per_user").await;
}

#[tokio::test]
async fn a_listed_seat_revoked_while_stopped_is_lost_after_restart() {
    revoked_while_stopped("list").await;
}

/// Discovery: a seat gone from the first listing after the restart is a
/// loss, and stays exported at 0; with hashed labels the file holds no UPN.
async fn discovered_seat_gone_while_stopped(metrics: &str, label: impl Fn(&str) -> String) {
    let s = Restarts::new(&products("list", None), metrics).await;
    s.fake.set_seat(P, S, ALICE, FakeSeat::active());
    s.fake.set_seat(P, S, BOB, FakeSeat::active());
    s.save_once().await;
    s.fake.remove_seat(P, S, BOB);
    // No listing completes until the restored values have been seen.
    s.fake.add_fault(Fault::always(
        Match::AllListings,
        Action::Delay(Duration::from_secs(60)),
    ));
    let second = s.start().await;
    let early = second.scrape().await;
    assert_eq!(early.active(&label(BOB)), Some(1.0), "restored at once");
    s.fake.clear_faults();
    second
        .wait_for("seat lost", |e| e["user"] == label(BOB))
        .await;
    let m = second.scrape().await;
    assert_eq!(m.active(&label(BOB)), Some(0.0));
    assert_eq!(m.lost(&label(BOB)), Some(1.0));
    assert_eq!(m.active(&label(ALICE)), Some(1.0));
    second.stop().await;
    // After a third start, bob is still there at 0, lost once.
    let third = s.start().await;
    let m = third.scrape().await;
    assert_eq!(m.active(&label(BOB)), Some(0.0));
    assert_eq!(m.lost(&label(BOB)), Some(1.0));
    third.stop().await;
}

#[tokio::test]
async fn a_discovered_seat_gone_while_stopped_is_lost_after_restart() {
    discovered_seat_gone_while_stopped("", |u| u.to_owned()).await;
}

#[tokio::test]
async fn hashed_labels_keep_upns_out_of_the_file() {
    let metrics = "user_label = \"hash\"\nuser_hash_key_file = \"hash_key\"";
    discovered_seat_gone_while_stopped(metrics, |u| hash_user(HASH_KEY, u).into()).await;
    // The same with configured users, whose file is greped too.
    let s = three_users(metrics).await;
    s.save_once().await;
    let bytes = std::fs::read(s.state()).unwrap();
    let text = String::from_utf8_lossy(&bytes).to_lowercase();
    for needle in ["alice", "bob", "carol", "contoso", "@"] {
        assert!(!text.contains(needle), "{needle} in {text}");
    }
    assert!(text.contains(&*hash_user(HASH_KEY, ALICE)));
}

#[tokio::test]
async fn targets_no_longer_configured_are_dropped() {
    let s = three_users("").await;
    s.save_once().await;
    s.write_config(&products("per_user", Some(&[ALICE, CAROL])), "", "state");
    s.fake.add_fault(Fault::always(
        Match::AllSeats,
        Action::Delay(Duration::from_secs(60)),
    ));
    let second = s.start().await;
    let m = second.scrape().await;
    assert_eq!(restored(&m), Some(2.0));
    assert!(m.find("msfb_seat_active", &[("user", BOB)]).is_empty());
    assert_eq!(m.active(CAROL), Some(1.0));
    second.stop().await;
}

/// Writes `bytes` as the state file (`None`: a file nobody but its owner,
/// root, can read) and checks that the exporter moves it aside, starts
/// empty, counts no loss, and saves a good file again.
async fn unusable(s: &Restarts, case: &str, bytes: Option<&[u8]>) {
    let _ = std::fs::remove_file(s.state().with_extension("corrupt"));
    let as_user = match bytes {
        Some(b) => {
            std::fs::write(s.state(), b).unwrap();
            None
        }
        None => {
            std::fs::write(s.state(), "private").unwrap();
            std::fs::set_permissions(s.state(), std::fs::Permissions::from_mode(0o000)).unwrap();
            // Root reads anything: run as nobody then, in a directory it may
            // write (it must be able to move the file aside and save).
            std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
            // SAFETY: geteuid(2) has no preconditions.
            (unsafe { libc::geteuid() } == 0).then_some(65534)
        }
    };
    let d = s.start_as(as_user).await;
    let warning = d
        .wait_for(
            "saved seat state unusable; moved aside, starting empty",
            |_| true,
        )
        .await;
    assert_eq!(warning["level"], "WARN", "{case}");
    let aside = PathBuf::from(format!("{}.corrupt", s.state().display()));
    assert_eq!(warning["moved_to"], aside.display().to_string(), "{case}");
    if let Some(b) = bytes {
        assert_eq!(std::fs::read(&aside).unwrap(), b, "{case}");
    }
    let m = d.scrape().await;
    assert_eq!(restored(&m), Some(0.0), "{case}");
    d.wait_for_saves(1).await;
    let m = d.scrape().await;
    assert_eq!(m.active(ALICE), Some(1.0), "{case}");
    assert_eq!(m.lost(ALICE).unwrap_or(0.0), 0.0, "{case}");
    d.stop().await;
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let again = s.start().await;
    assert_eq!(
        restored(&again.scrape().await),
        Some(3.0),
        "{case}: saved again"
    );
    again.stop().await;
}

#[tokio::test]
async fn unusable_files_are_moved_aside_and_the_exporter_starts_empty() {
    let s = three_users("").await;
    s.save_once().await;
    let good = std::fs::read(s.state()).unwrap();
    let mut flipped = good.clone();
    let at = good.len() / 2;
    flipped[at] ^= 0x01;
    let future =
        String::from_utf8(good.clone())
            .unwrap()
            .replacen("\"version\":1", "\"version\":99", 1);
    let cases: [(&str, Option<&[u8]>); 6] = [
        ("empty", Some(b"")),
        ("truncated", Some(&good[..good.len() * 2 / 3])),
        (
            "cut at a line end",
            Some(
                &good[..=good[..good.len() - 1]
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .unwrap()],
            ),
        ),
        ("corrupt", Some(&flipped)),
        ("future version", Some(future.as_bytes())),
        ("unreadable", None),
    ];
    for (case, bytes) in cases {
        unusable(&s, case, bytes).await;
    }
}

#[tokio::test]
async fn failed_saves_are_counted_and_the_exporter_goes_on() {
    let s = three_users("").await;
    // A directory the exporter may not write: as root, run it as nobody.
    let state_dir = s.dir.path().join("ro");
    std::fs::create_dir(&state_dir).unwrap();
    std::fs::set_permissions(&state_dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    s.write_config(
        &products("per_user", Some(&[ALICE, BOB, CAROL])),
        "",
        "ro/state",
    );
    // SAFETY: geteuid(2) has no preconditions.
    let as_user = (unsafe { libc::geteuid() } == 0).then_some(65534);
    let d = s.start_as(as_user).await;
    d.wait_for(
        "saving the seat state failed; the previous file is kept",
        |e| e["level"] == "WARN",
    )
    .await;
    let m = d.scrape().await;
    let failures = m.value("msfb_seat_exporter_persistence_save_failures_total", &[]);
    assert!(failures.unwrap_or(0.0) >= 1.0, "{failures:?}");
    assert!(
        m.find(
            "msfb_seat_exporter_persistence_last_save_success_timestamp_seconds",
            &[]
        )
        .is_empty()
    );
    assert_eq!(m.active(ALICE), Some(1.0));
    assert_eq!(d.get("/-/healthy").await.0, 200);
    d.stop().await;
    assert!(!state_dir.join("state").exists());
}

#[tokio::test]
async fn a_reload_changing_the_file_takes_effect_at_the_next_save() {
    let s = three_users("").await;
    let d = s.start().await;
    d.wait_for_saves(1).await;
    s.write_config(
        &products("per_user", Some(&[ALICE, BOB, CAROL, "dave@contoso.com"])),
        "",
        "moved",
    );
    d.signal(libc::SIGHUP);
    d.wait_for("configuration reloaded", |_| true).await;
    // The reload added dave: the cycle that checks him ends with a save.
    eventually("a save to the new file", PATIENCE, || async {
        if s.dir.path().join("moved").exists() {
            Ok(())
        } else {
            Err(d.lines.lock().unwrap().join("\n"))
        }
    })
    .await;
    d.stop().await;
    let again = s.start().await;
    assert_eq!(restored(&again.scrape().await), Some(4.0));
    again.stop().await;
}

#[test]
fn the_examples_commented_state_file_is_valid() {
    let dir = crate::util::temp_dir(&[("secret", "s")]);
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml.example"),
    )
    .unwrap();
    let shown = "\n# file = \"/var/lib/msfb_seat_exporter/state\"\n";
    assert_eq!(
        example.matches(shown).count(),
        1,
        "shown once, commented out"
    );
    let text = example
        .replace(shown, "\nfile = \"state\"\n")
        .replace("$CREDENTIALS_DIRECTORY/client_secret", "secret");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    let config = crate::util::load_with_env(&path, &[]).expect("valid");
    assert_eq!(config.persistence.file, Some(dir.path().join("state")));
}

#[test]
fn a_state_file_in_a_missing_directory_is_a_config_error() {
    let dir = crate::util::temp_dir(&[("secret", "s")]);
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        "[auth]\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret_file = \"secret\"\n\n\
         [persistence]\nfile = \"nowhere/state\"\n\n\
         [[products]]\nproduct_id = \"P\"\nsku_id = \"S\"\nusers = [\"a@b.c\"]\n",
    )
    .unwrap();
    let check = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_msfb_seat_exporter"))
            .arg(format!("--config.file={}", path.display()))
            .arg("--config.check")
            .args(extra)
            .output()
            .unwrap()
    };
    let out = check(&[]);
    let want = format!(
        "msfb_seat_exporter: {}:7: persistence.file: {}: the directory {} does not exist\n",
        path.display(),
        dir.path().join("nowhere/state").display(),
        dir.path().join("nowhere").display()
    );
    assert_refused_exactly(&out, &want);
    // The flag overrides the file, relative to the working directory.
    let state = dir.path().join("state");
    let out = check(&[&format!("--persistence.file={}", state.display())]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // A bad flag is blamed on the flag, not on a line of the file.
    let out = check(&["--persistence.file=/nonexistent-dir/state"]);
    assert_refused_exactly(
        &out,
        "msfb_seat_exporter: --persistence.file: /nonexistent-dir/state: \
         the directory /nonexistent-dir does not exist\n",
    );
}

/// The discovery product of the crash suite.
const DP: &str = "9WZDNCRFJ3PS";
const DS: &str = "0010";

/// What the crash suite knows of one seat: the fake's state now, whether it
/// was not active at any time since the exporter last showed it, and what
/// the exporter last showed.
#[derive(Default)]
struct Watch {
    active: bool,
    gone_since_seen: bool,
    seen: Option<f64>,
}

/// Kills the exporter at random moments: half the runs anywhere in their
/// first second and a half, half right after a cycle ends, when the save
/// starts. Between runs some seats change. After every restart the file
/// must load, and no `msfb_seat_active` may go from 1 to 0 without the
/// fake having taken that seat away since it was last seen at 1.
#[tokio::test]
async fn kill_9_at_random_moments_never_yields_a_false_loss() {
    use rand::rngs::StdRng;
    use rand::{RngExt as _, SeedableRng as _};

    let seed: u64 = rand::random();
    let mut rng = StdRng::seed_from_u64(seed);
    let users: Vec<String> = (0..40).map(|i| format!("user{i:02}@contoso.com")).collect();
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    let config = format!(
        "{}\n[[products]]\nproduct_id = \"{DP}\"\nsku_id = \"{DS}\"\nmode = \"list\"\nusers = \"all\"\n",
        products("per_user", Some(&names))
    );
    let s = Restarts::new(&config, "").await;
    // Checks take a while, so kills land inside cycles too.
    s.fake.add_fault(Fault::always(
        Match::AllSeats,
        Action::Delay(Duration::from_millis(40)),
    ));
    let mut watch: std::collections::BTreeMap<(&str, String), Watch> = Default::default();
    for (i, u) in users.iter().enumerate() {
        for (product, sku) in [(P, S), (DP, DS)] {
            let active = i % 3 != 0;
            set(&s.fake, product, sku, u, active);
            watch.insert(
                (product, u.clone()),
                Watch {
                    active,
                    gone_since_seen: !active,
                    seen: None,
                },
            );
        }
    }
    let (mut restores, mut mid_save) = (0, 0);
    for run in 0..30 {
        let had_file = s.state().exists();
        let d = s.start().await;
        if had_file {
            assert_eq!(
                d.count("saved seat state restored"),
                1,
                "seed {seed} run {run}"
            );
            restores += 1;
        }
        // A third of the kills at a random moment, a third just after a
        // cycle (so inside its save), a third once a save has completed
        // (so that, however slow the machine, later starts have a file to
        // restore — on a loaded machine the second kind alone may never
        // let a save finish).
        let kill = match run % 3 {
            0 => Kill::At(Duration::from_millis(rng.random_range(0..1500))),
            1 => Kill::AfterCycle,
            _ => Kill::AfterSave,
        };
        let started = tokio::time::Instant::now();
        loop {
            observe(&d, &mut watch, seed, run).await;
            let due = match kill {
                Kill::At(at) => started.elapsed() >= at,
                Kill::AfterCycle => {
                    d.count("poll cycle finished")
                        + d.count("poll cycle finished with inconclusive checks")
                        > 0
                }
                Kill::AfterSave => d.count("seat state saved") > 0,
            };
            if due || started.elapsed() > PATIENCE {
                break;
            }
            tokio::time::sleep(Duration::from_millis(rng.random_range(1..30))).await;
        }
        match kill {
            Kill::At(_) => {}
            Kill::AfterCycle => {
                tokio::time::sleep(Duration::from_micros(rng.random_range(0..3000))).await
            }
            Kill::AfterSave => {
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..300))).await
            }
        }
        d.kill().await;
        mid_save += usize::from(PathBuf::from(format!("{}.tmp", s.state().display())).exists());
        assert!(
            !PathBuf::from(format!("{}.corrupt", s.state().display())).exists(),
            "seed {seed} run {run}: the file was found broken"
        );
        // Some seats change while the exporter is down.
        for _ in 0..4 {
            let product = if rng.random_range(0..2) == 0 { P } else { DP };
            let sku = if product == P { S } else { DS };
            let user = users[rng.random_range(0..users.len())].clone();
            let w = watch.get_mut(&(product, user.clone())).expect("watched");
            w.active = !w.active;
            w.gone_since_seen |= !w.active;
            set(&s.fake, product, sku, &user, w.active);
        }
    }
    // Every run after the first save restored; some kills hit a save.
    eprintln!("seed {seed}: {restores} of 30 starts restored, {mid_save} kills during a save");
    assert!(restores > 0, "seed {seed}: no save ever completed");
}

/// When the crash suite kills the exporter in one run.
#[derive(Clone, Copy)]
enum Kill {
    /// This long after the start.
    At(Duration),
    /// Within 3 ms of the first cycle's end, as its save runs.
    AfterCycle,
    /// Within 300 ms of the first completed save.
    AfterSave,
}

fn set(fake: &FakeStore, product: &str, sku: &str, user: &str, active: bool) {
    match (active, product == P) {
        (true, _) => fake.set_seat(product, sku, user, FakeSeat::active()),
        (false, true) => fake.set_seat(product, sku, user, FakeSeat::revoked()),
        (false, false) => fake.remove_seat(product, sku, user),
    }
}

/// One scrape of the crash suite: every 1 → 0 must be the fake's doing.
async fn observe(
    d: &Daemon,
    watch: &mut std::collections::BTreeMap<(&str, String), Watch>,
    seed: u64,
    run: usize,
) {
    let m = d.scrape().await;
    for ((product, user), w) in watch.iter_mut() {
        let Some(now) = m.value(
            "msfb_seat_active",
            &[("product_id", product), ("user", user.as_str())],
        ) else {
            continue;
        };
        if w.seen == Some(1.0) && now == 0.0 {
            assert!(
                w.gone_since_seen,
                "seed {seed} run {run}: {product} {user} went 1 -> 0 while the fake held the seat"
            );
        }
        w.seen = Some(now);
        w.gone_since_seen = !w.active;
    }
}
