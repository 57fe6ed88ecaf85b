//! The landing and status pages as a browser gets them: a request with its
//! headers, pieces cut out of the HTML, the status table's cells, and the
//! hostile harness whose names and answers try to break out of the markup.

use axum::body::Body;
use http_body_util::BodyExt as _;
use msfb_seat_exporter::fake_store::{Action, FakeSeat, Fault, Match};
use tower::ServiceExt as _;

use super::harness::{Harness, P, S};

pub const EVIL_USER: &str = "<script>alert(1)</script>@evil.example";
pub const EVIL_USER_2: &str = "\"><img/src=x/onerror=alert(2)>@x.y";
pub const EVIL_NAME: &str = "<script>alert(\"name\")</script> & 'Co'";

/// GET through the real router: status, headers and body.
pub async fn get(h: &Harness, path: &str) -> (u16, http::HeaderMap, String) {
    let router = msfb_seat_exporter::web::router(h.exporter.clone());
    let req = http::Request::get(path).body(Body::empty()).unwrap();
    let resp = router.oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
}

/// Text between the first `open` and the following `close`.
pub fn between<'a>(text: &'a str, open: &str, close: &str) -> &'a str {
    let start = text.find(open).unwrap_or_else(|| panic!("no {open}")) + open.len();
    let len = text[start..]
        .find(close)
        .unwrap_or_else(|| panic!("no {close}"));
    &text[start..start + len]
}

/// One alice with a seat, the two hostile UPNs (one lost, one failing with
/// a hostile upstream body) under a hostile product name.
pub async fn hostile_harness() -> Harness {
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

/// Cell texts of the status table, entities decoded (enough HTML for our
/// own output).
pub fn table_rows(html: &str) -> (Vec<String>, Vec<Vec<String>>) {
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

/// The users of [`story`], one per thing a row can say.
pub mod story_users {
    /// Holds a seat throughout.
    pub use crate::util::harness::ALICE;
    /// Held one, lost it: `lost`.
    pub use crate::util::harness::BOB;
    /// Holds one; the latest checks fail: `active` and `failing`.
    pub use crate::util::harness::DAVE;
    /// Never had one: `no seat`.
    pub const ERIN: &str = "erin@contoso.com";
    /// Lost one and got it back: `active`, with a past error.
    pub const FRANK: &str = "frank@contoso.com";
    /// Every check failed: `unknown` and `failing`.
    pub const ZED: &str = "zed@contoso.com";
    /// A UPN with a right-to-left override that reads as another address.
    pub const SPOOF: &str = "spoof\u{202E}moc.live@contoso.com";
}

/// The product name of [`story`], with a first-strong isolate in it.
pub const STORY_NAME: &str = "Contoso \u{2066}Notes";

/// A served exporter after three cycles that leave one target in each
/// state the status page tells apart (see [`story_users`]).
pub async fn story() -> super::served::Served {
    use story_users::*;
    let users = [ALICE, BOB, DAVE, ERIN, FRANK, ZED, SPOOF];
    // Quoted as they are: Rust's `{:?}` would write `\u{202e}`, which
    // TOML does not read.
    let list: Vec<String> = users.iter().map(|u| format!("\"{u}\"")).collect();
    let products = format!(
        "[[products]]\nproduct_id = \"{P}\"\nsku_id = \"{S}\"\nname = \"{STORY_NAME}\"\nusers = [{}]\n",
        list.join(", ")
    );
    let served = super::served::Served::start(super::served::Setup {
        web: "",
        metrics: "",
        products: &products,
        files: Vec::new(),
    })
    .await;
    let fake = &served.fake;
    for u in [ALICE, BOB, DAVE, FRANK, SPOOF] {
        fake.set_seat(P, S, u, FakeSeat::active());
    }
    fake.add_user(ERIN);
    fake.add_fault(Fault::always(Match::User(ZED.into()), Fault::status(503)));
    served.cycle().await;
    fake.remove_seat(P, S, BOB);
    fake.remove_seat(P, S, FRANK);
    fake.add_fault(Fault::always(Match::User(DAVE.into()), Fault::status(503)));
    served.cycle().await;
    fake.set_seat(P, S, FRANK, FakeSeat::active());
    served.cycle().await;
    served
}
