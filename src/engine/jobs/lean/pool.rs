//! A batch's connections: per origin, what the guard made of its name (looked up once per
//! load run), the idle HTTP/1 connections put back and the shared HTTP/2 ones; per slot, the
//! HTTP/1 connection it keeps.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::engine::jobs::tls::{self, Alpn, Trust};
use crate::engine::jobs::{Failure, FilesRoot};
use crate::engine::spec::{HttpJob, HttpVersion};
use crate::engine::task::{CONNECTING, ErrorCode, NetTiming, PhaseClock};
use crate::guard::{NetGuard, Unreachable};

/// Idle connections kept per origin at most (more than any batch's concurrency needs).
const MAX_IDLE: usize = 16_384;
/// How long a failed lookup of an origin's name stands before it is tried again.
const LOOKUP_RETRY: std::time::Duration = std::time::Duration::from_secs(1);
/// Room made in a connection's buffer before each read.
const READ_SIZE: usize = 8 * 1024;

/// A connection's byte stream: TCP, or TLS over TCP.
pub(super) enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// One HTTP/1 connection: the stream, and what was read from it and not yet used.
pub(super) struct Conn {
    pub stream: Stream,
    pub buf: BytesMut,
}

impl Conn {
    fn new(stream: Stream) -> Conn {
        Conn {
            stream,
            buf: BytesMut::with_capacity(READ_SIZE),
        }
    }

    /// Whether an idle connection can no longer carry a request: the peer closed it, or sent
    /// something unasked. Costs a read only when the socket has signalled something since the
    /// last answer was read.
    pub fn stale(&mut self) -> bool {
        if !self.buf.is_empty() {
            return true;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match &mut self.stream {
            Stream::Plain(tcp) => match tcp.poll_read_ready(&mut cx) {
                Poll::Pending => false,
                Poll::Ready(Err(_)) => true,
                Poll::Ready(Ok(())) => !matches!(
                    tcp.try_read(&mut [0u8; 1]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
                ),
            },
            // TLS sends records of its own after the handshake (session tickets): those are
            // read and kept by rustls, and only application data or the end counts.
            Stream::Tls(tls) => {
                if matches!(tls.get_ref().0.poll_read_ready(&mut cx), Poll::Pending) {
                    return false;
                }
                let mut byte = [0u8; 1];
                let mut buf = ReadBuf::new(&mut byte);
                Pin::new(tls.as_mut())
                    .poll_read(&mut cx, &mut buf)
                    .is_ready()
            }
        }
    }

    /// Reads what the peer sent next onto the buffer: the count read, 0 at its end.
    pub async fn fill(&mut self) -> std::io::Result<usize> {
        self.buf.reserve(READ_SIZE);
        self.stream.read_buf(&mut self.buf).await
    }
}

/// A connection just made: HTTP/1, or HTTP/2 (which every slot sending to the origin
/// shares).
pub(super) enum Connected {
    H1(Conn),
    H2(H2Conn),
}

/// An HTTP/2 connection: streams are opened on it from any slot; a task of its own reads and
/// writes its frames.
#[derive(Clone)]
pub(super) struct H2Conn {
    pub send: h2::client::SendRequest<Bytes>,
    id: u64,
    /// Set by the connection's task when it ends.
    closed: Arc<std::sync::atomic::AtomicBool>,
}

impl H2Conn {
    fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// A batch's origins: the addresses the guard approved for each, and the connections put
/// back to it or shared.
pub(super) struct Origins {
    guard: NetGuard,
    trust: Arc<Trust>,
    files: Arc<FilesRoot>,
    /// A load run looks each name up once; other batches at every new connection, as the
    /// general client does (a name that rebinds is judged at each lookup).
    keep_lookups: bool,
    /// HTTP/2 connections per origin (`load.connections`).
    h2_connections: usize,
    by_name: Mutex<rustc_hash::FxHashMap<String, Origin>>,
    /// Held while a name is looked up, so that the slots which all start at once cost one
    /// lookup between them rather than one each.
    lookup: tokio::sync::Mutex<()>,
    /// Held while an HTTP/2 connection, or the first connection to an origin whose protocol
    /// is not known yet, is made: one handshake rather than one per slot.
    opening: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Origin {
    /// What the guard made of the origin's name when it was last looked up.
    judged: Option<Judged>,
    idle: Vec<Conn>,
    /// The protocol the origin's connections speak, once known.
    proto: Option<Proto>,
    h2: Vec<H2Conn>,
    /// Which HTTP/2 connection the next stream goes on.
    next_h2: usize,
    /// The TLS configuration its connections use, made on first use.
    tls: Option<Arc<rustls::ClientConfig>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Proto {
    H1,
    H2,
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

/// What a batch's connections are made with.
pub struct Dialling {
    pub guard: NetGuard,
    pub trust: Arc<Trust>,
    pub files: Arc<FilesRoot>,
    pub keep_lookups: bool,
    pub h2_connections: usize,
}

impl Origins {
    pub fn new(d: Dialling) -> Origins {
        Origins {
            guard: d.guard,
            trust: d.trust,
            files: d.files,
            keep_lookups: d.keep_lookups,
            h2_connections: d.h2_connections.max(1),
            by_name: Mutex::default(),
            lookup: tokio::sync::Mutex::new(()),
            opening: tokio::sync::Mutex::new(()),
        }
    }

    pub fn guard(&self) -> &NetGuard {
        &self.guard
    }

    /// The addresses the guard approved for the URL's origin, looked up on first use.
    async fn addresses(&self, origin: &str, url: &url::Url) -> Result<Arc<[SocketAddr]>, Failure> {
        let judged = match self.judged(origin) {
            Some(judged) => judged,
            // One lookup at a time; whoever waited for it finds its outcome.
            None => match (self.lookup.lock().await, self.judged(origin)) {
                (_, Some(judged)) => judged,
                (_turn, None) => self.look_up(origin, url).await,
            },
        };
        match judged {
            Judged::Approved(addrs) => Ok(addrs),
            Judged::Refused(why) => Err(Failure::new(ErrorCode::Forbidden, why)),
            Judged::Unresolved(_, why) => Err(Failure::new(ErrorCode::Dns, why)),
        }
    }

    async fn look_up(&self, origin: &str, url: &url::Url) -> Judged {
        let judged = match self.guard.addresses(url).await {
            Ok(a) => Judged::Approved(a.into()),
            Err(Unreachable::Refused(r)) => Judged::Refused(r.0),
            Err(Unreachable::Lookup(why)) => Judged::Unresolved(Instant::now(), why),
        };
        if self.keep_lookups {
            self.by_name
                .lock()
                .entry(origin.to_owned())
                .or_default()
                .judged = Some(judged.clone());
        }
        judged
    }

    /// What is known of the origin's name and still stands.
    fn judged(&self, origin: &str) -> Option<Judged> {
        match self.by_name.lock().get(origin)?.judged.clone()? {
            Judged::Unresolved(at, _) if at.elapsed() >= LOOKUP_RETRY => None,
            judged => Some(judged),
        }
    }

    /// Whether the job's requests go on HTTP/2 connections, when that is known before any
    /// connection is made.
    pub fn speaks_h2(&self, origin: &str, job: &HttpJob) -> Option<bool> {
        match (job.url.scheme(), job.version) {
            (_, HttpVersion::Http2) => Some(true),
            ("http", _) | (_, HttpVersion::Http1) => Some(false),
            _ => self
                .by_name
                .lock()
                .get(origin)
                .and_then(|o| o.proto)
                .map(|p| p == Proto::H2),
        }
    }

    /// An HTTP/2 connection to the origin to open a stream on: one of those shared, or a new
    /// one while fewer than `load.connections` are open. `Ok(None)` when the origin turned out
    /// to speak HTTP/1 (then `h1` holds the connection just made, if one was).
    pub async fn h2(
        &self,
        origin: &str,
        job: &HttpJob,
        clock: &mut PhaseClock,
        h1: &mut Option<Conn>,
    ) -> Result<Option<H2Conn>, Failure> {
        if let Some(conn) = self.shared_h2(origin) {
            clock.timing.reused = true;
            return Ok(Some(conn));
        }
        let _turn = self.opening.lock().await;
        if let Some(conn) = self.shared_h2(origin) {
            clock.timing.reused = true;
            return Ok(Some(conn));
        }
        // Another slot's handshake found HTTP/1 meanwhile: connections are made as for it.
        if self.speaks_h2(origin, job) == Some(false) {
            return Ok(None);
        }
        match self.connect(origin, job, clock).await? {
            Connected::H2(conn) => {
                self.add_h2(origin, conn.clone());
                Ok(Some(conn))
            }
            Connected::H1(conn) => {
                *h1 = Some(conn);
                Ok(None)
            }
        }
    }

    /// A shared HTTP/2 connection, round robin; none while there is room for another (the
    /// caller opens it).
    fn shared_h2(&self, origin: &str) -> Option<H2Conn> {
        let mut by_name = self.by_name.lock();
        let entry = by_name.get_mut(origin)?;
        entry.h2.retain(|c| !c.is_closed());
        if entry.h2.len() < self.h2_connections {
            return None;
        }
        entry.next_h2 = entry.next_h2.wrapping_add(1);
        Some(entry.h2[entry.next_h2 % entry.h2.len()].clone())
    }

    fn add_h2(&self, origin: &str, conn: H2Conn) {
        let mut by_name = self.by_name.lock();
        let entry = by_name.entry(origin.to_owned()).or_default();
        entry.proto = Some(Proto::H2);
        entry.h2.push(conn);
    }

    /// Forgets a shared HTTP/2 connection that failed, so that the next stream opens another.
    pub fn drop_h2(&self, origin: &str, conn: &H2Conn) {
        if let Some(entry) = self.by_name.lock().get_mut(origin) {
            entry.h2.retain(|c| c.id != conn.id && !c.is_closed());
        }
    }

    /// A new connection to the origin, at an address the guard approved: TCP, then TLS for
    /// `https` (the protocol agreed there), then the HTTP/2 handshake when that is the
    /// protocol. Each step's time goes to its phase.
    pub async fn connect(
        &self,
        origin: &str,
        job: &HttpJob,
        clock: &mut PhaseClock,
    ) -> Result<Connected, Failure> {
        let url = &job.url;
        let addrs = self.addresses(origin, url).await;
        clock.mark(NetTiming::DNS);
        let tcp = dial(&addrs?).await;
        clock.mark(NetTiming::CONNECT);
        let tcp = tcp?;
        let (stream, h2) = if url.scheme() == "https" {
            let config = self.tls_config(origin, job)?;
            let host = url.host_str().unwrap_or_default();
            let name = tls::server_name(&job.tls, host)?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await;
            clock.mark(NetTiming::TLS);
            let tls = tls.map_err(|e| match tls::rustls_cause(&e) {
                Some(cause) => tls::handshake_failure(host, cause),
                None => Failure::new(ErrorCode::Tls, format!("TLS handshake with {host}: {e}")),
            })?;
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            if job.version == HttpVersion::Http2 && !h2 {
                return Err(Failure::new(
                    ErrorCode::Tls,
                    format!("{host} did not agree to HTTP/2 in the TLS handshake (ALPN)"),
                ));
            }
            (Stream::Tls(Box::new(tls)), h2)
        } else {
            (Stream::Plain(tcp), job.version == HttpVersion::Http2)
        };
        if !h2 {
            self.learn(origin, Proto::H1);
            return Ok(Connected::H1(Conn::new(stream)));
        }
        let handshake = h2::client::Builder::new()
            .initial_window_size(1 << 20)
            .initial_connection_window_size(1 << 24)
            .handshake::<_, Bytes>(stream)
            .await;
        let (send, connection) = handshake.map_err(|e| {
            Failure::new(
                ErrorCode::Connect,
                format!("the HTTP/2 handshake failed: {e}"),
            )
        })?;
        clock.mark(NetTiming::CONNECT);
        // The connection's frames are read and written by a task of its own; it ends when the
        // last `SendRequest` is dropped (the batch's end) or the peer goes away.
        let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ends = closed.clone();
        tokio::spawn(async move {
            let _ = connection.await;
            ends.store(true, std::sync::atomic::Ordering::Release);
        });
        static IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let id = IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Connected::H2(H2Conn { send, id, closed }))
    }

    fn learn(&self, origin: &str, proto: Proto) {
        let mut by_name = self.by_name.lock();
        by_name.entry(origin.to_owned()).or_default().proto = Some(proto);
    }

    /// The TLS configuration of the origin's connections (the job's options are part of the
    /// origin's key), made on first use.
    fn tls_config(
        &self,
        origin: &str,
        job: &HttpJob,
    ) -> Result<Arc<rustls::ClientConfig>, Failure> {
        if let Some(config) = self.by_name.lock().get(origin).and_then(|o| o.tls.clone()) {
            return Ok(config);
        }
        let config = self
            .trust
            .config_for(&job.tls, Alpn::of(job.version), &self.files)?;
        self.by_name
            .lock()
            .entry(origin.to_owned())
            .or_default()
            .tls = Some(config.clone());
        Ok(config)
    }

    /// An idle connection to the origin, if one is left.
    pub fn idle(&self, origin: &str) -> Option<Conn> {
        self.by_name.lock().get_mut(origin)?.idle.pop()
    }

    pub(super) fn put_back(&self, origin: &str, conn: Conn) {
        let mut by_name = self.by_name.lock();
        let entry = match by_name.get_mut(origin) {
            Some(entry) => entry,
            // Known by now unless lookups are not kept: no key to allocate on the hot path.
            None => by_name.entry(origin.to_owned()).or_default(),
        };
        if entry.idle.len() < MAX_IDLE {
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
    /// A job with placeholders: its request and body rendered for the task at hand.
    pub(super) rendered: Vec<u8>,
    pub(super) body: Vec<u8>,
}

impl Slot {
    /// Whether it holds a connection to `origin` (an HTTP/1 one: HTTP/2 connections are the
    /// batch's).
    pub(super) fn holds(&self, origin: &str) -> bool {
        self.conn.is_some() && self.origin == origin
    }

    /// The slot's connection, if it goes to `origin`.
    pub(super) fn connection_to(&mut self, origin: &str) -> Option<Conn> {
        if self.origin != origin {
            return None;
        }
        self.conn.take()
    }

    /// Keeps `conn` for the slot's next request; a connection it held to another origin goes
    /// back to `origins`.
    pub(super) fn keep(&mut self, origins: &Origins, origin: &str, conn: Conn) {
        if self.origin != origin {
            if let Some(old) = self.conn.take() {
                origins.put_back(&self.origin, old);
            }
            origin.clone_into(&mut self.origin);
        }
        self.conn = Some(conn);
    }

    /// Gives the connection it holds back to the batch's pool (a task of a batch without
    /// `load` has a slot of its own, for one task).
    pub(super) fn release(&mut self, origins: &Origins) {
        if let Some(conn) = self.conn.take() {
            origins.put_back(&self.origin, conn);
        }
    }
}

/// Connects to the first approved address that answers.
async fn dial(addrs: &[SocketAddr]) -> Result<TcpStream, Failure> {
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = Some(format!("{CONNECTING}{addr}: {e}")),
        }
    }
    Err(Failure::new(
        ErrorCode::Connect,
        last.unwrap_or_else(|| "no address to connect to".into()),
    ))
}
