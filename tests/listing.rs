//! List mode (SPEC §11): products checked by paging through Get seats.
//! Paging with and without tokens, tokens passed back exactly, page sizes
//! the Store ignores, loops cut off, the same metrics as per-user mode, and
//! no false loss from an incomplete listing — through real HTTP to the fake.

use msfb_seat_exporter::config::{self, LoadOptions};
use msfb_seat_exporter::exporter::Exporter;
use msfb_seat_exporter::fake_store::{Action, Casing, FakeSeat, Fault, Match, Paging};

use crate::util::{Harness, P, S, Scrape, fast_options, request};

/// `n` users named `user0000@contoso.com` ….
fn users(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user{i:04}@contoso.com")).collect()
}

/// A `[[products]]` table for `P`/`S` with `users`, in `mode`, plus `extra`
/// keys.
fn product_in(mode: &str, users: &[String], extra: &str) -> String {
    let list: Vec<String> = users.iter().map(|u| format!("{u:?}")).collect();
    format!(
        "[inventory]\nenabled = false\n\n[[products]]\nproduct_id = \"{P}\"\nsku_id = \"{S}\"\n\
         name = \"Contoso Notes\"\nmode = \"{mode}\"\nusers = [{}]\n{extra}\n",
        list.join(", ")
    )
}

/// A list-mode harness over `users`, each holding an active seat.
async fn listed(users: &[String], store_extra: &str, extra: &str) -> Harness {
    let h = Harness::new(&product_in("list", users, extra), store_extra).await;
    for u in users {
        h.fake.set_seat(P, S, u, FakeSeat::active());
    }
    h
}

/// The Get seats requests the fake received, in order.
fn listing_requests(h: &Harness) -> Vec<String> {
    h.fake
        .request_log()
        .into_iter()
        .filter(|r| r.starts_with(&format!("/V1/Inventory/{P}/{S}/Seats?")))
        .collect()
}

fn product_value(m: &Scrape, name: &str) -> Option<f64> {
    m.value(name, &[("product_id", P), ("sku_id", S)])
}

#[tokio::test]
async fn paging_across_several_pages_with_tokens_in_both_casings() {
    for casing in [Casing::Pascal, Casing::Camel] {
        let all = users(250);
        let h = listed(&all, "", "").await;
        h.fake.set_casing(casing);
        let report = h.cycle().await;
        assert!(report.all_conclusive(), "{casing:?}: {report:?}");
        assert_eq!(report.checked, 250);
        let counts = h.fake.counts();
        assert_eq!(counts.list_requests, 3, "{casing:?}");
        assert_eq!(counts.seat_requests, 0, "{casing:?}");
        // The first page goes without a token; each later one carries the
        // token of the page before, byte for byte, percent-encoded.
        assert_eq!(
            listing_requests(&h),
            vec![
                format!("/V1/Inventory/{P}/{S}/Seats?maxResults=100"),
                format!(
                    "/V1/Inventory/{P}/{S}/Seats?continuationToken=p%3D2%26o%3D100%26k%3Da%2Bb%2Fc%20d%25e&maxResults=100"
                ),
                format!(
                    "/V1/Inventory/{P}/{S}/Seats?continuationToken=p%3D3%26o%3D200%26k%3Da%2Bb%2Fc%20d%25e&maxResults=100"
                ),
            ],
            "{casing:?}"
        );
        let m = h.scrape().await;
        for u in &all {
            assert_eq!(m.active(u), Some(1.0), "{casing:?} {u}");
            assert_eq!(m.success(u), Some(1.0));
        }
        assert_eq!(product_value(&m, "msfb_seat_listing_pages"), Some(3.0));
        assert_eq!(product_value(&m, "msfb_seat_listing_success"), Some(1.0));
        assert_eq!(m.api("get_seats", "200"), Some(3.0));
    }
}

#[tokio::test]
async fn a_listing_of_one_page_needs_no_token() {
    let all = users(3);
    let h = listed(&all, "", "").await;
    assert!(h.cycle().await.all_conclusive());
    assert_eq!(
        listing_requests(&h),
        vec![format!("/V1/Inventory/{P}/{S}/Seats?maxResults=100")]
    );
    assert_eq!(
        product_value(&h.scrape().await, "msfb_seat_listing_pages"),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_page_size_the_store_ignores_is_tolerated() {
    for size in [7, 150] {
        let all = users(120);
        let h = listed(&all, "", "").await;
        h.fake.set_paging(Paging {
            page_size: Some(size),
            ..Paging::default()
        });
        let report = h.cycle().await;
        assert!(report.all_conclusive(), "page size {size}: {report:?}");
        let pages = 120usize.div_ceil(size) as u64;
        assert_eq!(h.fake.counts().list_requests, pages);
        let m = h.scrape().await;
        assert!(all.iter().all(|u| m.active(u) == Some(1.0)));
        assert_eq!(
            product_value(&m, "msfb_seat_listing_pages"),
            Some(pages as f64)
        );
    }
}

/// Per-target families and the per-product aggregates, with wall-clock
/// timestamps reduced to "present".
fn seat_view(m: &Scrape) -> Vec<String> {
    let mut out: Vec<String> = m
        .samples
        .iter()
        .filter(|s| {
            (s.name.starts_with("msfb_seat_") && !s.name.starts_with("msfb_seat_exporter"))
                && !s.name.starts_with("msfb_seat_listing")
                || s.name == "msfb_seats"
                || s.name == "msfb_product_info"
        })
        .map(|s| {
            let value = if s.name == "msfb_seat_last_success_timestamp_seconds" {
                "<time>".to_owned()
            } else {
                s.value.to_string()
            };
            format!("{} {:?} {value}", s.name, s.labels)
        })
        .collect();
    out.sort();
    out
}

/// A second exporter, in `mode`, against the harness's fake.
fn exporter_in(h: &Harness, products: &str) -> Exporter {
    let path = h.dir.path().join("other.toml");
    std::fs::write(&path, h.fake.config_toml("secret", products)).expect("write config");
    let config = config::load(&path, &LoadOptions::default()).expect("valid config");
    Exporter::new(config, fast_options()).expect("exporter")
}

#[tokio::test]
async fn list_mode_and_per_user_mode_give_identical_metrics() {
    let all = users(130);
    let second = |mode: &str| {
        format!(
            "{}\n[[products]]\nproduct_id = \"NOTOWNED\"\nsku_id = \"0001\"\nmode = \"{mode}\"\n\
             users = [\"user0000@contoso.com\"]\n",
            product_in(mode, &all, "")
        )
    };
    let h = Harness::new(&second("per_user"), "").await;
    let list = exporter_in(&h, &second("list"));
    // Active, revoked, and users in the directory without a seat; one
    // product not in the tenant's inventory at all.
    for (i, u) in all.iter().enumerate() {
        match i % 3 {
            0 => h.fake.set_seat(P, S, u, FakeSeat::active()),
            1 => h.fake.set_seat(P, S, u, FakeSeat::revoked()),
            _ => h.fake.add_user(u),
        }
    }
    let cancel = tokio_util::sync::CancellationToken::new();
    let mut views = Vec::new();
    for step in 0..3 {
        match step {
            // Losses, a new assignment, and a seat in a state nobody knows.
            1 => {
                h.fake.remove_seat(P, S, &all[0]);
                h.fake.set_seat(P, S, &all[3], FakeSeat::revoked());
                h.fake.set_seat(P, S, &all[2], FakeSeat::active());
                h.fake.set_seat(
                    P,
                    S,
                    &all[6],
                    FakeSeat {
                        state: "Suspended".into(),
                        date_assigned: None,
                    },
                );
            }
            2 => h.fake.set_seat(P, S, &all[0], FakeSeat::active()),
            _ => {}
        }
        let per_user = h.cycle().await;
        let listed = list.run_cycle(&cancel).await.expect("not cancelled");
        assert!(per_user.all_conclusive() && listed.all_conclusive());
        let a = seat_view(&h.scrape().await);
        let (_, text) = request(&list, "GET", "/metrics").await;
        let b = seat_view(&Scrape::parse(&text));
        assert_eq!(a, b, "step {step}");
        views.push(a);
    }
    // The comparison is not vacuous: losses and 404s of both kinds are in.
    let last = views.last().unwrap().join("\n");
    assert!(last.contains("msfb_seat_lost_total"), "{last}");
    assert!(last.contains("\"reason\": \"seat\""), "{last}");
    assert!(last.contains("\"reason\": \"inventory\""), "{last}");
    assert!(
        last.contains("msfb_seat_assigned_timestamp_seconds"),
        "{last}"
    );
    let m = h.scrape().await;
    for u in [&all[0], &all[3]] {
        assert_eq!(
            m.value("msfb_seat_lost_total", &[("product_id", P), ("user", u)]),
            Some(1.0)
        );
    }
}

#[tokio::test]
async fn ten_thousand_users_in_list_mode_cost_at_most_a_fiftieth_of_the_requests() {
    let all = users(10_000);
    let h = Harness::new(&product_in("per_user", &all, ""), "max_concurrency = 64").await;
    for u in &all {
        h.fake.set_seat(P, S, u, FakeSeat::active());
    }
    assert!(h.cycle().await.all_conclusive());
    let per_user = h.fake.counts();
    assert_eq!(per_user.seat_requests, 10_000);

    let list = exporter_in(&h, &product_in("list", &all, ""));
    h.fake.reset_counts();
    let report = list
        .run_cycle(&tokio_util::sync::CancellationToken::new())
        .await
        .expect("not cancelled");
    assert!(report.all_conclusive(), "{report:?}");
    assert_eq!(report.checked, 10_000);
    let listed = h.fake.counts();
    assert_eq!(listed.seat_requests, 0);
    assert_eq!(listed.list_requests, 100);
    let api = |c: &msfb_seat_exporter::fake_store::Counts| c.total - c.token_requests;
    assert!(
        api(&listed) * 50 <= api(&per_user),
        "list {} vs per-user {}",
        api(&listed),
        api(&per_user)
    );
    let (_, text) = request(&list, "GET", "/metrics").await;
    let m = Scrape::parse(&text);
    assert_eq!(m.find("msfb_seat_active", &[]).len(), 10_000);
    assert!(
        m.find("msfb_seat_active", &[])
            .iter()
            .all(|s| s.value == 1.0)
    );
}

/// Cycle 1 sees every seat active. Then the Store reclaims two seats and
/// page 2 of the next listing fails with `action`: nobody may be marked
/// lost, every target's check fails with `code`, and once the Store heals
/// the two losses — and only they — appear.
async fn failed_middle_page(action: Action, code: &str, reason: &str) {
    let all = users(250);
    let h = listed(&all, "max_retries = 1", "").await;
    assert!(h.cycle().await.all_conclusive());
    // One on the first page, one on the third.
    h.fake.remove_seat(P, S, &all[5]);
    h.fake.remove_seat(P, S, &all[240]);
    h.fake
        .add_fault(Fault::always(Match::SeatsPage(2), action.clone()));
    let report = h.cycle().await;
    assert!(!report.all_conclusive(), "{action:?}");
    assert_eq!(report.listings_failed, 1);
    let m = h.scrape().await;
    for u in &all {
        assert_eq!(m.active(u), Some(1.0), "{action:?}: false loss of {u}");
        assert_eq!(m.success(u), Some(0.0));
        assert_eq!(m.errors(u, code, reason), Some(1.0), "{action:?}: {u}");
        assert_eq!(m.value("msfb_seat_lost_total", &[("user", u)]), Some(0.0));
    }
    assert_eq!(product_value(&m, "msfb_seat_listing_success"), Some(0.0));
    assert_eq!(
        m.value(
            "msfb_seat_listing_errors_total",
            &[("product_id", P), ("code", code)]
        ),
        Some(1.0)
    );
    // Heal: the next listing is complete and tells the truth.
    h.fake.clear_faults();
    assert!(h.cycle().await.all_conclusive());
    let m = h.scrape().await;
    let lost: Vec<&String> = all.iter().filter(|u| m.active(u) == Some(0.0)).collect();
    assert_eq!(lost, vec![&all[5], &all[240]]);
    assert_eq!(
        m.value("msfb_seat_lost_total", &[("user", &all[240])]),
        Some(1.0)
    );
    assert_eq!(product_value(&m, "msfb_seat_listing_success"), Some(1.0));
}

#[tokio::test]
async fn a_failed_middle_page_5xx_is_no_false_loss() {
    failed_middle_page(Fault::status(503), "503", "").await;
}

#[tokio::test]
async fn a_malformed_middle_page_is_no_false_loss() {
    failed_middle_page(Action::Malformed, "decode", "").await;
}

#[tokio::test]
async fn a_middle_page_without_its_seat_list_is_no_false_loss() {
    // `{}` would read as "no seats on this page" if the list were optional.
    failed_middle_page(Action::Body("{}".into()), "decode", "").await;
}

#[tokio::test]
async fn a_middle_page_404_is_no_false_loss() {
    failed_middle_page(Fault::status(404), "404", "unknown").await;
}

#[tokio::test]
async fn a_dropped_middle_page_is_no_false_loss() {
    failed_middle_page(Action::Drop, "connect", "").await;
}

#[tokio::test]
async fn a_transient_page_failure_is_retried_within_the_listing() {
    let all = users(250);
    let h = listed(&all, "max_retries = 2", "").await;
    h.fake
        .add_fault(Fault::times(2, Match::SeatsPage(2), Fault::status(503)));
    let report = h.cycle().await;
    assert!(report.all_conclusive(), "{report:?}");
    // Pages 1 and 3 once, page 2 three times: the pages before the failure
    // are not fetched again.
    assert_eq!(h.fake.counts().list_requests, 5);
    let m = h.scrape().await;
    assert_eq!(m.api("get_seats", "503"), Some(2.0));
    assert!(m.find("msfb_seat_check_errors_total", &[]).is_empty());
}

#[tokio::test]
async fn a_401_on_a_page_fetches_a_new_token_once() {
    let all = users(150);
    let h = listed(&all, "max_retries = 0", "").await;
    assert!(h.cycle().await.all_conclusive());
    h.fake.revoke_tokens();
    h.fake.reset_counts();
    assert!(h.cycle().await.all_conclusive());
    let c = h.fake.counts();
    assert_eq!((c.token_requests, c.list_requests), (1, 3));
    // A 401 that persists is inconclusive after one refresh.
    h.fake
        .add_fault(Fault::always(Match::AllListings, Fault::status(401)));
    h.fake.reset_counts();
    assert!(!h.cycle().await.all_conclusive());
    assert_eq!(h.fake.counts().list_requests, 2);
    let m = h.scrape().await;
    assert_eq!(m.active(&all[0]), Some(1.0));
    assert_eq!(m.errors(&all[0], "401", ""), Some(1.0));
}

#[tokio::test]
async fn a_failing_token_endpoint_fails_the_listing_not_the_seats() {
    let all = users(10);
    let h = listed(&all, "", "").await;
    assert!(h.cycle().await.all_conclusive());
    h.fake.revoke_tokens();
    h.fake
        .add_fault(Fault::always(Match::Token, Fault::status(500)));
    h.fake.remove_seat(P, S, &all[0]);
    assert!(!h.cycle().await.all_conclusive());
    let m = h.scrape().await;
    assert_eq!(m.active(&all[0]), Some(1.0));
    assert_eq!(m.errors(&all[0], "token", ""), Some(1.0));
}

#[tokio::test]
async fn a_repeated_token_is_cut_off_without_a_loss() {
    let all = users(250);
    let h = listed(&all, "", "").await;
    assert!(h.cycle().await.all_conclusive());
    h.fake.remove_seat(P, S, &all[249]);
    h.fake.set_paging(Paging {
        repeat_token: true,
        ..Paging::default()
    });
    h.fake.reset_counts();
    let report = h.cycle().await;
    assert!(!report.all_conclusive());
    // Page 1, then page 2 twice: the same page with the same token is a
    // loop, and the listing stops there instead of at max_pages.
    assert_eq!(h.fake.counts().list_requests, 3);
    let m = h.scrape().await;
    assert_eq!(m.active(&all[249]), Some(1.0));
    assert_eq!(m.errors(&all[249], "paging", ""), Some(1.0));
    assert_eq!(
        m.value(
            "msfb_seat_listing_errors_total",
            &[("product_id", P), ("code", "paging")]
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn an_endless_listing_is_cut_off_at_max_pages() {
    let all = users(250);
    let h = listed(&all, "", "max_pages = 5").await;
    h.fake.set_paging(Paging {
        endless: true,
        ..Paging::default()
    });
    let report = h.cycle().await;
    assert!(!report.all_conclusive());
    assert_eq!(h.fake.counts().list_requests, 5);
    let m = h.scrape().await;
    // Never judged: no seat series at all, only the failed checks.
    assert_eq!(m.active(&all[0]), None);
    assert_eq!(m.errors(&all[0], "paging", ""), Some(1.0));
    assert_eq!(product_value(&m, "msfb_seat_listing_success"), Some(0.0));
    // A listing that does end within the limit is fine.
    h.fake.set_paging(Paging::default());
    assert!(h.cycle().await.all_conclusive());
    assert_eq!(h.scrape().await.active(&all[0]), Some(1.0));
}

#[tokio::test]
async fn switching_modes_on_reload_keeps_each_targets_state() {
    let all = users(3);
    let h = Harness::new(&product_in("per_user", &all, ""), "").await;
    h.fake.set_seat(P, S, &all[0], FakeSeat::active());
    h.fake.add_user(&all[1]);
    h.fake.add_user(&all[2]);
    h.cycle().await;
    h.write_config(&product_in("list", &all, ""), "");
    h.exporter.reload().await.expect("reload");
    h.fake.remove_seat(P, S, &all[0]);
    h.fake.reset_counts();
    h.cycle().await;
    assert_eq!(h.fake.counts().seat_requests, 0);
    let m = h.scrape().await;
    assert_eq!(m.active(&all[0]), Some(0.0));
    assert_eq!(
        m.value("msfb_seat_lost_total", &[("user", &all[0])]),
        Some(1.0),
        "the loss spans the mode switch"
    );
}
