//! The `fanout` binary: parse the command line and hand over to the library.

use clap::Parser;

/// mimalloc rather than glibc's allocator: a load run allocates and frees a few small buffers
/// per request on both worker threads, where glibc's arenas showed in profiles.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    fanout::cli::Cli::parse().run()
}
