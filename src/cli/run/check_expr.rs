//! The one-liner's `--check` expressions (`status == 200`, `json:$.ok == true`,
//! `header:content-type ~ json`, `body contains "ok"`, `json:$.items exists`), turned into a
//! check as the batch's JSON carries it.
//!
//! An expression is `SUBJECT OPERATOR [VALUE]`, the operator with spaces around it. The subject
//! runs to the first operator outside brackets and the quotes within them, so a JSONPath
//! filter keeps its own operators (`json:$.items[?@.n == 1] exists`) and a value may hold
//! anything (`body contains "a == b"`). A value that parses as JSON is that JSON (`200`,
//! `true`, `"ok"`, `[1,2]`); anything else is its text as a string.

use serde_json::{Map, Value, json};

use crate::engine::check::Subject;

/// Operators and the predicate each writes, longer spellings before their prefixes.
const OPERATORS: [(&str, &str); 11] = [
    ("!contains", "not_contains"),
    ("contains", "contains"),
    ("!exists", "exists"),
    ("exists", "exists"),
    ("==", "equals"),
    ("!=", "not_equals"),
    ("<=", "lte"),
    (">=", "gte"),
    ("<", "lt"),
    (">", "gt"),
    ("~", "matches"),
];

const EXPECTED: &str = "expected SUBJECT OPERATOR VALUE, the operator one of ==, !=, ~, \
    contains, !contains, <, <=, >, >= (or SUBJECT exists, SUBJECT !exists), with spaces \
    around it";

/// The check `expr` says, as JSON (`{"on": "status", "equals": 200}`); the message names the
/// expression and what was expected.
pub fn parse_check_expr(expr: &str) -> Result<Value, String> {
    let fail = |why: String| format!("--check {expr:?}: {why}");
    let trimmed = expr.trim();
    let Some((at, op, predicate)) = find_operator(trimmed) else {
        return Err(fail(EXPECTED.into()));
    };
    let subject = trimmed[..at].trim_end();
    let rest = trimmed[at + op.len()..].trim_start();
    Subject::parse(subject).map_err(|why| fail(format!("the subject: {why}")))?;
    let value = predicate_value(op, rest).map_err(fail)?;
    let mut check = Map::new();
    check.insert("on".into(), json!(subject));
    check.insert(predicate.into(), value);
    Ok(Value::Object(check))
}

/// The value the operator's predicate takes, from the text after it.
fn predicate_value(op: &str, rest: &str) -> Result<Value, String> {
    match op {
        "exists" | "!exists" if rest.is_empty() => Ok(json!(op == "exists")),
        "exists" | "!exists" => Err(format!("{op} takes no value, got {rest:?}")),
        _ if rest.is_empty() => Err(format!("expected a value after {op}")),
        "~" => Ok(match serde_json::from_str(rest) {
            Ok(Value::String(pattern)) => json!(pattern),
            _ => json!(rest),
        }),
        "<" | "<=" | ">" | ">=" => match serde_json::from_str::<Value>(rest) {
            Ok(n @ Value::Number(_)) => Ok(n),
            _ => Err(format!("expected a number after {op}, got {rest:?}")),
        },
        _ => Ok(serde_json::from_str(rest).unwrap_or_else(|_| json!(rest))),
    }
}

/// The first operator token (with whitespace before it, and after it or the end) outside
/// brackets and quoted strings: its byte offset, spelling and predicate.
fn find_operator(expr: &str) -> Option<(usize, &'static str, &'static str)> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut after_space = false;
    for (i, c) in expr.char_indices() {
        if let Some(q) = quote {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                _ if c == q => quote = None,
                _ => {}
            }
            continue;
        }
        if depth == 0
            && after_space
            && let Some(found) = operator_at(&expr[i..])
        {
            return Some((i, found.0, found.1));
        }
        match c {
            '[' | '(' => depth += 1,
            ']' | ')' => depth = depth.saturating_sub(1),
            '\'' | '"' if depth > 0 => quote = Some(c),
            _ => {}
        }
        after_space = c.is_whitespace();
    }
    None
}

/// The operator `text` starts with, as a whole token.
fn operator_at(text: &str) -> Option<(&'static str, &'static str)> {
    OPERATORS.into_iter().find(|(op, _)| {
        text.strip_prefix(op)
            .is_some_and(|after| after.is_empty() || after.starts_with(char::is_whitespace))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::checks::{CheckRequest, parse_checks};

    #[test]
    fn each_operator_writes_its_predicate() {
        let cases = [
            ("status == 200", json!({"on": "status", "equals": 200})),
            (
                "json:$.ok == true",
                json!({"on": "json:$.ok", "equals": true}),
            ),
            ("status != 500", json!({"on": "status", "not_equals": 500})),
            (
                "header:content-type ~ json",
                json!({"on": "header:content-type", "matches": "json"}),
            ),
            (
                "header:content-type ~ \"^application/(json|problem\\\\+json)\"",
                json!({"on": "header:content-type", "matches": "^application/(json|problem\\+json)"}),
            ),
            (
                "body contains \"ok\"",
                json!({"on": "body", "contains": "ok"}),
            ),
            (
                "body !contains error",
                json!({"on": "body", "not_contains": "error"}),
            ),
            ("ttfb_ms < 150", json!({"on": "ttfb_ms", "lt": 150})),
            (
                "duration_ms <= 2.5",
                json!({"on": "duration_ms", "lte": 2.5}),
            ),
            ("bytes > 0", json!({"on": "bytes", "gt": 0})),
            ("bytes >= 10", json!({"on": "bytes", "gte": 10})),
            (
                "json:$.items exists",
                json!({"on": "json:$.items", "exists": true}),
            ),
            (
                "header:x-error !exists",
                json!({"on": "header:x-error", "exists": false}),
            ),
            (
                "json:$.ids == [1,2]",
                json!({"on": "json:$.ids", "equals": [1, 2]}),
            ),
        ];
        for (expr, want) in cases {
            assert_eq!(parse_check_expr(expr), Ok(want), "{expr}");
        }
    }

    #[test]
    fn a_value_that_is_not_json_is_its_text() {
        assert_eq!(
            parse_check_expr("body contains all is well"),
            Ok(json!({"on": "body", "contains": "all is well"}))
        );
        assert_eq!(
            parse_check_expr("json:$.state == ok"),
            Ok(json!({"on": "json:$.state", "equals": "ok"}))
        );
    }

    #[test]
    fn operators_inside_a_jsonpath_filter_belong_to_the_subject() {
        assert_eq!(
            parse_check_expr("json:$.items[?@.n == 1 && @.s != 'a > b'].id == [7]"),
            Ok(json!({"on": "json:$.items[?@.n == 1 && @.s != 'a > b'].id", "equals": [7]}))
        );
        assert_eq!(
            parse_check_expr("json:$[?search(@.tag, 'x ~ y')] exists"),
            Ok(json!({"on": "json:$[?search(@.tag, 'x ~ y')]", "exists": true}))
        );
    }

    #[test]
    fn operators_inside_the_value_belong_to_the_value() {
        assert_eq!(
            parse_check_expr("body contains \"a == b\""),
            Ok(json!({"on": "body", "contains": "a == b"}))
        );
        assert_eq!(
            parse_check_expr("body ~ x < y"),
            Ok(json!({"on": "body", "matches": "x < y"}))
        );
    }

    #[test]
    fn errors_name_the_expression_and_what_was_expected() {
        let cases = [
            ("status==200", "expected SUBJECT OPERATOR VALUE"),
            ("status", "expected SUBJECT OPERATOR VALUE"),
            ("status ==", "expected a value after =="),
            ("ttfb_ms < fast", "expected a number after <"),
            ("json:$.a exists 1", "exists takes no value"),
            ("stauts == 200", "\"stauts\" is not a subject"),
            ("json:$.a. == 1", "not an RFC 9535 JSONPath"),
            ("== 200", "expected SUBJECT OPERATOR VALUE"),
        ];
        for (expr, want) in cases {
            let err = parse_check_expr(expr).expect_err(expr);
            assert!(err.starts_with(&format!("--check {expr:?}: ")), "{err}");
            assert!(err.contains(want), "{expr}: {err}");
        }
    }

    #[test]
    fn every_expression_makes_a_check_the_batch_accepts() {
        let exprs = [
            "status == 200",
            "json:$.ok == true",
            "header:content-type ~ json",
            "body contains \"ok\"",
            "json:$.items exists",
            "json:$.items[?@.n == 1].id !exists",
            "ttfb_ms < 150",
        ];
        let raw: Vec<CheckRequest> = exprs
            .iter()
            .map(|e| serde_json::from_value(parse_check_expr(e).unwrap()).unwrap())
            .collect();
        let checks = parse_checks(&raw, "checks", &mut Default::default()).unwrap();
        let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names[0], "status equals 200");
        assert_eq!(names[2], "header:content-type matches \"json\"");
        assert_eq!(names[5], "json:$.items[?@.n == 1].id exists false");
    }
}
