//! The `POST /batches` body as clients send it, and its parsing into the engine's validated
//! [`BatchSpec`]. Every check happens here, once; each invalid field is reported with its path.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;

use super::error::{ApiError, FieldError};
use crate::engine::spec::{
    BatchSpec, ExpectStatus, FileEncoding, FileJob, HttpJob, JobKind, JobSpec, LoadPlan, Mode,
    OnTimeout, ResultsMode, RetryPolicy, ReturnWhen, SleepJob, Threshold, Thresholds,
};

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
}

/// Longest `timeout_ms` or `duration_ms` accepted: one day.
const MAX_MS: u64 = 86_400_000;
const MAX_RETRIES: u32 = 10;
const MAX_BACKOFF_MS: u64 = 60_000;
const MAX_REDIRECTS: u32 = 20;
const MAX_LABEL: usize = 256;

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
}

/// A load run's shape.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadRequest {
    /// Run the job list this many times; every repetition is a task of its own.
    #[schema(minimum = 1, example = 100)]
    pub repeat: Option<u64>,
    /// Keep cycling the job list until this much time has passed (after the warm-up); with
    /// `repeat` too, whichever comes first ends the run. Tasks still running then finish.
    #[schema(minimum = 1, example = json!(null))]
    pub duration_ms: Option<u64>,
    /// Open model: the batch's total arrival rate, kept whatever the target's pace; latency
    /// counts from each task's intended start and `summary.late` says how far starts fell
    /// behind. `concurrency` still bounds tasks in flight. Without `repeat` or `duration_ms`
    /// the job list runs once at this rate.
    #[schema(minimum = 0.001, maximum = 1000000, example = json!(null))]
    pub rate_per_s: Option<f64>,
    /// A first stretch, before the measured run, whose tasks run like the others but are left
    /// out of the summary and the verdict (they are marked `warmup` in results).
    #[schema(example = 0)]
    pub warmup_ms: Option<u64>,
}

/// Highest `load.rate_per_s` accepted.
const MAX_RATE_PER_S: f64 = 1_000_000.0;
/// Lowest `load.rate_per_s` accepted: one task every 1,000 s.
const MIN_RATE_PER_S: f64 = 0.001;

impl LoadRequest {
    fn validate(&self, jobs: usize, limits: &Limits, errors: &mut Vec<FieldError>) -> LoadPlan {
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

/// Tasks intended to start within `d` at `rate` per second (the first at once).
fn arrivals(rate: f64, d: Duration) -> usize {
    ((rate * d.as_secs_f64()).ceil() as usize).max(1)
}

/// Pass/fail limits. Durations are in milliseconds over every task's `duration_ms`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({ "p95_ms": 200, "max_error_rate": 0.01 }))]
pub struct ThresholdsRequest {
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub mean_ms: Option<f64>,
    /// Most (failed + timed_out) / tasks that ended, from 0 to 1.
    #[schema(minimum = 0, maximum = 1)]
    pub max_error_rate: Option<f64>,
    /// Fewest tasks ended per second of `wall_ms`.
    pub min_throughput_per_s: Option<f64>,
}

impl ThresholdsRequest {
    fn validate(&self, errors: &mut Vec<FieldError>) -> Thresholds {
        let all = [
            (Threshold::P50Ms, "p50_ms", self.p50_ms),
            (Threshold::P90Ms, "p90_ms", self.p90_ms),
            (Threshold::P95Ms, "p95_ms", self.p95_ms),
            (Threshold::P99Ms, "p99_ms", self.p99_ms),
            (Threshold::P999Ms, "p999_ms", self.p999_ms),
            (Threshold::MaxMs, "max_ms", self.max_ms),
            (Threshold::MeanMs, "mean_ms", self.mean_ms),
            (
                Threshold::MaxErrorRate,
                "max_error_rate",
                self.max_error_rate,
            ),
            (
                Threshold::MinThroughputPerS,
                "min_throughput_per_s",
                self.min_throughput_per_s,
            ),
        ];
        let mut checks = Vec::new();
        for (which, key, value) in all {
            let Some(v) = value else { continue };
            let bad = !v.is_finite() || v < 0.0 || (which == Threshold::MaxErrorRate && v > 1.0);
            if bad {
                let range = if which == Threshold::MaxErrorRate {
                    "from 0 to 1"
                } else {
                    "a number, 0 or more"
                };
                errors.push(FieldError::new(
                    format!("thresholds.{key}"),
                    format!("must be {range}"),
                ));
            }
            checks.push((which, v));
        }
        if checks.is_empty() {
            errors.push(FieldError::new("thresholds", "give at least one threshold"));
        }
        Thresholds(checks)
    }
}

/// One job, parsed on its own so that every invalid job is reported, not only the first.
#[derive(Debug)]
pub struct JobSlot(Result<JobRequest, FieldError>);

/// Documented as the job it holds.
impl utoipa::PartialSchema for JobSlot {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::Ref::from_schema_name("JobRequest").into()
    }
}

impl ToSchema for JobSlot {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        schemas.push((
            "JobRequest".into(),
            <JobRequest as utoipa::PartialSchema>::schema(),
        ));
        <JobRequest as ToSchema>::schemas(schemas);
    }
}

impl<'de> Deserialize<'de> for JobSlot {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        Ok(JobSlot(serde_path_to_error::deserialize(value).map_err(
            |e| {
                let path = e.path().to_string();
                let message = e.into_inner().to_string();
                FieldError::new(field_of(&path, &message), message)
            },
        )))
    }
}

/// Where an error inside one job points, relative to the job: serde names the field in the
/// message when the path cannot (missing, unknown, or tag fields).
fn field_of(path: &str, message: &str) -> String {
    let quoted = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned)
    };
    let named = quoted("missing field `").or_else(|| quoted("unknown field `"));
    let base = if path == "." {
        String::new()
    } else {
        format!(".{path}")
    };
    match named {
        // serde_path_to_error already ends the path with an unknown field's name.
        Some(name) if base.ends_with(&format!(".{name}")) => base,
        Some(name) => format!("{base}.{name}"),
        None if message.contains("variant") || message.contains("`kind`") => ".kind".to_owned(),
        None => base,
    }
}

/// A job: `kind` says which.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobRequest {
    Http(HttpJobRequest),
    Sleep(SleepJobRequest),
    File(FileJobRequest),
}

/// Documented by hand: one closed object per kind, each with its `kind` among its properties.
/// (Derived, the kind would sit in an `allOf` beside a variant that forbids unknown fields,
/// which no value satisfies.)
impl utoipa::PartialSchema for JobRequest {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::schema::{Discriminator, ObjectBuilder, OneOfBuilder, Schema, Type};
        let variant = |kind: &str, schema: RefOr<Schema>| -> RefOr<Schema> {
            let RefOr::T(Schema::Object(mut object)) = schema else {
                return schema;
            };
            let tag = ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some([kind]))
                .build();
            object.properties.insert("kind".into(), tag.into());
            object.required.insert(0, "kind".into());
            RefOr::T(Schema::Object(object))
        };
        OneOfBuilder::new()
            .item(variant(
                "http",
                <HttpJobRequest as utoipa::PartialSchema>::schema(),
            ))
            .item(variant(
                "sleep",
                <SleepJobRequest as utoipa::PartialSchema>::schema(),
            ))
            .item(variant(
                "file",
                <FileJobRequest as utoipa::PartialSchema>::schema(),
            ))
            .discriminator(Some(Discriminator::new("kind")))
            .description(Some("A job: `kind` says which."))
            .into()
    }
}

impl ToSchema for JobRequest {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <HttpJobRequest as ToSchema>::schemas(schemas);
        <SleepJobRequest as ToSchema>::schemas(schemas);
        <FileJobRequest as ToSchema>::schemas(schemas);
    }
}

/// Retries after the first attempt, with exponential backoff and jitter. Retried: connect
/// errors, timeouts, and HTTP 5xx or 429 answers outside `expect_status`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetriesRequest {
    /// Up to this many retries: `max + 1` attempts.
    #[schema(maximum = 10)]
    pub max: u32,
    /// Delay before the first retry; doubles each time (with jitter).
    #[serde(default = "default_backoff_ms")]
    #[schema(default = 100, maximum = 60_000)]
    pub backoff_ms: u64,
}

fn default_backoff_ms() -> u64 {
    100
}

/// An HTTP request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpJobRequest {
    /// Echoed back in the result.
    #[schema(max_length = 256)]
    pub id: Option<String>,
    /// Per attempt; default and upper bound: the server's `--max-job-timeout`.
    #[schema(minimum = 1)]
    pub timeout_ms: Option<u64>,
    pub retries: Option<RetriesRequest>,
    /// Default `GET`.
    #[schema(example = "GET")]
    pub method: Option<String>,
    /// `http` or `https`.
    #[schema(
        example = "http://127.0.0.1:3000/health",
        pattern = "^[hH][tT][tT][pP][sS]?://[^/?#@]+"
    )]
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Request body as text.
    pub body: Option<String>,
    /// Request body as base64 (instead of `body`).
    pub body_base64: Option<String>,
    /// Statuses that count as success: codes (`201`), classes (`"2xx"`), or `"any"`.
    /// Default 200–399.
    #[schema(value_type = Option<Vec<Object>>, example = json!(["2xx", 304]))]
    pub expect_status: Option<ExpectStatusRequest>,
    /// Most body bytes kept; the rest is dropped and `truncated` set. Capped by the server.
    pub max_response_bytes: Option<u64>,
    /// Redirect hops to follow. Default 0: a 3xx is the answer.
    #[serde(default)]
    #[schema(maximum = 20)]
    pub follow_redirects: u32,
}

/// `expect_status`: one matcher or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ExpectStatusRequest {
    One(StatusMatcher),
    Many(Vec<StatusMatcher>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StatusMatcher {
    Code(u64),
    Text(String),
}

/// Waits `duration_ms`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SleepJobRequest {
    /// Echoed back in the result.
    #[schema(max_length = 256)]
    pub id: Option<String>,
    /// Per attempt; default and upper bound: the server's `--max-job-timeout`.
    #[schema(minimum = 1)]
    pub timeout_ms: Option<u64>,
    pub retries: Option<RetriesRequest>,
    #[schema(maximum = 86_400_000, example = 100)]
    pub duration_ms: u64,
}

/// Reads a file beneath the server's files root.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FileJobRequest {
    /// Echoed back in the result.
    #[schema(max_length = 256)]
    pub id: Option<String>,
    /// Per attempt; default and upper bound: the server's `--max-job-timeout`.
    #[schema(minimum = 1)]
    pub timeout_ms: Option<u64>,
    pub retries: Option<RetriesRequest>,
    /// Relative to the files root; absolute paths and escapes are refused (`forbidden`).
    #[schema(example = "hello.txt", min_length = 1)]
    pub path: String,
    /// Most bytes read. Capped by the server.
    pub max_bytes: Option<u64>,
    #[serde(default)]
    pub encoding: FileEncoding,
}

/// Parses and validates a request body.
pub fn parse_batch(body: &[u8], limits: &Limits) -> Result<BatchSpec, ApiError> {
    // Fast path: a well-formed batch parses in one pass, straight into typed jobs.
    match serde_json::from_slice::<BatchRequest<JobRequest>>(body) {
        Ok(request) => return request.map_jobs(|job| JobSlot(Ok(job))).validate(limits),
        Err(e) if e.is_syntax() || e.is_eof() => {
            return Err(ApiError::MalformedJson(e.to_string()));
        }
        Err(_) => {}
    }
    // Slow path, for a body that is wrong somewhere. Syntax first, so that broken JSON is a 400
    // whatever its content says; then each job on its own, so that every invalid field is
    // reported, each with its path.
    serde_json::from_slice::<serde::de::IgnoredAny>(body)
        .map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    let mut de = serde_json::Deserializer::from_slice(body);
    let request: BatchRequest = match serde_path_to_error::deserialize(&mut de) {
        Ok(r) => r,
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            return Err(match inner.classify() {
                serde_json::error::Category::Data => {
                    let message = inner.to_string();
                    let field = field_of(&path, &message);
                    ApiError::Invalid(vec![FieldError::new(
                        field.trim_start_matches('.'),
                        message,
                    )])
                }
                _ => ApiError::MalformedJson(inner.to_string()),
            });
        }
    };
    de.end()
        .map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    request.validate(limits)
}

impl<J> BatchRequest<J> {
    fn map_jobs<K>(self, f: impl FnMut(J) -> K) -> BatchRequest<K> {
        BatchRequest {
            mode: self.mode,
            jobs: self.jobs.into_iter().map(f).collect(),
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
        }
    }
}

impl BatchRequest {
    fn validate(self, limits: &Limits) -> Result<BatchSpec, ApiError> {
        let mut errors = Vec::new();
        if self.jobs.is_empty() {
            errors.push(FieldError::new("jobs", "a batch needs at least one job"));
        }
        let load = match &self.load {
            None => LoadPlan::once(self.jobs.len()),
            Some(load) => load.validate(self.jobs.len(), limits, &mut errors),
        };
        let fixed = match (load.count, load.is_open()) {
            (Some(n), true) => Some(n.saturating_add(load.open_warmup_tasks())),
            (count, _) => count,
        };
        if let Some(tasks) = fixed.filter(|&n| n > limits.max_jobs) {
            return Err(ApiError::TooManyJobs {
                jobs: tasks,
                limit: limits.max_jobs,
            });
        }
        let thresholds = self.thresholds.as_ref().map(|t| t.validate(&mut errors));
        // A load run or a verdict needs every task's outcome: nothing stops at a failure.
        let run_all = self.load.is_some() || self.thresholds.is_some();
        if run_all && self.fail_fast {
            errors.push(FieldError::new(
                "fail_fast",
                "with load or thresholds every task runs to the end; fail_fast cannot apply",
            ));
        }
        let concurrency = match self.concurrency {
            Some(0) => {
                errors.push(FieldError::new("concurrency", "must be at least 1"));
                1
            }
            Some(n) => (n.min(usize::MAX as u64) as usize).min(limits.max_concurrency),
            None => limits.max_concurrency,
        };
        let timeout = ms_field(&mut errors, "timeout_ms", self.timeout_ms, 1);
        if timeout.is_some_and(|t| t > limits.max_batch_duration) {
            errors.push(FieldError::new(
                "timeout_ms",
                format!(
                    "at most {} (the server's --max-batch-duration)",
                    limits.max_batch_duration.as_millis()
                ),
            ));
        }
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
        let mut jobs = Vec::with_capacity(self.jobs.len());
        for (i, slot) in self.jobs.into_iter().enumerate() {
            let at = format!("jobs[{i}]");
            match slot.0 {
                Err(e) => errors.push(FieldError::new(format!("{at}{}", e.field), e.message)),
                Ok(job) => {
                    if let Some(job) = job.validate(&at, limits, &mut errors) {
                        jobs.push(job);
                    }
                }
            }
        }
        if !errors.is_empty() {
            return Err(ApiError::Invalid(errors));
        }
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
        })
    }
}

fn ms_field(
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

impl JobRequest {
    fn validate(self, at: &str, limits: &Limits, errors: &mut Vec<FieldError>) -> Option<JobSpec> {
        let before = errors.len();
        let (id, timeout_ms, retries, kind) = match self {
            JobRequest::Http(j) => {
                let kind = j
                    .kind(at, limits, errors)
                    .map(|h| JobKind::Http(Box::new(h)));
                (j.id, j.timeout_ms, j.retries, kind)
            }
            JobRequest::Sleep(j) => {
                let kind = ms_field(errors, &format!("{at}.duration_ms"), Some(j.duration_ms), 0)
                    .map(|duration| JobKind::Sleep(SleepJob { duration }));
                (j.id, j.timeout_ms, j.retries, kind)
            }
            JobRequest::File(j) => {
                if j.path.is_empty() {
                    errors.push(FieldError::new(format!("{at}.path"), "must not be empty"));
                }
                let kind = JobKind::File(Arc::new(FileJob {
                    path: j.path,
                    max_bytes: j
                        .max_bytes
                        .unwrap_or(limits.max_file_bytes)
                        .min(limits.max_file_bytes),
                    encoding: j.encoding,
                }));
                (j.id, j.timeout_ms, j.retries, Some(kind))
            }
        };
        if id.as_ref().is_some_and(|i| i.chars().count() > MAX_LABEL) {
            errors.push(FieldError::new(
                format!("{at}.id"),
                format!("at most {MAX_LABEL} characters"),
            ));
        }
        let timeout = ms_field(errors, &format!("{at}.timeout_ms"), timeout_ms, 1);
        if timeout.is_some_and(|t| t > limits.max_job_timeout) {
            errors.push(FieldError::new(
                format!("{at}.timeout_ms"),
                format!(
                    "at most {} (the server's --max-job-timeout)",
                    limits.max_job_timeout.as_millis()
                ),
            ));
        }
        // Without its own, a job gets the server's cap: nothing runs unbounded.
        let timeout = timeout.or(Some(limits.max_job_timeout));
        let retries = match retries {
            None => RetryPolicy::default(),
            Some(r) => {
                if r.max > MAX_RETRIES {
                    errors.push(FieldError::new(
                        format!("{at}.retries.max"),
                        format!("at most {MAX_RETRIES}"),
                    ));
                }
                if r.backoff_ms > MAX_BACKOFF_MS {
                    errors.push(FieldError::new(
                        format!("{at}.retries.backoff_ms"),
                        format!("at most {MAX_BACKOFF_MS}"),
                    ));
                }
                RetryPolicy {
                    max: r.max,
                    backoff: Duration::from_millis(r.backoff_ms),
                }
            }
        };
        if errors.len() > before {
            return None;
        }
        Some(JobSpec {
            id,
            timeout,
            retries,
            kind: kind?,
        })
    }
}

impl HttpJobRequest {
    fn kind(&self, at: &str, limits: &Limits, errors: &mut Vec<FieldError>) -> Option<HttpJob> {
        let before = errors.len();
        let mut err = |field: &str, message: String| {
            errors.push(FieldError::new(format!("{at}.{field}"), message));
        };
        let method = match &self.method {
            None => http::Method::GET,
            Some(m) => match http::Method::from_str(&m.to_ascii_uppercase()) {
                Ok(m) => m,
                Err(_) => {
                    err("method", format!("not an HTTP method: {m:?}"));
                    http::Method::GET
                }
            },
        };
        let url = match url::Url::parse(&self.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
            Ok(u) if !matches!(u.scheme(), "http" | "https") => {
                err(
                    "url",
                    format!("scheme must be http or https, not {:?}", u.scheme()),
                );
                None
            }
            Ok(_) => {
                err("url", "the URL has no host".into());
                None
            }
            Err(e) => {
                err("url", format!("not a valid URL: {e}"));
                None
            }
        };
        let mut headers = http::HeaderMap::new();
        for (name, value) in &self.headers {
            match (
                http::HeaderName::from_str(name),
                http::HeaderValue::from_str(value),
            ) {
                (Ok(n), Ok(v)) => {
                    headers.append(n, v);
                }
                (Err(_), _) => err(&format!("headers.{name}"), "not a valid header name".into()),
                (_, Err(_)) => err(
                    &format!("headers.{name}"),
                    "not a valid header value".into(),
                ),
            }
        }
        let body = match (&self.body, &self.body_base64) {
            (Some(_), Some(_)) => {
                err("body_base64", "give body or body_base64, not both".into());
                bytes::Bytes::new()
            }
            (Some(text), None) => bytes::Bytes::from(text.clone()),
            (None, Some(b64)) => match base64::engine::general_purpose::STANDARD.decode(b64) {
                Ok(raw) => bytes::Bytes::from(raw),
                Err(e) => {
                    err("body_base64", format!("not valid base64: {e}"));
                    bytes::Bytes::new()
                }
            },
            (None, None) => bytes::Bytes::new(),
        };
        let expect_status = match &self.expect_status {
            None => ExpectStatus::default(),
            Some(ExpectStatusRequest::One(m)) => parse_expect(std::slice::from_ref(m))
                .unwrap_or_else(|m| {
                    err("expect_status", m);
                    ExpectStatus::default()
                }),
            Some(ExpectStatusRequest::Many(ms)) => parse_expect(ms).unwrap_or_else(|m| {
                err("expect_status", m);
                ExpectStatus::default()
            }),
        };
        if self.follow_redirects > MAX_REDIRECTS {
            err("follow_redirects", format!("at most {MAX_REDIRECTS}"));
        }
        if errors.len() > before {
            return None;
        }
        let url = url?;
        Some(HttpJob {
            origin: format!(
                "{}:{}",
                url.host_str().unwrap_or_default(),
                url.port_or_known_default().unwrap_or(80)
            ),
            method,
            url,
            headers,
            body,
            expect_status,
            max_response_bytes: self
                .max_response_bytes
                .unwrap_or(limits.max_response_bytes)
                .min(limits.max_response_bytes),
            follow_redirects: self.follow_redirects,
        })
    }
}

fn parse_expect(matchers: &[StatusMatcher]) -> Result<ExpectStatus, String> {
    if matchers.is_empty() {
        return Err("give at least one status, class (\"2xx\") or \"any\"".into());
    }
    let mut ranges = Vec::new();
    for m in matchers {
        match m {
            StatusMatcher::Code(c) if (100..=599).contains(c) => {
                ranges.push((*c as u16, *c as u16))
            }
            StatusMatcher::Code(c) => return Err(format!("{c} is not an HTTP status (100-599)")),
            StatusMatcher::Text(t) if t.eq_ignore_ascii_case("any") => {
                return Ok(ExpectStatus::Any);
            }
            StatusMatcher::Text(t) => {
                let lower = t.to_ascii_lowercase();
                let class = lower.strip_suffix("xx").and_then(|d| d.parse::<u16>().ok());
                match class {
                    Some(d @ 1..=5) if lower.len() == 3 => ranges.push((d * 100, d * 100 + 99)),
                    _ => match t.parse::<u16>() {
                        Ok(c) if (100..=599).contains(&c) => ranges.push((c, c)),
                        _ => {
                            return Err(format!(
                                "{t:?} is not a status, a class like \"2xx\", or \"any\""
                            ));
                        }
                    },
                }
            }
        }
    }
    Ok(ExpectStatus::Ranges(ranges))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_job_timeout: Duration::from_secs(60),
            max_batch_duration: Duration::from_secs(600),
            max_body_bytes: 1000,
            max_jobs: 10,
            max_concurrency: 100,
            max_response_bytes: 1000,
            max_file_bytes: 1000,
        }
    }

    fn invalid_fields(body: &str) -> Vec<String> {
        match parse_batch(body.as_bytes(), &limits()) {
            Err(ApiError::Invalid(errors)) => errors.into_iter().map(|e| e.field).collect(),
            other => panic!("expected a 422, got {other:?}"),
        }
    }

    #[test]
    fn every_invalid_job_is_reported_with_its_path() {
        let fields = invalid_fields(
            r#"{"jobs":[{"kind":"sleep","duration_ms":1},{"kind":"teleport"},{"kind":"http"},
                {"kind":"sleep","duration_ms":1,"colour":"red"},{"kind":"http","url":"ftp://x"}]}"#,
        );
        assert_eq!(
            fields,
            vec![
                "jobs[1].kind",
                "jobs[2].url",
                "jobs[3].colour",
                "jobs[4].url"
            ]
        );
    }

    #[test]
    fn wrong_types_at_the_top_level_point_at_the_field() {
        assert_eq!(
            invalid_fields(r#"{"jobs":[{"kind":"sleep","duration_ms":1}],"concurrency":"x"}"#),
            vec!["concurrency"]
        );
        assert_eq!(invalid_fields(r#"{"jobs":[]}"#), vec!["jobs"]);
        assert_eq!(invalid_fields(r#"{"jbos":[]}"#), vec!["jbos"]);
    }

    #[test]
    fn broken_json_is_malformed_not_invalid() {
        assert!(matches!(
            parse_batch(b"{\"jobs\": [", &limits()),
            Err(ApiError::MalformedJson(_))
        ));
        assert!(matches!(
            parse_batch(b"{} x", &limits()),
            Err(ApiError::MalformedJson(_))
        ));
    }

    #[test]
    fn expect_status_takes_codes_classes_and_any() {
        let e =
            parse_expect(&[StatusMatcher::Code(201), StatusMatcher::Text("4XX".into())]).unwrap();
        assert!(e.accepts(201) && e.accepts(404) && !e.accepts(200));
        assert_eq!(
            parse_expect(&[StatusMatcher::Text("any".into())]).unwrap(),
            ExpectStatus::Any
        );
        assert!(parse_expect(&[StatusMatcher::Text("6xx".into())]).is_err());
        assert!(parse_expect(&[StatusMatcher::Code(99)]).is_err());
    }

    #[test]
    fn concurrency_is_clamped_to_the_server_bound() {
        let spec = parse_batch(
            br#"{"jobs":[{"kind":"sleep","duration_ms":1}],"concurrency":1000000}"#,
            &limits(),
        )
        .unwrap();
        assert_eq!(spec.concurrency, 100);
    }

    #[test]
    fn too_many_jobs_is_413() {
        let jobs = [r#"{"kind":"sleep","duration_ms":1}"#; 11].join(",");
        let body = format!(r#"{{"jobs":[{jobs}]}}"#);
        assert!(matches!(
            parse_batch(body.as_bytes(), &limits()),
            Err(ApiError::TooManyJobs {
                jobs: 11,
                limit: 10
            })
        ));
    }
}
