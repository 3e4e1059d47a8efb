//! Checks: was the answer right? A local app answering in several shapes (good JSON, degraded
//! JSON, an HTML error page with 200, JSON cut by the response cap, a header missing), each
//! subject and predicate judged as SPEC says, the counts in `summary.checks`, thresholds on
//! them, the one-liner's `--check`, and the field a bad check is refused at.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};

use crate::helpers::{
    assert_exit, fresh_postgres, run_binary, serve_counted, spawn_app, start_cluster,
};

/// The app under test: `/good` (JSON, a version header), `/degraded` (JSON whose status is
/// not ok), `/html` (an error page served with 200), `/big` (a 4 KB JSON document),
/// `/bare` (JSON without the version header); `hits` counts every request.
struct Shapes {
    base: String,
    hits: Arc<AtomicUsize>,
}

async fn shapes() -> Shapes {
    let json = |body: Value| {
        (
            [("content-type", "application/json"), ("x-version", "1.4.2")],
            body.to_string(),
        )
    };
    let app = Router::new()
        .route(
            "/good",
            get(move || async move {
                json(json!({ "status": "ok", "items": [{ "id": 1 }, { "id": 2 }], "n": 3 }))
            }),
        )
        .route(
            "/degraded",
            get(move || async move { json(json!({ "status": "degraded", "items": [] })) }),
        )
        .route(
            "/html",
            get(|| async {
                (
                    [("content-type", "text/html")],
                    "<html><body>Internal error</body></html>",
                )
            }),
        )
        .route(
            "/big",
            get(move || async move { json(json!({ "status": "ok", "pad": "x".repeat(4096) })) }),
        )
        .route(
            "/bare",
            get(|| async { ([("content-type", "application/json")], r#"{"status":"ok"}"#) }),
        );
    let (base, hits) = serve_counted(app).await;
    Shapes { base, hits }
}

fn http(url: String, checks: Value) -> Value {
    json!({ "kind": "http", "url": url, "checks": checks })
}

/// The checks a healthy answer of `/good` passes, one per subject and most predicates.
fn every_subject() -> Value {
    json!([
        { "name": "healthy", "on": "json:$.status", "equals": "ok" },
        { "on": "status", "one_of": [200, 204] },
        { "on": "header:Content-Type", "matches": "^application/json" },
        { "on": "json:$.items[*].id", "equals": [1, 2] },
        { "on": "json:$.items[*].id", "contains": 2 },
        { "on": "json:$.n", "gte": 3 },
        { "on": "body", "not_contains": "error", "soft": true },
        { "on": "bytes", "lt": 1000 },
        { "on": "duration_ms", "gt": 0 },
        { "on": "ttfb_ms", "lte": 60000 },
        { "on": "header:x-version", "not_equals": "2.0" },
        { "on": "json:$.missing", "exists": false }
    ])
}

#[tokio::test]
async fn each_shape_is_judged_and_a_failure_names_what_was_wanted_and_what_came() {
    let app = spawn_app().await;
    let t = shapes().await;
    let jobs: Vec<Value> = ["good", "degraded", "html", "bare"]
        .iter()
        .map(|p| http(format!("{}/{p}", t.base), every_subject()))
        .chain([json!({ "kind": "http", "url": format!("{}/big", t.base),
            "max_response_bytes": 100,
            "checks": [{ "on": "json:$.status", "equals": "ok" }] })])
        .collect();
    let res = app
        .post(&json!({ "mode": "gather", "return_exceptions": true, "jobs": jobs }))
        .await;
    assert_eq!(res.status, 201, "{}", res.json);
    let r = &res.json["results"];

    // A right answer passes every check, and each one's verdict is kept with what it read.
    assert_eq!(r[0]["status"], "succeeded", "{}", r[0]);
    let good = r[0]["output"]["checks"].as_array().unwrap();
    assert_eq!(good.len(), 12);
    assert!(good.iter().all(|c| c["passed"] == true), "{good:?}");
    assert_eq!(
        good[0],
        json!({ "name": "healthy", "passed": true, "actual": "\"ok\"" })
    );
    assert_eq!(good[3]["actual"], "[1,2]");
    assert_eq!(
        good[2]["name"],
        r#"header:content-type matches "^application/json""#
    );

    // 200 with the wrong body fails with `check`, naming the check, the wish and the value.
    assert_eq!(r[1]["status"], "failed");
    assert_eq!(r[1]["error"]["code"], "check");
    assert_eq!(
        r[1]["error"]["message"],
        r#"check "healthy" failed: json:$.status equals "ok", got "degraded""#
    );
    assert_eq!(r[1]["attempts"], 1, "a failed check is not retried");

    // An HTML page with 200: every JSON subject fails as "not JSON", the soft body check
    // fails without failing anything on its own, and every check is judged.
    assert_eq!(r[2]["error"]["code"], "check");
    let message = r[2]["error"]["message"].as_str().unwrap();
    assert!(message.contains("the body is not JSON"), "{message}");
    let html = r[2]["output"]["checks"].as_array().unwrap();
    assert_eq!(
        html.len(),
        12,
        "every check judged, not only up to the first failure"
    );
    let soft = html
        .iter()
        .find(|c| c["name"] == r#"body not_contains "error""#);
    assert_eq!(
        soft.unwrap()["passed"],
        false,
        "the page says \"Internal error\""
    );

    // A header that is not there fails the check that reads it, as a path that selects
    // nothing does; the task's error is the first hard check that failed.
    assert_eq!(r[3]["error"]["code"], "check");
    let bare = r[3]["output"]["checks"].as_array().unwrap();
    let version = bare
        .iter()
        .find(|c| c["name"] == r#"header:x-version not_equals "2.0""#);
    assert_eq!(version.unwrap()["passed"], false);
    assert_eq!(
        r[3]["error"]["message"],
        "check failed: json:$.items[*].id equals [1,2], but the path selected nothing"
    );

    // A body cut by the cap is not JSON to judge.
    assert_eq!(r[4]["error"]["code"], "check");
    assert!(
        r[4]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("truncated at 100 bytes"),
        "{}",
        r[4]["error"]
    );

    // Every judgement counted, by name, across the tasks that share a check.
    let checks = &res.json["summary"]["checks"];
    assert_eq!(checks["healthy"], json!({ "passed": 2, "failed": 2 }));
    assert_eq!(
        checks[r#"body not_contains "error""#],
        json!({ "passed": 3, "failed": 1 })
    );
    assert_eq!(res.json["summary"]["errors"], json!({ "check": 4 }));
}

#[tokio::test]
async fn a_soft_check_only_counts_and_a_status_failure_judges_no_check() {
    let app = spawn_app().await;
    let t = shapes().await;
    let soft = json!([{ "on": "json:$.status", "equals": "ok", "soft": true }]);
    let res = app
        .post(
            &json!({ "mode": "gather", "return_exceptions": true, "jobs": [
            http(format!("{}/degraded", t.base), soft.clone()),
            { "kind": "http", "url": format!("{}/good", t.base), "expect_status": 404,
              "checks": [{ "on": "status", "equals": 200 }] },
        ] }),
        )
        .await;
    let r = &res.json["results"];
    assert_eq!(r[0]["status"], "succeeded", "{}", r[0]);
    assert_eq!(r[0]["output"]["checks"][0]["passed"], false);
    assert_eq!(r[1]["error"]["code"], "status");
    assert!(r[1]["output"]["checks"].is_null(), "{}", r[1]);
    assert_eq!(
        res.json["summary"]["checks"],
        json!({
            r#"json:$.status equals "ok""#: { "passed": 0, "failed": 1 },
            "status equals 200": { "passed": 0, "failed": 0 },
        })
    );
}

/// A load run of `n` requests to each of `/good` and `/degraded` (HTTP version `version`), the
/// same check on both, and `thresholds`.
fn load_run(t: &Shapes, n: u64, version: &str, thresholds: Value) -> Value {
    let checks = json!([
        { "name": "healthy", "on": "json:$.status", "equals": "ok" },
        { "name": "versioned", "on": "header:x-version", "matches": "^1\\.", "soft": true },
        { "name": "ok", "on": "status", "equals": 200 },
    ]);
    let job = |path: &str| {
        json!({ "kind": "http", "url": format!("{}/{path}", t.base), "http_version": version,
                "checks": checks })
    };
    json!({ "jobs": [job("good"), job("degraded")], "load": { "repeat": n },
            "concurrency": 16, "results": "none", "thresholds": thresholds })
}

#[tokio::test]
async fn a_load_run_counts_every_judgement_on_either_http_version_and_its_thresholds_judge_them() {
    let app = spawn_app().await;
    let t = shapes().await;
    for version in ["1.1", "2"] {
        let thresholds = json!({ "min_check_rate": 0.8, "checks": {
            "ok": { "min_rate": 1 }, "healthy": { "min_rate": 0.4 } } });
        let res = app.post(&load_run(&t, 500, version, thresholds)).await;
        assert_eq!(res.status, 201, "{}", res.json);
        let s = &res.json["summary"];
        assert_eq!(
            s["checks"]["healthy"],
            json!({ "passed": 500, "failed": 500 })
        );
        assert_eq!(s["checks"]["ok"], json!({ "passed": 1000, "failed": 0 }));
        assert_eq!(
            s["checks"]["versioned"],
            json!({ "passed": 1000, "failed": 0 })
        );
        assert_eq!(s["errors"], json!({ "check": 500 }), "HTTP/{version}");
        let verdict = &res.json["verdict"];
        let check = |name: &str| {
            verdict["checks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == name)
                .cloned()
                .unwrap_or_else(|| panic!("no {name} in {verdict}"))
        };
        // 2,500 of 3,000 judgements passed.
        assert_eq!(check("check_rate")["passed"], true);
        assert!((check("check_rate")["actual"].as_f64().unwrap() - 2500.0 / 3000.0).abs() < 1e-9);
        assert_eq!(check("checks.ok")["passed"], true);
        assert_eq!(check("checks.healthy")["actual"], 0.5);
        assert_eq!(verdict["passed"], true, "{verdict}");
    }
    let strict = json!({ "checks": { "healthy": { "min_rate": 0.99 } } });
    let res = app.post(&load_run(&t, 100, "1.1", strict)).await;
    assert_eq!(
        res.json["verdict"]["passed"], false,
        "{}",
        res.json["verdict"]
    );

    // Thresholds that judge only latency still hold hard checks to every answer.
    let latency_only = json!({ "p99_ms": 60000 });
    let res = app.post(&load_run(&t, 100, "1.1", latency_only)).await;
    let verdict = &res.json["verdict"];
    assert_eq!(verdict["passed"], false, "{verdict}");
    let rate = verdict["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "check_rate")
        .unwrap();
    assert_eq!(rate["limit"], 1.0);
    // Over the hard checks only: `healthy` 100 of 200, `ok` 200 of 200.
    assert_eq!(rate["actual"], 0.75, "{rate}");
}

#[tokio::test]
async fn placeholders_in_a_checks_value_render_per_task() {
    let app = spawn_app().await;
    let t = shapes().await;
    // `/good` has `n: 3`: task 3 (seq from 1) alone sees its own number.
    let res = app
        .post(&json!({ "jobs": [{ "kind": "http", "url": format!("{}/good", t.base),
            "checks": [{ "name": "n is seq", "on": "json:$.n", "one_of": ["{{seq}}", 3], "soft": true },
                       { "name": "text", "on": "json:$.status", "not_equals": "{{seq}}" }] }],
            "load": { "repeat": 5 }, "concurrency": 1, "results": "all" }))
        .await;
    assert_eq!(res.status, 201, "{}", res.json);
    assert_eq!(
        res.json["summary"]["checks"]["text"],
        json!({ "passed": 5, "failed": 0 })
    );
}

#[tokio::test]
async fn bad_checks_are_refused_each_at_its_field() {
    let app = spawn_app().await;
    let mut many = vec![json!({ "on": "status", "equals": 200 }); 33];
    for (i, c) in many.iter_mut().enumerate() {
        c["name"] = json!(format!("c{i}"));
    }
    let checks = json!([
        { "on": "stauts", "equals": 200 },
        { "on": "status", "equals": 200, "lt": 300 },
        { "on": "json:$.a.", "exists": true },
        { "on": "body", "matches": "(unclosed" },
        { "on": "body", "matches": "\\w{5000}" },
        { "on": "status" },
        { "on": "status", "equals": "{{nope}}" },
    ]);
    let res = app
        .post(&json!({ "jobs": [
            { "kind": "http", "url": "http://127.0.0.1:9/", "checks": checks },
            { "kind": "http", "url": "http://127.0.0.1:9/", "checks": many },
        ] }))
        .await;
    assert_eq!(res.status, 422, "{}", res.json);
    let fields: Vec<&str> = res.json["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for field in [
        "jobs[0].checks[0].on",
        "jobs[0].checks[1]",
        "jobs[0].checks[2].on",
        "jobs[0].checks[3].matches",
        "jobs[0].checks[4].matches",
        "jobs[0].checks[5]",
        "jobs[0].checks[6].equals",
        "jobs[1].checks",
    ] {
        assert!(fields.contains(&field), "{field} not in {fields:?}");
    }
    let too_big = &res.json["errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["field"] == "jobs[0].checks[4].matches")
        .unwrap()["message"];
    assert!(
        too_big.as_str().unwrap().contains("larger than the limit"),
        "{too_big}"
    );

    // A threshold on a check no job has.
    let res = app
        .post(
            &json!({ "jobs": [{ "kind": "http", "url": "http://127.0.0.1:9/",
            "checks": [{ "name": "healthy", "on": "status", "equals": 200 }] }],
            "thresholds": { "checks": { "helthy": { "min_rate": 0.9 } }, "min_check_rate": 1.5 } }),
        )
        .await;
    assert_eq!(res.status, 422, "{}", res.json);
    let text = res.json["errors"].to_string();
    assert!(text.contains("thresholds.checks.helthy"), "{text}");
    assert!(text.contains("thresholds.min_check_rate"), "{text}");
    let res = app
        .post(&json!({ "jobs": [{ "kind": "sleep", "duration_ms": 1 }],
            "thresholds": { "min_check_rate": 0.9 } }))
        .await;
    assert_eq!(res.status, 422, "{}", res.json);
    assert!(res.json["errors"].to_string().contains("no job has checks"));
}

#[tokio::test]
async fn the_one_liner_fails_the_build_when_the_app_answers_200_with_the_wrong_body() {
    let t = shapes().await;
    let run = |path: &str| {
        let url = format!("{}/{path}", t.base);
        async move {
            run_binary([
                "run",
                "--url",
                &url,
                "-n",
                "200",
                "-c",
                "8",
                "--allow-net",
                "127.0.0.1/32",
                "--check",
                "json:$.status == \"ok\"",
                "--check",
                "header:content-type ~ json",
                "--threshold",
                "p95<10s",
            ])
            .await
        }
    };
    let good = run("good").await;
    assert_exit(&good, 0);
    let text = String::from_utf8_lossy(&good.stdout);
    assert!(
        text.contains("100%  200 / 200  json:$.status equals \"ok\""),
        "{text}"
    );

    let bad = run("degraded").await;
    assert_exit(&bad, 1);
    let text = String::from_utf8_lossy(&bad.stdout);
    assert!(text.contains("[FAIL] check_rate"), "{text}");
    assert!(text.contains("got \"degraded\""), "{text}");
    assert_eq!(t.hits.load(Ordering::SeqCst), 400);

    let printed = run_binary([
        "run",
        "--url",
        "http://127.0.0.1:9/",
        "--check",
        "status == 200",
        "--check",
        "body !contains error",
        "--print-batch",
    ])
    .await;
    assert_exit(&printed, 0);
    let batch: Value = serde_json::from_slice(&printed.stdout).unwrap();
    assert_eq!(
        batch["jobs"][0]["checks"],
        json!([{ "on": "status", "equals": 200 }, { "on": "body", "not_contains": "error" }])
    );
}

#[tokio::test]
#[cfg_attr(
    not(fanout_test_backend = "postgres"),
    ignore = "several instances on one PostgreSQL: run in the PostgreSQL pass"
)]
async fn two_instances_sharing_a_load_run_count_every_judgement_once() {
    let Some(db) = fresh_postgres().await else {
        eprintln!("skipped: set FANOUT_TEST_POSTGRES_URL to run the multi-instance tests");
        return;
    };
    let t = shapes().await;
    let nodes = start_cluster(&db, 2, &["--shard-size", "500", "--stale-after", "20s"]).await;
    let run = load_run(&t, 3000, "1.1", json!({ "min_check_rate": 0.5 }));

    let res = nodes[0].post(&run).await;

    assert_eq!(res.status, 201, "{}", res.json);
    let merged = &res.json;
    let shards = merged["shards"].as_array().unwrap();
    assert!(shards.len() > 1, "{}", merged["shards"]);
    let s = &merged["summary"];
    assert_eq!(
        s["checks"]["healthy"],
        json!({ "passed": 3000, "failed": 3000 })
    );
    assert_eq!(s["checks"]["ok"], json!({ "passed": 6000, "failed": 0 }));
    assert_eq!(
        s["checks"]["versioned"],
        json!({ "passed": 6000, "failed": 0 })
    );
    assert_eq!(t.hits.load(Ordering::SeqCst), 6000);
    assert_eq!(merged["verdict"]["passed"], true, "{}", merged["verdict"]);
}
