//! The command line: `fanout serve`, `fanout run` and `fanout openapi`.

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
    /// Print the OpenAPI document (YAML) that `openapi.yaml` must equal.
    Openapi,
}

impl Cli {
    pub fn run(self) -> ExitCode {
        match self.command {
            Command::Serve(config) => serve(*config),
            Command::Run(args) => run::run(*args),
            Command::Openapi => {
                print!("{}", openapi_yaml());
                ExitCode::SUCCESS
            }
        }
    }
}

/// The OpenAPI document as YAML.
pub fn openapi_yaml() -> String {
    crate::http::openapi()
        .to_yaml()
        .expect("the OpenAPI document serializes")
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
