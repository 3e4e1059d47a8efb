//! Runs a batch: a coordinator task per batch runs its shard drivers (a small batch's one
//! driver inside the coordinator's own future, several in a `JoinSet`); each driver dispatches
//! its share of the jobs in input order as concurrency slots free up and drives them as
//! futures in one `FuturesUnordered`.
//!
//! Why not a task per job: spawning 100,000 tasks alone takes 65–85 ms on a two-core machine
//! (a bare tokio program, measured), which is most of the 5 % overhead budget of a batch of
//! one-second sleeps. A job future pushed into a driver costs an allocation and no scheduling;
//! cancelling a batch is dropping its drivers' futures. Large batches are split across as many
//! drivers as there are worker threads so that both cores start and finish jobs.
//!
//! A load run on the lean HTTP path is driven differently (`slots`): its drivers run a
//! fixed set of slots, each running one task after another on a connection it keeps, so that
//! a request costs no future of its own.
//!
//! - `issuer`: the schedule (which task next, when, warm-up, the run's end).
//! - `drive`: the general driver; `slots`: the lean one.
//! - `attempt`: a job's attempts, timeouts, retries and backoff.

mod attempt;
mod drive;
mod flow;
mod issuer;
mod slots;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::Either;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use uuid::Uuid;

use super::batch::{Batch, Prior, StopReason};
use super::jobs::JobContext;
use super::jobs::Trust;
use super::jobs::lean::{Dialling, LeanPool};
use super::meter::Meter;
use super::spec::{BatchSpec, JobSpec};
use crate::guard::NetGuard;
use drive::drive;
use issuer::Issuer;
use slots::drive_slots;

/// Server-wide settings the engine needs.
#[derive(Clone)]
pub struct EngineConfig {
    /// Jobs in flight across every batch.
    pub max_concurrency: usize,
    /// Tasks that may wait for a slot beyond those in flight, across every batch.
    pub max_queue: usize,
    /// Longest a batch may run, whatever it asked for.
    pub max_batch_duration: Duration,
    /// Where `file` jobs read; when the folder does not exist, file jobs fail `not_found`.
    pub files_root: PathBuf,
    /// What HTTP jobs may reach.
    pub guard: NetGuard,
    /// The certificate roots HTTPS jobs trust.
    pub trust: Arc<Trust>,
    /// Batches without `load` send through the general client only (a test seam: the
    /// reference the lean path is compared against).
    pub general_client: bool,
    /// Where batches report their task and batch counts.
    pub meter: &'static dyn Meter,
}

/// Below this many jobs a batch is driven by one driver: splitting gains nothing.
const SHARD_MIN_JOBS: usize = 2048;
/// Each driver of a split batch keeps at least this many of the batch's concurrency slots.
const SHARD_MIN_SLOTS: usize = 64;
/// The same for a load run on the lean path, whose drivers also do its network I/O: small
/// drivers, so that when the OS takes a worker thread away mid-turn (as it does when the load
/// and its target share the cores) only a few requests wait for it to come back. Measured at
/// concurrency 64 against a local nginx on 2 cores: 2 slots a driver kept p99 at 2.0-2.4 ms;
/// 16 slots a driver gave 4.0-4.5 ms in 11 of 14 runs (a 4 ms scheduler tick stalling 16
/// requests at a time), at no gain in throughput.
const LEAN_MIN_SLOTS: usize = 2;
/// How many drivers a lean load run may have per worker thread.
const LEAN_DRIVERS_PER_WORKER: usize = 16;

/// Starts batches and keeps track of them until they end.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: Arc<JobContext>,
    general_client: bool,
    meter: &'static dyn Meter,
    /// The server-wide bound on jobs in flight (`--max-concurrency`), shared by all batches.
    global: Arc<Semaphore>,
    max_batch_duration: Duration,
    /// Tasks of unfinished batches, against `capacity`: what bounds memory and the queue.
    outstanding: Arc<AtomicUsize>,
    capacity: usize,
    /// How many drivers a large batch is split into: one per worker thread.
    workers: usize,
    /// Every batch coordinator, so shutdown can wait for them.
    tracker: TaskTracker,
    /// Cancelled at shutdown: running batches stop and record their tasks as interrupted.
    shutdown: CancellationToken,
}

impl Engine {
    pub fn new(config: EngineConfig) -> Engine {
        let ctx = JobContext::new(&config.files_root, config.guard, config.trust);
        Engine {
            inner: Arc::new(Inner {
                ctx: Arc::new(ctx),
                general_client: config.general_client,
                meter: config.meter,
                global: Arc::new(Semaphore::new(config.max_concurrency)),
                max_batch_duration: config.max_batch_duration,
                outstanding: Arc::default(),
                capacity: config.max_concurrency.saturating_add(config.max_queue),
                workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
                tracker: TaskTracker::new(),
                shutdown: CancellationToken::new(),
            }),
        }
    }

    /// Whether `file` jobs have a root to read from.
    pub fn has_files_root(&self) -> bool {
        self.inner.ctx.has_files_root()
    }

    /// A new batch of `spec`, ready to [`start`](Engine::start).
    pub fn new_batch(&self, spec: &BatchSpec) -> Arc<Batch> {
        Batch::new(Uuid::now_v7(), spec, self.inner.meter)
    }

    /// A batch (or a shard of one) run before, picked up from what was kept of it, ready to
    /// [`start`](Engine::start) with `spec`, whose open-model schedule is moved on to where
    /// its first unended task is.
    pub fn resume_batch(
        &self,
        id: Uuid,
        created_at: chrono::DateTime<chrono::Utc>,
        spec: &mut BatchSpec,
        prior: Prior,
    ) -> Arc<Batch> {
        let batch = Batch::resume(id, created_at, spec, self.inner.meter, prior);
        if let (Some(rate), Some(ended)) = (spec.load.rate_per_s, batch.ended_before()) {
            let first = ended.iter().position(|e| !e).unwrap_or(ended.len());
            let at = spec.load.stripe.global(first) as f64 / rate;
            spec.load.resume_at = Duration::from_secs_f64(at);
        }
        batch
    }

    /// Reserves room for a batch: the tasks it holds at once (see [`LoadPlan::reserve`](super::spec::LoadPlan::reserve)) count
    /// against the server's bound on running plus waiting tasks until the batch ends.
    pub fn admit(&self, spec: &BatchSpec) -> Result<Admission, Busy> {
        let tasks = spec.load.reserve(spec.concurrency, spec.results);
        if tasks > self.inner.capacity {
            return Err(Busy::Never {
                tasks,
                capacity: self.inner.capacity,
            });
        }
        let outstanding = &self.inner.outstanding;
        let mut now = outstanding.load(Ordering::Relaxed);
        loop {
            if now + tasks > self.inner.capacity {
                return Err(Busy::Full);
            }
            match outstanding.compare_exchange_weak(
                now,
                now + tasks,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Ok(Admission {
                        outstanding: outstanding.clone(),
                        tasks,
                    });
                }
                Err(seen) => now = seen,
            }
        }
    }

    /// Room for a run that starts no task (a shard ended from its checkpoint).
    pub fn admit_none(&self) -> Admission {
        Admission {
            outstanding: self.inner.outstanding.clone(),
            tasks: 0,
        }
    }

    /// Room left for running and waiting tasks.
    pub fn free(&self) -> usize {
        self.inner
            .capacity
            .saturating_sub(self.inner.outstanding.load(Ordering::Relaxed))
    }

    /// Runs the batch in a task of its own, so that it outlives the request that started it:
    /// a client hanging up cancels nobody's jobs.
    pub fn start(&self, batch: Arc<Batch>, spec: BatchSpec, admission: Admission) {
        let inner = self.inner.clone();
        // Boxed: a future keeps room for what it captured for as long as it lives, and the
        // spec is needed only to set the batch going (see `coordinate`).
        let spec = Box::new(spec);
        let span = tracing::info_span!("batch", batch_id = %batch.id);
        self.inner.tracker.spawn(
            async move {
                coordinate(inner, batch, spec).await;
                drop(admission);
            }
            .instrument(span),
        );
    }

    /// Stops every running batch (their unfinished tasks become `interrupted`) and waits for
    /// them to record it.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }

    /// Waits for running batches to end by themselves, for at most `grace`.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.inner.tracker.close();
        tokio::time::timeout(grace, self.inner.tracker.wait())
            .await
            .is_ok()
    }
}

/// Room reserved for a batch's tasks; given back when dropped.
pub struct Admission {
    outstanding: Arc<AtomicUsize>,
    tasks: usize,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.outstanding.fetch_sub(self.tasks, Ordering::AcqRel);
    }
}

/// Why a batch was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// Running and waiting tasks are at the bound; try again shortly.
    Full,
    /// The batch alone (`tasks` at once) is larger than the bound.
    Never { tasks: usize, capacity: usize },
}

async fn coordinate(inner: Arc<Inner>, batch: Arc<Batch>, spec: Box<BatchSpec>) {
    let epoch = batch.start();
    let timeout = spec.timeout;
    // The drivers, set going before the first await: the spec is gone by then, so that an
    // in-flight batch's coordinating future holds none of it.
    let drivers = run_drivers(&inner, &batch, spec, epoch);
    tokio::pin!(drivers);

    // The batch's deadline (`timeout_ms`) and the server's cap on its life, on one timer, in
    // tokio's clock (which a test may pause).
    use tokio::time::Instant;
    let began = Instant::from_std(epoch);
    let mut deadline = timeout.map(|t| began + t);
    let mut hard_stop = Some(began + inner.max_batch_duration);
    let next = |a: Option<Instant>, b: Option<Instant>| a.into_iter().chain(b).min();
    let timer = tokio::time::sleep_until(next(deadline, hard_stop).unwrap_or(began));
    tokio::pin!(timer);
    let mut shutdown_seen = false;
    loop {
        tokio::select! {
            () = &mut drivers => break,
            () = &mut timer, if deadline.is_some() || hard_stop.is_some() => {
                let now = Instant::now();
                let mut stops = None;
                if deadline.is_some_and(|d| d <= now) {
                    deadline = None;
                    stops = batch.deadline_passed(timeout.unwrap_or_default());
                }
                if hard_stop.is_some_and(|h| h <= now) {
                    hard_stop = None;
                    let limit_ms = inner.max_batch_duration.as_millis() as u64;
                    tracing::warn!(limit_ms, "batch reached --max-batch-duration");
                    stops = stops.or(batch.server_limit_passed(inner.max_batch_duration));
                }
                if let Some(at) = next(deadline, hard_stop) {
                    timer.as_mut().reset(at);
                }
                if let Some(reason) = stops {
                    // A turn for whoever the answer woke, so that it reads the batch as it
                    // was answered, before its unfinished tasks are stopped.
                    tokio::task::yield_now().await;
                    batch.stop(reason);
                }
            }
            _ = inner.shutdown.cancelled(), if !shutdown_seen => {
                shutdown_seen = true;
                batch.stop(StopReason::Interrupted);
            }
        }
    }
    batch.finish();
    tracing::debug!(status = ?batch.status(), "batch finished");
}

/// The batch's shard drivers, run to their end: a single driver inside the coordinating
/// task (a task of its own was some 250 bytes more per in-flight batch), several each in a
/// task of its own on the worker threads. A driver that panics stops the rest of the batch.
fn run_drivers(
    inner: &Arc<Inner>,
    batch: &Arc<Batch>,
    spec: Box<BatchSpec>,
    epoch: std::time::Instant,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut drivers = start_drivers(inner, batch, spec, epoch);
    let batch = batch.clone();
    if drivers.len() == 1 {
        let driver = drivers.pop().expect("one driver");
        Either::Left(run_inline(driver, batch))
    } else {
        let mut set = JoinSet::new();
        for driver in drivers {
            set.spawn(driver);
        }
        Either::Right(async move {
            while let Some(joined) = set.join_next().await {
                if let Err(e) = joined {
                    driver_panicked(&batch, &e);
                }
            }
        })
    }
}

/// Runs one driver where it is polled, stopping the batch if it panics (as a `JoinSet` would
/// tell of a driver task's panic).
async fn run_inline(driver: impl std::future::Future<Output = ()>, batch: Arc<Batch>) {
    use futures::FutureExt;
    if let Err(e) = std::panic::AssertUnwindSafe(driver).catch_unwind().await {
        let message = e
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| e.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        driver_panicked(&batch, &message);
    }
}

fn driver_panicked(batch: &Batch, e: &dyn std::fmt::Display) {
    // A panicking job must not leave the batch running forever: stop the rest.
    tracing::error!(error = %e, "a batch driver panicked");
    batch.stop(StopReason::Cancelled);
}

/// The batch's shard drivers, to be run: each holds its share of the slots.
fn start_drivers(
    inner: &Arc<Inner>,
    batch: &Arc<Batch>,
    spec: Box<BatchSpec>,
    epoch: std::time::Instant,
) -> Vec<impl std::future::Future<Output = ()> + Send + 'static + use<>> {
    // Unboxed here, so that the box is freed when this returns (a box moved out of is freed
    // only where its binding ends).
    let spec = *spec;
    let jobs: Arc<[JobSpec]> = spec.jobs.into();
    let issuer = Arc::new(
        Issuer::new(&spec.load, epoch)
            .until(batch.no_more_starts().clone())
            .skipping(batch.ended_before()),
    );
    // A batch's HTTP requests go on connections of its own (see `jobs::lean`), in one pool
    // for the batch: its drivers share what the guard made of each origin (a load run: one
    // lookup per name), the connections a slot put back, and the HTTP/2 connections. In a load
    // run each slot keeps its own connection, so drivers on different threads rarely touch
    // the pool.
    let dialling = Dialling {
        guard: inner.ctx.guard.clone(),
        trust: inner.ctx.trust.clone(),
        files: inner.ctx.files.clone(),
        keep_lookups: spec.load.is_load,
        h2_connections: spec.load.connections.unwrap_or(inner.workers),
    };
    let pool = (spec.load.is_load || !inner.general_client)
        .then(|| LeanPool::new(dialling, spec.results, &jobs))
        .filter(LeanPool::sends_any)
        .map(Arc::new);
    let lean = spec.load.is_load && pool.is_some();
    // A large or long batch is split among drivers; one that is short gains nothing by it.
    let large = spec.load.fixed_tasks().is_none_or(|n| n >= SHARD_MIN_JOBS);
    // The lean path drives its connections inside the driver: its I/O is the driver's, so
    // even a few slots are worth a driver per worker thread.
    let min_slots = if lean {
        LEAN_MIN_SLOTS
    } else {
        SHARD_MIN_SLOTS
    };
    // Lean load runs get many small drivers (see `LEAN_MIN_SLOTS`), which work stealing also
    // spreads evenly over the worker threads.
    let split = inner.workers * if lean { LEAN_DRIVERS_PER_WORKER } else { 1 };
    let drivers = plan_drivers(large, spec.concurrency, split, min_slots);
    let count = drivers.len();
    let mut set = Vec::with_capacity(count);
    for (d, limit) in drivers.into_iter().enumerate() {
        // Driver `d` of `count` holds the slots d, d + count, ... of the run (see
        // `Issuer::slot_rank`).
        let slots = super::spec::Stripe::shard(d, count);
        // Out of tokio's cooperative budget: a driver polls thousands of timers per turn, and
        // with the budget each turn would stop after 128 of them and rescan its ready queue.
        // The driver yields by itself after every burst or turn instead (see `drive` and
        // `drive_slots`).
        let (inner, batch, jobs, issuer) =
            (inner.clone(), batch.clone(), jobs.clone(), issuer.clone());
        let driver = match &pool {
            Some(pool) if lean => Either::Left(drive_slots(
                inner,
                batch,
                jobs,
                issuer,
                pool.clone(),
                limit,
                slots,
            )),
            _ => Either::Right(drive(
                inner,
                batch,
                jobs,
                issuer,
                pool.clone(),
                limit,
                slots,
            )),
        };
        set.push(tokio::task::unconstrained(driver).in_current_span());
    }
    tracing::debug!(tasks = ?spec.load.fixed_tasks(), drivers = count, "batch started");
    set
}

/// Splits a batch's concurrency among drivers: one driver unless the batch is large and its
/// concurrency leaves every driver a useful share.
fn plan_drivers(large: bool, concurrency: usize, workers: usize, min_slots: usize) -> Vec<usize> {
    let n = if large {
        workers.min(concurrency / min_slots).max(1)
    } else {
        1
    };
    (0..n)
        .map(|k| concurrency / n + usize::from(k < concurrency % n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_driver_run_inline_that_panics_stops_its_batch() {
        let limits = crate::config::Config::defaults().limits();
        let body = br#"{"jobs":[{"kind":"sleep","duration_ms":1}]}"#;
        let spec = crate::request::parse_batch(body, &limits).unwrap();
        let batch = Batch::new(Uuid::now_v7(), &spec, crate::engine::meter::NO_METER);
        run_inline(async { panic!("a job's bug") }, batch.clone()).await;
        assert!(batch.cancel_token().is_cancelled());
        // A driver that ends by itself stops nothing.
        let calm = Batch::new(Uuid::now_v7(), &spec, crate::engine::meter::NO_METER);
        run_inline(async {}, calm.clone()).await;
        assert!(!calm.cancel_token().is_cancelled());
    }

    #[test]
    fn small_batches_get_one_driver_with_all_the_slots() {
        assert_eq!(plan_drivers(false, 3, 2, SHARD_MIN_SLOTS), vec![3]);
        assert_eq!(plan_drivers(true, 1, 2, SHARD_MIN_SLOTS), vec![1]);
    }

    #[test]
    fn large_batches_split_their_concurrency_exactly() {
        let plan = plan_drivers(true, 1001, 2, SHARD_MIN_SLOTS);
        assert_eq!(plan, vec![501, 500]);
        assert_eq!(plan.iter().sum::<usize>(), 1001);
    }
}
