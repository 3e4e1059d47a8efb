//! Runs a batch: a coordinator task per batch owns a `JoinSet` of shard drivers; each driver
//! dispatches its share of the jobs in input order as concurrency slots free up and drives them
//! as futures in one `FuturesUnordered`.
//!
//! Why not a task per job: spawning 100,000 tasks alone takes 65–85 ms on this project's
//! two-core machines (`shared/STACK.md`), which is most of the 5 % overhead budget of a batch of
//! one-second sleeps. A job future pushed into a driver costs an allocation and no scheduling;
//! cancelling a batch is dropping its drivers' futures. Large batches are split across as many
//! drivers as there are worker threads so that both cores start and finish jobs.
//!
//! A load run on the lean HTTP path is driven differently (`drive_slots`): its drivers run a
//! fixed set of slots, each running one task after another on a connection it keeps, so that
//! a request costs no future of its own.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::future::Either;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::batch::{Batch, Outcome, Started, StopReason};
use super::jobs::lean::{Lean, LeanPool, Slot};
use super::jobs::{self, JobContext};
use super::spec::{BatchSpec, JobKind, JobSpec, LoadPlan, OnTimeout, RetryPolicy};
use super::task::{SleepOutput, TaskOutput, ms};
use crate::guard::NetGuard;

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
    pub fn new(config: EngineConfig) -> std::io::Result<Engine> {
        let ctx = JobContext::new(&config.files_root, config.guard)?;
        Ok(Engine {
            inner: Arc::new(Inner {
                ctx: Arc::new(ctx),
                global: Arc::new(Semaphore::new(config.max_concurrency)),
                max_batch_duration: config.max_batch_duration,
                outstanding: Arc::default(),
                capacity: config.max_concurrency.saturating_add(config.max_queue),
                workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
                tracker: TaskTracker::new(),
                shutdown: CancellationToken::new(),
            }),
        })
    }

    /// Whether `file` jobs have a root to read from.
    pub fn has_files_root(&self) -> bool {
        self.inner.ctx.has_files_root()
    }

    /// Reserves room for a batch of `tasks`: its tasks count against the server's bound on
    /// running plus waiting tasks until the batch ends.
    pub fn admit(&self, tasks: usize) -> Result<Admission, Busy> {
        if tasks > self.inner.capacity {
            return Err(Busy::Never {
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

    /// Runs the batch in a task of its own, so that it outlives the request that started it:
    /// a client hanging up cancels nobody's jobs.
    pub fn start(&self, batch: Arc<Batch>, spec: BatchSpec, admission: Admission) {
        let inner = self.inner.clone();
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
    /// The batch alone is larger than the bound.
    Never { capacity: usize },
}

async fn coordinate(inner: Arc<Inner>, batch: Arc<Batch>, spec: BatchSpec) {
    let jobs: Arc<[JobSpec]> = spec.jobs.into();
    let epoch = batch.start();
    let issuer = Arc::new(Issuer::new(&spec.load, epoch));
    // A load run's plain-HTTP requests go on connections of its own (see `jobs::lean`), in one
    // pool for the batch: its drivers share what the guard made of each origin (one lookup per
    // name) and the connections a slot put back. Each slot keeps its own connection, so drivers
    // on different threads rarely touch the pool.
    let pool = spec
        .load
        .is_load
        .then(|| LeanPool::new(inner.ctx.guard.clone(), spec.results, &jobs))
        .filter(LeanPool::sends_any)
        .map(Arc::new);
    let lean = pool.is_some();
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
    let mut set = JoinSet::new();
    for limit in drivers {
        // Out of tokio's cooperative budget: a driver polls thousands of timers per turn, and
        // with the budget each turn would stop after 128 of them and rescan its ready queue.
        // The driver yields by itself after every burst or turn instead (see `drive` and
        // `drive_slots`).
        let (inner, batch, jobs, issuer) =
            (inner.clone(), batch.clone(), jobs.clone(), issuer.clone());
        let driver = if let Some(pool) = &pool {
            Either::Left(drive_slots(inner, batch, jobs, issuer, pool.clone(), limit))
        } else {
            Either::Right(drive(inner, batch, jobs, issuer, limit))
        };
        set.spawn(tokio::task::unconstrained(driver).in_current_span());
    }
    tracing::debug!(tasks = ?spec.load.fixed_tasks(), drivers = count, "batch started");

    let deadline = spec
        .timeout
        .map(|t| tokio::time::Instant::from_std(epoch + t));
    let mut deadline_armed = deadline.is_some();
    // The server's own cap on a batch's life, whatever it asked for.
    let hard_stop = tokio::time::sleep_until(tokio::time::Instant::from_std(
        epoch + inner.max_batch_duration,
    ));
    tokio::pin!(hard_stop);
    let mut hard_armed = true;
    let cancel_pending = spec.on_timeout == OnTimeout::Cancel;
    let mut shutdown_seen = false;
    loop {
        tokio::select! {
            joined = set.join_next() => match joined {
                None => break,
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    // A panicking job must not leave the batch running forever: stop the rest.
                    tracing::error!(error = %e, "a batch driver panicked");
                    batch.stop(StopReason::Cancelled);
                }
            },
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)),
                if deadline_armed =>
            {
                deadline_armed = false;
                batch.deadline_passed(spec.timeout.unwrap_or_default(), cancel_pending);
            }
            _ = &mut hard_stop, if hard_armed => {
                hard_armed = false;
                let limit_ms = inner.max_batch_duration.as_millis() as u64;
                tracing::warn!(limit_ms, "batch reached --max-batch-duration");
                batch.server_limit_passed(inner.max_batch_duration);
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

/// Hands out task numbers to a batch's drivers, in order, and says when each may start:
/// as soon as a slot is free (closed model), or at its place in the schedule (open model).
/// Also decides which tasks belong to the warm-up and when the run is over.
struct Issuer {
    next: AtomicUsize,
    /// Measured (non-warm-up) tasks handed out, closed model.
    measured: AtomicUsize,
    epoch: Instant,
    /// Measured tasks at most.
    count: Option<usize>,
    /// Tasks at most, warm-up included.
    max_tasks: usize,
    warmup_end: Instant,
    /// No measured task starts at or after this.
    end: Option<Instant>,
    rate: Option<f64>,
    /// Open model: how many of the first tasks are the warm-up.
    open_warmup: usize,
}

/// A task number handed out.
#[derive(Debug, Clone, Copy)]
struct Claim {
    index: usize,
    /// Open model: when it should start.
    due: Option<Instant>,
    warmup: bool,
}

impl Claim {
    /// The task's start, begun `now`; its latency counts from `at`.
    fn started(&self, at: Instant, now: Instant) -> Started {
        Started {
            index: self.index,
            at,
            lag: self.due.map(|due| now.saturating_duration_since(due)),
            warmup: self.warmup,
        }
    }
}

impl Issuer {
    fn new(plan: &LoadPlan, epoch: Instant) -> Issuer {
        let warmup_end = epoch + plan.warmup;
        Issuer {
            next: AtomicUsize::new(0),
            measured: AtomicUsize::new(0),
            epoch,
            count: plan.count,
            max_tasks: plan.max_tasks,
            warmup_end,
            end: plan.duration.map(|d| warmup_end + d),
            rate: plan.rate_per_s,
            open_warmup: plan.open_warmup_tasks(),
        }
    }

    /// The next task, or `None` when the run has no more to start.
    fn claim(&self) -> Option<Claim> {
        match self.rate {
            Some(rate) => self.claim_scheduled(rate),
            None => self.claim_now(),
        }
    }

    /// Open model: task `i` is due at `i / rate` seconds after the start.
    fn claim_scheduled(&self, rate: f64) -> Option<Claim> {
        let total = self.open_warmup + self.count?;
        let index = self
            .next
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |i| {
                (i < total.min(self.max_tasks)).then_some(i + 1)
            })
            .ok()?;
        let due = self.epoch + Duration::from_secs_f64(index as f64 / rate);
        let warmup = index < self.open_warmup;
        if !warmup && self.end.is_some_and(|end| due >= end) {
            return None;
        }
        Some(Claim {
            index,
            due: Some(due),
            warmup,
        })
    }

    /// Closed model: a task whenever a driver has a free slot, until the count or the time
    /// is up. Tasks handed out before the warm-up ends are the warm-up.
    fn claim_now(&self) -> Option<Claim> {
        let now = Instant::now();
        let mut warmup = now < self.warmup_end;
        // The warm-up leaves room under --max-jobs for the whole measured run: past that, the
        // next task is a measured one that waits for the warm-up to end.
        let room = self.max_tasks.saturating_sub(self.count.unwrap_or(0));
        let mut due = None;
        if warmup && self.next.load(Ordering::Acquire) >= room {
            warmup = false;
            due = Some(self.warmup_end);
        }
        if !warmup {
            if self.end.is_some_and(|end| now >= end) {
                return None;
            }
            let n = self.measured.fetch_add(1, Ordering::AcqRel);
            if self.count.is_some_and(|count| n >= count) {
                return None;
            }
        }
        let index = self
            .next
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |i| {
                (i < self.max_tasks).then_some(i + 1)
            })
            .ok();
        let Some(index) = index else {
            if self.end.is_some() {
                tracing::warn!(
                    limit = self.max_tasks,
                    "a load run for a duration reached --max-jobs tasks and stops early"
                );
            }
            return None;
        };
        Some(Claim { index, due, warmup })
    }
}

/// Most completions recorded under one lock of the batch state.
const BURST: usize = 4096;

/// Drives one share of a batch: takes tasks from the issuer while this driver has slots and
/// the server has permits (and, in the open model, when each is due), and records outcomes as
/// they arrive, a burst at a time, so that 100,000 timers firing together cost one lock per
/// burst rather than one per task.
async fn drive(
    inner: Arc<Inner>,
    batch: Arc<Batch>,
    jobs: Arc<[JobSpec]>,
    issuer: Arc<Issuer>,
    limit: usize,
) {
    let cancel = batch.cancel_token().clone();
    let mut running: FuturesUnordered<TaskFuture> = FuturesUnordered::new();
    // Server-wide permits this driver holds, one per running task; given back in bulk.
    let mut permits = Permits {
        semaphore: &inner.global,
        held: 0,
    };
    // A task taken from the issuer that waits for its time or for a permit.
    let mut held: Option<Claim> = None;
    let mut exhausted = false;
    // Kept across loop turns so this driver keeps its place in the semaphore's queue.
    let mut waiting: Option<Pin<Box<dyn Future<Output = ()> + Send + '_>>> = None;
    let mut timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let mut started = Vec::new();
    let mut ended = Vec::new();
    let start = |claim: Claim, running: &mut FuturesUnordered<TaskFuture>| {
        let now = Instant::now();
        let at = claim.due.unwrap_or(now);
        running.push(TaskFuture::new(&inner.ctx, &jobs, claim.index, at, now));
        claim.started(at, now)
    };

    loop {
        if cancel.is_cancelled() {
            return;
        }
        while running.len() < limit && waiting.is_none() && timer.is_none() && !exhausted {
            let Some(claim) = held.take().or_else(|| issuer.claim()) else {
                exhausted = true;
                break;
            };
            if let Some(due) = claim.due.filter(|&due| due > Instant::now()) {
                held = Some(claim);
                timer = Some(Box::pin(tokio::time::sleep_until(due.into())));
                break;
            }
            if let Ok(permit) = inner.global.try_acquire() {
                permit.forget();
                permits.held += 1;
                started.push(start(claim, &mut running));
            } else {
                held = Some(claim);
                let global = &inner.global;
                waiting = Some(Box::pin(async move {
                    global
                        .acquire()
                        .await
                        .expect("the semaphore is never closed")
                        .forget();
                }));
            }
        }
        if !started.is_empty() {
            batch.tasks_started(&started);
            started.clear();
        }
        if running.is_empty() && held.is_none() && exhausted {
            return;
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            () = next_burst(&mut running, &mut ended), if !running.is_empty() => {
                permits.release(ended.len());
                batch.tasks_ended(&mut ended);
                // Unconstrained by the budget, so share the worker after each burst.
                tokio::task::yield_now().await;
            }
            _ = async { waiting.as_mut().expect("guarded").await }, if waiting.is_some() => {
                waiting = None;
                permits.held += 1;
                let claim = held.take().expect("only waits with a task held");
                batch.tasks_started(&[start(claim, &mut running)]);
            }
            _ = async { timer.as_mut().expect("guarded").await }, if timer.is_some() => {
                timer = None;
            }
        }
    }
}

/// Starts and ends of tasks that a lean driver's slots noted since the driver last recorded.
#[derive(Default)]
struct Noted {
    started: Vec<Started>,
    ended: Vec<Ended>,
}

/// Drives one share of a load run on the lean path: `limit` slots, each a loop that takes the
/// next task from the issuer, runs it (an HTTP job on the slot's own connection) and notes its
/// start and end. The driver records what its slots noted after each turn, so a request costs
/// no future, allocation or connection checkout of its own.
async fn drive_slots(
    inner: Arc<Inner>,
    batch: Arc<Batch>,
    jobs: Arc<[JobSpec]>,
    issuer: Arc<Issuer>,
    pool: Arc<LeanPool>,
    limit: usize,
) {
    let cancel = batch.cancel_token().clone();
    // Only this driver's slots lock it, all on the thread that polls the driver.
    let noted = parking_lot::Mutex::new(Noted::default());
    let mut slots: FuturesUnordered<_> = (0..limit)
        .map(|_| slot(&inner, &jobs, &issuer, &pool, &noted))
        .collect();
    let mut taken = Noted::default();
    loop {
        // Runs the slots until they have noted something, or all of them have run out of
        // tasks.
        let turn = std::future::poll_fn(|cx| {
            let done = match slots.poll_next_unpin(cx) {
                std::task::Poll::Ready(None) => true,
                // A slot that ran out of tasks ends; the others go on.
                std::task::Poll::Ready(Some(())) => false,
                std::task::Poll::Pending => {
                    let n = noted.lock();
                    if n.started.is_empty() && n.ended.is_empty() {
                        return std::task::Poll::Pending;
                    }
                    false
                }
            };
            std::task::Poll::Ready(done)
        });
        let done = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            done = turn => done,
        };
        std::mem::swap(&mut *noted.lock(), &mut taken);
        if !taken.started.is_empty() {
            batch.tasks_started(&taken.started);
            taken.started.clear();
        }
        if !taken.ended.is_empty() {
            batch.tasks_ended(&mut taken.ended);
        }
        if done {
            return;
        }
        // Unconstrained by the budget, so share the worker after each turn.
        tokio::task::yield_now().await;
    }
}

/// One slot of a lean driver: runs tasks one after another until the issuer has no more.
async fn slot(
    inner: &Inner,
    jobs: &[JobSpec],
    issuer: &Issuer,
    pool: &LeanPool,
    noted: &parking_lot::Mutex<Noted>,
) {
    let semaphore = &inner.global;
    let acquire = || async {
        semaphore
            .acquire()
            .await
            .expect("the semaphore is never closed")
    };
    // Closed model: the slot always has a task in flight, so it holds its server-wide permit
    // throughout. Open model: only while a task runs, not while it waits for the next one's
    // time.
    let closed = issuer.rate.is_none();
    let _held = if closed { Some(acquire().await) } else { None };
    let mut conn = Slot::default();
    // For the open model's waits and for the tasks' timeouts.
    let mut timer = std::pin::pin!(tokio::time::sleep(Duration::ZERO));
    while let Some(claim) = issuer.claim() {
        if let Some(due) = claim.due.filter(|&due| due > Instant::now()) {
            timer.as_mut().reset(due.into());
            timer.as_mut().await;
        }
        let _permit = if closed { None } else { Some(acquire().await) };
        let now = Instant::now();
        let at = claim.due.unwrap_or(now);
        noted.lock().started.push(claim.started(at, now));
        let job_index = claim.index % jobs.len();
        let lean = pool.lean(&mut conn, job_index);
        let outcome = run_job(&inner.ctx, &jobs[job_index], lean, timer.as_mut()).await;
        noted.lock().ended.push(Ended {
            index: claim.index,
            started: at,
            ended: Instant::now(),
            outcome,
        });
    }
}

/// Waits for at least one task to end, then takes every other one that has ended too, up to
/// [`BURST`].
fn next_burst<'a>(
    running: &'a mut FuturesUnordered<TaskFuture>,
    ended: &'a mut Vec<Ended>,
) -> impl Future<Output = ()> + 'a {
    std::future::poll_fn(move |cx| {
        while ended.len() < BURST {
            match running.poll_next_unpin(cx) {
                std::task::Poll::Ready(Some(done)) => ended.push(done),
                std::task::Poll::Ready(None) | std::task::Poll::Pending => break,
            }
        }
        if ended.is_empty() {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
}

/// Server-wide permits held by a driver; whatever is still held when the driver stops (its
/// futures dropped by a cancel, or a panic) goes back to the semaphore.
struct Permits<'a> {
    semaphore: &'a Semaphore,
    held: usize,
}

impl Permits<'_> {
    fn release(&mut self, n: usize) {
        self.held -= n;
        self.semaphore.add_permits(n);
    }
}

impl Drop for Permits<'_> {
    fn drop(&mut self) {
        self.semaphore.add_permits(self.held);
    }
}

/// A task as its driver sees it: which job, when it started, and when it ended.
pub(crate) struct Ended {
    pub index: usize,
    pub started: Instant,
    pub ended: Instant,
    pub outcome: Outcome,
}

pin_project_lite::pin_project! {
    /// One running task. A concrete type, so the driver's `FuturesUnordered` holds it inline
    /// (one allocation per task) rather than behind another box.
    struct TaskFuture {
        index: usize,
        // Where its latency counts from: its start, or in the open model its intended start.
        started: Instant,
        // When it actually began.
        began: Instant,
        #[pin]
        run: Either<tokio::time::Sleep, Pin<Box<dyn Future<Output = Outcome> + Send>>>,
    }
}

impl TaskFuture {
    fn new(
        ctx: &Arc<JobContext>,
        jobs: &Arc<[JobSpec]>,
        index: usize,
        started: Instant,
        began: Instant,
    ) -> TaskFuture {
        let job = &jobs[index % jobs.len()];
        let run = match (&job.kind, job.timeout) {
            // A sleep that no timeout can cut short cannot fail, so it needs no retry
            // machinery: one timer, its deadline fixed from this job's own start.
            (JobKind::Sleep(sleep), timeout) if timeout.is_none_or(|t| t >= sleep.duration) => {
                Either::Left(tokio::time::sleep_until((began + sleep.duration).into()))
            }
            _ => {
                let (ctx, jobs) = (ctx.clone(), jobs.clone());
                // A load run repeats the job list: task `index` runs job `index % len`.
                let run = async move {
                    let timer = std::pin::pin!(tokio::time::sleep(Duration::ZERO));
                    run_job(&ctx, &jobs[index % jobs.len()], None, timer).await
                };
                Either::Right(Box::pin(run) as Pin<Box<_>>)
            }
        };
        TaskFuture {
            index,
            started,
            began,
            run,
        }
    }
}

impl Future for TaskFuture {
    type Output = Ended;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Ended> {
        let this = self.project();
        let outcome = match this.run.as_pin_mut() {
            Either::Left(sleep) => {
                std::task::ready!(sleep.poll(cx));
                Outcome {
                    attempts: 1,
                    output: Some(TaskOutput::Sleep(SleepOutput {
                        slept_ms: ms(this.began.elapsed()),
                    })),
                    error: None,
                }
            }
            Either::Right(job) => std::task::ready!(job.poll(cx)),
        };
        std::task::Poll::Ready(Ended {
            index: *this.index,
            started: *this.started,
            ended: Instant::now(),
            outcome,
        })
    }
}

/// One job with its per-attempt timeout and retries, timed by `timer` (which a lean slot
/// keeps from task to task: moving a registered timer's deadline later costs an atomic
/// update, where a new timer per request is an allocation and two trips into the timer
/// wheel).
async fn run_job(
    ctx: &JobContext,
    job: &JobSpec,
    mut lean: Option<Lean<'_>>,
    mut timer: Pin<&mut tokio::time::Sleep>,
) -> Outcome {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let begun = Instant::now();
        let attempt = jobs::run_once(ctx, &job.kind, lean.as_mut().map(Lean::reborrow), begun);
        // One await point for both cases: the attempt's future is stored (and copied) once.
        let limit = job.timeout.map(|limit| {
            timer.as_mut().reset((begun + limit).into());
            (limit, timer.as_mut())
        });
        let result = Limited { attempt, limit }.await;
        match result {
            Ok(output) => {
                return Outcome {
                    attempts,
                    output: Some(output),
                    error: None,
                };
            }
            Err(failure) if failure.retryable && attempts <= job.retries.max => {
                let wait = backoff(&job.retries, attempts);
                timer.as_mut().reset((Instant::now() + wait).into());
                timer.as_mut().await;
            }
            Err(failure) => {
                return Outcome {
                    attempts,
                    output: failure.output.map(|o| *o),
                    error: Some(failure.error),
                };
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// An attempt cut short by the job's timeout, if it has one.
    struct Limited<'t, F> {
        #[pin]
        attempt: F,
        limit: Option<(Duration, Pin<&'t mut tokio::time::Sleep>)>,
    }
}

impl<F: Future<Output = Result<TaskOutput, jobs::Failure>>> Future for Limited<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<F::Output> {
        let this = self.project();
        if let std::task::Poll::Ready(out) = this.attempt.poll(cx) {
            return std::task::Poll::Ready(out);
        }
        if let Some((limit, timer)) = this.limit
            && timer.as_mut().poll(cx).is_ready()
        {
            return std::task::Poll::Ready(Err(jobs::Failure::timeout(*limit)));
        }
        std::task::Poll::Pending
    }
}

/// Exponential backoff with "equal jitter": half the delay is fixed, half random, so retries
/// of many tasks that failed together spread out. Capped at 30 s.
fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let exp = policy.backoff.saturating_mul(1u32 << (attempt - 1).min(16));
    let capped = exp.min(Duration::from_secs(30));
    let half = capped / 2;
    half + half.mul_f64(rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn backoff_grows_and_stays_within_its_jitter_band() {
        let policy = RetryPolicy {
            max: 5,
            backoff: Duration::from_millis(100),
        };
        for attempt in 1..=4 {
            let full = Duration::from_millis(100 * (1 << (attempt - 1)));
            let d = backoff(&policy, attempt);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
        assert!(backoff(&policy, 30) <= Duration::from_secs(30));
    }
}
