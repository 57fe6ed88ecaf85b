//! The paged listings' wire types (SPEC §11): a page of Get seats
//! (`SeatDetailsResultSet`) and of Get Inventory (`InventoryResultSet`),
//! decoded tolerantly — field names in any case, unknown fields ignored.
//!
//! Tolerant is not lax where laxness could invent a lost seat: a page whose
//! seat list is missing, a seat without a readable `assignedTo` or `state`,
//! or a continuation token that is not a string is a `decode` error for the
//! whole page, because skipping it could make a held seat look unlisted.

use serde_json::{Map, Value};

use super::{SeatState, describe_json_error, parse_datetime};

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

/// The array `name` of a result set: required, and a list (SPEC §17: an
/// absent or `null` list read as "no seats" would end a listing as if
/// complete and turn every unlisted user's seat to 0).
fn list<'a>(obj: &'a Map<String, Value>, name: &str, what: &str) -> Result<&'a [Value], String> {
    match field(obj, name) {
        Some(Value::Array(items)) => Ok(items),
        Some(Value::Null) => Err(format!("response is not {what}: {name} is null")),
        Some(_) => Err(format!("response is not {what}: {name} is not a list")),
        None => Err(format!("response is not {what}: no {name} field")),
    }
}

/// The string `name` of `obj`, refusing an object that names it more than
/// once (in different casings) with different values: which one the Store
/// meant cannot be told (SPEC §17).
fn unique_string(obj: &Map<String, Value>, name: &str) -> Result<Option<String>, ()> {
    let mut found: Option<&str> = None;
    for (k, v) in obj {
        if !k.eq_ignore_ascii_case(name) {
            continue;
        }
        let Some(v) = v.as_str() else {
            return Err(());
        };
        match found {
            Some(first) if !first.trim().eq_ignore_ascii_case(v.trim()) => return Err(()),
            _ => found = Some(v),
        }
    }
    Ok(found.map(str::to_owned))
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

/// A result set `what`: each item of its `items` list, which must be an
/// object, made into a `T` by `item` (given the object and how to say what
/// is wrong with it), and the continuation token.
fn result_set<T>(
    body: &[u8],
    what: &str,
    items: &str,
    mut item: impl FnMut(&Map<String, Value>, &dyn Fn(&str) -> String) -> Result<T, String>,
) -> Result<(Vec<T>, Option<String>), String> {
    let obj = object(body, what)?;
    let mut out = Vec::new();
    for (i, value) in list(&obj, items, what)?.iter().enumerate() {
        let bad = |why: &str| format!("response is not {what}: {items}[{i}] {why}");
        let Value::Object(entry) = value else {
            return Err(bad("is not an object"));
        };
        out.push(item(entry, &bad)?);
    }
    Ok((out, continuation(&obj, what)?))
}

impl Page for SeatPage {
    fn decode(body: &[u8]) -> Result<SeatPage, String> {
        let (seats, continuation) =
            result_set(body, "SeatDetailsResultSet", "seats", |seat, bad| {
                // Trimmed like the state: padding must not make a listed user
                // look unlisted, which would read as a lost seat.
                let assigned_to = string(seat, "assignedTo")
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| bad("has no assignedTo"))?;
                let state = unique_string(seat, "state")
                    .map_err(|()| bad("names state twice, differently"))?
                    .as_deref()
                    .and_then(SeatState::parse)
                    .ok_or_else(|| bad("has no state or a blank one"))?;
                Ok(ListedSeat {
                    assigned_to,
                    state,
                    date_assigned: string(seat, "dateAssigned")
                        .as_deref()
                        .and_then(parse_datetime),
                })
            })?;
        Ok(SeatPage {
            seats,
            continuation,
        })
    }

    fn continuation(&self) -> Option<&str> {
        self.continuation.as_deref()
    }
}

impl Page for InventoryPage {
    fn decode(body: &[u8]) -> Result<InventoryPage, String> {
        let what = "InventoryResultSet";
        let (entries, continuation) = result_set(body, what, "inventoryEntries", |entry, bad| {
            let Some(Value::Object(key)) = field(entry, "productKey") else {
                return Err(bad("has no productKey"));
            };
            let (Some(product_id), Some(sku_id)) = (string(key, "productId"), string(key, "skuId"))
            else {
                return Err(bad("has no productKey.productId or productKey.skuId"));
            };
            Ok(InventoryEntry {
                product_id,
                sku_id,
                seat_capacity: integer(entry, "seatCapacity"),
                available_seats: integer(entry, "availableSeats"),
                license_type: string(entry, "licenseType"),
                distribution_policy: string(entry, "distributionPolicy"),
                status: string(entry, "status"),
            })
        })?;
        Ok(InventoryPage {
            entries,
            continuation,
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
            br#"{"Seats":[],"ContinuationToken":""}"#,
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
            br#"{"seats":null}"#,
            br#"{"Seats":null,"ContinuationToken":""}"#,
            br#"{"seats":"none"}"#,
            br#"{"continuationToken":"next"}"#,
            br#"{"seats":[{"assignedTo":"a@x.y","state":"active","State":"Revoked"}]}"#,
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
