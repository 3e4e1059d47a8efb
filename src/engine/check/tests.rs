//! Table tests of checks against answers: good JSON, degraded JSON, an HTML error page sent
//! with a 200, truncated JSON, a missing header and repeated ones (properties over any body
//! are in `props`).

use serde_json::{Value, json};

use super::*;

const GOOD: &str = r#"{"status":"ok","count":2,"ratio":0.5,"items":[{"id":1,"name":"a"},{"id":2,"name":"b"}],"tags":["x","y"],"none":null,"note":"all is well"}"#;
const DEGRADED: &str = r#"{"status":"degraded","count":0,"items":[],"tags":[],"error":"db down"}"#;
const HTML: &str = "<html><body><h1>Internal error</h1></body></html>";
const TRUNCATED: &str = r#"{"status":"ok","items":[{"id":1"#;

static JSON_HEADERS: &[(&str, &str)] = &[
    ("Content-Type", "application/json"),
    ("Content-Length", "42"),
];
static HTML_HEADERS: &[(&str, &str)] = &[("content-type", "text/html; charset=utf-8")];
pub(super) static NONE: &[(&str, &str)] = &[];
static REPEATED: &[(&str, &str)] = &[
    ("Content-Type", "application/json"),
    ("X-Tag", "blue"),
    ("x-tag", "green"),
];

pub(super) fn answer<'a>(body: &'a str, headers: &'a dyn Headers) -> Answer<'a> {
    Answer {
        status: 200,
        headers,
        body: body.as_bytes(),
        truncated: false,
        duration_ms: 12.5,
        ttfb_ms: Some(4.0),
    }
}

pub(super) fn good() -> Answer<'static> {
    answer(GOOD, &JSON_HEADERS)
}

fn degraded() -> Answer<'static> {
    answer(DEGRADED, &JSON_HEADERS)
}

fn html() -> Answer<'static> {
    answer(HTML, &HTML_HEADERS)
}

fn truncated() -> Answer<'static> {
    Answer {
        truncated: true,
        ..answer(TRUNCATED, &JSON_HEADERS)
    }
}

fn no_headers() -> Answer<'static> {
    answer(GOOD, &NONE)
}

fn repeated() -> Answer<'static> {
    answer(GOOD, &REPEATED)
}

pub(super) fn check(on: &str, predicate: Predicate) -> Check {
    Check::new(None, Subject::parse(on).unwrap(), predicate, false)
}

pub(super) fn matches(pattern: &str) -> Predicate {
    Predicate::matches(pattern).unwrap()
}

fn judge(check: &Check, answer: Answer<'_>) -> Judgement {
    check.judge(&Judge::new(answer))
}

/// (check, answer, passes, what `actual` is, or what the message holds when it fails)
type Row = (Check, Answer<'static>, bool, &'static str);

fn assert_rows(rows: Vec<Row>) {
    for (check, answer, passes, want) in rows {
        let got = judge(&check, answer);
        let context = format!("{} on {answer:?}: {got:?}", check.describe());
        assert_eq!(got.passed, passes, "{context}");
        assert!(got.actual.chars().count() <= MAX_ACTUAL_CHARS, "{context}");
        match &got.message {
            None => assert!(got.actual.starts_with(want), "{context}"),
            Some(message) => {
                assert!(message.contains(want), "{context}");
                assert!(message.contains(&check.describe()), "{context}");
            }
        }
    }
}

#[test]
fn status_bytes_and_times_are_numbers() {
    use Predicate::*;
    assert_rows(vec![
        (check("status", Equals(json!(200))), good(), true, "200"),
        (check("status", Equals(json!(200.0))), good(), true, "200"),
        (
            check("status", Equals(json!("200"))),
            good(),
            false,
            "got 200 (a number, not a string)",
        ),
        (check("status", NotEquals(json!(500))), good(), true, "200"),
        (
            check("status", OneOf(vec![json!(201), json!(200)])),
            good(),
            true,
            "200",
        ),
        (
            check("status", OneOf(vec![json!(201), json!(204)])),
            good(),
            false,
            "got 200",
        ),
        (check("status", Lt(300.0)), good(), true, "200"),
        (check("status", Gte(400.0)), good(), false, "got 200"),
        (check("status", matches("^2")), good(), true, "200"),
        (
            check("status", Contains(json!(2))),
            good(),
            false,
            "got 200, which is not text or a list",
        ),
        (
            check("bytes", Equals(json!(GOOD.len()))),
            good(),
            true,
            &*GOOD.len().to_string().leak(),
        ),
        (check("bytes", Gt(0.0)), html(), true, "49"),
        (check("duration_ms", Lte(12.5)), good(), true, "12.5"),
        (
            check("duration_ms", Lt(12.5)),
            good(),
            false,
            "duration_ms lt 12.5, got 12.5",
        ),
        (check("ttfb_ms", Lt(150.0)), good(), true, "4.0"),
        (check("ttfb_ms", Exists(true)), good(), true, "4.0"),
        (check("status", Exists(false)), good(), false, "got 200"),
    ]);
}

#[test]
fn a_missing_first_byte_time_exists_false_and_fails_comparisons() {
    let answer = Answer {
        ttfb_ms: None,
        ..good()
    };
    assert!(judge(&check("ttfb_ms", Predicate::Exists(false)), answer).passed);
    let got = judge(&check("ttfb_ms", Predicate::Lt(150.0)), answer);
    assert_eq!(
        got.message.as_deref(),
        Some("check failed: ttfb_ms lt 150, but no first byte came")
    );
}

#[test]
fn the_body_is_text() {
    use Predicate::*;
    assert_rows(vec![
        (check("body", Contains(json!("ok"))), good(), true, ""),
        (check("body", NotContains(json!("error"))), good(), true, ""),
        (
            check("body", NotContains(json!("error"))),
            degraded(),
            false,
            "got \"{\\\"status",
        ),
        (check("body", Contains(json!(2))), good(), true, ""),
        (check("body", Equals(json!(HTML))), html(), true, ""),
        (
            check("body", matches("(?i)internal error")),
            html(),
            true,
            "",
        ),
        (
            check("body", matches("^\\{")),
            html(),
            false,
            "got \"<html>",
        ),
        (check("body", Exists(true)), html(), true, ""),
        (
            check("body", Exists(true)),
            answer("", &NONE),
            false,
            "got \"\"",
        ),
        (
            check("body", Lt(1.0)),
            good(),
            false,
            "which is not a number",
        ),
    ]);
}

#[test]
fn headers_are_case_insensitive_text_and_repeated_ones_are_joined() {
    use Predicate::*;
    assert_rows(vec![
        (
            check("header:content-type", matches("^application/json")),
            good(),
            true,
            "\"application/json\"",
        ),
        (
            check("header:Content-Type", Equals(json!("application/json"))),
            good(),
            true,
            "\"application/json\"",
        ),
        (
            check("header:content-type", matches("^application/json")),
            html(),
            false,
            "got \"text/html; charset=utf-8\"",
        ),
        (
            check("header:content-type", Exists(true)),
            no_headers(),
            false,
            "but the answer has no content-type header",
        ),
        (
            check("header:content-type", Exists(false)),
            no_headers(),
            true,
            "",
        ),
        (
            check("header:content-type", Equals(json!("x"))),
            no_headers(),
            false,
            "but the answer has no content-type header",
        ),
        (
            check("header:content-type", NotContains(json!("html"))),
            no_headers(),
            false,
            "no content-type header",
        ),
        (
            check("header:x-tag", Equals(json!("blue, green"))),
            repeated(),
            true,
            "\"blue, green\"",
        ),
        (
            check("header:x-tag", Contains(json!("green"))),
            repeated(),
            true,
            "\"blue, green\"",
        ),
        (
            check("header:content-length", Lt(100.0)),
            good(),
            true,
            "\"42\"",
        ),
        (
            check("header:content-length", Equals(json!(42))),
            good(),
            false,
            "got \"42\" (a string, not a number)",
        ),
        (
            check("header:content-type", Gt(1.0)),
            good(),
            false,
            "got \"application/json\", which is not a number",
        ),
    ]);
}

#[test]
fn json_subjects_read_the_parsed_body() {
    use Predicate::*;
    assert_rows(vec![
        (
            check("json:$.status", Equals(json!("ok"))),
            good(),
            true,
            "\"ok\"",
        ),
        (check("json:$.count", Equals(json!(2.0))), good(), true, "2"),
        (check("json:$.count", Gte(1.0)), good(), true, "2"),
        (check("json:$.count", Gte(1.0)), degraded(), false, "got 0"),
        (check("json:$.ratio", Lt(1.0)), good(), true, "0.5"),
        (
            check("json:$.status", Lt(1.0)),
            good(),
            false,
            "got \"ok\", which is not a number",
        ),
        (
            check("json:$.tags", Contains(json!("y"))),
            good(),
            true,
            "[\"x\",\"y\"]",
        ),
        (
            check("json:$.tags", Contains(json!("z"))),
            good(),
            false,
            "got [\"x\",\"y\"]",
        ),
        (
            check("json:$.tags", Equals(json!(["x", "y"]))),
            good(),
            true,
            "[\"x\",\"y\"]",
        ),
        (
            check("json:$.items[0]", Equals(json!({"name": "a", "id": 1.0}))),
            good(),
            true,
            "{\"id\":1,\"name\":\"a\"}",
        ),
        (
            check("json:$.note", Contains(json!("well"))),
            good(),
            true,
            "\"all is well\"",
        ),
        (check("json:$.none", Exists(true)), good(), true, "null"),
        (
            check("json:$.none", Equals(Value::Null)),
            good(),
            true,
            "null",
        ),
        (check("json:$.items", matches("\"id\":2")), good(), true, ""),
        (check("json:$.error", Exists(false)), good(), true, ""),
        (
            check("json:$.error", Exists(false)),
            degraded(),
            false,
            "got \"db down\"",
        ),
        (
            check("json:$.status", OneOf(vec![json!("ok"), json!("fine")])),
            degraded(),
            false,
            "got \"degraded\"",
        ),
    ]);
}

#[test]
fn a_path_that_can_select_several_nodes_reads_as_their_list() {
    use Predicate::*;
    assert_rows(vec![
        (
            check("json:$.items[*].id", Equals(json!([1, 2]))),
            good(),
            true,
            "[1,2]",
        ),
        (
            check("json:$.items[*].id", Contains(json!(2))),
            good(),
            true,
            "[1,2]",
        ),
        (
            check("json:$.items[?@.id == 2].name", Equals(json!(["b"]))),
            good(),
            true,
            "[\"b\"]",
        ),
        (
            check("json:$.items[*].id", Exists(true)),
            good(),
            true,
            "[1,2]",
        ),
        (
            check("json:$.items[*].id", Exists(true)),
            degraded(),
            false,
            "but the path selected nothing",
        ),
        (
            check("json:$.items[*].id", Exists(false)),
            degraded(),
            true,
            "",
        ),
        (
            check("json:$..id", Equals(json!([1, 2]))),
            good(),
            true,
            "[1,2]",
        ),
    ]);
}

#[test]
fn a_path_that_selects_nothing_passes_only_exists_false() {
    use Predicate::*;
    let nothing = "but the path selected nothing";
    assert_rows(vec![
        (check("json:$.missing", Exists(false)), good(), true, ""),
        (
            check("json:$.missing", Exists(true)),
            good(),
            false,
            nothing,
        ),
        (
            check("json:$.missing", Equals(Value::Null)),
            good(),
            false,
            nothing,
        ),
        (
            check("json:$.missing", NotEquals(json!(1))),
            good(),
            false,
            nothing,
        ),
        (
            check("json:$.missing", NotContains(json!(1))),
            good(),
            false,
            nothing,
        ),
        (check("json:$.missing", Lt(1.0)), good(), false, nothing),
    ]);
}

#[test]
fn a_json_subject_on_a_body_that_is_not_json_fails_with_the_reason() {
    use Predicate::*;
    assert_rows(vec![
        (
            check("json:$.status", Equals(json!("ok"))),
            html(),
            false,
            "but the body is not JSON: expected value at line 1 column 1",
        ),
        (
            check("json:$.status", Exists(false)),
            html(),
            false,
            "but the body is not JSON",
        ),
        (
            check("json:$.status", Equals(json!("ok"))),
            truncated(),
            false,
            &*format!("but the body was truncated at {} bytes", TRUNCATED.len()).leak(),
        ),
        (
            check("json:$.status", Exists(false)),
            truncated(),
            false,
            "truncated",
        ),
        (
            check("json:$", Exists(true)),
            answer("", &NONE),
            false,
            "the body is not JSON: EOF",
        ),
    ]);
}

#[test]
fn the_message_names_the_check_what_it_wanted_and_what_came() {
    let named = Check::new(
        Some("healthy".into()),
        Subject::parse("json:$.status").unwrap(),
        Predicate::Equals(json!("ok")),
        false,
    );
    let got = judge(&named, degraded());
    assert_eq!(
        got.message.as_deref(),
        Some(r#"check "healthy" failed: json:$.status equals "ok", got "degraded""#)
    );
    assert_eq!(got.actual, r#""degraded""#);
    let unnamed = check("json:$.status", Predicate::Equals(json!("ok")));
    assert_eq!(unnamed.name, r#"json:$.status equals "ok""#);
    assert_eq!(
        judge(&unnamed, degraded()).message.as_deref(),
        Some(r#"check failed: json:$.status equals "ok", got "degraded""#)
    );
}

#[test]
fn a_passed_check_has_no_message_and_keeps_what_it_read() {
    let got = judge(
        &check("json:$.status", Predicate::Equals(json!("ok"))),
        good(),
    );
    assert_eq!(
        got,
        Judgement {
            passed: true,
            actual: "\"ok\"".into(),
            message: None
        }
    );
}

#[test]
fn actual_is_cut_at_two_hundred_characters_on_a_character_boundary() {
    let body = format!("\"{}\"", "ü".repeat(5000));
    let got = judge(
        &check("body", Predicate::Equals(json!("x"))),
        answer(&body, &NONE),
    );
    assert!(!got.passed);
    assert_eq!(got.actual.chars().count(), MAX_ACTUAL_CHARS);
    assert!(got.message.unwrap().chars().count() < 300);
}

#[test]
fn every_check_is_judged_and_soft_failures_do_not_fail_the_task() {
    let mut soft = check("body", Predicate::NotContains(json!("error")));
    soft.soft = true;
    let checks = vec![
        check("json:$.status", Predicate::Equals(json!("ok"))),
        soft,
        check("status", Predicate::Equals(json!(200))),
        check("json:$.count", Predicate::Gt(0.0)),
    ];
    let judge = Judge::new(degraded());
    let judged = JobChecks::new(checks.clone()).judge(&judge, str::to_owned, true);
    let passed: Vec<bool> = judged.results.iter().map(|j| j.passed).collect();
    assert_eq!(passed, [false, false, true, false]);
    assert_eq!(judged.passed, 0b0100);
    assert_eq!(
        judged.failure.as_deref(),
        Some(r#"check failed: json:$.status equals "ok", got "degraded""#)
    );
    let soft_and_passed = JobChecks::new(checks[1..3].to_vec()).judge(&judge, str::to_owned, false);
    assert_eq!(soft_and_passed.failure, None);
    assert!(
        soft_and_passed.results.is_empty(),
        "not shown: no verdicts kept"
    );
}

#[test]
fn the_body_is_parsed_only_when_a_json_subject_asks_and_then_once() {
    let judge = Judge::new(good());
    judge.judge_all(&[check("status", Predicate::Equals(json!(200)))]);
    assert!(!judge.parsed());
    let first = judge.json().unwrap() as *const Value;
    judge.judge_all(&[check("json:$.status", Predicate::Exists(true))]);
    assert_eq!(judge.json().unwrap() as *const Value, first);
}

#[test]
fn a_body_nested_100000_deep_is_not_json_and_does_not_overflow_the_stack() {
    let body = "[".repeat(100_000);
    let got = judge(
        &check("json:$", Predicate::Exists(true)),
        answer(&body, &NONE),
    );
    assert!(!got.passed);
    assert!(
        got.message.unwrap().contains("recursion limit exceeded"),
        "serde_json's limit of 128 levels answers"
    );
}

#[test]
fn a_capture_keeps_the_value_a_check_would_read() {
    let judge = Judge::new(good());
    let select = |on: &str| Subject::parse(on).unwrap().select(&judge);
    assert_eq!(select("json:$.status"), Ok(json!("ok")));
    assert_eq!(select("json:$.items[*].id"), Ok(json!([1, 2])));
    assert_eq!(select("status"), Ok(json!(200)));
    assert_eq!(select("header:content-type"), Ok(json!("application/json")));
    assert_eq!(
        select("json:$.missing"),
        Err(Unread::Nothing("the path selected nothing".into()))
    );
}

#[test]
fn an_empty_body_equals_nothing_but_does_not_exist() {
    let empty = answer("", &NONE);
    assert!(judge(&check("body", Predicate::Equals(json!(""))), empty).passed);
    assert!(judge(&check("body", Predicate::Exists(false)), empty).passed);
    assert!(!judge(&check("body", Predicate::Exists(false)), good()).passed);
}
