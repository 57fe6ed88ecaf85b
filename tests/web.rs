//! The HTTP endpoints besides the metrics (SPEC §7), through the real router.

use msfb_seat_exporter::fake_store::{FakeSeat, Fault, Match};

use crate::util::{Harness, P, S, product, request};

#[tokio::test]
async fn health_and_readiness() {
    let h = Harness::new(
        &product(&["alice@contoso.com", "bob@contoso.com"]),
        "max_retries = 0",
    )
    .await;
    assert_eq!(h.get("/-/healthy").await.0, 200);
    let (status, body) = h.get("/-/ready").await;
    assert_eq!(status, 503);
    assert_eq!(body, "not ready: 0 of 2 targets checked\n");
    // An inconclusive check still counts as checked.
    h.fake
        .set_seat(P, S, "alice@contoso.com", FakeSeat::active());
    h.fake.add_fault(Fault::always(
        Match::User("bob@contoso.com".into()),
        Fault::status(500),
    ));
    h.cycle().await;
    assert_eq!(h.get("/-/ready").await, (200, "ready\n".to_owned()));
    assert_eq!(request(&h.exporter, "POST", "/-/healthy").await.0, 405);
}

#[tokio::test]
async fn unknown_paths_are_404() {
    let h = Harness::new(&product(&["alice@contoso.com"]), "").await;
    assert_eq!(h.get("/nope").await.0, 404);
    assert_eq!(h.get("/metrics/x").await.0, 404);
}

#[tokio::test]
async fn landing_page_counts_and_links() {
    let h = Harness::new(&product(&["alice@contoso.com", "bob@contoso.com"]), "").await;
    h.fake
        .set_seat(P, S, "alice@contoso.com", FakeSeat::active());
    h.fake.add_user("bob@contoso.com");
    h.cycle().await;
    let (status, body) = h.get("/").await;
    assert_eq!(status, 200);
    assert!(body.contains("href=\"/metrics\""));
    assert!(body.contains("href=\"/status\""));
    assert!(body.contains("<td>Contoso Notes</td>"));
    assert!(body.contains("<td>1</td><td>1</td><td>0</td>"), "{body}");
}

#[tokio::test]
async fn status_page_lists_lost_and_failing_first() {
    let users = ["alice@contoso.com", "bob@contoso.com", "carol@contoso.com"];
    let h = Harness::new(&product(&users), "max_retries = 0").await;
    for u in users {
        h.fake.set_seat(P, S, u, FakeSeat::active());
    }
    h.cycle().await;
    h.lose_and_fail("carol@contoso.com", "bob@contoso.com")
        .await;
    let (status, json) = h.get("/status?format=json").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let targets = v["targets"].as_array().unwrap();
    let order: Vec<&str> = targets
        .iter()
        .map(|t| t["user"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        ["carol@contoso.com", "bob@contoso.com", "alice@contoso.com"]
    );
    assert_eq!(targets[0]["state"], "inactive");
    assert_eq!(targets[0]["lost_total"], 1);
    assert_eq!(targets[1]["state"], "active");
    assert_eq!(targets[1]["failing"], true);
    assert_eq!(targets[1]["last_error"]["code"], "503");
    assert_eq!(targets[2]["last_error"], serde_json::Value::Null);

    let (status, html) = h.get("/status").await;
    assert_eq!(status, 200);
    let carol = html.find("carol@contoso.com").unwrap();
    let alice = html.find("alice@contoso.com").unwrap();
    assert!(carol < alice);
}

#[tokio::test]
async fn reload_through_the_endpoint() {
    let h = Harness::new(&product(&["alice@contoso.com"]), "").await;
    h.write_config(&product(&["alice@contoso.com", "bob@contoso.com"]), "");
    let (status, body) = request(&h.exporter, "POST", "/-/reload").await;
    assert_eq!((status, body.as_str()), (200, "configuration reloaded\n"));
    assert_eq!(h.exporter.generation().table.len(), 2);

    std::fs::write(h.config_path(), "[poll]\ninterval = \"1s\"\n").unwrap();
    let (status, body) = request(&h.exporter, "PUT", "/-/reload").await;
    assert_eq!(status, 500);
    assert!(
        body.contains("config.toml:1: auth: missing field `auth`"),
        "{body}"
    );
    assert_eq!(h.exporter.generation().table.len(), 2, "old config stays");
    let m = h.scrape().await;
    assert_eq!(
        m.value("msfb_seat_exporter_config_last_reload_successful", &[]),
        Some(0.0)
    );
    assert_eq!(request(&h.exporter, "GET", "/-/reload").await.0, 405);
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let served = crate::util::Served::start(crate::util::Setup {
        web: "",
        metrics: "",
        products: &product(&["alice@contoso.com"]),
        files: Vec::new(),
    })
    .await;
    let mut slow = tokio::net::TcpStream::connect(served.addr).await.unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // The server closes the connection (header read timeout) instead of
    // keeping it, and its memory, forever.
    let mut buf = Vec::new();
    // Whether it ends in EOF or a reset does not matter; that it ends does.
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        slow.read_to_end(&mut buf),
    )
    .await
    .expect("the server cut the slow client off");
    assert!(
        !String::from_utf8_lossy(&buf).contains("msfb_"),
        "no metrics were served"
    );
}
