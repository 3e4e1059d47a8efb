//! `/batches`: run a batch, read it back.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, Problem};
use super::request::{BatchRequest, parse_batch};
use crate::engine::{Batch, BatchView};

/// The request body, read whatever its `Content-Type` says (so `curl -d @batch.json` works),
/// with the size limit reported as a problem.
pub struct Body(pub Bytes);

impl FromRequest<AppState> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        Bytes::from_request(req, state)
            .await
            .map(Body)
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::BodyTooLarge(state.limits.max_body_bytes)
                } else {
                    ApiError::MalformedJson(rejection.body_text())
                }
            })
    }
}

/// Runs a batch and answers when its answer condition is met.
///
/// gather: when every task ended, or (without `return_exceptions`) at the first failure.
/// wait: when `return_when` is met or `timeout_ms` passes. With `Prefer: respond-async` the
/// answer is `202 Accepted` at once; follow `Location` to see the batch progress.
#[utoipa::path(
    post,
    path = "/batches",
    tag = "batches",
    request_body(content = BatchRequest, content_type = "application/json",
        description = "Read as JSON whatever the Content-Type says."),
    params(("Prefer" = Option<String>, Header, description = "`respond-async` answers 202 at once")),
    responses(
        (status = 201, description = "The batch answered (whatever its jobs did)", body = BatchView,
            headers(("Location" = String, description = "Where to read the batch again"))),
        (status = 202, description = "Accepted with `Prefer: respond-async`; running", body = BatchView,
            headers(("Location" = String, description = "Where to follow the batch"))),
        (status = 400, description = "The body is not JSON (`malformed_json`)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "A bearer token is required (`unauthorized`)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body or task count over the server's limits (`body_too_large`, `too_many_jobs`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a valid batch (`invalid_batch`), every invalid field listed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Shutting down (`shutting_down`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_batch(
    State(state): State<AppState>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    if state.is_draining() {
        return Err(ApiError::ShuttingDown);
    }
    let spec = parse_batch(&body, &state.limits)?;
    drop(body);
    let batch = Batch::new(Uuid::now_v7(), &spec);
    state.store.insert(batch.clone()).await?;
    tracing::info!(batch_id = %batch.id, tasks = spec.jobs.len(), mode = ?spec.mode, "batch accepted");
    state.engine.start(batch.clone(), spec);

    if prefers_async(&headers) {
        let mut response = answer(StatusCode::ACCEPTED, &batch);
        response.headers_mut().insert(
            "preference-applied",
            HeaderValue::from_static("respond-async"),
        );
        return Ok(response);
    }
    // If the client hangs up here, only this wait is dropped: the batch runs on.
    batch.answered().await;
    Ok(answer(StatusCode::CREATED, &batch))
}

/// A batch as it is now: tasks that ended since the answer are brought up to date.
#[utoipa::path(
    get,
    path = "/batches/{id}",
    tag = "batches",
    params(("id" = String, Path, description = "The batch id from `Location`")),
    responses(
        (status = 200, description = "The batch", body = BatchView),
        (status = 401, description = "A bearer token is required (`unauthorized`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such batch (`batch_not_found`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_batch(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let batch = find(&state, &id).await?;
    Ok(answer(StatusCode::OK, &batch))
}

async fn find(state: &AppState, id: &str) -> Result<Arc<Batch>, ApiError> {
    let not_found = || ApiError::BatchNotFound(id.chars().take(64).collect());
    let uuid = Uuid::parse_str(id).map_err(|_| not_found())?;
    state.store.get(uuid).await?.ok_or_else(not_found)
}

fn prefers_async(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("respond-async"))
        })
}

fn answer(status: StatusCode, batch: &Batch) -> Response {
    let location = format!("/batches/{}", batch.id);
    let mut response = (status, batch.to_json()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if status != StatusCode::OK {
        headers.insert(
            header::LOCATION,
            HeaderValue::from_str(&location).expect("a UUID path is a valid header"),
        );
    }
    response
}
