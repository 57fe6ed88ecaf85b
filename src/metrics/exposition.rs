//! Writes the per-target and per-product families in the Prometheus text
//! format 0.0.4, straight from the target table (see the module header of
//! `metrics` for why not through `prometheus::Metric` objects).
//!
//! A scrape first copies what it shows of every target into a compact
//! [`Row`] under that target's lock, once (one lock per target, not one per
//! family, and every family of the scrape agrees with `msfb_seats`). It then
//! writes the families one after another, each by its own pass over the
//! rows, so that every family's samples are contiguous as the format
//! requires. A family's `# HELP`/`# TYPE` lines are written with its first
//! sample, so a family without samples (say, no errors yet) is absent rather
//! than empty.
//!
//! The text goes out through [`Out`] in chunks of about [`CHUNK_BYTES`] as
//! it is written, so a 100k-target scrape (about 55 MB) never exists whole in
//! memory: the web layer streams each chunk to the client (gzipped on the
//! way when asked). Numbers are written with `itoa`/`ryu`, label values are
//! checked for characters to escape once per scrape, not once per line —
//! both showed up first in a profile of the 100k-target render.
//!
//! Discovered targets come and go between cycles, so one snapshot of each
//! group's targets is taken per scrape and every family is written from it:
//! a target never appears in one family and not the next.

use super::CACHED;
use crate::config::Mode;
use crate::targets::{
    ErrorCount, InventoryView, ProductGroup, ProductStatus, Seat, TargetTable, escape_label_value,
};

/// One metric family's name, type and help.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
}

const SEAT_ACTIVE: Family = Family {
    name: "msfb_seat_active",
    kind: "gauge",
    help: "Whether the user holds an active seat for the product (1) or not (0); absent until the first conclusive check.",
};
const CHECK_SUCCESS: Family = Family {
    name: "msfb_seat_check_success",
    kind: "gauge",
    help: "Whether the latest check of the seat was conclusive (1) or failed (0).",
};
const LAST_SUCCESS: Family = Family {
    name: "msfb_seat_last_success_timestamp_seconds",
    kind: "gauge",
    help: "Unix time of the latest conclusive check of the seat.",
};
const ASSIGNED: Family = Family {
    name: "msfb_seat_assigned_timestamp_seconds",
    kind: "gauge",
    help: "dateAssigned of the active seat as Unix time, when the Store gives it.",
};
const LOST: Family = Family {
    name: "msfb_seat_lost_total",
    kind: "counter",
    help: "Transitions of msfb_seat_active from 1 (active) to 0 (not active).",
};
const ERRORS: Family = Family {
    name: "msfb_seat_check_errors_total",
    kind: "counter",
    help: "Failed or negative checks, by HTTP status or failure class (code) and 404 item type or 409 reason (reason).",
};
const SEATS: Family = Family {
    name: "msfb_seats",
    kind: "gauge",
    help: "Configured targets by seat state (unknown: no conclusive check yet).",
};
const PRODUCT_INFO: Family = Family {
    name: "msfb_product_info",
    kind: "gauge",
    help: "Products from the configuration, with their names; the value is always 1.",
};
const LISTING_SUCCESS: Family = Family {
    name: "msfb_seat_listing_success",
    kind: "gauge",
    help: "List mode: whether the latest Get seats listing of the product was complete (1) or not (0); an incomplete listing changes no seat.",
};
const LISTING_LAST_SUCCESS: Family = Family {
    name: "msfb_seat_listing_last_success_timestamp_seconds",
    kind: "gauge",
    help: "List mode: Unix time of the latest complete Get seats listing of the product.",
};
const LISTING_PAGES: Family = Family {
    name: "msfb_seat_listing_pages",
    kind: "gauge",
    help: "List mode: pages in the latest complete Get seats listing (compare with max_pages).",
};
const LISTING_ERRORS: Family = Family {
    name: "msfb_seat_listing_errors_total",
    kind: "counter",
    help: "List mode: incomplete Get seats listings of the product, by HTTP status or failure class (code).",
};
const INVENTORY_CAPACITY: Family = Family {
    name: "msfb_inventory_seat_capacity",
    kind: "gauge",
    help: "Seats purchased for the product (Get Inventory seatCapacity).",
};
const INVENTORY_AVAILABLE: Family = Family {
    name: "msfb_inventory_available_seats",
    kind: "gauge",
    help: "Seats of the product not yet assigned (Get Inventory availableSeats).",
};
const INVENTORY_INFO: Family = Family {
    name: "msfb_inventory_info",
    kind: "gauge",
    help: "The product's Get Inventory entry (status \"missing\": not in the inventory); the value is always 1.",
};

/// The size at which [`Out`] hands a chunk on: large enough that the cost
/// per chunk (a channel send, a gzip flush, a write) is noise, small enough
/// that a scrape in flight holds little.
pub const CHUNK_BYTES: usize = 128 * 1024;

/// Room left in a chunk for the line that crosses [`CHUNK_BYTES`], so the
/// buffer does not reallocate on its last line.
const LINE_SLACK: usize = 4096;

/// Where the exposition text goes: a buffer that is handed to `emit`
/// whenever it reaches the chunk size. `emit` returns `false` when nobody
/// wants more (the scraper went away); writing then stops early.
pub struct Out<'a> {
    buf: String,
    chunk: usize,
    emit: &'a mut dyn FnMut(String) -> bool,
    closed: bool,
}

impl<'a> Out<'a> {
    /// Chunks of about `chunk` bytes go to `emit`; `usize::MAX` collects
    /// everything into one final chunk.
    pub fn new(chunk: usize, emit: &'a mut dyn FnMut(String) -> bool) -> Out<'a> {
        let capacity = chunk
            .saturating_add(LINE_SLACK)
            .min(CHUNK_BYTES + LINE_SLACK);
        Out {
            buf: String::with_capacity(capacity),
            chunk,
            emit,
            closed: false,
        }
    }

    /// The buffer, to append text to. Call [`Out::line_done`] after each
    /// line so that full chunks are handed on.
    pub fn text(&mut self) -> &mut String {
        &mut self.buf
    }

    /// Hands the buffer on if it has reached the chunk size.
    #[inline]
    pub fn line_done(&mut self) {
        if self.buf.len() >= self.chunk {
            self.flush();
        }
    }

    /// Hands on whatever is buffered.
    pub fn flush(&mut self) {
        if self.buf.is_empty() || self.closed {
            self.buf.clear();
            return;
        }
        let next = String::with_capacity(self.chunk.min(CHUNK_BYTES) + LINE_SLACK);
        let full = std::mem::replace(&mut self.buf, next);
        if !(self.emit)(full) {
            self.closed = true;
        }
    }

    /// Whether the receiver has gone away (the rest need not be written).
    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

/// Writes one family: its header before the first sample, then sample
/// lines. A line is started with [`Writer::begin`] (which writes `name{`),
/// given its labels, and finished by one of the `value` methods.
struct Writer<'o, 'a> {
    out: &'o mut Out<'a>,
    family: &'static Family,
    started: bool,
}

impl<'o, 'a> Writer<'o, 'a> {
    fn new(out: &'o mut Out<'a>, family: &'static Family) -> Self {
        Writer {
            out,
            family,
            started: false,
        }
    }

    /// Starts a sample line and returns the buffer for its labels.
    #[inline]
    fn begin(&mut self) -> &mut String {
        if !self.started {
            self.started = true;
            let f = self.family;
            let buf = self.out.text();
            for part in ["# HELP ", f.name, " ", f.help] {
                buf.push_str(part);
            }
            if f.name != PRODUCT_INFO.name {
                buf.push(' ');
                buf.push_str(CACHED);
            }
            for part in ["\n# TYPE ", f.name, " ", f.kind, "\n"] {
                buf.push_str(part);
            }
        }
        let buf = self.out.text();
        buf.push_str(self.family.name);
        buf.push('{');
        buf
    }

    /// Ends the line with a float value.
    #[inline]
    fn value(&mut self, v: f64) {
        let buf = self.out.text();
        buf.push_str("} ");
        write_float(buf, v);
        buf.push('\n');
        self.out.line_done();
    }

    /// Ends the line with an integer value.
    #[inline]
    fn count(&mut self, n: u64) {
        let buf = self.out.text();
        buf.push_str("} ");
        buf.push_str(itoa::Buffer::new().format(n));
        buf.push('\n');
        self.out.line_done();
    }
}

/// Writes a sample value as Prometheus reads it: integers without a
/// fraction, others in the shortest form that reads back to the same `f64`.
fn write_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        out.push_str(itoa::Buffer::new().format(v as i64));
    } else {
        out.push_str(ryu::Buffer::new().format_finite(v));
    }
}

/// `product_id="…",sku_id="…"` for a group.
fn product_labels(group: &ProductGroup) -> String {
    let mut s = String::with_capacity(48);
    s.push_str("product_id=\"");
    escape_label_value(&mut s, &group.product.product_id);
    s.push_str("\",sku_id=\"");
    escape_label_value(&mut s, &group.product.sku_id);
    s.push('"');
    s
}

/// What one scrape shows of one target, copied under its lock. Absent
/// timestamps are NaN and the user label lives in its group's `users`
/// string, so a row is 40 bytes and a 100k-target scrape copies about 4 MB
/// plus the labels. Each family's pass then reads rows and labels in order
/// instead of chasing a pointer to every target (cache misses on the
/// targets were half the time of a 100k-target render).
#[derive(Clone, Copy)]
struct Row {
    /// `msfb_seat_last_success_timestamp_seconds`.
    last_success_at: f64,
    /// `msfb_seat_assigned_timestamp_seconds` (active seats only).
    assigned_at: f64,
    /// `msfb_seat_lost_total`.
    lost_total: u64,
    /// The escaped user label: `users[user_start..user_end]` of the
    /// snapshot with [`Row::OWN_LABEL`], else of the group's `user_labels`.
    user_start: u32,
    user_end: u32,
    /// This target's error series: `errors[first..first + len]` of the
    /// scrape's shared error list (no allocation per target).
    first_error: u32,
    error_count: u16,
    /// [`Row::SEAT_KNOWN`] and friends.
    flags: u8,
}

impl Row {
    const SEAT_KNOWN: u8 = 1;
    const SEAT_ACTIVE: u8 = 2;
    const CHECKED: u8 = 4;
    const CHECK_OK: u8 = 8;
    /// A discovered target: its label was copied into the snapshot.
    const OWN_LABEL: u8 = 16;

    fn has(self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// One group's labels and rows, fixed for one scrape.
struct Snapshot<'a> {
    group: &'a ProductGroup,
    /// `product_id="…",sku_id="…"`.
    labels: String,
    /// The escaped user labels of discovered targets, back to back
    /// (configured targets' labels are the group's `user_labels`).
    users: String,
    rows: Vec<Row>,
}

impl Snapshot<'_> {
    fn user(&self, row: Row) -> &str {
        let arena = if row.has(Row::OWN_LABEL) {
            self.users.as_str()
        } else {
            self.group.user_labels.text()
        };
        arena
            .get(row.user_start as usize..row.user_end as usize)
            .unwrap_or("")
    }
}

/// Copies every target's state, once, under its lock.
fn snapshot<'a>(table: &'a TargetTable, errors: &mut Vec<ErrorCount>) -> Vec<Snapshot<'a>> {
    table
        .groups
        .iter()
        .map(|group| {
            // Configured targets are read in place; discovered ones are a
            // snapshot, since the set changes under its own lock.
            let discovered = group
                .discovery
                .as_ref()
                .map(|d| d.snapshot())
                .unwrap_or_default();
            let count = group.targets.len() + discovered.len();
            let mut users = String::new();
            let mut rows = Vec::with_capacity(count);
            let configured = group.targets.iter().map(|t| (t, None));
            let found = discovered.iter().map(|t| (t, Some(t.user_label())));
            for (i, (t, own)) in configured.chain(found).enumerate() {
                let mut flags = 0;
                let (user_start, user_end) = match own {
                    None => group.user_labels.span(i),
                    Some(label) => {
                        flags |= Row::OWN_LABEL;
                        let start = offset(&users);
                        escape_label_value(&mut users, label);
                        (start, offset(&users))
                    }
                };
                let s = t.state();
                let mut assigned_at = f64::NAN;
                match s.seat {
                    Some(Seat {
                        active: true,
                        assigned_at: a,
                    }) => {
                        flags |= Row::SEAT_KNOWN | Row::SEAT_ACTIVE;
                        assigned_at = a.unwrap_or(f64::NAN);
                    }
                    Some(Seat { active: false, .. }) => flags |= Row::SEAT_KNOWN,
                    None => {}
                }
                if s.last_check_at.is_some() {
                    flags |= Row::CHECKED;
                    if s.last_check_ok {
                        flags |= Row::CHECK_OK;
                    }
                }
                // At most one series per (code, reason): a handful.
                let first_error = u32::try_from(errors.len()).unwrap_or(u32::MAX);
                let error_count = u16::try_from(s.errors.len()).unwrap_or(u16::MAX);
                errors.extend(s.errors.iter().take(usize::from(error_count)));
                rows.push(Row {
                    last_success_at: s.last_success_at.unwrap_or(f64::NAN),
                    assigned_at,
                    lost_total: s.lost_total,
                    user_start,
                    user_end,
                    first_error,
                    error_count,
                    flags,
                });
            }
            Snapshot {
                group,
                labels: product_labels(group),
                users,
                rows,
            }
        })
        .collect()
}

/// A position in a group's label string (which stays far below 4 GiB: a
/// target's label is bounded by the config file size limit).
fn offset(s: &str) -> u32 {
    u32::try_from(s.len()).unwrap_or(u32::MAX)
}

/// The value a per-target family shows for a row, if any.
enum Value {
    Float(f64),
    Count(u64),
}

/// Writes one per-target family: `sample` returns the value (or `None` for
/// no sample) of a row.
fn per_target(
    groups: &[Snapshot<'_>],
    out: &mut Out<'_>,
    family: &'static Family,
    sample: impl Fn(Row) -> Option<Value>,
) {
    let mut w = Writer::new(out, family);
    for g in groups {
        for row in &g.rows {
            let Some(value) = sample(*row) else {
                continue;
            };
            user_labels(w.begin(), g, *row);
            match value {
                Value::Float(v) => w.value(v),
                Value::Count(n) => w.count(n),
            }
        }
        if w.out.is_closed() {
            return;
        }
    }
}

/// `product_id="…",sku_id="…",user="…"` of one target.
#[inline]
fn user_labels(buf: &mut String, g: &Snapshot<'_>, row: Row) {
    buf.push_str(&g.labels);
    buf.push_str(",user=\"");
    buf.push_str(g.user(row));
    buf.push('"');
}

/// Appends every table-derived family to `out`.
pub fn render(table: &TargetTable, out: &mut Out<'_>) {
    let mut errors = Vec::new();
    let groups = snapshot(table, &mut errors);
    let flag = |row: Row, f: u8| if row.has(f) { 1.0 } else { 0.0 };
    per_target(&groups, out, &SEAT_ACTIVE, |r| {
        r.has(Row::SEAT_KNOWN)
            .then(|| Value::Float(flag(r, Row::SEAT_ACTIVE)))
    });
    per_target(&groups, out, &CHECK_SUCCESS, |r| {
        r.has(Row::CHECKED)
            .then(|| Value::Float(flag(r, Row::CHECK_OK)))
    });
    per_target(&groups, out, &LAST_SUCCESS, |r| {
        (!r.last_success_at.is_nan()).then_some(Value::Float(r.last_success_at))
    });
    per_target(&groups, out, &ASSIGNED, |r| {
        (!r.assigned_at.is_nan()).then_some(Value::Float(r.assigned_at))
    });
    per_target(&groups, out, &LOST, |r| Some(Value::Count(r.lost_total)));

    let mut w = Writer::new(out, &ERRORS);
    for g in &groups {
        for row in &g.rows {
            let first = row.first_error as usize;
            for e in &errors[first..first + usize::from(row.error_count)] {
                let line = w.begin();
                user_labels(line, g, *row);
                line.push_str(",code=\"");
                line.push_str(&e.code.label());
                line.push_str("\",reason=\"");
                line.push_str(e.reason.label());
                line.push('"');
                w.count(e.count);
            }
        }
    }

    let mut w = Writer::new(out, &SEATS);
    for g in &groups {
        let (mut active, mut inactive, mut unknown) = (0u64, 0u64, 0u64);
        for row in &g.rows {
            match (row.has(Row::SEAT_KNOWN), row.has(Row::SEAT_ACTIVE)) {
                (true, true) => active += 1,
                (true, false) => inactive += 1,
                (false, _) => unknown += 1,
            }
        }
        for (state, n) in [
            ("active", active),
            ("inactive", inactive),
            ("unknown", unknown),
        ] {
            let line = w.begin();
            line.push_str(&g.labels);
            line.push_str(",state=\"");
            line.push_str(state);
            line.push('"');
            w.count(n);
        }
    }

    let mut w = Writer::new(out, &PRODUCT_INFO);
    for g in &groups {
        let line = w.begin();
        line.push_str(&g.labels);
        line.push_str(",name=\"");
        escape_label_value(line, g.group.product.name.as_deref().unwrap_or(""));
        line.push('"');
        w.value(1.0);
    }

    // One copy of each product's status, so the families below agree.
    let statuses: Vec<(&str, ProductStatus, Mode)> = groups
        .iter()
        .map(|g| {
            (
                g.labels.as_str(),
                g.group.state.status().clone(),
                g.group.product.mode,
            )
        })
        .collect();
    render_listing(&statuses, out);
    if table.inventory_enabled {
        render_inventory(&statuses, out);
    }
}

/// A product-level gauge: one sample per product that has a value.
fn per_product(
    statuses: &[(&str, ProductStatus, Mode)],
    out: &mut Out<'_>,
    family: &'static Family,
    sample: impl Fn(&ProductStatus, Mode) -> Option<f64>,
) {
    let mut w = Writer::new(out, family);
    for (labels, status, mode) in statuses {
        if let Some(v) = sample(status, *mode) {
            w.begin().push_str(labels);
            w.value(v);
        }
    }
}

/// The listing health of list-mode products (absent before their first
/// listing, and for per-user products).
fn render_listing(statuses: &[(&str, ProductStatus, Mode)], out: &mut Out<'_>) {
    let list = |mode: Mode| mode == Mode::List;
    per_product(statuses, out, &LISTING_SUCCESS, |s, m| {
        let ok = if s.listing.ok { 1.0 } else { 0.0 };
        s.listing.last_at.filter(|_| list(m)).map(|_| ok)
    });
    per_product(statuses, out, &LISTING_LAST_SUCCESS, |s, m| {
        s.listing.last_success_at.filter(|_| list(m))
    });
    per_product(statuses, out, &LISTING_PAGES, |s, m| {
        s.listing.pages.filter(|_| list(m)).map(f64::from)
    });
    let mut w = Writer::new(out, &LISTING_ERRORS);
    for (labels, status, mode) in statuses {
        if !list(*mode) {
            continue;
        }
        for (code, n) in &status.listing.errors {
            let line = w.begin();
            line.push_str(labels);
            line.push_str(",code=\"");
            line.push_str(&code.label());
            line.push('"');
            w.count(*n);
        }
    }
}

/// The inventory families (absent before the first complete inventory).
fn render_inventory(statuses: &[(&str, ProductStatus, Mode)], out: &mut Out<'_>) {
    let facts = |s: &ProductStatus| match &s.inventory {
        Some(InventoryView::Listed(f)) => Some(f.clone()),
        _ => None,
    };
    per_product(statuses, out, &INVENTORY_CAPACITY, |s, _| {
        facts(s).and_then(|f| f.seat_capacity).map(|n| n as f64)
    });
    per_product(statuses, out, &INVENTORY_AVAILABLE, |s, _| {
        facts(s).and_then(|f| f.available_seats).map(|n| n as f64)
    });
    let mut w = Writer::new(out, &INVENTORY_INFO);
    for (labels, status, _) in statuses {
        let (license, policy, state) = match &status.inventory {
            None => continue,
            Some(InventoryView::Missing) => ("", "", "missing"),
            Some(InventoryView::Listed(f)) => (
                f.license_type.as_str(),
                f.distribution_policy.as_str(),
                f.status.as_str(),
            ),
        };
        let line = w.begin();
        line.push_str(labels);
        for (name, value) in [
            ("license_type", license),
            ("distribution_policy", policy),
            ("status", state),
        ] {
            line.push(',');
            line.push_str(name);
            line.push_str("=\"");
            escape_label_value(line, value);
            line.push('"');
        }
        w.value(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, LoadOptions};
    use crate::targets::{ErrorCode, Outcome, Reason};

    /// A table of one product with `users`; each got one check.
    fn table(users: &[&str]) -> TargetTable {
        let list: Vec<String> = users.iter().map(|u| format!("{u:?}")).collect();
        let text = format!(
            "[auth]\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret_env = \"S\"\n\n\
             [[products]]\nproduct_id = \"P\"\nsku_id = \"0016\"\nusers = [{}]\n",
            list.join(", ")
        );
        let options = LoadOptions {
            env: std::sync::Arc::new(|name| (name == "S").then(|| "secret".into())),
            ..LoadOptions::default()
        };
        let config = config::from_toml(&text, std::path::Path::new("/x/config.toml"), &options)
            .expect("valid config");
        let table = TargetTable::build(&config, None);
        for (i, (_, t)) in table.iter().enumerate() {
            let outcome = if i % 2 == 0 {
                Outcome::Conclusive {
                    active: true,
                    assigned_at: Some(1_714_979_289.5),
                    negative: None,
                }
            } else {
                Outcome::Conclusive {
                    active: false,
                    assigned_at: None,
                    negative: Some((ErrorCode::Status(404), Reason::Seat)),
                }
            };
            t.state().record(&outcome, 1_700_000_000.25);
        }
        table
    }

    fn chunks(table: &TargetTable, size: usize) -> Vec<String> {
        let mut chunks = Vec::new();
        let mut emit = |c: String| {
            chunks.push(c);
            true
        };
        let mut out = Out::new(size, &mut emit);
        render(table, &mut out);
        out.flush();
        chunks
    }

    #[test]
    fn streamed_chunks_add_up_to_the_whole_text() {
        let users: Vec<String> = (0..500).map(|i| format!("u{i}@x.y")).collect();
        let users: Vec<&str> = users.iter().map(String::as_str).collect();
        let t = table(&users);
        let whole = chunks(&t, usize::MAX);
        assert_eq!(whole.len(), 1);
        let small = chunks(&t, 1000);
        assert!(small.len() > 20, "{} chunks", small.len());
        // Every chunk ends at a line end and is at most one line over.
        for c in &small {
            assert!(c.ends_with('\n'));
            assert!(c.len() < 1000 + 300, "{}", c.len());
        }
        assert_eq!(small.concat(), whole[0]);
        assert!(
            whole[0]
                .contains("msfb_seat_active{product_id=\"P\",sku_id=\"0016\",user=\"u0@x.y\"} 1\n")
        );
        assert!(whole[0].contains(
            "msfb_seat_assigned_timestamp_seconds{product_id=\"P\",sku_id=\"0016\",user=\"u0@x.y\"} 1714979289.5\n"
        ));
        assert!(whole[0].contains(
            "msfb_seat_check_errors_total{product_id=\"P\",sku_id=\"0016\",user=\"u1@x.y\",code=\"404\",reason=\"seat\"} 1\n"
        ));
        assert!(
            whole[0]
                .contains("msfb_seats{product_id=\"P\",sku_id=\"0016\",state=\"active\"} 250\n")
        );
    }

    #[test]
    fn rendering_stops_when_the_scraper_goes_away() {
        let users: Vec<String> = (0..500).map(|i| format!("u{i}@x.y")).collect();
        let users: Vec<&str> = users.iter().map(String::as_str).collect();
        let t = table(&users);
        let mut calls = 0;
        let mut emit = |_: String| {
            calls += 1;
            false
        };
        let mut out = Out::new(1000, &mut emit);
        render(&t, &mut out);
        out.flush();
        assert!(out.is_closed());
        drop(out);
        assert_eq!(calls, 1);
    }

    #[test]
    fn user_labels_are_escaped_once_and_stay_in_line() {
        let t = table(&["a\"b\\c@x.y", "plain@x.y"]);
        let text = chunks(&t, usize::MAX).concat();
        assert!(text.contains("user=\"a\\\"b\\\\c@x.y\"} 1\n"), "{text}");
        assert!(text.contains("user=\"plain@x.y\"} 0\n"), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        let mut s = String::new();
        escape_label_value(&mut s, "a\"b\\c\nd");
        assert_eq!(s, "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn floats_are_written_as_prometheus_reads_them() {
        for (v, want) in [
            (1.0, "1"),
            (0.0, "0"),
            (1_700_000_000.5, "1700000000.5"),
            (f64::INFINITY, "+Inf"),
            (f64::NAN, "NaN"),
        ] {
            let mut s = String::new();
            write_float(&mut s, v);
            assert_eq!(s, want);
        }
    }
}
