use std::os::unix::fs::symlink;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{Server, TestApp, spawn_app};

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

/// Every way out of the root, and every kind of thing that is not a regular file: the table
/// says what each must end as; nothing outside the root is ever read.
#[tokio::test]
async fn the_path_suite_never_reads_outside_the_root() {
    let app = spawn_app().await;
    let root = app.root();
    let outside = app.files.path();
    std::fs::write(outside.join("secret.txt"), "top secret").unwrap();
    std::fs::create_dir_all(root.join("a/b/c")).unwrap();
    std::fs::write(root.join("ok.txt"), "fine").unwrap();
    std::fs::write(root.join("a/b/c/deep.txt"), "deep").unwrap();
    symlink(outside.join("secret.txt"), root.join("abs-out")).unwrap();
    symlink("../secret.txt", root.join("rel-out")).unwrap();
    symlink(outside, root.join("dir-out")).unwrap();
    symlink("/proc/self/environ", root.join("environ")).unwrap();
    symlink("/dev/zero", root.join("zero")).unwrap();
    symlink("/etc", root.join("etc")).unwrap();
    symlink(root.join("ok.txt"), root.join("abs-in")).unwrap();
    symlink("a/b/c/deep.txt", root.join("rel-in")).unwrap();
    symlink("loop2", root.join("loop1")).unwrap();
    symlink("loop1", root.join("loop2")).unwrap();
    symlink("rel-out", root.join("chain-out")).unwrap();
    let fifo = root.join("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let long = "x".repeat(300);
    let deep_long = vec!["y"; 3000].join("/");
    let secret = outside.join("secret.txt").display().to_string();

    let table: Vec<(String, &str)> = vec![
        (secret.clone(), "forbidden"),
        ("/etc/passwd".into(), "forbidden"),
        ("/proc/self/environ".into(), "forbidden"),
        ("//etc/passwd".into(), "forbidden"),
        ("../secret.txt".into(), "forbidden"),
        ("a/../../secret.txt".into(), "forbidden"),
        ("a/b/c/../../../../secret.txt".into(), "forbidden"),
        ("./../secret.txt".into(), "forbidden"),
        ("abs-out".into(), "forbidden"),
        ("rel-out".into(), "forbidden"),
        ("chain-out".into(), "forbidden"),
        ("dir-out/secret.txt".into(), "forbidden"),
        ("environ".into(), "forbidden"),
        ("zero".into(), "forbidden"),
        ("etc/passwd".into(), "forbidden"),
        ("abs-in".into(), "forbidden"),
        ("fifo".into(), "invalid"),
        ("a".into(), "invalid"),
        (".".into(), "invalid"),
        ("ok.txt\0.png".into(), "invalid"),
        (long.clone(), "invalid"),
        (deep_long, "invalid"),
        ("loop1".into(), "invalid"),
        ("ok.txt/".into(), "not_found"),
        ("%2e%2e/secret.txt".into(), "not_found"),
        ("..%2fsecret.txt".into(), "not_found"),
        ("...".into(), "not_found"),
        ("a/b/c/../../../ok.txt".into(), "succeeded"),
        ("rel-in".into(), "succeeded"),
        ("./a/./b/c/deep.txt".into(), "succeeded"),
    ];
    assert!(table.len() >= 25);
    let jobs: Vec<Value> = table
        .iter()
        .map(|(path, _)| json!({ "kind": "file", "path": path, "timeout_ms": 5000 }))
        .collect();

    let res = app
        .post(&json!({ "return_exceptions": true, "jobs": jobs }))
        .await;

    assert_eq!(res.status, 201, "{}", res.json);
    for ((path, want), r) in table.iter().zip(res.json["results"].as_array().unwrap()) {
        let shown: String = path.chars().take(60).collect();
        let got = if r["status"] == "succeeded" {
            "succeeded"
        } else {
            r["error"]["code"].as_str().unwrap()
        };
        assert_eq!(got, *want, "{shown:?}: {r}");
        let text = r.to_string();
        assert!(!text.contains("top secret"), "{shown:?} read the secret");
        assert!(
            !text.contains(&secret),
            "{shown:?}: a server path in the answer"
        );
        assert!(!text.contains("PATH="), "{shown:?} read an environment");
    }
}

#[tokio::test]
async fn a_missing_files_root_is_made_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("made").join("at-start");
    let wanted = root.clone();
    let app = crate::helpers::spawn_app_with(move |c| c.files_root = wanted).await;

    assert!(root.is_dir(), "{} was not made", root.display());
    std::fs::write(root.join("hello.txt"), "hi").unwrap();
    let res = app
        .post(&json!({ "jobs": [{ "kind": "file", "path": "hello.txt" }] }))
        .await;
    assert_eq!(
        res.json["results"][0]["status"], "succeeded",
        "{}",
        res.json
    );
}

#[tokio::test]
async fn a_files_root_that_appears_after_start_is_found_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the root's parent should be: the root cannot be made at start.
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, "not a folder").unwrap();
    let root = blocker.join("root");
    let wanted = root.clone();
    let app = crate::helpers::spawn_app_with(move |c| c.files_root = wanted).await;
    let job =
        json!({ "return_exceptions": true, "jobs": [{ "kind": "file", "path": "hello.txt" }] });

    let before = app.post(&job).await;
    let error = &before.json["results"][0]["error"];
    assert_eq!(error["code"], "not_found", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains(&root.display().to_string()) && message.contains("create that folder"),
        "{message}"
    );

    std::fs::remove_file(&blocker).unwrap();
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("hello.txt"), "hi").unwrap();
    let after = app.post(&job).await;
    assert_eq!(
        after.json["results"][0]["status"], "succeeded",
        "{}",
        after.json
    );
}

#[test]
fn log_lines_carry_no_colour_codes_when_stderr_is_not_a_terminal() {
    // The log format left to its default (and no `FANOUT_LOG_FORMAT`, which the binary never
    // sees from the tests' shell).
    let mut server = Server::start(&["--database-url", "memory://"], &[]);
    let seen = server.log_lines();
    server.kill();
    assert!(seen.iter().any(|l| l.contains("listening on")), "{seen:?}");
    assert!(seen.iter().all(|l| !l.contains('\u{1b}')), "{seen:?}");
}
