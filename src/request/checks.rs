//! An `http` job's `checks` as clients send them, and their validation into the engine's
//! compiled [`Check`]s: every invalid check is reported, each with its field's path.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::{FieldError, MAX_LABEL};
use crate::engine::check::{Check, MAX_CHECKS, Patterns, Predicate, Subject};
use crate::engine::template::Template;

/// Exactly the subjects [`Subject::parse`] reads (a JSONPath's own grammar is checked when it
/// is compiled). The schema of `on` spells it out again (utoipa takes a literal); a test holds
/// the two the same.
pub const SUBJECT_PATTERN: &str = "^(status|body|bytes|duration_ms|ttfb_ms|\
    header:[!#$%&'*+.^_`|~0-9A-Za-z-]+|json:\\$.*)$";

/// What an answer must be, judged after `expect_status` passed: a subject (`on`) and exactly
/// one predicate (`equals`, `not_equals`, `contains`, `not_contains`, `matches`, `exists`,
/// `lt`, `lte`, `gt`, `gte` or `one_of`). Strings in the values of `equals`, `not_equals`,
/// `contains`, `not_contains` and `one_of` may hold placeholders (`{{seq}}`, `{{data.COL}}`,
/// a flow's captures); a `matches` pattern may not.
/// Its OpenAPI schema is written by hand (`schema`): one closed object per predicate.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    /// What results, the summary and thresholds call it. Default: the check written out
    /// (`json:$.status equals "ok"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The subject: `status`, `body`, `bytes`, `duration_ms`, `ttfb_ms`, `header:NAME`
    /// (case-insensitive; repeated values joined with `, `) or `json:PATH`, an RFC 9535
    /// JSONPath over the body (a path that can select several nodes reads as their list).
    pub on: String,
    /// JSON equality (`200` is not `"200"`). Strings may hold placeholders.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub equals: Option<Value>,
    /// Not `equals`.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub not_equals: Option<Value>,
    /// A substring of text, or an element of a list.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub contains: Option<Value>,
    /// Not `contains`.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub not_contains: Option<Value>,
    /// A regular expression (Rust `regex` syntax) found anywhere in the text; compiled once,
    /// when the batch is accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matches: Option<String>,
    /// Whether the subject is there (a header sent, a path that selects a node).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
    /// Less than this number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lt: Option<f64>,
    /// At most this number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lte: Option<f64>,
    /// More than this number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gt: Option<f64>,
    /// At least this number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gte: Option<f64>,
    /// Equal to one of these (at least one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<Value>>,
    /// Only count a failure (k6's `check()`): the task's status does not change.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub soft: bool,
}

/// A field that is given, `null` included: `"equals": null` is a check for null, not none.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// Validates a job's `checks`, found at `field` (`jobs[0].checks`): every invalid check is
/// reported, with its path (`jobs[0].checks[2].on`). `patterns`: the batch's, which its
/// `matches` patterns join.
pub fn parse_checks(
    raw: &[CheckRequest],
    field: &str,
    patterns: &mut Patterns,
) -> Result<Vec<Check>, Vec<FieldError>> {
    let mut errors = Vec::new();
    if raw.len() > MAX_CHECKS {
        errors.push(FieldError::new(
            field,
            format!("{} checks; at most {MAX_CHECKS}", raw.len()),
        ));
    }
    // Each valid check with its index in `raw`, to name the first of two with one name.
    let mut checks: Vec<(usize, Check)> = Vec::with_capacity(raw.len());
    for (i, request) in raw.iter().enumerate() {
        let at = format!("{field}[{i}]");
        if let Some(check) = request.parse(&at, patterns, &mut errors) {
            if let Some((j, _)) = checks.iter().find(|(_, c)| c.name == check.name) {
                errors.push(FieldError::new(
                    name_field(request, &at),
                    format!("repeats the name of {field}[{j}]: {:?}", check.name),
                ));
            }
            checks.push((i, check));
        }
    }
    if errors.is_empty() {
        Ok(checks.into_iter().map(|(_, c)| c).collect())
    } else {
        Err(errors)
    }
}

/// The placeholders in the values of `raw`'s checks (`{{seq}}`, `{{data.COL}}`), parsed to
/// find those that do not parse; `err` names the field (`checks[1].equals`).
pub fn value_templates(
    raw: &[CheckRequest],
    field: &str,
    err: &mut impl FnMut(&str, String),
) -> Vec<Template> {
    let mut found = Vec::new();
    for (i, check) in raw.iter().enumerate() {
        let values = [
            ("equals", check.equals.as_ref()),
            ("not_equals", check.not_equals.as_ref()),
            ("contains", check.contains.as_ref()),
            ("not_contains", check.not_contains.as_ref()),
        ];
        let one_of = check.one_of.iter().flatten().map(|v| ("one_of", Some(v)));
        for (name, value) in values.into_iter().chain(one_of) {
            let mut texts = Vec::new();
            strings(value, &mut texts);
            for text in texts {
                match Template::parse(text) {
                    Ok(Some(t)) => found.push(t),
                    Ok(None) => {}
                    Err(message) => err(&format!("{field}[{i}].{name}"), message),
                }
            }
        }
    }
    found
}

/// Every string in a JSON value, nested ones too.
fn strings<'v>(value: Option<&'v Value>, out: &mut Vec<&'v str>) {
    match value {
        Some(Value::String(s)) => out.push(s),
        Some(Value::Array(items)) => items.iter().for_each(|v| strings(Some(v), out)),
        Some(Value::Object(map)) => map.values().for_each(|v| strings(Some(v), out)),
        _ => {}
    }
}

/// Where a repeated name is reported: `name` when given, else the check (named after itself).
fn name_field(request: &CheckRequest, at: &str) -> String {
    match request.name {
        Some(_) => format!("{at}.name"),
        None => at.to_owned(),
    }
}

impl CheckRequest {
    fn parse(
        &self,
        at: &str,
        patterns: &mut Patterns,
        errors: &mut Vec<FieldError>,
    ) -> Option<Check> {
        let before = errors.len();
        if let Some(name) = &self.name
            && (name.is_empty() || name.chars().count() > MAX_LABEL)
        {
            errors.push(FieldError::new(
                format!("{at}.name"),
                format!("a name of 1 to {MAX_LABEL} characters"),
            ));
        }
        let subject = Subject::parse(&self.on)
            .map_err(|m| errors.push(FieldError::new(format!("{at}.on"), m)))
            .ok();
        let predicate = self.predicate(at, patterns, errors);
        if errors.len() > before {
            return None;
        }
        Some(Check::new(
            self.name.clone(),
            subject?,
            predicate?,
            self.soft,
        ))
    }

    /// The one predicate given, compiled.
    fn predicate(
        &self,
        at: &str,
        patterns: &mut Patterns,
        errors: &mut Vec<FieldError>,
    ) -> Option<Predicate> {
        let mut given = self.given(patterns);
        if given.len() != 1 {
            let names: Vec<&str> = given.iter().map(|(n, _)| *n).collect();
            let got = match names.as_slice() {
                [] => "none".to_owned(),
                names => names.join(" and "),
            };
            errors.push(FieldError::new(
                at,
                format!(
                    "give exactly one predicate (equals, not_equals, contains, not_contains, \
                     matches, exists, lt, lte, gt, gte or one_of); got {got}"
                ),
            ));
            return None;
        }
        let (name, predicate) = given.pop()?;
        predicate
            .map_err(|m| errors.push(FieldError::new(format!("{at}.{name}"), m)))
            .ok()
    }

    /// Every predicate field given, by name, as a predicate or why it is not one.
    fn given(&self, patterns: &mut Patterns) -> Vec<(&'static str, Result<Predicate, String>)> {
        let value = |name, v: &Option<Value>, make: fn(Value) -> Predicate| {
            v.clone().map(|v| (name, Ok(make(v))))
        };
        let number =
            |name, n: Option<f64>, make: fn(f64) -> Predicate| n.map(|n| (name, Ok(make(n))));
        let one_of = self.one_of.as_ref().map(|vs| match vs.as_slice() {
            [] => ("one_of", Err("give at least one value".to_owned())),
            vs => ("one_of", Ok(Predicate::OneOf(vs.to_vec()))),
        });
        [
            value("equals", &self.equals, Predicate::Equals),
            value("not_equals", &self.not_equals, Predicate::NotEquals),
            value("contains", &self.contains, Predicate::Contains),
            value("not_contains", &self.not_contains, Predicate::NotContains),
            self.matches
                .as_deref()
                .map(|p| ("matches", patterns.matches(p))),
            self.exists.map(|b| ("exists", Ok(Predicate::Exists(b)))),
            number("lt", self.lt, Predicate::Lt),
            number("lte", self.lte, Predicate::Lte),
            number("gt", self.gt, Predicate::Gt),
            number("gte", self.gte, Predicate::Gte),
            one_of,
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

mod schema;
#[cfg(test)]
mod tests;
