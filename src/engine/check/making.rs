//! Checks as they are made: subjects and patterns parsed once or refused, singular paths,
//! values left for the caller to render, and headers read from a header map.

use serde_json::json;

use super::tests::{check, matches};
use super::*;

#[test]
fn subjects_are_parsed_once_or_refused_with_what_was_expected() {
    let refused = [
        ("stauts", "is not a subject"),
        ("header:", "needs a name"),
        ("header:bad name", "is not a header name"),
        ("json:$.a.", "is not an RFC 9535 JSONPath"),
        ("json:status", "is not an RFC 9535 JSONPath"),
        ("events", "streamed answer"),
        ("last_event:json:$.id", "streamed answer"),
    ];
    for (text, want) in refused {
        let err = Subject::parse(text).expect_err(text);
        assert!(err.contains(want), "{text}: {err}");
    }
    assert!(Subject::parse(&format!("json:$.{}", "a".repeat(1100))).is_err());
    assert_eq!(
        Subject::parse("header:Content-Type").unwrap().to_string(),
        "header:content-type"
    );
}

#[test]
fn singular_paths_read_as_their_node_and_others_as_a_list() {
    let singular = |text: &str| match Subject::parse(text).unwrap() {
        Subject::Json(q) => q.singular,
        _ => unreachable!(),
    };
    for text in ["json:$", "json:$.a", "json:$['a b'][0]", "json:$.a[-1].b"] {
        assert!(singular(text), "{text}");
    }
    for text in [
        "json:$.a[*]",
        "json:$..a",
        "json:$[0,1]",
        "json:$[0:1]",
        "json:$[?@.a]",
    ] {
        assert!(!singular(text), "{text}");
    }
}

#[test]
fn a_pattern_too_large_to_compile_is_refused() {
    for fits in [r"\w{20}", r"[a-z]{1000}", r"(?-u:\w){1000}", r"(?s).{1000}"] {
        assert!(Predicate::matches(fits).is_ok(), "{fits}");
    }
    let err = Predicate::matches(r"\w{100}").unwrap_err();
    assert!(err.contains("larger than the limit"), "{err}");
    let err = Predicate::matches("(unclosed").unwrap_err();
    assert!(err.starts_with("not a regular expression"), "{err}");
}

#[test]
fn values_with_placeholders_are_rendered_by_the_caller() {
    let plain = check("json:$.id", Predicate::Equals(json!("7")));
    assert!(!plain.needs_render());
    let templated = check(
        "json:$.id",
        Predicate::OneOf(vec![json!(1), json!(["{{seq}}"]), json!("x")]),
    );
    assert!(templated.needs_render());
    let rendered = templated.map_values(|s| s.replace("{{seq}}", "3"));
    assert_eq!(rendered.predicate.to_string(), r#"one_of [1,["3"],"x"]"#);
    assert_eq!(rendered.name, templated.name, "counts stay under one name");
    assert!(!check("body", matches("\\{\\{seq\\}\\}")).needs_render());
}

#[test]
fn headers_from_a_header_map_join_repeated_values_in_order() {
    let mut map = http::HeaderMap::new();
    map.append("x-tag", "blue".parse().unwrap());
    map.append("x-tag", "green".parse().unwrap());
    map.append("x-one", "1".parse().unwrap());
    assert_eq!(map.joined("x-tag").as_deref(), Some("blue, green"));
    assert_eq!(map.joined("x-one").as_deref(), Some("1"));
    assert_eq!(map.joined("x-none"), None);
}

#[test]
fn plain_singular_paths_are_read_for_a_pruned_parse_and_others_are_not() {
    use super::pick::{Step, steps};
    assert_eq!(
        steps("$.items[0]['a b'][\"c\"]"),
        Some(vec![
            Step::Name("items".into()),
            Step::Index(0),
            Step::Name("a b".into()),
            Step::Name("c".into())
        ])
    );
    assert_eq!(steps("$"), Some(vec![]));
    for other in [
        "$[-1]",
        "$['a\\'b']",
        "$[01]",
        "$.a[ 0 ]",
        "$..a",
        "$.1a",
        "$.a.",
        "$[*]",
    ] {
        assert_eq!(steps(other), None, "{other}");
    }
    // Only singular paths have steps: a filter, a wildcard or a slice reads the whole body.
    let q = |p: &str| match Subject::parse(&format!("json:{p}")).unwrap() {
        Subject::Json(q) => q.steps.is_some(),
        _ => unreachable!(),
    };
    assert!(q("$.status") && q("$.items[2].id"));
    assert!(!q("$.items[*].id") && !q("$.a[-1]"));
}
