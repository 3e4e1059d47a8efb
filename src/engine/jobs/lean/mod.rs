//! The lean path: HTTP requests sent on connections the batch owns, HTTP/1 written here and
//! read by `h1`, HTTP/2 through the h2 crate, on tokio's `TcpStream` with rustls for `https`.
//!
//! The general path (`reqwest`) pays per request for a pool checkout behind a lock shared by
//! every batch, a header map and a body kept for the response, and a name lookup through the
//! guard; and it cannot say where a request's time went. Here each origin is judged by the
//! guard at each new connection (a load run: once per batch, the approved addresses then the
//! only ones dialled, so a name cannot rebind mid-run; an origin the policy refuses stays
//! refused; a name that does not resolve is tried again at most once a second), each slot
//! keeps its HTTP/1 connection (the batch's idle list holds those put back), HTTP/2
//! connections are shared by every slot (`load.connections` of them), each job's HTTP/1
//! request is written out once and sent as the same bytes every time, a response that
//! `results` will not show is counted, not kept, and every phase of a request is timed.
//!
//! Why not hyper's client connection for HTTP/1: it hands each request to the connection
//! through a channel and each response's body back through another, and builds a header map
//! per response; measured, that was the largest part of a request's cost in user space
//! (`bench/instructions.py`; `docs/lean-http-client.md` has the figures).
//!
//! The hops after a redirect, and requests whose own headers set the message's framing or the
//! connection's use (`Content-Length`, `Transfer-Encoding`, `Connection`, `Upgrade`, `TE`,
//! `Expect`) go through the general path.
//!
//! - `answer`: what an exchange gives back on either version: a response, or a redirect.
//! - `h1`: the answer's framing, read without I/O.
//! - `multiplexed`: one exchange on an HTTP/2 connection.
//! - `pool`: the batch's origins, the connection each slot keeps, the shared HTTP/2 ones.
//! - here: a request written out once per job, and one exchange on an HTTP/1 connection.

mod answer;
mod h1;
mod multiplexed;
mod pool;
mod wire;

use std::time::Instant;

use bytes::Buf;
use http::{HeaderName, Method, StatusCode, header};
use tokio::io::AsyncWriteExt;

use super::Failure;
use super::http::{Hop, follow, response_output};
use super::judging::{self, Received};
use crate::engine::spec::{HttpJob, JobKind, JobSpec, ResultsMode};
use crate::engine::task::{
    ErrorCode, HttpOutput, HttpVersionName, NetTiming, PhaseClock, TaskOutput, ms,
};
use crate::guard::NetGuard;
use answer::{Body, Redirect, Response};
use h1::{Asked, Event, Invalid, Reader};
use pool::{Conn, Origins};
pub use pool::{Dialling, Slot};
use wire::{Prepared, Wire, h2_request, request, with_job_headers};

/// Request headers that set how the message is framed or how the connection is used: a job
/// that sends one of its own takes the general path.
const FRAMING: [HeaderName; 6] = [
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::CONNECTION,
    header::UPGRADE,
    header::TE,
    header::EXPECT,
];

/// Connections an HTTP/2 request is tried on when each goes away before taking it.
const H2_TRIES: usize = 3;

/// Whether a request header sets the message's framing or the connection's use.
pub fn sets_framing(name: &str) -> bool {
    FRAMING
        .iter()
        .any(|f| f.as_str().eq_ignore_ascii_case(name))
}

/// A batch's lean path: its origins and connections, and each job's request as written out.
pub struct LeanPool {
    origins: Origins,
    results: ResultsMode,
    /// Each job's request as it goes on the wire, written once for all its repetitions
    /// (`None` for jobs not sent here).
    requests: Vec<Option<Prepared>>,
}

impl LeanPool {
    pub fn new(dialling: Dialling, results: ResultsMode, jobs: &[JobSpec]) -> LeanPool {
        let guard: &NetGuard = &dialling.guard;
        let requests = jobs
            .iter()
            .map(|j| match &j.kind {
                // A URL the guard refuses as written (a user name in it, say) goes the general
                // way, which refuses it: origins are judged here, not URLs.
                JobKind::Http(h) if LeanPool::takes(h) && guard.preflight(&h.url).is_ok() => {
                    Some(Prepared {
                        h1: request(h).ok()?,
                        h2: multiplexed::head(h).ok()?,
                        wire: match &h.templates {
                            Some(t) if t.renders_request() => Some(Wire::new(h, t).ok()?),
                            _ => None,
                        },
                    })
                }
                _ => None,
            })
            .collect();
        LeanPool {
            origins: Origins::new(dialling),
            results,
            requests,
        }
    }

    /// Whether any of the batch's jobs is sent here.
    pub fn sends_any(&self) -> bool {
        self.requests.iter().any(Option::is_some)
    }

    /// Where a task of job `job_index` sends on the lean path, if its job is sent here.
    pub fn lean<'a>(&'a self, slot: &'a mut Slot, job_index: usize) -> Option<Lean<'a>> {
        let request = self.requests.get(job_index)?.as_ref()?;
        Some(Lean {
            pool: self,
            slot,
            request,
        })
    }

    /// Gives back the connection a one-task slot holds.
    pub fn release(&self, slot: &mut Slot) {
        slot.release(&self.origins);
    }

    /// Whether this job's requests can take the lean path.
    fn takes(job: &HttpJob) -> bool {
        job.method != Method::CONNECT && !FRAMING.iter().any(|name| job.headers.contains_key(name))
    }
}

/// Where a task on the lean path sends: the batch's pool, the slot that runs it, and its job's
/// request as written out ([`LeanPool::lean`]).
pub struct Lean<'a> {
    pool: &'a LeanPool,
    slot: &'a mut Slot,
    request: &'a Prepared,
}

impl Lean<'_> {
    /// The same, for one attempt of several.
    pub fn reborrow(&mut self) -> Lean<'_> {
        Lean {
            pool: self.pool,
            slot: self.slot,
            request: self.request,
        }
    }
}

/// The exchange failed before the response's head was read (as the general path sorts it).
fn failed_before_response(why: impl Into<String>) -> Failure {
    Failure::new(ErrorCode::Connect, why)
}

/// A TLS failure the server reported after the handshake seemed done (TLS 1.3 refuses a
/// missing client certificate so), or else `otherwise`.
fn tls_or(e: &std::io::Error, job: &HttpJob, otherwise: impl FnOnce() -> Failure) -> Failure {
    match super::tls::rustls_cause(e) {
        Some(cause) => super::tls::handshake_failure(job.url.host_str().unwrap_or_default(), cause),
        None => otherwise(),
    }
}

/// The response's body could not be read to its end (as the general path sorts it).
fn failed_in_body(why: impl Into<String>) -> Failure {
    Failure::new(ErrorCode::Io, why)
}

impl From<Invalid> for Failure {
    fn from(invalid: Invalid) -> Failure {
        match invalid {
            Invalid::Head(why) => failed_before_response(why),
            Invalid::Body(why) => failed_in_body(why),
        }
    }
}

/// How one exchange on a connection went.
enum Exchange {
    /// The connection turned out closed before any of the response came: the request was not
    /// sent, or (when it is idempotent) can be sent again. Only for a reused connection.
    Unsent,
    Failed(Failure),
    /// A redirect the job follows: the general path takes it from here.
    Redirect(Redirect),
    Done(Response),
}

/// Sends the job's request on `conn` and reads its response (keeping the body only when
/// `results` will show it).
async fn exchange(
    conn: &mut Conn,
    job: &HttpJob,
    request: &[u8],
    results: ResultsMode,
    started: Instant,
    reused: bool,
    clock: &mut PhaseClock,
) -> Exchange {
    if reused && conn.stale() {
        return Exchange::Unsent;
    }
    // A reused connection the peer closed meanwhile, found out before any response came: an
    // idempotent request may go again on a new one (RFC 9110, section 9.2.2); any other fails,
    // as part of it may have been taken.
    let again = reused && idempotent(&job.method);
    let sent = send(conn, request).await;
    clock.mark(NetTiming::SEND);
    if let Err(e) = sent {
        return if again {
            Exchange::Unsent
        } else {
            Exchange::Failed(tls_or(&e, job, || {
                failed_before_response(format!("sending the request: {e}"))
            }))
        };
    }
    let asked = Asked {
        head: job.method == Method::HEAD,
        follows_redirects: job.follow_redirects > 0,
    };
    let mut reader = Reader::new(asked, |status: StatusCode| {
        job.keeps_answer(results, status.as_u16())
    });
    // Whether any of the response came, and the time to the final response's first byte.
    let mut received = false;
    let mut ttfb = None;
    let head = loop {
        let (used, event) = match reader.next(&conn.buf) {
            Ok(read) => read,
            Err(invalid) => return Exchange::Failed(invalid.into()),
        };
        conn.buf.advance(used);
        match event {
            Event::Head => {
                break reader
                    .take_head()
                    .expect("the reader keeps the head it read");
            }
            // The final response follows an interim one: its first byte is yet to come.
            Event::Interim => ttfb = None,
            _ => match conn.fill().await {
                Ok(0) | Err(_) if again && !received => return Exchange::Unsent,
                Ok(0) => {
                    let closed = reader.closed().err().map(Failure::from);
                    return Exchange::Failed(closed.expect("a head cut short is an error"));
                }
                Ok(_) => {
                    // The first byte ends the wait, and is the time to first byte.
                    let first = (!received).then(|| clock.mark(NetTiming::WAIT));
                    received = true;
                    ttfb.get_or_insert_with(|| {
                        first
                            .unwrap_or_else(Instant::now)
                            .saturating_duration_since(started)
                    });
                }
                Err(e) => {
                    return Exchange::Failed(tls_or(&e, job, || {
                        failed_before_response(format!("reading the answer: {e}"))
                    }));
                }
            },
        }
    };
    // The final response came in the same read as an interim one: its first byte is now.
    let ttfb = ttfb.unwrap_or_else(|| started.elapsed());
    if let Some(location) = &head.location
        && let Some(redirect) = Redirect::of(job, head.status, location)
    {
        return Exchange::Redirect(redirect);
    }
    let mut body = Body::new(head.headers.is_some(), job.max_response_bytes as usize);
    let complete = read_body(conn, &mut reader, &mut body).await;
    clock.mark(NetTiming::RECEIVE);
    let complete = match complete {
        Ok(complete) => complete,
        Err(failure) => return Exchange::Failed(failure),
    };
    Exchange::Done(Response {
        status: head.status,
        headers: head.headers,
        body,
        // Anything left over was not asked for: the connection is not to be trusted.
        reusable: complete && head.keep_alive && conn.buf.is_empty() && job.keep_alive,
        ttfb,
    })
}

/// Writes `request` out on `conn`.
async fn send(conn: &mut Conn, request: &[u8]) -> std::io::Result<()> {
    conn.stream.write_all(request).await?;
    // TLS holds what is written until flushed.
    conn.stream.flush().await
}

/// Reads the body the reader delimits into `body`: `Ok(true)` when read to its end,
/// `Ok(false)` when it was cut at the cap.
async fn read_body<F: Fn(StatusCode) -> bool>(
    conn: &mut Conn,
    reader: &mut Reader<F>,
    body: &mut Body,
) -> Result<bool, Failure> {
    loop {
        let (used, event) = reader.next(&conn.buf)?;
        let whole = match &event {
            Event::Data(range) => body.append(&conn.buf[range.clone()]),
            _ => true,
        };
        conn.buf.advance(used);
        match event {
            Event::End => return Ok(true),
            _ if !whole => return Ok(false),
            Event::Partial => match conn.fill().await {
                Ok(0) => {
                    reader.closed()?;
                    return Ok(true);
                }
                Ok(_) => {}
                Err(e) => return Err(failed_in_body(format!("reading the answer: {e}"))),
            },
            _ => {}
        }
    }
}

/// Methods a client may send again when the connection closed before any response came
/// (RFC 9110, section 9.2.2).
fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
    )
}

/// One attempt of an HTTP job on the lean path, begun at `started`, its phases timed on
/// `clock`.
pub async fn run(
    lean: Lean<'_>,
    ctx: &super::JobContext,
    job: &HttpJob,
    started: Instant,
    clock: &mut PhaseClock,
    seq: u64,
) -> Result<TaskOutput, Failure> {
    let Lean {
        pool,
        slot,
        request,
    } = lean;
    let origin = job.origin.as_str();
    let results = pool.results;
    let origins = &pool.origins;
    // HTTP/2 when the job asks for it or the origin agreed to it (`None`: not known yet, the
    // handshake decides). A slot holding a connection to the origin knows it speaks HTTP/1,
    // without asking the pool (a lock every slot shares).
    let h2 = !slot.holds(origin) && origins.speaks_h2(origin, job) != Some(false);
    let mut made = None;
    if h2 {
        let conn = if job.keep_alive {
            Box::pin(origins.h2(origin, job, clock, &mut made))
                .await?
                .map(|conn| (conn, true))
        } else {
            // A connection of its own for every request.
            match Box::pin(origins.connect(origin, job, clock)).await? {
                pool::Connected::H2(conn) => Some((conn, false)),
                pool::Connected::H1(conn) => {
                    made = Some(conn);
                    None
                }
            }
        };
        if let Some((conn, shared)) = conn {
            let (rendered, body) = h2_request(job, request, seq);
            let head = rendered.as_ref().unwrap_or(&request.h2);
            let answer = Box::pin(over_h2(
                origins,
                conn,
                shared,
                job,
                head,
                body,
                results,
                (started, seq),
                clock,
            ));
            return match answer.await? {
                multiplexed::Answer::Redirect(to) => {
                    redirected(ctx, origins, job, to.hop(job, seq), (started, seq), clock).await
                }
                multiplexed::Answer::Done(out, judged) => judging::outcome(job, out, judged),
                multiplexed::Answer::Refused(_) => unreachable!("refusals are tried again"),
            };
        }
    }
    // HTTP/1. An idle connection the server closed meanwhile is found out before the request
    // is sent, or (for an idempotent request) before any response came: then the request goes
    // once more on a new connection, as HTTP clients do.
    // A job with placeholders: this task's request, in the slot's buffers (kept from task to
    // task, so rendering allocates nothing once they are grown).
    let mut rendered = std::mem::take(&mut slot.rendered);
    let mut body = std::mem::take(&mut slot.body);
    if let Some(wire) = &request.wire {
        wire.render(job, seq, &mut rendered, &mut body);
    }
    let mut idle = first_connection(made, slot, origins, origin);
    let (conn, response) = loop {
        let (mut conn, reused) = match idle.take() {
            Some(held) => held,
            // Boxed, to keep every request's future small.
            None => match Box::pin(origins.connect(origin, job, clock)).await? {
                pool::Connected::H1(conn) => (conn, false),
                // The origin turned out to speak HTTP/2 (a server that changed its mind): the
                // next task uses it.
                pool::Connected::H2(_) => {
                    return Err(failed_before_response(
                        "the server switched to HTTP/2 between connections",
                    ));
                }
            },
        };
        clock.timing.reused = reused;
        let request = match request.wire {
            Some(_) => rendered.as_slice(),
            None => request.h1.as_ref(),
        };
        match exchange(&mut conn, job, request, results, started, reused, clock).await {
            Exchange::Done(response) => break (conn, response),
            Exchange::Unsent => continue,
            Exchange::Failed(failure) => return Err(failure),
            Exchange::Redirect(to) => {
                (slot.rendered, slot.body) = (rendered, body);
                return redirected(ctx, origins, job, to.hop(job, seq), (started, seq), clock)
                    .await;
            }
        }
    };
    if response.reusable {
        slot.keep(origins, origin, conn);
    }
    (slot.rendered, slot.body) = (rendered, body);
    let received = Received {
        status: response.status,
        headers: response.headers.as_ref(),
        body: &response.body.kept,
        truncated: response.body.truncated,
        ttfb: response.ttfb,
    };
    let judged = judging::judge(job, &received, started, seq, results);
    let shown = judging::shown(job, results, response.status.as_u16(), judged.as_ref());
    judging::outcome(job, h1_output(response, shown), judged)
}

/// The connection an HTTP/1 request tries first, and whether it carried requests before: one
/// just made (the origin answered an HTTP/2 try with HTTP/1), else the slot's own, else one
/// the batch holds idle; `None`: a new one is dialled.
fn first_connection(
    made: Option<Conn>,
    slot: &mut Slot,
    origins: &Origins,
    origin: &str,
) -> Option<(Conn, bool)> {
    made.map(|conn| (conn, false)).or_else(|| {
        slot.connection_to(origin)
            .or_else(|| origins.idle(origin))
            .map(|conn| (conn, true))
    })
}

/// An HTTP/1 response as the task's output: whole when it will be shown, else counted.
fn h1_output(response: Response, shown: bool) -> HttpOutput {
    let body = response.body;
    let mut out = match response.headers.filter(|_| shown) {
        Some(headers) => response_output(
            response.status,
            &headers,
            &body.kept,
            body.truncated,
            response.ttfb,
        ),
        None => counted(response.status, &body, response.ttfb),
    };
    out.version = Some(HttpVersionName::Http1);
    out
}

/// An answer `results` will not show, as the task's output: its status and body counted.
fn counted(status: StatusCode, body: &Body, ttfb: std::time::Duration) -> HttpOutput {
    HttpOutput {
        status: status.as_u16(),
        bytes: body.bytes as u64,
        truncated: body.truncated,
        ttfb_ms: ms(ttfb),
        ..HttpOutput::default()
    }
}

/// The hops after a redirect: they go the general way, each checked by the guard again, and
/// are not timed in phases.
async fn redirected(
    ctx: &super::JobContext,
    origins: &Origins,
    job: &HttpJob,
    hop: Option<Hop>,
    started: (Instant, u64),
    clock: &mut PhaseClock,
) -> Result<TaskOutput, Failure> {
    clock.measured = false;
    // `Redirect::of` saw the job's URL resolve the location; the rendered one, with the same
    // origin, resolves it too.
    let hop = hop.ok_or_else(|| failed_before_response("the redirect's Location names no URL"))?;
    Box::pin(follow(
        &ctx.http,
        origins.guard(),
        job,
        hop,
        started,
        &ctx.files,
    ))
    .await
}

/// One request on an HTTP/2 connection (`shared` by the batch, or its own). A request the
/// server did not take (its connection going away) goes again on another connection, a few
/// times at most; the answer is never `Refused`.
#[allow(clippy::too_many_arguments)]
async fn over_h2(
    origins: &Origins,
    mut conn: pool::H2Conn,
    shared: bool,
    job: &HttpJob,
    head: &http::request::Parts,
    body: bytes::Bytes,
    results: ResultsMode,
    started: (Instant, u64),
    clock: &mut PhaseClock,
) -> Result<multiplexed::Answer, Failure> {
    let origin = job.origin.as_str();
    let mut tries = 1;
    loop {
        let answer =
            multiplexed::exchange(&conn, job, head, body.clone(), results, started, clock).await;
        let refused = match answer {
            Ok(multiplexed::Answer::Refused(e)) => e,
            Err(failure) => {
                if shared {
                    origins.drop_h2(origin, &conn);
                }
                return Err(failure);
            }
            answer => return answer,
        };
        origins.drop_h2(origin, &conn);
        if tries == H2_TRIES {
            return Err(failed_before_response(format!(
                "the HTTP/2 connection went away {H2_TRIES} times before the request was \
                 taken: {refused}"
            )));
        }
        tries += 1;
        clock.timing.reused = false;
        let next = if shared {
            Box::pin(origins.h2(origin, job, clock, &mut None)).await?
        } else {
            match Box::pin(origins.connect(origin, job, clock)).await? {
                pool::Connected::H2(conn) => Some(conn),
                pool::Connected::H1(_) => None,
            }
        };
        conn = next.ok_or_else(|| {
            failed_before_response(format!(
                "the server switched from HTTP/2 to HTTP/1.1 after its connection went away: \
                 {refused}"
            ))
        })?;
    }
}
