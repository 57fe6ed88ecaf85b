//! The human pages: `/` (what this is, counts by state, links) and `/status`
//! (every target, lost and failing first; `?format=json` for machines).
//!
//! The pages are self-contained — inline CSS and script, no external assets —
//! so they work offline and behind an air gap. Every string that comes from
//! the configuration or the Store goes through [`escape_html`]. The
//! Content-Security-Policy is a second line of defence: it allows exactly
//! our own style sheet and script, by hash, so even a string that escaped
//! escaping could not run as script.

use std::fmt::Write as _;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::SharedSite;
use crate::targets::{Seat, StateCounts, TargetTable};

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

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn html_response(body: String, script: Option<&str>) -> Response {
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
        body,
    )
        .into_response()
}

fn rfc3339(unix: f64) -> String {
    DateTime::from_timestamp_millis((unix * 1000.0) as i64)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// The one style sheet of both pages.
pub const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse}th,td{padding:.25em .6em;border-bottom:1px solid #ddd;text-align:left}\
th{background:#f4f4f4}#targets th{cursor:pointer;user-select:none}\
th[aria-sort=ascending]::after{content:' \\25B2'}th[aria-sort=descending]::after{content:' \\25BC'}\
.inactive{background:#fde2e2}.failing{background:#fff4d6}\
.unknown{color:#777}code{font-size:90%}input{padding:.3em;width:20em}";

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

/// `?format=json`.
#[derive(Debug, Deserialize)]
pub struct StatusQuery {
    format: Option<String>,
}

/// One row of the status page.
#[derive(Debug, Serialize)]
pub struct StatusRow {
    product_id: String,
    sku_id: String,
    product_name: Option<String>,
    user: String,
    /// `active`, `inactive` or `unknown`.
    state: &'static str,
    /// Whether the latest check failed.
    failing: bool,
    last_check: Option<String>,
    last_success: Option<String>,
    lost_total: u64,
    last_error: Option<StatusError>,
}

/// The latest error of a target.
#[derive(Debug, Serialize)]
pub struct StatusError {
    at: String,
    code: String,
    reason: &'static str,
    detail: String,
}

/// The rows in display order: lost (inactive) first, then failing, then
/// unknown, then healthy; by product and user within each.
pub fn status_rows(table: &TargetTable) -> Vec<StatusRow> {
    let mut rows: Vec<(u8, StatusRow)> = table
        .iter()
        .map(|(p, t)| {
            let s = t.state();
            let state = match s.seat {
                Some(Seat { active: true, .. }) => "active",
                Some(Seat { active: false, .. }) => "inactive",
                None => "unknown",
            };
            let failing = s.last_check_at.is_some() && !s.last_check_ok;
            let rank = match (state, failing) {
                ("inactive", _) => 0,
                (_, true) => 1,
                ("unknown", _) => 2,
                _ => 3,
            };
            let row = StatusRow {
                product_id: p.product_id.clone(),
                sku_id: p.sku_id.clone(),
                product_name: p.name.clone(),
                user: t.user_label().to_owned(),
                state,
                failing,
                last_check: s.last_check_at.map(rfc3339),
                last_success: s.last_success_at.map(rfc3339),
                lost_total: s.lost_total,
                last_error: s.last_error.as_ref().map(|e| StatusError {
                    at: rfc3339(e.at),
                    code: e.code.label().into_owned(),
                    reason: e.reason.label(),
                    detail: e.detail.clone(),
                }),
            };
            (rank, row)
        })
        .collect();
    rows.sort_by(|(ra, a), (rb, b)| {
        ra.cmp(rb)
            .then_with(|| a.product_id.cmp(&b.product_id))
            .then_with(|| a.sku_id.cmp(&b.sku_id))
            .then_with(|| a.user.cmp(&b.user))
    });
    rows.into_iter().map(|(_, r)| r).collect()
}

/// `GET /status`.
pub async fn status(State(site): State<SharedSite>, Query(q): Query<StatusQuery>) -> Response {
    let generation = site.generation();
    let rows = status_rows(&generation.table);
    let now = rfc3339(crate::poller::unix_now());
    if q.format.as_deref() == Some("json") {
        /// Serialised straight from the rows: a `json!` value tree would
        /// hold a second, larger copy of every row while the text is made.
        #[derive(Serialize)]
        struct StatusJson<'a> {
            generated_at: String,
            targets: &'a [StatusRow],
        }
        return axum::Json(StatusJson {
            generated_at: now,
            targets: &rows,
        })
        .into_response();
    }
    let mut body = String::with_capacity(rows.len() * 300 + 4096);
    let _ = write!(
        body,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>msfb_seat_exporter status</title>\
<style>{STYLE}</style></head><body><h1>Seat status</h1>\
<p><a href=\"/\">Home</a> · <a href=\"/status?format=json\">JSON</a> · {n} targets · \
generated {now} · refreshes every 30 s</p>\
<p><input id=\"filter\" type=\"search\" placeholder=\"Filter rows…\" aria-label=\"Filter rows\" autofocus></p>\
<table id=\"targets\"><thead><tr><th tabindex=\"0\">Product</th><th tabindex=\"0\">Product ID</th>\
<th tabindex=\"0\">SKU</th><th tabindex=\"0\">User</th><th tabindex=\"0\">State</th>\
<th tabindex=\"0\">Last check</th><th tabindex=\"0\">Last success</th><th tabindex=\"0\">Seats lost</th>\
<th tabindex=\"0\">Last error</th></tr></thead><tbody>",
        n = rows.len()
    );
    for r in &rows {
        let class = if r.state == "inactive" {
            "inactive"
        } else if r.failing {
            "failing"
        } else if r.state == "unknown" {
            "unknown"
        } else {
            ""
        };
        let error = r
            .last_error
            .as_ref()
            .map(|e| {
                let reason = if e.reason.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", e.reason)
                };
                format!(
                    "{} <code>{}</code>{}: {}",
                    escape_html(&e.at),
                    escape_html(&e.code),
                    escape_html(&reason),
                    escape_html(&e.detail)
                )
            })
            .unwrap_or_default();
        let _ = write!(
            body,
            "<tr class=\"{class}\"><td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td>{}</td>\
<td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape_html(r.product_name.as_deref().unwrap_or("")),
            escape_html(&r.product_id),
            escape_html(&r.sku_id),
            escape_html(&r.user),
            r.state,
            if r.failing { ", failing" } else { "" },
            escape_html(r.last_check.as_deref().unwrap_or("never")),
            escape_html(r.last_success.as_deref().unwrap_or("never")),
            r.lost_total,
            error
        );
    }
    body.push_str("</tbody></table><script>");
    body.push_str(STATUS_SCRIPT);
    body.push_str("</script></body></html>");
    html_response(body, Some(STATUS_SCRIPT))
}

/// Filter, sort and auto-refresh. The filter text and the sort column
/// survive the refresh through `sessionStorage`; headers sort on click or
/// Enter, and show the direction through `aria-sort`. Numbers sort as
/// numbers, everything else (ISO dates included) as text.
pub const STATUS_SCRIPT: &str = r#"
(function () {
  var table = document.getElementById('targets');
  var input = document.getElementById('filter');
  var body = table.tBodies[0];
  var heads = table.tHead.rows[0].cells;
  function store(k, v) { try { sessionStorage.setItem(k, v); } catch (e) {} }
  function load(k) { try { return sessionStorage.getItem(k) || ''; } catch (e) { return ''; } }
  function applyFilter() {
    var q = input.value.toLowerCase();
    for (var i = 0; i < body.rows.length; i++) {
      var row = body.rows[i];
      row.hidden = row.textContent.toLowerCase().indexOf(q) < 0;
    }
    store('msfb-filter', input.value);
  }
  function sortBy(col, dir) {
    if (!(col >= 0 && col < heads.length) || (dir !== 1 && dir !== -1)) { return; }
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].textContent, y = b.cells[col].textContent;
      var nx = Number(x), ny = Number(y);
      var c = (x !== '' && y !== '' && !isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return dir * c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    for (var i = 0; i < heads.length; i++) { heads[i].removeAttribute('aria-sort'); }
    heads[col].setAttribute('aria-sort', dir === 1 ? 'ascending' : 'descending');
    store('msfb-sort', col + ':' + dir);
  }
  function toggle(col) {
    var saved = load('msfb-sort').split(':');
    sortBy(col, (saved[0] === String(col) && saved[1] === '1') ? -1 : 1);
  }
  for (var i = 0; i < heads.length; i++) {
    (function (col) {
      heads[col].addEventListener('click', function () { toggle(col); });
      heads[col].addEventListener('keydown', function (e) {
        if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); toggle(col); }
      });
    })(i);
  }
  input.value = load('msfb-filter');
  input.addEventListener('input', applyFilter);
  var saved = load('msfb-sort').split(':');
  if (saved.length === 2) { sortBy(parseInt(saved[0], 10), parseInt(saved[1], 10)); }
  applyFilter();
  // Reload rather than fetch: the page stays one self-contained document,
  // and a tab left open for days does not accumulate state.
  setTimeout(function () { location.reload(); }, 30000);
})();
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
    }
}
