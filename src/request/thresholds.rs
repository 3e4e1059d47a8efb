//! `thresholds` (the limits a verdict judges) as clients send them, and their validation.

use std::collections::BTreeMap;

use serde::Deserialize;
use utoipa::ToSchema;

use super::FieldError;
use crate::engine::spec::{Baseline, BaselineCheck, Figure, Threshold, Thresholds};

/// Declares a set of limits: the nine every set has (the batch's, and each job's in
/// `by_job`), then its own fields. A macro, not a shared struct under `#[serde(flatten)]`:
/// serde cannot flatten into a struct that denies unknown fields, and a misspelt limit must be
/// refused, not ignored.
macro_rules! limits_request {
    (
        $(#[$meta:meta])*
        pub struct $name:ident { $($own:tt)* }
    ) => {
        #[derive(Debug, Deserialize, ToSchema)]
        $(#[$meta])*
        #[serde(deny_unknown_fields)]
        pub struct $name {
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
            $($own)*
        }

        impl $name {
            /// The limits given, each checked; errors name `at.KEY`.
            fn checks(&self, at: &str, errors: &mut Vec<FieldError>) -> Vec<(Threshold, f64)> {
                checks(
                    [
                        (Threshold::P50Ms, "p50_ms", self.p50_ms),
                        (Threshold::P90Ms, "p90_ms", self.p90_ms),
                        (Threshold::P95Ms, "p95_ms", self.p95_ms),
                        (Threshold::P99Ms, "p99_ms", self.p99_ms),
                        (Threshold::P999Ms, "p999_ms", self.p999_ms),
                        (Threshold::MaxMs, "max_ms", self.max_ms),
                        (Threshold::MeanMs, "mean_ms", self.mean_ms),
                        (Threshold::MaxErrorRate, "max_error_rate", self.max_error_rate),
                        (
                            Threshold::MinThroughputPerS,
                            "min_throughput_per_s",
                            self.min_throughput_per_s,
                        ),
                    ],
                    at,
                    errors,
                )
            }
        }
    };
}

limits_request! {
    /// Pass/fail limits. Durations are in milliseconds over every task's `duration_ms`.
    #[schema(example = json!({ "p95_ms": 200, "max_error_rate": 0.01 }))]
    pub struct ThresholdsRequest {
        /// A load run of several jobs: limits on one job's figures (`summary.by_job`), by its key
        /// (the job's `id`, else its place in `jobs`). Checks are named `by_job.KEY.p95_ms`.
        #[schema(example = json!(null))]
        pub by_job: Option<BTreeMap<String, JobThresholdsRequest>>,
        /// How much worse than a finished batch's figures this one's may be. Checks are named
        /// `baseline.p95_ms`.
        #[schema(example = json!(null))]
        pub baseline: Option<BaselineRequest>,
        /// The longest a lost shard may have gone without a runner, in ms: the verdict's
        /// `lost` check (there whenever a batch has thresholds, with a limit of 0 unless
        /// this says otherwise) fails when `summary.lost.window_ms` is longer.
        #[schema(minimum = 0, example = json!(null))]
        pub max_lost_window_ms: Option<f64>,
        /// The least share of all checks' judgements that passed (`summary.checks`), from 0
        /// to 1. The verdict's check is named `check_rate`.
        #[schema(minimum = 0, maximum = 1, example = json!(null))]
        pub min_check_rate: Option<f64>,
        /// By check name: the least share of that check's judgements that passed. Checks are
        /// named `checks.NAME`.
        #[schema(example = json!(null))]
        pub checks: Option<BTreeMap<String, CheckThresholdRequest>>,
        /// Flows: limits on one step's figures (`summary.by_step`), by `FLOW/STEP`. Checks are
        /// named `by_step.FLOW/STEP.p95_ms`. A step has no throughput of its own.
        #[schema(example = json!(null))]
        pub by_step: Option<BTreeMap<String, JobThresholdsRequest>>,
    }
}

/// What a batch's jobs let its thresholds name.
pub(super) struct Named<'a> {
    /// The keys `by_job` may name (none when the summary has no `by_job`).
    pub job_keys: Option<&'a [String]>,
    /// The names `checks` may name; `None` when the jobs were invalid, so not known.
    pub check_names: Option<&'a [&'a str]>,
    /// The checks that are not soft.
    pub hard_checks: Vec<String>,
    /// The `FLOW/STEP` keys `by_step` may name; `None` when not known.
    pub step_keys: Option<Vec<String>>,
}

/// A limit on one check's pass rate.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckThresholdRequest {
    /// Passed over judged, from 0 to 1.
    #[schema(minimum = 0, maximum = 1, example = 0.99)]
    pub min_rate: f64,
}

limits_request! {
    /// Limits on one job's figures.
    pub struct JobThresholdsRequest {}
}

/// `thresholds.baseline`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BaselineRequest {
    /// A finished batch's id.
    pub batch: String,
    /// By figure (`p50_ms` ... `max_ms`, `mean_ms`, `throughput_per_s`, `error_rate`): the
    /// largest regression allowed, in percent of the baseline's figure.
    #[schema(value_type = BTreeMap<String, f64>, example = json!({ "p95_ms": 10, "throughput_per_s": 10 }))]
    pub max_regression_pct: BTreeMap<String, f64>,
}

/// The limits given (`all`: each with its key), each checked; errors name `at.KEY`.
fn checks(
    all: [(Threshold, &'static str, Option<f64>); 9],
    at: &str,
    errors: &mut Vec<FieldError>,
) -> Vec<(Threshold, f64)> {
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
                format!("{at}.{key}"),
                format!("must be {range}"),
            ));
        }
        checks.push((which, v));
    }
    checks
}

impl ThresholdsRequest {
    /// The limits, each on something `named` holds.
    pub(super) fn validate(&self, named: Named<'_>, errors: &mut Vec<FieldError>) -> Thresholds {
        let batch = self.checks("thresholds", errors);
        let by_job = self.by_job_checks(named.job_keys, errors);
        let by_step = self.by_step_checks(named.step_keys.as_deref(), errors);
        let baseline = self.baseline.as_ref().and_then(|b| b.validate(errors));
        let max_lost_window_ms = self.max_lost_window_ms;
        if max_lost_window_ms.is_some_and(|v| !v.is_finite() || v < 0.0) {
            errors.push(FieldError::new(
                "thresholds.max_lost_window_ms",
                "must be a number, 0 or more",
            ));
        }
        let (min_check_rate, checks) = self.check_limits(named.check_names, errors);
        let none =
            batch.is_empty() && by_job.is_empty() && by_step.is_empty() && baseline.is_none();
        if none && max_lost_window_ms.is_none() && min_check_rate.is_none() && checks.is_empty() {
            errors.push(FieldError::new("thresholds", "give at least one threshold"));
        }
        Thresholds {
            batch,
            by_job,
            baseline,
            max_lost_window_ms,
            min_check_rate,
            checks,
            hard_checks: named.hard_checks,
            by_step,
        }
    }

    /// `by_step`: each flow step's limits, under a `FLOW/STEP` key `keys` holds.
    fn by_step_checks(
        &self,
        keys: Option<&[String]>,
        errors: &mut Vec<FieldError>,
    ) -> Vec<(String, Vec<(Threshold, f64)>)> {
        let mut by_step = Vec::new();
        for (key, t) in self.by_step.iter().flatten() {
            let at = format!("thresholds.by_step.{key}");
            match keys {
                Some([]) => errors.push(FieldError::new(
                    "thresholds.by_step",
                    "only a batch of flows has per-step figures",
                )),
                Some(keys) if !keys.contains(key) => errors.push(FieldError::new(
                    at.clone(),
                    format!(
                        "no step has the key {key:?}; the keys are {}",
                        keys.join(", ")
                    ),
                )),
                _ => {}
            }
            let checks = t.checks(&at, errors);
            if checks.is_empty() {
                errors.push(FieldError::new(at.clone(), "give at least one threshold"));
            }
            if checks
                .iter()
                .any(|(t, _)| *t == Threshold::MinThroughputPerS)
            {
                errors.push(FieldError::new(
                    format!("{at}.min_throughput_per_s"),
                    "a step has no throughput of its own: judge its flow's",
                ));
            }
            by_step.push((key.clone(), checks));
        }
        by_step
    }

    /// `min_check_rate` and `checks`, on checks the jobs have.
    fn check_limits(
        &self,
        names: Option<&[&str]>,
        errors: &mut Vec<FieldError>,
    ) -> (Option<f64>, Vec<(String, f64)>) {
        let mut rate = |field: String, v: f64| {
            if !(0.0..=1.0).contains(&v) {
                errors.push(FieldError::new(field, "must be from 0 to 1"));
            }
        };
        if let Some(v) = self.min_check_rate {
            rate("thresholds.min_check_rate".into(), v);
        }
        let mut checks = Vec::new();
        for (name, limit) in self.checks.iter().flatten() {
            rate(format!("thresholds.checks.{name}.min_rate"), limit.min_rate);
            checks.push((name.clone(), limit.min_rate));
        }
        let Some(names) = names else {
            return (self.min_check_rate, checks);
        };
        if names.is_empty() && (self.min_check_rate.is_some() || !checks.is_empty()) {
            let field = match self.min_check_rate {
                Some(_) => "thresholds.min_check_rate",
                None => "thresholds.checks",
            };
            errors.push(FieldError::new(
                field,
                "no job has checks: give an http job checks to judge their pass rate",
            ));
            return (self.min_check_rate, checks);
        }
        for (name, _) in &checks {
            if !names.contains(&name.as_str()) {
                errors.push(FieldError::new(
                    format!("thresholds.checks.{name}"),
                    format!(
                        "no check is named {name:?}; the checks are {}",
                        names
                            .iter()
                            .map(|n| format!("{n:?}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        (self.min_check_rate, checks)
    }

    /// `by_job`: each job's limits, under a key `job_keys` holds.
    fn by_job_checks(
        &self,
        job_keys: Option<&[String]>,
        errors: &mut Vec<FieldError>,
    ) -> Vec<(String, Vec<(Threshold, f64)>)> {
        let mut by_job = Vec::new();
        for (key, t) in self.by_job.iter().flatten() {
            let at = format!("thresholds.by_job.{key}");
            match job_keys {
                None => errors.push(FieldError::new(
                    "thresholds.by_job",
                    format!(
                        "only a load run of 2 to {} jobs has per-job figures",
                        crate::engine::spec::JobKeys::MAX
                    ),
                )),
                Some(keys) if !keys.contains(key) => errors.push(FieldError::new(
                    at.clone(),
                    format!(
                        "no job has the key {key:?}; the keys are {}",
                        keys.join(", ")
                    ),
                )),
                Some(_) => {}
            }
            let checks = t.checks(&at, errors);
            if checks.is_empty() {
                errors.push(FieldError::new(at, "give at least one threshold"));
            }
            by_job.push((key.clone(), checks));
        }
        by_job
    }
}

impl BaselineRequest {
    fn validate(&self, errors: &mut Vec<FieldError>) -> Option<Baseline> {
        let batch = match uuid::Uuid::parse_str(&self.batch) {
            Ok(id) => Some(id),
            Err(_) => {
                errors.push(FieldError::new(
                    "thresholds.baseline.batch",
                    "not a batch id",
                ));
                None
            }
        };
        let mut checks = Vec::new();
        for (key, &pct) in &self.max_regression_pct {
            let at = format!("thresholds.baseline.max_regression_pct.{key}");
            let Some(figure) = Figure::from_key(key) else {
                let keys: Vec<&str> = Figure::ALL.iter().map(|f| f.key()).collect();
                errors.push(FieldError::new(
                    at,
                    format!("not a figure; use one of {}", keys.join(", ")),
                ));
                continue;
            };
            if !pct.is_finite() || pct < 0.0 || (figure.higher_is_better() && pct > 100.0) {
                errors.push(FieldError::new(
                    at,
                    if figure.higher_is_better() {
                        "must be from 0 to 100"
                    } else {
                        "must be a number, 0 or more"
                    },
                ));
            }
            checks.push(BaselineCheck {
                figure,
                max_regression_pct: pct,
                base: None,
            });
        }
        if checks.is_empty() {
            errors.push(FieldError::new(
                "thresholds.baseline.max_regression_pct",
                "give at least one figure",
            ));
        }
        Some(Baseline {
            batch: batch?,
            checks,
            tasks: None,
        })
    }
}
