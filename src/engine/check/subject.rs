//! What a check reads from an answer (`status`, `header:content-type`, `json:$.items[*].id`),
//! parsed once, and reading it. A flow's capture is a subject whose value is kept
//! ([`Subject::select`]) instead of compared.

use std::borrow::Cow;
use std::fmt;

use serde_json::{Number, Value};
use serde_json_path::JsonPath;

use super::Judge;

/// Longest subject accepted, in bytes. It bounds the work of a JSONPath's filters, which may
/// hold `match()`/`search()` patterns the JSONPath crate compiles for every node it tests.
pub const MAX_SUBJECT_LEN: usize = 1024;

/// What a check reads.
#[derive(Debug, Clone)]
pub enum Subject {
    /// The status code, a number.
    Status,
    /// The body received, as text (bytes that are not UTF-8 read as U+FFFD).
    Body,
    /// The body's length in bytes as received (at most the cap), a number.
    Bytes,
    /// The task's duration, a number of milliseconds.
    DurationMs,
    /// From the request's start to the answer's first byte, a number of milliseconds.
    TtfbMs,
    /// A header's values joined with `, `, as text. The name is lowercase.
    Header(String),
    /// An RFC 9535 JSONPath over the body parsed as JSON.
    Json(JsonQuery),
    // The stream subjects go here when streamed answers land: `events` (the count),
    // `last_event` (its data as text), `last_event:json:PATH` (a `JsonQuery` over it),
    // `first_event_ms`. `Subject::parse` already names them.
}

/// A compiled JSONPath and the text it was written as.
#[derive(Debug, Clone)]
pub struct JsonQuery {
    pub path: JsonPath,
    /// As the client wrote it, for names and messages.
    pub source: String,
    /// RFC 9535's singular query (names and indices only): it selects one node at most, and
    /// reads as that node. Any other query reads as the list of what it selected, even of one
    /// node, so the value's shape does not depend on how many nodes the answer happens to hold.
    pub singular: bool,
    /// A singular path's steps, when written in the plain forms a pruned read takes
    /// ([`pick`](super::pick)).
    pub steps: Option<Vec<super::pick::Step>>,
}

/// What a subject read: borrowed from the answer or its parsed body where it can be.
#[derive(Debug)]
pub enum Seen<'j> {
    Number(Number),
    Text(Cow<'j, str>),
    /// The one node of a singular JSONPath.
    Node(&'j Value),
    /// Every node a non-singular JSONPath selected, in order (never empty).
    Nodes(Vec<&'j Value>),
}

/// Why a subject has no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unread {
    /// The answer lacks it (a header not sent, a path that selected nothing): `exists: false`.
    #[error("{0}")]
    Nothing(String),
    /// It cannot be read at all (a `json:` subject on a body that is not JSON, or was
    /// truncated): every predicate fails with this reason, `exists: false` too.
    #[error("{0}")]
    Unreadable(String),
}

impl Subject {
    /// Parses a subject as clients write it (`on`). The message says what was expected.
    pub fn parse(text: &str) -> Result<Subject, String> {
        if text.len() > MAX_SUBJECT_LEN {
            return Err(format!("at most {MAX_SUBJECT_LEN} bytes"));
        }
        Ok(match text {
            "status" => Subject::Status,
            "body" => Subject::Body,
            "bytes" => Subject::Bytes,
            "duration_ms" => Subject::DurationMs,
            "ttfb_ms" => Subject::TtfbMs,
            "events" | "last_event" | "first_event_ms" => return Err(stream_subject(text)),
            _ if text.starts_with("last_event:") => return Err(stream_subject(text)),
            _ => {
                if let Some(name) = text.strip_prefix("header:") {
                    Subject::Header(header_name(name)?)
                } else if let Some(path) = text.strip_prefix("json:") {
                    Subject::Json(JsonQuery::parse(path)?)
                } else {
                    return Err(format!(
                        "{text:?} is not a subject: status, body, bytes, duration_ms, ttfb_ms, \
                         header:NAME or json:PATH"
                    ));
                }
            }
        })
    }

    /// Reads the subject from the judged answer.
    pub fn read<'j>(&self, judge: &'j Judge<'_>) -> Result<Seen<'j>, Unread> {
        let answer = judge.answer();
        let number = |ms: f64| {
            Number::from_f64(ms)
                .map(Seen::Number)
                .ok_or_else(|| Unread::Nothing("the time is not a number".into()))
        };
        match self {
            Subject::Status => Ok(Seen::Number(answer.status.into())),
            Subject::Bytes => Ok(Seen::Number((answer.body.len() as u64).into())),
            Subject::Body => Ok(Seen::Text(String::from_utf8_lossy(answer.body))),
            Subject::DurationMs => number(answer.duration_ms),
            Subject::TtfbMs => match answer.ttfb_ms {
                Some(ms) => number(ms),
                None => Err(Unread::Nothing("no first byte came".into())),
            },
            Subject::Header(name) => match answer.headers.joined(name) {
                Some(value) => Ok(Seen::Text(value)),
                None => Err(Unread::Nothing(format!("the answer has no {name} header"))),
            },
            Subject::Json(query) => query.read(judge),
        }
    }

    /// Reads the subject and keeps its value (a flow's capture): a string as is, a number, a
    /// node, or the list of a non-singular JSONPath's nodes.
    pub fn select(&self, judge: &Judge<'_>) -> Result<Value, Unread> {
        Ok(match self.read(judge)? {
            Seen::Number(n) => Value::Number(n),
            Seen::Text(t) => Value::String(t.into_owned()),
            Seen::Node(v) => v.clone(),
            Seen::Nodes(vs) => Value::Array(vs.into_iter().cloned().collect()),
        })
    }

    /// Whether the subject is a header, whose values are text even when they are numbers.
    pub(super) fn is_header(&self) -> bool {
        matches!(self, Subject::Header(_))
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Status => f.write_str("status"),
            Subject::Body => f.write_str("body"),
            Subject::Bytes => f.write_str("bytes"),
            Subject::DurationMs => f.write_str("duration_ms"),
            Subject::TtfbMs => f.write_str("ttfb_ms"),
            Subject::Header(name) => write!(f, "header:{name}"),
            Subject::Json(query) => write!(f, "json:{}", query.source),
        }
    }
}

fn stream_subject(text: &str) -> String {
    format!("{text:?} reads a streamed answer's events, which this server does not time yet")
}

fn header_name(name: &str) -> Result<String, String> {
    match http::HeaderName::from_bytes(name.as_bytes()) {
        Ok(n) => Ok(n.as_str().to_owned()),
        Err(_) if name.is_empty() => Err("header: needs a name (header:content-type)".into()),
        Err(_) => Err(format!("{name:?} is not a header name")),
    }
}

impl JsonQuery {
    /// Parses and compiles an RFC 9535 JSONPath (`$.items[*].id`).
    pub fn parse(source: &str) -> Result<JsonQuery, String> {
        let path = JsonPath::parse(source)
            .map_err(|e| format!("{source:?} is not an RFC 9535 JSONPath: {e}"))?;
        // RFC 9535 lets a comparison in a filter hold singular queries only, so the crate's own
        // grammar tells whether this one is.
        let singular = JsonPath::parse(&format!("$[?{source} == null]")).is_ok();
        Ok(JsonQuery {
            path,
            source: source.to_owned(),
            singular,
            steps: singular.then(|| super::pick::steps(source)).flatten(),
        })
    }

    fn read<'j>(&self, judge: &'j Judge<'_>) -> Result<Seen<'j>, Unread> {
        let document = judge.json().map_err(|e| Unread::Unreadable(e.into()))?;
        let nodes = self.path.query(document).all();
        match (self.singular, nodes.as_slice()) {
            (_, []) => Err(Unread::Nothing("the path selected nothing".into())),
            (true, [node]) => Ok(Seen::Node(node)),
            _ => Ok(Seen::Nodes(nodes)),
        }
    }
}
