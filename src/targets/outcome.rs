//! The vocabulary of a check's result (SPEC §5, §6): [`Outcome`], and the
//! `code` and `reason` labels ([`ErrorCode`], [`Reason`]) it carries into
//! the table, the metrics and the logs. It lives with the table rather than
//! with the HTTP client because the table, the exposition and the pages all
//! speak it and none of them needs the client; the client only produces it.

use std::borrow::Cow;

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
    /// The body could not be read or was over the size limit
    /// (`store::MAX_BODY_BYTES`).
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
    /// A 404 whose body is not the Store's JSON (a proxy's page, a wrong
    /// path): inconclusive (SPEC §17).
    NotStore,
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
            Reason::NotStore => "not_store",
        }
    }
}

/// What one check concluded (SPEC §5).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The Store answered about the seat.
    Conclusive {
        /// Whether an active seat is held.
        active: bool,
        /// `dateAssigned` of an active seat, Unix seconds.
        assigned_at: Option<f64>,
        /// A negative answer that is also counted as an error (404).
        negative: Option<(ErrorCode, Reason)>,
    },
    /// No answer about the seat; the last conclusive value stays.
    Inconclusive(Inconclusive),
}

/// A check, listing or request that gave no answer about the seat.
#[derive(Debug, Clone, PartialEq)]
pub struct Inconclusive {
    /// The `code` label.
    pub code: ErrorCode,
    /// The `reason` label.
    pub reason: Reason,
    /// For logs and the status page.
    pub detail: String,
}

impl Outcome {
    /// Whether the check gave an answer about the seat.
    pub fn is_conclusive(&self) -> bool {
        matches!(self, Outcome::Conclusive { .. })
    }
}

impl From<Inconclusive> for Outcome {
    fn from(i: Inconclusive) -> Outcome {
        Outcome::Inconclusive(i)
    }
}
