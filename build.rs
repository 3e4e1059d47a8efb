//! Tells the API tests which store they run on (`FANOUT_TEST_BACKEND`: `sqlite`, the default,
//! `postgres` or `memory`), so that a test a backend cannot run is reported as ignored, with
//! its reason, rather than passing without having run.

fn main() {
    println!("cargo::rerun-if-env-changed=FANOUT_TEST_BACKEND");
    println!(
        "cargo::rustc-check-cfg=cfg(fanout_test_backend, values(\"sqlite\", \"postgres\", \"memory\"))"
    );
    let backend = std::env::var("FANOUT_TEST_BACKEND").unwrap_or_else(|_| "sqlite".into());
    if matches!(backend.as_str(), "sqlite" | "postgres" | "memory") {
        println!("cargo::rustc-cfg=fanout_test_backend=\"{backend}\"");
    }
}
