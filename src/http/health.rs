//! Liveness.

use axum::Json;
use serde_json::{Value, json};

/// The process is up and serving.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "Up", body = Object, example = json!({"status": "ok"})))
)]
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready to take batches: the store answers and the server is not draining.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Object, example = json!({"status": "ready"})),
        (status = 503, description = "The store does not answer (`not_ready`) or the server is draining (`shutting_down`)", body = super::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn readyz(
    axum::extract::State(state): axum::extract::State<super::AppState>,
) -> Result<Json<Value>, super::error::ApiError> {
    if state.is_draining() {
        return Err(super::error::ApiError::ShuttingDown);
    }
    match tokio::time::timeout(std::time::Duration::from_secs(2), state.batches.ping()).await {
        Ok(Ok(())) => Ok(Json(json!({ "status": "ready" }))),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the store does not answer");
            Err(super::error::ApiError::NotReady)
        }
        Err(_) => Err(super::error::ApiError::NotReady),
    }
}
