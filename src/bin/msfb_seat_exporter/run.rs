//! The run modes: `--config.check`, `--once`, `--demo`, and the daemon with
//! its signal handling (SIGTERM/SIGINT shut down, SIGHUP reloads).

use std::process::ExitCode;

use anyhow::Context as _;
use msfb_seat_exporter::config::{self, Config, LoadOptions};
use msfb_seat_exporter::exporter::{self, Exporter};
use msfb_seat_exporter::poller::{LaneThreads, MAX_LANES};
use msfb_seat_exporter::{daemon, demo, web};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::cli::Args;

/// Exit code for bad usage or an invalid configuration.
const INVALID: u8 = 2;

/// Follows the message of a configuration file that does not exist: what a
/// newcomer who ran the bare binary needs next.
const MISSING_CONFIG_HINT: &str = "  name the file with --config.file=PATH; start one from \
config.toml.example (in the repository, every key with its default); or try the exporter \
without one: --demo";

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let shutdown = CancellationToken::new();
    if args.demo {
        return run_demo(&args, shutdown).await;
    }
    let options = LoadOptions {
        listen_address: args.listen_address.clone(),
        shard_index: args.shard_index,
        shard_count: args.shard_count,
        web_config_file: args.web_config_file.clone(),
        persistence_file: args.persistence_file.clone(),
        ..LoadOptions::default()
    };
    let (config, transport) = match load(&args, &options).await? {
        Ok(loaded) => loaded,
        Err(code) => return Ok(code),
    };
    if args.config_check {
        for w in &config.warnings {
            eprintln!("warning: {w}");
        }
        if let Some(hint) = credentials_hint(&config) {
            eprintln!("{hint}");
        }
        println!("config OK: {}", config.summary());
        return Ok(ExitCode::SUCCESS);
    }
    for w in &config.warnings {
        tracing::warn!(warning = %w, "configuration");
    }

    // `--once` is a batch run at normal priority; the daemon's checks yield
    // the cores to scrapes (see `lower_priority`).
    let on_start: fn() = if args.once { || {} } else { lower_priority };
    let threads =
        LaneThreads::start(poll_lanes(), on_start).context("cannot start the polling threads")?;
    let exporter = Exporter::new(
        config,
        exporter::Options {
            load: options,
            lanes: threads.lanes(),
            ..exporter::Options::default()
        },
    )?;
    if args.once {
        return once(&exporter, shutdown).await;
    }
    serve(exporter, transport, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// One poll lane per core the process may use (up to `MAX_LANES`): the
/// lanes together can use every core, and each keeps its checks' wake-ups
/// on one thread (`poller::lanes`).
fn poll_lanes() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_LANES))
}

/// `--demo`: the fake Store and the exporter in one process.
async fn run_demo(args: &Args, shutdown: CancellationToken) -> anyhow::Result<ExitCode> {
    if let Some(address) = &args.listen_address
        && let Err(e) = config::check_listen_address_flag(address)
    {
        eprintln!("msfb_seat_exporter: {e}");
        return Ok(ExitCode::from(INVALID));
    }
    let signals = tokio::spawn(wait_for_shutdown(shutdown.clone(), Stops::install()));
    let result = demo::run(args.listen_address.as_deref(), shutdown.clone()).await;
    signals.abort();
    result?;
    Ok(ExitCode::SUCCESS)
}

/// The configuration and the transport it asks for, or the exit code of
/// a bad one (its message printed).
async fn load(
    args: &Args,
    options: &LoadOptions,
) -> anyhow::Result<Result<(Config, web::Transport), ExitCode>> {
    let path = args.config_file.clone();
    let load_options = options.clone();
    let loaded = tokio::task::spawn_blocking(move || exporter::load_config(&path, &load_options))
        .await
        .context("configuration loader failed")?;
    let config = match loaded {
        Ok(c) => c,
        Err(e) if e.is_missing_file() => {
            eprintln!("msfb_seat_exporter: {e}\n{MISSING_CONFIG_HINT}");
            return Ok(Err(ExitCode::from(INVALID)));
        }
        Err(e) => {
            eprintln!("msfb_seat_exporter: {e}");
            return Ok(Err(ExitCode::from(INVALID)));
        }
    };
    // The certificate and key are part of the configuration: unusable ones
    // are a bad configuration (exit 2), found before anything listens.
    match web::Transport::from_config(&config.web) {
        Ok(transport) => Ok(Ok((config, transport))),
        Err(e) => {
            eprintln!("msfb_seat_exporter: {e}");
            Ok(Err(ExitCode::from(INVALID)))
        }
    }
}

/// `--once`: one cycle, the metrics on stdout, 1 if a check was
/// inconclusive.
async fn once(exporter: &Exporter, shutdown: CancellationToken) -> anyhow::Result<ExitCode> {
    let signals = tokio::spawn(wait_for_shutdown(shutdown.clone(), Stops::install()));
    // The inventory is part of the picture but not a check: its failure
    // shows in the output, not in the exit code (SPEC §2).
    if exporter.generation().config.inventory.enabled {
        let _ = exporter.poll_inventory(&shutdown).await;
    }
    let report = exporter.run_cycle(&shutdown).await;
    signals.abort();
    let Some(report) = report else {
        return Ok(ExitCode::from(1));
    };
    print!("{}", exporter.render_metrics());
    Ok(if report.all_conclusive() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The daemon: listens, polls, and serves until `shutdown`.
async fn serve(
    exporter: Exporter,
    transport: web::Transport,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Saved values are exported from the first scrape on: load them before
    // anything listens.
    let restored = exporter.restore_state().await;
    let generation = exporter.generation();
    let address = generation.config.web.listen_address.clone();
    let listener = web::serve::bind(&address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    // Installed before the start line: a SIGTERM or SIGINT sent as soon as
    // it appears shuts down gracefully instead of killing the process.
    let hangup = signal(SignalKind::hangup());
    let stops = Stops::install();
    tracing::info!(
        address = %listener.local_addr().map_or(address.clone(), |a| a.to_string()),
        tls = matches!(transport, web::Transport::Tls(_)),
        version = env!("CARGO_PKG_VERSION"),
        targets = generation.table.len(),
        restored,
        interval = %humantime::format_duration(generation.config.poll.interval),
        "msfb_seat_exporter started"
    );
    drop(generation);

    let signals = tokio::spawn(handle_signals(
        exporter.clone(),
        shutdown.clone(),
        hangup,
        stops,
    ));
    let lanes = exporter.lanes();
    daemon::run_on(&exporter, &lanes.first(), listener, transport, shutdown).await;
    signals.abort();
    tracing::info!("msfb_seat_exporter stopped");
    Ok(())
}

/// How much lower the pollers' priority is than the rest of the process:
/// the lowest there is. A check costs tens of microseconds of CPU, so even a
/// host whose cores are saturated leaves the pollers enough for a cycle of
/// 10k targets well inside a minute, while a scrape, waited for by
/// Prometheus, gets the cores first (docs/performance.md: +10 against +19).
const BACKGROUND_NICE: i32 = 19;

/// Lowers the calling thread's CPU priority: the daemon's poll lanes run
/// apart from the runtime that serves HTTP, and below its priority.
/// Polling is batch work that may take its time; a scrape is waited for. On
/// one runtime a poll cycle at full speed queued scrape tasks behind dozens
/// of checks, and on a busy host the OS shares the cores evenly between
/// them: scrape p99 tripled while a 10k-target cycle ran (scripts/bench.sh).
/// With the pollers niced, the scrape's threads (and the client's) get the
/// cores first, and polling takes what is left, which on an idle host is
/// everything. On Linux `setpriority` with
/// `PRIO_PROCESS` and no pid applies to the calling thread only. Lowering
/// is always permitted; where a sandbox forbids the call (systemd's
/// `SystemCallFilter=~@resources` does, unless the unit allows
/// `setpriority`), polling just keeps the normal priority.
fn lower_priority() {
    let lowered = rustix::process::getpriority_process(None).and_then(|now| {
        rustix::process::setpriority_process(None, (now + BACKGROUND_NICE).min(19))
    });
    if let Err(e) = lowered {
        tracing::debug!(error = %e, "cannot lower the polling threads' priority");
    }
}

/// SIGTERM or SIGINT cancel `shutdown`; SIGHUP reloads the configuration.
async fn handle_signals(
    exporter: Exporter,
    shutdown: CancellationToken,
    hangup: std::io::Result<Signal>,
    stops: Stops,
) {
    let Ok(mut hangup) = hangup else {
        tracing::warn!("cannot install a SIGHUP handler; reload only through /-/reload");
        wait_for_shutdown(shutdown, stops).await;
        return;
    };
    let stop = wait_for_shutdown(shutdown, stops);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = hangup.recv() => {
                // Debug: the reload logs its own one line at info.
                tracing::debug!("SIGHUP received; reloading the configuration");
                let exporter = exporter.clone();
                // A reload reads files; do not hold up signal handling.
                tokio::spawn(async move { let _ = exporter.reload().await; });
            }
        }
    }
}

/// The SIGTERM and SIGINT handlers. Installed when made (not when first
/// awaited, as `tokio::signal::ctrl_c` is), so that from then on neither
/// signal kills the process with its default action.
struct Stops {
    terminate: Option<Signal>,
    interrupt: Option<Signal>,
}

impl Stops {
    fn install() -> Stops {
        Stops {
            terminate: signal(SignalKind::terminate()).ok(),
            interrupt: signal(SignalKind::interrupt()).ok(),
        }
    }
}

/// Waits for one signal of `stream`, or forever where it is not installed.
async fn received(stream: Option<&mut Signal>) {
    match stream {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// Waits for SIGTERM or SIGINT, then cancels `shutdown`.
async fn wait_for_shutdown(shutdown: CancellationToken, mut stops: Stops) {
    tokio::select! {
        _ = received(stops.interrupt.as_mut()) => {}
        _ = received(stops.terminate.as_mut()) => {}
        _ = shutdown.cancelled() => return,
    }
    tracing::info!("shutting down");
    shutdown.cancel();
}

/// `--config.check` run as root passes on a secret any root can read, while
/// the shipped unit's dynamic user reads secrets only through
/// `LoadCredential=`: one line says so (a hint, not a failure), naming the
/// keys whose files lie outside `$CREDENTIALS_DIRECTORY`.
fn credentials_hint(config: &config::Config) -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    let outside: Vec<String> = config
        .secret_files
        .iter()
        .filter(|f| !f.from_credentials)
        .map(|f| format!("{} ({})", f.key, f.path.display()))
        .collect();
    (!outside.is_empty()).then(|| {
        format!(
            "hint: checked as root; under the systemd unit the dynamic user cannot read {}: \
             pass it with LoadCredential= and name it \"$CREDENTIALS_DIRECTORY/NAME\" (systemd/README.md)",
            outside.join(", ")
        )
    })
}
