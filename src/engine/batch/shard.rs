//! A batch's shards as the engine sees them: what answers show of each, the checkpoint a
//! running shard leaves in storage, and a run resumed from one after its instance was lost.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::tasks::Tasks;
use super::{Batch, SummaryState};
use crate::engine::meter::Meter;
use crate::engine::spec::{BatchSpec, ResultsMode};
use crate::engine::summary::{Lost, SummaryAcc};
use crate::engine::task::{TaskRecord, TaskStatus, micros_opt};
use uuid::Uuid;

/// Where a shard is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ShardStatus {
    /// Waiting for a worker with room (never claimed, or its instance was lost).
    Queued,
    Running,
    /// Every task of it ended.
    Completed,
    Cancelled,
    /// Its instance was lost and the batch's `on_lost` is `interrupt`, or it stopped with
    /// its process.
    Interrupted,
}

impl ShardStatus {
    pub fn is_finished(self) -> bool {
        !matches!(self, ShardStatus::Queued | ShardStatus::Running)
    }
}

/// One shard of a batch, as every batch answer lists it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ShardInfo {
    pub index: u32,
    /// Its tasks: batch task numbers `index`, `index + shards`, ...
    pub tasks: u64,
    /// The instance running it (or that ran it last).
    pub instance_id: Option<String>,
    /// How many times it was claimed.
    pub attempt: u64,
    pub status: ShardStatus,
    #[serde(serialize_with = "micros_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "micros_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<DateTime<Utc>>,
}

/// What a running shard has done, as storage keeps it (at least once a second): a run that
/// claims the shard again starts from here.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Tasks started so far (some may still run).
    pub started: u64,
    /// Tasks ended so far.
    pub ended: u64,
    /// Which tasks ended, one bit each (base64), whenever `acc` is there: the tasks its
    /// totals cover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_bits: Option<String>,
    /// The summary's totals, when the rows cannot rebuild them (as above), and for a shard
    /// of a sharded batch, whose totals are added to the others'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acc: Option<SummaryAcc>,
    /// Which tasks were running, one bit each (base64), when some were and `results` shows
    /// any task: a run that claims the shard again runs them again, and their `attempts`
    /// count on from this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_bits: Option<String>,
    /// `[task, attempts]` of the run's tasks not ended yet that ran in earlier, lost runs of
    /// the shard: what their `attempts` count on from, through further losses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts_before: Vec<[u32; 2]>,
}

/// What a resumed run starts from: the shard's stored rows (positions within the run) and
/// its last checkpoint.
#[derive(Debug, Default)]
pub struct Prior {
    pub rows: Vec<TaskRecord>,
    pub checkpoint: Option<Checkpoint>,
    /// The gap this resumption closes.
    pub lost: Option<Lost>,
}

fn bits_to_base64(bits: impl Iterator<Item = bool>, len: usize) -> String {
    let mut bytes = vec![0u8; len.div_ceil(8)];
    for (i, b) in bits.enumerate() {
        if b {
            bytes[i / 8] |= 1 << (i % 8);
        }
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn base64_to_bits(text: &str, len: usize) -> Vec<bool> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap_or_default();
    (0..len)
        .map(|i| bytes.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0))
        .collect()
}

/// What the tasks a resumed run starts again had run before (see [`Batch::resume`]): the
/// attempts of earlier lost runs, plus one for each task running at the checkpoint.
fn attempts_before(c: &Checkpoint, ended: &[bool]) -> HashMap<u32, u32> {
    let unended = |i: usize| ended.get(i).is_some_and(|e| !e);
    let mut before: HashMap<u32, u32> = c
        .attempts_before
        .iter()
        .filter(|[i, _]| unended(*i as usize))
        .map(|[i, n]| (*i, *n))
        .collect();
    if let Some(bits) = &c.running_bits {
        for (i, running) in base64_to_bits(bits, ended.len()).into_iter().enumerate() {
            if running && unended(i) {
                *before.entry(i as u32).or_default() += 1;
            }
        }
    }
    before
}

impl Batch {
    /// The run's checkpoint now, under one lock. `with_acc`: include the summary's totals
    /// (always included when the task rows cannot rebuild them).
    pub fn checkpoint(&self, with_acc: bool) -> Checkpoint {
        let st = self.state.lock();
        let sparse = matches!(st.tasks, Tasks::Sparse { .. });
        let len = st.tasks.len();
        let ended_bits =
            sparse.then(|| bits_to_base64((0..len).map(|i| st.tasks.status(i).is_finished()), len));
        let acc = match &st.summary {
            SummaryState::Live(acc) if with_acc || sparse || acc.has_parts() => Some(acc.clone()),
            // Finished and packed: the last checkpoint is written from the packed totals.
            SummaryState::Packed { totals, .. } => serde_json::from_str::<SummaryAcc>(totals)
                .ok()
                .filter(|acc| with_acc || sparse || acc.has_parts()),
            _ => None,
        };
        let running = |i: usize| st.tasks.status(i) == TaskStatus::Running;
        // With `results: none` no answer shows a task's attempts.
        let running_bits = (self.rules.results != ResultsMode::None && (0..len).any(running))
            .then(|| bits_to_base64((0..len).map(running), len));
        let attempts_before = self
            .attempts_before
            .iter()
            .flat_map(|before| before.iter())
            .filter(|(i, _)| !st.tasks.status(**i as usize).is_finished())
            .map(|(i, n)| [*i, *n])
            .collect();
        Checkpoint {
            started: st.started,
            ended: st.done.len() as u64,
            ended_bits,
            acc,
            running_bits,
            attempts_before,
        }
    }

    /// A run of `spec` that picks up where a lost one left off: the tasks that ended keep
    /// their outcome (and are not run or counted again); the run starts the others. Those the
    /// lost run had started (running at its last checkpoint) count their `attempts` on from
    /// it: one more for the lost run, on top of what earlier lost runs gave them. A task
    /// that started after that checkpoint is not known to have run, and starts from 0 (or
    /// from its earlier runs'); retries within the lost run are not known either, so the lost
    /// run counts as one attempt.
    pub fn resume(
        id: Uuid,
        created_at: DateTime<Utc>,
        spec: &BatchSpec,
        meter: &'static dyn Meter,
        prior: Prior,
    ) -> Arc<Batch> {
        let mut batch = Batch::make(id, spec, meter);
        batch.created_at = created_at;
        let mut checkpoint = prior.checkpoint;
        let mut ended = vec![false; spec.tasks().unwrap_or(0)];
        {
            let st = batch.state.get_mut();
            let len = st.tasks.len();
            let bits = checkpoint
                .as_ref()
                .and_then(|c| c.ended_bits.as_deref())
                .map(|b| base64_to_bits(b, len));
            // With totals from the checkpoint, only the tasks it covers count as ended; a row
            // written after it is of a task that runs again.
            let covered = |i: usize| {
                bits.as_ref()
                    .is_none_or(|b| b.get(i).copied().unwrap_or(false))
            };
            let mut rows: Vec<TaskRecord> = prior
                .rows
                .into_iter()
                .filter(|t| (t.index as usize) < len && t.status.is_finished())
                .filter(|t| covered(t.index as usize))
                .collect();
            rows.sort_by_key(|t| t.seq);
            let acc = checkpoint.as_mut().and_then(|c| c.acc.take());
            let rebuild = acc.is_none();
            if let (SummaryState::Live(live), Some(acc)) = (&mut st.summary, acc) {
                *live = acc;
            }
            for t in rows {
                let i = t.index as usize;
                ended[i] = true;
                st.done.push(i as u32);
                if rebuild && let SummaryState::Live(acc) = &mut st.summary {
                    acc.record_stored(&t);
                }
                st.tasks.restore(t);
            }
            // Tasks the rows do not show (a load run's successes): only their status.
            for (i, _) in bits.iter().flatten().enumerate().filter(|(_, b)| **b) {
                if !ended[i] {
                    ended[i] = true;
                    st.done.push(i as u32);
                    st.tasks.restore_unshown(i);
                }
            }
            st.started = st.done.len() as u64;
            if let (SummaryState::Live(acc), Some(lost)) = (&mut st.summary, prior.lost) {
                acc.lose(lost);
            }
        }
        if let Some(c) = &checkpoint {
            let before = attempts_before(c, &ended);
            batch.attempts_before = (!before.is_empty()).then(|| Box::new(before));
        }
        batch.ended_before = Some(ended.into());
        Arc::new(batch)
    }

    /// A resumed run: which tasks ended before it started (they are not handed out again).
    pub fn ended_before(&self) -> Option<Arc<[bool]>> {
        self.ended_before.clone()
    }

    /// The shards answers list (set by whoever runs or reads the batch).
    pub fn set_shards(&self, shards: Vec<ShardInfo>) {
        *self.shards.lock() = shards;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_round_trip() {
        let bits = [
            true, false, false, true, true, false, false, false, true, true,
        ];
        let text = bits_to_base64(bits.iter().copied(), bits.len());
        assert_eq!(base64_to_bits(&text, bits.len()), bits);
    }
}
