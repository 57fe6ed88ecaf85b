//! The binary: `--config.check`, `--once`, `--version` and exit codes
//! (SPEC §2).

use std::process::Output;

use msfb_seat_exporter::fake_store::{self, FakeSeat, FakeStore, Fault, Match};

use crate::util::process::{assert_refused, assert_refused_exactly};
use crate::util::programs::text;
use crate::util::{P, S, product, temp_dir};

async fn run(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_msfb_seat_exporter"))
        .args(args)
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .await
        .expect("run the binary")
}

#[tokio::test]
async fn config_check_accepts_a_valid_file() {
    let fake = FakeStore::start().await.unwrap();
    let dir = temp_dir(&[("secret", fake_store::CLIENT_SECRET)]);
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        fake.config_toml("secret", &product(&["a@b.c", "d@e.f"])),
    )
    .unwrap();
    let out = run(&[
        "--config.check",
        &format!("--config.file={}", config.display()),
    ])
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "config OK: 2 targets (1 product, 2 users)\n"
    );
}

#[tokio::test]
async fn config_check_rejects_an_invalid_file_with_exit_2() {
    let dir = temp_dir(&[("config.toml", "[poll]\ninterval = \"1s\"\n")]);
    let config = dir.path().join("config.toml");
    let out = run(&[
        "--config.check",
        "--config.file",
        &config.display().to_string(),
    ])
    .await;
    assert_refused(
        &out,
        &format!("{}:1: auth: missing field `auth`", config.display()),
    );
}

#[tokio::test]
async fn a_missing_config_file_exits_2() {
    let out = run(&["--config.file=/nonexistent/msfb.toml"]).await;
    assert_refused(&out, "/nonexistent/msfb.toml: cannot read");
}

/// The bare binary in a directory without `config.toml`: the message says
/// how to name a file, where to start one and how to try without one.
#[tokio::test]
async fn the_missing_config_message_points_at_the_flag_the_example_and_the_demo() {
    let dir = temp_dir(&[]);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_msfb_seat_exporter"))
        .current_dir(dir.path())
        .output()
        .await
        .expect("run the binary");
    assert!(out.stdout.is_empty());
    assert_refused_exactly(
        &out,
        "msfb_seat_exporter: config.toml: cannot read the configuration file: \
         No such file or directory (os error 2)\n  name the file with --config.file=PATH; \
         start one from config.toml.example (in the repository, every key with its default); \
         or try the exporter without one: --demo\n",
    );
}

/// A valid configuration file for the flag tests, with a users list that
/// gives `1 product` and `2 users`.
fn valid_config(dir: &tempfile::TempDir, fake: &FakeStore, web: &str) -> String {
    let config = dir.path().join("config.toml");
    let text = format!(
        "{web}{}",
        fake.config_toml("secret", &product(&["a@b.c", "d@e.f"]))
    );
    std::fs::write(&config, text).unwrap();
    format!("--config.file={}", config.display())
}

/// `--web.listen-address=localhost` is the flag's mistake: the message names
/// the flag, not a line of a file that holds a good address (or none), and
/// comes once, with exit 2, for the daemon, `--config.check` and `--demo`.
#[tokio::test]
async fn a_bad_listen_address_flag_blames_the_flag_once_with_exit_2() {
    let fake = FakeStore::start().await.unwrap();
    let dir = temp_dir(&[("secret", fake_store::CLIENT_SECRET)]);
    let with_key = valid_config(&dir, &fake, "[web]\nlisten_address = \":10043\"\n\n");
    let expected = "msfb_seat_exporter: --web.listen-address: must be \"host:port\" or \":port\" (got \"localhost\")\n";
    for args in [
        vec![with_key.as_str(), "--config.check"],
        vec![with_key.as_str()],
        vec!["--demo"],
    ] {
        let mut args = args.clone();
        args.push("--web.listen-address=localhost");
        let out = run(&args).await;
        assert_refused_exactly(&out, expected);
    }
    let without_key = valid_config(&dir, &fake, "");
    let out = run(&[&without_key, "--web.listen-address=:99999"]).await;
    assert_refused_exactly(
        &out,
        "msfb_seat_exporter: --web.listen-address: must be \"host:port\" or \":port\" (got \":99999\")\n",
    );
}

/// The shard flags are blamed like the listen address.
#[tokio::test]
async fn a_bad_shard_flag_blames_the_flag() {
    let fake = FakeStore::start().await.unwrap();
    let dir = temp_dir(&[("secret", fake_store::CLIENT_SECRET)]);
    let config = valid_config(&dir, &fake, "");
    let out = run(&[
        &config,
        "--config.check",
        "--shard.index=3",
        "--shard.count=2",
    ])
    .await;
    assert_refused_exactly(
        &out,
        "msfb_seat_exporter: --shard.index: must be between 0 and shard_count - 1 = 1 (got 3)\n",
    );
    let out = run(&[&config, "--config.check", "--shard.count=0"]).await;
    assert_refused_exactly(
        &out,
        "msfb_seat_exporter: --shard.count: must be at least 1 (got 0)\n",
    );
}

/// `listen_address = :10043` and friends: the message says to quote the
/// value, with the key and line, instead of the parser's "invalid float".
#[tokio::test]
async fn an_unquoted_string_value_is_shown_quoted() {
    let fake = FakeStore::start().await.unwrap();
    let dir = temp_dir(&[("secret", fake_store::CLIENT_SECRET)]);
    for (value, web) in [
        (":10043", "[web]\nlisten_address = :10043\n\n"),
        (
            "0.0.0.0:10043",
            "[web]\nlisten_address = 0.0.0.0:10043  # all\n\n",
        ),
        ("[::]:10043", "[web]\nlisten_address = [::]:10043\n\n"),
    ] {
        let flag = valid_config(&dir, &fake, web);
        let out = run(&[&flag, "--config.check"]).await;
        let file = dir.path().join("config.toml");
        assert_refused_exactly(
            &out,
            &format!(
                "msfb_seat_exporter: {}:2: web.listen_address: {value} is not quoted; \
                 a string value needs quotes: listen_address = \"{value}\"\n",
                file.display()
            ),
        );
    }
}

#[tokio::test]
async fn bad_usage_exits_2_and_version_exits_0() {
    assert_eq!(run(&["--no-such-flag"]).await.status.code(), Some(2));
    assert_eq!(
        run(&["--log.level=loud", "--config.check"])
            .await
            .status
            .code(),
        Some(2)
    );
    let out = run(&["--version"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[tokio::test]
async fn once_prints_the_exposition_and_reports_inconclusive_checks() {
    let fake = FakeStore::start().await.unwrap();
    fake.set_seat(P, S, "alice@contoso.com", FakeSeat::active());
    fake.add_user("bob@contoso.com");
    let dir = temp_dir(&[("secret", fake_store::CLIENT_SECRET)]);
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        fake.config_toml(
            "secret",
            &product(&["alice@contoso.com", "bob@contoso.com"]),
        )
        .replace("[store]\n", "[store]\nmax_retries = 0\n"),
    )
    .unwrap();
    let flag = format!("--config.file={}", config.display());

    let out = run(&["--once", &flag]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "msfb_seat_active{{product_id=\"{P}\",sku_id=\"{S}\",user=\"alice@contoso.com\"}} 1\n"
        )),
        "{stdout}"
    );
    assert!(stdout.contains(&format!(
        "msfb_seat_active{{product_id=\"{P}\",sku_id=\"{S}\",user=\"bob@contoso.com\"}} 0\n"
    )));
    assert!(stdout.contains("msfb_poll_cycles_total 1\n"));

    fake.add_fault(Fault::always(
        Match::User("bob@contoso.com".into()),
        Fault::status(503),
    ));
    let out = run(&["--once", &flag]).await;
    assert_eq!(out.status.code(), Some(1), "an inconclusive check exits 1");
    assert!(text(&out.stdout).contains(&format!(
        "msfb_seat_check_success{{product_id=\"{P}\",sku_id=\"{S}\",user=\"bob@contoso.com\"}} 0\n"
    )));
}

/// The README's first command: `--demo` shows a newcomer a seat being lost
/// on `/metrics` within a minute, while a seat that stays is never shown
/// lost. Runs the real binary for about 35 s (the demo's own timeline); the
/// deadline is the README's promise, with room for a slow machine.
#[tokio::test]
async fn the_demo_shows_a_lost_seat_within_a_minute() {
    use tokio::io::{AsyncBufReadExt as _, BufReader};

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_msfb_seat_exporter"))
        .args(["--demo", "--web.listen-address=127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("run the demo");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let metrics_url = loop {
        let line = lines
            .next_line()
            .await
            .expect("read stdout")
            .expect("the demo prints its URLs");
        if let Some(url) = line.trim().strip_prefix("Metrics:") {
            // Loopback, as asked, printed as the address it is.
            assert!(url.trim().starts_with("http://127.0.0.1:"), "{line}");
            break url.trim().to_owned();
        }
    };
    let notes = [("product_id", "9NBLGGH4R315")];
    let seat = |m: &crate::util::Scrape, user: &str| {
        let mut labels = notes.to_vec();
        labels.push(("user", user));
        m.value("msfb_seat_active", &labels)
    };
    let client = reqwest::Client::new();
    let started = std::time::Instant::now();
    let mut bob_held = false;
    loop {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(90),
            "no lost seat within 90 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let Ok(response) = client.get(&metrics_url).send().await else {
            continue;
        };
        let m = crate::util::Scrape::parse(&response.text().await.expect("body"));
        if seat(&m, "alice@contoso.com").is_some() {
            assert_eq!(
                seat(&m, "alice@contoso.com"),
                Some(1.0),
                "alice keeps her seat"
            );
        }
        let bob = seat(&m, "bob@contoso.com");
        if bob == Some(1.0) {
            bob_held = true;
        } else if bob == Some(0.0) && bob_held {
            let mut labels = notes.to_vec();
            labels.push(("user", "bob@contoso.com"));
            assert_eq!(m.value("msfb_seat_lost_total", &labels), Some(1.0));
            break;
        }
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "the seat was lost after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_listen_address_in_use_is_a_runtime_failure_exit_1() {
    let fake = FakeStore::start().await.unwrap();
    let dir = temp_dir(&[("secret", fake_store::CLIENT_SECRET)]);
    let config = dir.path().join("config.toml");
    std::fs::write(&config, fake.config_toml("secret", &product(&["a@b.c"]))).unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let out = run(&[
        &format!("--config.file={}", config.display()),
        &format!("--web.listen-address={address}"),
    ])
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {address}")),
        "{stderr}"
    );
    // Once: one log line, the OS error in it once.
    assert_eq!(stderr.matches("cannot listen").count(), 1, "{stderr}");
    assert_eq!(
        stderr.matches("Address already in use").count(),
        1,
        "{stderr}"
    );

    // The demo says the same once, with what to do about it.
    let out = run(&["--demo", &format!("--web.listen-address={address}")]).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.matches("cannot listen").count(), 1, "{stderr}");
    assert_eq!(
        stderr.matches("Address already in use").count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "cannot listen on {address}: Address already in use (os error 98); \
             choose another port with --web.listen-address=127.0.0.1:PORT"
        )),
        "{stderr}"
    );
}

/// `--config.check` as root on a secret outside `$CREDENTIALS_DIRECTORY`
/// passes, with one line saying that the unit's dynamic user reads secrets
/// only through `LoadCredential=`; through `$CREDENTIALS_DIRECTORY` there
/// is nothing to say. Not as root, no hint either way.
#[tokio::test]
async fn config_check_as_root_hints_at_credentials_for_a_secret_outside_them() {
    let fake = FakeStore::start().await.unwrap();
    let dir = temp_dir(&[("secret", fake_store::CLIENT_SECRET)]);
    let flag = valid_config(&dir, &fake, "");
    let out = run(&["--config.check", &flag]).await;
    assert_eq!(out.status.code(), Some(0), "a hint, not a failure");
    assert_eq!(
        text(&out.stdout),
        "config OK: 2 targets (1 product, 2 users)\n"
    );
    let stderr = text(&out.stderr);
    // SAFETY: geteuid(2) has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let hint = format!(
        "hint: checked as root; under the systemd unit the dynamic user cannot read \
         auth.client_secret_file ({}): pass it with LoadCredential= and name it \
         \"$CREDENTIALS_DIRECTORY/NAME\" (systemd/README.md)\n",
        dir.path().join("secret").display()
    );
    if root {
        assert!(stderr.ends_with(&hint), "{stderr}");
        assert_eq!(stderr.matches("hint:").count(), 1, "{stderr}");
    } else {
        assert!(!stderr.contains("hint:"), "{stderr}");
    }

    // The same secret through $CREDENTIALS_DIRECTORY: no hint.
    let config = dir.path().join("config.toml");
    let text_now = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text_now.replace(
            "client_secret_file = \"secret\"",
            "client_secret_file = \"$CREDENTIALS_DIRECTORY/secret\"",
        ),
    )
    .unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_msfb_seat_exporter"))
        .args(["--config.check", &flag])
        .env("CREDENTIALS_DIRECTORY", dir.path())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("hint:"),
        "{}",
        text(&out.stderr)
    );
}
