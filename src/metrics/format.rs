//! Which exposition format a scrape gets: the Prometheus text format 0.0.4,
//! or OpenMetrics 1.0.0 when the scraper's `Accept` header prefers it
//! (SPEC §14). Prometheus asks for OpenMetrics first by default, and only
//! OpenMetrics carries `_created`, `# UNIT` and the `info` type; everyone
//! else (curl, a browser, older scrapers) keeps getting the text format.
//!
//! The choice follows HTTP content negotiation (RFC 9110 §12.5.1): each
//! media range has a quality (`q`, default 1, `q=0` means "not at all"), and
//! OpenMetrics is served only when its best quality is strictly higher than
//! the best quality of anything that would give the text format (`text/plain`,
//! `text/*`, `*/*`). A tie is no preference, so it gets the text format, as
//! does a header that cannot be read.

/// Prometheus text format 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// OpenMetrics text 1.0.0.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// An exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Text format 0.0.4 (SPEC §6).
    #[default]
    Text,
    /// OpenMetrics 1.0.0: counters as families without `_total`, `_created`
    /// for counters that appear with their first increment, `# UNIT`,
    /// `info` families, and a final `# EOF`.
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` of an answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }

    /// The format for a request with this `Accept` header (none: text).
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let (mut openmetrics, mut text) = (0.0_f64, 0.0_f64);
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let mut q = 1.0;
            let mut version = None;
            for param in parts {
                let Some((name, value)) = param.split_once('=') else {
                    continue;
                };
                let value = value.trim().trim_matches('"');
                match name.trim().to_ascii_lowercase().as_str() {
                    // An unreadable quality counts as "not acceptable".
                    "q" => {
                        q = value
                            .parse::<f64>()
                            .ok()
                            .filter(|q| q.is_finite())
                            .unwrap_or(0.0)
                    }
                    "version" => version = Some(value.to_owned()),
                    _ => {}
                }
            }
            let q = q.clamp(0.0, 1.0);
            match media.as_str() {
                // Prometheus asks for 1.0.0 and for the older 0.0.1, which
                // it parses alike; a future major version is not ours.
                "application/openmetrics-text"
                    if matches!(version.as_deref(), None | Some("1.0.0" | "0.0.1")) =>
                {
                    openmetrics = openmetrics.max(q);
                }
                "text/plain" if matches!(version.as_deref(), None | Some("0.0.4")) => {
                    text = text.max(q);
                }
                "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics > text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrapers_get_what_they_prefer() {
        for (accept, want) in [
            // Prometheus 2.x's default scrape Accept header.
            (
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                Format::OpenMetrics,
            ),
            // Prometheus 3.x.
            (
                "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
                Format::OpenMetrics,
            ),
            // Prometheus with scrape_protocols: [PrometheusText0.0.4].
            ("text/plain;version=0.0.4;q=1,*/*;q=0.1", Format::Text),
            // curl.
            ("*/*", Format::Text),
            // A browser.
            (
                "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
                Format::Text,
            ),
            // Ties are no preference.
            (
                "application/openmetrics-text;q=0.5, text/plain;q=0.5",
                Format::Text,
            ),
            ("application/openmetrics-text, */*", Format::Text),
            (
                "text/plain;q=0.4, application/openmetrics-text; q=0.5",
                Format::OpenMetrics,
            ),
            ("application/openmetrics-text", Format::OpenMetrics),
            (
                "APPLICATION/OpenMetrics-Text; Version=\"1.0.0\"",
                Format::OpenMetrics,
            ),
            // Refused, unknown versions, garbage.
            ("application/openmetrics-text;q=0", Format::Text),
            ("application/openmetrics-text;version=2.0.0", Format::Text),
            ("application/openmetrics-text;q=banana", Format::Text),
            ("application/json", Format::Text),
            ("", Format::Text),
        ] {
            assert_eq!(Format::negotiate(Some(accept)), want, "{accept}");
        }
        assert_eq!(Format::negotiate(None), Format::Text);
    }
}
