//! The verdict of a batch given `thresholds`: each limit checked against the summary.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::batch::BatchStatus;
use super::spec::{Threshold, Thresholds};
use super::summary::Summary;
use super::wire_name;

/// Whether the batch met every threshold; a CI job fails the build on `passed: false`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Verdict {
    pub passed: bool,
    pub checks: Vec<Check>,
}

/// One threshold: its limit, the figure it was held against, and the outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Check {
    /// The threshold's key, e.g. `p95_ms`.
    pub name: Threshold,
    pub limit: f64,
    /// Null when there is nothing to measure (no task ended): the check then fails.
    pub actual: Option<f64>,
    pub passed: bool,
    /// What the figures mean, when they need words (`completed`: how many tasks ran and how
    /// the others ended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Judges a finished batch's summary against thresholds; `status` is how the batch ended.
pub fn judge(thresholds: &Thresholds, s: &Summary, status: BatchStatus) -> Verdict {
    let checks: Vec<Check> = thresholds
        .0
        .iter()
        .map(|&(name, limit)| {
            let d = s.duration_ms.as_ref();
            let actual = match name {
                Threshold::P50Ms => d.map(|d| d.p50),
                Threshold::P90Ms => d.map(|d| d.p90),
                Threshold::P95Ms => d.map(|d| d.p95),
                Threshold::P99Ms => d.map(|d| d.p99),
                Threshold::P999Ms => d.map(|d| d.p999),
                Threshold::MaxMs => d.map(|d| d.max),
                Threshold::MeanMs => d.map(|d| d.mean),
                Threshold::MaxErrorRate => {
                    let ended = s.tasks - s.pending;
                    (ended > 0).then(|| (s.failed + s.timed_out) as f64 / ended as f64)
                }
                Threshold::MinThroughputPerS => Some(s.throughput_per_s),
                Threshold::Completed => Some(ran_to_end(s) as f64),
            };
            let passed = actual.is_some_and(|a| {
                if name.is_minimum() {
                    a >= limit
                } else {
                    a <= limit
                }
            });
            Check {
                name,
                limit,
                actual,
                passed,
                detail: None,
            }
        })
        .collect();
    let mut checks = checks;
    // A run stopped part-way (its tasks cancelled, or the batch cancelled or interrupted
    // between two of them) measured something else than was asked for: a gate must not pass
    // on it, whatever its figures.
    let stopped = matches!(status, BatchStatus::Cancelled | BatchStatus::Interrupted);
    let cut_by_deadline = s.never_started;
    if stopped || s.cancelled + s.interrupted + cut_by_deadline > 0 {
        let mut how = Vec::new();
        if s.cancelled > 0 {
            how.push(format!("{} cancelled", s.cancelled));
        }
        if s.interrupted > 0 {
            how.push(format!("{} interrupted", s.interrupted));
        }
        if cut_by_deadline > 0 {
            how.push(format!(
                "{cut_by_deadline} never started before the deadline"
            ));
        }
        if how.is_empty() {
            how.push(format!("then the batch was {}", wire_name(&status)));
        }
        checks.push(Check {
            name: Threshold::Completed,
            limit: s.tasks as f64,
            actual: Some(ran_to_end(s) as f64),
            passed: false,
            detail: Some(format!(
                "{} of {} tasks ran, {}",
                ran_to_end(s),
                s.tasks,
                how.join(", ")
            )),
        });
    }
    Verdict {
        passed: checks.iter().all(|c| c.passed),
        checks,
    }
}

/// Tasks that ran to their end, however each ended.
fn ran_to_end(s: &Summary) -> u64 {
    s.tasks
        .saturating_sub(s.cancelled + s.interrupted + s.pending + s.never_started)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::engine::summary::SummaryAcc;
    use crate::engine::task::{ErrorCode, TaskError, TaskStatus};

    fn summary() -> Summary {
        let mut acc = SummaryAcc::new(100);
        for ms in 1..=98u64 {
            acc.record(
                TaskStatus::Succeeded,
                Some(Duration::from_millis(ms)),
                None,
                None,
            );
        }
        acc.record(
            TaskStatus::Failed,
            Some(Duration::from_millis(500)),
            None,
            Some(&TaskError::new(
                ErrorCode::Status,
                "500 Internal Server Error",
            )),
        );
        acc.record(
            TaskStatus::TimedOut,
            Some(Duration::from_millis(900)),
            None,
            Some(&TaskError::new(ErrorCode::Timeout, "too slow")),
        );
        acc.summary(Some(Duration::from_secs(2)))
    }

    #[test]
    fn limits_pass_and_fail_each_way() {
        let t = Thresholds(vec![
            (Threshold::P50Ms, 60.0),
            (Threshold::P95Ms, 90.0),
            (Threshold::MaxErrorRate, 0.05),
            (Threshold::MaxErrorRate, 0.01),
            (Threshold::MinThroughputPerS, 40.0),
            (Threshold::MinThroughputPerS, 60.0),
        ]);
        let v = judge(&t, &summary(), BatchStatus::Completed);
        let passed: Vec<bool> = v.checks.iter().map(|c| c.passed).collect();
        assert_eq!(passed, vec![true, false, true, false, true, false]);
        assert!(!v.passed);
        assert_eq!(v.checks[2].actual, Some(0.02));
        assert_eq!(v.checks[4].actual, Some(50.0));
    }

    #[test]
    fn a_run_stopped_part_way_fails_whatever_its_figures() {
        let mut acc = SummaryAcc::new(4000);
        for _ in 0..424 {
            acc.record(
                TaskStatus::Succeeded,
                Some(Duration::from_millis(1)),
                None,
                None,
            );
        }
        for _ in 0..3576 {
            acc.record(
                TaskStatus::Cancelled,
                None,
                None,
                Some(&TaskError::new(ErrorCode::Cancelled, "cancelled")),
            );
        }
        let v = judge(
            &Thresholds(vec![(Threshold::P95Ms, 200.0)]),
            &acc.summary(Some(Duration::from_secs(2))),
            BatchStatus::Cancelled,
        );
        assert!(!v.passed);
        assert!(v.checks[0].passed, "the latency itself was fine");
        let completed = &v.checks[1];
        assert_eq!(completed.name, Threshold::Completed);
        assert!(!completed.passed);
        assert_eq!((completed.actual, completed.limit), (Some(424.0), 4000.0));
        assert_eq!(
            completed.detail.as_deref(),
            Some("424 of 4000 tasks ran, 3576 cancelled")
        );
    }

    #[test]
    fn a_complete_run_has_no_completed_check() {
        let v = judge(
            &Thresholds(vec![(Threshold::P95Ms, 1000.0)]),
            &summary(),
            BatchStatus::Completed,
        );
        assert_eq!(v.checks.len(), 1);
        assert!(v.passed);
    }

    #[test]
    fn a_batch_cancelled_between_two_tasks_fails_too() {
        let v = judge(
            &Thresholds(vec![(Threshold::P95Ms, 1000.0)]),
            &summary(),
            BatchStatus::Cancelled,
        );
        assert!(!v.passed);
        assert_eq!(
            v.checks[1].detail.as_deref(),
            Some("100 of 100 tasks ran, then the batch was cancelled")
        );
    }

    #[test]
    fn nothing_measured_fails_the_check() {
        let empty = SummaryAcc::new(3).summary(None);
        let v = judge(
            &Thresholds(vec![
                (Threshold::P99Ms, 1000.0),
                (Threshold::MaxErrorRate, 1.0),
            ]),
            &empty,
            BatchStatus::Completed,
        );
        assert!(v.checks.iter().all(|c| c.actual.is_none() && !c.passed));
    }
}
