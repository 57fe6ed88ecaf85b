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

use crate::util::process::rss;
use crate::util::{P, S, eventually, temp_dir, until_200};

const TARGETS: usize = 100_000;
const READERS: usize = 40;
const MIB: u64 = 1024 * 1024;
/// SPEC §17's bound for 40 stalled readers.
const BOUND: u64 = 100 * MIB;

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
/// readers accept gzip, as Prometheus does. Asks again after a 503: on a
/// busy machine the order may take longer than the request timeout, and
/// a reader that got no page holds nothing.
async fn stalled_reader(
    addr: std::net::SocketAddr,
    path: &str,
    gzip: bool,
) -> tokio::net::TcpStream {
    eventually("a 200 to stall on", Duration::from_secs(300), || async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stream = socket.connect(addr).await.map_err(|e| e.to_string())?;
        let encoding = if gzip {
            "Accept-Encoding: gzip\r\n"
        } else {
            ""
        };
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{encoding}\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut first = [0u8; 512];
        let n = stream.read(&mut first).await.map_err(|e| e.to_string())?;
        let head = String::from_utf8_lossy(&first[..n]);
        if head.starts_with("HTTP/1.1 200") {
            Ok(stream)
        } else {
            assert!(head.starts_with("HTTP/1.1 503"), "{head}");
            Err(head.into_owned())
        }
    })
    .await
}

/// The configuration for every seat of the fake's tenant, discovered by
/// listing, polled once an hour (the test looks at one cycle). Each page
/// of 5000 costs the fake a sort of 100k seats: on a busy machine that
/// outlasted the fake's usual 2 s request timeout, the listing failed and
/// the daemon was ready with no target (a page of 6 kB), so a minute.
fn write_config(fake: &FakeStore, dir: &tempfile::TempDir) -> std::path::PathBuf {
    let config = dir.path().join("config.toml");
    let products =
        format!("[[products]]\nproduct_id = \"{P}\"\nsku_id = \"{S}\"\nusers = \"all\"\n");
    let text = fake
        .config_toml("secret", &products)
        .replace("interval = \"10s\"", "interval = \"1h\"")
        .replace("timeout = \"2s\"", "timeout = \"60s\"");
    assert!(text.contains("timeout = \"60s\""), "{text}");
    std::fs::write(&config, text).unwrap();
    config
}

/// The daemon on `config`, once every target has been checked.
async fn start_daemon(config: &std::path::Path) -> (tokio::process::Child, String) {
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
    until_200(
        "every target checked",
        Duration::from_secs(240),
        &format!("{url}/-/ready"),
    )
    .await;
    (child, url)
}

/// The whole page, as the first reader takes it: it has every row, and
/// the allocator has seen a request of this size. Asked again until it is
/// a 200: under load, ordering 100k targets may outlast the request
/// timeout (a 503), and a later request finds the order made.
async fn whole_page(url: &str, path: &str) -> bytes::Bytes {
    let page = eventually("the whole page", Duration::from_secs(300), || async {
        let r = reqwest::get(format!("{url}{path}"))
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status();
        let body = r.bytes().await.map_err(|e| e.to_string())?;
        if status == 200 {
            Ok(body)
        } else {
            Err(format!("{status}: {}", String::from_utf8_lossy(&body)))
        }
    })
    .await;
    assert!(
        page.len() > 20 * MIB as usize,
        "{path}: {} bytes: {}",
        page.len(),
        String::from_utf8_lossy(&page[..page.len().min(300)])
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
    page
}

/// One daemon, one page: RSS before and with [`READERS`] stalled readers
/// of `path`; returns the figures.
async fn stalled_readers_of(config: &std::path::Path, path: &str) -> String {
    let (mut child, url) = start_daemon(config).await;
    let pid = child.id().unwrap();
    let page_bytes = whole_page(&url, path).await.len();
    let before = settled_rss(pid).await;
    let addr = url.trim_start_matches("http://").parse().unwrap();
    let mut readers = Vec::new();
    for i in 0..READERS {
        readers.push(stalled_reader(addr, path, i % 2 == 0).await);
    }
    let during = settled_rss(pid).await;
    let added = during.saturating_sub(before);
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
    format!(
        "{path}: {} MiB a page, RSS {} MiB before, {} MiB with {READERS} stalled readers (+{} MiB)",
        page_bytes as u64 / MIB,
        before / MIB,
        during / MIB,
        added / MIB
    )
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
    let config = write_config(&fake, &dir);
    // The two pages at once, a daemon each: each reads its own daemon's
    // memory, and the waits (listing, settling) overlap.
    let (html, json) = tokio::join!(
        stalled_readers_of(&config, "/status"),
        stalled_readers_of(&config, "/status?format=json"),
    );
    // The figures, for the record (cargo test -- --nocapture).
    println!("{html}\n{json}");
}
