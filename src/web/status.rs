//! `/status`: every target, lost and failing first, as HTML for people or
//! `?format=json` for machines, streamed like `/metrics`.
//!
//! Why streamed: at 100k targets the page is tens of megabytes, and a page
//! built whole per request let 40 readers that never read hold gigabytes.
//! Here a request decides the order once (a number per target, off the
//! async workers), then writes rows only when the client takes the previous
//! chunk: a stalled reader holds its order, one chunk and its socket's
//! buffers, whatever the size of the table.
//!
//! What a person needs from the page: a state that says what happened —
//! `lost` (held a seat here, none now) is not `no seat` (never held one while
//! watched) — times as "3 min ago" with the exact time on hover, the error
//! of the latest check only when that check failed (an older one is marked
//! as past), and a layout that stays readable at 800 px and on a phone.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};

use super::SharedSite;
use super::pages::{STYLE, escape_html, rfc3339};
use crate::targets::{Product, Seat, Target, TargetState, TargetTable};

/// Bytes of page written per chunk: a few dozen rows. A stalled reader
/// holds one; each costs a write and (with gzip) a flush.
const CHUNK_BYTES: usize = 32 * 1024;

/// `?format=json`; any other parameter (the script's `filter`) is ignored.
#[derive(Debug, Deserialize)]
pub struct StatusQuery {
    format: Option<String>,
}

/// What a target's row says about its seat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Held a seat here, and the latest answer says none.
    Lost,
    /// No seat, and none seen here before.
    NoSeat,
    /// No conclusive answer yet.
    Unknown,
    /// Holds a seat.
    Active,
}

impl Kind {
    fn of(state: &TargetState) -> Kind {
        match state.seat {
            Some(Seat { active: true, .. }) => Kind::Active,
            // A 1 → 0 transition is the only way to count a loss, so a
            // target at 0 with losses held a seat here before.
            Some(Seat { active: false, .. }) if state.lost_total > 0 => Kind::Lost,
            Some(Seat { active: false, .. }) => Kind::NoSeat,
            None => Kind::Unknown,
        }
    }

    /// The word on the page (and `status` in the JSON).
    fn word(self) -> &'static str {
        match self {
            Kind::Lost => "lost",
            Kind::NoSeat => "no seat",
            Kind::Unknown => "unknown",
            Kind::Active => "active",
        }
    }

    /// The CSS class of the badge and the row.
    fn class(self) -> &'static str {
        match self {
            Kind::Lost => "lost",
            Kind::NoSeat => "noseat",
            Kind::Unknown => "unknown",
            Kind::Active => "active",
        }
    }

    /// `state` as `msfb_seats` has it (kept in the JSON as it always was).
    fn seats_state(self) -> &'static str {
        match self {
            Kind::Lost | Kind::NoSeat => "inactive",
            Kind::Unknown => "unknown",
            Kind::Active => "active",
        }
    }
}

/// Whether the latest check failed.
fn failing(state: &TargetState) -> bool {
    state.last_check_at.is_some() && !state.last_check_ok
}

/// Display order: lost, failing, no seat, unknown, active.
fn rank(state: &TargetState) -> u8 {
    match (Kind::of(state), failing(state)) {
        (Kind::Lost, _) => 0,
        (_, true) => 1,
        (Kind::NoSeat, _) => 2,
        (Kind::Unknown, _) => 3,
        (Kind::Active, _) => 4,
    }
}

/// Targets by what their rows say, for the line above the table.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    total: usize,
    lost: usize,
    failing: usize,
    no_seat: usize,
    unknown: usize,
    active: usize,
}

/// The order requests show the targets in (see [`PlanCache`]). Rows are
/// read from the targets as they are written, so a row shows the state at
/// the moment it goes out.
pub struct Plan {
    table: Arc<TargetTable>,
    /// Discovered targets of each group as of the request.
    discovered: Vec<Vec<Arc<Target>>>,
    /// Global number of each group's first target.
    starts: Vec<u32>,
    /// Global target numbers in display order (4 bytes a target).
    order: Vec<u32>,
    counts: Counts,
}

impl Plan {
    /// Orders `table`: by [`rank`], then product and SKU, then user.
    fn new(table: Arc<TargetTable>) -> Plan {
        let discovered: Vec<Vec<Arc<Target>>> = table
            .groups
            .iter()
            .map(|g| g.discovery.as_ref().map_or_else(Vec::new, |d| d.snapshot()))
            .collect();
        let mut starts = Vec::with_capacity(table.groups.len());
        let mut next = 0u32;
        for (g, found) in table.groups.iter().zip(&discovered) {
            starts.push(next);
            // A table is bounded far below 4 billion targets (config size,
            // max_discovered); saturate rather than wrap if it were not.
            next = next.saturating_add(u32::try_from(g.targets.len() + found.len()).unwrap_or(0));
        }
        let mut plan = Plan {
            table,
            discovered,
            starts,
            order: Vec::new(),
            counts: Counts::default(),
        };
        // Where each group comes by product and SKU.
        let mut by_product: Vec<usize> = (0..plan.table.groups.len()).collect();
        by_product.sort_by(|&a, &b| {
            let (pa, pb) = (&plan.table.groups[a].product, &plan.table.groups[b].product);
            (&pa.product_id, &pa.sku_id).cmp(&(&pb.product_id, &pb.sku_id))
        });
        let mut group_pos = vec![0u32; by_product.len()];
        for (pos, &g) in by_product.iter().enumerate() {
            group_pos[g] = u32::try_from(pos).unwrap_or(u32::MAX);
        }
        // Rank and product position in one number per target, so that the
        // sort compares user names only within a rank and product.
        let mut keys: Vec<u64> = Vec::with_capacity(next as usize);
        let mut c = Counts::default();
        for i in 0..next {
            let state = plan.target(i).1.state();
            let kind = Kind::of(&state);
            c.total += 1;
            c.failing += usize::from(failing(&state));
            match kind {
                Kind::Lost => c.lost += 1,
                Kind::NoSeat => c.no_seat += 1,
                Kind::Unknown => c.unknown += 1,
                Kind::Active => c.active += 1,
            }
            keys.push(u64::from(rank(&state)) << 32 | u64::from(group_pos[plan.group_of(i)]));
        }
        plan.counts = c;
        let mut order: Vec<u32> = (0..next).collect();
        order.sort_unstable_by(|&a, &b| {
            keys[a as usize].cmp(&keys[b as usize]).then_with(|| {
                plan.target(a)
                    .1
                    .user_label()
                    .cmp(plan.target(b).1.user_label())
            })
        });
        plan.order = order;
        plan
    }

    /// The group of target number `i`.
    fn group_of(&self, i: u32) -> usize {
        self.starts.partition_point(|&s| s <= i).saturating_sub(1)
    }

    /// Target number `i` and its product.
    fn target(&self, i: u32) -> (&Product, &Arc<Target>) {
        let g = self.group_of(i);
        let group = &self.table.groups[g];
        let local = (i - self.starts[g]) as usize;
        let target = group
            .targets
            .get(local)
            .unwrap_or_else(|| &self.discovered[g][local - group.targets.len()]);
        (&group.product, target)
    }
}

/// "3 min ago" for a moment `at` seen at `now` (Unix seconds).
pub(crate) fn ago(now: f64, at: f64) -> String {
    let secs = (now - at).max(0.0) as u64;
    match secs {
        0 => "just now".to_owned(),
        1..60 => format!("{secs} s ago"),
        60..3600 => format!("{} min ago", secs / 60),
        3600..86_400 => format!("{} h ago", secs / 3600),
        _ => format!("{} d ago", secs / 86_400),
    }
}

/// A `<time>`: relative text, the exact time on hover and for sorting.
fn time_html(out: &mut String, now: f64, at: f64) {
    let exact = rfc3339(at);
    let _ = write!(
        out,
        "<time datetime=\"{exact}\" title=\"{}\">{}</time>",
        exact.replacen('T', " ", 1).replace('Z', " UTC"),
        ago(now, at)
    );
}

/// A time cell, sortable by the Unix time.
fn time_cell(out: &mut String, label: &str, now: f64, at: Option<f64>) {
    match at {
        Some(at) => {
            let _ = write!(
                out,
                "<td data-label=\"{label}\" data-sort=\"{}\">",
                at as i64
            );
            time_html(out, now, at);
            out.push_str("</td>");
        }
        None => {
            let _ = write!(out, "<td data-label=\"{label}\" data-sort=\"0\">never</td>");
        }
    }
}

/// The error cell: the error of the latest check when it produced one,
/// else the last error, marked as past.
fn error_cell(out: &mut String, now: f64, state: &TargetState) {
    out.push_str("<td class=\"err\" data-label=\"Last error\">");
    if let Some(e) = &state.last_error {
        let current = state.last_check_at == Some(e.at);
        if !current {
            out.push_str("<span class=\"past\">past, ");
            time_html(out, now, e.at);
            out.push_str(": ");
        }
        let _ = write!(out, "<code>{}</code>", escape_html(&e.code.label()));
        if !e.reason.label().is_empty() {
            let _ = write!(out, " ({})", e.reason.label());
        }
        let _ = write!(out, ": {}", escape_html(&e.detail));
        if !current {
            out.push_str("</span>");
        }
    }
    out.push_str("</td>");
}

/// One `<tr>`.
fn html_row(out: &mut String, now: f64, product: &Product, target: &Target) {
    let state = target.state().clone();
    let kind = Kind::of(&state);
    let failing = failing(&state);
    let product_id = escape_html(&product.product_id);
    let sku_id = escape_html(&product.sku_id);
    let _ = write!(
        out,
        "<tr class=\"{}{}\"><td data-label=\"Product\">{}<span class=\"ids\"> <code>{product_id}</code> \
<code>{sku_id}</code></span></td><td data-label=\"Product ID\"><code>{product_id}</code></td>\
<td data-label=\"SKU\"><code>{sku_id}</code></td><td class=\"user\" data-label=\"User\">{}</td>\
<td data-label=\"State\" data-sort=\"{}\"><span class=\"st {}\">{}</span>{}</td>",
        kind.class(),
        if failing { " failing" } else { "" },
        escape_html(product.name.as_deref().unwrap_or("")),
        escape_html(target.user_label()),
        rank(&state),
        kind.class(),
        kind.word(),
        if failing {
            " <span class=\"fail\">failing</span>"
        } else {
            ""
        },
    );
    time_cell(out, "Last check", now, state.last_check_at);
    time_cell(out, "Last success", now, state.last_success_at);
    let _ = write!(
        out,
        "<td data-label=\"Seats lost\">{}</td>",
        state.lost_total
    );
    error_cell(out, now, &state);
    out.push_str("</tr>");
}

/// One target in `?format=json`.
#[derive(Debug, Serialize)]
struct JsonRow<'a> {
    product_id: &'a str,
    sku_id: &'a str,
    product_name: Option<&'a str>,
    user: &'a str,
    /// `active`, `inactive` or `unknown`, as `msfb_seats` counts them.
    state: &'static str,
    /// What the page shows: `active`, `lost`, `no seat` or `unknown`.
    status: &'static str,
    /// Whether the latest check failed.
    failing: bool,
    last_check: Option<String>,
    last_success: Option<String>,
    lost_total: u64,
    last_error: Option<JsonError>,
}

/// The latest error of a target.
#[derive(Debug, Serialize)]
struct JsonError {
    at: String,
    code: String,
    reason: &'static str,
    detail: String,
    /// Whether the latest check produced it (else it is past).
    current: bool,
}

fn json_row(out: &mut Vec<u8>, product: &Product, target: &Target) {
    let state = target.state().clone();
    let kind = Kind::of(&state);
    let row = JsonRow {
        product_id: &product.product_id,
        sku_id: &product.sku_id,
        product_name: product.name.as_deref(),
        user: target.user_label(),
        state: kind.seats_state(),
        status: kind.word(),
        failing: failing(&state),
        last_check: state.last_check_at.map(rfc3339),
        last_success: state.last_success_at.map(rfc3339),
        lost_total: state.lost_total,
        last_error: state.last_error.as_ref().map(|e| JsonError {
            at: rfc3339(e.at),
            code: e.code.label().into_owned(),
            reason: e.reason.label(),
            detail: e.detail.clone(),
            current: state.last_check_at == Some(e.at),
        }),
    };
    // Writing plain data to a Vec cannot fail.
    let _ = serde_json::to_writer(out, &row);
}

/// Where a page is in its writing.
enum Stage {
    Head,
    Rows(usize),
    Tail,
    Done,
}

/// One request's page, written a chunk at a time as the client reads.
struct Page {
    plan: Arc<Plan>,
    json: bool,
    now: f64,
    stage: Stage,
}

impl Page {
    /// The next chunk, or `None` after the last.
    fn next_chunk(&mut self) -> Option<Bytes> {
        let mut out: Vec<u8> = Vec::with_capacity(CHUNK_BYTES + 4096);
        while out.len() < CHUNK_BYTES {
            match self.stage {
                Stage::Head => {
                    out.extend_from_slice(self.head().as_bytes());
                    self.stage = Stage::Rows(0);
                }
                Stage::Rows(i) if i < self.plan.order.len() => {
                    let (product, target) = self.plan.target(self.plan.order[i]);
                    if self.json {
                        if i > 0 {
                            out.push(b',');
                        }
                        json_row(&mut out, product, target);
                    } else {
                        let mut row = String::new();
                        html_row(&mut row, self.now, product, target);
                        out.extend_from_slice(row.as_bytes());
                    }
                    self.stage = Stage::Rows(i + 1);
                }
                Stage::Rows(_) => self.stage = Stage::Tail,
                Stage::Tail => {
                    out.extend_from_slice(self.tail().as_bytes());
                    self.stage = Stage::Done;
                }
                Stage::Done => break,
            }
        }
        (!out.is_empty()).then(|| Bytes::from(out))
    }

    fn head(&self) -> String {
        let generated = rfc3339(self.now);
        if self.json {
            return format!("{{\"generated_at\":\"{generated}\",\"targets\":[");
        }
        let c = self.plan.counts;
        format!(
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>msfb_seat_exporter status</title><style>{STYLE}</style></head><body><h1>Seat status</h1>\
<p class=\"meta\"><a href=\"/\">Home</a> · <a href=\"/status?format=json\">JSON</a> · generated \
<time datetime=\"{generated}\" title=\"{exact}\">{generated_at}</time> · refreshes every 30 s</p>\
<p class=\"counts\">{total} targets: <b>{lost}</b> lost · <b>{failing}</b> failing · {no_seat} no seat · \
{unknown} unknown · {active} active</p>\
{LEGEND}<p><input id=\"filter\" type=\"search\" placeholder=\"Filter rows…\" aria-label=\"Filter rows\" autofocus></p>\
<table id=\"targets\"><thead><tr><th tabindex=\"0\">Product</th><th tabindex=\"0\">Product ID</th>\
<th tabindex=\"0\">SKU</th><th tabindex=\"0\">User</th><th tabindex=\"0\">State</th>\
<th tabindex=\"0\">Last check</th><th tabindex=\"0\">Last success</th><th tabindex=\"0\">Seats lost</th>\
<th tabindex=\"0\">Last error</th></tr></thead><tbody>",
            exact = generated.replacen('T', " ", 1).replace('Z', " UTC"),
            generated_at = generated.replacen('T', " ", 1).replace('Z', " UTC"),
            total = c.total,
            lost = c.lost,
            failing = c.failing,
            no_seat = c.no_seat,
            unknown = c.unknown,
            active = c.active,
        )
    }

    fn tail(&self) -> String {
        if self.json {
            return "]}".to_owned();
        }
        format!("</tbody></table><script>{STATUS_SCRIPT}</script></body></html>")
    }
}

/// What each state and mark means, above the table.
const LEGEND: &str = "<ul class=\"legend\" aria-label=\"States\">\
<li><span class=\"st active\">active</span> holds a seat</li>\
<li><span class=\"st lost\">lost</span> held a seat here, none now</li>\
<li><span class=\"st noseat\">no seat</span> has had none while watched here</li>\
<li><span class=\"st unknown\">unknown</span> no conclusive answer yet</li>\
<li><span class=\"fail\">failing</span> the latest check failed; the state is the last answer</li>\
<li><span class=\"past\">past</span> an error of an earlier check</li></ul>";

/// How long an order is reused by the requests that follow it.
const PLAN_REUSE: std::time::Duration = std::time::Duration::from_secs(2);

/// The latest order, shared by the requests of the next [`PLAN_REUSE`]:
/// ordering 100k targets costs a sort, and many readers at once (a team
/// opening the page, or 40 clients that stall) need not pay it 40 times
/// nor hold 40 copies. Rows are read as they are written, so a reused order
/// never shows an old state, at most a row out of its place for a moment.
/// One per router.
#[derive(Default)]
pub struct PlanCache {
    /// Held while an order is made, so that requests arriving meanwhile
    /// wait for it instead of making their own.
    latest: tokio::sync::Mutex<Option<(tokio::time::Instant, Arc<Plan>)>>,
}

impl PlanCache {
    /// The order of `table`: the latest one if it is recent and of this
    /// table, else a new one. Made in a task of its own, so that a request
    /// that gives up meanwhile (the request timeout, on a machine too busy
    /// to order 100k targets in time) does not throw the order away: the
    /// next request finds it instead of starting over.
    async fn plan(
        self: &Arc<Self>,
        table: Arc<TargetTable>,
    ) -> Result<Arc<Plan>, tokio::task::JoinError> {
        let cache = Arc::clone(self);
        tokio::spawn(async move { cache.latest_or_new(table).await }).await?
    }

    async fn latest_or_new(
        &self,
        table: Arc<TargetTable>,
    ) -> Result<Arc<Plan>, tokio::task::JoinError> {
        let mut latest = self.latest.lock().await;
        if let Some((at, plan)) = &*latest
            && at.elapsed() < PLAN_REUSE
            && Arc::ptr_eq(&plan.table, &table)
        {
            return Ok(Arc::clone(plan));
        }
        // Ordering 100k targets takes a while; keep it off the async workers.
        let plan = Arc::new(tokio::task::spawn_blocking(move || Plan::new(table)).await?);
        *latest = Some((tokio::time::Instant::now(), Arc::clone(&plan)));
        Ok(plan)
    }
}

/// `GET /status`.
pub async fn status(
    State(site): State<SharedSite>,
    Query(q): Query<StatusQuery>,
    cache: Arc<PlanCache>,
) -> Response {
    let table = Arc::clone(&site.generation().table);
    let now = crate::poller::unix_now();
    let plan = match cache.plan(table).await {
        Ok(plan) => plan,
        Err(e) => {
            tracing::error!(error = %e, "ordering the status page failed");
            return (
                http::StatusCode::INTERNAL_SERVER_ERROR,
                "rendering the status page failed\n",
            )
                .into_response();
        }
    };
    let json = q.format.as_deref() == Some("json");
    let page = Page {
        plan,
        json,
        now,
        stage: Stage::Head,
    };
    // Fused: the body may be polled once more after its end.
    let body = futures::stream::unfold(page, |mut page| async move {
        page.next_chunk()
            .map(|chunk| (Ok::<_, Infallible>(chunk), page))
    })
    .fuse();
    let body = axum::body::Body::from_stream(body);
    if json {
        return ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    }
    super::pages::html_response(body, Some(STATUS_SCRIPT))
}

/// Filter, sort and auto-refresh. The filter starts from `?filter=` when
/// the address has one (a link to a filtered page), else from the last
/// one typed; it and the sort column survive the refresh through
/// `sessionStorage`. Headers sort on click or Enter and show the direction
/// through `aria-sort`. A cell's `data-sort` (times, states) is its sort
/// key; numbers sort as numbers, everything else as text.
pub const STATUS_SCRIPT: &str = r#"
(function () {
  var table = document.getElementById('targets');
  var input = document.getElementById('filter');
  var body = table.tBodies[0];
  var heads = table.tHead.rows[0].cells;
  function store(k, v) { try { sessionStorage.setItem(k, v); } catch (e) {} }
  function load(k) { try { return sessionStorage.getItem(k) || ''; } catch (e) { return ''; } }
  function fromAddress() {
    var m = /[?&]filter=([^&]*)/.exec(location.search || '');
    if (!m) { return null; }
    try { return decodeURIComponent(m[1].replace(/\+/g, ' ')); } catch (e) { return null; }
  }
  function key(cell) {
    return (cell.dataset && cell.dataset.sort !== undefined) ? cell.dataset.sort : cell.textContent;
  }
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
      var x = key(a.cells[col]), y = key(b.cells[col]);
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
  var linked = fromAddress();
  input.value = linked !== null ? linked : load('msfb-filter');
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
    fn times_read_as_how_long_ago() {
        assert_eq!(ago(100.0, 100.0), "just now");
        assert_eq!(ago(100.0, 101.0), "just now", "a clock step back");
        assert_eq!(ago(100.0, 55.0), "45 s ago");
        assert_eq!(ago(1000.0, 800.0), "3 min ago");
        assert_eq!(ago(10_000.0, 2_000.0), "2 h ago");
        assert_eq!(ago(500_000.0, 0.0), "5 d ago");
    }

    #[test]
    fn a_loss_is_told_apart_from_never_having_a_seat() {
        use crate::targets::Outcome;
        let answer = |active| Outcome::Conclusive {
            active,
            assigned_at: None,
            negative: None,
        };
        let mut never = TargetState::default();
        assert_eq!(Kind::of(&never), Kind::Unknown);
        never.record(&answer(false), 1.0);
        assert_eq!(Kind::of(&never), Kind::NoSeat);
        let mut lost = TargetState::default();
        lost.record(&answer(true), 1.0);
        assert_eq!(Kind::of(&lost), Kind::Active);
        lost.record(&answer(false), 2.0);
        assert_eq!(Kind::of(&lost), Kind::Lost);
        assert_eq!(Kind::Lost.seats_state(), "inactive");
        assert!(rank(&lost) < rank(&never));
    }
}
