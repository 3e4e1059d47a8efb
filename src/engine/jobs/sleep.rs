//! `sleep`: waits its full duration (or, with `max_ms`, a random one up to it) from its own
//! start.

use std::time::Instant;

use crate::engine::spec::SleepJob;
use crate::engine::task::{SleepOutput, TaskOutput, ms};

pub async fn run(job: &SleepJob) -> TaskOutput {
    let started = Instant::now();
    // tokio's timers never fire early, so `slept_ms` is never below `duration_ms`.
    tokio::time::sleep_until((started + job.pick()).into()).await;
    TaskOutput::Sleep(SleepOutput {
        slept_ms: ms(started.elapsed()),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::engine::spec::SleepJob;

    #[test]
    fn a_think_time_is_spread_over_its_whole_range_and_never_outside_it() {
        let job = SleepJob {
            duration: Duration::from_millis(200),
            max: Some(Duration::from_millis(800)),
        };
        let picks: Vec<Duration> = (0..10_000).map(|_| job.pick()).collect();
        let (low, high) = (picks.iter().min().unwrap(), picks.iter().max().unwrap());
        assert!(*low >= job.duration && *high <= Duration::from_millis(800));
        // Uniform: 10,000 draws reach within 2 % of either end (a miss is a 1-in-e^200 chance).
        assert!(*low < Duration::from_millis(212) && *high > Duration::from_millis(788));
        assert_eq!(job.longest(), Duration::from_millis(800));
        let fixed = SleepJob {
            duration: Duration::from_millis(5),
            max: None,
        };
        assert_eq!(fixed.pick(), Duration::from_millis(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_think_time_sleeps_from_its_least_to_its_most() {
        let job = SleepJob {
            duration: Duration::from_secs(2),
            max: Some(Duration::from_secs(3)),
        };
        let begun = tokio::time::Instant::now();
        super::run(&job).await;
        let slept = begun.elapsed();
        assert!(
            slept >= Duration::from_secs(2) && slept <= Duration::from_secs(3),
            "{slept:?}"
        );
    }
}
