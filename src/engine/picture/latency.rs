//! A latency figure's distribution: an HDR histogram as log-spaced buckets and a percentile
//! spectrum.

use hdrhistogram::Histogram;
use serde::Serialize;
use utoipa::ToSchema;

use super::round3;

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

#[cfg(test)]
mod tests {
    use super::*;

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
