//! The lean path for load runs: plain-HTTP requests sent on HTTP/1 connections the batch owns,
//! written and read here, on tokio's `TcpStream`, with `httparse` reading the answers' heads.
//!
//! The general path (`reqwest`) pays per request for a pool checkout behind a lock shared by
//! every batch, a header map and a body kept for the answer, and a name lookup through the
//! guard. A load run sends the same few requests a million times: here each origin is looked
//! up and judged by the guard once per batch (the approved addresses are then the only
//! ones dialled, so a name cannot rebind mid-run; an origin the policy refuses stays refused;
//! a name that does not resolve is tried again at most once a second),
//! each slot keeps its connection (the batch's idle list holds those put back), each job's
//! request is written out once
//! and sent as the same bytes every time, and an answer that `results` will not show is
//! counted, not kept.
//!
//! Why not hyper's client connection, which this path used before: it hands each request to
//! the connection through a channel and each answer's body back through another, and builds a
//! header map per answer; measured, that was the largest part of a request's cost in user
//! space (`bench/instructions.py`). What is written here is the HTTP/1.1 message framing of
//! RFC 9112 for a client that sends one request at a time: the answer's length from
//! `Transfer-Encoding`, `Content-Length`, or the connection's end; no body for HEAD, 1xx, 204
//! and 304; interim 1xx answers skipped; keep-alive by version and `Connection`.
//!
//! HTTPS, the hops after a redirect, and requests whose own headers set the message's framing
//! or the connection's use (`Content-Length`, `Transfer-Encoding`, `Connection`, `Upgrade`,
//! `TE`, `Expect`) go through the general path.

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Buf, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Failure;
use super::http::{Hop, answer_output, follow, outcome};
use crate::engine::spec::{HttpJob, JobKind, JobSpec, ResultsMode};
use crate::engine::task::{ErrorCode, HttpOutput, ms};
use crate::guard::{NetGuard, Unreachable};

/// Idle connections kept per origin at most (more than any batch's concurrency needs).
const MAX_IDLE: usize = 16_384;
/// How long a failed lookup of an origin's name stands before it is tried again.
const LOOKUP_RETRY: std::time::Duration = std::time::Duration::from_secs(1);
/// Room made in a connection's buffer before each read.
const READ_SIZE: usize = 8 * 1024;
/// The most an answer's head (status line and headers) may take, interim answers included:
/// hyper's default read buffer limit.
const MAX_HEAD: usize = 8192 + 4096 * 100;
/// The most a chunked answer's trailer section may take, as hyper allows.
const MAX_TRAILERS: usize = 16 * 1024;
/// The most headers an answer head may have.
const MAX_HEADERS: usize = 100;
/// The longest line a chunked body's size may take (with its extensions).
const MAX_CHUNK_LINE: usize = 4 * 1024;

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

/// One HTTP/1 connection: the stream, and what was read from it and not yet used.
struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

impl Conn {
    fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            buf: BytesMut::with_capacity(READ_SIZE),
        }
    }

    /// Whether an idle connection can no longer carry a request: the peer closed it, or sent
    /// something unasked. Costs a read only when the socket has signalled something since the
    /// last answer was read.
    fn stale(&mut self) -> bool {
        if !self.buf.is_empty() {
            return true;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => false,
            Poll::Ready(Err(_)) => true,
            Poll::Ready(Ok(())) => !matches!(
                self.stream.try_read(&mut [0u8; 1]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
            ),
        }
    }

    /// Reads what the peer sent next onto the buffer: the count read, 0 at its end.
    async fn fill(&mut self) -> std::io::Result<usize> {
        self.buf.reserve(READ_SIZE);
        self.stream.read_buf(&mut self.buf).await
    }
}

/// A batch's connections and approved addresses, per origin.
pub struct LeanPool {
    guard: NetGuard,
    results: ResultsMode,
    origins: Mutex<rustc_hash::FxHashMap<String, Origin>>,
    /// Held while a name is looked up, so that the slots which all start at once cost one
    /// lookup between them rather than one each.
    lookup: tokio::sync::Mutex<()>,
    /// Each job's request as it goes on the wire, written once for all its repetitions
    /// (`None` for jobs not sent here).
    requests: Vec<Option<Box<[u8]>>>,
}

#[derive(Default)]
struct Origin {
    /// What the guard made of the origin's name when it was last looked up.
    judged: Option<Judged>,
    idle: Vec<Conn>,
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
        let requests = jobs
            .iter()
            .map(|j| match &j.kind {
                // A URL the guard refuses as written (a user name in it, say) goes the general
                // way, which refuses it: origins are judged here once, not every URL.
                JobKind::Http(h) if LeanPool::takes(h) && guard.preflight(&h.url).is_ok() => {
                    request(h).ok()
                }
                _ => None,
            })
            .collect();
        LeanPool {
            guard,
            results,
            origins: Mutex::default(),
            lookup: tokio::sync::Mutex::new(()),
            requests,
        }
    }

    /// Whether any of the batch's jobs is sent here.
    pub fn sends_any(&self) -> bool {
        self.requests.iter().any(Option::is_some)
    }

    /// Where a task of job `job_index` sends on the lean path, if its job is sent here.
    pub fn lean<'a>(&'a self, slot: &'a mut Slot, job_index: usize) -> Option<Lean<'a>> {
        let request = self.requests.get(job_index)?.as_deref()?;
        Some(Lean {
            pool: self,
            slot,
            request,
        })
    }

    /// Whether this job's requests can take the lean path.
    fn takes(job: &HttpJob) -> bool {
        job.url.scheme() == "http"
            && job.method != Method::CONNECT
            && !FRAMING.iter().any(|name| job.headers.contains_key(name))
    }

    /// The addresses the guard approved for the URL's origin, looked up on first use.
    async fn addresses(&self, origin: &str, url: &url::Url) -> Result<Arc<[SocketAddr]>, Failure> {
        let judged = match self.judged(origin) {
            Some(judged) => judged,
            // One lookup at a time; whoever waited for it finds its outcome.
            None => match (self.lookup.lock().await, self.judged(origin)) {
                (_, Some(judged)) => judged,
                (_turn, None) => {
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
            },
        };
        match judged {
            Judged::Approved(addrs) => Ok(addrs),
            Judged::Refused(why) => Err(Failure::new(ErrorCode::Forbidden, why)),
            Judged::Unresolved(_, why) => Err(Failure::new(ErrorCode::Dns, why)),
        }
    }

    /// What is known of the origin's name and still stands.
    fn judged(&self, origin: &str) -> Option<Judged> {
        match self.origins.lock().get(origin)?.judged.clone()? {
            Judged::Unresolved(at, _) if at.elapsed() >= LOOKUP_RETRY => None,
            judged => Some(judged),
        }
    }

    /// A new connection to the origin, at an address the guard approved.
    async fn connect(&self, origin: &str, url: &url::Url) -> Result<Conn, Failure> {
        dial(&self.addresses(origin, url).await?).await
    }

    /// An idle connection to the origin, if one is left.
    fn idle(&self, origin: &str) -> Option<Conn> {
        self.origins.lock().get_mut(origin)?.idle.pop()
    }

    fn checkin(&self, origin: &str, conn: Conn) {
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
    conn: Option<Conn>,
}

impl Slot {
    /// The slot's connection, if it goes to `origin`.
    fn take(&mut self, origin: &str) -> Option<Conn> {
        if self.origin != origin {
            return None;
        }
        self.conn.take()
    }

    /// Keeps `conn` for the slot's next request; a connection it held to another origin goes
    /// to the pool.
    fn keep(&mut self, pool: &LeanPool, origin: &str, conn: Conn) {
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
async fn dial(addrs: &[SocketAddr]) -> Result<Conn, Failure> {
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(Conn::new(stream));
            }
            Err(e) => last = Some(format!("connecting to {addr}: {e}")),
        }
    }
    Err(Failure::new(
        ErrorCode::Connect,
        last.unwrap_or_else(|| "no address to connect to".into()),
    ))
}

/// The exchange failed before the answer's head was read (as the general path sorts it).
fn broken(why: impl Into<String>) -> Failure {
    Failure::new(ErrorCode::Connect, why)
}

/// The answer's body could not be read to its end (as the general path sorts it).
fn cut(why: impl Into<String>) -> Failure {
    Failure::new(ErrorCode::Io, why)
}

/// How one exchange on a connection went.
enum Exchange {
    /// The connection turned out closed before any of the answer came: the request was not
    /// sent, or (when it is idempotent) can be sent again. Only for a reused connection.
    Unsent,
    Failed(Failure),
    /// A redirect the job follows: the general path takes it from here.
    Redirect(Hop),
    Answer(Answer),
}

struct Answer {
    status: StatusCode,
    /// Kept when the answer will be shown.
    headers: Option<HeaderMap>,
    body: Body,
    /// Read to its end, and the connection may carry the next request.
    reusable: bool,
    ttfb: std::time::Duration,
}

/// An answer's body as it is read: counted, and kept up to the job's cap when it will be shown.
struct Body {
    shown: bool,
    cap: usize,
    kept: Vec<u8>,
    bytes: usize,
    truncated: bool,
}

impl Body {
    /// Takes the next piece of the body; `false` once the body is longer than the cap.
    fn take(&mut self, data: &[u8]) -> bool {
        let room = self.cap - self.bytes;
        if data.len() > room {
            if self.shown {
                self.kept.extend_from_slice(&data[..room]);
            }
            self.bytes = self.cap;
            self.truncated = true;
            return false;
        }
        self.bytes += data.len();
        if self.shown {
            self.kept.extend_from_slice(data);
        }
        true
    }
}

/// How an answer's body is delimited (RFC 9112, section 6.3).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

/// What an answer's head says, taken out of the connection's buffer.
struct Head {
    /// Its length in the buffer.
    len: usize,
    status: StatusCode,
    framing: Framing,
    keep_alive: bool,
    /// Where a redirect the job follows points.
    location: Option<String>,
    /// Every header, when the answer will be shown.
    headers: Option<HeaderMap>,
}

/// Reads an answer's head from the front of `buf`: `None` while it is incomplete.
fn parse_head(buf: &[u8], job: &HttpJob, results: ResultsMode) -> Result<Option<Head>, String> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut slots);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(format!("the answer's head is longer than {MAX_HEAD} bytes"));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("not a valid HTTP/1 answer: {e}")),
    };
    let code = response.code.unwrap_or_default();
    let status = StatusCode::from_u16(code)
        .map_err(|_| format!("not a valid HTTP/1 answer: status {code}"))?;
    let http11 = response.version == Some(1);
    let (mut close, mut keep) = (false, false);
    // The Content-Length the headers agree on; judged only if it sets the answer's length.
    let mut length: Result<Option<u64>, String> = Ok(None);
    // Whether the last transfer coding named is chunked, when the header is there at all.
    let mut chunked: Option<bool> = None;
    let mut location = None;
    for h in response.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            if let Ok(known) = length {
                length = content_length(h.value, known);
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let text = String::from_utf8_lossy(h.value);
            let last = text.split(',').map(str::trim).rfind(|c| !c.is_empty());
            chunked = Some(last.is_some_and(|c| c.eq_ignore_ascii_case("chunked")));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in String::from_utf8_lossy(h.value).split(',').map(str::trim) {
                close |= token.eq_ignore_ascii_case("close");
                keep |= token.eq_ignore_ascii_case("keep-alive");
            }
        } else if h.name.eq_ignore_ascii_case("location")
            && location.is_none()
            && status.is_redirection()
            && job.follow_redirects > 0
        {
            // As the general path reads it: the first one, in visible ASCII.
            location = HeaderValue::from_bytes(h.value)
                .ok()
                .and_then(|v| v.to_str().ok().map(str::to_owned));
        }
    }
    let mut keep_alive = !close && (http11 || keep);
    let no_body = job.method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = match chunked {
        _ if no_body => Framing::Empty,
        // RFC 9112, section 6.1: an HTTP/1.0 message with a transfer coding is faulty.
        Some(_) if !http11 => {
            return Err("an HTTP/1.0 answer with Transfer-Encoding is not valid".into());
        }
        Some(chunked) => {
            // Both framings given: the coding wins, and the connection is not trusted after.
            keep_alive &= matches!(length, Ok(None));
            if chunked {
                Framing::Chunked
            } else {
                Framing::UntilClose
            }
        }
        None => match length? {
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        },
    };
    if framing == Framing::UntilClose || status == StatusCode::SWITCHING_PROTOCOLS {
        keep_alive = false;
    }
    let shown = results.shows(!job.expect_status.accepts(status.as_u16()));
    let headers = shown.then(|| {
        let mut map = HeaderMap::with_capacity(response.headers.len());
        for h in response.headers.iter() {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(h.name.as_bytes()),
                HeaderValue::from_bytes(h.value),
            ) {
                map.append(name, value);
            }
        }
        map
    });
    Ok(Some(Head {
        len,
        status,
        framing,
        keep_alive,
        location,
        headers,
    }))
}

/// Adds one Content-Length header's value (a number, or a list of the same number) to what
/// earlier ones said.
fn content_length(value: &[u8], known: Option<u64>) -> Result<Option<u64>, String> {
    let mut length = known;
    for part in value.split(|&b| b == b',') {
        let part = part.trim_ascii();
        let n = (!part.is_empty() && part.iter().all(u8::is_ascii_digit))
            .then(|| std::str::from_utf8(part).ok()?.parse::<u64>().ok())
            .flatten()
            .ok_or_else(|| {
                format!(
                    "the answer's Content-Length is not a number: {:?}",
                    String::from_utf8_lossy(value)
                )
            })?;
        if length.is_some_and(|l| l != n) {
            return Err("the answer has differing Content-Length values".into());
        }
        length = Some(n);
    }
    Ok(length)
}

/// Sends the job's request on `conn` and reads its answer (keeping the body only when
/// `results` will show it).
async fn exchange(
    conn: &mut Conn,
    job: &HttpJob,
    request: &[u8],
    results: ResultsMode,
    started: Instant,
    reused: bool,
) -> Exchange {
    if reused && conn.stale() {
        return Exchange::Unsent;
    }
    // A reused connection the peer closed meanwhile, found out before any answer came: an
    // idempotent request may go again on a new one (RFC 9110, section 9.2.2); any other fails,
    // as part of it may have been taken.
    let again = reused && idempotent(&job.method);
    if let Err(e) = conn.stream.write_all(request).await {
        return if again {
            Exchange::Unsent
        } else {
            Exchange::Failed(broken(format!("sending the request: {e}")))
        };
    }
    // Whether any of the answer came, and the time to the final answer's first byte.
    let mut received = false;
    let mut ttfb = None;
    // Bytes of interim answers skipped, bounded like a head.
    let mut interim = 0;
    let head = loop {
        if !conn.buf.is_empty() {
            match parse_head(&conn.buf, job, results) {
                Err(why) => return Exchange::Failed(broken(why)),
                // An interim answer (100 Continue, 103 Early Hints): the final one follows.
                Ok(Some(head))
                    if head.status.is_informational()
                        && head.status != StatusCode::SWITCHING_PROTOCOLS =>
                {
                    conn.buf.advance(head.len);
                    interim += head.len;
                    if interim > MAX_HEAD {
                        return Exchange::Failed(broken(format!(
                            "more than {MAX_HEAD} bytes of interim (1xx) answers"
                        )));
                    }
                    ttfb = None;
                    continue;
                }
                Ok(Some(head)) => break head,
                Ok(None) => {}
            }
        }
        match conn.fill().await {
            Ok(0) | Err(_) if again && !received => return Exchange::Unsent,
            Ok(0) => {
                return Exchange::Failed(broken(
                    "the connection closed before the answer's head was complete",
                ));
            }
            Ok(_) => {
                received = true;
                ttfb.get_or_insert_with(|| started.elapsed());
            }
            Err(e) => return Exchange::Failed(broken(format!("reading the answer: {e}"))),
        }
    };
    conn.buf.advance(head.len);
    // The final answer came in the same read as an interim one: its first byte is now.
    let ttfb = ttfb.unwrap_or_else(|| started.elapsed());
    if let Some(location) = &head.location
        && let Some(hop) = Hop::first(job).next(head.status, location)
    {
        return Exchange::Redirect(hop);
    }
    let mut body = Body {
        shown: head.headers.is_some(),
        cap: job.max_response_bytes as usize,
        kept: Vec::new(),
        bytes: 0,
        truncated: false,
    };
    let complete = match read_body(conn, head.framing, &mut body).await {
        Ok(complete) => complete,
        Err(failure) => return Exchange::Failed(failure),
    };
    Exchange::Answer(Answer {
        status: head.status,
        headers: head.headers,
        body,
        // Anything left over was not asked for: the connection is not to be trusted.
        reusable: complete && head.keep_alive && conn.buf.is_empty(),
        ttfb,
    })
}

/// Methods a client may send again when the connection closed before any answer came
/// (RFC 9110, section 9.2.2).
fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
    )
}

/// Reads the body the framing delimits into `body`: `Ok(true)` when read to its end, `Ok(false)`
/// when it was cut at the cap.
/// Why a body could not be read to its end, when the connection closed first.
const CLOSED: &str = "the connection closed before the answer's body was complete";

async fn read_body(conn: &mut Conn, framing: Framing, body: &mut Body) -> Result<bool, Failure> {
    match framing {
        Framing::Empty => Ok(true),
        Framing::Length(n) => read_exactly(conn, n, body).await,
        Framing::UntilClose => loop {
            let whole = body.take(&conn.buf);
            conn.buf.clear();
            if !whole {
                return Ok(false);
            }
            match conn.fill().await {
                Ok(0) => return Ok(true),
                Ok(_) => {}
                Err(e) => return Err(cut(format!("reading the answer: {e}"))),
            }
        },
        Framing::Chunked => loop {
            let size = loop {
                if !chunk_line_valid(&conn.buf) {
                    return Err(cut("the answer's chunked body is not valid"));
                }
                match httparse::parse_chunk_size(&conn.buf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        conn.buf.advance(used);
                        break size;
                    }
                    Ok(httparse::Status::Partial) if conn.buf.len() <= MAX_CHUNK_LINE => {
                        more(conn, CLOSED).await?;
                    }
                    _ => return Err(cut("the answer's chunked body is not valid")),
                }
            };
            if size == 0 {
                // The trailer section, up to its empty line.
                loop {
                    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    match httparse::parse_headers(&conn.buf, &mut slots) {
                        Ok(httparse::Status::Complete((used, _))) => {
                            conn.buf.advance(used);
                            return Ok(true);
                        }
                        Ok(httparse::Status::Partial) if conn.buf.len() <= MAX_TRAILERS => {
                            more(conn, CLOSED).await?;
                        }
                        _ => return Err(cut("the answer's trailers are not valid")),
                    }
                }
            }
            if !read_exactly(conn, size, body).await? {
                return Ok(false);
            }
            while conn.buf.len() < 2 {
                more(conn, CLOSED).await?;
            }
            if conn.buf[..2] != *b"\r\n" {
                return Err(cut("the answer's chunked body is not valid"));
            }
            conn.buf.advance(2);
        },
    }
}

/// Whether what starts the buffer can be a chunk-size line as hyper reads one: a hex digit
/// first, and no line feed before the line's CRLF (httparse alone takes an empty line as size
/// 0, and a bare line feed in an extension). A line not yet complete passes.
fn chunk_line_valid(buf: &[u8]) -> bool {
    let Some(&first) = buf.first() else {
        return true;
    };
    if !first.is_ascii_hexdigit() {
        return false;
    }
    match buf.iter().position(|&b| b == b'\n') {
        Some(at) => at > 0 && buf[at - 1] == b'\r',
        None => true,
    }
}

/// Takes the next `n` bytes of the body from the connection.
async fn read_exactly(conn: &mut Conn, mut n: u64, body: &mut Body) -> Result<bool, Failure> {
    loop {
        let here = conn.buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
        let whole = body.take(&conn.buf[..here]);
        conn.buf.advance(here);
        n -= here as u64;
        if !whole {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
        more(conn, CLOSED).await?;
    }
}

/// Reads more of an answer that is not yet complete.
async fn more(conn: &mut Conn, closed: &str) -> Result<(), Failure> {
    match conn.fill().await {
        Ok(0) => Err(cut(closed)),
        Ok(_) => Ok(()),
        Err(e) => Err(cut(format!("reading the answer: {e}"))),
    }
}

/// Where a task on the lean path sends: the batch's pool, the slot that runs it, and its job's
/// request as written out ([`LeanPool::lean`]).
pub struct Lean<'a> {
    pool: &'a LeanPool,
    slot: &'a mut Slot,
    request: &'a [u8],
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

/// One attempt of an HTTP job on the lean path, begun at `started`.
pub async fn run(
    lean: Lean<'_>,
    client: &reqwest::Client,
    job: &HttpJob,
    started: Instant,
) -> Result<crate::engine::task::TaskOutput, Failure> {
    let Lean {
        pool,
        slot,
        request,
    } = lean;
    let url = &job.url;
    let origin = job.origin.as_str();
    let results = pool.results;
    // An idle connection the server closed meanwhile is found out before the request is
    // sent, or (for an idempotent request) before any answer came: then the request goes
    // once more on a new connection, as HTTP clients do.
    let mut idle = slot.take(origin).or_else(|| pool.idle(origin));
    let (conn, answer) = loop {
        let reused = idle.is_some();
        let mut conn = match idle.take() {
            Some(conn) => conn,
            // Once per slot and origin: boxed, to keep every request's future small.
            None => Box::pin(pool.connect(origin, url)).await?,
        };
        match exchange(&mut conn, job, request, results, started, reused).await {
            Exchange::Answer(answer) => break (conn, answer),
            Exchange::Unsent => continue,
            Exchange::Failed(failure) => return Err(failure),
            Exchange::Redirect(hop) => {
                // The next hops go the general way, each checked by the guard again.
                return Box::pin(follow(client, &pool.guard, job, hop, started)).await;
            }
        }
    };
    if answer.reusable {
        slot.keep(pool, origin, conn);
    }
    let body = answer.body;
    let out = match answer.headers {
        Some(headers) => answer_output(
            answer.status,
            &headers,
            &body.kept,
            body.truncated,
            answer.ttfb,
        ),
        None => HttpOutput {
            status: answer.status.as_u16(),
            headers: Default::default(),
            body: None,
            body_base64: None,
            bytes: body.bytes as u64,
            truncated: body.truncated,
            ttfb_ms: ms(answer.ttfb),
        },
    };
    outcome(job, out)
}

/// The job's request as it goes on the wire: the request line in origin form, the headers
/// the general path sends too (the job's own replace them), the body's length, and the body.
fn request(job: &HttpJob) -> Result<Box<[u8]>, http::Error> {
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
    // As hyper writes it: a length whenever there is a body, or the method usually has one.
    if !job.body.is_empty() || matches!(job.method, Method::POST | Method::PUT | Method::PATCH) {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(job.body.len()));
    }
    let mut request = Vec::with_capacity(256 + job.body.len());
    request.extend_from_slice(job.method.as_str().as_bytes());
    request.push(b' ');
    request.extend_from_slice(uri.to_string().as_bytes());
    request.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &headers {
        request.extend_from_slice(name.as_str().as_bytes());
        request.extend_from_slice(b": ");
        request.extend_from_slice(value.as_bytes());
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    request.extend_from_slice(&job.body);
    Ok(request.into())
}
