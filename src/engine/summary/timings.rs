//! Durations as an HDR histogram (the first few kept as they are), and how a checkpoint
//! stores them.

use std::borrow::Cow;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::Percentiles;

/// Durations in microseconds, with their exact sum for the mean: the first few as recorded,
/// then an HDR histogram of them.
#[derive(Debug, Clone)]
pub(super) struct Timings {
    /// Made at the first value: a batch in flight has recorded nothing yet (a one-job batch
    /// would otherwise hold three empty histograms while its job runs).
    values: Option<Box<Values>>,
    /// Saturating: a u64 of microseconds is over 500,000 years of task time.
    sum_us: u64,
}

/// Values recorded: up to [`FEW`] of them as they are, past that an HDR histogram. A
/// histogram of 3 significant digits holds 16 KB of counts from its first value and some
/// 40 KB for values up to 10 ms, and 1,000 clients keep a thousand small batches with three
/// each in flight. The figures are the same either way: they come from a histogram of the
/// same values, made when asked for.
#[derive(Debug, Clone)]
enum Values {
    Few(Vec<u64>),
    Hdr(Histogram<u64>),
}

/// Values kept as they are before a histogram is made.
const FEW: usize = 64;

/// Records `us` in `h`; past its hard limit, at the top.
fn record_in(h: &mut Histogram<u64>, us: u64) {
    // Auto-resizing grows the histogram to fit.
    if h.record(us).is_err() {
        h.saturating_record(us);
    }
}

impl Values {
    /// The histogram of these values: borrowed once made, else made now.
    fn histogram(&self) -> Cow<'_, Histogram<u64>> {
        match self {
            Values::Hdr(h) => Cow::Borrowed(h),
            Values::Few(few) => {
                let mut h = Timings::empty();
                for &us in few {
                    record_in(&mut h, us);
                }
                Cow::Owned(h)
            }
        }
    }

    fn len(&self) -> u64 {
        match self {
            Values::Hdr(h) => h.len(),
            Values::Few(few) => few.len() as u64,
        }
    }
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
        let histogram = match &self.values {
            Some(values) => values.histogram(),
            None => Cow::Owned(Timings::empty()),
        };
        hdrhistogram::serialization::V2Serializer::new()
            .serialize(histogram.as_ref(), &mut bytes)
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
            values: (!histogram.is_empty()).then(|| Box::new(Values::Hdr(histogram))),
            sum_us: stored.sum_us,
        })
    }
}

impl Timings {
    pub(super) fn new() -> Timings {
        Timings {
            values: None,
            sum_us: 0,
        }
    }

    /// Auto-resizing, so a batch of short tasks keeps a small histogram; 3 significant
    /// digits, as oha and wrk report.
    pub(super) fn empty() -> Histogram<u64> {
        Histogram::new(3).expect("3 significant digits is valid")
    }

    /// The histogram and its values' sum, once a value was recorded.
    pub(super) fn histogram(&self) -> Option<(Cow<'_, Histogram<u64>>, u64)> {
        self.values.as_deref().map(|v| (v.histogram(), self.sum_us))
    }

    /// Values recorded.
    pub(super) fn len(&self) -> u64 {
        self.values.as_ref().map_or(0, |v| v.len())
    }

    pub(super) fn record(&mut self, d: Duration) {
        let us = (d.as_micros() as u64).max(1);
        self.sum_us = self.sum_us.saturating_add(us);
        let values = self
            .values
            .get_or_insert_with(|| Box::new(Values::Few(Vec::new())));
        match values.as_mut() {
            Values::Hdr(h) => record_in(h, us),
            Values::Few(few) if few.len() < FEW => few.push(us),
            Values::Few(_) => {
                let mut h = values.histogram().into_owned();
                record_in(&mut h, us);
                **values = Values::Hdr(h);
            }
        }
    }

    /// Makes the histogram of the values kept as they are, so that the figures and the stored
    /// form that follow read one histogram rather than each making its own.
    pub(super) fn settle(&mut self) {
        if let Some(values) = &mut self.values
            && let Values::Few(_) = values.as_ref()
        {
            **values = Values::Hdr(values.histogram().into_owned());
        }
    }

    /// Adds another's values (the same configuration: 3 significant digits, auto-resizing).
    pub(super) fn merge(&mut self, other: &Timings) {
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
        let Some(theirs) = &other.values else {
            return;
        };
        let Some(mine) = &mut self.values else {
            self.values = Some(theirs.clone());
            return;
        };
        if let (Values::Few(a), Values::Few(b)) = (mine.as_mut(), theirs.as_ref())
            && a.len() + b.len() <= FEW
        {
            a.extend_from_slice(b);
            return;
        }
        let mut h = match std::mem::replace(mine.as_mut(), Values::Few(Vec::new())) {
            Values::Hdr(h) => h,
            few => few.histogram().into_owned(),
        };
        match theirs.as_ref() {
            Values::Few(b) => b.iter().for_each(|&us| record_in(&mut h, us)),
            Values::Hdr(t) => {
                if h.add(t).is_err() {
                    // Cannot happen between histograms this module made; count what fits.
                    for v in t.iter_recorded() {
                        h.saturating_record_n(v.value_iterated_to(), v.count_at_value());
                    }
                }
            }
        }
        **mine = Values::Hdr(h);
    }

    pub(super) fn percentiles(&self) -> Option<Percentiles> {
        let h = self.values.as_deref().map(Values::histogram)?;
        if h.is_empty() {
            return None;
        }
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
