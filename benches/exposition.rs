//! Criterion benchmarks of the scrape path (issue 5): the whole `/metrics`
//! body rendered from a target table of 1k, 10k and 100k targets, before
//! compression, in the chunks a scrape streams (each chunk is dropped where
//! the web layer would send it). Targets are spread over four products; 90% hold an active
//! seat with a `dateAssigned`, 10% got a 404 (so they carry an error series),
//! as in `scripts/bench.sh`.
//!
//! `cargo test --all-targets` runs each benchmark once in test mode; the
//! 100k table is then built in a debug build, which takes a few seconds.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use msfb_seat_exporter::config::{self, LoadOptions};
use msfb_seat_exporter::exporter::{Exporter, Options};
use msfb_seat_exporter::metrics::exposition::CHUNK_BYTES;
use msfb_seat_exporter::metrics::format::Format;
use msfb_seat_exporter::targets::Outcome;
use msfb_seat_exporter::targets::{ErrorCode, Reason};

const PRODUCTS: usize = 4;

/// An exporter whose table holds `n` targets, each with one recorded check.
fn exporter_with(n: usize) -> (tempfile::TempDir, Exporter) {
    let dir = tempfile::tempdir().expect("temp dir");
    let per_product = n / PRODUCTS;
    let mut users = String::with_capacity(per_product * 32);
    for i in 0..per_product {
        users.push_str(&format!("user{i:06}@bench.example\n"));
    }
    std::fs::write(dir.path().join("users.txt"), users).expect("users file");
    std::fs::write(dir.path().join("secret"), "s").expect("secret");
    let mut text = String::from(
        "[store]\nbase_url = \"http://127.0.0.1:9\"\n\n\
         [auth]\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret_file = \"secret\"\n\n",
    );
    for p in 0..PRODUCTS {
        text.push_str(&format!(
            "[[products]]\nproduct_id = \"9NBLGGH4R{p:03}\"\nsku_id = \"0016\"\n\
             name = \"Bench {p}\"\nusers_file = \"users.txt\"\n\n"
        ));
    }
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).expect("config");
    let config = config::load(&path, &LoadOptions::default()).expect("valid config");
    let exporter = Exporter::new(config, Options::default()).expect("exporter");
    let now = 1_700_000_000.123_456_7;
    for (i, (_, target)) in exporter.generation().table.iter().enumerate() {
        let outcome = if i % 10 == 9 {
            Outcome::Conclusive {
                active: false,
                assigned_at: None,
                negative: Some((ErrorCode::Status(404), Reason::Seat)),
            }
        } else {
            Outcome::Conclusive {
                active: true,
                assigned_at: Some(1_714_979_289.123_456),
                negative: None,
            }
        };
        target.state().record(&outcome, now + i as f64 * 0.000_37);
    }
    (dir, exporter)
}

/// Renders one scrape as the web layer does; returns its size.
fn scrape(exporter: &Exporter) -> usize {
    let mut bytes = 0;
    exporter.stream_metrics(CHUNK_BYTES, Format::Text, &mut |chunk| {
        bytes += chunk.len();
        black_box(chunk);
        true
    });
    bytes
}

fn render(c: &mut Criterion) {
    let mut group = c.benchmark_group("render_metrics");
    group.sample_size(10);
    for n in [1_000, 10_000, 100_000] {
        let (_dir, exporter) = exporter_with(n);
        group.throughput(Throughput::Bytes(scrape(&exporter) as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &exporter, |b, e| {
            b.iter(|| scrape(e));
        });
    }
    group.finish();
}

criterion_group!(benches, render);
criterion_main!(benches);
