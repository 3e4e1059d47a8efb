//! A verdict CI can trust: a run stopped part-way fails, refusals say how to fix them, and
//! latency counts only tasks that reached their target.

use std::process::Output;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{
    assert_exit, batch_file, output_of, poll_until, run_batch, sigterm, spawn_app, spawn_binary,
    spawn_target, start_binary,
};

#[tokio::test]
async fn a_load_run_cancelled_part_way_fails_its_verdict_with_a_completed_check() {
    let app = spawn_app().await;
    let res = app
        .post_async(&json!({
            "jobs": [{ "kind": "sleep", "duration_ms": 20 }],
            "load": { "repeat": 4000 }, "concurrency": 4,
            "thresholds": { "p95_ms": 10000, "max_error_rate": 0.5 }
        }))
        .await;
    let id = res.json["id"].as_str().unwrap().to_owned();
    // Cancelled once some tasks have run, or after the wait in any case.
    let _ = poll_until(Duration::from_secs(20), || async {
        let now = app.get(&format!("/batches/{id}")).await.json;
        (now["summary"]["succeeded"].as_u64().unwrap_or(0) >= 20).then_some(())
    })
    .await;

    let cancelled = app.delete(&format!("/batches/{id}")).await;

    assert_eq!(cancelled.status, 200, "{}", cancelled.json);
    let verdict = &cancelled.json["verdict"];
    assert_eq!(verdict["passed"], false, "{verdict}");
    let checks = verdict["checks"].as_array().unwrap();
    // The thresholds themselves held: only the run's being cut short fails it.
    assert!(checks[..2].iter().all(|c| c["passed"] == true), "{verdict}");
    let completed = checks
        .iter()
        .find(|c| c["name"] == "completed")
        .expect("a completed check");
    assert_eq!(completed["passed"], false);
    assert_eq!(completed["limit"], 4000.0);
    let ran = completed["actual"].as_f64().unwrap();
    assert!((20.0..4000.0).contains(&ran), "{completed}");
    let detail = completed["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(&format!("{ran} of 4000 tasks ran, ")) && detail.ends_with(" cancelled"),
        "{detail}"
    );
}

#[tokio::test]
async fn a_run_refused_by_the_guard_fails_and_says_what_to_add() {
    let target = spawn_target().await;
    let port = target.base.rsplit(':').next().unwrap().to_owned();
    let batch = json!({
        "jobs": [{ "kind": "http", "url": format!("{}/hello", target.base) }],
        "load": { "repeat": 20 }, "concurrency": 4,
        "thresholds": { "p95_ms": 200 }
    });

    // Without --allow-net: the target is on loopback, which the guard refuses.
    let out = run_batch(&batch, &[]).await;

    assert_exit(&out, 1);
    let text = String::from_utf8_lossy(&out.stdout);
    let fix = format!("add --allow-net 127.0.0.1:{port}");
    assert!(text.contains("hint"), "{text}");
    assert!(text.contains(&fix), "{text}");
    assert!(text.contains("forbidden (first): 127.0.0.1:"), "{text}");
    // Nothing reached the target, so there is no latency to pass a latency threshold with.
    assert!(text.contains("[FAIL] p95_ms"), "{text}");
    assert!(!text.contains("[ok] p95_ms"), "{text}");
    assert!(text.contains("throughput 0 tasks/s"), "{text}");

    let out = run_batch(&batch, &["--format", "junit"]).await;
    let xml = String::from_utf8_lossy(&out.stdout);
    let doc = roxmltree::Document::parse(&xml).expect("valid XML");
    let failure = doc
        .descendants()
        .find(|n| n.has_tag_name("failure"))
        .expect("a failure");
    assert!(failure.text().unwrap_or_default().contains(&fix), "{xml}");
}

#[tokio::test]
async fn latency_and_throughput_count_only_tasks_that_reached_their_target() {
    let app = spawn_app().await;
    let target = spawn_target().await;

    // 127.0.0.2 is loopback but not allowed (the tests allow 127.0.0.1 only): refused.
    let res = app
        .post(&json!({
            "return_exceptions": true,
            "jobs": [
                { "kind": "http", "url": format!("{}/slow/40", target.base) },
                { "kind": "http", "url": "http://127.0.0.2:9/" }
            ]
        }))
        .await;

    assert_eq!(res.status, 201, "{}", res.json);
    let s = &res.json["summary"];
    assert_eq!(
        (s["succeeded"].as_u64(), s["failed"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(s["errors"]["forbidden"], 1);
    let min = s["duration_ms"]["min"].as_f64().unwrap();
    assert!(min >= 35.0, "the refused task's time is not a latency: {s}");
    assert!(
        s["first_errors"]["forbidden"]
            .as_str()
            .unwrap()
            .contains("add --allow-net 127.0.0.2:9"),
        "{s}"
    );
}

#[tokio::test]
async fn a_refused_connection_reads_as_one_sentence_on_either_path() {
    let app = spawn_app().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let job = json!({ "kind": "http", "url": format!("http://127.0.0.1:{closed}/") });

    let plain = app
        .post(&json!({ "return_exceptions": true, "jobs": [job] }))
        .await;
    let load = app
        .post(&json!({ "load": { "repeat": 1 }, "jobs": [job] }))
        .await;

    for res in [plain, load] {
        let error = &res.json["results"][0]["error"];
        assert_eq!(error["code"], "connect", "{error}");
        let message = error["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("connecting to 127.0.0.1:{closed}: ")),
            "{message}"
        );
        assert!(!message.contains("error sending request"), "{message}");
    }
}

/// Starts `fanout run` on the batch, sends it SIGTERM once `after` has passed, and waits for
/// it to exit.
async fn run_and_interrupt(batch: &Value, extra: &[&str], after: Duration) -> Output {
    let (_dir, file) = batch_file(batch);
    let child = spawn_binary(["run", file.as_str()].iter().chain(extra));
    tokio::time::sleep(after).await;
    sigterm(child.id());
    output_of(child).await
}

#[tokio::test]
async fn sigterm_stops_an_in_process_run_reports_what_ran_and_exits_1() {
    let target = spawn_target().await;
    let port = target.base.rsplit(':').next().unwrap().to_owned();
    let batch = json!({
        "jobs": [{ "kind": "http", "url": format!("{}/slow/50", target.base) }],
        "load": { "repeat": 2000 }, "concurrency": 4,
        "thresholds": { "p95_ms": 10000 }
    });
    let allow = format!("127.0.0.1:{port}");
    let report = tempfile::NamedTempFile::new().unwrap();
    let report_path = report.path().display().to_string();

    let out = run_and_interrupt(
        &batch,
        &[
            "--allow-net",
            &allow,
            "--format",
            "junit",
            "--out",
            &report_path,
        ],
        Duration::from_millis(1500),
    )
    .await;

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("stopping"), "{stderr}");
    // The text summary on stderr: the batch was interrupted, and the verdict says why.
    assert!(stderr.contains("interrupted (gather mode)"), "{stderr}");
    assert!(stderr.contains("[FAIL] completed"), "{stderr}");
    let xml = std::fs::read_to_string(report.path()).unwrap();
    assert!(xml.contains("name=\"completed\""), "{xml}");
    assert!(xml.contains("of 2000 tasks ran"), "{xml}");
}

#[tokio::test]
async fn sigterm_of_a_remote_run_cancels_the_batch_on_the_server_and_exits_1() {
    let app = crate::helpers::spawn_app().await;
    let batch = json!({
        "jobs": [{ "kind": "sleep", "duration_ms": 50 }],
        "load": { "repeat": 2000 }, "concurrency": 4,
        "thresholds": { "p95_ms": 10000 }
    });

    let out = run_and_interrupt(
        &batch,
        &["--server", &app.base],
        Duration::from_millis(1500),
    )
    .await;

    let text = String::from_utf8_lossy(&out.stdout);
    assert_exit(&out, 1);
    assert!(text.contains("cancelled (gather mode)"), "{text}");
    assert!(text.contains("[FAIL] completed"), "{text}");
    let list = app.get("/batches").await.json;
    assert_eq!(list["items"][0]["status"], "cancelled", "{list}");
}

#[tokio::test]
async fn an_open_model_run_short_of_slots_says_the_concurrency_it_would_need() {
    let target = spawn_target().await;
    let port = target.base.rsplit(':').next().unwrap().to_owned();
    // 100 tasks a second, each taking 100 ms, need about 10 in flight; 2 slots cannot carry it.
    let batch = json!({
        "jobs": [{ "kind": "http", "url": format!("{}/slow/100", target.base) }],
        "load": { "rate_per_s": 100, "duration_ms": 500 }, "concurrency": 2
    });
    let allow = format!("127.0.0.1:{port}");

    let out = run_batch(&batch, &["--allow-net", &allow, "--format", "json"]).await;
    let b: Value = serde_json::from_slice(&out.stdout).unwrap();
    let late = &b["summary"]["late"];
    assert!(late["count"].as_u64().unwrap() > 0, "{late}");
    let needed = late["concurrency_needed"]
        .as_u64()
        .expect("a needed concurrency");
    assert!((8..=100).contains(&needed), "{late}");

    let out = run_batch(&batch, &["--allow-net", &allow]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("needs a concurrency of about"), "{text}");
}

#[tokio::test]
async fn an_open_model_run_with_slots_to_spare_gives_no_concurrency_hint() {
    let app = spawn_app().await;
    let res = app
        .post(&json!({
            "jobs": [{ "kind": "sleep", "duration_ms": 5 }],
            "load": { "rate_per_s": 50, "duration_ms": 300 }, "concurrency": 20
        }))
        .await;
    assert!(
        res.json["summary"]["late"]["concurrency_needed"].is_null(),
        "{}",
        res.json["summary"]
    );
}

#[tokio::test]
async fn a_server_that_drains_while_a_remote_run_follows_it_is_waited_for() {
    let mut server = start_binary(
        &["--database-url", "memory://", "--shutdown-grace", "10s"],
        &[],
    );
    let batch = json!({
        "jobs": [{ "kind": "sleep", "duration_ms": 100 }],
        "load": { "repeat": 20 }, "concurrency": 2,
        "thresholds": { "max_error_rate": 0 }
    });
    let (_dir, file) = batch_file(&batch);
    let run = spawn_binary(["run", &file, "--server", &server.base]);

    // The server is told to stop while the run (about a second) follows its batch: it drains,
    // letting the batch end, then exits.
    tokio::time::sleep(Duration::from_millis(400)).await;
    server.terminate();
    let out = output_of(run).await;
    server.wait();

    let text = String::from_utf8_lossy(&out.stdout);
    assert_exit(&out, 0);
    assert!(text.contains("20 total, 20 succeeded"), "{text}");
}

#[tokio::test]
async fn a_run_its_deadline_cut_short_fails_with_the_tasks_that_never_started() {
    let app = spawn_app().await;
    let jobs: Vec<Value> = (0..4)
        .map(|_| json!({ "kind": "sleep", "duration_ms": 500 }))
        .collect();

    let res = app
        .post(&json!({
            "jobs": jobs, "concurrency": 1, "timeout_ms": 200,
            "thresholds": { "p95_ms": 10000 }
        }))
        .await;

    assert_eq!(res.status, 201, "{}", res.json);
    assert_eq!(res.json["summary"]["timed_out"], 4);
    assert_eq!(res.json["summary"]["never_started"], 3);
    let verdict = &res.json["verdict"];
    assert_eq!(verdict["passed"], false, "{verdict}");
    let completed = &verdict["checks"][1];
    assert_eq!(completed["name"], "completed");
    assert_eq!(
        completed["detail"],
        "1 of 4 tasks ran, 3 never started before the deadline"
    );
}

#[tokio::test]
async fn a_target_that_drops_connections_it_accepted_is_counted_as_reached() {
    let app = spawn_app().await;
    // Accepts, reads the request, and closes without answering: an overloaded target.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(20) {
            let mut stream = stream.unwrap();
            let mut buf = [0u8; 1024];
            let _ = std::io::Read::read(&mut stream, &mut buf);
        }
    });

    let res = app
        .post(&json!({
            "jobs": [{ "kind": "http", "url": format!("http://127.0.0.1:{port}/") }],
            "load": { "repeat": 5 }, "concurrency": 1
        }))
        .await;

    let s = &res.json["summary"];
    assert_eq!(s["errors"]["connect"], 5, "{s}");
    assert!(
        s["duration_ms"].is_object(),
        "dropped connections had reached it: {s}"
    );
}
