//! The paged listings of the Store API (SPEC §11): Get seats (every seat of
//! one product, `SeatDetailsResultSet`) and Get Inventory (the tenant's
//! products, `InventoryResultSet`).
//!
//! As in `client`, one call is one HTTP request and is never retried here:
//! walking the pages, retrying a page and deciding what an unfinished
//! listing means are the poller's business (`poller::listing`). This module
//! builds the URLs — the continuation token goes back exactly as received,
//! percent-encoded so that no character of it can end the parameter or be
//! read as a space; the pages' wire types and their decoding are in `wire`.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{ACCEPT, AUTHORIZATION};
use sha2::{Digest, Sha256};

use super::auth::AccessToken;
use super::client::{SEGMENT, StoreClient};
use super::http::{Answer, exchange, interpret};
use super::wire::{InventoryPage, Page, SeatPage};
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

/// A page that decoded, with a digest of its body (to recognise a listing
/// that serves the same page again and again).
#[derive(Debug)]
pub struct Fetched<P> {
    /// The page.
    pub page: P,
    /// [`digest`] of its body.
    pub digest: [u8; 16],
}

impl StoreClient {
    /// Requests one page of `kind` after `continuation`.
    pub async fn get_page<K: PageKind>(
        &self,
        kind: &K,
        continuation: Option<&str>,
        token: &AccessToken,
    ) -> Answer<Fetched<K::Page>> {
        let op = kind.operation();
        let request = self
            .http
            .get(format!("{}{}", self.base_url, kind.path(continuation)))
            .header(AUTHORIZATION, token.header_value())
            .header(ACCEPT, "application/json");
        let sent = exchange(request, |code, seconds| {
            self.telemetry.observe_request(op, &code.label(), seconds);
        })
        .await;
        interpret(sent, self.non_json_404, |b| {
            K::Page::decode(b).map(|page| Fetched {
                page,
                digest: digest(b),
            })
        })
    }
}

/// First 16 bytes of SHA-256: enough to tell pages apart, small to keep.
pub fn digest(bytes: &[u8]) -> [u8; 16] {
    let full = Sha256::digest(bytes);
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
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
}
