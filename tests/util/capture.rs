//! The library's own log lines, captured in-process: for tests that drive
//! the exporter through the `Harness` (no binary) and assert on what it
//! logs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Info lines of this thread's tracing events, as JSON objects (fields
/// flattened), while the returned guards live. The test runtime is
/// single-threaded, so the pollers' events are the test thread's.
///
/// A second, idle dispatcher is registered first: while only one exists,
/// tracing-core works out a callsite's interest from the default of the
/// thread that first reaches it, so a log line first reached by another
/// test's thread (without a subscriber) would be off here too.
pub fn capture_info_lines() -> (
    (tracing::Dispatch, tracing::subscriber::DefaultGuard),
    impl Fn() -> Vec<BTreeMap<String, String>>,
) {
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    let idle = tracing::Dispatch::new(tracing_subscriber::registry());
    let guard = tracing::subscriber::set_default(subscriber);
    let lines = move || {
        let bytes = sink.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v.as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().map_or(v.to_string(), str::to_owned)))
                    .collect()
            })
            .collect()
    };
    ((idle, guard), lines)
}
