//! The verdict judged on summaries made by hand: each threshold, a stopped run, a lost
//! shard, baselines and their warnings.

use std::time::Duration;

use super::*;
use crate::engine::noise::MIN_BASELINE_TASKS;
use crate::engine::summary::{Lost, SummaryAcc};
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
    let t = Thresholds::batch(vec![
        (Threshold::P50Ms, 60.0),
        (Threshold::P95Ms, 90.0),
        (Threshold::MaxErrorRate, 0.05),
        (Threshold::MaxErrorRate, 0.01),
        (Threshold::MinThroughputPerS, 40.0),
        (Threshold::MinThroughputPerS, 60.0),
    ]);
    let v = judge(&t, &summary(), BatchStatus::Completed);
    let passed: Vec<bool> = v.checks.iter().map(|c| c.passed).collect();
    assert_eq!(passed, vec![true, false, true, false, true, false, true]);
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
        &Thresholds::batch(vec![(Threshold::P95Ms, 200.0)]),
        &acc.summary(Some(Duration::from_secs(2))),
        BatchStatus::Cancelled,
    );
    assert!(!v.passed);
    assert!(v.checks[0].passed, "the latency itself was fine");
    let completed = &v.checks[1];
    assert_eq!(completed.name, "completed");
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
        &Thresholds::batch(vec![(Threshold::P95Ms, 1000.0)]),
        &summary(),
        BatchStatus::Completed,
    );
    assert_eq!(v.checks.len(), 2, "the limit and `lost`");
    assert!(v.passed);
}

/// A summary whose run lost node3's shards for 4.9 s.
fn lost_for(window_ms: f64) -> Summary {
    let mut s = summary();
    s.lost = Some(Lost {
        shards: 2,
        tasks: 0,
        window_ms,
        instances: vec!["node3".into()],
        at: "2025-05-01T10:00:07.21Z".parse().ok(),
        rate_per_s: Some(1000.5),
    });
    s
}

#[test]
fn a_run_with_thresholds_and_no_loss_passes_its_lost_check_at_0() {
    let v = judge(
        &Thresholds::batch(vec![(Threshold::P95Ms, 1000.0)]),
        &summary(),
        BatchStatus::Completed,
    );

    let lost = v
        .checks
        .iter()
        .find(|c| c.name == "lost")
        .expect("a lost check");
    assert_eq!((lost.limit, lost.actual), (0.0, Some(0.0)));
    assert!(lost.passed && lost.detail.is_none());
    assert!(v.passed);
}

#[test]
fn a_loss_fails_the_lost_check_and_says_which_instance_when_and_the_rate() {
    let v = judge(
        &Thresholds::batch(vec![(Threshold::P95Ms, 1000.0)]),
        &lost_for(4915.0),
        BatchStatus::Completed,
    );

    assert!(!v.passed);
    assert!(v.checks[0].passed, "the latency itself was fine");
    let lost = v.checks.iter().find(|c| c.name == "lost").unwrap();
    assert_eq!(
        (lost.limit, lost.actual, lost.passed),
        (0.0, Some(4915.0), false)
    );
    assert_eq!(
        lost.detail.as_deref(),
        Some(
            "instance node3 lost at 2025-05-01T10:00:07.210Z: 2 shards had no runner for \
             4915 ms; the batch started 1000.5 tasks/s meanwhile"
        )
    );
}

#[test]
fn a_loss_within_max_lost_window_ms_passes() {
    let t = Thresholds {
        max_lost_window_ms: Some(5000.0),
        ..Thresholds::batch(vec![(Threshold::P95Ms, 1000.0)])
    };

    let within = judge(&t, &lost_for(4915.0), BatchStatus::Completed);
    let beyond = judge(&t, &lost_for(5001.0), BatchStatus::Completed);

    assert!(within.passed, "{within:?}");
    assert!(!beyond.passed);
    assert_eq!(beyond.checks[1].name, "lost");
    assert_eq!(beyond.checks[1].limit, 5000.0);
}

#[test]
fn a_batch_cancelled_between_two_tasks_fails_too() {
    let v = judge(
        &Thresholds::batch(vec![(Threshold::P95Ms, 1000.0)]),
        &summary(),
        BatchStatus::Cancelled,
    );
    assert!(!v.passed);
    assert_eq!(
        v.checks[1].detail.as_deref(),
        Some("100 of 100 tasks ran, then the batch was cancelled")
    );
}

/// A summary of `n` tasks of 1 ms each, judged against a baseline of `base` tasks.
fn judged_against_baseline(n: u64, base: u64) -> Verdict {
    let mut acc = SummaryAcc::new(n);
    for _ in 0..n {
        acc.record(
            TaskStatus::Succeeded,
            Some(Duration::from_millis(1)),
            None,
            None,
        );
    }
    let s = acc.summary(Some(Duration::from_secs(1)));
    let mut baseline = Baseline {
        batch: uuid::Uuid::nil(),
        checks: vec![BaselineCheck {
            figure: Figure::P95Ms,
            max_regression_pct: 10.0,
            base: None,
        }],
        tasks: None,
    };
    let mut base_acc = SummaryAcc::new(base);
    for _ in 0..base {
        base_acc.record(
            TaskStatus::Succeeded,
            Some(Duration::from_millis(1)),
            None,
            None,
        );
    }
    resolve_baseline(&mut baseline, &base_acc.summary(None)).unwrap();
    let t = Thresholds {
        baseline: Some(baseline),
        ..Thresholds::default()
    };
    judge(&t, &s, BatchStatus::Completed)
}

#[test]
fn a_baseline_check_on_too_few_tasks_warns_without_failing() {
    let short = judged_against_baseline(3_000, MIN_BASELINE_TASKS);
    assert!(short.passed);
    assert_eq!(short.warnings.len(), 1, "{short:?}");
    assert_eq!(short.warnings[0].code, "weak_baseline");
    assert!(short.warnings[0].detail.contains("3000"), "{short:?}");

    let short_baseline = judged_against_baseline(MIN_BASELINE_TASKS, 500);
    assert_eq!(short_baseline.warnings.len(), 1, "{short_baseline:?}");
}

#[test]
fn a_baseline_check_on_enough_tasks_has_no_warning() {
    let long = judged_against_baseline(MIN_BASELINE_TASKS, MIN_BASELINE_TASKS);
    assert!(long.passed);
    assert!(long.warnings.is_empty(), "{long:?}");
    let json = serde_json::to_value(&long).unwrap();
    assert!(json.get("warnings").is_none(), "{json}");
}

#[test]
fn nothing_measured_fails_the_check() {
    let empty = SummaryAcc::new(3).summary(None);
    let v = judge(
        &Thresholds::batch(vec![
            (Threshold::P99Ms, 1000.0),
            (Threshold::MaxErrorRate, 1.0),
        ]),
        &empty,
        BatchStatus::Completed,
    );
    assert!(
        v.checks[..2]
            .iter()
            .all(|c| c.actual.is_none() && !c.passed)
    );
}

fn with_checks(healthy: (u64, u64), soft: (u64, u64)) -> Summary {
    let mut s = summary();
    let count = |(passed, failed)| crate::engine::summary::CheckCount { passed, failed };
    s.checks = Some(
        [
            ("healthy".to_owned(), count(healthy)),
            ("soft".to_owned(), count(soft)),
        ]
        .into_iter()
        .collect(),
    );
    s
}

fn named<'v>(v: &'v Verdict, name: &str) -> Option<&'v Check> {
    v.checks.iter().find(|c| c.name == name)
}

#[test]
fn check_rates_are_lower_bounds_and_hard_checks_must_all_pass_unless_a_rate_is_given() {
    let s = with_checks((99, 1), (10, 90));
    let given = Thresholds {
        min_check_rate: Some(0.5),
        checks: vec![("healthy".into(), 0.99), ("soft".into(), 0.2)],
        hard_checks: vec!["healthy".into()],
        ..Thresholds::default()
    };
    let v = judge(&given, &s, BatchStatus::Completed);
    // 109 of 200 judgements passed, over every check, soft ones too.
    let rate = named(&v, "check_rate").unwrap();
    assert_eq!((rate.actual, rate.passed), (Some(0.545), true));
    assert!(
        named(&v, "checks.healthy").unwrap().passed,
        "0.99 reaches 0.99"
    );
    let soft = named(&v, "checks.soft").unwrap();
    assert_eq!((soft.actual, soft.passed), (Some(0.1), false));

    // Latency only: the hard checks are held to every judgement, the soft ones not at all.
    let latency_only = Thresholds {
        hard_checks: vec!["healthy".into()],
        ..Thresholds::batch(vec![(Threshold::P95Ms, 1000.0)])
    };
    let v = judge(&latency_only, &s, BatchStatus::Completed);
    let rate = named(&v, "check_rate").unwrap();
    assert_eq!(
        (rate.limit, rate.actual, rate.passed),
        (1.0, Some(0.99), false)
    );
    assert!(!v.passed);
    let clean = judge(
        &latency_only,
        &with_checks((100, 0), (0, 100)),
        BatchStatus::Completed,
    );
    assert!(clean.passed, "{:?}", clean.checks);

    // A check never judged fails its rate.
    let never = judge(&given, &with_checks((0, 0), (0, 0)), BatchStatus::Completed);
    let healthy = named(&never, "checks.healthy").unwrap();
    assert_eq!((healthy.actual, healthy.passed), (None, false));
}
