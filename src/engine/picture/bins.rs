//! When a batch's tasks started and ended, kept as time bins with the summary's totals.

use serde::{Deserialize, Serialize};

/// Most bins a batch keeps: past them, bins double in width (neighbours merged).
const MAX_BINS: usize = 1024;

/// Tasks started, ended and failed, in bins of `width_ms` counted from the Unix epoch, so that
/// the bins of shards on different instances line up and add. The width starts at 1 ms and
/// doubles whenever the run outgrows [`MAX_BINS`], so a run of any length keeps at most that
/// many: a 6 s run has 8 ms bins, an hour 4 s ones.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimeBins {
    width_ms: u64,
    /// The first bin's number (its start is `first * width_ms`).
    first: u64,
    /// Per bin: started, ended, errors (failed or timed out when they ended).
    bins: Vec<[u32; 3]>,
    /// Per bin, beside `bins`: the sum over its starts, and over its ends, of how far into the
    /// bin each came (µs). With the counts they give the time tasks ran in each bin, hence the
    /// mean number in flight, which the instants at bin ends cannot: tasks shorter than a bin
    /// come and go between them. `None` in bins stored before these sums were kept (and in
    /// any merged with such), which give only the instants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    into: Option<Vec<[u64; 2]>>,
}

impl Default for TimeBins {
    fn default() -> TimeBins {
        TimeBins::new()
    }
}

/// One recorded bin, as a timeline reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecordedBin {
    /// Its start, ms since the Unix epoch.
    pub start_ms: u64,
    pub started: u32,
    pub ended: u32,
    pub errors: u32,
    /// How far into the bin its starts and its ends came, summed (µs), when recorded.
    pub into_us: Option<[u64; 2]>,
}

impl TimeBins {
    pub fn new() -> TimeBins {
        TimeBins {
            width_ms: 1,
            first: 0,
            bins: Vec::new(),
            into: Some(Vec::new()),
        }
    }

    /// A task that ran from `start` to `end` (µs since the Unix epoch).
    pub fn record(&mut self, start_us: u64, end_us: u64, error: bool) {
        self.add(start_us, STARTED, 1, 0);
        self.add(end_us, ENDED, 1, 0);
        if error {
            self.add(end_us, ERRORS, 1, 0);
        }
    }

    /// Counts `n` of `what` that came `past_us` (summed) after `at_us` into the bin of
    /// `at_us`, growing or coarsening the bins to hold it.
    fn add(&mut self, at_us: u64, what: usize, n: u32, past_us: u64) {
        let bin_of = |width_ms: u64| at_us / (width_ms.max(1) * 1000);
        let mut bin = bin_of(self.width_ms);
        if self.bins.is_empty() {
            self.first = bin;
        }
        while bin < self.first || bin >= self.first + MAX_BINS as u64 {
            if self.fits_after_growing(bin) {
                break;
            }
            self.coarsen();
            bin = bin_of(self.width_ms);
        }
        if bin < self.first {
            // Room below: shift the bins up to start at `bin`.
            let gap = (self.first - bin) as usize;
            self.bins.splice(0..0, std::iter::repeat_n([0; 3], gap));
            if let Some(into) = &mut self.into {
                into.splice(0..0, std::iter::repeat_n([0; 2], gap));
            }
            self.first = bin;
        }
        let i = (bin - self.first) as usize;
        if i >= self.bins.len() {
            self.bins.resize(i + 1, [0; 3]);
        }
        self.bins[i][what] = self.bins[i][what].saturating_add(n);
        if let Some(into) = &mut self.into
            && what != ERRORS
        {
            into.resize(self.bins.len(), [0; 2]);
            let bin_start_us = bin * self.width_ms * 1000;
            into[i][what] += past_us + u64::from(n) * (at_us - bin_start_us);
        }
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
        let mut into: Vec<[u64; 2]> = Vec::with_capacity(self.bins.len() / 2 + 1);
        let first = self.first / 2;
        let old_width_us = self.width_ms * 1000;
        for (i, b) in self.bins.iter().enumerate() {
            let old = self.first + i as u64;
            let k = (old / 2 - first) as usize;
            if k >= merged.len() {
                merged.resize(k + 1, [0; 3]);
                into.resize(k + 1, [0; 2]);
            }
            for (m, v) in merged[k].iter_mut().zip(b) {
                *m = m.saturating_add(*v);
            }
            if let Some(sums) = self.into.as_ref().and_then(|v| v.get(i)) {
                // The odd bin's times now count from the even one's start.
                let shift = if old % 2 == 1 { old_width_us } else { 0 };
                for what in [STARTED, ENDED] {
                    into[k][what] += sums[what] + u64::from(b[what]) * shift;
                }
            }
        }
        self.first = first;
        self.bins = merged;
        if self.into.is_some() {
            self.into = Some(into);
        }
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
        if theirs.into.is_none() {
            self.into = None;
        }
        for b in theirs.each() {
            let at_us = b.start_ms * 1000;
            let into = b.into_us.unwrap_or([0; 2]);
            for (what, n, past) in [
                (STARTED, b.started, into[STARTED]),
                (ENDED, b.ended, into[ENDED]),
                (ERRORS, b.errors, 0),
            ] {
                if n > 0 {
                    self.add(at_us, what, n, past);
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
            .map(|b| {
                let overlap = (b.start_ms + width)
                    .min(to_ms)
                    .saturating_sub(b.start_ms.max(from_ms));
                f64::from(b.started) * overlap as f64 / width as f64
            })
            .sum();
        Some(started * 1000.0 / (to_ms - from_ms) as f64)
    }

    /// The bins' width, in ms.
    pub(super) fn width_ms(&self) -> u64 {
        self.width_ms
    }

    /// Each bin, from the first.
    pub(super) fn each(&self) -> impl Iterator<Item = RecordedBin> + '_ {
        self.bins.iter().enumerate().map(|(i, b)| RecordedBin {
            start_ms: (self.first + i as u64) * self.width_ms,
            started: b[STARTED],
            ended: b[ENDED],
            errors: b[ERRORS],
            into_us: self
                .into
                .as_ref()
                .map(|v| v.get(i).copied().unwrap_or([0; 2])),
        })
    }
}

/// Where each count sits in a bin's `[u32; 3]` (and the first two in its sums).
const STARTED: usize = 0;
const ENDED: usize = 1;
const ERRORS: usize = 2;

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(b: &TimeBins) -> [u64; 3] {
        b.each().fold([0; 3], |acc, r| {
            [
                acc[0] + u64::from(r.started),
                acc[1] + u64::from(r.ended),
                acc[2] + u64::from(r.errors),
            ]
        })
    }

    #[test]
    fn bins_stay_few_and_keep_every_count_however_long_the_run() {
        let mut b = TimeBins::new();
        let t0 = 1_700_000_000_000_000u64;
        for i in 0..100_000u64 {
            b.record(t0 + i * 36_000, t0 + i * 36_000 + 5_000, i % 10 == 0);
        }
        assert!(b.bins.len() <= MAX_BINS, "{}", b.bins.len());
        assert_eq!(totals(&b), [100_000, 100_000, 10_000]);
        // An hour in at most 1024 bins: 4,096 ms each.
        assert_eq!(b.width_ms, 4096);
    }

    #[test]
    fn merged_bins_equal_one_batchs_bins() {
        let t0 = 1_700_000_000_000_000u64;
        let (mut one, mut a, mut c) = (TimeBins::new(), TimeBins::new(), TimeBins::new());
        for i in 0..5000u64 {
            let (s, e) = (t0 + i * 3_070, t0 + i * 3_070 + 40_333);
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
        assert!(a.each().any(|r| r.into_us.is_some_and(|i| i[0] > 0)));
    }

    #[test]
    fn bins_stored_before_the_means_read_back_and_merge_without_them() {
        let old: TimeBins =
            serde_json::from_str(r#"{"width_ms":1,"first":5,"bins":[[2,1,0],[0,1,1]]}"#).unwrap();
        assert_eq!(totals(&old), [2, 2, 1]);
        assert!(old.each().all(|r| r.into_us.is_none()));
        let mut new = TimeBins::new();
        new.record(5_200, 6_100, false);
        new.merge(&old);
        assert_eq!(totals(&new), [3, 3, 1]);
        assert!(
            new.each().all(|r| r.into_us.is_none()),
            "no half-known sums"
        );
        let json = serde_json::to_string(&new).unwrap();
        assert!(!json.contains("into"), "{json}");
    }
}
