//! What the tests that run a real program need around its process: a free
//! port to give it, its stderr lines as they come (the log), its resident
//! memory (the load tests' measure), and how it refused a mistake (exit 2
//! and the message, SPEC §2), checked in one place so that every refusal
//! test fails the same way: with the whole stderr in view.

use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};

use tokio::io::AsyncBufReadExt as _;

/// A loopback port nobody listens on: bound and released, so another
/// process may take it before the program does (callers that can, retry).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Spawns `command` (the binary with its arguments) as the tests run it:
/// no inherited credentials directory, no stdin, stdout dropped, killed
/// when dropped; its stderr collected by [`collect_stderr`].
pub fn spawn_collecting(
    command: &mut tokio::process::Command,
) -> (
    tokio::process::Child,
    Arc<Mutex<Vec<String>>>,
    tokio::task::JoinHandle<()>,
) {
    let mut child = command
        .env_remove("CREDENTIALS_DIRECTORY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the binary");
    let (lines, reader) = collect_stderr(&mut child);
    (child, lines, reader)
}

/// Takes `child`'s piped stderr and collects it line by line into the
/// returned list until the pipe closes; the task ends when the process
/// does (await it to have every line).
pub fn collect_stderr(
    child: &mut tokio::process::Child,
) -> (Arc<Mutex<Vec<String>>>, tokio::task::JoinHandle<()>) {
    let stderr = child.stderr.take().expect("piped stderr");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    let reader = tokio::spawn(async move {
        let mut reader = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    (lines, reader)
}

/// The threads of process `pid`: each one's name and nice value, from
/// `/proc/PID/task/*/stat`.
pub fn threads(pid: u32) -> Vec<(String, i32)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc");
    let mut threads: Vec<(String, i32)> = tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("stat")).ok())
        .map(|stat| {
            // "TID (NAME) STATE ...": the name may hold spaces, the fields
            // after it do not; nice is field 19, the 17th after the name.
            let (head, rest) = stat.rsplit_once(") ").expect("stat");
            let name = head.split_once(" (").expect("stat").1.to_owned();
            let nice = rest
                .split(' ')
                .nth(16)
                .expect("nice")
                .parse()
                .expect("nice");
            (name, nice)
        })
        .collect();
    threads.sort();
    threads
}

/// Resident memory of process `pid` in bytes, from `/proc/PID/status`.
pub fn rss(pid: u32) -> u64 {
    memory(pid).0
}

/// `VmRSS` and `VmHWM` (the peak) of process `pid` in bytes, from
/// `/proc/PID/status`.
pub fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc");
    let field = |name: &str| -> u64 {
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"));
        kib * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Asserts that the run in `output` was refused as SPEC §2 refuses a
/// mistake: exit code 2, and `expected` (a config mistake's file, line and
/// key, or a flag's name, and what is wrong) in its stderr. A failure shows
/// the whole stderr. Returns the stderr, for a caller's further checks.
#[track_caller]
pub fn assert_refused(output: &Output, expected: &str) -> String {
    let stderr = exited_2(output);
    assert!(
        stderr.contains(expected),
        "stderr:\n{stderr}\nwanted in it:\n{expected}"
    );
    stderr
}

/// [`assert_refused`] where the whole stderr is known: exit code 2, and
/// stderr exactly `whole`.
#[track_caller]
pub fn assert_refused_exactly(output: &Output, whole: &str) {
    assert_eq!(exited_2(output), whole, "the whole stderr");
}

/// The stderr of `output`, once its exit code is asserted to be 2.
#[track_caller]
fn exited_2(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(2),
        "the exit code of a refusal; stderr:\n{stderr}"
    );
    stderr
}
