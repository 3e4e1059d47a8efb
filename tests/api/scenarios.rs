//! Scenarios through the API: stages, weighted jobs and their breakdown, templates and data
//! files, baselines, rerun and compare. Targets are local servers that record what they got.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::any;
use serde_json::{Value, json};

use crate::helpers::{spawn_app, spawn_target, ts};

/// One request as the recording target saw it.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    query: String,
    user: Option<String>,
    body: String,
}

/// A local server that answers every path after `delay_ms`, with `?status=N` if asked, and
/// keeps what it received.
struct Recorder {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    delay_ms: Arc<AtomicU64>,
}

#[derive(Clone)]
struct RecorderState {
    seen: Arc<Mutex<Vec<Seen>>>,
    delay_ms: Arc<AtomicU64>,
}

async fn record(
    State(s): State<RecorderState>,
    uri: Uri,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    let delay = s.delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    s.seen.lock().unwrap().push(Seen {
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        user: headers
            .get("x-user")
            .map(|v| v.to_str().unwrap().to_owned()),
        body,
    });
    if let Some(to) = q.get("redirect") {
        return (StatusCode::TEMPORARY_REDIRECT, [("location", to.clone())]).into_response();
    }
    let status = q.get("status").and_then(|s| s.parse().ok()).unwrap_or(200);
    (StatusCode::from_u16(status).unwrap(), "ok").into_response()
}

async fn spawn_recorder() -> Recorder {
    let state = RecorderState {
        seen: Arc::default(),
        delay_ms: Arc::default(),
    };
    let (seen, delay_ms) = (state.seen.clone(), state.delay_ms.clone());
    let app = Router::new().fallback(any(record)).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Recorder {
        base,
        seen,
        delay_ms,
    }
}

impl Recorder {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn field_errors(res: &Value) -> Vec<(String, String)> {
    res["errors"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|e| {
            (
                e["field"].as_str().unwrap_or_default().to_owned(),
                e["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn check<'a>(b: &'a Value, name: &str) -> &'a Value {
    b["verdict"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {}", b["verdict"]))
}

#[tokio::test]
async fn a_three_stage_rate_ramp_starts_each_stages_share_of_tasks_on_time() {
    let app = spawn_app().await;
    let target = spawn_target().await;

    let res = app
        .post(&json!({
            "jobs": [{ "kind": "http", "url": format!("{}/hello", target.base) }],
            "load": { "stages": [
                { "duration_ms": 2000, "target_rate_per_s": 200 },
                { "duration_ms": 2000, "target_rate_per_s": 200 },
                { "duration_ms": 2000, "target_rate_per_s": 0 }
            ] },
            "concurrency": 32
        }))
        .await;

    assert_eq!(res.status, 201, "{}", res.json);
    let b = &res.json;
    assert_eq!(b["status"], "completed", "{b}");
    // The integral of the rate: 200, 400 and 200 tasks.
    let expected = [200.0, 400.0, 200.0];
    assert_eq!(b["summary"]["tasks"], 800);
    let stages = b["summary"]["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 3);
    for (i, s) in stages.iter().enumerate() {
        assert_eq!(s["index"], i);
        assert_eq!(s["start_ms"].as_f64(), Some(2000.0 * i as f64));
        assert_eq!(s["end_ms"].as_f64(), Some(2000.0 * (i + 1) as f64));
        let tasks = s["tasks"].as_f64().unwrap();
        assert!(
            (tasks - expected[i]).abs() <= expected[i] * 0.02,
            "stage {i}: {s}"
        );
        assert_eq!(s["succeeded"], s["tasks"]);
    }
    // When tasks really started, read from what the batch recorded: a task may slip across a
    // stage's end by as much as the run's largest lag (reported in `late`), at 200/s there.
    let start = ts(&b["started_at"]);
    let lag_ms = b["summary"]["late"]["max_ms"].as_f64().unwrap_or(0.0);
    let slack = (lag_ms / 1000.0 * 200.0).ceil();
    let mut counts = [0.0; 3];
    for t in b["results"].as_array().unwrap() {
        let at = (ts(&t["timing"]["started_at"]) - start)
            .num_microseconds()
            .unwrap() as f64
            / 1000.0;
        counts[((at / 2000.0) as usize).min(2)] += 1.0;
    }
    for i in 0..3 {
        assert!(
            (counts[i] - expected[i]).abs() <= expected[i] * 0.02 + slack,
            "stage {i} started {} tasks (lag {lag_ms} ms): {counts:?}",
            counts[i]
        );
    }
    // The ramps start slowly: the first 50 tasks are due in the first second (100·t² = 50
    // at t = 0.71 s), not in its first tenth.
    let mut starts: Vec<f64> = b["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (ts(&t["timing"]["started_at"]) - start).num_milliseconds() as f64)
        .collect();
    starts.sort_by(f64::total_cmp);
    assert!(starts[49] > 500.0, "50th start at {} ms", starts[49]);
}

#[tokio::test]
async fn a_concurrency_ramp_holds_no_more_requests_in_flight_than_its_target() {
    let app = spawn_app().await;
    let target = spawn_target().await;

    let res = app
        .post(&json!({
            "jobs": [{ "kind": "http", "url": format!("{}/slow/20", target.base) }],
            "load": { "stages": [
                { "duration_ms": 1000, "target_concurrency": 4 },
                { "duration_ms": 1000, "target_concurrency": 4 },
                { "duration_ms": 1000, "target_concurrency": 8 },
                { "duration_ms": 1000, "target_concurrency": 8 }
            ] },
            "results": "none"
        }))
        .await;

    assert_eq!(res.status, 201, "{}", res.json);
    let b = &res.json;
    assert_eq!(b["status"], "completed", "{b}");
    assert!(
        target.peak.load(Ordering::SeqCst) <= 8,
        "peak {}",
        target.peak.load(Ordering::SeqCst)
    );
    let tasks: Vec<f64> = b["summary"]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["tasks"].as_f64().unwrap())
        .collect();
    assert_eq!(tasks.len(), 4);
    assert_eq!(
        tasks.iter().sum::<f64>(),
        b["summary"]["tasks"].as_f64().unwrap()
    );
    // Slots in use on average: 2, 4, 6, 8, each a slot of about 50 requests a second.
    let ratio = tasks[3] / tasks[1];
    assert!((1.5..=2.5).contains(&ratio), "hold 8 / hold 4: {tasks:?}");
    let ratio = tasks[1] / tasks[0];
    assert!(
        (1.4..=3.0).contains(&ratio),
        "hold 4 / ramp to 4: {tasks:?}"
    );
    assert!(tasks[1] > 100.0, "{tasks:?}");
}

#[tokio::test]
async fn stages_that_cannot_run_are_422s_naming_the_field() {
    let app = spawn_app().await;
    let sleep = json!([{ "kind": "sleep", "duration_ms": 1 }]);
    let cases = [
        (
            json!({ "stages": [{ "duration_ms": 1000, "target_rate_per_s": 10 }], "repeat": 10 }),
            "load.repeat",
        ),
        (
            json!({ "stages": [{ "duration_ms": 1000, "target_rate_per_s": 10, "target_concurrency": 2 }] }),
            "load.stages[0]",
        ),
        (
            json!({ "stages": [{ "duration_ms": 1000, "target_rate_per_s": 10 }, { "duration_ms": 1000, "target_concurrency": 2 }] }),
            "load.stages[1]",
        ),
        (
            json!({ "stages": [{ "duration_ms": 1000, "target_concurrency": 100000 }] }),
            "load.stages[0].target_concurrency",
        ),
        (json!({ "stages": [] }), "load.stages"),
        (
            json!({ "stages": [{ "duration_ms": 100, "target_rate_per_s": 0 }] }),
            "load.stages",
        ),
    ];
    for (load, field) in cases {
        let res = app.post(&json!({ "jobs": sleep, "load": load })).await;
        assert_eq!(res.status, 422, "{load}: {}", res.json);
        assert_eq!(res.json["code"], "invalid_batch");
        let fields = field_errors(&res.json);
        assert!(fields.iter().any(|(f, _)| f == field), "{load}: {fields:?}");
    }
}

#[tokio::test]
async fn weights_three_to_one_give_exact_shares_and_a_breakdown_that_matches_the_target() {
    let app = spawn_app().await;
    let rec = spawn_recorder().await;

    let res = app
        .post(&json!({
            "jobs": [
                { "id": "home", "kind": "http", "url": format!("{}/home", rec.base), "weight": 3 },
                { "id": "missing", "kind": "http", "url": format!("{}/missing?status=404", rec.base), "expect_status": "any" }
            ],
            "load": { "repeat": 1000 }, "concurrency": 16, "results": "none",
            "thresholds": { "by_job": {
                "home": { "p95_ms": 5000, "max_error_rate": 0 },
                "missing": { "p95_ms": 0.001 }
            } }
        }))
        .await;

    assert_eq!(res.status, 201, "{}", res.json);
    let b = &res.json;
    let seen = rec.seen();
    let on = |path: &str| seen.iter().filter(|s| s.path == path).count() as u64;
    assert_eq!((on("/home"), on("/missing")), (3000, 1000));
    let by_job = &b["summary"]["by_job"];
    assert_eq!(by_job["home"]["tasks"], 3000);
    assert_eq!(by_job["home"]["succeeded"], 3000);
    assert_eq!(by_job["home"]["http_status"], json!({ "200": 3000 }));
    assert_eq!(by_job["missing"]["tasks"], 1000);
    assert_eq!(by_job["missing"]["http_status"], json!({ "404": 1000 }));
    assert_eq!(b["summary"]["tasks"], 4000);
    assert!(by_job["home"]["duration_ms"]["p95"].as_f64().unwrap() > 0.0);
    // The job thresholds: one passes, one cannot.
    assert_eq!(check(b, "by_job.home.p95_ms")["passed"], true);
    assert_eq!(check(b, "by_job.home.max_error_rate")["passed"], true);
    let failed = check(b, "by_job.missing.p95_ms");
    assert_eq!(failed["passed"], false);
    assert!(failed["actual"].as_f64().unwrap() > 0.001, "{failed}");
    assert_eq!(b["verdict"]["passed"], false);
}

#[tokio::test]
async fn a_weighted_cycle_is_smooth_not_bunched() {
    let app = spawn_app().await;
    let rec = spawn_recorder().await;

    let res = app
        .post(&json!({
            "jobs": [
                { "id": "a", "kind": "http", "url": format!("{}/a", rec.base), "weight": 2 },
                { "id": "b", "kind": "http", "url": format!("{}/b", rec.base) }
            ],
            "load": { "repeat": 4 }, "concurrency": 1
        }))
        .await;

    assert_eq!(res.status, 201, "{}", res.json);
    let order: String = res.json["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    // Each cycle of three holds a twice and b once, b never next to the cycle's other b.
    assert_eq!(order.len(), 12);
    for cycle in order.as_bytes().chunks(3) {
        let a = cycle.iter().filter(|c| **c == b'a').count();
        assert_eq!(a, 2, "{order}");
    }
    assert!(!order.contains("bb"), "{order}");
}

#[tokio::test]
async fn by_job_thresholds_name_known_jobs_of_a_load_run() {
    let app = spawn_app().await;
    let jobs = json!([{ "id": "x", "kind": "sleep", "duration_ms": 1 }, { "kind": "sleep", "duration_ms": 1 }]);

    let unknown = app
        .post(&json!({ "jobs": jobs, "load": { "repeat": 2 },
            "thresholds": { "by_job": { "nope": { "p95_ms": 10 } } } }))
        .await;
    assert_eq!(unknown.status, 422, "{}", unknown.json);
    assert!(
        field_errors(&unknown.json)
            .iter()
            .any(|(f, _)| f.starts_with("thresholds.by_job")),
        "{}",
        unknown.json
    );

    // The second job has no id: its key is its place, "1".
    let ok = app
        .post(&json!({ "jobs": jobs, "load": { "repeat": 2 },
            "thresholds": { "by_job": { "1": { "p95_ms": 10000 } } } }))
        .await;
    assert_eq!(ok.status, 201, "{}", ok.json);
    assert_eq!(ok.json["summary"]["by_job"]["1"]["tasks"], 2);
    assert_eq!(check(&ok.json, "by_job.1.p95_ms")["passed"], true);

    let not_load = app
        .post(&json!({ "jobs": jobs, "thresholds": { "by_job": { "x": { "p95_ms": 10 } } } }))
        .await;
    assert_eq!(not_load.status, 422, "{}", not_load.json);
}

#[tokio::test]
async fn templates_render_per_task_and_data_rows_cycle_in_order() {
    let app = spawn_app().await;
    let rec = spawn_recorder().await;
    std::fs::write(
        app.root().join("users.csv"),
        "user,token\nann,t0\nbob,t1\ncid,t2\ndee,t3\neve,t4\n",
    )
    .unwrap();

    let res = app
        .post(&json!({
            "jobs": [{
                "kind": "http", "method": "POST",
                "url": format!("{}/item/{{{{seq}}}}?id={{{{uuid}}}}&who={{{{data.user}}}}", rec.base),
                "headers": { "x-user": "{{data.user}}:{{data.token}}" },
                "body": "{\"roll\": {{random_int 1 6}}, \"at\": {{now_ms}}}"
            }],
            "load": { "repeat": 50, "data": { "file": "users.csv" } },
            "concurrency": 4, "results": "none"
        }))
        .await;

    assert_eq!(res.status, 201, "{}", res.json);
    assert_eq!(res.json["summary"]["succeeded"], 50);
    let seen = rec.seen();
    assert_eq!(seen.len(), 50);
    let users = ["ann", "bob", "cid", "dee", "eve"];
    let mut seqs = HashSet::new();
    let mut ids = HashSet::new();
    let before = chrono::Utc::now().timestamp_millis() - 60_000;
    for s in &seen {
        let seq: usize = s.path.strip_prefix("/item/").unwrap().parse().unwrap();
        assert!(seqs.insert(seq), "seq {seq} twice");
        let q: BTreeMap<String, String> = url::form_urlencoded::parse(s.query.as_bytes())
            .into_owned()
            .collect();
        let id = uuid::Uuid::parse_str(&q["id"]).unwrap();
        assert_eq!(id.get_version_num(), 4);
        assert!(ids.insert(id));
        // Row seq mod 5, in order.
        let user = users[seq % 5];
        assert_eq!(q["who"], user);
        assert_eq!(
            s.user.as_deref(),
            Some(format!("{user}:t{}", seq % 5).as_str())
        );
        let body: Value = serde_json::from_str(&s.body).unwrap();
        assert!((1..=6).contains(&body["roll"].as_i64().unwrap()), "{body}");
        assert!(body["at"].as_i64().unwrap() > before, "{body}");
    }
    assert_eq!(seqs, (0..50).collect());
}

#[tokio::test]
async fn a_redirect_resolves_against_the_rendered_request_and_a_307_sends_its_body_again() {
    let app = spawn_app().await;
    let rec = spawn_recorder().await;

    let res = app
        .post(&json!({
            "jobs": [{ "kind": "http", "method": "POST",
                "url": format!("{}/r/{{{{seq}}}}/start?redirect=next", rec.base),
                "body": "task {{seq}}", "follow_redirects": 2 }],
            "load": { "repeat": 6 }, "concurrency": 2, "results": "none"
        }))
        .await;

    assert_eq!(res.status, 201, "{}", res.json);
    assert_eq!(
        res.json["summary"]["succeeded"], 6,
        "{}",
        res.json["summary"]
    );
    let seen = rec.seen();
    for seq in 0..6 {
        let next = seen
            .iter()
            .find(|s| s.path == format!("/r/{seq}/next"))
            .unwrap_or_else(|| panic!("no /r/{seq}/next in {seen:?}"));
        assert_eq!(next.body, format!("task {seq}"));
    }
}

#[tokio::test]
async fn data_rows_in_random_order_are_drawn_from_the_file_not_cycled() {
    let app = spawn_app().await;
    let rec = spawn_recorder().await;
    std::fs::write(
        app.root().join("users.csv"),
        "user\nann\nbob\ncid\ndee\neve\n",
    )
    .unwrap();

    let res = app
        .post(&json!({
            "jobs": [{ "kind": "http", "url": format!("{}/u/{{{{seq}}}}", rec.base),
                "headers": { "x-user": "{{data.user}}" } }],
            "load": { "repeat": 200, "data": { "file": "users.csv", "order": "random" } },
            "concurrency": 4, "results": "none"
        }))
        .await;

    assert_eq!(res.status, 201, "{}", res.json);
    let seen = rec.seen();
    assert_eq!(seen.len(), 200);
    let users = ["ann", "bob", "cid", "dee", "eve"];
    let mut cycled = 0;
    let mut used = HashSet::new();
    for s in &seen {
        let seq: usize = s.path.strip_prefix("/u/").unwrap().parse().unwrap();
        let user = s.user.clone().unwrap();
        assert!(users.contains(&user.as_str()), "{user}");
        cycled += usize::from(user == users[seq % 5]);
        used.insert(user);
    }
    assert_eq!(used.len(), 5, "every row is drawn in 200 tasks");
    // In order every one would match; at random about a fifth does.
    assert!(cycled < 120, "{cycled} of 200 in cycle order");
}

#[tokio::test]
async fn template_mistakes_are_422s_naming_the_field() {
    let app = spawn_app().await;
    let rec = spawn_recorder().await;
    std::fs::write(app.root().join("users.csv"), "user\nann\n").unwrap();
    let url = format!("{}/x", rec.base);
    let cases = [
        (
            json!({ "kind": "http", "url": url, "headers": { "x-user": "{{data.nope}}" } }),
            json!({ "repeat": 2, "data": { "file": "users.csv" } }),
            "jobs[0].headers.x-user",
            "nope",
        ),
        (
            json!({ "kind": "http", "url": format!("{url}/{{{{data.user}}}}") }),
            json!({ "repeat": 2 }),
            "jobs[0].url",
            "load.data",
        ),
        (
            json!({ "kind": "http", "url": url, "body": "{{sequence}}" }),
            json!({ "repeat": 2 }),
            "jobs[0].body",
            "sequence",
        ),
        (
            json!({ "kind": "http", "url": url, "body": "{{random_int 9 1}}" }),
            json!({ "repeat": 2 }),
            "jobs[0].body",
            "random_int",
        ),
        (
            json!({ "kind": "http", "url": "http://{{data.user}}.example/" }),
            json!({ "repeat": 2, "data": { "file": "users.csv" } }),
            "jobs[0].url",
            "",
        ),
        (
            json!({ "kind": "http", "url": url }),
            json!({ "repeat": 2, "data": { "file": "absent.csv" } }),
            "load.data.file",
            "",
        ),
        (
            json!({ "kind": "http", "url": url }),
            json!({ "repeat": 2, "data": { "file": "../escape.csv" } }),
            "load.data.file",
            "",
        ),
    ];
    for (job, load, field, says) in cases {
        let res = app.post(&json!({ "jobs": [job], "load": load })).await;
        assert_eq!(res.status, 422, "{job}: {}", res.json);
        assert_eq!(res.json["code"], "invalid_batch");
        let errors = field_errors(&res.json);
        assert!(
            errors.iter().any(|(f, m)| f == field && m.contains(says)),
            "{job} {load}: {errors:?}"
        );
    }
    assert!(rec.seen().is_empty());
}

#[tokio::test]
async fn a_baseline_check_fails_a_slower_run_and_compare_shows_the_change() {
    let app = spawn_app().await;
    let rec = spawn_recorder().await;
    // Delays long enough that a busy machine's few milliseconds do not blur 30 %.
    rec.delay_ms.store(100, Ordering::Relaxed);
    let batch = json!({
        "jobs": [{ "id": "api", "kind": "http", "url": format!("{}/api", rec.base) },
                 { "id": "home", "kind": "http", "url": format!("{}/home", rec.base) }],
        "load": { "repeat": 100 }, "concurrency": 10, "results": "none"
    });
    let base = app.post(&batch).await;
    assert_eq!(base.status, 201, "{}", base.json);
    let base_id = base.json["id"].as_str().unwrap().to_owned();
    let base_p95 = base.json["summary"]["duration_ms"]["p95"].as_f64().unwrap();

    // The target 30 % slower; the run allows 10 % on p95.
    rec.delay_ms.store(130, Ordering::Relaxed);
    let mut slower = batch.clone();
    slower["thresholds"] =
        json!({ "baseline": { "batch": base_id, "max_regression_pct": { "p95_ms": 10 } } });
    let res = app.post(&slower).await;

    assert_eq!(res.status, 201, "{}", res.json);
    let b = &res.json;
    let c = check(b, "baseline.p95_ms");
    assert_eq!(c["passed"], false, "{c}");
    assert_eq!(c["baseline"].as_f64(), Some(base_p95));
    let limit = c["limit"].as_f64().unwrap();
    assert!((limit - base_p95 * 1.1).abs() < 0.01, "{c}");
    let actual = c["actual"].as_f64().unwrap();
    assert!(actual > limit, "{c}");
    let detail = c["detail"].as_str().unwrap();
    let numbers: Vec<f64> = detail
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter_map(|w| w.parse().ok())
        .collect();
    for figure in [base_p95, actual] {
        assert!(
            numbers.iter().any(|n| (n - figure).abs() < 0.001),
            "{detail} lacks {figure}"
        );
    }
    assert_eq!(b["verdict"]["passed"], false);
    let slow_id = b["id"].as_str().unwrap().to_owned();

    // A rerun is a new batch from the stored request, baseline and all.
    let rerun = app.rerun(&slow_id).await;
    assert_eq!(rerun.status, 201, "{}", rerun.json);
    assert_eq!(rerun.json["rerun_of"], slow_id.as_str());
    assert_ne!(rerun.json["id"], slow_id.as_str());
    assert_eq!(rerun.json["summary"]["tasks"], 200);
    assert_eq!(check(&rerun.json, "baseline.p95_ms")["passed"], false);
    assert_eq!(
        app.get(&format!("/batches/{}", rerun.json["id"].as_str().unwrap()))
            .await
            .json["rerun_of"],
        slow_id.as_str()
    );

    let cmp = app
        .get(&format!("/batches/{base_id}/compare/{slow_id}"))
        .await;
    assert_eq!(cmp.status, 200, "{}", cmp.json);
    let p95 = &cmp.json["changes"]["p95_ms"];
    assert_eq!(p95["a"].as_f64(), Some(base_p95));
    assert_eq!(p95["b"].as_f64(), Some(actual));
    let pct = p95["change_pct"].as_f64().unwrap();
    assert!(
        (pct - (actual - base_p95) / base_p95 * 100.0).abs() < 0.1,
        "{p95}"
    );
    assert!(pct > 15.0, "{p95}");
    assert!(
        cmp.json["changes"]["throughput_per_s"]["change_pct"]
            .as_f64()
            .unwrap()
            < 0.0
    );
    assert!(cmp.json["changes"]["by_job.api.p95_ms"]["change_pct"].is_number());
    assert_eq!(cmp.json["a"]["tasks"], 200);
    assert_eq!(
        cmp.json["b"],
        app.get(&format!("/batches/{slow_id}")).await.json["summary"]
    );
}

#[tokio::test]
async fn compare_of_two_runs_of_one_request_gives_each_changes_noise() {
    let app = spawn_app().await;
    let batch = json!({ "jobs": [{ "kind": "sleep", "duration_ms": 2 }],
        "load": { "repeat": 200 }, "concurrency": 20, "results": "none" });
    let first = app.post(&batch).await;
    assert_eq!(first.status, 201, "{}", first.json);
    let a = first.json["id"].as_str().unwrap().to_owned();
    let rerun = app.rerun(&a).await;
    assert_eq!(rerun.status, 201, "{}", rerun.json);
    let b = rerun.json["id"].as_str().unwrap().to_owned();
    // The same request posted again is a run of it too.
    let again = app.post(&batch).await.json["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut other_body = batch.clone();
    other_body["load"]["repeat"] = json!(100);
    let other = app.post(&other_body).await.json["id"]
        .as_str()
        .unwrap()
        .to_owned();

    for (x, y) in [(&a, &b), (&b, &a), (&a, &again)] {
        let cmp = app.get(&format!("/batches/{x}/compare/{y}")).await;
        assert_eq!(cmp.status, 200, "{}", cmp.json);
        assert_eq!(cmp.json["same_request"], true, "{}", cmp.json);
        let changes = &cmp.json["changes"];
        // (The error rate is 0 in both: a change from 0 has no percentage, nor noise.)
        for figure in ["p50_ms", "p95_ms", "p99_ms", "mean_ms"] {
            let noise = changes[figure]["noise_pct"].as_f64();
            assert!(noise.is_some_and(|n| n >= 0.0), "{figure}: {changes}");
        }
        // An extreme and the pace have no sampling band.
        assert!(changes["max_ms"]["noise_pct"].is_null(), "{changes}");
        assert!(
            changes["throughput_per_s"]["noise_pct"].is_null(),
            "{changes}"
        );
    }

    let unrelated = app.get(&format!("/batches/{a}/compare/{other}")).await;
    assert_eq!(unrelated.json["same_request"], false, "{}", unrelated.json);
    assert!(unrelated.json["changes"]["p95_ms"]["noise_pct"].is_null());
}

#[tokio::test]
async fn a_baseline_check_on_a_tiny_batch_warns_that_it_is_weak() {
    let app = spawn_app().await;
    let job = json!([{ "kind": "sleep", "duration_ms": 1 }]);
    let base = app
        .post(&json!({ "jobs": job, "load": { "repeat": 20 } }))
        .await;
    assert_eq!(base.status, 201, "{}", base.json);

    let res = app
        .post(&json!({ "jobs": job, "load": { "repeat": 20 },
            "thresholds": { "baseline": { "batch": base.json["id"],
                "max_regression_pct": { "p95_ms": 100000 } } } }))
        .await;

    assert_eq!(res.status, 201, "{}", res.json);
    let verdict = &res.json["verdict"];
    // A warning, not a failure: the check itself passed.
    assert_eq!(verdict["passed"], true, "{verdict}");
    let warnings = verdict["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{verdict}");
    assert_eq!(warnings[0]["code"], "weak_baseline");
    let detail = warnings[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("20") && detail.contains("10000"),
        "{detail}"
    );
}

#[tokio::test]
async fn an_unknown_or_unfinished_baseline_is_a_422_and_rerun_of_nothing_a_404() {
    let app = spawn_app().await;
    let job = json!([{ "kind": "sleep", "duration_ms": 1 }]);
    let unknown = app
        .post(&json!({ "jobs": job, "load": { "repeat": 2 },
            "thresholds": { "baseline": { "batch": uuid::Uuid::now_v7().to_string(), "max_regression_pct": { "p95_ms": 10 } } } }))
        .await;
    assert_eq!(unknown.status, 422, "{}", unknown.json);
    assert_eq!(
        field_errors(&unknown.json)[0].0,
        "thresholds.baseline.batch"
    );

    let running = app
        .post_raw(
            json!({ "jobs": [{ "kind": "sleep", "duration_ms": 3000 }] }).to_string(),
            &[("prefer", "respond-async")],
        )
        .await;
    assert_eq!(running.status, 202, "{}", running.json);
    let unfinished = app
        .post(&json!({ "jobs": job, "load": { "repeat": 2 },
            "thresholds": { "baseline": { "batch": running.json["id"], "max_regression_pct": { "p95_ms": 10 } } } }))
        .await;
    assert_eq!(unfinished.status, 422, "{}", unfinished.json);
    assert!(
        field_errors(&unfinished.json)[0].1.contains("not finished"),
        "{}",
        unfinished.json
    );

    let bad_figure = app
        .post(&json!({ "jobs": job, "load": { "repeat": 2 },
            "thresholds": { "baseline": { "batch": running.json["id"], "max_regression_pct": { "p97_ms": 10 } } } }))
        .await;
    assert_eq!(bad_figure.status, 422, "{}", bad_figure.json);

    let nothing = app
        .client
        .post(format!(
            "{}/batches/{}/rerun",
            app.base,
            uuid::Uuid::now_v7()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(nothing.status(), 404);
    let cmp = app
        .get(&format!(
            "/batches/{}/compare/{}",
            running.json["id"].as_str().unwrap(),
            uuid::Uuid::now_v7()
        ))
        .await;
    assert_eq!(cmp.status, 404, "{}", cmp.json);
}
