//! The human pages: `/` (what this is, counts by state, links) and `/status`
//! (every target, lost and failing first; `?format=json` for machines).
//!
//! The pages are self-contained — inline CSS and script, no external assets —
//! so they work offline. Every string that comes from the configuration or
//! the Store goes through [`escape_html`]; the strict Content-Security-Policy
//! is a second line of defence.

use std::fmt::Write as _;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat};
use serde::{Deserialize, Serialize};

use crate::exporter::Exporter;
use crate::targets::{Seat, StateCounts, TargetTable};

const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'";

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

fn html_response(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
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

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse}th,td{padding:.25em .6em;border-bottom:1px solid #ddd;text-align:left}\
th{cursor:pointer;background:#f4f4f4}.inactive{background:#fde2e2}.failing{background:#fff4d6}\
.unknown{color:#777}code{font-size:90%}input{padding:.3em;width:20em}";

/// `GET /`.
pub async fn landing(State(exporter): State<Exporter>) -> Response {
    let generation = exporter.generation();
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
</body></html>",
        version = env!("CARGO_PKG_VERSION"),
        interval = humantime::format_duration(config.poll.interval),
        ready = if exporter.is_ready() {
            "ready"
        } else {
            "not ready"
        },
        a = total.active,
        i = total.inactive,
        u = total.unknown,
    );
    html_response(body)
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
pub async fn status(State(exporter): State<Exporter>, Query(q): Query<StatusQuery>) -> Response {
    let generation = exporter.generation();
    let rows = status_rows(&generation.table);
    if q.format.as_deref() == Some("json") {
        return axum::Json(serde_json::json!({ "targets": rows })).into_response();
    }
    let mut body = String::with_capacity(rows.len() * 300 + 4096);
    let _ = write!(
        body,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>msfb_seat_exporter status</title>\
<style>{STYLE}</style></head><body><h1>Seat status</h1>\
<p><a href=\"/\">Home</a> · <a href=\"?format=json\">JSON</a> · {n} targets · refreshes every 30 s</p>\
<p><input id=\"filter\" type=\"search\" placeholder=\"Filter rows…\" autofocus></p>\
<table id=\"targets\"><thead><tr><th>Product</th><th>Product ID</th><th>SKU</th><th>User</th>\
<th>State</th><th>Last check</th><th>Last success</th><th>Seats lost</th><th>Last error</th></tr></thead><tbody>",
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
    html_response(body)
}

/// Filter, sort and auto-refresh; the filter text and sort column survive
/// the refresh through `sessionStorage`.
const STATUS_SCRIPT: &str = r#"
(function () {
  var table = document.getElementById('targets');
  var input = document.getElementById('filter');
  var body = table.tBodies[0];
  function applyFilter() {
    var q = input.value.toLowerCase();
    for (var i = 0; i < body.rows.length; i++) {
      var row = body.rows[i];
      row.style.display = row.textContent.toLowerCase().indexOf(q) >= 0 ? '' : 'none';
    }
    sessionStorage.setItem('msfb-filter', input.value);
  }
  function sortBy(col, dir) {
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].textContent, y = b.cells[col].textContent;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny) && String(nx) === x && String(ny) === y) ? nx - ny : x.localeCompare(y);
      return dir * c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    sessionStorage.setItem('msfb-sort', col + ':' + dir);
  }
  var heads = table.tHead.rows[0].cells;
  for (var i = 0; i < heads.length; i++) {
    (function (col) {
      heads[col].addEventListener('click', function () {
        var saved = (sessionStorage.getItem('msfb-sort') || '').split(':');
        var dir = (saved[0] === String(col) && saved[1] === '1') ? -1 : 1;
        sortBy(col, dir);
      });
    })(i);
  }
  input.value = sessionStorage.getItem('msfb-filter') || '';
  input.addEventListener('input', applyFilter);
  var saved = (sessionStorage.getItem('msfb-sort') || '').split(':');
  if (saved.length === 2) { sortBy(parseInt(saved[0], 10), parseInt(saved[1], 10)); }
  applyFilter();
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
