//! Storage and lifecycle: on the backend under test (SQLite by default; PostgreSQL with
//! `FANOUT_TEST_BACKEND=postgres`). Tests that need a durable store are ignored on `memory`.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;

use crate::helpers::{
    poll_until, run_binary, spawn_app, spawn_app_with, spawn_target, start_binary, two_instances,
};

/// Whether the store keeps batches across a restart (memory:// keeps nothing).
fn durable() -> bool {
    !cfg!(fanout_test_backend = "memory")
}

#[tokio::test]
#[cfg_attr(
    fanout_test_backend = "memory",
    ignore = "needs a durable store: memory:// keeps nothing across a restart"
)]
async fn a_batch_and_all_its_results_survive_a_restart() {
    let app = spawn_app().await;
    let posted = app
        .post(
            &json!({ "label": "keep me", "return_exceptions": true, "jobs": [
                { "kind": "sleep", "id": "a", "duration_ms": 30 },
                { "kind": "file", "id": "b", "path": "missing.txt" },
                { "kind": "sleep", "id": "c", "duration_ms": 10 }
            ]}),
        )
        .await;
    let id = posted.json["id"].as_str().unwrap().to_owned();

    let app = app.restart().await;
    let got = app.get(&format!("/batches/{id}")).await;

    assert_eq!(got.status, 200);
    assert_eq!(
        got.json, posted.json,
        "the stored batch reads back exactly as it was answered"
    );
}

#[tokio::test]
async fn get_shows_progress_counts_while_a_batch_runs() {
    let app = spawn_app().await;
    let id = app
        .submit(&json!({ "jobs": [
            { "kind": "sleep", "duration_ms": 10 },
            { "kind": "sleep", "duration_ms": 3000 }
        ]}))
        .await;
    tokio::time::sleep(Duration::from_millis(400)).await;

    let b = app.get(&format!("/batches/{id}")).await.json;

    assert_eq!(b["status"], "running");
    assert_eq!(b["summary"]["succeeded"], 1);
    assert_eq!(b["summary"]["pending"], 1);
    assert_eq!(b["results"][1]["status"], "running");
}

#[tokio::test]
async fn delete_cancels_a_running_batch_and_refuses_a_finished_one() {
    let app = spawn_app().await;
    let id = app
        .submit(&json!({ "concurrency": 1, "jobs": [
            { "kind": "sleep", "duration_ms": 20 },
            { "kind": "sleep", "duration_ms": 5000 },
            { "kind": "sleep", "duration_ms": 5000 }
        ]}))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let cancelled = app.delete(&format!("/batches/{id}")).await;
    let again = app.delete(&format!("/batches/{id}")).await;
    let unknown = app
        .delete("/batches/01a212db-e7e5-7596-900b-c796ce0bc979")
        .await;

    assert_eq!(cancelled.status, 200, "{}", cancelled.json);
    let b = &cancelled.json;
    assert_eq!(b["status"], "cancelled");
    assert!(!b["finished_at"].is_null());
    assert_eq!(b["results"][0]["status"], "succeeded");
    assert_eq!(b["results"][1]["status"], "cancelled");
    assert_eq!(b["results"][2]["status"], "cancelled");
    assert_eq!(b["summary"]["cancelled"], 2);
    assert_eq!(again.status, 409);
    assert_eq!(again.json["code"], "batch_finished");
    assert_eq!(unknown.status, 404);
    let stored = app.finished(&id).await;
    assert_eq!(stored["status"], "cancelled");
}

#[tokio::test]
async fn the_same_idempotency_key_and_body_answer_the_first_batch_without_running_it_again() {
    let app = spawn_app().await;
    let target = spawn_target().await;
    let url = format!("{}/hello", target.base);
    let body = format!(r#"{{"jobs":[{{"kind":"http","url":"{url}"}}],"label":"once"}}"#);
    let respelled = format!(
        "{{ \"label\": \"once\",\n  \"jobs\": [ {{ \"url\": \"{url}\", \"kind\": \"http\" }} ] }}"
    );

    let first = app.post_raw(body, &[("idempotency-key", "k-1")]).await;
    let second = app.post_raw(respelled, &[("idempotency-key", "k-1")]).await;

    assert_eq!(first.status, 201);
    assert_eq!(second.status, 201);
    assert_eq!(second.json["id"], first.json["id"]);
    assert_eq!(second.headers["location"], first.headers["location"]);
    assert_eq!(target.hits.load(Ordering::SeqCst), 1, "the batch ran once");
}

#[tokio::test]
async fn concurrent_repeats_of_an_idempotency_key_share_one_batch() {
    let app = spawn_app().await;
    let body = json!({ "jobs": [{ "kind": "sleep", "duration_ms": 200 }] }).to_string();

    let (a, b) = tokio::join!(
        app.post_raw(body.clone(), &[("idempotency-key", "same")]),
        app.post_raw(body.clone(), &[("idempotency-key", "same")])
    );

    assert_eq!(a.json["id"], b.json["id"]);
    assert_eq!((a.status, b.status), (201, 201));
    assert_eq!(
        b.json["status"], "completed",
        "the repeat waited for the first answer"
    );
}

#[tokio::test]
async fn the_server_takes_exactly_the_idempotency_keys_the_openapi_document_describes() {
    let app = spawn_app().await;
    let doc = app.get("/openapi.json").await.json;
    let mut pattern = None;
    for (path, what) in [("/batches", "post"), ("/batches/{id}/rerun", "post")] {
        let params = doc["paths"][path][what]["parameters"].as_array().unwrap();
        let key = params
            .iter()
            .find(|p| p["name"] == "Idempotency-Key")
            .unwrap_or_else(|| panic!("{path}: no Idempotency-Key"));
        let schema = &key["schema"];
        assert_eq!(schema["minLength"], 1, "{path}: {schema}");
        assert_eq!(schema["maxLength"], 255, "{path}: {schema}");
        let stated = schema["pattern"]
            .as_str()
            .unwrap_or_else(|| panic!("{path}: {schema}"));
        pattern = Some(regex::Regex::new(stated).unwrap());
    }
    let pattern = pattern.unwrap();
    let body = json!({ "jobs": [{ "kind": "sleep", "duration_ms": 1 }] });
    let longest = "~".repeat(255);
    let too_long = "k".repeat(256);
    for key in [
        "k",
        "!\"#$%&'()*+,-./09:;<=>?@AZ[\\]^_`az{|}~",
        &longest,
        "a b",
        &too_long,
    ] {
        let res = app
            .post_raw(body.to_string(), &[("idempotency-key", key)])
            .await;
        let accepted = pattern.is_match(key);
        assert_eq!(
            res.status == 201,
            accepted,
            "{key:?}: {} {}",
            res.status,
            res.json
        );
        if !accepted {
            assert_eq!(res.status, 422, "{key:?}");
            assert_eq!(res.json["errors"][0]["field"], "Idempotency-Key");
        }
    }
}

#[tokio::test]
async fn an_idempotency_key_reused_with_another_body_is_a_422() {
    let app = spawn_app().await;

    let first = app
        .post_raw(
            json!({ "jobs": [{ "kind": "sleep", "duration_ms": 1 }] }).to_string(),
            &[("idempotency-key", "k-2")],
        )
        .await;
    let other = app
        .post_raw(
            json!({ "jobs": [{ "kind": "sleep", "duration_ms": 2 }] }).to_string(),
            &[("idempotency-key", "k-2")],
        )
        .await;

    assert_eq!(first.status, 201);
    assert_eq!(other.status, 422);
    assert_eq!(other.json["code"], "idempotency_key_reused");
    assert_eq!(other.headers["content-type"], "application/problem+json");
}

#[tokio::test]
async fn an_async_first_answer_is_replayed_as_202() {
    let app = spawn_app().await;
    let body = json!({ "jobs": [{ "kind": "sleep", "duration_ms": 300 }] }).to_string();

    let first = app
        .post_raw(
            body.clone(),
            &[("idempotency-key", "k-3"), ("prefer", "respond-async")],
        )
        .await;
    let again = app.post_raw(body, &[("idempotency-key", "k-3")]).await;

    assert_eq!(first.status, 202);
    assert_eq!(
        again.status, 202,
        "the first answer's status code is replayed"
    );
    assert_eq!(again.json["id"], first.json["id"]);
}

#[tokio::test]
async fn listing_visits_every_batch_exactly_once_while_new_ones_arrive() {
    let app = spawn_app().await;
    let mut created = HashSet::new();
    for i in 0..23 {
        let res = app.post(&json!({ "label": format!("old {i}"), "jobs": [{ "kind": "sleep", "duration_ms": 0 }] })).await;
        created.insert(res.json["id"].as_str().unwrap().to_owned());
    }

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut newer = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/batches?limit=5&cursor={c}"),
            None => "/batches?limit=5".to_owned(),
        };
        let page = app.get(&path).await;
        assert_eq!(page.status, 200, "{}", page.json);
        for item in page.json["items"].as_array().unwrap() {
            assert!(
                item.get("results").is_none(),
                "list items carry no task results"
            );
            seen.push(item["id"].as_str().unwrap().to_owned());
        }
        // New batches arrive between pages.
        app.post(&json!({ "label": format!("new {newer}"), "jobs": [{ "kind": "sleep", "duration_ms": 0 }] })).await;
        newer += 1;
        match page.json["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }

    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no batch listed twice");
    for id in &created {
        assert!(unique.contains(id), "batch {id} was never listed");
    }
    assert_eq!(
        seen.len(),
        created.len(),
        "batches created while paging come before the first page"
    );
}

#[tokio::test]
async fn listing_filters_by_status_and_checks_its_parameters() {
    let app = spawn_app().await;
    app.post(&json!({ "jobs": [{ "kind": "sleep", "duration_ms": 0 }] }))
        .await;
    app.post(&json!({ "jobs": [{ "kind": "file", "path": "nope" }] }))
        .await;

    let failed = app.get("/batches?status=failed").await;
    let bad = app.get("/batches?status=weird&limit=0&cursor=%%%").await;

    let items = failed.json["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["status"], "failed");
    assert_eq!(bad.status, 422);
    assert_eq!(bad.json["code"], "invalid_query");
    let fields: Vec<&str> = bad.json["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, vec!["status", "limit", "cursor"]);
}

#[tokio::test]
#[cfg_attr(
    not(fanout_test_backend = "postgres"),
    ignore = "needs a store two instances share: PostgreSQL"
)]
async fn another_instances_restart_leaves_a_running_batch_alone_and_ends_its_own() {
    let (a, b) = two_instances().await;
    let a_batch = a
        .submit(&json!({ "jobs": [{ "kind": "sleep", "duration_ms": 1500 }] }))
        .await;
    let b_batch = b
        .submit(
            &json!({ "on_lost": "interrupt", "jobs": [{ "kind": "sleep", "duration_ms": 60000 }] }),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // B stops hard (its batch left unfinished in the store), then comes back.
    let b_config = b.config.clone();
    b.abandon();
    let b = a.sibling(b_config.instance_id.as_deref().unwrap()).await;

    let seen_by_b = b.get(&format!("/batches/{a_batch}")).await.json;
    assert_eq!(
        seen_by_b["status"], "running",
        "A's live batch is not B's to end"
    );
    let own = b.finished(&b_batch).await;
    assert_eq!(
        own["status"], "interrupted",
        "B's own unfinished batch (on_lost: interrupt) is interrupted"
    );
    assert_eq!(own["results"][0]["status"], "interrupted");
    assert_eq!(own["shards"][0]["attempt"], 2, "{own}");
    let done = a.finished(&a_batch).await;
    assert_eq!(done["status"], "completed");
}

#[tokio::test]
async fn retention_deletes_finished_batches_only() {
    let app = spawn_app_with(|c| c.retention = Some(Duration::from_millis(300))).await;
    let old = app
        .post(&json!({ "jobs": [{ "kind": "sleep", "duration_ms": 0 }] }))
        .await
        .json["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let running = app
        .submit(&json!({ "jobs": [{ "kind": "sleep", "duration_ms": 4000 }] }))
        .await;

    let gone = poll_until(Duration::from_secs(10), || async {
        (app.get(&format!("/batches/{old}")).await.status == 404).then_some(())
    })
    .await;

    assert!(gone.is_some(), "the finished batch outlived its retention");
    assert_eq!(
        app.get(&format!("/batches/{running}")).await.status,
        200,
        "a running batch is kept"
    );
}

#[tokio::test]
async fn migrations_apply_to_an_empty_database_and_again_harmlessly() {
    let app = spawn_app().await;
    let id = app
        .post(&json!({ "jobs": [{ "kind": "sleep", "duration_ms": 0 }] }))
        .await
        .json["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Restarting runs the migrations again on the same database.
    let app = app.restart().await;
    let app = app.restart().await;

    assert_eq!(app.get("/readyz").await.status, 200);
    if durable() {
        assert_eq!(app.get(&format!("/batches/{id}")).await.status, 200);
    }
}

/// Posts a batch to a `serve` binary with `Prefer: respond-async`; returns its id.
#[tokio::test]
#[cfg_attr(
    not(fanout_test_backend = "sqlite"),
    ignore = "runs the binary on a SQLite file of its own: once, in the SQLite pass"
)]
async fn kill_9_mid_batch_with_on_lost_interrupt_ends_it_interrupted_with_its_finished_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("k.db").display());
    let mut server = start_binary(&["--database-url", &db, "--instance-id", "killed"], &[]);
    let id = server
        .submit(&json!({ "on_lost": "interrupt", "jobs": [
            { "kind": "sleep", "id": "quick", "duration_ms": 10 },
            { "kind": "sleep", "id": "long", "duration_ms": 60000 }
        ]}))
        .await;
    // Long enough for the quick task's row to be written (writes are grouped every 100 ms).
    tokio::time::sleep(Duration::from_millis(600)).await;

    server.kill();
    let mut server = start_binary(&["--database-url", &db, "--instance-id", "killed"], &[]);
    let b = server.finished(&id).await;
    server.kill();

    assert_eq!(b["status"], "interrupted", "{b}");
    assert_eq!(b["results"][0]["status"], "succeeded");
    assert!(b["results"][0]["output"]["slept_ms"].as_f64().unwrap() >= 10.0);
    assert_eq!(b["results"][1]["status"], "interrupted");
    assert_eq!(b["summary"]["interrupted"], 1);
    assert_eq!(b["summary"]["succeeded"], 1);
}

#[tokio::test]
#[cfg_attr(
    not(fanout_test_backend = "sqlite"),
    ignore = "runs the binary on a SQLite file of its own: once, in the SQLite pass"
)]
async fn kill_9_mid_async_batch_reruns_what_had_not_ended_and_keeps_what_had() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("k.db").display());
    let mut server = start_binary(&["--database-url", &db], &[]);
    let id = server
        .submit(&json!({ "jobs": [
            { "kind": "sleep", "id": "quick", "duration_ms": 10 },
            { "kind": "sleep", "id": "slow", "duration_ms": 1500 }
        ]}))
        .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let quick_before = server.get(&format!("/batches/{id}")).await.json["results"][0].clone();

    server.kill();
    // Another instance id, as a new container would have: the file is what it recovers.
    let mut server = start_binary(
        &["--database-url", &db, "--instance-id", "replacement"],
        &[],
    );
    let b = server.finished(&id).await;
    server.kill();

    assert_eq!(b["status"], "completed", "{b}");
    assert_eq!(b["summary"]["succeeded"], 2, "{b}");
    assert_eq!(
        b["results"][0], quick_before,
        "the task that had ended keeps its outcome and is not run again"
    );
    assert!(b["results"][1]["output"]["slept_ms"].as_f64().unwrap() >= 1500.0);
    assert_eq!(b["shards"][0]["attempt"], 2);
    assert_eq!(b["shards"][0]["instance_id"], "replacement");
    assert_eq!(b["summary"]["lost"]["shards"], 1, "{b}");
}

#[tokio::test]
#[cfg_attr(
    not(fanout_test_backend = "sqlite"),
    ignore = "runs the binary on a SQLite file of its own: once, in the SQLite pass"
)]
async fn a_second_serve_on_the_same_sqlite_file_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("one.db").display());
    let mut first = start_binary(&["--database-url", &db], &[]);
    let second = run_binary(["serve", "--listen", "127.0.0.1:0", "--database-url", &db]).await;
    first.kill();

    assert!(!second.status.success());
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(said.contains("in use by another fanout process"), "{said}");
}

#[tokio::test]
#[cfg_attr(
    not(fanout_test_backend = "postgres"),
    ignore = "needs a store two instances share: PostgreSQL"
)]
async fn a_delete_sent_to_another_instance_cancels_the_batch_where_it_runs() {
    // Heartbeats every second, so the request is seen quickly.
    let (a, b) = two_instances().await;
    let id = a
        .submit(&json!({ "jobs": [{ "kind": "sleep", "duration_ms": 30000 }] }))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let asked = b.delete(&format!("/batches/{id}")).await;

    assert_eq!(asked.status, 202, "{}", asked.json);
    let done = a.finished(&id).await;
    assert_eq!(done["status"], "cancelled");
    assert_eq!(done["results"][0]["status"], "cancelled");
}

#[tokio::test]
#[cfg_attr(
    fanout_test_backend = "memory",
    ignore = "needs a durable store: memory:// keeps nothing across a restart"
)]
async fn results_errors_stores_only_failed_tasks_and_reads_back_the_same() {
    let app = spawn_app().await;
    let posted = app
        .post(
            &json!({ "results": "errors", "load": { "repeat": 3 }, "jobs": [
                { "kind": "sleep", "duration_ms": 1 },
                { "kind": "file", "path": "missing.txt" }
            ]}),
        )
        .await;
    let id = posted.json["id"].as_str().unwrap().to_owned();
    assert_eq!(posted.json["results"].as_array().unwrap().len(), 3);

    let app = app.restart().await;
    let got = app.get(&format!("/batches/{id}")).await.json;

    assert_eq!(
        got, posted.json,
        "the stored batch reads back as it was answered"
    );
    let indices: Vec<u64> = got["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indices, vec![1, 3, 5]);
    assert_eq!(got["summary"]["tasks"], 6);
    assert_eq!(got["summary"]["succeeded"], 3);
}
