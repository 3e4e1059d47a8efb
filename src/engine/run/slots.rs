//! The lean driver of a load run: a fixed set of slots, each running one task after another
//! on the HTTP connection it keeps, so that a request costs no future, allocation or
//! connection checkout of its own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};

use super::Inner;
use super::attempt::run_job;
use super::issuer::Issuer;
use crate::engine::batch::{Batch, Ended, Started};
use crate::engine::jobs::lean::{LeanPool, Slot};
use crate::engine::spec::{JobSpec, Stripe};

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
pub(super) async fn drive_slots(
    inner: Arc<Inner>,
    batch: Arc<Batch>,
    jobs: Arc<[JobSpec]>,
    issuer: Arc<Issuer>,
    pool: Arc<LeanPool>,
    limit: usize,
    driver: Stripe,
) {
    let cancel = batch.cancel_token().clone();
    // Only this driver's slots lock it, all on the thread that polls the driver.
    let noted = parking_lot::Mutex::new(Noted::default());
    let mut slots: FuturesUnordered<_> = (0..limit)
        .map(|j| {
            let rank = issuer.slot_rank(driver, j);
            slot(&inner, &jobs, &issuer, &pool, &noted, rank)
        })
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
/// `rank`: its place among the run's slots, which concurrency stages open in rank order.
async fn slot(
    inner: &Inner,
    jobs: &[JobSpec],
    issuer: &Issuer,
    pool: &LeanPool,
    noted: &parking_lot::Mutex<Noted>,
    rank: usize,
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
    // time. With concurrency stages a slot may idle between tasks: it holds a permit only
    // while a task runs.
    let closed = issuer.is_closed() && !issuer.ramps_slots();
    let _held = if closed { Some(acquire().await) } else { None };
    let mut conn = Slot::default();
    // For the open model's waits and for the tasks' timeouts.
    let mut timer = std::pin::pin!(tokio::time::sleep(Duration::ZERO));
    loop {
        if !slot_opens(issuer, rank, timer.as_mut()).await {
            break;
        }
        let Some(claim) = issuer.claim() else { break };
        if let Some(due) = claim.due.filter(|&due| due > Instant::now()) {
            timer.as_mut().reset(due.into());
            timer.as_mut().await;
        }
        let _permit = if closed { None } else { Some(acquire().await) };
        if issuer.stopped() {
            break;
        }
        let now = Instant::now();
        let at = claim.due.unwrap_or(now);
        noted.lock().started.push(claim.started(at, now));
        let job_index = claim.index % jobs.len();
        let lean = pool.lean(&mut conn, job_index);
        let seq = issuer.global(claim.index) as u64;
        let outcome = run_job(&inner.ctx, &jobs[job_index], lean, timer.as_mut(), seq).await;
        noted.lock().ended.push(Ended {
            index: claim.index,
            started: at,
            ended: Instant::now(),
            outcome,
        });
    }
}

/// Waits until the ramp has the slot of `rank` in use; `false` when it will not be again
/// before the run ends (or the run starts no more tasks).
pub(super) async fn slot_opens(
    issuer: &Issuer,
    rank: usize,
    mut timer: std::pin::Pin<&mut tokio::time::Sleep>,
) -> bool {
    loop {
        match issuer.slot_open(rank, Instant::now()) {
            Ok(()) => return true,
            Err(None) => return false,
            Err(Some(at)) => {
                timer.as_mut().reset(at.into());
                let stop = async {
                    match issuer.no_more() {
                        Some(token) => token.cancelled().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = timer.as_mut() => {}
                    () = stop => return false,
                }
            }
        }
    }
}
