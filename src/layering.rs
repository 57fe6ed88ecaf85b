//! The layer rule of `lib.rs`, checked: a module uses only the modules
//! listed before it in the header's "Layers" list. The list is read from
//! the header itself and every `crate::` path from the sources, so the
//! documented order and the real one cannot drift apart.
//!
//! A path counts wherever it appears outside a comment: in `use`, in code,
//! in tests. `use crate::{a::X, b}` counts both `a` and `b`; a root
//! re-export (`crate::Exporter`) counts as the module it comes from.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The module names of the header's numbered "Layers" list, lowest first.
fn layers(lib: &str) -> Vec<String> {
    lib.lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .filter_map(|l| {
            let l = l.trim_start();
            let (number, rest) = l.split_once(". [`")?;
            number.parse::<u32>().ok()?;
            Some(rest.split_once('`')?.0.to_owned())
        })
        .collect()
}

/// The modules `lib.rs` declares, and what its `pub use` lines re-export
/// (item name → module).
fn declared(lib: &str) -> (BTreeSet<String>, Vec<(String, String)>) {
    let mut modules = BTreeSet::new();
    let mut reexports = Vec::new();
    for line in lib.lines() {
        let line = line.trim();
        if let Some(name) = line
            .strip_prefix("pub mod ")
            .or_else(|| line.strip_prefix("mod "))
        {
            modules.insert(name.trim_end_matches(';').to_owned());
        } else if let Some(path) = line.strip_prefix("pub use ") {
            let path = path.trim_end_matches(';');
            if let Some((module, item)) = path.split_once("::") {
                reexports.push((item.to_owned(), module.to_owned()));
            }
        }
    }
    (modules, reexports)
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("src/ is readable").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file under `src/` belongs to; `None` for the
/// crate root and the binary.
fn owner(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    match first {
        "lib.rs" | "bin" => None,
        f => Some(f.trim_end_matches(".rs").to_owned()),
    }
}

/// A line without its `//` comment (a `//` inside a string literal is
/// taken as a comment too, which only ever hides a path, never invents
/// one).
fn code(line: &str) -> &str {
    line.split_once("//").map_or(line, |(code, _)| code)
}

/// The first segment of every `crate::` path in `text`, with the items of
/// a `crate::{…}` group each counted.
fn crate_paths(text: &str) -> Vec<String> {
    let code: String = text.lines().map(|l| format!("{}\n", code(l))).collect();
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let preceded = code[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$');
        if preceded {
            continue;
        }
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let end = group
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '{' => 1,
                        '}' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map_or(group.len(), |(i, _)| i);
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in group[..end].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.push(ident(&group[start..i]));
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            found.push(ident(&group[start..end]));
        } else {
            found.push(ident(rest));
        }
    }
    found.retain(|s| !s.is_empty() && s != "self");
    found
}

/// Every import from `src` that runs upwards, as `file: module -> module`,
/// and every declared module missing from the list.
fn violations(src: &Path) -> Vec<String> {
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs is readable");
    let order = layers(&lib);
    let (modules, reexports) = declared(&lib);
    let mut problems: Vec<String> = modules
        .iter()
        .filter(|m| *m != "layering" && !order.contains(m))
        .map(|m| format!("module {m} is not in the Layers list of src/lib.rs"))
        .collect();
    let rank = |m: &str| order.iter().position(|o| o == m);
    let mut files = Vec::new();
    sources(src, &mut files);
    files.sort();
    for file in files {
        let Some(from) = owner(src, &file) else {
            continue;
        };
        let Some(from_rank) = rank(&from) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("source is readable");
        for first in crate_paths(&text) {
            let to = reexports
                .iter()
                .find(|(item, _)| *item == first)
                .map_or(first.as_str(), |(_, module)| module.as_str());
            if rank(to).is_some_and(|to_rank| to_rank > from_rank) {
                problems.push(format!(
                    "{}: {from} (layer {}) uses {to} (layer {})",
                    file.display(),
                    from_rank + 1,
                    rank(to).map_or(0, |r| r + 1)
                ));
            }
        }
    }
    problems.dedup();
    problems
}

#[test]
fn no_module_uses_a_higher_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let problems = violations(&src);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_list_is_the_header_and_paths_are_read_as_rust_reads_them() {
    let lib = "//! 1. [`config`]: a\n//!    [`config::Config`] more\n//! 2. [`targets`]: b\n\
               //! 10. [`demo`]: c\n";
    assert_eq!(layers(lib), ["config", "targets", "demo"]);
    let text = "use crate::targets::{A, B};\nuse crate::{config::{self, X}, web};\n\
                // crate::daemon in a comment\nlet a = crate::store::f(); // crate::demo\n\
                let b = $crate::x; not_crate::y;\n";
    assert_eq!(crate_paths(text), ["targets", "config", "web", "store"]);
}
