//! The lean path for load runs: plain-HTTP requests sent on HTTP/1 connections the batch owns,
//! driven with hyper directly.
//!
//! The general path (`reqwest`) pays per request for a pool checkout behind a lock shared by
//! every batch, a header map and a body kept for the answer, and a name lookup through the
//! guard. A load run sends the same few requests a million times: here each origin is looked
//! up and judged by the guard **once per batch** (the approved addresses are then the only
//! ones dialled, so a name cannot rebind mid-run), connections are kept in the batch's own
//! idle list, and an answer that `results` will not show is counted, not kept.
//!
//! HTTPS, and the hops after a redirect, go through the general path.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Request, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;

use super::Failure;
use super::http::{Hop, answer_output, follow, outcome};
use crate::engine::spec::{HttpJob, ResultsMode};
use crate::engine::task::{ErrorCode, HttpOutput, ms};
use crate::guard::{NetGuard, Unreachable};

/// Idle connections kept per origin at most (more than any batch's concurrency needs).
const MAX_IDLE: usize = 16_384;

/// A batch's connections and approved addresses, per origin.
pub struct LeanPool {
    guard: NetGuard,
    results: ResultsMode,
    origins: Mutex<HashMap<String, Origin>>,
}

#[derive(Default)]
struct Origin {
    /// What the guard approved for this origin, looked up once.
    addrs: Option<Arc<[SocketAddr]>>,
    idle: Vec<SendRequest<Full<Bytes>>>,
}

impl LeanPool {
    pub fn new(guard: NetGuard, results: ResultsMode) -> LeanPool {
        LeanPool {
            guard,
            results,
            origins: Mutex::default(),
        }
    }

    /// Whether this job's requests can take the lean path.
    pub fn takes(job: &HttpJob) -> bool {
        job.url.scheme() == "http"
    }

    /// An open connection to the URL's origin: an idle one, or a new one to an approved
    /// address. `reused` says which.
    async fn checkout(
        &self,
        origin: &str,
        url: &url::Url,
    ) -> Result<(SendRequest<Full<Bytes>>, bool), Failure> {
        let addrs = {
            let mut origins = self.origins.lock();
            let entry = origins.entry(origin.to_owned()).or_default();
            while let Some(conn) = entry.idle.pop() {
                if !conn.is_closed() {
                    return Ok((conn, true));
                }
            }
            entry.addrs.clone()
        };
        let addrs = match addrs {
            Some(addrs) => addrs,
            None => {
                let approved: Arc<[SocketAddr]> = match self.guard.addresses(url).await {
                    Ok(a) => a.into(),
                    Err(Unreachable::Refused(r)) => {
                        return Err(Failure::new(ErrorCode::Forbidden, r.0));
                    }
                    Err(Unreachable::Lookup(why)) => return Err(Failure::new(ErrorCode::Dns, why)),
                };
                self.origins
                    .lock()
                    .entry(origin.to_owned())
                    .or_default()
                    .addrs = Some(approved.clone());
                approved
            }
        };
        Ok((dial(&addrs).await?, false))
    }

    fn checkin(&self, origin: &str, conn: SendRequest<Full<Bytes>>) {
        let mut origins = self.origins.lock();
        let entry = origins.entry(origin.to_owned()).or_default();
        if entry.idle.len() < MAX_IDLE {
            entry.idle.push(conn);
        }
    }
}

/// Connects to the first address that answers, and hands the connection to a task of its own.
async fn dial(addrs: &[SocketAddr]) -> Result<SendRequest<Full<Bytes>>, Failure> {
    let mut last = None;
    for addr in addrs {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                let (sender, conn) = http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| connect_failure(&e))?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                return Ok(sender);
            }
            Err(e) => last = Some(format!("connecting to {addr}: {e}")),
        }
    }
    Err(Failure::new(
        ErrorCode::Connect,
        last.unwrap_or_else(|| "no address to connect to".into()),
    ))
}

fn connect_failure(e: &hyper::Error) -> Failure {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text = format!("{text}: {part}");
        }
        source = cause.source();
    }
    Failure::new(ErrorCode::Connect, text)
}

/// One attempt of an HTTP job on the lean path.
pub async fn run(
    pool: &LeanPool,
    client: &reqwest::Client,
    job: &HttpJob,
) -> Result<crate::engine::task::TaskOutput, Failure> {
    let started = Instant::now();
    let url = &job.url;
    let origin = format!(
        "{}:{}",
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or(80)
    );
    // A reused connection the server closed meanwhile fails before the request is sent: then
    // once more on a new connection, as HTTP clients do.
    let mut fresh_only = false;
    let (mut conn, response) = loop {
        let (mut conn, reused) = if fresh_only {
            (dial_for(pool, &origin, url).await?, false)
        } else {
            pool.checkout(&origin, url).await?
        };
        if conn.ready().await.is_err() {
            if reused {
                fresh_only = true;
                continue;
            }
            return Err(Failure::new(
                ErrorCode::Connect,
                "the connection closed before the request",
            ));
        }
        match conn.send_request(request(job)?).await {
            Ok(response) => break (conn, response),
            Err(e) if reused && e.is_canceled() => fresh_only = true,
            Err(e) => return Err(connect_failure(&e)),
        }
    };
    let ttfb = started.elapsed();
    let status = response.status();
    if status.is_redirection() && job.follow_redirects > 0 {
        // The next hops go the general way, each checked by the guard again.
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_owned);
        if let Some(location) = location {
            let hop = Hop::first(job).next(status, &location);
            if let Some(hop) = hop {
                return follow(client, &pool.guard, job, hop, started).await;
            }
        }
    }
    let shown = pool
        .results
        .shows(!job.expect_status.accepts(status.as_u16()));
    let headers = shown.then(|| response.headers().clone());
    let cap = job.max_response_bytes as usize;
    let mut body = response.into_body();
    let mut kept = BytesMut::new();
    let mut bytes = 0usize;
    let mut truncated = false;
    let mut complete = false;
    loop {
        match body.frame().await {
            None => {
                complete = true;
                break;
            }
            Some(Err(e)) => return Err(connect_failure(&e)),
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                if bytes + data.len() > cap {
                    if shown {
                        kept.extend_from_slice(&data[..cap - bytes]);
                    }
                    bytes = cap;
                    truncated = true;
                    break;
                }
                bytes += data.len();
                if shown {
                    kept.extend_from_slice(&data);
                }
            }
        }
    }
    if complete {
        // Read to its end: the connection can carry the next request.
        let _ = conn.ready().await;
        pool.checkin(&origin, conn);
    }
    let out = match headers {
        Some(headers) => answer_output(status, &headers, &kept, truncated, ttfb),
        None => HttpOutput {
            status: status.as_u16(),
            headers: Default::default(),
            body: None,
            body_base64: None,
            bytes: bytes as u64,
            truncated,
            ttfb_ms: ms(ttfb),
        },
    };
    outcome(job, out)
}

async fn dial_for(
    pool: &LeanPool,
    origin: &str,
    url: &url::Url,
) -> Result<SendRequest<Full<Bytes>>, Failure> {
    let addrs = pool
        .origins
        .lock()
        .get(origin)
        .and_then(|o| o.addrs.clone());
    match addrs {
        Some(addrs) => dial(&addrs).await,
        None => pool.checkout(origin, url).await.map(|(c, _)| c),
    }
}

/// The job's request in origin form, with the headers the general path sends too.
fn request(job: &HttpJob) -> Result<Request<Full<Bytes>>, Failure> {
    let url = &job.url;
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let mut request = Request::builder()
        .method(job.method.clone())
        .uri(path)
        .body(Full::new(job.body.clone()))
        .map_err(|e| Failure::new(ErrorCode::Invalid, e.to_string()))?;
    let headers = request.headers_mut();
    // The Host header as the URL writes it (no default port).
    let host = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_owned(),
    };
    headers.insert(
        header::HOST,
        HeaderValue::from_str(&host)
            .map_err(|e| Failure::new(ErrorCode::Invalid, e.to_string()))?,
    );
    headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
    headers.insert(
        header::USER_AGENT,
        HeaderValue::from_static(concat!("fanout/", env!("CARGO_PKG_VERSION"))),
    );
    // The job's own headers replace these defaults, and may repeat.
    for name in job.headers.keys() {
        headers.remove(name);
    }
    for (name, value) in &job.headers {
        headers.append(name, value.clone());
    }
    Ok(request)
}
