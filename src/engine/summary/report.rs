//! What a batch's summary says: the figures answers, checkpoints and reports carry.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::engine::task::ErrorCode;

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
    /// A batch whose jobs have `checks`: each check's judgements, by name (a name two jobs
    /// share counts once, for both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<BTreeMap<String, CheckCount>>,
    /// A batch of flows: each step's figures, by `FLOW/STEP` (each its `id`, else its place).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_step: Option<BTreeMap<String, StepSummary>>,
}

/// How often one check passed and failed, over every task that judged it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CheckCount {
    pub passed: u64,
    pub failed: u64,
}

impl CheckCount {
    /// Passed over judged; `None` when it was never judged.
    pub fn rate(&self) -> Option<f64> {
        let judged = self.passed + self.failed;
        (judged > 0).then(|| self.passed as f64 / judged as f64)
    }
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

/// One step of a flow, over every task of the flow (`summary.by_step`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StepSummary {
    /// Its runs that ended (a skipped step did not run).
    pub tasks: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub timed_out: u64,
    /// Flows that ended before reaching it.
    pub skipped: u64,
    /// Its own durations, attempts and backoff included.
    pub duration_ms: Option<Percentiles>,
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
/// no runner (from its last checkpoint to the next claim). The fields after `window_ms` have
/// defaults, so that a checkpoint stored before them still reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Lost {
    pub shards: u64,
    pub tasks: u64,
    pub window_ms: f64,
    /// The instances that were running the lost shards when they were lost.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<String>,
    /// When the gap `window_ms` measures began: the lost shard's last checkpoint (else its
    /// start).
    #[serde(
        default,
        serialize_with = "crate::engine::task::micros_opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub at: Option<DateTime<Utc>>,
    /// What the rate fell to: tasks of the whole batch started per second during that gap,
    /// read from the batch's time bins of the tasks that ended (so to a bin's width, and
    /// without the tasks the lost instance started and never finished). Absent when the
    /// bins are missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_s: Option<f64>,
}

impl Lost {
    pub fn add(&mut self, other: Lost) {
        self.shards += other.shards;
        self.tasks += other.tasks;
        // `at` goes with the window it starts.
        let longer = other.window_ms > self.window_ms;
        if longer || (other.window_ms == self.window_ms && self.at.is_none()) {
            self.window_ms = other.window_ms;
            self.at = other.at;
        }
        for i in other.instances {
            if !self.instances.contains(&i) {
                self.instances.push(i);
            }
        }
        self.instances.sort();
    }

    /// The loss in words, for reports: which instance, when, for how long, and what the
    /// rate fell to (`instance node3 lost at 2025-05-01T10:00:07.210Z: 2 shards had no
    /// runner for 4915 ms; the batch started 1000.5 tasks/s meanwhile`).
    pub fn words(&self) -> String {
        let who = match self.instances.as_slice() {
            [] => "an instance".to_owned(),
            [one] => format!("instance {one}"),
            many => format!("instances {}", many.join(", ")),
        };
        let when = self
            .at
            .map(|at| {
                let at = at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                format!(" at {at}")
            })
            .unwrap_or_default();
        let shards = match self.shards {
            1 => "1 shard".to_owned(),
            n => format!("{n} shards"),
        };
        let rate = self
            .rate_per_s
            .map(|r| format!("; the batch started {r} tasks/s meanwhile"))
            .unwrap_or_default();
        format!(
            "{who} lost{when}: {shards} had no runner for {} ms{rate}",
            self.window_ms
        )
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
