//! The HTTP API: the router, shared state, and one module per resource. Each module's handlers
//! sit next to their `#[utoipa::path]` documentation; the OpenAPI document is assembled from
//! them, so `openapi.yaml` is generated, never written by hand.

pub mod auth;
pub mod batches;
pub mod error;
pub mod events;
pub mod health;
pub mod request;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{MatchedPath, Request};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::store::Batches;
use error::ApiError;
use request::Limits;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub batches: Arc<Batches>,
    pub limits: Arc<Limits>,
    /// SHA-256 digests of the accepted bearer tokens; empty means no authentication.
    pub tokens: Arc<[[u8; 32]]>,
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
        (name = "operations", description = "Health and readiness")
    ),
    components(schemas(error::Problem, events::Progress))
)]
struct ApiDoc;

/// The OpenAPI document, as served at `/openapi.json` and committed as `openapi.yaml`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_router().split_for_parts().1
}

fn api_router() -> OpenApiRouter<AppState> {
    let batches = OpenApiRouter::new()
        .routes(routes!(batches::create_batch, batches::list_batches))
        .routes(routes!(batches::get_batch, batches::delete_batch))
        .routes(routes!(events::batch_events));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(batches)
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
}

/// The whole application router.
pub fn router(state: AppState) -> Router {
    let (api, doc) = api_router().split_for_parts();
    let api = api.layer(axum::middleware::from_fn_with_state(
        state.clone(),
        auth::require_token,
    ));
    api.merge(SwaggerUi::new("/docs").url("/openapi.json", doc))
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::extract::DefaultBodyLimit::max(
            state.limits.max_body_bytes,
        ))
        .with_state(state)
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map(MatchedPath::as_str)
                .unwrap_or("unmatched");
            tracing::info_span!("request", method = %req.method(), route, uri = %req.uri())
        }))
        .layer(CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                axum::response::IntoResponse::into_response(ApiError::Internal(
                    "a handler panicked".into(),
                ))
            },
        ))
}
