//! The one error type of configuration loading. Its `Display` is what the
//! operator reads (and what the tests compare), so every variant names the
//! file and, where the TOML has one, the line and the key.

use std::io;
use std::path::PathBuf;

/// Why a configuration could not be loaded. Nothing in it carries a secret:
/// messages quote keys and file names, never the contents of secret files.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file itself could not be read.
    #[error("{}: cannot read the configuration file: {source}", file.display())]
    Read {
        /// The file that was asked for.
        file: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// A command-line flag that overrides a key has a bad value: the flag is
    /// to blame, not the file.
    #[error("{flag}: {message}")]
    Flag {
        /// The flag as typed on the command line, e.g. `--web.listen-address`.
        flag: &'static str,
        /// What is wrong and what would be right.
        message: String,
    },
    /// The file was read but a key is missing, unknown or has a bad value.
    #[error("{}:{line}: {key}: {message}", file.display())]
    Invalid {
        /// The configuration file.
        file: PathBuf,
        /// 1-based line of the key (or of its closest parent table).
        line: usize,
        /// Dotted key path, e.g. `products[0].users[2]`.
        key: String,
        /// What is wrong and what would be right.
        message: String,
    },
    /// The TOML itself does not parse (no key can be named).
    #[error("{}:{line}: {message}", file.display())]
    Syntax {
        /// The configuration file.
        file: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// The parser's message.
        message: String,
    },
}

impl ConfigError {
    /// Whether the configuration file does not exist (as opposed to a file
    /// that is there but unreadable or wrong): at start, the binary then
    /// says how to name one or to try `--demo`.
    pub fn is_missing_file(&self) -> bool {
        matches!(self, ConfigError::Read { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}
