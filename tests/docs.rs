//! The documentation as a reader follows it. Every relative link in the
//! README, `docs/`, `systemd/` and `contrib/` leads to a file of the
//! repository and, for `#anchor`s, to a heading that has that anchor on
//! GitHub; external links are well-formed (they are not fetched: the tests
//! run without internet). The README stays a front door: short, citing no
//! file the repository does not ship, naming the Rust it needs, with a
//! minimal configuration that the exporter accepts.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

/// Docs pages that other engineers are writing on their own branches and
/// that the README already links to. A link to one of these is accepted
/// while the file is missing; once it exists, it is checked like any other
/// (anchors included). Only exactly these files are excused. The lead
/// empties this list after merging those branches.
const EXPECTED_FROM_OTHER_BRANCHES: [&str; 5] = [
    "docs/alerts.md",
    "docs/credentials.md",
    "docs/persistence.md",
    "docs/web-config.md",
    "docs/hostile-peers.md",
];

/// A front door, not the whole house: the rest lives in `docs/`.
const README_MAX_LINES: usize = 250;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The Markdown files a reader of the repository reaches: README.md,
/// docs/*.md, systemd/README.md and every README.md under contrib/.
fn documents() -> Vec<PathBuf> {
    let mut found = vec![root().join("README.md"), root().join("systemd/README.md")];
    for entry in std::fs::read_dir(root().join("docs")).expect("docs/") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            found.push(path);
        }
    }
    let mut dirs = vec![root().join("contrib")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.file_name().is_some_and(|n| n == "README.md") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The lines of `text` outside fenced code blocks, numbered from 1.
fn lines_outside_code_blocks(text: &str) -> Vec<(usize, &str)> {
    let mut in_fence = false;
    let mut lines = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        } else if !in_fence {
            lines.push((index + 1, line));
        }
    }
    lines
}

/// The lines outside code blocks with inline code spans blanked out (a
/// `[x](y)` inside backticks is no link).
fn prose_lines(text: &str) -> Vec<(usize, String)> {
    lines_outside_code_blocks(text)
        .into_iter()
        .map(|(number, line)| {
            let outside_code = line
                .split('`')
                .enumerate()
                .map(|(i, part)| if i % 2 == 0 { part } else { "" })
                .collect::<Vec<_>>()
                .join("``");
            (number, outside_code)
        })
        .collect()
}

/// Link targets on one line: inline links and images `[text](target)`,
/// autolinks `<https://…>` and reference definitions `[name]: target`.
fn link_targets(line: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut rest = line;
    while let Some(start) = rest.find("](") {
        let after = &rest[start + 2..];
        let mut depth = 0usize;
        let end = after
            .char_indices()
            .find(|&(_, c)| match c {
                '(' => {
                    depth += 1;
                    false
                }
                ')' if depth == 0 => true,
                ')' => {
                    depth -= 1;
                    false
                }
                _ => false,
            })
            .map_or(after.len(), |(i, _)| i);
        let inside = after[..end].trim();
        // `(target "title")`: the target is the first word.
        let target = inside.split_whitespace().next().unwrap_or("");
        targets.push(
            target
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned(),
        );
        rest = &after[end..];
    }
    let mut rest = line;
    while let Some(start) = rest.find("<http") {
        let after = &rest[start + 1..];
        let end = after.find('>').unwrap_or(after.len());
        targets.push(after[..end].to_owned());
        rest = &after[end..];
    }
    let trimmed = line.trim_start();
    if trimmed.starts_with('[')
        && let Some((_, target)) = trimmed.split_once("]: ")
    {
        targets.push(target.split_whitespace().next().unwrap_or("").to_owned());
    }
    targets
}

/// GitHub's anchor for a heading: its text as rendered (code spans and
/// link texts kept, markup dropped), lower-cased, spaces to hyphens, every
/// other character that is not a letter, digit, `-` or `_` left out.
fn anchor(heading: &str) -> String {
    let mut rendered = String::new();
    let mut rest = heading;
    // [text](target) renders as text.
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find("](").map(|i| open + i) else {
            break;
        };
        let Some(end) = rest[close..].find(')').map(|i| close + i) else {
            break;
        };
        rendered.push_str(&rest[..open]);
        rendered.push_str(&rest[open + 1..close]);
        rest = &rest[end + 1..];
    }
    rendered.push_str(rest);
    rendered
        .trim()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// Every anchor of a Markdown text, the second of two equal headings
/// getting `-1`, the third `-2`, as on GitHub.
fn anchors(text: &str) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut found = Vec::new();
    for (_, line) in lines_outside_code_blocks(text) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = anchor(line[hashes..].trim().trim_end_matches('#'));
        let count = seen.entry(base.clone()).or_insert(0);
        found.push(if *count == 0 {
            base
        } else {
            format!("{base}-{count}")
        });
        *count += 1;
    }
    found
}

/// `base/relative` without `.` and `..`, or `None` if it leaves the root.
fn resolve(base: &Path, relative: &str) -> Option<PathBuf> {
    let joined = base.join(relative);
    let mut parts: Vec<Component<'_>> = Vec::new();
    for part in joined.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            other => parts.push(other),
        }
    }
    Some(parts.iter().collect())
}

/// The problems of one external link, if any: it must be an absolute
/// http(s) URL with a host and nothing a Markdown renderer would cut off.
fn external_link_problem(target: &str) -> Option<String> {
    match reqwest::Url::parse(target) {
        Ok(url) if url.host_str().is_some_and(|h| !h.is_empty()) && !target.contains(' ') => None,
        Ok(_) => Some(format!("{target}: not a URL with a host")),
        Err(e) => Some(format!("{target}: {e}")),
    }
}

/// Every broken link of the document at `path` (relative to `root`), whose
/// text is `text`, as `file:line: problem`.
fn broken_links(root: &Path, path: &Path, text: &str) -> Vec<String> {
    let name = path
        .strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string();
    let mut problems = Vec::new();
    for (number, line) in prose_lines(text) {
        for target in link_targets(&line) {
            if let Some(problem) = link_problem(root, path, text, &target) {
                problems.push(format!("{name}:{number}: {problem}"));
            }
        }
    }
    problems
}

fn link_problem(root: &Path, path: &Path, text: &str, target: &str) -> Option<String> {
    if target.starts_with("http://") || target.starts_with("https://") {
        return external_link_problem(target);
    }
    if target.is_empty() || target.contains(':') {
        return Some(format!(
            "{target:?}: neither a relative path nor an http(s) URL"
        ));
    }
    let (file, fragment) = match target.split_once('#') {
        Some((file, fragment)) => (file, Some(fragment)),
        None => (target, None),
    };
    let (linked, linked_text) = if file.is_empty() {
        (path.to_owned(), text.to_owned())
    } else {
        let Some(linked) = resolve(path.parent().unwrap_or(root), file) else {
            return Some(format!("{target}: leaves the repository"));
        };
        let Ok(in_repo) = linked.strip_prefix(root) else {
            return Some(format!("{target}: leaves the repository"));
        };
        if !linked.exists() {
            let expected = EXPECTED_FROM_OTHER_BRANCHES
                .iter()
                .any(|e| Path::new(e) == in_repo);
            return (!expected).then(|| format!("{target}: no such file"));
        }
        let text = if linked.is_file() && file.ends_with(".md") {
            read(&linked)
        } else {
            String::new()
        };
        (linked, text)
    };
    let fragment = fragment?;
    if linked.extension().is_none_or(|e| e != "md") {
        return Some(format!(
            "{target}: an anchor into a file that is not Markdown"
        ));
    }
    (!anchors(&linked_text).iter().any(|a| a == fragment))
        .then(|| format!("{target}: no heading with anchor #{fragment}"))
}

#[test]
fn every_link_of_the_documentation_leads_somewhere() {
    let documents = documents();
    assert!(documents.len() >= 8, "documents found: {documents:?}");
    let mut problems = Vec::new();
    for path in &documents {
        problems.extend(broken_links(root(), path, &read(path)));
    }
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

/// The checker itself finds what it must: a missing file, a missing
/// anchor in another file and on the same page, a malformed URL, a path
/// out of the repository; and accepts GitHub's anchors, including a
/// repeated heading's.
#[test]
fn the_link_checker_catches_broken_links() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("docs")).unwrap();
    std::fs::write(
        root.join("docs/page.md"),
        "# A page\n\n## Seat capacity (Get Inventory)\n\n## Several instances: `x@.service`\n\n## Notes\n\n## Notes\n\n```\n## not a heading\n```\n",
    )
    .unwrap();
    let text = "\
[ok](docs/page.md#seat-capacity-get-inventory)
[ok](docs/page.md#several-instances-xservice) [ok](docs/page.md#notes-1)
[ok](#here) [ok](https://github.com/prometheus/prometheus/wiki) <https://example.com/x>
[ok](docs/alerts.md) `[code, no link](nowhere.md)`
# Here
[bad](docs/missing.md)
[bad](docs/page.md#not-a-heading)
[bad](#nowhere)
[bad](https://)
[bad](../outside.md)
[bad](docs/alerts.md.bak)
";
    let problems = broken_links(root, &root.join("README.md"), text);
    let lines: Vec<&str> = problems
        .iter()
        .map(|p| p.split(':').nth(1).unwrap())
        .collect();
    assert_eq!(
        lines,
        ["6", "7", "8", "9", "10", "11"],
        "problems: {problems:#?}"
    );
}

#[test]
fn the_readme_is_a_short_front_door_citing_no_missing_file() {
    let readme = read(&root().join("README.md"));
    let lines = readme.lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines, at most {README_MAX_LINES}"
    );
    for path in documents() {
        let text = read(&path);
        for (number, line) in text.lines().enumerate() {
            assert!(
                !line.contains("SPEC"),
                "{}:{}: cites SPEC, which the repository does not contain: {line}",
                path.display(),
                number + 1
            );
        }
    }
    for command in ["cargo run --release -- --demo", "bash scripts/test.sh"] {
        assert!(
            readme.contains(&format!("```sh\n{command}\n```")),
            "the README's Try it lost {command}"
        );
    }
    for doc in [
        "docs/configuration.md",
        "docs/metrics.md",
        "docs/operating.md",
        "docs/scale-out.md",
        "docs/performance.md",
        "docs/failure-semantics.md",
        "docs/design.md",
    ]
    .iter()
    .chain(EXPECTED_FROM_OTHER_BRANCHES.iter())
    {
        assert!(
            readme.contains(&format!("]({doc})")),
            "README links no {doc}"
        );
    }
}

/// The Rust the README names is one the crate declares it builds with
/// (Cargo.toml's `rust-version`, edition 2024), and the README says how to
/// get it (rustup) and that Debian 12's cargo 1.63 is too old.
#[test]
fn the_readme_names_the_rust_the_crate_needs() {
    let readme = read(&root().join("README.md"));
    let manifest = read(&root().join("Cargo.toml"));
    let field = |key: &str| {
        manifest
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or_else(|| panic!("Cargo.toml has no {key}"))
            .to_owned()
    };
    let version = |text: &str| -> (u32, u32) {
        let mut parts = text.split('.').map(|p| p.parse::<u32>().unwrap());
        (parts.next().unwrap(), parts.next().unwrap())
    };
    let declared = version(&field("rust-version"));
    assert_eq!(field("edition"), "2024");
    let named = readme
        .split("**Rust ")
        .nth(1)
        .and_then(|rest| rest.split(" or later**").next())
        .expect("the README names **Rust X.Y or later**");
    assert!(
        version(named) >= declared,
        "README names Rust {named}, Cargo.toml declares {declared:?}"
    );
    for wanted in ["edition 2024", "rustup", "https://sh.rustup.rs", "1.63"] {
        assert!(readme.contains(wanted), "README does not say {wanted}");
    }
}

/// The README's minimal configuration is one the exporter accepts, read
/// the way the shipped systemd unit hands over the secret.
#[test]
fn the_readmes_minimal_configuration_passes_config_check() {
    let readme = read(&root().join("README.md"));
    let section = readme
        .split("\n## Minimal configuration\n")
        .nth(1)
        .expect("README has a Minimal configuration section");
    let config = section
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("a toml block in Minimal configuration");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.toml"), config).unwrap();
    std::fs::write(dir.path().join("client_secret"), "the-secret\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_msfb_seat_exporter"))
        .arg("--config.check")
        .arg(format!(
            "--config.file={}",
            dir.path().join("config.toml").display()
        ))
        .env("CREDENTIALS_DIRECTORY", dir.path())
        .output()
        .expect("run the binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("config OK: 2 targets (1 product, 2 users)"),
        "{stdout}"
    );
}
