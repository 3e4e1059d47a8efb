//! `fanout run BATCH.json`: runs a batch in-process (or on a server with `--server`), prints
//! its summary for people (`text`), machines (`json`) or CI dashboards (`junit`), and exits 0
//! when it passed, 1 when a threshold failed (or, without thresholds, a task did not
//! succeed), 2 when the input was invalid or the server unreachable.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, ValueEnum};
use serde_json::Value;

use crate::engine::spec::ResultsMode;
use crate::engine::{Engine, EngineConfig};
use crate::guard::{NetGuard, NetPolicy};
use crate::http::error::ApiError;
use crate::http::request::{Limits, parse_batch};
use crate::store::{Batches, Submitted};

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The batch file (JSON, as `POST /batches` takes it); `-` reads standard input.
    pub batch: PathBuf,

    /// Run on this fanout server instead of in-process (e.g. `http://127.0.0.1:8080`).
    #[arg(long, env = "FANOUT_SERVER")]
    pub server: Option<String>,

    /// Bearer token for `--server`.
    #[arg(long, env = "FANOUT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Output: `text` for people, `json` (the batch, as the API answers it), `junit` (one test
    /// case per threshold).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// Write the output to this file instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,

    /// In-process: what HTTP jobs may reach besides public addresses (as `serve --allow-net`).
    #[arg(long, env = "FANOUT_ALLOW_NET", value_delimiter = ',')]
    pub allow_net: Vec<String>,

    /// In-process: the folder `file` jobs read from.
    #[arg(long, env = "FANOUT_FILES_ROOT", default_value = "./files")]
    pub files_root: PathBuf,

    /// In-process: most tasks in the batch (after `load` expansion, warm-up included; a run
    /// for a duration stops there). Default: 10,000,000 with `results: errors` or `none`
    /// (a task costs a few bytes), 1,000,000 with `results: all` (every task keeps its
    /// record, a few hundred bytes).
    #[arg(long)]
    pub max_jobs: Option<usize>,

    /// In-process: most jobs in flight.
    #[arg(long, default_value_t = 10_000)]
    pub max_concurrency: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    Junit,
}

/// Why the run could not produce a batch: exit code 2.
struct Unusable(String);

pub fn run(args: RunArgs) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    let batch = match runtime.block_on(obtain(&args)) {
        Ok(b) => b,
        Err(Unusable(why)) => {
            eprintln!("fanout run: {why}");
            return ExitCode::from(2);
        }
    };
    let output = match args.format {
        Format::Text => text(&batch),
        Format::Json => serde_json::to_string_pretty(&batch).expect("JSON") + "\n",
        Format::Junit => junit(&batch),
    };
    match &args.out {
        Some(path) => {
            if let Err(e) = std::fs::write(path, &output) {
                eprintln!("fanout run: cannot write {}: {e}", path.display());
                return ExitCode::from(2);
            }
            if args.format != Format::Text {
                eprint!("{}", text(&batch));
            }
        }
        None => {
            // A closed pipe (`| head`) is the reader's choice, not an error worth a panic.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), output.as_bytes());
        }
    }
    if passed(&batch) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The verdict when there is one; otherwise, whether every task succeeded.
pub fn passed(batch: &Value) -> bool {
    match batch.get("verdict") {
        Some(v) => v["passed"] == true,
        None => {
            let s = &batch["summary"];
            batch["status"] == "completed" && s["succeeded"] == s["tasks"]
        }
    }
}

async fn obtain(args: &RunArgs) -> Result<Value, Unusable> {
    let body = if args.batch.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
            .map_err(|e| Unusable(format!("cannot read standard input: {e}")))?;
        buf
    } else {
        std::fs::read(&args.batch)
            .map_err(|e| Unusable(format!("cannot read {}: {e}", args.batch.display())))?
    };
    match &args.server {
        Some(server) => remote(server, args.token.as_deref(), body).await,
        None => local(args, &body).await,
    }
}

/// `--max-jobs` by default with `results: errors` or `none`.
const SPARSE_MAX_JOBS: usize = 10_000_000;
/// `--max-jobs` by default with `results: all`.
const FULL_MAX_JOBS: usize = 1_000_000;

async fn local(args: &RunArgs, body: &[u8]) -> Result<Value, Unusable> {
    let policy = NetPolicy::parse(&args.allow_net).map_err(Unusable)?;
    let max_jobs = args.max_jobs.unwrap_or(SPARSE_MAX_JOBS);
    let mut limits = Limits {
        max_body_bytes: usize::MAX,
        max_jobs,
        max_concurrency: args.max_concurrency,
        max_response_bytes: 1024 * 1024,
        max_file_bytes: 1024 * 1024,
        max_job_timeout: std::time::Duration::from_secs(300),
        max_batch_duration: std::time::Duration::from_secs(24 * 3600),
    };
    let mut spec = parse_batch(body, &limits).map_err(|e| Unusable(describe(&e)))?;
    if args.max_jobs.is_none() && spec.results == ResultsMode::All {
        // Every task keeps its whole record: a lower default bound on memory.
        limits.max_jobs = FULL_MAX_JOBS;
        spec = parse_batch(body, &limits).map_err(|e| {
            Unusable(format!(
                "{}\n  (with results \"all\" the default is {FULL_MAX_JOBS} tasks: use results \"errors\" or \"none\", or --max-jobs)",
                describe(&e)
            ))
        })?;
    }
    let engine = Engine::new(EngineConfig {
        max_concurrency: args.max_concurrency,
        max_queue: limits.max_jobs,
        max_batch_duration: limits.max_batch_duration,
        files_root: args.files_root.clone(),
        guard: NetGuard::new(policy),
        meter: crate::engine::meter::NO_METER,
    })
    .map_err(|e| Unusable(format!("cannot open the files root: {e}")))?;
    let batches: Arc<Batches> = Batches::new(engine, None, "fanout-run".into());
    let batch = match batches.submit(spec, body, None, 201).await {
        Ok(Submitted::New(b)) => b,
        Ok(_) => return Err(Unusable("the batch was not accepted".into())),
        Err(e) => return Err(Unusable(e.to_string())),
    };
    let bar = progress_bar(&batch);
    batch.finished().await;
    if let Some(bar) = bar {
        bar.abort();
        eprint!("\r\x1b[2K");
    }
    serde_json::from_slice(&batch.to_json()).map_err(|e| Unusable(e.to_string()))
}

/// A progress bar on stderr while the batch runs, when stderr is a terminal (nothing extra in
/// a CI log).
fn progress_bar(batch: &Arc<crate::engine::Batch>) -> Option<tokio::task::JoinHandle<()>> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let batch = batch.clone();
    Some(tokio::spawn(async move {
        let bar = tasks_bar();
        loop {
            // A load run for a duration makes its tasks as it goes: the length grows.
            let (done, total) = batch.progress();
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }))
}

/// Against a server: starts the batch with `Prefer: respond-async`, follows its event stream
/// The progress bar both ways of running draw on stderr; its length is set as tasks appear.
fn tasks_bar() -> indicatif::ProgressBar {
    let bar =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} tasks  {per_sec}  {elapsed}")
    {
        bar.set_style(style);
    }
    bar
}

/// (a progress bar on stderr when it is a terminal), then reads the finished batch.
async fn remote(server: &str, token: Option<&str>, body: Vec<u8>) -> Result<Value, Unusable> {
    let base = server.trim_end_matches('/');
    let url = format!("{base}/batches");
    let client = reqwest::Client::new();
    let with_token = |request: reqwest::RequestBuilder| match token {
        Some(t) => request.bearer_auth(t),
        None => request,
    };
    let started = read_json(
        &url,
        with_token(
            client
                .post(&url)
                .header("content-type", "application/json")
                .header("prefer", "respond-async")
                .body(body),
        ),
    )
    .await?;
    let id = started["id"]
        .as_str()
        .ok_or_else(|| Unusable(format!("{url} answered without a batch id")))?
        .to_owned();
    let batch_url = format!("{url}/{id}");
    if started["finished_at"].is_null() {
        let events = with_token(client.get(format!("{batch_url}/events")));
        if let Err(e) = follow(events).await {
            // The stream broke (a proxy, an older server): wait by reading the batch instead.
            tracing::debug!(error = %e, "event stream unavailable, polling");
            loop {
                let b = read_json(&batch_url, with_token(client.get(&batch_url))).await?;
                if !b["finished_at"].is_null() {
                    return Ok(b);
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
    }
    read_json(&batch_url, with_token(client.get(&batch_url))).await
}

/// Reads a batch's event stream until its `batch` event, drawing progress on a terminal.
async fn follow(request: reqwest::RequestBuilder) -> Result<(), String> {
    use std::io::IsTerminal;
    let mut response = request.send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("events answered {}", response.status()));
    }
    let bar = std::io::stderr().is_terminal().then(tasks_bar);
    let mut buffer = String::new();
    let result = loop {
        let Some(end) = buffer.find("\n\n") else {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    // Lines may end in CRLF (a proxy's rewrite): read them as LF.
                    buffer.push_str(&String::from_utf8_lossy(&chunk).replace('\r', ""));
                    continue;
                }
                Ok(None) => break Err("the event stream ended early".to_owned()),
                Err(e) => break Err(e.to_string()),
            }
        };
        let block: String = buffer.drain(..end + 2).collect();
        let event = block
            .lines()
            .find_map(|l| l.strip_prefix("event:"))
            .map(str::trim);
        let data = block
            .lines()
            .find_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .unwrap_or_default();
        match event {
            Some("batch") => break Ok(()),
            Some("progress") => {
                if let (Some(bar), Ok(p)) = (&bar, serde_json::from_str::<Value>(data)) {
                    bar.set_length(p["tasks"].as_u64().unwrap_or(0));
                    bar.set_position(p["ended"].as_u64().unwrap_or(0));
                }
            }
            Some("task") => {
                if let Some(bar) = &bar {
                    bar.inc(1);
                }
            }
            _ => {}
        }
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    result
}

/// Sends a request and reads its JSON answer; a problem answer becomes the reason.
async fn read_json(url: &str, request: reqwest::RequestBuilder) -> Result<Value, Unusable> {
    let response = request
        .send()
        .await
        .map_err(|e| Unusable(format!("cannot reach {url}: {e}")))?;
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| Unusable(format!("reading the answer of {url}: {e}")))?;
    let json: Value = serde_json::from_slice(&bytes).map_err(|_| {
        Unusable(format!(
            "{url} answered {status} with no JSON: is it a fanout server?"
        ))
    })?;
    if !status.is_success() {
        let mut why = format!(
            "{url} answered {status}: {}",
            json["detail"].as_str().unwrap_or("")
        );
        for e in json["errors"].as_array().into_iter().flatten() {
            let _ = write!(
                why,
                "\n  {}: {}",
                e["field"].as_str().unwrap_or(""),
                e["message"].as_str().unwrap_or("")
            );
        }
        return Err(Unusable(why));
    }
    Ok(json)
}

fn describe(e: &ApiError) -> String {
    let mut why = format!("invalid batch: {e}");
    if let ApiError::Invalid(errors) = e {
        for f in errors {
            let _ = write!(why, "\n  {}: {}", f.field, f.message);
        }
    }
    why
}

fn num(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        Some(f) => {
            let digits = if f.abs() >= 1.0 { 2 } else { 4 };
            let text = format!("{f:.digits$}");
            text.trim_end_matches('0').trim_end_matches('.').to_owned()
        }
        None => "-".into(),
    }
}

/// A summary a person reads at a glance.
pub fn text(b: &Value) -> String {
    let s = &b["summary"];
    let mut out = String::new();
    let label = b["label"]
        .as_str()
        .map(|l| format!(" {l:?}"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "fanout batch {}{label}: {} ({} mode)",
        b["id"].as_str().unwrap_or("?"),
        b["status"].as_str().unwrap_or("?"),
        b["mode"].as_str().unwrap_or("?")
    );
    let _ = writeln!(
        out,
        "  tasks       {} total, {} succeeded, {} failed, {} timed out, {} cancelled, {} interrupted",
        num(&s["tasks"]),
        num(&s["succeeded"]),
        num(&s["failed"]),
        num(&s["timed_out"]),
        num(&s["cancelled"]),
        num(&s["interrupted"])
    );
    let _ = writeln!(
        out,
        "  wall        {} ms   throughput {} tasks/s",
        num(&b["wall_ms"]),
        num(&s["throughput_per_s"])
    );
    if s["warmup_tasks"].as_u64().is_some_and(|n| n > 0) {
        let _ = writeln!(
            out,
            "  warm-up     {} tasks, left out of every figure below",
            num(&s["warmup_tasks"])
        );
    }
    if s["late"].is_object() {
        let _ = writeln!(
            out,
            "  late        {} tasks started behind schedule (most by {} ms); latency counts from the intended start",
            num(&s["late"]["count"]),
            num(&s["late"]["max_ms"])
        );
    }
    for (name, key) in [
        ("duration", "duration_ms"),
        ("succeeded", "duration_ms_succeeded"),
        ("ttfb", "ttfb_ms"),
    ] {
        let p = &s[key];
        if p.is_object() {
            let _ = writeln!(
                out,
                "  {name:<11} min {}  mean {}  p50 {}  p90 {}  p95 {}  p99 {}  p99.9 {}  max {} (ms)",
                num(&p["min"]),
                num(&p["mean"]),
                num(&p["p50"]),
                num(&p["p90"]),
                num(&p["p95"]),
                num(&p["p99"]),
                num(&p["p999"]),
                num(&p["max"])
            );
        }
    }
    let d = &s["duration_ms"];
    if let Some(max) = d["max"].as_f64().filter(|m| *m > 0.0) {
        let _ = writeln!(out, "  latency");
        for (name, key) in [
            ("p50", "p50"),
            ("p90", "p90"),
            ("p95", "p95"),
            ("p99", "p99"),
            ("p99.9", "p999"),
            ("max", "max"),
        ] {
            let v = d[key].as_f64().unwrap_or(0.0);
            let bar = "#".repeat(((v / max) * 40.0).round() as usize);
            let _ = writeln!(out, "    {name:>5} {v:>10.2} ms |{bar}");
        }
    }
    let table = |m: &Value| -> String {
        m.as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| format!("{k}: {}", num(v)))
                    .collect::<Vec<_>>()
                    .join("  ")
            })
            .unwrap_or_default()
    };
    if s["http_status"].as_object().is_some_and(|o| !o.is_empty()) {
        let _ = writeln!(out, "  statuses    {}", table(&s["http_status"]));
    }
    if s["errors"].as_object().is_some_and(|o| !o.is_empty()) {
        let _ = writeln!(out, "  errors      {}", table(&s["errors"]));
    }
    if let Some(e) = b.get("error") {
        let _ = writeln!(
            out,
            "  failed by   task {}: {} ({})",
            num(&e["index"]),
            e["code"].as_str().unwrap_or(""),
            e["message"].as_str().unwrap_or("")
        );
    }
    match b.get("verdict") {
        Some(v) => {
            let _ = writeln!(
                out,
                "  verdict     {}",
                if v["passed"] == true {
                    "PASSED"
                } else {
                    "FAILED"
                }
            );
            for c in v["checks"].as_array().into_iter().flatten() {
                let ok = c["passed"] == true;
                let op = match (c["name"].as_str(), ok) {
                    (Some("min_throughput_per_s"), true) => ">=",
                    (Some("min_throughput_per_s"), false) => "<",
                    (_, true) => "<=",
                    (_, false) => ">",
                };
                let _ = writeln!(
                    out,
                    "    [{}] {:<20} {} {op} {}",
                    if ok { "ok" } else { "FAIL" },
                    c["name"].as_str().unwrap_or(""),
                    num(&c["actual"]),
                    num(&c["limit"])
                );
            }
        }
        None => {
            let _ = writeln!(
                out,
                "  result      {}",
                if passed(b) {
                    "PASSED (every task succeeded)"
                } else {
                    "FAILED (not every task succeeded)"
                }
            );
        }
    }
    out
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// JUnit XML: one test case per threshold (or, without thresholds, one for "every task
/// succeeded"), so CI dashboards show which limit failed.
pub fn junit(b: &Value) -> String {
    let name = b["label"].as_str().or(b["id"].as_str()).unwrap_or("fanout");
    let time = b["wall_ms"].as_f64().unwrap_or(0.0) / 1000.0;
    let mut cases = Vec::new();
    match b.get("verdict") {
        Some(v) => {
            for c in v["checks"].as_array().into_iter().flatten() {
                let check = c["name"].as_str().unwrap_or("");
                let failure = (c["passed"] != true).then(|| {
                    format!(
                        "{check}: actual {} against limit {}",
                        num(&c["actual"]),
                        num(&c["limit"])
                    )
                });
                cases.push((check.to_owned(), failure));
            }
        }
        None => {
            let s = &b["summary"];
            let failure = (!passed(b)).then(|| {
                format!(
                    "{} of {} tasks succeeded; batch {}",
                    num(&s["succeeded"]),
                    num(&s["tasks"]),
                    b["status"].as_str().unwrap_or("")
                )
            });
            cases.push(("every task succeeded".to_owned(), failure));
        }
    }
    let failures = cases.iter().filter(|c| c.1.is_some()).count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"fanout\" tests=\"{}\" failures=\"{failures}\" time=\"{time:.3}\">",
        cases.len()
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{time:.3}\">",
        xml(name),
        cases.len()
    );
    for (case, failure) in cases {
        match failure {
            None => {
                let _ = writeln!(
                    out,
                    "    <testcase classname=\"fanout.thresholds\" name=\"{}\" time=\"{time:.3}\"/>",
                    xml(&case)
                );
            }
            Some(message) => {
                let _ = writeln!(
                    out,
                    "    <testcase classname=\"fanout.thresholds\" name=\"{}\" time=\"{time:.3}\">",
                    xml(&case)
                );
                let _ = writeln!(
                    out,
                    "      <failure type=\"threshold\" message=\"{}\">{}</failure>",
                    xml(&message),
                    xml(&message)
                );
                let _ = writeln!(out, "    </testcase>");
            }
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}
