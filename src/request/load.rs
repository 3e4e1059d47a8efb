//! `load` (how many tasks run, and when) and `thresholds` (the limits a verdict judges), as
//! clients send them, and their validation.

use std::time::Duration;

use serde::Deserialize;
use utoipa::ToSchema;

use super::{FieldError, Limits, ms_field};
use crate::engine::spec::{LoadPlan, Stripe, Threshold, Thresholds};

/// A load run's shape.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadRequest {
    /// Run the job list this many times; every repetition is a task of its own.
    #[schema(minimum = 1, example = 100)]
    pub repeat: Option<u64>,
    /// Keep cycling the job list until this much time has passed (after the warm-up); with
    /// `repeat` too, whichever comes first ends the run. Tasks still running then finish.
    #[schema(minimum = 1, maximum = 86_400_000, example = json!(null))]
    pub duration_ms: Option<u64>,
    /// Open model: the batch's total arrival rate, kept whatever the target's pace; latency
    /// counts from each task's intended start and `summary.late` says how far starts fell
    /// behind. `concurrency` still bounds tasks in flight. Without `repeat` or `duration_ms`
    /// the job list runs once at this rate.
    #[schema(minimum = 0.001, maximum = 1000000, example = json!(null))]
    pub rate_per_s: Option<f64>,
    /// A first stretch, before the measured run, whose tasks run like the others but are left
    /// out of the summary and the verdict (they are marked `warmup` in results).
    #[schema(minimum = 0, maximum = 86_400_000, example = 0)]
    pub warmup_ms: Option<u64>,
    /// HTTP/2 only: the connections per origin that the run's streams share. Default: one
    /// per worker thread of the instance.
    #[schema(minimum = 1, maximum = 1024, example = json!(null))]
    pub connections: Option<u32>,
}

/// Most HTTP/2 connections per origin a load run may ask for.
const MAX_CONNECTIONS: u32 = 1024;

/// Highest `load.rate_per_s` accepted.
const MAX_RATE_PER_S: f64 = 1_000_000.0;
/// Lowest `load.rate_per_s` accepted: one task every 1,000 s.
const MIN_RATE_PER_S: f64 = 0.001;

impl LoadRequest {
    pub(super) fn validate(
        &self,
        jobs: usize,
        limits: &Limits,
        errors: &mut Vec<FieldError>,
    ) -> LoadPlan {
        let repeat = match self.repeat {
            Some(0) => {
                errors.push(FieldError::new("load.repeat", "must be at least 1"));
                None
            }
            Some(n) => Some(n.min(usize::MAX as u64) as usize),
            None => None,
        };
        let duration = ms_field(errors, "load.duration_ms", self.duration_ms, 1);
        let warmup = ms_field(errors, "load.warmup_ms", self.warmup_ms, 0).unwrap_or_default();
        if duration.unwrap_or_default() + warmup > limits.max_batch_duration {
            errors.push(FieldError::new(
                "load.duration_ms",
                format!(
                    "with warmup_ms, at most {} (the server's --max-batch-duration)",
                    limits.max_batch_duration.as_millis()
                ),
            ));
        }
        let rate = match self.rate_per_s {
            Some(r) if !(MIN_RATE_PER_S..=MAX_RATE_PER_S).contains(&r) => {
                errors.push(FieldError::new(
                    "load.rate_per_s",
                    format!("must be between {MIN_RATE_PER_S} and {MAX_RATE_PER_S}"),
                ));
                None
            }
            r => r,
        };
        if let Some(c) = self.connections
            && !(1..=MAX_CONNECTIONS).contains(&c)
        {
            errors.push(FieldError::new(
                "load.connections",
                format!("must be from 1 to {MAX_CONNECTIONS}"),
            ));
        }
        let repeated = repeat.map(|r| jobs.saturating_mul(r));
        let count = match (repeated, rate, duration) {
            (Some(n), Some(rate), Some(d)) => Some(n.min(arrivals(rate, d))),
            (Some(n), _, _) => Some(n),
            (None, Some(rate), Some(d)) => Some(arrivals(rate, d)),
            (None, None, Some(_)) => None,
            (None, _, None) => Some(jobs),
        };
        let plan = LoadPlan {
            count,
            duration,
            rate_per_s: rate,
            warmup,
            max_tasks: limits.max_jobs,
            is_load: true,
            stripe: Stripe::WHOLE,
            resume_at: Duration::ZERO,
            connections: self.connections.map(|c| c as usize),
        };
        // The open model's schedule must fit in the server's limit on a batch's life.
        if let (Some(rate), Some(count)) = (rate, count) {
            let schedule_s = (count + plan.open_warmup_tasks()) as f64 / rate;
            if schedule_s > limits.max_batch_duration.as_secs_f64() {
                errors.push(FieldError::new(
                    "load.rate_per_s",
                    format!(
                        "{count} tasks at this rate take {schedule_s:.0} s, longer than the \
                         server's --max-batch-duration ({} s)",
                        limits.max_batch_duration.as_secs()
                    ),
                ));
            }
        }
        plan
    }
}

/// Tasks intended to start within `d` at `rate` per second (the first at once).
fn arrivals(rate: f64, d: Duration) -> usize {
    ((rate * d.as_secs_f64()).ceil() as usize).max(1)
}

/// Pass/fail limits. Durations are in milliseconds over every task's `duration_ms`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({ "p95_ms": 200, "max_error_rate": 0.01 }))]
pub struct ThresholdsRequest {
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub mean_ms: Option<f64>,
    /// Most (failed + timed_out) / tasks that ended, from 0 to 1.
    #[schema(minimum = 0, maximum = 1)]
    pub max_error_rate: Option<f64>,
    /// Fewest tasks ended per second of `wall_ms`.
    pub min_throughput_per_s: Option<f64>,
}

impl ThresholdsRequest {
    pub(super) fn validate(&self, errors: &mut Vec<FieldError>) -> Thresholds {
        let all = [
            (Threshold::P50Ms, "p50_ms", self.p50_ms),
            (Threshold::P90Ms, "p90_ms", self.p90_ms),
            (Threshold::P95Ms, "p95_ms", self.p95_ms),
            (Threshold::P99Ms, "p99_ms", self.p99_ms),
            (Threshold::P999Ms, "p999_ms", self.p999_ms),
            (Threshold::MaxMs, "max_ms", self.max_ms),
            (Threshold::MeanMs, "mean_ms", self.mean_ms),
            (
                Threshold::MaxErrorRate,
                "max_error_rate",
                self.max_error_rate,
            ),
            (
                Threshold::MinThroughputPerS,
                "min_throughput_per_s",
                self.min_throughput_per_s,
            ),
        ];
        let mut checks = Vec::new();
        for (which, key, value) in all {
            let Some(v) = value else { continue };
            let bad = !v.is_finite() || v < 0.0 || (which == Threshold::MaxErrorRate && v > 1.0);
            if bad {
                let range = if which == Threshold::MaxErrorRate {
                    "from 0 to 1"
                } else {
                    "a number, 0 or more"
                };
                errors.push(FieldError::new(
                    format!("thresholds.{key}"),
                    format!("must be {range}"),
                ));
            }
            checks.push((which, v));
        }
        if checks.is_empty() {
            errors.push(FieldError::new("thresholds", "give at least one threshold"));
        }
        Thresholds(checks)
    }
}
