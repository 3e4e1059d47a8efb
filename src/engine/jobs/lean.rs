//! The lean path for load runs: plain-HTTP requests sent on HTTP/1 connections the batch owns,
//! driven with hyper directly.
//!
//! The general path (`reqwest`) pays per request for a pool checkout behind a lock shared by
//! every batch, a header map and a body kept for the answer, and a name lookup through the
//! guard. A load run sends the same few requests a million times: here each origin is looked
//! up and judged by the guard once per batch driver (the approved addresses are then the only
//! ones dialled, so a name cannot rebind mid-run; an origin the policy refuses stays refused;
//! a name that does not resolve is tried again at most once a second),
//! connections are kept in the driver's own idle list, and an answer that `results` will not
//! show is counted, not kept.
//!
//! HTTPS, and the hops after a redirect, go through the general path.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Request, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;

use super::Failure;
use super::http::{Hop, answer_output, error_text, follow, outcome};
use crate::engine::spec::{HttpJob, JobKind, JobSpec, ResultsMode};
use crate::engine::task::{ErrorCode, HttpOutput, ms};
use crate::guard::{NetGuard, Unreachable};

/// Idle connections kept per origin at most (more than any batch's concurrency needs).
const MAX_IDLE: usize = 16_384;
/// How long a failed lookup of an origin's name stands before it is tried again.
const LOOKUP_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

type Io = TokioIo<tokio::net::TcpStream>;

/// One HTTP/1 connection: the half that sends requests, and the connection itself, which the
/// request's own future drives while it waits (no task of its own, so an answer wakes the
/// driver that waits for it, not a connection task that then wakes the driver).
struct Conn {
    send: SendRequest<Full<Bytes>>,
    driver: http1::Connection<Io, Full<Bytes>>,
    /// The connection ended (the peer closed it, or it failed).
    closed: bool,
}

pin_project_lite::pin_project! {
    /// Runs `work` (which sends on the connection whose driver this is) while driving the
    /// connection. (A struct rather than an `async fn`, which would store `work` twice.)
    struct Driving<'a, W> {
        #[pin]
        work: W,
        driver: &'a mut http1::Connection<Io, Full<Bytes>>,
        closed: &'a mut bool,
    }
}

impl<W: Future> Future for Driving<'_, W> {
    type Output = W::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<W::Output> {
        let mut this = self.project();
        loop {
            if let Poll::Ready(out) = this.work.as_mut().poll(cx) {
                return Poll::Ready(out);
            }
            if **this.closed || Pin::new(&mut **this.driver).poll(cx).is_pending() {
                return Poll::Pending;
            }
            // The connection ended: the work sees it on its next poll.
            **this.closed = true;
        }
    }
}

/// A batch's connections and approved addresses, per origin.
pub struct LeanPool {
    guard: NetGuard,
    results: ResultsMode,
    origins: Mutex<rustc_hash::FxHashMap<String, Origin>>,
    /// Each job's request line and headers, built once (`None` for jobs not sent here).
    templates: Vec<Option<Template>>,
}

/// What every request of a job starts from: the target in origin form and the headers.
struct Template {
    uri: http::Uri,
    headers: http::HeaderMap,
}

#[derive(Default)]
struct Origin {
    /// What the guard made of the origin's name when it was last looked up.
    judged: Option<Judged>,
    // Boxed: connections move between here and the slots, a pointer rather than 700 bytes.
    #[allow(clippy::vec_box)]
    idle: Vec<Box<Conn>>,
}

/// The outcome of an origin's lookup, kept for the batch so that a million requests cost one
/// lookup.
#[derive(Clone)]
enum Judged {
    /// The addresses the guard approved: the only ones dialled from then on.
    Approved(Arc<[SocketAddr]>),
    /// The policy refused the origin.
    Refused(String),
    /// The name did not resolve (at this moment). Kept for [`LOOKUP_RETRY`] only: a name
    /// that does not resolve costs a lookup a second rather than one per request, and one
    /// that starts resolving is picked up within a second.
    Unresolved(Instant, String),
}

impl LeanPool {
    pub fn new(guard: NetGuard, results: ResultsMode, jobs: &[JobSpec]) -> LeanPool {
        let templates = jobs
            .iter()
            .map(|j| match &j.kind {
                JobKind::Http(h) if LeanPool::takes(h) => template(h).ok(),
                _ => None,
            })
            .collect();
        LeanPool {
            guard,
            results,
            origins: Mutex::default(),
            templates,
        }
    }

    /// Whether this job's requests can take the lean path.
    pub fn takes(job: &HttpJob) -> bool {
        job.url.scheme() == "http"
    }

    /// The addresses the guard approved for the URL's origin, looked up on first use.
    async fn addresses(&self, origin: &str, url: &url::Url) -> Result<Arc<[SocketAddr]>, Failure> {
        let known = self
            .origins
            .lock()
            .get(origin)
            .and_then(|o| o.judged.clone());
        let judged = match known {
            Some(Judged::Unresolved(at, _)) if at.elapsed() >= LOOKUP_RETRY => None,
            known => known,
        };
        let judged = match judged {
            Some(judged) => judged,
            None => {
                let judged = match self.guard.addresses(url).await {
                    Ok(a) => Judged::Approved(a.into()),
                    Err(Unreachable::Refused(r)) => Judged::Refused(r.0),
                    Err(Unreachable::Lookup(why)) => Judged::Unresolved(Instant::now(), why),
                };
                self.origins
                    .lock()
                    .entry(origin.to_owned())
                    .or_default()
                    .judged = Some(judged.clone());
                judged
            }
        };
        match judged {
            Judged::Approved(addrs) => Ok(addrs),
            Judged::Refused(why) => Err(Failure::new(ErrorCode::Forbidden, why)),
            Judged::Unresolved(_, why) => Err(Failure::new(ErrorCode::Dns, why)),
        }
    }

    /// A new connection to the origin, at an address the guard approved.
    async fn connect(&self, origin: &str, url: &url::Url) -> Result<Box<Conn>, Failure> {
        dial(&self.addresses(origin, url).await?).await
    }

    /// An idle connection to the origin, if one is left.
    fn idle(&self, origin: &str) -> Option<Box<Conn>> {
        let mut origins = self.origins.lock();
        let idle = &mut origins.get_mut(origin)?.idle;
        while let Some(conn) = idle.pop() {
            if !conn.closed {
                return Some(conn);
            }
        }
        None
    }

    fn checkin(&self, origin: &str, conn: Box<Conn>) {
        let mut origins = self.origins.lock();
        // The origin is known by now (its addresses were looked up): no key to allocate.
        if let Some(entry) = origins.get_mut(origin)
            && entry.idle.len() < MAX_IDLE
        {
            entry.idle.push(conn);
        }
    }
}

/// The connection a driver's slot keeps between its requests. A slot runs one task after
/// another; while they go to one origin it sends them all on its own connection, with no
/// pool in between (as oha's workers do). A task for another origin puts it back in the pool.
#[derive(Default)]
pub struct Slot {
    /// The origin of the connection it holds, or held last (kept, so that taking the
    /// connection and keeping it again allocates nothing).
    origin: String,
    conn: Option<Box<Conn>>,
}

impl Slot {
    /// The slot's connection, if it goes to `origin` and is still open.
    fn take(&mut self, origin: &str) -> Option<Box<Conn>> {
        if self.origin != origin {
            return None;
        }
        self.conn.take().filter(|conn| !conn.closed)
    }

    /// Keeps `conn` for the slot's next request; a connection it held to another origin goes
    /// to the pool.
    fn keep(&mut self, pool: &LeanPool, origin: &str, conn: Box<Conn>) {
        if self.origin != origin {
            if let Some(old) = self.conn.take() {
                pool.checkin(&self.origin, old);
            }
            origin.clone_into(&mut self.origin);
        }
        self.conn = Some(conn);
    }
}

/// Connects to the first approved address that answers.
/// Boxed: a connection's state is large, and it moves between a slot, the pool and each
/// request's future.
async fn dial(addrs: &[SocketAddr]) -> Result<Box<Conn>, Failure> {
    let mut last = None;
    for addr in addrs {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                let (send, driver) = http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| connect_failure(&e))?;
                return Ok(Box::new(Conn {
                    send,
                    driver,
                    closed: false,
                }));
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
    Failure::new(ErrorCode::Connect, error_text(e))
}

/// How one exchange on a connection went.
enum Exchange {
    /// The request never left: the connection was closed (a stale idle one).
    NotSent,
    Failed(Failure),
    /// A redirect the job follows: the general path takes it from here.
    Redirect(Hop),
    Answer(Answer),
}

struct Answer {
    status: http::StatusCode,
    /// Kept when the answer will be shown.
    headers: Option<http::HeaderMap>,
    kept: BytesMut,
    bytes: usize,
    truncated: bool,
    /// Read to its end: the connection can carry the next request.
    complete: bool,
    ttfb: std::time::Duration,
}

/// Sends the job's request and reads its answer (keeping the body only when `results` will
/// show it).
async fn exchange(
    send: &mut SendRequest<Full<Bytes>>,
    job: &HttpJob,
    template: &Template,
    results: ResultsMode,
    started: Instant,
) -> Exchange {
    if send.ready().await.is_err() {
        return Exchange::NotSent;
    }
    let mut request = Request::new(Full::new(job.body.clone()));
    *request.method_mut() = job.method.clone();
    *request.uri_mut() = template.uri.clone();
    *request.headers_mut() = template.headers.clone();
    let response = match send.send_request(request).await {
        Ok(r) => r,
        Err(e) if e.is_canceled() => return Exchange::NotSent,
        Err(e) => return Exchange::Failed(connect_failure(&e)),
    };
    let ttfb = started.elapsed();
    let status = response.status();
    if status.is_redirection() && job.follow_redirects > 0 {
        // A Location that names no URL leaves the redirect as the answer, as on the general
        // path.
        let next = response
            .headers()
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| Hop::first(job).next(status, l));
        if let Some(hop) = next {
            return Exchange::Redirect(hop);
        }
    }
    let shown = results.shows(!job.expect_status.accepts(status.as_u16()));
    let headers = shown.then(|| response.headers().clone());
    let cap = job.max_response_bytes as usize;
    let mut body = response.into_body();
    let mut answer = Answer {
        status,
        headers,
        kept: BytesMut::new(),
        bytes: 0,
        truncated: false,
        complete: false,
        ttfb,
    };
    loop {
        match body.frame().await {
            None => {
                answer.complete = true;
                return Exchange::Answer(answer);
            }
            Some(Err(e)) => return Exchange::Failed(connect_failure(&e)),
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                if answer.bytes + data.len() > cap {
                    if shown {
                        answer.kept.extend_from_slice(&data[..cap - answer.bytes]);
                    }
                    answer.bytes = cap;
                    answer.truncated = true;
                    return Exchange::Answer(answer);
                }
                answer.bytes += data.len();
                if shown {
                    answer.kept.extend_from_slice(&data);
                }
            }
        }
    }
}

/// Where a task on the lean path sends: the batch's pool, the slot that runs it, and which of
/// the batch's jobs it is.
pub struct Lean<'a> {
    pub pool: &'a LeanPool,
    pub slot: &'a mut Slot,
    pub job_index: usize,
}

impl Lean<'_> {
    /// The same, for one attempt of several.
    pub fn reborrow(&mut self) -> Lean<'_> {
        Lean {
            pool: self.pool,
            slot: self.slot,
            job_index: self.job_index,
        }
    }
}

/// One attempt of an HTTP job on the lean path.
pub async fn run(
    lean: Lean<'_>,
    client: &reqwest::Client,
    job: &HttpJob,
) -> Result<crate::engine::task::TaskOutput, Failure> {
    let Lean {
        pool,
        slot,
        job_index,
    } = lean;
    let Some(template) = pool.templates.get(job_index).and_then(Option::as_ref) else {
        return Err(Failure::new(
            ErrorCode::Invalid,
            "the request cannot be written as HTTP/1 (host or path)",
        ));
    };
    let started = Instant::now();
    let url = &job.url;
    let origin = job.origin.as_str();
    let results = pool.results;
    // An idle connection the server closed meanwhile fails before the request is sent: then
    // once more on a new connection, as HTTP clients do.
    let mut idle = slot.take(origin).or_else(|| pool.idle(origin));
    let (conn, answer) = loop {
        let reused = idle.is_some();
        let mut conn = match idle.take() {
            Some(conn) => conn,
            // Once per slot and origin: boxed, to keep every request's future small.
            None => Box::pin(pool.connect(origin, url)).await?,
        };
        let exchanged = Driving {
            work: exchange(&mut conn.send, job, template, results, started),
            driver: &mut conn.driver,
            closed: &mut conn.closed,
        }
        .await;
        match exchanged {
            Exchange::Answer(answer) => break (conn, answer),
            Exchange::NotSent if reused => continue,
            Exchange::NotSent => {
                return Err(Failure::new(
                    ErrorCode::Connect,
                    "the connection closed before the request was sent",
                ));
            }
            Exchange::Failed(failure) => return Err(failure),
            Exchange::Redirect(hop) => {
                // The next hops go the general way, each checked by the guard again.
                return Box::pin(follow(client, &pool.guard, job, hop, started)).await;
            }
        }
    };
    if answer.complete && !conn.closed {
        slot.keep(pool, origin, conn);
    } else {
        drop(conn.send);
    }
    let out = match answer.headers {
        Some(headers) => answer_output(
            answer.status,
            &headers,
            &answer.kept,
            answer.truncated,
            answer.ttfb,
        ),
        None => HttpOutput {
            status: answer.status.as_u16(),
            headers: Default::default(),
            body: None,
            body_base64: None,
            bytes: answer.bytes as u64,
            truncated: answer.truncated,
            ttfb_ms: ms(answer.ttfb),
        },
    };
    outcome(job, out)
}

/// The job's request line in origin form and its headers, with the ones the general path
/// sends too.
fn template(job: &HttpJob) -> Result<Template, http::Error> {
    let url = &job.url;
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let uri = http::Uri::try_from(path)?;
    let mut headers = http::HeaderMap::with_capacity(3 + job.headers.len());
    // The Host header as the URL writes it (no default port).
    let host = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_owned(),
    };
    headers.insert(header::HOST, HeaderValue::from_str(&host)?);
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
    Ok(Template { uri, headers })
}
