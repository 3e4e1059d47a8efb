//! A 422 lists every invalid field in one answer, each message in the API's terms, never a
//! parser's; and no body, however mangled, makes the parsing panic or leave a field unnamed.

use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::helpers::spawn_app;
use fanout::request::{Limits, Rejected, parse_batch};

/// What a parser says and the API must not.
const PARSER_WORDS: [&str; 6] = [
    "expected u64",
    "line 1",
    "column",
    "18446744073709551615",
    "invalid type:",
    "invalid value:",
];

fn assert_api_words(message: &str) {
    for words in PARSER_WORDS {
        assert!(!message.contains(words), "{message:?} says {words:?}");
    }
}

#[tokio::test]
async fn an_unknown_field_does_not_hide_the_bad_values_elsewhere() {
    let app = spawn_app().await;

    let res = app
        .post(&json!({
            "colour": "red",
            "jobs": [
                { "kind": "sleep", "duration_ms": 10 },
                { "kind": "sleep", "duration_ms": -5 },
                { "kind": "teleport" },
                { "kind": "http", "url": "not a url" }
            ],
            "thresholds": { "p95_ms": "fast" }
        }))
        .await;

    assert_eq!(res.status, 422, "{}", res.json);
    assert_eq!(res.json["code"], "invalid_batch");
    assert_eq!(res.json["detail"], "the batch has 5 invalid fields");
    let errors: Vec<(&str, &str)> = res.json["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["field"].as_str().unwrap(), e["message"].as_str().unwrap()))
        .collect();
    let fields: Vec<&str> = errors.iter().map(|e| e.0).collect();
    assert_eq!(
        fields,
        [
            "colour",
            "thresholds.p95_ms",
            "jobs[1].duration_ms",
            "jobs[2].kind",
            "jobs[3].url"
        ]
    );
    assert!(
        errors[0]
            .1
            .starts_with("unknown field \"colour\"; expected one of: mode, jobs, concurrency"),
        "{}",
        errors[0].1
    );
    assert_eq!(errors[1].1, "must be a number");
    assert_eq!(errors[2].1, "must be between 0 and 86400000 (one day)");
    assert_eq!(errors[3].1, "must be one of: http, sleep, file, flow");
    assert!(
        errors[4].1.starts_with("not a valid URL"),
        "{}",
        errors[4].1
    );
    for (_, message) in &errors {
        assert_api_words(message);
    }
}

#[tokio::test]
async fn a_number_where_a_name_belongs_is_a_422_not_malformed_json() {
    let app = spawn_app().await;

    let res = app
        .post(&json!({ "mode": 3, "jobs": [{ "kind": "sleep", "duration_ms": 1 }] }))
        .await;

    assert_eq!(res.status, 422, "{}", res.json);
    assert_eq!(res.json["errors"][0]["field"], "mode");
    assert_eq!(
        res.json["errors"][0]["message"],
        "must be one of: gather, wait"
    );
}

#[tokio::test]
async fn a_body_that_is_not_json_is_still_a_400() {
    let app = spawn_app().await;

    let res = app.post_raw(r#"{"jobs": [1,}"#, &[]).await;

    assert_eq!(res.status, 400, "{}", res.json);
    assert_eq!(res.json["code"], "malformed_json");
}

fn limits() -> Limits {
    Limits {
        max_body_bytes: 1 << 20,
        max_jobs: 1000,
        max_concurrency: 100,
        max_response_bytes: 1 << 20,
        max_file_bytes: 1 << 20,
        max_job_timeout: Duration::from_secs(60),
        max_batch_duration: Duration::from_secs(600),
        allow_insecure_tls: false,
        files_root: None,
    }
}

/// Valid batches that between them use every part of a request.
fn valid_batches() -> Vec<Value> {
    vec![
        json!({ "mode": "wait", "return_when": "first_completed", "timeout_ms": 1000,
                "jobs": [{ "kind": "sleep", "id": "a", "duration_ms": 5, "weight": 2,
                           "retries": { "max": 1, "backoff_ms": 10 } }] }),
        json!({ "concurrency": 4, "label": "x", "return_exceptions": true, "results": "all",
                "jobs": [{ "kind": "http", "url": "http://127.0.0.1:9/p?q={{seq}}",
                           "method": "POST", "headers": { "x-a": "1" }, "body": "b",
                           "expect_status": ["2xx", 404], "follow_redirects": 2,
                           "tls": { "server_name": "a.test" }, "http_version": "1.1",
                           "keep_alive": false, "timeout_ms": 500 },
                         { "kind": "file", "path": "a.txt", "max_bytes": 10, "encoding": "base64" }] }),
        json!({ "load": { "stages": [{ "duration_ms": 100, "target_rate_per_s": 10 }],
                          "connections": 2 },
                "thresholds": { "p95_ms": 100, "max_error_rate": 0.1,
                                "by_job": { "a": { "max_ms": 5 } } },
                "on_lost": "rerun",
                "jobs": [{ "kind": "sleep", "id": "a", "duration_ms": 1 },
                         { "kind": "sleep", "id": "b", "duration_ms": 1 }] }),
    ]
}

/// A value put where another was: of every JSON type, numbers out of any type's range.
fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e30..1e30f64).prop_map(Value::from),
        Just(json!(1e300)),
        "[a-z0-9{}. ]{0,8}".prop_map(Value::from),
        Just(json!("2xx")),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,6}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// How to mangle a body: at the `n`th value beneath its root (modulo their number).
#[derive(Debug, Clone)]
enum Mutation {
    Replace(usize, Value),
    Remove(usize),
    AddKey(usize, String, Value),
}

fn any_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any_value()).prop_map(|(n, v)| Mutation::Replace(n, v)),
        any::<usize>().prop_map(Mutation::Remove),
        (any::<usize>(), "[a-z_]{1,12}", any_value())
            .prop_map(|(n, k, v)| Mutation::AddKey(n, k, v)),
    ]
}

/// Every value beneath the root, as a pointer (`/jobs/0/url`).
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    let children: Vec<(String, &Value)> = match value {
        Value::Object(o) => o
            .iter()
            .map(|(k, v)| (k.replace('~', "~0").replace('/', "~1"), v))
            .collect(),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect(),
        _ => return,
    };
    for (key, child) in children {
        let here = format!("{at}/{key}");
        out.push(here.clone());
        pointers(child, here, out);
    }
}

fn mutate(body: &mut Value, mutation: Mutation) {
    let mut all = Vec::new();
    pointers(body, String::new(), &mut all);
    let pick = |n: usize| all[n % all.len()].clone();
    match mutation {
        Mutation::Replace(n, v) => *body.pointer_mut(&pick(n)).unwrap() = v,
        Mutation::Remove(n) => {
            let at = pick(n);
            let (parent, key) = at.rsplit_once('/').unwrap();
            match body.pointer_mut(parent).unwrap() {
                Value::Object(o) => {
                    o.remove(&key.replace("~1", "/").replace("~0", "~"));
                }
                Value::Array(a) => {
                    a.remove(key.parse::<usize>().unwrap());
                }
                _ => {}
            }
        }
        Mutation::AddKey(n, key, v) => {
            let at = pick(n);
            let (parent, _) = at.rsplit_once('/').unwrap();
            if let Some(Value::Object(o)) = body.pointer_mut(parent) {
                o.insert(key, v);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3_000))]

    #[test]
    fn a_mangled_batch_is_refused_field_by_field_in_the_apis_words(
        base in 0..3usize,
        mutations in prop::collection::vec(any_mutation(), 1..5),
    ) {
        let mut body = valid_batches().swap_remove(base);
        for m in mutations {
            mutate(&mut body, m);
        }
        let raw = serde_json::to_vec(&body).unwrap();
        match parse_batch(&raw, &limits()) {
            Ok(_) | Err(Rejected::TooManyTasks { .. }) => {}
            Err(Rejected::Malformed(m)) => prop_assert!(false, "{body}: malformed? {m}"),
            Err(Rejected::Invalid(errors)) => {
                prop_assert!(!errors.is_empty(), "{body}");
                for e in &errors {
                    prop_assert!(!e.field.is_empty(), "{body}: {errors:?}");
                    prop_assert!(!e.message.is_empty(), "{body}: {errors:?}");
                    for words in PARSER_WORDS {
                        prop_assert!(!e.message.contains(words), "{body}: {e:?}");
                    }
                }
            }
        }
    }
}

#[test]
fn the_batches_mangled_are_valid_to_begin_with() {
    for body in valid_batches() {
        let raw = serde_json::to_vec(&body).unwrap();
        assert!(
            parse_batch(&raw, &limits()).is_ok(),
            "{body}: {:?}",
            parse_batch(&raw, &limits()).err()
        );
    }
}

#[tokio::test]
async fn a_think_time_sleeps_within_its_range_and_a_range_upside_down_is_refused() {
    let app = spawn_app().await;
    let res = app
        .post(
            &json!({ "jobs": [{ "kind": "sleep", "duration_ms": 20, "max_ms": 60 }],
            "load": { "repeat": 40 }, "concurrency": 40, "results": "all" }),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.json);
    let slept: Vec<f64> = res.json["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["output"]["slept_ms"].as_f64().unwrap())
        .collect();
    assert_eq!(slept.len(), 40);
    // Never below its least; its most plus a generous margin for a loaded machine's timers.
    assert!(
        slept.iter().all(|s| (20.0..1060.0).contains(s)),
        "{slept:?}"
    );

    let res = app
        .post(&json!({ "jobs": [{ "kind": "sleep", "duration_ms": 50, "max_ms": 10 }] }))
        .await;
    assert_eq!(res.status, 422, "{}", res.json);
    assert_eq!(res.json["errors"][0]["field"], "jobs[0].max_ms");
}
