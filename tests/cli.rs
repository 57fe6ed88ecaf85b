//! The binary: `--config.check`, `--once`, `--version` and exit codes
//! (SPEC §2).

use std::process::Output;

use msfb_seat_exporter::fake_store::{self, FakeSeat, FakeStore, Fault, Match};

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
        "config OK: 2 targets (1 products, 2 users)\n"
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
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:1: auth: missing field `auth`",
            config.display()
        )),
        "{err}"
    );
}

#[tokio::test]
async fn a_missing_config_file_exits_2() {
    let out = run(&["--config.file=/nonexistent/msfb.toml"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("/nonexistent/msfb.toml: cannot read"),
        "{}",
        text(&out.stderr)
    );
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
    assert!(
        text(&out.stderr).contains(&format!("cannot listen on {address}")),
        "{}",
        text(&out.stderr)
    );
}
