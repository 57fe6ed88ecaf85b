//! The landing and status pages (SPEC §7, issue 4): every configured or
//! upstream string is escaped, the pages need nothing from the network, the
//! Content-Security-Policy admits exactly our own style and script, the JSON
//! form carries the same rows, and the filter/sort script works (run in
//! Node against a small DOM stand-in).

use axum::body::Body;
use base64::Engine as _;
use http_body_util::BodyExt as _;
use msfb_seat_exporter::fake_store::{Action, FakeSeat, Fault, Match};
use sha2::{Digest as _, Sha256};
use tower::ServiceExt as _;

use crate::util::{Harness, P, S};

const EVIL_USER: &str = "<script>alert(1)</script>@evil.example";
const EVIL_USER_2: &str = "\"><img/src=x/onerror=alert(2)>@x.y";
const EVIL_NAME: &str = "<script>alert(\"name\")</script> & 'Co'";

/// GET through the real router: status, headers and body.
async fn get(h: &Harness, path: &str) -> (u16, http::HeaderMap, String) {
    let router = msfb_seat_exporter::web::router(h.exporter.clone());
    let req = http::Request::get(path).body(Body::empty()).unwrap();
    let resp = router.oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
}

/// Text between the first `open` and the following `close`.
fn between<'a>(text: &'a str, open: &str, close: &str) -> &'a str {
    let start = text.find(open).unwrap_or_else(|| panic!("no {open}")) + open.len();
    let len = text[start..]
        .find(close)
        .unwrap_or_else(|| panic!("no {close}"));
    &text[start..start + len]
}

fn csp_source(content: &str) -> String {
    let digest = Sha256::digest(content.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// One alice with a seat, the two hostile UPNs (one lost, one failing with
/// a hostile upstream body) under a hostile product name.
async fn hostile_harness() -> Harness {
    let products = format!(
        "[[products]]\nproduct_id = \"{P}\"\nsku_id = \"{S}\"\nname = {EVIL_NAME:?}\n\
         users = [\"alice@contoso.com\", {EVIL_USER:?}, {EVIL_USER_2:?}]\n"
    );
    let h = Harness::new(&products, "max_retries = 0").await;
    for u in ["alice@contoso.com", EVIL_USER, EVIL_USER_2] {
        h.fake.set_seat(P, S, u, FakeSeat::active());
    }
    h.cycle().await;
    h.fake.remove_seat(P, S, EVIL_USER);
    h.fake.add_fault(Fault::always(
        Match::User(EVIL_USER_2.into()),
        Action::Body("{\"State\": [\"<script>alert(3)</script>\"]}".into()),
    ));
    h.cycle().await;
    h
}

/// Checks what both pages promise: no live markup from data, nothing from
/// the network, a policy that admits only our inline style and script.
fn assert_safe_page(headers: &http::HeaderMap, html: &str, script: Option<&str>) {
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'none';"), "{csp}");
    assert!(!csp.contains("unsafe"), "{csp}");
    let style = between(html, "<style>", "</style>");
    assert!(
        csp.contains(&format!("style-src {};", csp_source(style))),
        "{csp}"
    );
    match script {
        Some(_) => {
            let inline = between(html, "<script>", "</script>");
            assert!(
                csp.contains(&format!("script-src {};", csp_source(inline))),
                "{csp}"
            );
        }
        None => assert!(csp.contains("script-src 'none';"), "{csp}"),
    }
    // Exactly our own elements: one style, at most our one script, no
    // element smuggled in through a name.
    assert_eq!(html.matches("<style").count(), 1);
    assert_eq!(
        html.matches("<script").count(),
        usize::from(script.is_some())
    );
    assert!(!html.contains("<img"), "{html}");
    // Works offline: nothing loaded from anywhere, links stay on this host.
    assert!(!html.contains(" src="), "{html}");
    assert!(!html.contains("://"), "{html}");
    for href in html.split("href=\"").skip(1) {
        assert!(href.starts_with('/'), "link leaves the exporter: {href}");
    }
}

#[tokio::test]
async fn status_page_escapes_every_string_and_needs_no_network() {
    let h = hostile_harness().await;
    let (status, headers, html) = get(&h, "/status").await;
    assert_eq!(status, 200);
    assert_safe_page(&headers, &html, Some("status"));
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;@evil.example"),
        "{html}"
    );
    assert!(html.contains("&quot;&gt;&lt;img/src=x/onerror=alert(2)&gt;@x.y"));
    assert!(
        html.contains("&lt;script&gt;alert(&quot;name&quot;)&lt;/script&gt; &amp; &#39;Co&#39;")
    );
    // The filter box, sortable headers and the refresh are there.
    assert!(html.contains("<input id=\"filter\""));
    assert_eq!(html.matches("<th tabindex=\"0\">").count(), 9);
    assert!(html.contains("location.reload()"));
}

#[tokio::test]
async fn landing_page_escapes_the_product_name_and_counts_by_state() {
    let h = hostile_harness().await;
    let (status, headers, html) = get(&h, "/").await;
    assert_eq!(status, 200);
    assert_safe_page(&headers, &html, None);
    assert!(html.contains(
        "<td>&lt;script&gt;alert(&quot;name&quot;)&lt;/script&gt; &amp; &#39;Co&#39;</td>"
    ));
    // alice and the failing one active, the removed one inactive.
    assert!(html.contains("<td>2</td><td>1</td><td>0</td>"), "{html}");
    assert!(html.contains(&format!("<code>{P}</code>")));
    assert!(html.contains("href=\"/status\"") && html.contains("href=\"/metrics\""));
}

#[tokio::test]
async fn status_json_has_the_same_rows_raw_and_in_the_same_order() {
    let h = hostile_harness().await;
    let (status, headers, json) = get(&h, "/status?format=json").await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(v["generated_at"].as_str().unwrap().ends_with('Z'));
    let targets = v["targets"].as_array().unwrap();
    let users: Vec<&str> = targets
        .iter()
        .map(|t| t["user"].as_str().unwrap())
        .collect();
    // Lost first, then failing, then healthy.
    assert_eq!(users, [EVIL_USER, EVIL_USER_2, "alice@contoso.com"]);
    assert_eq!(targets[0]["state"], "inactive");
    assert_eq!(targets[0]["lost_total"], 1);
    assert_eq!(targets[0]["last_error"]["code"], "404");
    assert_eq!(targets[0]["last_error"]["reason"], "seat");
    assert_eq!(targets[1]["state"], "active");
    assert_eq!(targets[1]["failing"], true);
    assert_eq!(targets[1]["last_error"]["code"], "decode");
    assert_eq!(targets[2]["product_name"], EVIL_NAME);
    assert_eq!(targets[2]["product_id"], P);
    assert_eq!(targets[2]["sku_id"], S);
    assert!(targets[2]["last_check"].as_str().unwrap().ends_with('Z'));
    assert!(targets[2]["last_success"].as_str().unwrap().ends_with('Z'));

    // The HTML table lists the same users in the same order.
    let (_, _, html) = get(&h, "/status").await;
    let mut at = 0;
    for u in [
        "&lt;script&gt;alert(1)&lt;/script&gt;@evil.example",
        "&quot;&gt;&lt;img/src=x/onerror=alert(2)&gt;@x.y",
        "alice@contoso.com",
    ] {
        let found = html[at..]
            .find(u)
            .unwrap_or_else(|| panic!("{u} out of order"));
        at += found + u.len();
    }
}

/// Cell texts of the status table, entities decoded (enough HTML for our
/// own output).
fn table_rows(html: &str) -> (Vec<String>, Vec<Vec<String>>) {
    fn text(cell: &str) -> String {
        let mut out = String::new();
        let mut in_tag = false;
        for c in cell.chars() {
            match c {
                '<' => in_tag = true,
                '>' => in_tag = false,
                c if !in_tag => out.push(c),
                _ => {}
            }
        }
        out.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&amp;", "&")
    }
    let head = between(html, "<thead>", "</thead>");
    let headers = head
        .split("<th")
        .skip(1)
        .map(|c| text(&format!("<th{}", c)))
        .collect();
    let body = between(html, "<tbody>", "</tbody>");
    let rows = body
        .split("<tr")
        .skip(1)
        .map(|row| {
            row.split("<td")
                .skip(1)
                .map(|c| text(&format!("<td{c}")))
                .collect()
        })
        .collect();
    (headers, rows)
}

#[tokio::test]
async fn status_script_filters_sorts_and_keeps_both_across_the_refresh() {
    let h = hostile_harness().await;
    let (_, _, html) = get(&h, "/status").await;
    let script = between(&html, "<script>", "</script>");
    let (headers, rows) = table_rows(&html);
    assert_eq!(headers.len(), 9);
    assert!(rows.iter().all(|r| r.len() == 9), "{rows:?}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("status.js"), script).unwrap();
    std::fs::write(
        dir.path().join("table.json"),
        serde_json::json!({ "headers": headers, "rows": rows }).to_string(),
    )
    .unwrap();
    let harness =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js/status_script.js");
    let out = std::process::Command::new("node")
        .arg(harness)
        .arg(dir.path().join("status.js"))
        .arg(dir.path().join("table.json"))
        .output()
        .expect("node is needed for this test (bash scripts/test.sh installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.trim_end().lines().last(),
        Some("status script: all checks passed")
    );
}
