//! The figures a batch's baseline checks compare with: the baseline batch's as stored, or a
//! summary its caller already holds (`fanout run --baseline REPORT.json`).

use crate::engine::spec::BatchSpec;
use crate::engine::summary::Summary;
use crate::engine::verdict::resolve_baseline;
use crate::store::StoreError;

use super::Batches;

/// Where a batch's baseline checks read their figures from.
#[derive(Debug, Default)]
pub enum Baseline {
    /// The batch `thresholds.baseline.batch` names, read from this instance or its store.
    #[default]
    Stored,
    /// A finished batch's summary the caller holds (a report of an earlier run).
    Given(Box<Summary>),
}

impl Batches {
    /// Fills a batch's baseline checks with their baseline's figures. `Ok(Err(why))` when
    /// the baseline cannot be compared with: it is unknown, unfinished, or measured nothing.
    pub(super) async fn resolve_baseline(
        &self,
        spec: &mut BatchSpec,
        from: &Baseline,
    ) -> Result<Result<(), String>, StoreError> {
        let Some(baseline) = spec.thresholds.as_mut().and_then(|t| t.baseline.as_mut()) else {
            return Ok(Ok(()));
        };
        if let Baseline::Given(summary) = from {
            return Ok(resolve_baseline(baseline, summary));
        }
        let id = baseline.batch;
        let Some(base) = self.get(id).await? else {
            return Ok(Err(format!("no batch with id {id}")));
        };
        if base.finished_at().is_none() {
            return Ok(Err(format!(
                "batch {id} has not finished; a baseline must have"
            )));
        }
        Ok(resolve_baseline(baseline, &base.summary_now()))
    }
}
