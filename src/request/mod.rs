//! The `POST /batches` body as clients send it, and its parsing into the engine's validated
//! [`BatchSpec`]. Every check happens here, once; each invalid field is reported with its path.
//! The HTTP layer answers a [`Rejected`] as a problem; `fanout run` prints it.
//!
//! - here: the batch's top-level fields, the limits, and [`parse_batch`].
//! - [`jobs`]: one job of each kind, and its validation.
//! - [`load`]: `load` and `thresholds`.

pub mod checks;
pub mod jobs;
pub mod load;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::engine::spec::{BatchSpec, LoadPlan, Mode, OnLost, OnTimeout, ResultsMode, ReturnWhen};
use crate::engine::template::{DataTable, Template};
use jobs::{JobRequest, JobSlot, field_of};
use load::{LoadRequest, ThresholdsRequest};
use std::sync::Arc;

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
    match serde_json::from_slice::<BatchRequest<JobRequest>>(body) {
        Ok(request) => return request.map_jobs(|job| JobSlot(Ok(job))).validate(limits),
        Err(e) if e.is_syntax() || e.is_eof() => {
            return Err(Rejected::Malformed(e.to_string()));
        }
        Err(_) => {}
    }
    // Slow path, for a body that is wrong somewhere. Syntax first, so that broken JSON is a 400
    // whatever its content says; then each job on its own, so that every invalid field is
    // reported, each with its path.
    serde_json::from_slice::<serde::de::IgnoredAny>(body)
        .map_err(|e| Rejected::Malformed(e.to_string()))?;
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
                    Rejected::Invalid(vec![FieldError::new(
                        field.trim_start_matches('.'),
                        jobs::plain(&message),
                    )])
                }
                _ => Rejected::Malformed(inner.to_string()),
            });
        }
    };
    de.end().map_err(|e| Rejected::Malformed(e.to_string()))?;
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
            on_lost: self.on_lost,
        }
    }
}

impl BatchRequest {
    fn validate(self, limits: &Limits) -> Result<BatchSpec, Rejected> {
        let mut errors = Vec::new();
        if self.jobs.is_empty() {
            errors.push(FieldError::new("jobs", "a batch needs at least one job"));
        }
        // The jobs first: a load run's cycle is as long as their weights add up to.
        // Their errors are listed after the batch's own fields', as before.
        let mut job_errors = Vec::new();
        let mut jobs = Vec::with_capacity(self.jobs.len());
        for (i, slot) in self.jobs.into_iter().enumerate() {
            let at = format!("jobs[{i}]");
            match slot.0 {
                Err(e) => job_errors.push(FieldError::new(format!("{at}{}", e.field), e.message)),
                Ok(job) => {
                    if let Some(mut job) = job.validate(&at, limits, &mut job_errors) {
                        job.group = i as u32;
                        jobs.push(job);
                    }
                }
            }
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
            .and_then(|d| d.read(limits, &mut errors));
        if job_errors.is_empty() {
            bind_templates(&mut jobs, data, &mut job_errors);
        }
        if self.load.is_some() && job_errors.is_empty() && jobs.iter().any(|j| j.weight > 1) {
            jobs = crate::engine::spec::weighted_cycle(&jobs);
        }
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
        let thresholds = self
            .thresholds
            .as_ref()
            .map(|t| t.validate(keys.as_ref().map(|k| &k.names[..]), &mut errors));
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
        // Concurrency stages: as many slots as the highest stage uses.
        let concurrency = match load.concurrency_stages() {
            Some(stages) => {
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
            None => concurrency,
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
    let columns = data.as_ref().map_or(&[][..], |d| &d.columns[..]);
    for (i, job) in jobs.iter_mut().enumerate() {
        let JobKind::Http(http) = &mut job.kind else {
            continue;
        };
        let prefix = http.origin_prefix();
        let Some(arc) = http.templates.as_mut() else {
            continue;
        };
        let t = Arc::get_mut(arc).expect("made by this request's validation, not shared yet");
        let at = format!("jobs[{i}]");
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
        if !ok {
            continue;
        }
        t.data = data.clone().filter(|_| {
            t.target
                .iter()
                .chain(t.body.iter())
                .chain(t.headers.iter().map(|h| &h.1))
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
mod tests {
    use super::jobs::{StatusMatcher, parse_expect};
    use super::*;
    use crate::engine::spec::ExpectStatus;

    fn limits() -> Limits {
        Limits {
            max_job_timeout: Duration::from_secs(60),
            max_batch_duration: Duration::from_secs(600),
            max_body_bytes: 1000,
            max_jobs: 10,
            max_concurrency: 100,
            max_response_bytes: 1000,
            max_file_bytes: 1000,
            allow_insecure_tls: false,
            files_root: None,
        }
    }

    fn invalid_fields(body: &str) -> Vec<String> {
        match parse_batch(body.as_bytes(), &limits()) {
            Err(Rejected::Invalid(errors)) => errors.into_iter().map(|e| e.field).collect(),
            other => panic!("expected a 422, got {other:?}"),
        }
    }

    #[test]
    fn field_paths_name_the_field_that_is_wrong() {
        assert_eq!(
            invalid_fields(r#"{"mode":"race","jobs":[{"kind":"sleep","duration_ms":1}]}"#),
            vec!["mode"]
        );
        assert_eq!(
            invalid_fields(r#"{"jobs":[{"kind":"sleep","duration_ms":"100"}]}"#),
            vec!["jobs[0].duration_ms"]
        );
        assert_eq!(
            invalid_fields(
                r#"{"jobs":[{"kind":"sleep","duration_ms":1},{"kind":"http","url":"http://a.test/","retries":{"max":"x"}}]}"#
            ),
            vec!["jobs[1].retries.max"]
        );
    }

    #[test]
    fn a_number_out_of_range_says_the_range() {
        match parse_batch(
            br#"{"jobs":[{"kind":"sleep","duration_ms":1e23}]}"#,
            &limits(),
        ) {
            Err(Rejected::Invalid(errors)) => {
                assert_eq!(errors[0].field, "jobs[0].duration_ms");
                assert!(
                    errors[0].message.contains("whole number from 0 to"),
                    "{}",
                    errors[0].message
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn json_that_is_not_an_object_is_invalid_not_malformed() {
        for body in ["[1,2]", "3", "\"jobs\"", "null"] {
            match parse_batch(body.as_bytes(), &limits()) {
                Err(Rejected::Invalid(errors)) => {
                    assert_eq!(errors[0].field, "", "{body}");
                    assert!(
                        errors[0].message.contains("a batch is a JSON object"),
                        "{body}: {errors:?}"
                    );
                }
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn header_names_that_differ_only_in_case_are_one_header_twice() {
        let fields = invalid_fields(
            r#"{"jobs":[{"kind":"http","url":"http://app.test/","headers":{"Host":"a","host":"b"}}]}"#,
        );
        assert_eq!(fields, vec!["jobs[0].headers.host"]);
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
            Err(Rejected::Malformed(_))
        ));
        assert!(matches!(
            parse_batch(b"{} x", &limits()),
            Err(Rejected::Malformed(_))
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
            Err(Rejected::TooManyTasks {
                tasks: 11,
                limit: 10
            })
        ));
    }
}
