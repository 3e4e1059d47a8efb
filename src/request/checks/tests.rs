//! Tests of parsing checks as clients send them: every invalid check reported at its field.

use serde_json::{Value, json};

use super::*;

fn parse(raw: Value) -> Result<Vec<Check>, Vec<FieldError>> {
    let raw: Vec<CheckRequest> = serde_json::from_value(raw).expect("well-formed checks");
    parse_checks(&raw, "jobs[0].checks", &mut Patterns::default())
}

fn fields(errors: &[FieldError]) -> Vec<&str> {
    errors.iter().map(|e| e.field.as_str()).collect()
}

#[test]
fn the_spec_example_parses_into_compiled_checks() {
    let checks = parse(json!([
        { "name": "healthy", "on": "json:$.status", "equals": "ok" },
        { "on": "header:content-type", "matches": "^application/json" },
        { "on": "json:$.items[*].id", "exists": true },
        { "on": "body", "not_contains": "error", "soft": true },
        { "on": "ttfb_ms", "lt": 150 }
    ]))
    .unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "healthy",
            "header:content-type matches \"^application/json\"",
            "json:$.items[*].id exists true",
            "body not_contains \"error\"",
            "ttfb_ms lt 150",
        ]
    );
    let soft: Vec<bool> = checks.iter().map(|c| c.soft).collect();
    assert_eq!(soft, [false, false, false, true, false]);
}

#[test]
fn equals_null_is_a_predicate_not_a_missing_one() {
    let checks = parse(json!([{ "on": "json:$.error", "equals": null }])).unwrap();
    assert!(matches!(
        checks[0].predicate,
        Predicate::Equals(Value::Null)
    ));
}

#[test]
fn every_invalid_check_is_reported_at_its_field() {
    let errors = parse(json!([
        { "on": "status", "equals": 200 },
        { "on": "stauts", "equals": 200 },
        { "on": "status" },
        { "on": "status", "equals": 200, "lt": 300 },
        { "on": "body", "matches": "(unclosed" },
        { "on": "body", "matches": "\\w{1000}" },
        { "on": "json:$.a.", "exists": true },
        { "on": "status", "one_of": [] },
        { "name": "", "on": "status", "exists": true },
        { "on": "header:bad name", "gt": 1 }
    ]))
    .unwrap_err();
    assert_eq!(
        fields(&errors),
        [
            "jobs[0].checks[1].on",
            "jobs[0].checks[2]",
            "jobs[0].checks[3]",
            "jobs[0].checks[4].matches",
            "jobs[0].checks[5].matches",
            "jobs[0].checks[6].on",
            "jobs[0].checks[7].one_of",
            "jobs[0].checks[8].name",
            "jobs[0].checks[9].on",
        ]
    );
    assert!(
        errors[1].message.ends_with("got none"),
        "{}",
        errors[1].message
    );
    assert!(
        errors[2].message.ends_with("got equals and lt"),
        "{}",
        errors[2].message
    );
    assert!(errors[4].message.contains("larger than the limit"));
}

#[test]
fn more_than_32_checks_are_refused_at_the_list() {
    let many: Vec<Value> = (0..33)
        .map(|i| json!({ "on": "status", "not_equals": i }))
        .collect();
    let errors = parse(Value::Array(many)).unwrap_err();
    assert_eq!(fields(&errors), ["jobs[0].checks"]);
    assert_eq!(errors[0].message, "33 checks; at most 32");
}

#[test]
fn two_checks_with_one_name_are_refused() {
    let errors = parse(json!([
        { "name": "up", "on": "status", "equals": 200 },
        { "on": "nope", "gt": 0 },
        { "name": "up", "on": "bytes", "gt": 0 },
        { "on": "bytes", "gt": 0 },
        { "on": "bytes", "gt": 0 }
    ]))
    .unwrap_err();
    assert_eq!(
        fields(&errors),
        [
            "jobs[0].checks[1].on",
            "jobs[0].checks[2].name",
            "jobs[0].checks[4]"
        ]
    );
    assert!(errors[1].message.contains("jobs[0].checks[0]"));
    assert!(
        errors[2].message.contains("jobs[0].checks[3]"),
        "{}",
        errors[2].message
    );
}

#[test]
fn unknown_fields_and_predicates_are_refused_by_serde() {
    let unknown = serde_json::from_value::<CheckRequest>(json!({ "on": "status", "eq": 200 }));
    assert!(
        unknown
            .unwrap_err()
            .to_string()
            .contains("unknown field `eq`")
    );
}

#[test]
fn the_subject_pattern_accepts_exactly_what_parses() {
    let pattern = regex::Regex::new(SUBJECT_PATTERN).unwrap();
    let accepted = [
        "status",
        "body",
        "bytes",
        "duration_ms",
        "ttfb_ms",
        "header:content-type",
        "header:X-Request-Id",
        "json:$",
        "json:$.items[?@.a == 'b c'].id",
    ];
    for on in accepted {
        assert!(pattern.is_match(on), "{on}");
        assert!(Subject::parse(on).is_ok(), "{on}");
    }
    let refused = [
        "Status",
        "header:",
        "header:a b",
        "json:",
        "json:a",
        "events",
        " body",
    ];
    for on in refused {
        assert!(!pattern.is_match(on), "{on}");
        assert!(Subject::parse(on).is_err(), "{on}");
    }
}

#[test]
fn the_schema_is_one_closed_object_per_predicate_with_the_subject_pattern() {
    let schema = serde_json::to_value(<CheckRequest as utoipa::PartialSchema>::schema()).unwrap();
    let variants = schema["oneOf"].as_array().unwrap();
    assert_eq!(variants.len(), 11);
    for v in variants {
        let predicate = v["title"].as_str().unwrap();
        assert_eq!(v["required"], json!(["on", predicate]));
        assert_eq!(v["additionalProperties"], json!(false));
        assert_eq!(v["properties"]["on"]["pattern"], json!(SUBJECT_PATTERN));
        // What the schema names is what the server reads.
        let mut request = json!({ "on": "status", "soft": true, "name": "n" });
        request[predicate] = match v["properties"][predicate]["type"].as_str() {
            Some("boolean") => json!(true),
            Some("number") => json!(1.5),
            Some("array") => json!([1]),
            _ => json!("x"),
        };
        let parsed: CheckRequest = serde_json::from_value(request).unwrap();
        let mut patterns = Patterns::default();
        assert!(
            parse_checks(&[parsed], "checks", &mut patterns).is_ok(),
            "{predicate}"
        );
    }
}

#[test]
fn a_batch_compiles_each_pattern_once_and_at_most_32_of_them() {
    let mut patterns = Patterns::default();
    let check = |p: &str| -> CheckRequest {
        serde_json::from_value(json!({ "on": "body", "matches": p })).unwrap()
    };
    for i in 0..32 {
        let mut twin = check(&format!("^a{i}"));
        twin.name = Some(format!("twin {i}"));
        let raw = [check(&format!("^a{i}")), twin];
        assert!(parse_checks(&raw, "checks", &mut patterns).is_ok(), "{i}");
    }
    // A pattern compiled before is shared, however many checks repeat it.
    assert!(parse_checks(&[check("^a0")], "checks", &mut patterns).is_ok());
    let errors = parse_checks(&[check("^b")], "jobs[40].checks", &mut patterns).unwrap_err();
    assert_eq!(errors[0].field, "jobs[40].checks[0].matches");
    assert!(
        errors[0].message.contains("32 different patterns"),
        "{}",
        errors[0].message
    );
}
