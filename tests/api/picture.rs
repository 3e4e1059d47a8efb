//! What the page draws: `GET /batches/{id}/timeline` and `/latency` against batches run for
//! real, their sizes for a large batch, the page's own files, and the HTML report.

use serde_json::{Value, json};

use crate::helpers::{assert_exit, run_binary, spawn_app, spawn_app_with, spawn_target};

fn sum(bins: &Value, key: &str) -> u64 {
    bins.as_array()
        .unwrap()
        .iter()
        .map(|b| b[key].as_u64().unwrap())
        .sum()
}

#[tokio::test]
async fn a_timeline_counts_every_task_and_a_narrow_window_carries_its_rows_and_phases() {
    let app = spawn_app().await;
    let target = spawn_target().await;
    let res = app
        .post(&json!({
            "jobs": [{ "kind": "http", "url": format!("{}/slow/5", target.base) },
                     { "kind": "http", "url": format!("{}/status/500", target.base) }],
            "load": { "repeat": 1500 }, "concurrency": 16
        }))
        .await;
    assert_eq!(res.status, 201, "{}", res.json);
    let id = res.json["id"].as_str().unwrap();

    let whole = app.get(&format!("/batches/{id}/timeline?bins=100")).await;
    assert_eq!(whole.status, 200, "{}", whole.json);
    let t = &whole.json;
    assert_eq!(t["started_at"], res.json["started_at"]);
    let bins = &t["bins"];
    assert!(bins.as_array().unwrap().len() <= 100);
    assert_eq!(sum(bins, "started"), 3000);
    assert_eq!(sum(bins, "ended"), 3000);
    assert_eq!(sum(bins, "errors"), 1500, "the 500s failed");
    assert_eq!(t["tasks_in_window"], 3000);
    // 3,000 tasks are more rows than an answer carries: zoom in.
    assert_eq!(t["tasks"], Value::Null);
    assert_eq!(t["row_limit"], 2000);
    let means: Vec<f64> = bins
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["in_flight"].as_f64().unwrap())
        .collect();
    let peak = means.iter().copied().fold(0.0, f64::max);
    assert!(
        peak > 0.0 && peak <= 16.0,
        "in flight at most the concurrency: {peak}"
    );
    // Each bin's in-flight figure is the mean over it: together they hold the time every
    // task ran, as the tasks' durations add it up.
    let bin_ms = t["bin_ms"].as_f64().unwrap();
    let ran_ms: f64 = means.iter().map(|m| m * bin_ms).sum();
    let durations_ms = res.json["summary"]["duration_ms"]["mean"].as_f64().unwrap() * 3000.0;
    assert!(
        (ran_ms - durations_ms).abs() <= durations_ms * 0.02 + 1.0,
        "{ran_ms} ms of tasks in the bins, {durations_ms} ms by their durations"
    );

    // The first tenth of the run: its tasks' rows, by start, with their phases.
    let span = t["span_ms"].as_f64().unwrap();
    let narrow = app
        .get(&format!(
            "/batches/{id}/timeline?from_ms=0&to_ms={}&bins=50",
            span / 10.0
        ))
        .await
        .json;
    let rows = narrow["tasks"]
        .as_array()
        .expect("rows for a narrow window");
    assert!(!rows.is_empty());
    assert_eq!(
        rows.len() as u64,
        narrow["tasks_in_window"].as_u64().unwrap()
    );
    assert_eq!(sum(&narrow["bins"], "started"), rows.len() as u64);
    let starts: Vec<f64> = rows
        .iter()
        .map(|r| r["start_ms"].as_f64().unwrap())
        .collect();
    assert!(starts.windows(2).all(|w| w[0] <= w[1]), "by start");
    assert!(starts.iter().all(|s| *s < span / 10.0));
    let ok = rows.iter().find(|r| r["status"] == "succeeded").unwrap();
    assert_eq!(ok["http_status"], 200);
    assert!(ok["phases"]["wait_ms"].as_f64().unwrap() >= 4.0, "{ok}");
    assert!(ok["end_ms"].as_f64().unwrap() > ok["start_ms"].as_f64().unwrap());
    let bad = rows.iter().find(|r| r["status"] == "failed").unwrap();
    assert_eq!(bad["error"]["code"], "status");
}

#[tokio::test]
async fn latency_buckets_count_every_task_and_the_spectrum_agrees_with_the_summary() {
    let app = spawn_app().await;
    let target = spawn_target().await;
    let res = app
        .post(&json!({
            "jobs": [{ "kind": "http", "url": format!("{}/slow/2", target.base) },
                     { "kind": "http", "url": format!("{}/slow/200", target.base) }],
            "load": { "repeat": 100 }, "concurrency": 8, "results": "none"
        }))
        .await;
    assert_eq!(res.status, 201, "{}", res.json);
    let id = res.json["id"].as_str().unwrap();
    let s = &res.json["summary"];

    let l = app.get(&format!("/batches/{id}/latency")).await.json;
    assert_eq!(l["metric"], "duration");
    assert_eq!(l["count"], 200);
    assert_eq!(sum(&l["buckets"], "count"), 200);
    let buckets = l["buckets"].as_array().unwrap();
    assert!(buckets.len() <= 200);
    for w in buckets.windows(2) {
        assert_eq!(w[0]["to_ms"], w[1]["from_ms"], "contiguous");
    }
    assert_eq!(l["min_ms"], s["duration_ms"]["min"]);
    assert_eq!(l["max_ms"], s["duration_ms"]["max"]);
    let at = |p: f64| {
        l["percentiles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["percentile"].as_f64() == Some(p))
            .map(|x| x["ms"].clone())
    };
    assert_eq!(at(50.0), Some(s["duration_ms"]["p50"].clone()));
    assert_eq!(at(100.0), Some(s["duration_ms"]["max"].clone()));
    // Two peaks, 2 ms and 200 ms, a hundred tasks each. A 200 ms task never takes less, so
    // all of them sit past 180 ms (a bucket is a few percent wide); a 2 ms one may run slow on a
    // machine that other builds load, so most of them, not every one, sit below 100 ms.
    let between = |lo: f64, hi: f64| -> u64 {
        buckets
            .iter()
            .filter(|b| b["from_ms"].as_f64().unwrap() >= lo && b["to_ms"].as_f64().unwrap() <= hi)
            .map(|b| b["count"].as_u64().unwrap())
            .sum()
    };
    assert!(between(0.0, 100.0) >= 90, "{buckets:?}");
    assert!(between(180.0, 1e9) >= 100, "{buckets:?}");

    let ttfb = app
        .get(&format!("/batches/{id}/latency?metric=ttfb"))
        .await
        .json;
    assert_eq!(ttfb["metric"], "ttfb");
    assert_eq!(ttfb["count"], 200);
}

#[tokio::test]
async fn a_100000_task_batchs_timeline_and_latency_stay_small() {
    let app = spawn_app().await;
    let res = app
        .post(&json!({
            "jobs": [{ "kind": "sleep", "duration_ms": 0 }],
            "load": { "repeat": 100000 }, "concurrency": 64, "results": "all"
        }))
        .await;
    assert_eq!(res.status, 201, "{}", res.json["summary"]);
    let id = res.json["id"].as_str().unwrap();
    for path in [
        format!("/batches/{id}/timeline"),
        format!("/batches/{id}/timeline?bins=2000"),
        format!("/batches/{id}/latency"),
        format!("/batches/{id}?results=none"),
    ] {
        let bytes = app
            .client
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert!(bytes.len() < 200 * 1024, "{path}: {} bytes", bytes.len());
    }
    let t = app
        .get(&format!("/batches/{id}/timeline?bins=2000"))
        .await
        .json;
    assert_eq!(sum(&t["bins"], "started"), 100000);
    let none = app.get(&format!("/batches/{id}?results=none")).await.json;
    assert_eq!(none["summary"]["tasks"], 100000);
    assert!(none.get("results").is_none());
}

#[tokio::test]
async fn bad_picture_queries_are_422s_naming_the_parameter() {
    let app = spawn_app().await;
    let res = app
        .post(&json!({ "jobs": [{ "kind": "sleep", "duration_ms": 1 }] }))
        .await;
    let id = res.json["id"].as_str().unwrap();
    for (query, field) in [
        ("timeline?bins=0", "bins"),
        ("timeline?bins=2001", "bins"),
        ("timeline?bins=ten", "bins"),
        ("timeline?from_ms=-1", "from_ms"),
        ("timeline?from_ms=1.7976931348623157e308", "from_ms"),
        ("timeline?to_ms=inf", "to_ms"),
        ("timeline?from_ms=50&to_ms=10", "to_ms"),
        ("timeline?zoom=2", "zoom"),
        ("timeline?bins=5&bins=6", "bins"),
        ("latency?metric=p99", "metric"),
        ("latency?metrc=ttfb", "metrc"),
    ] {
        let a = app.get(&format!("/batches/{id}/{query}")).await;
        assert_eq!(a.status, 422, "{query}: {}", a.json);
        assert_eq!(a.json["code"], "invalid_query");
        assert_eq!(a.json["errors"][0]["field"], field, "{query}");
    }
    let a = app.get(&format!("/batches/{id}?results=all")).await;
    assert_eq!(a.status, 422, "{}", a.json);
    let missing = uuid::Uuid::now_v7();
    assert_eq!(
        app.get(&format!("/batches/{missing}/timeline"))
            .await
            .status,
        404
    );
    assert_eq!(
        app.get(&format!("/batches/{missing}/latency")).await.status,
        404
    );
}

#[tokio::test]
async fn an_empty_timeline_window_answers_no_bins() {
    let app = spawn_app().await;
    let res = app
        .post(&json!({ "jobs": [{ "kind": "sleep", "duration_ms": 1 }] }))
        .await;
    let id = res.json["id"].as_str().unwrap();
    for query in ["from_ms=0.5&to_ms=0.5", "from_ms=0&to_ms=0", "to_ms=0"] {
        let a = app.get(&format!("/batches/{id}/timeline?{query}")).await;
        assert_eq!(a.status, 200, "{query}: {}", a.json);
        assert_eq!(a.json["bins"], json!([]), "{query}");
        assert_eq!(a.json["bin_ms"], 0.0, "{query}");
        assert_eq!(a.json["tasks_in_window"], 0, "{query}");
        assert_eq!(a.json["tasks"], json!([]), "{query}");
        assert_eq!(a.json["from_ms"], a.json["to_ms"], "{query}");
    }
}

#[tokio::test]
#[cfg_attr(
    fanout_test_backend = "memory",
    ignore = "needs a durable store: memory:// keeps nothing across a restart"
)]
async fn a_batch_read_back_after_a_restart_keeps_its_picture() {
    // With `results: errors` its checkpoint carries the totals; with `all`, its rows do.
    let mut app = spawn_app().await;
    for results in ["errors", "all"] {
        let res = app
            .post(&json!({
                "jobs": [{ "kind": "sleep", "duration_ms": 1 }],
                "load": { "repeat": 300 }, "concurrency": 8, "results": results
            }))
            .await;
        let id = res.json["id"].as_str().unwrap().to_owned();
        let before_t = app.get(&format!("/batches/{id}/timeline")).await.json;
        let before_l = app.get(&format!("/batches/{id}/latency")).await.json;

        app = app.restart().await;

        let after_t = app.get(&format!("/batches/{id}/timeline")).await.json;
        let after_l = app.get(&format!("/batches/{id}/latency")).await.json;
        assert_eq!(
            sum(&after_t["bins"], "started"),
            300,
            "{results}: {after_t}"
        );
        assert_eq!(sum(&after_t["bins"], "ended"), 300, "{results}: {after_t}");
        let span = |t: &Value| t["span_ms"].as_f64().unwrap();
        assert!((span(&after_t) - span(&before_t)).abs() < 0.01, "{results}");
        assert_eq!(after_l["count"], 300, "{results}");
        if results == "errors" {
            // The very histograms, checkpointed.
            assert_eq!(after_l["percentiles"], before_l["percentiles"]);
            assert_eq!(after_t["bin_ms"], before_t["bin_ms"]);
        } else {
            // Counted again from rows stored to the microsecond: the same to a rounding.
            let p50 = |l: &Value| l["percentiles"][5]["ms"].as_f64().unwrap();
            assert!((p50(&after_l) - p50(&before_l)).abs() <= p50(&before_l) * 0.01 + 0.002);
        }
    }
}

#[tokio::test]
#[cfg_attr(
    fanout_test_backend = "memory",
    ignore = "needs a durable store: memory:// keeps nothing across a restart"
)]
async fn a_large_batch_read_back_draws_the_same_picture_from_a_few_of_its_rows() {
    // 3,000 tasks: read back, the page's reads take the batch's totals from its last
    // checkpoint and only the rows a window needs; the picture is the one drawn before.
    let app = spawn_app().await;
    let res = app
        .post(&json!({
            "jobs": [{ "kind": "sleep", "duration_ms": 1 },
                     { "kind": "file", "path": "missing.txt" }],
            "load": { "repeat": 1500 }, "concurrency": 32, "return_exceptions": true
        }))
        .await;
    assert_eq!(res.status, 201, "{}", res.json["summary"]);
    let id = res.json["id"].as_str().unwrap().to_owned();
    let span = res.json["wall_ms"].as_f64().unwrap();
    // Windows that end where they say: a run's span read back is to the microsecond, its
    // span live to the nanosecond.
    let paths = [
        format!(
            "/batches/{id}/timeline?from_ms=0&to_ms={}&bins=100",
            span + 5.0
        ),
        format!(
            "/batches/{id}/timeline?from_ms=0&to_ms={}&bins=50",
            span / 10.0
        ),
        format!(
            "/batches/{id}/timeline?from_ms={}&to_ms={}&bins=7",
            span / 3.0,
            span / 2.0
        ),
        format!(
            "/batches/{id}/timeline?from_ms={}&to_ms={span}&bins=20",
            span * 0.9
        ),
        format!("/batches/{id}/latency"),
        format!("/batches/{id}?results=none"),
    ];
    let mut before = Vec::new();
    let spanless = |mut v: Value| {
        v.as_object_mut().unwrap().remove("span_ms");
        v
    };
    for p in &paths {
        before.push(spanless(app.get(p).await.json));
    }
    let app = app.restart().await;
    for (p, was) in paths.iter().zip(&before) {
        let now = app.get(p).await;
        assert_eq!(now.status, 200, "{p}: {}", now.json);
        assert_eq!(&spanless(now.json), was, "{p}");
    }
    let whole = &before[0];
    assert_eq!(sum(&whole["bins"], "started"), 3000);
    assert_eq!(sum(&whole["bins"], "errors"), 1500, "the missing files");
    let narrow = &before[1];
    let rows = narrow["tasks"].as_array().expect("a narrow window's rows");
    assert!(!rows.is_empty());
    assert_eq!(
        rows.len() as u64,
        narrow["tasks_in_window"].as_u64().unwrap()
    );
    assert_eq!(before[4]["count"], 3000);
    assert_eq!(before[5]["summary"]["tasks"], 3000);
    assert!(before[5].get("results").is_none());
}

#[tokio::test]
#[cfg_attr(
    fanout_test_backend = "memory",
    ignore = "needs a durable store: memory:// keeps nothing across a restart"
)]
async fn a_window_of_a_read_back_batch_with_more_tasks_in_flight_than_it_counts_shows_its_starts() {
    // 20,000 tasks in flight at once, more than a timeline counts its bins from rows: read
    // back, its bins come from the checkpointed totals, and a window's bars from the rows of
    // the tasks that started in it, counted exactly.
    let app = spawn_app_with(|c| c.max_concurrency = 20_000).await;
    let res = app
        .post(&json!({
            "jobs": [{ "kind": "sleep", "duration_ms": 1500 }],
            "load": { "repeat": 20000 }, "concurrency": 20000, "results": "all"
        }))
        .await;
    assert_eq!(res.status, 201, "{}", res.json["summary"]);
    let id = res.json["id"].as_str().unwrap().to_owned();
    let app = app.restart().await;

    let whole = app
        .get(&format!("/batches/{id}/timeline?bins=2000"))
        .await
        .json;
    assert_eq!(sum(&whole["bins"], "started"), 20000, "{whole}");
    assert_eq!(sum(&whole["bins"], "ended"), 20000);
    assert_eq!(whole["tasks"], Value::Null);
    let peak = whole["bins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["in_flight"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert_eq!(peak, 20000.0, "every task in flight at once");
    // The rows of the batch, to count what each window should show.
    let all = app.get(&format!("/batches/{id}")).await.json;
    let origin =
        chrono::DateTime::parse_from_rfc3339(whole["started_at"].as_str().unwrap()).unwrap();
    let mut starts: Vec<f64> = all["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let s =
                chrono::DateTime::parse_from_rfc3339(t["timing"]["started_at"].as_str().unwrap())
                    .unwrap();
            (s - origin).num_microseconds().unwrap() as f64 / 1000.0
        })
        .collect();
    starts.sort_by(f64::total_cmp);
    // Windows' edges: halfway between two starts at least 2 µs apart, clear of rounding,
    // and past the last start; each with the number of starts before it. Tasks start in
    // clumps that share a microsecond, so a window holds whole clumps.
    let mut edges: Vec<(usize, f64)> = (1..starts.len())
        .filter(|&j| starts[j] - starts[j - 1] >= 0.002)
        .map(|j| (j, (starts[j] + starts[j - 1]) / 2.0))
        .collect();
    edges.push((starts.len(), starts[starts.len() - 1] + 0.5));
    // Windows from one edge to the next, once more than 16,000 tasks are in flight (the
    // sleeps outlast the ramp), so that more tasks ran in them than a timeline counts its
    // bins from; the last window whatever it holds when the ramp left no such edge.
    let pairs: Vec<((usize, f64), (usize, f64))> = edges.windows(2).map(|w| (w[0], w[1])).collect();
    let mut windows: Vec<_> = pairs.iter().filter(|(a, _)| a.0 > 16_000).collect();
    if windows.is_empty() {
        windows.extend(pairs.last());
    }
    let step = windows.len().div_ceil(4).max(1);
    for &&((_, from), (_, to)) in windows.iter().step_by(step) {
        let expected = starts.iter().filter(|&&s| s >= from && s < to).count();
        let w = app
            .get(&format!(
                "/batches/{id}/timeline?from_ms={from}&to_ms={to}&bins=10"
            ))
            .await
            .json;
        if expected <= 2000 {
            let rows = w["tasks"]
                .as_array()
                .unwrap_or_else(|| panic!("bars for {from}..{to}: {w}"));
            assert_eq!(rows.len(), expected, "{from}..{to}");
            assert!(rows.iter().all(|r| {
                let s = r["start_ms"].as_f64().unwrap();
                s >= from - 0.001 && s < to + 0.001
            }));
        } else {
            assert_eq!(w["tasks"], Value::Null, "more rows than an answer carries");
        }
        if expected <= 4000 {
            // Counted from the rows of the starts, exactly.
            assert_eq!(w["tasks_in_window"], expected as u64, "{from}..{to}: {w}");
        }
    }
}

#[tokio::test]
async fn the_page_is_served_offline_and_its_data_stays_behind_the_token() {
    let app = spawn_app_with(|c| c.api_token = vec!["page-token".into()]).await;
    // Every module the page imports, by the library's own list of them.
    let modules = fanout::ui::MODULES
        .iter()
        .map(|(name, _)| (format!("/ui/{name}"), "text/javascript"));
    let files = [
        ("/ui".to_string(), "text/html"),
        ("/ui/".to_string(), "text/html"),
        ("/ui/style.css".to_string(), "text/css"),
    ];
    for (path, kind) in files.into_iter().chain(modules) {
        let res = app
            .client
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let h = res.headers();
        assert!(
            h["content-type"].to_str().unwrap().starts_with(kind),
            "{path}"
        );
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'self'") && csp.contains("connect-src 'self'"),
            "{csp}"
        );
        assert!(!res.text().await.unwrap().is_empty());
    }
    assert_eq!(app.get("/ui/nothing.js").await.status, 404);
    let missing = uuid::Uuid::now_v7();
    assert_eq!(
        app.get(&format!("/batches/{missing}/timeline"))
            .await
            .status,
        401
    );
    assert_eq!(
        app.get(&format!("/batches/{missing}/latency")).await.status,
        401
    );
    assert_eq!(app.get("/batches").await.status, 401);
}

/// The JSON a report embeds.
fn embedded(html: &str) -> Value {
    let tag = "<script type=\"application/json\" id=\"fanout-report\">";
    let start = html.find(tag).expect("report data") + tag.len();
    let end = start + html[start..].find("</script>").unwrap();
    serde_json::from_str(&html[start..end]).unwrap()
}

#[tokio::test]
async fn an_html_report_holds_the_page_and_the_batchs_picture_and_loads_nothing() {
    let target = spawn_target().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.html");
    let port = target.base.rsplit(':').next().unwrap().to_owned();
    let run = run_binary([
        "run",
        &format!("{}/hello", target.base),
        "-n",
        "300",
        "-c",
        "8",
        "--allow-net",
        &format!("127.0.0.1:{port}"),
        "--format",
        "html",
        "--out",
        &out.display().to_string(),
    ])
    .await;
    assert_exit(&run, 0);
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.contains("Content-Security-Policy"));
    assert!(!html.contains("src=\"/ui/") && !html.contains("href=\"/ui/"));
    let data = embedded(&html);
    assert_eq!(data["batch"]["summary"]["succeeded"], 300);
    assert!(
        data["batch"].get("results").is_none(),
        "task lists stay out"
    );
    assert_eq!(sum(&data["timeline"]["bins"], "started"), 300);
    assert_eq!(
        data["timeline"]["tasks"].as_array().map(Vec::len),
        Some(0),
        "results errors: no rows for the 200s"
    );
    assert_eq!(data["latency"]["duration"]["count"], 300);
    assert_eq!(data["latency"]["ttfb"]["count"], 300);

    // The data again, through `fanout report`: the same page.
    let saved = dir.path().join("data.json");
    std::fs::write(&saved, data.to_string()).unwrap();
    let again = dir.path().join("again.html");
    let report = run_binary([
        "report",
        &saved.display().to_string(),
        "--out",
        &again.display().to_string(),
    ])
    .await;
    assert_exit(&report, 0);
    assert_eq!(embedded(&std::fs::read_to_string(&again).unwrap()), data);
    let bad = run_binary(["report", "/nonexistent.json"]).await;
    assert_exit(&bad, 2);
}
