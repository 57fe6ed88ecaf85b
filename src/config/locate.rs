//! Finding where a key sits in the TOML source, so that every configuration
//! error can name the line and the key (SPEC §2).
//!
//! serde tells us *what* is wrong and, for type errors, a byte span; our own
//! checks know the key path. This module translates in both directions over a
//! spanned parse of the same text: a key path to a line, and a byte offset to
//! the deepest key path that contains it.

use std::fmt;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    Key(String),
    Index(usize),
}

/// A dotted key path such as `products[1].users[0]` or `poll.interval`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyPath(Vec<Segment>);

impl KeyPath {
    pub(crate) fn root() -> Self {
        KeyPath(Vec::new())
    }

    /// The path `a.b.c` from its dotted parts (no indexes).
    pub(crate) fn of(dotted: &str) -> Self {
        KeyPath(
            dotted
                .split('.')
                .map(|s| Segment::Key(s.to_owned()))
                .collect(),
        )
    }

    pub(crate) fn key(&self, key: &str) -> Self {
        let mut next = self.clone();
        next.0.push(Segment::Key(key.to_owned()));
        next
    }

    pub(crate) fn index(&self, index: usize) -> Self {
        let mut next = self.clone();
        next.0.push(Segment::Index(index));
        next
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Segment::Key(k) if i == 0 => write!(f, "{k}")?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A parsed document that answers "which line?" and "which key?".
pub(crate) struct SourceMap<'a> {
    text: &'a str,
    root: Spanned<DeTable<'a>>,
}

impl<'a> SourceMap<'a> {
    /// Parses `text` leniently; a document with syntax errors still maps
    /// whatever part of it could be read.
    pub(crate) fn new(text: &'a str) -> Self {
        let (root, _errors) = DeTable::parse_recoverable(text);
        SourceMap { text, root }
    }

    /// The document.
    pub(crate) fn text(&self) -> &'a str {
        self.text
    }

    /// 1-based line of a byte offset.
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// The line where `path` is written; for a key that is missing, the line
    /// of the closest table that exists (line 1 for the document itself).
    pub(crate) fn line_of_path(&self, path: &KeyPath) -> usize {
        let mut offset = None;
        let mut table: Option<&DeTable<'_>> = Some(self.root.get_ref());
        let mut array: Option<&[Spanned<DeValue<'_>>]> = None;
        for seg in &path.0 {
            let found: Option<&Spanned<DeValue<'_>>> = match seg {
                Segment::Key(k) => table.and_then(|t| {
                    t.iter()
                        .find(|(key, _)| key.get_ref() == k)
                        .map(|(key, value)| {
                            offset = Some(key.span().start);
                            value
                        })
                }),
                Segment::Index(n) => array.and_then(|a| a.get(*n)).inspect(|value| {
                    offset = Some(value.span().start);
                }),
            };
            let Some(value) = found else { break };
            table = value.get_ref().as_table();
            array = match value.get_ref() {
                DeValue::Array(a) => Some(a.as_ref()),
                _ => None,
            };
        }
        offset.map_or(1, |o| self.line_of(o))
    }

    /// The deepest key path whose key or value covers `offset`.
    pub(crate) fn path_at(&self, offset: usize) -> KeyPath {
        let mut path = KeyPath::root();
        descend_table(self.root.get_ref(), offset, &mut path);
        path
    }
}

/// A `key = value` line whose value is a string written without quotes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Unquoted {
    /// The key's full path (its table from the headers above it).
    pub key: KeyPath,
    /// The key as written on the line.
    pub name: String,
    /// The value as written, without a trailing comment.
    pub value: String,
}

/// Whether 1-based `line` of `text` is `name = value` with a value that is
/// not TOML as written but is as a quoted string (`:10043`, `5m`,
/// `contoso.onmicrosoft.com`): then the fix is to quote it.
pub(crate) fn unquoted_string(text: &str, line: usize) -> Option<Unquoted> {
    let lines: Vec<&str> = text.lines().collect();
    let written = lines.get(line.checked_sub(1)?)?;
    let (name, value) = written.split_once('=')?;
    let name = name.trim();
    let bare_key = |k: &str| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if !bare_key(name) {
        return None;
    }
    let value = value.split(" #").next().unwrap_or("").trim();
    if value.is_empty() || value.starts_with(['"', '\'']) {
        return None;
    }
    let parses = |v: &str| toml::from_str::<toml::Table>(&format!("x = {v}\n")).is_ok();
    if parses(value) || !parses(&format!("{value:?}")) {
        return None;
    }
    Some(Unquoted {
        key: table_above(&lines[..line - 1]).key(name),
        name: name.to_owned(),
        value: value.to_owned(),
    })
}

/// The table that the lines after `lines` belong to: the last `[a.b]` or
/// `[[a]]` header, with the index of that array-of-tables entry.
fn table_above(lines: &[&str]) -> KeyPath {
    let Some(last) = lines.iter().rev().find(|l| l.trim_start().starts_with('[')) else {
        return KeyPath::root();
    };
    let last = last.trim();
    if let Some(name) = last
        .strip_prefix("[[")
        .and_then(|r| r.split("]]").next())
        .map(str::trim)
    {
        let index = lines
            .iter()
            .filter(|l| {
                l.trim()
                    .strip_prefix("[[")
                    .and_then(|r| r.split("]]").next())
                    .is_some_and(|n| n.trim() == name)
            })
            .count();
        return KeyPath::of(name).index(index.saturating_sub(1));
    }
    last.strip_prefix('[')
        .and_then(|r| r.split(']').next())
        .map_or_else(KeyPath::root, |name| KeyPath::of(name.trim()))
}

fn covers(span: &std::ops::Range<usize>, offset: usize) -> bool {
    span.start <= offset && offset < span.end.max(span.start + 1)
}

fn descend_table(table: &DeTable<'_>, offset: usize, path: &mut KeyPath) {
    for (key, value) in table.iter() {
        if covers(&key.span(), offset) {
            path.0.push(Segment::Key(key.get_ref().to_string()));
            return;
        }
        if covers(&value.span(), offset) {
            path.0.push(Segment::Key(key.get_ref().to_string()));
            descend_value(value, offset, path);
            return;
        }
    }
    // Tables written as `[header]` sections may have spans that cover only
    // their header; look inside them too.
    for (key, value) in table.iter() {
        let mut inner = path.clone();
        inner.0.push(Segment::Key(key.get_ref().to_string()));
        let before = inner.0.len();
        descend_value(value, offset, &mut inner);
        if inner.0.len() > before {
            *path = inner;
            return;
        }
    }
}

fn descend_value(value: &Spanned<DeValue<'_>>, offset: usize, path: &mut KeyPath) {
    match value.get_ref() {
        DeValue::Table(t) => descend_table(t, offset, path),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let mut inner = path.clone();
                inner.0.push(Segment::Index(i));
                let before = inner.0.len();
                descend_value(item, offset, &mut inner);
                if inner.0.len() > before || covers(&item.span(), offset) {
                    *path = inner;
                    return;
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
[auth]
tenant_id = \"t\"

[poll]
interval = \"5s\"

[[products]]
product_id = \"A\"
users = [\"a@b.c\", \"x\"]

[[products]]
product_id = \"B\"
";

    #[test]
    fn paths_resolve_to_their_lines() {
        let map = SourceMap::new(DOC);
        assert_eq!(map.line_of_path(&KeyPath::of("poll.interval")), 5);
        assert_eq!(map.line_of_path(&KeyPath::of("auth.tenant_id")), 2);
        let p = KeyPath::of("products").index(1).key("product_id");
        assert_eq!(map.line_of_path(&p), 12);
        let u = KeyPath::of("products").index(0).key("users").index(1);
        assert_eq!(map.line_of_path(&u), 9);
        // A missing key points at the closest existing parent.
        assert_eq!(map.line_of_path(&KeyPath::of("poll.shard_count")), 4);
        assert_eq!(map.line_of_path(&KeyPath::of("web.listen_address")), 1);
    }

    #[test]
    fn unquoted_strings_are_recognised_with_their_table() {
        let doc = "[web]\nlisten_address = [::]:10043\n[[products]]\nsku_id = 1\n\
                   [[products]]\nname = Contoso Notes # ours\n[poll]\ninterval = 5m\n";
        let u = unquoted_string(doc, 2).unwrap();
        assert_eq!(u.key.to_string(), "web.listen_address");
        assert_eq!(u.value, "[::]:10043");
        let u = unquoted_string(doc, 6).unwrap();
        assert_eq!(u.key.to_string(), "products[1].name");
        assert_eq!(u.value, "Contoso Notes");
        assert_eq!(
            unquoted_string(doc, 8).unwrap().key.to_string(),
            "poll.interval"
        );
        // A number is TOML as written; a header is no key.
        assert_eq!(unquoted_string(doc, 4), None);
        assert_eq!(unquoted_string(doc, 3), None);
    }

    #[test]
    fn offsets_resolve_to_paths() {
        let map = SourceMap::new(DOC);
        let at = DOC.find("\"5s\"").unwrap();
        assert_eq!(map.path_at(at).to_string(), "poll.interval");
        let at = DOC.find("\"x\"").unwrap();
        assert_eq!(map.path_at(at).to_string(), "products[0].users[1]");
        let at = DOC.find("\"B\"").unwrap();
        assert_eq!(map.path_at(at).to_string(), "products[1].product_id");
    }
}
