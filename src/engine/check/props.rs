//! Properties of judging over any body: no body and no check makes judging panic, and a check
//! for the value a capture reads passes.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::tests::{NONE, answer, good};
use super::*;

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        "[a-z ]{0,8}".prop_map(Value::String),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,3}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn any_check() -> impl Strategy<Value = Check> {
    let subjects = prop::sample::select(vec![
        "status",
        "body",
        "bytes",
        "duration_ms",
        "ttfb_ms",
        "header:content-type",
        "header:x-none",
        "json:$",
        "json:$.a",
        "json:$[0]",
        "json:$.*",
        "json:$..*",
        "json:$..a",
        "json:$[?@.a > 1]",
        "json:$[?length(@) > 2]",
        "json:$[?match(@, '[a-z]+')]",
        "json:$[-1:0:-1]",
    ]);
    let predicates = prop_oneof![
        any_json().prop_map(Predicate::Equals),
        any_json().prop_map(Predicate::NotEquals),
        any_json().prop_map(Predicate::Contains),
        any_json().prop_map(Predicate::NotContains),
        prop::sample::select(vec!["a", "^\\[", "\\d+", "(?i)NULL", ""])
            .prop_map(|p| Predicate::matches(p).unwrap()),
        any::<bool>().prop_map(Predicate::Exists),
        any::<f64>().prop_map(Predicate::Lt),
        any::<f64>().prop_map(Predicate::Gte),
        prop::collection::vec(any_json(), 1..4).prop_map(Predicate::OneOf),
    ];
    (subjects, predicates, any::<bool>())
        .prop_map(|(on, p, soft)| Check::new(None, Subject::parse(on).unwrap(), p, soft))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn no_body_and_no_check_makes_judging_panic(
        document in any_json(),
        checks in prop::collection::vec(any_check(), 1..8),
        cut in any::<prop::sample::Index>(),
        truncated in any::<bool>(),
    ) {
        let text = document.to_string();
        let body = if truncated { &text.as_bytes()[..cut.index(text.len() + 1)] } else { text.as_bytes() };
        let answer = Answer { truncated, body, ..good() };
        let judge = Judge::new(answer);
        for (check, got) in checks.iter().zip(judge.judge_all(&checks)) {
            prop_assert!(got.actual.chars().count() <= MAX_ACTUAL_CHARS);
            prop_assert_eq!(got.passed, got.message.is_none());
            let _ = check.subject.select(&judge);
        }
    }

    #[test]
    fn a_check_for_the_value_a_capture_reads_passes(document in any_json(), on in prop::sample::select(vec!["json:$", "json:$.*", "json:$[0]", "json:$..*", "body"])) {
        let text = document.to_string();
        let judge = Judge::new(answer(&text, &NONE));
        let subject = Subject::parse(on).unwrap();
        if let Ok(value) = subject.select(&judge) {
            let check = Check::new(None, subject, Predicate::Equals(value), false);
            prop_assert!(check.judge(&judge).passed);
        }
    }
}

/// Plain singular paths over the names and indices `any_json` makes.
fn plain_path() -> impl Strategy<Value = String> {
    let step = prop_oneof![
        "[a-c]{1,2}".prop_map(|n| format!(".{n}")),
        "[a-c]{1,2}".prop_map(|n| format!("['{n}']")),
        (0usize..4).prop_map(|i| format!("[{i}]")),
    ];
    prop::collection::vec(step, 0..4).prop_map(|steps| format!("${}", steps.concat()))
}

proptest! {
    #[test]
    fn a_pruned_read_selects_what_the_whole_document_does(
        doc in any_json(),
        paths in prop::collection::vec(plain_path(), 1..4),
    ) {
        let body = serde_json::to_vec(&doc).unwrap();
        let queries: Vec<subject::JsonQuery> =
            paths.iter().map(|p| subject::JsonQuery::parse(p).unwrap()).collect();
        let steps: Vec<&[pick::Step]> =
            queries.iter().map(|q| q.steps.as_deref().expect("a plain singular path")).collect();
        let pruned = pick::Keep::of(steps).read(&body).unwrap();
        // The whole document as the full parse reads the same bytes (a float printed and read
        // again may differ in its last digit from the one generated).
        let whole: Value = serde_json::from_slice(&body).unwrap();
        for q in &queries {
            prop_assert_eq!(q.path.query(&whole).all(), q.path.query(&pruned).all(), "{}", q.source);
        }
    }
}
