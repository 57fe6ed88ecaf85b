//! A fake of the Store API and its token endpoint (SPEC §8): a real HTTP
//! server on a loopback port, used by the tests, `--demo` and the
//! benchmarks, so that they exercise the real client, parser and poller.
//!
//! It keeps users, products, seats and inventory entries in memory, issues
//! and checks bearer tokens, answers 404 with an item type, lists seats (Get
//! seats) and the inventory (Get Inventory) in pages, and can be told to
//! misbehave ([`Fault`]): a status for N requests, for one user or for one
//! page of a listing, a delay, a `Retry-After`, a malformed or oversized
//! body (with a `Content-Length` or streamed in chunks without one), a body
//! cut off mid-stream, a dropped connection, tokens that expire after N
//! seconds, and listings that ignore the page size, repeat a token or never
//! end ([`Paging`]). It counts what it was asked, so tests can assert on the
//! requests the exporter really made.
//!
//! Continuation tokens are opaque strings full of characters that URL
//! encoding must protect (`&`, `=`, `+`, `/`, `%`, a space); a token that
//! does not come back byte for byte is refused with a 400.

mod entra;
mod faults;
mod handlers;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use entra::{CredentialKind, Grant, IMDS_PATH};
pub use faults::{Action, Fault, Match};

/// Client id the fake accepts unless told otherwise.
pub const CLIENT_ID: &str = "00000000-0000-0000-0000-00000000fake";
/// Client secret the fake accepts unless told otherwise.
pub const CLIENT_SECRET: &str = "fake-client-secret";
/// Tenant used in the fake's token URL.
pub const TENANT: &str = "fake.onmicrosoft.com";

/// How the fake spells field names and enum values (the docs show both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Casing {
    /// `state: "active"` (older docs).
    Camel,
    /// `State: "Active"` (newer docs).
    Pascal,
}

/// Which of the known 404 body shapes the fake sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotFoundShape {
    /// `{"code":"NotFound","data":[{"key":"ItemType","value":"Seat"}]}`
    KeyValue,
    /// `{"ItemType":"User","Values":"…"}`
    Flat,
    /// `{"error":{"details":{"itemType":"Inventory"}}}`
    Nested,
}

/// A seat as the fake holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeSeat {
    /// `Active`, `Revoked` or anything else.
    pub state: String,
    /// `dateAssigned` as sent.
    pub date_assigned: Option<String>,
}

impl FakeSeat {
    /// An active seat assigned at a fixed date.
    pub fn active() -> FakeSeat {
        FakeSeat {
            state: "Active".into(),
            date_assigned: Some("2024-05-06T07:08:09.1234567Z".into()),
        }
    }

    /// A revoked seat.
    pub fn revoked() -> FakeSeat {
        FakeSeat {
            state: "Revoked".into(),
            date_assigned: Some("2024-05-06T07:08:09.1234567Z".into()),
        }
    }
}

/// A product's Get Inventory entry as the fake holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeInventory {
    /// `seatCapacity`.
    pub seat_capacity: i64,
    /// `availableSeats`; `None`: capacity minus the active seats held.
    pub available_seats: Option<i64>,
    /// `licenseType` as sent (`Online`, `Offline`).
    pub license_type: String,
    /// `distributionPolicy` as sent (`Open`, `Restricted`).
    pub distribution_policy: String,
    /// `status` as sent (`Active`, `Removed`).
    pub status: String,
}

impl Default for FakeInventory {
    /// 100 online seats, restricted, active; availability computed.
    fn default() -> Self {
        FakeInventory {
            seat_capacity: 100,
            available_seats: None,
            license_type: "Online".into(),
            distribution_policy: "Restricted".into(),
            status: "Active".into(),
        }
    }
}

/// How the fake pages its listings (Get seats and Get Inventory).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paging {
    /// Use this page size whatever `maxResults` asks for.
    pub page_size: Option<usize>,
    /// From the second page on, answer every page with the token it was
    /// given: the same page again, forever.
    pub repeat_token: bool,
    /// Never end: past the last item, empty pages with fresh tokens.
    pub endless: bool,
}

/// What the fake has been asked, for assertions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Token requests (any outcome).
    pub token_requests: u64,
    /// Get seat requests (any outcome).
    pub seat_requests: u64,
    /// Get seats (listing) requests.
    pub list_requests: u64,
    /// Get Inventory requests.
    pub inventory_requests: u64,
    /// Everything.
    pub total: u64,
    /// Most requests being answered at the same moment.
    pub max_in_flight: u64,
}

type ProductKey = (String, String);

#[derive(Debug)]
pub(crate) struct State {
    pub client_id: String,
    pub client_secret: String,
    pub token_lifetime: Duration,
    pub expires_in_as_string: bool,
    /// `expires_in` sent verbatim instead of the lifetime (SPEC §17 cases).
    pub expires_in_raw: Option<serde_json::Value>,
    pub tokens: HashMap<String, tokio::time::Instant>,
    pub token_serial: u64,
    pub users: HashSet<String>,
    pub products: HashSet<ProductKey>,
    pub seats: HashMap<(ProductKey, String), FakeSeat>,
    pub inventory: HashMap<ProductKey, FakeInventory>,
    pub paging: Paging,
    pub casing: Casing,
    pub not_found_shape: NotFoundShape,
    pub faults: Vec<Fault>,
    pub counts: Counts,
    /// Requests being answered now.
    pub in_flight: u64,
    /// Raw request targets (path and query) of the latest requests.
    pub log: std::collections::VecDeque<String>,
    /// Certificates, federated tokens and identities (SPEC §12).
    pub directory: entra::Directory,
    /// Serving HTTPS (assertions name an `https://` audience).
    pub https: bool,
}

/// How long the fake keeps an idle keep-alive connection open: longer than
/// reqwest's pool keeps one (90 s), so that no request races the close.
const IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Longest a connection to the fake may live: a day, longer than a test or
/// a demo session normally runs.
const MAX_CONNECTION_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// Requests kept in the log.
const LOG_LEN: usize = 10_000;

impl State {
    fn new() -> State {
        State {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            token_lifetime: Duration::from_secs(3599),
            expires_in_as_string: true,
            expires_in_raw: None,
            tokens: HashMap::new(),
            token_serial: 0,
            users: HashSet::new(),
            products: HashSet::new(),
            seats: HashMap::new(),
            inventory: HashMap::new(),
            paging: Paging::default(),
            casing: Casing::Pascal,
            not_found_shape: NotFoundShape::KeyValue,
            faults: Vec::new(),
            counts: Counts::default(),
            in_flight: 0,
            log: std::collections::VecDeque::new(),
            directory: entra::Directory::default(),
            https: false,
        }
    }
}

/// Shared between the server task and the test's handle.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // Test code may panic while holding nothing of ours; the state is
        // still consistent, so recover from poisoning.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running fake Store; stops when dropped.
#[derive(Debug)]
pub struct FakeStore {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Mutex<CancellationToken>,
    /// Set when serving HTTPS.
    tls: Option<crate::web::tls::TlsAcceptor>,
}

impl Drop for FakeStore {
    fn drop(&mut self) {
        self.stop_token().cancel();
    }
}

impl FakeStore {
    /// Starts the fake on `127.0.0.1` on a free port.
    ///
    /// # Errors
    /// When no port can be bound.
    pub async fn start() -> std::io::Result<FakeStore> {
        Self::start_on("127.0.0.1:0").await
    }

    /// Starts the fake on a given address.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn start_on(addr: &str) -> std::io::Result<FakeStore> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new()),
        });
        let stop = Self::spawn(listener, Arc::clone(&shared), crate::web::serve::Plain);
        Ok(FakeStore {
            addr,
            shared,
            stop: Mutex::new(stop),
            tls: None,
        })
    }

    /// Starts the fake on `127.0.0.1` on a free port, serving HTTPS with
    /// the certificate and key in `files` (tests of `[store] ca_file` and
    /// of proxies that tunnel with CONNECT).
    ///
    /// # Errors
    /// When no port can be bound or the files are not a usable pair.
    pub async fn start_tls(files: &crate::config::TlsFiles) -> std::io::Result<FakeStore> {
        let acceptor = crate::web::tls::TlsAcceptor::new(files).map_err(std::io::Error::other)?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut state = State::new();
        state.https = true;
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
        });
        let stop = Self::spawn(listener, Arc::clone(&shared), acceptor.clone());
        Ok(FakeStore {
            addr,
            shared,
            stop: Mutex::new(stop),
            tls: Some(acceptor),
        })
    }

    fn spawn<A: crate::web::serve::Acceptor>(
        listener: TcpListener,
        shared: Arc<Shared>,
        acceptor: A,
    ) -> CancellationToken {
        let stop = CancellationToken::new();
        let service = handlers::service(shared);
        let stopped = stop.clone();
        let limits = crate::web::serve::Limits {
            max_connections: 4096,
            // hyper's header read timeout is also how long an idle
            // keep-alive connection stays open. At the exporter's 10 s it
            // closed each connection just as the next 10 s poll cycle
            // reused it, and a check failed with a reset at random. Like
            // a real front end, the fake keeps idle connections longer
            // than the client's pool does (reqwest drops them after 90 s),
            // so the client always retires a connection first.
            header_read_timeout: IDLE_TIMEOUT,
            // The age limit cuts a connection even mid-request; the fake
            // serves tests and demos that reuse connections for longer.
            max_connection_age: MAX_CONNECTION_AGE,
            shutdown_grace: Duration::ZERO,
            // The exporter's write-progress limit suits the fake as well.
            ..Default::default()
        };
        tokio::spawn(async move {
            crate::web::serve::serve(
                listener,
                acceptor,
                service,
                limits,
                stopped.cancelled_owned(),
            )
            .await;
        });
        stop
    }

    fn stop_token(&self) -> CancellationToken {
        self.stop.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Stops serving (also done on drop): the port is closed and open
    /// connections are cut, so clients see refused connections.
    pub fn stop(&self) {
        self.stop_token().cancel();
    }

    /// Serves again on the same address with the same data, after
    /// [`stop`](Self::stop).
    ///
    /// # Errors
    /// When the address cannot be bound again.
    pub async fn restart(&self) -> std::io::Result<()> {
        self.stop();
        let listener = TcpListener::bind(self.addr).await?;
        let stop = match &self.tls {
            Some(tls) => Self::spawn(listener, Arc::clone(&self.shared), tls.clone()),
            None => Self::spawn(listener, Arc::clone(&self.shared), crate::web::serve::Plain),
        };
        *self.stop.lock().unwrap_or_else(|p| p.into_inner()) = stop;
        Ok(())
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `base_url` for the exporter's `[store]`.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// `token_url` for the exporter's `[auth]` (with `{tenant_id}` left in).
    pub fn token_url(&self) -> String {
        format!("{}/{{tenant_id}}/oauth2/token", self.base_url())
    }

    /// A complete configuration (TOML) pointing at this fake, with the
    /// secret taken from `secret_file` and the given products section.
    pub fn config_toml(&self, secret_file: &str, products: &str) -> String {
        format!(
            "[store]\nbase_url = \"{}\"\ntimeout = \"2s\"\nmax_requests_per_second = 0\n\n\
             [auth]\ntenant_id = \"{TENANT}\"\nclient_id = \"{CLIENT_ID}\"\n\
             client_secret_file = \"{secret_file}\"\ntoken_url = \"{}\"\n\n\
             [poll]\ninterval = \"10s\"\n\n{products}",
            self.base_url(),
            self.token_url()
        )
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }

    /// Adds a product to the tenant's inventory.
    pub fn add_product(&self, product_id: &str, sku_id: &str) {
        self.lock()
            .products
            .insert((product_id.into(), sku_id.into()));
    }

    /// Sets a product's inventory entry (adding the product if needed).
    pub fn set_inventory(&self, product_id: &str, sku_id: &str, entry: FakeInventory) {
        let mut s = self.lock();
        let key: ProductKey = (product_id.into(), sku_id.into());
        s.products.insert(key.clone());
        s.inventory.insert(key, entry);
    }

    /// Removes a product from the tenant's inventory: Get seat and Get seats
    /// then answer 404 with item type Inventory, Get Inventory omits it. Its
    /// seats are kept, so adding it back restores them.
    pub fn remove_product(&self, product_id: &str, sku_id: &str) {
        let key: ProductKey = (product_id.into(), sku_id.into());
        let mut s = self.lock();
        s.products.remove(&key);
        s.inventory.remove(&key);
    }

    /// Chooses how listings are paged.
    pub fn set_paging(&self, paging: Paging) {
        self.lock().paging = paging;
    }

    /// Adds a user to the tenant's directory.
    pub fn add_user(&self, upn: &str) {
        self.lock().users.insert(upn.to_lowercase());
    }

    /// Sets a seat (adding the product and user if needed).
    pub fn set_seat(&self, product_id: &str, sku_id: &str, upn: &str, seat: FakeSeat) {
        let mut s = self.lock();
        let key: ProductKey = (product_id.into(), sku_id.into());
        s.products.insert(key.clone());
        s.users.insert(upn.to_lowercase());
        s.seats.insert((key, upn.to_lowercase()), seat);
    }

    /// Removes a seat: Get seat then answers 404 with item type Seat.
    pub fn remove_seat(&self, product_id: &str, sku_id: &str, upn: &str) {
        let key: ProductKey = (product_id.into(), sku_id.into());
        self.lock().seats.remove(&(key, upn.to_lowercase()));
    }

    /// The seat currently held, if any.
    pub fn seat(&self, product_id: &str, sku_id: &str, upn: &str) -> Option<FakeSeat> {
        let key: ProductKey = (product_id.into(), sku_id.into());
        self.lock().seats.get(&(key, upn.to_lowercase())).cloned()
    }

    /// Chooses the spelling of fields and enum values.
    pub fn set_casing(&self, casing: Casing) {
        self.lock().casing = casing;
    }

    /// Chooses the 404 body shape.
    pub fn set_not_found_shape(&self, shape: NotFoundShape) {
        self.lock().not_found_shape = shape;
    }

    /// Changes the accepted client secret (secret rotation).
    pub fn set_client_secret(&self, secret: &str) {
        self.lock().client_secret = secret.into();
    }

    /// Registers a certificate (PEM; the first certificate counts) on the
    /// app: assertions signed with its key are accepted. Several may be
    /// registered, as during a rotation.
    ///
    /// # Errors
    /// When `pem` holds no readable certificate.
    pub fn trust_certificate(&self, pem: &str) -> Result<(), String> {
        let trusted = entra::Trusted::from_pem(pem)?;
        self.lock().directory.trusted.push(trusted);
        Ok(())
    }

    /// Forgets every registered certificate.
    pub fn distrust_certificates(&self) {
        self.lock().directory.trusted.clear();
    }

    /// Accepts `token` as a federated client assertion (workload identity).
    pub fn accept_federated_token(&self, token: &str) {
        self.lock().directory.federated.push(token.to_owned());
    }

    /// Stops accepting every federated token accepted so far.
    pub fn revoke_federated_tokens(&self) {
        self.lock().directory.federated.clear();
    }

    /// Adds a user-assigned managed identity (its client id) to the VM; the
    /// system-assigned identity is always there.
    pub fn add_managed_identity(&self, client_id: &str) {
        self.lock().directory.identities.push(client_id.to_owned());
    }

    /// Makes token requests of `kind` fail (401 `invalid_client`; IMDS: 400
    /// identity not found) until [`accept_credential`](Self::accept_credential).
    pub fn reject_credential(&self, kind: CredentialKind) {
        self.lock().directory.rejected.insert(kind);
    }

    /// Undoes [`reject_credential`](Self::reject_credential).
    pub fn accept_credential(&self, kind: CredentialKind) {
        self.lock().directory.rejected.remove(&kind);
    }

    /// Every token issued so far and how it was asked for, oldest first.
    pub fn grants(&self) -> Vec<Grant> {
        self.lock().directory.grants.clone()
    }

    /// Why the latest refused token request was refused.
    pub fn last_refusal(&self) -> Option<String> {
        self.lock().directory.last_refusal.clone()
    }

    /// `authority_host` for the exporter's `[auth]`: the fake serves
    /// `/{tenant}/oauth2/token` and `/{tenant}/oauth2/v2.0/token`.
    pub fn authority_host(&self) -> String {
        self.base_url()
    }

    /// `managed_identity_endpoint` for the exporter's `[auth]`.
    pub fn imds_url(&self) -> String {
        format!("{}{IMDS_PATH}", self.base_url())
    }

    /// Lifetime of tokens issued from now on.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.lock().token_lifetime = lifetime;
    }

    /// Sends `expires_in` as a JSON number instead of a string.
    pub fn set_expires_in_as_number(&self, number: bool) {
        self.lock().expires_in_as_string = !number;
    }

    /// Sends this `expires_in` verbatim (a fraction, a negative number, a
    /// string …) instead of the token's lifetime, which still decides when
    /// the fake stops accepting the token; `None` goes back to normal.
    pub fn set_expires_in_raw(&self, raw: Option<serde_json::Value>) {
        self.lock().expires_in_raw = raw;
    }

    /// Invalidates every issued token: the next API call gets a 401.
    pub fn revoke_tokens(&self) {
        self.lock().tokens.clear();
    }

    /// Adds a fault; faults are tried in the order added.
    pub fn add_fault(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// Removes every fault (the Store heals).
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Request counters.
    pub fn counts(&self) -> Counts {
        self.lock().counts.clone()
    }

    /// Raw request targets (path and query) received, oldest first (the
    /// latest 10 000).
    pub fn request_log(&self) -> Vec<String> {
        self.lock().log.iter().cloned().collect()
    }

    /// Clears counters and the request log.
    pub fn reset_counts(&self) {
        let mut s = self.lock();
        s.counts = Counts::default();
        s.log.clear();
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// One keep-alive request on `tcp` and the start of its answer.
    async fn exchange(tcp: &mut tokio::net::TcpStream) -> String {
        tcp.write_all(b"GET /nothing-here HTTP/1.1\r\nHost: fake\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        // The 404 has a Content-Length and a small body: read the head,
        // then as much as it announces.
        loop {
            let n = tcp.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&answer);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(str::to_owned)
                    })
                    .map_or(0, |v| v.trim().parse().unwrap());
                if body.len() >= length {
                    break;
                }
            }
        }
        String::from_utf8_lossy(&answer)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned()
    }

    /// An idle keep-alive connection outlives the client's pooled copy
    /// (reqwest keeps one 90 s): the client always retires it first, so no
    /// request is ever sent on a connection the fake is closing. At 10 s
    /// idle the fake cut connections just as a 10 s poll cycle reused them.
    /// The clock is moved, not waited on; the requests run in real time.
    #[tokio::test]
    async fn an_idle_connection_stays_open_longer_than_a_client_pool_keeps_it() {
        let fake = FakeStore::start().await.unwrap();
        let mut tcp = tokio::net::TcpStream::connect(fake.addr()).await.unwrap();
        assert_eq!(exchange(&mut tcp).await, "HTTP/1.1 404 Not Found");
        tokio::time::pause();
        tokio::time::advance(Duration::from_secs(91)).await;
        tokio::time::resume();
        assert_eq!(exchange(&mut tcp).await, "HTTP/1.1 404 Not Found");
    }
}
