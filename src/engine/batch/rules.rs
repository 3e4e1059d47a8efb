//! The answer rules of `asyncio.gather` and `asyncio.wait`, as pure decisions: what a task's
//! end, a deadline or a stop does to the batch. [`super::Batch`] applies them under its lock.

use serde::{Deserialize, Serialize};

use super::BatchStatus;
use crate::engine::spec::{Mode, OnTimeout, ResultsMode, ReturnWhen, Thresholds};
use crate::engine::summary::Summary;
use crate::engine::task::TaskStatus;

/// The request's rules for a batch, as stored beside it so that a stored batch reads back with
/// the same shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rules {
    pub return_exceptions: bool,
    pub fail_fast: bool,
    pub return_when: ReturnWhen,
    pub on_timeout: OnTimeout,
    pub results: ResultsMode,
    pub concurrency: usize,
    pub timeout_ms: Option<u64>,
    /// Boxed: most batches have none, and every batch in flight carries its rules.
    #[serde(default)]
    pub thresholds: Option<Box<Thresholds>>,
    /// Open model: the batch's arrival rate.
    #[serde(default)]
    pub rate_per_s: Option<f64>,
    /// The batch this one reruns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerun_of: Option<uuid::Uuid>,
}

impl Rules {
    /// The concurrency an open-model run would have needed, when its starts fell behind and
    /// its own slots were what held them: by Little's law, the rate times the time a task
    /// holds a slot, which the run shows as its concurrency over the rate it achieved (the
    /// durations would not do: in the open model they count the wait for a slot too).
    pub fn concurrency_needed(&self, summary: &Summary) -> Option<u64> {
        let rate = self.rate_per_s?;
        // Lateness that lasted, not a start or two that a busy machine delayed: a tenth of
        // the tasks or more.
        summary
            .late
            .as_ref()
            .filter(|l| l.count > 0 && l.count * 10 >= summary.tasks)?;
        let achieved = summary.throughput_per_s;
        if achieved <= 0.0 {
            return None;
        }
        let needed = (rate * self.concurrency as f64 / achieved).ceil().max(1.0) as u64;
        (needed > self.concurrency as u64).then_some(needed)
    }
}

/// Why tasks still unfinished are being stopped, and so what they become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// fail_fast, wait's `on_timeout: cancel`, or a client's DELETE.
    Cancelled,
    /// gather's batch deadline passed.
    Deadline,
    /// The server is shutting down.
    Interrupted,
}

/// What one task's end does to its batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OnTaskEnd {
    /// gather without `return_exceptions`: this failure fails the batch (if nothing did yet).
    pub fails_batch: bool,
    /// fail_fast (asyncio.TaskGroup): the siblings are cancelled; the answer waits for them.
    pub cancels_siblings: bool,
    /// The answer condition is met now.
    pub answers: bool,
}

/// What a batch's `timeout_ms` passing does to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnDeadline {
    /// gather without `return_exceptions`: the batch fails with a timeout error.
    pub fails_batch: bool,
    /// How the unfinished tasks are stopped, if they are.
    pub stops: Option<StopReason>,
    /// The answer condition is met now (wait answers with what is done).
    pub answers: bool,
}

impl Rules {
    /// A task ended `status`. A warm-up task's end decides nothing: it is not part of the
    /// measured run.
    pub fn on_task_end(&self, mode: Mode, status: TaskStatus, warmup: bool) -> OnTaskEnd {
        if warmup {
            return OnTaskEnd::default();
        }
        match mode {
            Mode::Gather => {
                // asyncio.gather without return_exceptions: the first failure fails the batch.
                let fails_batch = status.is_failure() && !self.return_exceptions;
                OnTaskEnd {
                    fails_batch,
                    cancels_siblings: fails_batch && self.fail_fast,
                    answers: fails_batch && !self.fail_fast,
                }
            }
            Mode::Wait => OnTaskEnd {
                fails_batch: false,
                cancels_siblings: false,
                answers: match self.return_when {
                    ReturnWhen::FirstCompleted => true,
                    ReturnWhen::FirstException => status.is_failure(),
                    ReturnWhen::AllCompleted => false,
                },
            },
        }
    }

    /// The batch's own `timeout_ms` passed.
    pub fn on_deadline(&self, mode: Mode) -> OnDeadline {
        match mode {
            // asyncio.timeout around a gather: what is unfinished is cancelled and ends
            // `timed_out`.
            Mode::Gather => OnDeadline {
                fails_batch: !self.return_exceptions,
                stops: Some(StopReason::Deadline),
                answers: false,
            },
            // asyncio.wait's timeout: answer with what is done; pending tasks go on unless
            // `on_timeout: cancel`.
            Mode::Wait => OnDeadline {
                fails_batch: false,
                stops: (self.on_timeout == OnTimeout::Cancel).then_some(StopReason::Cancelled),
                answers: true,
            },
        }
    }

    /// The server's `--max-batch-duration` passed: whatever still runs ends `timed_out`, in
    /// either mode.
    pub fn on_server_limit(&self, mode: Mode) -> OnDeadline {
        OnDeadline {
            stops: Some(StopReason::Deadline),
            ..self.on_deadline(mode)
        }
    }
}

/// A still-running batch's status once every task has ended: what failed or was cancelled
/// stays so; the rest completed, or was interrupted by a shutdown.
pub fn final_status(current: BatchStatus, reason: Option<StopReason>) -> BatchStatus {
    match (current, reason) {
        (BatchStatus::Running, Some(StopReason::Interrupted)) => BatchStatus::Interrupted,
        (BatchStatus::Running, _) => BatchStatus::Completed,
        (other, _) => other,
    }
}

/// What an unfinished task becomes when its batch stops it for `reason`.
pub fn stopped_status(reason: Option<StopReason>) -> TaskStatus {
    match reason {
        Some(StopReason::Deadline) => TaskStatus::TimedOut,
        Some(StopReason::Interrupted) => TaskStatus::Interrupted,
        Some(StopReason::Cancelled) | None => TaskStatus::Cancelled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules {
            return_exceptions: false,
            fail_fast: false,
            return_when: ReturnWhen::AllCompleted,
            on_timeout: OnTimeout::Continue,
            results: ResultsMode::All,
            concurrency: 4,
            timeout_ms: None,
            thresholds: None,
            rate_per_s: None,
            rerun_of: None,
        }
    }

    const ENDED: [TaskStatus; 5] = TaskStatus::ENDED;

    #[test]
    fn gather_fails_and_answers_at_the_first_failure() {
        let r = rules();
        for status in [TaskStatus::Failed, TaskStatus::TimedOut] {
            let end = r.on_task_end(Mode::Gather, status, false);
            assert_eq!(
                end,
                OnTaskEnd {
                    fails_batch: true,
                    cancels_siblings: false,
                    answers: true
                },
                "{status:?}"
            );
        }
        for status in [TaskStatus::Succeeded, TaskStatus::Cancelled] {
            assert_eq!(
                r.on_task_end(Mode::Gather, status, false),
                OnTaskEnd::default()
            );
        }
    }

    #[test]
    fn gather_with_return_exceptions_never_answers_early() {
        let r = Rules {
            return_exceptions: true,
            fail_fast: true,
            ..rules()
        };
        for status in ENDED {
            assert_eq!(
                r.on_task_end(Mode::Gather, status, false),
                OnTaskEnd::default()
            );
        }
    }

    #[test]
    fn fail_fast_cancels_the_siblings_and_answers_once_they_ended() {
        let r = Rules {
            fail_fast: true,
            ..rules()
        };
        let end = r.on_task_end(Mode::Gather, TaskStatus::Failed, false);
        assert!(end.fails_batch && end.cancels_siblings && !end.answers);
        assert_eq!(
            r.on_task_end(Mode::Gather, TaskStatus::Succeeded, false),
            OnTaskEnd::default()
        );
    }

    #[test]
    fn wait_first_completed_answers_at_any_end() {
        let r = Rules {
            return_when: ReturnWhen::FirstCompleted,
            ..rules()
        };
        for status in ENDED {
            let end = r.on_task_end(Mode::Wait, status, false);
            assert!(end.answers && !end.fails_batch && !end.cancels_siblings);
        }
    }

    #[test]
    fn wait_first_exception_answers_at_a_failure_only() {
        let r = Rules {
            return_when: ReturnWhen::FirstException,
            ..rules()
        };
        assert!(r.on_task_end(Mode::Wait, TaskStatus::Failed, false).answers);
        assert!(
            r.on_task_end(Mode::Wait, TaskStatus::TimedOut, false)
                .answers
        );
        assert!(
            !r.on_task_end(Mode::Wait, TaskStatus::Succeeded, false)
                .answers
        );
        assert!(
            !r.on_task_end(Mode::Wait, TaskStatus::Cancelled, false)
                .answers
        );
    }

    #[test]
    fn wait_all_completed_answers_only_when_everything_ended() {
        let r = rules();
        for status in ENDED {
            assert_eq!(
                r.on_task_end(Mode::Wait, status, false),
                OnTaskEnd::default()
            );
        }
    }

    #[test]
    fn a_warm_up_task_decides_nothing() {
        let r = Rules {
            fail_fast: true,
            return_when: ReturnWhen::FirstCompleted,
            ..rules()
        };
        for mode in [Mode::Gather, Mode::Wait] {
            for status in ENDED {
                assert_eq!(r.on_task_end(mode, status, true), OnTaskEnd::default());
            }
        }
    }

    #[test]
    fn a_gather_deadline_times_out_the_rest_and_fails_unless_exceptions_are_returned() {
        let d = rules().on_deadline(Mode::Gather);
        assert_eq!(
            d,
            OnDeadline {
                fails_batch: true,
                stops: Some(StopReason::Deadline),
                answers: false
            }
        );
        let lenient = Rules {
            return_exceptions: true,
            ..rules()
        };
        assert!(!lenient.on_deadline(Mode::Gather).fails_batch);
    }

    #[test]
    fn a_wait_deadline_answers_and_cancels_only_when_asked() {
        let d = rules().on_deadline(Mode::Wait);
        assert!(d.answers && !d.fails_batch && d.stops.is_none());
        let cancel = Rules {
            on_timeout: OnTimeout::Cancel,
            ..rules()
        };
        assert_eq!(
            cancel.on_deadline(Mode::Wait).stops,
            Some(StopReason::Cancelled)
        );
    }

    #[test]
    fn the_server_limit_times_out_whatever_runs_in_either_mode() {
        for mode in [Mode::Gather, Mode::Wait] {
            assert_eq!(
                rules().on_server_limit(mode).stops,
                Some(StopReason::Deadline)
            );
        }
        assert!(rules().on_server_limit(Mode::Wait).answers);
    }

    #[test]
    fn a_batch_ends_completed_unless_something_decided_otherwise() {
        use BatchStatus::*;
        assert_eq!(final_status(Running, None), Completed);
        assert_eq!(final_status(Running, Some(StopReason::Deadline)), Completed);
        assert_eq!(
            final_status(Running, Some(StopReason::Cancelled)),
            Completed
        );
        assert_eq!(
            final_status(Running, Some(StopReason::Interrupted)),
            Interrupted
        );
        assert_eq!(final_status(Failed, Some(StopReason::Interrupted)), Failed);
        assert_eq!(final_status(Cancelled, None), Cancelled);
    }

    #[test]
    fn stopped_tasks_become_what_the_stop_was() {
        assert_eq!(
            stopped_status(Some(StopReason::Deadline)),
            TaskStatus::TimedOut
        );
        assert_eq!(
            stopped_status(Some(StopReason::Interrupted)),
            TaskStatus::Interrupted
        );
        assert_eq!(
            stopped_status(Some(StopReason::Cancelled)),
            TaskStatus::Cancelled
        );
    }
}
