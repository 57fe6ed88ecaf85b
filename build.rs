//! Records the git revision and the rustc version for
//! `msfb_seat_exporter_build_info`. Both fall back to "unknown" so that a
//! build from a source tarball (no git) still works.
//!
//! Cargo reruns a build script whenever a path it was told to watch is
//! missing, and a rerun rebuilds the library. So only paths that exist are
//! watched: the git directory's `HEAD` and the branch it points to, found
//! through git itself (a worktree's `.git` is a file, not a directory).
//! Without git the script watches only itself, and an edit of `src/`
//! rebuilds no more than it has to.

use std::path::{Path, PathBuf};
use std::process::Command;

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}

/// What to watch for a new revision: `HEAD`, the file of the branch it
/// names, and `packed-refs` (where git may keep that branch instead); only
/// those that exist.
fn revision_files() -> Vec<PathBuf> {
    let git = |what: &str| output("git", &["rev-parse", "--path-format=absolute", what]);
    let mut files = Vec::new();
    if let Some(dir) = git("--git-dir") {
        files.push(Path::new(&dir).join("HEAD"));
    }
    if let Some(branch) = output("git", &["symbolic-ref", "-q", "HEAD"])
        && let Some(common) = git("--git-common-dir")
    {
        files.push(Path::new(&common).join(branch));
        files.push(Path::new(&common).join("packed-refs"));
    }
    files.retain(|f| f.exists());
    files
}

fn main() {
    let revision =
        output("git", &["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = output(&rustc, &["--version"])
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_owned))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=MSFB_BUILD_REVISION={revision}");
    println!("cargo:rustc-env=MSFB_RUSTC_VERSION={rustc_version}");
    println!("cargo:rerun-if-changed=build.rs");
    for file in revision_files() {
        println!("cargo:rerun-if-changed={}", file.display());
    }
}
