//! The parsing and validation of whole batch requests: field paths, ranges, limits.

use super::jobs::{StatusMatcher, parse_expect};
use super::*;
use crate::engine::spec::ExpectStatus;

fn limits() -> Limits {
    Limits {
        max_job_timeout: Duration::from_secs(60),
        max_batch_duration: Duration::from_secs(600),
        max_body_bytes: 1000,
        max_jobs: 10,
        max_concurrency: 100,
        max_response_bytes: 1000,
        max_file_bytes: 1000,
        allow_insecure_tls: false,
        files_root: None,
    }
}

fn invalid_fields(body: &str) -> Vec<String> {
    match parse_batch(body.as_bytes(), &limits()) {
        Err(Rejected::Invalid(errors)) => errors.into_iter().map(|e| e.field).collect(),
        other => panic!("expected a 422, got {other:?}"),
    }
}

#[test]
fn field_paths_name_the_field_that_is_wrong() {
    assert_eq!(
        invalid_fields(r#"{"mode":"race","jobs":[{"kind":"sleep","duration_ms":1}]}"#),
        vec!["mode"]
    );
    assert_eq!(
        invalid_fields(r#"{"jobs":[{"kind":"sleep","duration_ms":"100"}]}"#),
        vec!["jobs[0].duration_ms"]
    );
    assert_eq!(
        invalid_fields(
            r#"{"jobs":[{"kind":"sleep","duration_ms":1},{"kind":"http","url":"http://a.test/","retries":{"max":"x"}}]}"#
        ),
        vec!["jobs[1].retries.max"]
    );
}

#[test]
fn a_number_out_of_range_says_the_range() {
    match parse_batch(
        br#"{"jobs":[{"kind":"sleep","duration_ms":1e23}]}"#,
        &limits(),
    ) {
        Err(Rejected::Invalid(errors)) => {
            assert_eq!(errors[0].field, "jobs[0].duration_ms");
            assert_eq!(
                errors[0].message,
                "must be between 0 and 86400000 (one day)"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn json_that_is_not_an_object_is_invalid_not_malformed() {
    for body in ["[1,2]", "3", "\"jobs\"", "null"] {
        match parse_batch(body.as_bytes(), &limits()) {
            Err(Rejected::Invalid(errors)) => {
                assert_eq!(errors[0].field, "", "{body}");
                assert!(
                    errors[0].message.contains("a batch is a JSON object"),
                    "{body}: {errors:?}"
                );
            }
            other => panic!("{body}: {other:?}"),
        }
    }
}

#[test]
fn header_names_that_differ_only_in_case_are_one_header_twice() {
    let fields = invalid_fields(
        r#"{"jobs":[{"kind":"http","url":"http://app.test/","headers":{"Host":"a","host":"b"}}]}"#,
    );
    assert_eq!(fields, vec!["jobs[0].headers.host"]);
}

#[test]
fn every_invalid_job_is_reported_with_its_path() {
    let fields = invalid_fields(
        r#"{"jobs":[{"kind":"sleep","duration_ms":1},{"kind":"teleport"},{"kind":"http"},
            {"kind":"sleep","duration_ms":1,"colour":"red"},{"kind":"http","url":"ftp://x"}]}"#,
    );
    assert_eq!(
        fields,
        vec![
            "jobs[1].kind",
            "jobs[2].url",
            "jobs[3].colour",
            "jobs[4].url"
        ]
    );
}

#[test]
fn wrong_types_at_the_top_level_point_at_the_field() {
    assert_eq!(
        invalid_fields(r#"{"jobs":[{"kind":"sleep","duration_ms":1}],"concurrency":"x"}"#),
        vec!["concurrency"]
    );
    assert_eq!(invalid_fields(r#"{"jobs":[]}"#), vec!["jobs"]);
    assert_eq!(invalid_fields(r#"{"jbos":[]}"#), vec!["jbos", "jobs"]);
}

#[test]
fn broken_json_is_malformed_not_invalid() {
    assert!(matches!(
        parse_batch(b"{\"jobs\": [", &limits()),
        Err(Rejected::Malformed(_))
    ));
    assert!(matches!(
        parse_batch(b"{} x", &limits()),
        Err(Rejected::Malformed(_))
    ));
}

#[test]
fn expect_status_takes_codes_classes_and_any() {
    let e = parse_expect(&[StatusMatcher::Code(201), StatusMatcher::Text("4XX".into())]).unwrap();
    assert!(e.accepts(201) && e.accepts(404) && !e.accepts(200));
    assert_eq!(
        parse_expect(&[StatusMatcher::Text("any".into())]).unwrap(),
        ExpectStatus::Any
    );
    assert!(parse_expect(&[StatusMatcher::Text("6xx".into())]).is_err());
    assert!(parse_expect(&[StatusMatcher::Code(99)]).is_err());
}

#[test]
fn concurrency_is_clamped_to_the_server_bound() {
    let spec = parse_batch(
        br#"{"jobs":[{"kind":"sleep","duration_ms":1}],"concurrency":1000000}"#,
        &limits(),
    )
    .unwrap();
    assert_eq!(spec.concurrency, 100);
}

#[test]
fn too_many_jobs_is_413() {
    let jobs = [r#"{"kind":"sleep","duration_ms":1}"#; 11].join(",");
    let body = format!(r#"{{"jobs":[{jobs}]}}"#);
    assert!(matches!(
        parse_batch(body.as_bytes(), &limits()),
        Err(Rejected::TooManyTasks {
            tasks: 11,
            limit: 10
        })
    ));
}

fn invalid(body: &str) -> Vec<(String, String)> {
    match parse_batch(body.as_bytes(), &limits()) {
        Err(Rejected::Invalid(errors)) => {
            errors.into_iter().map(|e| (e.field, e.message)).collect()
        }
        other => panic!("{body}: expected a 422, got {other:?}"),
    }
}

#[test]
fn every_field_of_the_wrong_shape_is_listed_in_the_apis_words() {
    let errors = invalid(
        r#"{"colour":"red","label":5,"jobs":[
            {"kind":"sleep","duration_ms":-5,"colour":1},
            {"kind":"http","url":7,"headers":{"a":1},"retries":{"max":-1}},
            {"kind":"sleep"}]}"#,
    );
    let expected = [
        (
            "colour",
            "unknown field \"colour\"; expected one of: mode, jobs",
        ),
        ("label", "must be a string"),
        (
            "jobs[0].colour",
            "unknown field \"colour\"; expected one of: id,",
        ),
        (
            "jobs[0].duration_ms",
            "must be between 0 and 86400000 (one day)",
        ),
        ("jobs[1].headers.a", "must be a string"),
        ("jobs[1].retries.max", "at most 10"),
        ("jobs[1].url", "must be a string"),
        ("jobs[2].duration_ms", "required"),
    ];
    let fields: Vec<&str> = errors.iter().map(|e| e.0.as_str()).collect();
    let mut want: Vec<&str> = expected.iter().map(|e| e.0).collect();
    let mut got = fields.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want, "{errors:#?}");
    for (field, start) in expected {
        let message = &errors.iter().find(|e| e.0 == field).unwrap().1;
        assert!(message.starts_with(start), "{field}: {message}");
    }
}

#[test]
fn a_negative_and_a_huge_duration_get_the_same_message() {
    for duration in ["-1", "1e23", "18446744073709551616", "86400001"] {
        let body = format!(r#"{{"jobs":[{{"kind":"sleep","duration_ms":{duration}}}]}}"#);
        assert_eq!(
            invalid(&body),
            vec![(
                "jobs[0].duration_ms".to_owned(),
                "must be between 0 and 86400000 (one day)".to_owned()
            )],
            "{duration}"
        );
    }
}

#[test]
fn wrong_types_say_the_type_wanted() {
    let cases = [
        (
            r#""concurrency":"x""#,
            "concurrency",
            "must be a whole number",
        ),
        (
            r#""concurrency":1.5"#,
            "concurrency",
            "must be a whole number",
        ),
        (
            r#""concurrency":-3"#,
            "concurrency",
            "must be a whole number, 0 or more",
        ),
        (r#""fail_fast":"yes""#, "fail_fast", "must be true or false"),
        (r#""mode":"race""#, "mode", "must be one of: gather, wait"),
        (r#""mode":3"#, "mode", "must be one of: gather, wait"),
        (r#""load":[]"#, "load", "must be an object"),
        (
            r#""thresholds":{"p95_ms":"fast"}"#,
            "thresholds.p95_ms",
            "must be a number",
        ),
    ];
    for (field_json, field, message) in cases {
        let body = format!(r#"{{"jobs":[{{"kind":"sleep","duration_ms":1}}],{field_json}}}"#);
        assert_eq!(
            invalid(&body),
            vec![(field.to_owned(), message.to_owned())],
            "{field_json}"
        );
    }
}

#[test]
fn a_key_given_twice_is_named() {
    assert_eq!(
        invalid_fields(
            r#"{"jobs":[{"kind":"sleep","duration_ms":1,"duration_ms":2}],"label":"a","label":"b"}"#
        ),
        vec!["jobs[0].duration_ms", "label"]
    );
}

#[test]
fn an_unreadable_expect_status_is_worded_by_the_validation() {
    let errors =
        invalid(r#"{"jobs":[{"kind":"http","url":"http://a.test/","expect_status":true}]}"#);
    assert_eq!(errors[0].0, "jobs[0].expect_status");
    assert!(
        errors[0].1.starts_with("must be a status (201)"),
        "{errors:?}"
    );
}

#[test]
fn max_lost_window_ms_is_a_threshold_of_its_own_and_never_negative() {
    let with = |v: &str| {
        format!(
            r#"{{"jobs":[{{"kind":"sleep","duration_ms":1}}],"thresholds":{{"max_lost_window_ms":{v}}}}}"#
        )
    };

    let spec = parse_batch(with("2500").as_bytes(), &limits()).unwrap();

    let thresholds = spec.thresholds.expect("thresholds");
    assert_eq!(thresholds.max_lost_window_ms, Some(2500.0));
    assert_eq!(
        invalid_fields(&with("-1")),
        ["thresholds.max_lost_window_ms"]
    );
}
