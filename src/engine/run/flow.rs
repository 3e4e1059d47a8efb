//! A flow task: its steps one after another, each with its own attempts, timeout, retries and
//! checks; what an `http` step captures rendered into the steps after it; the first step that
//! fails ends the flow with its error and `error.step`, the steps after it `skipped`. The
//! flow's own `timeout_ms` bounds all of it.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::{Duration, Instant};

use cookie_store::CookieStore;

use super::attempt::run_attempts;
use crate::engine::batch::Outcome;
use crate::engine::jobs::http::Hop;
use crate::engine::jobs::{FlowState, JobContext};
use crate::engine::spec::{FlowJob, JobKind, JobSpec};
use crate::engine::task::{
    ErrorCode, FlowOutput, StepRef, StepResult, StepStatus, TaskError, TaskOutput, ms,
};

/// Runs flow `job` as task `seq`. Its steps' timeouts use `timer`, one after another.
pub(super) async fn run(
    ctx: &JobContext,
    job: &JobSpec,
    flow: &FlowJob,
    timer: Pin<&mut tokio::time::Sleep>,
    seq: u64,
) -> Outcome {
    let mut steps = Vec::with_capacity(flow.steps.len());
    let walk = walk(ctx, flow, timer, seq, &mut steps);
    let ended = match job.timeout {
        Some(limit) => tokio::time::timeout(limit, walk)
            .await
            .unwrap_or_else(|_| Err(past_timeout(limit))),
        None => walk.await,
    };
    let error = ended.err().map(|mut e| {
        // Past the flow's timeout: the step that was running is the one it failed at.
        if e.step.is_none() {
            let at = steps.len().min(flow.steps.len().saturating_sub(1));
            e.step = Some(step_ref(flow, at));
            if let Some(step) = flow.steps.get(steps.len()) {
                steps.push(StepResult {
                    status: StepStatus::TimedOut,
                    error: Some(e.clone()),
                    ..skipped(steps.len(), step)
                });
            }
        }
        e
    });
    for (index, step) in flow.steps.iter().enumerate().skip(steps.len()) {
        steps.push(skipped(index, step));
    }
    Outcome {
        attempts: 1,
        output: Some(TaskOutput::Flow(FlowOutput {
            steps,
            flow: job.id.clone().unwrap_or_else(|| job.group.to_string()),
        })),
        error,
        net: None,
        checks: None,
    }
}

/// The steps in order, each recorded in `steps` as it ends; the error of the first that fails.
async fn walk(
    ctx: &JobContext,
    flow: &FlowJob,
    mut timer: Pin<&mut tokio::time::Sleep>,
    seq: u64,
    steps: &mut Vec<StepResult>,
) -> Result<(), TaskError> {
    let mut captured: Vec<String> = Vec::new();
    // The task's own jar: it starts empty every task, as a new virtual user's would.
    let mut jar = flow.cookies.then(CookieStore::default);
    for (index, step) in flow.steps.iter().enumerate() {
        let begun = Instant::now();
        // Where the step sends: the cookies that go there, and where those it gets back are
        // from.
        let url = match &step.kind {
            JobKind::Http(http) => Some(Hop::rendered_with(http, seq, &captured).url().clone()),
            _ => None,
        };
        let cookie = jar.as_ref().zip(url.as_ref()).and_then(cookie_for);
        let state = FlowState {
            captures: &captured,
            cookie: cookie.as_deref(),
        };
        let mut outcome = run_attempts(ctx, step, None, timer.as_mut(), (seq, state)).await;
        let mut named = BTreeMap::new();
        if let (Some(TaskOutput::Http(out)), JobKind::Http(http)) =
            (&mut outcome.output, &step.kind)
        {
            let names = http.captures.iter().flat_map(|c| c.iter());
            for (capture, value) in names.zip(&out.captured) {
                named.insert(capture.name.clone(), value.clone());
            }
            captured.append(&mut out.captured);
            if let (Some(jar), Some(url)) = (jar.as_mut(), url.as_ref()) {
                for set in out.set_cookies.drain(..) {
                    // One the jar refuses (another domain's, say) is left out, as a browser
                    // leaves it out.
                    let _ = jar.parse(&set, url);
                }
            }
        }
        let status = match &outcome.error {
            None => StepStatus::Succeeded,
            Some(e) if e.code == ErrorCode::Timeout => StepStatus::TimedOut,
            Some(_) => StepStatus::Failed,
        };
        steps.push(StepResult {
            index: index as u32,
            id: step.id.clone(),
            kind: step.kind.kind(),
            status,
            attempts: outcome.attempts,
            output: outcome.output.map(Box::new),
            error: outcome.error.clone(),
            duration_ms: Some(ms(begun.elapsed())),
            captured: named,
        });
        if let Some(mut error) = outcome.error {
            error.step = Some(step_ref(flow, index));
            return Err(error);
        }
    }
    Ok(())
}

/// The `Cookie` header the jar holds for `url`; `None` when it holds none.
fn cookie_for((jar, url): (&CookieStore, &url::Url)) -> Option<String> {
    let pairs: Vec<String> = jar
        .get_request_values(url)
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    (!pairs.is_empty()).then(|| pairs.join("; "))
}

fn step_ref(flow: &FlowJob, index: usize) -> StepRef {
    StepRef {
        index: index as u32,
        id: flow.steps.get(index).and_then(|s| s.id.clone()),
    }
}

fn skipped(index: usize, step: &JobSpec) -> StepResult {
    StepResult {
        index: index as u32,
        id: step.id.clone(),
        kind: step.kind.kind(),
        status: StepStatus::Skipped,
        attempts: 0,
        output: None,
        error: None,
        duration_ms: None,
        captured: BTreeMap::new(),
    }
}

fn past_timeout(limit: Duration) -> TaskError {
    TaskError::new(
        ErrorCode::Timeout,
        format!("the flow ran past its timeout of {} ms", limit.as_millis()),
    )
}
