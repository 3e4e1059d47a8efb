//! One job's attempts: each cut short by the job's timeout, retried with backoff as its
//! `retries` allow.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use crate::engine::batch::Outcome;
use crate::engine::jobs::lean::Lean;
use crate::engine::jobs::{self, FlowState, JobContext};
use crate::engine::spec::{JobKind, JobSpec, RetryPolicy};
use crate::engine::task::{PhaseClock, TaskOutput};

/// One job with its per-attempt timeout and retries, timed by `timer` (which a lean slot
/// keeps from task to task: moving a registered timer's deadline later costs an atomic
/// update, where a new timer per request is an allocation and two trips into the timer
/// wheel). `seq`: the task's number in the batch, which placeholders render. A flow runs its
/// steps, each so.
pub(super) async fn run_job(
    ctx: &JobContext,
    job: &JobSpec,
    lean: Option<Lean<'_>>,
    timer: Pin<&mut tokio::time::Sleep>,
    seq: u64,
) -> Outcome {
    match &job.kind {
        JobKind::Flow(flow) => Box::pin(super::flow::run(ctx, job, flow, timer, seq)).await,
        _ => run_attempts(ctx, job, lean, timer, (seq, FlowState::default())).await,
    }
}

/// A job's attempts (`flow`: in a flow, what the steps before this one left it).
pub(super) async fn run_attempts(
    ctx: &JobContext,
    job: &JobSpec,
    mut lean: Option<Lean<'_>>,
    mut timer: Pin<&mut tokio::time::Sleep>,
    (seq, flow): (u64, FlowState<'_>),
) -> Outcome {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let begun = Instant::now();
        let mut clock = PhaseClock::start(begun);
        let attempt = jobs::run_once(
            ctx,
            &job.kind,
            lean.as_mut().map(Lean::reborrow),
            begun,
            &mut clock,
            (seq, flow),
        );
        // One await point for both cases: the attempt's future is stored (and copied) once.
        let limit = job.timeout.map(|limit| {
            timer.as_mut().reset((begun + limit).into());
            (limit, timer.as_mut())
        });
        let result = Limited { attempt, limit }.await;
        let net = clock.measured.then_some(clock.timing);
        let checks = || match &job.kind {
            JobKind::Http(h) => h.checks.clone(),
            _ => None,
        };
        match result {
            Ok(output) => {
                return Outcome {
                    attempts,
                    output: Some(output),
                    error: None,
                    net,
                    checks: checks(),
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
                    net,
                    checks: checks(),
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
