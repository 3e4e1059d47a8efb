//! A flow task: its steps one after another, each with its own attempts, timeout, retries and
//! checks; what an `http` step captures rendered into the steps after it; the first step that
//! fails ends the flow with its error and `error.step`, the steps after it `skipped`. The
//! flow's own `timeout_ms` bounds all of it.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::{Duration, Instant};

use super::attempt::run_attempts;
use crate::engine::batch::Outcome;
use crate::engine::jobs::JobContext;
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
        output: Some(TaskOutput::Flow(FlowOutput { steps })),
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
    for (index, step) in flow.steps.iter().enumerate() {
        let begun = Instant::now();
        let mut outcome = run_attempts(ctx, step, None, timer.as_mut(), (seq, &captured)).await;
        let mut named = BTreeMap::new();
        if let (Some(TaskOutput::Http(out)), JobKind::Http(http)) =
            (&mut outcome.output, &step.kind)
        {
            for (capture, value) in http
                .captures
                .iter()
                .flat_map(|c| c.iter())
                .zip(&out.captured)
            {
                named.insert(capture.name.clone(), value.clone());
            }
            captured.append(&mut out.captured);
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
