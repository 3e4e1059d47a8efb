//! `GET /batches/{a}/compare/{b}`: two batches' figures side by side.

use axum::Json;
use axum::extract::{Path, State};

use super::AppState;
use super::batches::{not_found, parse_id};
use super::error::{ApiError, documented};
use crate::engine::compare::Comparison;

/// Both batches' summaries and each figure's change from `a` to `b`: the duration
/// percentiles, mean, throughput, error rate and every shared job's p95. When both ran one
/// request (`same_request`: the same stored request, or one a rerun of the other), each
/// change carries `noise_pct`, the change sampling alone makes likely at their task counts.
#[utoipa::path(
    get,
    path = "/batches/{a}/compare/{b}",
    tag = "batches",
    security((), ("bearer" = [])),
    params(
        ("a" = String, Path, description = "The batch compared from (a baseline)"),
        ("b" = String, Path, description = "The batch compared to it"),
    ),
    responses(
        (status = 200, description = "The comparison", body = Comparison),
        documented::Unauthorized,
        documented::BatchNotFound,
    )
)]
pub async fn compare_batches(
    State(state): State<AppState>,
    Path((a, b)): Path<(String, String)>,
) -> Result<Json<Comparison>, ApiError> {
    let (ida, idb) = (parse_id(&a)?, parse_id(&b)?);
    let Some(first) = state.batches.get(ida).await? else {
        return Err(not_found(&a));
    };
    let Some(second) = state.batches.get(idb).await? else {
        return Err(not_found(&b));
    };
    Ok(Json(state.batches.compare(&first, &second).await?))
}
