//! `--demo`: the exporter against the built-in fake Store, with sample
//! products and users whose seats change on a two-minute loop, so that a
//! newcomer sees live metrics, the status page, a lost seat and an upstream
//! failure that does *not* look like a lost seat, all within a minute.
//!
//! The timeline (seconds from start, repeating every 120 s):
//! - 0: Contoso Notes held by alice, bob, carol, dave; erin has none; mallory
//!   is not in the directory. Fabrikam Whiteboard held by alice and bob,
//!   carol's seat revoked. Northwind Paint (`users = "all"`, list mode)
//!   has seats for alice and erin, discovered by listing. Get Inventory
//!   gives capacities of 10, 5 and 3 seats.
//! - 25: the Contoso Notes seat of bob is reclaimed → `seat lost`.
//! - 45: the Store throttles (429) and then fails (503) dave's checks for
//!   half a minute: `msfb_seat_check_success` drops, `msfb_seat_active` stays.
//! - 75: bob gets his seat back; erin is assigned one; frank gets a
//!   Northwind Paint seat, which discovery picks up.
//! - 110: the seats of erin (Contoso Notes) and frank (Northwind Paint) are
//!   reclaimed again; the loop restarts at 120.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{self, ConfigError, LoadOptions};
use crate::exporter::{Exporter, Options, StartError};
use crate::fake_store::{self, Action, FakeInventory, FakeSeat, FakeStore, Fault, Match};
use crate::{daemon, web};

const NOTES: (&str, &str) = ("9NBLGGH4R315", "0016");
const WHITEBOARD: (&str, &str) = ("9WZDNCRFJ3PS", "0010");
const PAINT: (&str, &str) = ("9PCFS5B6T72H", "0001");
const DOMAIN: &str = "contoso.com";
/// Length of one loop of the timeline.
const LOOP: Duration = Duration::from_secs(120);

/// Where the demo listens unless `--web.listen-address` says otherwise:
/// loopback only. A demo is for the person at this machine; its pages show
/// made-up users, but nothing about it should be reachable from the network
/// without asking.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:10043";

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The fake Store could not listen on a loopback port.
    #[error("the demo's fake Store cannot listen on {address}")]
    FakeStore {
        /// The address.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The exporter could not listen (say, the port is taken).
    #[error(
        "cannot listen on {address}: {cause}; choose another port with --web.listen-address=127.0.0.1:PORT"
    )]
    Listen {
        /// The address.
        address: String,
        /// Why. Part of the message rather than a source, so that the
        /// advice comes last and no error chain repeats the OS error.
        cause: std::io::Error,
    },
    /// The built-in configuration was refused (a bug).
    #[error("built-in demo configuration is invalid")]
    Config(#[from] ConfigError),
    /// The exporter could not start.
    #[error(transparent)]
    Start(#[from] StartError),
}

fn upn(name: &str) -> String {
    format!("{name}@{DOMAIN}")
}

/// The demo configuration for a fake at `fake`.
fn demo_config(fake: &FakeStore, listen: &str) -> Result<config::Config, ConfigError> {
    let users = |names: &[&str]| {
        names
            .iter()
            .map(|n| format!("\"{}\"", upn(n)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let text = format!(
        "[web]\nlisten_address = \"{listen}\"\n\n\
         [store]\nbase_url = \"{base}\"\ntimeout = \"3s\"\nmax_concurrency = 4\n\
         max_requests_per_second = 20\nmax_retries = 1\n\n\
         [auth]\ntenant_id = \"{tenant}\"\nclient_id = \"{client}\"\n\
         client_secret_env = \"MSFB_DEMO_SECRET\"\ntoken_url = \"{token}\"\n\n\
         [poll]\ninterval = \"10s\"\n\n\
         [inventory]\ninterval = \"30s\"\n\n\
         [[products]]\nproduct_id = \"{np}\"\nsku_id = \"{ns}\"\nname = \"Contoso Notes\"\n\
         users = [{notes_users}]\n\n\
         [[products]]\nproduct_id = \"{wp}\"\nsku_id = \"{ws}\"\nname = \"Fabrikam Whiteboard\"\n\
         users = [{wb_users}]\n\n\
         [[products]]\nproduct_id = \"{pp}\"\nsku_id = \"{ps}\"\nname = \"Northwind Paint\"\n\
         users = \"all\"\nforget_after = \"1m\"\n",
        base = fake.base_url(),
        tenant = fake_store::TENANT,
        client = fake_store::CLIENT_ID,
        token = fake.token_url(),
        np = NOTES.0,
        ns = NOTES.1,
        wp = WHITEBOARD.0,
        ws = WHITEBOARD.1,
        pp = PAINT.0,
        ps = PAINT.1,
        notes_users = users(&["alice", "bob", "carol", "dave", "erin", "mallory"]),
        wb_users = users(&["alice", "bob", "carol"]),
    );
    let options = LoadOptions {
        env: Arc::new(|name| {
            (name == "MSFB_DEMO_SECRET").then(|| fake_store::CLIENT_SECRET.to_owned())
        }),
        ..LoadOptions::default()
    };
    config::from_toml(&text, std::path::Path::new("demo.toml"), &options)
}

/// Seats at the start of each loop.
fn initial_seats(fake: &FakeStore) {
    for name in ["alice", "bob", "carol", "dave", "erin", "frank"] {
        fake.add_user(&upn(name));
    }
    for ((product, sku), seats) in [(NOTES, 10), (WHITEBOARD, 5), (PAINT, 3)] {
        fake.set_inventory(
            product,
            sku,
            FakeInventory {
                seat_capacity: seats,
                ..FakeInventory::default()
            },
        );
    }
    for name in ["alice", "erin"] {
        fake.set_seat(PAINT.0, PAINT.1, &upn(name), FakeSeat::active());
    }
    fake.remove_seat(PAINT.0, PAINT.1, &upn("frank"));
    for name in ["alice", "bob", "carol", "dave"] {
        fake.set_seat(NOTES.0, NOTES.1, &upn(name), FakeSeat::active());
    }
    fake.remove_seat(NOTES.0, NOTES.1, &upn("erin"));
    fake.set_seat(
        WHITEBOARD.0,
        WHITEBOARD.1,
        &upn("alice"),
        FakeSeat::active(),
    );
    fake.set_seat(WHITEBOARD.0, WHITEBOARD.1, &upn("bob"), FakeSeat::active());
    fake.set_seat(
        WHITEBOARD.0,
        WHITEBOARD.1,
        &upn("carol"),
        FakeSeat::revoked(),
    );
    fake.clear_faults();
}

/// Plays the timeline until cancelled.
async fn timeline(fake: Arc<FakeStore>, cancel: CancellationToken) {
    let at = |secs: u64| Duration::from_secs(secs);
    loop {
        let start = tokio::time::Instant::now();
        initial_seats(&fake);
        let steps: [(Duration, &str); 5] = [
            (at(25), "the Contoso Notes seat of bob is reclaimed"),
            (
                at(45),
                "the Store starts throttling and failing the checks of dave",
            ),
            (
                at(75),
                "bob gets his seat back, erin is assigned one, frank gets a Northwind Paint seat",
            ),
            (at(110), "the seats of erin and frank are reclaimed"),
            (LOOP, "the demo loop restarts"),
        ];
        for (offset, what) in steps {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep_until(start + offset) => {}
            }
            tracing::info!(event = what, "demo");
            match offset.as_secs() {
                25 => fake.remove_seat(NOTES.0, NOTES.1, &upn("bob")),
                45 => {
                    fake.add_fault(Fault::times(
                        2,
                        Match::User(upn("dave")),
                        Fault::status_retry_after(429, "1"),
                    ));
                    fake.add_fault(Fault::times(
                        8,
                        Match::User(upn("dave")),
                        Action::Status {
                            code: 503,
                            body: "{\"error\":\"Service Unavailable\"}".into(),
                            retry_after: None,
                        },
                    ));
                }
                75 => {
                    fake.set_seat(NOTES.0, NOTES.1, &upn("bob"), FakeSeat::active());
                    fake.set_seat(NOTES.0, NOTES.1, &upn("erin"), FakeSeat::active());
                    fake.set_seat(PAINT.0, PAINT.1, &upn("frank"), FakeSeat::active());
                }
                110 => {
                    fake.remove_seat(NOTES.0, NOTES.1, &upn("erin"));
                    fake.remove_seat(PAINT.0, PAINT.1, &upn("frank"));
                }
                _ => {}
            }
        }
    }
}

/// Runs the demo until `shutdown` fires, listening on `listen` (already
/// checked by the caller, see [`config::check_listen_address_flag`]) or on
/// [`DEFAULT_LISTEN`].
///
/// # Errors
/// [`DemoError`] when a port cannot be bound.
pub async fn run(listen: Option<&str>, shutdown: CancellationToken) -> Result<(), DemoError> {
    let fake = Arc::new(
        FakeStore::start()
            .await
            .map_err(|source| DemoError::FakeStore {
                address: "127.0.0.1:0".into(),
                source,
            })?,
    );
    let listen = listen.unwrap_or(DEFAULT_LISTEN).to_owned();
    let config = demo_config(&fake, &listen)?;
    let exporter = Exporter::new(config, Options::default())?;
    let listener = web::serve::bind(&listen)
        .await
        .map_err(|cause| DemoError::Listen {
            address: listen.clone(),
            cause,
        })?;
    let bound = listener.local_addr().map_err(|cause| DemoError::Listen {
        address: listen.clone(),
        cause,
    })?;
    println!(
        "{}",
        banner(&fake.base_url(), &base_url(bound), bound.ip().is_loopback())
    );
    let story = tokio::spawn(timeline(Arc::clone(&fake), shutdown.child_token()));
    daemon::run(&exporter, listener, web::Transport::Plain, shutdown).await;
    story.abort();
    Ok(())
}

/// `http://host:port` to open for a listener bound to `addr`: a wildcard
/// address is opened as `localhost`.
fn base_url(addr: std::net::SocketAddr) -> String {
    match addr.ip() {
        ip if ip.is_unspecified() => format!("http://localhost:{}", addr.port()),
        std::net::IpAddr::V6(ip) => format!("http://[{ip}]:{}", addr.port()),
        std::net::IpAddr::V4(ip) => format!("http://{ip}:{}", addr.port()),
    }
}

/// What the demo prints at start: where to look, and the whole story, so
/// that someone who opens the pages late knows what already happened
/// (bob's seat is back from about 85 s on).
fn banner(fake_url: &str, base: &str, loopback: bool) -> String {
    let reach = if loopback {
        "Only this machine can reach these pages (--web.listen-address=:10043 opens them to others)."
    } else {
        "Other machines can reach these pages too (the demo's default is 127.0.0.1 only)."
    };
    let bob = format!(
        "msfb_seat_active{{product_id=\"{}\",user=\"{}\"}}",
        NOTES.0,
        upn("bob")
    );
    format!(
        "msfb_seat_exporter demo: a fake Store is answering on {fake_url}\n\
         \n  Landing page: {base}/\n  Status page:  {base}/status\n  Metrics:      {base}/metrics\n\n\
         Checks run every 10 s. The story takes two minutes, then starts over (seconds from start):\n\
         \x20   25 s  bob's Contoso Notes seat is reclaimed: by ~35 s {bob} is 0,\n\
         \x20         msfb_seat_lost_total counts 1 and the status page shows bob as lost\n\
         \x20   45 s  the Store throttles, then fails dave's checks until ~90 s: msfb_seat_check_success\n\
         \x20         drops to 0, his seat stays 1 (an outage is not a lost seat)\n\
         \x20   75 s  bob gets his seat back (1 again by ~85 s; his loss stays counted), erin is\n\
         \x20         assigned one, frank's new Northwind Paint seat is discovered\n\
         \x20  110 s  the seats of erin and frank are reclaimed: both show as lost\n\
         \x20  120 s  the story starts over: bob's seat goes again at 145 s\n\n\
         {reach}\n\
         Press Ctrl-C to stop."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_demo_configuration_is_valid() {
        let fake = FakeStore::start().await.unwrap();
        let config = demo_config(&fake, DEFAULT_LISTEN).unwrap();
        assert_eq!(config.target_count(), 9);
        assert!(config.products[2].discover);
        assert_eq!(config.web.listen_address, "127.0.0.1:10043");
    }

    #[test]
    fn the_banner_gives_loopback_urls_and_the_whole_story() {
        let loopback: std::net::SocketAddr = "127.0.0.1:10043".parse().unwrap();
        assert_eq!(base_url(loopback), "http://127.0.0.1:10043");
        let any: std::net::SocketAddr = "[::]:9000".parse().unwrap();
        assert_eq!(base_url(any), "http://localhost:9000");
        let v6: std::net::SocketAddr = "[::1]:9000".parse().unwrap();
        assert_eq!(base_url(v6), "http://[::1]:9000");
        let text = banner("http://127.0.0.1:1", "http://127.0.0.1:10043", true);
        assert!(text.contains("Only this machine can reach these pages"));
        assert!(text.contains("  Status page:  http://127.0.0.1:10043/status\n"));
        for moment in ["25 s", "45 s", "75 s", "110 s", "120 s", "~85 s"] {
            assert!(text.contains(moment), "{moment} missing from {text}");
        }
        assert!(text.contains("bob gets his seat back"));
    }
}
