//! Liveness, readiness and metrics.

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

/// Prometheus metrics, in the text exposition format.
///
/// Batches by mode and status, tasks by kind and status, task durations by kind, tasks and
/// batches in flight, API requests by route, method and status with their latency. Open unless
/// the server has `--metrics-token`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Metrics", content_type = "text/plain; version=0.0.4", body = String),
        (status = 401, description = "`--metrics-token` is set and the request lacks it (`unauthorized`)", body = super::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn metrics(
    axum::extract::State(state): axum::extract::State<super::AppState>,
    headers: axum::http::HeaderMap,
) -> Result<axum::response::Response, super::error::ApiError> {
    if let Some(expected) = &state.metrics_token
        && !super::auth::presents(&headers, expected)
    {
        return Err(super::error::ApiError::Unauthorized);
    }
    Ok(axum::response::IntoResponse::into_response((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )))
}
