//! A load run's connections: per origin, what the guard made of its name (looked up once per
//! batch) and the idle connections put back; per slot, the connection it keeps.

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::BytesMut;
use parking_lot::Mutex;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::engine::jobs::Failure;
use crate::engine::task::{CONNECTING, ErrorCode};
use crate::guard::{NetGuard, Unreachable};

/// Idle connections kept per origin at most (more than any batch's concurrency needs).
const MAX_IDLE: usize = 16_384;
/// How long a failed lookup of an origin's name stands before it is tried again.
const LOOKUP_RETRY: std::time::Duration = std::time::Duration::from_secs(1);
/// Room made in a connection's buffer before each read.
const READ_SIZE: usize = 8 * 1024;

/// One HTTP/1 connection: the stream, and what was read from it and not yet used.
pub(super) struct Conn {
    pub stream: TcpStream,
    pub buf: BytesMut,
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
    pub fn stale(&mut self) -> bool {
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
    pub async fn fill(&mut self) -> std::io::Result<usize> {
        self.buf.reserve(READ_SIZE);
        self.stream.read_buf(&mut self.buf).await
    }
}

/// A batch's origins: the addresses the guard approved for each, and the connections put
/// back to it.
pub(super) struct Origins {
    guard: NetGuard,
    by_name: Mutex<rustc_hash::FxHashMap<String, Origin>>,
    /// Held while a name is looked up, so that the slots which all start at once cost one
    /// lookup between them rather than one each.
    lookup: tokio::sync::Mutex<()>,
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

impl Origins {
    pub fn new(guard: NetGuard) -> Origins {
        Origins {
            guard,
            by_name: Mutex::default(),
            lookup: tokio::sync::Mutex::new(()),
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
                (_turn, None) => {
                    let judged = match self.guard.addresses(url).await {
                        Ok(a) => Judged::Approved(a.into()),
                        Err(Unreachable::Refused(r)) => Judged::Refused(r.0),
                        Err(Unreachable::Lookup(why)) => Judged::Unresolved(Instant::now(), why),
                    };
                    self.by_name
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
        match self.by_name.lock().get(origin)?.judged.clone()? {
            Judged::Unresolved(at, _) if at.elapsed() >= LOOKUP_RETRY => None,
            judged => Some(judged),
        }
    }

    /// A new connection to the origin, at an address the guard approved.
    pub async fn connect(&self, origin: &str, url: &url::Url) -> Result<Conn, Failure> {
        dial(&self.addresses(origin, url).await?).await
    }

    /// An idle connection to the origin, if one is left.
    pub fn idle(&self, origin: &str) -> Option<Conn> {
        self.by_name.lock().get_mut(origin)?.idle.pop()
    }

    fn put_back(&self, origin: &str, conn: Conn) {
        let mut by_name = self.by_name.lock();
        // The origin is known by now (its addresses were looked up): no key to allocate.
        if let Some(entry) = by_name.get_mut(origin)
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
            Err(e) => last = Some(format!("{CONNECTING}{addr}: {e}")),
        }
    }
    Err(Failure::new(
        ErrorCode::Connect,
        last.unwrap_or_else(|| "no address to connect to".into()),
    ))
}
