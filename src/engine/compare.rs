//! Two batches' summaries side by side: each figure's change from the first to the second,
//! and, for two runs of one request, how much of it sampling alone explains.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::noise::{Sample, noise_pct, quantile_spread_ms, spread};
use super::spec::Figure;
use super::summary::{JobSummary, LatencyMetric, Summary, SummaryAcc};
use super::verdict::figure;

/// `GET /batches/{a}/compare/{b}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Comparison {
    pub a: Summary,
    pub b: Summary,
    /// By figure: `p50_ms` ... `max_ms`, `mean_ms`, `throughput_per_s`, `error_rate`, and
    /// `by_job.KEY.p95_ms` for every job both batches have.
    pub changes: BTreeMap<String, Change>,
    /// Whether both ran one request (the same stored request, or one a rerun of the other):
    /// only then is a change held against its `noise_pct`.
    #[serde(default)]
    pub same_request: bool,
}

/// One figure in both batches.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Change {
    pub a: Option<f64>,
    pub b: Option<f64>,
    /// (b − a) / a × 100, to a tenth; null when either is missing or `a` is 0.
    pub change_pct: Option<f64>,
    /// Two runs of one request only (`same_request`): the change that sampling alone makes
    /// likely, ± in percent of `a` (95 %). Each batch's band is read from its own histogram
    /// (a percentile: its rank uncertainty ±1.96·√(n·p·(1−p)) in ms; the mean: 1.96·sd/√n;
    /// the error rate: 1.96·√(e·(1−e)/n)) and both add in quadrature. A floor: drift between
    /// the runs adds to it. Null for `max_ms` and `throughput_per_s`, which have no sampling
    /// band, and when `a` is 0.
    #[serde(default)]
    pub noise_pct: Option<f64>,
}

impl Change {
    fn new(a: Option<f64>, b: Option<f64>) -> Change {
        let change_pct = match (a, b) {
            (Some(a), Some(b)) if a != 0.0 => Some(((b - a) / a * 1000.0).round() / 10.0),
            _ => None,
        };
        Change {
            a,
            b,
            change_pct,
            noise_pct: None,
        }
    }
}

fn job_p95(j: &JobSummary) -> Option<f64> {
    j.duration_ms.as_ref().map(|d| d.p95)
}

pub fn compare(a: Summary, b: Summary) -> Comparison {
    let mut changes = BTreeMap::new();
    for f in Figure::ALL {
        changes.insert(
            f.key().to_owned(),
            Change::new(figure(&a, f), figure(&b, f)),
        );
    }
    if let (Some(ja), Some(jb)) = (&a.by_job, &b.by_job) {
        for (key, job) in ja {
            if let Some(other) = jb.get(key) {
                changes.insert(
                    format!("by_job.{key}.p95_ms"),
                    Change::new(job_p95(job), job_p95(other)),
                );
            }
        }
    }
    Comparison {
        a,
        b,
        changes,
        same_request: false,
    }
}

impl Comparison {
    /// Marks the two as runs of one request and sets each change's `noise_pct` from both
    /// batches' totals (`ta` of `a`, `tb` of `b`).
    pub fn with_noise(mut self, ta: &SummaryAcc, tb: &SummaryAcc) -> Comparison {
        self.figures_noise(ta, tb);
        self.jobs_noise(ta, tb);
        self.same_request = true;
        self
    }

    /// The batch figures' noise.
    fn figures_noise(&mut self, ta: &SummaryAcc, tb: &SummaryAcc) {
        let (ha, hb) = (durations(ta), durations(tb));
        let sa = sample(&self.a, ha.as_deref());
        let sb = sample(&self.b, hb.as_deref());
        for f in Figure::ALL {
            if let Some(c) = self.changes.get_mut(f.key()) {
                c.noise_pct = c.with_spreads(spread(f, &sa), spread(f, &sb));
            }
        }
    }

    /// Each shared job's p95 noise (`by_job.KEY.p95_ms`), from its own histograms.
    fn jobs_noise(&mut self, ta: &SummaryAcc, tb: &SummaryAcc) {
        for (name, change) in &mut self.changes {
            let Some(key) = name
                .strip_prefix("by_job.")
                .and_then(|n| n.strip_suffix(".p95_ms"))
            else {
                continue;
            };
            let p95 = |t: &SummaryAcc| t.job_histogram(key).map(|h| quantile_spread_ms(&h, 0.95));
            change.noise_pct = change.with_spreads(p95(ta), p95(tb));
        }
    }
}

impl Change {
    /// The noise of this change given each batch's spread of the figure.
    fn with_spreads(&self, a: Option<f64>, b: Option<f64>) -> Option<f64> {
        let (x, y) = a.zip(b)?;
        noise_pct(self.a?, x, y)
    }
}

fn durations(t: &SummaryAcc) -> Option<std::borrow::Cow<'_, hdrhistogram::Histogram<u64>>> {
    t.histogram(LatencyMetric::Duration).map(|(h, _)| h)
}

fn sample<'a>(s: &Summary, durations: Option<&'a hdrhistogram::Histogram<u64>>) -> Sample<'a> {
    Sample {
        durations,
        bad: s.failed + s.timed_out,
        ended: s.tasks - s.pending,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::engine::summary::Place;
    use crate::engine::task::TaskStatus;

    /// Two jobs' tasks, `n` each, of 1 ms to `n` ms (`slow` ms more for job `y`).
    fn totals(n: u64, slow: u64) -> SummaryAcc {
        let mut acc = SummaryAcc::new(2 * n).with_parts(vec!["x".into(), "y".into()], vec![]);
        for ms in 1..=n {
            for (job, extra) in [(0, 0), (1, slow)] {
                let place = Place {
                    job: Some(job),
                    stage: None,
                };
                let d = Some(Duration::from_millis(ms + extra));
                acc.record_in(place, TaskStatus::Succeeded, d, None, None);
            }
        }
        acc
    }

    #[test]
    fn runs_of_one_request_get_noise_for_the_batch_and_each_jobs_p95() {
        let (ta, tb) = (totals(500, 0), totals(500, 10));
        let wall = Some(Duration::from_secs(1));
        let plain = compare(ta.summary(wall), tb.summary(wall));
        assert!(!plain.same_request);
        assert!(plain.changes.values().all(|c| c.noise_pct.is_none()));

        let c = plain.with_noise(&ta, &tb);

        assert!(c.same_request);
        for key in [
            "p50_ms",
            "p95_ms",
            "mean_ms",
            "by_job.x.p95_ms",
            "by_job.y.p95_ms",
        ] {
            let noise = c.changes[key].noise_pct;
            assert!(noise.is_some_and(|n| n > 0.0), "{key}: {noise:?}");
        }
        assert_eq!(c.changes["max_ms"].noise_pct, None);
        assert_eq!(c.changes["throughput_per_s"].noise_pct, None);
    }
}
