//! The running exporter: the current configuration generation, the poll and
//! inventory loops, reloads and readiness. The command line and `daemon`
//! talk to [`Exporter`]; the web layer sees it only through `web::Site`.
//!
//! State sharing: the current [`Generation`] (config, target table, HTTP
//! client, token cache) sits in a `std::sync::RwLock<Arc<Generation>>`. Readers
//! (scrapes, the poller at the start of a cycle) take the read lock only to
//! clone the `Arc`; a reload builds the whole new generation first and takes
//! the write lock only to swap the pointer. So a reload never blocks a scrape
//! and a scrape never waits for a poll. Reloads are serialised by an async
//! mutex, because loading reads files and may take a while.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config, ConfigError, LoadOptions};
use crate::metrics::format::Format;
use crate::metrics::snapshot::Snapshots;
use crate::metrics::{Telemetry, exposition};
use crate::persistence::{self, Saver};
use crate::poller::request::CheckContext;
use crate::poller::{
    self, CycleReport, Generation, InventoryReport, Lanes, Pacer, RetryPolicy, Scope, unix_now,
};
use crate::store::{StoreClient, TokenSource};
use crate::targets::TargetTable;

/// Reads and validates the configuration file as the exporter runs it:
/// every check of `config`, plus the poller's warning when a cycle cannot
/// fit `poll.interval` at the configured rate (`poller::plan`).
///
/// # Errors
/// As [`config::load`].
pub fn load_config(path: &std::path::Path, options: &LoadOptions) -> Result<Config, ConfigError> {
    let mut config = config::load(path, options)?;
    config.warnings.extend(poller::cycle_fit_warning(&config));
    Ok(config)
}

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The HTTP client could not be built (TLS backend).
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Why a reload was refused; the old configuration stays in force.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new file is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The new HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    /// The loader task failed.
    #[error("configuration loader failed: {0}")]
    Loader(String),
    /// Reading the files took longer than the reload deadline (a file on a
    /// hung network mount, say); the reload gives up and frees the lock.
    #[error("the configuration could not be read within {}", humantime::format_duration(*.0))]
    Deadline(Duration),
    /// The error of a reload that ran for this request and others at once.
    #[error("{0}")]
    Shared(String),
    /// The new configuration changes what only a restart can change.
    #[error("{0} needs a restart; the previous configuration stays in force")]
    NeedsRestart(&'static str),
}

/// The latest reload, for callers that were served by it.
#[derive(Debug, Default)]
struct ReloadRecord {
    /// Every request with a ticket up to this one has been served.
    served: u64,
    /// Its outcome, as text for the callers that share it.
    outcome: Option<Result<(), String>>,
}

/// Settings that are not in the configuration file.
#[derive(Debug, Clone)]
pub struct Options {
    /// Command-line overrides re-applied on every reload.
    pub load: LoadOptions,
    /// Backoff base and cap (tests shrink them; `max_retries` comes from
    /// the configuration).
    pub retry_base: Duration,
    /// See `retry_base`.
    pub retry_cap: Duration,
    /// Longest a reload may take to read and validate the files before it
    /// fails like a bad file ([`RELOAD_DEADLINE`]; tests shorten it).
    pub reload_deadline: Duration,
    /// The threads a cycle's checks run on (`poller::lanes`); by default
    /// the runtime that runs the cycle.
    pub lanes: Lanes,
}

/// How long a reload may read files (SPEC §17): files are never FIFOs or
/// devices (`config::files`), but a network mount can still hang, and a
/// reload that never ends would hold the reload lock for good.
pub const RELOAD_DEADLINE: Duration = Duration::from_secs(10);

impl Default for Options {
    fn default() -> Self {
        let p = RetryPolicy::new(0);
        Options {
            load: LoadOptions::default(),
            retry_base: p.base,
            retry_cap: p.cap,
            reload_deadline: RELOAD_DEADLINE,
            lanes: Lanes::here(),
        }
    }
}

struct Inner {
    generation: RwLock<Arc<Generation>>,
    telemetry: Telemetry,
    pacer: Arc<Pacer>,
    options: Options,
    ready: AtomicBool,
    /// Serialises reloads and remembers the latest (see `reload`).
    reload_lock: tokio::sync::Mutex<ReloadRecord>,
    /// Reload requests so far; each takes the next number as its ticket.
    reload_tickets: std::sync::atomic::AtomicU64,
    changed: watch::Sender<u64>,
    /// Writes the state file, one save at a time.
    saver: Saver,
    /// The table snapshots scrapes in progress hold, shared between them
    /// (`metrics::snapshot`).
    snapshots: Snapshots,
}

/// A handle on the running exporter; cheap to clone.
#[derive(Clone)]
pub struct Exporter {
    inner: Arc<Inner>,
}

impl Exporter {
    /// Builds the exporter for a validated configuration. No request is made
    /// until the first cycle.
    ///
    /// # Errors
    /// [`StartError`] if the HTTP client cannot be built.
    pub fn new(config: Config, options: Options) -> Result<Exporter, StartError> {
        let telemetry = Telemetry::new();
        let config = Arc::new(config);
        let client =
            StoreClient::with_lanes(&config.store, telemetry.clone(), options.lanes.len())?;
        let tokens = Arc::new(TokenSource::new(
            client.token_http(&config.auth).clone(),
            config.auth.clone(),
            telemetry.clone(),
        ));
        let table = Arc::new(TargetTable::build(&config, None));
        let pacer = Arc::new(Pacer::new(config.store.max_requests_per_second));
        telemetry.reload_successful.set(1.0);
        telemetry.reload_success_time.set(unix_now());
        let ready = table.is_empty();
        let (changed, _) = watch::channel(0);
        Ok(Exporter {
            inner: Arc::new(Inner {
                generation: RwLock::new(Arc::new(Generation {
                    config,
                    table,
                    client,
                    tokens,
                })),
                telemetry,
                pacer,
                options,
                ready: AtomicBool::new(ready),
                reload_lock: tokio::sync::Mutex::new(ReloadRecord::default()),
                reload_tickets: std::sync::atomic::AtomicU64::new(0),
                changed,
                saver: Saver::default(),
                snapshots: Snapshots::default(),
            }),
        })
    }

    /// The generation in force.
    pub fn generation(&self) -> Arc<Generation> {
        // The lock only guards a pointer swap; a poisoned lock still holds a
        // valid Arc.
        let guard = self
            .inner
            .generation
            .read()
            .unwrap_or_else(|p| p.into_inner());
        Arc::clone(&guard)
    }

    /// The threads cycles run their checks on.
    pub fn lanes(&self) -> &Lanes {
        &self.inner.options.lanes
    }

    /// The exporter's own instruments.
    pub fn telemetry(&self) -> &Telemetry {
        &self.inner.telemetry
    }

    /// `/-/ready`: every target has been checked at least once since start.
    /// Latches, so that a reload adding targets does not flap readiness.
    pub fn is_ready(&self) -> bool {
        if self.inner.ready.load(Ordering::Relaxed) {
            return true;
        }
        let ready = self.generation().table.all_checked();
        if ready {
            self.inner.ready.store(true, Ordering::Relaxed);
        }
        ready
    }

    /// A receiver that changes whenever a reload is applied.
    pub fn reloads(&self) -> watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }

    fn retry_policy(&self, config: &Config) -> RetryPolicy {
        RetryPolicy {
            max_retries: config.store.max_retries,
            base: self.inner.options.retry_base,
            cap: self.inner.options.retry_cap,
        }
    }

    /// Runs one full cycle now and updates the cycle metrics. Returns `None`
    /// when cancelled.
    pub async fn run_cycle(&self, cancel: &CancellationToken) -> Option<CycleReport> {
        self.cycle(Scope::All, cancel).await
    }

    async fn cycle(&self, scope: Scope, cancel: &CancellationToken) -> Option<CycleReport> {
        let generation = self.generation();
        let retry = self.retry_policy(&generation.config);
        let report = poller::run_cycle(
            generation,
            Arc::clone(&self.inner.pacer),
            retry,
            scope,
            &self.inner.options.lanes,
            cancel,
        )
        .await?;
        let t = &self.inner.telemetry;
        if scope == Scope::All {
            t.poll_cycles.inc();
            t.poll_cycle_duration.set(report.duration.as_secs_f64());
            t.poll_last_cycle_end.set(unix_now());
        }
        self.is_ready();
        if report.all_conclusive() {
            tracing::debug!(checked = report.checked, duration = ?report.duration,
                "poll cycle finished");
        } else {
            tracing::warn!(checked = report.checked, conclusive = report.conclusive,
                failures = ?report.failures, duration = ?report.duration,
                "poll cycle finished with inconclusive checks");
        }
        Some(report)
    }

    /// Polls on the configured interval until `cancel` fires. A cycle that
    /// overruns delays the next one rather than starting a burst
    /// (`MissedTickBehavior::Delay`). After a reload, targets that were
    /// added are checked at once instead of waiting for the next tick.
    pub async fn run_poller(&self, cancel: CancellationToken) {
        let mut changed = self.inner.changed.subscribe();
        let mut period = self.generation().config.poll.interval;
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = ticker.tick() => {
                    if self.cycle(Scope::All, &cancel).await.is_none() {
                        break;
                    }
                    self.save_state(false).await;
                }
                Ok(()) = changed.changed() => {
                    let new_period = self.generation().config.poll.interval;
                    if new_period != period {
                        period = new_period;
                        ticker = tokio::time::interval_at(
                            tokio::time::Instant::now() + period, period);
                        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
                    }
                    if self.cycle(Scope::Unchecked, &cancel).await.is_none() {
                        break;
                    }
                    self.save_state(false).await;
                }
            }
        }
        tracing::debug!("poller stopped");
    }

    /// Polls Get Inventory once and updates the products of the current
    /// configuration. Returns `None` if `cancel` fired first.
    pub async fn poll_inventory(&self, cancel: &CancellationToken) -> Option<InventoryReport> {
        let generation = self.generation();
        let ctx = CheckContext {
            client: &generation.client,
            tokens: &generation.tokens,
            pacer: &self.inner.pacer,
            retry: self.retry_policy(&generation.config),
        };
        poller::inventory::poll(&generation, &ctx, self.telemetry(), cancel).await
    }

    /// Polls the inventory every `[inventory] interval` until `cancel`
    /// fires, starting at once. After a reload it polls at once if a
    /// configured product has no inventory facts yet or polling was just
    /// enabled, and otherwise keeps its schedule (with the new interval).
    pub async fn run_inventory(&self, cancel: CancellationToken) {
        let mut reloads = self.reloads();
        let mut enabled = self.generation().config.inventory.enabled;
        let mut last_start: Option<Instant> = None;
        let mut next = Instant::now();
        // Stands in for "never" while polling is disabled.
        const IDLE: Duration = Duration::from_secs(365 * 24 * 3600);
        loop {
            let deadline = if enabled { next } else { Instant::now() + IDLE };
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep_until(deadline), if enabled => {
                    let started = Instant::now();
                    last_start = Some(started);
                    if self.poll_inventory(&cancel).await.is_none() {
                        break;
                    }
                    next = started + self.generation().config.inventory.interval;
                }
                Ok(()) = reloads.changed() => {
                    let generation = self.generation();
                    let config = &generation.config.inventory;
                    let was_enabled = enabled;
                    enabled = config.enabled;
                    let unknown = generation
                        .table
                        .groups
                        .iter()
                        .any(|g| g.state.status().inventory.is_none());
                    next = match last_start {
                        Some(s) if was_enabled && !unknown => s + config.interval,
                        _ => Instant::now(),
                    };
                }
            }
        }
        tracing::debug!("inventory poller stopped");
    }

    /// Loads `[persistence] file` into the fresh table (SPEC §13): call it
    /// once, before the listener opens and before the first cycle. Restored
    /// targets count as checked for `/-/ready`. Returns how many targets
    /// were restored (0 without a file).
    pub async fn restore_state(&self) -> usize {
        let generation = self.generation();
        let Some(path) = generation.config.persistence.file.clone() else {
            return 0;
        };
        let table = Arc::clone(&generation.table);
        let config = Arc::clone(&generation.config);
        let loaded = tokio::task::spawn_blocking(move || {
            let loaded = persistence::load(&path, &table, &config);
            persistence::log_loaded(&path, &loaded);
            loaded
        })
        .await;
        let restored = match &loaded {
            Ok(l) => l.restored(),
            Err(e) => {
                tracing::error!(error = %e, "loading the saved seat state failed");
                0
            }
        };
        if let Ok(persistence::Loaded::Restored(a)) = loaded
            && a.complete
        {
            self.inner.ready.store(true, Ordering::Relaxed);
        }
        let t = &self.inner.telemetry.persistence;
        t.restored_targets.set(restored as f64);
        restored
    }

    /// Saves the table in force to `[persistence] file`, if set, on a
    /// blocking thread (never on the path of a scrape). The file named by
    /// the configuration in force is used, so a reload that changes it
    /// takes effect at the next save. A failure is logged and counted and
    /// changes nothing else. `clean` is for the save at shutdown, after the
    /// last check.
    pub async fn save_state(&self, clean: bool) {
        let generation = self.generation();
        let Some(path) = generation.config.persistence.file.clone() else {
            return;
        };
        let exporter = self.clone();
        let saved = tokio::task::spawn_blocking(move || {
            let result =
                exporter
                    .inner
                    .saver
                    .save(&path, &generation.table, &generation.config, clean);
            (path, result)
        })
        .await;
        let t = &self.inner.telemetry.persistence;
        match saved {
            Ok((path, Ok(report))) => {
                t.last_save_success
                    .with_label_values(&[] as &[&str])
                    .set(unix_now());
                tracing::debug!(file = %path.display(), targets = report.targets,
                    bytes = report.bytes, duration = ?report.duration, cpu = ?report.cpu,
                    "seat state saved");
            }
            Ok((path, Err(e))) => {
                t.save_failures.inc();
                tracing::warn!(file = %path.display(), error = %e,
                    "saving the seat state failed; the previous file is kept");
            }
            Err(e) => {
                t.save_failures.inc();
                tracing::warn!(error = %e, "saving the seat state failed");
            }
        }
    }

    /// Re-reads the configuration file and applies it (SIGHUP,
    /// `/-/reload`).
    ///
    /// # Errors
    /// [`ReloadError`] when the new configuration is refused; the old one
    /// stays in force and `…_config_last_reload_successful` becomes 0.
    ///
    /// Reloads are serialised, and callers that queue up share the work: a
    /// caller that finds a reload has run since its request (so read the
    /// files as they were then or later) gets that reload's outcome instead
    /// of running another. However many requests arrive during a reload,
    /// at most one more runs after it.
    pub async fn reload(&self) -> Result<(), ReloadError> {
        use std::sync::atomic::Ordering::SeqCst;
        let ticket = self.inner.reload_tickets.fetch_add(1, SeqCst) + 1;
        let mut record = self.inner.reload_lock.lock().await;
        if record.served >= ticket {
            return match &record.outcome {
                Some(Err(message)) => Err(ReloadError::Shared(message.clone())),
                _ => Ok(()),
            };
        }
        // Every request made before the files are read is served by this
        // reload.
        let serves = self.inner.reload_tickets.load(SeqCst);
        let path = self.generation().config.source.clone();
        let options = self.inner.options.load.clone();
        let deadline = self.inner.options.reload_deadline;
        // A loader past the deadline is left to finish on its own thread
        // (a blocking read cannot be cancelled); its result is dropped.
        let loader = tokio::task::spawn_blocking(move || load_config(&path, &options));
        let loaded = match tokio::time::timeout(deadline, loader).await {
            Err(_) => Err(ReloadError::Deadline(deadline)),
            Ok(joined) => joined
                .map_err(|e| ReloadError::Loader(e.to_string()))
                .and_then(|r| r.map_err(ReloadError::from)),
        };
        let result = match loaded {
            Ok(config) => self.apply(config),
            Err(e) => Err(e),
        };
        let t = &self.inner.telemetry;
        match &result {
            Ok(()) => {
                t.reload_successful.set(1.0);
                t.reload_success_time.set(unix_now());
            }
            Err(e) => {
                t.reload_successful.set(0.0);
                tracing::error!(error = %e, "configuration reload failed; keeping the previous configuration");
            }
        }
        record.served = serves;
        record.outcome = Some(result.as_ref().map(|_| ()).map_err(ToString::to_string));
        result
    }

    /// Swaps in a validated configuration: kept targets keep their state,
    /// new ones start unknown, removed ones disappear.
    fn apply(&self, config: Config) -> Result<(), ReloadError> {
        for w in &config.warnings {
            tracing::warn!(warning = %w, "configuration");
        }
        let old = self.generation();
        // The listener speaks TLS or not from the start; new certificates
        // and TLS settings apply at the next handshake, but switching the
        // protocol means a new listener.
        if config.web.tls.is_some() != old.config.web.tls.is_some() {
            return Err(ReloadError::NeedsRestart("turning TLS on or off"));
        }
        let t = &self.inner.telemetry;
        let client = if config.store == old.config.store {
            old.client.clone()
        } else {
            StoreClient::with_lanes(&config.store, t.clone(), self.inner.options.lanes.len())?
        };
        let tokens = if config.store == old.config.store && config.auth == *old.tokens.config() {
            Arc::clone(&old.tokens)
        } else {
            Arc::new(TokenSource::new(
                client.token_http(&config.auth).clone(),
                config.auth.clone(),
                t.clone(),
            ))
        };
        let table = Arc::new(TargetTable::build(&config, Some(&old.table)));
        self.inner
            .pacer
            .set_rate(config.store.max_requests_per_second);
        tracing::info!(targets = table.len(), summary = %config.summary(), "configuration reloaded");
        let next = Arc::new(Generation {
            config: Arc::new(config),
            table,
            client,
            tokens,
        });
        *self
            .inner
            .generation
            .write()
            .unwrap_or_else(|p| p.into_inner()) = next;
        self.inner.changed.send_modify(|n| *n += 1);
        Ok(())
    }

    /// The full exposition: per-target families from the table, then the
    /// exporter's own metrics, as one string (`--once`, tests).
    pub fn render_metrics(&self) -> String {
        self.render_metrics_as(Format::Text)
    }

    /// [`Exporter::render_metrics`] in `format`.
    pub fn render_metrics_as(&self, format: Format) -> String {
        let mut all = String::new();
        self.stream_metrics(usize::MAX, format, &mut |text| {
            if all.is_empty() {
                all = text;
            } else {
                all.push_str(&text);
            }
            true
        });
        all
    }

    /// The full exposition in chunks of about `chunk` bytes, each handed to
    /// `emit` as soon as it is written (see `metrics::exposition`); stops
    /// early when `emit` returns `false`. Returns whether every chunk was
    /// handed on. Runs for a while at 100k targets: call it off the async
    /// workers.
    pub fn stream_metrics(
        &self,
        chunk: usize,
        format: Format,
        emit: &mut dyn FnMut(String) -> bool,
    ) -> bool {
        let generation = self.generation();
        let t = &self.inner.telemetry;
        t.effective_rate
            .set(self.inner.pacer.current_rate().unwrap_or(0.0));
        let poll = &generation.config.poll;
        t.shard_index.set(f64::from(poll.shard_index));
        t.shard_count.set(f64::from(poll.shard_count));
        let mut out = exposition::Out::new(chunk, format, emit);
        let snapshot = self.inner.snapshots.take(&generation.table);
        exposition::render_snapshot(&snapshot, &mut out);
        drop(snapshot);
        if !out.is_closed() {
            t.encode_to(&mut out);
            out.finish();
        }
        !out.is_closed()
    }
}

#[cfg(test)]
mod tests {
    //! The poll loop's schedule on tokio's paused clock. The configurations
    //! have no target, so a cycle makes no request and only its count
    //! moves.

    use super::*;

    /// A configuration polling every `interval` with no target.
    fn config(interval: &str) -> Config {
        let mut config = config::for_tests(&format!(
            "[store]\ntimeout = \"2s\"\n\n[poll]\ninterval = \"{interval}\"\n\n\
             [[products]]\nproduct_id = \"P\"\nsku_id = \"S\"\nusers = [\"a@x.y\"]\n"
        ));
        config.products.clear();
        config
    }

    /// Lets the loop run until `cycles` cycles are counted.
    async fn until_cycles(exporter: &Exporter, cycles: u64) {
        for _ in 0..1000 {
            if exporter.telemetry().poll_cycles.get() >= cycles {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("cycle {cycles} never ran");
    }

    /// An exporter for `config` with its poll loop running.
    fn start(config: Config) -> (Exporter, CancellationToken, tokio::task::JoinHandle<()>) {
        let exporter = Exporter::new(config, Options::default()).expect("exporter");
        let cancel = CancellationToken::new();
        let poller = tokio::spawn({
            let exporter = exporter.clone();
            let cancel = cancel.clone();
            async move { exporter.run_poller(cancel).await }
        });
        (exporter, cancel, poller)
    }

    async fn after(d: Duration) {
        tokio::time::advance(d).await;
    }

    #[tokio::test(start_paused = true)]
    async fn cycles_follow_the_interval_and_a_reload_s_new_interval() {
        let (exporter, cancel, poller) = start(config("10s"));
        until_cycles(&exporter, 1).await;
        after(Duration::from_secs(9)).await;
        assert_eq!(exporter.telemetry().poll_cycles.get(), 1, "not before 10 s");
        after(Duration::from_secs(1)).await;
        until_cycles(&exporter, 2).await;

        exporter.apply(config("1m")).expect("applied");
        tokio::task::yield_now().await;
        after(Duration::from_secs(10)).await;
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            exporter.telemetry().poll_cycles.get(),
            2,
            "the old period ended"
        );
        after(Duration::from_secs(50)).await;
        until_cycles(&exporter, 3).await;

        cancel.cancel();
        poller.await.expect("the loop ends when cancelled");
    }

    #[tokio::test(start_paused = true)]
    async fn an_overrunning_schedule_delays_rather_than_bursts() {
        let (exporter, cancel, poller) = start(config("10s"));
        until_cycles(&exporter, 1).await;
        // Five periods at once (a stalled host): one late cycle, not five.
        after(Duration::from_secs(50)).await;
        until_cycles(&exporter, 2).await;
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(exporter.telemetry().poll_cycles.get(), 2);
        cancel.cancel();
        poller.await.expect("the loop ends when cancelled");
    }
}
