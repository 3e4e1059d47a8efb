//! The command line: `fanout serve`, `fanout run`, `fanout compare`, `fanout report`,
//! `fanout healthcheck` and `fanout openapi`.

pub mod compare;
pub mod run;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::App;
use crate::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "fanout",
    version,
    about = "Run a batch of jobs concurrently and report every result and timing"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the HTTP service.
    Serve(Box<Config>),
    /// Run a batch file (in-process, or on a server) and exit 0 when it passed, 1 when a
    /// threshold failed (or a task did, without thresholds), 2 when the input was invalid.
    Run(Box<run::RunArgs>),
    /// Compare two runs' figures: two batch ids on `--server`, or two JSON reports.
    Compare(compare::CompareArgs),
    /// Write the HTML report of saved report data (the JSON object a report embeds, as
    /// `fanout run --format html` makes it): the page of one batch, drawn again.
    Report(ReportArgs),
    /// Probe a local server's `/healthz`: exit 0 when it answers 200, 1 otherwise (for a
    /// container's HEALTHCHECK, which then needs no curl in the image).
    Healthcheck(HealthcheckArgs),
    /// Print the OpenAPI document (YAML) that `openapi.yaml` must equal.
    Openapi,
}

#[derive(Debug, clap::Args)]
struct ReportArgs {
    /// The report data: `{ batch, timeline, latency }`.
    data: std::path::PathBuf,
    /// Where the HTML goes (default: standard output).
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

#[derive(Debug, clap::Args)]
struct HealthcheckArgs {
    /// The server's listen address, as `serve` takes it; an unspecified address (0.0.0.0, ::)
    /// is probed on loopback.
    #[arg(long, env = "FANOUT_LISTEN", default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 3)]
    timeout_s: u64,
}

impl Cli {
    pub fn run(self) -> ExitCode {
        match self.command {
            Command::Serve(config) => serve(*config),
            Command::Run(args) => run::run(*args),
            Command::Compare(args) => compare::run(args),
            Command::Report(args) => report(args),
            Command::Healthcheck(args) => healthcheck(args),
            Command::Openapi => {
                print!("{}", crate::app::openapi_yaml());
                ExitCode::SUCCESS
            }
        }
    }
}

fn healthcheck(args: HealthcheckArgs) -> ExitCode {
    let mut addr = args.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let url = format!("http://{addr}/healthz");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    let answer = runtime.block_on(async {
        reqwest::Client::builder()
            .no_proxy()
            .timeout(std::time::Duration::from_secs(args.timeout_s))
            .build()?
            .get(&url)
            .send()
            .await
    });
    match answer {
        Ok(r) if r.status() == reqwest::StatusCode::OK => ExitCode::SUCCESS,
        Ok(r) => {
            eprintln!("{url} answered {}", r.status());
            ExitCode::FAILURE
        }
        Err(e) => {
            let mut why = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                why = format!("{why}: {cause}");
                source = cause.source();
            }
            eprintln!("{why}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: Config) -> ExitCode {
    crate::telemetry::init(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    runtime.block_on(async {
        let app = match App::build(config).await {
            Ok(app) => app,
            Err(e) => {
                tracing::error!("cannot start: {e}");
                return ExitCode::from(2);
            }
        };
        match app.run().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("server error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// `fanout report DATA.json`: 0 when written, 2 when the data is unreadable.
fn report(args: ReportArgs) -> ExitCode {
    let data = std::fs::read(&args.data)
        .map_err(|e| format!("cannot read {}: {e}", args.data.display()))
        .and_then(|bytes| {
            serde_json::from_slice::<crate::engine::picture::ReportData>(&bytes).map_err(|e| {
                format!(
                    "{} is not report data ({{ batch, timeline, latency }}): {e}",
                    args.data.display()
                )
            })
        });
    let html = match data {
        Ok(data) => crate::ui::report(&data),
        Err(why) => {
            eprintln!("fanout report: {why}");
            return ExitCode::from(2);
        }
    };
    let written = match &args.out {
        Some(path) => {
            std::fs::write(path, html).map_err(|e| format!("cannot write {}: {e}", path.display()))
        }
        None => {
            let _ = std::io::Write::write_all(&mut std::io::stdout(), html.as_bytes());
            Ok(())
        }
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("fanout report: {why}");
            ExitCode::from(2)
        }
    }
}
