//! Label values as the exposition writes them, prepared with the table:
//! the escaping rule of the text format (backslash, quote, newline) and
//! each group's escaped `user` labels, built once per table instead of once
//! per scrape.

use std::sync::Arc;

use super::Target;

/// Whether a label value has a character that must be escaped.
#[inline]
fn needs_escape(s: &str) -> bool {
    s.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n'))
}

/// Appends `s` escaped as a label value (backslash, quote, newline).
pub fn escape_label_value(out: &mut String, s: &str) {
    if !needs_escape(s) {
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

/// The escaped `user` label values of a group's configured targets, back to
/// back in one string, built with the table. A scrape reads them in order
/// instead of following a pointer to each target's own string: at 100k
/// targets those cache misses were a quarter of the render time. Costs about
/// 30 bytes a target.
#[derive(Debug, Default)]
pub struct UserLabels {
    text: String,
    /// End of each label in `text`; label `i` starts where `i - 1` ends.
    ends: Vec<u32>,
}

impl UserLabels {
    pub(super) fn build(targets: &[Arc<Target>]) -> UserLabels {
        let mut text = String::with_capacity(targets.iter().map(|t| t.user_label().len()).sum());
        let ends = targets
            .iter()
            .map(|t| {
                escape_label_value(&mut text, t.user_label());
                // A label is bounded by the configuration file size limit
                // (64 MiB), so the total stays far below 4 GiB.
                u32::try_from(text.len()).unwrap_or(u32::MAX)
            })
            .collect();
        UserLabels { text, ends }
    }

    /// All labels, back to back.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Where the label of target `i` lies in [`UserLabels::text`]; empty
    /// past the end.
    pub fn span(&self, i: usize) -> (u32, u32) {
        let end = self.ends.get(i).copied().unwrap_or(0);
        let start = match i {
            0 => 0,
            _ => self.ends.get(i - 1).copied().unwrap_or(end),
        };
        (start, end)
    }
}
