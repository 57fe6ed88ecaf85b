//! Reading the files a configuration names — the configuration itself,
//! users files, secret and key files, the TLS certificate and key, the
//! state file — so that no read can ever block (SPEC §17).
//!
//! `open(2)` of a named pipe waits for a writer, and a read of a character
//! device may wait forever: a `users_file` that was a FIFO used to hang
//! `--config.check` with no output and hold the reload lock for good. So a
//! file must be a regular file (a symlink to one is fine): its type is
//! checked on the path *before* it is opened, and the file is opened with
//! `O_NONBLOCK` and checked again on the open handle, so a file swapped for
//! a pipe between the two still cannot block. A regular file ignores
//! `O_NONBLOCK`.
//!
//! Secret and key files that other users can read are accepted with a
//! warning, as OpenSSH does for keys ([`exposure`]).

use std::fs::{File, Metadata};
use std::io::{self, Read as _};
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

/// Largest configuration, users or secret file we read (a guard against a
/// path pointing at something huge, not a practical limit).
pub(crate) const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Largest certificate or key file read (a chain is a few kilobytes).
pub(crate) const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// What a path is when it is not a regular file, in the operator's words.
fn not_regular(meta: &Metadata) -> Option<&'static str> {
    let kind = meta.file_type();
    if kind.is_file() {
        None
    } else if kind.is_dir() {
        Some("a directory")
    } else if kind.is_fifo() {
        Some("a named pipe (FIFO)")
    } else if kind.is_socket() {
        Some("a socket")
    } else if kind.is_char_device() {
        Some("a character device")
    } else if kind.is_block_device() {
        Some("a block device")
    } else {
        Some("not a file")
    }
}

fn check_regular(meta: &Metadata) -> io::Result<()> {
    match not_regular(meta) {
        None => Ok(()),
        Some(kind) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("is {kind}, not a regular file"),
        )),
    }
}

/// Checks a path the exporter writes by replacing it (the state file):
/// nothing there yet, or a regular file (a symlink to one is fine). A pipe,
/// a device or a directory there is refused rather than read or replaced.
///
/// # Errors
/// A message for a path that is not a regular file, or what the operating
/// system says when the path cannot be examined.
pub(crate) fn regular_or_missing(path: &Path) -> io::Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) => check_regular(&meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Opens `path` for reading if it is a regular file, without blocking
/// whatever it is.
///
/// # Errors
/// What the operating system says (`NotFound` for a missing file), or a
/// message for a path that is not a regular file.
pub(crate) fn open_regular(path: &Path) -> io::Result<File> {
    // stat follows symlinks: a link to a regular file passes.
    check_regular(&std::fs::metadata(path)?)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    check_regular(&file.metadata()?)?;
    Ok(file)
}

/// Reads the whole regular file at `path`, refusing one over `limit` bytes.
///
/// # Errors
/// What the operating system says, or a message for a path that is not a
/// regular file or is too large; the message quotes nothing of the file.
pub(crate) fn read_bytes(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let file = open_regular(path)?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::other(format!(
            "file is larger than {limit} bytes"
        )));
    }
    Ok(bytes)
}

/// [`read_bytes`] up to [`MAX_FILE_BYTES`], as UTF-8 text.
///
/// # Errors
/// As [`read_bytes`], and for a file that is not UTF-8.
pub(crate) fn read_text(path: &Path) -> io::Result<String> {
    let bytes = read_bytes(path, MAX_FILE_BYTES)?;
    String::from_utf8(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        )
    })
}

/// The permission bits of a secret or key file that others (group or
/// world) have, if any: `mode & 0o077`. Such a file is still used (a
/// container platform may mount secrets 0644), with a warning.
pub(crate) fn exposure(path: &Path) -> Option<u32> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then_some(mode & 0o777)
}

/// The warning for a secret or key file at `path` named by `key`, if others
/// can read it.
pub(crate) fn exposure_warning(key: &str, path: &Path) -> Option<String> {
    exposure(path).map(|mode| {
        format!(
            "{key}: {} has mode {mode:04o}: other users can read it; \
             restrict it to the exporter's user (chmod 600)",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mkfifo(path: &Path) {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only creates a node.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    #[test]
    fn only_regular_files_are_read_and_nothing_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "text\n").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(read_text(&file).unwrap(), "text\n");
        assert_eq!(read_text(&link).unwrap(), "text\n", "a symlink to a file");

        let fifo = dir.path().join("fifo");
        mkfifo(&fifo);
        let socket = dir.path().join("socket");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let fifo_link = dir.path().join("fifo-link");
        std::os::unix::fs::symlink(&fifo, &fifo_link).unwrap();
        for (path, kind) in [
            (&fifo, "a named pipe (FIFO)"),
            (&fifo_link, "a named pipe (FIFO)"),
            (&socket, "a socket"),
            (&dir.path().to_path_buf(), "a directory"),
            (&Path::new("/dev/null").to_path_buf(), "a character device"),
        ] {
            let err = read_text(path).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("is {kind}, not a regular file"),
                "{}",
                path.display()
            );
        }
    }

    #[test]
    fn size_limit_and_encoding() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "12345").unwrap();
        assert_eq!(read_bytes(&file, 5).unwrap(), b"12345");
        assert_eq!(
            read_bytes(&file, 4).unwrap_err().to_string(),
            "file is larger than 4 bytes"
        );
        std::fs::write(&file, [0xff, 0xfe]).unwrap();
        assert!(read_text(&file).is_err());
    }

    #[test]
    fn group_or_world_access_is_an_exposure() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "s").unwrap();
        for (mode, exposed) in [
            (0o600, None),
            (0o400, None),
            (0o640, Some(0o640)),
            (0o604, Some(0o604)),
        ] {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(exposure(&file), exposed, "{mode:o}");
        }
        let warning = exposure_warning("auth.client_secret_file", &file).unwrap();
        assert!(
            warning.starts_with("auth.client_secret_file: "),
            "{warning}"
        );
        assert!(
            warning.contains("has mode 0604: other users can read it"),
            "{warning}"
        );
    }
}
