//! The `fanout` binary: parse the command line and hand over to the library.

use clap::Parser;

/// jemalloc, as oha uses. It was brought in when a load run's requests allocated inside hyper
/// (glibc's malloc then took about 12 % of their user-space instructions); the lean path now
/// counts the same instructions per request with either allocator. It stays for the
/// server's own allocations: `POST /batches` on memory:// ran at 6.7-7.9k/s with it against
/// 5.4-6.6k/s with glibc's (alternating runs of `bench/storage.py`'s POST test).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read once at its start (the C string `malloc_conf`, under the prefix
/// tikv-jemalloc-sys builds it with). By default jemalloc returns freed pages to the system
/// only as later allocations pass by: a server idle after a burst of a thousand clients kept
/// what the burst had used. A background thread purges them within seconds instead.
#[cfg(target_os = "linux")]
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &u8 = &b"background_thread:true,dirty_decay_ms:5000,muzzy_decay_ms:5000\0"[0];

fn main() -> std::process::ExitCode {
    fanout::cli::Cli::parse().run()
}
