//! A batch's task records: every task's in full (`results: all`), or for a load run a status
//! byte per task and records only for the tasks that answers show.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Utc};
use rustc_hash::FxHashMap;

use super::wall_time;
use crate::engine::spec::{Kind, ResultsMode};
use crate::engine::task::{TaskRecord, TaskStatus, ms};

/// Each job's `id` and kind, for the records of tasks made as they start.
pub(super) type JobLabels = [(Option<String>, Kind)];

/// The batch's tasks. With `results: all`, every task's record (in index order; for a batch
/// read back from storage, in stored order). Otherwise each task's status, when the running
/// ones started, and records only for the tasks that answers show: a million-request load run
/// with `results: none` keeps a byte per request.
pub(super) enum Tasks {
    All(Vec<TaskRecord>),
    Sparse {
        status: Vec<TaskStatus>,
        running: FxHashMap<u32, Run>,
        kept: BTreeMap<u32, TaskRecord>,
    },
}

/// A running task of a sparse list.
#[derive(Debug, Clone, Copy)]
pub(super) struct Run {
    at: Instant,
    warmup: bool,
}

impl Tasks {
    pub(super) fn new(results: ResultsMode) -> Tasks {
        match results {
            ResultsMode::All => Tasks::All(Vec::new()),
            _ => Tasks::Sparse {
                status: Vec::new(),
                running: FxHashMap::default(),
                kept: BTreeMap::new(),
            },
        }
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Tasks::All(all) => all.len(),
            Tasks::Sparse { status, .. } => status.len(),
        }
    }

    /// Adds pending tasks up to `len`.
    pub(super) fn grow(&mut self, len: usize, jobs: &JobLabels) {
        match self {
            Tasks::All(all) => {
                let more = len.saturating_sub(all.len());
                if all.is_empty() {
                    // A batch's whole task list at once: exactly (`reserve` rounds a
                    // one-task batch up to room for four records, 900 bytes more).
                    all.reserve_exact(more);
                } else {
                    // A run for a duration grows as it goes.
                    all.reserve(more);
                }
                while all.len() < len {
                    all.push(pending(all.len(), jobs));
                }
            }
            Tasks::Sparse { status, .. } => {
                status.resize(len.max(status.len()), TaskStatus::Pending)
            }
        }
    }

    pub(super) fn status(&self, index: usize) -> TaskStatus {
        match self {
            Tasks::All(all) => all[index].status,
            Tasks::Sparse { status, .. } => status[index],
        }
    }

    pub(super) fn get(&self, index: usize) -> Option<&TaskRecord> {
        match self {
            Tasks::All(all) => all.get(index),
            Tasks::Sparse { kept, .. } => kept.get(&(index as u32)),
        }
    }

    /// A pending task started at `at`.
    pub(super) fn start(
        &mut self,
        index: usize,
        at: Instant,
        warmup: bool,
        clock: (DateTime<Utc>, Instant),
    ) {
        match self {
            Tasks::All(all) => {
                let task = &mut all[index];
                task.status = TaskStatus::Running;
                task.warmup = warmup;
                task.timing.queued_ms = Some(ms(at.saturating_duration_since(clock.1)));
                task.timing.started_at = Some(wall_time(clock, at));
            }
            Tasks::Sparse {
                status, running, ..
            } => {
                status[index] = TaskStatus::Running;
                running.insert(index as u32, Run { at, warmup });
            }
        }
    }

    pub(super) fn is_warmup(&self, index: usize) -> bool {
        match self {
            Tasks::All(all) => all[index].warmup,
            Tasks::Sparse { running, .. } => running.get(&(index as u32)).is_some_and(|r| r.warmup),
        }
    }

    /// When a running task started.
    pub(super) fn started_at(
        &self,
        index: usize,
        clock: (DateTime<Utc>, Instant),
    ) -> Option<Instant> {
        match self {
            Tasks::All(all) => {
                let offset = (all[index].timing.started_at? - clock.0).to_std().ok()?;
                Some(clock.1 + offset)
            }
            Tasks::Sparse { running, .. } => running.get(&(index as u32)).map(|r| r.at),
        }
    }

    /// The task ended `to`: its record to fill in, when it keeps one (every task with
    /// `results: all`; otherwise the shown ones, made now).
    pub(super) fn ended(
        &mut self,
        index: usize,
        to: TaskStatus,
        shown: bool,
        jobs: &JobLabels,
        clock: Option<(DateTime<Utc>, Instant)>,
    ) -> Option<&mut TaskRecord> {
        match self {
            Tasks::All(all) => all.get_mut(index),
            Tasks::Sparse {
                status,
                running,
                kept,
            } => {
                status[index] = to;
                let run = running.remove(&(index as u32));
                if !shown {
                    return None;
                }
                let mut task = pending(index, jobs);
                if let (Some(run), Some(clock)) = (run, clock) {
                    task.warmup = run.warmup;
                    task.timing.queued_ms = Some(ms(run.at.saturating_duration_since(clock.1)));
                    task.timing.started_at = Some(wall_time(clock, run.at));
                }
                let slot = kept.entry(index as u32).insert_entry(task);
                Some(slot.into_mut())
            }
        }
    }

    /// Records in index order: every task, or the shown ones.
    pub(super) fn records(&self) -> Box<dyn Iterator<Item = &TaskRecord> + '_> {
        match self {
            Tasks::All(all) => Box::new(all.iter()),
            Tasks::Sparse { kept, .. } => Box::new(kept.values()),
        }
    }

    /// A task that ended in an earlier run, as stored.
    pub(super) fn restore(&mut self, task: TaskRecord) {
        let i = task.index as usize;
        match self {
            Tasks::All(all) => all[i] = task,
            Tasks::Sparse { status, kept, .. } => {
                status[i] = task.status;
                kept.insert(task.index, task);
            }
        }
    }

    /// A task that ended in an earlier run without a stored row (one `results` does not
    /// show): its outcome is in the summary; here it is only ended.
    pub(super) fn restore_unshown(&mut self, index: usize) {
        if let Tasks::Sparse { status, .. } = self {
            status[index] = TaskStatus::Succeeded;
        }
    }

    /// Indices of the tasks not ended yet.
    pub(super) fn unfinished(&self) -> Vec<usize> {
        match self {
            Tasks::All(all) => all
                .iter()
                .filter(|t| !t.status.is_finished())
                .map(|t| t.index as usize)
                .collect(),
            Tasks::Sparse { status, .. } => (0..status.len())
                .filter(|&i| !status[i].is_finished())
                .collect(),
        }
    }
}

/// Task `index` before it starts: it runs job `index % jobs.len()`.
fn pending(index: usize, jobs: &JobLabels) -> TaskRecord {
    let (id, kind) = jobs
        .get(index % jobs.len().max(1))
        .cloned()
        .unwrap_or((None, Kind::Sleep));
    TaskRecord::pending(index as u32, id, kind)
}
