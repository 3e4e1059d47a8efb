use serde_json::json;

use crate::helpers::spawn_app;

fn indices(v: &serde_json::Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|t| t["index"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn wait_all_completed_lists_done_tasks_in_completion_order() {
    let app = spawn_app().await;

    let res = app
        .post(&json!({ "mode": "wait", "jobs": [
            { "kind": "sleep", "duration_ms": 250 },
            { "kind": "sleep", "duration_ms": 50 },
            { "kind": "sleep", "duration_ms": 150 }
        ]}))
        .await;

    assert_eq!(res.status, 201);
    assert_eq!(res.json["status"], "completed");
    assert_eq!(indices(&res.json["done"]), vec![1, 2, 0]);
    assert_eq!(res.json["pending"], json!([]));
    assert!(res.json.get("results").is_none());
}

#[tokio::test]
async fn wait_first_completed_answers_with_the_rest_pending() {
    let app = spawn_app().await;

    let res = app
        .post(
            &json!({ "mode": "wait", "return_when": "first_completed", "jobs": [
                { "kind": "sleep", "duration_ms": 800 },
                { "kind": "sleep", "duration_ms": 20 }
            ]}),
        )
        .await;

    assert_eq!(
        res.json["status"], "running",
        "a wait answer with pending tasks is running"
    );
    assert_eq!(indices(&res.json["done"]), vec![1]);
    assert_eq!(res.json["pending"], json!([0]));

    let later = app.finished(res.json["id"].as_str().unwrap()).await;
    assert_eq!(later["status"], "completed");
    assert_eq!(indices(&later["done"]), vec![1, 0]);
    assert_eq!(later["pending"], json!([]));
}

#[tokio::test]
async fn wait_first_exception_answers_at_the_first_failure() {
    let app = spawn_app().await;

    let res = app
        .post(
            &json!({ "mode": "wait", "return_when": "first_exception", "jobs": [
                { "kind": "sleep", "duration_ms": 20 },
                { "kind": "sleep", "duration_ms": 800 },
                { "kind": "sleep", "duration_ms": 5000, "timeout_ms": 100 }
            ]}),
        )
        .await;

    assert_eq!(indices(&res.json["done"]), vec![0, 2]);
    assert_eq!(res.json["done"][1]["status"], "timed_out");
    assert_eq!(res.json["pending"], json!([1]));
}

#[tokio::test]
async fn wait_first_exception_without_failures_waits_for_all() {
    let app = spawn_app().await;

    let res = app
        .post(
            &json!({ "mode": "wait", "return_when": "first_exception", "jobs": [
                { "kind": "sleep", "duration_ms": 20 },
                { "kind": "sleep", "duration_ms": 60 }
            ]}),
        )
        .await;

    assert_eq!(res.json["status"], "completed");
    assert_eq!(res.json["pending"], json!([]));
}

#[tokio::test]
async fn wait_timeout_with_continue_answers_and_pending_tasks_keep_running() {
    let app = spawn_app().await;

    let res = app
        .post(
            &json!({ "mode": "wait", "timeout_ms": 200, "on_timeout": "continue", "jobs": [
                { "kind": "sleep", "duration_ms": 20 },
                { "kind": "sleep", "duration_ms": 900 }
            ]}),
        )
        .await;

    assert_eq!(res.json["status"], "running");
    assert_eq!(indices(&res.json["done"]), vec![0]);
    assert_eq!(res.json["pending"], json!([1]));

    let later = app.finished(res.json["id"].as_str().unwrap()).await;
    assert_eq!(later["done"][1]["index"], 1);
    assert_eq!(later["done"][1]["status"], "succeeded");
    assert_eq!(later["status"], "completed");
}

#[tokio::test]
async fn wait_timeout_with_cancel_cancels_pending_tasks() {
    let app = spawn_app().await;

    let res = app
        .post(
            &json!({ "mode": "wait", "timeout_ms": 200, "on_timeout": "cancel", "jobs": [
                { "kind": "sleep", "duration_ms": 20 },
                { "kind": "sleep", "duration_ms": 5000 }
            ]}),
        )
        .await;

    assert_eq!(indices(&res.json["done"]), vec![0]);
    assert_eq!(res.json["pending"], json!([1]));

    let later = app.finished(res.json["id"].as_str().unwrap()).await;
    assert_eq!(later["done"][1]["index"], 1);
    assert_eq!(later["done"][1]["status"], "cancelled");
    assert_eq!(later["summary"]["cancelled"], 1);
    assert!(later["wall_ms"].as_f64().unwrap() < 4000.0);
}
