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

/// The `<tr>` of the status page that names `user` (escaped as on the page).
fn row_of<'a>(html: &'a str, user: &str) -> &'a str {
    let at = html
        .find(&format!(">{user}</td>"))
        .unwrap_or_else(|| panic!("no row for {user}"));
    let start = html[..at].rfind("<tr").unwrap();
    let end = at + html[at..].find("</tr>").unwrap();
    &html[start..end]
}

/// GET over a real socket, the body read to its end.
async fn fetch(served: &crate::util::Served, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("{}{path}", served.url()))
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// Issue 15: a lost seat is not a user who never had one; each state has
/// its own badge, explained in a legend; times say how long ago with the
/// exact time on hover; the error column shows the latest check's error,
/// and an older one only marked as past. Served over a real socket, so the
/// streamed body is read as a client reads it.
#[tokio::test]
async fn status_rows_say_lost_no_seat_unknown_or_active_with_a_legend() {
    use crate::util::pages::story_users::*;
    let served = crate::util::pages::story().await;
    let (status, html) = fetch(&served, "/status").await;
    assert_eq!(status, 200);
    let legend = between(&html, "<ul class=\"legend\"", "</ul>");
    for (class, word) in [
        ("active", "active"),
        ("lost", "lost"),
        ("noseat", "no seat"),
        ("unknown", "unknown"),
    ] {
        let badge = format!("<span class=\"st {class}\">{word}</span>");
        assert!(legend.contains(&badge), "{badge} not in the legend");
    }
    assert!(html.contains(
        "7 targets: <b>1</b> lost · <b>2</b> failing · 1 no seat · 1 unknown · 4 active"
    ));

    let bob = row_of(&html, BOB);
    assert!(bob.starts_with("<tr class=\"lost\">"), "{bob}");
    assert!(bob.contains("<span class=\"st lost\">lost</span>"), "{bob}");
    assert!(bob.contains("<code>404</code> (seat): not found"), "{bob}");
    assert!(!bob.contains("past"), "the 404 is the latest answer: {bob}");
    let erin = row_of(&html, ERIN);
    assert!(
        erin.contains("<span class=\"st noseat\">no seat</span>"),
        "{erin}"
    );
    let zed = row_of(&html, ZED);
    assert!(zed.starts_with("<tr class=\"unknown failing\">"), "{zed}");
    assert!(
        zed.contains(
            "<span class=\"st unknown\">unknown</span> <span class=\"fail\">failing</span>"
        )
    );
    assert!(
        zed.contains("<td data-label=\"Last success\" data-sort=\"0\">never</td>"),
        "{zed}"
    );
    let dave = row_of(&html, DAVE);
    assert!(
        dave.contains(
            "<span class=\"st active\">active</span> <span class=\"fail\">failing</span>"
        )
    );
    assert!(dave.contains("<code>503</code>"), "{dave}");
    // Frank has his seat back: his 404 is history, not a current problem.
    let frank = row_of(&html, FRANK);
    assert!(frank.starts_with("<tr class=\"active\">"), "{frank}");
    assert!(
        frank.contains("<span class=\"past\">past, <time "),
        "{frank}"
    );
    assert!(frank.contains("<code>404</code> (seat)"), "{frank}");
    let alice = row_of(&html, ALICE);
    assert!(
        alice.contains("<td class=\"err\" data-label=\"Last error\"></td>"),
        "{alice}"
    );

    // Relative times, the exact UTC time on hover and as the sort key.
    let time = between(alice, "<td data-label=\"Last check\"", "</td>");
    assert!(time.contains("<time datetime=\"20"), "{time}");
    assert!(
        time.contains("Z\" title=\"20") && time.contains(" UTC\">"),
        "{time}"
    );
    assert!(
        time.contains("just now</time>") || time.contains(" s ago</time>"),
        "{time}"
    );

    // Lost, then failing, then no seat, then the rest; by user within each.
    let order: Vec<usize> = [BOB, DAVE, ZED, ERIN, ALICE, FRANK]
        .iter()
        .map(|u| html.find(&format!(">{u}</td>")).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
}

/// SPEC §17: bidirectional and invisible characters in a UPN or a product
/// name are shown as `\u{…}` on both pages, never as themselves; the JSON
/// keeps the data as it is.
#[tokio::test]
async fn pages_show_bidi_and_invisible_characters_as_escapes() {
    use crate::util::pages::story_users::SPOOF;
    let served = crate::util::pages::story().await;
    for path in ["/status", "/"] {
        let (status, html) = fetch(&served, path).await;
        assert_eq!(status, 200);
        for c in ['\u{202E}', '\u{2066}'] {
            assert!(!html.contains(c), "{path} shows U+{:04X} raw", u32::from(c));
        }
        assert!(html.contains("Contoso \\u{2066}Notes"), "{path}");
    }
    let (_, html) = fetch(&served, "/status").await;
    assert!(html.contains(">spoof\\u{202e}moc.live@contoso.com</td>"));
    let (_, json) = fetch(&served, "/status?format=json").await;
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(
        v["targets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["user"] == SPOOF)
    );
}

/// The JSON form says the same as the page: `status` in the page's words
/// next to `state` as `msfb_seats` counts, and whether the last error is
/// the latest check's.
#[tokio::test]
async fn status_json_tells_lost_from_no_seat_and_past_errors_from_current() {
    use crate::util::pages::story_users::*;
    let served = crate::util::pages::story().await;
    let (status, json) = fetch(&served, "/status?format=json").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let rows = v["targets"].as_array().unwrap();
    assert_eq!(rows.len(), 7);
    let row = |u: &str| rows.iter().find(|r| r["user"] == u).unwrap().clone();
    for (user, state, status, failing) in [
        (BOB, "inactive", "lost", false),
        (ERIN, "inactive", "no seat", false),
        (ZED, "unknown", "unknown", true),
        (DAVE, "active", "active", true),
        (FRANK, "active", "active", false),
        (ALICE, "active", "active", false),
    ] {
        let r = row(user);
        assert_eq!(
            (r["state"].as_str(), r["status"].as_str()),
            (Some(state), Some(status)),
            "{user}"
        );
        assert_eq!(r["failing"], failing, "{user}");
    }
    assert_eq!(row(BOB)["last_error"]["current"], true);
    assert_eq!(row(FRANK)["last_error"]["current"], false);
    assert_eq!(row(FRANK)["last_error"]["code"], "404");
    assert_eq!(row(ALICE)["last_error"], serde_json::Value::Null);
}
