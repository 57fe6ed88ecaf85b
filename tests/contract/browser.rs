//! The status page in a real browser (issue 15): headless Chromium (Debian's
//! `chromium`, which `scripts/test.sh` installs) loads it from a served
//! exporter at 1400 px, 800 px and a phone's 390 px, driven by
//! `tests/js/browser.js` in Node. At every width nothing scrolls sideways,
//! every timestamp stays on one line, the legend shows four states in four
//! colours, the error column ends inside the window, and the filter (typed,
//! or from `?filter=`) leaves exactly the matching rows. The screenshots
//! stay in `target/test-artefacts/status-page/` for a person to look at.

use std::path::Path;

use crate::util::pages::story_users::{BOB, DAVE};

const WIDTHS: [u32; 3] = [1400, 800, 390];

#[tokio::test]
async fn the_status_page_reads_well_in_chromium_at_1400_800_and_phone_width() {
    let served = crate::util::pages::story().await;
    let out_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artefacts/status-page");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js/browser.js");
    let mut args = vec![
        script.display().to_string(),
        "chromium".to_owned(),
        format!("{}/status", served.url()),
        out_dir.display().to_string(),
    ];
    args.extend(WIDTHS.iter().map(u32::to_string));
    let out = tokio::process::Command::new("node")
        .args(&args)
        .kill_on_drop(true)
        .output()
        .await
        .expect("node is needed (Debian package nodejs; bash scripts/test.sh installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser run failed (chromium comes from Debian's chromium package, \
         which bash scripts/test.sh installs): {stderr}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("one JSON report from browser.js");

    for width in WIDTHS {
        let r = &report[width.to_string()];
        let at = format!("at {width} px: {r}");
        assert_eq!(r["width"].as_u64(), Some(u64::from(width)), "{at}");
        assert!(r["overflow"].as_i64().unwrap() <= 0, "sideways scroll {at}");
        assert!(r["rowsRight"].as_f64().unwrap() <= f64::from(width), "{at}");
        assert!(
            r["errorsRight"].as_f64().unwrap() <= f64::from(width),
            "{at}"
        );
        // Every error is on screen (bob, dave, erin, frank, zed).
        assert_eq!(r["errors"].as_u64(), Some(5), "{at}");
        assert_eq!(r["errorsShown"], r["errors"], "{at}");
        // Last check and last success of 7 rows, frank's past error, and
        // the generation time: all on one line.
        assert!(r["times"].as_u64().unwrap() >= 14, "{at}");
        assert_eq!(r["wrapped"], serde_json::json!([]), "wrapped times {at}");
        assert_eq!(r["legendVisible"], true, "{at}");
        let legend = r["legend"].as_array().unwrap();
        let words: Vec<&str> = legend.iter().map(|b| b["word"].as_str().unwrap()).collect();
        assert_eq!(words, ["active", "lost", "no seat", "unknown"], "{at}");
        let mut looks: Vec<String> = legend
            .iter()
            .map(|b| format!("{} {} {}", b["background"], b["color"], b["border"]))
            .collect();
        looks.sort();
        looks.dedup();
        assert_eq!(looks.len(), 4, "each state its own colours {at}");
        assert_eq!(r["filtered"], serde_json::json!([BOB]), "typed filter {at}");
        assert_eq!(r["linked"], serde_json::json!([DAVE]), "?filter= {at}");
        for shot in ["screenshot", "filteredScreenshot"] {
            let file = out_dir.join(r[shot].as_str().unwrap());
            let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            assert!(size > 1000, "{} missing or empty", file.display());
        }
    }
}
