//! `sleep`: waits its full duration from its own start.

use std::time::Instant;

use crate::engine::spec::SleepJob;
use crate::engine::task::{SleepOutput, TaskOutput, ms};

pub async fn run(job: &SleepJob) -> TaskOutput {
    let started = Instant::now();
    // tokio's timers never fire early, so `slept_ms` is never below `duration_ms`.
    tokio::time::sleep_until((started + job.duration).into()).await;
    TaskOutput::Sleep(SleepOutput {
        slept_ms: ms(started.elapsed()),
    })
}
