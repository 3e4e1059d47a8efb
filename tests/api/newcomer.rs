//! What a user new to fanout meets first: where a flag belongs, why a server cannot be
//! reached, and what an interrupted in-process run says.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{
    assert_exit, batch_file, output_of, poll_until, run_binary, sigterm, spawn_app, spawn_app_with,
    spawn_binary, spawn_target,
};

#[tokio::test]
async fn allow_net_given_to_a_run_on_a_server_is_a_usage_error_naming_serve() {
    let app = spawn_app().await;

    let out = run_binary([
        "run",
        "--url",
        "http://127.0.0.1:9/",
        "--server",
        &app.base,
        "--allow-net",
        "127.0.0.1:9",
    ])
    .await;

    assert_exit(&out, 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("fanout serve --allow-net 127.0.0.1:9"),
        "{stderr}"
    );
    let listed = app.get("/batches").await.json;
    assert_eq!(listed["items"], json!([]), "nothing was submitted");
}

#[tokio::test]
async fn the_guards_hint_in_a_run_on_a_server_says_to_start_the_server_with_allow_net() {
    // A server that opens nothing beyond public addresses.
    let app = spawn_app_with(|c| c.allow_net.clear()).await;
    let target = spawn_target().await;
    let url = format!("{}/status/200", target.base);

    let out = run_binary([
        "run", "--url", &url, "-n", "1", "--server", &app.base, "--format", "json",
    ])
    .await;

    assert_exit(&out, 1);
    let batch: Value = serde_json::from_slice(&out.stdout).unwrap();
    let message = batch["results"][0]["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("start the server with `fanout serve --allow-net 127.0.0.1:"),
        "{message}"
    );
    assert!(!message.contains("add --allow-net"), "{message}");
}

#[tokio::test]
async fn an_unreachable_server_is_named_with_connection_refused() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = format!("http://127.0.0.1:{port}");

    let out = run_binary(["run", "--url", "http://127.0.0.1:9/", "--server", &server]).await;

    assert_exit(&out, 2);
    let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(stderr.contains("connection refused"), "{stderr}");
    assert!(stderr.contains("fanout serve"), "{stderr}");
    assert!(!stderr.contains("error sending request"), "{stderr}");
}

#[tokio::test]
async fn an_in_process_run_stopped_by_sigterm_says_its_process_stopped_not_a_server() {
    let target = spawn_target().await;
    let port = target.base.rsplit(':').next().unwrap().to_owned();
    let (_dir, file) = batch_file(&json!({
        "jobs": [{ "kind": "http", "url": format!("{}/slow/30000", target.base) }],
        "load": { "repeat": 2 }, "concurrency": 2
    }));
    let allow = format!("127.0.0.1:{port}");
    let child = spawn_binary(["run", &file, "--format", "json", "--allow-net", &allow]);
    // Both requests are in flight once the target has seen them.
    let started = poll_until(Duration::from_secs(20), || async {
        (target.hits.load(Ordering::SeqCst) >= 2).then_some(())
    })
    .await;
    assert!(started.is_some(), "the run never started");

    sigterm(child.id());
    let out = output_of(child).await;

    assert_exit(&out, 1);
    let b: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(b["status"], "interrupted", "{b}");
    let message = b["results"][0]["error"]["message"].as_str().unwrap();
    assert!(message.contains("process"), "{message}");
    assert!(!message.contains("server"), "{message}");
}
