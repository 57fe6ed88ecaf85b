//! Reading the exposition back: the samples of a scrape with their labels
//! and values (enough of the text format for our own output), and lookups
//! by the labels the tests care about.

use std::collections::BTreeMap;

use super::harness::{P, S};

/// One parsed sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed exposition (enough of the format for our own output).
#[derive(Debug, Clone)]
pub struct Scrape {
    pub text: String,
    pub samples: Vec<Sample>,
}

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').expect("sample line");
                let value: f64 = match value {
                    "+Inf" => f64::INFINITY,
                    "-Inf" => f64::NEG_INFINITY,
                    v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
                };
                let (name, labels) = match series.split_once('{') {
                    Some((n, rest)) => (n, parse_labels(rest.trim_end_matches('}'))),
                    None => (series, BTreeMap::new()),
                };
                Sample {
                    name: name.to_owned(),
                    labels,
                    value,
                }
            })
            .collect();
        Scrape {
            text: text.to_owned(),
            samples,
        }
    }

    /// Samples of `name` whose labels include all of `labels`.
    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    /// The one value of `name` with `labels`, or `None`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found = self.find(name, labels);
        assert!(found.len() <= 1, "ambiguous: {name} {labels:?}: {found:?}");
        found.first().map(|s| s.value)
    }

    /// Asserts that `family` has a HELP line and at least one sample.
    pub fn assert_family(&self, family: &str) {
        assert!(
            self.text.contains(&format!("# HELP {family} ")) && !self.find(family, &[]).is_empty(),
            "{family} missing"
        );
    }

    /// `msfb_seat_active` of user `u` on the default product.
    pub fn active(&self, u: &str) -> Option<f64> {
        self.value(
            "msfb_seat_active",
            &[("product_id", P), ("sku_id", S), ("user", u)],
        )
    }

    /// `msfb_seat_lost_total` of user `u`.
    pub fn lost(&self, u: &str) -> Option<f64> {
        self.value(
            "msfb_seat_lost_total",
            &[("product_id", P), ("sku_id", S), ("user", u)],
        )
    }

    /// `msfb_seat_check_success` of user `u`.
    pub fn success(&self, u: &str) -> Option<f64> {
        self.value(
            "msfb_seat_check_success",
            &[("product_id", P), ("sku_id", S), ("user", u)],
        )
    }

    /// `msfb_seat_check_errors_total` of user `u` with `code` and `reason`.
    pub fn errors(&self, u: &str, code: &str, reason: &str) -> Option<f64> {
        self.value(
            "msfb_seat_check_errors_total",
            &[("user", u), ("code", code), ("reason", reason)],
        )
    }

    /// `msfb_api_requests_total` for `operation` and `code`.
    pub fn api(&self, operation: &str, code: &str) -> Option<f64> {
        self.value(
            "msfb_api_requests_total",
            &[("operation", operation), ("code", code)],
        )
    }
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        if key.is_empty() {
            break;
        }
        assert_eq!(chars.next(), Some('"'), "label value must be quoted in {s}");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c) => value.push(c),
                    None => break,
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.insert(key.trim_start_matches(',').to_owned(), value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    out
}
