//! `fanout run`: the binary as a CI job calls it, against local targets.

use std::process::Output;
use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use crate::helpers::{assert_exit, run_batch, run_binary, spawn_target};

fn port(base: &str) -> String {
    base.rsplit(':').next().unwrap().to_owned()
}

/// Runs `fanout run` on the batch (in-process, the target allowed).
async fn fanout_run(batch: &Value, target: &str, extra: &[&str]) -> Output {
    let allow = format!("127.0.0.1:{}", port(target));
    let mut args = vec!["--allow-net", allow.as_str()];
    args.extend_from_slice(extra);
    run_batch(batch, &args).await
}

#[tokio::test]
async fn a_passing_load_exits_0_and_its_percentiles_follow_the_targets_latency() {
    let target = spawn_target().await;
    let batch = json!({
        "jobs": [{ "kind": "http", "url": format!("{}/slow/50", target.base) }],
        "load": { "repeat": 24 }, "concurrency": 4,
        "thresholds": { "p50_ms": 1000, "max_error_rate": 0 }
    });

    let out = fanout_run(&batch, &target.base, &["--format", "json"]).await;

    assert_exit(&out, 0);
    let b: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(b["summary"]["tasks"], 24);
    assert_eq!(b["summary"]["succeeded"], 24);
    let p50 = b["summary"]["duration_ms"]["p50"].as_f64().unwrap();
    assert!(
        (50.0..400.0).contains(&p50),
        "p50 {p50} ms for a 50 ms target"
    );
    assert!(b["summary"]["ttfb_ms"]["p50"].as_f64().unwrap() >= 50.0);
    assert_eq!(b["verdict"]["passed"], true);
    assert_eq!(
        target.hits.load(Ordering::SeqCst),
        24,
        "every repetition is a request"
    );
    assert!(
        target.peak.load(Ordering::SeqCst) <= 4,
        "concurrency 4 was exceeded: {}",
        target.peak.load(Ordering::SeqCst)
    );
}

#[tokio::test]
async fn a_failed_threshold_exits_1_and_junit_names_it() {
    let target = spawn_target().await;
    let batch = json!({
        "label": "ci <check>",
        "jobs": [
            { "kind": "http", "url": format!("{}/hello", target.base) },
            { "kind": "http", "url": format!("{}/status/500", target.base) }
        ],
        "load": { "repeat": 5 },
        "thresholds": { "p99_ms": 10000, "max_error_rate": 0.1 }
    });

    let report = std::env::temp_dir().join(format!("fanout-report-{}.xml", uuid::Uuid::new_v4()));
    let report_arg = report.display().to_string();
    let out = fanout_run(
        &batch,
        &target.base,
        &["--format", "junit", "--out", &report_arg],
    )
    .await;

    assert_exit(&out, 1);
    let xml = std::fs::read_to_string(&report).unwrap();
    std::fs::remove_file(&report).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("valid XML");
    let cases: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    // The two limits, and the `lost` check every verdict has (nothing was lost here).
    assert_eq!(cases.len(), 3);
    assert_eq!(cases[2].attribute("name"), Some("lost"));
    assert!(cases[2].children().all(|c| !c.has_tag_name("failure")));
    assert_eq!(cases[0].attribute("name"), Some("p99_ms"));
    assert!(cases[0].children().all(|c| !c.has_tag_name("failure")));
    assert_eq!(cases[1].attribute("name"), Some("max_error_rate"));
    let failure = cases[1]
        .children()
        .find(|c| c.has_tag_name("failure"))
        .expect("a failure");
    assert!(failure.attribute("message").unwrap().contains("0.5"));
    let suite = doc
        .descendants()
        .find(|n| n.has_tag_name("testsuite"))
        .unwrap();
    assert_eq!(suite.attribute("name"), Some("ci <check>"));
    assert_eq!(suite.attribute("failures"), Some("1"));
    // The text summary still reaches the person watching the job.
    assert!(String::from_utf8_lossy(&out.stderr).contains("FAILED"));
}

#[tokio::test]
async fn without_thresholds_a_failed_task_exits_1() {
    let target = spawn_target().await;
    let batch = json!({ "return_exceptions": true, "jobs": [
        { "kind": "http", "url": format!("{}/hello", target.base) },
        { "kind": "http", "url": format!("{}/status/503", target.base) }
    ]});

    let out = fanout_run(&batch, &target.base, &[]).await;

    assert_exit(&out, 1);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("503: 1"), "{text}");
}

#[tokio::test]
async fn invalid_input_and_an_unreachable_server_exit_2() {
    let target = spawn_target().await;
    let bad = json!({ "jobs": [{ "kind": "teleport" }] });
    let invalid = fanout_run(&bad, &target.base, &[]).await;
    let ok = json!({ "jobs": [{ "kind": "sleep", "duration_ms": 1 }] });
    let unreachable = fanout_run(&ok, &target.base, &["--server", "http://127.0.0.1:1"]).await;
    let missing = run_binary(["run", "/nonexistent/batch.json"]).await;

    assert_exit(&invalid, 2);
    assert!(String::from_utf8_lossy(&invalid.stderr).contains("jobs[0].kind"));
    assert_exit(&unreachable, 2);
    assert_exit(&missing, 2);
}

#[tokio::test]
async fn results_none_answers_carry_no_task_rows() {
    let target = spawn_target().await;
    let batch = json!({ "results": "none", "load": { "repeat": 10 }, "jobs": [{ "kind": "http", "url": format!("{}/hello", target.base) }] });

    let out = fanout_run(&batch, &target.base, &["--format", "json"]).await;

    let b: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(b["results"], json!([]));
    assert_eq!(b["summary"]["tasks"], 10);
    assert_eq!(b["summary"]["http_status"]["200"], 10);
}

#[tokio::test]
async fn the_examples_are_valid_batches() {
    for example in [
        "smoke.json",
        "load.json",
        "throughput.json",
        "gather.json",
        "ramp.json",
    ] {
        let path = format!("{}/examples/{example}", env!("CARGO_MANIFEST_DIR"));
        let body = std::fs::read(&path).unwrap();
        let limits = fanout::request::Limits {
            max_body_bytes: usize::MAX,
            max_jobs: 1_000_000,
            max_concurrency: 10_000,
            max_response_bytes: 1 << 20,
            max_file_bytes: 1 << 20,
            max_job_timeout: std::time::Duration::from_secs(300),
            max_batch_duration: std::time::Duration::from_secs(3600),
            allow_insecure_tls: false,
            files_root: None,
        };
        assert!(
            fanout::request::parse_batch(&body, &limits).is_ok(),
            "{example}"
        );
    }
}

#[tokio::test]
async fn against_a_server_the_run_follows_the_batch_and_exits_by_its_verdict() {
    let app = crate::helpers::spawn_app().await;
    let target = spawn_target().await;
    let url = format!("{}/slow/20", target.base);
    let passing = json!({
        "jobs": [{ "kind": "http", "url": url }],
        "load": { "repeat": 30 }, "concurrency": 3,
        "thresholds": { "max_error_rate": 0, "p50_ms": 5000 }
    });
    let failing = json!({
        "jobs": [{ "kind": "http", "url": url }],
        "load": { "repeat": 6 }, "concurrency": 3,
        "thresholds": { "p50_ms": 1 }
    });

    // The server opens the target to its jobs; `--allow-net` here would be a usage error.
    let pass = run_batch(&passing, &["--server", &app.base, "--format", "json"]).await;
    let fail = run_batch(&failing, &["--server", &app.base]).await;

    assert_exit(&pass, 0);
    let b: Value = serde_json::from_slice(&pass.stdout).unwrap();
    // The finished batch, read from the server after following its events.
    assert_eq!(b["summary"]["succeeded"], 30);
    assert_eq!(b["results"].as_array().unwrap().len(), 30);
    assert_eq!(b["verdict"]["passed"], true);
    assert_exit(&fail, 1);
    assert!(String::from_utf8_lossy(&fail.stdout).contains("p50_ms"));
    assert_eq!(target.hits.load(Ordering::SeqCst), 36);
}

#[tokio::test]
async fn healthcheck_exits_0_for_a_healthy_server_and_1_otherwise() {
    let app = crate::helpers::spawn_app().await;
    let port = port(&app.base);
    // `FANOUT_LISTEN` (the image sets it) is not seen: the flag alone says where to probe.
    let probe = |listen: String| run_binary(["healthcheck".to_owned(), "--listen".into(), listen]);

    // As the image runs it: the listen address is 0.0.0.0, the probe goes to loopback.
    let healthy = probe(format!("0.0.0.0:{port}")).await;
    let nobody = probe("127.0.0.1:1".into()).await;

    assert_exit(&healthy, 0);
    assert_exit(&nobody, 1);
    assert!(!nobody.stderr.is_empty());
}

#[tokio::test]
async fn the_smoke_example_runs_as_the_readme_shows_against_a_local_app() {
    // The README's CI step, with the app under test on a port of the test's own choosing.
    let target = spawn_target().await;
    let path = format!("{}/examples/smoke.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).unwrap().replace(
        "http://127.0.0.1:3000/health",
        &format!("{}/hello", target.base),
    );
    let batch: Value = serde_json::from_str(&text).unwrap();

    let out = fanout_run(&batch, &target.base, &["--format", "junit"]).await;

    assert_exit(&out, 0);
    assert_eq!(target.hits.load(Ordering::SeqCst), 200);
    let junit = String::from_utf8(out.stdout).unwrap();
    let doc = roxmltree::Document::parse(&junit).unwrap();
    assert!(doc.descendants().any(|n| n.has_tag_name("testcase")));
    assert!(!doc.descendants().any(|n| n.has_tag_name("failure")));
}

/// Checks `value` against an OpenAPI 3.1 schema (the parts this API's document uses: `$ref`,
/// `oneOf`/`anyOf`/`allOf`, `type` lists, `enum`, `required`, `properties`,
/// `additionalProperties`, `items`).
fn conforms(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/components/schemas/");
        return conforms(doc, &doc["components"]["schemas"][name], value, at);
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = schema.get(key).and_then(Value::as_array) {
            let fits = options
                .iter()
                .filter(|o| conforms(doc, o, value, at).is_ok())
                .count();
            if fits == 0 {
                return Err(format!("{at}: fits none of {key}: {value}"));
            }
        }
    }
    for part in schema
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        conforms(doc, part, value, at)?;
    }
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let is = |t: &str| match t {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            _ => false,
        };
        if !types.iter().any(|t| is(t)) {
            return Err(format!("{at}: {value} is not {types:?}"));
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        return Err(format!("{at}: {value} not in {options:?}"));
    }
    if let Some(object) = value.as_object() {
        for name in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = name.as_str().unwrap();
            if !object.contains_key(name) {
                return Err(format!("{at}: missing {name}"));
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        for (k, v) in object {
            match properties.and_then(|p| p.get(k)) {
                Some(s) => conforms(doc, s, v, &format!("{at}.{k}"))?,
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => return Err(format!("{at}: unexpected {k}")),
                    Some(s) if s.is_object() => conforms(doc, s, v, &format!("{at}.{k}"))?,
                    _ if properties.is_some() => return Err(format!("{at}: undocumented {k}")),
                    _ => {}
                },
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, v) in array.iter().enumerate() {
            conforms(doc, items, v, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

#[tokio::test]
async fn json_output_matches_the_documented_batch_schema() {
    let target = spawn_target().await;
    let batch = json!({
        "jobs": [
            { "kind": "http", "url": format!("{}/hello", target.base) },
            { "kind": "http", "url": format!("{}/status/503", target.base) },
            { "kind": "sleep", "duration_ms": 2 }
        ],
        "load": { "repeat": 4, "rate_per_s": 400, "warmup_ms": 20 },
        "thresholds": { "p95_ms": 1000, "max_error_rate": 0.5 }
    });

    let out = fanout_run(&batch, &target.base, &["--format", "json"]).await;

    let b: Value = serde_json::from_slice(&out.stdout).unwrap();
    let doc: Value = serde_json::from_str(&fanout::http::openapi().to_json().unwrap()).unwrap();
    let schema = json!({ "$ref": "#/components/schemas/BatchView" });
    conforms(&doc, &schema, &b, "batch").unwrap();
    // The parts this test means to cover are there.
    assert!(b["summary"]["late"].is_object(), "{}", b["summary"]);
    assert!(b["verdict"].is_object());
    assert!(
        b["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["warmup"] == true)
    );
    assert!(
        b["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["output"]["status"] == 503)
    );
}

fn args(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn a_one_liner_runs_without_a_file_and_exits_as_its_thresholds_say() {
    let target = spawn_target().await;
    let url = format!("{}/hello", target.base);
    let allow = format!("127.0.0.1:{}", port(&target.base));

    // As an oha user types it: the URL first.
    let passed = run_binary(args(&[
        "run",
        &url,
        "-n",
        "300",
        "-c",
        "8",
        "--allow-net",
        &allow,
        "--threshold",
        "p95<5s",
        "--threshold",
        "error_rate<1%",
        "--format",
        "json",
    ]))
    .await;
    assert_exit(&passed, 0);
    let b: Value = serde_json::from_slice(&passed.stdout).unwrap();
    assert_eq!(b["summary"]["succeeded"], 300);
    assert_eq!(b["verdict"]["passed"], true);
    let hits_before = target.hits.load(Ordering::SeqCst);
    assert!(hits_before >= 300);

    // A threshold that fails: 1. With --url and a header and method of its own.
    let failed = run_binary(args(&[
        "run",
        "--url",
        &format!("{}/status/500", target.base),
        "-n",
        "20",
        "-c",
        "2",
        "-m",
        "post",
        "-H",
        "X-Test: yes",
        "--allow-net",
        &allow,
        "--threshold",
        "error_rate<1%",
    ]))
    .await;
    assert_exit(&failed, 1);
    assert!(String::from_utf8_lossy(&failed.stdout).contains("FAILED"));

    // Unusable: 2, with a sentence, and nothing sent.
    let hits = target.hits.load(Ordering::SeqCst);
    for bad in [
        args(&["run", "--url", &url, "--threshold", "p95>200ms"]),
        args(&["run", "--url", &url, "-H", "no colon"]),
        args(&["run", "-n", "10"]),
        args(&["run", "--url", &url, "-n", "0", "--allow-net", &allow]),
    ] {
        let out = run_binary(bad.clone()).await;
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(!out.stderr.is_empty(), "{bad:?}");
    }
    assert_eq!(target.hits.load(Ordering::SeqCst), hits);
}

#[tokio::test]
async fn print_batch_prints_what_post_batches_runs_the_same() {
    let target = spawn_target().await;
    let url = format!("{}/hello", target.base);
    let printed = run_binary(args(&[
        "run",
        &url,
        "-n",
        "40",
        "-c",
        "4",
        "--threshold",
        "p99<2s",
        "--print-batch",
    ]))
    .await;
    assert_exit(&printed, 0);
    let batch: Value = serde_json::from_slice(&printed.stdout).unwrap();
    assert_eq!(batch["load"]["repeat"], 40);
    assert_eq!(batch["thresholds"]["p99_ms"], 2000.0);
    // Nothing was sent to print it.
    assert_eq!(target.hits.load(Ordering::SeqCst), 0);

    let app = crate::helpers::spawn_app().await;
    let res = app.post(&batch).await;
    assert_eq!(res.status, 201, "{}", res.json);
    assert_eq!(res.json["summary"]["succeeded"], 40);
    assert_eq!(res.json["verdict"]["passed"], true);
}

#[tokio::test]
async fn a_run_slower_than_its_baseline_report_exits_1_naming_the_check() {
    let target = spawn_target().await;
    let allow = format!("127.0.0.1:{}", port(&target.base));
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("base.json");
    let run = |path: &str, extra: &[&str]| {
        let mut a = args(&[
            "run",
            &format!("{}{path}", target.base),
            "-n",
            "40",
            "-c",
            "4",
            "--allow-net",
            &allow,
        ]);
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };

    let base = run_binary(run(
        "/slow/30",
        &["--format", "json", "--out", &report.display().to_string()],
    ))
    .await;
    assert_exit(&base, 0);

    // Ten times slower than the report (a margin no busy machine blurs), 10 % allowed: 1,
    // the check named.
    let slower = run_binary(run(
        "/slow/300",
        &[
            "--baseline",
            &report.display().to_string(),
            "--max-regression",
            "p95_ms=10",
        ],
    ))
    .await;
    let text = String::from_utf8_lossy(&slower.stdout);
    assert_eq!(slower.status.code(), Some(1), "{text}");
    assert!(text.contains("baseline.p95_ms"), "{text}");

    // As fast as the report, with room for a busy machine: 0.
    let same = run_binary(run(
        "/slow/30",
        &[
            "--baseline",
            &report.display().to_string(),
            "--max-regression",
            "p95_ms=300",
        ],
    ))
    .await;
    assert_exit(&same, 0);
    // 40 tasks are too few for a baseline to tell a change from noise: said on stderr and
    // under the verdict, without failing the run.
    let stderr = String::from_utf8_lossy(&same.stderr);
    assert!(stderr.contains("warning: weak_baseline"), "{stderr}");
    let text = String::from_utf8_lossy(&same.stdout);
    assert!(text.contains("warning     weak_baseline"), "{text}");

    // A baseline that is not a report, or a figure that does not exist: 2.
    let missing = run_binary(run("/hello", &["--baseline", "/nonexistent/base.json"])).await;
    assert_exit(&missing, 2);
    let bad = run_binary(run(
        "/hello",
        &[
            "--baseline",
            &report.display().to_string(),
            "--max-regression",
            "p97_ms=10",
        ],
    ))
    .await;
    assert_exit(&bad, 2);
}

#[tokio::test]
async fn compare_prints_the_changes_between_two_batches_on_a_server() {
    let target = spawn_target().await;
    let app = crate::helpers::spawn_app().await;
    let batch = |ms: u32| {
        json!({ "jobs": [{ "kind": "http", "url": format!("{}/slow/{ms}", target.base) }],
            "load": { "repeat": 20 }, "concurrency": 4 })
    };
    let a = app.post(&batch(20)).await.json["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = app.post(&batch(60)).await.json["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let out = run_binary(args(&["compare", &a, &b, "--server", &app.base])).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_exit(&out, 0);
    let row = text
        .lines()
        .find(|l| l.trim_start().starts_with("p95_ms"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(row.contains('+'), "{row}");

    assert!(!row.contains("noise"), "{row}");

    // A rerun of `a` ran its request again: each row gives its noise at 20 tasks.
    let rerun = app.rerun(&a).await;
    assert_eq!(rerun.status, 201, "{}", rerun.json);
    let r = rerun.json;
    let out = run_binary(args(&[
        "compare",
        &a,
        r["id"].as_str().unwrap(),
        "--server",
        &app.base,
    ]))
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    let row = text
        .lines()
        .find(|l| l.trim_start().starts_with("p95_ms"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        row.contains("(noise ±") && row.contains("at 20 tasks)"),
        "{row}"
    );

    let json_out = run_binary(args(&["compare", &a, &b, "--server", &app.base, "--json"])).await;
    let cmp: Value = serde_json::from_slice(&json_out.stdout).unwrap();
    let served = app.get(&format!("/batches/{a}/compare/{b}")).await.json;
    assert_eq!(cmp, served);
    assert!(cmp["changes"]["p95_ms"]["change_pct"].as_f64().unwrap() > 50.0);

    let unknown = run_binary(args(&[
        "compare",
        &a,
        &uuid::Uuid::now_v7().to_string(),
        "--server",
        &app.base,
    ]))
    .await;
    assert_exit(&unknown, 2);
}
