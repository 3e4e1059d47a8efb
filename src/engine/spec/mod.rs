//! Validated batch and job types: what the engine runs. Built only by parsing a request at the
//! edge (see `crate::request`), so every value here has already been checked.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

mod kinds;
mod stages;
mod thresholds;

pub use kinds::*;
pub use stages::{Stage, StageKind, Stages};
pub use thresholds::{Baseline, BaselineCheck, Figure, Threshold, Thresholds};

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
    /// The names of its jobs' checks, each once, in the jobs' order.
    pub fn check_names(&self) -> Vec<&str> {
        check_names(&self.jobs, true)
    }

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

/// The `FLOW/STEP` keys of `jobs`' flows (as `summary.by_step` names them), in order.
pub fn step_keys(jobs: &[JobSpec]) -> Vec<String> {
    let mut keys = Vec::new();
    for job in jobs {
        if let JobKind::Flow(flow) = &job.kind {
            let name = job.id.clone().unwrap_or_else(|| job.group.to_string());
            for (i, step) in flow.steps.iter().enumerate() {
                let key = match &step.id {
                    Some(id) => format!("{name}/{id}"),
                    None => format!("{name}/{i}"),
                };
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
    }
    keys
}

/// The names of `jobs`' checks (`soft`: soft ones too), each once, in the jobs' order (a
/// flow's, its steps').
pub fn check_names(jobs: &[JobSpec], soft: bool) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    let steps = jobs.iter().flat_map(|job| match &job.kind {
        JobKind::Flow(flow) => flow.steps.iter().collect::<Vec<_>>(),
        _ => vec![job],
    });
    for job in steps {
        if let JobKind::Http(h) = &job.kind
            && let Some(checks) = &h.checks
        {
            for c in checks.list.iter().filter(|c| soft || !c.soft) {
                if !names.contains(&c.name.as_str()) {
                    names.push(&c.name);
                }
            }
        }
    }
    names
}
