//! The `fanout` binary: parse the command line and hand over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    fanout::cli::Cli::parse().run()
}
