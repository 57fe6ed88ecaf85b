//! Stalled readers at 100k targets (issue 16, SPEC §17): 40 clients that
//! ask for `/status` or `/metrics` and then stop reading add at most
//! 100 MiB to the daemon's memory — `/status` as HTML and as
//! `?format=json`, `/metrics` as text, as OpenMetrics and gzipped — and
//! once the write-stall limit (30 s) has passed the daemon has closed
//! their connections and a normal scrape succeeds again. Built whole per request, 40 such `/status`
//! readers held 1.8 GB (HTML) and 2.1 GB (JSON); with a copy of the table
//! per scrape, 40 `/metrics` readers added about 300 MiB.
//!
//! Black-box: the real binary against the fake Store, 100k targets found
//! by one discovery listing (20 pages of 5000, all checked in one go), its
//! resident memory read from `/proc`. The five cases run at once, a daemon
//! each, so the test takes the time of one (minutes on a busy debug
//! build). A load test: it counts bytes and outcomes; the only times are
//! generous deadlines that turn a hang into a failure. Measured figures are
//! in docs/performance.md (`cargo test -- --nocapture` prints them).

use std::time::Duration;

use msfb_seat_exporter::fake_store::{self, FakeSeat, FakeStore, Paging};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};

use crate::util::{P, S, eventually, temp_dir};

const TARGETS: usize = 100_000;
/// As many readers as the daemon has slots for scrapes and pages.
const READERS: usize = 40;
const MIB: u64 = 1024 * 1024;
/// SPEC §17's bound for 40 stalled readers.
const BOUND: u64 = 100 * MIB;

/// One way to ask for a big answer.
struct Case {
    path: &'static str,
    /// Extra request headers of the stalled readers.
    headers: &'static str,
    /// Text the whole answer (asked for without gzip) holds near its end.
    last_row: &'static str,
    /// Whether the answer is larger than what the kernel buffers for a
    /// client that does not read (a few MB on loopback), so that the
    /// daemon's writes stall. Gzipped, the 51 MiB scrape is about 2 MB:
    /// the daemon writes all of it into the socket, finishes, and holds
    /// nothing — that case shows that gzip state is not kept either.
    stalls: bool,
}

const METRICS_ROW: &str = "user=\"user099999@contoso.com\"} 1\n";

const CASES: [Case; 5] = [
    Case {
        path: "/status",
        headers: "",
        last_row: ">user099999@contoso.com</td>",
        stalls: true,
    },
    Case {
        path: "/status?format=json",
        headers: "",
        last_row: "user099999@contoso.com\"",
        stalls: true,
    },
    Case {
        path: "/metrics",
        headers: "",
        last_row: METRICS_ROW,
        stalls: true,
    },
    Case {
        path: "/metrics",
        headers: "Accept: application/openmetrics-text;version=1.0.0\r\n",
        last_row: METRICS_ROW,
        stalls: true,
    },
    Case {
        path: "/metrics",
        headers: "Accept-Encoding: gzip\r\n",
        last_row: METRICS_ROW,
        stalls: false,
    },
];

/// `VmRSS` and `VmHWM` of process `pid`, from `/proc/PID/status`.
fn memory(pid: u32) -> (u64, u64) {
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

/// RSS once it has stopped growing (three samples a second apart within
/// 1 MiB of each other), or the last sample after 30 tries.
async fn settled_rss(pid: u32) -> u64 {
    let mut samples = vec![memory(pid).0];
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        samples.push(memory(pid).0);
        let last = &samples[samples.len().saturating_sub(3)..];
        if last.len() == 3 && last.iter().max().unwrap() - last.iter().min().unwrap() < MIB {
            break;
        }
    }
    *samples.last().unwrap()
}

/// Asks for `path` and reads the first bytes only (the status line and
/// headers), then holds the connection without reading, with a small
/// receive buffer so that the daemon's writes stall soon. Asks again after
/// a 503: on a busy machine ordering the status page may take longer than
/// the request timeout, and a reader that got no answer holds nothing.
async fn stalled_reader(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &str,
) -> tokio::net::TcpStream {
    eventually("a 200 to stall on", Duration::from_secs(300), || async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stream = socket.connect(addr).await.map_err(|e| e.to_string())?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n");
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
            assert!(head.starts_with("HTTP/1.1 503"), "{path}: {head}");
            Err(head.into_owned())
        }
    })
    .await
}

/// Reads what the daemon left in a stalled reader's socket until it is
/// closed: the byte count when it ends in EOF or a reset, `None` if it is
/// still open after a minute.
async fn read_until_closed(mut stream: tokio::net::TcpStream) -> Option<usize> {
    let mut total = 0;
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(total),
            Ok(Ok(n)) => total += n,
        }
    }
}

/// The daemon for every seat of the fake's tenant, discovered by listing,
/// polled once an hour (the test looks at one cycle). Each page of 5000
/// costs the fake a sort of 100k seats: on a busy machine that outlasted
/// the fake's usual 2 s request timeout, the listing failed and the daemon
/// was ready with no target, so a minute.
async fn start_daemon(
    fake: &FakeStore,
    dir: &tempfile::TempDir,
    name: &str,
) -> (tokio::process::Child, String) {
    let config = dir.path().join(format!("{name}.toml"));
    let products =
        format!("[[products]]\nproduct_id = \"{P}\"\nsku_id = \"{S}\"\nusers = \"all\"\n");
    let text = fake
        .config_toml("secret", &products)
        .replace("interval = \"10s\"", "interval = \"1h\"")
        .replace("timeout = \"2s\"", "timeout = \"60s\"");
    assert!(text.contains("timeout = \"60s\""), "{text}");
    std::fs::write(&config, text).unwrap();
    // Port 0, and the address from the start-up line: daemons starting
    // at once cannot race for a port picked in advance.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_msfb_seat_exporter"))
        .arg(format!("--config.file={}", config.display()))
        .arg("--web.listen-address=127.0.0.1:0")
        .arg("--log.level=info")
        .arg("--log.format=json")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let address = loop {
        let line = lines.next_line().await.unwrap().expect("a start-up line");
        let event: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if event["message"] == "msfb_seat_exporter started" {
            break event["address"].as_str().expect("address").to_owned();
        }
    };
    // Keep reading, so that the daemon never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let url = format!("http://{address}");
    // Ready alone is not enough: before the listing, the table is empty
    // and so all checked. The landing page counts the active seats, and is
    // cheap (scraping all the time would starve the niced pollers).
    let all_active = format!("All</th><th>{TARGETS}</th>");
    eventually("every target checked", Duration::from_secs(600), || async {
        match reqwest::get(format!("{url}/")).await {
            Ok(r) => match r.text().await {
                Ok(page) if page.contains(&all_active) => Ok(()),
                Ok(page) => Err(page.chars().rev().take(200).collect()),
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    (child, url)
}

/// The whole answer at `path`, as a client that reads everything gets it
/// (with the `Accept` header among `headers`, if any; no gzip).
async fn whole(url: &str, path: &str, headers: &str) -> (reqwest::StatusCode, bytes::Bytes) {
    let mut request = reqwest::Client::new().get(format!("{url}{path}"));
    if let Some(accept) = headers
        .split("\r\n")
        .find_map(|h| h.strip_prefix("Accept: "))
    {
        request = request.header("Accept", accept);
    }
    let answer = request.send().await.unwrap();
    let status = answer.status();
    (status, answer.bytes().await.unwrap_or_default())
}

/// One case on a daemon of its own: the memory 40 stalled readers add,
/// then their slots freed by the write-stall drop. Returns the figures.
async fn stalled_readers(fake: &FakeStore, dir: &tempfile::TempDir, i: usize) -> String {
    let case = &CASES[i];
    let name = format!(
        "{} {}",
        case.path,
        case.headers.trim_end().replace("\r\n", ", ")
    );
    let (mut child, url) = start_daemon(fake, dir, &format!("case{i}")).await;
    let pid = child.id().unwrap();
    // One reader takes the whole answer first: it has every row, and the
    // allocator has seen a request of this size.
    // Asked again until it is a 200: under load, ordering 100k targets may
    // outlast the request timeout (a 503), and a later request finds the
    // order made.
    let page = eventually("the whole answer", Duration::from_secs(300), || async {
        match whole(&url, case.path, case.headers).await {
            (s, body) if s == 200 => Ok(body),
            (s, body) => Err(format!("{s}: {}", String::from_utf8_lossy(&body))),
        }
    })
    .await;
    let page_bytes = page.len();
    assert!(page_bytes > 20 * MIB as usize, "{name}: {page_bytes} bytes");
    assert!(
        String::from_utf8_lossy(&page).contains(case.last_row),
        "{name}: every row is there"
    );
    drop(page);
    let before = settled_rss(pid).await;
    let addr = url.trim_start_matches("http://").parse().unwrap();
    let connecting = std::time::Instant::now();
    // All at once, as an attack would come: within a few seconds, far
    // inside the 30 s after which the first of them is dropped.
    let readers = futures::future::join_all(
        (0..READERS).map(|_| stalled_reader(addr, case.path, case.headers)),
    )
    .await;
    let connected_in = connecting.elapsed();
    // A stalled answer holds its slot for as long as its connection is
    // open: while the daemon has dropped none of them, a scrape is turned
    // away at once. (Should the machine be so slow that the first drop
    // came already, the check below that they all go still holds.)
    let (status, _) = whole(&url, "/metrics", "").await;
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    let ports: Vec<u16> = readers
        .iter()
        .map(|r| r.local_addr().unwrap().port())
        .collect();
    let open = still_open(port, &ports);
    if case.stalls && open == READERS {
        assert_eq!(
            status, 503,
            "{name}: {READERS} stalled readers hold every slot"
        );
    }
    let during = settled_rss(pid).await;
    let peak = memory(pid).1;
    let added = during.saturating_sub(before);
    assert!(
        added <= BOUND,
        "{name}: {READERS} stalled readers added {} MiB",
        added / MIB
    );
    // The daemon still answers while they hold their slots.
    let (healthy, _) = whole(&url, "/-/healthy", "").await;
    assert_eq!(healthy, 200, "{name}");
    if case.stalls {
        slots_freed(&name, &url, readers, page_bytes).await;
    } else {
        // The whole answer goes into the socket: once written, nothing is
        // held and Prometheus is served.
        scrapes_again(&name, &url).await;
    }
    child.kill().await.unwrap();
    format!(
        "{name}: {} MiB an answer, RSS {} MiB before, {} MiB with {READERS} stalled readers \
         (+{} MiB), VmHWM {} MiB; readers connected in {connected_in:.1?}, {open} open then",
        page_bytes as u64 / MIB,
        before / MIB,
        during / MIB,
        added / MIB,
        peak / MIB
    )
}

/// Waits until a scrape gets the whole exposition.
async fn scrapes_again(name: &str, url: &str) {
    eventually("a complete scrape", Duration::from_secs(120), || async {
        match whole(url, "/metrics", "").await {
            (s, body) if s == 200 && String::from_utf8_lossy(&body).contains(METRICS_ROW) => Ok(()),
            (s, _) => Err(format!("{name}: status {s}")),
        }
    })
    .await;
}

/// How many of the connections from `readers` (local ports of this
/// process) to `port` the kernel still has open on the daemon's side, from
/// `/proc/net/tcp` (state `01`: established). A connection the daemon has
/// closed leaves that state at once, however much it had left unsent.
fn still_open(port: u16, readers: &[u16]) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let port_of = |address: &str| {
        let hex = address.rsplit(':').next().unwrap_or("");
        u16::from_str_radix(hex, 16).ok()
    };
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 3
                && fields[3] == "01"
                && port_of(fields[1]) == Some(port)
                && port_of(fields[2]).is_some_and(|p| readers.contains(&p))
        })
        .count()
}

/// After the write-stall limit (30 s) the daemon has closed the stalled
/// connections — each reader then finds the rest of what the kernel
/// buffered, less than a whole answer, and the end — and Prometheus
/// scrapes again.
async fn slots_freed(
    name: &str,
    url: &str,
    readers: Vec<tokio::net::TcpStream>,
    page_bytes: usize,
) {
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    let ports: Vec<u16> = readers
        .iter()
        .map(|r| r.local_addr().unwrap().port())
        .collect();
    eventually(
        "the stalled connections closed",
        Duration::from_secs(120),
        || async {
            match still_open(port, &ports) {
                0 => Ok(()),
                n => Err(format!("{name}: {n} still open")),
            }
        },
    )
    .await;
    scrapes_again(name, url).await;
    for (n, reader) in readers.into_iter().enumerate() {
        let got = read_until_closed(reader).await;
        let got = got.unwrap_or_else(|| panic!("{name}: reader {n} still open"));
        assert!(got < page_bytes, "{name}: reader {n} was cut, not served");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_stalled_readers_at_100k_targets_add_at_most_100_mib_and_free_their_slots() {
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
    let cases = (0..CASES.len()).map(|i| stalled_readers(&fake, &dir, i));
    let report = futures::future::join_all(cases).await;
    // The figures, for the record (cargo test -- --nocapture).
    println!("{}", report.join("\n"));
}
