//! The verdict of a batch given `thresholds`: each limit checked against the summary.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::spec::{Threshold, Thresholds};
use super::summary::Summary;

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
}

/// Judges a summary against thresholds.
pub fn judge(thresholds: &Thresholds, s: &Summary) -> Verdict {
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
            }
        })
        .collect();
    Verdict {
        passed: checks.iter().all(|c| c.passed),
        checks,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::engine::summary::SummaryAcc;
    use crate::engine::task::{ErrorCode, TaskStatus};

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
            Some(ErrorCode::Connect),
        );
        acc.record(
            TaskStatus::TimedOut,
            Some(Duration::from_millis(900)),
            None,
            Some(ErrorCode::Timeout),
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
        let v = judge(&t, &summary());
        let passed: Vec<bool> = v.checks.iter().map(|c| c.passed).collect();
        assert_eq!(passed, vec![true, false, true, false, true, false]);
        assert!(!v.passed);
        assert_eq!(v.checks[2].actual, Some(0.02));
        assert_eq!(v.checks[4].actual, Some(50.0));
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
        );
        assert!(v.checks.iter().all(|c| c.actual.is_none() && !c.passed));
    }
}
