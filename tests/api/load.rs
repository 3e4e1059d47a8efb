//! Load runs through the API: duration mode, the open model (`rate_per_s`) and the warm-up.
//! Time is read from what the batch records (start timestamps, lateness), with generous
//! margins; targets are local servers.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::helpers::{ended, poll_until, spawn_app, spawn_app_with, spawn_target, ts};

fn starts(b: &Value) -> Vec<DateTime<Utc>> {
    let mut s: Vec<_> = b["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| ts(&t["timing"]["started_at"]))
        .collect();
    s.sort();
    s
}

fn ms_between(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    (b - a).num_microseconds().unwrap() as f64 / 1000.0
}

#[tokio::test]
async fn a_duration_run_keeps_starting_tasks_until_the_time_is_up_then_stops() {
    let app = spawn_app().await;

    let res = app
        .post(&json!({
            "jobs": [{ "kind": "sleep", "duration_ms": 20 }],
            "load": { "duration_ms": 600 }, "concurrency": 4
        }))
        .await;

    assert_eq!(res.status, 201, "{}", res.json);
    let b = &res.json;
    assert_eq!(b["status"], "completed");
    let tasks = b["summary"]["tasks"].as_u64().unwrap();
    // 4 slots of 20 ms sleeps for 600 ms: about 120 tasks; far fewer or any more is wrong.
    assert!((30..=124).contains(&tasks), "tasks {tasks}");
    assert_eq!(b["summary"]["succeeded"].as_u64(), Some(tasks));
    assert_eq!(b["results"].as_array().unwrap().len() as u64, tasks);
    // Every repetition is a task with its own index: 0..n, in order.
    for (i, t) in b["results"].as_array().unwrap().iter().enumerate() {
        assert_eq!(t["index"], i, "{t}");
    }
    // No task started after the time was up (a generous margin for a busy machine).
    let batch_start = ts(&b["started_at"]);
    let last = *starts(b).last().unwrap();
    let after = ms_between(batch_start, last);
    assert!(
        after < 600.0 + 100.0,
        "last start {after} ms after the batch's"
    );
    // ...and starting went on until about then.
    assert!(
        after > 400.0,
        "last start only {after} ms after the batch's"
    );
}

#[tokio::test]
async fn a_duration_run_with_results_none_counts_everything_and_stores_its_total() {
    let app = spawn_app().await;

    let res = app
        .post(&json!({
            "jobs": [{ "kind": "sleep", "duration_ms": 5 }, { "kind": "sleep", "duration_ms": 10 }],
            "load": { "duration_ms": 300 }, "concurrency": 8, "results": "none"
        }))
        .await;

    assert_eq!(res.status, 201, "{}", res.json);
    assert_eq!(res.json["results"], json!([]));
    let tasks = res.json["summary"]["tasks"].as_u64().unwrap();
    assert!(tasks > 50, "tasks {tasks}");
    assert_eq!(res.json["summary"]["succeeded"].as_u64(), Some(tasks));
    let id = res.json["id"].as_str().unwrap().to_owned();

    // Read back after a restart, from the store (memory:// keeps nothing across one).
    if crate::helpers::backend() != "memory" {
        let app = app.restart().await;
        let again = app.get(&format!("/batches/{id}")).await.json;
        assert_eq!(again["summary"]["tasks"].as_u64(), Some(tasks));
        assert_eq!(again["status"], "completed");
    }
}

#[tokio::test]
async fn a_load_run_over_two_origins_and_closing_connections_sends_every_request() {
    let app = spawn_app().await;
    let (a, b) = (spawn_target().await, spawn_target().await);

    // Jobs alternate between two servers, and one of them closes its connection after every
    // answer: each request still goes to the right one, on a live connection.
    let res = app
        .post(&json!({
            "jobs": [
                { "kind": "http", "url": format!("{}/hello", a.base) },
                { "kind": "http", "url": format!("{}/close", b.base) },
                { "kind": "http", "url": format!("{}/status/201", a.base) }
            ],
            "load": { "repeat": 100 }, "concurrency": 8, "results": "errors"
        }))
        .await;

    assert_eq!(res.status, 201, "{}", res.json);
    let s = &res.json["summary"];
    assert_eq!(s["tasks"], 300, "{s}");
    assert_eq!(s["succeeded"], 300, "{s}");
    assert_eq!(s["http_status"]["200"], 200, "{s}");
    assert_eq!(s["http_status"]["201"], 100, "{s}");
    assert_eq!(a.hits.load(std::sync::atomic::Ordering::SeqCst), 200);
    assert_eq!(b.hits.load(std::sync::atomic::Ordering::SeqCst), 100);
}

#[tokio::test]
async fn load_runs_time_out_and_retry_each_request_on_its_own() {
    let app = spawn_app().await;
    let target = spawn_target().await;

    // Two slots run every job in turn: a slow one cut short by its timeout, a quick one after
    // it on the same slot, and a flaky one that recovers on a retry.
    let res = app
        .post(&json!({
            "jobs": [
                { "kind": "http", "url": format!("{}/slow/2000", target.base), "timeout_ms": 100 },
                { "kind": "http", "url": format!("{}/hello", target.base) },
                { "kind": "http", "url": format!("{}/flaky", target.base),
                  "retries": { "max": 3, "backoff_ms": 5 } }
            ],
            "load": { "repeat": 4 }, "concurrency": 2
        }))
        .await;

    assert_eq!(res.status, 201, "{}", res.json);
    let s = &res.json["summary"];
    assert_eq!(s["tasks"], 12, "{s}");
    assert_eq!(s["timed_out"], 4, "{s}");
    assert_eq!(s["succeeded"], 8, "{s}");
    let results = res.json["results"].as_array().unwrap();
    for t in results {
        let took = t["timing"]["duration_ms"].as_f64().unwrap();
        match t["index"].as_u64().unwrap() % 3 {
            // Cut at 100 ms, far from the target's 2 s.
            0 => assert!(t["status"] == "timed_out" && took < 1500.0, "{t}"),
            1 => assert_eq!(t["output"]["body"], "hello", "{t}"),
            _ => assert_eq!(t["output"]["body"], "recovered", "{t}"),
        }
    }
    // The flaky route failed twice in all: the retries of whichever task met it first.
    let attempts: u64 = results
        .iter()
        .map(|t| t["attempts"].as_u64().unwrap())
        .sum();
    assert_eq!(attempts, 12 + 2);
}

#[tokio::test]
async fn the_open_model_keeps_its_rate_when_the_target_slows() {
    let app = spawn_app().await;
    let target = spawn_target().await;

    // 25 requests at 50/s to a target that takes 300 ms each: a closed model with few slots
    // would wait for answers; the open model starts one every 20 ms regardless.
    let res = app
        .post(&json!({
            "jobs": [{ "kind": "http", "url": format!("{}/slow/300", target.base) }],
            "load": { "repeat": 25, "rate_per_s": 50 }, "concurrency": 100
        }))
        .await;

    assert_eq!(res.status, 201, "{}", res.json);
    let b = &res.json;
    assert_eq!(b["summary"]["succeeded"], 25, "{}", b["summary"]);
    let s = starts(b);
    // Intended starts span 480 ms (24 gaps of 20 ms).
    let span = ms_between(s[0], s[24]);
    assert!((400.0..800.0).contains(&span), "starts span {span} ms");
    // Many requests overlapped: the target's slowness did not hold the schedule back.
    assert!(target.peak.load(std::sync::atomic::Ordering::SeqCst) >= 5);
    // Starts may trail the schedule by a few ms on a busy machine (CI runs every test at
    // once on 2 cores), but never by anything like the target's 300 ms.
    let late = &b["summary"]["late"];
    assert!(late["max_ms"].as_f64().unwrap_or(0.0) < 150.0, "{late}");
    // Latency is the target's 300 ms, not the gap between requests.
    let p50 = b["summary"]["duration_ms"]["p50"].as_f64().unwrap();
    assert!((300.0..1000.0).contains(&p50), "p50 {p50}");
}

#[tokio::test]
async fn an_open_model_that_falls_behind_reports_lateness_and_counts_it_in_latency() {
    let app = spawn_app().await;
    let target = spawn_target().await;

    // 20 requests meant at 100/s (the last at 190 ms) through 2 slots of a 100 ms target:
    // 20/s at best, so starts fall behind by up to about 800 ms.
    let res = app
        .post(&json!({
            "jobs": [{ "kind": "http", "url": format!("{}/slow/100", target.base) }],
            "load": { "repeat": 20, "rate_per_s": 100 }, "concurrency": 2
        }))
        .await;

    assert_eq!(res.status, 201, "{}", res.json);
    let b = &res.json;
    assert!(target.peak.load(std::sync::atomic::Ordering::SeqCst) <= 2);
    let late = &b["summary"]["late"];
    assert!(late["count"].as_u64().unwrap() >= 10, "{late}");
    let max_lag = late["max_ms"].as_f64().unwrap();
    assert!(max_lag >= 500.0, "{late}");
    // Measured from the intended start: the slowest request waited for its slot too, so no
    // coordinated omission hides the backlog.
    let max = b["summary"]["duration_ms"]["max"].as_f64().unwrap();
    assert!(max >= max_lag + 100.0 - 5.0, "max {max}, lag {max_lag}");
    // A closed model run reports no lateness at all.
    let closed = app
        .post(&json!({
            "jobs": [{ "kind": "sleep", "duration_ms": 1 }], "load": { "repeat": 3 }
        }))
        .await;
    assert_eq!(closed.json["summary"]["late"], Value::Null);
}

#[tokio::test]
async fn an_open_model_run_for_a_duration_sends_rate_times_duration() {
    let app = spawn_app().await;

    let res = app
        .post(&json!({
            "jobs": [{ "kind": "sleep", "duration_ms": 1 }],
            "load": { "duration_ms": 500, "rate_per_s": 40 }, "results": "none"
        }))
        .await;

    assert_eq!(res.status, 201, "{}", res.json);
    assert_eq!(res.json["summary"]["tasks"], 20, "{}", res.json["summary"]);
    assert_eq!(
        res.json["summary"]["succeeded"], 20,
        "{}",
        res.json["summary"]
    );
    let wall = res.json["wall_ms"].as_f64().unwrap();
    assert!((400.0..2000.0).contains(&wall), "wall {wall}");
}

#[tokio::test]
async fn warm_up_tasks_run_first_and_stay_out_of_the_summary() {
    let app = spawn_app().await;

    let res = app
        .post(&json!({
            "jobs": [{ "kind": "sleep", "duration_ms": 10 }],
            "load": { "repeat": 10, "warmup_ms": 200 }, "concurrency": 2,
            "thresholds": { "max_ms": 1000 }
        }))
        .await;

    assert_eq!(res.status, 201, "{}", res.json);
    let b = &res.json;
    let results = b["results"].as_array().unwrap();
    let warm: Vec<&Value> = results.iter().filter(|t| t["warmup"] == true).collect();
    let measured: Vec<&Value> = results.iter().filter(|t| t["warmup"] != true).collect();
    assert_eq!(measured.len(), 10);
    assert!(warm.len() >= 4, "{} warm-up tasks", warm.len());
    assert_eq!(b["summary"]["tasks"], 10);
    assert_eq!(b["summary"]["succeeded"], 10);
    assert_eq!(
        b["summary"]["warmup_tasks"].as_u64(),
        Some(warm.len() as u64)
    );
    // Warm-up tasks started within the warm-up, measured ones after it.
    let start = ts(&b["started_at"]);
    for t in &warm {
        assert!(
            // Handed out before the 200 ms were up; its start is recorded a moment later,
            // which a busy machine can stretch.
            ms_between(start, ts(&t["timing"]["started_at"])) < 200.0 + 50.0,
            "{t}"
        );
    }
    for t in &measured {
        assert!(
            ms_between(start, ts(&t["timing"]["started_at"])) >= 199.0,
            "{t}"
        );
    }
    assert_eq!(b["verdict"]["passed"], true);
    // Throughput is counted over the measured run, which the summary states beside wall_ms:
    // the two agree on where the warm-up is.
    let wall = b["wall_ms"].as_f64().unwrap();
    let measured_ms = b["summary"]["measured_ms"].as_f64().unwrap();
    assert!(
        measured_ms < wall - 150.0,
        "measured {measured_ms} of {wall} ms"
    );
    let throughput = b["summary"]["throughput_per_s"].as_f64().unwrap();
    let expected = 10.0 / (measured_ms / 1000.0);
    assert!(
        (throughput - expected).abs() <= 0.1 + expected * 0.01,
        "{throughput} / {expected}"
    );
}

#[tokio::test]
async fn load_shapes_are_validated() {
    let app = spawn_app_with(|c| {
        c.max_jobs = 1000;
        c.max_batch_duration = std::time::Duration::from_secs(600);
    })
    .await;
    let sleep = json!([{ "kind": "sleep", "duration_ms": 1 }]);

    for (load, field) in [
        (json!({ "rate_per_s": 0 }), "load.rate_per_s"),
        (json!({ "rate_per_s": -3.5 }), "load.rate_per_s"),
        (json!({ "rate_per_s": 2_000_000 }), "load.rate_per_s"),
        (json!({ "duration_ms": 0 }), "load.duration_ms"),
        (json!({ "warmup_ms": -1 }), "load.warmup_ms"),
        (json!({ "repeat": 0 }), "load.repeat"),
        (json!({ "rate_per_s": 1e-300 }), "load.rate_per_s"),
        // 100 tasks at one a minute: longer than the server lets a batch run.
        (
            json!({ "repeat": 100, "rate_per_s": 0.0167 }),
            "load.rate_per_s",
        ),
    ] {
        let res = app.post(&json!({ "jobs": sleep, "load": load })).await;
        assert_eq!(res.status, 422, "{load}: {}", res.json);
        let fields: Vec<&str> = res.json["errors"]
            .as_array()
            .map(|e| e.iter().filter_map(|e| e["field"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(fields, [field], "{load}: {}", res.json);
    }
    // Rate times duration is known up front: over --max-jobs is a 413.
    let res = app
        .post(&json!({ "jobs": sleep, "load": { "rate_per_s": 100, "duration_ms": 20_000 } }))
        .await;
    assert_eq!(res.status, 413, "{}", res.json);
    assert_eq!(res.json["code"], "too_many_jobs");
}

#[tokio::test]
async fn cancelling_a_run_for_a_duration_accounts_for_every_task() {
    let app = spawn_app().await;
    // Tasks take the jobs in turn: one in 31 sleeps for a minute, so that any 51 tasks in a
    // row hold one that is still running when the DELETE comes, however the machine stalls.
    let mut jobs = vec![json!({ "kind": "sleep", "duration_ms": 15 }); 30];
    jobs.push(json!({ "kind": "sleep", "duration_ms": 60_000 }));
    let res = app
        .post_raw(
            json!({
                "jobs": jobs,
                "load": { "duration_ms": 60_000, "warmup_ms": 100 }, "concurrency": 16
            })
            .to_string(),
            &[("prefer", "respond-async")],
        )
        .await;
    let id = res.json["id"].as_str().unwrap().to_owned();
    // Cancel once the measured run is well under way (polled: a busy machine is slow to start),
    // or after the wait in any case.
    let _ = poll_until(std::time::Duration::from_secs(20), || async {
        let now = app.get(&format!("/batches/{id}")).await.json;
        (now["summary"]["succeeded"].as_u64().unwrap_or(0) > 50).then_some(())
    })
    .await;

    let cancelled = app.delete(&format!("/batches/{id}")).await;

    assert_eq!(cancelled.status, 200, "{}", cancelled.json);
    let s = &cancelled.json["summary"];
    assert_eq!(cancelled.json["status"], "cancelled");
    assert_eq!(s["pending"], 0, "{s}");
    let ended_tasks = ended(s);
    assert_eq!(s["tasks"].as_u64(), Some(ended_tasks), "{s}");
    assert!(s["succeeded"].as_u64().unwrap() > 50, "{s}");
    assert!(s["cancelled"].as_u64().unwrap() >= 1, "{s}");
    assert!(s["warmup_tasks"].as_u64().unwrap() >= 1, "{s}");
    // Every task listed is accounted for: measured ones in the summary, warm-up ones apart.
    let listed = cancelled.json["results"].as_array().unwrap().len() as u64;
    assert_eq!(listed, ended_tasks + s["warmup_tasks"].as_u64().unwrap());
}

#[tokio::test]
async fn a_warm_up_never_eats_into_the_measured_run_under_max_jobs() {
    // 30 measured tasks of 30 allowed... plus a warm-up that would make hundreds.
    let app = spawn_app_with(|c| c.max_jobs = 40).await;

    let res = app
        .post(&json!({
            "jobs": [{ "kind": "sleep", "duration_ms": 1 }],
            "load": { "repeat": 30, "warmup_ms": 150 }, "concurrency": 4
        }))
        .await;

    assert_eq!(res.status, 201, "{}", res.json);
    let s = &res.json["summary"];
    assert_eq!(s["tasks"], 30, "{s}");
    assert_eq!(s["succeeded"], 30, "{s}");
    assert_eq!(s["warmup_tasks"], 10, "{s}");
}

#[tokio::test]
async fn weights_give_each_job_its_exact_share_of_every_whole_cycle() {
    let app = spawn_app().await;
    let target = crate::helpers::spawn_target().await;
    let res = app
        .post(&json!({
            "jobs": [
                { "kind": "http", "url": format!("{}/hello", target.base), "weight": 3, "id": "a" },
                { "kind": "http", "url": format!("{}/status/204", target.base), "id": "b" }
            ],
            "load": { "repeat": 1000 }, "concurrency": 16, "results": "all"
        }))
        .await;
    assert_eq!(res.status, 201, "{}", res.json);
    let s = &res.json["summary"];
    assert_eq!(s["tasks"], 4000, "{s}");
    assert_eq!(s["http_status"]["200"], 3000, "{s}");
    assert_eq!(s["http_status"]["204"], 1000, "{s}");
    // The smooth order: a a b a, cycle after cycle.
    let ids: Vec<&str> = res.json["results"].as_array().unwrap()[..8]
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "a", "b", "a", "a", "a", "b", "a"]);
    // Read back from storage the same.
    let id = res.json["id"].as_str().unwrap();
    let again = app.get(&format!("/batches/{id}")).await.json;
    assert_eq!(again["results"][2]["id"], "b");
    assert_eq!(again["summary"]["http_status"], s["http_status"]);

    let too_heavy = app
        .post(&json!({ "jobs": [{ "kind": "sleep", "duration_ms": 1, "weight": 0 }], "load": { "repeat": 1 } }))
        .await;
    assert_eq!(too_heavy.status, 422, "{}", too_heavy.json);
    assert_eq!(too_heavy.json["errors"][0]["field"], "jobs[0].weight");
}
