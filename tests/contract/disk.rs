//! A full disk under the state file (SPEC §13, issue 12), for real: a tiny
//! tmpfs mounted by mount(8), `--persistence.file` pointing into it, and a
//! filler file that takes its last byte, so that the save at the end of a
//! cycle hits ENOSPC in write(2) as it would on a full volume. The unit test
//! in `src/persistence/file.rs` only simulates the error; this one shows
//! what an operator sees: the warn line, the failure counter moving, the
//! exporter serving and checking on, the previous complete file untouched,
//! and the next save succeeding once space is freed.
//!
//! Mounting needs root (CI runs as root); without it the test fails and
//! says so, it never skips. The mount is undone by a guard, also when an
//! assertion fails. The read-only directory case is in
//! `tests/persistence.rs` (`failed_saves_are_counted_and_the_exporter_goes_on`).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use msfb_seat_exporter::fake_store::{Action, FakeSeat, Fault, Match};
use tempfile::TempDir;

use crate::util::restart::{Daemon, PATIENCE, Restarts, products};
use crate::util::{ALICE, BOB, CAROL, P, S, Scrape, eventually};

const FAILED: &str = "saving the seat state failed; the previous file is kept";

/// A tmpfs of `size` mounted on a fresh temporary directory, unmounted on
/// drop (before the directory is removed: `Drop` runs before the fields').
struct Tmpfs {
    dir: TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        // SAFETY: geteuid(2) has no preconditions.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(
            euid, 0,
            "this test mounts a tmpfs to fill it and must run as root (CI does); \
             run `cargo test --test contract` as root"
        );
        let dir = tempfile::tempdir().expect("mount point");
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .expect("run mount(8)");
        assert!(
            out.status.success(),
            "mount -t tmpfs failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Still busy (a process of a failed test): detach it lazily.
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

/// Writes `path` until the file system has no byte left; ENOSPC is the only
/// way this may end.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).expect("filler");
    let chunk = vec![0xa5u8; 64 * 1024];
    let error = loop {
        if let Err(e) = file.write_all(&chunk).and_then(|()| file.sync_all()) {
            break e;
        }
    };
    assert_eq!(error.raw_os_error(), Some(libc::ENOSPC), "{error}");
}

/// The state file's lines as JSON; asserts that it is complete: a header,
/// and a trailer that counts `targets`.
fn complete(bytes: &[u8], targets: u64) -> Vec<serde_json::Value> {
    let text = std::str::from_utf8(bytes).expect("UTF-8");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines[0]["format"], "msfb_seat_exporter state", "{text}");
    assert_eq!(lines.last().unwrap()["end"], targets, "{text}");
    lines
}

/// The saved seat of `user` (the second field of a target's line).
fn saved_active(lines: &[serde_json::Value], user: &str) -> u64 {
    let row = lines
        .iter()
        .find(|l| l[0] == user)
        .unwrap_or_else(|| panic!("{user} not in the file"));
    row[1].as_u64().expect("a seat 0 or 1")
}

fn failures(m: &Scrape) -> f64 {
    m.value("msfb_seat_exporter_persistence_save_failures_total", &[])
        .expect("the failure counter")
}

fn last_success(m: &Scrape) -> Option<f64> {
    m.value(
        "msfb_seat_exporter_persistence_last_save_success_timestamp_seconds",
        &[],
    )
}

/// Waits until a scrape satisfies `ok`; returns it.
async fn scrape_until(d: &Daemon, what: &str, ok: impl Fn(&Scrape) -> bool) -> Scrape {
    eventually(what, PATIENCE, || async {
        let m = d.scrape().await;
        if ok(&m) { Ok(m) } else { Err(format!("{m:?}")) }
    })
    .await
}

#[tokio::test]
async fn a_full_disk_fails_saves_keeps_the_old_file_and_recovers() {
    let users = products("per_user", Some(&[ALICE, BOB, CAROL]));
    let s = Restarts::new(&users, "").await;
    s.fake.set_seat(P, S, ALICE, FakeSeat::active());
    s.fake.set_seat(P, S, BOB, FakeSeat::revoked());
    s.fake.set_seat(P, S, CAROL, FakeSeat::active());
    let disk = Tmpfs::mount("64k");
    let state: PathBuf = disk.path().join("state");
    let tmp = disk.path().join("state.tmp");
    let d = s
        .start_with(None, &[format!("--persistence.file={}", state.display())])
        .await;
    d.wait_for_saves(1).await;

    // No byte left; then alice's seat goes, so a good save would change the file.
    let filler = disk.path().join("filler");
    fill(&filler);
    s.fake.set_seat(P, S, ALICE, FakeSeat::revoked());
    d.wait_for(FAILED, |e| {
        e["level"] == "WARN"
            && e["file"] == state.display().to_string()
            && e["error"]
                .as_str()
                .is_some_and(|m| m.contains("No space left on device"))
    })
    .await;
    // What the exporter keeps from now on (a save in flight while the disk
    // filled may still have landed before the first failure).
    let kept = std::fs::read(&state).expect("the previous file");
    let kept_lines = complete(&kept, 3);
    assert_eq!(saved_active(&kept_lines, ALICE), 1);
    assert!(!tmp.exists(), "a failed save leaves no temporary file");

    let first = failures(&d.scrape().await);
    assert!(first >= 1.0, "{first}");
    // The next cycle's save fails too; meanwhile the exporter checks and serves.
    let m = scrape_until(&d, "a second failed save", |m| failures(m) > first).await;
    assert_eq!(m.active(ALICE), Some(0.0), "alice's check went on");
    assert_eq!(
        m.value(
            "msfb_seat_lost_total",
            &[("product_id", P), ("sku_id", S), ("user", ALICE)]
        ),
        Some(1.0)
    );
    assert_eq!(m.active(CAROL), Some(1.0));
    assert_eq!(d.get("/-/healthy").await.0, 200);
    assert_eq!(d.get("/-/ready").await.0, 200);
    assert_eq!(
        std::fs::read(&state).unwrap(),
        kept,
        "the old file survives"
    );
    assert!(!tmp.exists());

    // Space again: the next save succeeds and holds the new state.
    let saved = last_success(&m).expect("the first save succeeded");
    let failed = failures(&m);
    std::fs::remove_file(&filler).unwrap();
    let m = scrape_until(&d, "a save after space was freed", |m| {
        last_success(m).is_some_and(|t| t > saved)
    })
    .await;
    assert_eq!(failures(&m), failed, "no failure once space is back");
    let lines = complete(&std::fs::read(&state).unwrap(), 3);
    assert_eq!(saved_active(&lines, ALICE), 0);
    d.stop().await;
    assert!(!s.state().exists(), "the flag overrides the config's file");

    // The recovered file is what the next start restores, before any check.
    s.fake.add_fault(Fault::always(
        Match::AllSeats,
        Action::Delay(Duration::from_secs(60)),
    ));
    let again = s
        .start_with(None, &[format!("--persistence.file={}", state.display())])
        .await;
    let m = again.scrape().await;
    assert_eq!(
        m.value("msfb_seat_exporter_persistence_restored_targets", &[]),
        Some(3.0)
    );
    assert_eq!(m.active(CAROL), Some(1.0));
    assert_eq!(
        m.value(
            "msfb_seat_lost_total",
            &[("product_id", P), ("sku_id", S), ("user", ALICE)]
        ),
        Some(1.0)
    );
    again.stop().await;
}
