//! Scale-out (issue 5): instances over one configuration, each with its own
//! `shard_index`, together check every target exactly once — per-user,
//! list-mode and discovered targets alike — and their `msfb_seats` add up
//! to the whole.

use std::collections::{BTreeMap, BTreeSet};

use msfb_seat_exporter::config::{self, LoadOptions};
use msfb_seat_exporter::exporter::Exporter;
use msfb_seat_exporter::fake_store::{self, FakeSeat, FakeStore};

use crate::util::{Scrape, fast_options, request, temp_dir};

const SHARDS: u32 = 4;
/// Per-user product: 60 users from a users file.
const PER_USER: (&str, &str) = ("9NBLGGH4R315", "0016");
/// List-mode product: 40 users.
const LISTED: (&str, &str) = ("9WZDNCRFJ3PS", "0010");
/// Discovery product: every listed seat.
const DISCOVERED: (&str, &str) = ("CFQ7TTC0K5DR", "0001");

fn user(i: usize) -> String {
    format!("user{i:03}@contoso.com")
}

/// (product_id, sku_id, user) of a sample.
type Series = (String, String, String);

fn series_of(m: &Scrape, family: &str) -> Vec<Series> {
    m.find(family, &[])
        .iter()
        .map(|s| {
            (
                s.labels["product_id"].clone(),
                s.labels["sku_id"].clone(),
                s.labels["user"].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn four_shards_cover_every_target_exactly_once() {
    let fake = FakeStore::start().await.expect("fake store");
    // Per-user: active, revoked, no seat, and unknown to the directory.
    let per_user: Vec<String> = (0..60).map(user).collect();
    for (i, u) in per_user.iter().enumerate() {
        match i % 4 {
            0 | 1 => fake.set_seat(PER_USER.0, PER_USER.1, u, FakeSeat::active()),
            2 => fake.set_seat(PER_USER.0, PER_USER.1, u, FakeSeat::revoked()),
            _ if i % 8 == 3 => fake.add_user(u),
            _ => {} // unknown user: 404 User
        }
    }
    fake.add_product(PER_USER.0, PER_USER.1);
    // List mode: every other user holds a seat.
    let listed: Vec<String> = (100..140).map(user).collect();
    for (i, u) in listed.iter().enumerate() {
        if i % 2 == 0 {
            fake.set_seat(LISTED.0, LISTED.1, u, FakeSeat::active());
        } else {
            fake.add_user(u);
        }
    }
    fake.add_product(LISTED.0, LISTED.1);
    // Discovery: 30 active seats and 5 revoked ones (not watched).
    for i in 200..235 {
        let seat = if i < 230 {
            FakeSeat::active()
        } else {
            FakeSeat::revoked()
        };
        fake.set_seat(DISCOVERED.0, DISCOVERED.1, &user(i), seat);
    }

    let quoted: Vec<String> = listed.iter().map(|u| format!("{u:?}")).collect();
    let products = format!(
        "[inventory]\nenabled = false\n\n\
         [[products]]\nproduct_id = \"{}\"\nsku_id = \"{}\"\nusers_file = \"users.txt\"\n\n\
         [[products]]\nproduct_id = \"{}\"\nsku_id = \"{}\"\nmode = \"list\"\nusers = [{}]\n\n\
         [[products]]\nproduct_id = \"{}\"\nsku_id = \"{}\"\nusers = \"all\"\n",
        PER_USER.0,
        PER_USER.1,
        LISTED.0,
        LISTED.1,
        quoted.join(", "),
        DISCOVERED.0,
        DISCOVERED.1,
    );
    let dir = temp_dir(&[
        ("secret", fake_store::CLIENT_SECRET),
        ("users.txt", &per_user.join("\n")),
        ("config.toml", &fake.config_toml("secret", &products)),
    ]);
    let path = dir.path().join("config.toml");

    let mut owner: BTreeMap<Series, u32> = BTreeMap::new();
    let mut seats: BTreeMap<(String, String), f64> = BTreeMap::new();
    for shard in 0..SHARDS {
        // One file for all; the shard comes from the command line, as
        // --shard.index/--shard.count give it.
        let options = LoadOptions {
            shard_index: Some(shard),
            shard_count: Some(SHARDS),
            ..LoadOptions::default()
        };
        let config = config::load(&path, &options).expect("valid config");
        let exporter = Exporter::new(config, fast_options()).expect("exporter");
        let report = exporter
            .run_cycle(&tokio_util::sync::CancellationToken::new())
            .await
            .expect("not cancelled");
        assert!(report.all_conclusive(), "shard {shard}: {report:?}");
        let (status, body) = request(&exporter, "GET", "/metrics").await;
        assert_eq!(status, 200);
        let m = Scrape::parse(&body);
        let mine = series_of(&m, "msfb_seat_active");
        assert!(!mine.is_empty(), "shard {shard} checks nothing");
        for s in mine {
            if let Some(other) = owner.insert(s.clone(), shard) {
                panic!("{s:?} is exported by shard {other} and shard {shard}");
            }
        }
        // Every target this shard exports in one family, it exports in the
        // others: the shard decides per target, not per series.
        let checked: BTreeSet<Series> = series_of(&m, "msfb_seat_check_success")
            .into_iter()
            .collect();
        let active: BTreeSet<Series> = series_of(&m, "msfb_seat_active").into_iter().collect();
        assert_eq!(checked, active, "shard {shard}");
        for s in m.find("msfb_seats", &[]) {
            *seats
                .entry((s.labels["product_id"].clone(), s.labels["state"].clone()))
                .or_default() += s.value;
        }
    }

    // The union is every target: configured users, and the active seats of
    // the discovery product (revoked ones are nobody's target).
    let mut want: BTreeSet<Series> = BTreeSet::new();
    for u in &per_user {
        want.insert((PER_USER.0.into(), PER_USER.1.into(), u.clone()));
    }
    for u in &listed {
        want.insert((LISTED.0.into(), LISTED.1.into(), u.clone()));
    }
    for i in 200..230 {
        want.insert((DISCOVERED.0.into(), DISCOVERED.1.into(), user(i)));
    }
    let got: BTreeSet<Series> = owner.keys().cloned().collect();
    assert_eq!(got, want);
    let per_shard: BTreeSet<u32> = owner.values().copied().collect();
    assert_eq!(per_shard.len(), SHARDS as usize);

    // `sum` over the instances gives the whole: 30 of 60 per-user targets
    // active, 20 of 40 listed, all 30 discovered; nothing unknown.
    let sum = |p: &str, state: &str| seats.get(&(p.to_owned(), state.to_owned())).copied();
    assert_eq!(sum(PER_USER.0, "active"), Some(30.0));
    assert_eq!(sum(PER_USER.0, "inactive"), Some(30.0));
    assert_eq!(sum(LISTED.0, "active"), Some(20.0));
    assert_eq!(sum(LISTED.0, "inactive"), Some(20.0));
    assert_eq!(sum(DISCOVERED.0, "active"), Some(30.0));
    for p in [PER_USER.0, LISTED.0, DISCOVERED.0] {
        assert_eq!(sum(p, "unknown"), Some(0.0), "{p}");
    }
    let total: f64 = seats.values().sum();
    assert_eq!(total, (60 + 40 + 30) as f64);
}
