//! A batch's summary while it runs (live totals), once read back (as stored), and once
//! finished (the summary fixed, the totals packed).

use std::time::Duration;

use super::State;
use crate::engine::summary::{Summary, SummaryAcc};
use crate::engine::task::ms;

/// The summary: accumulated here while the batch runs, or as storage gave it. A finished
/// summary is boxed: inline, it made every running batch as large as a finished one (the
/// enum is the size of its largest variant), 240 bytes more than its live totals.
// The live totals stay inline: every batch in flight has them, and boxing them would cost it
// an allocation to save a finished batch a few hundred bytes.
#[allow(clippy::large_enum_variant)]
pub(super) enum SummaryState {
    Live(SummaryAcc),
    /// Read back from storage, with the batch's stored `wall_ms`.
    Stored(Box<Summary>, Option<f64>),
    /// Finished: the summary as it ended, and the totals packed (HDR's compact form, a few
    /// hundred bytes where the live histograms of a batch of 10 ms tasks hold some 80 KB),
    /// unpacked for its last checkpoint or when the page asks for them. memory:// keeps every
    /// batch, and 1,000 clients keep thousands of finished batches waiting for their last
    /// write to SQLite.
    Packed {
        summary: Box<Summary>,
        wall_ms: Option<f64>,
        totals: Box<str>,
    },
}

impl State {
    /// `wall_ms` as shown: measured while the batch lives here, as stored once read back.
    pub(super) fn wall_ms(&self, wall: Option<Duration>) -> Option<f64> {
        match &self.summary {
            SummaryState::Stored(_, wall_ms) | SummaryState::Packed { wall_ms, .. } => *wall_ms,
            SummaryState::Live(_) => wall.map(ms),
        }
    }

    /// The summary; its throughput counts from the first task after the warm-up.
    pub(super) fn summary(&self, wall: Option<Duration>) -> Summary {
        match &self.summary {
            SummaryState::Live(acc) => {
                let measured = match (self.measured_from, self.first_start) {
                    (Some(from), Some(first)) if from > first => {
                        wall.map(|w| w.saturating_sub(from - first))
                    }
                    _ => wall,
                };
                acc.summary(measured)
            }
            SummaryState::Stored(summary, _) | SummaryState::Packed { summary, .. } => {
                Summary::clone(summary)
            }
        }
    }

    /// Once finished, fixes the summary and packs the totals (see [`SummaryState::Packed`]).
    pub(super) fn pack(&mut self) {
        if self.finished_at.is_none() {
            return;
        }
        let SummaryState::Live(acc) = &mut self.summary else {
            return;
        };
        // The figures and the stored totals below read the same histograms: made once.
        acc.settle();
        let Ok(totals) = serde_json::to_string(acc) else {
            return;
        };
        let wall = self.wall();
        self.summary = SummaryState::Packed {
            summary: Box::new(self.summary(wall)),
            wall_ms: self.wall_ms(wall),
            totals: totals.into_boxed_str(),
        };
    }
}
