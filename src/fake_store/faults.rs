//! What the fake can be told to do wrong, and to which requests.

use std::time::Duration;

/// Which requests a fault applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// Every request.
    Any,
    /// The token endpoint.
    Token,
    /// Every Get seat request.
    AllSeats,
    /// Get seat for one user (compared case-insensitively).
    User(String),
    /// Any request whose raw path and query contain this text.
    PathContains(String),
    /// Every Get seats (listing) request.
    AllListings,
    /// Page `n` (1-based) of any Get seats listing.
    SeatsPage(u32),
    /// Every Get Inventory request.
    Inventory,
    /// Page `n` (1-based) of Get Inventory.
    InventoryPage(u32),
}

/// What the fake does instead of answering normally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Answer with this status, body and optional `Retry-After`.
    Status {
        /// HTTP status.
        code: u16,
        /// Response body.
        body: String,
        /// `Retry-After` header value, sent as given.
        retry_after: Option<String>,
    },
    /// Wait, then answer normally.
    Delay(Duration),
    /// A 200 whose body is cut off mid-JSON.
    Malformed,
    /// A 200 whose body is this many bytes (over the exporter's cap).
    Oversized(usize),
    /// A 200 whose body is this many bytes, streamed with chunked transfer
    /// encoding: no `Content-Length`, so only counting the bytes read can
    /// tell that it is over the exporter's cap.
    OversizedChunked(usize),
    /// A 200 with its headers and the start of a seat body (chunked), then
    /// the body stream fails and the connection is cut mid-body.
    CutMidBody,
    /// Close the connection without answering.
    Drop,
    /// A 200 with this body.
    Body(String),
}

/// A fault: which requests, how many times, and what happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Requests it applies to.
    pub matches: Match,
    /// How many more requests it applies to; `None` until cleared.
    pub remaining: Option<u32>,
    /// What happens.
    pub action: Action,
}

impl Fault {
    /// A fault for every matching request until cleared.
    pub fn always(matches: Match, action: Action) -> Fault {
        Fault {
            matches,
            remaining: None,
            action,
        }
    }

    /// A fault for the next `n` matching requests.
    pub fn times(n: u32, matches: Match, action: Action) -> Fault {
        Fault {
            matches,
            remaining: Some(n),
            action,
        }
    }

    /// A 404 with this body (an HTML page from a proxy, an empty body:
    /// not the Store's JSON, SPEC §17).
    pub fn not_found_body(body: &str) -> Action {
        Action::Status {
            code: 404,
            body: body.to_owned(),
            retry_after: None,
        }
    }

    /// Shorthand for [`Action::Status`] with an empty JSON body.
    pub fn status(code: u16) -> Action {
        Action::Status {
            code,
            body: "{}".into(),
            retry_after: None,
        }
    }

    /// Shorthand for a status with a `Retry-After` value.
    pub fn status_retry_after(code: u16, retry_after: &str) -> Action {
        Action::Status {
            code,
            body: "{}".into(),
            retry_after: Some(retry_after.into()),
        }
    }
}
