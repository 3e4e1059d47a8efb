//! `GET /batches/{id}/timeline` and `GET /batches/{id}/latency`: what the page draws of a
//! batch, in answers that grow with the pixels asked for, not with the tasks.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, RawQuery, State};

use super::batches::{not_found, parse_id};
use super::error::{ApiError, FieldError, Problem, documented};
use super::{AppState, query};
use crate::engine::picture::{Latency, MAX_ANSWER_BINS, Timeline};
use crate::engine::summary::LatencyMetric;

/// Bins of a timeline when the query does not say.
const DEFAULT_BINS: usize = 200;

/// Latest a window may reach: a year, far past any batch (`--max-batch-duration` is at most
/// a day in-process), and short of where milliseconds lose their sub-millisecond digits.
const MAX_WINDOW_MS: f64 = 365.0 * 24.0 * 3600.0 * 1000.0;

/// `from_ms` / `to_ms`: a number of milliseconds, 0 to [`MAX_WINDOW_MS`].
fn ms(q: &HashMap<String, String>, name: &str, errors: &mut Vec<FieldError>) -> Option<f64> {
    let v = q.get(name)?;
    match v.parse::<f64>() {
        Ok(x) if (0.0..=MAX_WINDOW_MS).contains(&x) => Some(x),
        _ => {
            errors.push(FieldError::new(
                name,
                "milliseconds from the batch's start, from 0 to 31536000000 (a year)",
            ));
            None
        }
    }
}

/// When a batch's tasks started and ended, in bins over a window of its run.
///
/// Times count in milliseconds from the batch's `started_at`. The bins come from totals the
/// batch keeps as it runs (at most 1,024 bins of a width that doubles as the run grows), or
/// from its task rows when it keeps one per task; `bin_ms` is the finest the batch recorded
/// when that is coarser than asked. When at most `row_limit` tasks started in the window,
/// their rows come too, with their phases: zoom in to see tasks. An empty window (`to_ms`
/// equal to `from_ms`) answers no bins, `bin_ms` 0 and no tasks; `to_ms` before `from_ms` is
/// a 422.
#[utoipa::path(
    get,
    path = "/batches/{id}/timeline",
    tag = "batches",
    security((), ("bearer" = [])),
    params(
        ("id" = String, Path, description = "The batch id"),
        ("from_ms" = Option<f64>, Query, description = "The window's start, ms from the batch's start (default 0)", minimum = 0, maximum = 31536000000_u64),
        ("to_ms" = Option<f64>, Query, description = "The window's end (default: the run so far); equal to `from_ms`, an empty window (no bins); before it, a 422", minimum = 0, maximum = 31536000000_u64),
        ("bins" = Option<u32>, Query, description = "How many bins, 1 to 2000 (default 200)", minimum = 1, maximum = 2000),
    ),
    responses(
        (status = 200, description = "The window's bins, and its tasks when few", body = Timeline),
        documented::Unauthorized,
        documented::BatchNotFound,
        (status = 422, description = "A bad parameter (`invalid_query`)", body = Problem, content_type = "application/problem+json",
            example = json!({"type": "about:blank", "title": "Invalid query", "status": 422, "detail": "invalid query parameter bins", "code": "invalid_query", "errors": [{"field": "bins", "message": "a whole number from 1 to 2000"}]})),
    )
)]
pub async fn batch_timeline(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Timeline>, ApiError> {
    let uuid = parse_id(&id)?;
    let q = query::params(
        raw.as_deref(),
        "GET /batches/{id}/timeline",
        &["from_ms", "to_ms", "bins"],
    )?;
    let mut errors = Vec::new();
    let from = ms(&q, "from_ms", &mut errors);
    let to = ms(&q, "to_ms", &mut errors);
    // An empty window (`to_ms == from_ms`) is a question with an answer: no bins.
    if let (Some(f), Some(t)) = (from, to)
        && t < f
    {
        errors.push(FieldError::new("to_ms", "must not be before from_ms"));
    }
    let bins = match q.get("bins").map(|b| b.parse::<usize>()) {
        None => DEFAULT_BINS,
        Some(Ok(n)) if (1..=MAX_ANSWER_BINS).contains(&n) => n,
        Some(_) => {
            errors.push(FieldError::new("bins", "a whole number from 1 to 2000"));
            DEFAULT_BINS
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::InvalidQuery(errors));
    }
    let timeline = state.batches.timeline(uuid, from, to, bins).await?;
    Ok(Json(timeline.ok_or_else(|| not_found(&id))?))
}

/// A batch's latency distribution: log-spaced buckets and the percentile spectrum.
///
/// From the batch's HDR histograms (3 significant digits): `duration` over every task that
/// reached its target (the summary's `duration_ms`), `ttfb` over HTTP answers.
#[utoipa::path(
    get,
    path = "/batches/{id}/latency",
    tag = "batches",
    security((), ("bearer" = [])),
    params(
        ("id" = String, Path, description = "The batch id"),
        ("metric" = Option<LatencyMetric>, Query, description = "`duration` (default) or `ttfb`"),
    ),
    responses(
        (status = 200, description = "The distribution", body = Latency),
        documented::Unauthorized,
        documented::BatchNotFound,
        (status = 422, description = "A bad parameter (`invalid_query`)", body = Problem, content_type = "application/problem+json",
            example = json!({"type": "about:blank", "title": "Invalid query", "status": 422, "detail": "invalid query parameter metric", "code": "invalid_query", "errors": [{"field": "metric", "message": "duration or ttfb"}]})),
    )
)]
pub async fn batch_latency(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Latency>, ApiError> {
    let uuid = parse_id(&id)?;
    let q = query::params(raw.as_deref(), "GET /batches/{id}/latency", &["metric"])?;
    let metric = match q.get("metric").map(String::as_str) {
        None | Some("duration") => LatencyMetric::Duration,
        Some("ttfb") => LatencyMetric::Ttfb,
        Some(_) => {
            return Err(ApiError::InvalidQuery(vec![FieldError::new(
                "metric",
                "duration or ttfb",
            )]));
        }
    };
    let latency = state.batches.latency(uuid, metric).await?;
    Ok(Json(latency.ok_or_else(|| not_found(&id))?))
}
