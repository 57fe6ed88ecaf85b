//! The status page's filter/sort script (issue 4), run in Node against a
//! small stand-in for the DOM (`tests/js/status_script.js`): the filter
//! hides rows, headers sort numbers as numbers, and both survive the
//! page's refresh. Node comes from Debian's `nodejs`, which
//! `scripts/test.sh` installs; without it this fails, never skips.

use crate::util::pages::{between, get, hostile_harness, table_rows};

#[tokio::test]
async fn status_script_filters_sorts_and_keeps_both_across_the_refresh() {
    let h = hostile_harness().await;
    let (_, _, html) = get(&h, "/status").await;
    let script = between(&html, "<script>", "</script>");
    let (headers, rows) = table_rows(&html);
    assert_eq!(headers.len(), 9);
    assert!(rows.iter().all(|r| r.len() == 9), "{rows:?}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("status.js"), script).unwrap();
    std::fs::write(
        dir.path().join("table.json"),
        serde_json::json!({ "headers": headers, "rows": rows }).to_string(),
    )
    .unwrap();
    let harness =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js/status_script.js");
    let out = std::process::Command::new("node")
        .arg(harness)
        .arg(dir.path().join("status.js"))
        .arg(dir.path().join("table.json"))
        .output()
        .expect("node is needed for this test (bash scripts/test.sh installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.trim_end().lines().last(),
        Some("status script: all checks passed")
    );
}
