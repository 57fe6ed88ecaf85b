//! The paged listings of the Store API (SPEC §11): Get seats (every seat of
//! one product, `SeatDetailsResultSet`) and Get Inventory (the tenant's
//! products, `InventoryResultSet`).
//!
//! As in `client`, one call is one HTTP request and is never retried here:
//! walking the pages, retrying a page and deciding what an unfinished
//! listing means are the poller's business (`poller::listing`). This layer
//! builds the URLs — the continuation token goes back exactly as received,
//! percent-encoded so that no character of it can end the parameter or be
//! read as a space — and decodes a page tolerantly (SPEC §4: field names and
//! enum values in any case, unknown fields ignored).
//!
//! Tolerant is not lax where laxness could invent a lost seat: a page whose
//! seat list is missing, a seat without a readable `assignedTo` or `state`,
//! or a continuation token that is not a string is a `decode` error for the
//! whole page, because skipping it could make a held seat look unlisted.

use std::time::{Instant, SystemTime};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{ACCEPT, AUTHORIZATION};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::ErrorCode;
use super::auth::AccessToken;
use super::client::{
    Failure, Reply, SEGMENT, StoreClient, interpret, parse_retry_after, read_body,
    transport_failure,
};
use super::model::{ItemType, SeatState, describe_json_error, parse_datetime};
use crate::metrics::operation;

/// `maxResults` we ask for: the documented maximum of Get seats. Get
/// Inventory documents no maximum; the same value keeps both listings alike.
pub const PAGE_SIZE: u32 = 100;

/// Characters escaped in a query value: everything but RFC 3986 unreserved
/// characters. `+`, `&`, `=`, `%`, `/` and spaces in an opaque token all
/// travel escaped, so the Store gets back exactly the bytes it sent.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `?continuationToken=…&maxResults=…` (the order of the API documentation).
fn query(continuation: Option<&str>, max_results: u32) -> String {
    match continuation {
        Some(token) => format!(
            "?continuationToken={}&maxResults={max_results}",
            utf8_percent_encode(token, QUERY_VALUE)
        ),
        None => format!("?maxResults={max_results}"),
    }
}

/// `/V1/Inventory/{productId}/{skuId}/Seats?…`, segments and token encoded.
pub fn seats_path(product_id: &str, sku_id: &str, continuation: Option<&str>) -> String {
    format!(
        "/V1/Inventory/{}/{}/Seats{}",
        utf8_percent_encode(product_id, SEGMENT),
        utf8_percent_encode(sku_id, SEGMENT),
        query(continuation, PAGE_SIZE)
    )
}

/// `/V1/Inventory?…`, token encoded.
pub fn inventory_path(continuation: Option<&str>) -> String {
    format!("/V1/Inventory{}", query(continuation, PAGE_SIZE))
}

/// One page of a listing as decoded.
pub trait Page: Sized {
    /// Decodes a 2xx body.
    ///
    /// # Errors
    /// A description of what is wrong, for the `decode` error's detail.
    fn decode(body: &[u8]) -> Result<Self, String>;
    /// The token for the next page; `None` on the last page.
    fn continuation(&self) -> Option<&str>;
}

/// Which listing to page through.
pub trait PageKind {
    /// Its page type.
    type Page: Page;
    /// The `operation` label of its requests.
    fn operation(&self) -> &'static str;
    /// Path and query of the page after `continuation` (first page: `None`).
    fn path(&self, continuation: Option<&str>) -> String;
}

/// Get seats of one product.
#[derive(Debug, Clone, Copy)]
pub struct SeatListing<'a> {
    /// Product id.
    pub product_id: &'a str,
    /// SKU id.
    pub sku_id: &'a str,
}

impl PageKind for SeatListing<'_> {
    type Page = SeatPage;
    fn operation(&self) -> &'static str {
        operation::GET_SEATS
    }
    fn path(&self, continuation: Option<&str>) -> String {
        seats_path(self.product_id, self.sku_id, continuation)
    }
}

/// Get Inventory of the tenant.
#[derive(Debug, Clone, Copy)]
pub struct InventoryListing;

impl PageKind for InventoryListing {
    type Page = InventoryPage;
    fn operation(&self) -> &'static str {
        operation::GET_INVENTORY
    }
    fn path(&self, continuation: Option<&str>) -> String {
        inventory_path(continuation)
    }
}

/// What one page request came back with.
#[derive(Debug)]
pub enum PageAnswer<T> {
    /// A 2xx that decoded, with a digest of its body (to recognise a
    /// listing that serves the same page again and again).
    Page(T, [u8; 16]),
    /// A 404, with the item type its body names.
    NotFound(ItemType),
    /// Anything else, classified as for Get seat.
    Failed(Failure),
}

impl StoreClient {
    /// Requests one page of `kind` after `continuation`.
    pub async fn get_page<K: PageKind>(
        &self,
        kind: &K,
        continuation: Option<&str>,
        token: &AccessToken,
    ) -> PageAnswer<K::Page> {
        let url = format!("{}{}", self.base_url, kind.path(continuation));
        let op = kind.operation();
        let started = Instant::now();
        let sent = self
            .http
            .get(url)
            .header(AUTHORIZATION, token.header_value())
            .header(ACCEPT, "application/json")
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                let failure = transport_failure(&e);
                self.telemetry.observe_request(
                    op,
                    &failure.code.label(),
                    started.elapsed().as_secs_f64(),
                );
                return PageAnswer::Failed(failure);
            }
        };
        let status = response.status().as_u16();
        let retry_after = parse_retry_after(response.headers(), SystemTime::now());
        let body = read_body(response).await;
        self.telemetry.observe_request(
            op,
            &ErrorCode::Status(status).label(),
            started.elapsed().as_secs_f64(),
        );
        match interpret(status, body, retry_after, |b| {
            K::Page::decode(b).map(|page| (page, digest(b)))
        }) {
            Reply::Body((page, hash)) => PageAnswer::Page(page, hash),
            Reply::NotFound(item) => PageAnswer::NotFound(item),
            Reply::Failed(failure) => PageAnswer::Failed(failure),
        }
    }
}

/// First 16 bytes of SHA-256: enough to tell pages apart, small to keep.
pub fn digest(bytes: &[u8]) -> [u8; 16] {
    let full = Sha256::digest(bytes);
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// A seat as a listing shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedSeat {
    /// `assignedTo`: normally a UPN, sometimes an object id.
    pub assigned_to: String,
    /// Seat state.
    pub state: SeatState,
    /// `dateAssigned` as Unix seconds, when present and readable.
    pub date_assigned: Option<f64>,
}

/// One page of Get seats (`SeatDetailsResultSet`).
#[derive(Debug, Clone, PartialEq)]
pub struct SeatPage {
    /// The seats on this page.
    pub seats: Vec<ListedSeat>,
    /// Token of the next page.
    pub continuation: Option<String>,
}

/// One product of Get Inventory (`InventoryEntryDetails`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryEntry {
    /// `productKey.productId`.
    pub product_id: String,
    /// `productKey.skuId`.
    pub sku_id: String,
    /// `seatCapacity`, when given as an integer.
    pub seat_capacity: Option<i64>,
    /// `availableSeats`, when given as an integer.
    pub available_seats: Option<i64>,
    /// `licenseType` (`online`/`offline`), as sent.
    pub license_type: Option<String>,
    /// `distributionPolicy` (`open`/`restricted`), as sent.
    pub distribution_policy: Option<String>,
    /// `status` (`active`/`removed`), as sent.
    pub status: Option<String>,
}

/// One page of Get Inventory (`InventoryResultSet`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryPage {
    /// The products on this page.
    pub entries: Vec<InventoryEntry>,
    /// Token of the next page.
    pub continuation: Option<String>,
}

/// A field of `obj` whose name matches `name` in any case.
fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// The body as a JSON object.
fn object(body: &[u8], what: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(format!("response is not {what}: not a JSON object")),
        Err(e) => Err(format!(
            "response is not {what}: {}",
            describe_json_error(&e)
        )),
    }
}

/// The array `name` of a result set: required (an absent list could be read
/// as "no seats"), `null` is taken as empty.
fn list<'a>(obj: &'a Map<String, Value>, name: &str, what: &str) -> Result<&'a [Value], String> {
    match field(obj, name) {
        Some(Value::Array(items)) => Ok(items),
        Some(Value::Null) => Ok(&[]),
        Some(_) => Err(format!("response is not {what}: {name} is not a list")),
        None => Err(format!("response is not {what}: no {name} field")),
    }
}

/// `continuationToken`: a non-empty string continues; absent, `null` or
/// empty ends the listing (what both known clients do); anything else is
/// an error, since ending early would leave seats unlisted.
fn continuation(obj: &Map<String, Value>, what: &str) -> Result<Option<String>, String> {
    match field(obj, "continuationToken") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!(
            "response is not {what}: continuationToken is not a string"
        )),
    }
}

fn string(obj: &Map<String, Value>, name: &str) -> Option<String> {
    field(obj, name).and_then(Value::as_str).map(str::to_owned)
}

/// An integer sent as a number or a numeric string; anything else is
/// unknown (and leaves the gauge absent) rather than a guess.
fn integer(obj: &Map<String, Value>, name: &str) -> Option<i64> {
    match field(obj, name)? {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl Page for SeatPage {
    fn decode(body: &[u8]) -> Result<SeatPage, String> {
        const WHAT: &str = "SeatDetailsResultSet";
        let obj = object(body, WHAT)?;
        let mut seats = Vec::new();
        for (i, item) in list(&obj, "seats", WHAT)?.iter().enumerate() {
            let Value::Object(seat) = item else {
                return Err(format!(
                    "response is not {WHAT}: seats[{i}] is not an object"
                ));
            };
            // Trimmed like the state: padding must not make a listed user
            // look unlisted, which would read as a lost seat.
            let assigned_to = string(seat, "assignedTo")
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .ok_or_else(|| format!("response is not {WHAT}: seats[{i}] has no assignedTo"))?;
            let state = string(seat, "state")
                .as_deref()
                .and_then(SeatState::parse)
                .ok_or_else(|| {
                    format!("response is not {WHAT}: seats[{i}] has no state or a blank one")
                })?;
            seats.push(ListedSeat {
                assigned_to,
                state,
                date_assigned: string(seat, "dateAssigned")
                    .as_deref()
                    .and_then(parse_datetime),
            });
        }
        Ok(SeatPage {
            seats,
            continuation: continuation(&obj, WHAT)?,
        })
    }

    fn continuation(&self) -> Option<&str> {
        self.continuation.as_deref()
    }
}

impl Page for InventoryPage {
    fn decode(body: &[u8]) -> Result<InventoryPage, String> {
        const WHAT: &str = "InventoryResultSet";
        let obj = object(body, WHAT)?;
        let mut entries = Vec::new();
        for (i, item) in list(&obj, "inventoryEntries", WHAT)?.iter().enumerate() {
            let bad = |why: &str| format!("response is not {WHAT}: inventoryEntries[{i}] {why}");
            let Value::Object(entry) = item else {
                return Err(bad("is not an object"));
            };
            let Some(Value::Object(key)) = field(entry, "productKey") else {
                return Err(bad("has no productKey"));
            };
            let (Some(product_id), Some(sku_id)) = (string(key, "productId"), string(key, "skuId"))
            else {
                return Err(bad("has no productKey.productId or productKey.skuId"));
            };
            entries.push(InventoryEntry {
                product_id,
                sku_id,
                seat_capacity: integer(entry, "seatCapacity"),
                available_seats: integer(entry, "availableSeats"),
                license_type: string(entry, "licenseType"),
                distribution_policy: string(entry, "distributionPolicy"),
                status: string(entry, "status"),
            });
        }
        Ok(InventoryPage {
            entries,
            continuation: continuation(&obj, WHAT)?,
        })
    }

    fn continuation(&self) -> Option<&str> {
        self.continuation.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_go_back_exactly_and_escaped() {
        assert_eq!(
            seats_path("9NBLGGH4R315", "0016", None),
            "/V1/Inventory/9NBLGGH4R315/0016/Seats?maxResults=100"
        );
        assert_eq!(
            seats_path("P", "S", Some("a+b/c d&e=f%g~h.i_j-k")),
            "/V1/Inventory/P/S/Seats?continuationToken=a%2Bb%2Fc%20d%26e%3Df%25g~h.i_j-k&maxResults=100"
        );
        assert_eq!(
            inventory_path(Some("é?#")),
            "/V1/Inventory?continuationToken=%C3%A9%3F%23&maxResults=100"
        );
        assert_eq!(inventory_path(None), "/V1/Inventory?maxResults=100");
    }

    #[test]
    fn seat_pages_in_both_casings() {
        let camel = SeatPage::decode(
            br#"{"seats":[{"assignedTo":"a@x.y","state":"active","dateAssigned":"2024-01-02T03:04:05Z",
                "productKey":{"productId":"P","skuId":"S"}},
                {"assignedTo":"b@x.y","state":"revoked"}],"continuationToken":"t1"}"#,
        )
        .unwrap();
        assert_eq!(camel.seats.len(), 2);
        assert_eq!(camel.seats[0].state, SeatState::Active);
        assert_eq!(camel.seats[0].date_assigned, Some(1_704_164_645.0));
        assert_eq!(camel.seats[1].state, SeatState::Revoked);
        assert_eq!(camel.continuation(), Some("t1"));
        let pascal = SeatPage::decode(
            br#"{"Seats":[{"AssignedTo":"A@X.Y","State":"Active","Extra":[1]}],"Unknown":{}}"#,
        )
        .unwrap();
        assert_eq!(pascal.seats[0].assigned_to, "A@X.Y");
        assert_eq!(pascal.continuation(), None);
        // Padding is not part of the user or the state.
        let padded =
            SeatPage::decode(br#"{"seats":[{"assignedTo":" a@x.y\t","state":" Active "}]}"#)
                .unwrap();
        assert_eq!(padded.seats[0].assigned_to, "a@x.y");
        assert_eq!(padded.seats[0].state, SeatState::Active);
    }

    #[test]
    fn the_listing_ends_on_an_absent_null_or_empty_token() {
        for body in [
            &br#"{"seats":[]}"#[..],
            br#"{"seats":[],"continuationToken":null}"#,
            br#"{"Seats":null,"ContinuationToken":""}"#,
        ] {
            let page = SeatPage::decode(body).unwrap();
            assert_eq!(page.continuation(), None);
            assert!(page.seats.is_empty());
        }
    }

    #[test]
    fn pages_that_could_hide_a_seat_are_decode_errors() {
        for body in [
            &b"not json"[..],
            b"[]",
            b"{}",
            br#"{"seats":{}}"#,
            br#"{"seats":[1]}"#,
            br#"{"seats":[{"state":"active"}]}"#,
            br#"{"seats":[{"assignedTo":"","state":"active"}]}"#,
            br#"{"seats":[{"assignedTo":"  ","state":"active"}]}"#,
            br#"{"seats":[{"assignedTo":"a@x.y","state":" "}]}"#,
            br#"{"seats":[{"assignedTo":"a@x.y"}]}"#,
            br#"{"seats":[{"assignedTo":"a@x.y","state":1}]}"#,
            br#"{"seats":[],"continuationToken":7}"#,
            br#"{"seats":[{"assignedTo":"a@x.y","state":"active"}"#,
        ] {
            assert!(
                SeatPage::decode(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn inventory_pages() {
        let page = InventoryPage::decode(
            br#"{"InventoryEntries":[{"ProductKey":{"ProductId":"P","SkuId":"0016"},
                "SeatCapacity":25,"AvailableSeats":"3","LicenseType":"Online",
                "DistributionPolicy":"Restricted","Status":"Removed","LastModified":"x"},
                {"productKey":{"productId":"Q","skuId":"1"},"seatCapacity":1.5}],
                "continuationToken":"next"}"#,
        )
        .unwrap();
        assert_eq!(
            page.entries[0],
            InventoryEntry {
                product_id: "P".into(),
                sku_id: "0016".into(),
                seat_capacity: Some(25),
                available_seats: Some(3),
                license_type: Some("Online".into()),
                distribution_policy: Some("Restricted".into()),
                status: Some("Removed".into()),
            }
        );
        assert_eq!(page.entries[1].seat_capacity, None);
        assert_eq!(page.entries[1].status, None);
        assert_eq!(page.continuation(), Some("next"));
        for body in [
            &b"{}"[..],
            br#"{"inventoryEntries":[{}]}"#,
            br#"{"inventoryEntries":[{"productKey":{"productId":"P"}}]}"#,
        ] {
            assert!(InventoryPage::decode(body).is_err());
        }
    }
}
