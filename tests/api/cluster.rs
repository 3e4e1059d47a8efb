//! Several instances on one PostgreSQL (`serve` binaries on loopback, a database of their
//! own per test): load runs cut into shards and spread over them, an instance killed with
//! SIGKILL mid-run, what it held claimed again or ended, and counts that stay exact.
//! Skipped without `FANOUT_TEST_POSTGRES_URL`; run once, in the PostgreSQL pass.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{
    Server, assert_exit, batch_file, ended, fresh_postgres, output_of, poll_until, spawn_binary,
    spawn_target, start_cluster, start_instance,
};

/// How long a test waits for a run to reach the state it acts in (shards running here and
/// there): generous, the instances start their shards in their own time.
const SPREAD_LIMIT: Duration = Duration::from_secs(10);

/// A batch read from `node`.
async fn batch(node: &Server, id: &str) -> Value {
    node.get(&format!("/batches/{id}")).await.json
}

async fn database() -> Option<String> {
    let db = fresh_postgres().await;
    if db.is_none() {
        eprintln!("skipped: set FANOUT_TEST_POSTGRES_URL to run the multi-instance tests");
    }
    db
}

fn instances_of(batch: &Value) -> HashSet<String> {
    batch["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["instance_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
#[cfg_attr(
    not(fanout_test_backend = "postgres"),
    ignore = "several instances on one PostgreSQL: run in the PostgreSQL pass"
)]
async fn three_instances_share_a_load_run_and_its_merged_summary_is_exact() {
    let Some(db) = database().await else { return };
    let target = spawn_target().await;
    // Leases long enough that three debug builds sharing two cores with the target never
    // miss a renewal: nothing here is lost, so every request is sent once.
    let shard = ["--shard-size", "2000", "--stale-after", "20s"];
    let nodes = start_cluster(&db, 3, &shard).await;
    let url = format!("{}/hello", target.base);
    let run = json!({ "jobs": [{ "kind": "http", "url": url }, { "kind": "http", "url": format!("{}/status/404", target.base), "expect_status": "any" }],
        "load": { "repeat": 30000 }, "concurrency": 60, "results": "errors",
        "thresholds": { "max_error_rate": 0.01 } });

    let res = nodes[0].post(&run).await;

    let merged = res.json;
    assert_eq!(res.status, 201, "{merged}");
    assert_eq!(merged["status"], "completed");
    assert_eq!(merged["shards"].as_array().unwrap().len(), 30);
    assert_eq!(
        instances_of(&merged).len(),
        3,
        "every instance ran at least one shard: {}",
        merged["shards"]
    );
    let s = &merged["summary"];
    assert_eq!(s["tasks"], 60000);
    assert_eq!(s["succeeded"], 60000);
    assert_eq!(s["pending"], 0);
    assert_eq!(s["http_status"], json!({ "200": 30000, "404": 30000 }));
    assert_eq!(target.hits.load(Ordering::Relaxed), 60000);
    assert_eq!(merged["verdict"]["passed"], true, "{}", merged["verdict"]);
    // The accepting instance answers with the batch as every instance reads it.
    let elsewhere = batch(&nodes[2], merged["id"].as_str().unwrap()).await;
    assert_eq!(elsewhere["summary"], merged["summary"]);

    // One instance alone (its shard size above the run) gives the same counts.
    drop(nodes);
    let single = start_instance(&db, "alone", &["--shard-size", "100000"]);
    let one = single.post(&run).await.json;
    assert_eq!(one["shards"].as_array().unwrap().len(), 1);
    for key in [
        "tasks",
        "succeeded",
        "failed",
        "timed_out",
        "http_status",
        "errors",
    ] {
        assert_eq!(one["summary"][key], s[key], "{key}");
    }
    let instances = single.get("/instances").await.json;
    assert!(
        instances["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["instance_id"] == "alone" && i["role"] == "all"),
        "{instances}"
    );
}

#[tokio::test]
#[cfg_attr(
    not(fanout_test_backend = "postgres"),
    ignore = "several instances on one PostgreSQL: run in the PostgreSQL pass"
)]
async fn a_killed_instances_shards_run_elsewhere_and_every_task_counts_once() {
    let Some(db) = database().await else { return };
    let target = spawn_target().await;
    let shard = ["--shard-size", "500"];
    let mut nodes = start_cluster(&db, 3, &shard).await;
    // The open model: 1,500 requests a second for 4 s, in 12 shards.
    let run = json!({ "jobs": [{ "kind": "http", "url": format!("{}/hello", target.base) }],
        "load": { "repeat": 6000, "rate_per_s": 1500 }, "concurrency": 48, "results": "errors" });
    let id = nodes[0].submit(&run).await;

    kill_node3_once_spread(&mut nodes, &id).await;

    let done = nodes[0].finished(&id).await;

    assert_eq!(done["status"], "completed", "{done}");
    let s = &done["summary"];
    assert_eq!(s["tasks"], 6000);
    assert_eq!(
        s["succeeded"], 6000,
        "no task missing, none counted twice: {s}"
    );
    assert_eq!(s["http_status"], json!({ "200": 6000 }));
    assert!(s["lost"]["shards"].as_u64().unwrap() >= 1, "{s}");
    // At least once: the target may have seen the lost tasks twice, never fewer.
    assert!(target.hits.load(Ordering::Relaxed) >= 6000);
    let shards = done["shards"].as_array().unwrap();
    let reclaimed: Vec<&Value> = shards.iter().filter(|s| s["attempt"] == 2).collect();
    assert!(!reclaimed.is_empty(), "{}", done["shards"]);
    assert!(
        reclaimed.iter().all(|s| s["instance_id"] != "node3"),
        "the lost shards ran on the live instances"
    );
    assert!(shards.iter().all(|s| s["status"] == "completed"));
}

/// Once every one of the three instances runs some of batch `id`, kills node3 (SIGKILL).
async fn kill_node3_once_spread(nodes: &mut [Server], id: &str) {
    let spread = poll_until(SPREAD_LIMIT, || async {
        let b = batch(&nodes[0], id).await;
        let running: HashSet<String> = b["shards"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["status"] == "running")
            .map(|s| s["instance_id"].as_str().unwrap().to_owned())
            .collect();
        (running.contains("node3") && running.len() == 3).then_some(())
    })
    .await;
    spread.expect("the shards spread over the three instances");
    tokio::time::sleep(Duration::from_millis(500)).await;
    nodes[2].kill();
}

#[tokio::test]
#[cfg_attr(
    not(fanout_test_backend = "postgres"),
    ignore = "several instances on one PostgreSQL: run in the PostgreSQL pass"
)]
async fn a_killed_instance_fails_the_lost_check_and_fanout_run_names_it() {
    let Some(db) = database().await else { return };
    let target = spawn_target().await;
    let mut nodes = start_cluster(&db, 3, &["--shard-size", "500"]).await;
    // As the kill test's run, with thresholds the run meets: only the loss fails it.
    let run = json!({ "jobs": [{ "kind": "http", "url": format!("{}/hello", target.base) }],
        "load": { "repeat": 6000, "rate_per_s": 1500 }, "concurrency": 48, "results": "errors",
        "thresholds": { "max_error_rate": 0.5 } });
    let (_dir, file) = batch_file(&run);
    let cli = spawn_binary(["run", file.as_str(), "--server", nodes[0].base.as_str()]);
    let id = poll_until(SPREAD_LIMIT, || async {
        let listed = nodes[0].get("/batches").await.json;
        listed["items"][0]["id"].as_str().map(str::to_owned)
    })
    .await
    .expect("fanout run submitted the batch");

    kill_node3_once_spread(&mut nodes, &id).await;
    let out = output_of(cli).await;

    let text = String::from_utf8_lossy(&out.stdout);
    assert_exit(&out, 1);
    let done = batch(&nodes[0], &id).await;
    assert_eq!(done["summary"]["succeeded"], 6000, "{}", done["summary"]);
    let lost = &done["summary"]["lost"];
    assert_eq!(lost["instances"], json!(["node3"]), "{lost}");
    assert!(lost["at"].is_string(), "{lost}");
    assert!(lost["rate_per_s"].as_f64().is_some(), "{lost}");
    let window = lost["window_ms"].as_f64().unwrap();
    assert!(window > 0.0, "{lost}");
    let verdict = &done["verdict"];
    assert_eq!(verdict["passed"], false, "{verdict}");
    let check = verdict["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "lost")
        .expect("a lost check");
    assert_eq!(
        (check["limit"].as_f64(), check["actual"].as_f64()),
        (Some(0.0), Some(window))
    );
    assert_eq!(check["passed"], false);
    let detail = check["detail"].as_str().unwrap();
    assert!(detail.starts_with("instance node3 lost at "), "{detail}");
    assert!(
        detail.contains(&format!("no runner for {window} ms")),
        "{detail}"
    );
    assert!(text.contains(&format!("  lost        {detail}")), "{text}");
    assert!(text.contains("[FAIL] lost"), "{text}");
    assert!(text.contains("[ok] max_error_rate"), "{text}");
}

#[tokio::test]
#[cfg_attr(
    not(fanout_test_backend = "postgres"),
    ignore = "several instances on one PostgreSQL: run in the PostgreSQL pass"
)]
async fn an_async_batch_whose_instance_dies_after_the_202_completes_on_another() {
    let Some(db) = database().await else { return };
    let mut a = start_instance(&db, "a", &[]);
    let b = start_instance(&db, "b", &[]);
    let sleeps = |on_lost: Option<&str>| {
        let mut batch = json!({ "return_exceptions": true, "jobs": [
            { "kind": "sleep", "id": "one", "duration_ms": 3000 },
            { "kind": "sleep", "id": "two", "duration_ms": 3000 },
            { "kind": "sleep", "id": "quick", "duration_ms": 1 }
        ]});
        if let Some(v) = on_lost {
            batch["on_lost"] = json!(v);
        }
        batch
    };
    let rerun = a.post_async(&sleeps(None)).await.json;
    let interrupt = a.post_async(&sleeps(Some("interrupt"))).await.json;
    // Long enough for the quick task's row to be written (writes are grouped every 100 ms),
    // and for a checkpoint (one a second) taken while the long ones ran.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    a.kill();

    let rerun = b.finished(rerun["id"].as_str().unwrap()).await;
    let interrupt = b.finished(interrupt["id"].as_str().unwrap()).await;

    assert_eq!(rerun["status"], "completed", "{rerun}");
    assert_eq!(rerun["summary"]["succeeded"], 3, "{rerun}");
    let by_id: HashMap<&str, &Value> = rerun["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_str().unwrap(), t))
        .collect();
    assert_eq!(by_id["quick"]["status"], "succeeded");
    assert!(by_id["one"]["output"]["slept_ms"].as_f64().unwrap() >= 3000.0);
    // `attempts` counts on: the lost run's, then the one that finished.
    assert_eq!(by_id["one"]["attempts"], 2, "{rerun}");
    assert_eq!(by_id["two"]["attempts"], 2, "{rerun}");
    assert_eq!(by_id["quick"]["attempts"], 1, "ended before the loss");
    assert_eq!(rerun["shards"][0]["instance_id"], "b");
    assert_eq!(rerun["shards"][0]["attempt"], 2);

    assert_eq!(interrupt["status"], "interrupted", "{interrupt}");
    let tasks = interrupt["results"].as_array().unwrap();
    assert_eq!(tasks[2]["status"], "succeeded", "the ended task is kept");
    assert_eq!(tasks[0]["status"], "interrupted");
    assert_eq!(tasks[1]["status"], "interrupted");
    assert_eq!(tasks[0]["attempts"], 1, "it ran in the lost run");
    assert_eq!(interrupt["summary"]["interrupted"], 2);
}

#[tokio::test]
#[cfg_attr(
    not(fanout_test_backend = "postgres"),
    ignore = "several instances on one PostgreSQL: run in the PostgreSQL pass"
)]
async fn after_kill_9_and_a_restart_under_a_new_id_nothing_stays_running() {
    let Some(db) = database().await else { return };
    let mut old = start_instance(&db, "old-container", &[]);
    let mut ids = Vec::new();
    for n in 0..20 {
        let mut batch = json!({ "jobs": [{ "kind": "sleep", "duration_ms": 30000 }] });
        if n % 2 == 0 {
            // Half of them end interrupted rather than run their 30 s again.
            batch["on_lost"] = json!("interrupt");
        } else {
            batch["jobs"][0]["duration_ms"] = json!(300);
            batch["jobs"]
                .as_array_mut()
                .unwrap()
                .push(json!({ "kind": "sleep", "duration_ms": 30000 }));
            batch["timeout_ms"] = json!(1000);
        }
        let res = old.post_async(&batch).await;
        assert_eq!(res.status, 202);
        ids.push(res.json["id"].as_str().unwrap().to_owned());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    old.kill();
    let new = start_instance(&db, "new-container", &[]);

    for id in &ids {
        let b = new.finished(id).await;
        assert_ne!(b["status"], "running", "{b}");
        assert!(
            b["shards"]
                .as_array()
                .unwrap()
                .iter()
                .all(|s| s["status"] != "running")
        );
    }
    let list = new.get("/batches?status=running&limit=100").await.json;
    assert_eq!(list["items"], json!([]), "{list}");
}

/// A TCP proxy on loopback between one instance and PostgreSQL that the test can turn into a
/// black hole: while it is one, nothing is forwarded either way (bytes wait in the proxy) and
/// connections stay open, as when a network drops packets without resetting anything.
struct Partition {
    port: u16,
    dark: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Partition {
    async fn start(to: std::net::SocketAddr) -> Partition {
        use std::sync::atomic::AtomicBool;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let dark = std::sync::Arc::new(AtomicBool::new(false));
        let flag = dark.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let flag = flag.clone();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(to).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(pipe(cr, sw, flag.clone()), pipe(sr, cw, flag));
                });
            }
        });
        Partition { port, dark }
    }

    fn cut(&self) {
        self.dark.store(true, Ordering::SeqCst);
    }

    fn heal(&self) {
        self.dark.store(false, Ordering::SeqCst);
    }
}

/// Copies one direction, holding every byte back while the link is dark.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    dark: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while dark.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while dark.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

// Several threads: starting a binary blocks the test's thread while the binary connects
// through the proxy, which runs on the test's runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(fanout_test_backend = "postgres"),
    ignore = "several instances on one PostgreSQL: run in the PostgreSQL pass"
)]
async fn an_instance_cut_off_from_the_database_loses_its_shards_and_its_late_writes_change_nothing()
{
    let Some(db) = database().await else { return };
    let mut url = url::Url::parse(&db).unwrap();
    let pg = std::net::SocketAddr::new(
        url.host_str().unwrap().parse().unwrap(),
        url.port().unwrap_or(5432),
    );
    let partition = Partition::start(pg).await;
    url.set_port(Some(partition.port)).unwrap();
    let target = spawn_target().await;
    let shard = ["--shard-size", "500"];
    let cut_off = start_instance(url.as_str(), "cut-off", &shard);
    let other = start_instance(&db, "connected", &shard);
    other.instances_up(2).await;
    let run = json!({ "jobs": [{ "kind": "http", "url": format!("{}/hello", target.base) }],
        "load": { "repeat": 6000, "rate_per_s": 1000 }, "concurrency": 24, "results": "errors" });
    let id = other.submit(&run).await;
    let held = poll_until(SPREAD_LIMIT, || async {
        let b = batch(&other, &id).await;
        b["shards"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["instance_id"] == "cut-off" && s["status"] == "running")
            .then_some(())
    })
    .await;
    assert!(
        held.is_some(),
        "the instance behind the proxy runs part of the load"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;

    partition.cut();
    let done = other.finished(&id).await;
    partition.heal();
    // Its writes held back during the partition now reach the database, and are refused.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = batch(&other, &id).await;

    assert_eq!(done["status"], "completed", "{done}");
    let s = &done["summary"];
    assert_eq!(s["tasks"], 6000);
    assert_eq!(s["succeeded"], 6000, "{s}");
    assert!(s["lost"]["shards"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(
        after["summary"], done["summary"],
        "late writes changed nothing"
    );
    assert_eq!(after["shards"], done["shards"]);
    assert!(
        done["shards"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["attempt"] == 2)
            .all(|s| s["instance_id"] == "connected"),
        "{}",
        done["shards"]
    );
    assert!(
        cut_off.logged("stopping every shard held here"),
        "the cut-off instance noticed it lost its leases and stopped its copy"
    );
    let seen = cut_off.get("/instances").await.json;
    assert!(
        seen["items"].is_array(),
        "the cut-off instance serves again: {seen}"
    );
}

#[tokio::test]
#[cfg_attr(
    not(fanout_test_backend = "postgres"),
    ignore = "several instances on one PostgreSQL: run in the PostgreSQL pass"
)]
async fn an_api_instance_accepts_and_a_worker_runs() {
    let Some(db) = database().await else { return };
    let api = start_instance(&db, "front", &["--role", "api"]);
    let worker = start_instance(&db, "back", &["--role", "worker"]);

    let res = api
        .post(&json!({ "jobs": [{ "kind": "sleep", "duration_ms": 20 }, { "kind": "sleep", "duration_ms": 10 }] }))
        .await;

    let b = res.json;
    assert_eq!(res.status, 201, "{b}");
    assert_eq!(b["status"], "completed", "{b}");
    assert_eq!(b["shards"][0]["instance_id"], "back");
    assert_eq!(b["results"][1]["status"], "succeeded");
    let res = reqwest::get(format!("{}/batches", worker.base))
        .await
        .unwrap();
    assert_eq!(res.status(), 404, "a worker serves no API");
    let res = reqwest::get(format!("{}/readyz", worker.base))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let metrics = reqwest::get(format!("{}/metrics", worker.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("fanout_shards_claimed_total 1"),
        "{metrics}"
    );
    let roles: HashSet<(String, String)> = api.get("/instances").await.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["instance_id"].as_str().unwrap().into(),
                i["role"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(roles.contains(&("front".into(), "api".into())), "{roles:?}");
    assert!(
        roles.contains(&("back".into(), "worker".into())),
        "{roles:?}"
    );
}

#[tokio::test]
#[cfg_attr(
    not(fanout_test_backend = "postgres"),
    ignore = "several instances on one PostgreSQL: run in the PostgreSQL pass"
)]
async fn a_delete_reaches_every_shard_wherever_it_runs() {
    let Some(db) = database().await else { return };
    let target = spawn_target().await;
    let shard = ["--shard-size", "100"];
    let nodes = start_cluster(&db, 2, &shard).await;
    let a = &nodes[0];
    // 600 requests at 10 a second: six shards, a minute of work, spread over both.
    let run = json!({ "jobs": [{ "kind": "http", "url": format!("{}/hello", target.base) }],
        "load": { "repeat": 600, "rate_per_s": 10 }, "concurrency": 6, "results": "none" });
    let accepted = a.post_async(&run).await.json;
    let id = accepted["id"].as_str().unwrap().to_owned();
    // Deleted once it runs on both, or after the wait in any case.
    let _ = poll_until(SPREAD_LIMIT, || async {
        (instances_of(&batch(a, &id).await).len() == 2).then_some(())
    })
    .await;

    let res = reqwest::Client::new()
        .delete(format!("{}/batches/{id}", a.base))
        .send()
        .await
        .unwrap();
    assert!(
        res.status() == 200 || res.status() == 202,
        "{}",
        res.status()
    );
    let done = a.finished(&id).await;

    assert_eq!(done["status"], "cancelled", "{done}");
    assert_eq!(instances_of(&done).len(), 2, "{}", done["shards"]);
    let shards = done["shards"].as_array().unwrap();
    assert!(
        shards.iter().all(|s| s["status"] == "cancelled"),
        "{}",
        done["shards"]
    );
    let s = &done["summary"];
    assert_eq!(s["tasks"], 600);
    assert_eq!(s["pending"], 0);
    assert_eq!(ended(s), 600, "{s}");
    assert!(s["cancelled"].as_u64().unwrap() > 500, "{s}");
}

#[tokio::test]
#[cfg_attr(
    not(fanout_test_backend = "postgres"),
    ignore = "several instances on one PostgreSQL: run in the PostgreSQL pass"
)]
async fn a_staged_weighted_run_on_two_instances_merges_its_stages_and_jobs_exactly() {
    let Some(db) = database().await else { return };
    let target = spawn_target().await;
    let shard = ["--shard-size", "100", "--stale-after", "20s"];
    let nodes = start_cluster(&db, 2, &shard).await;
    // 0 → 400/s over a second, then 400/s for a second: 200 and 400 tasks, in cycles of
    // two `hello` and one `missing`.
    let run = json!({
        "jobs": [
            { "id": "hello", "kind": "http", "url": format!("{}/hello", target.base), "weight": 2 },
            { "id": "missing", "kind": "http", "url": format!("{}/status/404", target.base), "expect_status": "any" }
        ],
        "load": { "stages": [
            { "duration_ms": 1000, "target_rate_per_s": 400 },
            { "duration_ms": 1000, "target_rate_per_s": 400 }
        ] },
        "concurrency": 30, "results": "none",
        "thresholds": { "by_job": { "missing": { "max_error_rate": 0 } } }
    });

    let res = nodes[0].post(&run).await;

    let merged = res.json;
    assert_eq!(res.status, 201, "{merged}");
    assert_eq!(merged["status"], "completed", "{merged}");
    assert_eq!(merged["shards"].as_array().unwrap().len(), 6);
    assert_eq!(instances_of(&merged).len(), 2, "{}", merged["shards"]);
    let s = &merged["summary"];
    assert_eq!(s["tasks"], 600);
    let stages: Vec<&Value> = s["stages"].as_array().unwrap().iter().collect();
    assert_eq!(stages.len(), 2);
    assert_eq!(
        (stages[0]["tasks"].clone(), stages[1]["tasks"].clone()),
        (json!(200), json!(400))
    );
    assert_eq!(s["by_job"]["hello"]["tasks"], 400);
    assert_eq!(s["by_job"]["hello"]["http_status"], json!({ "200": 400 }));
    assert_eq!(s["by_job"]["missing"]["http_status"], json!({ "404": 200 }));
    assert_eq!(s["by_job"]["missing"]["tasks"], 200);
    assert_eq!(target.hits.load(Ordering::Relaxed), 600);
    let check = merged["verdict"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "by_job.missing.max_error_rate")
        .cloned()
        .unwrap();
    assert_eq!(check["passed"], true, "{check}");
    // Every instance reads the same merged figures.
    let elsewhere = batch(&nodes[1], merged["id"].as_str().unwrap()).await;
    assert_eq!(elsewhere["summary"]["by_job"], s["by_job"]);
    assert_eq!(elsewhere["summary"]["stages"], s["stages"]);
    // The page's picture, merged from both instances' shards.
    let id = merged["id"].as_str().unwrap();
    let timeline = nodes[1].get(&format!("/batches/{id}/timeline")).await.json;
    let started: u64 = timeline["bins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["started"].as_u64().unwrap())
        .sum();
    assert_eq!(started, 600, "{timeline}");
    let latency = nodes[0].get(&format!("/batches/{id}/latency")).await.json;
    assert_eq!(latency["count"], 600, "{latency}");
}
