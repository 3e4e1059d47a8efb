//! The batch as storage sees it: the fields and tasks a writer takes from a running batch, and
//! the record a stored batch is read back from.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::tasks::Tasks;
use super::{
    Batch, BatchError, BatchStatus, Origin, Phase, Rules, ShardInfo, Signal, State, SummaryState,
};
use crate::engine::meter::NO_METER;
use crate::engine::spec::Mode;
use crate::engine::summary::{Summary, SummaryAcc};
use crate::engine::task::TaskRecord;

/// A batch as read back from storage: what [`Batch::restore`] needs.
#[derive(Debug)]
pub struct BatchRecord {
    pub id: Uuid,
    pub mode: Mode,
    pub label: Option<String>,
    pub created_at: DateTime<Utc>,
    pub rules: Rules,
    /// The batch-level fields as last written; `summary` only once it ended (before that it
    /// is rebuilt from the task rows).
    pub meta: BatchMeta,
    /// With `results: all`, every task in index order (tasks without a stored row are
    /// `pending` placeholders); otherwise only the stored rows.
    pub tasks: Vec<TaskRecord>,
    /// Its shards as stored (empty in a list, which does not show them).
    pub shards: Vec<ShardInfo>,
}

/// The batch-level fields storage writes, taken under one lock.
#[derive(Debug, Clone)]
pub struct BatchMeta {
    pub status: BatchStatus,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub wall_ms: Option<f64>,
    pub error: Option<BatchError>,
    /// Tasks so far (a load run for a duration makes them as it goes).
    pub tasks_total: usize,
    /// Set once the batch has finished.
    pub summary: Option<Summary>,
}

/// What a storage writer has not written yet of a batch ([`Batch::changes_since`]).
#[derive(Debug)]
pub struct Changes {
    /// Tasks that ended since, in completion order; only those `results` shows.
    pub tasks: Vec<TaskRecord>,
    /// How many tasks have ended in all: where the next call starts.
    pub ended: usize,
    pub meta: BatchMeta,
}

impl Batch {
    /// The batch-level fields as they are now (the summary once the batch has finished).
    pub fn meta(&self) -> BatchMeta {
        self.state.lock().meta()
    }

    /// What a storage writer has not written yet, under one lock: the tasks that ended after
    /// the first `from` of them and the batch's fields. When `meta.finished_at` is set, every
    /// task has ended and is included.
    pub fn changes_since(&self, from: usize) -> Changes {
        let st = self.state.lock();
        let results = self.rules.results;
        let tasks = st.done[from.min(st.done.len())..]
            .iter()
            .filter_map(|&i| st.tasks.get(i as usize))
            .filter(|t| results.shows(t.error.is_some()))
            .cloned()
            .collect();
        Changes {
            tasks,
            ended: st.done.len(),
            meta: st.meta(),
        }
    }

    /// A batch read back from storage. Finished batches are complete; one still running
    /// elsewhere shows what has been stored of it so far.
    pub fn restore(record: BatchRecord) -> Arc<Batch> {
        let meta = record.meta;
        let finished = meta.finished_at.is_some();
        // Positions in `tasks` (the stored rows may be only some of the tasks).
        let mut done: Vec<u32> = (0..record.tasks.len() as u32)
            .filter(|&p| record.tasks[p as usize].seq.is_some())
            .collect();
        done.sort_by_key(|&p| record.tasks[p as usize].seq);
        let summary = match meta.summary {
            Some(summary) => SummaryState::Stored(Box::new(summary), meta.wall_ms),
            None => SummaryState::Stored(
                Box::new(rebuilt_summary(
                    &record.tasks,
                    meta.tasks_total,
                    meta.wall_ms,
                )),
                meta.wall_ms,
            ),
        };
        Arc::new(Batch {
            id: record.id,
            mode: record.mode,
            label: record.label,
            created_at: record.created_at,
            rules: record.rules,
            origin: Origin::Stored {
                total: meta.tasks_total,
            },
            meter: NO_METER,
            cancel: CancellationToken::new(),
            no_more: CancellationToken::new(),
            signal: Signal::new(if finished {
                Phase::Finished
            } else {
                Phase::Answered
            }),
            state: Mutex::new(State {
                status: meta.status,
                clock: meta.started_at.map(|s| (s, Instant::now())),
                first_start: None,
                last_end: None,
                finished_at: meta.finished_at,
                error: meta.error,
                measured_from: None,
                tasks: Tasks::All(record.tasks),
                started: done.len() as u64,
                done,
                summary,
                stop_reason: None,
            }),
            ended_before: None,
            attempts_before: None,
            shards: Mutex::new(record.shards),
            placing: None,
        })
    }
}

/// The summary of a batch stored before it finished, from its stored task rows.
fn rebuilt_summary(tasks: &[TaskRecord], total: usize, wall_ms: Option<f64>) -> Summary {
    let mut acc = SummaryAcc::new(total as u64);
    for t in tasks.iter().filter(|t| t.status.is_finished()) {
        acc.record_stored(t);
    }
    acc.summary(wall_ms.map(|w| Duration::from_micros((w * 1000.0) as u64)))
}

impl State {
    fn meta(&self) -> BatchMeta {
        let wall = self.wall();
        BatchMeta {
            status: self.status,
            started_at: self.clock.map(|c| c.0),
            finished_at: self.finished_at,
            wall_ms: self.wall_ms(wall),
            error: self.error.clone(),
            tasks_total: self.tasks.len(),
            // Only a finished batch's summary is stored; computing it on every write of a
            // running batch would be work thrown away.
            summary: self.finished_at.map(|_| self.summary(wall)),
        }
    }
}
