use serde_json::{Value, json};

use crate::helpers::{spawn_app, spawn_app_with};

fn assert_problem(res: &crate::helpers::Answer, status: u16, code: &str) {
    assert_eq!(res.status, status, "{}", res.json);
    assert_eq!(res.headers["content-type"], "application/problem+json");
    assert_eq!(res.json["code"], code);
    assert_eq!(res.json["status"], status);
    assert!(res.json["title"].is_string() && res.json["detail"].is_string());
}

#[tokio::test]
async fn malformed_json_is_a_400_problem() {
    let app = spawn_app().await;

    let res = app.post_raw("{\"jobs\": [", &[]).await;

    assert_problem(&res, 400, "malformed_json");
}

#[tokio::test]
async fn an_invalid_batch_is_a_422_listing_every_bad_field() {
    let app = spawn_app().await;

    let res = app
        .post(&json!({ "concurrency": 0, "jobs": [
            { "kind": "sleep", "duration_ms": 10 },
            { "kind": "teleport" },
            { "kind": "http", "url": "not a url" },
            { "kind": "sleep" }
        ]}))
        .await;

    assert_problem(&res, 422, "invalid_batch");
    let fields: Vec<&str> = res.json["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        vec![
            "concurrency",
            "jobs[1].kind",
            "jobs[2].url",
            "jobs[3].duration_ms"
        ]
    );
    for e in res.json["errors"].as_array().unwrap() {
        assert!(!e["message"].as_str().unwrap().is_empty());
    }
}

#[tokio::test]
async fn an_empty_job_list_is_a_422_not_a_silent_success() {
    let app = spawn_app().await;

    let res = app.post(&json!({ "jobs": [] })).await;

    assert_problem(&res, 422, "invalid_batch");
    assert_eq!(res.json["errors"][0]["field"], "jobs");
}

#[tokio::test]
async fn the_body_is_read_as_json_whatever_the_content_type() {
    let app = spawn_app().await;
    let body = json!({ "jobs": [{ "kind": "sleep", "duration_ms": 1 }] }).to_string();

    let form = app
        .post_raw(
            body.clone(),
            &[("content-type", "application/x-www-form-urlencoded")],
        )
        .await;
    let none = app.post_raw(body, &[]).await;

    assert_eq!(form.status, 201);
    assert_eq!(none.status, 201);
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_problem() {
    let app = spawn_app_with(|c| c.max_body_bytes = 1024).await;
    let jobs: Vec<Value> = (0..100)
        .map(|_| json!({ "kind": "sleep", "duration_ms": 1 }))
        .collect();

    let res = app.post(&json!({ "jobs": jobs })).await;

    assert_problem(&res, 413, "body_too_large");
}

#[tokio::test]
async fn too_many_jobs_is_a_413_problem() {
    let app = spawn_app_with(|c| c.max_jobs = 3).await;
    let jobs: Vec<Value> = (0..4)
        .map(|_| json!({ "kind": "sleep", "duration_ms": 1 }))
        .collect();

    let res = app.post(&json!({ "jobs": jobs })).await;

    assert_problem(&res, 413, "too_many_jobs");
}

#[tokio::test]
async fn an_unknown_batch_is_a_404_problem() {
    let app = spawn_app().await;

    let unknown = app
        .get("/batches/01a212db-e7e5-7596-900b-c796ce0bc979")
        .await;
    let garbage = app.get("/batches/not-an-id").await;

    assert_problem(&unknown, 404, "batch_not_found");
    assert_problem(&garbage, 404, "batch_not_found");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_problems() {
    let app = spawn_app().await;

    let route = app.get("/nothing").await;
    let method = crate::helpers::Answer::from(
        app.client
            .delete(format!("{}/healthz", app.base))
            .send()
            .await
            .unwrap(),
    )
    .await;

    assert_problem(&route, 404, "not_found");
    assert_problem(&method, 405, "method_not_allowed");
}

#[tokio::test]
async fn with_tokens_configured_batch_endpoints_need_one() {
    let app = spawn_app_with(|c| c.api_token = vec!["s3cret".into()]).await;
    let batch = json!({ "jobs": [{ "kind": "sleep", "duration_ms": 1 }] }).to_string();

    let missing = app.post_raw(batch.clone(), &[]).await;
    let wrong = app
        .post_raw(batch.clone(), &[("authorization", "Bearer nope")])
        .await;
    let right = app
        .post_raw(batch, &[("authorization", "Bearer s3cret")])
        .await;
    let health = app.get("/healthz").await;
    let docs = app.get("/openapi.json").await;

    assert_problem(&missing, 401, "unauthorized");
    assert!(
        missing.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    assert_problem(&wrong, 401, "unauthorized");
    assert_eq!(right.status, 201);
    assert_eq!(health.status, 200);
    assert_eq!(docs.status, 200);
}

#[tokio::test]
async fn valid_json_that_is_not_an_object_is_a_422_saying_a_batch_is_an_object() {
    let app = spawn_app().await;

    for body in ["[1,2]", "42", "null"] {
        let res = app.post_raw(body, &[]).await;

        assert_problem(&res, 422, "invalid_batch");
        let message = res.json["errors"][0]["message"].as_str().unwrap();
        assert!(
            message.contains("a batch is a JSON object"),
            "{body}: {message}"
        );
    }
}

#[tokio::test]
async fn a_bad_enum_value_and_a_mistyped_field_are_named_by_their_own_path() {
    let app = spawn_app().await;

    let res = app
        .post_raw(
            r#"{"mode":"race","jobs":[{"kind":"sleep","duration_ms":1}]}"#,
            &[],
        )
        .await;
    assert_problem(&res, 422, "invalid_batch");
    assert_eq!(res.json["errors"][0]["field"], "mode");

    let res = app
        .post_raw(r#"{"jobs":[{"kind":"sleep","duration_ms":"100"}]}"#, &[])
        .await;
    assert_eq!(res.json["errors"][0]["field"], "jobs[0].duration_ms");

    let res = app
        .post_raw(r#"{"jobs":[{"kind":"sleep","duration_ms":1e23}]}"#, &[])
        .await;
    assert_eq!(res.json["errors"][0]["field"], "jobs[0].duration_ms");
    let message = res.json["errors"][0]["message"].as_str().unwrap();
    assert_eq!(message, "must be between 0 and 86400000 (one day)");
}

#[tokio::test]
async fn an_unknown_list_parameter_is_a_422_naming_it() {
    let app = spawn_app().await;

    let res = app.get("/batches?statut=failed").await;

    assert_problem(&res, 422, "invalid_query");
    assert_eq!(res.json["errors"][0]["field"], "statut");
}

#[tokio::test]
async fn a_client_that_sends_its_whole_body_first_still_reads_the_413() {
    let app = spawn_app_with(|c| c.max_body_bytes = 1024).await;
    let addr = app.base.trim_start_matches("http://").to_owned();

    // As Python's urllib does: the whole body is written before the answer is read.
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let body = format!(r#"{{"jobs":[],"label":"{}"}}"#, "x".repeat(2 * 1024 * 1024));
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        let head = format!(
            "POST /batches HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream
            .write_all(body.as_bytes())
            .expect("the server reads the body it refuses");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    })
    .await
    .unwrap();

    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("body_too_large"), "{answer}");
}
