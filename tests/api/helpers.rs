//! Test helpers: the real app on port 0, and a local HTTP server standing in for every target.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
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
        base,
        client: reqwest::Client::new(),
        files,
        config,
        stop: Some(stop),
        handle: Some(handle),
    }
}

impl TestApp {
    pub fn root(&self) -> std::path::PathBuf {
        self.files.path().join("root")
    }

    pub async fn post(&self, body: &Value) -> Answer {
        self.post_raw(body.to_string(), &[]).await
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
        answer(req.send().await.expect("request sent")).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        answer(
            self.client
                .get(format!("{}{path}", self.base))
                .send()
                .await
                .expect("request sent"),
        )
        .await
    }

    /// Polls a batch until it is finished (`finished_at` set), for up to 20 s.
    pub async fn finished(&self, id: &str) -> Value {
        for _ in 0..400 {
            let b = self.get(&format!("/batches/{id}")).await.json;
            if !b["finished_at"].is_null() {
                return b;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("batch {id} did not finish");
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

    pub async fn delete(&self, path: &str) -> Answer {
        answer(
            self.client
                .delete(format!("{}{path}", self.base))
                .send()
                .await
                .expect("request sent"),
        )
        .await
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

impl Answer {
    pub async fn from(res: reqwest::Response) -> Answer {
        answer(res).await
    }
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

/// Starts the real binary on an ephemeral port; returns it, its base URL (read from its log),
/// and its log lines as they come.
pub fn start_binary(
    args: &[&str],
    envs: &[(&str, &str)],
) -> (
    std::process::Child,
    String,
    std::sync::mpsc::Receiver<String>,
) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_fanout"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("the binary starts");
    let (tx, rx) = std::sync::mpsc::channel();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stderr.take().unwrap()));
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
    (child, base, rx)
}
