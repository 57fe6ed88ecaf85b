//! Seat capacity from Get Inventory (SPEC §11): the three families, removed
//! and missing products, paging, failures that change nothing, reloads, and
//! the poller's own schedule — through real HTTP to the fake.

use std::time::Duration;

use msfb_seat_exporter::fake_store::{
    Action, Casing, FakeInventory, FakeSeat, Fault, Match, Paging,
};
use tokio_util::sync::CancellationToken;

use crate::util::inventory::{
    NEW_FAMILIES, PRODUCTS, poll, products, scrape_with_every_new_family,
};
use crate::util::{Harness, P, S, Scrape, eventually};

async fn harness(store_extra: &str) -> Harness {
    let h = Harness::new(&products(PRODUCTS, ""), store_extra).await;
    h.fake.set_inventory(
        P,
        S,
        FakeInventory {
            seat_capacity: 25,
            ..FakeInventory::default()
        },
    );
    for u in ["a@contoso.com", "b@contoso.com", "c@contoso.com"] {
        h.fake.set_seat(P, S, u, FakeSeat::active());
    }
    h.fake
        .set_seat(P, S, "old@contoso.com", FakeSeat::revoked());
    h.fake.set_inventory(
        "FULL",
        "1",
        FakeInventory {
            seat_capacity: 10,
            available_seats: Some(0),
            license_type: "Offline".into(),
            distribution_policy: "Open".into(),
            ..FakeInventory::default()
        },
    );
    h.fake.set_inventory(
        "GONE",
        "1",
        FakeInventory {
            seat_capacity: 5,
            available_seats: Some(5),
            status: "Removed".into(),
            ..FakeInventory::default()
        },
    );
    h
}

fn gauge(m: &Scrape, name: &str, product: &str) -> Option<f64> {
    m.value(name, &[("product_id", product)])
}

fn info(m: &Scrape, product: &str) -> Vec<(String, String, String)> {
    m.find("msfb_inventory_info", &[("product_id", product)])
        .iter()
        .map(|s| {
            assert_eq!(s.value, 1.0);
            (
                s.labels["license_type"].clone(),
                s.labels["distribution_policy"].clone(),
                s.labels["status"].clone(),
            )
        })
        .collect()
}

fn triple(a: &str, b: &str, c: &str) -> Vec<(String, String, String)> {
    vec![(a.into(), b.into(), c.into())]
}

#[tokio::test]
async fn inventory_gauges_and_removed_and_missing_products() {
    for casing in [Casing::Pascal, Casing::Camel] {
        let h = harness("").await;
        h.fake.set_casing(casing);
        // Nothing before the first poll.
        let m = h.scrape().await;
        assert!(m.find("msfb_inventory_info", &[]).is_empty());
        assert_eq!(m.value("msfb_inventory_poll_success", &[]), None);

        let report = poll(&h).await;
        assert!(report.complete);
        assert_eq!((report.found, report.missing), (3, 1));
        let m = h.scrape().await;
        assert_eq!(gauge(&m, "msfb_inventory_seat_capacity", P), Some(25.0));
        assert_eq!(gauge(&m, "msfb_inventory_available_seats", P), Some(22.0));
        assert_eq!(info(&m, P), triple("online", "restricted", "active"));
        assert_eq!(
            gauge(&m, "msfb_inventory_available_seats", "FULL"),
            Some(0.0)
        );
        assert_eq!(info(&m, "FULL"), triple("offline", "open", "active"));
        assert_eq!(info(&m, "GONE"), triple("online", "restricted", "removed"));
        // Never bought: visible as missing, with no capacity to show.
        assert_eq!(info(&m, "NOPE"), triple("", "", "missing"));
        assert_eq!(gauge(&m, "msfb_inventory_seat_capacity", "NOPE"), None);
        assert_eq!(m.value("msfb_inventory_poll_success", &[]), Some(1.0));
        assert!(
            m.value("msfb_inventory_last_success_timestamp_seconds", &[])
                .unwrap()
                > 1.7e9
        );
        assert_eq!(m.api("get_inventory", "200"), Some(1.0));
        assert!(m.text.contains("# TYPE msfb_inventory_seat_capacity gauge"));
        assert!(m.text.contains("# TYPE msfb_inventory_info gauge"));

        // A product taken out of the inventory later is missing after the
        // next complete poll.
        h.fake.remove_product(P, S);
        poll(&h).await;
        let m = h.scrape().await;
        assert_eq!(info(&m, P), triple("", "", "missing"));
        assert_eq!(gauge(&m, "msfb_inventory_seat_capacity", P), None);
    }
}

#[tokio::test]
async fn inventory_paging_across_pages_with_tokens() {
    let h = harness("").await;
    // 250 more products: the configured ones are spread over three pages.
    for i in 0..250 {
        h.fake.add_product(&format!("X{i:03}"), "0001");
    }
    let report = poll(&h).await;
    assert!(report.complete);
    assert_eq!(report.pages, 3);
    let log: Vec<String> = h
        .fake
        .request_log()
        .into_iter()
        .filter(|r| r.starts_with("/V1/Inventory?"))
        .collect();
    assert_eq!(
        log,
        [
            "/V1/Inventory?maxResults=100",
            "/V1/Inventory?continuationToken=p%3D2%26o%3D100%26k%3Da%2Bb%2Fc%20d%25e&maxResults=100",
            "/V1/Inventory?continuationToken=p%3D3%26o%3D200%26k%3Da%2Bb%2Fc%20d%25e&maxResults=100",
        ]
    );
    let m = h.scrape().await;
    assert_eq!(info(&m, "NOPE"), triple("", "", "missing"));
    assert_eq!(gauge(&m, "msfb_inventory_seat_capacity", P), Some(25.0));
    // A Store that ignores the page size.
    h.fake.set_paging(Paging {
        page_size: Some(9),
        ..Paging::default()
    });
    let report = poll(&h).await;
    assert!(report.complete);
    assert_eq!(report.pages, 254u32.div_ceil(9));
}

/// A poll that fails with `action` on page 2 changes no value and is
/// counted with `code`.
async fn failed_poll(action: Action, code: &str) {
    let h = harness("max_retries = 1").await;
    for i in 0..150 {
        h.fake.add_product(&format!("X{i:03}"), "0001");
    }
    assert!(poll(&h).await.complete);
    // The Store changes, but the next poll fails part way.
    h.fake.set_inventory(P, S, FakeInventory::default());
    h.fake.remove_product("FULL", "1");
    h.fake
        .add_fault(Fault::always(Match::InventoryPage(2), action.clone()));
    assert!(!poll(&h).await.complete);
    let m = h.scrape().await;
    assert_eq!(
        gauge(&m, "msfb_inventory_seat_capacity", P),
        Some(25.0),
        "{action:?}"
    );
    assert_eq!(
        gauge(&m, "msfb_inventory_available_seats", "FULL"),
        Some(0.0)
    );
    assert_eq!(info(&m, "FULL"), triple("offline", "open", "active"));
    assert_eq!(m.value("msfb_inventory_poll_success", &[]), Some(0.0));
    assert_eq!(
        m.value("msfb_inventory_poll_errors_total", &[("code", code)]),
        Some(1.0),
        "{action:?}"
    );
    h.fake.clear_faults();
    assert!(poll(&h).await.complete);
    let m = h.scrape().await;
    assert_eq!(gauge(&m, "msfb_inventory_seat_capacity", P), Some(100.0));
    assert_eq!(info(&m, "FULL"), triple("", "", "missing"));
    assert_eq!(m.value("msfb_inventory_poll_success", &[]), Some(1.0));
}

#[tokio::test]
async fn a_failed_inventory_page_keeps_the_last_values() {
    failed_poll(Fault::status(503), "503").await;
}

#[tokio::test]
async fn a_malformed_inventory_page_keeps_the_last_values() {
    failed_poll(Action::Malformed, "decode").await;
}

#[tokio::test]
async fn an_endless_inventory_is_cut_off() {
    let h = harness("").await;
    assert!(poll(&h).await.complete);
    h.fake.set_paging(Paging {
        repeat_token: true,
        page_size: Some(1),
        ..Paging::default()
    });
    assert!(!poll(&h).await.complete);
    let m = h.scrape().await;
    assert_eq!(
        m.value("msfb_inventory_poll_errors_total", &[("code", "paging")]),
        Some(1.0)
    );
    assert_eq!(gauge(&m, "msfb_inventory_seat_capacity", P), Some(25.0));
}

#[tokio::test]
async fn a_listing_that_never_ends_is_cut_off_at_max_pages() {
    let h = harness("").await;
    assert!(poll(&h).await.complete);
    h.write_config(&products(PRODUCTS, "max_pages = 3"), "");
    h.exporter.reload().await.expect("reload");
    // Every page has a new continuation token: only the page limit stops it.
    h.fake.set_paging(Paging {
        endless: true,
        page_size: Some(1),
        ..Paging::default()
    });
    let before = h.scrape().await.api("get_inventory", "200").unwrap_or(0.0);
    assert!(!poll(&h).await.complete);
    let m = h.scrape().await;
    assert_eq!(m.api("get_inventory", "200"), Some(before + 3.0));
    assert_eq!(
        m.value("msfb_inventory_poll_errors_total", &[("code", "paging")]),
        Some(1.0)
    );
    assert_eq!(gauge(&m, "msfb_inventory_seat_capacity", P), Some(25.0));
}

#[tokio::test]
async fn a_transient_inventory_failure_is_retried() {
    let h = harness("max_retries = 2").await;
    h.fake
        .add_fault(Fault::times(2, Match::Inventory, Fault::status(500)));
    assert!(poll(&h).await.complete);
    let m = h.scrape().await;
    assert_eq!(m.api("get_inventory", "500"), Some(2.0));
    assert_eq!(m.value("msfb_inventory_poll_errors_total", &[]), None);
}

#[tokio::test]
async fn reloads_remove_a_products_inventory_series_and_can_disable_them() {
    let h = harness("").await;
    poll(&h).await;
    h.write_config(&products(&[(P, S), ("FULL", "1")], ""), "");
    h.exporter.reload().await.expect("reload");
    let m = h.scrape().await;
    assert!(
        m.find("msfb_inventory_info", &[("product_id", "GONE")])
            .is_empty()
    );
    assert!(
        m.find("msfb_inventory_info", &[("product_id", "NOPE")])
            .is_empty()
    );
    assert_eq!(
        gauge(&m, "msfb_inventory_seat_capacity", "FULL"),
        Some(10.0)
    );
    h.write_config(&products(&[(P, S)], "enabled = false"), "");
    h.exporter.reload().await.expect("reload");
    let m = h.scrape().await;
    assert!(m.find("msfb_inventory_seat_capacity", &[]).is_empty());
    assert!(m.find("msfb_inventory_info", &[]).is_empty());
}

#[tokio::test]
async fn the_inventory_poller_starts_at_once_and_after_a_reload_adding_a_product() {
    let h = harness("").await;
    let cancel = CancellationToken::new();
    let poller = tokio::spawn({
        let exporter = h.exporter.clone();
        let cancel = cancel.clone();
        async move { exporter.run_inventory(cancel).await }
    });
    eventually("the first poll", Duration::from_secs(60), || async {
        let found = info(&h.scrape().await, P);
        if found.len() == 1 {
            Ok(())
        } else {
            Err(format!("{found:?}"))
        }
    })
    .await;
    assert_eq!(h.fake.counts().inventory_requests, 1);
    // The interval is an hour; a product added by reload is polled now.
    h.fake.add_product("NEW", "7");
    let mut list = PRODUCTS.to_vec();
    list.push(("NEW", "7"));
    h.write_config(&products(&list, ""), "");
    h.exporter.reload().await.expect("reload");
    eventually(
        "the poll after the reload",
        Duration::from_secs(60),
        || async {
            let found = info(&h.scrape().await, "NEW");
            if found == triple("online", "restricted", "active") {
                Ok(())
            } else {
                Err(format!("{found:?}"))
            }
        },
    )
    .await;
    assert_eq!(h.fake.counts().inventory_requests, 2);
    cancel.cancel();
    poller.await.expect("poller ends on cancel");
}

#[tokio::test]
async fn every_new_family_is_exposed_with_help_and_samples() {
    let m = scrape_with_every_new_family().await;
    for family in NEW_FAMILIES {
        m.assert_family(family);
    }
}
