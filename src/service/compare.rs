//! `GET /batches/{a}/compare/{b}`: two batches' figures side by side, with each change's
//! noise when both ran one request.

use serde_json::Value;

use super::Batches;
use crate::engine::Batch;
use crate::engine::compare::{Comparison, compare};
use crate::store::StoreError;

impl Batches {
    /// Compares `a` with `b`; two runs of one request also get each change's noise, read
    /// from both batches' histograms.
    pub async fn compare(&self, a: &Batch, b: &Batch) -> Result<Comparison, StoreError> {
        let comparison = compare(a.summary_now(), b.summary_now());
        if !self.same_request(a, b).await? {
            return Ok(comparison);
        }
        let ta = a.counted_totals(self.totals(a).await?);
        let tb = b.counted_totals(self.totals(b).await?);
        Ok(comparison.with_noise(&ta, &tb))
    }

    /// Whether one is a rerun of the other, or both were accepted with the same request
    /// (compared as parsed JSON, so key order and spacing do not matter).
    async fn same_request(&self, a: &Batch, b: &Batch) -> Result<bool, StoreError> {
        let (ra, rb) = (a.rules().rerun_of, b.rules().rerun_of);
        if ra == Some(b.id) || rb == Some(a.id) || (ra.is_some() && ra == rb) {
            return Ok(true);
        }
        let parsed = |r: Option<String>| r.and_then(|t| serde_json::from_str::<Value>(&t).ok());
        let request_a = parsed(self.request(a.id).await?);
        Ok(request_a.is_some() && request_a == parsed(self.request(b.id).await?))
    }
}
