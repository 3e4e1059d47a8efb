use std::os::unix::fs::symlink;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{TestApp, spawn_app};

async fn read(app: &TestApp, job: Value) -> Value {
    let res = app
        .post(&json!({ "return_exceptions": true, "jobs": [job] }))
        .await;
    assert_eq!(res.status, 201, "{}", res.json);
    res.json["results"][0].clone()
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn a_text_file_is_read_as_utf8_with_its_hash() {
    let app = spawn_app().await;
    std::fs::create_dir(app.root().join("sub")).unwrap();
    std::fs::write(app.root().join("sub/hello.txt"), "héllo\n").unwrap();

    let r = read(&app, json!({ "kind": "file", "path": "sub/hello.txt" })).await;

    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(r["output"]["content"], "héllo\n");
    assert_eq!(r["output"]["bytes"], 7);
    assert_eq!(r["output"]["truncated"], false);
    assert_eq!(r["output"]["sha256"], sha256_hex("héllo\n".as_bytes()));
}

#[tokio::test]
async fn a_binary_file_is_read_as_base64() {
    let app = spawn_app().await;
    std::fs::write(app.root().join("b.bin"), [0u8, 255, 1]).unwrap();

    let r = read(
        &app,
        json!({ "kind": "file", "path": "b.bin", "encoding": "base64" }),
    )
    .await;

    assert_eq!(r["output"]["content"], "AP8B");
}

#[tokio::test]
async fn a_binary_file_read_as_utf8_is_invalid() {
    let app = spawn_app().await;
    std::fs::write(app.root().join("b.bin"), [0u8, 255, 1]).unwrap();

    let r = read(&app, json!({ "kind": "file", "path": "b.bin" })).await;

    assert_eq!(r["error"]["code"], "invalid");
}

#[tokio::test]
async fn encoding_none_gives_size_and_hash_only() {
    let app = spawn_app().await;
    let data = vec![7u8; 5000];
    std::fs::write(app.root().join("big.bin"), &data).unwrap();

    let r = read(
        &app,
        json!({ "kind": "file", "path": "big.bin", "encoding": "none" }),
    )
    .await;

    assert_eq!(r["output"]["bytes"], 5000);
    assert_eq!(r["output"]["sha256"], sha256_hex(&data));
    assert!(r["output"].get("content").is_none());
}

#[tokio::test]
async fn max_bytes_truncates_the_read() {
    let app = spawn_app().await;
    std::fs::write(app.root().join("t.txt"), "abcdefghij").unwrap();

    let r = read(
        &app,
        json!({ "kind": "file", "path": "t.txt", "max_bytes": 4 }),
    )
    .await;

    assert_eq!(r["status"], "succeeded");
    assert_eq!(r["output"]["content"], "abcd");
    assert_eq!(r["output"]["truncated"], true);
    assert_eq!(r["output"]["sha256"], sha256_hex(b"abcd"));
}

#[tokio::test]
async fn a_missing_file_is_not_found() {
    let app = spawn_app().await;

    let r = read(&app, json!({ "kind": "file", "path": "nothing/here.txt" })).await;

    assert_eq!(r["status"], "failed");
    assert_eq!(r["error"]["code"], "not_found");
}

#[tokio::test]
async fn paths_leading_outside_the_root_are_forbidden_and_never_read() {
    let app = spawn_app().await;
    // A secret beside the root, reachable by every escape below if the guard failed.
    std::fs::write(app.files.path().join("secret.txt"), "top secret").unwrap();
    std::fs::create_dir(app.root().join("inner")).unwrap();
    symlink(
        app.files.path().join("secret.txt"),
        app.root().join("link-out"),
    )
    .unwrap();
    symlink(app.files.path(), app.root().join("dir-out")).unwrap();
    symlink("/etc/passwd", app.root().join("passwd")).unwrap();
    symlink("../../secret.txt", app.root().join("inner/rel-out")).unwrap();

    let secret = app.files.path().join("secret.txt").display().to_string();
    for path in [
        "../secret.txt",
        "inner/../../secret.txt",
        secret.as_str(),
        "/etc/passwd",
        "link-out",
        "dir-out/secret.txt",
        "passwd",
        "inner/rel-out",
    ] {
        let r = read(&app, json!({ "kind": "file", "path": path })).await;
        assert_eq!(r["status"], "failed", "{path}: {r}");
        assert_eq!(r["error"]["code"], "forbidden", "{path}: {r}");
        assert!(r.get("output").is_none(), "{path}: nothing is read");
        assert!(
            !r["error"]["message"].as_str().unwrap().contains(&secret),
            "no server paths in messages"
        );
    }
}

#[tokio::test]
async fn a_symlink_that_stays_inside_the_root_is_followed() {
    let app = spawn_app().await;
    std::fs::write(app.root().join("real.txt"), "inside").unwrap();
    symlink("real.txt", app.root().join("alias.txt")).unwrap();

    let r = read(&app, json!({ "kind": "file", "path": "alias.txt" })).await;

    assert_eq!(r["output"]["content"], "inside");
}

#[tokio::test]
async fn directories_and_fifos_are_invalid_and_do_not_hang() {
    let app = spawn_app().await;
    std::fs::create_dir(app.root().join("dir")).unwrap();
    let fifo = app.root().join("pipe");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());

    let dir = read(&app, json!({ "kind": "file", "path": "dir" })).await;
    let pipe = read(
        &app,
        json!({ "kind": "file", "path": "pipe", "timeout_ms": 5000 }),
    )
    .await;

    assert_eq!(dir["error"]["code"], "invalid");
    assert_eq!(pipe["error"]["code"], "invalid", "{pipe}");
}
