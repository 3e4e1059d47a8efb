//! `/instances`: the instances sharing this one's store.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, documented};
use crate::store::InstanceInfo;

/// The instances sharing the store.
#[derive(Serialize, ToSchema)]
pub struct InstanceList {
    pub items: Vec<InstanceInfo>,
}

/// The instances sharing this one's store: those whose heartbeat is within `--stale-after`
/// (on SQLite and `memory://`, this one alone).
#[utoipa::path(
    get,
    path = "/instances",
    tag = "operations",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Live instances, and those seen within --stale-after", body = InstanceList),
        documented::Unauthorized,
    )
)]
pub async fn list_instances(State(state): State<AppState>) -> Result<Json<InstanceList>, ApiError> {
    let items = state.batches.instances().await?;
    Ok(Json(InstanceList { items }))
}
