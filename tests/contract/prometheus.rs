//! The shipped Prometheus and Grafana artifacts, checked by the tools that
//! consume them (issue 4): `promtool check rules` and `promtool test rules`
//! on `contrib/prometheus/`, `promtool check metrics` on a real scrape, and
//! a real Prometheus that scrapes the exporter, evaluates the shipped rules
//! and answers every query of the shipped dashboard.
//!
//! promtool and prometheus come from Debian's `prometheus` package, which
//! `scripts/test.sh` installs; without them these tests fail, never skip.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use msfb_seat_exporter::fake_store::{FakeInventory, FakeSeat, Fault, Match};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::util::inventory::{NEW_FAMILIES, scrape_with_every_new_family};
use crate::util::process::free_port;
use crate::util::programs::{repo, run_promtool, text};
use crate::util::{ALICE, BOB, CAROL, DAVE, P, S, Served, Setup, eventually};

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let check = run_promtool(
        &[
            "check",
            "rules",
            "--lint=all",
            "--lint-fatal",
            "contrib/prometheus/alerts.yml",
        ],
        None,
    );
    assert!(
        check.status.success(),
        "{}{}",
        text(&check.stdout),
        text(&check.stderr)
    );
    assert!(
        text(&check.stdout).contains("SUCCESS: 16 rules found"),
        "{}",
        text(&check.stdout)
    );
    let test = run_promtool(
        &[
            "test",
            "rules",
            "contrib/prometheus/alerts_test.yml",
            "contrib/prometheus/alerts_compact_test.yml",
        ],
        None,
    );
    assert!(
        test.status.success(),
        "{}{}",
        text(&test.stdout),
        text(&test.stderr)
    );
    assert!(text(&test.stdout).contains("SUCCESS"));
}

/// Users of the end-to-end scenario: bob loses his seat, carol's checks
/// fail (which must not look like a lost seat), alice and dave keep theirs.
/// Contoso Notes (`P`) is checked in list mode (one of its listings
/// fails), `P2` per user; both are in the Store's inventory with seats to
/// spare.
#[tokio::test]
async fn every_new_family_passes_promtool() {
    let m = scrape_with_every_new_family().await;
    for family in NEW_FAMILIES {
        m.assert_family(family);
    }
    let out = run_promtool(&["check", "metrics"], Some(&m.text));
    // The one finding promtool has on the whole scrape: SPEC §15 names the
    // shard gauge `msfb_seat_exporter_shard_count`, and promtool reserves
    // `_count` for histograms and summaries (docs/metrics.md says why the
    // contract's name stays). Every other family must be clean.
    assert_eq!(text(&out.stdout), "", "promtool check metrics findings");
    assert_eq!(
        text(&out.stderr),
        "msfb_seat_exporter_shard_count non-histogram and non-summary metrics should not have \"_count\" suffix\n",
        "promtool check metrics findings"
    );
}

const P2: &str = "9WZDNCRFJ3PS";
const S2: &str = "0010";

/// The alerts on seat capacity and the inventory (none of them fires in
/// the scenario until capacity is taken away).
const INVENTORY_ALERTS: [&str; 5] = [
    "MsfbSeatsLow",
    "MsfbSeatsExhausted",
    "MsfbProductNotInInventory",
    "MsfbInventoryPollFailing",
    "MsfbSeatListingFailing",
];

async fn scenario() -> Served {
    scenario_in("").await
}

/// [`scenario`] with `metrics` as the `[metrics]` table's lines.
async fn scenario_in(metrics: &str) -> Served {
    let products = format!(
        "[[products]]\nproduct_id = \"{P}\"\nsku_id = \"{S}\"\nname = \"Contoso Notes\"\n\
         mode = \"list\"\nusers = [\"{ALICE}\", \"{BOB}\"]\n\n\
         [[products]]\nproduct_id = \"{P2}\"\nsku_id = \"{S2}\"\nusers = [\"{CAROL}\", \"{DAVE}\"]\n"
    );
    let served = Served::start(Setup {
        web: "",
        metrics,
        products: &products,
        files: vec![],
    })
    .await;
    for (p, s, u) in [(P, S, ALICE), (P, S, BOB), (P2, S2, CAROL), (P2, S2, DAVE)] {
        served.fake.set_seat(p, s, u, FakeSeat::active());
    }
    // Available seats: capacity minus the active seats the fake holds.
    for (p, s, seat_capacity) in [(P, S, 50), (P2, S2, 20)] {
        served.fake.set_inventory(
            p,
            s,
            FakeInventory {
                seat_capacity,
                ..FakeInventory::default()
            },
        );
    }
    served
        .fake
        .add_fault(Fault::always(Match::User(CAROL.into()), Fault::status(503)));
    // One failed listing (400 is not retried), so that the listing error
    // families have a series.
    served
        .fake
        .add_fault(Fault::times(1, Match::AllListings, Fault::status(400)));
    served
}

#[tokio::test]
async fn a_real_scrape_passes_promtool_check_metrics() {
    let served = scenario().await;
    // A failed token request first, so that every family has series.
    served
        .fake
        .add_fault(Fault::times(1, Match::Token, Fault::status(500)));
    served.cycle().await;
    served.cycle().await;
    served.fake.remove_seat(P, S, BOB);
    // The token endpoint backs off after the failure; wait for a cycle
    // and an inventory poll that really reached the Store.
    eventually(
        "a conclusive check of bob and a complete inventory",
        Duration::from_secs(30),
        || async {
            served.cycle().await;
            let inventory = served
                .exporter
                .poll_inventory(&CancellationToken::new())
                .await
                .expect("not cancelled");
            let m = served.exporter.render_metrics();
            if !m.contains(&format!(
                "msfb_seat_active{{product_id=\"{P}\",sku_id=\"{S}\",user=\"{BOB}\"}} 0"
            )) {
                Err("bob still active or unknown".into())
            } else if !inventory.complete {
                Err(format!("inventory poll: {inventory:?}"))
            } else {
                Ok(())
            }
        },
    )
    .await;
    let body = reqwest::get(format!("{}/metrics", served.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for family in [
        "msfb_seat_lost_total{",
        "msfb_seat_check_errors_total{",
        "msfb_oauth_token_request_failures_total{",
        "msfb_api_request_duration_seconds_bucket{",
        "msfb_inventory_seat_capacity{",
        "msfb_inventory_available_seats{",
        "msfb_inventory_info{",
        "msfb_inventory_poll_success ",
        "msfb_seat_listing_pages{",
        "msfb_seat_listing_errors_total{",
    ] {
        assert!(body.contains(family), "{family} missing from\n{body}");
    }
    let out = run_promtool(&["check", "metrics"], Some(&body));
    // One finding is expected and nothing else: SPEC §15 names the shard
    // gauge `msfb_seat_exporter_shard_count`, and promtool reserves
    // `_count` for histograms and summaries (docs/metrics.md says why the
    // contract's name stays).
    assert_eq!(text(&out.stdout), "", "promtool check metrics findings");
    assert_eq!(
        text(&out.stderr),
        "msfb_seat_exporter_shard_count non-histogram and non-summary metrics should not have \"_count\" suffix\n",
        "promtool check metrics findings"
    );
}

/// A Prometheus server in a temporary directory, killed when dropped.
struct Prometheus {
    child: tokio::process::Child,
    url: String,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` every 2 s as job
    /// `msfb_seat_exporter`, with `rules` evaluated every second. (A
    /// scrape that times out marks the series stale and restarts the `for`
    /// of a pending alert, so the timeout is not cut to the bone.)
    async fn start(target: std::net::SocketAddr, rules: &Path) -> Prometheus {
        Self::start_jobs(&[("msfb_seat_exporter", target)], rules).await
    }

    /// [`Prometheus::start`] with one job per (name, target).
    async fn start_jobs(jobs: &[(&str, std::net::SocketAddr)], rules: &Path) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        let scrape_configs: String = jobs
            .iter()
            .map(|(job, target)| {
                format!("  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n")
            })
            .collect();
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 2s\n  scrape_timeout: 2s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {rules}\n\
                 scrape_configs:\n{scrape_configs}",
                rules = rules.display()
            ),
        )
        .unwrap();
        let http = reqwest::Client::new();
        // A free port is found by binding and releasing it; another process
        // may take it in between, so a bind failure is retried.
        for _ in 0..5 {
            let port = free_port();
            let log_path = dir.path().join("prometheus.log");
            let log = std::fs::File::create(&log_path).unwrap();
            let mut child = tokio::process::Command::new("prometheus")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--log.level=warn")
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .expect("prometheus is needed (Debian package prometheus; bash scripts/test.sh installs it)");
            let url = format!("http://127.0.0.1:{port}");
            let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    if log.contains("address already in use") {
                        break;
                    }
                    panic!("prometheus exited with {status}:\n{log}");
                }
                let ready = http.get(format!("{url}/-/ready")).send().await;
                if ready.is_ok_and(|r| r.status().is_success()) {
                    return Prometheus {
                        child,
                        url,
                        dir,
                        http,
                    };
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "prometheus not ready in 90 s:\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        panic!("no free port for prometheus after 5 tries");
    }

    /// `GET /api/v1/{path}`'s `data`, or an error describing the answer.
    async fn api(&self, request: reqwest::RequestBuilder) -> Result<Value, String> {
        let resp = request.send().await.map_err(|e| e.to_string())?;
        let body = resp.text().await.map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if v["status"] != "success" {
            return Err(v.to_string());
        }
        Ok(v["data"].clone())
    }

    /// An instant query's result vector.
    async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let req = self
            .http
            .post(format!("{}/api/v1/query", self.url))
            .form(&[("query", expr)]);
        let data = self.api(req).await?;
        match &data["result"] {
            Value::Array(a) => Ok(a.clone()),
            // A scalar result (`vector(0)` folded, `time()`): one value.
            other => Ok(vec![other.clone()]),
        }
    }

    /// Values of `label` on series matching `selector` (what Grafana's
    /// `label_values(selector, label)` asks).
    async fn label_values(&self, label: &str, selector: &str) -> Result<Vec<Value>, String> {
        let req = self.http.get(format!(
            "{}/api/v1/label/{label}/values?match[]={}",
            self.url,
            utf8_percent_encode(selector, NON_ALPHANUMERIC)
        ));
        match self.api(req).await? {
            Value::Array(a) => Ok(a),
            other => Err(other.to_string()),
        }
    }

    /// Every active alert (pending and firing).
    async fn alerts(&self) -> Result<Vec<Value>, String> {
        let req = self.http.get(format!("{}/api/v1/alerts", self.url));
        let data = self.api(req).await?;
        Ok(data["alerts"].as_array().cloned().unwrap_or_default())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Runs a poll cycle and an inventory poll about every half second until
/// the token is cancelled (the configured intervals have a 10 s minimum;
/// the test needs faster).
fn drive_cycles(served: &Served) -> tokio_util::sync::DropGuard {
    let stop = CancellationToken::new();
    let exporter = served.exporter.clone();
    let token = stop.clone();
    tokio::spawn(async move {
        while !token.is_cancelled() {
            if exporter.run_cycle(&token).await.is_none() {
                break;
            }
            if exporter.poll_inventory(&token).await.is_none() {
                break;
            }
            tokio::select! {
                _ = token.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    });
    stop.drop_guard()
}

fn label<'a>(v: &'a Value, name: &str) -> &'a str {
    v["labels"][name].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_prometheus_pages_for_the_lost_seat_and_answers_every_dashboard_query() {
    pages_for_the_lost_seat_and_answers_every_dashboard_query(Profile::Full).await;
}

/// The same with `[metrics] per_target = "compact"`: the shipped rules and
/// dashboard work on the per-product families.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_prometheus_pages_and_answers_the_dashboard_in_the_compact_profile() {
    pages_for_the_lost_seat_and_answers_every_dashboard_query(Profile::Compact).await;
}

/// `[metrics] per_target` of a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Profile {
    Full,
    Compact,
}

async fn pages_for_the_lost_seat_and_answers_every_dashboard_query(profile: Profile) {
    let served = scenario_in(match profile {
        Profile::Full => "",
        Profile::Compact => "per_target = \"compact\"",
    })
    .await;
    // One failed token request, so that the token panel has a series.
    served
        .fake
        .add_fault(Fault::times(1, Match::Token, Fault::status(500)));
    let _cycles = drive_cycles(&served);
    let prom = Prometheus::start(served.addr, &repo("contrib/prometheus/alerts.yml")).await;
    let long = Duration::from_secs(120);

    // Prometheus has seen bob holding his seat.
    let bob = format!("msfb_seat_active{{job=\"msfb_seat_exporter\",user=\"{BOB}\"}} == 1");
    eventually("Prometheus to see bob's seat", long, || async {
        let r = prom.query(&bob).await?;
        if r.len() == 1 {
            Ok(())
        } else {
            Err(format!("{r:?}\n{}", prom.log()))
        }
    })
    .await;

    // The Store revokes it.
    served.fake.remove_seat(P, S, BOB);
    let firing = eventually(
        "MsfbSeatLost to fire for bob",
        Duration::from_secs(240),
        || async {
            let alerts = prom.alerts().await?;
            let firing: Vec<Value> = alerts
                .iter()
                .filter(|a| a["state"] == "firing")
                .cloned()
                .collect();
            if firing
                .iter()
                .any(|a| label(a, "alertname") == "MsfbSeatLost")
            {
                Ok(firing)
            } else {
                Err(format!("{alerts:?}"))
            }
        },
    )
    .await;
    // That alert, for that user, and nothing else: carol's failing checks
    // are not a lost seat.
    assert_eq!(firing.len(), 1, "{firing:#?}");
    let alert = &firing[0];
    assert_eq!(label(alert, "alertname"), "MsfbSeatLost");
    assert_eq!(label(alert, "user"), BOB);
    assert_eq!(label(alert, "product_id"), P);
    assert_eq!(label(alert, "sku_id"), S);
    assert_eq!(label(alert, "severity"), "critical");
    assert_eq!(
        alert["annotations"]["summary"],
        format!("{BOB} has no seat for Contoso Notes ({P}/{S})")
    );
    let lost_any_state: Vec<String> = prom
        .alerts()
        .await
        .unwrap()
        .iter()
        .filter(|a| label(a, "alertname") == "MsfbSeatLost")
        .map(|a| label(a, "user").to_owned())
        .collect();
    assert_eq!(lost_any_state, [BOB]);

    // A minute and more of the inventory in Prometheus, with seats to
    // spare: no capacity or inventory alert, not even pending.
    let inventory_alerts: Vec<Value> = prom
        .alerts()
        .await
        .unwrap()
        .into_iter()
        .filter(|a| INVENTORY_ALERTS.contains(&label(a, "alertname")))
        .collect();
    assert!(inventory_alerts.is_empty(), "{inventory_alerts:#?}");

    // What Prometheus stores is the profile's: in compact no per-target
    // check_success, and failing checks per product.
    let per_target = prom.query("msfb_seat_check_success").await.unwrap();
    let per_product = prom.query("msfb_seat_checks_failing").await.unwrap();
    match profile {
        Profile::Full => assert!(per_target.len() == 4 && per_product.is_empty()),
        Profile::Compact => assert!(per_target.is_empty() && per_product.len() == 2),
    }

    dashboard_queries_return_data(&prom, profile).await;

    // The Store runs short: Contoso Notes keeps 2 of 50 seats (4%), P2
    // none. The rules match what the exporter really exports (lower-cased
    // status and policy, the product name), so both alerts go pending at
    // once (their `for` is far beyond this test) with the right words.
    served.fake.set_inventory(
        P,
        S,
        FakeInventory {
            seat_capacity: 50,
            available_seats: Some(2),
            ..FakeInventory::default()
        },
    );
    served.fake.set_inventory(
        P2,
        S2,
        FakeInventory {
            seat_capacity: 20,
            available_seats: Some(0),
            ..FakeInventory::default()
        },
    );
    let pending = eventually(
        "MsfbSeatsLow and MsfbSeatsExhausted to be pending",
        long,
        || async {
            let alerts = prom.alerts().await?;
            let mut found: Vec<(String, String, String, String)> = alerts
                .iter()
                .filter(|a| INVENTORY_ALERTS.contains(&label(a, "alertname")))
                .map(|a| {
                    (
                        label(a, "alertname").to_owned(),
                        label(a, "product_id").to_owned(),
                        a["state"].as_str().unwrap_or("").to_owned(),
                        a["annotations"]["summary"]
                            .as_str()
                            .unwrap_or("")
                            .to_owned(),
                    )
                })
                .collect();
            found.sort();
            if found.len() == 2 {
                Ok(found)
            } else {
                Err(format!("{alerts:?}"))
            }
        },
    )
    .await;
    assert_eq!(
        pending,
        [
            (
                "MsfbSeatsExhausted".to_owned(),
                P2.to_owned(),
                "pending".to_owned(),
                format!("No seats left for ({P2}/{S2})"),
            ),
            (
                "MsfbSeatsLow".to_owned(),
                P.to_owned(),
                "pending".to_owned(),
                format!("Seats running low for Contoso Notes ({P}/{S}): 2 left"),
            ),
        ]
    );
}

/// Every expression of the shipped dashboard, with its variables set as
/// Grafana would, returns data from a Prometheus that scraped the exporter
/// (called once a seat has been lost and checks have failed, so that the
/// "lost" and "error" panels have something to show). The panels that end
/// in `or vector(0)` always return data, so theirs must be the number the
/// scenario gives, counted from series that exist.
async fn dashboard_queries_return_data(prom: &Prometheus, profile: Profile) {
    let text = std::fs::read_to_string(repo("contrib/grafana/msfb_seat_exporter.json")).unwrap();
    let dash: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(dash["uid"], "msfb-seat-exporter");
    let vars = dash["templating"]["list"].as_array().unwrap();
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("variable {name}"))
    };
    assert_eq!(var("datasource")["type"], "datasource");
    assert_eq!(var("datasource")["query"], "prometheus");
    assert_eq!(var("product")["includeAll"], true);
    let all = var("product")["allValue"].as_str().unwrap().to_owned();

    // The variables' own queries: label_values(selector, label).
    for name in ["job", "product"] {
        let q = var(name)["query"]["query"].as_str().unwrap();
        assert_eq!(var(name)["datasource"]["uid"], "${datasource}", "{name}");
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
            .unwrap_or_else(|| panic!("{name}: {q}"));
        let (selector, label) = inner.rsplit_once(',').unwrap();
        let selector = selector.replace("$job", "msfb_seat_exporter");
        let values = prom.label_values(label.trim(), &selector).await.unwrap();
        assert!(!values.is_empty(), "variable {name}: {q} has no values");
        if name == "product" {
            let mut got: Vec<&str> = values.iter().filter_map(Value::as_str).collect();
            got.sort_unstable();
            assert_eq!(got, [P, P2]);
        }
    }

    let mut exprs = Vec::new();
    for panel in dash["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap();
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        for target in panel["targets"].as_array().unwrap() {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
            exprs.push((
                title.to_owned(),
                target["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    let titles: Vec<&str> = exprs.iter().map(|(t, _)| t.as_str()).collect();
    for wanted in [
        "Seats by state per product",
        "Users without a seat",
        "Check errors by code and reason",
        "Upstream latency",
        "Poll cycle duration",
        "Token expiry",
        "Inventory age",
        "Products not in inventory",
        "Listings failing",
        "Capacity vs assigned",
        "Available seats",
        "Seat inventory",
        "Listing pages (list mode)",
        "Failed listings by code (list mode)",
    ] {
        assert!(titles.contains(&wanted), "no panel {wanted:?}");
    }
    let mut checked_or_zero = std::collections::BTreeSet::new();
    for product in [all.as_str(), P] {
        for (title, expr) in &exprs {
            let q = expr
                .replace("$__rate_interval", "1m")
                .replace("$__range", "5m")
                .replace("$job", "msfb_seat_exporter")
                .replace("$product", product);
            assert!(!q.contains('$'), "{title}: unknown variable in {q}");
            let result = prom
                .query(&q)
                .await
                .unwrap_or_else(|e| panic!("{title}: {q}: {e}"));
            assert!(
                !result.is_empty(),
                "{title} (product {product}): no data for {q}"
            );
            // `or vector(0)` answers even when the expression before it
            // matches nothing (a misspelt metric or label included): check
            // that number, and that the expression counts real series.
            let Some(inner) = q.strip_suffix(" or vector(0)") else {
                continue;
            };
            let at_all = product == all;
            let (want, condition, series) = or_zero_expectation(title, at_all, profile);
            checked_or_zero.insert(title.as_str());
            let ctx = format!("{title} (product {product})");
            assert_eq!(single_value(&result), want, "{ctx}: {q} gave {result:?}");
            let matched = prom.query(inner).await.unwrap();
            if want > 0.0 {
                assert_eq!(
                    single_value(&matched),
                    want,
                    "{ctx}: {inner} gave {matched:?}"
                );
            } else {
                assert!(matched.is_empty(), "{ctx}: {inner} gave {matched:?}");
            }
            // Without its condition, the count is of every series the
            // panel looks at.
            let unconditional = inner.replace(condition, "");
            assert_ne!(unconditional, inner, "{ctx}: {condition:?} not in {inner}");
            let all_series = prom.query(&unconditional).await.unwrap();
            assert_eq!(
                single_value(&all_series),
                series,
                "{ctx}: {unconditional} gave {all_series:?}"
            );
        }
    }
    assert_eq!(
        checked_or_zero.into_iter().collect::<Vec<_>>(),
        [
            "Failing checks",
            "Listings failing",
            "Products not in inventory"
        ],
        "the panels that end in `or vector(0)`"
    );
}

/// For a panel ending in `or vector(0)`, with the product variable at All
/// (`at_all`) or at `P`: the number it must show in the scenario, the
/// condition that picks what it counts, and how many series it counts
/// without that condition. carol's checks (P2) always fail; P (list mode)
/// and P2 are both in the inventory, active; P's one failed listing is long
/// past when the dashboard is checked.
fn or_zero_expectation(title: &str, at_all: bool, profile: Profile) -> (f64, &'static str, f64) {
    match (title, at_all) {
        // Full: carol, of four targets (two of them P's).
        ("Failing checks", true) if profile == Profile::Full => (1.0, " == 0", 4.0),
        ("Failing checks", false) if profile == Profile::Full => (0.0, " == 0", 2.0),
        // Compact: the sum over the products' failing checks (carol's),
        // which exists and is 0 for P alone.
        ("Failing checks", true) => (1.0, " > 0", 1.0),
        ("Failing checks", false) => (0.0, " > 0", 0.0),
        // Two products in the inventory, one of them P.
        ("Products not in inventory", true) => (0.0, ",status=~\"missing|removed\"", 2.0),
        ("Products not in inventory", false) => (0.0, ",status=~\"missing|removed\"", 1.0),
        // Only P lists its seats.
        ("Listings failing", _) => (0.0, " == 0", 1.0),
        _ => panic!("{title}: no expectation for a panel ending in `or vector(0)`"),
    }
}

/// The value of a one-sample instant vector; NaN for anything else (so
/// that it equals nothing).
fn single_value(result: &[Value]) -> f64 {
    match result {
        [one] => one["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN),
        _ => f64::NAN,
    }
}

/// A scraper that only speaks the text format, in front of `exporter`: it
/// forwards each GET with `Accept: text/plain;version=0.0.4` (what
/// Prometheus sends with `scrape_protocols: [PrometheusText0.0.4]`, which
/// Debian's Prometheus 2.42 does not have yet) and records the content
/// types it got back.
async fn text_only_proxy(
    exporter: std::net::SocketAddr,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use axum::response::IntoResponse as _;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let http = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let (http, record) = (http.clone(), record.clone());
        async move {
            let resp = http
                .get(format!("http://{exporter}{uri}"))
                .header("accept", "text/plain;version=0.0.4")
                .send()
                .await
                .expect("exporter answers");
            let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
            record.lock().unwrap().push(content_type.clone());
            let body = resp.bytes().await.expect("body");
            ([(axum::http::header::CONTENT_TYPE, content_type)], body).into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

/// Debian's Prometheus 2.42 scrapes OpenMetrics by default and stores each
/// `_created` line as a series of its own (`…_created`); a scraper that
/// asks for the text format gets the same samples without them. (Newer
/// Prometheus versions with created-timestamp ingestion turn `_created`
/// into a zero sample at the creation time instead: docs/web-config.md.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_prometheus_reads_both_formats_and_stores_created_as_its_own_series() {
    let served = scenario().await;
    let _cycles = drive_cycles(&served);
    let (proxy, seen) = text_only_proxy(served.addr).await;
    let prom = Prometheus::start_jobs(
        &[("openmetrics", served.addr), ("text", proxy)],
        &repo("contrib/prometheus/alerts.yml"),
    )
    .await;
    let long = Duration::from_secs(120);
    // carol's checks fail with 503: a counter series that appeared with
    // its first increment, in both jobs.
    let errors = |job: &str| {
        format!("msfb_seat_check_errors_total{{job=\"{job}\",user=\"{CAROL}\",code=\"503\"}}")
    };
    for job in ["openmetrics", "text"] {
        eventually(&format!("{job}: carol's errors"), long, || async {
            let r = prom.query(&errors(job)).await?;
            if r.len() == 1 {
                Ok(())
            } else {
                Err(format!("{r:?}\n{}", prom.log()))
            }
        })
        .await;
    }
    let created = prom
        .query(&format!(
            "msfb_seat_check_errors_created{{user=\"{CAROL}\",code=\"503\"}}"
        ))
        .await
        .unwrap();
    assert_eq!(created.len(), 1, "{created:#?}");
    assert_eq!(created[0]["metric"]["job"], "openmetrics");
    let at: f64 = created[0]["value"][1].as_str().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(at > now - 600.0 && at <= now, "created at {at}, now {now}");
    // Counters exported from the start at 0 have no _created, in any job.
    for name in ["msfb_seat_lost_created", "msfb_poll_cycles_created"] {
        assert_eq!(
            prom.query(name).await.unwrap(),
            Vec::<Value>::new(),
            "{name}"
        );
    }
    // Both jobs are up and read the same families (info families keep
    // their _info name).
    for query in [
        "up{job=\"openmetrics\"} == 1",
        "up{job=\"text\"} == 1",
        "msfb_product_info{job=\"openmetrics\"}",
        "msfb_product_info{job=\"text\"}",
        "msfb_seat_exporter_shard_count{job=\"openmetrics\"} == 1",
        "msfb_seat_exporter_shard_count{job=\"text\"} == 1",
    ] {
        assert!(!prom.query(query).await.unwrap().is_empty(), "{query}");
    }
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty());
    assert!(
        seen.iter()
            .all(|t| t == "text/plain; version=0.0.4; charset=utf-8"),
        "{seen:?}"
    );
}
