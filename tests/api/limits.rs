//! Limits and authentication as a client meets them, and the binary's own behaviour: token
//! files, tokens kept out of logs, proxies in the environment ignored.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::helpers::{spawn_app_with, spawn_target, start_binary};

#[tokio::test]
async fn a_batch_beyond_the_servers_queue_gets_429_with_retry_after() {
    let app = spawn_app_with(|c| {
        c.max_concurrency = 2;
        c.max_queue = 2;
    })
    .await;
    let long = |n: usize| {
        json!({ "jobs": vec![json!({ "kind": "sleep", "duration_ms": 1500 }); n] }).to_string()
    };

    let first = app.post_raw(long(3), &[("prefer", "respond-async")]).await;
    let second = app.post_raw(long(2), &[("prefer", "respond-async")]).await;
    let fits = app.post_raw(long(1), &[("prefer", "respond-async")]).await;
    let never = app.post_raw(long(5), &[]).await;

    assert_eq!(first.status, 202);
    assert_eq!(second.status, 429, "{}", second.json);
    assert_eq!(second.json["code"], "queue_full");
    assert_eq!(second.headers["retry-after"], "1");
    assert_eq!(second.headers["content-type"], "application/problem+json");
    assert_eq!(fits.status, 202, "one more task still fits");
    assert_eq!(
        never.status, 413,
        "a batch larger than the whole bound can never run"
    );
    app.finished(first.json["id"].as_str().unwrap()).await;
    let later = app.post_raw(long(2), &[("prefer", "respond-async")]).await;
    assert_eq!(later.status, 202, "room comes back when batches end");
}

#[tokio::test]
async fn jobs_without_a_timeout_get_the_servers_cap() {
    let app = spawn_app_with(|c| c.max_job_timeout = Duration::from_millis(200)).await;

    let res = app
        .post(&json!({ "return_exceptions": true, "jobs": [{ "kind": "sleep", "duration_ms": 5000 }] }))
        .await;
    let over = app
        .post(&json!({ "jobs": [{ "kind": "sleep", "duration_ms": 5, "timeout_ms": 1000 }] }))
        .await;

    assert_eq!(
        res.json["results"][0]["status"], "timed_out",
        "{}",
        res.json
    );
    assert_eq!(over.status, 422);
    assert_eq!(over.json["errors"][0]["field"], "jobs[0].timeout_ms");
}

#[tokio::test]
async fn a_batch_is_cut_at_the_servers_duration_cap() {
    let app = spawn_app_with(|c| c.max_batch_duration = Duration::from_millis(300)).await;

    let wait = app
        .post(&json!({ "mode": "wait", "jobs": [{ "kind": "sleep", "duration_ms": 10 }, { "kind": "sleep", "duration_ms": 5000 }] }))
        .await;
    let over = app
        .post(&json!({ "timeout_ms": 1000, "jobs": [{ "kind": "sleep", "duration_ms": 1 }] }))
        .await;

    assert_eq!(wait.status, 201);
    let done = app.finished(wait.json["id"].as_str().unwrap()).await;
    assert_eq!(done["done"][1]["status"], "timed_out", "{done}");
    assert!(done["wall_ms"].as_f64().unwrap() < 3000.0);
    assert_eq!(over.status, 422);
    assert_eq!(over.json["errors"][0]["field"], "timeout_ms");
}

#[tokio::test]
async fn while_draining_new_batches_get_503_and_running_ones_stay_readable() {
    let app = spawn_app_with(|c| c.shutdown_grace = Duration::from_secs(5)).await;
    let client = app.client.clone();
    let base = app.base.clone();
    let id = app
        .post_raw(
            json!({ "jobs": [{ "kind": "sleep", "duration_ms": 1000 }] }).to_string(),
            &[("prefer", "respond-async")],
        )
        .await
        .json["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let stopping = tokio::spawn(app.stop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    let post = client
        .post(format!("{base}/batches"))
        .body(json!({ "jobs": [{ "kind": "sleep", "duration_ms": 1 }] }).to_string())
        .send()
        .await
        .unwrap();
    let get = client
        .get(format!("{base}/batches/{id}"))
        .send()
        .await
        .unwrap();
    let (ready_status, post_status, get_status) = (ready.status(), post.status(), get.status());
    let post_type = post.headers()["content-type"].to_str().unwrap().to_owned();
    stopping.await.unwrap();

    assert_eq!(ready_status, 503);
    assert_eq!(post_status, 503);
    assert_eq!(post_type, "application/problem+json");
    assert_eq!(
        get_status, 200,
        "a running batch stays readable while the server drains"
    );
}

#[tokio::test]
async fn tokens_from_a_digest_file_work_and_no_token_reaches_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let digest: String = Sha256::digest(b"file-token-123")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let path = dir.path().join("tokens");
    std::fs::write(&path, format!("# ops team\n{digest}\n")).unwrap();
    let mut server = start_binary(
        &[
            "--database-url",
            "memory://",
            "--api-token-file",
            path.to_str().unwrap(),
            "--api-token",
            "flag-token-456",
        ],
        &[("RUST_LOG", "trace")],
    );
    let (client, base) = (&server.client, &server.base);
    let batch = json!({ "jobs": [{ "kind": "sleep", "duration_ms": 1 }] }).to_string();
    let send = |token: Option<&'static str>| {
        let mut req = client.post(format!("{base}/batches")).body(batch.clone());
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        req.send()
    };

    let none = send(None).await.unwrap().status();
    let wrong = send(Some("wrong-token-789")).await.unwrap().status();
    let from_file = send(Some("file-token-123")).await.unwrap().status();
    let from_flag = send(Some("flag-token-456")).await.unwrap().status();
    let health = client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap()
        .status();
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.kill();
    let log = server.log_lines();

    assert_eq!((none.as_u16(), wrong.as_u16()), (401, 401));
    assert_eq!((from_file.as_u16(), from_flag.as_u16()), (201, 201));
    assert_eq!(health.as_u16(), 200);
    assert!(log.len() > 5, "trace logging was on: {log:?}");
    for secret in ["file-token-123", "flag-token-456", "wrong-token-789"] {
        assert!(
            !log.iter().any(|l| l.contains(secret)),
            "a token reached the logs: {secret}"
        );
    }
}

#[tokio::test]
async fn proxy_variables_in_the_environment_are_ignored() {
    let target = spawn_target().await;
    let proxy = spawn_target().await;
    let port = target.base.rsplit(':').next().unwrap().to_owned();
    let proxy_url = proxy.base.clone();
    let mut server = start_binary(
        &[
            "--database-url",
            "memory://",
            "--allow-net",
            &format!("127.0.0.1:{port}"),
        ],
        &[
            ("HTTP_PROXY", &proxy_url),
            ("http_proxy", &proxy_url),
            ("HTTPS_PROXY", &proxy_url),
            ("ALL_PROXY", &proxy_url),
            ("NO_PROXY", ""),
        ],
    );

    let body = server
        .post(&json!({ "return_exceptions": true, "jobs": [
            { "kind": "http", "url": format!("{}/hello", target.base) },
            { "kind": "http", "url": "http://169.254.169.254/latest/meta-data/" }
        ]}))
        .await
        .json;
    server.kill();

    assert_eq!(body["results"][0]["status"], "succeeded", "{body}");
    assert_eq!(body["results"][1]["error"]["code"], "forbidden");
    assert_eq!(target.hits.load(Ordering::SeqCst), 1);
    assert_eq!(proxy.hits.load(Ordering::SeqCst), 0, "the proxy was used");
}
