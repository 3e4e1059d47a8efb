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
pub use runner::{Admission, Busy, Engine, EngineConfig};
