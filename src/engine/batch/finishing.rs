//! How a batch finishes: the tasks it dropped are recorded as its stop reason says, then it
//! is closed (its final status, its totals packed) and its followers told.

use std::time::Instant;

use chrono::Utc;

use super::rules;
use super::signal::Phase;
use super::{Batch, Outcome, State};
use crate::engine::task::{ErrorCode, TaskError, TaskStatus};

impl Batch {
    /// Every task ended or was dropped: record the dropped ones, close the batch.
    pub(crate) fn finish(&self) {
        {
            let mut st = self.state.lock();
            let were_running = self.end_dropped(&mut st);
            self.meter.tasks_ended(were_running);
            self.close(&mut st);
        }
        self.signal.advance(Phase::Finished);
    }

    /// Records each task not ended as the stop reason says; returns how many of them had
    /// started (the in-flight gauge counts them out).
    fn end_dropped(&self, st: &mut State) -> usize {
        let now = Instant::now();
        let status = rules::stopped_status(st.stop_reason);
        let mut were_running = 0;
        for index in st.tasks.unfinished() {
            let error = match status {
                TaskStatus::TimedOut => {
                    TaskError::new(ErrorCode::Timeout, "the batch deadline passed")
                }
                TaskStatus::Interrupted => {
                    TaskError::new(ErrorCode::Interrupted, "the process running it stopped")
                }
                _ => TaskError::new(ErrorCode::Cancelled, "cancelled"),
            };
            // A task that never started has no duration; one that ran is timed to now.
            let span = st
                .clock
                .and_then(|clock| st.tasks.started_at(index, clock))
                .map(|started| (started, now));
            let attempts = u32::from(span.is_some());
            were_running += attempts as usize;
            let outcome = Outcome {
                attempts,
                output: None,
                error: Some(error),
                net: None,
                checks: None,
            };
            let warmup = st.tasks.is_warmup(index);
            self.end_task(st, index, status, span, warmup, outcome);
        }
        were_running
    }

    /// Marks the batch finished, with its final status, and packs its totals.
    fn close(&self, st: &mut State) {
        st.finished_at = Some(Utc::now());
        self.signal.tell();
        st.status = rules::final_status(st.status, st.stop_reason);
        // Nothing is counted any more: what stays of the totals, kept in memory (memory://)
        // or waiting for its last write, is packed.
        st.pack();
        if st.clock.is_some() {
            self.meter.batch_finished(self.mode, st.status);
        }
    }
}
