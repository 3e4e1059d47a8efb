//! What the value a check read must be (`equals "ok"`, `matches "^application/json"`,
//! `lt 150`), compiled once, and the test of a value against it.
//!
//! Semantics, per predicate:
//! - `equals`, `not_equals`, `one_of`: JSON equality. Numbers compare by value (`200` equals
//!   `200.0`), text never equals a number (`200` is not `"200"`), lists element by element,
//!   objects key by key in any order. `status`, `bytes`, `duration_ms` and `ttfb_ms` are
//!   numbers; `body` and `header:` are text.
//! - `contains`, `not_contains`: a substring of text (a value that is not a string is looked
//!   for as its JSON text: `body contains 200` finds `200`), an element of a list (JSON
//!   equality). Anything else (a number, an object) fails the check, saying why.
//! - `matches`: the regular expression found anywhere in the text (anchor it with `^...$`);
//!   a value that is not a string is matched on its compact JSON text.
//! - `lt`, `lte`, `gt`, `gte`: numbers only; a `header:` value that is a JSON number as text
//!   (`content-length: 42`) is compared as that number. Anything else fails, saying so.
//! - `exists`: whether the subject is there: always for `status`, `bytes`, `duration_ms`;
//!   `ttfb_ms` when a first byte came; `body` when it is not empty; `header:` when sent;
//!   `json:` when the path selects a node (a JSON `null` is a node).
//!
//! Every predicate but `exists: false` fails on a subject that is not there, and every one
//! fails on a `json:` subject whose body is not JSON or was truncated.

use std::borrow::Cow;
use std::fmt;

use regex::Regex;
use serde_json::{Number, Value};

use super::subject::{Seen, Subject, Unread};
use super::{MAX_ACTUAL_CHARS, text};

/// Largest compiled program a `matches` pattern may make, in bytes (the regex crate's
/// `size_limit`; its default is 10 MiB). A job carries up to 32 checks and a batch
/// thousands of jobs, all compiled when it is accepted, and a pattern of a few bytes can
/// compile to megabytes (Unicode classes repeated): 1 MiB holds what checks need (a Unicode
/// `\w{20}`, an ASCII `[a-z]{1000}`) and bounds what each pattern costs in memory.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Room for the lazy DFA's state cache of one pattern, in bytes (`dfa_size_limit`; default
/// 2 MiB). Matching stays linear in the text whatever the cache; a smaller cache only
/// rebuilds states more often, and each worker thread holding one per pattern is what adds up.
pub const REGEX_DFA_SIZE_LIMIT: usize = 1 << 20;

/// Most distinct `matches` patterns one batch compiles. Each program is bounded by
/// [`REGEX_SIZE_LIMIT`], so a batch's patterns take at most 32 MiB however many jobs and
/// checks it has; a pattern several checks share is compiled once.
pub const MAX_PATTERNS: usize = 32;

/// The `matches` patterns of one batch, each compiled once.
#[derive(Debug, Default)]
pub struct Patterns {
    compiled: std::collections::HashMap<String, Regex>,
}

impl Patterns {
    /// The `matches` predicate of `pattern`: compiled, or the program an earlier check of the
    /// batch compiled from the same text.
    pub fn matches(&mut self, pattern: &str) -> Result<Predicate, String> {
        if let Some(re) = self.compiled.get(pattern) {
            return Ok(Predicate::Matches(re.clone()));
        }
        if self.compiled.len() >= MAX_PATTERNS {
            return Err(format!(
                "the batch has {MAX_PATTERNS} different patterns already, the most it may \
                 compile (each takes up to 1 MiB): share patterns between checks"
            ));
        }
        let predicate = Predicate::matches(pattern)?;
        if let Predicate::Matches(re) = &predicate {
            self.compiled.insert(pattern.to_owned(), re.clone());
        }
        Ok(predicate)
    }
}

/// What the value read must be.
#[derive(Debug, Clone)]
pub enum Predicate {
    Equals(Value),
    NotEquals(Value),
    Contains(Value),
    NotContains(Value),
    Matches(Regex),
    Exists(bool),
    Lt(f64),
    Lte(f64),
    Gt(f64),
    Gte(f64),
    /// Never empty.
    OneOf(Vec<Value>),
}

/// The result of a test: passed or not, the value seen, and why it failed when "got ACTUAL"
/// does not say it all.
#[derive(Debug)]
pub(super) struct Outcome {
    pub passed: bool,
    pub actual: String,
    pub why: Option<String>,
}

impl Predicate {
    /// Compiles a `matches` pattern, bounded by [`REGEX_SIZE_LIMIT`].
    pub fn matches(pattern: &str) -> Result<Predicate, String> {
        regex::RegexBuilder::new(pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_DFA_SIZE_LIMIT)
            .build()
            .map(Predicate::Matches)
            .map_err(|e| match e {
                regex::Error::CompiledTooBig(limit) => format!(
                    "the pattern compiles larger than the limit of {limit} bytes: a repetition \
                     like {{100}} is written out that many times, and a Unicode class (\\w, \\d) \
                     is large; repeat less, or use ASCII classes ([a-z0-9_] or (?-u:\\w))"
                ),
                e => format!("not a regular expression: {e}"),
            })
    }

    /// The name clients write it under: `not_equals`.
    pub fn wire_name(&self) -> &'static str {
        match self {
            Predicate::Equals(_) => "equals",
            Predicate::NotEquals(_) => "not_equals",
            Predicate::Contains(_) => "contains",
            Predicate::NotContains(_) => "not_contains",
            Predicate::Matches(_) => "matches",
            Predicate::Exists(_) => "exists",
            Predicate::Lt(_) => "lt",
            Predicate::Lte(_) => "lte",
            Predicate::Gt(_) => "gt",
            Predicate::Gte(_) => "gte",
            Predicate::OneOf(_) => "one_of",
        }
    }

    /// The JSON values it compares with (those that may hold placeholders).
    pub fn values(&self) -> std::slice::Iter<'_, Value> {
        match self {
            Predicate::Equals(v)
            | Predicate::NotEquals(v)
            | Predicate::Contains(v)
            | Predicate::NotContains(v) => std::slice::from_ref(v).iter(),
            Predicate::OneOf(vs) => vs.iter(),
            _ => [].iter(),
        }
    }

    pub(super) fn map_values(&self, f: &mut impl FnMut(&Value) -> Value) -> Predicate {
        match self {
            Predicate::Equals(v) => Predicate::Equals(f(v)),
            Predicate::NotEquals(v) => Predicate::NotEquals(f(v)),
            Predicate::Contains(v) => Predicate::Contains(f(v)),
            Predicate::NotContains(v) => Predicate::NotContains(f(v)),
            Predicate::OneOf(vs) => Predicate::OneOf(vs.iter().map(f).collect()),
            other => other.clone(),
        }
    }

    /// Tests what the subject read (or why it read nothing). `actual` is written out when the
    /// test fails, or when `keep` asks for it (a task whose checks are shown): a run whose
    /// answers pass and are not shown never writes a value out.
    pub(super) fn test(
        &self,
        subject: &Subject,
        read: Result<&Seen<'_>, &Unread>,
        keep: bool,
    ) -> Outcome {
        let seen = match read {
            Ok(seen) => seen,
            Err(Unread::Nothing(_)) if matches!(self, Predicate::Exists(false)) => {
                return Outcome {
                    passed: true,
                    actual: String::new(),
                    why: None,
                };
            }
            Err(Unread::Nothing(why) | Unread::Unreadable(why)) => {
                return Outcome {
                    passed: false,
                    actual: String::new(),
                    why: Some(format!("but {why}")),
                };
            }
        };
        let (passed, why) = self.test_seen(subject, seen);
        let actual = if passed && !keep {
            String::new()
        } else {
            seen.actual()
        };
        Outcome {
            passed,
            actual,
            why,
        }
    }

    fn test_seen(&self, subject: &Subject, seen: &Seen<'_>) -> (bool, Option<String>) {
        let not_a = |what: &str| Some(format!("got {}, which is not {what}", seen.actual()));
        match self {
            Predicate::Equals(v) if seen.equals(v) => (true, None),
            Predicate::Equals(v) => (false, kind_hint(seen, v)),
            Predicate::NotEquals(v) => (!seen.equals(v), None),
            Predicate::OneOf(vs) => (vs.iter().any(|v| seen.equals(v)), None),
            Predicate::Contains(v) => match seen.contains(v) {
                Some(found) => (found, None),
                None => (false, not_a("text or a list")),
            },
            Predicate::NotContains(v) => match seen.contains(v) {
                Some(found) => (!found, None),
                None => (false, not_a("text or a list")),
            },
            Predicate::Matches(re) => (re.is_match(&seen.text()), None),
            // An empty body is read (it equals "") but is no body to speak of.
            Predicate::Exists(wanted) => {
                let there =
                    !matches!((subject, seen), (Subject::Body, Seen::Text(t)) if t.is_empty());
                (*wanted == there, None)
            }
            Predicate::Lt(limit) => compare(seen, subject, |n| n < *limit, &not_a),
            Predicate::Lte(limit) => compare(seen, subject, |n| n <= *limit, &not_a),
            Predicate::Gt(limit) => compare(seen, subject, |n| n > *limit, &not_a),
            Predicate::Gte(limit) => compare(seen, subject, |n| n >= *limit, &not_a),
        }
    }
}

fn compare(
    seen: &Seen<'_>,
    subject: &Subject,
    test: impl Fn(f64) -> bool,
    not_a: &impl Fn(&str) -> Option<String>,
) -> (bool, Option<String>) {
    match seen.number(subject.is_header()) {
        Some(n) => (test(n), None),
        None => (false, not_a("a number")),
    }
}

/// Says why a value that reads the same did not equal: `got "42" (a string, not a number)`.
fn kind_hint(seen: &Seen<'_>, wanted: &Value) -> Option<String> {
    let seen_kind = seen.kind();
    let wanted_kind = kind(wanted);
    (seen_kind != wanted_kind)
        .then(|| format!("got {} ({seen_kind}, not {wanted_kind})", seen.actual()))
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "true or false",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

impl Seen<'_> {
    /// As JSON text, cut for people.
    fn actual(&self) -> String {
        match self {
            Seen::Number(n) => n.to_string(),
            Seen::Text(t) => text::json_cut(t.as_ref(), MAX_ACTUAL_CHARS),
            Seen::Node(v) => text::json_cut(*v, MAX_ACTUAL_CHARS),
            Seen::Nodes(vs) => text::json_cut(vs, MAX_ACTUAL_CHARS),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Seen::Number(_) => "a number",
            Seen::Text(_) => "a string",
            Seen::Node(v) => kind(v),
            Seen::Nodes(_) => "a list",
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Seen::Text(t) => Some(t),
            Seen::Node(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    /// The text a pattern is matched on: a string as is, anything else as its JSON text.
    fn text(&self) -> Cow<'_, str> {
        match self {
            Seen::Text(t) => Cow::Borrowed(t),
            Seen::Node(Value::String(s)) => Cow::Borrowed(s),
            Seen::Number(n) => Cow::Owned(n.to_string()),
            Seen::Node(v) => Cow::Owned(v.to_string()),
            Seen::Nodes(vs) => Cow::Owned(serde_json::to_string(vs).unwrap_or_default()),
        }
    }

    fn number(&self, text_numbers: bool) -> Option<f64> {
        match self {
            Seen::Number(n) | Seen::Node(Value::Number(n)) => n.as_f64(),
            Seen::Text(t) if text_numbers => serde_json::from_str::<Number>(t.trim())
                .ok()
                .and_then(|n| n.as_f64()),
            _ => None,
        }
    }

    fn equals(&self, wanted: &Value) -> bool {
        match (self, wanted) {
            (Seen::Number(n), Value::Number(w)) => number_eq(n, w),
            (Seen::Text(t), Value::String(w)) => t == w,
            (Seen::Node(v), w) => json_eq(v, w),
            (Seen::Nodes(vs), Value::Array(ws)) => {
                vs.len() == ws.len() && vs.iter().zip(ws).all(|(v, w)| json_eq(v, w))
            }
            _ => false,
        }
    }

    /// Whether `wanted` is in it; `None` when it is neither text nor a list.
    fn contains(&self, wanted: &Value) -> Option<bool> {
        if let Some(s) = self.as_str() {
            return Some(match wanted {
                Value::String(w) => s.contains(w.as_str()),
                other => s.contains(&other.to_string()),
            });
        }
        match self {
            Seen::Nodes(vs) => Some(vs.iter().any(|v| json_eq(v, wanted))),
            Seen::Node(Value::Array(vs)) => Some(vs.iter().any(|v| json_eq(v, wanted))),
            _ => None,
        }
    }
}

/// JSON equality as RFC 9535's comparisons have it: numbers by value, objects in any order.
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => number_eq(x, y),
        (Value::Array(xs), Value::Array(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(xs), Value::Object(ys)) => {
            xs.len() == ys.len()
                && xs
                    .iter()
                    .all(|(k, x)| ys.get(k).is_some_and(|y| json_eq(x, y)))
        }
        _ => a == b,
    }
}

/// Integers exactly (beyond 2^53 too), anything else as floating point.
fn number_eq(x: &Number, y: &Number) -> bool {
    if let (Some(a), Some(b)) = (x.as_i64(), y.as_i64()) {
        return a == b;
    }
    if let (Some(a), Some(b)) = (x.as_u64(), y.as_u64()) {
        return a == b;
    }
    x.as_f64() == y.as_f64()
}

impl fmt::Display for Predicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.wire_name();
        match self {
            Predicate::Equals(v)
            | Predicate::NotEquals(v)
            | Predicate::Contains(v)
            | Predicate::NotContains(v) => write!(f, "{name} {v}"),
            Predicate::OneOf(vs) => write!(f, "{name} {}", Value::Array(vs.clone())),
            Predicate::Matches(re) => write!(f, "{name} {}", text::quoted(re.as_str())),
            Predicate::Exists(b) => write!(f, "{name} {b}"),
            Predicate::Lt(n) | Predicate::Lte(n) | Predicate::Gt(n) | Predicate::Gte(n) => {
                write!(f, "{name} {n}")
            }
        }
    }
}
