//! The job engine: runs a validated batch's jobs concurrently and records every outcome in the
//! batch's live state. It knows neither axum, the storage backends nor the metrics recorder.
//!
//! - [`spec`]: the validated batch and job types it runs.
//! - [`run`]: the [`Engine`], which admits batches and drives their tasks.
//! - [`batch`]: a batch's live state and the answer rules applied to it.
//! - [`jobs`]: one module per job kind, and the lean HTTP client every batch sends on.
//! - [`task`], [`summary`], [`verdict`]: a task's record, the batch's figures, and the
//!   thresholds judged on them.
//! - [`meter`]: what the engine reports for metrics, as a trait.
//! - [`compare`], [`noise`]: two batches side by side, and how much of a change sampling
//!   alone explains.

pub mod batch;
pub mod check;
pub mod compare;
pub mod jobs;
pub mod meter;
pub mod noise;
pub mod picture;
pub mod run;
pub mod spec;
pub mod summary;
pub mod task;
pub mod template;
pub mod verdict;

pub use batch::{Batch, BatchStatus, BatchView, StopReason};
pub use run::{Admission, Busy, Engine, EngineConfig};

/// A unit enum's name as the API writes it (its serde name: `timed_out`, `gather`, ...).
pub fn wire_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}
