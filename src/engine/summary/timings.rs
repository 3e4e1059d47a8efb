//! An HDR histogram of durations, made at its first value, and how a checkpoint stores it.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::Percentiles;

/// An HDR histogram of durations in microseconds, with their exact sum for the mean.
#[derive(Debug, Clone)]
pub(super) struct Timings {
    /// Made at the first value: an empty HDR histogram of 3 significant digits is 16 KB of
    /// counts, and a batch in flight has recorded nothing yet (a one-job batch would hold three
    /// of them while its job runs).
    histogram: Option<Box<Histogram<u64>>>,
    /// Saturating: a u64 of microseconds is over 500,000 years of task time.
    sum_us: u64,
}

/// A [`Timings`] as a checkpoint stores it: the histogram in HDR's V2 format (base64), which
/// any HDR library reads.
#[derive(Serialize, Deserialize)]
struct StoredTimings {
    hdr: String,
    sum_us: u64,
}

impl Serialize for Timings {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        let mut bytes = Vec::new();
        use hdrhistogram::serialization::Serializer as _;
        let empty;
        let histogram = match &self.histogram {
            Some(h) => h.as_ref(),
            None => {
                empty = Timings::empty();
                &empty
            }
        };
        hdrhistogram::serialization::V2Serializer::new()
            .serialize(histogram, &mut bytes)
            .map_err(|e| serde::ser::Error::custom(format!("{e:?}")))?;
        StoredTimings {
            hdr: base64::engine::general_purpose::STANDARD.encode(bytes),
            sum_us: self.sum_us,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Timings {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use base64::Engine as _;
        let stored = StoredTimings::deserialize(d)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(stored.hdr)
            .map_err(serde::de::Error::custom)?;
        let mut histogram: Histogram<u64> = hdrhistogram::serialization::Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| serde::de::Error::custom(format!("{e:?}")))?;
        // Serialized histograms come back without auto-resizing; the live ones grow to fit.
        histogram.auto(true);
        Ok(Timings {
            histogram: (!histogram.is_empty()).then(|| Box::new(histogram)),
            sum_us: stored.sum_us,
        })
    }
}

impl Timings {
    pub(super) fn new() -> Timings {
        Timings {
            histogram: None,
            sum_us: 0,
        }
    }

    /// Auto-resizing, so a batch of short tasks keeps a small histogram; 3 significant
    /// digits, as oha and wrk report.
    pub(super) fn empty() -> Histogram<u64> {
        Histogram::new(3).expect("3 significant digits is valid")
    }

    /// Values recorded.
    /// The histogram and its values' sum, once a value was recorded.
    pub(super) fn histogram(&self) -> Option<(&Histogram<u64>, u64)> {
        self.histogram.as_deref().map(|h| (h, self.sum_us))
    }

    pub(super) fn len(&self) -> u64 {
        self.histogram.as_ref().map_or(0, |h| h.len())
    }

    pub(super) fn record(&mut self, d: Duration) {
        let us = (d.as_micros() as u64).max(1);
        let h = self
            .histogram
            .get_or_insert_with(|| Box::new(Timings::empty()));
        // Auto-resizing grows the histogram to fit; past its hard limit, count at the top.
        if h.record(us).is_err() {
            h.saturating_record(us);
        }
        self.sum_us = self.sum_us.saturating_add(us);
    }

    /// Adds another's values (the same configuration: 3 significant digits, auto-resizing).
    pub(super) fn merge(&mut self, other: &Timings) {
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
        let Some(theirs) = &other.histogram else {
            return;
        };
        let Some(mine) = &mut self.histogram else {
            self.histogram = Some(theirs.clone());
            return;
        };
        if mine.add(theirs.as_ref()).is_err() {
            // Cannot happen between histograms this module made; count what fits.
            for v in theirs.iter_recorded() {
                mine.saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
    }

    pub(super) fn percentiles(&self) -> Option<Percentiles> {
        let h = self.histogram.as_deref().filter(|h| !h.is_empty())?;
        let q = |quantile: f64| h.value_at_quantile(quantile) as f64 / 1000.0;
        Some(Percentiles {
            min: h.min() as f64 / 1000.0,
            mean: (self.sum_us as f64 / h.len() as f64).round() / 1000.0,
            p50: q(0.50),
            p90: q(0.90),
            p95: q(0.95),
            p99: q(0.99),
            p999: q(0.999),
            max: h.max() as f64 / 1000.0,
        })
    }
}
