//! The general driver: runs its share of a batch's tasks as futures in one
//! `FuturesUnordered`, starting them as its slots, the server's permits and (in the open model)
//! the schedule allow, and records their ends a burst at a time.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::Either;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::Semaphore;

use super::Inner;
use super::attempt::run_job;
use super::issuer::{Claim, Issuer};
use crate::engine::batch::{Batch, Ended, Outcome, Started};
use crate::engine::jobs::JobContext;
use crate::engine::jobs::lean::{LeanPool, Slot};
use crate::engine::spec::{JobKind, JobSpec, Stripe};
use crate::engine::task::{SleepOutput, TaskOutput, ms};

/// Most completions recorded under one lock of the batch state.
const BURST: usize = 4096;

/// Drives one share of a batch: takes tasks from the issuer while this driver has slots and
/// the server has permits (and, in the open model, when each is due), and records outcomes as
/// they arrive, a burst at a time, so that 100,000 timers firing together cost one lock per
/// burst rather than one per task.
pub(super) async fn drive(
    inner: Arc<Inner>,
    batch: Arc<Batch>,
    jobs: Arc<[JobSpec]>,
    issuer: Arc<Issuer>,
    pool: Option<Arc<LeanPool>>,
    limit: usize,
    driver: Stripe,
) {
    let cancel = batch.cancel_token().clone();
    let mut running = Running::new(limit.min(issuer.max_tasks()));
    // Server-wide permits this driver holds, one per running task; given back in bulk.
    let mut permits = Permits::new(&inner.global);
    // A task taken from the issuer that waits for its time or for a permit.
    let mut held: Option<Claim> = None;
    let mut exhausted = false;
    // Kept across loop turns so this driver keeps its place in the semaphore's queue.
    let mut waiting: Option<Pin<Box<dyn Future<Output = ()> + Send + '_>>> = None;
    let mut timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
    // Concurrency stages: when the ramp next gives this driver another slot.
    let mut rise: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let mut started = Vec::new();
    let mut ended = Vec::new();
    let start = |claim: Claim, running: &mut Running| {
        start_task(&inner, &jobs, &pool, &issuer, claim, running)
    };

    loop {
        if cancel.is_cancelled() {
            return;
        }
        let (allowed, next) = issuer.driver_slots(driver, limit, Instant::now());
        if allowed <= running.len() && !exhausted && rise.is_none() {
            match next {
                Some(at) => rise = Some(Box::pin(tokio::time::sleep_until(at.into()))),
                // The ramp gives this driver no more slots before the end.
                None if allowed == 0 => exhausted = held.is_none(),
                None => {}
            }
        }
        while running.len() < allowed && waiting.is_none() && timer.is_none() && !exhausted {
            let kept = held.take().filter(|_| !issuer.stopped());
            let Some(claim) = kept.or_else(|| issuer.claim()) else {
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
                waiting = Some(permit_wait(&inner.global));
            }
        }
        if !started.is_empty() {
            // Not kept for the next burst: a small batch would hold its capacity as long
            // as its tasks run.
            batch.tasks_started(&std::mem::take(&mut started));
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
                if issuer.stopped() {
                    permits.release(1);
                } else {
                    batch.tasks_started(&[start(claim, &mut running)]);
                }
            }
            _ = async { timer.as_mut().expect("guarded").await }, if timer.is_some() => {
                timer = None;
            }
            _ = async { rise.as_mut().expect("guarded").await }, if rise.is_some() => {
                rise = None;
            }
        }
    }
}

/// Starts a claimed task on the driver's set: at its due time in the open model, else now.
fn start_task(
    inner: &Inner,
    jobs: &Arc<[JobSpec]>,
    pool: &Option<Arc<LeanPool>>,
    issuer: &Issuer,
    claim: Claim,
    running: &mut Running,
) -> Started {
    let now = Instant::now();
    let at = claim.due.unwrap_or(now);
    running.push(TaskFuture::new(
        &inner.ctx,
        jobs,
        pool,
        claim.index,
        issuer.global(claim.index) as u64,
        at,
        now,
    ));
    claim.started(at, now)
}

/// A wait for one server-wide permit, kept across a driver's turns so that it keeps its place
/// in the semaphore's queue.
fn permit_wait(global: &Semaphore) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
    Box::pin(async move {
        global
            .acquire()
            .await
            .expect("the semaphore is never closed")
            .forget();
    })
}

/// Waits for at least one task to end, then takes every other one that has ended too, up to
/// [`BURST`].
fn next_burst<'a>(
    running: &'a mut Running,
    ended: &'a mut Vec<Ended>,
) -> impl Future<Output = ()> + 'a {
    std::future::poll_fn(move |cx| {
        while ended.len() < BURST {
            match running.poll_next(cx) {
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

/// A driver's running tasks. A driver that runs one task at most holds it in a box of its own:
/// a `FuturesUnordered` costs a queue and a stub task as large as a running one from the
/// start, some 300 bytes, a good part of a small batch in flight.
enum Running {
    One(Option<Pin<Box<TaskFuture>>>),
    Many(FuturesUnordered<TaskFuture>),
}

impl Running {
    /// For a driver that runs at most `most` tasks at once.
    fn new(most: usize) -> Running {
        if most <= 1 {
            Running::One(None)
        } else {
            Running::Many(FuturesUnordered::new())
        }
    }

    fn len(&self) -> usize {
        match self {
            Running::One(task) => usize::from(task.is_some()),
            Running::Many(tasks) => tasks.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push(&mut self, task: TaskFuture) {
        match self {
            Running::One(slot) => {
                // The driver starts a task only below its slots, and this one has one.
                assert!(slot.is_none(), "a one-slot driver runs one task at a time");
                *slot = Some(Box::pin(task));
            }
            Running::Many(tasks) => tasks.push(task),
        }
    }

    fn poll_next(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Ended>> {
        match self {
            Running::One(slot) => {
                let Some(task) = slot.as_mut() else {
                    return std::task::Poll::Ready(None);
                };
                let ended = std::task::ready!(task.as_mut().poll(cx));
                *slot = None;
                std::task::Poll::Ready(Some(ended))
            }
            Running::Many(tasks) => tasks.poll_next_unpin(cx),
        }
    }
}

/// Server-wide permits held by a driver; whatever is still held when the driver stops (its
/// futures dropped by a cancel, or a panic) goes back to the semaphore.
struct Permits<'a> {
    semaphore: &'a Semaphore,
    held: usize,
}

impl<'a> Permits<'a> {
    fn new(semaphore: &'a Semaphore) -> Permits<'a> {
        Permits { semaphore, held: 0 }
    }

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
        pool: &Option<Arc<LeanPool>>,
        index: usize,
        seq: u64,
        started: Instant,
        began: Instant,
    ) -> TaskFuture {
        let job = &jobs[index % jobs.len()];
        let run = match (&job.kind, job.timeout) {
            // A sleep that no timeout can cut short cannot fail, so it needs no retry
            // machinery: one timer, its deadline fixed from this job's own start.
            (JobKind::Sleep(sleep), timeout) if timeout.is_none_or(|t| t >= sleep.longest()) => {
                Either::Left(tokio::time::sleep_until((began + sleep.pick()).into()))
            }
            _ => {
                let (ctx, jobs, pool) = (ctx.clone(), jobs.clone(), pool.clone());
                // A load run repeats the job list: task `index` runs job `index % len`.
                let run = async move {
                    let timer = std::pin::pin!(tokio::time::sleep(Duration::ZERO));
                    let job_index = index % jobs.len();
                    // A slot of its own, for this one task: its connection goes back to the
                    // batch's pool when the task ends.
                    let mut slot = Slot::default();
                    let lean = pool.as_ref().and_then(|p| p.lean(&mut slot, job_index));
                    let outcome = run_job(&ctx, &jobs[job_index], lean, timer, seq).await;
                    if let Some(pool) = &pool {
                        pool.release(&mut slot);
                    }
                    outcome
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
                    net: None,
                    checks: None,
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
