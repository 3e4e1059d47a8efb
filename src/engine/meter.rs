//! What the engine reports as batches and tasks come and go, for whoever counts them (the
//! service's Prometheus metrics). The engine only calls the trait, so it can run without any
//! recorder (`fanout run`, unit tests) and knows nothing of the metrics crate.

use std::time::Duration;

use super::batch::BatchStatus;
use super::spec::{Kind, Mode};
use super::task::TaskStatus;

/// Receives the engine's counts. Called under a batch's lock: implementations only add.
pub trait Meter: Send + Sync {
    /// A batch started running.
    fn batch_started(&self);
    /// A batch finished with `status`.
    fn batch_finished(&self, mode: Mode, status: BatchStatus);
    /// `n` tasks started.
    fn tasks_started(&self, n: usize);
    /// `n` tasks that had started ended (reported once per burst).
    fn tasks_ended(&self, n: usize);
    /// One task ended `status`, after `duration` when it had started.
    fn task_ended(&self, kind: Kind, status: TaskStatus, duration: Option<Duration>);
}

/// Counts nothing: for batches read back from storage, which never run here, and for runs
/// without metrics.
pub struct NoMeter;

pub static NO_METER: &NoMeter = &NoMeter;

impl Meter for NoMeter {
    fn batch_started(&self) {}
    fn batch_finished(&self, _: Mode, _: BatchStatus) {}
    fn tasks_started(&self, _: usize) {}
    fn tasks_ended(&self, _: usize) {}
    fn task_ended(&self, _: Kind, _: TaskStatus, _: Option<Duration>) {}
}
