//! What operators see: Prometheus metrics, request ids, JSON logs.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{spawn_app, spawn_app_with, start_binary};

/// Parses the Prometheus text format strictly enough to catch a malformed line: every sample
/// is `name{labels} value`, every family has HELP and TYPE before its samples.
fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    let mut typed = std::collections::HashSet::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let name = parts.next().unwrap();
            let kind = parts.next().unwrap();
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            typed.insert(name.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment: {line}");
        let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad name: {line}"
        );
        if let Some(labels) = series.strip_prefix(name)
            && !labels.is_empty()
        {
            assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|f| typed.contains(*f))
            .unwrap_or(name);
        assert!(typed.contains(family), "sample before its TYPE: {line}");
        samples.insert(series.to_owned(), value);
    }
    samples
}

async fn scrape(app: &crate::helpers::TestApp) -> HashMap<String, f64> {
    let res = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    parse_prometheus(&res.text().await.unwrap())
}

fn get(m: &HashMap<String, f64>, series: &str) -> f64 {
    m.get(series).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_move_as_batches_run_and_parse_as_prometheus_text() {
    // The recorder is process-wide and other tests run beside this one: compare before/after,
    // and only with lower bounds.
    let app = spawn_app().await;
    let before = scrape(&app).await;

    let res = app
        .post(&json!({ "return_exceptions": true, "jobs": [
            { "kind": "sleep", "duration_ms": 5 },
            { "kind": "sleep", "duration_ms": 5 },
            { "kind": "file", "path": "missing.txt" }
        ] }))
        .await;
    assert_eq!(res.status, 201);
    let after = scrape(&app).await;

    let sleeps = r#"fanout_tasks_total{kind="sleep",status="succeeded"}"#;
    assert!(get(&after, sleeps) - get(&before, sleeps) >= 2.0);
    let files = r#"fanout_tasks_total{kind="file",status="failed"}"#;
    assert!(get(&after, files) - get(&before, files) >= 1.0);
    let batches = r#"fanout_batches_total{mode="gather",status="completed"}"#;
    assert!(get(&after, batches) - get(&before, batches) >= 1.0);
    let durations = r#"fanout_task_duration_seconds_count{kind="sleep"}"#;
    assert!(get(&after, durations) - get(&before, durations) >= 2.0);
    let posts = r#"fanout_http_requests_total{route="/batches",method="POST",status="201"}"#;
    assert!(get(&after, posts) - get(&before, posts) >= 1.0);
    assert!(after.contains_key(
        r#"fanout_http_request_duration_seconds_bucket{route="/batches",method="POST",le="+Inf"}"#
    ));
    assert!(after.contains_key("fanout_tasks_in_flight"));
    assert!(after.contains_key("fanout_batches_in_flight"));
    // Routes, not raw paths: a batch id never becomes a label.
    let id = res.json["id"].as_str().unwrap();
    app.get(&format!("/batches/{id}")).await;
    let text = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains(id));
    assert!(text.contains(r#"route="/batches/{id}""#));
}

#[tokio::test]
async fn metrics_are_open_unless_a_metrics_token_is_set() {
    let app = spawn_app_with(|c| c.api_token = vec!["api-secret".into()]).await;
    let open = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(open.status(), 200);

    let guarded = spawn_app_with(|c| c.metrics_token = Some("scrape-secret".into())).await;
    let url = format!("{}/metrics", guarded.base);
    let without = guarded.client.get(&url).send().await.unwrap();
    assert_eq!(without.status(), 401);
    let wrong = guarded
        .client
        .get(&url)
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = guarded
        .client
        .get(&url)
        .bearer_auth("scrape-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
}

#[tokio::test]
async fn a_request_id_is_echoed_or_made_and_an_unfit_one_replaced() {
    let app = spawn_app().await;
    let given = app
        .client
        .get(format!("{}/healthz", app.base))
        .header("x-request-id", "ci-run-42.7")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "ci-run-42.7");

    let made = app.get("/healthz").await;
    let id = made.headers["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 36, "{id}");

    let unfit = app
        .client
        .get(format!("{}/nope", app.base))
        .header("x-request-id", "x".repeat(500))
        .send()
        .await
        .unwrap();
    assert_eq!(unfit.status(), 404);
    assert_eq!(unfit.headers()["x-request-id"].len(), 36);
}

#[tokio::test]
async fn json_logs_parse_and_carry_the_request_and_batch_ids() {
    let db = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", db.path().join("f.db").display());
    let mut server = start_binary(&["--database-url", &url], &[]);
    let res = server
        .client
        .post(format!("{}/batches", server.base))
        .header("x-request-id", "trace-me-1")
        .body(r#"{"jobs":[{"kind":"sleep","duration_ms":5}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "trace-me-1");
    let batch: Value = serde_json::from_slice(&res.bytes().await.unwrap()).unwrap();
    let batch_id = batch["id"].as_str().unwrap().to_owned();

    // Every line is JSON; the request's lines carry its id, the batch's line both ids.
    let mut lines = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        match server.logs.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => lines.push(line),
            Err(_)
                if lines
                    .iter()
                    .any(|l| l.contains("finished processing request")) =>
            {
                break;
            }
            Err(_) => {}
        }
    }
    server.kill();
    let parsed: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let of_request: Vec<&Value> = parsed
        .iter()
        .filter(|v| v["span"]["request_id"] == "trace-me-1")
        .collect();
    assert!(
        of_request
            .iter()
            .any(|v| v["message"] == "finished processing request" && v["status"] == 201),
        "{lines:#?}"
    );
    let accepted = of_request
        .iter()
        .find(|v| v["message"] == "batch accepted")
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert_eq!(accepted["batch_id"], batch_id.as_str());
    for v in &parsed {
        assert!(v["timestamp"].is_string() && v["level"].is_string(), "{v}");
    }
}
