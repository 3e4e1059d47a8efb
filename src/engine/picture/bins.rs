//! When a batch's tasks started and ended, kept as time bins with the summary's totals.

use serde::{Deserialize, Serialize};

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

    /// Tasks started per second from `from_ms` to `to_ms` (ms since the epoch), each bin
    /// counted in proportion to its overlap with that span; `None` for an empty span.
    pub fn started_per_s(&self, from_ms: u64, to_ms: u64) -> Option<f64> {
        if to_ms <= from_ms {
            return None;
        }
        let width = self.width_ms.max(1);
        let started: f64 = self
            .each()
            .map(|(start, b)| {
                let overlap = (start + width)
                    .min(to_ms)
                    .saturating_sub(start.max(from_ms));
                f64::from(b[0]) * overlap as f64 / width as f64
            })
            .sum();
        Some(started * 1000.0 / (to_ms - from_ms) as f64)
    }

    /// The bins' width, in ms.
    pub(super) fn width_ms(&self) -> u64 {
        self.width_ms
    }

    /// Each bin's start (ms since the epoch) and counts.
    pub(super) fn each(&self) -> impl Iterator<Item = (u64, [u32; 3])> + '_ {
        self.bins
            .iter()
            .enumerate()
            .map(|(i, b)| ((self.first + i as u64) * self.width_ms, *b))
    }
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
}
