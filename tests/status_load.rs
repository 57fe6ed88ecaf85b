//! `/status` under stalled readers (issue 16, SPEC §17): the page is
//! streamed, so 40 clients that ask for it at 100k targets and then stop
//! reading add at most 100 MiB to the daemon's memory, for the HTML and for
//! `?format=json` alike. Built whole per request, the same 40 held 1.8 GB
//! (HTML) and 2.1 GB (JSON).
//!
//! Black-box: the real binary against the fake Store, 100k targets found by
//! one discovery listing (20 pages of 5000, all checked in one go), its resident
//! memory read from `/proc`. A load test: it counts bytes, not time. It
//! takes minutes on a busy debug build (each reader makes the daemon render
//! what fits in the socket buffers, a few MB, before it stalls); measured
//! here: HTML 69 MiB a page, +13 to +24 MiB; JSON 24 MiB a page, +22 to
//! +24 MiB, over a baseline of about 75 MiB.

use std::time::Duration;

use msfb_seat_exporter::fake_store::{self, FakeSeat, FakeStore, Paging};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::util::{P, S, eventually, temp_dir};

const TARGETS: usize = 100_000;
const READERS: usize = 40;
const MIB: u64 = 1024 * 1024;
/// SPEC §17's bound for 40 stalled readers.
const BOUND: u64 = 100 * MIB;

/// Resident memory of process `pid`, from `/proc/PID/status`.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib * 1024
}

/// RSS once it has stopped growing (three samples a second apart within
/// 1 MiB of each other), or the last sample after 30 tries.
async fn settled_rss(pid: u32) -> u64 {
    let mut samples = vec![rss(pid)];
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        samples.push(rss(pid));
        let last = &samples[samples.len().saturating_sub(3)..];
        if last.len() == 3 && last.iter().max().unwrap() - last.iter().min().unwrap() < MIB {
            break;
        }
    }
    *samples.last().unwrap()
}

/// Asks for `path` and reads the first bytes only (the status line and
/// headers), then holds the connection without reading, with a small
/// receive buffer so that the daemon's writes stall soon. Half of the
/// readers accept gzip, as Prometheus does.
async fn stalled_reader(
    addr: std::net::SocketAddr,
    path: &str,
    gzip: bool,
) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let encoding = if gzip {
        "Accept-Encoding: gzip\r\n"
    } else {
        ""
    };
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n{encoding}\r\n").as_bytes())
        .await
        .unwrap();
    let mut first = [0u8; 512];
    let n = stream.read(&mut first).await.unwrap();
    let head = String::from_utf8_lossy(&first[..n]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    stream
}

/// The daemon for every seat of the fake's tenant, discovered by listing.
async fn start_daemon(
    fake: &FakeStore,
    dir: &tempfile::TempDir,
) -> (tokio::process::Child, String) {
    let config = dir.path().join("config.toml");
    let products =
        format!("[[products]]\nproduct_id = \"{P}\"\nsku_id = \"{S}\"\nusers = \"all\"\n");
    let text = fake
        .config_toml("secret", &products)
        .replace("interval = \"10s\"", "interval = \"1h\"");
    std::fs::write(&config, text).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_msfb_seat_exporter"))
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    eventually("every target checked", Duration::from_secs(240), || async {
        match reqwest::get(format!("{url}/-/ready")).await {
            Ok(r) if r.status() == 200 => Ok(()),
            Ok(r) => Err(r.text().await.unwrap_or_default()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    (child, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_stalled_status_readers_at_100k_targets_add_at_most_100_mib() {
    let fake = FakeStore::start().await.unwrap();
    // Pages of 5000: the fake sorts every seat for each page it answers,
    // which at 100k seats and pages of 100 would take minutes.
    fake.set_paging(Paging {
        page_size: Some(5000),
        ..Paging::default()
    });
    for i in 0..TARGETS {
        fake.set_seat(P, S, &format!("user{i:06}@contoso.com"), FakeSeat::active());
    }
    let dir = temp_dir(&[("secret", fake_store::CLIENT_SECRET)]);
    let mut report = Vec::new();
    for path in ["/status", "/status?format=json"] {
        let (mut child, url) = start_daemon(&fake, &dir).await;
        let pid = child.id().unwrap();
        // One reader takes the whole page first: it has every row, and the
        // allocator has seen a request of this size.
        let page = reqwest::get(format!("{url}{path}"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert!(
            page.len() > 20 * MIB as usize,
            "{path}: {} bytes",
            page.len()
        );
        let expected = if path.ends_with("json") {
            "user099999@contoso.com\""
        } else {
            ">user099999@contoso.com</td>"
        };
        assert!(
            String::from_utf8_lossy(&page).contains(expected),
            "{path}: every row is there"
        );
        let page_bytes = page.len();
        drop(page);
        let before = settled_rss(pid).await;
        let addr = url.trim_start_matches("http://").parse().unwrap();
        let mut readers = Vec::new();
        for i in 0..READERS {
            readers.push(stalled_reader(addr, path, i % 2 == 0).await);
        }
        let during = settled_rss(pid).await;
        let added = during.saturating_sub(before);
        report.push(format!(
            "{path}: {} MiB a page, RSS {} MiB before, {} MiB with {READERS} stalled readers (+{} MiB)",
            page_bytes as u64 / MIB,
            before / MIB,
            during / MIB,
            added / MIB
        ));
        assert!(
            added <= BOUND,
            "{path}: {READERS} stalled readers added {} MiB",
            added / MIB
        );
        // The daemon still answers while they hold their slots.
        let healthy = reqwest::get(format!("{url}/-/healthy")).await.unwrap();
        assert_eq!(healthy.status(), 200);
        drop(readers);
        child.kill().await.unwrap();
    }
    // The figures, for the record (cargo test -- --nocapture).
    println!("{}", report.join("\n"));
}
