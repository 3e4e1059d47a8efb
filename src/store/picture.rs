//! Reads that show few or none of a batch's tasks (`GET /batches/{id}?results=none`, the
//! page's timeline and latency): a finished batch read back from storage comes without its
//! task rows, with its totals from its last checkpoint and only the rows a timeline window
//! needs, so that opening a batch of 100,000 tasks reads a few rows, not all of them.

use std::sync::Arc;

use uuid::Uuid;

use super::batches::Batches;
use super::{RowWindow, StoreError};
use crate::engine::Batch;
use crate::engine::picture::{COUNTED_ROWS, Cover, Latency, ROW_LIMIT, Timeline, window_bounds};
use crate::engine::spec::ResultsMode;
use crate::engine::summary::LatencyMetric;
use crate::engine::task::TaskRecord;

/// Most rows read for a window's task bars: twice what it shows, for the rows of the slack
/// each side of the window (see [`window_bounds`]).
const BAR_ROWS: usize = ROW_LIMIT * 2;

/// A batch as a read that needs few of its rows finds it.
enum Found {
    Missing,
    /// Run here, or read back whole (it has not finished, or the store keeps it in memory).
    Whole(Arc<Batch>),
    /// Finished and read back without its task rows.
    Head(Arc<Batch>),
}

impl Batches {
    async fn find(&self, id: Uuid) -> Result<Found, StoreError> {
        if let Some(b) = self.live.read().get(&id) {
            return Ok(Found::Whole(b.clone()));
        }
        Ok(match self.store.load_head(id).await? {
            None => Found::Missing,
            Some(head) if head.is_finished() => Found::Head(head),
            // Running elsewhere: read whole, its summary so far counted from its rows.
            Some(whole) => Found::Whole(whole),
        })
    }

    /// A batch for an answer without its task lists: a finished one read back without its
    /// rows (its stored summary is whole).
    pub async fn get_without_tasks(&self, id: Uuid) -> Result<Option<Arc<Batch>>, StoreError> {
        Ok(match self.find(id).await? {
            Found::Missing => None,
            Found::Whole(b) | Found::Head(b) => Some(b),
        })
    }

    /// A batch's timeline (see [`Batch::timeline`]).
    pub async fn timeline(
        &self,
        id: Uuid,
        from_ms: Option<f64>,
        to_ms: Option<f64>,
        bins: usize,
    ) -> Result<Option<Timeline>, StoreError> {
        let head = match self.find(id).await? {
            Found::Missing => return Ok(None),
            Found::Whole(b) => {
                let totals = self.totals(&b).await?;
                return Ok(Some(b.timeline(totals.as_ref(), from_ms, to_ms, bins)));
            }
            Found::Head(head) => head,
        };
        // Without totals (a small batch's last checkpoint keeps none), its rows rebuild them.
        let whole = async {
            let whole = self.store.load(id).await?;
            Ok(whole.map(|b| b.timeline(None, from_ms, to_ms, bins)))
        };
        let Some(totals) = self.store.totals(id).await? else {
            return whole.await;
        };
        let Some((rows, cover)) = self.window_rows(&head, from_ms, to_ms).await? else {
            return whole.await;
        };
        Ok(Some(
            head.timeline_of(&totals, &rows, cover, from_ms, to_ms, bins),
        ))
    }

    /// The rows a window of a finished batch needs: every task that ran in it when they are
    /// few enough to count its bins from, else the tasks that started in it for its bars.
    /// `None` when the store keeps its batches whole.
    async fn window_rows(
        &self,
        head: &Batch,
        from_ms: Option<f64>,
        to_ms: Option<f64>,
    ) -> Result<Option<(Vec<TaskRecord>, Cover)>, StoreError> {
        let (started_at, span_ms) = head.span();
        let (start, end) = window_bounds(started_at, span_ms, from_ms, to_ms);
        if head.rules().results == ResultsMode::All {
            let ran = RowWindow {
                started_before: end,
                ended_from: start,
                ..RowWindow::default()
            };
            match self.store.rows(head.id, ran, COUNTED_ROWS).await? {
                None => return Ok(None),
                Some(rows) if rows.matched <= COUNTED_ROWS => {
                    return Ok(Some((rows.records, Cover::Window)));
                }
                Some(_) => {}
            }
        }
        let started = RowWindow {
            started_from: start,
            started_before: end,
            ..RowWindow::default()
        };
        Ok(self
            .store
            .rows(head.id, started, BAR_ROWS)
            .await?
            .map(|rows| {
                if rows.matched <= BAR_ROWS {
                    (rows.records, Cover::Starts)
                } else {
                    (Vec::new(), Cover::Some)
                }
            }))
    }

    /// A batch's latency distribution (see [`Batch::latency`]).
    pub async fn latency(
        &self,
        id: Uuid,
        metric: LatencyMetric,
    ) -> Result<Option<Latency>, StoreError> {
        let batch = match self.find(id).await? {
            Found::Missing => return Ok(None),
            Found::Whole(b) => b,
            Found::Head(head) => match self.store.totals(id).await? {
                Some(totals) => return Ok(Some(head.latency(Some(&totals), metric))),
                None => match self.store.load(id).await? {
                    Some(b) => b,
                    None => return Ok(None),
                },
            },
        };
        let totals = self.totals(&batch).await?;
        Ok(Some(batch.latency(totals.as_ref(), metric)))
    }
}
