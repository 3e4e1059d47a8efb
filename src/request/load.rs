//! `load` (how many tasks run, and when) as clients send it, and its validation.

use std::time::Duration;

use serde::Deserialize;
use utoipa::ToSchema;

use super::{FieldError, Limits, ms_field};
use std::sync::Arc;

use crate::engine::spec::{LoadPlan, Stage, StageKind, Stages, Stripe};
use crate::engine::template::DataTable;

/// A load run's shape.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadRequest {
    /// Run the job list this many times; every repetition is a task of its own.
    #[schema(minimum = 1, example = 100)]
    pub repeat: Option<u64>,
    /// Keep cycling the job list until this much time has passed (after the warm-up); with
    /// `repeat` too, whichever comes first ends the run. Tasks still running then finish.
    #[schema(minimum = 1, maximum = 86_400_000, example = json!(null))]
    pub duration_ms: Option<u64>,
    /// Open model: the batch's total arrival rate, kept whatever the target's pace; latency
    /// counts from each task's intended start and `summary.late` says how far starts fell
    /// behind. `concurrency` still bounds tasks in flight. Without `repeat` or `duration_ms`
    /// the job list runs once at this rate.
    #[schema(minimum = 0.001, maximum = 1000000, example = json!(null))]
    pub rate_per_s: Option<f64>,
    /// A first stretch, before the measured run, whose tasks run like the others but are left
    /// out of the summary and the verdict (they are marked `warmup` in results).
    #[schema(minimum = 0, maximum = 86_400_000, example = 0)]
    pub warmup_ms: Option<u64>,
    /// HTTP/2 only: the connections per origin that the run's streams share. Default: one
    /// per worker thread of the instance.
    #[schema(minimum = 1, maximum = 1024, example = json!(null))]
    pub connections: Option<u32>,
    /// Ramp the run stage by stage, each linearly from the previous stage's target: the
    /// arrival rate (`target_rate_per_s`, k6's `ramping-arrival-rate`; the first stage from
    /// `rate_per_s`, or 0) or the slots running tasks one after another
    /// (`target_concurrency`, k6's `ramping-vus`; the first from 0). One kind per batch; not
    /// with `repeat`, `duration_ms` or `warmup_ms`.
    #[schema(example = json!(null))]
    pub stages: Option<Vec<StageRequest>>,
    /// A CSV file with a header row, beneath the server's files root, whose columns the
    /// jobs' `{{data.COLUMN}}` placeholders name: each task takes the next row (cycling), or
    /// one at random. Read when the batch is accepted.
    #[schema(example = json!(null))]
    pub data: Option<DataRequest>,
}

/// `load.data`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DataRequest {
    /// Relative to the files root.
    #[schema(example = "users.csv")]
    pub file: String,
    #[serde(default)]
    pub order: DataOrder,
}

/// Which row a task takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DataOrder {
    /// Task `seq` takes row `seq` modulo the rows.
    #[default]
    Sequential,
    Random,
}

impl DataRequest {
    /// Reads and parses the file beneath the files root; errors name `load.data.file`.
    pub(super) fn read(
        &self,
        limits: &Limits,
        errors: &mut Vec<FieldError>,
    ) -> Option<Arc<DataTable>> {
        let mut fail = |message: String| {
            errors.push(FieldError::new("load.data.file", message));
            None
        };
        let Some(root) = &limits.files_root else {
            return fail("this server reads no files".to_owned());
        };
        let dir = match cap_std::fs::Dir::open_ambient_dir(root, cap_std::ambient_authority()) {
            Ok(dir) => dir,
            Err(_) => {
                return fail(
                    "the server's files root does not exist (see --files-root)".to_owned(),
                );
            }
        };
        let file = match crate::guard::files::open(&dir, &self.file) {
            Ok(f) => f,
            Err(crate::guard::files::OpenError::NotFound) => {
                return fail(format!("no file {:?} beneath the files root", self.file));
            }
            Err(crate::guard::files::OpenError::Forbidden(why))
            | Err(crate::guard::files::OpenError::Invalid(why)) => return fail(why.to_owned()),
            Err(crate::guard::files::OpenError::Io(_)) => {
                return fail(format!("{:?} could not be read", self.file));
            }
        };
        use std::io::Read as _;
        let mut text = Vec::new();
        let cap = limits.max_file_bytes;
        if file
            .into_std()
            .take(cap + 1)
            .read_to_end(&mut text)
            .is_err()
        {
            return fail(format!("{:?} could not be read", self.file));
        }
        if text.len() as u64 > cap {
            return fail(format!(
                "larger than the server's --max-file-bytes ({cap} bytes)"
            ));
        }
        match DataTable::from_csv(text.as_slice(), self.order == DataOrder::Random) {
            Ok(table) => Some(Arc::new(table)),
            Err(e) => fail(format!("{:?}: {e}", self.file)),
        }
    }
}

/// One stage of `load.stages`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StageRequest {
    #[schema(minimum = 1, maximum = 86_400_000, example = 10000)]
    pub duration_ms: u64,
    /// The arrival rate at the stage's end.
    #[schema(minimum = 0, maximum = 1000000)]
    pub target_rate_per_s: Option<f64>,
    /// The slots in use at the stage's end.
    #[schema(minimum = 0)]
    pub target_concurrency: Option<u64>,
}

/// Most stages a load run may have.
const MAX_STAGES: usize = 100;

/// Most HTTP/2 connections per origin a load run may ask for.
const MAX_CONNECTIONS: u32 = 1024;

/// Highest `load.rate_per_s` accepted.
const MAX_RATE_PER_S: f64 = 1_000_000.0;
/// Lowest `load.rate_per_s` accepted: one task every 1,000 s.
const MIN_RATE_PER_S: f64 = 0.001;

impl LoadRequest {
    pub(super) fn validate(
        &self,
        jobs: usize,
        limits: &Limits,
        errors: &mut Vec<FieldError>,
    ) -> LoadPlan {
        let repeat = match self.repeat {
            Some(0) => {
                errors.push(FieldError::new("load.repeat", "must be at least 1"));
                None
            }
            Some(n) => Some(n.min(usize::MAX as u64) as usize),
            None => None,
        };
        let duration = ms_field(errors, "load.duration_ms", self.duration_ms, 1);
        let warmup = ms_field(errors, "load.warmup_ms", self.warmup_ms, 0).unwrap_or_default();
        if duration.unwrap_or_default() + warmup > limits.max_batch_duration {
            errors.push(FieldError::new(
                "load.duration_ms",
                format!(
                    "with warmup_ms, at most {} (the server's --max-batch-duration)",
                    limits.max_batch_duration.as_millis()
                ),
            ));
        }
        let rate = match self.rate_per_s {
            Some(r) if !(MIN_RATE_PER_S..=MAX_RATE_PER_S).contains(&r) => {
                errors.push(FieldError::new(
                    "load.rate_per_s",
                    format!("must be between {MIN_RATE_PER_S} and {MAX_RATE_PER_S}"),
                ));
                None
            }
            r => r,
        };
        if let Some(c) = self.connections
            && !(1..=MAX_CONNECTIONS).contains(&c)
        {
            errors.push(FieldError::new(
                "load.connections",
                format!("must be from 1 to {MAX_CONNECTIONS}"),
            ));
        }
        if let Some(stages) = &self.stages {
            return self.staged(stages, limits, errors);
        }
        let repeated = repeat.map(|r| jobs.saturating_mul(r));
        let count = match (repeated, rate, duration) {
            (Some(n), Some(rate), Some(d)) => Some(n.min(arrivals(rate, d))),
            (Some(n), _, _) => Some(n),
            (None, Some(rate), Some(d)) => Some(arrivals(rate, d)),
            (None, None, Some(_)) => None,
            (None, _, None) => Some(jobs),
        };
        let plan = LoadPlan {
            count,
            duration,
            rate_per_s: rate,
            warmup,
            max_tasks: limits.max_jobs,
            is_load: true,
            stripe: Stripe::WHOLE,
            resume_at: Duration::ZERO,
            connections: self.connections.map(|c| c as usize),
            stages: None,
        };
        // The open model's schedule must fit in the server's limit on a batch's life.
        if let (Some(rate), Some(count)) = (rate, count) {
            let schedule_s = (count + plan.open_warmup_tasks()) as f64 / rate;
            if schedule_s > limits.max_batch_duration.as_secs_f64() {
                errors.push(FieldError::new(
                    "load.rate_per_s",
                    format!(
                        "{count} tasks at this rate take {schedule_s:.0} s, longer than the \
                         server's --max-batch-duration ({} s)",
                        limits.max_batch_duration.as_secs()
                    ),
                ));
            }
        }
        plan
    }
}

impl LoadRequest {
    /// A run shaped by `load.stages`.
    fn staged(
        &self,
        stages: &[StageRequest],
        limits: &Limits,
        errors: &mut Vec<FieldError>,
    ) -> LoadPlan {
        self.refuse_beside_stages(errors);
        if stages.is_empty() || stages.len() > MAX_STAGES {
            errors.push(FieldError::new(
                "load.stages",
                format!("give 1 to {MAX_STAGES} stages"),
            ));
        }
        let kind = if stages
            .first()
            .is_none_or(|s| s.target_concurrency.is_none())
        {
            StageKind::Rate
        } else {
            StageKind::Concurrency
        };
        let list = stages
            .iter()
            .enumerate()
            .map(|(i, stage)| stage.validate(&format!("load.stages[{i}]"), kind, limits, errors))
            .collect();
        let stages = Stages::new(kind, self.stages_from(kind, errors), list);
        let total = stages.total();
        if total > limits.max_batch_duration {
            errors.push(FieldError::new(
                "load.stages",
                format!(
                    "the stages last {} ms, longer than the server's --max-batch-duration ({} ms)",
                    total.as_millis(),
                    limits.max_batch_duration.as_millis()
                ),
            ));
        }
        LoadPlan {
            count: staged_count(&stages, errors),
            duration: (kind == StageKind::Concurrency).then_some(total),
            rate_per_s: None,
            warmup: Duration::ZERO,
            max_tasks: limits.max_jobs,
            is_load: true,
            stripe: Stripe::WHOLE,
            resume_at: Duration::ZERO,
            connections: self.connections.map(|c| c as usize),
            stages: Some(Arc::new(stages)),
        }
    }

    /// The fields that say how long a run lasts, which stages say instead.
    fn refuse_beside_stages(&self, errors: &mut Vec<FieldError>) {
        for (field, given) in [
            ("load.repeat", self.repeat.is_some()),
            ("load.duration_ms", self.duration_ms.is_some()),
            ("load.warmup_ms", self.warmup_ms.is_some_and(|w| w > 0)),
        ] {
            if given {
                errors.push(FieldError::new(
                    field,
                    "cannot be combined with stages: the stages say how long the run lasts",
                ));
            }
        }
    }

    /// Where the first stage ramps from: `rate_per_s` (or 0) for rate stages, 0 slots for
    /// concurrency stages, which take no rate.
    fn stages_from(&self, kind: StageKind, errors: &mut Vec<FieldError>) -> f64 {
        match kind {
            StageKind::Rate => self.rate_per_s.unwrap_or(0.0),
            StageKind::Concurrency => {
                if self.rate_per_s.is_some() {
                    errors.push(FieldError::new(
                        "load.rate_per_s",
                        "concurrency stages run the closed model: no arrival rate",
                    ));
                }
                0.0
            }
        }
    }
}

impl StageRequest {
    /// This stage (at `at`) of a run whose stages ramp `kind`.
    fn validate(
        &self,
        at: &str,
        kind: StageKind,
        limits: &Limits,
        errors: &mut Vec<FieldError>,
    ) -> Stage {
        if !(1..=super::MAX_MS).contains(&self.duration_ms) {
            errors.push(FieldError::new(
                format!("{at}.duration_ms"),
                format!("must be between 1 and {} (one day)", super::MAX_MS),
            ));
        }
        Stage {
            duration: Duration::from_millis(self.duration_ms.clamp(1, super::MAX_MS)),
            target: self.target(at, kind, limits, errors),
        }
    }

    /// The rate or the slots at the stage's end: one of the two, of the run's kind.
    fn target(
        &self,
        at: &str,
        kind: StageKind,
        limits: &Limits,
        errors: &mut Vec<FieldError>,
    ) -> f64 {
        let refused = match (kind, self.target_rate_per_s, self.target_concurrency) {
            (StageKind::Rate, Some(r), None) => {
                if !(0.0..=MAX_RATE_PER_S).contains(&r) {
                    errors.push(FieldError::new(
                        format!("{at}.target_rate_per_s"),
                        format!("must be between 0 and {MAX_RATE_PER_S}"),
                    ));
                }
                return r;
            }
            (StageKind::Concurrency, None, Some(c)) => {
                if c > limits.max_concurrency as u64 {
                    errors.push(FieldError::new(
                        format!("{at}.target_concurrency"),
                        format!(
                            "at most {} (the server's --max-concurrency)",
                            limits.max_concurrency
                        ),
                    ));
                }
                return c as f64;
            }
            (_, Some(_), Some(_)) => "give target_rate_per_s or target_concurrency, not both",
            (_, None, None) => "give target_rate_per_s or target_concurrency",
            _ => "a batch's stages all ramp the rate or all the concurrency, not both",
        };
        errors.push(FieldError::new(at, refused));
        0.0
    }
}

/// A staged run's task count: rate stages start a known number of tasks, concurrency stages
/// run for their length. Either must start some.
fn staged_count(stages: &Stages, errors: &mut Vec<FieldError>) -> Option<usize> {
    match stages.kind {
        StageKind::Rate => {
            let n = stages.tasks();
            if n == 0 && !stages.list.is_empty() {
                errors.push(FieldError::new(
                    "load.stages",
                    "the stages' rates start no task: give a stage a rate above 0",
                ));
            }
            Some(n)
        }
        StageKind::Concurrency => {
            if stages.list.iter().all(|s| s.target < 1.0) {
                errors.push(FieldError::new(
                    "load.stages",
                    "the stages run no slot: give a stage a target_concurrency of 1 or more",
                ));
            }
            None
        }
    }
}

/// Tasks intended to start within `d` at `rate` per second (the first at once).
fn arrivals(rate: f64, d: Duration) -> usize {
    ((rate * d.as_secs_f64()).ceil() as usize).max(1)
}
