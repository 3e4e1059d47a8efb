//! A batch's check counts (`summary.checks`) and its flows' steps (`summary.by_step`): made
//! with the batch, counted as tasks end, from live outcomes or stored rows.

use std::collections::BTreeMap;
use std::time::Duration;

use super::parts::{PartAcc, StepAcc};
use super::{CheckCount, SummaryAcc};
use crate::engine::check::{Check, CheckResult};
use crate::engine::task::{FlowOutput, StepStatus, TaskOutput, TaskStatus};

impl SummaryAcc {
    /// The same, counting the judgements of the checks `names` (each at 0 until judged, so
    /// that a check no task reached still shows, and its thresholds judge it).
    pub fn with_checks<'n>(mut self, names: impl IntoIterator<Item = &'n str>) -> Self {
        let counts: BTreeMap<String, CheckCount> = names
            .into_iter()
            .map(|n| (n.to_owned(), CheckCount::default()))
            .collect();
        if !counts.is_empty() {
            self.checks = Some(counts);
        }
        self
    }

    /// The same, for a batch with flows: `by_step` is there from the start (and checkpoints
    /// carry it), filled as flows end.
    pub fn with_flows(mut self, flows: bool) -> Self {
        if flows {
            self.steps = Some(BTreeMap::new());
        }
        self
    }

    /// Counts one task's judgements of `checks`: bit `i` of `passed` for check `i`.
    pub fn record_checks(&mut self, checks: &[Check], passed: u32) {
        let counts = self.checks.get_or_insert_with(Default::default);
        for (i, check) in checks.iter().enumerate() {
            let ok = passed & (1 << i) != 0;
            count_check(counts, &check.name, ok);
        }
    }

    /// Counts a flow's steps under `by_step`, and their judgements.
    pub fn record_steps(&mut self, flow: &FlowOutput) {
        let steps = self.steps.get_or_insert_with(Default::default);
        for step in &flow.steps {
            let acc = steps.entry(flow.step_key(step)).or_insert_with(|| StepAcc {
                ran: PartAcc::new(),
                skipped: 0,
            });
            let status = match step.status {
                StepStatus::Skipped => {
                    acc.skipped += 1;
                    continue;
                }
                StepStatus::Succeeded => TaskStatus::Succeeded,
                StepStatus::Failed => TaskStatus::Failed,
                StepStatus::TimedOut => TaskStatus::TimedOut,
            };
            let duration = step
                .duration_ms
                .map(|d| Duration::from_micros((d * 1000.0) as u64));
            acc.ran.record(
                status,
                duration,
                step.output.as_deref(),
                step.error.as_ref(),
            );
        }
        self.record_step_checks(flow);
    }

    /// Counts a flow's steps' judgements, as each step's output lists them.
    fn record_step_checks(&mut self, flow: &FlowOutput) {
        for step in &flow.steps {
            if let Some(TaskOutput::Http(out)) = step.output.as_deref() {
                self.record_results(&out.checks);
            }
        }
    }

    /// Counts judgements as a task's output lists them (a stored task, a flow's step).
    pub(super) fn record_results(&mut self, results: &[CheckResult]) {
        if results.is_empty() {
            return;
        }
        let counts = self.checks.get_or_insert_with(Default::default);
        for c in results {
            count_check(counts, &c.name, c.passed);
        }
    }
}

/// Counts one judgement of the check `name` (found without allocating, the usual case).
fn count_check(counts: &mut BTreeMap<String, CheckCount>, name: &str, passed: bool) {
    let count = match counts.get_mut(name) {
        Some(count) => count,
        None => counts.entry(name.to_owned()).or_default(),
    };
    if passed {
        count.passed += 1;
    } else {
        count.failed += 1;
    }
}
