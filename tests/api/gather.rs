use serde_json::json;

use crate::helpers::{spawn_app, spawn_target, ts};

#[tokio::test]
async fn gather_returns_results_in_input_order_while_jobs_finish_out_of_order() {
    let app = spawn_app().await;

    let res = app
        .post(&json!({ "jobs": [
            { "kind": "sleep", "id": "slow", "duration_ms": 300 },
            { "kind": "sleep", "id": "fast", "duration_ms": 100 },
            { "kind": "sleep", "id": "medium", "duration_ms": 200 }
        ]}))
        .await;

    assert_eq!(res.status, 201);
    let b = &res.json;
    assert_eq!(b["status"], "completed");
    let ids: Vec<_> = b["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!("slow"), json!("fast"), json!("medium")]);
    let seqs: Vec<_> = b["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![3, 1, 2], "seq is completion order");
    for r in b["results"].as_array().unwrap() {
        assert_eq!(r["status"], "succeeded");
        assert_eq!(r["attempts"], 1);
    }
    assert_eq!(b["summary"]["succeeded"], 3);
    assert!(!b["finished_at"].is_null());
    let location = res.headers["location"].to_str().unwrap();
    assert_eq!(location, format!("/batches/{}", b["id"].as_str().unwrap()));
}

#[tokio::test]
async fn jobs_run_concurrently_every_sleep_starts_before_the_first_ends() {
    let app = spawn_app().await;

    let res = app
        .post(&json!({ "jobs": [
            { "kind": "sleep", "duration_ms": 300 },
            { "kind": "sleep", "duration_ms": 100 },
            { "kind": "sleep", "duration_ms": 200 }
        ]}))
        .await;

    let results = res.json["results"].as_array().unwrap();
    let first_end = results
        .iter()
        .map(|r| ts(&r["timing"]["finished_at"]))
        .min()
        .unwrap();
    for r in results {
        assert!(ts(&r["timing"]["started_at"]) < first_end, "{r}");
        let slept = r["output"]["slept_ms"].as_f64().unwrap();
        let asked = [300.0, 100.0, 200.0][r["index"].as_u64().unwrap() as usize];
        assert!(slept >= asked, "slept {slept} < {asked}");
    }
    // The batch took about the longest sleep, not the sum (generous margin).
    assert!(
        res.json["wall_ms"].as_f64().unwrap() < 550.0,
        "{}",
        res.json["wall_ms"]
    );
}

#[tokio::test]
async fn concurrency_one_runs_jobs_one_after_another_in_input_order() {
    let app = spawn_app().await;

    let res = app
        .post(&json!({ "concurrency": 1, "jobs": [
            { "kind": "sleep", "duration_ms": 120 },
            { "kind": "sleep", "duration_ms": 40 },
            { "kind": "sleep", "duration_ms": 80 }
        ]}))
        .await;

    let r = res.json["results"].as_array().unwrap().clone();
    for pair in r.windows(2) {
        assert!(
            ts(&pair[1]["timing"]["started_at"]) >= ts(&pair[0]["timing"]["finished_at"]),
            "task {} started before task {} ended",
            pair[1]["index"],
            pair[0]["index"]
        );
    }
    let seqs: Vec<_> = r.iter().map(|t| t["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    assert!(
        r[2]["timing"]["queued_ms"].as_f64().unwrap() >= 160.0,
        "the third task waited for the other two"
    );
}

#[tokio::test]
async fn with_return_exceptions_failures_are_results_and_the_batch_completes() {
    let app = spawn_app().await;
    let target = spawn_target().await;

    let res = app
        .post(&json!({ "return_exceptions": true, "jobs": [
            { "kind": "sleep", "duration_ms": 50 },
            { "kind": "http", "url": format!("{}/status/500", target.base) },
            { "kind": "file", "path": "missing.txt" }
        ]}))
        .await;

    assert_eq!(res.status, 201);
    let b = &res.json;
    assert_eq!(b["status"], "completed");
    assert!(b.get("error").is_none());
    assert_eq!(b["results"][0]["status"], "succeeded");
    assert_eq!(b["results"][1]["status"], "failed");
    assert_eq!(b["results"][1]["error"]["code"], "status");
    assert_eq!(
        b["results"][1]["output"]["status"], 500,
        "the answer that failed is kept"
    );
    assert_eq!(b["results"][2]["error"]["code"], "not_found");
    assert_eq!(b["summary"]["failed"], 2);
    assert_eq!(b["summary"]["errors"]["status"], 1);
    assert_eq!(b["summary"]["http_status"]["500"], 1);
}

#[tokio::test]
async fn without_return_exceptions_the_first_failure_answers_and_siblings_keep_running() {
    let app = spawn_app().await;

    let res = app
        .post(&json!({ "jobs": [
            { "kind": "sleep", "id": "sibling", "duration_ms": 600 },
            { "kind": "file", "id": "broken", "path": "../outside" }
        ]}))
        .await;

    assert_eq!(res.status, 201);
    let b = &res.json;
    assert_eq!(b["status"], "failed");
    assert_eq!(b["error"]["index"], 1);
    assert_eq!(b["error"]["code"], "forbidden");
    assert!(
        b["finished_at"].is_null(),
        "answered before the sibling ended"
    );
    assert_eq!(b["results"][0]["status"], "running");

    let later = app.finished(b["id"].as_str().unwrap()).await;
    assert_eq!(later["status"], "failed");
    assert_eq!(
        later["results"][0]["status"], "succeeded",
        "the sibling ran to completion"
    );
    assert!(later["results"][0]["output"]["slept_ms"].as_f64().unwrap() >= 600.0);
}

#[tokio::test]
async fn fail_fast_cancels_the_other_tasks_like_a_task_group() {
    let app = spawn_app().await;

    let res = app
        .post(&json!({ "fail_fast": true, "concurrency": 2, "jobs": [
            { "kind": "sleep", "duration_ms": 5000 },
            { "kind": "file", "path": "nope.txt" },
            { "kind": "sleep", "duration_ms": 10 }
        ]}))
        .await;

    let b = &res.json;
    assert_eq!(b["status"], "failed");
    assert_eq!(b["error"]["index"], 1);
    assert!(
        !b["finished_at"].is_null(),
        "a task group answers once the cancelled tasks ended"
    );
    assert_eq!(b["results"][0]["status"], "cancelled");
    assert_eq!(b["results"][0]["error"]["code"], "cancelled");
    assert_eq!(
        b["results"][2]["status"], "cancelled",
        "a queued task never starts"
    );
    assert!(b["results"][2]["timing"]["started_at"].is_null());
    assert_eq!(b["summary"]["cancelled"], 2);
    assert!(b["wall_ms"].as_f64().unwrap() < 4000.0);
}

#[tokio::test]
async fn a_job_over_its_timeout_ends_timed_out() {
    let app = spawn_app().await;

    let res = app
        .post(&json!({ "return_exceptions": true, "jobs": [
            { "kind": "sleep", "duration_ms": 5000, "timeout_ms": 100 },
            { "kind": "sleep", "duration_ms": 10, "timeout_ms": 1000 }
        ]}))
        .await;

    let r = &res.json["results"];
    assert_eq!(r[0]["status"], "timed_out");
    assert_eq!(r[0]["error"]["code"], "timeout");
    assert!(r[0]["timing"]["duration_ms"].as_f64().unwrap() < 2000.0);
    assert_eq!(r[1]["status"], "succeeded");
    assert_eq!(res.json["summary"]["timed_out"], 1);
}

#[tokio::test]
async fn the_batch_deadline_times_out_unfinished_tasks_and_fails_the_batch() {
    let app = spawn_app().await;

    let res = app
        .post(&json!({ "timeout_ms": 200, "concurrency": 1, "jobs": [
            { "kind": "sleep", "duration_ms": 20 },
            { "kind": "sleep", "duration_ms": 3000 },
            { "kind": "sleep", "duration_ms": 20 }
        ]}))
        .await;

    let b = &res.json;
    assert_eq!(b["status"], "failed");
    assert_eq!(b["error"]["code"], "timeout");
    assert!(b["error"]["index"].is_null());
    assert!(!b["finished_at"].is_null(), "the answer holds every result");
    assert_eq!(b["results"][0]["status"], "succeeded");
    assert_eq!(b["results"][1]["status"], "timed_out");
    assert_eq!(b["results"][2]["status"], "timed_out");
    assert_eq!(b["summary"]["timed_out"], 2);
}

#[tokio::test]
async fn the_batch_deadline_with_return_exceptions_completes_with_timed_out_results() {
    let app = spawn_app().await;

    let res = app
        .post(
            &json!({ "timeout_ms": 150, "return_exceptions": true, "jobs": [
                { "kind": "sleep", "duration_ms": 3000 }
            ]}),
        )
        .await;

    assert_eq!(res.json["status"], "completed");
    assert_eq!(res.json["results"][0]["status"], "timed_out");
}

#[tokio::test]
async fn retries_are_counted_in_attempts() {
    let app = spawn_app().await;
    let target = spawn_target().await;

    let res = app
        .post(&json!({ "jobs": [
            { "kind": "http", "url": format!("{}/flaky", target.base), "retries": { "max": 3, "backoff_ms": 10 } }
        ]}))
        .await;

    let r = &res.json["results"][0];
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(r["attempts"], 3);
    assert_eq!(r["output"]["body"], "recovered");
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let app = spawn_app().await;
    let target = spawn_target().await;

    let res = app
        .post(&json!({ "return_exceptions": true, "jobs": [
            { "kind": "http", "url": format!("{}/status/404", target.base), "retries": { "max": 3, "backoff_ms": 1 } },
            { "kind": "http", "url": format!("{}/status/503", target.base), "retries": { "max": 2, "backoff_ms": 1 } }
        ]}))
        .await;

    assert_eq!(res.json["results"][0]["attempts"], 1);
    assert_eq!(res.json["results"][1]["attempts"], 3);
    assert_eq!(res.json["results"][1]["status"], "failed");
}
