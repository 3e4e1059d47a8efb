//! Bearer-token authentication for the batch endpoints, when tokens are configured.
//!
//! Tokens are kept as SHA-256 digests and compared in constant time; a token never reaches a
//! log line.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;

/// Paths that stay open whatever the API tokens: health, the docs and the OpenAPI document,
/// `/metrics` (which has a token of its own, `--metrics-token`), and the page's files (code a
/// browser must load before it can ask for a token; the data they show is the API's).
fn is_open(path: &str) -> bool {
    path == "/ui"
        || path.starts_with("/ui/")
        || path == "/healthz"
        || path == "/readyz"
        || path == "/metrics"
        || path == "/openapi.json"
        || path.starts_with("/docs")
}

pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The digest of the request's bearer token, if it has one.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<[u8; 32]> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| digest(t.trim()))
}

/// Whether the request carries the token whose digest is `expected`, compared in constant time.
pub fn presents(headers: &axum::http::HeaderMap, expected: &[u8; 32]) -> bool {
    bearer(headers).is_some_and(|p| p.ct_eq(expected).unwrap_u8() == 1)
}

pub async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if state.tokens.is_empty() || is_open(request.uri().path()) {
        return next.run(request).await;
    }
    let presented = bearer(request.headers());
    let ok = presented.is_some_and(|p| {
        // Check every configured token so the time taken does not say which one matched.
        state
            .tokens
            .iter()
            .fold(0u8, |hit, t| hit | t.ct_eq(&p).unwrap_u8())
            == 1
    });
    if ok {
        next.run(request).await
    } else {
        axum::response::IntoResponse::into_response(ApiError::Unauthorized)
    }
}
