//! One job as clients send it (`http`, `sleep`, `file`, `flow`), and its validation into the
//! engine's [`JobSpec`]. Each job is read on its own, so every invalid job is reported.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use utoipa::ToSchema;

use super::shape::{self, Flaw};
use super::{FieldError, Limits, MAX_BACKOFF_MS, MAX_LABEL, MAX_RETRIES, ms_field};
use crate::engine::spec::{FileEncoding, FileJob, JobKind, JobSpec, RetryPolicy, SleepJob};

/// Declares a job kind's request: the fields every job has (`id`, `timeout_ms`, `retries`,
/// `weight`), then the kind's own. A macro, not a shared struct under `#[serde(flatten)]`:
/// serde cannot flatten into a struct that denies unknown fields, and a job's typo must be
/// refused.
macro_rules! job_request {
    (
        $(#[$meta:meta])*
        pub struct $name:ident { $($own:tt)* }
    ) => {
        #[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
        $(#[$meta])*
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// Echoed back in the result.
            #[schema(max_length = 256)]
            pub id: Option<String>,
            /// Per attempt; default and upper bound: the server's `--max-job-timeout`.
            #[schema(minimum = 1, maximum = 86_400_000)]
            pub timeout_ms: Option<u64>,
            pub retries: Option<$crate::request::jobs::RetriesRequest>,
            /// In a load run, this job's share of the tasks: a cycle of the jobs holds it `weight`
            /// times (smooth weighted round robin). Default 1; ignored without `load`.
            #[schema(minimum = 1, maximum = 1000, example = json!(null))]
            pub weight: Option<u32>,
            $($own)*
        }

        impl $name {
            /// Takes the fields every job has, leaving the kind's own.
            pub(super) fn take_common(&mut self) -> $crate::request::jobs::CommonFields {
                $crate::request::jobs::CommonFields {
                    id: self.id.take(),
                    timeout_ms: self.timeout_ms.take(),
                    retries: self.retries.take(),
                    weight: self.weight.take(),
                }
            }
        }
    };
}

/// The fields every job has, as sent.
pub(super) struct CommonFields {
    id: Option<String>,
    timeout_ms: Option<u64>,
    retries: Option<RetriesRequest>,
    weight: Option<u32>,
}

mod flow;
mod http;

pub use flow::FlowJobRequest;
#[cfg(test)]
pub(super) use http::parse_expect;
pub use http::{ExpectStatusRequest, HttpJobRequest, StatusMatcher, TlsRequest};

/// One job, read on its own so that every invalid job is reported, not only the first: the
/// request as read (`None` when it could not be, e.g. of an unknown kind) and what was wrong
/// with its shape.
#[derive(Debug)]
pub struct JobSlot {
    pub(super) request: Option<JobRequest>,
    pub(super) flaws: Vec<Flaw>,
}

impl From<JobRequest> for JobSlot {
    fn from(request: JobRequest) -> Self {
        JobSlot {
            request: Some(request),
            flaws: Vec::new(),
        }
    }
}

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

impl JobSlot {
    /// The job `value` at `at` (`jobs[2]`). Its kind's own request type is read, not the
    /// tagged [`JobRequest`]: serde reads a tagged enum's fields from a buffer, which loses
    /// their paths.
    pub(super) fn read(value: serde_json::Value, at: &str) -> JobSlot {
        let failed = |flaw| JobSlot {
            request: None,
            flaws: vec![flaw],
        };
        let serde_json::Value::Object(mut fields) = value else {
            return failed(Flaw::at(at, "must be an object"));
        };
        let kind = fields.remove("kind");
        let fields = serde_json::Value::Object(fields);
        let (request, flaws) = match kind.as_ref().and_then(|k| k.as_str()) {
            Some("http") => of(shape::read(fields, at), |j| JobRequest::Http(Box::new(j))),
            Some("sleep") => of(shape::read(fields, at), JobRequest::Sleep),
            Some("file") => of(shape::read(fields, at), JobRequest::File),
            Some("flow") => of(shape::read(fields, at), JobRequest::Flow),
            _ => {
                let kinds: Vec<&str> = KINDS.iter().map(|k| k.0).collect();
                let said = if kind.is_none() {
                    "required; "
                } else {
                    "must be "
                };
                let message = format!("{said}one of: {}", kinds.join(", "));
                return failed(Flaw::at(format!("{at}.kind"), message));
            }
        };
        JobSlot { request, flaws }
    }
}

/// A kind's request as read, made a [`JobRequest`].
fn of<T>(
    (read, flaws): (Option<T>, Vec<Flaw>),
    make: impl FnOnce(T) -> JobRequest,
) -> (Option<JobRequest>, Vec<Flaw>) {
    (read.map(make), flaws)
}

/// A job: `kind` says which.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobRequest {
    Http(Box<HttpJobRequest>),
    Sleep(SleepJobRequest),
    File(FileJobRequest),
    Flow(FlowJobRequest),
}

/// What validating a job draws on beyond its own fields.
pub(super) struct Scope<'a> {
    pub limits: &'a Limits,
    /// The batch's compiled `matches` patterns, which the job's join.
    pub patterns: &'a mut crate::engine::check::Patterns,
    /// In a flow: the names its earlier steps capture, which a step's own join; `None`
    /// outside a flow, where nothing captures.
    pub captures: Option<&'a mut Vec<String>>,
}

/// The job kinds as the OpenAPI document names them: `HttpJob`, `SleepJob`, `FileJob`.
const KINDS: [(&str, &str); 4] = [
    ("http", "HttpJob"),
    ("sleep", "SleepJob"),
    ("file", "FileJob"),
    ("flow", "FlowJob"),
];

/// One kind's request schema, with its `kind` tag among its properties.
fn job_variant(kind: &str) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
    let schema = match kind {
        "http" => <HttpJobRequest as utoipa::PartialSchema>::schema(),
        "sleep" => <SleepJobRequest as utoipa::PartialSchema>::schema(),
        "flow" => <FlowJobRequest as utoipa::PartialSchema>::schema(),
        _ => <FileJobRequest as utoipa::PartialSchema>::schema(),
    };
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
}

/// Documented by hand: one closed object per kind, named, each with its `kind` among its
/// properties, and `kind` the discriminator. (Derived, the kind would sit in an `allOf` beside
/// a variant that forbids unknown fields, which no value satisfies.)
impl utoipa::PartialSchema for JobRequest {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::Ref;
        use utoipa::openapi::schema::{Discriminator, OneOfBuilder};
        let mut discriminator = Discriminator::new("kind");
        let mut one_of = OneOfBuilder::new();
        for (kind, name) in KINDS {
            discriminator
                .mapping
                .insert(kind.into(), format!("#/components/schemas/{name}"));
            one_of = one_of.item(Ref::from_schema_name(name));
        }
        one_of
            .discriminator(Some(discriminator))
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
        for (kind, name) in KINDS {
            schemas.push((name.into(), job_variant(kind)));
        }
        <HttpJobRequest as ToSchema>::schemas(schemas);
        <SleepJobRequest as ToSchema>::schemas(schemas);
        <FileJobRequest as ToSchema>::schemas(schemas);
        <FlowJobRequest as ToSchema>::schemas(schemas);
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

/// Largest `weight` a job may have.
pub(super) const MAX_WEIGHT: u32 = 1000;

job_request! {
    /// Waits `duration_ms` (with `max_ms`: a uniformly random time from `duration_ms` to
    /// `max_ms`, a think time).
    pub struct SleepJobRequest {
        #[schema(maximum = 86_400_000, example = 100)]
        pub duration_ms: u64,
        /// Think time: each task sleeps a uniformly random time from `duration_ms` to this
        /// (at least `duration_ms`).
        #[schema(maximum = 86_400_000, example = json!(null))]
        pub max_ms: Option<u64>,
    }
}

job_request! {
    /// Reads a file beneath the server's files root.
    pub struct FileJobRequest {
        /// Relative to the files root; absolute paths and escapes are refused (`forbidden`).
        #[schema(example = "hello.txt", min_length = 1)]
        pub path: String,
        /// Most bytes read. Capped by the server.
        pub max_bytes: Option<u64>,
        #[serde(default)]
        pub encoding: FileEncoding,
    }
}

impl JobRequest {
    /// The job, validated; what it draws on beyond its own fields is in `scope`.
    pub(super) fn validate(
        self,
        at: &str,
        scope: &mut Scope<'_>,
        errors: &mut Vec<FieldError>,
    ) -> Option<JobSpec> {
        let before = errors.len();
        let limits = scope.limits;
        let (common, kind) = match self {
            JobRequest::Http(mut j) => {
                let kind = j
                    .kind(at, scope, errors)
                    .map(|h| JobKind::Http(Box::new(h)));
                (j.take_common(), kind)
            }
            JobRequest::Flow(mut j) => {
                let kind = j.kind(at, scope, errors);
                (j.take_common(), kind)
            }
            JobRequest::Sleep(mut j) => {
                let kind = j.kind(at, errors);
                (j.take_common(), kind)
            }
            JobRequest::File(mut j) => (j.take_common(), Some(j.kind(at, limits, errors))),
        };
        let weight = common.weight(at, errors);
        let id = common.id(at, errors);
        let timeout = common.timeout(at, limits, errors);
        let retries = common.retries(at, errors);
        if errors.len() > before {
            return None;
        }
        Some(JobSpec {
            id,
            timeout,
            retries,
            kind: kind?,
            weight,
            group: 0,
        })
    }
}

impl SleepJobRequest {
    /// `duration_ms`, and `max_ms` when given (not below `duration_ms`).
    fn kind(&self, at: &str, errors: &mut Vec<FieldError>) -> Option<JobKind> {
        let duration = ms_field(
            errors,
            &format!("{at}.duration_ms"),
            Some(self.duration_ms),
            0,
        );
        let max = ms_field(errors, &format!("{at}.max_ms"), self.max_ms, 0);
        if let Some(m) = self.max_ms
            && m < self.duration_ms
        {
            errors.push(FieldError::new(
                format!("{at}.max_ms"),
                format!("at least duration_ms ({})", self.duration_ms),
            ));
            return None;
        }
        Some(JobKind::Sleep(SleepJob {
            duration: duration?,
            max,
        }))
    }
}

impl FileJobRequest {
    fn kind(self, at: &str, limits: &Limits, errors: &mut Vec<FieldError>) -> JobKind {
        if self.path.is_empty() {
            errors.push(FieldError::new(format!("{at}.path"), "must not be empty"));
        }
        JobKind::File(Arc::new(FileJob {
            path: self.path,
            max_bytes: self
                .max_bytes
                .unwrap_or(limits.max_file_bytes)
                .min(limits.max_file_bytes),
            encoding: self.encoding,
        }))
    }
}

impl CommonFields {
    /// `weight`, 1 when absent.
    fn weight(&self, at: &str, errors: &mut Vec<FieldError>) -> u32 {
        let weight = self.weight.unwrap_or(1);
        if !(1..=MAX_WEIGHT).contains(&weight) {
            errors.push(FieldError::new(
                format!("{at}.weight"),
                format!("from 1 to {MAX_WEIGHT}"),
            ));
        }
        weight
    }

    fn id(&self, at: &str, errors: &mut Vec<FieldError>) -> Option<String> {
        if self
            .id
            .as_ref()
            .is_some_and(|i| i.chars().count() > MAX_LABEL)
        {
            errors.push(FieldError::new(
                format!("{at}.id"),
                format!("at most {MAX_LABEL} characters"),
            ));
        }
        self.id.clone()
    }

    /// `timeout_ms`, at most the server's cap, which is also the default: nothing runs
    /// unbounded.
    fn timeout(&self, at: &str, limits: &Limits, errors: &mut Vec<FieldError>) -> Option<Duration> {
        let timeout = ms_field(errors, &format!("{at}.timeout_ms"), self.timeout_ms, 1);
        if timeout.is_some_and(|t| t > limits.max_job_timeout) {
            errors.push(FieldError::new(
                format!("{at}.timeout_ms"),
                format!(
                    "at most {} (the server's --max-job-timeout)",
                    limits.max_job_timeout.as_millis()
                ),
            ));
        }
        timeout.or(Some(limits.max_job_timeout))
    }

    fn retries(&self, at: &str, errors: &mut Vec<FieldError>) -> RetryPolicy {
        let Some(r) = &self.retries else {
            return RetryPolicy::default();
        };
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
}
