//! Validated batch and job types: what the engine runs. Built only by parsing a request at the
//! edge (see `crate::request`), so every value here has already been checked.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How the batch answers: `asyncio.gather` or `asyncio.wait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Results in input order, like `asyncio.gather`.
    #[default]
    Gather,
    /// `done` in completion order and `pending`, like `asyncio.wait`.
    Wait,
}

/// When a `wait` batch answers, as `asyncio.wait`'s `return_when`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReturnWhen {
    #[default]
    AllCompleted,
    FirstCompleted,
    FirstException,
}

/// What happens to a `wait` batch's pending tasks when its `timeout_ms` passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnTimeout {
    /// Pending tasks keep running, as in asyncio; their outcome is recorded.
    #[default]
    Continue,
    /// Pending tasks are cancelled.
    Cancel,
}

/// What becomes of the unfinished tasks of a shard whose instance was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnLost {
    /// Run them again on another instance (at least once, as job queues do).
    Rerun,
    /// End them `interrupted`.
    Interrupt,
}

/// Which task results an answer carries. The summary always covers every task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResultsMode {
    #[default]
    All,
    /// Only tasks that failed, timed out, were cancelled or interrupted.
    Errors,
    /// No task rows, summary only.
    None,
}

impl ResultsMode {
    /// Whether answers show a task that ended with (or without) an error.
    pub fn shows(self, failed: bool) -> bool {
        match self {
            ResultsMode::All => true,
            ResultsMode::Errors => failed,
            ResultsMode::None => false,
        }
    }
}

/// A whole batch, validated.
#[derive(Debug, Clone)]
pub struct BatchSpec {
    pub mode: Mode,
    /// The job list; a load run cycles through it: task `i` runs job `i % jobs.len()`.
    pub jobs: Vec<JobSpec>,
    /// How many tasks run, and when: the job list once, or a load run's shape.
    pub load: LoadPlan,
    /// Pass/fail limits on the summary; their checks form the batch's verdict.
    pub thresholds: Option<Thresholds>,
    /// Jobs in flight for this batch; already clamped to the server-wide bound.
    pub concurrency: usize,
    /// gather: deadline for the whole batch; wait: when to answer.
    pub timeout: Option<Duration>,
    pub return_exceptions: bool,
    pub fail_fast: bool,
    pub return_when: ReturnWhen,
    pub on_timeout: OnTimeout,
    pub results: ResultsMode,
    pub label: Option<String>,
    /// As the request said; absent, it depends on how the batch was accepted
    /// ([`BatchSpec::on_lost_for`]).
    pub on_lost: Option<OnLost>,
    /// Made by `rerun` from this batch's stored request.
    pub rerun_of: Option<uuid::Uuid>,
    /// A load run of several jobs: the keys of `summary.by_job`, from the request's whole job
    /// list (a shard's list may hold only some of them).
    pub job_keys: Option<Arc<JobKeys>>,
}

/// The keys a load run's `summary.by_job` counts under: each job's `id`, else its place in
/// the request's `jobs`; jobs that share an `id` count together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobKeys {
    pub names: Vec<String>,
    /// By a job's `group` (its place in the request): its key's place in `names`.
    pub of_group: Vec<u32>,
}

impl JobKeys {
    /// Most keys a summary breaks down by: each keeps histograms of its own.
    pub const MAX: usize = 64;

    /// The keys of the request's `jobs` (in request order); `None` for one key or more than
    /// [`JobKeys::MAX`].
    pub fn of(jobs: &[JobSpec]) -> Option<JobKeys> {
        let groups = jobs.iter().map(|j| j.group as usize + 1).max().unwrap_or(0);
        let mut first: Vec<Option<&JobSpec>> = vec![None; groups];
        for j in jobs {
            first[j.group as usize].get_or_insert(j);
        }
        let mut names: Vec<String> = Vec::new();
        let mut of_group = Vec::with_capacity(groups);
        for (group, job) in first.iter().enumerate() {
            let key = job
                .and_then(|j| j.id.clone())
                .unwrap_or_else(|| group.to_string());
            let part = match names.iter().position(|n| *n == key) {
                Some(p) => p,
                None => {
                    names.push(key);
                    names.len() - 1
                }
            };
            of_group.push(part as u32);
        }
        (2..=JobKeys::MAX)
            .contains(&names.len())
            .then_some(JobKeys { names, of_group })
    }
}

impl BatchSpec {
    /// How many tasks the batch runs, when that is known before it starts (not for a closed
    /// model run for a duration, nor with a warm-up, whose length only the run decides).
    pub fn tasks(&self) -> Option<usize> {
        self.load.fixed_tasks()
    }

    /// What a lost shard's unfinished tasks become: as asked, else `rerun` for a batch
    /// accepted asynchronously or with `load`, and `interrupt` for a synchronous one (its
    /// client's connection died with the instance).
    pub fn on_lost_for(&self, asynchronous: bool) -> OnLost {
        self.on_lost
            .unwrap_or(if asynchronous || self.load.is_load {
                OnLost::Rerun
            } else {
                OnLost::Interrupt
            })
    }

    /// The job task `index` runs.
    pub fn job(&self, index: usize) -> &JobSpec {
        &self.jobs[index % self.jobs.len()]
    }
}

/// How many tasks a batch runs and when they start: `load` as validated. A plain batch is
/// the job list once, as fast as `concurrency` allows.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadPlan {
    /// Measured tasks at most (the job list's length times `repeat`, or what `rate_per_s` sends
    /// in `duration_ms`); `None`: as many as `duration` leaves time for, up to `max_tasks`.
    pub count: Option<usize>,
    /// Stop starting measured tasks this long after the warm-up.
    pub duration: Option<Duration>,
    /// Open model: tasks start at this total rate, whatever the target's pace.
    pub rate_per_s: Option<f64>,
    /// A first stretch whose tasks run as the rest but are left out of the summary.
    pub warmup: Duration,
    /// The server's bound on tasks, warm-up included (`--max-jobs`).
    pub max_tasks: usize,
    /// The request had `load`: tasks waiting for a slot are only a count, not records.
    pub is_load: bool,
    /// Which of the batch's tasks this run is: all of them, or one shard's stripe.
    pub stripe: Stripe,
    /// Open model, a shard resumed after a loss: where in the batch's schedule it picks up
    /// (tasks due before this point start at once).
    pub resume_at: Duration,
    /// HTTP/2 connections per origin (`load.connections`); `None`: one per worker thread.
    pub connections: Option<usize>,
    /// `load.stages`: the arrival rate (open model) or the slots in use (closed model)
    /// ramped stage by stage.
    pub stages: Option<Arc<Stages>>,
}

/// What a load run's stages ramp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageKind {
    /// The arrival rate (k6's `ramping-arrival-rate`).
    Rate,
    /// The slots running tasks one after another (k6's `ramping-vus`).
    Concurrency,
}

/// One stage: ramp linearly to `target` over `duration`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    pub duration: Duration,
    pub target: f64,
}

/// `load.stages`, validated: a piecewise linear rate or concurrency over the run, each stage
/// ramping from the previous one's target (the first from `from`).
#[derive(Debug, Clone, PartialEq)]
pub struct Stages {
    pub kind: StageKind,
    pub from: f64,
    pub list: Vec<Stage>,
    /// Rate stages: the tasks due before each stage's end (the integral of the rate), so
    /// that task `k`'s stage and due time are found without walking the ramp.
    arrivals: Vec<f64>,
}

impl Stages {
    pub fn new(kind: StageKind, from: f64, list: Vec<Stage>) -> Stages {
        let mut arrivals = Vec::with_capacity(list.len());
        let mut total = 0.0;
        for (r0, stage) in Self::ramps(from, &list) {
            total += stage.duration.as_secs_f64() * (r0 + stage.target) / 2.0;
            arrivals.push(total);
        }
        Stages {
            kind,
            from,
            list,
            arrivals,
        }
    }

    /// Each stage with the value it ramps from.
    fn ramps(from: f64, list: &[Stage]) -> impl Iterator<Item = (f64, &Stage)> {
        let starts = std::iter::once(from).chain(list.iter().map(|s| s.target));
        starts.zip(list)
    }

    /// Every stage's start and end, from the run's start.
    pub fn bounds(&self) -> Vec<(Duration, Duration)> {
        let mut at = Duration::ZERO;
        self.list
            .iter()
            .map(|s| {
                let start = at;
                at += s.duration;
                (start, at)
            })
            .collect()
    }

    /// The whole run's length.
    pub fn total(&self) -> Duration {
        self.list.iter().map(|s| s.duration).sum()
    }

    /// Rate stages: how many tasks the ramp starts (task `k` is due when the integral of the
    /// rate reaches `k`; the first at once).
    pub fn tasks(&self) -> usize {
        let total = self.arrivals.last().copied().unwrap_or(0.0);
        // The integral of a ramp is exact in arithmetic; rounding must not add a task due
        // after the end.
        (total - 1e-9).max(0.0).ceil() as usize
    }

    /// Rate stages: the stage task `k` is due in.
    pub fn stage_of_task(&self, k: usize) -> usize {
        let k = k as f64;
        self.arrivals
            .partition_point(|&a| a <= k)
            .min(self.list.len().saturating_sub(1))
    }

    /// Rate stages: when task `k` is due, from the run's start.
    pub fn due(&self, k: usize) -> Duration {
        let s = self.stage_of_task(k);
        let before = if s == 0 { 0.0 } else { self.arrivals[s - 1] };
        let (start, _) = self.bounds()[s];
        let r0 = if s == 0 {
            self.from
        } else {
            self.list[s - 1].target
        };
        let stage = self.list[s];
        let d = stage.duration.as_secs_f64();
        // Within the stage the tasks due by `t` are r0 t + (r1 - r0) t² / 2d; solved for the
        // task's place x in the form that stays exact when the rate is flat or starts at 0.
        let x = (k as f64 - before).max(0.0);
        let a = (stage.target - r0) / (2.0 * d);
        let root = (r0 * r0 + 4.0 * a * x).max(0.0).sqrt();
        let t = if x == 0.0 { 0.0 } else { 2.0 * x / (r0 + root) };
        start + Duration::from_secs_f64(t.clamp(0.0, d))
    }

    /// The stage `t` after the run's start falls in (the last one past the end).
    pub fn stage_at(&self, t: Duration) -> usize {
        let mut end = Duration::ZERO;
        for (i, s) in self.list.iter().enumerate() {
            end += s.duration;
            if t < end {
                return i;
            }
        }
        self.list.len().saturating_sub(1)
    }

    /// The ramped value `t` after the run's start.
    pub fn value_at(&self, t: Duration) -> f64 {
        let mut start = Duration::ZERO;
        for (r0, s) in Self::ramps(self.from, &self.list) {
            if t < start + s.duration {
                let f = (t - start).as_secs_f64() / s.duration.as_secs_f64();
                return r0 + (s.target - r0) * f;
            }
            start += s.duration;
        }
        self.list.last().map_or(self.from, |s| s.target)
    }

    /// Concurrency stages: the slots in use `t` after the start (the ramp, rounded).
    pub fn slots_at(&self, t: Duration) -> usize {
        (self.value_at(t) + 0.5).floor().max(0.0) as usize
    }

    /// Concurrency stages: the first time at or after `from` when more than `rank` slots are
    /// in use, if that happens before the end.
    pub fn rises_above(&self, rank: usize, from: Duration) -> Option<Duration> {
        let level = rank as f64 + 0.5;
        let mut start = Duration::ZERO;
        for (r0, s) in Self::ramps(self.from, &self.list) {
            let end = start + s.duration;
            if end > from {
                let t0 = from.max(start);
                let at_t0 = self.value_at(t0);
                if at_t0 >= level {
                    return Some(t0);
                }
                if s.target >= level && s.target > r0 {
                    let f = (level - r0) / (s.target - r0);
                    let t = start + s.duration.mul_f64(f.clamp(0.0, 1.0));
                    return Some(t.max(t0));
                }
            }
            start = end;
        }
        None
    }
}

/// The tasks of one shard: batch task numbers `offset`, `offset + stride`, ... below the
/// batch's task count. Striped rather than cut in blocks (as k6's execution segments are), so
/// that each shard's part of the open model's schedule spans the whole run and the shards
/// together start every task at the time one instance would have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stripe {
    pub offset: usize,
    pub stride: usize,
}

impl Stripe {
    /// Every task: the run is the whole batch.
    pub const WHOLE: Stripe = Stripe {
        offset: 0,
        stride: 1,
    };

    /// Shard `index` of `count`.
    pub fn shard(index: usize, count: usize) -> Stripe {
        Stripe {
            offset: index,
            stride: count.max(1),
        }
    }

    /// The batch task number of this stripe's `k`-th task.
    pub fn global(self, k: usize) -> usize {
        self.offset + k * self.stride
    }

    /// The stripe's position of batch task `g`, when it belongs to the stripe.
    pub fn local(self, g: usize) -> Option<usize> {
        (g >= self.offset && (g - self.offset).is_multiple_of(self.stride))
            .then(|| (g - self.offset) / self.stride)
    }

    /// How many of a batch's `total` tasks belong to the stripe.
    pub fn tasks_of(self, total: usize) -> usize {
        total.saturating_sub(self.offset).div_ceil(self.stride)
    }
}

impl LoadPlan {
    /// The job list once.
    pub fn once(jobs: usize) -> LoadPlan {
        LoadPlan {
            count: Some(jobs),
            duration: None,
            rate_per_s: None,
            warmup: Duration::ZERO,
            max_tasks: jobs,
            is_load: false,
            stripe: Stripe::WHOLE,
            resume_at: Duration::ZERO,
            connections: None,
            stages: None,
        }
    }

    /// Tasks started at their intended times rather than as slots free up.
    pub fn is_open(&self) -> bool {
        self.rate_per_s.is_some() || self.rate_stages().is_some()
    }

    /// The stages, when they ramp the arrival rate.
    pub fn rate_stages(&self) -> Option<&Stages> {
        self.stages.as_deref().filter(|s| s.kind == StageKind::Rate)
    }

    /// The stages, when they ramp the slots in use.
    pub fn concurrency_stages(&self) -> Option<&Stages> {
        self.stages
            .as_deref()
            .filter(|s| s.kind == StageKind::Concurrency)
    }

    /// Open model: when the batch's task `g` is due, from the run's start.
    pub fn due(&self, g: usize) -> Option<Duration> {
        match (self.rate_stages(), self.rate_per_s) {
            (Some(stages), _) => Some(stages.due(g)),
            (None, Some(rate)) => Some(Duration::from_secs_f64(g as f64 / rate)),
            (None, None) => None,
        }
    }

    /// Warm-up tasks of an open model run: those intended to start within the warm-up.
    pub fn open_warmup_tasks(&self) -> usize {
        match self.rate_per_s {
            Some(rate) => (rate * self.warmup.as_secs_f64()).ceil() as usize,
            None => 0,
        }
    }

    /// Every task, known up front: no warm-up and a measured count that time cannot cut short.
    pub fn fixed_tasks(&self) -> Option<usize> {
        if !self.warmup.is_zero() || self.duration.is_some() && !self.is_open() {
            return None;
        }
        self.count
    }

    /// What the batch takes of the server's room for running and waiting tasks (what bounds
    /// memory): every task of a plain batch, or of a load run whose answers keep every task's
    /// record (`results: all`: as many as it may make); for a load run that keeps a byte per
    /// task, only its concurrency.
    pub fn reserve(&self, concurrency: usize, results: ResultsMode) -> usize {
        match self.fixed_tasks() {
            Some(n) if !self.is_load || results == ResultsMode::All => n,
            None if results == ResultsMode::All => self.max_tasks,
            Some(n) => n.min(concurrency),
            None => concurrency,
        }
    }
}

/// A summary figure a threshold can limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Threshold {
    P50Ms,
    P90Ms,
    P95Ms,
    P99Ms,
    P999Ms,
    MaxMs,
    MeanMs,
    /// (failed + timed_out) / tasks that ended.
    MaxErrorRate,
    MinThroughputPerS,
    /// Not a limit a request sets: the check the verdict gains, failed, when not every task
    /// ran to its end (cancelled, or interrupted by a shutdown). Its limit is the task count.
    Completed,
}

impl Threshold {
    /// A lower bound (`min_...`): the figure must reach the limit; the others must not pass it.
    pub fn is_minimum(self) -> bool {
        matches!(self, Threshold::MinThroughputPerS | Threshold::Completed)
    }
}

/// The limits a batch was given: on the batch's figures (in a fixed order: p50 ... max,
/// mean, error rate, throughput), on each named job's, and against a baseline batch's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "StoredThresholds")]
pub struct Thresholds {
    pub batch: Vec<(Threshold, f64)>,
    /// By `by_job` key, in the request's order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_job: Vec<(String, Vec<(Threshold, f64)>)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Baseline>,
}

impl Thresholds {
    /// Limits on the batch's figures only.
    pub fn batch(batch: Vec<(Threshold, f64)>) -> Thresholds {
        Thresholds {
            batch,
            ..Thresholds::default()
        }
    }
}

/// Thresholds as stored: a list of batch limits (before per-job and baseline limits), or
/// the whole.
#[derive(Deserialize)]
#[serde(untagged)]
enum StoredThresholds {
    Batch(Vec<(Threshold, f64)>),
    Whole {
        batch: Vec<(Threshold, f64)>,
        #[serde(default)]
        by_job: Vec<(String, Vec<(Threshold, f64)>)>,
        #[serde(default)]
        baseline: Option<Baseline>,
    },
}

impl From<StoredThresholds> for Thresholds {
    fn from(t: StoredThresholds) -> Thresholds {
        match t {
            StoredThresholds::Batch(batch) => Thresholds {
                batch,
                ..Thresholds::default()
            },
            StoredThresholds::Whole {
                batch,
                by_job,
                baseline,
            } => Thresholds {
                batch,
                by_job,
                baseline,
            },
        }
    }
}

/// `thresholds.baseline`: how much worse than another batch each figure may be. The
/// baseline's figures are read when the batch is accepted, so the verdict never depends on
/// the baseline still being stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub batch: uuid::Uuid,
    pub checks: Vec<BaselineCheck>,
}

/// One figure held against the baseline's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineCheck {
    pub figure: Figure,
    /// The largest regression allowed, in percent.
    pub max_regression_pct: f64,
    /// The baseline's figure; `None` until the baseline is read.
    pub base: Option<f64>,
}

impl BaselineCheck {
    /// The limit: the baseline's figure moved by the percentage in the worse direction.
    pub fn limit(&self) -> Option<f64> {
        let base = self.base?;
        let pct = self.max_regression_pct / 100.0;
        let limit = if self.figure.higher_is_better() {
            base * (1.0 - pct)
        } else {
            base * (1.0 + pct)
        };
        // To a millionth, so that 10 % over 23.311 reads 25.6421.
        Some((limit * 1e6).round() / 1e6)
    }
}

/// A figure of a summary that baselines and comparisons name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Figure {
    P50Ms,
    P90Ms,
    P95Ms,
    P99Ms,
    P999Ms,
    MaxMs,
    MeanMs,
    ThroughputPerS,
    /// (failed + timed_out) / tasks that ended.
    ErrorRate,
}

impl Figure {
    pub const ALL: [Figure; 9] = [
        Figure::P50Ms,
        Figure::P90Ms,
        Figure::P95Ms,
        Figure::P99Ms,
        Figure::P999Ms,
        Figure::MaxMs,
        Figure::MeanMs,
        Figure::ThroughputPerS,
        Figure::ErrorRate,
    ];

    /// The key requests and answers use.
    pub fn key(self) -> &'static str {
        match self {
            Figure::P50Ms => "p50_ms",
            Figure::P90Ms => "p90_ms",
            Figure::P95Ms => "p95_ms",
            Figure::P99Ms => "p99_ms",
            Figure::P999Ms => "p999_ms",
            Figure::MaxMs => "max_ms",
            Figure::MeanMs => "mean_ms",
            Figure::ThroughputPerS => "throughput_per_s",
            Figure::ErrorRate => "error_rate",
        }
    }

    pub fn from_key(key: &str) -> Option<Figure> {
        Figure::ALL.into_iter().find(|f| f.key() == key)
    }

    /// More is better (throughput); for the others less is.
    pub fn higher_is_better(self) -> bool {
        self == Figure::ThroughputPerS
    }
}

/// One job: what to run, and how to retry and time it out.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// The client's label, echoed back.
    pub id: Option<String>,
    /// Per attempt.
    pub timeout: Option<Duration>,
    pub retries: RetryPolicy,
    pub kind: JobKind,
    /// Its share of a load run's cycle (`weight`).
    pub weight: u32,
    /// Its place in the request's `jobs`: a load run's job list holds each job `weight` times,
    /// and `summary.by_job` counts them together by this.
    pub group: u32,
}

/// A load run's job list: each job `weight` times, in the order nginx's smooth weighted round
/// robin picks them (weights 3 and 1 give A A B A), so that any stretch of the run holds the
/// jobs close to their shares and every whole cycle holds them exactly.
pub fn weighted_cycle(jobs: &[JobSpec]) -> Vec<JobSpec> {
    let total: i64 = jobs.iter().map(|j| i64::from(j.weight)).sum();
    let mut current = vec![0i64; jobs.len()];
    let mut cycle = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, j) in current.iter_mut().zip(jobs) {
            *c += i64::from(j.weight);
        }
        // The first of the largest, so that the order is fixed.
        let (pick, _) =
            current.iter().enumerate().fold(
                (0, i64::MIN),
                |best, (i, &c)| if c > best.1 { (i, c) } else { best },
            );
        current[pick] -= total;
        cycle.push(jobs[pick].clone());
    }
    cycle
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryPolicy {
    /// Retries after the first attempt: `max + 1` attempts at most.
    pub max: u32,
    /// Base of the exponential backoff.
    pub backoff: Duration,
}

#[derive(Debug, Clone)]
pub enum JobKind {
    /// Boxed: an HTTP job is much larger than the others, and a batch may hold 100,000 sleeps.
    Http(Box<HttpJob>),
    Sleep(SleepJob),
    File(Arc<FileJob>),
}

/// The `kind` names of the job kinds, as they appear in requests and results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Http,
    Sleep,
    File,
}

impl JobKind {
    pub fn kind(&self) -> Kind {
        match self {
            JobKind::Http(_) => Kind::Http,
            JobKind::Sleep(_) => Kind::Sleep,
            JobKind::File(_) => Kind::File,
        }
    }
}

#[derive(Debug, Clone)]
pub struct HttpJob {
    pub method: http::Method,
    pub url: url::Url,
    /// What connections to the URL are keyed by: scheme, `host:port`, and (for `https`) the
    /// job's TLS options, so that jobs whose connections differ never share one.
    pub origin: String,
    pub headers: http::HeaderMap,
    pub body: bytes::Bytes,
    pub expect_status: ExpectStatus,
    pub max_response_bytes: u64,
    pub follow_redirects: u32,
    pub tls: TlsOptions,
    pub version: HttpVersion,
    /// `false`: a new connection for every request.
    pub keep_alive: bool,
    /// Placeholders in its URL's path and query, header values or body, rendered per task.
    pub templates: Option<Arc<crate::engine::template::HttpTemplates>>,
}

impl HttpJob {
    /// The URL up to its path, as the job wrote it: `scheme://host[:port]`.
    pub fn origin_prefix(&self) -> String {
        let u = &self.url;
        match u.port() {
            Some(p) => format!("{}://{}:{p}", u.scheme(), u.host_str().unwrap_or_default()),
            None => format!("{}://{}", u.scheme(), u.host_str().unwrap_or_default()),
        }
    }
}

/// A job's TLS options (`tls`), checked: `insecure` only where the server allows it, the
/// client certificate's paths relative to the files root.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsOptions {
    /// Skip the certificate checks.
    pub insecure: bool,
    /// PEM certificate chain and key for mutual TLS, beneath the files root.
    pub client_cert: Option<ClientCert>,
    /// Sent as SNI and checked against the certificate instead of the URL's host.
    pub server_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientCert {
    pub cert: String,
    pub key: String,
}

/// `http_version`: which HTTP a job speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, ToSchema)]
pub enum HttpVersion {
    /// HTTP/2 when the server offers it in the TLS handshake (ALPN), else HTTP/1.1; plain
    /// `http` is HTTP/1.1.
    #[default]
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = "1.1")]
    Http1,
    /// ALPN `h2` on `https`; prior knowledge (h2c) on `http`.
    #[serde(rename = "2")]
    Http2,
}

#[derive(Debug, Clone, Copy)]
pub struct SleepJob {
    pub duration: Duration,
}

#[derive(Debug, Clone)]
pub struct FileJob {
    /// Relative to the files root; the file guard still resolves it beneath the root.
    pub path: String,
    pub max_bytes: u64,
    pub encoding: FileEncoding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileEncoding {
    /// The content as text (`content`), when it is valid UTF-8; otherwise the job fails `invalid`.
    #[default]
    Utf8,
    /// The content as base64 (`content`).
    Base64,
    /// Size and SHA-256 only.
    None,
}

/// Which HTTP statuses count as success. Default: 200–399, as k6 counts failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectStatus {
    Any,
    /// Inclusive ranges; a code like `404` is `404..=404`, a class like `"2xx"` is `200..=299`.
    Ranges(Vec<(u16, u16)>),
}

impl Default for ExpectStatus {
    fn default() -> Self {
        ExpectStatus::Ranges(vec![(200, 399)])
    }
}

impl ExpectStatus {
    pub fn accepts(&self, status: u16) -> bool {
        match self {
            ExpectStatus::Any => true,
            ExpectStatus::Ranges(ranges) => {
                ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&status))
            }
        }
    }

    /// For messages: `200-399`, `201, 4xx`.
    pub fn describe(&self) -> String {
        match self {
            ExpectStatus::Any => "any".to_owned(),
            ExpectStatus::Ranges(ranges) => ranges
                .iter()
                .map(|&(lo, hi)| {
                    if lo == hi {
                        lo.to_string()
                    } else if lo % 100 == 0 && hi == lo + 99 {
                        format!("{}xx", lo / 100)
                    } else {
                        format!("{lo}-{hi}")
                    }
                })
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(kind: StageKind, from: f64, stages: &[(u64, f64)]) -> Stages {
        let list = stages
            .iter()
            .map(|&(ms, target)| Stage {
                duration: Duration::from_millis(ms),
                target,
            })
            .collect();
        Stages::new(kind, from, list)
    }

    /// 0 → 200/s over 2 s, 200/s for 2 s, 200 → 0/s over 2 s: 200 + 400 + 200 tasks, each due
    /// where the integral of the rate reaches its number.
    #[test]
    fn rate_stages_start_the_integral_of_the_rate_at_its_times() {
        let s = ramp(
            StageKind::Rate,
            0.0,
            &[(2000, 200.0), (2000, 200.0), (2000, 0.0)],
        );
        assert_eq!(s.tasks(), 800);
        let per_stage = (0..800).fold([0; 3], |mut n, k| {
            n[s.stage_of_task(k)] += 1;
            n
        });
        assert_eq!(per_stage, [200, 400, 200]);
        // In the first stage N(t) = 50 t²: task 50 is due at 1 s, task 200 at 2 s.
        assert_eq!(s.due(0), Duration::ZERO);
        assert!((s.due(50).as_secs_f64() - 1.0).abs() < 1e-6);
        assert!((s.due(200).as_secs_f64() - 2.0).abs() < 1e-6);
        // Flat: one task every 5 ms.
        assert!((s.due(300).as_secs_f64() - 2.5).abs() < 1e-6);
        // Ramping down: the last task is due before the end, and dues only grow.
        assert!(s.due(799) < Duration::from_secs(6));
        assert!((1..800).all(|k| s.due(k) >= s.due(k - 1)));
        // Tasks due in the last second of the ramp down: the integral of 100 → 0 over 1 s.
        let last_second = (0..800)
            .filter(|&k| s.due(k) >= Duration::from_secs(5))
            .count();
        assert!((49..=51).contains(&last_second), "{last_second}");
    }

    #[test]
    fn a_rate_ramp_from_a_starting_rate_counts_it() {
        let s = ramp(StageKind::Rate, 100.0, &[(1000, 300.0)]);
        assert_eq!(s.tasks(), 200);
        // 100 t + 100 t² = 100 at t = (√5 - 1) / 2.
        assert!((s.due(100).as_secs_f64() - 0.618_034).abs() < 1e-5);
    }

    #[test]
    fn concurrency_stages_open_slots_in_rank_order() {
        let s = ramp(
            StageKind::Concurrency,
            0.0,
            &[(1000, 10.0), (1000, 10.0), (1000, 0.0)],
        );
        assert_eq!(s.slots_at(Duration::ZERO), 0);
        assert_eq!(s.slots_at(Duration::from_millis(500)), 5);
        assert_eq!(s.slots_at(Duration::from_millis(1500)), 10);
        assert_eq!(s.slots_at(Duration::from_millis(2500)), 5);
        // Slot 4 (the fifth) opens when the ramp passes 4.5: at 450 ms.
        let at = s.rises_above(4, Duration::ZERO).unwrap();
        assert_eq!(at, Duration::from_millis(450));
        assert_eq!(s.slots_at(at), 5);
        // Already open: now.
        assert_eq!(
            s.rises_above(4, Duration::from_millis(1200)),
            Some(Duration::from_millis(1200))
        );
        // Ramping down, slot 9 never opens again.
        assert_eq!(s.rises_above(9, Duration::from_millis(2100)), None);
        assert_eq!(s.stage_at(Duration::from_millis(1999)), 1);
        assert_eq!(s.stage_at(Duration::from_millis(2000)), 2);
        assert_eq!(s.total(), Duration::from_secs(3));
    }
}
