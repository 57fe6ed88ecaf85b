//! The inventory fixtures shared by the inventory tests and the promtool
//! contract: the four products, their config, one inventory poll, and a
//! scrape in which every family added since the first release has samples.

use msfb_seat_exporter::fake_store::{FakeSeat, Fault, Match};
use tokio_util::sync::CancellationToken;

use super::exposition::Scrape;
use super::harness::{Harness, P, S};

/// Products: `P`/`S` (25 seats, 3 held), `FULL`/`1` (no seat left),
/// `GONE`/`1` (removed from the inventory) and `NOPE`/`1` (never bought).
pub const PRODUCTS: &[(&str, &str)] = &[(P, S), ("FULL", "1"), ("GONE", "1"), ("NOPE", "1")];

pub fn products(list: &[(&str, &str)], inventory: &str) -> String {
    let mut out = format!("[inventory]\n{inventory}\n");
    for (p, s) in list {
        out.push_str(&format!(
            "\n[[products]]\nproduct_id = \"{p}\"\nsku_id = \"{s}\"\nusers = [\"alice@contoso.com\"]\n"
        ));
    }
    out
}

pub async fn poll(h: &Harness) -> msfb_seat_exporter::poller::InventoryReport {
    h.exporter
        .poll_inventory(&CancellationToken::new())
        .await
        .expect("not cancelled")
}

/// The families of list mode, discovery and Get Inventory.
pub const NEW_FAMILIES: [&str; 10] = [
    "msfb_inventory_seat_capacity",
    "msfb_inventory_available_seats",
    "msfb_inventory_info",
    "msfb_inventory_poll_success",
    "msfb_inventory_last_success_timestamp_seconds",
    "msfb_inventory_poll_errors_total",
    "msfb_seat_listing_success",
    "msfb_seat_listing_last_success_timestamp_seconds",
    "msfb_seat_listing_pages",
    "msfb_seat_listing_errors_total",
];

/// A cycle and two inventory polls over the four products plus a discovery
/// and a list-mode product, with one listing page and one inventory poll
/// failing, so that every family of [`NEW_FAMILIES`] has samples.
pub async fn scrape_with_every_new_family() -> Scrape {
    let mut list = products(PRODUCTS, "");
    list.push_str(
        "\n[[products]]\nproduct_id = \"DISC\"\nsku_id = \"1\"\nusers = \"all\"\n\
         \n[[products]]\nproduct_id = \"LIST\"\nsku_id = \"1\"\nmode = \"list\"\nusers = [\"a@contoso.com\"]\n",
    );
    let h = Harness::new(&list, "max_retries = 0").await;
    h.fake
        .set_seat("DISC", "1", "a@contoso.com", FakeSeat::active());
    h.fake
        .set_seat("LIST", "1", "a@contoso.com", FakeSeat::active());
    h.cycle().await;
    h.fake.add_fault(Fault::times(
        1,
        Match::PathContains("/LIST/".into()),
        Fault::status(500),
    ));
    h.fake
        .add_fault(Fault::times(1, Match::Inventory, Fault::status(500)));
    poll(&h).await;
    poll(&h).await;
    h.cycle().await;
    h.scrape().await
}
