//! What the page draws of a batch, sized by pixels rather than tasks: when its tasks started
//! and ended (time bins kept with the summary's totals), and its latency distribution (the
//! summary's HDR histograms as log-spaced buckets and a percentile spectrum).
//!
//! - `bins`: the time bins a batch keeps with its totals.
//! - `count`: a timeline's bins counted, from task rows or from the recorded bins, and the
//!   tasks in flight in each.
//! - `latency`: a latency figure's distribution.

mod bins;
mod count;
mod latency;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::engine::spec::ResultsMode;
use crate::engine::task::{TaskRecord, TaskStatus};
pub use bins::{RecordedBin, TimeBins};
use count::{Busy, Grid, busy_from_rows, count_recorded, count_rows, fill_in_flight};
pub use latency::{Latency, LatencyBucket, PercentilePoint, latency};

/// `GET /batches/{id}/timeline`: when tasks started and ended in a window of the run.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Timeline {
    /// The run's time origin: the batch's `started_at`. Every `_ms` below counts from it.
    #[serde(serialize_with = "crate::engine::task::micros_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<DateTime<Utc>>,
    /// The run so far: its wall time once finished, the time since its start while it runs.
    pub span_ms: f64,
    pub from_ms: f64,
    pub to_ms: f64,
    /// The bins' width: as asked, or the finest the batch recorded when that is coarser.
    pub bin_ms: f64,
    pub bins: Vec<TimeBin>,
    /// Tasks that started in the window.
    pub tasks_in_window: u64,
    /// Most task rows an answer carries.
    pub row_limit: usize,
    /// Which tasks have rows: `all`, `errors` (only failed ones) or `none`.
    pub results: ResultsMode,
    /// The window's tasks that have rows, by start; null when more than `row_limit` started
    /// in it (zoom in).
    pub tasks: Option<Vec<TaskBar>>,
}

/// One bin of a timeline.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TimeBin {
    pub start_ms: f64,
    pub started: u64,
    pub ended: u64,
    /// Tasks running, on average over the bin (time-weighted: two tasks that each ran half of
    /// it make 1.0), to 3 decimals. Exact when the bins are counted from rows; from the
    /// recorded bins, the mean over the recorded bins that fall in it (those recorded before
    /// fanout kept what a mean needs give the number running at their end instead).
    #[schema(minimum = 0)]
    pub in_flight: f64,
    /// Tasks that ended failed or timed out in it.
    pub errors: u64,
}

/// One task of a timeline's window, as a waterfall draws it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskBar {
    pub index: u32,
    pub id: Option<String>,
    pub status: TaskStatus,
    pub start_ms: f64,
    /// Null while it runs.
    pub end_ms: Option<f64>,
    pub queued_ms: Option<f64>,
    pub http_status: Option<u16>,
    pub reused: Option<bool>,
    pub warmup: bool,
    /// How many times it ran, when more than once: retries, or a run again after the instance
    /// running it was lost (absent: once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    #[schema(value_type = Option<crate::engine::task::Phases>)]
    pub phases: Option<crate::engine::task::Phases>,
    #[schema(value_type = Option<crate::engine::task::TaskError>)]
    pub error: Option<crate::engine::task::TaskError>,
    /// Its checks, judged, when the batch kept its answer (`output.checks`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<crate::engine::check::CheckResult>,
    /// A flow's steps, when the batch kept its answer: each one's place, `id`, status, time and
    /// error code.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepBar>,
}

/// One step of a flow task's row.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StepBar {
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub status: crate::engine::task::StepStatus,
    pub duration_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::engine::task::ErrorCode>,
}

/// Most task rows a timeline answer carries.
pub const ROW_LIMIT: usize = 2000;
/// Most bins a timeline answer has.
pub const MAX_ANSWER_BINS: usize = 2000;

/// Most rows a timeline counts its bins from (exact at any zoom); past them it counts from
/// the recorded bins.
pub const COUNTED_ROWS: usize = ROW_LIMIT * 8;

/// What a timeline is made from: the batch's time bins, its task rows, when it started.
pub struct TimelineInput<'a> {
    pub started_at: Option<DateTime<Utc>>,
    pub span_ms: f64,
    pub bins: Option<&'a TimeBins>,
    pub tasks: Vec<&'a TaskRecord>,
    /// Which of the batch's rows `tasks` holds.
    pub cover: Cover,
    pub results: ResultsMode,
}

/// Which of a batch's rows a timeline was given: all of them, or, for a batch read back from
/// storage, those a window needs (see [`window_bounds`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cover {
    /// Every row the batch keeps.
    All,
    /// Every row of a task that ran in the window (started before its end, not ended before
    /// its start): enough to count the bins from rows.
    Window,
    /// Every row of a task that started in the window: enough for the task bars.
    Starts,
    /// Some rows of tasks that started in the window: neither.
    Some,
}

/// The stretch of time, by the clock of the batch's rows, that the rows a window needs lie
/// in: `(start, end)`, `None` where the window is open (from the run's start, to its end,
/// which also take in what a shard's clock put outside). [`WINDOW_SLACK_MS`] wider each side
/// than the window, so that rounding never leaves a row out: [`timeline`] places rows
/// exactly.
pub fn window_bounds(
    started_at: Option<DateTime<Utc>>,
    span_ms: f64,
    from_ms: Option<f64>,
    to_ms: Option<f64>,
) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let Some(origin) = started_at else {
        return (None, None);
    };
    let (from, to) = window(span_ms, from_ms, to_ms);
    let at = |ms: f64| origin + chrono::Duration::microseconds((ms * 1000.0) as i64);
    let start = (from > 0.0).then(|| at(from - WINDOW_SLACK_MS));
    let end = to_ms.map(|_| at(to + WINDOW_SLACK_MS));
    (start, end)
}

/// How much wider than a window [`window_bounds`] reads: ten microseconds, far above the
/// error of a row's start in milliseconds since the batch's (about 0.2 µs), and narrow enough
/// that a dense burst of starts adds few rows.
const WINDOW_SLACK_MS: f64 = 0.01;

/// A window's start and end, in ms from the batch's start: from 0 and to the run so far
/// unless given, and never empty.
fn window(span_ms: f64, from_ms: Option<f64>, to_ms: Option<f64>) -> (f64, f64) {
    let from = from_ms.unwrap_or(0.0).max(0.0);
    let to = to_ms.unwrap_or(span_ms).max(from + 0.001);
    (from, to)
}

/// The timeline of `[from_ms, to_ms)` in `bins` bins. Bins come from the recorded bins (at
/// their resolution), or, when the batch keeps a row for every task and the window holds few
/// enough, from the rows themselves (exact at any zoom). An empty window (`to_ms` given and
/// not after `from_ms`) has no bins.
pub fn timeline(
    input: &TimelineInput,
    from_ms: Option<f64>,
    to_ms: Option<f64>,
    bins: usize,
) -> Timeline {
    if let Some(to) = to_ms.filter(|&to| to <= from_ms.unwrap_or(0.0)) {
        return empty_timeline(input, to);
    }
    let origin = input.started_at.map(epoch_ms);
    let window = Window::new(input.span_ms, from_ms, to_ms);
    let rows = rows_by_start(input, &window, origin);
    // The bins: from every task's row when the batch keeps them all and they are few enough
    // to read, else from the recorded bins.
    let from_rows = input.results == ResultsMode::All
        && matches!(input.cover, Cover::All | Cover::Window)
        && rows.len() <= COUNTED_ROWS;
    let grid = Grid::new(&window, bins, from_rows, input.bins);
    let mut out = grid.empty_bins();
    let mut busy = vec![Busy::default(); out.len()];
    // `before`: running at the window's start (started before it, not ended before it).
    let (before, mut in_window) = if from_rows {
        let origin = origin.unwrap_or(0.0);
        let before = count_rows(&input.tasks, &grid, origin, &mut out);
        busy_from_rows(&input.tasks, &grid, origin, &mut busy);
        (before, rows.len() as u64)
    } else if let (Some(b), Some(origin)) = (input.bins, origin) {
        count_recorded(b, &grid, origin, &mut out, &mut busy)
    } else {
        (0, 0)
    };
    fill_in_flight(&mut out, before, &busy);
    if input.cover == Cover::Starts {
        // The rows of every task that started in the window count them exactly, where the
        // recorded bins count the whole of each bin the window touches.
        in_window = rows.len() as u64;
    }
    let shown =
        input.cover != Cover::Some && in_window as usize <= ROW_LIMIT && rows.len() <= ROW_LIMIT;
    Timeline {
        started_at: input.started_at,
        span_ms: round3(input.span_ms),
        from_ms: round3(window.from),
        to_ms: round3(window.to),
        bin_ms: round3(grid.width),
        bins: out,
        tasks_in_window: in_window,
        row_limit: ROW_LIMIT,
        results: input.results,
        tasks: shown.then(|| rows.iter().map(|t| bar(t, origin.unwrap_or(0.0))).collect()),
    }
}

/// The answer for an empty window at `at`: nothing started, ended or ran in no time, so no
/// bins (one bin would have to be 0 ms wide) and no rows.
fn empty_timeline(input: &TimelineInput, at: f64) -> Timeline {
    Timeline {
        started_at: input.started_at,
        span_ms: round3(input.span_ms),
        from_ms: round3(at),
        to_ms: round3(at),
        bin_ms: 0.0,
        bins: Vec::new(),
        tasks_in_window: 0,
        row_limit: ROW_LIMIT,
        results: input.results,
        tasks: Some(Vec::new()),
    }
}

/// `t` in ms since the Unix epoch.
fn epoch_ms(t: DateTime<Utc>) -> f64 {
    t.timestamp_micros() as f64 / 1000.0
}

/// A timeline's window, in ms from the batch's start.
struct Window {
    from: f64,
    to: f64,
    /// From the run's start, or to its end: such a window takes in what lies before (after)
    /// it, since a shard on another instance may start a task a moment before the batch's
    /// recorded start, or end one after its recorded end, by their clocks.
    open_start: bool,
    open_end: bool,
}

impl Window {
    fn new(span_ms: f64, from_ms: Option<f64>, to_ms: Option<f64>) -> Window {
        let (from, to) = window(span_ms, from_ms, to_ms);
        Window {
            from,
            to,
            open_start: from == 0.0,
            open_end: to_ms.is_none(),
        }
    }

    /// Where `at` counts in the window, if it does: an open end takes in what lies past it.
    fn within(&self, at: f64) -> Option<f64> {
        let (from, to) = (self.from, self.to);
        if at < from {
            self.open_start.then_some(from)
        } else if at >= to {
            self.open_end.then_some(to - (to - from) * 1e-9)
        } else {
            Some(at)
        }
    }
}

/// The window's tasks that started in it, by start (each start read once).
fn rows_by_start<'a>(
    input: &TimelineInput<'a>,
    window: &Window,
    origin: Option<f64>,
) -> Vec<&'a TaskRecord> {
    let start_of =
        |t: &TaskRecord| -> Option<f64> { Some(epoch_ms(t.timing.started_at?) - origin?) };
    let mut started: Vec<(f64, &TaskRecord)> = input
        .tasks
        .iter()
        .filter_map(|&t| {
            start_of(t)
                .filter(|&s| window.within(s).is_some())
                .map(|s| (s, t))
        })
        .collect();
    started.sort_by(|(a, x), (b, y)| a.total_cmp(b).then(x.index.cmp(&y.index)));
    started.into_iter().map(|(_, t)| t).collect()
}

fn bar(t: &TaskRecord, origin: f64) -> TaskBar {
    let at = |d: DateTime<Utc>| round3(d.timestamp_micros() as f64 / 1000.0 - origin);
    let (http_status, checks) = match &t.output {
        Some(crate::engine::task::TaskOutput::Http(h)) => (Some(h.status), h.checks.clone()),
        _ => (None, Vec::new()),
    };
    let steps = match &t.output {
        Some(crate::engine::task::TaskOutput::Flow(f)) => f
            .steps
            .iter()
            .map(|s| StepBar {
                index: s.index,
                id: s.id.clone(),
                status: s.status,
                duration_ms: s.duration_ms,
                error: s.error.as_ref().map(|e| e.code),
            })
            .collect(),
        _ => Vec::new(),
    };
    TaskBar {
        index: t.index,
        id: t.id.clone(),
        status: t.status,
        start_ms: t.timing.started_at.map_or(0.0, at),
        end_ms: t.timing.finished_at.map(at),
        queued_ms: t.timing.queued_ms,
        http_status,
        reused: t.timing.reused,
        warmup: t.warmup,
        attempts: (t.attempts > 1).then_some(t.attempts),
        phases: t.timing.phases,
        error: t.error.clone(),
        checks,
        steps,
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// What the HTML report embeds: the batch and its picture, for a page that fetches nothing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportData {
    pub batch: serde_json::Value,
    pub timeline: serde_json::Value,
    pub latency: BTreeMap<String, serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeline_has_no_more_bins_than_asked_whatever_the_span() {
        // Spans whose `span / (span / n)` rounds above `n` once gave one bin too many.
        for i in 0..5000u32 {
            let span_ms = 1.0 + f64::from(i) * 0.731;
            for (asked, results) in [(100, ResultsMode::All), (37, ResultsMode::None)] {
                let input = TimelineInput {
                    started_at: Some(Utc::now()),
                    span_ms,
                    bins: None,
                    tasks: Vec::new(),
                    cover: Cover::All,
                    results,
                };
                let t = timeline(&input, None, None, asked);
                assert!(t.bins.len() <= asked, "{span_ms}: {}", t.bins.len());
                assert!(!t.bins.is_empty());
            }
        }
    }

    /// A task that ran from `from` to `to` µs after `t0` and succeeded.
    fn ran(index: u32, t0: DateTime<Utc>, from: i64, to: i64) -> TaskRecord {
        let us = chrono::Duration::microseconds;
        let mut t = TaskRecord::pending(index, None, crate::engine::spec::Kind::Sleep);
        t.timing.started_at = Some(t0 + us(from));
        t.timing.finished_at = Some(t0 + us(to));
        t.status = TaskStatus::Succeeded;
        t
    }

    /// The timeline of `tasks` from their rows (`from_rows`) or from bins recorded as a run
    /// records them.
    fn drawn(
        tasks: &[TaskRecord],
        t0: DateTime<Utc>,
        from_rows: bool,
        window: (f64, f64),
        bins: usize,
    ) -> Timeline {
        let mut recorded = TimeBins::new();
        for t in tasks {
            let us = |d: DateTime<Utc>| d.timestamp_micros() as u64;
            recorded.record(
                us(t.timing.started_at.unwrap()),
                us(t.timing.finished_at.unwrap()),
                false,
            );
        }
        let input = TimelineInput {
            started_at: Some(t0),
            span_ms: window.1,
            bins: Some(&recorded),
            tasks: tasks.iter().collect(),
            cover: Cover::All,
            results: if from_rows {
                ResultsMode::All
            } else {
                ResultsMode::None
            },
        };
        timeline(&input, Some(window.0), Some(window.1), bins)
    }

    #[test]
    fn two_tasks_each_running_half_a_bin_make_one_in_flight_on_average() {
        let t0 = DateTime::parse_from_rfc3339("2026-12-06T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        // Bins of 1 ms: two tasks that each run half of the second one, and both end in it,
        // so none runs at its end.
        let tasks = [ran(0, t0, 1_000, 1_500), ran(1, t0, 1_250, 1_750)];
        for from_rows in [true, false] {
            let t = drawn(&tasks, t0, from_rows, (0.0, 3.0), 3);
            let means: Vec<f64> = t.bins.iter().map(|b| b.in_flight).collect();
            assert_eq!(means, [0.0, 1.0, 0.0], "from rows: {from_rows}");
        }
    }

    #[test]
    fn the_mean_in_flight_from_recorded_bins_agrees_with_the_rows() {
        let t0 = DateTime::parse_from_rfc3339("2026-12-06T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        // 4 s of overlapping tasks: the recorded bins coarsen to 4 ms, the answer's are 16.
        let tasks: Vec<TaskRecord> = (0..3000u32)
            .map(|i| {
                let start = i64::from(i) * 1_333 + i64::from(i % 7) * 91;
                ran(i, t0, start, start + 300 + i64::from(i % 23) * 2_017)
            })
            .collect();
        let rows = drawn(&tasks, t0, true, (0.0, 4096.0), 256);
        let recorded = drawn(&tasks, t0, false, (0.0, 4096.0), 256);
        assert_eq!(recorded.bin_ms, 16.0);
        assert_eq!(rows.bins.len(), recorded.bins.len());
        for (a, b) in rows.bins.iter().zip(&recorded.bins) {
            assert!((a.in_flight - b.in_flight).abs() < 0.002, "{a:?} {b:?}");
        }
        assert!(rows.bins.iter().any(|b| b.in_flight.fract() != 0.0));
    }

    /// Tasks of a run that starts at `t0`: some before it (another shard's clock), some
    /// still running, some never started, some failed.
    fn tasks_around(t0: DateTime<Utc>) -> Vec<TaskRecord> {
        let us = chrono::Duration::microseconds;
        (0..3000u32)
            .map(|i| {
                let mut t = TaskRecord::pending(i, None, crate::engine::spec::Kind::Sleep);
                if i % 97 == 0 {
                    return t;
                }
                let start = t0 + us(i64::from(i) * 333 - 2_000);
                t.timing.started_at = Some(start);
                t.status = TaskStatus::Running;
                if i % 89 != 0 {
                    t.timing.finished_at = Some(start + us(i64::from(i % 50) * 1_777));
                    t.status = if i % 13 == 0 {
                        TaskStatus::Failed
                    } else {
                        TaskStatus::Succeeded
                    };
                }
                t
            })
            .collect()
    }

    #[test]
    fn the_rows_a_window_needs_draw_it_as_every_row_does() {
        // What the store reads for a window read back (SQL `started_at < end AND (finished_at
        // IS NULL OR finished_at >= start)`, and the starts in it), against every row.
        let t0 = DateTime::parse_from_rfc3339("2026-12-06T12:00:00.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        let all = tasks_around(t0);
        let span_ms = 1_100.0;
        let windows = [
            (None, None),
            (Some(0.0), Some(50.0)),
            (Some(10.5), Some(10.9)),
            (Some(100.0), None),
            (Some(333.333), Some(700.001)),
            (None, Some(2.0)),
            (Some(1_050.0), Some(5_000.0)),
            // Edges on starts (tasks 100 and 101): the first in, the second out.
            (Some(31.3), Some(31.633)),
        ];
        for (from, to) in windows {
            for bins in [1, 7, 200] {
                fn input(
                    tasks: Vec<&TaskRecord>,
                    cover: Cover,
                    t0: DateTime<Utc>,
                ) -> TimelineInput<'_> {
                    TimelineInput {
                        started_at: Some(t0),
                        span_ms: 1_100.0,
                        bins: None,
                        tasks,
                        cover,
                        results: ResultsMode::All,
                    }
                }
                let every = timeline(&input(all.iter().collect(), Cover::All, t0), from, to, bins);
                let (start, end) = window_bounds(Some(t0), span_ms, from, to);
                let ran = all
                    .iter()
                    .filter(|t| {
                        t.timing
                            .started_at
                            .is_some_and(|s| end.is_none_or(|e| s < e))
                            && start.is_none_or(|b| t.timing.finished_at.is_none_or(|f| f >= b))
                    })
                    .collect();
                let needed = timeline(&input(ran, Cover::Window, t0), from, to, bins);
                let json = |t: &Timeline| serde_json::to_value(t).unwrap();
                assert_eq!(json(&needed), json(&every), "{from:?}..{to:?} in {bins}");
                let started = all
                    .iter()
                    .filter(|t| {
                        t.timing.started_at.is_some_and(|s| {
                            end.is_none_or(|e| s < e) && start.is_none_or(|b| s >= b)
                        })
                    })
                    .collect();
                let bars = timeline(&input(started, Cover::Starts, t0), from, to, bins);
                if every.tasks.is_some() {
                    assert_eq!(bars.tasks_in_window, every.tasks_in_window);
                }
                assert_eq!(
                    serde_json::to_value(&bars.tasks).unwrap(),
                    serde_json::to_value(&every.tasks).unwrap(),
                    "{from:?}..{to:?}"
                );
            }
        }
    }
}
