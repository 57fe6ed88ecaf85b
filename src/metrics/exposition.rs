//! Writes the per-target and per-product families in the Prometheus text
//! format 0.0.4, straight from the target table (see the module header of
//! `metrics` for why not through `prometheus::Metric` objects).
//!
//! Families are written one after another, each by its own pass over the
//! table, so that every family's samples are contiguous as the format
//! requires. A family's `# HELP`/`# TYPE` lines are written with its first
//! sample, so a family without samples (say, no errors yet) is absent rather
//! than empty.
//!
//! Discovered targets come and go between cycles, so one snapshot of each
//! group's targets is taken per scrape and every family is written from it:
//! a target never appears in one family and not the next.

use std::fmt::Write as _;
use std::sync::Arc;

use super::CACHED;
use crate::config::Mode;
use crate::inventory::InventoryView;
use crate::targets::{ProductGroup, ProductStatus, Target, TargetState, TargetTable};

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

/// Appends text to `out`, writing a family header before its first sample.
struct Writer<'a> {
    out: &'a mut String,
    family: &'static Family,
    started: bool,
}

impl<'a> Writer<'a> {
    fn new(out: &'a mut String, family: &'static Family) -> Self {
        Writer {
            out,
            family,
            started: false,
        }
    }

    /// Starts a sample line: header if needed, then `name{`. The caller
    /// writes the labels, then calls [`value`](Self::value).
    fn begin(&mut self) -> &mut String {
        if !self.started {
            self.started = true;
            let f = self.family;
            let cached = if f.name == PRODUCT_INFO.name {
                ""
            } else {
                CACHED
            };
            let space = if cached.is_empty() { "" } else { " " };
            let _ = writeln!(self.out, "# HELP {} {}{space}{cached}", f.name, f.help);
            let _ = writeln!(self.out, "# TYPE {} {}", f.name, f.kind);
        }
        self.out.push_str(self.family.name);
        self.out.push('{');
        self.out
    }

    fn value(&mut self, v: f64) {
        self.out.push_str("} ");
        write_float(self.out, v);
        self.out.push('\n');
    }
}

fn write_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

/// Appends `s` escaped as a label value (backslash, quote, newline).
pub(crate) fn escape_label_value(out: &mut String, s: &str) {
    if !s.contains(['\\', '"', '\n']) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
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

/// One group's labels and targets, fixed for one scrape.
struct Snapshot<'a> {
    group: &'a ProductGroup,
    labels: String,
    targets: Vec<Arc<Target>>,
}

/// Writes one per-target family: `sample` returns the value (or `None` for
/// no sample) from a target's state.
fn per_target(
    groups: &[Snapshot<'_>],
    out: &mut String,
    family: &'static Family,
    sample: impl Fn(&TargetState) -> Option<f64>,
) {
    let mut w = Writer::new(out, family);
    for Snapshot {
        labels, targets, ..
    } in groups
    {
        for target in targets {
            let value = sample(&target.state());
            if let Some(v) = value {
                let line = w.begin();
                line.push_str(labels);
                line.push_str(",user=\"");
                escape_label_value(line, target.user_label());
                line.push('"');
                w.value(v);
            }
        }
    }
}

/// Appends every table-derived family to `out`.
pub fn render(table: &TargetTable, out: &mut String) {
    let groups: Vec<Snapshot<'_>> = table
        .groups
        .iter()
        .map(|group| Snapshot {
            group,
            labels: product_labels(group),
            targets: group.all_targets(),
        })
        .collect();
    let bool_value = |b: bool| if b { 1.0 } else { 0.0 };
    per_target(&groups, out, &SEAT_ACTIVE, |s| {
        s.seat.map(|seat| bool_value(seat.active))
    });
    per_target(&groups, out, &CHECK_SUCCESS, |s| {
        s.last_check_at.map(|_| bool_value(s.last_check_ok))
    });
    per_target(&groups, out, &LAST_SUCCESS, |s| s.last_success_at);
    per_target(&groups, out, &ASSIGNED, |s| {
        s.seat
            .filter(|seat| seat.active)
            .and_then(|seat| seat.assigned_at)
    });
    per_target(&groups, out, &LOST, |s| Some(s.lost_total as f64));

    let mut w = Writer::new(out, &ERRORS);
    for Snapshot {
        labels, targets, ..
    } in &groups
    {
        for target in targets {
            let errors = target.state().errors.clone();
            for e in errors {
                let line = w.begin();
                line.push_str(labels);
                line.push_str(",user=\"");
                escape_label_value(line, target.user_label());
                line.push_str("\",code=\"");
                line.push_str(&e.code.label());
                line.push_str("\",reason=\"");
                line.push_str(e.reason.label());
                line.push('"');
                w.value(e.count as f64);
            }
        }
    }

    let mut w = Writer::new(out, &SEATS);
    for Snapshot {
        labels, targets, ..
    } in &groups
    {
        let counts = TargetTable::count_states(targets);
        for (state, n) in [
            ("active", counts.active),
            ("inactive", counts.inactive),
            ("unknown", counts.unknown),
        ] {
            let line = w.begin();
            line.push_str(labels);
            line.push_str(",state=\"");
            line.push_str(state);
            line.push('"');
            w.value(n as f64);
        }
    }

    let mut w = Writer::new(out, &PRODUCT_INFO);
    for Snapshot { group, labels, .. } in &groups {
        let line = w.begin();
        line.push_str(labels);
        line.push_str(",name=\"");
        escape_label_value(line, group.product.name.as_deref().unwrap_or(""));
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
    out: &mut String,
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
fn render_listing(statuses: &[(&str, ProductStatus, Mode)], out: &mut String) {
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
            w.value(*n as f64);
        }
    }
}

/// The inventory families (absent before the first complete inventory).
fn render_inventory(statuses: &[(&str, ProductStatus, Mode)], out: &mut String) {
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
