//! What an instance does with batches, between the edge (HTTP, the CLI) and storage: admits,
//! stores and starts them through one entry ([`Batches::submit`]), keeps the ones it runs in
//! memory, claims and rescues shards with the other instances on its store, cancels, and reads
//! batches back for answers and the page.
//!
//! - [`batches`]: the registry of batches this instance runs, submitting one, and the one
//!   place a shard is admitted and started (`launch`).
//! - `worker`: claiming queued shards, lease renewals, heartbeats and the rescuer.
//! - `picture`: reads that need few of a batch's rows (`?results=none`, timeline, latency).
//! - `baseline`: the figures a batch's baseline checks compare with.
//! - `compare`: two batches side by side, with each change's noise for two runs of one
//!   request.

mod baseline;
pub mod batches;
mod compare;
mod picture;
mod worker;

pub use baseline::Baseline;
pub use batches::{Batches, Cancelled, Cluster, Submission, Submitted};

/// What an instance does (`--role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Accepts batches and runs work.
    All,
    /// Accepts, reads, lists and cancels batches; runs none.
    Api,
    /// Claims and runs work; serves only /healthz, /readyz and /metrics.
    Worker,
}

impl Role {
    pub fn runs_work(self) -> bool {
        self != Role::Api
    }

    pub fn serves_api(self) -> bool {
        self != Role::Worker
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Api => "api",
            Role::Worker => "worker",
        }
    }
}
