//! A batch's picture: its timeline and latency distribution, from its totals and its rows.

use chrono::Utc;

use super::{Batch, SummaryState};
use crate::engine::picture::{Latency, Timeline, TimelineInput, latency, timeline};
use crate::engine::summary::{LatencyMetric, SummaryAcc};

impl Batch {
    /// Its running totals, while this process holds them (a batch run here); `None` for one
    /// read back from storage, whose totals are in its shards' checkpoints.
    pub fn totals(&self) -> Option<SummaryAcc> {
        match &self.state.lock().summary {
            SummaryState::Live(acc) => Some(acc.clone()),
            SummaryState::Stored(..) => None,
        }
    }

    /// The timeline of `[from_ms, to_ms)` (ms from its start) in `bins` bins; `totals` are
    /// its merged totals when it was read back from storage.
    pub fn timeline(
        &self,
        totals: Option<&SummaryAcc>,
        from_ms: Option<f64>,
        to_ms: Option<f64>,
        bins: usize,
    ) -> Timeline {
        let st = self.state.lock();
        let started_at = st.clock.map(|c| c.0);
        let end = st.finished_at.unwrap_or_else(Utc::now);
        let span_ms = started_at.map_or(0.0, |s| {
            (end - s).num_microseconds().unwrap_or(0).max(0) as f64 / 1000.0
        });
        let live = match &st.summary {
            SummaryState::Live(acc) => Some(acc),
            SummaryState::Stored(..) => None,
        };
        let input = TimelineInput {
            started_at,
            span_ms,
            bins: live.or(totals).and_then(SummaryAcc::times),
            tasks: st.tasks.records().collect(),
            results: self.rules.results,
        };
        timeline(&input, from_ms, to_ms, bins)
    }

    /// The distribution of a latency figure; `totals` as for [`Batch::timeline`]. A batch
    /// whose totals are nowhere (stored before they were kept) has an empty one.
    pub fn latency(&self, totals: Option<&SummaryAcc>, metric: LatencyMetric) -> Latency {
        let st = self.state.lock();
        let acc = match &st.summary {
            SummaryState::Live(acc) => Some(acc),
            SummaryState::Stored(..) => totals,
        };
        let name = match metric {
            LatencyMetric::Duration => "duration",
            LatencyMetric::Ttfb => "ttfb",
        };
        latency(name, acc.and_then(|a| a.histogram(metric)))
    }
}
