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
