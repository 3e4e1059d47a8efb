//! What a user new to fanout meets first: where a flag belongs, why a server cannot be
//! reached, and what an interrupted in-process run says.

use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::helpers::{spawn_app, spawn_app_with, spawn_target};

/// Runs the binary with these arguments (blocking, off the runtime's threads).
async fn fanout(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_fanout"))
            .args(args)
            .env_remove("FANOUT_ALLOW_NET")
            .env_remove("FANOUT_CA_FILE")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn allow_net_given_to_a_run_on_a_server_is_a_usage_error_naming_serve() {
    let app = spawn_app().await;

    let out = fanout(strings(&[
        "run",
        "--url",
        "http://127.0.0.1:9/",
        "--server",
        &app.base,
        "--allow-net",
        "127.0.0.1:9",
    ]))
    .await;

    assert_eq!(out.status.code(), Some(2));
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

    let out = fanout(strings(&[
        "run",
        "--url",
        &format!("{}/status/200", target.base),
        "-n",
        "1",
        "--server",
        &app.base,
        "--format",
        "json",
    ]))
    .await;

    assert_eq!(out.status.code(), Some(1), "the one task was refused");
    let batch: Value = serde_json::from_slice(&out.stdout).unwrap();
    let message = batch["results"][0]["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("start the server with `fanout serve --allow-net` 127.0.0.1:"),
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

    let out = fanout(strings(&[
        "run",
        "--url",
        "http://127.0.0.1:9/",
        "--server",
        &server,
    ]))
    .await;

    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(stderr.contains("connection refused"), "{stderr}");
    assert!(stderr.contains("fanout serve"), "{stderr}");
    assert!(!stderr.contains("error sending request"), "{stderr}");
}

#[cfg(unix)]
#[tokio::test]
async fn an_in_process_run_stopped_by_sigterm_says_its_process_stopped_not_a_server() {
    let target = spawn_target().await;
    let port = target.base.rsplit(':').next().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("batch.json");
    let batch = json!({
        "jobs": [{ "kind": "http", "url": format!("{}/slow/30000", target.base) }],
        "load": { "repeat": 2 }, "concurrency": 2
    });
    std::fs::write(&file, batch.to_string()).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_fanout"))
        .args(["run", &file.display().to_string(), "--format", "json"])
        .args(["--allow-net", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Both requests are in flight once the target has seen them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while target.hits.load(std::sync::atomic::Ordering::SeqCst) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the run never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();

    assert_eq!(out.status.code(), Some(1), "an interrupted run fails");
    let b: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(b["status"], "interrupted", "{b}");
    let message = b["results"][0]["error"]["message"].as_str().unwrap();
    assert!(message.contains("process"), "{message}");
    assert!(!message.contains("server"), "{message}");
}
