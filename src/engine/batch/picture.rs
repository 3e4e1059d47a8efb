//! A batch's picture: its timeline and latency distribution, from its totals and its rows.

use std::borrow::Cow;

use chrono::{DateTime, Utc};

use super::tasks::Tasks;
use super::{Batch, State, SummaryState};
use crate::engine::picture::{Cover, Latency, Timeline, TimelineInput, latency, timeline};
use crate::engine::summary::{LatencyMetric, SummaryAcc};
use crate::engine::task::{TaskRecord, TaskStatus};

impl Batch {
    /// Its running totals, while this process holds them (a batch run here, live or packed);
    /// `None` for one read back from storage, whose totals are in its shards' checkpoints.
    pub fn totals(&self) -> Option<SummaryAcc> {
        own_totals(&self.state.lock().summary).map(Cow::into_owned)
    }

    /// Its totals for a comparison's noise: `totals` (merged from its checkpoints) when
    /// given, else its own, else counted again from its rows.
    pub fn counted_totals(&self, totals: Option<SummaryAcc>) -> SummaryAcc {
        totals
            .or_else(|| self.totals())
            .unwrap_or_else(|| from_rows(&self.state.lock().tasks))
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
        let (started_at, span_ms) = span(&st);
        let own = own_totals(&st.summary);
        let rebuilt = match own.as_deref().or(totals) {
            Some(_) => None,
            None => Some(from_rows(&st.tasks)),
        };
        let input = TimelineInput {
            started_at,
            span_ms,
            bins: own
                .as_deref()
                .or(totals)
                .or(rebuilt.as_ref())
                .and_then(SummaryAcc::times),
            tasks: st.tasks.records().collect(),
            cover: Cover::All,
            results: self.rules.results,
        };
        timeline(&input, from_ms, to_ms, bins)
    }

    /// When it started and how long it ran (to now while it runs), in ms.
    pub fn span(&self) -> (Option<DateTime<Utc>>, f64) {
        span(&self.state.lock())
    }

    /// [`Batch::timeline`] of a batch read back without its rows, from its merged `totals`
    /// and the `rows` the window needs, as `cover` says they are (see
    /// [`crate::engine::picture::window_bounds`]).
    pub fn timeline_of(
        &self,
        totals: &SummaryAcc,
        rows: &[TaskRecord],
        cover: Cover,
        from_ms: Option<f64>,
        to_ms: Option<f64>,
        bins: usize,
    ) -> Timeline {
        let (started_at, span_ms) = self.span();
        let input = TimelineInput {
            started_at,
            span_ms,
            bins: totals.times(),
            tasks: rows.iter().collect(),
            cover,
            results: self.rules.results,
        };
        timeline(&input, from_ms, to_ms, bins)
    }

    /// The distribution of a latency figure; `totals` as for [`Batch::timeline`]. A batch
    /// whose checkpoints carry no totals has its rows counted again.
    pub fn latency(&self, totals: Option<&SummaryAcc>, metric: LatencyMetric) -> Latency {
        let st = self.state.lock();
        let own = own_totals(&st.summary);
        let acc = own.as_deref().or(totals);
        let rebuilt = acc.is_none().then(|| from_rows(&st.tasks));
        let name = match metric {
            LatencyMetric::Duration => "duration",
            LatencyMetric::Ttfb => "ttfb",
        };
        let histogram = acc.or(rebuilt.as_ref()).and_then(|a| a.histogram(metric));
        latency(name, histogram.as_ref().map(|(h, sum)| (h.as_ref(), *sum)))
    }
}

/// When a batch started and how long it ran (to now while it runs), in ms.
fn span(st: &State) -> (Option<DateTime<Utc>>, f64) {
    let started_at = st.clock.map(|c| c.0);
    let end = st.finished_at.unwrap_or_else(Utc::now);
    let span_ms = started_at.map_or(0.0, |s| {
        (end - s).num_microseconds().unwrap_or(0).max(0) as f64 / 1000.0
    });
    (started_at, span_ms)
}

/// The totals this process holds: live, or unpacked.
fn own_totals(summary: &SummaryState) -> Option<Cow<'_, SummaryAcc>> {
    match summary {
        SummaryState::Live(acc) => Some(Cow::Borrowed(acc)),
        SummaryState::Packed { totals, .. } => serde_json::from_str(totals).ok().map(Cow::Owned),
        SummaryState::Stored(..) => None,
    }
}

/// Totals made again from a batch's rows: for a batch whose checkpoints carry none, which is
/// one that keeps a row for every task (one that keeps fewer always checkpoints its totals).
fn from_rows(tasks: &Tasks) -> SummaryAcc {
    let mut acc = SummaryAcc::new(0);
    for t in tasks
        .records()
        .filter(|t| t.status.is_finished() && !t.warmup)
    {
        acc.record_stored(t);
        if let (Some(s), Some(e)) = (t.timing.started_at, t.timing.finished_at) {
            let us = |d: chrono::DateTime<Utc>| d.timestamp_micros().max(0) as u64;
            let error = matches!(t.status, TaskStatus::Failed | TaskStatus::TimedOut);
            acc.record_times(us(s), us(e), error);
        }
    }
    acc
}
