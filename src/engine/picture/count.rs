//! A timeline's bins counted: the grid of bins over its window, started and ended counted
//! from task rows or from the batch's recorded bins, and the time-weighted tasks in flight in
//! each bin.

use super::{MAX_ANSWER_BINS, RecordedBin, TimeBin, TimeBins, Window, epoch_ms, round3};
use crate::engine::task::{TaskRecord, TaskStatus};

/// The answer's bins over a window: their width and number.
pub(super) struct Grid<'w> {
    window: &'w Window,
    pub(super) width: f64,
    count: usize,
}

impl<'w> Grid<'w> {
    /// The bins asked for, unless the recorded ones are coarser (and the bins are not counted
    /// from rows): then as many of those as the window holds (fewer). Counted, not divided
    /// back out: `span / (span / n)` may round to a hair over `n`, and its ceiling would be
    /// one bin more than asked.
    pub(super) fn new(
        window: &'w Window,
        bins: usize,
        from_rows: bool,
        recorded: Option<&TimeBins>,
    ) -> Self {
        let bins = bins.clamp(1, MAX_ANSWER_BINS);
        let recorded_width = recorded.map_or(1.0, |b| b.width_ms() as f64);
        let length = window.to - window.from;
        let asked = length / bins as f64;
        let (width, count) = if from_rows || asked >= recorded_width {
            (asked, bins)
        } else {
            let count = (length / recorded_width).ceil() as usize;
            (recorded_width, count.clamp(1, bins))
        };
        Grid {
            window,
            width,
            count,
        }
    }

    pub(super) fn empty_bins(&self) -> Vec<TimeBin> {
        (0..self.count)
            .map(|i| TimeBin {
                start_ms: round3(self.window.from + i as f64 * self.width),
                started: 0,
                ended: 0,
                in_flight: 0.0,
                errors: 0,
            })
            .collect()
    }

    /// The bin `at` (ms from the batch's start) falls in, if it falls in the window.
    pub(super) fn place(&self, at: f64) -> Option<usize> {
        let from = self.window.from;
        self.window
            .within(at)
            .map(|at| (((at - from) / self.width) as usize).min(self.count - 1))
    }
}

/// Counts every task's start, end and error into `out` from the rows; returns the tasks
/// running at the window's start.
pub(super) fn count_rows(
    tasks: &[&TaskRecord],
    grid: &Grid,
    origin: f64,
    out: &mut [TimeBin],
) -> i64 {
    let window = grid.window;
    let mut before = 0;
    for t in tasks {
        let Some(s) = t.timing.started_at else {
            continue;
        };
        let s = epoch_ms(s) - origin;
        let e = t.timing.finished_at.map(|e| epoch_ms(e) - origin);
        if s < window.from && !window.open_start && e.is_none_or(|e| e >= window.from) {
            before += 1;
        }
        if let Some(i) = grid.place(s) {
            out[i].started += 1;
        }
        if let Some(i) = e.and_then(|e| grid.place(e)) {
            out[i].ended += 1;
            if matches!(t.status, TaskStatus::Failed | TaskStatus::TimedOut) {
                out[i].errors += 1;
            }
        }
    }
    before
}

/// The time tasks ran in an answer bin (ms of tasks), over how much of it that time was
/// known for (ms of the bin).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Busy {
    task_ms: f64,
    known_ms: f64,
}

/// Adds the time every task ran in each bin of the window, from the rows: a task runs from its
/// start to its end (to the window's end while it runs), cut to the window.
pub(super) fn busy_from_rows(tasks: &[&TaskRecord], grid: &Grid, origin: f64, busy: &mut [Busy]) {
    let (from, to, width) = (grid.window.from, grid.window.to, grid.width);
    // Whole bins a task spans, as a difference array: O(tasks + bins), not their product.
    let mut whole = vec![0i64; busy.len() + 1];
    let last_bin = busy.len() - 1;
    let bin_of = |at: f64| (((at - from) / width) as usize).min(last_bin);
    for t in tasks {
        let Some(s) = t.timing.started_at else {
            continue;
        };
        let s = (epoch_ms(s) - origin).max(from);
        let e = t
            .timing
            .finished_at
            .map_or(to, |e| epoch_ms(e) - origin)
            .min(to);
        if e <= s {
            continue;
        }
        let (first, last) = (bin_of(s), bin_of(e));
        if first == last {
            busy[first].task_ms += e - s;
            continue;
        }
        busy[first].task_ms += from + (first + 1) as f64 * width - s;
        busy[last].task_ms += e - (from + last as f64 * width);
        whole[first + 1] += 1;
        whole[last] -= 1;
    }
    let mut spanning = 0;
    for (b, d) in busy.iter_mut().zip(&whole) {
        spanning += d;
        b.task_ms += spanning as f64 * width;
        b.known_ms = width;
    }
}

/// Counts the recorded bins into `out`, and the time tasks ran in them into `busy`; returns
/// the tasks running at the window's start and those that started in it.
pub(super) fn count_recorded(
    b: &TimeBins,
    grid: &Grid,
    origin: f64,
    out: &mut [TimeBin],
    busy: &mut [Busy],
) -> (i64, u64) {
    let window = grid.window;
    let w = b.width_ms() as f64;
    let (mut before, mut in_window) = (0i64, 0u64);
    // Running at the start of each recorded bin: every bin since the first counts.
    let mut running = 0i64;
    for r in b.each() {
        let ran_ms = r.into_us.map(|into| ran_in(running, &r, into, w));
        running += i64::from(r.started) - i64::from(r.ended);
        let at = r.start_ms as f64 - origin;
        // A recorded bin counts where it overlaps the window: the first one may begin
        // before the batch's start (bins are aligned to the epoch, not to the batch).
        if at + w <= window.from && !window.open_start {
            before += i64::from(r.started) - i64::from(r.ended);
            continue;
        }
        if let Some(i) = grid.place(at.max(window.from)) {
            out[i].started += u64::from(r.started);
            out[i].ended += u64::from(r.ended);
            out[i].errors += u64::from(r.errors);
            in_window += u64::from(r.started);
            if let Some(ran) = ran_ms {
                busy[i].task_ms += ran;
                busy[i].known_ms += w;
            }
        }
    }
    (before, in_window)
}

/// The time tasks ran in recorded bin `r` (ms of tasks, `w` ms wide), from those `running` at
/// its start and how far into it its starts and ends came (`into`, µs summed): each start
/// adds the rest of the bin, each end takes away what was left of it.
pub(super) fn ran_in(running: i64, r: &RecordedBin, into: [u64; 2], w: f64) -> f64 {
    let rest = |n: u32, into_us: u64| f64::from(n) * w - into_us as f64 / 1000.0;
    (running.max(0) as f64 * w + rest(r.started, into[0]) - rest(r.ended, into[1])).max(0.0)
}

/// Each bin's mean number of tasks running: the time they ran in it over its known time; a
/// bin with none known takes the number running at its end, from those running at the
/// window's start.
pub(super) fn fill_in_flight(out: &mut [TimeBin], before: i64, busy: &[Busy]) {
    let mut running = before.max(0);
    for (b, t) in out.iter_mut().zip(busy) {
        running += b.started as i64 - b.ended as i64;
        b.in_flight = if t.known_ms > 0.0 {
            round3(t.task_ms / t.known_ms)
        } else {
            running.max(0) as f64
        };
    }
}
