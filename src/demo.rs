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

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The fake Store or the exporter could not listen.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: String,
        /// Why.
        source: std::io::Error,
    },
    /// The built-in configuration was refused (a bug).
    #[error("built-in demo configuration is invalid: {0}")]
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

/// Runs the demo until `shutdown` fires.
///
/// # Errors
/// [`DemoError`] when a port cannot be bound.
pub async fn run(listen: Option<&str>, shutdown: CancellationToken) -> Result<(), DemoError> {
    let fake = Arc::new(
        FakeStore::start()
            .await
            .map_err(|source| DemoError::Listen {
                address: "127.0.0.1:0".into(),
                source,
            })?,
    );
    let listen = listen.unwrap_or(":10043").to_owned();
    let config = demo_config(&fake, &listen)?;
    let exporter = Exporter::new(config, Options::default())?;
    let listener = web::serve::bind(&listen)
        .await
        .map_err(|source| DemoError::Listen {
            address: listen.clone(),
            source,
        })?;
    let port = listener
        .local_addr()
        .map_or_else(|_| listen.clone(), |a| a.port().to_string());
    println!(
        "msfb_seat_exporter demo: a fake Store is answering on {fake_url}\n\
         \n  Landing page: http://localhost:{port}/\n  Status page:  http://localhost:{port}/status\n  \
         Metrics:      http://localhost:{port}/metrics\n\n\
         Checks run every 10 s. Bob's seat is lost about 25 s after start and\n\
         msfb_seat_active{{user=\"bob@contoso.com\",product_id=\"{np}\"}} drops to 0 by ~35 s.\n\
         At 45 s the Store fails dave's checks: msfb_seat_check_success drops, the seat does not.\n\
         Press Ctrl-C to stop.",
        fake_url = fake.base_url(),
        np = NOTES.0,
    );
    let story = tokio::spawn(timeline(Arc::clone(&fake), shutdown.child_token()));
    daemon::run(&exporter, listener, web::Transport::Plain, shutdown).await;
    story.abort();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_demo_configuration_is_valid() {
        let fake = FakeStore::start().await.unwrap();
        let config = demo_config(&fake, ":10043").unwrap();
        assert_eq!(config.target_count(), 9);
        assert!(config.products[2].discover);
    }
}
