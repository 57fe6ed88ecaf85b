//! The Microsoft Store for Business API as the exporter sees it: Get seat,
//! the paged listings Get seats and Get Inventory, their OAuth2 token, and
//! the classification of every answer into the labels the metrics use
//! (SPEC §4, §6, §11).
//!
//! - `http`: one exchange — send, count, read the body within its cap,
//!   classify — shared by every request below.
//! - `auth`: client-credentials token cache with single-flight refresh.
//! - `client`: the client and one Get seat request.
//! - `list`: one page of the paged listings (Get seats, Get Inventory).
//! - `wire`: every wire type, decoded tolerantly.

mod auth;
mod client;
pub mod credential;
mod http;
pub mod list;
pub mod wire;

use std::time::Duration;

pub use auth::{AccessToken, TokenError, TokenSource, token_url};
pub use client::{StoreClient, seat_path};
// For the poller's retry tests: `Retry-After` read as the client reads it.
#[cfg(test)]
pub(crate) use http::parse_retry_after;
pub use http::{Answer, Failure};
pub use list::{Fetched, InventoryListing, PageKind, SeatListing};
pub use wire::{
    InventoryEntry, InventoryPage, ItemType, ListedSeat, Page, SeatDetails, SeatPage, SeatState,
};

/// Largest response body read from the Store (SPEC §4); more is a `body`
/// error and the rest is not read.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Longest `Retry-After` we honour (SPEC §5).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// A keep-alive HTTP server on a fresh loopback port that answers every
/// request with `answer` (raw HTTP, so a test controls the framing); its
/// URL and the number of connections it accepted. For the client's own
/// tests, where the fake Store's framing and pooling are not the point.
#[cfg(test)]
pub(crate) async fn canned_server(
    answer: Vec<u8>,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    let answer: Arc<[u8]> = answer.into();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let answer = Arc::clone(&answer);
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = stream.read(&mut buf).await {
                    request.extend_from_slice(&buf[..n]);
                    if request.windows(4).any(|w| w == b"\r\n\r\n") {
                        request.clear();
                        if stream.write_all(&answer).await.is_err() {
                            break;
                        }
                    }
                }
            });
        }
    });
    (url, accepted)
}
