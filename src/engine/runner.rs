//! Runs a batch: a coordinator task per batch owns a `JoinSet` of shard drivers; each driver
//! dispatches its share of the jobs in input order as concurrency slots free up and drives them
//! as futures in one `FuturesUnordered`.
//!
//! Why not a task per job: spawning 100,000 tasks alone takes 65–85 ms on this project's
//! two-core machines (`shared/STACK.md`), which is most of the 5 % overhead budget of a batch of
//! one-second sleeps. A job future pushed into a driver costs an allocation and no scheduling;
//! cancelling a batch is dropping its drivers' futures. Large batches are split across as many
//! drivers as there are worker threads so that both cores start and finish jobs.

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

use super::batch::{Batch, Outcome, StopReason};
use super::jobs::{self, JobContext};
use super::spec::{BatchSpec, JobKind, JobSpec, OnTimeout, RetryPolicy};
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
    let total = spec.tasks();
    let jobs: Arc<[JobSpec]> = spec.jobs.into();
    let epoch = batch.start();
    let drivers = plan_drivers(total, spec.concurrency, inner.workers);
    let count = drivers.len();
    let mut set = JoinSet::new();
    for (k, limit) in drivers.into_iter().enumerate() {
        let indices = (k..total).step_by(count);
        // Out of tokio's cooperative budget: a driver polls thousands of timers per turn, and
        // with the budget each turn would stop after 128 of them and rescan its ready queue.
        // The driver yields by itself after every burst instead (see `drive`).
        let driver = drive(inner.clone(), batch.clone(), jobs.clone(), indices, limit);
        set.spawn(tokio::task::unconstrained(driver).in_current_span());
    }
    tracing::debug!(tasks = total, drivers = count, "batch started");

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
fn plan_drivers(jobs: usize, concurrency: usize, workers: usize) -> Vec<usize> {
    let n = if jobs >= SHARD_MIN_JOBS {
        workers.min(concurrency / SHARD_MIN_SLOTS).max(1)
    } else {
        1
    };
    (0..n)
        .map(|k| concurrency / n + usize::from(k < concurrency % n))
        .collect()
}

/// Most completions recorded under one lock of the batch state.
const BURST: usize = 4096;

/// Drives one share of a batch: dispatches jobs in order while this driver has slots and the
/// server has permits, and records outcomes as they arrive, a burst at a time, so that
/// 100,000 timers firing together cost one lock per burst rather than one per task.
async fn drive(
    inner: Arc<Inner>,
    batch: Arc<Batch>,
    jobs: Arc<[JobSpec]>,
    indices: impl Iterator<Item = usize>,
    limit: usize,
) {
    let cancel = batch.cancel_token().clone();
    let mut queue = indices.peekable();
    let mut running: FuturesUnordered<TaskFuture> = FuturesUnordered::new();
    // Server-wide permits this driver holds, one per running task; given back in bulk.
    let mut permits = Permits {
        semaphore: &inner.global,
        held: 0,
    };
    // Kept across loop turns so this driver keeps its place in the semaphore's queue.
    let mut waiting: Option<Pin<Box<dyn Future<Output = ()> + Send + '_>>> = None;
    let mut started = Vec::new();
    let mut ended = Vec::new();

    loop {
        if cancel.is_cancelled() {
            return;
        }
        while running.len() < limit && queue.peek().is_some() && waiting.is_none() {
            if let Ok(permit) = inner.global.try_acquire() {
                permit.forget();
                permits.held += 1;
                let index = queue.next().expect("peeked");
                let at = Instant::now();
                running.push(TaskFuture::new(&inner.ctx, &jobs, index, at));
                started.push((index, at));
            } else {
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
        if running.is_empty() && queue.peek().is_none() {
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
                let index = queue.next().expect("only waits with jobs queued");
                let at = Instant::now();
                running.push(TaskFuture::new(&inner.ctx, &jobs, index, at));
                batch.tasks_started(&[(index, at)]);
            }
        }
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
        started: Instant,
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
    ) -> TaskFuture {
        let job = &jobs[index % jobs.len()];
        let run = match (&job.kind, job.timeout) {
            // A sleep that no timeout can cut short cannot fail, so it needs no retry
            // machinery: one timer, its deadline fixed from this job's own start.
            (JobKind::Sleep(sleep), timeout) if timeout.is_none_or(|t| t >= sleep.duration) => {
                Either::Left(tokio::time::sleep_until((started + sleep.duration).into()))
            }
            _ => Either::Right(Box::pin(run_job(ctx.clone(), jobs.clone(), index)) as Pin<Box<_>>),
        };
        TaskFuture {
            index,
            started,
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
                        slept_ms: ms(this.started.elapsed()),
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

/// One job with its per-attempt timeout and retries.
async fn run_job(ctx: Arc<JobContext>, jobs: Arc<[JobSpec]>, index: usize) -> Outcome {
    // A load run repeats the job list: task `index` runs job `index % len`.
    let job = &jobs[index % jobs.len()];
    let mut attempts = 0;
    loop {
        attempts += 1;
        let attempt = jobs::run_once(&ctx, &job.kind);
        let result = match job.timeout {
            Some(limit) => tokio::time::timeout(limit, attempt)
                .await
                .unwrap_or_else(|_| Err(jobs::Failure::timeout(limit))),
            None => attempt.await,
        };
        match result {
            Ok(output) => {
                return Outcome {
                    attempts,
                    output: Some(output),
                    error: None,
                };
            }
            Err(failure) if failure.retryable && attempts <= job.retries.max => {
                tokio::time::sleep(backoff(&job.retries, attempts)).await;
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
        assert_eq!(plan_drivers(3, 3, 2), vec![3]);
        assert_eq!(plan_drivers(10_000, 1, 2), vec![1]);
    }

    #[test]
    fn large_batches_split_their_concurrency_exactly() {
        let plan = plan_drivers(100_000, 1001, 2);
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
