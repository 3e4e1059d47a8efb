//! `GET /ui`: the page, from the files embedded in the binary.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::ui::{INDEX_HTML, PAGE_POLICY, files};

/// The page's routes: `/ui` and one per file it loads; any other name under `/ui/` is the API's
/// 404. They carry no data, only the page's code: the data it shows comes from the API, behind
/// its tokens (the page asks for one when an answer is a 401).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let page = Router::new()
        .route(
            "/ui",
            get(|| async { file(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/ui/",
            get(|| async { file(INDEX_HTML, "text/html; charset=utf-8") }),
        );
    files().fold(page, |router, (name, body, content_type)| {
        router.route(
            &format!("/ui/{name}"),
            get(move || async move { file(body, content_type) }),
        )
    })
}

fn file(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Embedded in this build: a new build may change them.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
