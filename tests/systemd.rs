//! The shipped systemd unit, checked by systemd's own tools (issue 4):
//! `systemd-analyze verify` finds nothing and `systemd-analyze security
//! --offline=yes` rates the exposure at most 1.5. systemd-analyze comes from
//! Debian's `systemd` package (252 on bookworm, which has both `--offline`
//! and `--threshold`); `scripts/test.sh` installs it, and without it these
//! tests fail.

use std::path::{Path, PathBuf};
use std::process::Output;

const UNIT: &str = "msfb_seat_exporter.service";
const INSTALLED_BINARY: &str = "/usr/local/bin/msfb_seat_exporter";
/// Highest exposure allowed, in the tenths `--threshold` counts in.
const MAX_EXPOSURE_TENTHS: u32 = 15;

fn shipped_unit() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("systemd")
        .join(UNIT);
    std::fs::read_to_string(path).unwrap()
}

/// The unit as shipped, except that ExecStart names the binary just built:
/// `verify` checks that the command exists, and nothing is installed in
/// /usr/local/bin on a test machine.
fn local_copy(dir: &Path) -> PathBuf {
    let unit = shipped_unit();
    assert!(
        unit.contains(&format!("\nExecStart={INSTALLED_BINARY} ")),
        "ExecStart changed; update this test"
    );
    let path = dir.join(UNIT);
    std::fs::write(
        &path,
        unit.replace(INSTALLED_BINARY, env!("CARGO_BIN_EXE_msfb_seat_exporter")),
    )
    .unwrap();
    path
}

fn analyze(args: &[&str], unit: &Path) -> Output {
    std::process::Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        .env("SYSTEMD_COLORS", "0")
        .env("SYSTEMD_PAGER", "")
        .output()
        .expect(
            "systemd-analyze is needed (Debian package systemd; bash scripts/test.sh installs it)",
        )
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let unit = local_copy(dir.path());
    let out = analyze(&["verify"], &unit);
    // verify exits 0 on some findings (unknown keys are only warnings), so
    // its output must be empty too.
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "", "systemd-analyze verify findings");
    assert_eq!(text(&out.stdout), "", "systemd-analyze verify findings");
}

#[test]
fn unit_exposure_is_at_most_1_5() {
    let dir = tempfile::tempdir().unwrap();
    let unit = local_copy(dir.path());
    let threshold = format!("--threshold={MAX_EXPOSURE_TENTHS}");
    let out = analyze(&["security", "--offline=yes", &threshold], &unit);
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}{}", text(&out.stderr));
    // And read the figure itself, so the test does not rest on how the
    // threshold is counted.
    let line = report
        .lines()
        .find(|l| l.contains("Overall exposure level for msfb_seat_exporter.service:"))
        .unwrap_or_else(|| panic!("no overall exposure in\n{report}"));
    let level: f64 = line
        .rsplit(':')
        .next()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("{line}: {e}"));
    assert!(
        level <= f64::from(MAX_EXPOSURE_TENTHS) / 10.0,
        "exposure {level}:\n{report}"
    );
}

#[test]
fn unit_runs_as_a_dynamic_user_with_the_secret_as_a_credential() {
    let unit = shipped_unit();
    let active: Vec<&str> = unit
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    for wanted in [
        "DynamicUser=yes",
        "LoadCredential=client_secret:/etc/msfb_seat_exporter/client_secret",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "RestartPreventExitStatus=2",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
    ] {
        assert!(active.contains(&wanted), "{wanted} missing from the unit");
    }
    // The README tells the config to read the secret from there.
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/README.md"))
            .unwrap();
    assert!(readme.contains("client_secret_file = \"$CREDENTIALS_DIRECTORY/client_secret\""));
}
