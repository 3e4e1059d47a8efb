//! Checks: was the answer right? A check is a [`Subject`] (what is read from the answer) and a
//! [`Predicate`] (what it must be), both parsed once when the batch is accepted (JSONPath and
//! regular expression compiled) and judged per task without parsing either again.
//!
//! - here: [`Check`], the [`Answer`] it reads, the per-task [`Judge`] and its [`Judgement`].
//! - [`subject`]: what a check reads, and how (also what a flow's capture keeps).
//! - [`capture`]: what a flow's step keeps of its answer for the steps after it.
//! - [`pick`]: a body read only for what plain singular JSONPaths name.
//! - [`predicate`]: what the value read must be.
//! - `text`: values written out for people, cut to a length.

pub mod capture;
pub mod pick;
pub mod predicate;
pub mod subject;
mod text;

#[cfg(test)]
mod jsonpath_cross;
#[cfg(test)]
mod making;
#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::BTreeMap;

use serde_json::Value;

pub use predicate::{Patterns, Predicate};
pub use subject::{Subject, Unread};

/// Most checks one `http` job (or flow step) may carry.
pub const MAX_CHECKS: usize = 32;

/// Longest `actual` kept in a judgement, in characters.
pub const MAX_ACTUAL_CHARS: usize = 200;

/// One check, validated: the subject, the predicate, and how a failure counts.
#[derive(Debug, Clone)]
pub struct Check {
    /// What results and `summary.checks` call it: the client's `name`, else the check written
    /// out (`json:$.status equals "ok"`), so that the same check gets the same name in every
    /// task and across batches.
    pub name: String,
    pub subject: Subject,
    pub predicate: Predicate,
    /// A soft check only counts (k6's `check()`); a failed hard check fails the task.
    pub soft: bool,
}

impl Check {
    /// A check named `name`, else after itself written out.
    pub fn new(name: Option<String>, subject: Subject, predicate: Predicate, soft: bool) -> Self {
        let name = name.unwrap_or_else(|| format!("{subject} {predicate}"));
        Check {
            name,
            subject,
            predicate,
            soft,
        }
    }

    /// The check written out: `json:$.status equals "ok"`.
    pub fn describe(&self) -> String {
        format!("{} {}", self.subject, self.predicate)
    }

    /// Whether a value the predicate compares with holds a template placeholder (`{{seq}}`,
    /// `{{data.COL}}`, a flow's capture). Rendering is the caller's: it renders the values per
    /// task with [`Check::map_values`] before judging. A `matches` pattern is never rendered:
    /// it is compiled once, when the batch is accepted.
    pub fn needs_render(&self) -> bool {
        self.predicate.values().any(holds_placeholder)
    }

    /// This check with every string in its predicate's values passed through `render` (strings
    /// nested in lists and objects too). The name stays as it was, so that counts by name add
    /// up across tasks whose values differ.
    pub fn map_values(&self, mut render: impl FnMut(&str) -> String) -> Check {
        Check {
            predicate: self
                .predicate
                .map_values(&mut |v| map_strings(v, &mut render)),
            ..self.clone()
        }
    }

    /// Reads the subject from the answer and judges it, with what it read written out.
    pub fn judge(&self, judge: &Judge<'_>) -> Judgement {
        self.judge_keeping(judge, true)
    }

    /// The same; `keep`: write out what a passed check read (a failed one's always is).
    pub fn judge_keeping(&self, judge: &Judge<'_>, keep: bool) -> Judgement {
        let read = self.subject.read(judge);
        let outcome = self.predicate.test(&self.subject, read.as_ref(), keep);
        let message = (!outcome.passed)
            .then(|| self.failure_message(&outcome.actual, outcome.why.as_deref()));
        Judgement {
            passed: outcome.passed,
            actual: outcome.actual,
            message,
        }
    }

    /// `check "healthy" failed: json:$.status equals "ok", got "degraded"`; a check without a
    /// name of its own is named by its description alone.
    fn failure_message(&self, actual: &str, why: Option<&str>) -> String {
        let described = self.describe();
        let head = if self.name == described {
            "check failed".to_owned()
        } else {
            format!("check {} failed", text::quoted(&self.name))
        };
        match why {
            Some(why) => format!("{head}: {described}, {why}"),
            None => format!("{head}: {described}, got {actual}"),
        }
    }
}

fn holds_placeholder(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains("{{"),
        Value::Array(items) => items.iter().any(holds_placeholder),
        Value::Object(map) => map.values().any(holds_placeholder),
        _ => false,
    }
}

fn map_strings(value: &Value, render: &mut impl FnMut(&str) -> String) -> Value {
    match value {
        Value::String(s) if s.contains("{{") => Value::String(render(s)),
        Value::Array(items) => Value::Array(items.iter().map(|v| map_strings(v, render)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), map_strings(v, render)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A job's checks, and what judging them needs kept of an answer (found once, when the batch
/// is accepted): a run whose checks read only the status keeps no header and no body.
#[derive(Debug)]
pub struct JobChecks {
    pub list: Vec<Check>,
    /// A `header:` subject reads the answer's headers.
    pub needs_headers: bool,
    /// A `body`, `bytes` or `json:` subject reads its body.
    pub needs_body: bool,
    /// A value holds a placeholder: the checks are rendered per task.
    pub rendered: bool,
    /// When every `json:` subject is a plain singular path: what a body is read for (the rest
    /// of it skipped, not built).
    pub keep: Option<pick::Keep>,
}

impl JobChecks {
    pub fn new(list: Vec<Check>) -> JobChecks {
        let reads = |f: fn(&Subject) -> bool| list.iter().any(|c| f(&c.subject));
        let paths: Vec<Option<&[pick::Step]>> = list
            .iter()
            .filter_map(|c| match &c.subject {
                Subject::Json(q) => Some(q.steps.as_deref()),
                _ => None,
            })
            .collect();
        let keep = (!paths.is_empty() && paths.iter().all(Option::is_some))
            .then(|| pick::Keep::of(paths.into_iter().flatten()));
        JobChecks {
            keep,
            needs_headers: reads(|s| matches!(s, Subject::Header(_))),
            needs_body: reads(|s| matches!(s, Subject::Body | Subject::Bytes | Subject::Json(_))),
            rendered: list.iter().any(Check::needs_render),
            list,
        }
    }

    /// Judges every check on the answer; `show`: keep each one's verdict for the task's
    /// output (`actual` included), else only which passed.
    pub fn judge(
        &self,
        judge: &Judge<'_>,
        render: impl FnMut(&str) -> String,
        show: bool,
    ) -> Judged {
        let mut render = render;
        let mut judged = Judged::default();
        if show {
            judged.results.reserve_exact(self.list.len());
        }
        for (i, check) in self.list.iter().enumerate() {
            let rendered;
            let check = if self.rendered && check.needs_render() {
                rendered = check.map_values(&mut render);
                &rendered
            } else {
                check
            };
            let j = check.judge_keeping(judge, show);
            if j.passed {
                judged.passed |= 1 << i;
            } else if !check.soft && judged.failure.is_none() {
                judged.failure = j.message.clone();
            }
            if show {
                judged.results.push(CheckResult {
                    name: check.name.clone(),
                    passed: j.passed,
                    actual: j.actual,
                });
            }
        }
        judged
    }
}

/// A task's checks, judged.
#[derive(Debug, Default)]
pub struct Judged {
    /// Which passed: bit `i` for the job's check `i` (at most [`MAX_CHECKS`], 32).
    pub passed: u32,
    /// The first failed hard check's message: what fails the task (`error.code: "check"`).
    pub failure: Option<String>,
    /// Each check's verdict, when the task will be shown.
    pub results: Vec<CheckResult>,
    /// A flow's step: what its captures took, in order, once its checks passed.
    pub captured: Vec<String>,
}

/// One check's verdict in a task's output (`output.checks`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct CheckResult {
    pub name: String,
    pub passed: bool,
    /// What the subject held, as JSON text, cut at 200 characters; empty when nothing could
    /// be read.
    pub actual: String,
}

/// The verdict on one check in one task.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    pub passed: bool,
    /// What the subject held, as JSON text (`"degraded"`, `200`, `["a","b"]`), cut at
    /// [`MAX_ACTUAL_CHARS`]; empty when nothing could be read.
    pub actual: String,
    /// Why it failed, naming the check, what it wanted and what came; `None` when it passed.
    pub message: Option<String>,
}

/// What a check reads: a borrowed view of one answer, as received up to the response cap.
#[derive(Clone, Copy)]
pub struct Answer<'a> {
    pub status: u16,
    pub headers: &'a dyn Headers,
    /// The body as received: no more than the job's `max_response_bytes`.
    pub body: &'a [u8],
    /// The cap cut the body: it is not all there.
    pub truncated: bool,
    pub duration_ms: f64,
    /// `None` when no first byte came (nothing to time).
    pub ttfb_ms: Option<f64>,
    // Streamed answers will add their events here (`events`, `last_event`,
    // `first_event_ms`), for the stream subjects to read.
}

impl std::fmt::Debug for Answer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answer")
            .field("status", &self.status)
            .field("body_bytes", &self.body.len())
            .field("truncated", &self.truncated)
            .finish_non_exhaustive()
    }
}

/// An answer's headers, looked up case-insensitively.
pub trait Headers: Sync {
    /// The values of the header `name` (lowercase), joined with `, ` in the order received;
    /// `None` when the answer has none.
    fn joined(&self, name: &str) -> Option<Cow<'_, str>>;
}

impl Headers for http::HeaderMap {
    fn joined(&self, name: &str) -> Option<Cow<'_, str>> {
        let mut values = self.get_all(name).iter();
        let first = String::from_utf8_lossy(values.next()?.as_bytes());
        let mut rest = values.peekable();
        if rest.peek().is_none() {
            return Some(first);
        }
        let mut out = first.into_owned();
        for value in rest {
            out.push_str(", ");
            out.push_str(&String::from_utf8_lossy(value.as_bytes()));
        }
        Some(Cow::Owned(out))
    }
}

/// A task result's headers: names lowercase, repeated values already joined.
impl Headers for BTreeMap<String, String> {
    fn joined(&self, name: &str) -> Option<Cow<'_, str>> {
        self.get(name).map(|v| Cow::Borrowed(v.as_str()))
    }
}

/// Headers as a list of pairs in the order received, names in any case.
impl Headers for &[(&str, &str)] {
    fn joined(&self, name: &str) -> Option<Cow<'_, str>> {
        let mut values = self
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v);
        let first = values.next()?;
        Some(values.fold(Cow::Borrowed(first), |acc, v| {
            Cow::Owned(format!("{acc}, {v}"))
        }))
    }
}

/// Judges one answer: holds it and its body parsed as JSON, parsed at most once for all the
/// task's checks and captures, and only when a `json:` subject asks for it.
pub struct Judge<'a> {
    answer: Answer<'a>,
    json: OnceCell<Result<Value, String>>,
    /// What the body is read for, when the checks' paths are all plain singular ones.
    keep: Option<&'a pick::Keep>,
}

impl<'a> Judge<'a> {
    pub fn new(answer: Answer<'a>) -> Self {
        Judge {
            answer,
            json: OnceCell::new(),
            keep: None,
        }
    }

    /// The same, reading the body only for what `keep` names (a job's checks' singular paths).
    pub fn pruned(answer: Answer<'a>, keep: Option<&'a pick::Keep>) -> Self {
        Judge {
            keep,
            ..Judge::new(answer)
        }
    }

    pub fn answer(&self) -> &Answer<'a> {
        &self.answer
    }

    /// Judges every check, not only up to the first failure, in order.
    pub fn judge_all(&self, checks: &[Check]) -> Vec<Judgement> {
        checks.iter().map(|c| c.judge(self)).collect()
    }

    /// The body parsed as JSON, or why it cannot be. The body is bounded by the response cap,
    /// and nesting by serde_json's recursion limit (128 levels): a deeper body is "not JSON"
    /// rather than a stack overflow.
    pub fn json(&self) -> Result<&Value, &str> {
        self.json
            .get_or_init(|| {
                if self.answer.truncated {
                    return Err(format!(
                        "the body was truncated at {} bytes",
                        self.answer.body.len()
                    ));
                }
                let parsed = match self.keep {
                    Some(keep) => keep.read(self.answer.body),
                    None => serde_json::from_slice(self.answer.body),
                };
                parsed.map_err(|e| format!("the body is not JSON: {e}"))
            })
            .as_ref()
            .map_err(String::as_str)
    }

    /// Whether the body has been parsed (for tests of the laziness).
    #[cfg(test)]
    fn parsed(&self) -> bool {
        self.json.get().is_some()
    }
}
