//! The Microsoft Store for Business API as the exporter sees it: Get seat,
//! the paged listings Get seats and Get Inventory, their OAuth2 token, and
//! the classification of every answer into the labels the metrics use
//! (SPEC §4, §6, §11).
//!
//! - `auth`: client-credentials token cache with single-flight refresh.
//! - `client`: one HTTP request per call, bounded body, classified answer.
//! - `model`: tolerant decoding of the wire formats.
//! - `list`: the paged listings (Get seats, Get Inventory) of SPEC §11.

mod auth;
mod client;
pub mod credential;
pub mod list;
pub mod model;

use std::borrow::Cow;
use std::time::Duration;

pub use auth::{AccessToken, TokenError, TokenSource};
pub(crate) use client::SEGMENT;
// For the poller's retry tests: `Retry-After` read as the client reads it.
#[cfg(test)]
pub(crate) use client::parse_retry_after;
pub use client::{Answer, Failure, StoreClient, seat_path};
pub use list::{
    InventoryEntry, InventoryListing, InventoryPage, ListedSeat, Page, PageAnswer, PageKind,
    SeatListing, SeatPage,
};
pub use model::{ItemType, SeatDetails, SeatState};

/// Largest response body read from the Store (SPEC §4); more is a `body`
/// error and the rest is not read.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Longest `Retry-After` we honour (SPEC §5).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The `code` label of a failed or negative check: the HTTP status, or the
/// class of failure when there was none. A small closed set, so it is safe as
/// a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorCode {
    /// An HTTP status other than 200.
    Status(u16),
    /// No answer within the timeout.
    Timeout,
    /// Connection refused, reset or closed before an answer.
    Connect,
    /// The body could not be read or was over [`MAX_BODY_BYTES`].
    Body,
    /// A 200 whose body is not SeatDetails.
    Decode,
    /// No token could be obtained, so no request was made.
    Token,
    /// A listing did not end: more pages than `max_pages`, or the Store
    /// handed back the same continuation token with the same page.
    Paging,
}

impl ErrorCode {
    /// The label value.
    pub fn label(self) -> Cow<'static, str> {
        match self {
            ErrorCode::Status(s) => Cow::Owned(s.to_string()),
            ErrorCode::Timeout => Cow::Borrowed("timeout"),
            ErrorCode::Connect => Cow::Borrowed("connect"),
            ErrorCode::Body => Cow::Borrowed("body"),
            ErrorCode::Decode => Cow::Borrowed("decode"),
            ErrorCode::Token => Cow::Borrowed("token"),
            ErrorCode::Paging => Cow::Borrowed("paging"),
        }
    }
}

/// The `reason` label: the 404 item type, `not_online` for 409, else empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// No further detail.
    None,
    /// 404, item type Seat.
    Seat,
    /// 404, item type User.
    User,
    /// 404, item type Inventory.
    Inventory,
    /// 404 without a recognisable item type.
    Unknown,
    /// 409 Conflict, "Not online".
    NotOnline,
}

impl Reason {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Reason::None => "",
            Reason::Seat => "seat",
            Reason::User => "user",
            Reason::Inventory => "inventory",
            Reason::Unknown => "unknown",
            Reason::NotOnline => "not_online",
        }
    }
}

impl From<ItemType> for Reason {
    fn from(t: ItemType) -> Reason {
        match t {
            ItemType::Seat => Reason::Seat,
            ItemType::User => Reason::User,
            ItemType::Inventory => Reason::Inventory,
            ItemType::Unknown => Reason::Unknown,
        }
    }
}
