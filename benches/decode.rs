//! Criterion benchmarks of the per-check decoding (issue 5): a Get seat 200
//! body into SeatDetails, in both casings the documentation shows, and the
//! item type of a 404 body in each of the three known shapes.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use msfb_seat_exporter::store::{ItemType, SeatDetails};

const CAMEL: &[u8] = br#"{"assignedTo": "user000123@bench.example", "dateAssigned": "2024-05-06T07:08:09.1234567Z", "productId": "9NBLGGH4R315", "seatState": null, "skuId": "0016", "state": "Active"}"#;
const PASCAL: &[u8] = br#"{"AssignedTo":"user000123@bench.example","DateAssigned":"2024-05-06T07:08:09.1234567+02:00","ProductId":"9NBLGGH4R315","SkuId":"0016","State":"Revoked","LastModified":"2024-05-06T07:08:09Z"}"#;
const NOT_FOUND: [(&str, &[u8]); 3] = [
    (
        "key_value",
        br#"{"code":"NotFound","message":"Seat not found.","data":[{"key":"ItemType","value":"Seat"},{"key":"Values","value":"user000123@bench.example"}]}"#,
    ),
    (
        "flat",
        br#"{"ItemType":"User","Values":"user000123@bench.example"}"#,
    ),
    (
        "nested",
        br#"{"error":{"code":"NotFound","message":"Not found","details":{"itemType":"Inventory"}}}"#,
    ),
];

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("seat_details");
    group.bench_function("camel", |b| {
        b.iter(|| SeatDetails::decode(black_box(CAMEL)).expect("valid body"))
    });
    group.bench_function("pascal", |b| {
        b.iter(|| SeatDetails::decode(black_box(PASCAL)).expect("valid body"))
    });
    group.finish();
    let mut group = c.benchmark_group("not_found_item_type");
    for (name, body) in NOT_FOUND {
        group.bench_function(name, |b| {
            b.iter(|| ItemType::from_not_found_body(black_box(body)))
        });
    }
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
