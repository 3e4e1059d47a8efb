//! How a batch stops: starting no more tasks, stopping those that run (for a reason, the
//! first given winning), a client's cancel, and its deadlines passing.

use std::time::Duration;

use super::rules::{self, StopReason};
use super::signal::Phase;
use super::{Batch, BatchError, BatchStatus};
use crate::engine::task::ErrorCode;

impl Batch {
    /// Starts no more tasks; those running go on to their end. The tasks never started end
    /// as `reason` says once the batch finishes (the first reason given wins).
    pub fn stop_starting(&self, reason: StopReason) {
        if self.note_stop(reason, None) {
            self.no_more.cancel();
        }
    }

    /// Stops every unfinished task: the runner drops their futures; `Batch::finish` then
    /// records them according to `reason`. The first reason given wins.
    pub fn stop(&self, reason: StopReason) {
        if self.note_stop(reason, None) {
            self.cancel.cancel();
        }
    }

    /// Marks the batch cancelled by a client (DELETE), then stops it.
    pub fn cancel_by_client(&self) {
        if self.note_stop(StopReason::Cancelled, Some(BatchStatus::Cancelled)) {
            self.cancel.cancel();
        }
    }

    /// Keeps `reason` (unless one was given before) and sets `status`, if the batch has not
    /// finished; returns whether it had not (a finished batch has nothing left to stop).
    fn note_stop(&self, reason: StopReason, status: Option<BatchStatus>) -> bool {
        let mut st = self.state.lock();
        if st.finished_at.is_some() {
            return false;
        }
        if let Some(status) = status {
            st.status = status;
        }
        st.stop_reason.get_or_insert(reason);
        true
    }

    /// The batch's `timeout_ms` passed: answers or fails it as its rules say, and returns how
    /// its unfinished tasks are to be stopped, if they are ([`Batch::stop`], left to the
    /// caller so that an answer can be read first).
    #[must_use]
    pub(crate) fn deadline_passed(&self, timeout: Duration) -> Option<StopReason> {
        self.apply_deadline(self.rules.on_deadline(self.mode), timeout)
    }

    /// The server's `--max-batch-duration` passed: whatever still runs is to end
    /// `timed_out`, in either mode.
    #[must_use]
    pub(crate) fn server_limit_passed(&self, limit: Duration) -> Option<StopReason> {
        self.apply_deadline(self.rules.on_server_limit(self.mode), limit)
    }

    fn apply_deadline(&self, decided: rules::OnDeadline, after: Duration) -> Option<StopReason> {
        if decided.fails_batch {
            let mut st = self.state.lock();
            if st.status == BatchStatus::Running {
                st.status = BatchStatus::Failed;
                st.error = Some(BatchError {
                    index: None,
                    code: ErrorCode::Timeout,
                    message: format!("the batch deadline of {} ms passed", after.as_millis()),
                });
            }
        }
        if decided.answers {
            self.signal.advance(Phase::Answered);
        }
        decided.stops
    }
}
