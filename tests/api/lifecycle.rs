use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;

use crate::helpers::{poll_until, spawn_app, spawn_app_with, spawn_target};

#[tokio::test]
async fn a_client_hanging_up_mid_batch_does_not_cancel_it() {
    let app = spawn_app().await;
    let target = spawn_target().await;
    // The HTTP job only starts after the sleep, well after the client has gone.
    let batch = json!({ "concurrency": 1, "jobs": [
        { "kind": "sleep", "duration_ms": 400 },
        { "kind": "http", "url": format!("{}/hello", target.base) }
    ]});

    let gave_up = app
        .client
        .post(format!("{}/batches", app.base))
        .body(batch.to_string())
        .timeout(Duration::from_millis(100))
        .send()
        .await;
    assert!(
        gave_up.is_err(),
        "the request should have timed out client-side"
    );

    let ran = poll_until(Duration::from_secs(10), || async {
        (target.hits.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    assert!(
        ran.is_some(),
        "the batch's second job never ran: the hang-up cancelled the batch"
    );
}

#[tokio::test]
async fn prefer_respond_async_answers_202_at_once_and_the_batch_progresses() {
    let app = spawn_app().await;

    let res = app
        .post_raw(
            json!({ "jobs": [{ "kind": "sleep", "duration_ms": 300 }] }).to_string(),
            &[("prefer", "respond-async")],
        )
        .await;

    assert_eq!(res.status, 202);
    assert_eq!(res.json["status"], "running");
    assert!(res.json["finished_at"].is_null());
    let location = res.headers["location"].to_str().unwrap().to_owned();
    let id = res.json["id"].as_str().unwrap();
    assert_eq!(location, format!("/batches/{id}"));
    let done = app.finished(id).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["results"][0]["status"], "succeeded");
}

#[tokio::test]
async fn get_shows_the_same_batch_as_the_post() {
    let app = spawn_app().await;

    let posted = app
        .post(&json!({ "label": "again", "jobs": [{ "kind": "sleep", "duration_ms": 5 }] }))
        .await;
    let got = app.get(posted.headers["location"].to_str().unwrap()).await;

    assert_eq!(got.status, 200);
    assert_eq!(got.json, posted.json);
    assert_eq!(got.json["label"], "again");
}

#[tokio::test]
async fn results_errors_returns_only_failed_tasks_but_the_summary_counts_all() {
    let app = spawn_app().await;

    let res = app
        .post(
            &json!({ "results": "errors", "return_exceptions": true, "jobs": [
                { "kind": "sleep", "duration_ms": 1 },
                { "kind": "file", "path": "missing" },
                { "kind": "sleep", "duration_ms": 1 }
            ]}),
        )
        .await;

    let results = res.json["results"].as_array().unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["index"], 1);
    assert_eq!(res.json["summary"]["tasks"], 3);
    assert_eq!(res.json["summary"]["succeeded"], 2);
}

#[tokio::test]
async fn shutdown_lets_running_batches_finish_within_the_grace_period() {
    let app = spawn_app_with(|c| c.shutdown_grace = Duration::from_secs(10)).await;
    let target = spawn_target().await;
    let res = app
        .post_raw(
            json!({ "concurrency": 1, "jobs": [
                { "kind": "sleep", "duration_ms": 300 },
                { "kind": "http", "url": format!("{}/hello", target.base) }
            ]})
            .to_string(),
            &[("prefer", "respond-async")],
        )
        .await;
    assert_eq!(res.status, 202);

    app.stop().await;

    assert_eq!(
        target.hits.load(Ordering::SeqCst),
        1,
        "the batch ran to its end before exit"
    );
}

#[tokio::test]
async fn shutdown_interrupts_what_outlasts_the_grace_period() {
    let app = spawn_app_with(|c| c.shutdown_grace = Duration::from_millis(100)).await;
    let target = spawn_target().await;
    app.post_raw(
        json!({ "concurrency": 1, "jobs": [
            { "kind": "sleep", "duration_ms": 3000 },
            { "kind": "http", "url": format!("{}/hello", target.base) }
        ]})
        .to_string(),
        &[("prefer", "respond-async")],
    )
    .await;

    let started = std::time::Instant::now();
    app.stop().await;

    assert!(
        started.elapsed() < Duration::from_secs(2),
        "exit did not wait for the sleep"
    );
    assert_eq!(target.hits.load(Ordering::SeqCst), 0);
}
