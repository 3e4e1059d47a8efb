//! The API's one error type. Every error answers `application/problem+json` (RFC 9457) with a
//! stable machine-readable `code`; 5xx details are logged, never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

pub use crate::request::FieldError;
use crate::request::Rejected;

/// A problem details body (RFC 9457).
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// Always `about:blank`: `code` is the machine-readable kind.
    #[serde(rename = "type")]
    #[schema(example = "about:blank")]
    pub kind: &'static str,
    #[schema(example = "Invalid batch")]
    pub title: &'static str,
    #[schema(example = 422)]
    pub status: u16,
    #[schema(example = "the batch has 1 invalid field")]
    pub detail: String,
    /// Stable across versions; switch on this.
    #[schema(example = "invalid_batch")]
    pub code: &'static str,
    /// With `invalid_batch`: every invalid field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `malformed_json`: the body is not JSON.
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    /// 422 `invalid_batch`: well-formed JSON that is not a valid batch.
    #[error("the batch has {} invalid field{}", .0.len(), if .0.len() == 1 { "" } else { "s" })]
    Invalid(Vec<FieldError>),
    /// 422 `idempotency_key_reused`: the key belongs to a batch with another body.
    #[error("this Idempotency-Key was used for a batch with another body")]
    IdempotencyKeyReused,
    /// 422 `invalid_query`: bad query parameters.
    #[error("invalid query parameter {}", .0.first().map(|e| e.field.as_str()).unwrap_or(""))]
    InvalidQuery(Vec<FieldError>),
    /// 409 `batch_finished`: the batch has already finished; nothing to cancel.
    #[error("batch {0} has already finished")]
    BatchFinished(String),
    /// 503 `not_ready`: the store does not answer.
    #[error("the store does not answer")]
    NotReady,
    /// 413 `body_too_large`.
    #[error("the body is larger than the server's limit of {0} bytes")]
    BodyTooLarge(usize),
    /// 413 `too_many_jobs`.
    #[error("the batch has {jobs} tasks; the server's limit is {limit}")]
    TooManyJobs { jobs: usize, limit: usize },
    /// 404 `batch_not_found`.
    #[error("no batch with id {0}")]
    BatchNotFound(String),
    /// 404 `not_found`: no such route.
    #[error("no such endpoint")]
    RouteNotFound,
    /// 405 `method_not_allowed`.
    #[error("this endpoint does not take that method")]
    MethodNotAllowed,
    /// 401 `unauthorized`.
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// 429 `queue_full`: running and waiting tasks are at the server's bound.
    #[error("the server's queue is full; retry shortly")]
    QueueFull,
    /// 429 `too_many_streams`: the server follows as many event streams as it will.
    #[error("the server is serving as many event streams as it allows; retry shortly")]
    TooManyStreams,
    /// 503 `shutting_down`.
    #[error("the server is shutting down and takes no new batches")]
    ShuttingDown,
    /// 500 `internal`: logged with its details, answered without them.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson(_) => StatusCode::BAD_REQUEST,
            ApiError::Invalid(_) | ApiError::IdempotencyKeyReused | ApiError::InvalidQuery(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::BatchFinished(_) => StatusCode::CONFLICT,
            ApiError::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BodyTooLarge(_) | ApiError::TooManyJobs { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::BatchNotFound(_) | ApiError::RouteNotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::QueueFull | ApiError::TooManyStreams => StatusCode::TOO_MANY_REQUESTS,
            ApiError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::Invalid(_) => "invalid_batch",
            ApiError::IdempotencyKeyReused => "idempotency_key_reused",
            ApiError::InvalidQuery(_) => "invalid_query",
            ApiError::BatchFinished(_) => "batch_finished",
            ApiError::NotReady => "not_ready",
            ApiError::BodyTooLarge(_) => "body_too_large",
            ApiError::TooManyJobs { .. } => "too_many_jobs",
            ApiError::BatchNotFound(_) => "batch_not_found",
            ApiError::RouteNotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Unauthorized => "unauthorized",
            ApiError::QueueFull => "queue_full",
            ApiError::TooManyStreams => "too_many_streams",
            ApiError::ShuttingDown => "shutting_down",
            ApiError::Internal(_) => "internal",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            ApiError::MalformedJson(_) => "Malformed JSON",
            ApiError::Invalid(_) => "Invalid batch",
            ApiError::IdempotencyKeyReused => "Idempotency key reused",
            ApiError::InvalidQuery(_) => "Invalid query",
            ApiError::BatchFinished(_) => "Batch finished",
            ApiError::NotReady => "Not ready",
            ApiError::BodyTooLarge(_) => "Body too large",
            ApiError::TooManyJobs { .. } => "Too many jobs",
            ApiError::BatchNotFound(_) => "Batch not found",
            ApiError::RouteNotFound => "Not found",
            ApiError::MethodNotAllowed => "Method not allowed",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::QueueFull => "Queue full",
            ApiError::TooManyStreams => "Too many event streams",
            ApiError::ShuttingDown => "Shutting down",
            ApiError::Internal(_) => "Internal error",
        }
    }
}

impl ApiError {
    /// The body it answers.
    fn into_problem(self) -> Problem {
        Problem {
            kind: "about:blank",
            title: self.title(),
            status: self.status().as_u16(),
            detail: self.to_string(),
            code: self.code(),
            errors: match self {
                ApiError::Invalid(errors) | ApiError::InvalidQuery(errors) => errors,
                _ => Vec::new(),
            },
        }
    }
}

/// The problem answers that many routes document alike, written once: a route names them in
/// its `responses(...)`, and each one's example is the body the error really answers.
pub mod documented {
    use std::collections::BTreeMap;

    use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};

    use super::ApiError;

    /// The batch id the examples name.
    const EXAMPLE_ID: &str = "01939c7e-0000-7000-8000-000000000000";

    /// 401 `unauthorized`.
    pub struct Unauthorized;

    impl utoipa::IntoResponses for Unauthorized {
        fn responses() -> BTreeMap<String, RefOr<Response>> {
            problem(
                "A bearer token is required (`unauthorized`)",
                ApiError::Unauthorized,
            )
        }
    }

    /// 404 `batch_not_found`.
    pub struct BatchNotFound;

    impl utoipa::IntoResponses for BatchNotFound {
        fn responses() -> BTreeMap<String, RefOr<Response>> {
            problem(
                "No such batch (`batch_not_found`)",
                ApiError::BatchNotFound(EXAMPLE_ID.into()),
            )
        }
    }

    /// `error`'s answer, documented: its status, `description`, and its body as the example.
    fn problem(description: &str, error: ApiError) -> BTreeMap<String, RefOr<Response>> {
        let status = error.status().as_u16().to_string();
        let example = serde_json::to_value(error.into_problem()).expect("a problem serializes");
        let content = ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .example(Some(example))
            .build();
        let response = ResponseBuilder::new()
            .description(description)
            .content("application/problem+json", content)
            .build();
        BTreeMap::from([(status, response.into())])
    }
}

impl From<Rejected> for ApiError {
    fn from(e: Rejected) -> Self {
        match e {
            Rejected::Malformed(why) => ApiError::MalformedJson(why),
            Rejected::Invalid(errors) => ApiError::Invalid(errors),
            Rejected::TooManyTasks { tasks, limit } => ApiError::TooManyJobs { jobs: tasks, limit },
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError as E;
        match e {
            // The database does not answer now: a client may retry (503 + Retry-After).
            E::Unavailable(details) => {
                tracing::error!(error = %details, "the store did not answer");
                ApiError::NotReady
            }
            E::Conflict(_) | E::Missing(_) | E::Corrupt(_) | E::Setup(_) => {
                ApiError::Internal(e.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(details) = &self {
            tracing::error!(error = %details, "internal error");
        }
        let status = self.status();
        let problem = self.into_problem();
        let body = serde_json::to_vec(&problem).expect("a problem always serializes");
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"fanout\""),
            );
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}
