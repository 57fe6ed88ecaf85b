//! Poll lanes: the threads a cycle's checks run on, one single-threaded
//! tokio runtime each.
//!
//! A check is a few tens of microseconds of CPU between two waits on the
//! network. On a work-stealing runtime every wait that ends wakes a parked
//! worker thread to share the work, so a cycle at full speed spent about a
//! third of its CPU switching threads (`perf`: the kernel's task switch and
//! futex wake-ups; a cycle on a single thread took half the CPU per check).
//! Here each worker task stays on the lane it was given: its request, the
//! connection task hyper spawns for it, and its wake-ups all happen on one
//! thread, and the lanes together still use every core.
//!
//! Without lanes ([`Lanes::here`]) a cycle's workers run on the runtime
//! that calls it, which is what the library's tests and embedders get.
//! The daemon and `--once` start one lane per core, at most [`MAX_LANES`].

use std::future::Future;
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Where a cycle's workers are spawned: worker `i` on lane `i % len`, or
/// all on the calling runtime when there are no lanes. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Lanes {
    handles: Arc<[Handle]>,
}

impl Lanes {
    /// No lanes: workers run on the caller's runtime.
    pub fn here() -> Lanes {
        Lanes::default()
    }

    /// How many lanes there are (0 for [`Lanes::here`]).
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Whether there are no lanes.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// The lane worker `i` runs on (0 when there are none): the index of
    /// its Store client too (`StoreClient::for_lane`).
    pub fn lane_of(&self, i: usize) -> usize {
        i % self.handles.len().max(1)
    }

    /// Spawns `task` into `set` on lane `lane`, or on the calling runtime
    /// when there are no lanes.
    pub fn spawn_on<T: Send + 'static>(
        &self,
        set: &mut JoinSet<T>,
        lane: usize,
        task: impl Future<Output = T> + Send + 'static,
    ) {
        match self.handles.get(lane) {
            Some(handle) => set.spawn_on(task, handle),
            None => set.spawn(task),
        };
    }

    /// The first lane's runtime, for the loops that drive cycles; the
    /// calling one when there are no lanes.
    pub fn first(&self) -> Handle {
        self.handles
            .first()
            .cloned()
            .unwrap_or_else(Handle::current)
    }
}

/// The most lanes worth starting: a check costs about 20 µs of CPU, so
/// eight lanes could make hundreds of thousands of checks a second, far
/// more than any Store answers; more would only add threads and pools.
pub const MAX_LANES: usize = 8;

/// The threads behind [`Lanes`]: each runs its runtime until dropped.
pub struct LaneThreads {
    lanes: Lanes,
    stop: CancellationToken,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl LaneThreads {
    /// Starts `count` lanes (at least one), threads named `msfb-poll-N`;
    /// each of them, and each blocking thread their runtimes start
    /// (`msfb-poll-io`), calls `on_start` first (the daemon lowers their
    /// priority there).
    ///
    /// # Errors
    /// When a runtime or a thread cannot be created.
    pub fn start(count: usize, on_start: fn()) -> std::io::Result<LaneThreads> {
        let stop = CancellationToken::new();
        let mut handles = Vec::new();
        let mut threads = Vec::new();
        for i in 0..count.max(1) {
            // Its blocking threads (a state file save after a cycle) get
            // the same priority as the lane.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name("msfb-poll-io")
                .on_thread_start(on_start)
                .build()?;
            handles.push(runtime.handle().clone());
            let stop = stop.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("msfb-poll-{i}"))
                    .spawn(move || {
                        on_start();
                        runtime.block_on(stop.cancelled());
                        // Whatever is still running (a check being aborted,
                        // a save) is not waited for.
                        runtime.shutdown_background();
                    })?,
            );
        }
        Ok(LaneThreads {
            lanes: Lanes {
                handles: handles.into(),
            },
            stop,
            threads,
        })
    }

    /// The lanes, to hand to the exporter.
    pub fn lanes(&self) -> Lanes {
        self.lanes.clone()
    }
}

impl Drop for LaneThreads {
    fn drop(&mut self) {
        self.stop.cancel();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The thread each of `workers` workers ran on, by worker.
    async fn threads(lanes: &Lanes, workers: usize) -> Vec<String> {
        let mut set = JoinSet::new();
        for i in 0..workers {
            lanes.spawn_on(&mut set, lanes.lane_of(i), async move {
                let name = std::thread::current().name().unwrap_or("").to_owned();
                (i, name)
            });
        }
        let mut ran = set.join_all().await;
        ran.sort();
        ran.into_iter().map(|(_, name)| name).collect()
    }

    #[test]
    fn workers_go_round_the_lanes_and_each_stays_on_its_thread() {
        let lane_threads = LaneThreads::start(3, || {}).expect("lanes");
        let lanes = lane_threads.lanes();
        assert_eq!(lanes.len(), 3);
        let caller = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let ran = caller.block_on(threads(&lanes, 7));
        let expected: Vec<String> = (0..7).map(|i| format!("msfb-poll-{}", i % 3)).collect();
        assert_eq!(ran, expected);
    }

    #[tokio::test]
    async fn without_lanes_workers_run_on_the_calling_runtime() {
        let lanes = Lanes::here();
        assert!(lanes.is_empty());
        assert_eq!(lanes.lane_of(5), 0);
        let ran: BTreeSet<String> = threads(&lanes, 4).await.into_iter().collect();
        assert!(
            ran.iter().all(|name| !name.starts_with("msfb-poll")),
            "{ran:?}"
        );
    }

    #[test]
    fn dropping_the_threads_stops_them_and_what_runs_on_them() {
        let lane_threads = LaneThreads::start(2, || {}).expect("lanes");
        let lanes = lane_threads.lanes();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        // A task that would never end holds the sender: it is dropped
        // (and the channel closed) only when its runtime goes.
        lanes.first().spawn(async move {
            let _held = tx;
            std::future::pending::<()>().await;
        });
        drop(lane_threads);
        assert!(rx.recv().is_err(), "the pending task was dropped");
    }

    #[test]
    fn at_least_one_lane_is_started() {
        assert_eq!(
            LaneThreads::start(0, || {}).expect("lanes").lanes().len(),
            1
        );
    }
}
