//! An HTTP/1.1 answer read without I/O: bytes in, events out. [`Reader::next`] looks at the
//! front of what the connection has read so far and says how many bytes it used and what they
//! were: more needed, an interim (1xx) answer skipped, the final answer's head, a stretch of
//! body, or the body's end. The connection only moves bytes (see `super::exchange`), so the
//! framing rules can be table-tested and fed every split point.
//!
//! The framing is RFC 9112's for a client that sends one request at a time: the body's length
//! from `Transfer-Encoding`, `Content-Length`, or the connection's end (section 6.3); no body
//! for HEAD, 1xx, 204 and 304; interim 1xx answers skipped, with a bound on their size;
//! keep-alive by version and `Connection`. Limits are hyper's, so the lean path refuses what
//! the general path (reqwest, on hyper) refuses.

use std::ops::Range;

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

/// The most an answer's head (status line and headers) may take, interim answers included:
/// hyper's default read buffer limit.
pub const MAX_HEAD: usize = 8192 + 4096 * 100;
/// The most a chunked answer's trailer section may take, as hyper allows.
const MAX_TRAILERS: usize = 16 * 1024;
/// The most headers an answer head may have.
const MAX_HEADERS: usize = 100;
/// The longest line a chunked body's size may take (with its extensions).
const MAX_CHUNK_LINE: usize = 4 * 1024;

/// What the reader needs to know of the request the answer is for.
#[derive(Debug, Clone, Copy)]
pub struct Asked {
    /// A HEAD request: the answer has no body, whatever its headers say.
    pub head: bool,
    /// The job follows redirects: a redirect's `Location` is wanted.
    pub follows_redirects: bool,
}

/// How an answer's body is delimited (RFC 9112, section 6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

/// What the final answer's head says.
#[derive(Debug, PartialEq)]
pub struct Head {
    pub status: StatusCode,
    pub framing: Framing,
    /// The connection may carry another request once the body has been read.
    pub keep_alive: bool,
    /// Where a redirect points, when the job follows redirects.
    pub location: Option<String>,
    /// Every header, when the caller keeps them for this status.
    pub headers: Option<HeaderMap>,
}

/// What the bytes at the front of the input were.
#[derive(Debug, PartialEq)]
pub enum Event {
    /// Not enough to go on: read more, then call again with the same bytes and the new ones.
    Partial,
    /// An interim (1xx) answer, skipped: the final one follows.
    Interim,
    /// The final answer's head: [`Reader::take_head`] has it. (Kept in the reader rather
    /// than carried here, so that every event stays small to pass around.)
    Head,
    /// A stretch of the body: these bytes of the input.
    Data(Range<usize>),
    /// Framing (a chunk's size line or its line end), skipped.
    Framing,
    /// The body is complete.
    End,
}

/// Why the answer cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    /// The head is not a valid HTTP/1 answer head.
    Head(String),
    /// The body is not framed as its head says.
    Body(String),
}

/// Where in the answer the reader is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum At {
    Head,
    /// This many body bytes are left (a `Content-Length` body, or a chunk's data).
    Left {
        n: u64,
        chunked: bool,
    },
    ChunkSize,
    /// A chunk's data is done; its CRLF follows.
    ChunkEnd,
    Trailers,
    UntilClose,
    Done,
}

/// Reads one answer. `keep_headers` says, from the final status, whether the caller keeps
/// the headers (only then is a header map built).
pub struct Reader<F> {
    asked: Asked,
    keep_headers: F,
    at: At,
    /// Bytes of interim answers skipped, bounded like a head.
    interim: usize,
    /// The final answer's head, once read and until taken.
    head: Option<Head>,
}

impl<F: Fn(StatusCode) -> bool> Reader<F> {
    pub fn new(asked: Asked, keep_headers: F) -> Self {
        Reader {
            asked,
            keep_headers,
            at: At::Head,
            interim: 0,
            head: None,
        }
    }

    /// The final answer's head, after [`Event::Head`].
    pub fn take_head(&mut self) -> Option<Head> {
        self.head.take()
    }

    /// Reads what starts `input`: how many bytes that used (to drop from the front), and
    /// what they were. After [`Event::End`] there is nothing more to read.
    pub fn next(&mut self, input: &[u8]) -> Result<(usize, Event), Invalid> {
        match self.at {
            At::Head => self.head(input),
            At::Left { n, chunked } => {
                if n == 0 {
                    self.at = if chunked { At::ChunkEnd } else { At::Done };
                    return Ok((0, if chunked { Event::Framing } else { Event::End }));
                }
                if input.is_empty() {
                    return Ok((0, Event::Partial));
                }
                let here = input.len().min(usize::try_from(n).unwrap_or(usize::MAX));
                self.at = At::Left {
                    n: n - here as u64,
                    chunked,
                };
                Ok((here, Event::Data(0..here)))
            }
            At::UntilClose if input.is_empty() => Ok((0, Event::Partial)),
            At::UntilClose => Ok((input.len(), Event::Data(0..input.len()))),
            At::ChunkSize => {
                if !chunk_line_valid(input) {
                    return Err(not_chunked());
                }
                match httparse::parse_chunk_size(input) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        self.at = match size {
                            0 => At::Trailers,
                            n => At::Left { n, chunked: true },
                        };
                        Ok((used, Event::Framing))
                    }
                    Ok(httparse::Status::Partial) if input.len() <= MAX_CHUNK_LINE => {
                        Ok((0, Event::Partial))
                    }
                    _ => Err(not_chunked()),
                }
            }
            At::ChunkEnd => match input {
                [b'\r', b'\n', ..] => {
                    self.at = At::ChunkSize;
                    Ok((2, Event::Framing))
                }
                [] | [_] => Ok((0, Event::Partial)),
                _ => Err(not_chunked()),
            },
            At::Trailers => {
                let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
                match httparse::parse_headers(input, &mut slots) {
                    Ok(httparse::Status::Complete((used, _))) => {
                        self.at = At::Done;
                        Ok((used, Event::End))
                    }
                    Ok(httparse::Status::Partial) if input.len() <= MAX_TRAILERS => {
                        Ok((0, Event::Partial))
                    }
                    _ => Err(Invalid::Body("the answer's trailers are not valid".into())),
                }
            }
            At::Done => Ok((0, Event::End)),
        }
    }

    /// The peer closed the connection: whether the answer ends there (a body delimited by
    /// the connection's end) or was cut short.
    pub fn closed(&mut self) -> Result<Event, Invalid> {
        match self.at {
            At::UntilClose | At::Done => {
                self.at = At::Done;
                Ok(Event::End)
            }
            At::Head => Err(Invalid::Head(
                "the connection closed before the answer's head was complete".into(),
            )),
            _ => Err(Invalid::Body(
                "the connection closed before the answer's body was complete".into(),
            )),
        }
    }

    fn head(&mut self, input: &[u8]) -> Result<(usize, Event), Invalid> {
        // Nothing read yet (the usual case right after sending): no head parse, which costs
        // the setting up of its header slots.
        if input.is_empty() {
            return Ok((0, Event::Partial));
        }
        let Some((len, head)) = parse_head(input, self.asked, &self.keep_headers)? else {
            return Ok((0, Event::Partial));
        };
        // An interim answer (100 Continue, 103 Early Hints): the final one follows.
        if head.status.is_informational() && head.status != StatusCode::SWITCHING_PROTOCOLS {
            self.interim += len;
            if self.interim > MAX_HEAD {
                return Err(Invalid::Head(format!(
                    "more than {MAX_HEAD} bytes of interim (1xx) answers"
                )));
            }
            return Ok((len, Event::Interim));
        }
        self.at = match head.framing {
            Framing::Empty => At::Done,
            Framing::Length(n) => At::Left { n, chunked: false },
            Framing::Chunked => At::ChunkSize,
            Framing::UntilClose => At::UntilClose,
        };
        self.head = Some(head);
        Ok((len, Event::Head))
    }
}

fn not_chunked() -> Invalid {
    Invalid::Body("the answer's chunked body is not valid".into())
}

/// Reads an answer's head from the front of `buf`: its length and what it says, or `None`
/// while it is incomplete.
fn parse_head(
    buf: &[u8],
    asked: Asked,
    keep_headers: impl Fn(StatusCode) -> bool,
) -> Result<Option<(usize, Head)>, Invalid> {
    let invalid = |why: String| Invalid::Head(why);
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut slots);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(invalid(format!(
                "the answer's head is longer than {MAX_HEAD} bytes"
            )));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(invalid(format!("not a valid HTTP/1 answer: {e}"))),
    };
    let code = response.code.unwrap_or_default();
    let status = StatusCode::from_u16(code)
        .map_err(|_| invalid(format!("not a valid HTTP/1 answer: status {code}")))?;
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
            && asked.follows_redirects
        {
            // As the general path reads it: the first one, in visible ASCII.
            location = HeaderValue::from_bytes(h.value)
                .ok()
                .and_then(|v| v.to_str().ok().map(str::to_owned));
        }
    }
    let mut keep_alive = !close && (http11 || keep);
    let no_body = asked.head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = match chunked {
        _ if no_body => Framing::Empty,
        // RFC 9112, section 6.1: an HTTP/1.0 message with a transfer coding is faulty.
        Some(_) if !http11 => {
            return Err(invalid(
                "an HTTP/1.0 answer with Transfer-Encoding is not valid".into(),
            ));
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
        None => match length.map_err(invalid)? {
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        },
    };
    if framing == Framing::UntilClose || status == StatusCode::SWITCHING_PROTOCOLS {
        keep_alive = false;
    }
    let headers = keep_headers(status).then(|| header_map(response.headers));
    Ok(Some((
        len,
        Head {
            status,
            framing,
            keep_alive,
            location,
            headers,
        },
    )))
}

/// An answer's headers as a map, for an answer whose headers are kept: those that are not
/// valid header names or values are left out.
fn header_map(headers: &[httparse::Header]) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(headers.len());
    for h in headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) {
            map.append(name, value);
        }
    }
    map
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

#[cfg(test)]
mod tests;
