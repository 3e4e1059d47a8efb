//! `fanout run BATCH.json`: runs a batch in-process (or on a server with `--server`), prints
//! its summary for people (`text`), machines (`json`) or CI dashboards (`junit`), and exits 0
//! when it passed, 1 when a threshold failed (or, without thresholds, a task did not
//! succeed), 2 when the input was invalid or the server unreachable.

pub mod check_expr;
pub mod junit;
mod local;
mod oneliner;
mod remote;
pub mod report;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use serde_json::Value;

use crate::request::Rejected;
use report::Report;

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The batch file (JSON, as `POST /batches` takes it); `-` reads standard input. A URL
    /// (`http://...`) instead is a one-liner, as with `--url`.
    pub batch: Option<String>,

    /// A one-liner without a file: a load run of GETs (or `--method`) to this URL.
    #[arg(long, conflicts_with = "batch")]
    pub url: Option<String>,

    /// One-liner: requests to send (default 200, or as many as `--duration` allows).
    #[arg(short = 'n', long = "requests")]
    pub requests: Option<u64>,

    /// One-liner: requests in flight at once (default 50).
    #[arg(short = 'c', long)]
    pub concurrency: Option<u64>,

    /// One-liner: the arrival rate, requests per second (the open model).
    #[arg(long)]
    pub rate: Option<f64>,

    /// One-liner: keep sending for this long (`30s`, `5m`).
    #[arg(long, value_parser = crate::config::parse_duration)]
    pub duration: Option<std::time::Duration>,

    /// One-liner: the HTTP method (default GET).
    #[arg(short = 'm', long)]
    pub method: Option<String>,

    /// One-liner: a request header, `'Name: value'` (repeatable).
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,

    /// One-liner: the request body.
    #[arg(long)]
    pub body: Option<String>,

    /// One-liner: a pass/fail limit (repeatable): `'p95<200ms'`, `'p99<1s'`, `'mean<50ms'`,
    /// `'error_rate<1%'`, `'throughput>500/s'`, `'lost<5s'`, `'checks>99%'`.
    #[arg(long = "threshold")]
    pub thresholds: Vec<String>,

    /// One-liner: what each answer must be (repeatable): `'status == 200'`,
    /// `'json:$.status == "ok"'`, `'header:content-type ~ json'`, `'body contains "ok"'`,
    /// `'json:$.items exists'`; operators `==`, `!=`, `~`, `contains`, `!contains`, `<`, `<=`,
    /// `>`, `>=`, `exists`, `!exists`. A failed check fails the request (`error.code:
    /// "check"`).
    #[arg(long = "check")]
    pub checks: Vec<String>,

    /// Judge the run against a baseline: a finished batch's id (on `--server`), or the JSON
    /// report of an earlier run (`--format json --out base.json`). Adds the batch's
    /// `thresholds.baseline` (its percentages, or `--max-regression`'s).
    #[arg(long)]
    pub baseline: Option<String>,

    /// With `--baseline`: how much worse a figure may be, `'p95_ms=10'` (percent;
    /// repeatable). Default: `p95_ms=10` and `throughput_per_s=10`, unless the batch gives
    /// its own.
    #[arg(long = "max-regression")]
    pub max_regression: Vec<String>,

    /// Print the batch the one-liner (or the file) makes, as JSON, instead of running it.
    #[arg(long)]
    pub print_batch: bool,

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

    /// In-process: a PEM file of CA certificates HTTPS jobs trust besides the platform's
    /// roots (repeatable). `tls.insecure` is allowed in-process.
    #[arg(long, env = "FANOUT_CA_FILE", value_delimiter = ',')]
    pub ca_file: Vec<PathBuf>,

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
    /// The batch's page as one self-contained HTML file (nothing fetched when opened).
    Html,
}

/// A finished batch's picture, for an HTML report: its timeline over the whole run and its
/// latency distributions.
pub(super) struct Picture {
    timeline: Value,
    latency: std::collections::BTreeMap<String, Value>,
}

/// Bins of a report's timeline: enough for a wide screen; zooming re-bins them.
const REPORT_BINS: u32 = 1000;

/// Why the run could not produce a batch: exit code 2.
struct Unusable(String);

pub fn run(mut args: RunArgs) -> ExitCode {
    // A one-liner run here may reach the origin it names, whatever the address: the user typed
    // it, as they would for curl or oha. Only that origin: a redirect elsewhere is judged as
    // ever.
    if args.server.is_none()
        && let Some(origin) = one_liner_url(&args).and_then(|u| allowed_origin(&u))
    {
        args.allow_net.push(origin);
    }
    if args.print_batch {
        return match batch_body(&args).and_then(|body| {
            serde_json::from_slice::<Value>(&body)
                .map_err(|e| Unusable(format!("the batch is not JSON: {e}")))
        }) {
            Ok(batch) => {
                println!("{}", serde_json::to_string_pretty(&batch).expect("JSON"));
                ExitCode::SUCCESS
            }
            Err(Unusable(why)) => {
                eprintln!("fanout run: {why}");
                ExitCode::from(2)
            }
        };
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    let obtained = runtime
        .block_on(obtain(&args))
        .and_then(|(batch, picture)| {
            let report = serde_json::from_value::<Report>(batch.clone())
                .map_err(|e| Unusable(format!("the batch answer is not one fanout reads: {e}")))?;
            Ok((batch, picture, report))
        });
    let (batch, picture, report) = match obtained {
        Ok(b) => b,
        Err(Unusable(why)) => {
            eprintln!("fanout run: {why}");
            return ExitCode::from(2);
        }
    };
    let output = match args.format {
        Format::Text => report::text(&report),
        Format::Json => serde_json::to_string_pretty(&batch).expect("JSON") + "\n",
        Format::Junit => junit::junit(&report),
        Format::Html => html_report(batch, picture),
    };
    match &args.out {
        Some(path) => {
            if let Err(e) = std::fs::write(path, &output) {
                eprintln!("fanout run: cannot write {}: {e}", path.display());
                return ExitCode::from(2);
            }
            if args.format != Format::Text {
                eprint!("{}", report::text(&report));
            }
        }
        None => {
            // A closed pipe (`| head`) is the reader's choice, not an error worth a panic.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), output.as_bytes());
        }
    }
    // On stderr too, so that a CI log shows it whatever `--format` wrote.
    for w in report.verdict.iter().flat_map(|v| &v.warnings) {
        eprintln!("fanout run: warning: {}: {}", w.code, w.detail);
    }
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The one-liner's URL, if the arguments are one.
fn one_liner_url(args: &RunArgs) -> Option<String> {
    match (&args.url, &args.batch) {
        (Some(url), _) => Some(url.clone()),
        (None, Some(arg)) if oneliner::is_url(arg) => Some(arg.clone()),
        _ => None,
    }
}

/// `host:port` of a URL, as `--allow-net` takes it.
fn allowed_origin(url: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    let port = url.port_or_known_default()?;
    match url.host()? {
        url::Host::Ipv6(ip) => Some(format!("[{ip}]:{port}")),
        host => Some(format!("{host}:{port}")),
    }
}

/// The batch the arguments name: a file, standard input, or a one-liner.
fn batch_body(args: &RunArgs) -> Result<Vec<u8>, Unusable> {
    let url = one_liner_url(args);
    let one_liner_flags = args.requests.is_some()
        || args.concurrency.is_some()
        || args.rate.is_some()
        || args.duration.is_some()
        || args.method.is_some()
        || !args.headers.is_empty()
        || args.body.is_some()
        || !args.thresholds.is_empty()
        || !args.checks.is_empty();
    if let Some(url) = url {
        let line = oneliner::OneLiner {
            url,
            requests: args.requests,
            concurrency: args.concurrency,
            rate: args.rate,
            duration_ms: args.duration.map(|d| d.as_millis() as u64),
            method: args.method.clone(),
            headers: args.headers.clone(),
            body: args.body.clone(),
            thresholds: args.thresholds.clone(),
            checks: args.checks.clone(),
        };
        let batch = line.batch().map_err(Unusable)?;
        return Ok(serde_json::to_vec(&batch).expect("a batch serializes"));
    }
    if one_liner_flags {
        return Err(Unusable(
            "-n, -c, --rate, --duration, --method, -H, --body, --threshold and --check \
             describe a one-liner: give its URL (--url URL, or the URL in place of the batch file)"
                .into(),
        ));
    }
    match args.batch.as_deref() {
        None => Err(Unusable(
            "give a batch file, or a URL for a one-liner (fanout run --url URL -n 1000 -c 10)"
                .into(),
        )),
        Some("-") => {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
                .map_err(|e| Unusable(format!("cannot read standard input: {e}")))?;
            Ok(buf)
        }
        Some(path) => std::fs::read(path).map_err(|e| Unusable(format!("cannot read {path}: {e}"))),
    }
}

/// Runs the batch; with `--format html`, reads its picture too.
async fn obtain(args: &RunArgs) -> Result<(Value, Option<Picture>), Unusable> {
    let body = batch_body(args)?;
    let (body, baseline) = with_baseline(args, body)?;
    let html = args.format == Format::Html;
    match &args.server {
        Some(server) => {
            in_process_only(args)?;
            let mut batch = remote::run(server, args.token.as_deref(), body).await?;
            remote::hint_at_serve(&mut batch);
            let picture = match html {
                true => Some(remote::picture(server, args.token.as_deref(), &batch).await?),
                false => None,
            };
            Ok((batch, picture))
        }
        None => local::run(args, &body, baseline.as_ref(), html).await,
    }
}

/// Flags that set up this process's own engine, given to a run on a server, where the server's
/// settings decide: a usage error that says where the flag belongs, not one silently ignored.
/// A value that only echoes the environment (`FANOUT_ALLOW_NET` set for `serve` too) is no
/// error.
fn in_process_only(args: &RunArgs) -> Result<(), Unusable> {
    let from_env = |name: &str| -> Vec<String> {
        std::env::var(name)
            .map(|v| v.split(',').map(str::to_owned).collect())
            .unwrap_or_default()
    };
    if !args.allow_net.is_empty() && args.allow_net != from_env("FANOUT_ALLOW_NET") {
        return Err(Unusable(format!(
            "--allow-net opens addresses to jobs run in this process; with --server the server \
             decides what its jobs reach: start it with `fanout serve --allow-net {}`",
            args.allow_net.join(",")
        )));
    }
    let ca_files: Vec<String> = args
        .ca_file
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    if !ca_files.is_empty() && ca_files != from_env("FANOUT_CA_FILE") {
        return Err(Unusable(format!(
            "--ca-file adds roots for jobs run in this process; with --server give it to the \
             server: `fanout serve --ca-file {}`",
            ca_files.join(",")
        )));
    }
    Ok(())
}

/// The HTML report: the page with the batch and its picture inlined. The task lists stay
/// out (the picture has the task rows it draws), so a large run's report stays small.
fn html_report(mut batch: Value, picture: Option<Picture>) -> String {
    if let Some(b) = batch.as_object_mut() {
        for list in ["results", "done", "pending"] {
            b.remove(list);
        }
    }
    let picture = picture.unwrap_or(Picture {
        timeline: Value::Null,
        latency: Default::default(),
    });
    crate::ui::report(&crate::engine::picture::ReportData {
        batch,
        timeline: picture.timeline,
        latency: picture.latency,
    })
}

/// `--baseline`: the batch with `thresholds.baseline` naming it, and (for a report file) the
/// baseline's summary, which an in-process run reads its figures from.
fn with_baseline(
    args: &RunArgs,
    body: Vec<u8>,
) -> Result<(Vec<u8>, Option<crate::engine::summary::Summary>), Unusable> {
    let Some(given) = &args.baseline else {
        if !args.max_regression.is_empty() {
            return Err(Unusable("--max-regression needs --baseline".into()));
        }
        return Ok((body, None));
    };
    let (id, summary) = if uuid::Uuid::parse_str(given).is_ok() {
        if args.server.is_none() {
            return Err(Unusable(format!(
                "--baseline {given} names a batch on a server: add --server, or give the \
                 JSON report of the baseline run (fanout run ... --format json --out base.json)"
            )));
        }
        (given.clone(), None)
    } else {
        let text = std::fs::read(given)
            .map_err(|e| Unusable(format!("cannot read the baseline {given}: {e}")))?;
        let report: Value = serde_json::from_slice(&text)
            .map_err(|e| Unusable(format!("the baseline {given} is not JSON: {e}")))?;
        let id = report["id"].as_str().unwrap_or_default().to_owned();
        let summary = serde_json::from_value(report["summary"].clone()).map_err(|e| {
            Unusable(format!(
                "the baseline {given} is not a fanout JSON report (--format json): {e}"
            ))
        })?;
        if report["finished_at"].is_null() {
            return Err(Unusable(format!(
                "the baseline {given} is of a batch that had not finished"
            )));
        }
        (id, Some(summary))
    };
    let mut batch: Value = serde_json::from_slice(&body)
        .map_err(|e| Unusable(format!("the batch is not JSON: {e}")))?;
    let Some(object) = batch.as_object_mut() else {
        return Err(Unusable("the batch is not a JSON object".into()));
    };
    let thresholds = object
        .entry("thresholds")
        .or_insert_with(|| serde_json::json!({}));
    let Some(thresholds) = thresholds.as_object_mut() else {
        return Err(Unusable("the batch's thresholds are not an object".into()));
    };
    let mut pcts = serde_json::Map::new();
    for m in &args.max_regression {
        let (key, pct) = m
            .split_once('=')
            .and_then(|(k, v)| {
                Some((
                    k.trim(),
                    v.trim().trim_end_matches('%').parse::<f64>().ok()?,
                ))
            })
            .ok_or_else(|| Unusable(format!("--max-regression {m:?}: write it as p95_ms=10")))?;
        pcts.insert(key.to_owned(), serde_json::json!(pct));
    }
    let given_pcts = thresholds
        .get("baseline")
        .and_then(|b| b.get("max_regression_pct"))
        .cloned();
    let pcts = match (pcts.is_empty(), given_pcts) {
        (false, _) => Value::Object(pcts),
        (true, Some(p)) => p,
        (true, None) => serde_json::json!({ "p95_ms": 10, "throughput_per_s": 10 }),
    };
    thresholds.insert(
        "baseline".into(),
        serde_json::json!({ "batch": id, "max_regression_pct": pcts }),
    );
    Ok((serde_json::to_vec(&batch).expect("JSON"), summary))
}

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

/// An invalid batch, field by field.
fn describe(e: &Rejected) -> String {
    let mut why = format!("invalid batch: {e}");
    if let Rejected::Invalid(errors) = e {
        for f in errors {
            let _ = write!(why, "\n  {}: {}", f.field, f.message);
        }
    }
    why
}
