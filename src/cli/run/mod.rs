//! `fanout run BATCH.json`: runs a batch in-process (or on a server with `--server`), prints
//! its summary for people (`text`), machines (`json`) or CI dashboards (`junit`), and exits 0
//! when it passed, 1 when a threshold failed (or, without thresholds, a task did not
//! succeed), 2 when the input was invalid or the server unreachable.

mod local;
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
}

/// Why the run could not produce a batch: exit code 2.
struct Unusable(String);

pub fn run(args: RunArgs) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    let obtained = runtime.block_on(obtain(&args)).and_then(|batch| {
        let report = serde_json::from_value::<Report>(batch.clone())
            .map_err(|e| Unusable(format!("the batch answer is not one fanout reads: {e}")))?;
        Ok((batch, report))
    });
    let (batch, report) = match obtained {
        Ok(b) => b,
        Err(Unusable(why)) => {
            eprintln!("fanout run: {why}");
            return ExitCode::from(2);
        }
    };
    let output = match args.format {
        Format::Text => report::text(&report),
        Format::Json => serde_json::to_string_pretty(&batch).expect("JSON") + "\n",
        Format::Junit => report::junit(&report),
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
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
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
        Some(server) => remote::run(server, args.token.as_deref(), body).await,
        None => local::run(args, &body).await,
    }
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
