//! A job's request as the lean path writes it: the HTTP/1 bytes made once per batch, the
//! HTTP/2 head, and for a job with placeholders the pieces each task's request is rendered
//! from.

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method, header};

use super::super::http::Hop;
use crate::engine::spec::HttpJob;
use crate::engine::template::HttpTemplates;

/// A job's request, made ready once for all its repetitions.
pub(super) struct Prepared {
    /// As it goes on an HTTP/1 connection.
    pub(super) h1: Box<[u8]>,
    /// The head of its HTTP/2 request.
    pub(super) h2: http::request::Parts,
    /// A job with placeholders: its HTTP/1 request in pieces, rendered per task.
    pub(super) wire: Option<Wire>,
}

/// The job's request as it goes on the wire: the request line in origin form, the headers
/// the general path sends too (the job's own replace them), the body's length, and the body.
pub(super) fn request(job: &HttpJob) -> Result<Box<[u8]>, http::Error> {
    let (target, headers) = head_lines(job, &[])?;
    let mut request = Vec::with_capacity(256 + job.body.len());
    request.extend_from_slice(job.method.as_str().as_bytes());
    request.push(b' ');
    request.extend_from_slice(target.as_bytes());
    request.extend_from_slice(&headers);
    if sends_length(job) {
        length_line(&mut request, job.body.len());
    }
    request.extend_from_slice(b"\r\n");
    request.extend_from_slice(&job.body);
    Ok(request.into())
}

/// As hyper writes it: a length whenever there is a body, or the method usually has one.
pub(super) fn sends_length(job: &HttpJob) -> bool {
    !job.body.is_empty() || matches!(job.method, Method::POST | Method::PUT | Method::PATCH)
}

pub(super) fn length_line(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(len.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The request target as the URL writes it, and the rest of the request line with the
/// header lines (the body's length aside), leaving out the headers `without` names.
pub(super) fn head_lines(
    job: &HttpJob,
    without: &[HeaderName],
) -> Result<(String, Vec<u8>), http::Error> {
    let url = &job.url;
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    // Checks the target is one a request line can carry.
    let uri = http::Uri::try_from(path)?;
    let mut headers = HeaderMap::with_capacity(3 + job.headers.len());
    // The Host header as the URL writes it (no default port).
    let host = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_owned(),
    };
    headers.insert(header::HOST, HeaderValue::from_str(&host)?);
    with_job_headers(&mut headers, job);
    if !job.keep_alive {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    for name in without {
        headers.remove(name);
    }
    let mut lines = Vec::with_capacity(256);
    lines.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &headers {
        lines.extend_from_slice(name.as_str().as_bytes());
        lines.extend_from_slice(b": ");
        lines.extend_from_slice(value.as_bytes());
        lines.extend_from_slice(b"\r\n");
    }
    Ok((uri.to_string(), lines))
}

/// Task `seq`'s HTTP/2 request head (`None`: the job's own) and body, with its placeholders
/// rendered.
pub(super) fn h2_request(
    job: &HttpJob,
    request: &Prepared,
    seq: u64,
) -> (Option<http::request::Parts>, bytes::Bytes) {
    let Some(t) = job.templates.as_ref().filter(|t| t.renders_request()) else {
        return (None, job.body.clone());
    };
    let hop = Hop::rendered(job, seq);
    let mut head = http::Request::new(()).into_parts().0;
    head.method = job.method.clone();
    head.version = http::Version::HTTP_2;
    head.uri = http::Uri::try_from(hop.url().as_str()).unwrap_or_else(|_| request.h2.uri.clone());
    head.headers = request.h2.headers.clone();
    for (name, _) in &t.headers {
        if let Some(v) = hop.header(name) {
            head.headers.insert(name.clone(), v.clone());
        }
    }
    (Some(head), hop.body().clone())
}

/// A job's HTTP/1 request with placeholders, in the pieces that rendering a task's request
/// appends one after another (the placeholders' segments were parsed when the batch was
/// accepted).
pub(super) struct Wire {
    templates: Arc<HttpTemplates>,
    /// The request target when no placeholder is in it.
    target: Box<[u8]>,
    /// The rest of the request line and the headers without placeholders.
    lines: Box<[u8]>,
    length: bool,
}

impl Wire {
    pub(super) fn new(job: &HttpJob, templates: &Arc<HttpTemplates>) -> Result<Wire, http::Error> {
        let templated: Vec<HeaderName> = templates.headers.iter().map(|(n, _)| n.clone()).collect();
        let (target, lines) = head_lines(job, &templated)?;
        Ok(Wire {
            templates: templates.clone(),
            target: target.into_bytes().into(),
            lines: lines.into(),
            length: sends_length(job) || templates.body.is_some(),
        })
    }

    /// Writes task `seq`'s request into `out` (its body rendered in `body` first).
    pub(super) fn render(&self, job: &HttpJob, seq: u64, out: &mut Vec<u8>, body: &mut Vec<u8>) {
        let t = &*self.templates;
        let vars = t.vars(seq);
        out.clear();
        body.clear();
        out.extend_from_slice(job.method.as_str().as_bytes());
        out.push(b' ');
        match &t.target {
            Some(target) => target.render(&vars, true, out),
            None => out.extend_from_slice(&self.target),
        }
        out.extend_from_slice(&self.lines);
        for (name, value) in &t.headers {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            value.render(&vars, false, out);
            out.extend_from_slice(b"\r\n");
        }
        match &t.body {
            Some(b) => b.render(&vars, false, body),
            None => body.extend_from_slice(&job.body),
        }
        if self.length {
            length_line(out, body.len());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
    }
}

/// The headers every request of the lean path sends, `Accept` and `User-Agent` (as the
/// general client sends them), then the job's own, which replace those and may repeat.
pub(super) fn with_job_headers(headers: &mut HeaderMap, job: &HttpJob) {
    headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
    headers.insert(
        header::USER_AGENT,
        HeaderValue::from_static(concat!("fanout/", env!("CARGO_PKG_VERSION"))),
    );
    for name in job.headers.keys() {
        headers.remove(name);
    }
    for (name, value) in &job.headers {
        headers.append(name, value.clone());
    }
}
