//! The file system side of the state file: replace it crash-safely, read it
//! whole, move a bad one aside. No knowledge of what the bytes mean.
//!
//! A save writes `FILE.tmp` (mode 0600, created fresh), fsyncs it, renames
//! it over `FILE` and fsyncs the directory. rename(2) replaces the name
//! atomically, so after a crash or power loss at any instant `FILE` is the
//! previous complete file or the new complete one; at worst a stale
//! `FILE.tmp` is left, which the next save replaces and a load never reads.
//!
//! `FILE` must be a regular file or absent, as every file the configuration
//! names (SPEC §17, `config::files`): a load opens it without blocking and
//! refuses anything else, and a save refuses to replace a pipe, a device or
//! a directory that appeared at its path — the operator put it there, and a
//! FIFO read would otherwise wait for a writer forever.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// `path` with `suffix` appended to its file name.
pub(super) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The directory holding `path` (`.` for a bare file name).
fn directory(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Replaces `path` with what `write` writes, crash-safely (see the module
/// header). Returns the bytes written. On failure `path` is untouched and
/// the temporary file is removed where possible.
///
/// # Errors
/// Any I/O error: no space, a read-only or missing directory, …
pub(super) fn replace(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<u64> {
    let tmp = sibling(path, ".tmp");
    let result = write_then_rename(path, &tmp, write);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_then_rename(
    path: &Path,
    tmp: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<u64> {
    crate::config::files::regular_or_missing(path)?;
    // A stale temporary file from a crash may have any mode: start afresh
    // so that `create_new` applies 0600.
    match fs::remove_file(tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)?;
    let mut out = BufWriter::with_capacity(256 * 1024, file);
    write(&mut out)?;
    let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.sync_all()?;
    let bytes = file.metadata()?.len();
    drop(file);
    fs::rename(tmp, path)?;
    File::open(directory(path))?.sync_all()?;
    Ok(bytes)
}

/// Reads the whole file; `Ok(None)` when there is none (a first start).
///
/// # Errors
/// Any other I/O error (permissions, …), and a path that is not a regular
/// file (a directory, a pipe, a device: see the module header).
pub(super) fn read(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let mut file = match crate::config::files::open_regular(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

/// Moves an unusable file to `FILE.corrupt` (replacing an older one there),
/// keeping it for a post-mortem while the exporter starts afresh.
///
/// # Errors
/// Those of rename(2).
pub(super) fn move_aside(path: &Path) -> io::Result<PathBuf> {
    let aside = sibling(path, ".corrupt");
    fs::rename(path, &aside)?;
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};

    #[test]
    fn a_replaced_file_is_private_and_complete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        // A stale temporary file, readable by all, from a crash.
        fs::write(sibling(&path, ".tmp"), "stale").unwrap();
        fs::set_permissions(sibling(&path, ".tmp"), fs::Permissions::from_mode(0o644)).unwrap();
        let n = replace(&path, |w: &mut dyn Write| w.write_all(b"new")).unwrap();
        assert_eq!(n, 3);
        assert_eq!(fs::read(&path).unwrap(), b"new");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!sibling(&path, ".tmp").exists());
    }

    #[test]
    fn a_failed_write_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        fs::write(&path, "old").unwrap();
        let err = replace(&path, |w: &mut dyn Write| {
            w.write_all(b"half")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "disk full");
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert!(!sibling(&path, ".tmp").exists());
        assert_eq!(read(&dir.path().join("none")).unwrap(), None);
        assert_eq!(move_aside(&path).unwrap(), sibling(&path, ".corrupt"));
        assert_eq!(read(&path).unwrap(), None);
    }

    #[test]
    fn nothing_but_a_regular_file_is_read_or_replaced_and_nothing_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only creates a node.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let sub = dir.path().join("dir");
        fs::create_dir(&sub).unwrap();
        for (path, kind) in [(&fifo, "a named pipe (FIFO)"), (&sub, "a directory")] {
            let err = read(path).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert_eq!(err.to_string(), format!("is {kind}, not a regular file"));
            let err = replace(path, |w: &mut dyn Write| w.write_all(b"new")).unwrap_err();
            assert_eq!(err.to_string(), format!("is {kind}, not a regular file"));
            assert!(!sibling(path, ".tmp").exists());
        }
        assert!(fs::metadata(&fifo).unwrap().file_type().is_fifo(), "left");
    }
}
