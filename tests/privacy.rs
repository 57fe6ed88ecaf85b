//! `[metrics] user_label = "hash"` (SPEC §6): the `user` label and the pages
//! carry a keyed hash of the UPN, the same for the same UPN and key (across
//! restarts and letter case), and no UPN reaches anything served, error
//! details included. The logs are covered in `logs`, with the binary.

use msfb_seat_exporter::fake_store::{Action, FakeSeat, Fault, Match};
use msfb_seat_exporter::targets::hash_user;

use crate::util::{P, S, Scrape, Served, Setup, product};

const KEY: &str = "0123456789abcdef-test-key";
const USERS: [&str; 4] = [
    "alice@contoso.com",
    "bob@contoso.com",
    "carol@contoso.com",
    "erin@contoso.com",
];

fn hashed_setup<'a>(key: &str, products: &'a str) -> Setup<'a> {
    Setup {
        web: "",
        metrics: "user_label = \"hash\"\nuser_hash_key_file = \"hash_key\"",
        products,
        files: vec![("hash_key", format!("{key}\n").into_bytes())],
    }
}

async fn get(served: &Served, path: &str) -> String {
    let resp = reqwest::get(format!("{}{path}", served.url()))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    resp.text().await.unwrap()
}

fn assert_no_upn(what: &str, text: &str) {
    for upn in USERS {
        let local = upn.split('@').next().unwrap();
        assert!(!text.contains(local), "{local} in {what}:\n{text}");
    }
    assert!(!text.contains("@contoso.com"), "a UPN in {what}:\n{text}");
}

#[tokio::test]
async fn labels_and_pages_carry_the_hash_and_no_upn_even_in_errors() {
    let products = product(&USERS);
    let served = Served::start(hashed_setup(KEY, &products)).await;
    for u in USERS {
        served.fake.set_seat(P, S, u, FakeSeat::active());
    }
    // Failures whose details come from the HTTP stack and the decoder.
    served.fake.add_fault(Fault::always(
        Match::User("carol@contoso.com".into()),
        Action::Drop,
    ));
    served.fake.add_fault(Fault::always(
        Match::User("erin@contoso.com".into()),
        Action::Malformed,
    ));
    served.cycle().await;
    served.fake.remove_seat(P, S, "bob@contoso.com");
    served.cycle().await;

    let metrics = get(&served, "/metrics").await;
    let status = get(&served, "/status").await;
    let json = get(&served, "/status?format=json").await;
    let landing = get(&served, "/").await;
    for (what, text) in [
        ("metrics", &metrics),
        ("status", &status),
        ("status json", &json),
        ("landing page", &landing),
    ] {
        assert_no_upn(what, text);
    }

    let m = Scrape::parse(&metrics);
    let h = |u: &str| hash_user(KEY, u).to_string();
    assert_eq!(m.active(&h("alice@contoso.com")), Some(1.0));
    assert_eq!(m.active(&h("bob@contoso.com")), Some(0.0));
    assert_eq!(
        m.value(
            "msfb_seat_lost_total",
            &[("user", h("bob@contoso.com").as_str())]
        ),
        Some(1.0)
    );
    assert_eq!(m.success(&h("carol@contoso.com")), Some(0.0));
    assert_eq!(m.success(&h("erin@contoso.com")), Some(0.0));
    let users: std::collections::BTreeSet<&str> = m
        .samples
        .iter()
        .filter_map(|s| s.labels.get("user").map(String::as_str))
        .collect();
    let expected: std::collections::BTreeSet<String> = USERS.iter().map(|u| h(u)).collect();
    assert_eq!(
        users,
        expected.iter().map(String::as_str).collect(),
        "every user label is a hash"
    );

    // The status page lists the same hashes, with the failures' details.
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let rows = v["targets"].as_array().unwrap();
    let mut listed: Vec<String> = rows
        .iter()
        .map(|r| r["user"].as_str().unwrap().to_owned())
        .collect();
    listed.sort();
    assert_eq!(listed, expected.iter().cloned().collect::<Vec<_>>());
    let carol = rows
        .iter()
        .find(|r| r["user"] == h("carol@contoso.com"))
        .unwrap();
    assert!(
        !carol["last_error"]["detail"].as_str().unwrap().is_empty(),
        "{carol}"
    );
    for u in USERS {
        assert!(status.contains(&h(u)));
    }
}

/// The `user` label of `upn` in a served exporter after one cycle.
async fn label_of(served: &Served, upn_in_config: &str) -> String {
    served
        .fake
        .set_seat(P, S, upn_in_config, FakeSeat::active());
    served.cycle().await;
    let m = Scrape::parse(&get(served, "/metrics").await);
    let found = m.find("msfb_seat_active", &[]);
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].labels["user"].clone()
}

#[tokio::test]
async fn the_same_upn_and_key_always_give_the_same_hash() {
    let one = product(&["alice@contoso.com"]);
    let first = label_of(
        &Served::start(hashed_setup(KEY, &one)).await,
        "alice@contoso.com",
    )
    .await;
    // Another process with the same key file: the same label, so series
    // continue across restarts.
    let again = label_of(
        &Served::start(hashed_setup(KEY, &one)).await,
        "alice@contoso.com",
    )
    .await;
    assert_eq!(first, again);
    assert_eq!(first, hash_user(KEY, "alice@contoso.com").as_ref());
    // UPNs are case-insensitive, and so is their hash.
    let upper = product(&["Alice@Contoso.COM"]);
    let cased = label_of(
        &Served::start(hashed_setup(KEY, &upper)).await,
        "Alice@Contoso.COM",
    )
    .await;
    assert_eq!(first, cased);
    // Another key, another hash: the label cannot be recomputed from the
    // UPN alone.
    let other = label_of(
        &Served::start(hashed_setup("another-key", &one)).await,
        "alice@contoso.com",
    )
    .await;
    assert_ne!(first, other);
    // The README's recipe for looking a hash up:
    // HMAC-SHA256(key, lower-case UPN), first 16 hex digits.
    assert_eq!(first, readme_recipe(KEY, "alice@contoso.com"));
}

/// `printf '%s' UPN | openssl dgst -sha256 -hmac KEY | cut -c1-16` in
/// Rust, written independently of the exporter's code.
fn readme_recipe(key: &str, upn: &str) -> String {
    use hmac::{KeyInit as _, Mac as _};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(upn.to_lowercase().as_bytes());
    let digest = mac.finalize().into_bytes();
    digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()[..16]
        .to_owned()
}

#[tokio::test]
async fn switching_to_hash_by_reload_drops_the_upn_series() {
    let products = product(&["alice@contoso.com"]);
    let served = Served::start(Setup {
        web: "",
        metrics: "user_label = \"upn\"",
        products: &products,
        files: vec![("hash_key", KEY.as_bytes().to_vec())],
    })
    .await;
    served
        .fake
        .set_seat(P, S, "alice@contoso.com", FakeSeat::active());
    served.cycle().await;
    assert!(
        get(&served, "/metrics")
            .await
            .contains("user=\"alice@contoso.com\"")
    );

    let config = served.path("config.toml");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "user_label = \"upn\"",
        "user_label = \"hash\"\nuser_hash_key_file = \"hash_key\"",
    );
    std::fs::write(&config, text).unwrap();
    served.exporter.reload().await.unwrap();
    let metrics = get(&served, "/metrics").await;
    assert_no_upn("metrics after the reload", &metrics);
    // The seat state carries over to the hashed series.
    let m = Scrape::parse(&metrics);
    assert_eq!(m.active(&hash_user(KEY, "alice@contoso.com")), Some(1.0));
    assert_no_upn("status after the reload", &get(&served, "/status").await);
}
