//! The verdict of a batch given `thresholds`: each limit checked against the summary.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::batch::BatchStatus;
use super::noise::weak_baseline;
use super::spec::{Baseline, BaselineCheck, Figure, Threshold, Thresholds};
use super::summary::{CheckCount, JobSummary, Percentiles, StepSummary, Summary};
use super::wire_name;

/// Whether the batch met every threshold; a CI job fails the build on `passed: false`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Verdict {
    pub passed: bool,
    pub checks: Vec<Check>,
    /// What the reader should know about the checks that passes or fails none of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Warning>,
}

/// A caution about the verdict, which `passed` does not count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Warning {
    /// `weak_baseline`: the run or its baseline ended fewer tasks than
    /// `MIN_BASELINE_TASKS` (10,000), so a baseline check may pass or fail on noise.
    pub code: String,
    pub detail: String,
}

/// One threshold: its limit, the figure it was held against, and the outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Check {
    /// The threshold's key: `p95_ms` for the batch's figure, `by_job.KEY.p95_ms` for a
    /// job's, `baseline.p95_ms` against the baseline, `completed` when not every task ran,
    /// `lost` (always there) for the longest time a lost shard had no runner, `check_rate`
    /// and `checks.NAME` for the share of check judgements that passed.
    pub name: String,
    pub limit: f64,
    /// Null when there is nothing to measure (no task ended): the check then fails.
    pub actual: Option<f64>,
    pub passed: bool,
    /// A baseline check: the baseline batch's figure the limit was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    /// What the figures mean, when they need words (`completed`: how many tasks ran and how
    /// the others ended; a baseline check: both figures and the change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The figures a threshold can name, of the batch or of one job.
struct Figures<'a> {
    durations: Option<&'a Percentiles>,
    /// Failed and timed out.
    bad: u64,
    ended: u64,
    throughput: f64,
}

impl<'a> Figures<'a> {
    fn of_batch(s: &'a Summary) -> Figures<'a> {
        Figures {
            durations: s.duration_ms.as_ref(),
            bad: s.failed + s.timed_out,
            ended: s.tasks - s.pending,
            throughput: s.throughput_per_s,
        }
    }

    fn of_step(j: &'a StepSummary) -> Figures<'a> {
        Figures {
            durations: j.duration_ms.as_ref(),
            bad: j.failed + j.timed_out,
            ended: j.tasks,
            throughput: 0.0,
        }
    }

    fn of_job(j: &'a JobSummary) -> Figures<'a> {
        Figures {
            durations: j.duration_ms.as_ref(),
            bad: j.failed + j.timed_out,
            ended: j.tasks,
            throughput: j.throughput_per_s,
        }
    }

    fn figure(&self, f: Figure) -> Option<f64> {
        let d = self.durations;
        match f {
            Figure::P50Ms => d.map(|d| d.p50),
            Figure::P90Ms => d.map(|d| d.p90),
            Figure::P95Ms => d.map(|d| d.p95),
            Figure::P99Ms => d.map(|d| d.p99),
            Figure::P999Ms => d.map(|d| d.p999),
            Figure::MaxMs => d.map(|d| d.max),
            Figure::MeanMs => d.map(|d| d.mean),
            Figure::ErrorRate => (self.ended > 0).then(|| self.bad as f64 / self.ended as f64),
            Figure::ThroughputPerS => Some(self.throughput),
        }
    }

    fn threshold(&self, t: Threshold) -> Option<f64> {
        let f = match t {
            Threshold::P50Ms => Figure::P50Ms,
            Threshold::P90Ms => Figure::P90Ms,
            Threshold::P95Ms => Figure::P95Ms,
            Threshold::P99Ms => Figure::P99Ms,
            Threshold::P999Ms => Figure::P999Ms,
            Threshold::MaxMs => Figure::MaxMs,
            Threshold::MeanMs => Figure::MeanMs,
            Threshold::MaxErrorRate => Figure::ErrorRate,
            Threshold::MinThroughputPerS => Figure::ThroughputPerS,
            Threshold::Completed => return None,
        };
        self.figure(f)
    }
}

/// A figure against its limit.
fn check(name: String, limit: f64, actual: Option<f64>, at_least: bool) -> Check {
    let passed = actual.is_some_and(|a| if at_least { a >= limit } else { a <= limit });
    Check {
        name,
        limit,
        actual,
        passed,
        baseline: None,
        detail: None,
    }
}

/// Judges a finished batch's summary against thresholds; `status` is how the batch ended.
pub fn judge(thresholds: &Thresholds, s: &Summary, status: BatchStatus) -> Verdict {
    let batch = Figures::of_batch(s);
    let mut checks: Vec<Check> = thresholds
        .batch
        .iter()
        .map(|&(name, limit)| {
            let actual = match name {
                Threshold::Completed => Some(ran_to_end(s) as f64),
                _ => batch.threshold(name),
            };
            check(wire_name(&name), limit, actual, name.is_minimum())
        })
        .collect();
    for (key, limits) in &thresholds.by_job {
        let job = s.by_job.as_ref().and_then(|j| j.get(key));
        for &(name, limit) in limits {
            let actual = job.and_then(|j| Figures::of_job(j).threshold(name));
            let mut c = check(
                format!("by_job.{key}.{}", wire_name(&name)),
                limit,
                actual,
                name.is_minimum(),
            );
            if job.is_none() {
                c.detail = Some(format!("no task of job {key} ended"));
            }
            checks.push(c);
        }
    }
    for (key, limits) in &thresholds.by_step {
        let step = s.by_step.as_ref().and_then(|j| j.get(key));
        for &(name, limit) in limits {
            let actual = step.and_then(|j| Figures::of_step(j).threshold(name));
            let mut c = check(
                format!("by_step.{key}.{}", wire_name(&name)),
                limit,
                actual,
                name.is_minimum(),
            );
            if step.is_none_or(|s| s.tasks == 0) {
                c.detail = Some(format!("step {key} never ran"));
            }
            checks.push(c);
        }
    }
    if let Some(baseline) = &thresholds.baseline {
        for b in &baseline.checks {
            let actual = batch.figure(b.figure);
            let name = format!("baseline.{}", b.figure.key());
            let mut c = match b.limit() {
                Some(limit) => check(name, limit, actual, b.figure.higher_is_better()),
                None => Check {
                    detail: Some(format!(
                        "batch {} has no {} to compare with",
                        baseline.batch,
                        b.figure.key()
                    )),
                    ..check(name, 0.0, actual, false)
                },
            };
            if let Some(base) = b.base {
                c.baseline = Some(base);
                c.detail = Some(baseline_words(b, base, actual, baseline.batch));
            }
            checks.push(c);
        }
    }
    // A run stopped part-way (its tasks cancelled, or the batch cancelled or interrupted
    // between two of them) measured something else than was asked for: a gate must not pass
    // on it, whatever its figures.
    let stopped = matches!(status, BatchStatus::Cancelled | BatchStatus::Interrupted);
    let cut_by_deadline = s.never_started;
    if stopped || s.cancelled + s.interrupted + cut_by_deadline > 0 {
        let mut how = Vec::new();
        if s.cancelled > 0 {
            how.push(format!("{} cancelled", s.cancelled));
        }
        if s.interrupted > 0 {
            how.push(format!("{} interrupted", s.interrupted));
        }
        if cut_by_deadline > 0 {
            how.push(format!(
                "{cut_by_deadline} never started before the deadline"
            ));
        }
        if how.is_empty() {
            how.push(format!("then the batch was {}", wire_name(&status)));
        }
        checks.push(Check {
            name: wire_name(&Threshold::Completed),
            limit: s.tasks as f64,
            actual: Some(ran_to_end(s) as f64),
            passed: false,
            baseline: None,
            detail: Some(format!(
                "{} of {} tasks ran, {}",
                ran_to_end(s),
                s.tasks,
                how.join(", ")
            )),
        });
    }
    checks.extend(check_rates(thresholds, s));
    checks.push(lost(thresholds, s));
    Verdict {
        passed: checks.iter().all(|c| c.passed),
        checks,
        warnings: warnings(thresholds, s),
    }
}

/// `check_rate` over every check's judgements, and `checks.NAME` for each check named: the
/// share that passed, at least the limit. A check never judged fails (nothing was shown
/// right). A batch whose thresholds name no check rate but whose jobs have hard checks gets
/// `check_rate` over those, with a limit of 1: a hard check fails its task, and a gate that
/// judged only latency would pass a run whose every answer was wrong.
fn check_rates(thresholds: &Thresholds, s: &Summary) -> Vec<Check> {
    let counts = s.checks.as_ref();
    let mut out = Vec::new();
    let hard = &thresholds.hard_checks;
    if thresholds.min_check_rate.is_none() && thresholds.checks.is_empty() && !hard.is_empty() {
        let all = counts.map_or_else(CheckCount::default, |c| {
            c.iter().filter(|(name, _)| hard.contains(name)).fold(
                CheckCount::default(),
                |a, (_, c)| CheckCount {
                    passed: a.passed + c.passed,
                    failed: a.failed + c.failed,
                },
            )
        });
        let mut c = check("check_rate".to_owned(), 1.0, all.rate(), true);
        c.detail = Some(format!(
            "{}; every hard check must pass unless thresholds.min_check_rate says otherwise",
            rate_words(&all)
        ));
        out.push(c);
    }
    if let Some(limit) = thresholds.min_check_rate {
        let all = counts.map_or_else(CheckCount::default, |c| {
            c.values().fold(CheckCount::default(), |a, c| CheckCount {
                passed: a.passed + c.passed,
                failed: a.failed + c.failed,
            })
        });
        let mut c = check("check_rate".to_owned(), limit, all.rate(), true);
        c.detail = Some(rate_words(&all));
        out.push(c);
    }
    for (name, limit) in &thresholds.checks {
        let count = counts
            .and_then(|c| c.get(name))
            .copied()
            .unwrap_or_default();
        let mut c = check(format!("checks.{name}"), *limit, count.rate(), true);
        c.detail = Some(rate_words(&count));
        out.push(c);
    }
    out
}

/// `998 of 1000 judgements passed`.
fn rate_words(count: &CheckCount) -> String {
    let judged = count.passed + count.failed;
    if judged == 0 {
        return "never judged: no task's answer reached its checks".to_owned();
    }
    format!("{} of {judged} judgements passed", count.passed)
}

/// The verdict's warnings: a baseline judged on too few tasks.
fn warnings(thresholds: &Thresholds, s: &Summary) -> Vec<Warning> {
    let Some(baseline) = &thresholds.baseline else {
        return Vec::new();
    };
    weak_baseline(s.tasks.saturating_sub(s.pending), baseline.tasks)
        .map(|detail| Warning {
            code: "weak_baseline".to_owned(),
            detail,
        })
        .into_iter()
        .collect()
}

/// The `lost` check every verdict has: a run whose shards went without a runner for longer
/// than allowed did not apply the load it promised, whatever its figures.
fn lost(thresholds: &Thresholds, s: &Summary) -> Check {
    let limit = thresholds.max_lost_window_ms.unwrap_or(0.0);
    let actual = s.lost.as_ref().map_or(0.0, |l| l.window_ms);
    Check {
        detail: s.lost.as_ref().map(|l| l.words()),
        ..check("lost".to_owned(), limit, Some(actual), false)
    }
}

/// A batch summary's figure (`error_rate`: failed and timed out over the tasks that ended).
pub fn figure(s: &Summary, f: Figure) -> Option<f64> {
    Figures::of_batch(s).figure(f)
}

/// Reads the baseline's figures into `baseline`'s checks from the baseline batch's
/// `summary`; the error names the first figure it lacks.
pub fn resolve_baseline(baseline: &mut Baseline, summary: &Summary) -> Result<(), String> {
    let figures = Figures::of_batch(summary);
    baseline.tasks = Some(summary.tasks.saturating_sub(summary.pending));
    for c in &mut baseline.checks {
        match figures.figure(c.figure) {
            Some(v) => c.base = Some(v),
            None => {
                return Err(format!(
                    "batch {} has no {} to compare with (no task of it ran)",
                    baseline.batch,
                    c.figure.key()
                ));
            }
        }
    }
    Ok(())
}

/// A baseline check in words: both figures, the change, and what was allowed.
fn baseline_words(b: &BaselineCheck, base: f64, actual: Option<f64>, batch: uuid::Uuid) -> String {
    let unit = if b.figure == Figure::ThroughputPerS {
        "/s"
    } else if b.figure == Figure::ErrorRate {
        ""
    } else {
        " ms"
    };
    let pct = b.max_regression_pct;
    match actual {
        Some(a) => {
            let change = if base != 0.0 {
                format!("{:+.1} %", (a - base) / base * 100.0)
            } else {
                "from 0".to_owned()
            };
            let worse = if b.figure.higher_is_better() {
                "lower"
            } else {
                "higher"
            };
            format!(
                "{a:.3}{unit} against the baseline's {base:.3}{unit} ({change}); at most {pct} % {worse} allowed (batch {batch})"
            )
        }
        None => format!("nothing measured; the baseline's was {base:.3}{unit} (batch {batch})"),
    }
}

/// Tasks that ran to their end, however each ended.
fn ran_to_end(s: &Summary) -> u64 {
    s.tasks
        .saturating_sub(s.cancelled + s.interrupted + s.pending + s.never_started)
}

#[cfg(test)]
mod tests;
