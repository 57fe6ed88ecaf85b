//! Writes the per-target and per-product families in the Prometheus text
//! format 0.0.4 or in OpenMetrics 1.0.0, straight from the target table (see
//! the module header of `metrics` for why not through `prometheus::Metric`
//! objects).
//!
//! The two formats differ in a handful of places, all decided in [`Writer`]
//! and nowhere else, so every family is written by the same code in both:
//! OpenMetrics names a counter family without its `_total`, an `info` family
//! without its `_info`, adds `# UNIT` where the name ends in a unit,
//! escapes quotes in HELP, gives `_created` to the counter series that
//! appear with their first increment (SPEC §14), and ends with `# EOF`.
//! [`render_families`] writes the exporter's own instruments through the
//! same writer in OpenMetrics (the `prometheus` crate has no OpenMetrics
//! encoder; its text encoder stays in use for the text format).
//!
//! Two profiles (`[metrics] per_target`, SPEC §16): `full` writes every
//! per-target family; `compact` writes per target only what must name the
//! user (`msfb_seat_active`, and the error counters, which exist only for
//! targets that fail) and answers the rest per product from the same rows.
//! The profile is a property of the table, so a reload that switches it
//! switches the next scrape, and the old profile's series are simply not
//! written any more.
//!
//! A scrape first takes a snapshot of every target (`metrics::snapshot`:
//! compact rows copied under each target's lock, once, and shared with
//! the other scrapes in progress), so every family of the scrape agrees
//! with `msfb_seats`. It then
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

use std::sync::Arc;

use super::CACHED;
use super::format::Format;
use super::snapshot::{GroupRows, Row, TableSnapshot};
use crate::config::{Mode, PerTarget};
use crate::targets::{
    ErrorCount, InventoryView, ProductGroup, ProductStatus, TargetTable, escape_label_value,
};

/// One metric family's name (as in the text format: counters end in
/// `_total`), type (`gauge`, `counter`, `histogram`; a gauge named `…_info`
/// is an `info` family in OpenMetrics) and help.
pub struct Family<'f> {
    name: &'f str,
    kind: &'f str,
    help: &'f str,
}

const SEAT_ACTIVE: Family<'static> = Family {
    name: "msfb_seat_active",
    kind: "gauge",
    help: "Whether the user holds an active seat for the product (1) or not (0); absent until the first conclusive check.",
};
const CHECK_SUCCESS: Family<'static> = Family {
    name: "msfb_seat_check_success",
    kind: "gauge",
    help: "Whether the latest check of the seat was conclusive (1) or failed (0).",
};
const LAST_SUCCESS: Family<'static> = Family {
    name: "msfb_seat_last_success_timestamp_seconds",
    kind: "gauge",
    help: "Unix time of the latest conclusive check of the seat.",
};
const ASSIGNED: Family<'static> = Family {
    name: "msfb_seat_assigned_timestamp_seconds",
    kind: "gauge",
    help: "dateAssigned of the active seat as Unix time, when the Store gives it.",
};
const LOST: Family<'static> = Family {
    name: "msfb_seat_lost_total",
    kind: "counter",
    help: "Transitions of msfb_seat_active from 1 (active) to 0 (not active).",
};
const ERRORS: Family<'static> = Family {
    name: "msfb_seat_check_errors_total",
    kind: "counter",
    help: "Failed or negative checks, by HTTP status or failure class (code) and 404 item type or 409 reason (reason).",
};
const CHECKS_FAILING: Family<'static> = Family {
    name: "msfb_seat_checks_failing",
    kind: "gauge",
    help: "Targets of the product whose latest check was inconclusive (compact profile: instead of msfb_seat_check_success per target).",
};
const OLDEST_SUCCESS: Family<'static> = Family {
    name: "msfb_seat_oldest_success_timestamp_seconds",
    kind: "gauge",
    help: "Unix time of the oldest latest conclusive check among the product's targets that had one (compact profile: instead of msfb_seat_last_success_timestamp_seconds per target).",
};
const PRODUCT_LOST: Family<'static> = Family {
    name: "msfb_seat_lost_total",
    kind: "counter",
    help: "Transitions of msfb_seat_active from 1 (active) to 0 (not active) among the product's targets (compact profile: per product, not per target).",
};
const SEATS: Family<'static> = Family {
    name: "msfb_seats",
    kind: "gauge",
    help: "Configured targets by seat state (unknown: no conclusive check yet).",
};
const PRODUCT_INFO: Family<'static> = Family {
    name: "msfb_product_info",
    kind: "gauge",
    help: "Products from the configuration, with their names; the value is always 1.",
};
const LISTING_SUCCESS: Family<'static> = Family {
    name: "msfb_seat_listing_success",
    kind: "gauge",
    help: "List mode: whether the latest Get seats listing of the product was complete (1) or not (0); an incomplete listing changes no seat.",
};
const LISTING_LAST_SUCCESS: Family<'static> = Family {
    name: "msfb_seat_listing_last_success_timestamp_seconds",
    kind: "gauge",
    help: "List mode: Unix time of the latest complete Get seats listing of the product.",
};
const LISTING_PAGES: Family<'static> = Family {
    name: "msfb_seat_listing_pages",
    kind: "gauge",
    help: "List mode: pages in the latest complete Get seats listing (compare with max_pages).",
};
const LISTING_ERRORS: Family<'static> = Family {
    name: "msfb_seat_listing_errors_total",
    kind: "counter",
    help: "List mode: incomplete Get seats listings of the product, by HTTP status or failure class (code).",
};
const INVENTORY_CAPACITY: Family<'static> = Family {
    name: "msfb_inventory_seat_capacity",
    kind: "gauge",
    help: "Seats purchased for the product (Get Inventory seatCapacity).",
};
const INVENTORY_AVAILABLE: Family<'static> = Family {
    name: "msfb_inventory_available_seats",
    kind: "gauge",
    help: "Seats of the product not yet assigned (Get Inventory availableSeats).",
};
const INVENTORY_INFO: Family<'static> = Family {
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

/// Where the exposition text goes, and in which [`Format`]: a buffer that is
/// handed to `emit` whenever it reaches the chunk size. `emit` returns
/// `false` when nobody wants more (the scraper went away); writing then
/// stops early.
pub struct Out<'a> {
    buf: String,
    chunk: usize,
    format: Format,
    emit: &'a mut dyn FnMut(String) -> bool,
    closed: bool,
}

impl<'a> Out<'a> {
    /// Chunks of about `chunk` bytes in `format` go to `emit`; `usize::MAX`
    /// collects everything into one final chunk.
    pub fn new(chunk: usize, format: Format, emit: &'a mut dyn FnMut(String) -> bool) -> Out<'a> {
        let capacity = chunk
            .saturating_add(LINE_SLACK)
            .min(CHUNK_BYTES + LINE_SLACK);
        Out {
            buf: String::with_capacity(capacity),
            chunk,
            format,
            emit,
            closed: false,
        }
    }

    /// The format being written.
    pub fn format(&self) -> Format {
        self.format
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

    /// Ends the exposition (OpenMetrics: `# EOF`) and hands on the rest.
    pub fn finish(&mut self) {
        if self.format == Format::OpenMetrics {
            self.buf.push_str("# EOF\n");
        }
        self.flush();
    }

    /// Whether the receiver has gone away (the rest need not be written).
    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

/// The unit OpenMetrics names for a family whose name ends in one.
fn unit_of(family: &str) -> Option<&'static str> {
    ["seconds", "bytes"].into_iter().find(|unit| {
        family
            .strip_suffix(unit)
            .is_some_and(|rest| rest.ends_with('_'))
    })
}

/// Writes one family: its header before the first sample, then sample
/// lines. A line is started with [`Writer::begin`] (which writes `name{`),
/// given its labels, and finished by one of the `value` methods.
pub struct Writer<'o, 'a, 'f> {
    out: &'o mut Out<'a>,
    family: &'f Family<'f>,
    /// Whether HELP says that values are cached from the poll.
    cached: bool,
    started: bool,
    /// Where the current line's labels start in the buffer.
    labels_at: usize,
}

impl<'o, 'a, 'f> Writer<'o, 'a, 'f> {
    /// A writer for a family that comes from the target table.
    fn new(out: &'o mut Out<'a>, family: &'f Family<'f>) -> Self {
        let cached = family.name != PRODUCT_INFO.name;
        Writer {
            out,
            family,
            cached,
            started: false,
            labels_at: 0,
        }
    }

    /// The family name and type as `format` has them.
    fn openmetrics_name(&self) -> (&'f str, &'f str) {
        let f = self.family;
        match f.kind {
            "counter" => (f.name.strip_suffix("_total").unwrap_or(f.name), "counter"),
            "gauge" if f.name.ends_with("_info") => {
                (f.name.strip_suffix("_info").unwrap_or(f.name), "info")
            }
            kind => (f.name, kind),
        }
    }

    fn header(&mut self) {
        let f = self.family;
        let format = self.out.format();
        let (name, kind) = match format {
            Format::Text => (f.name, f.kind),
            Format::OpenMetrics => self.openmetrics_name(),
        };
        let cached = self.cached;
        let buf = self.out.text();
        for part in ["# HELP ", name, " "] {
            buf.push_str(part);
        }
        match format {
            Format::Text => buf.push_str(f.help),
            // OpenMetrics escapes quotes in HELP too.
            Format::OpenMetrics => escape_label_value(buf, f.help),
        }
        if cached {
            buf.push(' ');
            buf.push_str(CACHED);
        }
        for part in ["\n# TYPE ", name, " ", kind, "\n"] {
            buf.push_str(part);
        }
        if format == Format::OpenMetrics
            && kind != "info"
            && let Some(unit) = unit_of(name)
        {
            for part in ["# UNIT ", name, " ", unit, "\n"] {
                buf.push_str(part);
            }
        }
    }

    /// Starts a sample line and returns the buffer for its labels.
    #[inline]
    fn begin(&mut self) -> &mut String {
        self.begin_named(self.family.name, "")
    }

    /// Starts a line of sample `name` + `suffix` (a histogram's `_bucket`…).
    fn begin_named(&mut self, name: &str, suffix: &str) -> &mut String {
        if !self.started {
            self.started = true;
            self.header();
        }
        let buf = self.out.text();
        buf.push_str(name);
        buf.push_str(suffix);
        buf.push('{');
        self.labels_at = buf.len();
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

    /// Ends a counter's line with its value and, in OpenMetrics, adds its
    /// `_created` line (Unix seconds of the series' first increment): for
    /// series that appear with that increment, so Prometheus can see it.
    fn count_created(&mut self, n: u64, created: f64) {
        self.sample_created(Value::Count(n), Some(created));
    }

    /// Ends the line with `value`, then adds a `_created` line when there
    /// is a creation time and the format has them.
    fn sample_created(&mut self, value: Value, created: Option<f64>) {
        let created = created.filter(|c| !c.is_nan() && self.out.format() == Format::OpenMetrics);
        let Some(created) = created else {
            return match value {
                Value::Float(v) => self.value(v),
                Value::Count(n) => self.count(n),
            };
        };
        let base = self.openmetrics_name().0;
        let labels_at = self.labels_at;
        let buf = self.out.text();
        buf.push_str("} ");
        match value {
            Value::Float(v) => write_float(buf, v),
            Value::Count(n) => buf.push_str(itoa::Buffer::new().format(n)),
        }
        buf.push('\n');
        buf.push_str(base);
        buf.push_str("_created{");
        let labels_end = labels_at + label_len(&buf[labels_at..]);
        buf.extend_from_within(labels_at..labels_end);
        buf.push_str("} ");
        write_float(buf, created);
        buf.push('\n');
        self.out.line_done();
    }
}

/// Length of the label text at the start of `line` (up to its closing `}`;
/// label values are escaped, so a `}` inside quotes is skipped).
fn label_len(line: &str) -> usize {
    let mut quoted = false;
    let mut escaped = false;
    for (i, b) in line.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'"' => quoted = !quoted,
            b'}' if !quoted => return i,
            _ => {}
        }
    }
    line.len()
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

/// One group of a shared [`TableSnapshot`], as the family writers read it.
struct Snapshot<'a> {
    group: &'a ProductGroup,
    /// `product_id="…",sku_id="…"`.
    labels: &'a str,
    rows: &'a [Row],
    data: &'a GroupRows,
}

impl Snapshot<'_> {
    fn user(&self, row: Row) -> &str {
        self.data.user(self.group, row)
    }
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
    family: &'static Family<'static>,
    sample: impl Fn(Row) -> Option<Value>,
) {
    let mut w = Writer::new(out, family);
    for g in groups {
        for row in g.rows {
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
    buf.push_str(g.labels);
    buf.push_str(",user=\"");
    buf.push_str(g.user(row));
    buf.push('"');
}

/// Appends every table-derived family to `out` from a fresh snapshot of
/// `table`, in the table's profile (`[metrics] per_target`).
pub fn render(table: &Arc<TargetTable>, out: &mut Out<'_>) {
    render_snapshot(&TableSnapshot::take(table), out);
}

/// Appends every table-derived family to `out` from `snapshot` (which
/// other scrapes may share: see `metrics::snapshot`), in its table's
/// profile.
pub fn render_snapshot(snapshot: &TableSnapshot, out: &mut Out<'_>) {
    let table = snapshot.table();
    let errors = snapshot.errors();
    let groups: Vec<Snapshot<'_>> = snapshot
        .groups()
        .map(|(group, data)| Snapshot {
            group,
            labels: &data.labels,
            rows: &data.rows,
            data,
        })
        .collect();
    let flag = |row: Row, f: u8| if row.has(f) { 1.0 } else { 0.0 };
    per_target(&groups, out, &SEAT_ACTIVE, |r| {
        r.has(Row::SEAT_KNOWN)
            .then(|| Value::Float(flag(r, Row::SEAT_ACTIVE)))
    });
    if table.per_target == PerTarget::Full {
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
    }
    render_errors(&groups, errors, out);
    render_seats(&groups, out);

    // Each product's status was copied with its rows, so the families
    // below agree with the ones above.
    let statuses: Vec<(&str, &ProductStatus, Mode)> = groups
        .iter()
        .map(|g| (g.labels, &g.data.status, g.group.product.mode))
        .collect();
    if table.per_target == PerTarget::Compact {
        render_compact(&groups, &statuses, out);
    }
    render_listing(&statuses, out);
    if table.inventory_enabled {
        render_inventory(&statuses, out);
    }
}

/// `msfb_seat_check_errors_total`: one series per target and (code, reason)
/// it has seen, in both profiles.
fn render_errors(groups: &[Snapshot<'_>], errors: &[ErrorCount], out: &mut Out<'_>) {
    let mut w = Writer::new(out, &ERRORS);
    for g in groups {
        for row in g.rows {
            let first = row.first_error as usize;
            for e in &errors[first..first + usize::from(row.error_count)] {
                let line = w.begin();
                user_labels(line, g, *row);
                line.push_str(",code=\"");
                line.push_str(&e.code.label());
                line.push_str("\",reason=\"");
                line.push_str(e.reason.label());
                line.push('"');
                w.count_created(e.count, e.created);
            }
        }
    }
}

/// `msfb_seats` by state and `msfb_product_info`, per product.
fn render_seats(groups: &[Snapshot<'_>], out: &mut Out<'_>) {
    let mut w = Writer::new(out, &SEATS);
    for g in groups {
        let (mut active, mut inactive, mut unknown) = (0u64, 0u64, 0u64);
        for row in g.rows {
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
            line.push_str(g.labels);
            line.push_str(",state=\"");
            line.push_str(state);
            line.push('"');
            w.count(n);
        }
    }

    let mut w = Writer::new(out, &PRODUCT_INFO);
    for g in groups {
        let line = w.begin();
        line.push_str(g.labels);
        line.push_str(",name=\"");
        escape_label_value(line, g.group.product.name.as_deref().unwrap_or(""));
        line.push('"');
        w.value(1.0);
    }
}

/// The compact profile's per-product stand-ins for the per-target families
/// it leaves out: failing checks, the oldest latest success, and losses.
/// `statuses` is in the order of `groups`.
fn render_compact(
    groups: &[Snapshot<'_>],
    statuses: &[(&str, &ProductStatus, Mode)],
    out: &mut Out<'_>,
) {
    let mut w = Writer::new(out, &CHECKS_FAILING);
    for g in groups {
        let failing = g
            .rows
            .iter()
            .filter(|r| r.has(Row::CHECKED) && !r.has(Row::CHECK_OK))
            .count();
        w.begin().push_str(g.labels);
        w.count(failing as u64);
    }
    let mut w = Writer::new(out, &OLDEST_SUCCESS);
    for g in groups {
        // Targets without a success yet (NaN) do not count.
        let oldest = g
            .rows
            .iter()
            .map(|r| r.last_success_at)
            .filter(|t| !t.is_nan())
            .min_by(f64::total_cmp);
        if let Some(t) = oldest {
            w.begin().push_str(g.labels);
            w.value(t);
        }
    }
    let mut w = Writer::new(out, &PRODUCT_LOST);
    for (labels, status, _) in statuses {
        w.begin().push_str(labels);
        w.count(status.seats_lost);
    }
}

/// A product-level gauge: one sample per product that has a value.
fn per_product(
    statuses: &[(&str, &ProductStatus, Mode)],
    out: &mut Out<'_>,
    family: &'static Family<'static>,
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
fn render_listing(statuses: &[(&str, &ProductStatus, Mode)], out: &mut Out<'_>) {
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
        for (code, n, created) in &status.listing.errors {
            let line = w.begin();
            line.push_str(labels);
            line.push_str(",code=\"");
            line.push_str(&code.label());
            line.push('"');
            w.count_created(*n, *created);
        }
    }
}

/// The inventory families (absent before the first complete inventory).
fn render_inventory(statuses: &[(&str, &ProductStatus, Mode)], out: &mut Out<'_>) {
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

/// When a series of the exporter's own instruments first counted something
/// (Unix seconds), for the series that appear with that first increment;
/// `None` for series that exist from the start.
pub type CreatedLookup<'c> = &'c dyn Fn(&str, &prometheus::proto::Metric) -> Option<f64>;

/// Writes the families gathered from a `prometheus` registry in the
/// writer's format (used for OpenMetrics; see the module header).
pub fn render_families(
    families: &[prometheus::proto::MetricFamily],
    created: CreatedLookup<'_>,
    out: &mut Out<'_>,
) {
    use prometheus::proto::MetricType;
    for mf in families {
        let kind = match mf.get_field_type() {
            MetricType::COUNTER => "counter",
            MetricType::GAUGE => "gauge",
            MetricType::HISTOGRAM => "histogram",
            MetricType::SUMMARY => "summary",
            MetricType::UNTYPED => "unknown",
        };
        let family = Family {
            name: mf.name(),
            kind,
            help: mf.help(),
        };
        let mut w = Writer::new(out, &family);
        w.cached = false;
        for m in mf.get_metric() {
            let labels = proto_labels(m);
            let since = created(mf.name(), m);
            match mf.get_field_type() {
                MetricType::COUNTER => {
                    w.begin().push_str(&labels);
                    w.sample_created(Value::Float(m.get_counter().value()), since);
                }
                MetricType::HISTOGRAM => histogram(&mut w, &labels, m, since),
                _ => {
                    w.begin().push_str(&labels);
                    w.value(m.get_gauge().value());
                }
            }
        }
        if out.is_closed() {
            return;
        }
    }
}

/// `name="value",…` of a gathered series.
fn proto_labels(m: &prometheus::proto::Metric) -> String {
    let mut s = String::new();
    for (i, pair) in m.get_label().iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(pair.name());
        s.push_str("=\"");
        escape_label_value(&mut s, pair.value());
        s.push('"');
    }
    s
}

/// A histogram series: cumulative buckets up to `+Inf`, count, sum and,
/// when it appeared with its first observation, `_created`.
fn histogram(
    w: &mut Writer<'_, '_, '_>,
    labels: &str,
    m: &prometheus::proto::Metric,
    since: Option<f64>,
) {
    let h = m.get_histogram();
    let name = w.family.name;
    let sep = if labels.is_empty() { "" } else { "," };
    let bounds = h
        .get_bucket()
        .iter()
        .map(|b| (b.upper_bound(), b.cumulative_count()))
        .filter(|(le, _)| le.is_finite())
        .chain([(f64::INFINITY, h.get_sample_count())]);
    for (le, count) in bounds {
        let line = w.begin_named(name, "_bucket");
        for part in [labels, sep, "le=\""] {
            line.push_str(part);
        }
        write_bound(line, le);
        line.push('"');
        w.count(count);
    }
    w.begin_named(name, "_count").push_str(labels);
    w.count(h.get_sample_count());
    w.begin_named(name, "_sum").push_str(labels);
    w.sample_created(Value::Float(h.get_sample_sum()), None);
    if let Some(since) = since.filter(|_| w.out.format() == Format::OpenMetrics) {
        w.begin_named(name, "_created").push_str(labels);
        w.value(since);
    }
}

/// A bucket bound as OpenMetrics wants it: a float with a fraction
/// (`1.0`, `0.25`) or `+Inf`.
fn write_bound(out: &mut String, le: f64) {
    if le.is_infinite() {
        out.push_str("+Inf");
    } else {
        out.push_str(ryu::Buffer::new().format_finite(le));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::targets::{ErrorCode, Outcome, Reason};

    /// A table of one product with `users`; each got one check.
    fn table(users: &[&str]) -> Arc<TargetTable> {
        let t = unchecked_table(users, "full");
        for (i, (_, t)) in t.iter().enumerate() {
            t.state().record(&outcome(i), 1_700_000_000.25);
        }
        t
    }

    /// Target `i`'s outcome in [`table`]: even ones hold a seat, odd ones
    /// got a 404.
    fn outcome(i: usize) -> Outcome {
        if i.is_multiple_of(2) {
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
        }
    }

    /// A table of product `P` with `users` and of product `Q` with none, in
    /// profile `per_target`, nothing checked yet.
    fn unchecked_table(users: &[&str], per_target: &str) -> Arc<TargetTable> {
        let list: Vec<String> = users.iter().map(|u| format!("{u:?}")).collect();
        let config = config::for_tests(&format!(
            "[metrics]\nper_target = \"{per_target}\"\n\n\
             [[products]]\nproduct_id = \"P\"\nsku_id = \"0016\"\nusers = [{}]\n\n\
             [[products]]\nproduct_id = \"Q\"\nsku_id = \"0001\"\nmode = \"list\"\nusers = \"all\"\n",
            list.join(", ")
        ));
        Arc::new(TargetTable::build(&config, None))
    }

    fn chunks(table: &Arc<TargetTable>, size: usize) -> Vec<String> {
        let mut chunks = Vec::new();
        let mut emit = |c: String| {
            chunks.push(c);
            true
        };
        let mut out = Out::new(size, Format::Text, &mut emit);
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
        let mut out = Out::new(1000, Format::Text, &mut emit);
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

    /// The sample lines of `text` whose name is `name` (labels may follow).
    fn samples<'t>(text: &'t str, name: &str) -> Vec<&'t str> {
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .collect()
    }

    /// u0 holds a seat (checked at 100), u1 got a 404 (at 200), u2's only
    /// check timed out (at 300), u3 held a seat at 50 and timed out at 400.
    fn checked_table(per_target: &str) -> Arc<TargetTable> {
        let t = unchecked_table(&["u0@x.y", "u1@x.y", "u2@x.y", "u3@x.y"], per_target);
        let timeout = Outcome::Inconclusive(crate::targets::Inconclusive {
            code: ErrorCode::Timeout,
            reason: Reason::None,
            detail: "timed out".into(),
        });
        let targets: Vec<_> = t.iter().map(|(_, t)| t).collect();
        targets[0].state().record(&outcome(0), 100.0);
        targets[1].state().record(&outcome(1), 200.0);
        targets[2].state().record(&timeout, 300.0);
        targets[3].state().record(&outcome(0), 50.0);
        targets[3].state().record(&timeout, 400.0);
        t.groups[0].state.status().seats_lost = 3;
        t
    }

    /// The families only the full profile writes, per target.
    const FULL_ONLY: [&str; 3] = [
        "msfb_seat_check_success",
        "msfb_seat_last_success_timestamp_seconds",
        "msfb_seat_assigned_timestamp_seconds",
    ];
    /// The families only the compact profile writes, per product.
    const COMPACT_ONLY: [&str; 2] = [
        "msfb_seat_checks_failing",
        "msfb_seat_oldest_success_timestamp_seconds",
    ];

    #[test]
    fn compact_keeps_two_families_per_target_and_answers_the_rest_per_product() {
        let text = chunks(&checked_table("compact"), usize::MAX).concat();
        let labels = |u: &str| format!("{{product_id=\"P\",sku_id=\"0016\",user=\"{u}\"}}");
        assert_eq!(
            samples(&text, "msfb_seat_active"),
            [
                format!("msfb_seat_active{} 1", labels("u0@x.y")),
                format!("msfb_seat_active{} 0", labels("u1@x.y")),
                format!("msfb_seat_active{} 1", labels("u3@x.y")),
            ]
        );
        assert_eq!(
            samples(&text, "msfb_seat_check_errors_total").len(),
            3,
            "{text}"
        );
        for family in FULL_ONLY {
            let absent =
                samples(&text, family).is_empty() && !text.contains(&format!("# TYPE {family} "));
            assert!(absent, "{family} in compact:\n{text}");
        }
        assert_eq!(
            samples(&text, "msfb_seat_checks_failing"),
            [
                "msfb_seat_checks_failing{product_id=\"P\",sku_id=\"0016\"} 2",
                "msfb_seat_checks_failing{product_id=\"Q\",sku_id=\"0001\"} 0",
            ]
        );
        // Q has no target, so no success: absent, not 0.
        assert_eq!(
            samples(&text, "msfb_seat_oldest_success_timestamp_seconds"),
            ["msfb_seat_oldest_success_timestamp_seconds{product_id=\"P\",sku_id=\"0016\"} 50"]
        );
        assert_eq!(
            samples(&text, "msfb_seat_lost_total"),
            [
                "msfb_seat_lost_total{product_id=\"P\",sku_id=\"0016\"} 3",
                "msfb_seat_lost_total{product_id=\"Q\",sku_id=\"0001\"} 0",
            ]
        );
        assert_eq!(
            text.matches("# TYPE msfb_seat_lost_total counter\n")
                .count(),
            1
        );
        assert!(
            text.contains("msfb_seats{product_id=\"P\",sku_id=\"0016\",state=\"unknown\"} 1\n")
        );
    }

    #[test]
    fn compact_before_any_check_has_losses_at_zero_and_no_freshness() {
        let text = chunks(&unchecked_table(&["u0@x.y"], "compact"), usize::MAX).concat();
        assert!(samples(&text, "msfb_seat_active").is_empty(), "{text}");
        assert!(samples(&text, "msfb_seat_oldest_success_timestamp_seconds").is_empty());
        assert_eq!(
            samples(&text, "msfb_seat_checks_failing").len(),
            2,
            "{text}"
        );
        assert_eq!(
            samples(&text, "msfb_seat_lost_total"),
            [
                "msfb_seat_lost_total{product_id=\"P\",sku_id=\"0016\"} 0",
                "msfb_seat_lost_total{product_id=\"Q\",sku_id=\"0001\"} 0",
            ]
        );
    }

    #[test]
    fn compact_speaks_openmetrics_too() {
        let table = checked_table("compact");
        let mut text = String::new();
        let mut emit = |c: String| {
            text.push_str(&c);
            true
        };
        let mut out = Out::new(usize::MAX, Format::OpenMetrics, &mut emit);
        render(&table, &mut out);
        out.flush();
        drop(out);
        // The per-product counter is there from the start, so it has no
        // `_created`; the error counters appear with their first increment
        // and have one.
        assert_eq!(
            text.matches("# TYPE msfb_seat_lost counter\n").count(),
            1,
            "{text}"
        );
        assert!(text.contains("\nmsfb_seat_lost_total{product_id=\"P\",sku_id=\"0016\"} 3\n"));
        assert!(!text.contains("msfb_seat_lost_created"), "{text}");
        assert!(text.contains("msfb_seat_check_errors_created{"), "{text}");
        assert!(text.contains("# TYPE msfb_seat_checks_failing gauge\n"));
        assert!(text.contains("# UNIT msfb_seat_oldest_success_timestamp_seconds seconds\n"));
        for family in FULL_ONLY {
            assert!(!text.contains(&format!("# TYPE {family} ")), "{family}");
        }
    }

    #[test]
    fn full_writes_every_family_per_target_and_none_of_compacts() {
        let text = chunks(&checked_table("full"), usize::MAX).concat();
        for family in FULL_ONLY {
            assert!(
                !samples(&text, family).is_empty(),
                "{family} missing:\n{text}"
            );
        }
        for family in COMPACT_ONLY {
            assert!(!text.contains(family), "{family} in full:\n{text}");
        }
        // Per target, whatever the product counted.
        assert_eq!(samples(&text, "msfb_seat_lost_total").len(), 4, "{text}");
        assert!(
            samples(&text, "msfb_seat_lost_total")
                .iter()
                .all(|l| l.contains(",user=\""))
        );
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
