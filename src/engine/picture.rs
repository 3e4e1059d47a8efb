//! What the page draws of a batch, sized by pixels rather than tasks: when its tasks started
//! and ended (time bins kept with the summary's totals), and its latency distribution (the
//! summary's HDR histograms as log-spaced buckets and a percentile spectrum).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::engine::spec::ResultsMode;
use crate::engine::task::{TaskRecord, TaskStatus};

/// Most bins a batch keeps: past them, bins double in width (neighbours merged).
const MAX_BINS: usize = 1024;

/// Tasks started, ended and failed, in bins of `width_ms` counted from the Unix epoch, so that
/// the bins of shards on different instances line up and add. The width starts at 1 ms and
/// doubles whenever the run outgrows [`MAX_BINS`], so a run of any length keeps at most that
/// many: a 6 s run has 8 ms bins, an hour 4 s ones.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TimeBins {
    width_ms: u64,
    /// The first bin's number (its start is `first * width_ms`).
    first: u64,
    /// Per bin: started, ended, errors (failed or timed out when they ended).
    bins: Vec<[u32; 3]>,
}

impl TimeBins {
    pub fn new() -> TimeBins {
        TimeBins {
            width_ms: 1,
            first: 0,
            bins: Vec::new(),
        }
    }

    /// A task that ran from `start` to `end` (ms since the Unix epoch).
    pub fn record(&mut self, start_ms: u64, end_ms: u64, error: bool) {
        self.add(start_ms, 0, 1);
        self.add(end_ms, 1, 1);
        if error {
            self.add(end_ms, 2, 1);
        }
    }

    fn add(&mut self, at_ms: u64, what: usize, n: u32) {
        let mut bin = at_ms / self.width_ms.max(1);
        if self.bins.is_empty() {
            self.first = bin;
        }
        while bin < self.first || bin >= self.first + MAX_BINS as u64 {
            if self.fits_after_growing(bin) {
                break;
            }
            self.coarsen();
            bin = at_ms / self.width_ms;
        }
        if bin < self.first {
            // Room below: shift the bins up to start at `bin`.
            let gap = (self.first - bin) as usize;
            self.bins.splice(0..0, std::iter::repeat_n([0; 3], gap));
            self.first = bin;
        }
        let i = (bin - self.first) as usize;
        if i >= self.bins.len() {
            self.bins.resize(i + 1, [0; 3]);
        }
        self.bins[i][what] = self.bins[i][what].saturating_add(n);
    }

    /// Whether `bin` fits in [`MAX_BINS`] with the bins kept, by extending them either way.
    fn fits_after_growing(&self, bin: u64) -> bool {
        let last = self.first + self.bins.len().max(1) as u64 - 1;
        let lo = self.first.min(bin);
        let hi = last.max(bin);
        hi - lo < MAX_BINS as u64
    }

    /// Doubles the width: bins `2k` and `2k + 1` become bin `k`.
    fn coarsen(&mut self) {
        let mut merged: Vec<[u32; 3]> = Vec::with_capacity(self.bins.len() / 2 + 1);
        let first = self.first / 2;
        for (i, b) in self.bins.iter().enumerate() {
            let k = ((self.first + i as u64) / 2 - first) as usize;
            if k >= merged.len() {
                merged.resize(k + 1, [0; 3]);
            }
            for (m, v) in merged[k].iter_mut().zip(b) {
                *m = m.saturating_add(*v);
            }
        }
        self.first = first;
        self.bins = merged;
        self.width_ms *= 2;
    }

    /// Adds another's bins (another shard of the same batch), at the coarser width of the two.
    pub fn merge(&mut self, other: &TimeBins) {
        let mut theirs = other.clone();
        while theirs.width_ms < self.width_ms {
            theirs.coarsen();
        }
        while self.width_ms < theirs.width_ms {
            self.coarsen();
        }
        for (i, b) in theirs.bins.iter().enumerate() {
            let at = (theirs.first + i as u64) * theirs.width_ms;
            for (what, n) in b.iter().enumerate() {
                if *n > 0 {
                    self.add(at, what, *n);
                }
            }
        }
    }

    /// Each bin's start (ms since the epoch), width and counts.
    fn each(&self) -> impl Iterator<Item = (u64, [u32; 3])> + '_ {
        self.bins
            .iter()
            .enumerate()
            .map(|(i, b)| ((self.first + i as u64) * self.width_ms, *b))
    }
}

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
    /// Running at the bin's end.
    pub in_flight: u64,
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
    #[schema(value_type = Option<crate::engine::task::Phases>)]
    pub phases: Option<crate::engine::task::Phases>,
    #[schema(value_type = Option<crate::engine::task::TaskError>)]
    pub error: Option<crate::engine::task::TaskError>,
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
/// enough, from the rows themselves (exact at any zoom).
pub fn timeline(
    input: &TimelineInput,
    from_ms: Option<f64>,
    to_ms: Option<f64>,
    bins: usize,
) -> Timeline {
    let origin = input
        .started_at
        .map(|t| t.timestamp_micros() as f64 / 1000.0);
    let (from, to) = window(input.span_ms, from_ms, to_ms);
    // A window from the start (or to the end) of the run takes in what lies before (after)
    // it: a shard on another instance may start a task a moment before the batch's recorded
    // start, or end one after its recorded end, by their clocks.
    let (open_start, open_end) = (from == 0.0, to_ms.is_none());
    let within = move |at: f64| -> Option<f64> {
        if at < from {
            open_start.then_some(from)
        } else if at >= to {
            open_end.then_some(to - (to - from) * 1e-9)
        } else {
            Some(at)
        }
    };
    let bins = bins.clamp(1, MAX_ANSWER_BINS);
    let recorded_width = input.bins.map_or(1.0, |b| b.width_ms as f64);
    let mut in_window = 0u64;
    let start_of = |t: &TaskRecord| -> Option<f64> {
        let s = t.timing.started_at?.timestamp_micros() as f64 / 1000.0;
        Some(s - origin?)
    };
    // The window's tasks by start, each start read once.
    let mut started: Vec<(f64, &TaskRecord)> = input
        .tasks
        .iter()
        .filter_map(|&t| start_of(t).filter(|&s| within(s).is_some()).map(|s| (s, t)))
        .collect();
    started.sort_by(|(a, x), (b, y)| a.total_cmp(b).then(x.index.cmp(&y.index)));
    let rows: Vec<&TaskRecord> = started.into_iter().map(|(_, t)| t).collect();
    // The bins: from every task's row when the batch keeps them all and they are few enough
    // to read, else from the recorded bins.
    let from_rows = input.results == ResultsMode::All
        && matches!(input.cover, Cover::All | Cover::Window)
        && rows.len() <= COUNTED_ROWS;
    // The bins asked for, unless the recorded ones are coarser: then as many of those as the
    // window holds (fewer). Counted, not divided back out: `span / (span / n)` may round to a
    // hair over `n`, and its ceiling would be one bin more than asked.
    let asked = (to - from) / bins as f64;
    let (width, count) = if from_rows || asked >= recorded_width {
        (asked, bins)
    } else {
        let count = ((to - from) / recorded_width).ceil() as usize;
        (recorded_width, count.clamp(1, bins))
    };
    let mut out: Vec<TimeBin> = (0..count)
        .map(|i| TimeBin {
            start_ms: round3(from + i as f64 * width),
            started: 0,
            ended: 0,
            in_flight: 0,
            errors: 0,
        })
        .collect();
    let place = |at: f64| -> Option<usize> {
        within(at).map(|at| (((at - from) / width) as usize).min(count - 1))
    };
    // Running at the window's start: started before it, not ended before it.
    let mut before = 0i64;
    if from_rows {
        let origin = origin.unwrap_or(0.0);
        for t in &input.tasks {
            let Some(s) = t.timing.started_at else {
                continue;
            };
            let s = s.timestamp_micros() as f64 / 1000.0 - origin;
            let e = t
                .timing
                .finished_at
                .map(|e| e.timestamp_micros() as f64 / 1000.0 - origin);
            if s < from && !open_start && e.is_none_or(|e| e >= from) {
                before += 1;
            }
            if let Some(i) = place(s) {
                out[i].started += 1;
            }
            if let Some(i) = e.and_then(place) {
                out[i].ended += 1;
                if matches!(t.status, TaskStatus::Failed | TaskStatus::TimedOut) {
                    out[i].errors += 1;
                }
            }
        }
        in_window = rows.len() as u64;
    } else if let (Some(b), Some(origin)) = (input.bins, origin) {
        let w = b.width_ms as f64;
        for (at, [started, ended, errors]) in b.each() {
            let at = at as f64 - origin;
            // A recorded bin counts where it overlaps the window: the first one may begin
            // before the batch's start (bins are aligned to the epoch, not to the batch).
            if at + w <= from && !open_start {
                before += i64::from(started) - i64::from(ended);
                continue;
            }
            if let Some(i) = place(at.max(from)) {
                out[i].started += u64::from(started);
                out[i].ended += u64::from(ended);
                out[i].errors += u64::from(errors);
                in_window += u64::from(started);
            }
        }
    }
    let mut running = before.max(0);
    for b in &mut out {
        running += b.started as i64 - b.ended as i64;
        b.in_flight = running.max(0) as u64;
    }
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
        from_ms: round3(from),
        to_ms: round3(to),
        bin_ms: round3(width),
        bins: out,
        tasks_in_window: in_window,
        row_limit: ROW_LIMIT,
        results: input.results,
        tasks: shown.then(|| rows.iter().map(|t| bar(t, origin.unwrap_or(0.0))).collect()),
    }
}

fn bar(t: &TaskRecord, origin: f64) -> TaskBar {
    let at = |d: DateTime<Utc>| round3(d.timestamp_micros() as f64 / 1000.0 - origin);
    let http_status = match &t.output {
        Some(crate::engine::task::TaskOutput::Http(h)) => Some(h.status),
        _ => None,
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
        phases: t.timing.phases,
        error: t.error.clone(),
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// `GET /batches/{id}/latency`: one latency figure's distribution.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Latency {
    /// `duration` (each task's `duration_ms`) or `ttfb` (HTTP time to first byte).
    pub metric: String,
    pub count: u64,
    pub min_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub mean_ms: Option<f64>,
    /// Log-spaced and contiguous from `min_ms` to `max_ms`, empty ones included.
    pub buckets: Vec<LatencyBucket>,
    /// The percentile spectrum, denser toward 100 (as HdrHistogram plots it).
    pub percentiles: Vec<PercentilePoint>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LatencyBucket {
    pub from_ms: f64,
    pub to_ms: f64,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PercentilePoint {
    pub percentile: f64,
    pub ms: f64,
}

/// Most buckets a latency answer has.
const MAX_BUCKETS: usize = 200;
/// The spectrum's points per halving of the distance to 100 %.
const TICKS_PER_HALF: u32 = 5;

/// The distribution of `h` (microseconds; `sum_us` for the mean).
pub fn latency(metric: &str, h: Option<(&Histogram<u64>, u64)>) -> Latency {
    let empty = Latency {
        metric: metric.into(),
        count: 0,
        min_ms: None,
        max_ms: None,
        mean_ms: None,
        buckets: Vec::new(),
        percentiles: Vec::new(),
    };
    let Some((h, sum_us)) = h.filter(|(h, _)| !h.is_empty()) else {
        return empty;
    };
    let (min, max) = (h.min().max(1) as f64, h.max().max(1) as f64);
    // Bucket edges at min · r^k, r chosen so that min..max takes at most MAX_BUCKETS (and
    // steps of at least 5 %, finer than the eye needs).
    let span = (max / min).ln();
    let n = ((span / 1.05f64.ln()).ceil() as usize).clamp(1, MAX_BUCKETS);
    let ratio = (span / n as f64).exp();
    let mut counts = vec![0u64; n];
    for v in h.iter_recorded() {
        let x = (h.highest_equivalent(v.value_iterated_to()) as f64).clamp(min, max);
        let k = if ratio > 1.0 {
            ((x / min).ln() / ratio.ln()) as usize
        } else {
            0
        };
        counts[k.min(n - 1)] += v.count_at_value();
    }
    let buckets = counts
        .iter()
        .enumerate()
        .map(|(k, &count)| LatencyBucket {
            from_ms: round3(min * ratio.powi(k as i32) / 1000.0),
            to_ms: round3(min * ratio.powi(k as i32 + 1) / 1000.0),
            count,
        })
        .collect();
    let mut percentiles = Vec::new();
    let mut k = 0u32;
    loop {
        let p = 100.0 * (1.0 - 0.5f64.powf(f64::from(k) / f64::from(TICKS_PER_HALF)));
        if p > 99.999 {
            break;
        }
        let percentile = (p * 10000.0).round() / 10000.0;
        if percentiles
            .last()
            .is_none_or(|l: &PercentilePoint| l.percentile < percentile)
        {
            percentiles.push(PercentilePoint {
                percentile,
                // A bucket's highest equivalent value may lie above the largest recorded.
                ms: h.value_at_quantile(p / 100.0).min(h.max()) as f64 / 1000.0,
            });
        }
        k += 1;
    }
    percentiles.push(PercentilePoint {
        percentile: 100.0,
        ms: h.max() as f64 / 1000.0,
    });
    Latency {
        metric: metric.into(),
        count: h.len(),
        min_ms: Some(h.min() as f64 / 1000.0),
        max_ms: Some(h.max() as f64 / 1000.0),
        mean_ms: Some(((sum_us as f64 / h.len() as f64).round()) / 1000.0),
        buckets,
        percentiles,
    }
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
    fn bins_stay_few_and_keep_every_count_however_long_the_run() {
        let mut b = TimeBins::new();
        let t0 = 1_700_000_000_000u64;
        for i in 0..100_000u64 {
            b.record(t0 + i * 36, t0 + i * 36 + 5, i % 10 == 0);
        }
        assert!(b.bins.len() <= MAX_BINS, "{}", b.bins.len());
        let total: [u64; 3] = b.each().fold([0; 3], |mut acc, (_, c)| {
            for (a, v) in acc.iter_mut().zip(c) {
                *a += u64::from(v);
            }
            acc
        });
        assert_eq!(total, [100_000, 100_000, 10_000]);
        // An hour in at most 1024 bins: 4,096 ms each.
        assert_eq!(b.width_ms, 4096);
    }

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

    #[test]
    fn merged_bins_equal_one_batchs_bins() {
        let t0 = 1_700_000_000_000u64;
        let (mut one, mut a, mut c) = (TimeBins::new(), TimeBins::new(), TimeBins::new());
        for i in 0..5000u64 {
            let (s, e) = (t0 + i * 3, t0 + i * 3 + 40);
            one.record(s, e, false);
            if i % 2 == 0 {
                a.record(s, e, false)
            } else {
                c.record(s, e, false)
            }
        }
        a.merge(&c);
        assert_eq!(a.width_ms, one.width_ms);
        assert_eq!(a.each().collect::<Vec<_>>(), one.each().collect::<Vec<_>>());
    }

    #[test]
    fn latency_buckets_cover_min_to_max_and_count_everything() {
        let mut h = Histogram::<u64>::new(3).unwrap();
        for v in [900u64, 1000, 1100, 5000, 50_000, 120_000] {
            h.record(v).unwrap();
        }
        let l = latency("duration", Some((&h, 178_000)));
        assert_eq!(l.count, 6);
        assert_eq!(l.buckets.iter().map(|b| b.count).sum::<u64>(), 6);
        assert!(l.buckets.len() <= MAX_BUCKETS);
        assert!(l.buckets.first().unwrap().from_ms <= 0.9);
        assert!(l.buckets.last().unwrap().to_ms >= 120.0);
        assert_eq!(l.percentiles.last().unwrap().percentile, 100.0);
        assert!(
            l.percentiles
                .windows(2)
                .all(|w| w[0].percentile < w[1].percentile && w[0].ms <= w[1].ms)
        );
    }
}
