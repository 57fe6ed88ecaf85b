//! The shipped systemd units, checked by systemd's own tools (issues 4 and
//! 5): `systemd-analyze verify` finds nothing and `systemd-analyze security
//! --offline=yes` rates the exposure at most 1.5, for the plain unit and for
//! the per-shard template `msfb_seat_exporter@.service`. systemd-analyze comes from
//! Debian's `systemd` package (252 on bookworm, which has both `--offline`
//! and `--threshold`); `scripts/test.sh` installs it, and without it these
//! tests fail.

use std::path::{Path, PathBuf};

use crate::util::programs::{systemd_analyze, text};

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

/// The shard template as shipped.
const TEMPLATE: &str = "msfb_seat_exporter@.service";

fn shipped_template() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("systemd")
        .join(TEMPLATE);
    std::fs::read_to_string(path).unwrap()
}

/// The template in `dir`, naming the binary just built; returns the path of
/// instance `index` (systemd-analyze loads the template beside it).
fn local_instance(dir: &Path, index: u32) -> PathBuf {
    let unit = shipped_template();
    assert!(unit.contains(&format!("exec {INSTALLED_BINARY} ")));
    std::fs::write(
        dir.join(TEMPLATE),
        unit.replace(INSTALLED_BINARY, env!("CARGO_BIN_EXE_msfb_seat_exporter")),
    )
    .unwrap();
    dir.join(format!("msfb_seat_exporter@{index}.service"))
}

/// The `/bin/sh -c` script of the template's ExecStart for `index`, with
/// systemd's own substitutions done (`%i`, and `$$` for a literal `$`).
fn start_script(index: u32) -> String {
    let unit = shipped_template();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart=/bin/sh -c '"))
        .expect("ExecStart runs /bin/sh -c '…'");
    let script = exec.strip_suffix('\'').expect("one quoted script");
    script.replace("%i", &index.to_string()).replace("$$", "$")
}

/// `systemd-analyze verify` passes on `unit` with nothing to say: verify
/// exits 0 on some findings (unknown keys are only warnings), so its output
/// must be empty too.
fn assert_verifies(unit: &Path) {
    let out = systemd_analyze(&["verify"], unit);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "", "systemd-analyze verify findings");
    assert_eq!(text(&out.stdout), "", "systemd-analyze verify findings");
}

/// `systemd-analyze security` rates `unit` (loaded as `name`) at most
/// [`MAX_EXPOSURE_TENTHS`]: both by its threshold and by the figure in the
/// report, so the test does not rest on how the threshold is counted.
fn assert_exposure_at_most_limit(unit: &Path, name: &str) {
    let threshold = format!("--threshold={MAX_EXPOSURE_TENTHS}");
    let out = systemd_analyze(&["security", "--offline=yes", &threshold], unit);
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}{}", text(&out.stderr));
    let line = report
        .lines()
        .find(|l| l.contains(&format!("Overall exposure level for {name}:")))
        .unwrap_or_else(|| panic!("no overall exposure in\n{report}"));
    let level: f64 = line
        .rsplit(':')
        .next()
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(
        level <= f64::from(MAX_EXPOSURE_TENTHS) / 10.0,
        "exposure {level}:\n{report}"
    );
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    assert_verifies(&local_copy(dir.path()));
}

#[test]
fn unit_exposure_is_at_most_1_5() {
    let dir = tempfile::tempdir().unwrap();
    assert_exposure_at_most_limit(&local_copy(dir.path()), "msfb_seat_exporter.service");
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

#[test]
fn template_passes_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    assert_verifies(&local_instance(dir.path(), 2));
}

#[test]
fn template_exposure_is_at_most_1_5() {
    let dir = tempfile::tempdir().unwrap();
    assert_exposure_at_most_limit(
        &local_instance(dir.path(), 2),
        "msfb_seat_exporter@2.service",
    );
}

/// The template is the plain unit plus the shard: every setting of the
/// plain unit's sandbox is in it too, so the two cannot drift apart.
#[test]
fn template_keeps_every_setting_of_the_plain_unit() {
    let template = shipped_template();
    let lines: Vec<&str> = template.lines().collect();
    for line in shipped_unit().lines() {
        if line.starts_with('#')
            || line.trim().is_empty()
            || line.starts_with("Description=")
            || line.starts_with("ExecStart=")
            || line.starts_with("StateDirectory=")
        {
            continue;
        }
        assert!(lines.contains(&line), "{line} missing from {TEMPLATE}");
    }
    // One state directory per shard: instances are different dynamic users.
    assert!(lines.contains(&"StateDirectory=msfb_seat_exporter-%i"));
    assert!(shipped_unit().contains("\nStateDirectory=msfb_seat_exporter\n"));
    assert!(lines.contains(&"EnvironmentFile=/etc/msfb_seat_exporter/shards.env"));
}

/// Instance `i` runs shard `i` of `MSFB_SHARD_COUNT` on port 10043 + i, and
/// the binary accepts that command line; without a shard count it exits 2,
/// which the unit does not restart.
#[test]
fn template_instance_runs_its_shard_on_its_port() {
    let script = start_script(2);
    // What the shell runs, with the binary replaced by echo.
    let echoed = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(script.replace(&format!("exec {INSTALLED_BINARY}"), "exec echo"))
        .env("MSFB_SHARD_COUNT", "4")
        .output()
        .unwrap();
    assert!(echoed.status.success(), "{}", text(&echoed.stderr));
    assert_eq!(
        text(&echoed.stdout).trim(),
        "--config.file=/etc/msfb_seat_exporter/config.toml --shard.index=2 \
         --shard.count=4 --web.listen-address=:10045 \
         --persistence.file=/var/lib/msfb_seat_exporter-2/state"
    );

    // The real binary with that command line (and a config of our own).
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "s").unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[auth]\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret_file = \"secret\"\n\n\
         [[products]]\nproduct_id = \"P\"\nsku_id = \"S\"\nusers = [\"a@x.y\", \"b@x.y\"]\n",
    )
    .unwrap();
    let real = script
        .replace(INSTALLED_BINARY, env!("CARGO_BIN_EXE_msfb_seat_exporter"))
        .replace(
            "/etc/msfb_seat_exporter/config.toml",
            config.to_str().unwrap(),
        )
        .replace(
            "/var/lib/msfb_seat_exporter-2",
            dir.path().to_str().unwrap(),
        );
    let run = |count: Option<&str>| {
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.arg("-c").arg(format!("{real} --config.check"));
        cmd.env_remove("MSFB_SHARD_COUNT");
        if let Some(n) = count {
            cmd.env("MSFB_SHARD_COUNT", n);
        }
        cmd.output().unwrap()
    };
    let out = run(Some("4"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("config OK: 2 targets"));
    let out = run(None);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // An index the count does not allow is a bad configuration too.
    let out = run(Some("2"));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}
