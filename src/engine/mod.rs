//! The job engine: runs a validated batch's jobs concurrently and records every outcome in the
//! batch's live state. It knows neither axum nor any storage backend.

pub mod batch;
pub mod jobs;
pub mod runner;
pub mod spec;
pub mod summary;
pub mod task;
pub mod verdict;

pub use batch::{Batch, BatchStatus, BatchView, StopReason};

/// A unit enum's name as the API writes it (its serde name: `timed_out`, `gather`, ...).
pub fn wire_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}
pub use runner::{Admission, Busy, Engine, EngineConfig};
