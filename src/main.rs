//! The `fanout` binary: parse the command line and hand over to the library.

use clap::Parser;

/// jemalloc, as oha uses. It was brought in when a load run's requests allocated inside hyper
/// (glibc's malloc then took about 12 % of their user-space instructions); the lean path now
/// counts the same instructions per request with either allocator. It stays for the
/// server's own allocations: `POST /batches` on memory:// ran at 6.7-7.9k/s with it against
/// 5.4-6.6k/s with glibc's (README, storage benchmarks).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    fanout::cli::Cli::parse().run()
}
