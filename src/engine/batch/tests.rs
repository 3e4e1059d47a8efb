//! A batch's bookkeeping: how it stops at its deadlines and at a stop (the first reason
//! winning), how it records the tasks it dropped when it finishes, and how it packs its totals
//! once finished.

use std::time::{Duration, Instant};

use uuid::Uuid;

use super::rules::StopReason;
use super::*;
use crate::engine::meter::NO_METER;
use crate::engine::summary::Summary;
use crate::engine::task::TaskRecord;

/// A batch of three 1 ms sleeps, with `extra` top-level fields (`"mode": "wait"`, ...).
fn batch(extra: &str) -> Arc<Batch> {
    let sleep = r#"{"kind":"sleep","duration_ms":1}"#;
    let body = format!(r#"{{"jobs":[{sleep},{sleep},{sleep}]{extra}}}"#);
    let limits = crate::config::Config::defaults().limits();
    let spec = crate::request::parse_batch(body.as_bytes(), &limits).expect("a valid batch");
    Batch::new(Uuid::now_v7(), &spec, NO_METER)
}

/// Starts the batch and its tasks `running`; task 0 among them succeeds at once.
fn run_first(b: &Batch, running: &[usize]) {
    let at = b.start();
    let started: Vec<Started> = running
        .iter()
        .map(|&index| Started {
            index,
            at,
            lag: None,
            warmup: false,
        })
        .collect();
    b.tasks_started(&started);
    b.tasks_ended(&mut vec![Ended {
        index: 0,
        started: at,
        ended: Instant::now(),
        outcome: Outcome {
            attempts: 1,
            output: None,
            error: None,
            net: None,
            checks: None,
        },
    }]);
}

/// The batch's task records, by index.
fn records(b: &Batch) -> Vec<TaskRecord> {
    let mut tasks = b.events_after(0, usize::MAX).tasks;
    tasks.sort_by_key(|t| t.index);
    tasks
}

fn error_code(t: &TaskRecord) -> Option<ErrorCode> {
    t.error.as_ref().map(|e| e.code)
}

#[test]
fn a_gather_deadline_fails_the_batch_with_a_timeout_naming_no_task() {
    let b = batch("");
    run_first(&b, &[0, 1]);

    let stop = b.deadline_passed(Duration::from_millis(500));

    assert_eq!(stop, Some(StopReason::Deadline));
    assert_eq!(b.status(), BatchStatus::Failed);
    let error = b.state.lock().error.clone().expect("the batch's error");
    assert_eq!((error.index, error.code), (None, ErrorCode::Timeout));
    assert!(error.message.contains("500 ms"), "{}", error.message);
    // gather answers when its tasks have ended, not at the deadline.
    assert_eq!(b.signal.phase(), Phase::Running);
}

#[test]
fn with_return_exceptions_a_gather_deadline_stops_the_tasks_but_fails_nothing() {
    let b = batch(r#","return_exceptions":true"#);
    run_first(&b, &[0, 1]);

    let stop = b.deadline_passed(Duration::from_millis(500));

    assert_eq!(stop, Some(StopReason::Deadline));
    assert_eq!(b.status(), BatchStatus::Running);
    assert!(b.state.lock().error.is_none());
}

#[test]
fn a_wait_deadline_answers_at_once_and_stops_only_when_told_to_cancel() {
    let goes_on = batch(r#","mode":"wait""#);
    run_first(&goes_on, &[0, 1]);
    assert_eq!(goes_on.deadline_passed(Duration::from_secs(1)), None);
    assert_eq!(goes_on.signal.phase(), Phase::Answered);
    assert_eq!(goes_on.status(), BatchStatus::Running);

    let cancels = batch(r#","mode":"wait","on_timeout":"cancel""#);
    run_first(&cancels, &[0, 1]);
    assert_eq!(
        cancels.deadline_passed(Duration::from_secs(1)),
        Some(StopReason::Cancelled)
    );
}

#[test]
fn the_server_limit_stops_even_a_wait_batch_as_timed_out() {
    let b = batch(r#","mode":"wait""#);
    run_first(&b, &[0, 1]);

    assert_eq!(
        b.server_limit_passed(Duration::from_secs(1)),
        Some(StopReason::Deadline)
    );
    assert_eq!(b.signal.phase(), Phase::Answered);
}

#[test]
fn finishing_times_a_dropped_task_that_ran_to_the_finish_and_one_that_never_started_not_at_all() {
    let b = batch("");
    run_first(&b, &[0, 1]);
    let stop = b.deadline_passed(Duration::from_millis(500));
    b.stop(stop.expect("gather's deadline stops its tasks"));
    assert!(b.cancel_token().is_cancelled());

    b.finish();

    let tasks = records(&b);
    let statuses: Vec<TaskStatus> = tasks.iter().map(|t| t.status).collect();
    assert_eq!(
        statuses,
        [
            TaskStatus::Succeeded,
            TaskStatus::TimedOut,
            TaskStatus::TimedOut
        ]
    );
    let (ran, never) = (&tasks[1], &tasks[2]);
    assert_eq!(ran.attempts, 1);
    assert!(ran.timing.duration_ms.is_some() && ran.timing.finished_at.is_some());
    assert_eq!(never.attempts, 0);
    assert!(never.timing.duration_ms.is_none());
    assert_eq!(error_code(ran), Some(ErrorCode::Timeout));
    let summary = b.summary_now();
    assert_eq!((summary.timed_out, summary.never_started), (2, 1));
    assert_eq!(
        b.status(),
        BatchStatus::Failed,
        "a failed batch stays failed"
    );
    assert!(b.is_finished() && b.finished_at().is_some());
}

#[test]
fn the_first_stop_reason_given_wins() {
    let b = batch("");
    run_first(&b, &[0, 1]);

    b.stop(StopReason::Cancelled);
    b.stop(StopReason::Deadline);
    b.finish();

    let tasks = records(&b);
    assert_eq!(tasks[1].status, TaskStatus::Cancelled);
    assert_eq!(error_code(&tasks[2]), Some(ErrorCode::Cancelled));
    assert_eq!(b.status(), BatchStatus::Completed);
}

#[test]
fn a_batch_stopped_by_a_shutdown_ends_interrupted_and_so_do_its_unfinished_tasks() {
    let b = batch("");
    run_first(&b, &[0, 1]);

    b.stop(StopReason::Interrupted);
    b.finish();

    assert_eq!(b.status(), BatchStatus::Interrupted);
    let tasks = records(&b);
    assert_eq!(tasks[1].status, TaskStatus::Interrupted);
    assert_eq!(error_code(&tasks[2]), Some(ErrorCode::Interrupted));
}

#[test]
fn a_client_cancel_marks_the_batch_cancelled_and_stops_its_tasks() {
    let b = batch("");
    run_first(&b, &[0, 1]);

    b.cancel_by_client();
    b.finish();

    assert!(b.cancel_token().is_cancelled());
    assert_eq!(b.status(), BatchStatus::Cancelled);
    assert_eq!(records(&b)[1].status, TaskStatus::Cancelled);
}

#[test]
fn a_stop_or_a_cancel_after_the_batch_finished_changes_nothing() {
    let b = batch("");
    run_first(&b, &[0, 1]);
    b.finish();

    b.stop(StopReason::Interrupted);
    b.cancel_by_client();
    b.stop_starting(StopReason::Deadline);

    assert_eq!(b.status(), BatchStatus::Completed);
    assert!(b.state.lock().stop_reason.is_none());
    assert!(!b.cancel_token().is_cancelled());
    assert!(!b.no_more_starts().is_cancelled());
}

#[test]
fn stopping_the_starts_keeps_the_first_reason_for_the_tasks_never_started() {
    let b = batch("");
    run_first(&b, &[0]);

    b.stop_starting(StopReason::Deadline);
    b.stop_starting(StopReason::Cancelled);
    b.finish();

    assert!(b.no_more_starts().is_cancelled());
    assert!(!b.cancel_token().is_cancelled(), "running tasks go on");
    assert_eq!(records(&b)[2].status, TaskStatus::TimedOut);
}

#[test]
fn a_finished_batch_packs_its_totals_and_answers_the_summary_they_give() {
    let b = batch("");
    run_first(&b, &[0, 1]);

    b.finish();

    let st = b.state.lock();
    assert!(matches!(st.summary, SummaryState::Packed { .. }));
    let totals = own_totals_of(&st).expect("packed totals unpack");
    let json = |s: &Summary| serde_json::to_value(s).unwrap();
    assert_eq!(
        json(&totals.summary(st.wall())),
        json(&st.summary(st.wall()))
    );
    assert_eq!(totals.ended(), 3);
}

#[test]
fn a_batch_still_running_keeps_its_live_totals() {
    let b = batch("");
    run_first(&b, &[0, 1]);

    let mut st = b.state.lock();
    st.pack();

    assert!(matches!(st.summary, SummaryState::Live(_)));
}

/// The totals a packed summary holds, unpacked.
fn own_totals_of(st: &State) -> Option<SummaryAcc> {
    match &st.summary {
        SummaryState::Packed { totals, .. } => serde_json::from_str(totals).ok(),
        _ => None,
    }
}

/// The batch of [`batch`] resumed from `b`'s last checkpoint and stored rows, as a run that
/// claims its shard after its instance was lost.
fn resumed(b: &Batch) -> Arc<Batch> {
    let sleep = r#"{"kind":"sleep","duration_ms":1}"#;
    let body = format!(r#"{{"jobs":[{sleep},{sleep},{sleep}]}}"#);
    let limits = crate::config::Config::defaults().limits();
    let spec = crate::request::parse_batch(body.as_bytes(), &limits).expect("a valid batch");
    let prior = Prior {
        rows: records(b)
            .into_iter()
            .filter(|t| t.status.is_finished())
            .collect(),
        checkpoint: Some(b.checkpoint(false)),
        lost: None,
    };
    Batch::resume(b.id, b.created_at, &spec, NO_METER, prior)
}

/// Starts task `index` of `b` and ends it succeeded after `attempts` attempts.
fn run_task(b: &Batch, index: usize, attempts: u32) {
    let at = Instant::now();
    b.tasks_started(&[Started {
        index,
        at,
        lag: None,
        warmup: false,
    }]);
    b.tasks_ended(&mut vec![Ended {
        index,
        started: at,
        ended: Instant::now(),
        outcome: Outcome {
            attempts,
            output: None,
            error: None,
            net: None,
            checks: None,
        },
    }]);
}

#[test]
fn a_task_run_again_after_its_shard_was_lost_counts_its_attempts_on() {
    // Task 0 ended and task 1 was running when the instance was lost; task 2 never started.
    let lost = batch("");
    run_first(&lost, &[0, 1]);

    // Claimed again: task 1 starts again and is lost once more while it runs.
    let again = resumed(&lost);
    again.start();
    again.tasks_started(&[Started {
        index: 1,
        at: Instant::now(),
        lag: None,
        warmup: false,
    }]);
    let last = resumed(&again);
    last.start();
    run_task(&last, 1, 2);
    run_task(&last, 2, 1);

    let tasks = records(&last);
    assert_eq!(
        tasks[0].attempts, 1,
        "ended before the loss: kept as it was"
    );
    assert_eq!(
        tasks[1].attempts, 4,
        "one run in each lost run, then two attempts"
    );
    assert_eq!(tasks[2].attempts, 1, "never started before");
}
