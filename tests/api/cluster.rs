//! Several instances on one PostgreSQL (`serve` binaries on loopback, a database of their
//! own per test): load runs cut into shards and spread over them, an instance killed with
//! SIGKILL mid-run, what it held claimed again or ended, and counts that stay exact.
//! Skipped without `FANOUT_TEST_POSTGRES_URL`; run once, in the PostgreSQL pass.

use std::collections::{HashMap, HashSet};
use std::process::Child;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{fresh_postgres, spawn_target, start_binary};

/// A `serve` binary sharing the test's database.
struct Node {
    child: Child,
    base: String,
    logs: std::sync::mpsc::Receiver<String>,
}

impl Node {
    fn start(db: &str, id: &str, extra: &[&str]) -> Node {
        let mut args = vec![
            "--database-url",
            db,
            "--instance-id",
            id,
            "--allow-net",
            "127.0.0.1",
        ];
        // Short leases, so that losses are seen within seconds, unless the test says.
        if !extra.contains(&"--stale-after") {
            args.extend_from_slice(&["--stale-after", "2s"]);
        }
        args.extend_from_slice(extra);
        let (child, base, logs) = start_binary(&args, &[]);
        Node { child, base, logs }
    }

    /// Whether a log line so far says `what`.
    fn logged(&self, what: &str) -> bool {
        self.logs.try_iter().any(|line| line.contains(what))
    }

    /// SIGKILL: nothing of it runs after this, nothing is flushed.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    async fn post(&self, batch: &Value, asynchronous: bool) -> (u16, Value) {
        let mut req = reqwest::Client::new()
            .post(format!("{}/batches", self.base))
            .body(batch.to_string());
        if asynchronous {
            req = req.header("prefer", "respond-async");
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (
            status,
            serde_json::from_slice(&res.bytes().await.unwrap()).unwrap(),
        )
    }

    async fn get(&self, path: &str) -> Value {
        let res = reqwest::get(format!("{}{path}", self.base)).await.unwrap();
        serde_json::from_slice(&res.bytes().await.unwrap()).unwrap()
    }

    /// The batch once finished (60 s at most: generous, the runs here take seconds).
    async fn finished(&self, id: &str) -> Value {
        for _ in 0..600 {
            let b = self.get(&format!("/batches/{id}")).await;
            if !b["finished_at"].is_null() {
                return b;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "batch {id} did not finish: {}",
            self.get(&format!("/batches/{id}")).await
        );
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `node` lists `n` instances (each writes its heartbeat once it runs).
async fn all_up(node: &Node, n: usize) {
    for _ in 0..100 {
        if node.get("/instances").await["items"]
            .as_array()
            .map_or(0, Vec::len)
            >= n
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} instances came up");
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
    let nodes: Vec<Node> = (1..=3)
        .map(|n| Node::start(&db, &format!("node{n}"), &shard))
        .collect();
    all_up(&nodes[0], 3).await;
    let url = format!("{}/hello", target.base);
    let run = json!({ "jobs": [{ "kind": "http", "url": url }, { "kind": "http", "url": format!("{}/status/404", target.base), "expect_status": "any" }],
        "load": { "repeat": 30000 }, "concurrency": 60, "results": "errors",
        "thresholds": { "max_error_rate": 0.01 } });

    let (status, merged) = nodes[0].post(&run, false).await;

    assert_eq!(status, 201, "{merged}");
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
    let elsewhere = nodes[2]
        .get(&format!("/batches/{}", merged["id"].as_str().unwrap()))
        .await;
    assert_eq!(elsewhere["summary"], merged["summary"]);

    // One instance alone (its shard size above the run) gives the same counts.
    drop(nodes);
    let single = Node::start(&db, "alone", &["--shard-size", "100000"]);
    let (_, one) = single.post(&run, false).await;
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
    let instances = single.get("/instances").await;
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
    let mut nodes: Vec<Node> = (1..=3)
        .map(|n| Node::start(&db, &format!("node{n}"), &shard))
        .collect();
    all_up(&nodes[0], 3).await;
    // The open model: 1,500 requests a second for 4 s, in 12 shards.
    let run = json!({ "jobs": [{ "kind": "http", "url": format!("{}/hello", target.base) }],
        "load": { "repeat": 6000, "rate_per_s": 1500 }, "concurrency": 48, "results": "errors" });
    let (status, accepted) = nodes[0].post(&run, true).await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["id"].as_str().unwrap().to_owned();

    // Once every instance runs some of it, kill one.
    let mut victim = None;
    for _ in 0..100 {
        let b = nodes[0].get(&format!("/batches/{id}")).await;
        let running: HashSet<String> = b["shards"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["status"] == "running")
            .map(|s| s["instance_id"].as_str().unwrap().to_owned())
            .collect();
        if running.contains("node3") && running.len() == 3 {
            victim = Some(2);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let victim = victim.expect("the shards spread over the three instances");
    tokio::time::sleep(Duration::from_millis(500)).await;
    nodes[victim].kill();

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

#[tokio::test]
#[cfg_attr(
    not(fanout_test_backend = "postgres"),
    ignore = "several instances on one PostgreSQL: run in the PostgreSQL pass"
)]
async fn an_async_batch_whose_instance_dies_after_the_202_completes_on_another() {
    let Some(db) = database().await else { return };
    let mut a = Node::start(&db, "a", &[]);
    let b = Node::start(&db, "b", &[]);
    let sleeps = |on_lost: Option<&str>| {
        let mut batch = json!({ "return_exceptions": true, "jobs": [
            { "kind": "sleep", "id": "one", "duration_ms": 800 },
            { "kind": "sleep", "id": "two", "duration_ms": 800 },
            { "kind": "sleep", "id": "quick", "duration_ms": 1 }
        ]});
        if let Some(v) = on_lost {
            batch["on_lost"] = json!(v);
        }
        batch
    };
    let (_, rerun) = a.post(&sleeps(None), true).await;
    let (_, interrupt) = a.post(&sleeps(Some("interrupt")), true).await;
    // Long enough for the quick task's row to be written (writes are grouped every 100 ms).
    tokio::time::sleep(Duration::from_millis(400)).await;
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
    assert!(by_id["one"]["output"]["slept_ms"].as_f64().unwrap() >= 800.0);
    assert_eq!(rerun["shards"][0]["instance_id"], "b");
    assert_eq!(rerun["shards"][0]["attempt"], 2);

    assert_eq!(interrupt["status"], "interrupted", "{interrupt}");
    let tasks = interrupt["results"].as_array().unwrap();
    assert_eq!(tasks[2]["status"], "succeeded", "the ended task is kept");
    assert_eq!(tasks[0]["status"], "interrupted");
    assert_eq!(tasks[1]["status"], "interrupted");
    assert_eq!(interrupt["summary"]["interrupted"], 2);
}

#[tokio::test]
#[cfg_attr(
    not(fanout_test_backend = "postgres"),
    ignore = "several instances on one PostgreSQL: run in the PostgreSQL pass"
)]
async fn after_kill_9_and_a_restart_under_a_new_id_nothing_stays_running() {
    let Some(db) = database().await else { return };
    let mut old = Node::start(&db, "old-container", &[]);
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
        let (status, b) = old.post(&batch, true).await;
        assert_eq!(status, 202);
        ids.push(b["id"].as_str().unwrap().to_owned());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    old.kill();
    let new = Node::start(&db, "new-container", &[]);

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
    let list = new.get("/batches?status=running&limit=100").await;
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
    let cut_off = Node::start(url.as_str(), "cut-off", &shard);
    let other = Node::start(&db, "connected", &shard);
    all_up(&other, 2).await;
    let run = json!({ "jobs": [{ "kind": "http", "url": format!("{}/hello", target.base) }],
        "load": { "repeat": 6000, "rate_per_s": 1000 }, "concurrency": 24, "results": "errors" });
    let (status, accepted) = other.post(&run, true).await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["id"].as_str().unwrap().to_owned();
    let mut held = false;
    for _ in 0..100 {
        let b = other.get(&format!("/batches/{id}")).await;
        held = b["shards"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["instance_id"] == "cut-off" && s["status"] == "running");
        if held {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(held, "the instance behind the proxy runs part of the load");
    tokio::time::sleep(Duration::from_millis(700)).await;

    partition.cut();
    let done = other.finished(&id).await;
    partition.heal();
    // Its writes held back during the partition now reach the database, and are refused.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = other.get(&format!("/batches/{id}")).await;

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
    let seen = cut_off.get("/instances").await;
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
    let api = Node::start(&db, "front", &["--role", "api"]);
    let worker = Node::start(&db, "back", &["--role", "worker"]);

    let (status, b) = api
        .post(&json!({ "jobs": [{ "kind": "sleep", "duration_ms": 20 }, { "kind": "sleep", "duration_ms": 10 }] }), false)
        .await;

    assert_eq!(status, 201, "{b}");
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
    let roles: HashSet<(String, String)> = api.get("/instances").await["items"]
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
    let a = Node::start(&db, "a", &shard);
    let _b = Node::start(&db, "b", &shard);
    all_up(&a, 2).await;
    // 600 requests at 10 a second: six shards, a minute of work, spread over both.
    let run = json!({ "jobs": [{ "kind": "http", "url": format!("{}/hello", target.base) }],
        "load": { "repeat": 600, "rate_per_s": 10 }, "concurrency": 6, "results": "none" });
    let (_, accepted) = a.post(&run, true).await;
    let id = accepted["id"].as_str().unwrap().to_owned();
    for _ in 0..100 {
        let b = a.get(&format!("/batches/{id}")).await;
        if instances_of(&b).len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

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
    let ended = [
        "succeeded",
        "failed",
        "timed_out",
        "cancelled",
        "interrupted",
    ]
    .iter()
    .map(|k| s[k].as_u64().unwrap())
    .sum::<u64>();
    assert_eq!(ended, 600, "{s}");
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
    let nodes: Vec<Node> = (1..=2)
        .map(|n| Node::start(&db, &format!("node{n}"), &shard))
        .collect();
    all_up(&nodes[0], 2).await;
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

    let (status, merged) = nodes[0].post(&run, false).await;

    assert_eq!(status, 201, "{merged}");
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
    let elsewhere = nodes[1]
        .get(&format!("/batches/{}", merged["id"].as_str().unwrap()))
        .await;
    assert_eq!(elsewhere["summary"]["by_job"], s["by_job"]);
    assert_eq!(elsewhere["summary"]["stages"], s["stages"]);
    // The page's picture, merged from both instances' shards.
    let id = merged["id"].as_str().unwrap();
    let timeline = nodes[1].get(&format!("/batches/{id}/timeline")).await;
    let started: u64 = timeline["bins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["started"].as_u64().unwrap())
        .sum();
    assert_eq!(started, 600, "{timeline}");
    let latency = nodes[0].get(&format!("/batches/{id}/latency")).await;
    assert_eq!(latency["count"], 600, "{latency}");
}
