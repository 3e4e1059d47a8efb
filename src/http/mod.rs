//! The HTTP API: the router, shared state, and one module per resource. Each module's handlers
//! sit next to their `#[utoipa::path]` documentation; the OpenAPI document is assembled from
//! them, so `openapi.yaml` is generated, never written by hand.

pub mod auth;
pub mod batches;
pub mod compare;
pub mod error;
pub mod events;
pub mod health;
pub mod instances;
pub mod picture;
mod query;
pub mod rerun;
pub mod ui;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::HeaderName;
use axum::http::Method;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::request::Limits;
use crate::service::Batches;
use error::ApiError;

/// Everything a handler needs; cheap to clone (one reference count: every middleware and
/// extractor clones it per request).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] shares.
pub struct Shared {
    pub batches: Arc<Batches>,
    pub limits: Arc<Limits>,
    /// SHA-256 digests of the accepted bearer tokens; empty means no authentication.
    pub tokens: Arc<[[u8; 32]]>,
    /// SHA-256 digest of the token `GET /metrics` requires; `None`: open.
    pub metrics_token: Option<[u8; 32]>,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// Event streams open at once, server-wide (each may hold a batch in memory).
    pub event_streams: Arc<tokio::sync::Semaphore>,
    /// Set at shutdown: new batches get 503 while running ones drain.
    pub draining: Arc<AtomicBool>,
}

impl AppState {
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "fanout",
        description = "Runs a batch of jobs (HTTP fetches, sleeps, file reads) concurrently and \
answers with every job's result and timing: Python asyncio's `gather` and `wait` as a REST API.\n\n\
Errors are `application/problem+json` with a stable `code`."
    ),
    tags(
        (name = "batches", description = "Run batches and read their results"),
        (name = "operations", description = "Health, readiness and metrics")
    ),
    components(schemas(error::Problem, events::Progress, crate::engine::summary::LatencyMetric)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// The bearer tokens of `--api-token`, as a security scheme: Swagger UI's "Authorize" then
/// sends one with "Try it out". The batch endpoints take it, or nothing when the server has no
/// tokens.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "A token of the server's `--api-token` (needed only when it has some).",
            ))
            .build();
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The OpenAPI document, as served at `/openapi.json` and committed as `openapi.yaml`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_router().split_for_parts().1
}

fn api_router() -> OpenApiRouter<AppState> {
    let batches = OpenApiRouter::new()
        .routes(routes!(batches::create_batch, batches::list_batches))
        .routes(routes!(batches::get_batch, batches::delete_batch))
        .routes(routes!(events::batch_events))
        .routes(routes!(rerun::rerun_batch))
        .routes(routes!(compare::compare_batches))
        .routes(routes!(picture::batch_timeline))
        .routes(routes!(picture::batch_latency))
        .routes(routes!(instances::list_instances));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(batches)
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
}

/// Counts an API request and times it to its response head, by its route (never the raw path:
/// ids would make a series per batch).
async fn count_request(request: Request, next: axum::middleware::Next) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = match *request.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!(
        "fanout_http_request_duration_seconds",
        "route" => route.clone(),
        "method" => method
    )
    .record(started.elapsed().as_secs_f64());
    metrics::counter!(
        "fanout_http_requests_total",
        "route" => route,
        "method" => method,
        "status" => status
    )
    .increment(1);
    response
}

/// The whole application router.
pub fn router(state: AppState) -> Router {
    let (api, doc) = api_router().split_for_parts();
    let api = if state.batches.cluster().role.serves_api() {
        api.layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .merge(SwaggerUi::new("/docs").url("/openapi.json", doc))
        .merge(ui::routes())
    } else {
        // A worker serves its health and its metrics, nothing of the API.
        Router::new()
            .route("/healthz", axum::routing::get(health::healthz))
            .route("/readyz", axum::routing::get(health::readyz))
            .route("/metrics", axum::routing::get(health::metrics))
    };
    api.fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::extract::DefaultBodyLimit::max(
            state.limits.max_body_bytes,
        ))
        .with_state(state)
        .layer(axum::middleware::from_fn(count_request))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let route = req
                        .extensions()
                        .get::<MatchedPath>()
                        .map(MatchedPath::as_str)
                        .unwrap_or("unmatched");
                    let request_id = req
                        .headers()
                        .get(REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    tracing::info_span!(
                        "request",
                        request_id,
                        method = %req.method(),
                        route,
                        path = %req.uri().path()
                    )
                })
                // One access line per request, at info, inside the request's span.
                .on_request(())
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO))
                .on_failure(()),
        )
        .layer(CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                axum::response::IntoResponse::into_response(ApiError::Internal(
                    "a handler panicked".into(),
                ))
            },
        ))
        // Outermost: every answer, even a panic's, carries the request's id.
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(axum::middleware::from_fn(drop_unfit_request_id))
}

/// The request id header: taken from the client when it is fit for a log line, else made.
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Drops a client's `X-Request-Id` that is too long or has characters a log line should not
/// carry; one is then generated.
async fn drop_unfit_request_id(
    mut request: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let fit = |v: &axum::http::HeaderValue| {
        let b = v.as_bytes();
        !b.is_empty()
            && b.len() <= 128
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"-_.:/+=".contains(c))
    };
    if request.headers().get(REQUEST_ID).is_some_and(|v| !fit(v)) {
        request.headers_mut().remove(REQUEST_ID);
    }
    next.run(request).await
}
