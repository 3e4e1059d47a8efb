//! A batch's live state: every task's record, the completion order, the summary accumulators
//! and the batch's own status. The runner reports tasks into it as they start and end; readers
//! (the HTTP layer, the store) take consistent snapshots of it.
//!
//! - [`rules`]: what a task's end or a deadline does to the batch (gather's and wait's rules).
//! - `tasks`: how the task records are kept (all of them, or sparse for a load run).
//! - [`view`]: the batch as answers show it, and its completions for event streams.
//! - [`stored`]: the batch as storage writes it and reads it back.
//! - `signal`: how far the batch has come, and its followers' wake-up.
//! - `deadlines`: how it stops (a stop reason, a client's cancel, its deadlines).
//! - `finishing`: how it finishes once every task ended or was dropped.
//! - `packing`: its summary while it runs, as stored, and packed once finished.

mod deadlines;
mod finishing;
mod packing;
pub mod parts;
mod picture;
pub mod rules;
pub mod shard;
mod signal;
pub mod stored;
mod tasks;
#[cfg(test)]
mod tests;
pub mod view;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::futures::Notified;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;
use uuid::Uuid;

use super::check::JobChecks;
use super::meter::Meter;
use super::spec::{BatchSpec, Kind, Mode};
use super::summary::SummaryAcc;
use super::task::{ErrorCode, NetTiming, TaskError, TaskOutput, TaskStatus, ms};
use packing::SummaryState;
pub use rules::{Rules, StopReason};
pub use shard::{Checkpoint, Prior, ShardInfo, ShardStatus};
pub use signal::Phase;
use signal::Signal;
pub use stored::{BatchMeta, BatchRecord};
use tasks::{JobLabels, Tasks};
pub use view::{BatchView, Events};

/// A batch's status. A batch is finished when `finished_at` is set (its last task ended);
/// `failed` can be set before that, when gather saw a failure and answered early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BatchStatus {
    Running,
    /// Every task ended, however each ended.
    Completed,
    /// gather without `return_exceptions` saw a failure, or its deadline passed.
    Failed,
    /// Cancelled by a client.
    Cancelled,
    /// The process stopped while it ran.
    Interrupted,
}

/// Why a gather batch failed: the first failure (or the deadline).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BatchError {
    /// The task whose failure failed the batch; null when the batch deadline passed.
    pub index: Option<u32>,
    pub code: ErrorCode,
    pub message: String,
}

/// How one task ended, as the runner reports it.
#[derive(Debug)]
pub struct Outcome {
    pub attempts: u32,
    pub output: Option<TaskOutput>,
    pub error: Option<TaskError>,
    /// An HTTP attempt's phases, when they were timed.
    pub net: Option<NetTiming>,
    /// The job's checks, when the answer was judged by them (its output says which passed).
    pub checks: Option<Arc<JobChecks>>,
}

/// A task that just started, as its driver reports it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Started {
    pub index: usize,
    /// When it started; for an open model run, when it was meant to (its latency counts
    /// from there).
    pub at: Instant,
    /// How long after its intended time it actually started (open model only).
    pub lag: Option<Duration>,
    pub warmup: bool,
}

/// A task that ended, as its driver reports it.
pub(crate) struct Ended {
    pub index: usize,
    /// Where its latency counts from: its start, or in the open model its intended start.
    pub started: Instant,
    pub ended: Instant,
    pub outcome: Outcome,
}

/// Wall-clock and monotonic time of a batch's start: task times derive from both so that
/// timestamps and durations agree.
type Clock = (DateTime<Utc>, Instant);

/// The wall-clock time of instant `t`.
fn wall_time(clock: Clock, t: Instant) -> DateTime<Utc> {
    clock.0 + t.saturating_duration_since(clock.1)
}

/// Where a batch's state comes from, which decides how its records are laid out.
enum Origin {
    /// Run by this process: task records are made from `jobs` (each job's `id` and kind) as
    /// the tasks start, and `done` holds task indices. `dynamic`: tasks are made as they start
    /// (a load run for a duration, or with a warm-up) rather than all at the start.
    Run { jobs: Box<JobLabels>, dynamic: bool },
    /// Read back from storage: its rows may be only the shown tasks, so `done` holds positions
    /// among the rows, and `total` is the task count as stored.
    Stored { total: usize },
}

/// A batch while it runs and after: the single place its state lives in memory.
pub struct Batch {
    pub id: Uuid,
    pub mode: Mode,
    pub label: Option<String>,
    pub created_at: DateTime<Utc>,
    /// What the answer condition and the views need from the request.
    rules: Rules,
    origin: Origin,
    /// Where task and batch counts are reported (the metrics, for a served batch).
    meter: &'static dyn Meter,
    /// Cancelled to stop every unfinished task; `stop_reason` says what they become.
    cancel: CancellationToken,
    /// Cancelled to start no more tasks and let the running ones end.
    no_more: CancellationToken,
    /// Watchers wake when the answer is ready, when the batch ends, and after each burst of
    /// ended tasks (event streams).
    signal: Signal,
    state: Mutex<State>,
    /// A run resumed after a loss: the tasks that had ended (see [`Batch::resume`]).
    ended_before: Option<Arc<[bool]>>,
    /// A run resumed after a loss: the attempts that tasks it runs again had in lost runs,
    /// which their `attempts` count on from (SPEC: a re-run's `attempts` counts on). Boxed,
    /// and absent but in such a run: every in-flight batch carries the field.
    #[allow(clippy::box_collection)] // 8 bytes in every batch, not a HashMap's 48
    attempts_before: Option<Box<HashMap<u32, u32>>>,
    /// The batch's shards, as answers list them.
    shards: Mutex<Vec<ShardInfo>>,
    /// A load run whose summary breaks down by job or stage: where each task counts.
    placing: Option<parts::Placing>,
}

struct State {
    status: BatchStatus,
    clock: Option<Clock>,
    /// First task start and last task end, for `wall_ms`.
    first_start: Option<Instant>,
    last_end: Option<Instant>,
    finished_at: Option<DateTime<Utc>>,
    error: Option<BatchError>,
    /// First start of a task outside the warm-up: where throughput is counted from.
    measured_from: Option<Instant>,
    tasks: Tasks,
    /// Tasks in completion order (see [`Origin`] for what the numbers are); `seq` is a
    /// position here plus one.
    done: Vec<u32>,
    /// Tasks started so far (for a checkpoint).
    started: u64,
    summary: SummaryState,
    stop_reason: Option<StopReason>,
}

impl Batch {
    /// A batch about to run here, reporting to `meter`.
    pub fn new(id: Uuid, spec: &BatchSpec, meter: &'static dyn Meter) -> Arc<Batch> {
        Arc::new(Batch::make(id, spec, meter))
    }

    fn make(id: Uuid, spec: &BatchSpec, meter: &'static dyn Meter) -> Batch {
        let jobs: Box<JobLabels> = spec
            .jobs
            .iter()
            .map(|j| (j.id.clone(), j.kind.kind()))
            .collect();
        let fixed = spec.tasks();
        let mut tasks = Tasks::new(spec.results);
        tasks.grow(fixed.unwrap_or(0), &jobs);
        let mut acc = SummaryAcc::new(fixed.unwrap_or(0) as u64);
        if spec.load.is_open() {
            acc = acc.open();
        }
        acc = acc
            .with_checks(spec.check_names())
            .with_flows(spec.jobs.iter().any(|j| j.kind.kind() == Kind::Flow));
        let (placing, acc) = parts::Placing::of(spec, acc);
        Batch {
            id,
            mode: spec.mode,
            label: spec.label.clone(),
            created_at: Utc::now(),
            rules: Rules {
                return_exceptions: spec.return_exceptions,
                fail_fast: spec.fail_fast,
                return_when: spec.return_when,
                on_timeout: spec.on_timeout,
                results: spec.results,
                concurrency: spec.concurrency,
                timeout_ms: spec.timeout.map(|t| t.as_millis() as u64),
                thresholds: spec.thresholds.clone().map(Box::new),
                rate_per_s: spec.load.rate_per_s,
                rerun_of: spec.rerun_of,
            },
            origin: Origin::Run {
                jobs,
                dynamic: fixed.is_none(),
            },
            meter,
            cancel: CancellationToken::new(),
            no_more: CancellationToken::new(),
            signal: Signal::new(Phase::Running),
            state: Mutex::new(State {
                status: BatchStatus::Running,
                clock: None,
                first_start: None,
                last_end: None,
                finished_at: None,
                error: None,
                measured_from: None,
                summary: SummaryState::Live(acc),
                done: Vec::with_capacity(fixed.unwrap_or(0)),
                started: 0,
                tasks,
                stop_reason: None,
            }),
            ended_before: None,
            attempts_before: None,
            shards: Mutex::new(Vec::new()),
            placing,
        }
    }

    /// Each job's `id` and kind (none for a batch read back from storage, which makes no task
    /// records).
    fn jobs(&self) -> &JobLabels {
        match &self.origin {
            Origin::Run { jobs, .. } => jobs,
            Origin::Stored { .. } => &[],
        }
    }

    /// Tasks are made as they start rather than all at the start.
    fn dynamic(&self) -> bool {
        matches!(self.origin, Origin::Run { dynamic: true, .. })
    }

    pub fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Cancelled once the batch is to start no more tasks ([`Batch::stop_starting`]).
    pub fn no_more_starts(&self) -> &CancellationToken {
        &self.no_more
    }

    pub fn status(&self) -> BatchStatus {
        self.state.lock().status
    }

    pub fn is_finished(&self) -> bool {
        self.signal.phase() == Phase::Finished
    }

    /// Resolves once the batch's answer condition is met (or it finished).
    pub async fn answered(&self) {
        self.signal.reached(Phase::Answered).await;
    }

    /// Resolves once every task ended.
    pub async fn finished(&self) {
        self.signal.reached(Phase::Finished).await;
    }

    /// Marks the batch started; returns the instant every task time is measured against.
    pub(crate) fn start(&self) -> Instant {
        let mut st = self.state.lock();
        let now = Instant::now();
        st.clock = Some((Utc::now(), now));
        self.meter.batch_started();
        now
    }

    /// Records tasks that just started, under one lock.
    pub(crate) fn tasks_started(&self, started: &[Started]) {
        let mut st = self.state.lock();
        let Some(clock) = st.clock else { return };
        let st = &mut *st;
        let dynamic = self.dynamic();
        let mut running = 0;
        for s in started {
            st.first_start.get_or_insert(s.at);
            if st.tasks.len() <= s.index {
                st.tasks.grow(s.index + 1, self.jobs());
            }
            if st.tasks.status(s.index) != TaskStatus::Pending {
                continue;
            }
            if let SummaryState::Live(acc) = &mut st.summary {
                match (dynamic, s.warmup) {
                    (true, true) => acc.add_warmup_task(),
                    (true, false) => acc.add_task(),
                    (false, _) => {}
                }
                if let (false, Some(lag)) = (s.warmup, s.lag) {
                    acc.started_after(lag);
                }
            }
            if !s.warmup {
                st.measured_from.get_or_insert(s.at);
            }
            running += 1;
            st.started += 1;
            st.tasks.start(s.index, s.at, s.warmup, clock);
        }
        self.meter.tasks_started(running);
    }

    /// Records tasks that ended, under one lock, and applies the batch's answer rules.
    pub(crate) fn tasks_ended(&self, ended: &mut Vec<Ended>) {
        let mut st = self.state.lock();
        let mut recorded = 0;
        for e in ended.drain(..) {
            recorded +=
                usize::from(self.task_ended(&mut st, e.index, e.started, e.ended, e.outcome));
        }
        self.signal.tell();
        // Once per burst: the gauge is shared by every thread.
        self.meter.tasks_ended(recorded);
    }

    fn task_ended(
        &self,
        st: &mut State,
        index: usize,
        started: Instant,
        ended: Instant,
        outcome: Outcome,
    ) -> bool {
        if st.tasks.status(index).is_finished() {
            return false;
        }
        let status = match &outcome.error {
            None => TaskStatus::Succeeded,
            Some(e) if e.code == ErrorCode::Timeout => TaskStatus::TimedOut,
            Some(e) if e.code == ErrorCode::Cancelled => TaskStatus::Cancelled,
            Some(_) => TaskStatus::Failed,
        };
        let warmup = st.tasks.is_warmup(index);
        let decided = self.rules.on_task_end(self.mode, status, warmup);
        if decided.fails_batch && st.status == BatchStatus::Running {
            st.status = BatchStatus::Failed;
            st.error = outcome.error.as_ref().map(|e| BatchError {
                index: Some(index as u32),
                code: e.code,
                message: e.message.clone(),
            });
        }
        self.end_task(st, index, status, Some((started, ended)), warmup, outcome);
        if decided.cancels_siblings {
            st.stop_reason.get_or_insert(StopReason::Cancelled);
            self.cancel.cancel();
        }
        if decided.answers {
            self.signal.advance(Phase::Answered);
        }
        true
    }

    /// Records how a task ended (`span`: when it ran, if it started). The caller counts it
    /// out of the in-flight gauge.
    fn end_task(
        &self,
        st: &mut State,
        index: usize,
        status: TaskStatus,
        span: Option<(Instant, Instant)>,
        warmup: bool,
        outcome: Outcome,
    ) {
        let clock = st.clock;
        let seq = st.done.len() as u32 + 1;
        st.done.push(index as u32);
        let duration = span.map(|(s, e)| e.saturating_duration_since(s));
        if let Some((_, end)) = span {
            st.last_end = Some(st.last_end.map_or(end, |l| l.max(end)));
        }
        // A task that `results` will never show keeps its status and timing, not its payload
        // (headers, bodies, file contents): a load run of a million requests would hold
        // them all.
        let shown = self.rules.results.shows(outcome.error.is_some());
        if let SummaryState::Live(acc) = &mut st.summary
            && !warmup
        {
            if self.dynamic() && span.is_none() {
                // A task made as it starts that was stopped before it started (another
                // driver had already made a later one): it is a task all the same.
                acc.add_task();
            }
            let place = self.placing.as_ref().map_or_else(Default::default, |p| {
                p.place(index, span.map(|s| s.0), clock.map(|c| c.1))
            });
            acc.record_in(
                place,
                status,
                duration,
                outcome.output.as_ref(),
                outcome.error.as_ref(),
            );
            if let Some(net) = &outcome.net {
                acc.record_net(net);
            }
            if let (Some(checks), Some(TaskOutput::Http(out))) = (&outcome.checks, &outcome.output)
                && let Some(passed) = out.checks_passed
            {
                acc.record_checks(&checks.list, passed);
            }
            if let Some(TaskOutput::Flow(flow)) = &outcome.output {
                acc.record_steps(flow);
            }
            if let (Some(clock), Some((start, end))) = (clock, span) {
                let at = |t: Instant| wall_time(clock, t).timestamp_micros().max(0) as u64;
                let error = matches!(status, TaskStatus::Failed | TaskStatus::TimedOut);
                acc.record_times(at(start), at(end), error);
            }
        }
        let jobs = self.jobs();
        let kind = jobs
            .get(index % jobs.len().max(1))
            .map_or(Kind::Sleep, |j| j.1);
        self.meter.task_ended(kind, status, duration);
        let Some(task) = st.tasks.ended(index, status, shown, jobs, clock) else {
            return;
        };
        task.status = status;
        task.seq = Some(seq);
        task.attempts = outcome.attempts + self.attempts_before(index);
        if shown {
            task.output = outcome.output;
            task.error = outcome.error;
        }
        if let (Some(clock), Some((_, end))) = (clock, span) {
            task.timing.finished_at = Some(wall_time(clock, end));
        } else if task.timing.started_at.is_some() {
            task.timing.finished_at = Some(Utc::now());
        }
        task.timing.duration_ms = duration.map(ms);
        if let Some(net) = outcome.net {
            task.timing.phases = Some(net.phases());
            task.timing.reused = Some(net.reused);
        }
    }

    /// The attempts task `index` had in lost runs of its shard (0 but in a resumed run).
    fn attempts_before(&self, index: usize) -> u32 {
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        self.attempts_before
            .as_ref()
            .and_then(|before| before.get(&index).copied())
            .unwrap_or(0)
    }

    pub fn rules(&self) -> Rules {
        self.rules.clone()
    }

    pub fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.state.lock().finished_at
    }

    /// The completion number of the last task ended so far. A batch read back from storage
    /// may hold only the shown tasks' rows: once finished, every task has ended, so its last
    /// completion is its task count; before, the largest `seq` stored.
    pub fn last_completion(&self) -> u32 {
        let st = self.state.lock();
        let stored_seq = || {
            st.done
                .last()
                .and_then(|&p| st.tasks.get(p as usize))
                .and_then(|t| t.seq)
                .unwrap_or(0)
        };
        match self.origin {
            Origin::Run { .. } => st.done.len() as u32,
            Origin::Stored { total } if st.finished_at.is_some() => stored_seq().max(total as u32),
            Origin::Stored { .. } => stored_seq(),
        }
    }

    /// Tasks ended so far, and tasks in all.
    pub fn progress(&self) -> (usize, usize) {
        let st = self.state.lock();
        (st.done.len(), self.total(&st))
    }

    fn total(&self, st: &State) -> usize {
        match self.origin {
            Origin::Stored { total } => total.max(st.tasks.len()),
            Origin::Run { .. } => st.tasks.len(),
        }
    }

    /// Run by this process (not read back from storage): it tells its followers as tasks end.
    pub fn is_live(&self) -> bool {
        matches!(self.origin, Origin::Run { .. })
    }

    /// Wakes when tasks end (or the batch finishes): for streams that follow the batch.
    /// Call `enable` on it before reading the batch, and no change after is missed.
    pub fn changed(&self) -> Notified<'_> {
        self.signal.changed.notified()
    }
}

impl State {
    /// First task start to last task end (to now while running).
    fn wall(&self) -> Option<Duration> {
        self.first_start.map(|first| {
            let end = match (self.finished_at, self.last_end) {
                (Some(_), Some(last)) => last,
                _ => Instant::now(),
            };
            end.saturating_duration_since(first)
        })
    }
}
