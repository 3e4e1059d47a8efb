//! The totals behind a load run's `by_job` and `stages`: one [`PartAcc`] per job or stage.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::timings::Timings;
use super::{
    JobSummary, StageSummary, StepSummary, Tally, add_counts, add_statuses, per_second, status_slot,
};
use crate::engine::task::{ErrorCode, TaskError, TaskOutput, TaskStatus};

/// The totals behind `by_job` and `stages`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Parts {
    /// Each job's key and totals.
    pub(super) jobs: Vec<(String, PartAcc)>,
    /// Each stage's start and end (ms from the run's start) and totals.
    pub(super) stages: Vec<((f64, f64), PartAcc)>,
}

/// One flow step's totals: its runs, and the flows that ended before it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StepAcc {
    pub(super) ran: PartAcc,
    pub(super) skipped: u64,
}

/// The totals of one job's or one stage's tasks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct PartAcc {
    by_status: [u64; 7],
    durations: Timings,
    http_status: BTreeMap<u16, u64>,
    errors: BTreeMap<ErrorCode, u64>,
}

impl PartAcc {
    pub(super) fn new() -> PartAcc {
        PartAcc {
            by_status: [0; 7],
            durations: Timings::new(),
            http_status: BTreeMap::new(),
            errors: BTreeMap::new(),
        }
    }

    pub(super) fn settle(&mut self) {
        self.durations.settle();
    }

    pub(super) fn merge(&mut self, other: &PartAcc) {
        add_statuses(&mut self.by_status, &other.by_status);
        self.durations.merge(&other.durations);
        add_counts(&mut self.http_status, &other.http_status);
        add_counts(&mut self.errors, &other.errors);
    }

    pub(super) fn record(
        &mut self,
        status: TaskStatus,
        duration: Option<Duration>,
        output: Option<&TaskOutput>,
        error: Option<&TaskError>,
    ) {
        let tally = Tally {
            by_status: &mut self.by_status,
            durations: &mut self.durations,
            http_status: &mut self.http_status,
            errors: &mut self.errors,
        };
        tally.record(status, duration, output, error);
    }

    pub(super) fn count(&self, status: TaskStatus) -> u64 {
        self.by_status[status_slot(status)]
    }

    pub(super) fn ended(&self) -> u64 {
        self.by_status.iter().sum()
    }

    pub(super) fn durations(&self) -> &Timings {
        &self.durations
    }

    pub(super) fn job(&self, wall: Option<Duration>) -> JobSummary {
        JobSummary {
            tasks: self.ended(),
            succeeded: self.count(TaskStatus::Succeeded),
            failed: self.count(TaskStatus::Failed),
            timed_out: self.count(TaskStatus::TimedOut),
            duration_ms: self.durations.percentiles(),
            throughput_per_s: per_second(self.durations.len(), wall),
            http_status: self.http_status.clone(),
            errors: self.errors.clone(),
        }
    }

    pub(super) fn step(&self, skipped: u64) -> StepSummary {
        StepSummary {
            tasks: self.ended(),
            succeeded: self.count(TaskStatus::Succeeded),
            failed: self.count(TaskStatus::Failed),
            timed_out: self.count(TaskStatus::TimedOut),
            skipped,
            duration_ms: self.durations.percentiles(),
            http_status: self.http_status.clone(),
            errors: self.errors.clone(),
        }
    }

    pub(super) fn stage(&self, index: usize, (start_ms, end_ms): (f64, f64)) -> StageSummary {
        let length = Duration::from_secs_f64(((end_ms - start_ms) / 1000.0).max(0.0));
        StageSummary {
            index: index as u32,
            start_ms,
            end_ms,
            tasks: self.ended(),
            succeeded: self.count(TaskStatus::Succeeded),
            throughput_per_s: per_second(self.durations.len(), Some(length)),
            duration_ms: self.durations.percentiles(),
            errors: self.errors.clone(),
        }
    }
}
