//! `http`: one request (following redirects when asked), its body read up to a byte cap.

use std::collections::BTreeMap;
use std::time::Instant;

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, StatusCode, header};

use std::sync::Arc;

use super::Failure;
use crate::engine::spec::HttpJob;
use crate::engine::task::{ErrorCode, HttpOutput, TaskOutput, ms};
use crate::guard::{GuardedResolver, NetGuard, Refusal, TARGET};

/// The one client every HTTP job shares, so connections are pooled across jobs and batches.
/// Every name it looks up goes through the guard's resolver.
pub fn client(guard: &NetGuard) -> reqwest::Client {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver(guard.clone())))
        // A proxy from the environment must not carry jobs past our own address checks.
        .no_proxy()
        // Redirects are followed here, hop by hop, so each hop can be checked and counted.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("fanout/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the HTTP client's TLS back end initialises")
}

pub async fn run(
    client: &reqwest::Client,
    guard: &NetGuard,
    job: &HttpJob,
) -> Result<TaskOutput, Failure> {
    let started = Instant::now();
    let mut url = job.url.clone();
    let mut method = job.method.clone();
    let mut body = job.body.clone();
    let mut headers = job.headers.clone();
    let mut hops = 0;
    let response = loop {
        // Every hop is judged anew: a redirect to a private address is refused like a request.
        let target = guard
            .preflight(&url)
            .map_err(|r| Failure::new(ErrorCode::Forbidden, r.0))?;
        let request = client
            .request(method.clone(), url.clone())
            .headers(headers.clone())
            .body(body.clone())
            .send();
        let response = TARGET
            .scope(target, request)
            .await
            .map_err(|e| failure_from(&e))?;
        let status = response.status();
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok());
        let next = match location {
            Some(location) if status.is_redirection() => url.join(location).ok(),
            _ => None,
        };
        match next {
            Some(next) if hops < job.follow_redirects => {
                hops += 1;
                if changes_to_get(status, &method) {
                    method = Method::GET;
                    body = Bytes::new();
                    headers.remove(header::CONTENT_TYPE);
                    headers.remove(header::CONTENT_LENGTH);
                }
                if next.origin() != url.origin() {
                    // As browsers and curl do: credentials stay with the origin they were for.
                    headers.remove(header::AUTHORIZATION);
                    headers.remove(header::COOKIE);
                    headers.remove(header::PROXY_AUTHORIZATION);
                }
                url = next;
            }
            Some(_) if job.follow_redirects > 0 => {
                let out = read_answer(response, job, started).await?;
                return Err(Failure {
                    error: crate::engine::task::TaskError::new(
                        ErrorCode::Status,
                        format!(
                            "stopped after {} redirects (follow_redirects)",
                            job.follow_redirects
                        ),
                    ),
                    output: Some(Box::new(TaskOutput::Http(out))),
                    retryable: false,
                });
            }
            _ => break response,
        }
    };
    let out = read_answer(response, job, started).await?;
    if job.expect_status.accepts(out.status) {
        Ok(TaskOutput::Http(out))
    } else {
        let status = out.status;
        Err(Failure {
            error: crate::engine::task::TaskError::new(
                ErrorCode::Status,
                format!("status {status}, expected {}", job.expect_status.describe()),
            ),
            output: Some(Box::new(TaskOutput::Http(out))),
            retryable: status >= 500 || status == 429,
        })
    }
}

/// 303 always, and 301/302 after a POST, turn into a GET without a body (as browsers do).
fn changes_to_get(status: StatusCode, method: &Method) -> bool {
    status == StatusCode::SEE_OTHER
        || (matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND)
            && *method == Method::POST)
}

/// Reads the answer's body up to the job's cap, never buffering more than the cap.
async fn read_answer(
    mut response: reqwest::Response,
    job: &HttpJob,
    started: Instant,
) -> Result<HttpOutput, Failure> {
    let ttfb = started.elapsed();
    let status = response.status().as_u16();
    let headers = header_map(response.headers());
    let cap = job.max_response_bytes as usize;
    let mut buf = BytesMut::new();
    let mut truncated = false;
    while let Some(chunk) = response.chunk().await.map_err(|e| failure_from(&e))? {
        let room = cap - buf.len();
        if chunk.len() > room {
            buf.extend_from_slice(&chunk[..room]);
            truncated = true;
            break;
        }
        buf.extend_from_slice(&chunk);
        if buf.len() == cap {
            // Full to the byte: one more non-empty chunk means the body was longer.
            truncated = loop {
                match response.chunk().await {
                    Ok(Some(c)) if c.is_empty() => continue,
                    Ok(Some(_)) => break true,
                    _ => break false,
                }
            };
            break;
        }
    }
    let bytes = buf.len() as u64;
    let (body, body_base64) = match std::str::from_utf8(&buf) {
        Ok(text) => (Some(text.to_owned()), None),
        // The cap cut a character in two: the text up to it is still text.
        Err(e) if truncated && e.error_len().is_none() => (
            Some(String::from_utf8_lossy(&buf[..e.valid_up_to()]).into_owned()),
            None,
        ),
        Err(_) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(&buf)),
        ),
    };
    Ok(HttpOutput {
        status,
        headers,
        body,
        body_base64,
        bytes,
        truncated,
        ttfb_ms: ms(ttfb),
    })
}

fn header_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        out.entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    out
}

/// Sorts a client error into the stable codes, reading its whole chain of causes.
fn failure_from(e: &reqwest::Error) -> Failure {
    let mut chain = Vec::new();
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        chain.push(s.to_string());
        source = s.source();
    }
    let text = chain.join(": ").to_lowercase();
    let mut cause: Option<&dyn std::error::Error> = Some(e);
    while let Some(c) = cause {
        if let Some(refusal) = c.downcast_ref::<Refusal>() {
            return Failure::new(ErrorCode::Forbidden, refusal.0.clone());
        }
        cause = c.source();
    }
    let code = if e.is_timeout() {
        ErrorCode::Timeout
    } else if text.contains("dns error") || text.contains("failed to lookup address") {
        ErrorCode::Dns
    } else if text.contains("certificate") || text.contains("tls") || text.contains("handshake") {
        ErrorCode::Tls
    } else if e.is_connect() || e.is_request() || e.is_body() {
        ErrorCode::Connect
    } else {
        ErrorCode::Io
    };
    Failure::new(code, dedup_chain(chain))
}

/// reqwest and hyper repeat a cause's text in its parent's; keep each piece once.
fn dedup_chain(chain: Vec<String>) -> String {
    let mut out: Vec<String> = Vec::new();
    for part in chain {
        if !out.iter().any(|p| p.contains(&part)) {
            out.push(part);
        }
    }
    out.join(": ")
}
