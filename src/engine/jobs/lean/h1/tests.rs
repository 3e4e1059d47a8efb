//! The reader's rules, case by case, and the same answers whatever the split of the bytes.

use proptest::prelude::*;

use super::*;

const GET: Asked = Asked {
    head: false,
    follows_redirects: false,
};

/// What reading a whole answer gave: the final head's status, framing and keep-alive, the
/// body, how many interim answers were skipped, and what was left after the answer.
#[derive(Debug, PartialEq)]
struct Read {
    status: u16,
    framing: Framing,
    keep_alive: bool,
    location: Option<String>,
    header_count: Option<usize>,
    body: Vec<u8>,
    interim: usize,
    left: Vec<u8>,
}

/// Feeds `chunks` to a reader one after another, as a connection would, and then the
/// connection's end.
fn read(chunks: &[&[u8]], asked: Asked) -> Result<Read, Invalid> {
    let mut reader = Reader::new(asked, |s: StatusCode| s.as_u16() >= 300);
    let mut buf: Vec<u8> = Vec::new();
    let mut rest = chunks.iter();
    let mut head = None;
    let mut body = Vec::new();
    let mut interim = 0;
    loop {
        let (used, event) = reader.next(&buf)?;
        let event = match event {
            Event::Partial => match rest.next() {
                Some(chunk) => {
                    buf.extend_from_slice(chunk);
                    continue;
                }
                None => reader.closed()?,
            },
            other => other,
        };
        match event {
            Event::Partial => unreachable!("closed() never asks for more"),
            Event::Interim => interim += 1,
            Event::Head => head = reader.take_head(),
            Event::Data(range) => body.extend_from_slice(&buf[range]),
            Event::Framing => {}
            Event::End => {
                buf.drain(..used);
                for chunk in rest {
                    buf.extend_from_slice(chunk);
                }
                let head = head.expect("a body ends after a head");
                return Ok(Read {
                    status: head.status.as_u16(),
                    framing: head.framing,
                    keep_alive: head.keep_alive,
                    location: head.location,
                    header_count: head.headers.map(|h| h.len()),
                    body,
                    interim,
                    left: buf,
                });
            }
        }
        assert!(used <= buf.len(), "used more than it was given");
        buf.drain(..used);
    }
}

fn whole(bytes: &[u8]) -> Result<Read, Invalid> {
    read(&[bytes], GET)
}

fn ok(bytes: &str) -> Read {
    whole(bytes.as_bytes()).unwrap_or_else(|e| panic!("{bytes:?}: {e:?}"))
}

fn err(bytes: &str) -> Invalid {
    match whole(bytes.as_bytes()) {
        Ok(read) => panic!("{bytes:?} read as {read:?}"),
        Err(e) => e,
    }
}

/// Answers and how they are delimited: (answer, framing, body, keep-alive, left over).
const DELIMITED: &[(&str, Framing, &str, bool, &str)] = &[
    (
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloNEXT",
        Framing::Length(5),
        "hello",
        true,
        "NEXT",
    ),
    (
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        Framing::Length(0),
        "",
        true,
        "",
    ),
    (
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\n",
        Framing::Chunked,
        "hello world",
        true,
        "",
    ),
    (
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        Framing::Chunked,
        "",
        true,
        "",
    ),
    (
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nraw bytes",
        Framing::UntilClose,
        "raw bytes",
        false,
        "",
    ),
    (
        "HTTP/1.1 200 OK\r\n\r\nuntil the end",
        Framing::UntilClose,
        "until the end",
        false,
        "",
    ),
    (
        "HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n",
        Framing::Empty,
        "",
        true,
        "",
    ),
    (
        "HTTP/1.1 304 Not Modified\r\nContent-Length: x\r\n\r\n",
        Framing::Empty,
        "",
        true,
        "",
    ),
    (
        "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi",
        Framing::Length(2),
        "hi",
        false,
        "",
    ),
    (
        "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi",
        Framing::Length(2),
        "hi",
        true,
        "",
    ),
    (
        "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi",
        Framing::Length(2),
        "hi",
        false,
        "",
    ),
    (
        "HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc",
        Framing::Length(3),
        "abc",
        true,
        "",
    ),
    (
        // Both framings: the coding wins, and the connection is not trusted after.
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
        Framing::Chunked,
        "a",
        false,
        "",
    ),
];

#[test]
fn bodies_are_delimited_as_rfc_9112_says() {
    for &(answer, framing, body, keep_alive, left) in DELIMITED {
        let read = ok(answer);
        assert_eq!(read.framing, framing, "{answer:?}");
        assert_eq!(read.body, body.as_bytes(), "{answer:?}");
        assert_eq!(read.keep_alive, keep_alive, "{answer:?}");
        assert_eq!(read.left, left.as_bytes(), "{answer:?}");
    }
}

#[test]
fn a_head_request_has_no_body_whatever_the_headers_say() {
    let asked = Asked { head: true, ..GET };
    let read = read(&[b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"], asked).unwrap();
    assert_eq!(read.framing, Framing::Empty);
    assert!(read.keep_alive);
}

#[test]
fn interim_answers_are_skipped_and_101_is_final() {
    let read = ok(
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz",
    );
    assert_eq!((read.status, read.interim), (200, 2));
    assert_eq!(read.body, b"z");
    let switching = ok("HTTP/1.1 101 Switching Protocols\r\n\r\n");
    assert_eq!((switching.status, switching.keep_alive), (101, false));
}

#[test]
fn endless_interim_answers_are_refused_past_the_head_limit() {
    let one = "HTTP/1.1 100 Continue\r\n\r\n";
    let flood = one.repeat(MAX_HEAD / one.len() + 2);
    assert!(matches!(err(&flood), Invalid::Head(m) if m.contains("interim")));
}

#[test]
fn headers_are_kept_only_when_asked_and_location_only_when_followed() {
    let answer =
        "HTTP/1.1 302 Found\r\nLocation: /next\r\nLocation: /other\r\nContent-Length: 0\r\n\r\n";
    let plain = ok(answer);
    assert_eq!(plain.header_count, Some(3));
    assert_eq!(plain.location, None);
    let follow = read(
        &[answer.as_bytes()],
        Asked {
            follows_redirects: true,
            ..GET
        },
    )
    .unwrap();
    assert_eq!(follow.location.as_deref(), Some("/next"));
    assert_eq!(
        ok("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").header_count,
        None
    );
}

#[test]
fn malformed_heads_are_refused_as_heads() {
    let cases = [
        "HTTP/1.1 abc OK\r\n\r\n",
        "NOT HTTP\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
        "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent",
    ];
    for answer in cases {
        assert!(matches!(err(answer), Invalid::Head(_)), "{answer:?}");
    }
}

#[test]
fn malformed_chunked_bodies_are_refused_as_bodies() {
    let cases = [
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nbad trailer\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
    ];
    for answer in cases {
        assert!(matches!(err(answer), Invalid::Body(_)), "{answer:?}");
    }
}

#[test]
fn a_connection_closed_in_the_head_is_a_head_failure() {
    assert_eq!(
        err("HTTP/1.1 200"),
        Invalid::Head("the connection closed before the answer's head was complete".into())
    );
}

/// Cuts `bytes` at the given points (each taken modulo the length, sorted).
fn split<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    at.sort_unstable();
    let mut pieces = Vec::new();
    let mut from = 0;
    for to in at.into_iter().chain([bytes.len()]) {
        pieces.push(&bytes[from..to]);
        from = to;
    }
    pieces
}

/// A well-formed answer: a status, a framing, a body (chunked into pieces of the given
/// sizes), and maybe an interim answer first.
fn answer() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    (
        prop::sample::select(vec![200u16, 201, 204, 301, 404, 500]),
        0..3u8,
        prop::collection::vec(any::<u8>(), 0..200),
        prop::collection::vec(1..40usize, 0..8),
        any::<bool>(),
    )
        .prop_map(|(status, framing, body, pieces, interim)| {
            let body = if status == 204 { Vec::new() } else { body };
            // A 204 has no body whatever its framing says: its length is the only one to give.
            let framing = if status == 204 { 0 } else { framing };
            let mut out = Vec::new();
            if interim {
                out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            out.extend_from_slice(format!("HTTP/1.1 {status} X\r\nServer: t\r\n").as_bytes());
            match framing {
                0 => {
                    out.extend_from_slice(
                        format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes(),
                    );
                    out.extend_from_slice(&body);
                }
                1 => {
                    out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                    let mut rest = &body[..];
                    for size in pieces.iter().copied().chain(std::iter::repeat(64)) {
                        if rest.is_empty() {
                            break;
                        }
                        let (chunk, more) = rest.split_at(size.min(rest.len()));
                        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                        out.extend_from_slice(chunk);
                        out.extend_from_slice(b"\r\n");
                        rest = more;
                    }
                    out.extend_from_slice(b"0\r\n\r\n");
                }
                _ => {
                    out.extend_from_slice(b"Connection: close\r\n\r\n");
                    out.extend_from_slice(&body);
                }
            }
            (out, body)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any bytes, however split: the reader never panics, and answers the same as when the
    /// bytes come all at once.
    #[test]
    fn any_bytes_read_the_same_whatever_their_split(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let at_once = whole(&bytes);
        prop_assert_eq!(read(&split(&bytes, &cuts), GET), at_once);
    }

    /// The same for answers that are mostly well-formed: a valid head with bytes of noise
    /// spliced in, so the reader's later states are reached too.
    #[test]
    fn noisy_answers_read_the_same_whatever_their_split(
        (good, _) in answer(),
        noise in prop::collection::vec(any::<u8>(), 0..8),
        at in any::<usize>(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut bytes = good;
        let at = at % (bytes.len() + 1);
        bytes.splice(at..at, noise);
        let at_once = whole(&bytes);
        prop_assert_eq!(read(&split(&bytes, &cuts), GET), at_once);
    }

    /// A well-formed answer, split anywhere, gives back exactly its body.
    #[test]
    fn well_formed_answers_give_back_their_body(
        (bytes, body) in answer(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let read = read(&split(&bytes, &cuts), GET).unwrap();
        prop_assert_eq!(read.body, body);
        prop_assert!(read.left.is_empty());
    }
}
