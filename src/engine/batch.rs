//! A batch's live state: every task's record, the completion order, the summary accumulators
//! and the batch's own status. The runner writes into it as tasks start and end; readers
//! (the HTTP layer, the store) take consistent snapshots of it.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize, Serializer};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;
use uuid::Uuid;

use super::runner::Ended;
use super::spec::{BatchSpec, Kind, Mode, OnTimeout, ResultsMode, ReturnWhen, Thresholds};
use super::summary::{Summary, SummaryAcc};
use super::task::{
    ErrorCode, TaskError, TaskOutput, TaskRecord, TaskStatus, micros, micros_opt, ms,
};
use super::verdict::{Verdict, judge};

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

/// How far a batch has come, for whoever waits on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Running,
    /// The answer condition is met (gather's first failure, wait's `return_when` or timeout).
    Answered,
    /// Every task ended.
    Finished,
}

/// Why tasks still unfinished are being stopped, and so what they become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// fail_fast, wait's `on_timeout: cancel`, or a client's DELETE.
    Cancelled,
    /// gather's batch deadline passed.
    Deadline,
    /// The server is shutting down.
    Interrupted,
}

/// How one task ended, as the runner reports it.
#[derive(Debug)]
pub struct Outcome {
    pub attempts: u32,
    pub output: Option<TaskOutput>,
    pub error: Option<TaskError>,
}

/// A batch while it runs and after: the single place its state lives in memory.
pub struct Batch {
    pub id: Uuid,
    pub mode: Mode,
    pub label: Option<String>,
    pub created_at: DateTime<Utc>,
    /// What the answer condition and the views need from the request.
    rules: Rules,
    /// Each job's `id` and kind, for the records of tasks made as they start (empty for a
    /// batch read back from storage, which makes none).
    jobs: Box<[(Option<String>, Kind)]>,
    /// Tasks are made as they start (a load run for a duration, or with a warm-up), rather
    /// than all at the start.
    dynamic: bool,
    /// Cancelled to stop every unfinished task; `stop_reason` says what they become.
    cancel: CancellationToken,
    /// Moves forward only; watchers wake when the answer is ready and when the batch ends.
    phase: watch::Sender<Phase>,
    /// Tasks ended so far, sent after each burst: event streams wake on it.
    ended: watch::Sender<usize>,
    /// Read back from storage rather than run here: its `done` list holds positions among the
    /// stored rows, not task numbers.
    restored: bool,
    /// A restored batch's task count as stored (its rows may be only the shown tasks).
    stored_total: usize,
    state: Mutex<State>,
}

/// The request's rules for a batch, as stored beside it so that a stored batch reads back with
/// the same shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rules {
    pub return_exceptions: bool,
    pub fail_fast: bool,
    pub return_when: ReturnWhen,
    pub on_timeout: OnTimeout,
    pub results: ResultsMode,
    pub concurrency: usize,
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub thresholds: Option<Thresholds>,
}

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
    /// Every task in index order; tasks without a stored row are `pending` placeholders.
    pub tasks: Vec<TaskRecord>,
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

enum SummaryState {
    Live(SummaryAcc),
    /// Read back from storage, with the batch's stored `wall_ms`.
    Stored(Summary, Option<f64>),
}

struct State {
    status: BatchStatus,
    /// Wall-clock and monotonic time of the batch's start; task times derive from both so that
    /// timestamps and durations agree.
    clock: Option<(DateTime<Utc>, Instant)>,
    /// First task start and last task end, for `wall_ms`.
    first_start: Option<Instant>,
    last_end: Option<Instant>,
    finished_at: Option<DateTime<Utc>>,
    error: Option<BatchError>,
    /// First start of a task outside the warm-up: where throughput is counted from.
    measured_from: Option<Instant>,
    tasks: Tasks,
    /// Task indices in completion order; `seq` is a position here plus one.
    done: Vec<u32>,
    summary: SummaryState,
    stop_reason: Option<StopReason>,
}

impl Batch {
    pub fn new(id: Uuid, spec: &BatchSpec) -> Arc<Batch> {
        let jobs: Box<[(Option<String>, Kind)]> = spec
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
        let (phase, _) = watch::channel(Phase::Running);
        Arc::new(Batch {
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
                thresholds: spec.thresholds.clone(),
            },
            jobs,
            dynamic: fixed.is_none(),
            cancel: CancellationToken::new(),
            phase,
            ended: watch::channel(0).0,
            restored: false,
            stored_total: 0,
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
                tasks,
                stop_reason: None,
            }),
        })
    }

    pub fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }

    pub fn status(&self) -> BatchStatus {
        self.state.lock().status
    }

    pub fn is_finished(&self) -> bool {
        *self.phase.borrow() == Phase::Finished
    }

    /// Resolves once the batch's answer condition is met (or it finished).
    pub async fn answered(&self) {
        let mut rx = self.phase.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = rx.wait_for(|p| *p >= Phase::Answered).await;
    }

    /// Resolves once every task ended.
    pub async fn finished(&self) {
        let mut rx = self.phase.subscribe();
        let _ = rx.wait_for(|p| *p == Phase::Finished).await;
    }

    /// Marks the batch started; returns the instant every task time is measured against.
    pub(crate) fn start(&self) -> Instant {
        let mut st = self.state.lock();
        let now = Instant::now();
        st.clock = Some((Utc::now(), now));
        crate::metrics::meters().batches_in_flight.increment(1.0);
        now
    }

    fn at(clock: (DateTime<Utc>, Instant), t: Instant) -> DateTime<Utc> {
        clock.0 + t.saturating_duration_since(clock.1)
    }

    /// Records tasks that just started, under one lock.
    pub(crate) fn tasks_started(&self, started: &[Started]) {
        let mut st = self.state.lock();
        let Some(clock) = st.clock else { return };
        let st = &mut *st;
        let mut running = 0;
        for s in started {
            st.first_start.get_or_insert(s.at);
            if st.tasks.len() <= s.index {
                st.tasks.grow(s.index + 1, &self.jobs);
            }
            if st.tasks.status(s.index) != TaskStatus::Pending {
                continue;
            }
            if let SummaryState::Live(acc) = &mut st.summary {
                match (self.dynamic, s.warmup) {
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
            st.tasks.start(s.index, s.at, s.warmup, clock);
        }
        crate::metrics::meters()
            .tasks_in_flight
            .increment(running as f64);
    }

    /// Records tasks that ended, under one lock, and applies the batch's answer rules.
    pub(crate) fn tasks_ended(&self, ended: &mut Vec<Ended>) {
        let mut st = self.state.lock();
        let mut recorded = 0;
        for e in ended.drain(..) {
            recorded +=
                usize::from(self.task_ended(&mut st, e.index, e.started, e.ended, e.outcome));
        }
        self.ended.send_replace(st.done.len());
        // Once per burst: the gauge is shared by every thread.
        crate::metrics::meters()
            .tasks_in_flight
            .decrement(recorded as f64);
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
        // A warm-up task's end answers nothing: it is not part of the measured run.
        let warmup = st.tasks.is_warmup(index);
        let counts = !warmup;
        // asyncio.gather without return_exceptions: the first failure fails the batch.
        let fails_batch = counts
            && status.is_failure()
            && self.mode == Mode::Gather
            && !self.rules.return_exceptions;
        if fails_batch && st.status == BatchStatus::Running {
            st.status = BatchStatus::Failed;
            st.error = outcome.error.as_ref().map(|e| BatchError {
                index: Some(index as u32),
                code: e.code,
                message: e.message.clone(),
            });
        }
        self.end_task(st, index, status, Some((started, ended)), warmup, outcome);

        if fails_batch {
            if self.rules.fail_fast {
                // asyncio.TaskGroup: cancel the siblings and answer once they have ended.
                st.stop_reason.get_or_insert(StopReason::Cancelled);
                self.cancel.cancel();
            } else {
                self.advance(Phase::Answered);
            }
        }
        if self.mode == Mode::Wait && counts {
            let met = match self.rules.return_when {
                ReturnWhen::FirstCompleted => true,
                ReturnWhen::FirstException => status.is_failure(),
                ReturnWhen::AllCompleted => false,
            };
            if met {
                self.advance(Phase::Answered);
            }
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
            if self.dynamic && span.is_none() {
                // A task made as it starts that was stopped before it started (another
                // driver had already made a later one): it is a task all the same.
                acc.add_task();
            }
            acc.record(
                status,
                duration,
                outcome.output.as_ref(),
                outcome.error.as_ref().map(|e| e.code),
            );
        }
        crate::metrics::meters().task_ended(
            self.jobs
                .get(index % self.jobs.len().max(1))
                .map_or(Kind::Sleep, |j| j.1),
            status,
            duration,
        );
        let Some(task) = st.tasks.ended(index, status, shown, &self.jobs, clock) else {
            return;
        };
        task.status = status;
        task.seq = Some(seq);
        task.attempts = outcome.attempts;
        if shown {
            task.output = outcome.output;
            task.error = outcome.error;
        }
        if let (Some(clock), Some((_, end))) = (clock, span) {
            task.timing.finished_at = Some(Self::at(clock, end));
        } else if task.timing.started_at.is_some() {
            task.timing.finished_at = Some(Utc::now());
        }
        task.timing.duration_ms = duration.map(ms);
    }

    /// Stops every unfinished task: the runner drops their futures; [`Batch::finish`] then
    /// records them according to `reason`. The first reason given wins.
    pub fn stop(&self, reason: StopReason) {
        {
            let mut st = self.state.lock();
            if st.finished_at.is_some() {
                return;
            }
            st.stop_reason.get_or_insert(reason);
        }
        self.cancel.cancel();
    }

    /// Marks the batch cancelled by a client (DELETE), then stops it.
    pub fn cancel_by_client(&self) {
        {
            let mut st = self.state.lock();
            if st.finished_at.is_some() {
                return;
            }
            st.status = BatchStatus::Cancelled;
            st.stop_reason.get_or_insert(StopReason::Cancelled);
        }
        self.cancel.cancel();
    }

    /// The batch's `timeout_ms` passed.
    pub(crate) fn deadline_passed(&self, timeout: Duration, cancel_pending: bool) {
        match self.mode {
            Mode::Gather => {
                {
                    let mut st = self.state.lock();
                    st.stop_reason.get_or_insert(StopReason::Deadline);
                    if !self.rules.return_exceptions && st.status == BatchStatus::Running {
                        st.status = BatchStatus::Failed;
                        st.error = Some(BatchError {
                            index: None,
                            code: ErrorCode::Timeout,
                            message: format!(
                                "the batch deadline of {} ms passed",
                                timeout.as_millis()
                            ),
                        });
                    }
                }
                self.cancel.cancel();
            }
            Mode::Wait => {
                self.advance(Phase::Answered);
                if cancel_pending {
                    self.stop(StopReason::Cancelled);
                }
            }
        }
    }

    /// The server's `--max-batch-duration` passed: whatever still runs ends `timed_out`, in
    /// either mode.
    pub(crate) fn server_limit_passed(&self, limit: Duration) {
        match self.mode {
            Mode::Gather => self.deadline_passed(limit, false),
            Mode::Wait => {
                self.advance(Phase::Answered);
                self.stop(StopReason::Deadline);
            }
        }
    }

    /// Every task ended or was dropped: record the dropped ones, close the batch.
    pub(crate) fn finish(&self) {
        {
            let mut st = self.state.lock();
            let reason = st.stop_reason;
            let now = Instant::now();
            let unfinished = st.tasks.unfinished();
            let mut were_running = 0;
            for index in unfinished {
                let (status, error) = match reason {
                    Some(StopReason::Deadline) => (
                        TaskStatus::TimedOut,
                        TaskError::new(ErrorCode::Timeout, "the batch deadline passed"),
                    ),
                    Some(StopReason::Interrupted) => (
                        TaskStatus::Interrupted,
                        TaskError::new(ErrorCode::Interrupted, "the server stopped"),
                    ),
                    _ => (
                        TaskStatus::Cancelled,
                        TaskError::new(ErrorCode::Cancelled, "cancelled"),
                    ),
                };
                // A task that never started has no duration; one that ran is timed to now.
                let span = st
                    .clock
                    .and_then(|clock| st.tasks.started_at(index, clock))
                    .map(|started| (started, now));
                let attempts = u32::from(span.is_some());
                were_running += attempts as usize;
                let outcome = Outcome {
                    attempts,
                    output: None,
                    error: Some(error),
                };
                let warmup = st.tasks.is_warmup(index);
                self.end_task(&mut st, index, status, span, warmup, outcome);
            }
            crate::metrics::meters()
                .tasks_in_flight
                .decrement(were_running as f64);
            st.finished_at = Some(Utc::now());
            self.ended.send_replace(st.done.len());
            if st.status == BatchStatus::Running {
                st.status = match reason {
                    Some(StopReason::Interrupted) => BatchStatus::Interrupted,
                    _ => BatchStatus::Completed,
                };
            }
            if st.clock.is_some() {
                crate::metrics::meters().batch_finished(self.mode, st.status);
            }
        }
        self.advance(Phase::Finished);
    }

    fn advance(&self, to: Phase) {
        self.phase.send_if_modified(|p| {
            if *p < to {
                *p = to;
                true
            } else {
                false
            }
        });
    }

    /// First task start to last task end (to now while running).
    fn wall(st: &State) -> Option<Duration> {
        st.first_start.map(|first| {
            let end = match (st.finished_at, st.last_end) {
                (Some(_), Some(last)) => last,
                _ => Instant::now(),
            };
            end.saturating_duration_since(first)
        })
    }

    /// `wall_ms` as shown: measured while the batch lives here, as stored once read back.
    fn wall_ms(st: &State, wall: Option<Duration>) -> Option<f64> {
        match &st.summary {
            SummaryState::Stored(_, wall_ms) => *wall_ms,
            SummaryState::Live(_) => wall.map(ms),
        }
    }

    /// The summary; its throughput counts from the first task after the warm-up.
    fn summary_of(st: &State, wall: Option<Duration>) -> Summary {
        match &st.summary {
            SummaryState::Live(acc) => {
                let measured = match (st.measured_from, st.first_start) {
                    (Some(from), Some(first)) if from > first => {
                        wall.map(|w| w.saturating_sub(from - first))
                    }
                    _ => wall,
                };
                acc.summary(measured)
            }
            SummaryState::Stored(summary, _) => summary.clone(),
        }
    }

    pub fn rules(&self) -> Rules {
        self.rules.clone()
    }

    /// The batch-level fields as they are now (the summary once the batch has finished).
    pub fn meta(&self) -> BatchMeta {
        Self::meta_of(&self.state.lock())
    }

    fn meta_of(st: &State) -> BatchMeta {
        let wall = Self::wall(st);
        BatchMeta {
            status: st.status,
            started_at: st.clock.map(|c| c.0),
            finished_at: st.finished_at,
            wall_ms: Self::wall_ms(st, wall),
            error: st.error.clone(),
            tasks_total: st.tasks.len(),
            // Only a finished batch's summary is stored; computing it on every write of a
            // running batch would be work thrown away.
            summary: st.finished_at.map(|_| Self::summary_of(st, wall)),
        }
    }

    pub fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.state.lock().finished_at
    }

    /// Tasks ended so far, and tasks in all.
    pub fn progress(&self) -> (usize, usize) {
        let st = self.state.lock();
        (st.done.len(), self.total(&st))
    }

    fn total(&self, st: &State) -> usize {
        if self.restored {
            self.stored_total.max(st.tasks.len())
        } else {
            st.tasks.len()
        }
    }

    /// What a storage writer has not written yet, under one lock: the tasks that ended since
    /// the first `from` of them (in completion order; only those `results` shows — "errors":
    /// the failed ones), the new count, and the batch's fields. When `meta.finished_at` is
    /// set, every task has ended and is included.
    pub fn changes_since(&self, from: usize) -> (Vec<TaskRecord>, usize, BatchMeta) {
        let st = self.state.lock();
        let results = self.rules.results;
        let tasks = st.done[from.min(st.done.len())..]
            .iter()
            .filter_map(|&i| st.tasks.get(i as usize))
            .filter(|t| results.shows(t.error.is_some()))
            .cloned()
            .collect();
        (tasks, st.done.len(), Self::meta_of(&st))
    }

    /// Run by this process (not read back from storage): it tells its followers as tasks end.
    pub fn is_live(&self) -> bool {
        !self.restored
    }

    /// Wakes when tasks end (or the batch finishes): for streams that follow the batch.
    pub fn subscribe(&self) -> (watch::Receiver<usize>, watch::Receiver<Phase>) {
        (self.ended.subscribe(), self.phase.subscribe())
    }

    /// The next ended tasks after completion number `after` (0 for the start), looking at no
    /// more than `max` of them: those that `results` shows, in completion order, under one
    /// lock. A slow reader holds nothing of the batch between calls.
    pub fn events_after(&self, after: u32, max: usize) -> Events {
        let st = self.state.lock();
        let results = self.rules.results;
        // A batch run here: `seq` n is `done[n - 1]`. One read back from storage holds only
        // its stored rows, in `seq` order.
        let from = if self.restored {
            st.done
                .partition_point(|&p| st.tasks.get(p as usize).and_then(|t| t.seq) <= Some(after))
        } else {
            (after as usize).min(st.done.len())
        };
        let to = st.done.len().min(from + max);
        let mut last = after;
        let mut tasks = Vec::new();
        for &i in &st.done[from..to] {
            let task = st.tasks.get(i as usize);
            if let (true, Some(seq)) = (self.restored, task.and_then(|t| t.seq)) {
                last = seq;
            }
            if let Some(t) = task.filter(|t| results.shows(t.error.is_some())) {
                tasks.push(t.clone());
            }
        }
        if !self.restored {
            last = to as u32;
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
            Some(summary) => SummaryState::Stored(summary, meta.wall_ms),
            None => {
                let mut acc = SummaryAcc::new(meta.tasks_total as u64);
                for t in record
                    .tasks
                    .iter()
                    .filter(|t| t.status.is_finished() && !t.warmup)
                {
                    let duration = t
                        .timing
                        .duration_ms
                        .map(|d| Duration::from_micros((d * 1000.0) as u64));
                    acc.record(
                        t.status,
                        duration,
                        t.output.as_ref(),
                        t.error.as_ref().map(|e| e.code),
                    );
                }
                SummaryState::Stored(
                    acc.summary(
                        meta.wall_ms
                            .map(|w| Duration::from_micros((w * 1000.0) as u64)),
                    ),
                    meta.wall_ms,
                )
            }
        };
        let (phase, _) = watch::channel(if finished {
            Phase::Finished
        } else {
            Phase::Answered
        });
        Arc::new(Batch {
            id: record.id,
            mode: record.mode,
            label: record.label,
            created_at: record.created_at,
            rules: record.rules,
            jobs: Box::default(),
            dynamic: false,
            cancel: CancellationToken::new(),
            phase,
            ended: watch::channel(0).0,
            restored: true,
            stored_total: meta.tasks_total,
            state: Mutex::new(State {
                status: meta.status,
                clock: meta.started_at.map(|s| (s, Instant::now())),
                first_start: None,
                last_end: None,
                finished_at: meta.finished_at,
                error: meta.error,
                measured_from: None,
                tasks: Tasks::All(record.tasks),
                done,
                summary,
                stop_reason: None,
            }),
        })
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
        let wall = Self::wall(st);
        let filter = self.rules.results;
        let summary = Self::summary_of(st, wall);
        let verdict = match (&self.rules.thresholds, st.finished_at) {
            (Some(t), Some(_)) => Some(judge(t, &summary)),
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
        BatchView {
            id: self.id,
            mode: self.mode,
            status: st.status,
            label: self.label.as_deref(),
            created_at: self.created_at,
            started_at: st.clock.map(|c| c.0),
            finished_at: st.finished_at,
            wall_ms: Self::wall_ms(st, wall),
            error: st.error.as_ref(),
            summary,
            verdict,
            results,
            done,
            pending,
        }
    }
}

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

/// The batch's tasks. With `results: all`, every task's record (in index order; for a batch
/// read back from storage, in stored order). Otherwise each task's status, when the running
/// ones started, and records only for the tasks that answers show: a million-request load run
/// with `results: none` keeps a byte per request.
enum Tasks {
    All(Vec<TaskRecord>),
    Sparse {
        status: Vec<TaskStatus>,
        running: FxHashMap<u32, Run>,
        kept: BTreeMap<u32, TaskRecord>,
    },
}

/// A running task of a sparse list.
#[derive(Debug, Clone, Copy)]
struct Run {
    at: Instant,
    warmup: bool,
}

impl Tasks {
    fn new(results: ResultsMode) -> Tasks {
        match results {
            ResultsMode::All => Tasks::All(Vec::new()),
            _ => Tasks::Sparse {
                status: Vec::new(),
                running: FxHashMap::default(),
                kept: BTreeMap::new(),
            },
        }
    }

    fn len(&self) -> usize {
        match self {
            Tasks::All(all) => all.len(),
            Tasks::Sparse { status, .. } => status.len(),
        }
    }

    /// Adds pending tasks up to `len`.
    fn grow(&mut self, len: usize, jobs: &[(Option<String>, Kind)]) {
        match self {
            Tasks::All(all) => {
                all.reserve(len.saturating_sub(all.len()));
                while all.len() < len {
                    all.push(pending(all.len(), jobs));
                }
            }
            Tasks::Sparse { status, .. } => {
                status.resize(len.max(status.len()), TaskStatus::Pending)
            }
        }
    }

    fn status(&self, index: usize) -> TaskStatus {
        match self {
            Tasks::All(all) => all[index].status,
            Tasks::Sparse { status, .. } => status[index],
        }
    }

    fn get(&self, index: usize) -> Option<&TaskRecord> {
        match self {
            Tasks::All(all) => all.get(index),
            Tasks::Sparse { kept, .. } => kept.get(&(index as u32)),
        }
    }

    /// A pending task started at `at`.
    fn start(&mut self, index: usize, at: Instant, warmup: bool, clock: (DateTime<Utc>, Instant)) {
        match self {
            Tasks::All(all) => {
                let task = &mut all[index];
                task.status = TaskStatus::Running;
                task.warmup = warmup;
                task.timing.queued_ms = Some(ms(at.saturating_duration_since(clock.1)));
                task.timing.started_at = Some(Batch::at(clock, at));
            }
            Tasks::Sparse {
                status, running, ..
            } => {
                status[index] = TaskStatus::Running;
                running.insert(index as u32, Run { at, warmup });
            }
        }
    }

    fn is_warmup(&self, index: usize) -> bool {
        match self {
            Tasks::All(all) => all[index].warmup,
            Tasks::Sparse { running, .. } => running.get(&(index as u32)).is_some_and(|r| r.warmup),
        }
    }

    /// When a running task started.
    fn started_at(&self, index: usize, clock: (DateTime<Utc>, Instant)) -> Option<Instant> {
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
    fn ended(
        &mut self,
        index: usize,
        to: TaskStatus,
        shown: bool,
        jobs: &[(Option<String>, Kind)],
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
                    task.timing.started_at = Some(Batch::at(clock, run.at));
                }
                let slot = kept.entry(index as u32).insert_entry(task);
                Some(slot.into_mut())
            }
        }
    }

    /// Records in index order: every task, or the shown ones.
    fn records(&self) -> Box<dyn Iterator<Item = &TaskRecord> + '_> {
        match self {
            Tasks::All(all) => Box::new(all.iter()),
            Tasks::Sparse { kept, .. } => Box::new(kept.values()),
        }
    }

    /// Indices of the tasks not ended yet.
    fn unfinished(&self) -> Vec<usize> {
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
fn pending(index: usize, jobs: &[(Option<String>, Kind)]) -> TaskRecord {
    let (id, kind) = jobs
        .get(index % jobs.len().max(1))
        .cloned()
        .unwrap_or((None, Kind::Sleep));
    TaskRecord::pending(index as u32, id, kind)
}
