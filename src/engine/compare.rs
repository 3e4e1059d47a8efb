//! Two batches' summaries side by side: each figure's change from the first to the second.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::spec::Figure;
use super::summary::{JobSummary, Summary};
use super::verdict::figure;

/// `GET /batches/{a}/compare/{b}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Comparison {
    pub a: Summary,
    pub b: Summary,
    /// By figure: `p50_ms` ... `max_ms`, `mean_ms`, `throughput_per_s`, `error_rate`, and
    /// `by_job.KEY.p95_ms` for every job both batches have.
    pub changes: BTreeMap<String, Change>,
}

/// One figure in both batches.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Change {
    pub a: Option<f64>,
    pub b: Option<f64>,
    /// (b − a) / a × 100, to a tenth; null when either is missing or `a` is 0.
    pub change_pct: Option<f64>,
}

impl Change {
    fn new(a: Option<f64>, b: Option<f64>) -> Change {
        let change_pct = match (a, b) {
            (Some(a), Some(b)) if a != 0.0 => Some(((b - a) / a * 1000.0).round() / 10.0),
            _ => None,
        };
        Change { a, b, change_pct }
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
    Comparison { a, b, changes }
}
