//! The `fanout` binary: parse the command line and hand over to the library.

use clap::Parser;

/// jemalloc, as oha uses: a load run's requests allocate a few small buffers each inside hyper,
/// and glibc's malloc spent about 12 % of fanout's user-space instructions on them. The
/// README's benchmark section has the measurements (instructions per request, peak RSS).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    fanout::cli::Cli::parse().run()
}
