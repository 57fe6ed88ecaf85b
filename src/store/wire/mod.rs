//! Wire types of the Store API, decoded tolerantly (SPEC §4): field names and
//! enum values are matched case-insensitively because the documentation shows
//! both `state`/`active` and `State`/`Active`; unknown fields are ignored; the
//! undocumented 404 body is searched for an item type wherever it may be.
//!
//! Every wire type of the Store API is here: Get seat's SeatDetails and
//! the 404 body in this file, the listings' pages in `pages`. They are kept
//! apart from the domain types in `targets` so that a change in the wire
//! format stays in this module.

mod pages;

use std::fmt;

use chrono::{DateTime, NaiveDateTime};
use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use crate::targets::Reason;
pub use pages::{InventoryEntry, InventoryPage, ListedSeat, Page, SeatPage};

/// The `state` of a seat as the Store reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeatState {
    /// `active`: the user holds the seat.
    Active,
    /// `revoked`: the seat was reclaimed.
    Revoked,
    /// Any other value; counted as "no active seat" (SPEC §5).
    Other(String),
}

impl SeatState {
    /// Reads a wire value, case-insensitively and ignoring surrounding
    /// white space. A blank value names no state at all: it is `None`, and
    /// the answer is garbage (a `decode` error, inconclusive), not a seat
    /// in some unknown state, which would be a conclusive 0 (SPEC §5).
    pub fn parse(state: &str) -> Option<SeatState> {
        let state = state.trim();
        if state.is_empty() {
            return None;
        }
        Some(if state.eq_ignore_ascii_case("active") {
            SeatState::Active
        } else if state.eq_ignore_ascii_case("revoked") {
            SeatState::Revoked
        } else {
            SeatState::Other(state.to_owned())
        })
    }
}

/// The parts of SeatDetails the exporter uses.
#[derive(Debug, Clone, PartialEq)]
pub struct SeatDetails {
    /// Seat state.
    pub state: SeatState,
    /// `dateAssigned` as Unix seconds, when present and readable.
    pub date_assigned: Option<f64>,
}

/// Why a 200 body is not SeatDetails.
#[derive(Debug, thiserror::Error)]
#[error("response is not SeatDetails: {0}")]
pub struct DecodeError(String);

impl SeatDetails {
    /// Decodes a Get seat 200 body.
    ///
    /// # Errors
    /// [`DecodeError`] when the body is not a JSON object with a string
    /// `state` that is not blank. An unreadable `dateAssigned` is not an
    /// error: the date is informational and must not make a seat look
    /// unknown.
    pub fn decode(body: &[u8]) -> Result<SeatDetails, DecodeError> {
        let wire: WireSeat =
            serde_json::from_slice(body).map_err(|e| DecodeError(describe_json_error(&e)))?;
        let state = wire
            .state
            .ok_or_else(|| DecodeError("no state field".into()))?;
        let state = SeatState::parse(&state).ok_or_else(|| DecodeError("blank state".into()))?;
        Ok(SeatDetails {
            state,
            date_assigned: wire.date_assigned.as_deref().and_then(parse_datetime),
        })
    }
}

/// What is wrong with a body that did not decode, without quoting it:
/// serde_json's own message repeats the offending value (a 1 MiB string
/// would be kept in every target's last error and logged), so only the
/// kind of error and where it is are told.
pub fn describe_json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Io => "unreadable",
        Category::Syntax => "not valid JSON",
        Category::Data => "JSON of another shape",
        Category::Eof => "truncated JSON",
    };
    format!("{what} (line {}, column {})", e.line(), e.column())
}

/// SeatDetails on the wire, with case-insensitive field names.
struct WireSeat {
    state: Option<String>,
    date_assigned: Option<String>,
}

impl<'de> Deserialize<'de> for WireSeat {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(WireSeatVisitor)
    }
}

struct WireSeatVisitor;

impl<'de> Visitor<'de> for WireSeatVisitor {
    type Value = WireSeat;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a SeatDetails object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<WireSeat, A::Error> {
        let mut seat = WireSeat {
            state: None,
            date_assigned: None,
        };
        while let Some(key) = map.next_key::<CiKey>()? {
            match key {
                // Named twice (in any casing) with different values: which
                // one the Store meant cannot be told, so the answer is not
                // SeatDetails (SPEC §17; first-wins read a lost seat).
                CiKey::State => {
                    let value = map.next_value::<String>()?;
                    match &seat.state {
                        None => seat.state = Some(value),
                        Some(first) if first.trim().eq_ignore_ascii_case(value.trim()) => {}
                        Some(_) => {
                            return Err(de::Error::custom("state given twice, differently"));
                        }
                    }
                }
                CiKey::DateAssigned if seat.date_assigned.is_none() => {
                    // Null, a number or an object here is ignored, not fatal.
                    if let Value::String(s) = map.next_value::<Value>()? {
                        seat.date_assigned = Some(s);
                    }
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(seat)
    }
}

/// A SeatDetails key, recognised without regard to case.
enum CiKey {
    State,
    DateAssigned,
    Other,
}

impl<'de> Deserialize<'de> for CiKey {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = CiKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<CiKey, E> {
                Ok(if v.eq_ignore_ascii_case("state") {
                    CiKey::State
                } else if v.eq_ignore_ascii_case("dateAssigned") {
                    CiKey::DateAssigned
                } else {
                    CiKey::Other
                })
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

/// Parses an ISO 8601 date-time with 0–7 (or more) fractional digits and an
/// optional offset or `Z`; without an offset the time is taken as UTC.
/// Returns Unix seconds.
pub fn parse_datetime(s: &str) -> Option<f64> {
    let s = s.trim();
    let utc = if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        t.to_utc()
    } else {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
            .ok()?
            .and_utc()
    };
    Some(utc.timestamp() as f64 + f64::from(utc.timestamp_subsec_micros()) / 1e6)
}

/// The item type a 404 names (SPEC §4, `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemType {
    /// The user has no seat for the product.
    Seat,
    /// The user is unknown.
    User,
    /// The product/SKU is not in the tenant's inventory.
    Inventory,
    /// The body did not say.
    Unknown,
}

impl ItemType {
    /// Reads the undocumented 404 body: anywhere in it, a key `ItemType`
    /// (any case) with a string value, or an object
    /// `{"key": "ItemType", "value": …}`. Anything else is [`ItemType::Unknown`].
    pub fn from_not_found_body(body: &[u8]) -> ItemType {
        match serde_json::from_slice::<Value>(body) {
            Ok(v) => find_item_type(&v).map_or(ItemType::Unknown, Self::from_name),
            Err(_) => ItemType::Unknown,
        }
    }

    /// The item type of a 404 that is the Store's own: a body that is a
    /// JSON object. `None` for anything else — an HTML page from a proxy, a
    /// wrong `base_url` path, an empty body — which says nothing about the
    /// seat (SPEC §17).
    pub fn from_store_404(body: &[u8]) -> Option<ItemType> {
        match serde_json::from_slice::<Value>(body) {
            Ok(v @ Value::Object(_)) => {
                Some(find_item_type(&v).map_or(ItemType::Unknown, Self::from_name))
            }
            _ => None,
        }
    }

    fn from_name(name: &str) -> ItemType {
        let name = name.trim();
        if name.eq_ignore_ascii_case("seat") {
            ItemType::Seat
        } else if name.eq_ignore_ascii_case("user") {
            ItemType::User
        } else if name.eq_ignore_ascii_case("inventory") {
            ItemType::Inventory
        } else {
            ItemType::Unknown
        }
    }
}

/// Depth-first search for the item type. serde_json's recursion limit (128)
/// bounds the depth of what we are given, so recursion here is bounded too.
fn find_item_type(v: &Value) -> Option<&str> {
    match v {
        Value::Object(map) => {
            for (k, val) in map {
                if k.eq_ignore_ascii_case("itemtype")
                    && let Value::String(s) = val
                {
                    return Some(s);
                }
            }
            let key = map
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("key"))
                .and_then(|(_, v)| v.as_str());
            if key.is_some_and(|k| k.eq_ignore_ascii_case("itemtype"))
                && let Some(s) = map
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("value"))
                    .and_then(|(_, v)| v.as_str())
            {
                return Some(s);
            }
            map.values().find_map(find_item_type)
        }
        Value::Array(items) => items.iter().find_map(find_item_type),
        _ => None,
    }
}

/// The `reason` label of a 404 naming this item type.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_both_casings() {
        let a = SeatDetails::decode(br#"{"state":"active","dateAssigned":"2024-01-02T03:04:05Z"}"#)
            .unwrap();
        assert_eq!(a.state, SeatState::Active);
        assert_eq!(a.date_assigned, Some(1_704_164_645.0));
        let b = SeatDetails::decode(br#"{"State":"Revoked","AssignedTo":"x","Extra":{"a":[1]}}"#)
            .unwrap();
        assert_eq!(b.state, SeatState::Revoked);
        let c = SeatDetails::decode(br#"{"STATE":"Suspended"}"#).unwrap();
        assert_eq!(c.state, SeatState::Other("Suspended".into()));
        let d = SeatDetails::decode(br#"{"state":" Active\n"}"#).unwrap();
        assert_eq!(
            d.state,
            SeatState::Active,
            "white space is not part of the state"
        );
    }

    #[test]
    fn a_decode_error_does_not_quote_the_body() {
        let body = format!("\"{}\"", "\u{85}".repeat(100_000));
        let e = SeatDetails::decode(body.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.len() < 100, "{e}");
        assert_eq!(
            e,
            "response is not SeatDetails: JSON of another shape (line 1, column 200002)"
        );
    }

    #[test]
    fn rejects_what_is_not_seat_details() {
        for body in [
            &b"not json"[..],
            b"[]",
            b"{}",
            b"{\"state\":1}",
            b"{\"state\":null}",
            b"{\"state\":\"\"}",
            b"{\"state\":\" \\t\"}",
            b"\"active\"",
            b"{\"state\":\"active\"",
        ] {
            assert!(
                SeatDetails::decode(body).is_err(),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn bad_dates_are_ignored_not_fatal() {
        let s = SeatDetails::decode(br#"{"state":"Active","dateAssigned":"yesterday"}"#).unwrap();
        assert_eq!(s.state, SeatState::Active);
        assert_eq!(s.date_assigned, None);
        let s = SeatDetails::decode(br#"{"state":"Active","dateAssigned":12}"#).unwrap();
        assert_eq!(s.date_assigned, None);
    }

    #[test]
    fn dates_with_0_to_7_fraction_digits_and_offsets() {
        assert_eq!(
            parse_datetime("2015-07-13T21:02:25Z"),
            Some(1_436_821_345.0)
        );
        assert_eq!(parse_datetime("2015-07-13T21:02:25"), Some(1_436_821_345.0));
        assert_eq!(
            parse_datetime("2015-07-13T14:02:25-07:00"),
            Some(1_436_821_345.0)
        );
        let t = parse_datetime("2015-07-13T14:02:25.6863382-07:00").unwrap();
        assert!((t - 1_436_821_345.686_338).abs() < 1e-5, "{t}");
        let t = parse_datetime("2015-07-13T21:02:25.5").unwrap();
        assert!((t - 1_436_821_345.5).abs() < 1e-6);
        assert_eq!(parse_datetime("13/07/2015"), None);
    }

    #[test]
    fn item_types_from_the_three_known_shapes() {
        let shapes: [(&[u8], ItemType); 7] = [
            (
                br#"{"code":"NotFound","data":[{"key":"ItemType","value":"Seat"}]}"#,
                ItemType::Seat,
            ),
            (
                br#"{"ItemType":"User","Values":"alice@contoso.com"}"#,
                ItemType::User,
            ),
            (
                br#"{"error":{"details":{"itemType":"Inventory"}}}"#,
                ItemType::Inventory,
            ),
            (
                br#"{"error":{"details":{"itemType":"Gadget"}}}"#,
                ItemType::Unknown,
            ),
            (br#"{"ItemType":3}"#, ItemType::Unknown),
            (b"<html>not found</html>", ItemType::Unknown),
            (b"", ItemType::Unknown),
        ];
        for (body, want) in shapes {
            assert_eq!(
                ItemType::from_not_found_body(body),
                want,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn deeply_nested_bodies_do_not_overflow() {
        let deep = "[".repeat(100_000);
        assert_eq!(
            ItemType::from_not_found_body(deep.as_bytes()),
            ItemType::Unknown
        );
        assert!(SeatDetails::decode(deep.as_bytes()).is_err());
    }
}
