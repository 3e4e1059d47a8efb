//! A batch's summary, accumulated as tasks end: counts, HDR histograms of durations (bounded
//! memory whatever the number of tasks), HTTP status counts and error counts by code.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::picture::TimeBins;
use super::task::{ErrorCode, NetTiming, TaskError, TaskOutput, TaskStatus};

/// The latency distribution of a set of tasks, in milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Percentiles {
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// Counts and distributions over every task of the batch (whatever `results` returns).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Summary {
    pub tasks: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub cancelled: u64,
    pub interrupted: u64,
    /// Tasks not ended yet (waiting or running).
    pub pending: u64,
    /// `duration_ms` of every ended task that reached its target: a task refused by the guard
    /// (`forbidden`) or that failed before it connected (`dns`, `connect`) has no latency to
    /// count, as k6's `http_req_duration` counts only requests that were sent. Null before any
    /// task did.
    pub duration_ms: Option<Percentiles>,
    /// `duration_ms` of the tasks that succeeded.
    pub duration_ms_succeeded: Option<Percentiles>,
    /// Time to first byte of the HTTP answers (the last attempt of each task).
    pub ttfb_ms: Option<Percentiles>,
    /// Tasks that ran (reached their target and ended) per second of `measured_ms`.
    pub throughput_per_s: f64,
    /// The measured run's length: `wall_ms` less the warm-up, from the first task after it to
    /// the last task's end (equal to `wall_ms` without one).
    #[serde(default)]
    pub measured_ms: Option<f64>,
    /// HTTP answers by status code.
    #[schema(value_type = BTreeMap<String, u64>)]
    pub http_status: BTreeMap<u16, u64>,
    /// Tasks that did not succeed, by `error.code`.
    #[schema(value_type = BTreeMap<String, u64>)]
    pub errors: BTreeMap<ErrorCode, u64>,
    /// The first message of each `error.code` in `errors`: what went wrong, in words.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = BTreeMap<String, String>)]
    pub first_errors: BTreeMap<ErrorCode, String>,
    /// Open model (`load.rate_per_s`) only: tasks that started behind their intended time.
    #[serde(default)]
    pub late: Option<Late>,
    /// Tasks of the load run's warm-up, left out of every other figure here.
    #[serde(default)]
    pub warmup_tasks: u64,
    /// Tasks the batch's deadline (or the server's `--max-batch-duration`) ended before they
    /// started: counted as `timed_out`, but they did not run.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub never_started: u64,
    /// A sharded batch whose shards an instance lost (it died, or lost the database): what the
    /// gap was. Absent when nothing was lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost: Option<Lost>,
    /// HTTP jobs on fanout's own connections: each phase's distribution over the tasks that
    /// had that phase (`dns_ms`, `connect_ms` and `tls_ms` only on new connections).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phases: Option<Box<PhaseSummary>>,
    /// HTTP jobs on fanout's own connections: requests that opened a connection, and those
    /// that went on one already open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<Connections>,
    /// A load run of several jobs: each job's figures, by its `id` (else its place in `jobs`,
    /// as text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_job: Option<BTreeMap<String, JobSummary>>,
    /// A load run with `load.stages`: each stage's figures, over the tasks that started in it
    /// (rate stages: that were due in it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stages: Option<Vec<StageSummary>>,
}

/// One job's share of a load run.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobSummary {
    /// Its tasks that ended.
    pub tasks: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub timed_out: u64,
    /// As the batch's `duration_ms`, over this job's tasks.
    pub duration_ms: Option<Percentiles>,
    /// Its tasks that ran, per second of the batch's `measured_ms`.
    pub throughput_per_s: f64,
    #[schema(value_type = BTreeMap<String, u64>)]
    pub http_status: BTreeMap<u16, u64>,
    #[schema(value_type = BTreeMap<String, u64>)]
    pub errors: BTreeMap<ErrorCode, u64>,
}

/// One stage of a load run.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StageSummary {
    pub index: u32,
    /// Where the stage starts and ends, from the run's start.
    pub start_ms: f64,
    pub end_ms: f64,
    /// Tasks that started in the stage (rate stages: were due in it) and ended.
    pub tasks: u64,
    pub succeeded: u64,
    /// Those that ran, per second of the stage.
    pub throughput_per_s: f64,
    pub duration_ms: Option<Percentiles>,
    #[schema(value_type = BTreeMap<String, u64>)]
    pub errors: BTreeMap<ErrorCode, u64>,
}

/// Where a task counts besides the batch's figures: its job's part and its stage's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Place {
    pub job: Option<usize>,
    pub stage: Option<usize>,
}

/// Each phase of the HTTP requests, as `timing.phases` names them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct PhaseSummary {
    pub dns_ms: Option<Percentiles>,
    pub connect_ms: Option<Percentiles>,
    pub tls_ms: Option<Percentiles>,
    pub send_ms: Option<Percentiles>,
    pub wait_ms: Option<Percentiles>,
    pub receive_ms: Option<Percentiles>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Connections {
    pub opened: u64,
    pub reused: u64,
}

/// What losing shards cost a batch: the shards claimed again after their instance was lost,
/// the tasks that instance had started and not seen end by its last checkpoint (each was run
/// again, or ended `interrupted`, as `on_lost` says), and the longest time a lost shard had
/// no runner (from its last checkpoint to the next claim).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Lost {
    pub shards: u64,
    pub tasks: u64,
    pub window_ms: f64,
}

impl Lost {
    pub fn add(&mut self, other: Lost) {
        self.shards += other.shards;
        self.tasks += other.tasks;
        self.window_ms = self.window_ms.max(other.window_ms);
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// How far an open model run fell behind its schedule. A task counts as late when it started
/// more than [`LATE_AFTER_MS`] ms after its intended time (tokio's timers tick in whole
/// milliseconds, so smaller lags are the clock, not the sender); its latency still counts from
/// the intended time.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Late {
    pub count: u64,
    /// The largest lag of any task, late or not.
    pub max_ms: f64,
    /// When starts fell behind because every slot was busy: the `concurrency` the rate would
    /// have needed (the rate × the time a task held a slot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_needed: Option<u64>,
}

/// The latency figures whose distribution the page draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LatencyMetric {
    Duration,
    Ttfb,
}

/// Lag beyond which an open model task counts as late.
pub const LATE_AFTER_MS: f64 = 2.0;

/// The running totals behind a [`Summary`]. It serializes (histograms in HDR's V2 format) so
/// that a shard's checkpoint carries it, and the totals of a batch's shards add up: counts
/// exact, histograms added bucket by bucket, never percentiles averaged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SummaryAcc {
    tasks: u64,
    by_status: [u64; 7],
    durations: Timings,
    succeeded: Timings,
    ttfb: Timings,
    http_status: BTreeMap<u16, u64>,
    errors: BTreeMap<ErrorCode, u64>,
    first_errors: BTreeMap<ErrorCode, String>,
    /// Open model runs: late starts and the largest lag.
    late: Option<(u64, Duration)>,
    never_started: u64,
    warmup_tasks: u64,
    #[serde(default)]
    lost: Option<Lost>,
    /// Made at the first HTTP task whose phases were timed.
    #[serde(default)]
    net: Option<Box<NetAcc>>,
    /// A load run's per-job and per-stage totals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parts: Option<Box<Parts>>,
    /// When tasks started and ended, for the page's timeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    times: Option<Box<TimeBins>>,
}

/// The totals behind `by_job` and `stages`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Parts {
    /// Each job's key and totals.
    jobs: Vec<(String, PartAcc)>,
    /// Each stage's start and end (ms from the run's start) and totals.
    stages: Vec<((f64, f64), PartAcc)>,
}

/// The totals of one job's or one stage's tasks.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PartAcc {
    by_status: [u64; 7],
    durations: Timings,
    http_status: BTreeMap<u16, u64>,
    errors: BTreeMap<ErrorCode, u64>,
}

impl PartAcc {
    fn new() -> PartAcc {
        PartAcc {
            by_status: [0; 7],
            durations: Timings::new(),
            http_status: BTreeMap::new(),
            errors: BTreeMap::new(),
        }
    }

    fn merge(&mut self, other: &PartAcc) {
        for (mine, theirs) in self.by_status.iter_mut().zip(other.by_status) {
            *mine += theirs;
        }
        self.durations.merge(&other.durations);
        add_counts(&mut self.http_status, &other.http_status);
        add_counts(&mut self.errors, &other.errors);
    }

    fn record(
        &mut self,
        status: TaskStatus,
        duration: Option<Duration>,
        output: Option<&TaskOutput>,
        error: Option<&TaskError>,
    ) {
        self.by_status[status_slot(status)] += 1;
        if let (Some(d), true) = (duration, error.is_none_or(TaskError::reached_target)) {
            self.durations.record(d);
        }
        if let Some(TaskOutput::Http(out)) = output {
            *self.http_status.entry(out.status).or_default() += 1;
        }
        if let Some(e) = error {
            *self.errors.entry(e.code).or_default() += 1;
        }
    }

    fn count(&self, status: TaskStatus) -> u64 {
        self.by_status[status_slot(status)]
    }

    fn ended(&self) -> u64 {
        self.by_status.iter().sum()
    }

    fn job(&self, wall: Option<Duration>) -> JobSummary {
        JobSummary {
            tasks: self.ended(),
            succeeded: self.count(TaskStatus::Succeeded),
            failed: self.count(TaskStatus::Failed),
            timed_out: self.count(TaskStatus::TimedOut),
            duration_ms: self.durations.percentiles(),
            throughput_per_s: per_second(self.durations.len(), wall),
            http_status: self.http_status.clone(),
            errors: self.errors.clone(),
        }
    }

    fn stage(&self, index: usize, (start_ms, end_ms): (f64, f64)) -> StageSummary {
        let length = Duration::from_secs_f64(((end_ms - start_ms) / 1000.0).max(0.0));
        StageSummary {
            index: index as u32,
            start_ms,
            end_ms,
            tasks: self.ended(),
            succeeded: self.count(TaskStatus::Succeeded),
            throughput_per_s: per_second(self.durations.len(), Some(length)),
            duration_ms: self.durations.percentiles(),
            errors: self.errors.clone(),
        }
    }
}

fn add_counts<K: Ord + Copy>(mine: &mut BTreeMap<K, u64>, theirs: &BTreeMap<K, u64>) {
    for (k, n) in theirs {
        *mine.entry(*k).or_default() += n;
    }
}

/// `n` per second of `wall`, to a tenth.
fn per_second(n: u64, wall: Option<Duration>) -> f64 {
    match wall {
        Some(w) if !w.is_zero() => ((n as f64 / w.as_secs_f64()) * 10.0).round() / 10.0,
        _ => 0.0,
    }
}

/// The phases' histograms and the connection counts.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct NetAcc {
    phases: [Timings; 6],
    opened: u64,
    reused: u64,
}

impl NetAcc {
    fn new() -> NetAcc {
        NetAcc {
            phases: std::array::from_fn(|_| Timings::new()),
            opened: 0,
            reused: 0,
        }
    }
}

fn status_slot(status: TaskStatus) -> usize {
    status as usize
}

impl SummaryAcc {
    pub fn new(tasks: u64) -> Self {
        SummaryAcc {
            tasks,
            by_status: [0; 7],
            // Auto-resizing, so a batch of short tasks keeps a small histogram; 3 significant
            // digits, as oha and wrk report.
            durations: Timings::new(),
            succeeded: Timings::new(),
            ttfb: Timings::new(),
            http_status: BTreeMap::new(),
            errors: BTreeMap::new(),
            first_errors: BTreeMap::new(),
            late: None,
            warmup_tasks: 0,
            never_started: 0,
            lost: None,
            net: None,
            parts: None,
            times: None,
        }
    }

    /// The same, counting each task again under its job (`jobs`: their keys, more than one)
    /// and its stage (`stages`: each one's start and end, in ms from the run's start).
    pub fn with_parts(mut self, jobs: Vec<String>, stages: Vec<(f64, f64)>) -> Self {
        if jobs.len() > 1 || !stages.is_empty() {
            let jobs = if jobs.len() > 1 { jobs } else { Vec::new() };
            self.parts = Some(Box::new(Parts {
                jobs: jobs.into_iter().map(|k| (k, PartAcc::new())).collect(),
                stages: stages.into_iter().map(|b| (b, PartAcc::new())).collect(),
            }));
        }
        self
    }

    /// Whether it keeps per-job or per-stage totals, which a checkpoint must then carry (the
    /// task rows cannot rebuild them).
    pub fn has_parts(&self) -> bool {
        self.parts.is_some()
    }

    /// Adds another accumulator's totals (another shard of the same batch).
    pub fn merge(&mut self, other: &SummaryAcc) {
        self.tasks += other.tasks;
        for (mine, theirs) in self.by_status.iter_mut().zip(other.by_status) {
            *mine += theirs;
        }
        self.durations.merge(&other.durations);
        self.succeeded.merge(&other.succeeded);
        self.ttfb.merge(&other.ttfb);
        for (code, n) in &other.http_status {
            *self.http_status.entry(*code).or_default() += n;
        }
        for (code, n) in &other.errors {
            *self.errors.entry(*code).or_default() += n;
        }
        for (code, message) in &other.first_errors {
            self.first_errors
                .entry(*code)
                .or_insert_with(|| message.clone());
        }
        self.late = match (self.late, other.late) {
            (Some((a, x)), Some((b, y))) => Some((a + b, x.max(y))),
            (a, b) => a.or(b),
        };
        self.never_started += other.never_started;
        self.warmup_tasks += other.warmup_tasks;
        if let Some(lost) = other.lost {
            self.lose(lost);
        }
        if let Some(theirs) = &other.net {
            let mine = self.net.get_or_insert_with(|| Box::new(NetAcc::new()));
            for (m, t) in mine.phases.iter_mut().zip(&theirs.phases) {
                m.merge(t);
            }
            mine.opened += theirs.opened;
            mine.reused += theirs.reused;
        }
        if let Some(theirs) = &other.times {
            match &mut self.times {
                None => self.times = Some(theirs.clone()),
                Some(mine) => mine.merge(theirs),
            }
        }
        if let Some(theirs) = &other.parts {
            match &mut self.parts {
                None => self.parts = Some(theirs.clone()),
                Some(mine) => {
                    for (m, (_, t)) in mine.jobs.iter_mut().zip(&theirs.jobs) {
                        m.1.merge(t);
                    }
                    for (m, (_, t)) in mine.stages.iter_mut().zip(&theirs.stages) {
                        m.1.merge(t);
                    }
                }
            }
        }
    }

    /// Counts an HTTP task's phases and whether it opened a connection.
    pub fn record_net(&mut self, net: &NetTiming) {
        let acc = self.net.get_or_insert_with(|| Box::new(NetAcc::new()));
        for (phase, (timings, d)) in acc.phases.iter_mut().zip(net.phases).enumerate() {
            // A request on a kept connection had no lookup, dial or handshake of its own.
            if net.reused && phase <= NetTiming::TLS {
                continue;
            }
            // Plain HTTP has no handshake to count (a real one never takes 0 µs).
            if phase == NetTiming::TLS && d == 0 {
                continue;
            }
            timings.record(Duration::from_micros(u64::from(d)));
        }
        if net.reused {
            acc.reused += 1;
        } else {
            acc.opened += 1;
        }
    }

    /// Tasks counted, ended or not.
    pub fn tasks(&self) -> u64 {
        self.tasks
    }

    /// Counts `n` more tasks, not ended yet.
    pub fn add_pending(&mut self, n: u64) {
        self.tasks += n;
    }

    /// Counts a loss this run resumed after.
    pub fn lose(&mut self, lost: Lost) {
        self.lost.get_or_insert_with(Lost::default).add(lost);
    }

    /// Counts `n` tasks that ended without running, as `status` (a shard ended
    /// `interrupted` or `cancelled` before it was claimed again).
    pub fn end_unrun(&mut self, status: TaskStatus, n: u64) {
        self.by_status[status_slot(status)] += n;
        let code = match status {
            TaskStatus::Interrupted => ErrorCode::Interrupted,
            _ => ErrorCode::Cancelled,
        };
        if n > 0 {
            *self.errors.entry(code).or_default() += n;
        }
    }

    /// An open model run's accumulator: it reports `late`.
    pub fn open(mut self) -> Self {
        self.late = Some((0, Duration::ZERO));
        self
    }

    /// A measured task made as it started (a load run whose count only the run decides).
    pub fn add_task(&mut self) {
        self.tasks += 1;
    }

    /// A warm-up task made as it started: counted apart, and nowhere else.
    pub fn add_warmup_task(&mut self) {
        self.warmup_tasks += 1;
    }

    /// An open model task started `lag` after its intended time.
    pub fn started_after(&mut self, lag: Duration) {
        if let Some((count, max)) = &mut self.late {
            if lag.as_secs_f64() * 1000.0 > LATE_AFTER_MS {
                *count += 1;
            }
            *max = (*max).max(lag);
        }
    }

    /// Counts one ended task under the batch and, where `place` says, its job and stage.
    pub fn record_in(
        &mut self,
        place: Place,
        status: TaskStatus,
        duration: Option<Duration>,
        output: Option<&TaskOutput>,
        error: Option<&TaskError>,
    ) {
        if let Some(parts) = &mut self.parts {
            if let Some(part) = place.job.and_then(|j| parts.jobs.get_mut(j)) {
                part.1.record(status, duration, output, error);
            }
            if let Some(part) = place.stage.and_then(|s| parts.stages.get_mut(s)) {
                part.1.record(status, duration, output, error);
            }
        }
        self.record(status, duration, output, error);
    }

    /// Counts one ended task (`duration` when it had started).
    pub fn record(
        &mut self,
        status: TaskStatus,
        duration: Option<Duration>,
        output: Option<&TaskOutput>,
        error: Option<&TaskError>,
    ) {
        self.by_status[status_slot(status)] += 1;
        if duration.is_none() && status == TaskStatus::TimedOut {
            self.never_started += 1;
        }
        let reached = error.is_none_or(TaskError::reached_target);
        if let (Some(d), true) = (duration, reached) {
            self.durations.record(d);
            if status == TaskStatus::Succeeded {
                self.succeeded.record(d);
            }
        }
        if let Some(TaskOutput::Http(out)) = output {
            *self.http_status.entry(out.status).or_default() += 1;
            self.ttfb
                .record(Duration::from_micros((out.ttfb_ms * 1000.0) as u64));
        }
        if let Some(e) = error {
            *self.errors.entry(e.code).or_default() += 1;
            self.first_errors
                .entry(e.code)
                .or_insert_with(|| e.message.clone());
        }
    }

    /// When a task that ended ran (ms since the Unix epoch), for the timeline.
    pub fn record_times(&mut self, start_ms: u64, end_ms: u64, error: bool) {
        self.times
            .get_or_insert_with(|| Box::new(TimeBins::new()))
            .record(start_ms, end_ms, error);
    }

    /// The timeline's bins, if a task that ran has ended.
    pub fn times(&self) -> Option<&TimeBins> {
        self.times.as_deref()
    }

    /// The histogram behind a latency figure (`duration` or `ttfb`), in microseconds, with
    /// its values' sum.
    pub fn histogram(&self, metric: LatencyMetric) -> Option<(&Histogram<u64>, u128)> {
        let t = match metric {
            LatencyMetric::Duration => &self.durations,
            LatencyMetric::Ttfb => &self.ttfb,
        };
        t.histogram.as_deref().map(|h| (h, t.sum_us))
    }

    /// Counts a stored task that ended (a warm-up task counts nowhere).
    pub fn record_stored(&mut self, t: &crate::engine::task::TaskRecord) {
        if t.warmup {
            return;
        }
        let duration = t
            .timing
            .duration_ms
            .map(|d| Duration::from_micros((d * 1000.0) as u64));
        self.record(t.status, duration, t.output.as_ref(), t.error.as_ref());
        if let Some(phases) = &t.timing.phases {
            self.record_net(&NetTiming::from_phases(
                phases,
                t.timing.reused == Some(true),
            ));
        }
    }

    pub fn ended(&self) -> u64 {
        self.by_status
            .iter()
            .enumerate()
            .filter(|(slot, _)| {
                *slot != status_slot(TaskStatus::Pending)
                    && *slot != status_slot(TaskStatus::Running)
            })
            .map(|(_, n)| n)
            .sum()
    }

    pub fn summary(&self, wall: Option<Duration>) -> Summary {
        let count = |s: TaskStatus| self.by_status[status_slot(s)];
        let ended = self.ended();
        let duration_ms = self.durations.percentiles();
        // Tasks that ran: a task stopped before it started, or refused before it reached its
        // target, did no work to count.
        let ran = self.durations.len();
        let throughput_per_s = per_second(ran, wall);
        let parts = self.parts.as_deref();
        Summary {
            tasks: self.tasks,
            succeeded: count(TaskStatus::Succeeded),
            failed: count(TaskStatus::Failed),
            timed_out: count(TaskStatus::TimedOut),
            cancelled: count(TaskStatus::Cancelled),
            interrupted: count(TaskStatus::Interrupted),
            pending: self.tasks.saturating_sub(ended),
            duration_ms,
            duration_ms_succeeded: self.succeeded.percentiles(),
            ttfb_ms: self.ttfb.percentiles(),
            throughput_per_s,
            measured_ms: wall.map(|w| (w.as_micros() as f64).round() / 1000.0),
            http_status: self.http_status.clone(),
            errors: self.errors.clone(),
            first_errors: self.first_errors.clone(),
            late: self.late.map(|(count, max)| Late {
                count,
                max_ms: (max.as_micros() as f64).round() / 1000.0,
                concurrency_needed: None,
            }),
            warmup_tasks: self.warmup_tasks,
            never_started: self.never_started,
            lost: self.lost,
            phases: self.net.as_ref().map(|n| {
                let [dns, connect, tls, send, wait, receive] =
                    n.phases.each_ref().map(Timings::percentiles);
                Box::new(PhaseSummary {
                    dns_ms: dns,
                    connect_ms: connect,
                    tls_ms: tls,
                    send_ms: send,
                    wait_ms: wait,
                    receive_ms: receive,
                })
            }),
            connections: self.net.as_ref().map(|n| Connections {
                opened: n.opened,
                reused: n.reused,
            }),
            by_job: parts.filter(|p| !p.jobs.is_empty()).map(|p| {
                p.jobs
                    .iter()
                    .map(|(key, acc)| (key.clone(), acc.job(wall)))
                    .collect()
            }),
            stages: parts.filter(|p| !p.stages.is_empty()).map(|p| {
                p.stages
                    .iter()
                    .enumerate()
                    .map(|(i, (bounds, acc))| acc.stage(i, *bounds))
                    .collect()
            }),
        }
    }
}

/// An HDR histogram of durations in microseconds, with their exact sum for the mean.
#[derive(Debug, Clone)]
struct Timings {
    /// Made at the first value: an empty HDR histogram of 3 significant digits is 16 KB of
    /// counts, and a batch in flight has recorded nothing yet (a one-job batch would hold three
    /// of them while its job runs).
    histogram: Option<Box<Histogram<u64>>>,
    sum_us: u128,
}

/// A [`Timings`] as a checkpoint stores it: the histogram in HDR's V2 format (base64), which
/// any HDR library reads.
#[derive(Serialize, Deserialize)]
struct StoredTimings {
    hdr: String,
    sum_us: u64,
}

impl Serialize for Timings {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        let mut bytes = Vec::new();
        use hdrhistogram::serialization::Serializer as _;
        let empty;
        let histogram = match &self.histogram {
            Some(h) => h.as_ref(),
            None => {
                empty = Timings::empty();
                &empty
            }
        };
        hdrhistogram::serialization::V2Serializer::new()
            .serialize(histogram, &mut bytes)
            .map_err(|e| serde::ser::Error::custom(format!("{e:?}")))?;
        StoredTimings {
            hdr: base64::engine::general_purpose::STANDARD.encode(bytes),
            sum_us: u64::try_from(self.sum_us).unwrap_or(u64::MAX),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Timings {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use base64::Engine as _;
        let stored = StoredTimings::deserialize(d)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(stored.hdr)
            .map_err(serde::de::Error::custom)?;
        let mut histogram: Histogram<u64> = hdrhistogram::serialization::Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| serde::de::Error::custom(format!("{e:?}")))?;
        // Serialized histograms come back without auto-resizing; the live ones grow to fit.
        histogram.auto(true);
        Ok(Timings {
            histogram: (!histogram.is_empty()).then(|| Box::new(histogram)),
            sum_us: u128::from(stored.sum_us),
        })
    }
}

impl Timings {
    fn new() -> Timings {
        Timings {
            histogram: None,
            sum_us: 0,
        }
    }

    /// Auto-resizing, so a batch of short tasks keeps a small histogram; 3 significant
    /// digits, as oha and wrk report.
    fn empty() -> Histogram<u64> {
        Histogram::new(3).expect("3 significant digits is valid")
    }

    /// Values recorded.
    fn len(&self) -> u64 {
        self.histogram.as_ref().map_or(0, |h| h.len())
    }

    fn record(&mut self, d: Duration) {
        let us = (d.as_micros() as u64).max(1);
        let h = self
            .histogram
            .get_or_insert_with(|| Box::new(Timings::empty()));
        // Auto-resizing grows the histogram to fit; past its hard limit, count at the top.
        if h.record(us).is_err() {
            h.saturating_record(us);
        }
        self.sum_us += us as u128;
    }

    /// Adds another's values (the same configuration: 3 significant digits, auto-resizing).
    fn merge(&mut self, other: &Timings) {
        self.sum_us += other.sum_us;
        let Some(theirs) = &other.histogram else {
            return;
        };
        let Some(mine) = &mut self.histogram else {
            self.histogram = Some(theirs.clone());
            return;
        };
        if mine.add(theirs.as_ref()).is_err() {
            // Cannot happen between histograms this module made; count what fits.
            for v in theirs.iter_recorded() {
                mine.saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
    }

    fn percentiles(&self) -> Option<Percentiles> {
        let h = self.histogram.as_deref().filter(|h| !h.is_empty())?;
        let q = |quantile: f64| h.value_at_quantile(quantile) as f64 / 1000.0;
        Some(Percentiles {
            min: h.min() as f64 / 1000.0,
            mean: (self.sum_us as f64 / h.len() as f64).round() / 1000.0,
            p50: q(0.50),
            p90: q(0.90),
            p95: q(0.95),
            p99: q(0.99),
            p999: q(0.999),
            max: h.max() as f64 / 1000.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_follow_the_recorded_durations() {
        let mut acc = SummaryAcc::new(100);
        for ms in 1..=100u64 {
            acc.record(
                TaskStatus::Succeeded,
                Some(Duration::from_millis(ms)),
                None,
                None,
            );
        }
        let s = acc.summary(Some(Duration::from_secs(1)));
        let d = s.duration_ms.expect("durations recorded");
        assert_eq!(d.min, 1.0);
        assert!((d.p50 - 50.0).abs() < 0.1, "p50 {}", d.p50);
        assert!((d.p99 - 99.0).abs() < 0.1, "p99 {}", d.p99);
        assert!((d.max - 100.0).abs() < 0.1, "max {}", d.max);
        assert!((d.mean - 50.5).abs() < 0.01, "mean {}", d.mean);
        assert_eq!(s.throughput_per_s, 100.0);
        assert_eq!(s.pending, 0);
    }

    #[test]
    fn unended_tasks_count_as_pending_and_errors_by_code() {
        let mut acc = SummaryAcc::new(3);
        acc.record(
            TaskStatus::TimedOut,
            Some(Duration::from_millis(5)),
            None,
            Some(&TaskError::new(ErrorCode::Timeout, "too slow")),
        );
        let s = acc.summary(None);
        assert_eq!((s.timed_out, s.pending), (1, 2));
        assert_eq!(s.errors.get(&ErrorCode::Timeout), Some(&1));
        assert_eq!(s.first_errors[&ErrorCode::Timeout], "too slow");
    }

    #[test]
    fn tasks_that_never_reached_their_target_have_no_latency_and_no_throughput() {
        let mut acc = SummaryAcc::new(4);
        for (code, message) in [
            (ErrorCode::Forbidden, "127.0.0.1:3000 is loopback"),
            (ErrorCode::Forbidden, "another refusal"),
            (
                ErrorCode::Dns,
                "no-such-host.invalid: name does not resolve",
            ),
            (
                ErrorCode::Connect,
                "connecting to 127.0.0.1:9: connection refused",
            ),
        ] {
            acc.record(
                TaskStatus::Failed,
                Some(Duration::from_micros(60)),
                None,
                Some(&TaskError::new(code, message)),
            );
        }
        let s = acc.summary(Some(Duration::from_millis(1)));
        assert!(s.duration_ms.is_none(), "{:?}", s.duration_ms);
        assert_eq!(s.throughput_per_s, 0.0);
        assert_eq!(s.failed, 4);
        assert_eq!(
            s.first_errors[&ErrorCode::Forbidden],
            "127.0.0.1:3000 is loopback"
        );
    }

    #[test]
    fn a_task_that_reached_its_target_and_failed_counts_its_latency() {
        let mut acc = SummaryAcc::new(1);
        acc.record(
            TaskStatus::Failed,
            Some(Duration::from_millis(3)),
            None,
            Some(&TaskError::new(ErrorCode::Status, "500")),
        );
        let s = acc.summary(Some(Duration::from_secs(1)));
        let max = s.duration_ms.map(|d| d.max).unwrap_or_default();
        assert!((max - 3.0).abs() < 0.01, "max {max}");
        assert_eq!(s.throughput_per_s, 1.0);
    }

    /// Shards' accumulators added together give the percentiles of one histogram fed every
    /// shard's values, and exact counts, also after a round trip through a checkpoint.
    #[test]
    fn merged_shards_equal_one_histogram_of_every_value() {
        let mut one = SummaryAcc::new(3000);
        let mut shards = [
            SummaryAcc::new(1000),
            SummaryAcc::new(1000),
            SummaryAcc::new(1000),
        ];
        for i in 0..3000u64 {
            // Each shard sees its own distribution: 1-1000 µs, 2-20 ms and 50-100 ms.
            let us = match i % 3 {
                0 => 1 + i % 1000,
                1 => 2_000 + (i * 7919) % 18_000,
                _ => 50_000 + (i * 104_729) % 50_000,
            };
            let status = if i % 10 == 0 {
                TaskStatus::Failed
            } else {
                TaskStatus::Succeeded
            };
            let error =
                (status == TaskStatus::Failed).then(|| TaskError::new(ErrorCode::Status, "500"));
            let d = Some(Duration::from_micros(us));
            one.record(status, d, None, error.as_ref());
            shards[(i % 3) as usize].record(status, d, None, error.as_ref());
        }
        let mut merged = SummaryAcc::new(0);
        for shard in &shards {
            let stored = serde_json::to_string(shard).expect("serializes");
            let back: SummaryAcc = serde_json::from_str(&stored).expect("reads back");
            merged.merge(&back);
        }
        let wall = Some(Duration::from_secs(3));
        let (a, b) = (one.summary(wall), merged.summary(wall));
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::to_value(&b).unwrap()
        );
        assert_eq!((b.tasks, b.failed, b.succeeded), (3000, 300, 2700));
        // Averaging the shards' p99 would give about 70 ms; the combined histogram's is the
        // top shard's.
        assert!(b.duration_ms.unwrap().p99 > 95.0);
    }
}
