//! Reads that show few or none of a batch's tasks (`GET /batches/{id}?results=none`, the
//! page's timeline and latency): a finished batch read back from storage comes without its
//! task rows, with its totals from its last checkpoint and only the rows a timeline window
//! needs, so that opening a batch of 100,000 tasks reads a few rows, not all of them.

use std::sync::Arc;

use uuid::Uuid;

use super::batches::Batches;
use crate::engine::picture::{COUNTED_ROWS, Cover, Latency, ROW_LIMIT, Timeline, window_bounds};
use crate::engine::spec::ResultsMode;
use crate::engine::summary::{LatencyMetric, SummaryAcc};
use crate::engine::task::TaskRecord;
use crate::engine::{Batch, BatchStatus};
use crate::store::{RowWindow, StoreError};

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

/// A batch as its picture is drawn from.
enum Drawn {
    Missing,
    /// With its rows (and its totals, when it has them: see [`Batches::totals`]).
    Whole(Arc<Batch>),
    /// Finished, read back without its rows, with its merged totals.
    Head(Arc<Batch>, Box<SummaryAcc>),
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

    /// [`Batches::find`] for a picture: a head needs its totals, and a batch whose
    /// checkpoints keep none (fewer than 1,000 tasks, all with rows) is read whole to count
    /// them from its rows.
    async fn find_drawn(&self, id: Uuid) -> Result<Drawn, StoreError> {
        Ok(match self.find(id).await? {
            Found::Missing => Drawn::Missing,
            Found::Whole(b) => Drawn::Whole(b),
            Found::Head(head) => match self.store.totals(id).await? {
                Some(totals) => Drawn::Head(head, Box::new(totals)),
                None => self
                    .store
                    .load(id)
                    .await?
                    .map_or(Drawn::Missing, Drawn::Whole),
            },
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
        Ok(match self.find_drawn(id).await? {
            Drawn::Missing => None,
            Drawn::Whole(b) => {
                let totals = self.totals(&b).await?;
                Some(b.timeline(totals.as_ref(), from_ms, to_ms, bins))
            }
            Drawn::Head(head, totals) => {
                let (rows, cover) = self.window_rows(&head, from_ms, to_ms).await?;
                Some(head.timeline_of(&totals, &rows, cover, from_ms, to_ms, bins))
            }
        })
    }

    /// The rows a window of a finished batch read back needs: every task that ran in it when
    /// they are few enough to count its bins from, else the tasks that started in it for its
    /// bars. A store that keeps its batches whole gives none, and none are needed: such a
    /// batch is never a head with totals.
    async fn window_rows(
        &self,
        head: &Batch,
        from_ms: Option<f64>,
        to_ms: Option<f64>,
    ) -> Result<(Vec<TaskRecord>, Cover), StoreError> {
        let (started_at, span_ms) = head.span();
        let (start, end) = window_bounds(started_at, span_ms, from_ms, to_ms);
        let (mut records, cover) = 'read: {
            if head.rules().results == ResultsMode::All {
                let ran = RowWindow {
                    started_before: end,
                    ended_from: start,
                    ..RowWindow::default()
                };
                let rows = self.store.rows(head.id, ran, COUNTED_ROWS).await?;
                if let Some(rows) = rows.filter(|r| r.matched <= COUNTED_ROWS) {
                    break 'read (rows.records, Cover::Window);
                }
            }
            let started = RowWindow {
                started_from: start,
                started_before: end,
                ..RowWindow::default()
            };
            match self.store.rows(head.id, started, BAR_ROWS).await? {
                Some(rows) if rows.matched <= BAR_ROWS => (rows.records, Cover::Starts),
                _ => (Vec::new(), Cover::Some),
            }
        };
        if head.status() == BatchStatus::Interrupted {
            // As `load` reads them: what had not ended when the process stopped.
            records.iter_mut().for_each(TaskRecord::interrupt);
        }
        Ok((records, cover))
    }

    /// A batch's latency distribution (see [`Batch::latency`]).
    pub async fn latency(
        &self,
        id: Uuid,
        metric: LatencyMetric,
    ) -> Result<Option<Latency>, StoreError> {
        Ok(match self.find_drawn(id).await? {
            Drawn::Missing => None,
            Drawn::Whole(b) => {
                let totals = self.totals(&b).await?;
                Some(b.latency(totals.as_ref(), metric))
            }
            Drawn::Head(head, totals) => Some(head.latency(Some(&totals), metric)),
        })
    }
}
