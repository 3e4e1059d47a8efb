//! Test helpers: the real app on port 0 (in this process, or the `fanout` binary), waiting on
//! what it does, and a local HTTP server standing in for every target.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::ops::Deref;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get};
use chrono::{DateTime, Utc};
use fanout::app::{App, Hooks};
use fanout::config::Config;
use serde_json::Value;

/// The HTTP side of one running instance, in this process or a binary: its address and a
/// client.
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
}

/// The app running in this test's process (it reads as its `Api`).
pub struct TestApp {
    api: Api,
    pub files: Arc<tempfile::TempDir>,
    pub config: Config,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub json: Value,
}

/// Which store the suite runs on: `FANOUT_TEST_BACKEND` = `sqlite` (default), `postgres`
/// (needs `FANOUT_TEST_POSTGRES_URL`), or `memory`.
pub fn backend() -> String {
    std::env::var("FANOUT_TEST_BACKEND").unwrap_or_else(|_| "sqlite".into())
}

/// The PostgreSQL server URL for tests, if one was given.
pub fn postgres_url() -> Option<String> {
    std::env::var("FANOUT_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// A fresh, empty database for one test, on the backend under test.
pub async fn fresh_database(files: &std::path::Path) -> String {
    match backend().as_str() {
        "memory" => "memory://".into(),
        "postgres" => fresh_postgres()
            .await
            .expect("FANOUT_TEST_BACKEND=postgres needs FANOUT_TEST_POSTGRES_URL"),
        _ => format!("sqlite://{}", files.join("fanout.db").display()),
    }
}

/// Creates an empty PostgreSQL database (named `fanout_t_...`) and returns its URL.
pub async fn fresh_postgres() -> Option<String> {
    use sqlx::Executor;
    let admin = postgres_url()?;
    sqlx::any::install_default_drivers();
    let name = format!("fanout_t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
        .await
        .expect("connect to PostgreSQL");
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .expect("create database");
    let mut url = url::Url::parse(&admin).expect("PostgreSQL URL");
    url.set_path(&name);
    Some(url.to_string())
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_hooked(configure, Hooks::default()).await
}

/// With stand-ins for name lookups and dialling (see `fanout::app::Hooks`).
pub async fn spawn_app_hooked(configure: impl FnOnce(&mut Config), hooks: Hooks) -> TestApp {
    let files = Arc::new(tempfile::tempdir().expect("temp dir"));
    let mut config = Config::defaults();
    config.listen = "127.0.0.1:0".parse().expect("an address");
    config.files_root = files.path().join("root");
    std::fs::create_dir(&config.files_root).expect("files root");
    config.database_url = fresh_database(files.path()).await;
    config.instance_id = Some(format!("test-{}", uuid::Uuid::new_v4().simple()));
    // The local targets these tests fetch from; everything else stays refused.
    config.allow_net = vec!["127.0.0.1".into()];
    configure(&mut config);
    start_hooked(config, files, hooks).await
}

async fn start(config: Config, files: Arc<tempfile::TempDir>) -> TestApp {
    start_hooked(config, files, Hooks::default()).await
}

async fn start_hooked(config: Config, files: Arc<tempfile::TempDir>, hooks: Hooks) -> TestApp {
    let app = App::build_with(config.clone(), hooks)
        .await
        .expect("app builds");
    let base = format!("http://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        app.run_until(async {
            let _ = stopped.await;
        })
        .await
        .expect("app runs");
    });
    TestApp {
        api: Api::new(base),
        files,
        config,
        stop: Some(stop),
        handle: Some(handle),
    }
}

impl Api {
    fn new(base: String) -> Api {
        Api {
            base,
            client: reqwest::Client::new(),
        }
    }

    pub async fn post(&self, body: &Value) -> Answer {
        self.post_raw(body.to_string(), &[]).await
    }

    /// Posts a batch with `Prefer: respond-async`.
    pub async fn post_async(&self, body: &Value) -> Answer {
        self.post_raw(body.to_string(), &[("prefer", "respond-async")])
            .await
    }

    /// `POST /batches/{id}/rerun`: the batch's stored request run again.
    pub async fn rerun(&self, id: &str) -> Answer {
        send(
            self.client
                .post(format!("{}/batches/{id}/rerun", self.base)),
        )
        .await
    }

    /// Starts a batch asynchronously (its answer must be a 202) and returns its id.
    pub async fn submit(&self, body: &Value) -> String {
        let res = self.post_async(body).await;
        assert_eq!(res.status, 202, "{}", res.json);
        res.json["id"].as_str().unwrap().to_owned()
    }

    pub async fn post_raw(
        &self,
        body: impl Into<reqwest::Body>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut req = self
            .client
            .post(format!("{}/batches", self.base))
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        send(req).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        send(self.client.get(format!("{}{path}", self.base))).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        send(self.client.delete(format!("{}{path}", self.base))).await
    }

    /// The batch once it has finished (`finished_at` set).
    pub async fn finished(&self, id: &str) -> Value {
        let path = &format!("/batches/{id}");
        let done = poll_until(FINISH_LIMIT, || async move {
            let b = self.get(path).await.json;
            (!b["finished_at"].is_null()).then_some(b)
        })
        .await;
        match done {
            Some(b) => b,
            None => panic!("batch {id} did not finish: {}", self.get(path).await.json),
        }
    }

    /// Waits until this instance lists `n` instances (each writes its heartbeat once it runs).
    pub async fn instances_up(&self, n: usize) {
        let up = poll_until(Duration::from_secs(10), || async {
            let listed = self.get("/instances").await.json["items"]
                .as_array()
                .map_or(0, Vec::len);
            (listed >= n).then_some(())
        })
        .await;
        up.unwrap_or_else(|| panic!("fewer than {n} instances came up"));
    }
}

impl Deref for TestApp {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl TestApp {
    pub fn root(&self) -> std::path::PathBuf {
        self.files.path().join("root")
    }

    /// Stops the server gracefully and starts it again on the same database.
    pub async fn restart(self) -> TestApp {
        let (config, files) = (self.config.clone(), self.files.clone());
        self.stop().await;
        start(config, files).await
    }

    /// Another instance on the same database, with its own id and address.
    pub async fn sibling(&self, instance_id: &str) -> TestApp {
        let mut config = self.config.clone();
        config.instance_id = Some(instance_id.into());
        start(config, self.files.clone()).await
    }

    /// Stops serving at once, as a crash would: no drain, no last writes.
    pub fn abandon(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
        self.stop.take();
    }

    /// Stops the server (as SIGTERM would) and waits for it to exit.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.expect("server task");
        }
    }
}

/// Two in-process instances on one database (PostgreSQL: the store instances share), `a` with
/// the default id and `instance-b`. Heartbeats come every second (a third of `stale_after`),
/// so what one instance asks of the other is seen quickly.
pub async fn two_instances() -> (TestApp, TestApp) {
    let a = spawn_app_with(|c| c.stale_after = Duration::from_secs(3)).await;
    let b = a.sibling("instance-b").await;
    (a, b)
}

/// How long a batch may take to finish before a test gives up on it: generous, since the
/// cluster tests' loads run for seconds on a machine other builds share.
const FINISH_LIMIT: Duration = Duration::from_secs(120);

/// How often `poll_until` asks.
const POLL_STEP: Duration = Duration::from_millis(50);

/// Asks `check` every 50 ms until it gives an answer, for `limit` at most; `None` if it never
/// did. Give a generous limit: a loaded machine is slow, and a test that gives up early fails
/// for nothing.
pub async fn poll_until<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(answer) = check().await {
            return Some(answer);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL_STEP).await;
    }
}

impl Answer {
    pub async fn from(res: reqwest::Response) -> Answer {
        answer(res).await
    }
}

async fn send(req: reqwest::RequestBuilder) -> Answer {
    answer(req.send().await.expect("request sent")).await
}

async fn answer(res: reqwest::Response) -> Answer {
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let bytes = res.bytes().await.expect("body read");
    let json = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
    Answer {
        status,
        headers,
        json,
    }
}

/// How many tasks a batch's summary counts as ended, however each ended.
pub fn ended(summary: &Value) -> u64 {
    [
        "succeeded",
        "failed",
        "timed_out",
        "cancelled",
        "interrupted",
    ]
    .iter()
    .map(|k| summary[k].as_u64().unwrap())
    .sum()
}

pub fn ts(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a timestamp: {v}"))
}

/// A local server standing in for the sites HTTP jobs fetch.
pub struct Target {
    pub base: String,
    pub hits: Arc<AtomicUsize>,
    /// The most requests it served at once.
    pub peak: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct TargetState {
    hits: Arc<AtomicUsize>,
    flaky: Arc<AtomicUsize>,
    in_flight: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

/// Serves `app` on 127.0.0.1, counting every request it is sent: its base URL and the count.
pub async fn serve_counted(app: Router) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = app.layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            let hits = counted.clone();
            async move {
                hits.fetch_add(1, Ordering::SeqCst);
                next.run(req).await
            }
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind target");
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, hits)
}

pub async fn spawn_target() -> Target {
    let state = TargetState {
        hits: Arc::default(),
        flaky: Arc::default(),
        in_flight: Arc::default(),
        peak: Arc::default(),
    };
    let (hits, peak) = (state.hits.clone(), state.peak.clone());
    let app = Router::new()
        .route("/hello", get(|| async { ([("x-target", "yes")], "hello") }))
        .route("/status/{code}", get(|Path(code): Path<u16>| async move {
            (StatusCode::from_u16(code).unwrap(), format!("status {code}"))
        }))
        .route("/bytes/{n}", get(|Path(n): Path<usize>| async move { "a".repeat(n) }))
        .route("/binary", get(|| async { vec![0xffu8, 0xfe, 0x00, 0x80] }))
        .route("/slow/{ms}", get(|Path(ms): Path<u64>| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            "slow"
        }))
        .route("/redirect/{n}", get(|Path(n): Path<u32>| async move {
            if n == 0 { Redirect::to("/hello").into_response() } else { Redirect::to(&format!("/redirect/{}", n - 1)).into_response() }
        }))
        .route("/echo", any(|method: axum::http::Method, headers: HeaderMap, body: String| async move {
            let h: serde_json::Map<String, Value> = headers
                .iter()
                .map(|(k, v)| (k.to_string(), Value::String(v.to_str().unwrap_or("").into())))
                .collect();
            axum::Json(serde_json::json!({ "method": method.as_str(), "headers": h, "body": body }))
        }))
        .route("/redirect-to", get(|axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>| async move {
            Redirect::to(&q["url"])
        }))
        .route("/loop", get(|| async { Redirect::to("/loop") }))
        // Answers, then closes the connection.
        .route("/close", get(|| async { ([("connection", "close")], "bye") }))
        // Fails with 503 twice, then answers 200.
        .route("/flaky", get(|State(s): State<TargetState>| async move {
            if s.flaky.fetch_add(1, Ordering::SeqCst) < 2 {
                (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response()
            } else {
                "recovered".into_response()
            }
        }))
        .layer(axum::middleware::from_fn_with_state(state.clone(), count_hits))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind target");
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Target { base, hits, peak }
}

async fn count_hits(
    State(s): State<TargetState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    s.hits.fetch_add(1, Ordering::SeqCst);
    let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    s.peak.fetch_max(now, Ordering::SeqCst);
    let response = next.run(req).await;
    s.in_flight.fetch_sub(1, Ordering::SeqCst);
    response
}

/// The `fanout` binary with `args`, reading nothing on stdin. It does not see the `FANOUT_*`
/// settings of the shell the tests run in (an image's `FANOUT_LISTEN`, say): a test passes what
/// it means.
fn binary<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fanout"));
    cmd.args(args).stdin(Stdio::null());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("FANOUT_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// Runs the binary to its end, off the test's thread: what it printed and how it exited.
pub async fn run_binary<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>) -> Output {
    output_of(spawn_binary(args)).await
}

/// Starts the binary with its output captured, for a test that signals it before `output_of`.
pub fn spawn_binary<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>) -> Child {
    binary(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts")
}

/// Waits, off the test's thread, for a binary started by `spawn_binary` to exit.
pub async fn output_of(child: Child) -> Output {
    tokio::task::spawn_blocking(move || child.wait_with_output().expect("the binary runs"))
        .await
        .expect("the waiting thread")
}

/// `batch` in a file of its own; the folder holding it lives as long as the first half.
pub fn batch_file(batch: &Value) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("batch.json");
    std::fs::write(&file, batch.to_string()).expect("batch file written");
    let file = file.display().to_string();
    (dir, file)
}

/// `fanout run` on `batch` with exactly these further arguments (no `--allow-net` unless
/// given), to its end.
pub async fn run_batch(batch: &Value, extra: &[&str]) -> Output {
    let (_dir, file) = batch_file(batch);
    run_binary(["run", file.as_str()].iter().chain(extra)).await
}

/// Asserts how the binary exited, showing all it printed when that was not as expected.
#[track_caller]
pub fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends SIGTERM to a process this test started.
pub fn sigterm(pid: u32) {
    // SAFETY: a plain kill(2) of a child this test started.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
}

/// A `serve` binary on an ephemeral port of loopback: its API, its log lines as they come, and
/// the process, killed when this is dropped so that a failed test leaves none behind.
pub struct Server {
    api: Api,
    pub logs: Receiver<String>,
    child: Child,
}

/// `serve` with these arguments, logging JSON, once it has said where it listens.
pub fn start_binary(args: &[&str], envs: &[(&str, &str)]) -> Server {
    let mut all = vec!["--log-format", "json"];
    all.extend_from_slice(args);
    Server::start(&all, envs)
}

impl Server {
    /// `serve` with these arguments (the log format its default unless they say), once it has
    /// said where it listens: its address is read from that line.
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Server {
        let mut cmd = binary(["serve", "--listen", "127.0.0.1:0"]);
        cmd.args(args)
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("the binary starts");
        let (tx, logs) = std::sync::mpsc::channel();
        let mut lines =
            std::io::BufRead::lines(std::io::BufReader::new(child.stderr.take().unwrap()));
        let base = loop {
            let line = lines.next().expect("the server logs its address").unwrap();
            let _ = tx.send(line.clone());
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break format!(
                    "http://{}",
                    rest.chars().take_while(|c| *c != ' ').collect::<String>()
                );
            }
        };
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Server {
            api: Api::new(base),
            logs,
            child,
        }
    }

    /// The log lines it has written since they were last read.
    pub fn log_lines(&self) -> Vec<String> {
        self.logs.try_iter().collect()
    }

    /// Whether a log line since they were last read says `what`.
    pub fn logged(&self, what: &str) -> bool {
        self.logs.try_iter().any(|line| line.contains(what))
    }

    /// SIGKILL: nothing of it runs after this, nothing is flushed.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM: it drains and exits in its own time (see `wait`).
    pub fn terminate(&self) {
        sigterm(self.child.id());
    }

    /// Waits for it to exit.
    pub fn wait(&mut self) {
        self.child.wait().unwrap();
    }
}

impl Deref for Server {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One instance of a cluster: a `serve` binary on the shared `db`, named `id`, fetching from
/// loopback, with leases short enough that a loss is seen within seconds (`extra` may give
/// its own `--stale-after`).
pub fn start_instance(db: &str, id: &str, extra: &[&str]) -> Server {
    let mut args = vec![
        "--database-url",
        db,
        "--instance-id",
        id,
        "--allow-net",
        "127.0.0.1",
    ];
    if !extra.contains(&"--stale-after") {
        args.extend_from_slice(&["--stale-after", "2s"]);
    }
    args.extend_from_slice(extra);
    start_binary(&args, &[])
}

/// `n` instances, `node1` to `node<n>`, on `db` (see `start_instance`), once every one of them
/// has written its heartbeat.
pub async fn start_cluster(db: &str, n: usize, extra: &[&str]) -> Vec<Server> {
    let nodes: Vec<Server> = (1..=n)
        .map(|i| start_instance(db, &format!("node{i}"), extra))
        .collect();
    nodes[0].instances_up(n).await;
    nodes
}
