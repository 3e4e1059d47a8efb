//! `/batches`: run a batch, read it back, list, cancel.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, FieldError, Problem, documented};
use crate::engine::{Batch, BatchStatus, BatchView, Busy};
use crate::request::{BatchRequest, parse_batch};
use crate::service::{Baseline, Cancelled, Submission, Submitted};
use crate::store::ListFilter;

/// The request body, read whatever its `Content-Type` says (so `curl -d @batch.json` works),
/// with the size limit reported as a problem.
pub struct Body(pub Bytes);

/// How much of a body over the limit is read (and dropped) before the 413 goes out: a client
/// that sends its whole body before it reads (Python's urllib, say) then reads the answer
/// instead of a broken pipe. Past this the connection is closed.
const DISCARD_AT_MOST: usize = 16 * 1024 * 1024;

impl FromRequest<AppState> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.limits.max_body_bytes;
        let stated = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if let Some(stated) = stated.filter(|&n| n > limit) {
            // A client waiting for `100 Continue` has not sent the body: refuse it unread. One
            // that states more than can be dropped in reason is refused at once too.
            let waits = req.headers().contains_key(header::EXPECT);
            if waits || stated > limit.saturating_add(DISCARD_AT_MOST) {
                return Err(ApiError::BodyTooLarge(limit));
            }
        }
        let mut data = req.into_body().into_data_stream();
        // A body that comes in one piece (the usual case) is kept as it came, not copied.
        let mut first: Option<Bytes> = None;
        let mut body = bytes::BytesMut::new();
        let mut seen = 0usize;
        while let Some(piece) = data.next().await {
            let piece = piece.map_err(|e| ApiError::MalformedJson(e.to_string()))?;
            seen = seen.saturating_add(piece.len());
            if seen > limit {
                while seen <= limit.saturating_add(DISCARD_AT_MOST) {
                    match data.next().await {
                        Some(Ok(more)) => seen = seen.saturating_add(more.len()),
                        _ => break,
                    }
                }
                return Err(ApiError::BodyTooLarge(limit));
            }
            match first.take() {
                None if body.is_empty() => first = Some(piece),
                earlier => {
                    if let Some(earlier) = earlier {
                        body.extend_from_slice(&earlier);
                    }
                    body.extend_from_slice(&piece);
                }
            }
        }
        Ok(Body(first.unwrap_or_else(|| body.freeze())))
    }
}

/// Runs a batch and answers when its answer condition is met.
///
/// gather: when every task ended, or (without `return_exceptions`) at the first failure.
/// wait: when `return_when` is met or `timeout_ms` passes. With `Prefer: respond-async` the
/// answer is `202 Accepted` at once; follow `Location` to see the batch progress. The batch
/// row is committed before either answer.
#[utoipa::path(
    post,
    path = "/batches",
    tag = "batches",
    security((), ("bearer" = [])),
    request_body(content = BatchRequest, content_type = "application/json",
        description = "Read as JSON whatever the Content-Type says."),
    params(
        ("Prefer" = Option<String>, Header, description = "`respond-async` answers 202 at once"),
        ("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters. A repeat with the same key and the same JSON answers the first batch without running it again; another body with that key is a 422 `idempotency_key_reused`", pattern = "^[!-~]{1,255}$", min_length = 1, max_length = 255),
    ),
    responses(
        (status = 201, description = "The batch answered (whatever its jobs did)", body = BatchView,
            headers(("Location" = String, description = "Where to read the batch again"))),
        (status = 202, description = "Accepted with `Prefer: respond-async`; running", body = BatchView,
            headers(("Location" = String, description = "Where to follow the batch"))),
        (status = 400, description = "The body is not JSON (`malformed_json`)", body = Problem, content_type = "application/problem+json",
            example = json!({"type": "about:blank", "title": "Malformed JSON", "status": 400, "detail": "the body is not valid JSON: EOF while parsing a list at line 1 column 10", "code": "malformed_json"})),
        documented::Unauthorized,
        (status = 413, description = "Body or task count over the server's limits (`body_too_large`, `too_many_jobs`)", body = Problem, content_type = "application/problem+json",
            example = json!({"type": "about:blank", "title": "Too many jobs", "status": 413, "detail": "the batch has 200000 tasks; the server's limit is 100000", "code": "too_many_jobs"})),
        (status = 429, description = "The server's queue is full (`queue_full`); retry after `Retry-After` seconds", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = String, description = "Seconds to wait")),
            example = json!({"type": "about:blank", "title": "Queue full", "status": 429, "detail": "the server's queue is full; retry shortly", "code": "queue_full"})),
        (status = 422, description = "Not a valid batch (`invalid_batch`, every invalid field listed), an Idempotency-Key reused with another body (`idempotency_key_reused`), or one that is not 1 to 255 visible ASCII characters (`invalid_batch`)", body = Problem, content_type = "application/problem+json",
            example = json!({"type": "about:blank", "title": "Invalid batch", "status": 422, "detail": "the batch has 3 invalid fields", "code": "invalid_batch", "errors": [{"field": "colour", "message": "unknown field \"colour\"; expected one of: mode, jobs, concurrency, timeout_ms, return_exceptions, fail_fast, return_when, on_timeout, results, label, load, thresholds, on_lost"}, {"field": "jobs[0].duration_ms", "message": "must be between 0 and 86400000 (one day)"}, {"field": "jobs[1].url", "message": "not a valid URL: relative URL without a base"}]})),
        (status = 503, description = "Shutting down (`shutting_down`)", body = Problem, content_type = "application/problem+json",
            example = json!({"type": "about:blank", "title": "Shutting down", "status": 503, "detail": "the server is shutting down and takes no new batches", "code": "shutting_down"})),
    )
)]
pub async fn create_batch(
    State(state): State<AppState>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    accept(state, headers, body, None).await
}

/// The `Idempotency-Key` header, when sent: 1 to 255 visible ASCII characters, exactly what
/// the OpenAPI parameter's `pattern` (`^[!-~]{1,255}$`) tells clients.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bytes = v.as_bytes();
    if (1..=255).contains(&bytes.len()) && bytes.iter().all(|b| (0x21..=0x7e).contains(b)) {
        // Visible ASCII is UTF-8.
        return Ok(Some(String::from_utf8_lossy(bytes).into_owned()));
    }
    Err(ApiError::Invalid(vec![FieldError::new(
        "Idempotency-Key",
        "must be 1 to 255 visible ASCII characters",
    )]))
}

/// Accepts a batch from a request body (`rerun_of`: the batch whose stored request it is)
/// and answers as `POST /batches` does.
pub(super) async fn accept(
    state: AppState,
    headers: HeaderMap,
    body: Bytes,
    rerun_of: Option<Uuid>,
) -> Result<Response, ApiError> {
    if state.is_draining() {
        return Err(ApiError::ShuttingDown);
    }
    let mut spec = parse_batch(&body, &state.limits)?;
    spec.rerun_of = rerun_of;
    let key = idempotency_key(&headers)?;
    let asynchronous = prefers_async(&headers);
    let status = if asynchronous {
        StatusCode::ACCEPTED
    } else {
        StatusCode::CREATED
    };
    // Accepting runs in a task of its own: a client that hangs up while its batch is being
    // stored must not leave a stored batch that never starts.
    let batches = state.batches.clone();
    // In the request's span, so the batch's log lines carry the request id too.
    let submission = Submission {
        spec,
        body,
        key,
        status: status.as_u16(),
        baseline: Baseline::Stored,
    };
    let accept = tokio::spawn(async move { batches.submit(submission).await }.in_current_span());
    let submitted = accept
        .await
        .map_err(|e| ApiError::Internal(format!("accepting a batch failed: {e}")))??;
    let (batch, status) = match submitted {
        Submitted::New(batch) => (batch, status),
        Submitted::Queued(batch) if status == StatusCode::CREATED => {
            // Its shards run wherever workers claim them: answer once they all ended. If the
            // client hangs up, only this wait is dropped.
            let done = state
                .batches
                .wait_finished(batch.id)
                .await?
                .unwrap_or(batch);
            return Ok(batch_answer(StatusCode::CREATED, &done));
        }
        Submitted::Queued(batch) => (batch, status),
        Submitted::Replay(batch, first) => (
            batch,
            StatusCode::from_u16(first).unwrap_or(StatusCode::CREATED),
        ),
        Submitted::KeyReused => return Err(ApiError::IdempotencyKeyReused),
        Submitted::Busy(Busy::Full) => return Err(ApiError::QueueFull),
        Submitted::Busy(Busy::Never { tasks, capacity }) => {
            return Err(ApiError::TooManyJobs {
                jobs: tasks,
                limit: capacity,
            });
        }
        Submitted::BadBaseline(why) => {
            return Err(ApiError::Invalid(vec![FieldError::new(
                "thresholds.baseline.batch",
                why,
            )]));
        }
    };
    if status == StatusCode::ACCEPTED {
        let mut response = batch_answer(StatusCode::ACCEPTED, &batch);
        response.headers_mut().insert(
            "preference-applied",
            HeaderValue::from_static("respond-async"),
        );
        return Ok(response);
    }
    // If the client hangs up here, only this wait is dropped: the batch runs on.
    batch.answered().await;
    Ok(batch_answer(StatusCode::CREATED, &batch))
}

/// A batch as it is now: tasks that ended since the answer are brought up to date.
#[utoipa::path(
    get,
    path = "/batches/{id}",
    tag = "batches",
    security((), ("bearer" = [])),
    params(
        ("id" = String, Path, description = "The batch id from `Location`"),
        ("results" = Option<String>, Query, pattern = "^none$", description = "`none`: the batch without its task lists (`results`, `done`, `pending`), however many tasks it has"),
    ),
    responses(
        (status = 200, description = "The batch", body = BatchView),
        documented::Unauthorized,
        documented::BatchNotFound,
        (status = 422, description = "A bad parameter (`invalid_query`)", body = Problem, content_type = "application/problem+json",
            example = json!({"type": "about:blank", "title": "Invalid query", "status": 422, "detail": "invalid query parameter results", "code": "invalid_query", "errors": [{"field": "results", "message": "none (the batch without its task lists), given once"}]})),
    )
)]
pub async fn get_batch(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let uuid = parse_id(&id)?;
    let q = super::query::params(raw.as_deref(), "GET /batches/{id}", &["results"])?;
    let without_tasks = match q.get("results").map(String::as_str) {
        None => false,
        Some("none") => true,
        Some(_) => {
            return Err(ApiError::InvalidQuery(vec![FieldError::new(
                "results",
                "none (the batch without its task lists)",
            )]));
        }
    };
    if without_tasks {
        let batch = state
            .batches
            .get_without_tasks(uuid)
            .await?
            .ok_or_else(|| not_found(&id))?;
        let mut response = (StatusCode::OK, batch.to_summary_json()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return Ok(response);
    }
    let batch = state
        .batches
        .get(uuid)
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(batch_answer(StatusCode::OK, &batch))
}

/// Cancels what is still running of a batch and answers the batch.
///
/// Unfinished tasks end `cancelled` and the batch `cancelled`. A batch that another instance
/// (sharing the database) runs is flagged, and that instance cancels it within seconds: the
/// answer is then `202` with the batch as stored.
#[utoipa::path(
    delete,
    path = "/batches/{id}",
    tag = "batches",
    security((), ("bearer" = [])),
    params(("id" = String, Path, description = "The batch id")),
    responses(
        (status = 200, description = "Cancelled; every task has ended", body = BatchView),
        (status = 202, description = "Running on another instance, which was asked to cancel it", body = BatchView),
        documented::Unauthorized,
        documented::BatchNotFound,
        (status = 409, description = "The batch already finished (`batch_finished`)", body = Problem, content_type = "application/problem+json",
            example = json!({"type": "about:blank", "title": "Batch finished", "status": 409, "detail": "batch 01939c7e-0000-7000-8000-000000000000 has already finished", "code": "batch_finished"})),
    )
)]
pub async fn delete_batch(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let uuid = parse_id(&id)?;
    match state.batches.cancel(uuid).await? {
        Cancelled::Here(batch) => Ok(batch_answer(StatusCode::OK, &batch)),
        Cancelled::Requested(batch) => Ok(batch_answer(StatusCode::ACCEPTED, &batch)),
        Cancelled::AlreadyFinished(_) => Err(ApiError::BatchFinished(uuid.to_string())),
        Cancelled::Missing => Err(not_found(&id)),
    }
}

/// `GET /batches` query parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only batches with this status.
    #[param(value_type = Option<BatchStatus>)]
    status: Option<String>,
    /// Items per page, 1 to 100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page of batches, newest first.
#[derive(Serialize, ToSchema)]
pub struct BatchPage {
    /// Batches without their task results.
    items: Vec<BatchView<'static>>,
    /// Opaque and URL-safe; null on the last page.
    next_cursor: Option<String>,
}

/// Lists batches, newest first (ties broken by id), without their task results.
///
/// Pages are keyed on the last item seen, so batches created while paging never shift a page:
/// every batch that existed at the first page is visited exactly once.
#[utoipa::path(
    get,
    path = "/batches",
    tag = "batches",
    security((), ("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "A page of batches", body = BatchPage),
        documented::Unauthorized,
        (status = 422, description = "Bad `status`, `limit` or `cursor` (`invalid_query`)", body = Problem, content_type = "application/problem+json",
            example = json!({"type": "about:blank", "title": "Invalid query", "status": 422, "detail": "invalid query parameter limit", "code": "invalid_query", "errors": [{"field": "limit", "message": "a whole number from 1 to 100"}]})),
    )
)]
pub async fn list_batches(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    // Read here rather than by a typed extractor, so that every fault is a 422 naming its
    // parameter: an unknown one (`?statut=failed` would otherwise list everything, silently),
    // one given twice, an empty one.
    let mut errors = Vec::new();
    let mut q = ListQuery {
        status: None,
        limit: None,
        cursor: None,
    };
    for (name, value) in url::form_urlencoded::parse(raw.as_deref().unwrap_or_default().as_bytes())
    {
        let slot = match name.as_ref() {
            "status" => &mut q.status,
            "limit" => &mut q.limit,
            "cursor" => &mut q.cursor,
            _ => {
                errors.push(FieldError::new(
                    name.as_ref(),
                    "not a parameter of GET /batches (status, limit, cursor)",
                ));
                continue;
            }
        };
        if slot.replace(value.into_owned()).is_some() {
            errors.push(FieldError::new(name.as_ref(), "given more than once"));
        }
    }
    let status = q.status.as_deref().and_then(|s| {
        let parsed =
            serde_json::from_value::<BatchStatus>(serde_json::Value::String(s.to_owned())).ok();
        if parsed.is_none() {
            errors.push(FieldError::new(
                "status",
                "one of running, completed, failed, cancelled, interrupted",
            ));
        }
        parsed
    });
    let limit = match q.limit.as_deref() {
        None => 20,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=100).contains(&n) => n,
            _ => {
                errors.push(FieldError::new("limit", "a whole number from 1 to 100"));
                20
            }
        },
    };
    let before = q.cursor.as_deref().filter(|s| !s.is_empty()).and_then(|c| {
        let parsed = decode_cursor(c);
        if parsed.is_none() {
            errors.push(FieldError::new(
                "cursor",
                "not a cursor this server gave out",
            ));
        }
        parsed
    });
    if !errors.is_empty() {
        return Err(ApiError::InvalidQuery(errors));
    }
    // One more than asked tells whether there is a next page.
    let mut batches = state
        .batches
        .list(ListFilter {
            status,
            before,
            limit: limit + 1,
        })
        .await?;
    let more = batches.len() > limit;
    batches.truncate(limit);
    let next_cursor = if more {
        batches.last().map(|b| encode_cursor(b.created_at, b.id))
    } else {
        None
    };
    let mut body = b"{\"items\":[".to_vec();
    for (i, b) in batches.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&b.to_summary_json());
    }
    body.extend_from_slice(b"],\"next_cursor\":");
    body.extend_from_slice(&serde_json::to_vec(&next_cursor).expect("a cursor serializes"));
    body.push(b'}');
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

fn encode_cursor(created_at: DateTime<Utc>, id: Uuid) -> String {
    let raw = format!("{}|{id}", crate::engine::task::format_micros(&created_at));
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_cursor(cursor: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (t, id) = text.split_once('|')?;
    Some((t.parse().ok()?, Uuid::parse_str(id).ok()?))
}

pub(super) fn not_found(id: &str) -> ApiError {
    ApiError::BatchNotFound(id.chars().take(64).collect())
}

pub(super) fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| not_found(id))
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

fn batch_answer(status: StatusCode, batch: &Arc<Batch>) -> Response {
    let location = format!("/batches/{}", batch.id);
    let mut response = (status, batch.to_json()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if matches!(status, StatusCode::CREATED | StatusCode::ACCEPTED) {
        headers.insert(
            header::LOCATION,
            HeaderValue::from_str(&location).expect("a UUID path is a valid header"),
        );
    }
    response
}
