//! The command line (SPEC §2). Flag names use Prometheus' dotted style.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// Exports Microsoft Store for Business seat assignments as Prometheus metrics.
#[derive(Debug, Parser)]
#[command(name = "msfb_seat_exporter", version, about, long_about = None)]
pub struct Args {
    /// Configuration file (TOML).
    #[arg(
        long = "config.file",
        value_name = "PATH",
        default_value = "config.toml"
    )]
    pub config_file: PathBuf,

    /// Address to listen on; overrides [web] listen_address.
    #[arg(long = "web.listen-address", value_name = "ADDR")]
    pub listen_address: Option<String>,

    /// Exporter-toolkit web configuration (YAML: TLS, client certificates,
    /// basic auth, headers), as node_exporter reads it; re-read on reload.
    #[arg(long = "web.config.file", value_name = "PATH")]
    pub web_config_file: Option<PathBuf>,

    /// Lowest level of log lines to print.
    #[arg(long = "log.level", value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,

    /// Log line format.
    #[arg(long = "log.format", value_enum, default_value_t = LogFormat::Logfmt)]
    pub log_format: LogFormat,

    /// This instance's shard; overrides [poll] shard_index.
    #[arg(long = "shard.index", value_name = "N")]
    pub shard_index: Option<u32>,

    /// Number of shards; overrides [poll] shard_count.
    #[arg(long = "shard.count", value_name = "M")]
    pub shard_count: Option<u32>,

    /// File the seat state is saved to and restored from; overrides
    /// [persistence] file.
    #[arg(long = "persistence.file", value_name = "PATH")]
    pub persistence_file: Option<PathBuf>,

    /// Validate the configuration (and the files it names), print a summary and exit.
    #[arg(long = "config.check", conflicts_with_all = ["once", "demo"])]
    pub config_check: bool,

    /// Run one poll cycle, print the metrics and exit (1 if any check was inconclusive).
    #[arg(long, conflicts_with = "demo")]
    pub once: bool,

    /// Run against a built-in fake Store with sample data; no configuration needed.
    #[arg(long)]
    pub demo: bool,
}

/// `--log.level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// Everything, including each inconclusive check.
    Debug,
    /// State changes, reloads, cycle problems.
    Info,
    /// Problems only.
    Warn,
    /// Failures only.
    Error,
}

/// `--log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `key=value` pairs.
    Logfmt,
    /// One JSON object per line.
    Json,
}
