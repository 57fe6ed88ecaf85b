//! The shipped alert rules are portable (SPEC §15): severities that
//! kube-prometheus-stack routes on, a `runbook_url` to a heading of
//! docs/alerts.md under Cargo.toml's `repository` for every alert, and no
//! `job` matcher except in the one rule that needs `up`.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::util::programs::{repo, yaml_documents};

/// Every alerting rule of contrib/prometheus/alerts.yml.
fn alerts() -> Vec<Value> {
    let docs = yaml_documents(&repo("contrib/prometheus/alerts.yml"));
    docs[0]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").clone())
        .filter(|r| r["alert"].is_string())
        .collect()
}

/// The anchors GitHub gives the headings of a Markdown file: lower case,
/// punctuation other than `-` and `_` dropped, spaces as `-`.
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut fenced = false;
    let mut found = BTreeSet::new();
    for line in markdown.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        }
        let Some(title) = line.strip_prefix('#').filter(|_| !fenced) else {
            continue;
        };
        let title = title.trim_start_matches('#').trim().to_lowercase();
        let anchor: String = title
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        found.insert(anchor);
    }
    found
}

#[test]
fn every_alert_is_portable_and_links_its_runbook() {
    let manifest: toml::Table = std::fs::read_to_string(repo("Cargo.toml"))
        .unwrap()
        .parse()
        .expect("Cargo.toml");
    let repository = manifest["package"]["repository"]
        .as_str()
        .expect("Cargo.toml names its repository");
    assert!(
        repository.starts_with("https://github.com/"),
        "{repository}"
    );
    let runbooks = std::fs::read_to_string(repo("docs/alerts.md")).unwrap();
    let headings = anchors(&runbooks);
    let prefix = format!("{repository}/blob/main/docs/alerts.md#");
    let rules = alerts();
    assert!(rules.len() >= 15, "{} alerts", rules.len());
    for rule in &rules {
        let name = rule["alert"].as_str().unwrap();
        let severity = &rule["labels"]["severity"];
        assert!(
            ["critical", "warning", "info"]
                .iter()
                .any(|s| severity == s),
            "{name}: severity {severity}"
        );
        let url = rule["annotations"]["runbook_url"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no runbook_url"));
        let anchor = url
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{name}: {url} is not under {prefix}"));
        assert!(
            headings.contains(anchor),
            "{name}: docs/alerts.md has no heading with anchor #{anchor}"
        );
        assert_eq!(anchor, name.to_lowercase(), "{name}: its own heading");
        let expr = rule["expr"].as_str().unwrap();
        let matches_job = ["job=", "job!=", "job=~", "job!~", "job ="]
            .iter()
            .any(|m| expr.contains(m));
        assert_eq!(
            matches_job,
            name == "MsfbExporterDown",
            "{name}: only the rule on `up` may match a job label\n{expr}"
        );
    }
    // The exception is the documented one.
    assert!(headings.contains("the-one-job-matcher"));
}

#[test]
fn github_anchors_are_computed_as_github_does() {
    let found = anchors(
        "# Alert runbooks\n## MsfbSeatLost\n```\n# not a heading\n```\n### The one job matcher\n",
    );
    let want: BTreeSet<String> = ["alert-runbooks", "msfbseatlost", "the-one-job-matcher"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(found, want);
}
