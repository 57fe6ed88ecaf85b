//! Hostile peers, the file side (SPEC §17): every file the configuration
//! names must be a regular file — a pipe, a socket, a device or a directory
//! is refused at once naming its key, by `--config.check`, at start and on
//! reload — a reload that cannot read its files gives up at its deadline,
//! and a secret or key file that others can read is used with a warning.
//! The HTTP side of §17 is in `flood`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use crate::util::process::assert_refused;
use crate::util::programs::text;
use crate::util::{ALICE, Harness, product, temp_dir, write_private};

/// Runs the binary with `args`. A run that does not end within a minute is
/// killed and fails the test as hung (the bug this module is about: a
/// FIFO made `--config.check` wait forever).
async fn run(args: &[&str]) -> Output {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_msfb_seat_exporter"))
        .args(args)
        .env_remove("CREDENTIALS_DIRECTORY")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), child)
        .await
        .unwrap_or_else(|_| panic!("msfb_seat_exporter {args:?} hung"))
        .expect("run the binary")
}

/// Creates a named pipe (mkfifo(3) itself: nothing outside cargo).
fn mkfifo(path: &Path) {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a NUL-terminated path that lives across the call.
    let rc = unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo: {}", std::io::Error::last_os_error());
}

/// The kinds of path that are not regular files, each made at `path`, with
/// how the error names it. The socket's listener is returned to keep it.
fn make(kind: &str, path: &Path) -> (Option<std::os::unix::net::UnixListener>, &'static str) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_dir_all(path);
    match kind {
        "fifo" => {
            mkfifo(path);
            (None, "a named pipe (FIFO)")
        }
        "socket" => (
            Some(std::os::unix::net::UnixListener::bind(path).expect("bind a socket")),
            "a socket",
        ),
        // A symlink to a device: links are followed, and what counts is
        // what they lead to.
        "device" => {
            std::os::unix::fs::symlink("/dev/null", path).expect("symlink");
            (None, "a character device")
        }
        "directory" => {
            std::fs::create_dir(path).expect("mkdir");
            (None, "a directory")
        }
        _ => unreachable!("{kind}"),
    }
}

const KINDS: [&str; 4] = ["fifo", "socket", "device", "directory"];

/// A configuration naming every kind of file: users file, secret, hash key,
/// TLS certificate and key, all regular files, mode 0600.
fn full_config(dir: &Path) -> PathBuf {
    let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    for (name, content) in [
        ("secret", "s3cret\n"),
        ("hash_key", "k3y\n"),
        ("users.txt", "bob@contoso.com\n"),
        ("tls.crt", &pair.cert.pem()),
        ("tls.key", &pair.signing_key.serialize_pem()),
    ] {
        write_private(&dir.join(name), content);
    }
    let config = dir.join("config.toml");
    let text = format!(
        "[web]\ntls_cert_file = \"tls.crt\"\ntls_key_file = \"tls.key\"\n\n\
         [auth]\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret_file = \"secret\"\n\n\
         [metrics]\nuser_label = \"hash\"\nuser_hash_key_file = \"hash_key\"\n\n\
         {}users_file = \"users.txt\"\n",
        product(&[ALICE])
    );
    write_private(&config, &text);
    config
}

/// Each file key, the file it names in [`full_config`] and the line it is on.
const FILE_KEYS: [(&str, &str, usize); 5] = [
    ("web.tls_cert_file", "tls.crt", 2),
    ("web.tls_key_file", "tls.key", 3),
    ("auth.client_secret_file", "secret", 8),
    ("metrics.user_hash_key_file", "hash_key", 12),
    ("products[0].users_file", "users.txt", 19),
];

#[tokio::test]
async fn config_check_refuses_every_file_that_is_not_regular_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = full_config(dir.path());
    let flag = format!("--config.file={}", config.display());
    let ok = run(&["--config.check", &flag]).await;
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));

    for kind in KINDS {
        for (key, file, line) in FILE_KEYS {
            let path = dir.path().join(file);
            let (_socket, what) = make(kind, &path);
            let out = run(&["--config.check", &flag]).await;
            let expected = format!(
                "{}:{line}: {key}: cannot read {}: is {what}, not a regular file",
                config.display(),
                path.display()
            );
            assert_refused(&out, &expected);
            // Back to the regular file for the next key.
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_dir_all(&path);
            full_config(dir.path());
        }
        // The configuration file itself.
        let (_socket, what) = make(kind, &config);
        let out = run(&["--config.check", &flag]).await;
        let expected = format!(
            "{}: cannot read the configuration file: is {what}, not a regular file",
            config.display()
        );
        assert_refused(&out, &expected);
        let _ = std::fs::remove_file(&config);
        let _ = std::fs::remove_dir_all(&config);
        full_config(dir.path());
    }
}

#[tokio::test]
async fn the_daemon_refuses_to_start_on_a_pipe_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = full_config(dir.path());
    let users = dir.path().join("users.txt");
    std::fs::remove_file(&users).unwrap();
    mkfifo(&users);
    let out = run(&[
        &format!("--config.file={}", config.display()),
        "--web.listen-address=127.0.0.1:0",
    ])
    .await;
    assert_refused(&out, "products[0].users_file: cannot read");
}

#[tokio::test]
async fn a_reload_refuses_a_pipe_at_once_and_the_next_good_reload_works() {
    let h = Harness::with_files(
        &format!("{}users_file = \"users.txt\"\n", product(&[ALICE])),
        "",
        &[("users.txt", "bob@contoso.com\n")],
    )
    .await;
    assert_eq!(h.exporter.generation().table.len(), 2);
    for (file, key) in [
        ("users.txt", "products[0].users_file"),
        ("secret", "auth.client_secret_file"),
        ("config.toml", "cannot read the configuration file"),
    ] {
        let path = h.dir.path().join(file);
        let saved = std::fs::read(&path).unwrap();
        for kind in KINDS {
            let (_socket, what) = make(kind, &path);
            let (status, body) = h.request("POST", "/-/reload").await;
            assert_eq!(status, 500, "{file} as {kind}: {body}");
            assert!(body.contains(key), "{body}");
            assert!(
                body.contains(&format!("is {what}, not a regular file")),
                "{body}"
            );
            assert_eq!(h.reload_gauge().await, Some(0.0));
            assert_eq!(h.exporter.generation().table.len(), 2, "nothing changed");
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_dir_all(&path);
        }
        std::fs::write(&path, saved).unwrap();
        h.reload().await;
        assert_eq!(h.reload_gauge().await, Some(1.0));
    }
}

/// A load that never finishes (here: one held at the harness's gate, as a
/// hung network mount would hold it) fails the reload at the deadline: the
/// reload lock is free again, the next reload is not stuck behind it, and
/// once the files can be read a reload works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_cannot_read_its_files_fails_at_the_deadline() {
    let (h, gate) = Harness::gated(&product(&[ALICE]), Duration::from_millis(200)).await;
    gate.close();
    for _ in 0..2 {
        let (status, body) = h.request("POST", "/-/reload").await;
        assert_eq!(status, 500, "{body}");
        assert_eq!(body, "the configuration could not be read within 200ms\n");
        assert_eq!(h.reload_gauge().await, Some(0.0));
    }
    gate.open();
    h.reload().await;
    assert_eq!(h.reload_gauge().await, Some(1.0));
}

#[tokio::test]
async fn secret_and_key_files_others_can_read_are_used_with_a_warning() {
    let dir = temp_dir(&[]);
    let config = full_config(dir.path());
    let flag = format!("--config.file={}", config.display());
    let out = run(&["--config.check", &flag]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(
        !text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );

    for (file, mode) in [("secret", 0o644), ("hash_key", 0o640), ("tls.key", 0o604)] {
        let path = dir.path().join(file);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let out = run(&["--config.check", &flag]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout_ok(&out), "{}", text(&out.stdout));
    for (key, file, mode) in [
        ("auth.client_secret_file", "secret", "0644"),
        ("metrics.user_hash_key_file", "hash_key", "0640"),
        ("web.tls_key_file", "tls.key", "0604"),
    ] {
        let line = format!(
            "warning: {key}: {} has mode {mode}: other users can read it; \
             restrict it to the exporter's user (chmod 600)",
            dir.path().join(file).display()
        );
        assert!(stderr.contains(&line), "{stderr}\nwanted {line}");
    }
    // Not the secret's content, only its path.
    assert!(!stderr.contains("s3cret"), "{stderr}");
}

fn stdout_ok(out: &Output) -> bool {
    text(&out.stdout).starts_with("config OK: ")
}

/// The state file (`[persistence] file`, `--persistence.file`) goes through
/// the same check as every other file: a pipe, a socket, a device or a
/// directory at its path stops `--config.check` and the start at once with
/// exit 2 naming the key (or the flag), and one that appears there while
/// the exporter runs fails each save — counted, logged, the thing left in
/// place — without blocking the exporter or its shutdown; once it is gone
/// the next save works.
#[tokio::test]
async fn a_state_file_that_is_not_regular_is_refused_at_start_and_fails_saves() {
    use crate::util::restart::{Restarts, products};
    let s = Restarts::new(&products("per_user", Some(&[ALICE])), "").await;
    let config = s.dir.path().join("config.toml");
    let flag = format!("--config.file={}", config.display());
    let line = std::fs::read_to_string(&config)
        .unwrap()
        .lines()
        .position(|l| l.starts_with("file = "))
        .unwrap()
        + 1;
    let elsewhere = s.dir.path().join("elsewhere");
    for kind in KINDS {
        let (_socket, what) = make(kind, &s.state());
        let out = run(&["--config.check", &flag]).await;
        let expected = format!(
            "{}:{line}: persistence.file: {}: is {what}, not a regular file",
            config.display(),
            s.state().display()
        );
        assert_refused(&out, &expected);
        // The daemon itself, and the flag in place of the key.
        let out = run(&[&flag, "--web.listen-address=127.0.0.1:0"]).await;
        assert_refused(&out, &expected);
        let (_socket2, _) = make(kind, &elsewhere);
        let by_flag = format!("--persistence.file={}", elsewhere.display());
        let out = run(&["--config.check", &flag, &by_flag]).await;
        let expected = format!(
            "--persistence.file: {}: is {what}, not a regular file",
            elsewhere.display()
        );
        assert_refused(&out, &expected);
        for path in [s.state(), elsewhere.clone()] {
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_dir_all(&path);
        }
    }

    let failures = |m: &crate::util::Scrape| {
        m.value("msfb_seat_exporter_persistence_save_failures_total", &[])
            .unwrap_or(0.0)
    };
    let d = s.start().await;
    d.wait_for_saves(1).await;
    for (n, kind) in ["fifo", "device"].into_iter().enumerate() {
        let (_, what) = make(kind, &s.state());
        let seen = d
            .wait_for(
                "saving the seat state failed; the previous file is kept",
                |e| e["error"].as_str().is_some_and(|e| e.contains(what)),
            )
            .await;
        assert_eq!(seen["level"], "WARN");
        let m = d.scrape().await;
        assert!(failures(&m) > n as f64, "{kind}: {}", failures(&m));
        assert!(m.active(ALICE).is_some(), "still checking");
        assert_eq!(d.get("/-/healthy").await.0, 200);
        let meta = std::fs::symlink_metadata(s.state()).unwrap();
        assert!(!meta.is_file(), "{kind}: left in place, not replaced");
    }
    // Shutdown saves once more; the pipe there must not hold it.
    let (_, _) = make("fifo", &s.state());
    d.stop().await;
    std::fs::remove_file(s.state()).unwrap();
    let d = s.start().await;
    let saves = d.count("seat state saved");
    d.wait_for_saves(saves + 1).await;
    assert!(std::fs::metadata(s.state()).unwrap().is_file());
    d.stop().await;
}
