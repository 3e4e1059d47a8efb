//! The batch as answers show it (`POST /batches`, `GET /batches/{id}`, `GET /batches`), and
//! its completions in order for an event stream.

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};
use utoipa::ToSchema;
use uuid::Uuid;

use super::tasks::Tasks;
use super::{Batch, BatchError, BatchStatus, Origin, ShardInfo, ShardStatus, State};
use crate::engine::spec::{Mode, ResultsMode};
use crate::engine::summary::Summary;
use crate::engine::task::{TaskRecord, micros, micros_opt};
use crate::engine::verdict::{Verdict, judge};

/// A stretch of a batch's completions, for an event stream.
#[derive(Debug)]
pub struct Events {
    /// Ended tasks that `results` shows, in completion order.
    pub tasks: Vec<TaskRecord>,
    /// The completion number read up to: where the next call starts.
    pub last: u32,
    /// Nothing ended after `last` (yet).
    pub caught_up: bool,
    /// The batch has finished: with `caught_up`, there will be no more.
    pub finished: bool,
    /// Tasks ended, and tasks in all.
    pub ended: usize,
    pub total: usize,
}

/// A batch as every answer shows it: `POST /batches`, `GET /batches/{id}`.
#[derive(Serialize, ToSchema)]
pub struct BatchView<'a> {
    pub id: Uuid,
    pub mode: Mode,
    pub status: BatchStatus,
    pub label: Option<&'a str>,
    /// Made by `POST /batches/{id}/rerun` from this batch's request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rerun_of: Option<Uuid>,
    #[serde(serialize_with = "micros")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    /// When the batch started running its tasks.
    #[serde(serialize_with = "micros_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<DateTime<Utc>>,
    /// Set when the last task ended: the batch is finished.
    #[serde(serialize_with = "micros_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<DateTime<Utc>>,
    /// From the first task's start to the last task's end (to now while running).
    pub wall_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<BatchError>)]
    pub error: Option<&'a BatchError>,
    pub summary: Summary,
    /// With `thresholds`, once the batch has finished: whether it met them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// gather: every task in input order (filtered by `results`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<TaskRecord>>)]
    pub results: Option<TaskList<'a>>,
    /// wait: ended tasks in completion order (filtered by `results`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<TaskRecord>>)]
    pub done: Option<TaskList<'a>>,
    /// wait: indices of the tasks not ended yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<Vec<u32>>,
    /// Where its work runs: one shard, or a load run's shards (see `--shard-size`). Not in
    /// `GET /batches` lists.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardInfo>,
}

/// Task records, in input order or in a given order, filtered by the batch's `results`.
pub struct TaskList<'a> {
    tasks: &'a Tasks,
    order: Option<&'a [u32]>,
    filter: ResultsMode,
}

impl Serialize for TaskList<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let keep = |t: &&TaskRecord| self.filter.shows(t.error.is_some());
        match self.order {
            None => s.collect_seq(self.tasks.records().filter(keep)),
            Some(order) => s.collect_seq(
                order
                    .iter()
                    .filter_map(|&i| self.tasks.get(i as usize))
                    .filter(keep),
            ),
        }
    }
}

impl Batch {
    /// The summary as answers show it now.
    pub fn summary_now(&self) -> Summary {
        let st = self.state.lock();
        st.summary(st.wall())
    }

    /// The batch without its task results, as `GET /batches` lists it.
    pub fn to_summary_json(&self) -> Vec<u8> {
        let st = self.state.lock();
        let view = self.view(&st, false);
        serde_json::to_vec(&view).expect("a batch view always serializes")
    }

    /// Serializes the batch as the API shows it, under one lock so the view is consistent.
    pub fn to_json(&self) -> Vec<u8> {
        let st = self.state.lock();
        let view = self.view(&st, true);
        serde_json::to_vec(&view).expect("a batch view always serializes")
    }

    fn view<'a>(&'a self, st: &'a State, with_tasks: bool) -> BatchView<'a> {
        let wall = st.wall();
        let filter = self.rules.results;
        let mut summary = st.summary(wall);
        let needed = self.rules.concurrency_needed(&summary);
        if let Some(late) = &mut summary.late {
            late.concurrency_needed = needed;
        }
        let verdict = match (&self.rules.thresholds, st.finished_at) {
            (Some(t), Some(_)) => Some(judge(t, &summary, st.status)),
            _ => None,
        };
        let (results, done, pending) = match self.mode {
            _ if !with_tasks => (None, None, None),
            Mode::Gather => (
                Some(TaskList {
                    tasks: &st.tasks,
                    order: None,
                    filter,
                }),
                None,
                None,
            ),
            Mode::Wait => (
                None,
                Some(TaskList {
                    tasks: &st.tasks,
                    order: Some(&st.done),
                    filter,
                }),
                Some(
                    st.tasks
                        .unfinished()
                        .into_iter()
                        .map(|i| i as u32)
                        .collect(),
                ),
            ),
        };
        let mut shards = self.shards.lock().clone();
        // A batch run here whole: its one shard is where the batch is.
        if let ([shard], Origin::Run { .. }) = (shards.as_mut_slice(), &self.origin) {
            shard.started_at = shard.started_at.or(st.clock.map(|c| c.0));
            shard.finished_at = st.finished_at;
            if st.finished_at.is_some() {
                shard.status = match st.status {
                    BatchStatus::Cancelled => ShardStatus::Cancelled,
                    BatchStatus::Interrupted => ShardStatus::Interrupted,
                    _ => ShardStatus::Completed,
                };
            }
        }
        BatchView {
            shards,
            id: self.id,
            mode: self.mode,
            status: st.status,
            label: self.label.as_deref(),
            rerun_of: self.rules.rerun_of,
            created_at: self.created_at,
            started_at: st.clock.map(|c| c.0),
            finished_at: st.finished_at,
            wall_ms: st.wall_ms(wall),
            error: st.error.as_ref(),
            summary,
            verdict,
            results,
            done,
            pending,
        }
    }

    /// The next ended tasks after completion number `after` (0 for the start), looking at no
    /// more than `max` of them: those that `results` shows, in completion order, under one
    /// lock. A slow reader holds nothing of the batch between calls.
    pub fn events_after(&self, after: u32, max: usize) -> Events {
        let st = self.state.lock();
        let results = self.rules.results;
        let stored = matches!(self.origin, Origin::Stored { .. });
        // A batch run here: `seq` n is `done[n - 1]`. One read back from storage holds only
        // its stored rows, in `seq` order.
        let from = if stored {
            st.done
                .partition_point(|&p| st.tasks.get(p as usize).and_then(|t| t.seq) <= Some(after))
        } else {
            (after as usize).min(st.done.len())
        };
        let to = st.done.len().min(from + max);
        let mut last = if stored { after } else { to as u32 };
        let mut tasks = Vec::new();
        for &i in &st.done[from..to] {
            let task = st.tasks.get(i as usize);
            if let (true, Some(seq)) = (stored, task.and_then(|t| t.seq)) {
                last = seq;
            }
            if let Some(t) = task.filter(|t| results.shows(t.error.is_some())) {
                tasks.push(t.clone());
            }
        }
        Events {
            tasks,
            last,
            caught_up: to == st.done.len(),
            finished: st.finished_at.is_some(),
            ended: st.done.len(),
            total: self.total(&st),
        }
    }
}
