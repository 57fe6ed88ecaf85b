//! The landing and status pages (SPEC §7, issue 4): every configured or
//! upstream string is escaped, the pages need nothing from the network, the
//! Content-Security-Policy admits exactly our own style and script, the JSON
//! form carries the same rows. The filter/sort script runs in Node, in the
//! contract tests (`tests/contract/pages.rs`).

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use crate::util::pages::{EVIL_NAME, EVIL_USER, EVIL_USER_2, between, get, hostile_harness};
use crate::util::{P, S};

fn csp_source(content: &str) -> String {
    let digest = Sha256::digest(content.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
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
