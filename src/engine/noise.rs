//! How far a figure moves between two runs of one request by sampling alone, and the fewest
//! tasks a baseline check should stand on.
//!
//! The measure is each batch's own sampling noise, read from its HDR histogram: the q
//! quantile of n tasks is known to ±1.96·√(n·q·(1−q)) ranks (the order statistics' 95 %
//! band, whatever the distribution), and those ranks read back from the histogram give the
//! band in ms. Two runs' bands add in quadrature. It is a floor: drift between the runs (a
//! warmer cache, a busier machine) comes on top and no single run can show it.

use hdrhistogram::Histogram;

use super::spec::Figure;

/// Fewest tasks that ended, in a run and in its baseline, for a baseline check to stand on.
/// 10,000 tasks put 100 beyond the p99 and 500 beyond the p95, the usual floor for reading a
/// tail percentile; below it the p95's own band is wide enough on a long-tailed target to
/// swallow the 10 % a baseline allows by default (3,000 tasks: ±23 ranks, quantiles 0.942 to
/// 0.958). A count, not a duration: the sampling noise shrinks with tasks, not seconds.
pub const MIN_BASELINE_TASKS: u64 = 10_000;

/// Standard normal quantile of a two-sided 95 % band.
const Z95: f64 = 1.96;

/// What one batch measured that a figure's spread is read from.
pub struct Sample<'a> {
    /// Its durations in µs (tasks that reached their target).
    pub durations: Option<&'a Histogram<u64>>,
    /// Tasks that failed or timed out, of those that ended.
    pub bad: u64,
    pub ended: u64,
}

/// Half the width of the 95 % band of figure `f` in one batch, in the figure's unit; `None`
/// for a figure without a sampling band: `max_ms` (an extreme has no distribution-free
/// band) and `throughput_per_s` (set by the run's length and the target, not by sampling).
pub fn spread(f: Figure, s: &Sample) -> Option<f64> {
    let h = s.durations.filter(|h| !h.is_empty());
    match f {
        Figure::P50Ms => h.map(|h| quantile_spread_ms(h, 0.50)),
        Figure::P90Ms => h.map(|h| quantile_spread_ms(h, 0.90)),
        Figure::P95Ms => h.map(|h| quantile_spread_ms(h, 0.95)),
        Figure::P99Ms => h.map(|h| quantile_spread_ms(h, 0.99)),
        Figure::P999Ms => h.map(|h| quantile_spread_ms(h, 0.999)),
        Figure::MeanMs => h.map(|h| Z95 * h.stdev() / (h.len() as f64).sqrt() / 1000.0),
        Figure::ErrorRate => (s.ended > 0).then(|| {
            let (n, e) = (s.ended as f64, s.bad as f64 / s.ended as f64);
            Z95 * (e * (1.0 - e) / n).sqrt()
        }),
        Figure::MaxMs | Figure::ThroughputPerS => None,
    }
}

/// Half the width of the 95 % band of the `q` quantile: the values at ranks
/// n·q ± 1.96·√(n·q·(1−q)), in ms.
pub fn quantile_spread_ms(h: &Histogram<u64>, q: f64) -> f64 {
    let n = h.len() as f64;
    let band = Z95 * (q * (1.0 - q) / n).sqrt();
    let low = h.value_at_quantile((q - band).max(0.0));
    let high = h.value_at_quantile((q + band).min(1.0));
    high.saturating_sub(low) as f64 / 2.0 / 1000.0
}

/// The noise of a change from `a` (the first batch's figure) given both batches' spreads: the
/// spreads added in quadrature, in percent of `a`, to a tenth. `None` when `a` is 0.
pub fn noise_pct(a: f64, spread_a: f64, spread_b: f64) -> Option<f64> {
    (a != 0.0).then(|| {
        let pct = spread_a.hypot(spread_b) / a.abs() * 100.0;
        (pct * 10.0).round() / 10.0
    })
}

/// Why a baseline check on `run` tasks against a baseline of `baseline` tasks (`None`: not
/// known, a baseline read before batches kept it) is weak, or `None` when both are enough.
pub fn weak_baseline(run: u64, baseline: Option<u64>) -> Option<String> {
    let fewest = baseline.map_or(run, |b| b.min(run));
    (fewest < MIN_BASELINE_TASKS).then(|| {
        let base = baseline.map_or(String::new(), |b| format!(", its baseline {b}"));
        format!(
            "the run had {run} tasks{base}: under {MIN_BASELINE_TASKS}, a percentile moves by \
             sampling alone about as much as a baseline allows, so the check may pass or fail \
             on noise (`fanout compare` shows each figure's noise_pct)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uniform(n: u64) -> Histogram<u64> {
        let mut h = Histogram::new(3).unwrap();
        for i in 1..=n {
            // 1 ms to n ms: 1,000 µs apart.
            h.record(i * 1000).unwrap();
        }
        h
    }

    #[test]
    fn a_percentiles_band_is_its_rank_uncertainty_read_back_in_ms() {
        // 10,000 values 1 ms apart: p95's band is ±1.96·√(10,000·0.95·0.05) ≈ ±42.7 ranks,
        // so about ±42.7 ms; HDR's 3 significant digits put each end within 0.1 % of 9.5 s.
        let h = uniform(10_000);
        let spread = quantile_spread_ms(&h, 0.95);
        assert!((spread - 42.7).abs() < 42.7 * 0.05, "{spread}");
    }

    #[test]
    fn the_band_narrows_as_the_square_root_of_the_tasks() {
        let small = quantile_spread_ms(&uniform(2_500), 0.95) / 2_500.0;
        let large = quantile_spread_ms(&uniform(10_000), 0.95) / 10_000.0;
        // Relative to the range: four times the tasks, half the band.
        assert!((small / large - 2.0).abs() < 0.2, "{small} {large}");
    }

    #[test]
    fn noise_adds_both_runs_spreads_in_percent_of_the_first() {
        assert_eq!(noise_pct(100.0, 3.0, 4.0), Some(5.0));
        assert_eq!(noise_pct(0.0, 3.0, 4.0), None);
    }

    #[test]
    fn max_and_throughput_have_no_band_and_the_error_rate_a_binomial_one() {
        let h = uniform(100);
        let s = Sample {
            durations: Some(&h),
            bad: 10,
            ended: 100,
        };
        assert_eq!(spread(Figure::MaxMs, &s), None);
        assert_eq!(spread(Figure::ThroughputPerS, &s), None);
        let e = spread(Figure::ErrorRate, &s).unwrap();
        assert!((e - 1.96 * 0.03).abs() < 1e-9, "{e}");
    }

    #[test]
    fn a_baseline_is_weak_when_the_run_or_its_baseline_is_under_the_minimum() {
        let enough = MIN_BASELINE_TASKS;
        assert!(weak_baseline(enough, Some(enough)).is_none());
        assert!(weak_baseline(enough, None).is_none());
        assert!(weak_baseline(enough - 1, Some(enough)).is_some());
        let why = weak_baseline(enough, Some(3_000)).unwrap();
        assert!(why.contains("3000") && why.contains("10000"), "{why}");
    }
}
