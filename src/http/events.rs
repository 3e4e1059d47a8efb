//! `GET /batches/{id}/events`: a batch's tasks as they finish, as server-sent events — the API's
//! `asyncio.as_completed`.
//!
//! The stream pulls from the batch's completion list with a cursor (the last `seq` sent), a
//! bounded stretch at a time, and waits for the batch to say that more tasks ended. A reader
//! that never reads holds a cursor and nothing else: it cannot slow the batch or make it keep
//! more in memory.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde::Serialize;
use tokio::time::Instant;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::batches::{not_found, parse_id};
use super::error::{ApiError, Problem, documented};
use crate::engine::Batch;

/// Completions read from the batch per turn.
const STRETCH: usize = 64;
/// Event data queued per turn, at most (beyond one event): with `STRETCH`, what a stream
/// whose reader stalls holds besides its batch.
const QUEUED_BYTES: usize = 256 * 1024;
/// Event streams open at once, server-wide: each holds its batch while it lives, whether or
/// not its reader reads.
pub const MAX_STREAMS: usize = 1024;
/// Least time between two `progress` events.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// How often a batch that another instance runs is read again from the store.
const REMOTE_POLL: Duration = Duration::from_secs(1);

/// The `data` of a `progress` event.
#[derive(Debug, Serialize, ToSchema)]
pub struct Progress {
    /// Tasks ended so far.
    pub ended: usize,
    /// Tasks in all so far (a load run for a duration makes them as it goes).
    pub tasks: usize,
}

/// The kinds of event a stream sends.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StreamEventKind {
    Task,
    Progress,
    Batch,
}

/// One server-sent event of `GET /batches/{id}/events`, field by field.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamEvent {
    pub event: StreamEventKind,
    /// `task` events only: the task's `seq`, what `Last-Event-ID` takes to resume.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// JSON text: a task result (`task`), `{ended, tasks}` (`progress`), or the batch without
    /// its task lists (`batch`).
    #[schema(content_media_type = "application/json")]
    pub data: String,
}

/// Follows a batch: its tasks as they finish, then the batch.
///
/// Server-sent events, like `asyncio.as_completed`:
/// - `event: task` for each finished task, in completion order; `data` is the task result and
///   `id` its `seq`. With `results: "errors"` only failed tasks are sent, with `"none"` none.
/// - `event: progress` now and then while the batch runs: `{"ended": n, "tasks": m}`.
/// - `event: batch` last, with the batch (its summary and verdict, without the task lists);
///   its `id` is one past the batch's last completion number. Then the stream closes.
///
/// Reconnect with `Last-Event-ID` (the last `id` received) to go on where it stopped, with no
/// task sent twice and none skipped. A finished batch replays its tasks, then closes; a
/// reconnect after its `batch` event (`Last-Event-ID` past the last completion of a finished
/// batch) is answered `204 No Content`, which tells a browser's `EventSource` to stop
/// reconnecting.
#[utoipa::path(
    get,
    path = "/batches/{id}/events",
    tag = "batches",
    security((), ("bearer" = [])),
    params(
        ("id" = String, Path, description = "The batch id"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this task `seq`"),
    ),
    responses(
        (status = 200, description = "The event stream: `task` events, `progress` events, and `batch` last", content_type = "text/event-stream", body = StreamEvent),
        (status = 204, description = "A reconnect to a finished batch with nothing left to send"),
        documented::Unauthorized,
        documented::BatchNotFound,
        (status = 429, description = "The server follows as many streams as it allows (`too_many_streams`)", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = String, description = "Seconds to wait")),
            example = json!({"type": "about:blank", "title": "Too many event streams", "status": 429, "detail": "the server is serving as many event streams as it allows; retry shortly", "code": "too_many_streams"})),
    )
)]
pub async fn batch_events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let uuid = parse_id(&id)?;
    let permit = state
        .event_streams
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::TooManyStreams)?;
    let batch = state
        .batches
        .get(uuid)
        .await?
        .ok_or_else(|| not_found(&id))?;
    let resumed = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u32>().ok());
    let after = resumed.unwrap_or(0);
    // Only a client that saw the `batch` event (whose id is one past the last completion) is
    // told there is nothing more: one that saw the last task but not the end gets the end.
    if resumed.is_some() && batch.is_finished() && after > batch.last_completion() {
        // The client saw the end already: a 200 would replay the `batch` event, and an
        // EventSource would reconnect for ever.
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    tracing::debug!(batch_id = %uuid, after, "event stream opened");
    let follow = Follow {
        _permit: permit,
        state,
        id: uuid,
        batch,
        after,
        queue: VecDeque::new(),
        closed: false,
        progress_sent: None,
        progress_at: None,
    };
    let mut response = Sse::new(follow.into_stream())
        .keep_alive(KeepAlive::default())
        .into_response();
    // Proxies that buffer (nginx) would hold events back until the stream ends.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// One stream's place in one batch.
struct Follow {
    /// Its place among the server's event streams, given back when the stream ends.
    _permit: tokio::sync::OwnedSemaphorePermit,
    state: AppState,
    id: Uuid,
    batch: Arc<Batch>,
    /// The last completion number read.
    after: u32,
    queue: VecDeque<Event>,
    closed: bool,
    progress_sent: Option<(usize, usize)>,
    progress_at: Option<Instant>,
}

impl Follow {
    fn into_stream(self) -> impl Stream<Item = Result<Event, Infallible>> {
        futures::stream::unfold(self, |mut f| async move {
            loop {
                if let Some(event) = f.queue.pop_front() {
                    return Some((Ok(event), f));
                }
                if f.closed {
                    return None;
                }
                f.fill().await;
            }
        })
    }

    /// Queues what ended since the last turn, or waits until something does.
    async fn fill(&mut self) {
        // Registered before the batch is read: a task that ends in between wakes it.
        let batch = self.batch.clone();
        let woken = batch.changed();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let read = self.batch.events_after(self.after, STRETCH);
        let mut queued = 0;
        for task in &read.tasks {
            if queued > QUEUED_BYTES {
                // `after` is the last task queued: the rest is read again next turn.
                return;
            }
            let data = serde_json::to_string(task).expect("a task record always serializes");
            queued += data.len();
            let seq = task.seq.unwrap_or_default();
            self.queue.push_back(
                Event::default()
                    .event("task")
                    .id(seq.to_string())
                    .data(data),
            );
            self.after = self.after.max(seq);
        }
        self.after = read.last;
        if !read.caught_up {
            return;
        }
        if read.finished {
            let batch =
                String::from_utf8(self.batch.to_summary_json()).expect("serde_json writes UTF-8");
            self.queue.push_back(
                Event::default()
                    .event("batch")
                    .id((self.batch.last_completion() + 1).to_string())
                    .data(batch),
            );
            self.closed = true;
            return;
        }
        let now = Instant::now();
        let progress = (read.ended, read.total);
        let changed = self.progress_sent != Some(progress);
        let due = self.progress_at.map_or(now, |at| at + PROGRESS_EVERY);
        if changed && due <= now {
            let data = Progress {
                ended: read.ended,
                tasks: read.total,
            };
            self.queue.push_back(
                Event::default()
                    .event("progress")
                    .json_data(&data)
                    .expect("progress serializes"),
            );
            self.progress_sent = Some(progress);
            self.progress_at = Some(now);
        }
        if !self.queue.is_empty() {
            return;
        }
        if !self.batch.is_live() {
            // Run by another instance: read it again from the store now and then.
            tokio::time::sleep(REMOTE_POLL).await;
            if let Ok(Some(batch)) = self.state.batches.get(self.id).await {
                self.batch = batch;
            }
            return;
        }
        let progress_timer = tokio::time::sleep_until(due);
        tokio::select! {
            () = woken => {}
            _ = progress_timer, if changed => {}
        }
    }
}
