//! The human pages' common ground and the landing page `/` (what this is,
//! counts by state, links); the status page is `status`.
//!
//! The pages are self-contained — inline CSS and script, no external assets —
//! so they work offline and behind an air gap. Every string that comes from
//! the configuration or the Store goes through [`escape_html`], which also
//! shows bidirectional and invisible format characters as `\u{…}`, so a
//! name cannot reorder or hide what is shown around it. The
//! Content-Security-Policy is a second line of defence: it allows exactly
//! our own style sheet and script, by hash, so even a string that escaped
//! escaping could not run as script.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat};
use sha2::{Digest as _, Sha256};

use super::SharedSite;
use crate::targets::{StateCounts, TargetTable};

/// `'sha256-…'` source expression of an inline element's content.
fn csp_hash(content: &str) -> String {
    let digest = Sha256::digest(content.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The policy for a page whose only inline code is [`STYLE`] and `script`.
pub fn content_security_policy(script: Option<&str>) -> String {
    format!(
        "default-src 'none'; style-src {}; script-src {}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        csp_hash(STYLE),
        script.map_or_else(|| "'none'".to_owned(), csp_hash)
    )
}

/// Whether `c` is a bidirectional control (U+202A–U+202E, U+2066–U+2069)
/// or an invisible format character (U+200B–U+200F): shown, they could
/// reorder or hide the text around them (a UPN that reads as another).
fn is_deceptive(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Escapes text for HTML element content and quoted attribute values, and
/// neutralises deceptive characters (see [`is_deceptive`]) as `\u{202e}`.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if is_deceptive(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// An HTML answer with the security headers of every page.
pub(crate) fn html_response(body: impl Into<axum::body::Body>, script: Option<&str>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8".to_owned()),
            (
                header::CONTENT_SECURITY_POLICY,
                content_security_policy(script),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            (header::REFERRER_POLICY, "no-referrer".to_owned()),
        ],
        body.into(),
    )
        .into_response()
}

/// A Unix time as `2026-12-04T17:35:19Z`.
pub(crate) fn rfc3339(unix: f64) -> String {
    DateTime::from_timestamp_millis((unix * 1000.0) as i64)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// The one style sheet of both pages. Times, codes and badges never wrap;
/// long user names and error details do. Below 70em each row becomes a grid
/// with fixed columns shared by every row: the Product ID and SKU fold into
/// the Product cell and the error takes a line of its own under the row.
/// Below 40em (a phone) each row is a card of labelled fields. Nothing
/// scrolls sideways at any width.
pub const STYLE: &str = "*{box-sizing:border-box}\
body{font-family:system-ui,sans-serif;margin:1rem 1.5rem;color:#1f2328;line-height:1.4}\
h1{font-size:1.6em;margin:.2em 0 .4em}a{color:#0969da}\
table{border-collapse:collapse}th,td{padding:.3em .55em;border-bottom:1px solid #d8dee4;text-align:left;vertical-align:top}\
th{background:#f6f8fa}#targets{width:100%}#targets th{cursor:pointer;user-select:none}\
th[aria-sort=ascending]::after{content:' \\25B2'}th[aria-sort=descending]::after{content:' \\25BC'}\
time,code,.st,.fail{white-space:nowrap}code{font-size:90%}\
td.user,td.err{overflow-wrap:anywhere}\
.st,.fail{display:inline-block;padding:0 .5em;border-radius:1em;font-size:90%;border:1px solid transparent}\
.st.active{background:#dafbe1;color:#116329;border-color:#aceebb}\
.st.lost{background:#ffebe9;color:#a40e26;border-color:#ffcecb;font-weight:600}\
.st.noseat{background:#eaeef2;color:#424a53;border-color:#d0d7de}\
.st.unknown{background:#fff;color:#6e7781;border:1px dashed #8c959f}\
.fail{background:#fff8c5;color:#7d4e00;border-color:#eac54f}\
tr.lost{background:#fff5f5}tr.failing{background:#fffbe6}.past{color:#6e7781}\
.legend{list-style:none;padding:0;margin:.5em 0;display:flex;flex-wrap:wrap;gap:.3em 1.2em;font-size:90%;color:#424a53}\
.meta,.counts{margin:.3em 0}.ids{display:none}\
input{padding:.3em;width:20em;max-width:100%}\
@media (max-width:70em){#targets,#targets thead,#targets tbody{display:block}\
#targets tr{display:grid;grid-template-columns:minmax(0,1.2fr) minmax(0,2fr) 6em 6.5em 6.5em 4.5em;border-bottom:1px solid #d8dee4}\
#targets th,#targets td{border:0}#targets :is(th,td):is(:nth-child(2),:nth-child(3)){display:none}\
.ids{display:block;font-size:90%}#targets td.err{grid-column:1/-1;padding-top:0}#targets td.err:empty{display:none}\
#targets th:last-child{display:none}#targets td.err::before{content:'Last error: ';color:#57606a}}\
@media (max-width:40em){body{margin:.6rem}\
#targets tr,#targets td{display:block}#targets td.err{padding-top:.1em}\
#targets thead tr{display:flex;flex-wrap:wrap;gap:.3em;border:0}#targets th{border:1px solid #d0d7de;border-radius:1em;padding:.1em .6em}\
#targets th:last-child{display:block}\
#targets tbody tr{border:1px solid #d0d7de;border-radius:6px;margin:.6em 0;padding:.3em .2em}\
#targets td{padding:.1em .4em}\
#targets td[data-label]::before{content:attr(data-label) ': ';color:#57606a;font-size:90%}}";

/// `GET /`.
pub async fn landing(State(site): State<SharedSite>) -> Response {
    let generation = site.generation();
    let config = &generation.config;
    let mut rows = String::new();
    let mut total = StateCounts::default();
    for g in &generation.table.groups {
        let c = TargetTable::counts(g);
        total.add(c);
        let _ = write!(
            rows,
            "<tr><td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape_html(g.product.name.as_deref().unwrap_or("")),
            escape_html(&g.product.product_id),
            escape_html(&g.product.sku_id),
            c.active,
            c.inactive,
            c.unknown
        );
    }
    let metrics = escape_html(&config.web.telemetry_path);
    let body = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>msfb_seat_exporter</title>\
<style>{STYLE}</style></head><body><h1>msfb_seat_exporter</h1>\
<p>Version {version}. Checks Microsoft Store for Business seats every {interval} and exports them for Prometheus.</p>\
<ul><li><a href=\"{metrics}\">Metrics</a></li><li><a href=\"/status\">Status of every target</a></li>\
<li><a href=\"/-/healthy\">Health</a> · <a href=\"/-/ready\">Readiness</a> ({ready})</li></ul>\
<h2>Seats by state</h2><table><thead><tr><th>Product</th><th>Product ID</th><th>SKU</th>\
<th>Active</th><th>Inactive</th><th>Unknown</th></tr></thead><tbody>{rows}</tbody>\
<tfoot><tr><th colspan=\"3\">All</th><th>{a}</th><th>{i}</th><th>{u}</th></tr></tfoot></table>\
<p>Generated {now}.</p></body></html>",
        now = rfc3339(crate::poller::unix_now()),
        version = env!("CARGO_PKG_VERSION"),
        interval = humantime::format_duration(config.poll.interval),
        ready = if site.is_ready() {
            "ready"
        } else {
            "not ready"
        },
        a = total.active,
        i = total.inactive,
        u = total.unknown,
    );
    html_response(body, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_and_invisible_characters_are_shown_as_escapes() {
        assert_eq!(
            escape_html("alice\u{202E}moc.evil\u{2066}x\u{200B}y\u{200F}@b.c"),
            "alice\\u{202e}moc.evil\\u{2066}x\\u{200b}y\\u{200f}@b.c"
        );
        // Neighbours of the ranges stay as they are.
        assert_eq!(
            escape_html("\u{2010}\u{2029}\u{206A}é"),
            "\u{2010}\u{2029}\u{206A}é"
        );
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
    }
}
