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
