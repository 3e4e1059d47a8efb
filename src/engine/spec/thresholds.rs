//! The limits a batch's verdict checks: on the batch's figures, on one job's, and against a
//! baseline batch's.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A summary figure a threshold can limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Threshold {
    P50Ms,
    P90Ms,
    P95Ms,
    P99Ms,
    P999Ms,
    MaxMs,
    MeanMs,
    /// (failed + timed_out) / tasks that ended.
    MaxErrorRate,
    MinThroughputPerS,
    /// Not a limit a request sets: the check the verdict gains, failed, when not every task
    /// ran to its end (cancelled, or interrupted by a shutdown). Its limit is the task count.
    Completed,
}

impl Threshold {
    /// A lower bound (`min_...`): the figure must reach the limit; the others must not pass it.
    pub fn is_minimum(self) -> bool {
        matches!(self, Threshold::MinThroughputPerS | Threshold::Completed)
    }
}

/// The limits a batch was given: on the batch's figures (in a fixed order: p50 ... max,
/// mean, error rate, throughput), on each named job's, and against a baseline batch's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "StoredThresholds")]
pub struct Thresholds {
    pub batch: Vec<(Threshold, f64)>,
    /// By `by_job` key, in the request's order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_job: Vec<(String, Vec<(Threshold, f64)>)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Baseline>,
    /// The longest a lost shard may have had no runner (`summary.lost.window_ms`) for the
    /// `lost` check to pass; none given means 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lost_window_ms: Option<f64>,
    /// The least share of every check's judgements that passed (`check_rate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_check_rate: Option<f64>,
    /// By check name, in the request's order: the least share of its judgements that passed
    /// (`checks.NAME`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<(String, f64)>,
    /// The names of the batch's checks that are not soft: without a check rate of its own,
    /// the verdict holds every one of them to a pass rate of 1.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hard_checks: Vec<String>,
    /// By `FLOW/STEP` key, in the request's order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_step: Vec<(String, Vec<(Threshold, f64)>)>,
}

impl Thresholds {
    /// Limits on the batch's figures only.
    pub fn batch(batch: Vec<(Threshold, f64)>) -> Thresholds {
        Thresholds {
            batch,
            ..Thresholds::default()
        }
    }
}

/// Thresholds as stored: a list of batch limits (before per-job and baseline limits), or
/// the whole.
#[derive(Deserialize)]
#[serde(untagged)]
enum StoredThresholds {
    Batch(Vec<(Threshold, f64)>),
    Whole {
        batch: Vec<(Threshold, f64)>,
        #[serde(default)]
        by_job: Vec<(String, Vec<(Threshold, f64)>)>,
        #[serde(default)]
        baseline: Option<Baseline>,
        #[serde(default)]
        max_lost_window_ms: Option<f64>,
        #[serde(default)]
        min_check_rate: Option<f64>,
        #[serde(default)]
        checks: Vec<(String, f64)>,
        #[serde(default)]
        hard_checks: Vec<String>,
        #[serde(default)]
        by_step: Vec<(String, Vec<(Threshold, f64)>)>,
    },
}

impl From<StoredThresholds> for Thresholds {
    fn from(t: StoredThresholds) -> Thresholds {
        match t {
            StoredThresholds::Batch(batch) => Thresholds {
                batch,
                ..Thresholds::default()
            },
            StoredThresholds::Whole {
                batch,
                by_job,
                baseline,
                max_lost_window_ms,
                min_check_rate,
                checks,
                hard_checks,
                by_step,
            } => Thresholds {
                batch,
                by_job,
                baseline,
                max_lost_window_ms,
                min_check_rate,
                checks,
                hard_checks,
                by_step,
            },
        }
    }
}

/// `thresholds.baseline`: how much worse than another batch each figure may be. The
/// baseline's figures are read when the batch is accepted, so the verdict never depends on
/// the baseline still being stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub batch: uuid::Uuid,
    pub checks: Vec<BaselineCheck>,
    /// The baseline's tasks that ended, read with its figures: a verdict warns when they
    /// are too few to tell a change from noise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<u64>,
}

/// One figure held against the baseline's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineCheck {
    pub figure: Figure,
    /// The largest regression allowed, in percent.
    pub max_regression_pct: f64,
    /// The baseline's figure; `None` until the baseline is read.
    pub base: Option<f64>,
}

impl BaselineCheck {
    /// The limit: the baseline's figure moved by the percentage in the worse direction.
    pub fn limit(&self) -> Option<f64> {
        let base = self.base?;
        let pct = self.max_regression_pct / 100.0;
        let limit = if self.figure.higher_is_better() {
            base * (1.0 - pct)
        } else {
            base * (1.0 + pct)
        };
        // To a millionth, so that 10 % over 23.311 reads 25.6421.
        Some((limit * 1e6).round() / 1e6)
    }
}

/// A figure of a summary that baselines and comparisons name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Figure {
    P50Ms,
    P90Ms,
    P95Ms,
    P99Ms,
    P999Ms,
    MaxMs,
    MeanMs,
    ThroughputPerS,
    /// (failed + timed_out) / tasks that ended.
    ErrorRate,
}

impl Figure {
    pub const ALL: [Figure; 9] = [
        Figure::P50Ms,
        Figure::P90Ms,
        Figure::P95Ms,
        Figure::P99Ms,
        Figure::P999Ms,
        Figure::MaxMs,
        Figure::MeanMs,
        Figure::ThroughputPerS,
        Figure::ErrorRate,
    ];

    /// The key requests and answers use.
    pub fn key(self) -> &'static str {
        match self {
            Figure::P50Ms => "p50_ms",
            Figure::P90Ms => "p90_ms",
            Figure::P95Ms => "p95_ms",
            Figure::P99Ms => "p99_ms",
            Figure::P999Ms => "p999_ms",
            Figure::MaxMs => "max_ms",
            Figure::MeanMs => "mean_ms",
            Figure::ThroughputPerS => "throughput_per_s",
            Figure::ErrorRate => "error_rate",
        }
    }

    pub fn from_key(key: &str) -> Option<Figure> {
        Figure::ALL.into_iter().find(|f| f.key() == key)
    }

    /// More is better (throughput); for the others less is.
    pub fn higher_is_better(self) -> bool {
        self == Figure::ThroughputPerS
    }
}
