//! The `POST /batches` body as clients send it, and its parsing into the engine's validated
//! [`BatchSpec`]. Every check happens here, once; each invalid field is reported with its path.
//! The HTTP layer answers a [`Rejected`] as a problem; `fanout run` prints it.
//!
//! - here: the batch's top-level fields, the limits, and [`parse_batch`].
//! - [`jobs`]: one job of each kind, and its validation.
//! - [`load`]: the `load` field, how many tasks run and when.
//! - [`thresholds`]: the `thresholds` field, the limits a verdict judges.
//! - [`shape`]: every field of the wrong shape (unknown, missing, mistyped), where serde
//!   alone stops at the first.

pub mod checks;
pub mod jobs;
pub mod load;
mod shape;
pub mod thresholds;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::engine::spec::{BatchSpec, LoadPlan, Mode, OnLost, OnTimeout, ResultsMode, ReturnWhen};
use crate::engine::template::{DataTable, Template};
use jobs::{JobRequest, JobSlot};
use load::LoadRequest;
use shape::Flaw;
use std::sync::Arc;
use thresholds::ThresholdsRequest;

/// Why a request body is not a batch the server runs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejected {
    /// The body is not JSON.
    #[error("the body is not valid JSON: {0}")]
    Malformed(String),
    /// Well-formed JSON that is not a valid batch: every invalid field.
    #[error("the batch has {} invalid field{}", .0.len(), if .0.len() == 1 { "" } else { "s" })]
    Invalid(Vec<FieldError>),
    /// More tasks than the server's `--max-jobs`.
    #[error("the batch has {tasks} tasks; the server's limit is {limit}")]
    TooManyTasks { tasks: usize, limit: usize },
}

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FieldError {
    /// Where, as a path into the request: `jobs[1].url`.
    #[schema(example = "jobs[1].url")]
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Server limits that requests are checked and clamped against.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_jobs: usize,
    pub max_concurrency: usize,
    pub max_response_bytes: u64,
    pub max_file_bytes: u64,
    /// Default and upper bound of a job's `timeout_ms`.
    pub max_job_timeout: Duration,
    /// Upper bound of a batch's `timeout_ms`.
    pub max_batch_duration: Duration,
    /// Whether jobs may set `tls.insecure` (`--allow-insecure-tls`).
    pub allow_insecure_tls: bool,
    /// Where `load.data` files are read (beneath it only); `None`: nowhere.
    pub files_root: Option<std::path::PathBuf>,
}

/// Longest `timeout_ms` or `duration_ms` accepted: one day.
pub(crate) const MAX_MS: u64 = 86_400_000;
pub(crate) const MAX_RETRIES: u32 = 10;
pub(crate) const MAX_BACKOFF_MS: u64 = 60_000;
pub(crate) const MAX_REDIRECTS: u32 = 20;
pub(crate) const MAX_LABEL: usize = 256;
/// Longest cycle of a load run's jobs: their weights added up.
pub(crate) const MAX_CYCLE: u64 = 10_000;

/// A batch of jobs to run concurrently.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "mode": "gather",
    "label": "try it out",
    "jobs": [
        { "kind": "sleep", "id": "slow", "duration_ms": 300 },
        { "kind": "sleep", "id": "fast", "duration_ms": 100 },
        { "kind": "sleep", "id": "medium", "duration_ms": 200 }
    ],
    "concurrency": 3,
    "timeout_ms": 5000,
    "return_exceptions": true
}))]
pub struct BatchRequest<J = JobSlot> {
    /// `gather` (default): results in input order. `wait`: `done` in completion order and
    /// `pending`.
    #[serde(default)]
    pub mode: Mode,
    /// The jobs; at least one.
    #[schema(value_type = Vec<JobRequest>, min_items = 1)]
    pub jobs: Vec<J>,
    /// Jobs in flight for this batch. Default: all at once (clamped to the server's bound).
    #[schema(minimum = 1)]
    pub concurrency: Option<u64>,
    /// gather: deadline for the whole batch (unfinished tasks end `timed_out`). wait: when to
    /// answer with what is done. Absent: only server caps apply.
    #[schema(minimum = 1, maximum = 86_400_000)]
    pub timeout_ms: Option<u64>,
    /// gather: report failures as results instead of failing the batch at the first one.
    #[serde(default)]
    pub return_exceptions: bool,
    /// gather: cancel the other tasks at the first failure (asyncio.TaskGroup).
    #[serde(default)]
    pub fail_fast: bool,
    /// wait: when to answer.
    #[serde(default)]
    pub return_when: ReturnWhen,
    /// wait: what happens to pending tasks when `timeout_ms` passes.
    #[serde(default)]
    pub on_timeout: OnTimeout,
    /// Which task results answers carry; the summary always covers every task.
    #[serde(default)]
    pub results: ResultsMode,
    /// A name for people.
    #[schema(max_length = 256)]
    pub label: Option<String>,
    /// Run the job list as a load: `repeat` times, for `duration_ms`, at `rate_per_s`, after a
    /// warm-up. With `load` or `thresholds`, every task runs to the end (`return_exceptions` is
    /// implied).
    pub load: Option<LoadRequest>,
    /// Limits on the summary; the answer then carries a `verdict` (the HTTP status stays 201).
    pub thresholds: Option<ThresholdsRequest>,
    /// When the instance running (part of) the batch is lost: `rerun` its unfinished tasks
    /// elsewhere, or end them `interrupted`. Default: `rerun` with `Prefer: respond-async`
    /// or `load`, else `interrupt`.
    pub on_lost: Option<OnLost>,
}

/// Parses and validates a request body.
pub fn parse_batch(body: &[u8], limits: &Limits) -> Result<BatchSpec, Rejected> {
    // Valid JSON that is not an object is a request of the wrong shape, not broken JSON (serde
    // would read an array as the struct's fields in order, and call the mismatch a syntax
    // error).
    if body.trim_ascii_start().first() != Some(&b'{') {
        serde_json::from_slice::<serde::de::IgnoredAny>(body)
            .map_err(|e| Rejected::Malformed(e.to_string()))?;
        return Err(Rejected::Invalid(vec![FieldError::new(
            "",
            "a batch is a JSON object, {\"jobs\": [...]}, not an array, string, number or null",
        )]));
    }
    // Fast path: a well-formed batch parses in one pass, straight into typed jobs.
    if let Ok(mut request) = serde_json::from_slice::<BatchRequest<JobRequest>>(body) {
        let jobs = std::mem::take(&mut request.jobs);
        let slots = jobs.into_iter().map(JobSlot::from).collect();
        return request.with_jobs(slots).validate(Vec::new(), limits);
    }
    // Slow path, for a body that is wrong somewhere: its syntax (serde_json calls some values
    // of the wrong type, a number for an enum, a syntax error: only a plain parse tells), then
    // the batch's own fields and each job on its own, each read for every field of the wrong
    // shape; then the validation of what read.
    let (value, mut flaws) = shape::parse(body)?;
    let (top, slots) = split_jobs(value);
    let (request, top_flaws) = shape::read::<BatchRequest<serde::de::IgnoredAny>>(top, "");
    flaws.extend(top_flaws);
    match request {
        Some(request) => request.with_jobs(slots).validate(flaws, limits),
        None => {
            let mut errors = shape::merge(flaws, Vec::new());
            for slot in slots {
                errors.extend(shape::merge(slot.flaws, Vec::new()));
            }
            Err(Rejected::Invalid(errors))
        }
    }
}

/// The batch without its jobs (an empty list in their place, so that the list's type is still
/// checked), and each job read on its own.
fn split_jobs(mut value: serde_json::Value) -> (serde_json::Value, Vec<JobSlot>) {
    let jobs = match value.get_mut("jobs") {
        Some(serde_json::Value::Array(jobs)) => std::mem::take(jobs),
        _ => return (value, Vec::new()),
    };
    let slots = jobs
        .into_iter()
        .enumerate()
        .map(|(i, job)| JobSlot::read(job, &format!("jobs[{i}]")))
        .collect();
    (value, slots)
}

impl<J> BatchRequest<J> {
    /// This batch with `jobs` in place of its own.
    fn with_jobs<K>(self, jobs: Vec<K>) -> BatchRequest<K> {
        BatchRequest {
            mode: self.mode,
            jobs,
            concurrency: self.concurrency,
            timeout_ms: self.timeout_ms,
            return_exceptions: self.return_exceptions,
            fail_fast: self.fail_fast,
            return_when: self.return_when,
            on_timeout: self.on_timeout,
            results: self.results,
            label: self.label,
            load: self.load,
            thresholds: self.thresholds,
            on_lost: self.on_lost,
        }
    }
}

impl BatchRequest {
    /// `flaws`: what was wrong with the shape of the batch's own fields.
    fn validate(mut self, flaws: Vec<Flaw>, limits: &Limits) -> Result<BatchSpec, Rejected> {
        let mut errors = Vec::new();
        // The jobs first: a load run's cycle is as long as their weights add up to. Their
        // errors are listed after the batch's own fields'.
        let mut job_errors = Vec::new();
        let slots = std::mem::take(&mut self.jobs);
        if slots.is_empty() {
            errors.push(FieldError::new("jobs", "a batch needs at least one job"));
        }
        let jobs = self.validate_jobs(slots, limits, &mut errors, &mut job_errors);
        let load = match &self.load {
            None => LoadPlan::once(jobs.len()),
            Some(load) => load.validate(jobs.len().max(1), limits, &mut errors),
        };
        let fixed = match (load.count, load.is_open()) {
            (Some(n), true) => Some(n.saturating_add(load.open_warmup_tasks())),
            (count, _) => count,
        };
        // Judged once every field is: an invalid request is a 422 whatever its size.
        let too_many = fixed.filter(|&n| n > limits.max_jobs);
        // The keys `thresholds.by_job` may name: those `summary.by_job` will have.
        let keys = self
            .load
            .is_some()
            .then(|| crate::engine::spec::JobKeys::of(&jobs))
            .flatten();
        // What `thresholds` may name: known only when every job is valid.
        let valid = job_errors.is_empty();
        let check_names = valid.then(|| crate::engine::spec::check_names(&jobs, true));
        let hard = crate::engine::spec::check_names(&jobs, false);
        let named = thresholds::Named {
            job_keys: keys.as_ref().map(|k| &k.names[..]),
            check_names: check_names.as_deref(),
            hard_checks: hard.into_iter().map(str::to_owned).collect(),
            step_keys: valid.then(|| crate::engine::spec::step_keys(&jobs)),
        };
        let thresholds = self.validate_thresholds(named, &mut errors);
        let concurrency = self.validate_concurrency(&load, limits, &mut errors);
        let timeout = self.validate_timeout(limits, &mut errors);
        self.validate_label_and_flags(&mut errors);
        let mut errors = shape::merge(flaws, errors);
        errors.extend(job_errors);
        if !errors.is_empty() {
            return Err(Rejected::Invalid(errors));
        }
        if let Some(tasks) = too_many {
            return Err(Rejected::TooManyTasks {
                tasks,
                limit: limits.max_jobs,
            });
        }
        let run_all = self.runs_every_task();
        Ok(BatchSpec {
            mode: self.mode,
            jobs,
            concurrency: concurrency.max(1),
            timeout,
            return_exceptions: self.return_exceptions || run_all,
            fail_fast: self.fail_fast,
            load,
            thresholds,
            return_when: self.return_when,
            on_timeout: self.on_timeout,
            results: self.results,
            label: self.label,
            on_lost: self.on_lost,
            rerun_of: None,
            job_keys: keys.map(Arc::new),
        })
    }

    /// Each job of `slots`, validated; their templates bound to `load.data`'s columns; a load
    /// run's list repeated by weight. The jobs' errors go to `job_errors`, `load.data`'s to
    /// `errors`.
    fn validate_jobs(
        &self,
        slots: Vec<JobSlot>,
        limits: &Limits,
        errors: &mut Vec<FieldError>,
        job_errors: &mut Vec<FieldError>,
    ) -> Vec<crate::engine::spec::JobSpec> {
        let mut jobs = Vec::with_capacity(slots.len());
        let mut patterns = crate::engine::check::Patterns::default();
        let mut scope = jobs::Scope {
            limits,
            patterns: &mut patterns,
            captures: None,
        };
        for (i, slot) in slots.into_iter().enumerate() {
            let at = format!("jobs[{i}]");
            let mut found = Vec::new();
            let job = slot
                .request
                .and_then(|job| job.validate(&at, &mut scope, &mut found));
            if let Some(mut job) = job.filter(|_| slot.flaws.is_empty()) {
                job.group = i as u32;
                jobs.push(job);
            }
            job_errors.extend(shape::merge(slot.flaws, found));
        }
        let cycle: u64 = jobs.iter().map(|j| u64::from(j.weight)).sum();
        if self.load.is_some() && cycle > MAX_CYCLE {
            job_errors.push(FieldError::new(
                "jobs",
                format!("the jobs' weights add up to {cycle}; at most {MAX_CYCLE}"),
            ));
        }
        // Placeholders naming `load.data` columns, bound before the job list repeats them.
        let data = self
            .load
            .as_ref()
            .and_then(|l| l.data.as_ref())
            .and_then(|d| d.read(limits, errors));
        if job_errors.is_empty() {
            bind_templates(&mut jobs, data, job_errors);
        }
        if self.load.is_some() && job_errors.is_empty() && jobs.iter().any(|j| j.weight > 1) {
            jobs = crate::engine::spec::weighted_cycle(&jobs);
        }
        jobs
    }

    /// A load run or a verdict needs every task's outcome: nothing stops at a failure.
    fn runs_every_task(&self) -> bool {
        self.load.is_some() || self.thresholds.is_some()
    }

    /// `thresholds`, naming what `named` holds; and `fail_fast`, which they rule out.
    fn validate_thresholds(
        &self,
        named: thresholds::Named<'_>,
        errors: &mut Vec<FieldError>,
    ) -> Option<crate::engine::spec::Thresholds> {
        let thresholds = self.thresholds.as_ref().map(|t| t.validate(named, errors));
        if self.runs_every_task() && self.fail_fast {
            errors.push(FieldError::new(
                "fail_fast",
                "with load or thresholds every task runs to the end; fail_fast cannot apply",
            ));
        }
        thresholds
    }

    /// `concurrency`, clamped to the server's bound; concurrency stages use as many slots as
    /// the highest stage does.
    fn validate_concurrency(
        &self,
        load: &LoadPlan,
        limits: &Limits,
        errors: &mut Vec<FieldError>,
    ) -> usize {
        let concurrency = match self.concurrency {
            Some(0) => {
                errors.push(FieldError::new("concurrency", "must be at least 1"));
                1
            }
            Some(n) => (n.min(usize::MAX as u64) as usize).min(limits.max_concurrency),
            None => limits.max_concurrency,
        };
        let Some(stages) = load.concurrency_stages() else {
            return concurrency;
        };
        let top = stages
            .list
            .iter()
            .map(|s| s.target as usize)
            .max()
            .unwrap_or(1);
        if self.concurrency.is_some_and(|c| (c as usize) < top) {
            errors.push(FieldError::new(
                "concurrency",
                format!("below the stages' highest target_concurrency ({top})"),
            ));
        }
        top.clamp(1, limits.max_concurrency)
    }

    /// `timeout_ms`, at most the server's `--max-batch-duration`.
    fn validate_timeout(&self, limits: &Limits, errors: &mut Vec<FieldError>) -> Option<Duration> {
        let timeout = ms_field(errors, "timeout_ms", self.timeout_ms, 1);
        if timeout.is_some_and(|t| t > limits.max_batch_duration) {
            errors.push(FieldError::new(
                "timeout_ms",
                format!(
                    "at most {} (the server's --max-batch-duration)",
                    limits.max_batch_duration.as_millis()
                ),
            ));
        }
        timeout
    }

    /// `fail_fast` against `return_exceptions`, and `label`'s length.
    fn validate_label_and_flags(&self, errors: &mut Vec<FieldError>) {
        if self.fail_fast && self.return_exceptions {
            errors.push(FieldError::new(
                "fail_fast",
                "fail_fast cancels the other tasks at the first failure; it cannot be combined with return_exceptions",
            ));
        }
        if self
            .label
            .as_ref()
            .is_some_and(|l| l.chars().count() > MAX_LABEL)
        {
            errors.push(FieldError::new(
                "label",
                format!("at most {MAX_LABEL} characters"),
            ));
        }
    }
}

/// Binds each HTTP job's `data.` placeholders to `data`'s columns and checks a sample of
/// what its placeholders render (task 0, the first row): a URL that parses, header values a
/// header can carry. Errors name the job's field.
fn bind_templates(
    jobs: &mut [crate::engine::spec::JobSpec],
    data: Option<Arc<DataTable>>,
    errors: &mut Vec<FieldError>,
) {
    use crate::engine::spec::JobKind;
    for (i, job) in jobs.iter_mut().enumerate() {
        match &mut job.kind {
            JobKind::Http(http) => bind_http(http, &format!("jobs[{i}]"), &data, errors),
            JobKind::Flow(flow) => {
                let flow = Arc::get_mut(flow).expect("made by this request's validation");
                for (s, step) in flow.steps.iter_mut().enumerate() {
                    if let JobKind::Http(http) = &mut step.kind {
                        let at = format!("jobs[{i}].steps[{s}]");
                        bind_http(http, &at, &data, errors);
                    }
                }
            }
            _ => {}
        }
    }
}

/// [`bind_templates`] for one HTTP job (or flow step) at `at`.
fn bind_http(
    http: &mut crate::engine::spec::HttpJob,
    at: &str,
    data: &Option<Arc<DataTable>>,
    errors: &mut Vec<FieldError>,
) {
    let columns = data.as_ref().map_or(&[][..], |d| &d.columns[..]);
    let prefix = http.origin_prefix();
    let Some(arc) = http.templates.as_mut() else {
        return;
    };
    let t = Arc::get_mut(arc).expect("made by this request's validation, not shared yet");
    let bind = |errors: &mut Vec<FieldError>, field: String, template: &mut Template| {
        let bound = template.bind(columns);
        if let Err(message) = &bound {
            errors.push(FieldError::new(format!("{at}.{field}"), message.clone()));
        }
        bound.is_ok()
    };
    let mut ok = t
        .target
        .as_mut()
        .is_none_or(|x| bind(errors, "url".into(), x));
    for (name, value) in &mut t.headers {
        if !bind(errors, format!("headers.{name}"), value) {
            ok = false;
            continue;
        }
        // A value from the data file with a line break would end the header early.
        for column in value
            .columns()
            .filter_map(|c| columns.iter().position(|x| x == c))
        {
            if let Some(row) = data.as_ref().and_then(|d| d.unfit_for_header(column)) {
                errors.push(FieldError::new(
                    format!("{at}.headers.{name}"),
                    format!(
                        "load.data row {} has a line break or NUL in column {:?}, which a header cannot carry",
                        row + 1,
                        columns[column]
                    ),
                ));
                ok = false;
            }
        }
    }
    if let Some(body) = &mut t.body {
        ok &= bind(errors, "body".into(), body);
    }
    for check in &mut t.checks {
        ok &= bind(errors, "checks".into(), check);
    }
    if !ok {
        return;
    }
    t.data = data.clone().filter(|_| {
        t.target
            .iter()
            .chain(t.body.iter())
            .chain(t.headers.iter().map(|h| &h.1))
            .chain(t.checks.iter())
            .any(|x| x.columns().next().is_some())
    });
    // What task 0 would send must be a request.
    let vars = t.vars(0);
    if let Some(target) = &t.target {
        let url = format!("{prefix}{}", target.render_string(&vars, true));
        if let Err(e) = url::Url::parse(&url)
            .map_err(|e| e.to_string())
            .and_then(|_| {
                http::Uri::try_from(target.render_string(&vars, true))
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
        {
            errors.push(FieldError::new(
                format!("{at}.url"),
                format!("with its placeholders filled in, not a valid URL ({url}): {e}"),
            ));
        }
    }
    for (name, value) in &t.headers {
        if http::HeaderValue::from_str(&value.render_string(&vars, false)).is_err() {
            errors.push(FieldError::new(
                format!("{at}.headers.{name}"),
                "with its placeholders filled in, not a valid header value",
            ));
        }
    }
}

pub(crate) fn ms_field(
    errors: &mut Vec<FieldError>,
    field: &str,
    value: Option<u64>,
    min: u64,
) -> Option<Duration> {
    let v = value?;
    if !(min..=MAX_MS).contains(&v) {
        errors.push(FieldError::new(
            field,
            format!("must be between {min} and {MAX_MS} (one day)"),
        ));
        return None;
    }
    Some(Duration::from_millis(v))
}

#[cfg(test)]
mod tests;
