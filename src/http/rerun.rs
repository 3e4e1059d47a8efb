//! `POST /batches/{id}/rerun`: a new batch from a stored batch's request.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::AppState;
use super::batches::{accept, not_found, parse_id};
use super::error::{ApiError, Problem, documented};
use crate::engine::BatchView;

/// Runs a stored batch's request again as a new batch, which says `rerun_of`.
///
/// Answers as `POST /batches` does (`Prefer: respond-async`, `Idempotency-Key` included). The
/// request is judged by the server's limits now, and a baseline is read again.
#[utoipa::path(
    post,
    path = "/batches/{id}/rerun",
    tag = "batches",
    security((), ("bearer" = [])),
    params(
        ("id" = String, Path, description = "The batch whose request runs again"),
        ("Prefer" = Option<String>, Header, description = "`respond-async` answers 202 at once"),
        ("Idempotency-Key" = Option<String>, Header, description = "As for `POST /batches`: 1 to 255 visible ASCII characters", pattern = "^[!-~]{1,255}$", min_length = 1, max_length = 255),
    ),
    responses(
        (status = 201, description = "The new batch answered", body = BatchView,
            headers(("Location" = String, description = "Where to read the new batch"))),
        (status = 202, description = "Accepted with `Prefer: respond-async`; running", body = BatchView,
            headers(("Location" = String, description = "Where to follow the new batch"))),
        documented::Unauthorized,
        documented::BatchNotFound,
        (status = 422, description = "The stored request is not valid under the server's limits now, or the `Idempotency-Key` is not 1 to 255 visible ASCII characters (`invalid_batch`); a key reused with another body (`idempotency_key_reused`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The server's queue is full (`queue_full`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn rerun_batch(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let uuid = parse_id(&id)?;
    let Some(request) = state.batches.request(uuid).await? else {
        return Err(not_found(&id));
    };
    accept(state, headers, request.into(), Some(uuid)).await
}
