//! A batch's summary, accumulated as tasks end: counts, HDR histograms of durations (bounded
//! memory whatever the number of tasks), HTTP status counts and error counts by code.
//!
//! - `report`: the summary's figures as answers and reports carry them.
//! - `timings`: one HDR histogram of durations and how a checkpoint stores it.
//! - `parts`: a load run's per-job and per-stage totals.

mod judged;
mod parts;
mod report;
#[cfg(test)]
mod tests;
mod timings;

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::picture::TimeBins;
use super::task::{ErrorCode, NetTiming, TaskError, TaskOutput, TaskStatus};

use parts::{PartAcc, Parts, StepAcc};
pub use report::{
    CheckCount, Connections, JobSummary, LATE_AFTER_MS, Late, LatencyMetric, Lost, Percentiles,
    PhaseSummary, Place, StageSummary, StepSummary, Summary,
};
use timings::Timings;

/// The running totals behind a [`Summary`]. It serializes (histograms in HDR's V2 format) so
/// that a shard's checkpoint carries it, and the totals of a batch's shards add up: counts
/// exact, histograms added bucket by bucket, never percentiles averaged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SummaryAcc {
    tasks: u64,
    by_status: [u64; 7],
    durations: Timings,
    succeeded: Timings,
    ttfb: Timings,
    http_status: BTreeMap<u16, u64>,
    errors: BTreeMap<ErrorCode, u64>,
    first_errors: BTreeMap<ErrorCode, String>,
    /// Open model runs: late starts and the largest lag.
    late: Option<(u64, Duration)>,
    never_started: u64,
    warmup_tasks: u64,
    #[serde(default)]
    lost: Option<Lost>,
    /// Made at the first HTTP task whose phases were timed.
    #[serde(default)]
    net: Option<Box<NetAcc>>,
    /// A load run's per-job and per-stage totals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parts: Option<Box<Parts>>,
    /// When tasks started and ended, for the page's timeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    times: Option<Box<TimeBins>>,
    /// A batch with checks: each one's judgements, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    checks: Option<BTreeMap<String, CheckCount>>,
    /// A batch of flows: each step's totals, by `FLOW/STEP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    steps: Option<BTreeMap<String, StepAcc>>,
}

fn add_counts<K: Ord + Copy>(mine: &mut BTreeMap<K, u64>, theirs: &BTreeMap<K, u64>) {
    for (k, n) in theirs {
        *mine.entry(*k).or_default() += n;
    }
}

fn add_statuses(mine: &mut [u64; 7], theirs: &[u64; 7]) {
    for (m, t) in mine.iter_mut().zip(theirs) {
        *m += t;
    }
}

/// What the batch's totals and each part's (a job's, a stage's) count alike for an ended
/// task, borrowed from either's own fields so that their stored forms stay as they are.
struct Tally<'a> {
    by_status: &'a mut [u64; 7],
    /// Durations of the tasks that reached their target.
    durations: &'a mut Timings,
    http_status: &'a mut BTreeMap<u16, u64>,
    errors: &'a mut BTreeMap<ErrorCode, u64>,
}

impl Tally<'_> {
    /// Counts one ended task (`duration` when it had started); returns the duration counted,
    /// when it reached its target.
    fn record(
        self,
        status: TaskStatus,
        duration: Option<Duration>,
        output: Option<&TaskOutput>,
        error: Option<&TaskError>,
    ) -> Option<Duration> {
        self.by_status[status_slot(status)] += 1;
        let counted = duration.filter(|_| error.is_none_or(TaskError::reached_target));
        if let Some(d) = counted {
            self.durations.record(d);
        }
        if let Some(TaskOutput::Http(out)) = output {
            *self.http_status.entry(out.status).or_default() += 1;
        }
        if let Some(e) = error {
            *self.errors.entry(e.code).or_default() += 1;
        }
        counted
    }
}

/// `n` per second of `wall`, to a tenth.
fn per_second(n: u64, wall: Option<Duration>) -> f64 {
    match wall {
        Some(w) if !w.is_zero() => ((n as f64 / w.as_secs_f64()) * 10.0).round() / 10.0,
        _ => 0.0,
    }
}

/// The phases' histograms and the connection counts.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct NetAcc {
    phases: [Timings; 6],
    opened: u64,
    reused: u64,
}

impl NetAcc {
    fn new() -> NetAcc {
        NetAcc {
            phases: std::array::from_fn(|_| Timings::new()),
            opened: 0,
            reused: 0,
        }
    }
}

fn status_slot(status: TaskStatus) -> usize {
    status as usize
}

impl SummaryAcc {
    pub fn new(tasks: u64) -> Self {
        SummaryAcc {
            tasks,
            by_status: [0; 7],
            // Auto-resizing, so a batch of short tasks keeps a small histogram; 3 significant
            // digits, as oha and wrk report.
            durations: Timings::new(),
            succeeded: Timings::new(),
            ttfb: Timings::new(),
            http_status: BTreeMap::new(),
            errors: BTreeMap::new(),
            first_errors: BTreeMap::new(),
            late: None,
            warmup_tasks: 0,
            never_started: 0,
            lost: None,
            net: None,
            parts: None,
            times: None,
            checks: None,
            steps: None,
        }
    }

    /// The same, counting each task again under its job (`jobs`: their keys, more than one)
    /// and its stage (`stages`: each one's start and end, in ms from the run's start).
    pub fn with_parts(mut self, jobs: Vec<String>, stages: Vec<(f64, f64)>) -> Self {
        if jobs.len() > 1 || !stages.is_empty() {
            let jobs = if jobs.len() > 1 { jobs } else { Vec::new() };
            self.parts = Some(Box::new(Parts {
                jobs: jobs.into_iter().map(|k| (k, PartAcc::new())).collect(),
                stages: stages.into_iter().map(|b| (b, PartAcc::new())).collect(),
            }));
        }
        self
    }

    /// Whether it keeps per-job or per-stage totals or check counts, which a checkpoint must
    /// then carry (the task rows cannot rebuild them).
    pub fn has_parts(&self) -> bool {
        self.parts.is_some() || self.checks.is_some() || self.steps.is_some()
    }

    /// Adds another accumulator's totals (another shard of the same batch).
    pub fn merge(&mut self, other: &SummaryAcc) {
        self.tasks += other.tasks;
        add_statuses(&mut self.by_status, &other.by_status);
        self.durations.merge(&other.durations);
        self.succeeded.merge(&other.succeeded);
        self.ttfb.merge(&other.ttfb);
        add_counts(&mut self.http_status, &other.http_status);
        add_counts(&mut self.errors, &other.errors);
        for (code, message) in &other.first_errors {
            self.first_errors
                .entry(*code)
                .or_insert_with(|| message.clone());
        }
        self.late = match (self.late, other.late) {
            (Some((a, x)), Some((b, y))) => Some((a + b, x.max(y))),
            (a, b) => a.or(b),
        };
        self.never_started += other.never_started;
        self.warmup_tasks += other.warmup_tasks;
        if let Some(lost) = &other.lost {
            self.lose(lost.clone());
        }
        if let Some(theirs) = &other.net {
            let mine = self.net.get_or_insert_with(|| Box::new(NetAcc::new()));
            for (m, t) in mine.phases.iter_mut().zip(&theirs.phases) {
                m.merge(t);
            }
            mine.opened += theirs.opened;
            mine.reused += theirs.reused;
        }
        if let Some(theirs) = &other.checks {
            let mine = self.checks.get_or_insert_with(Default::default);
            for (name, count) in theirs.iter() {
                let m = mine.entry(name.clone()).or_default();
                m.passed += count.passed;
                m.failed += count.failed;
            }
        }
        if let Some(theirs) = &other.steps {
            let mine = self.steps.get_or_insert_with(Default::default);
            for (key, step) in theirs {
                match mine.get_mut(key) {
                    Some(m) => {
                        m.ran.merge(&step.ran);
                        m.skipped += step.skipped;
                    }
                    None => {
                        mine.insert(key.clone(), step.clone());
                    }
                }
            }
        }
        if let Some(theirs) = &other.times {
            match &mut self.times {
                None => self.times = Some(theirs.clone()),
                Some(mine) => mine.merge(theirs),
            }
        }
        if let Some(theirs) = &other.parts {
            match &mut self.parts {
                None => self.parts = Some(theirs.clone()),
                Some(mine) => {
                    for (m, (_, t)) in mine.jobs.iter_mut().zip(&theirs.jobs) {
                        m.1.merge(t);
                    }
                    for (m, (_, t)) in mine.stages.iter_mut().zip(&theirs.stages) {
                        m.1.merge(t);
                    }
                }
            }
        }
    }

    /// Counts an HTTP task's phases and whether it opened a connection.
    pub fn record_net(&mut self, net: &NetTiming) {
        let acc = self.net.get_or_insert_with(|| Box::new(NetAcc::new()));
        for (phase, (timings, d)) in acc.phases.iter_mut().zip(net.phases).enumerate() {
            // A request on a kept connection had no lookup, dial or handshake of its own.
            if net.reused && phase <= NetTiming::TLS {
                continue;
            }
            // Plain HTTP has no handshake to count (a real one never takes 0 µs).
            if phase == NetTiming::TLS && d == 0 {
                continue;
            }
            timings.record(Duration::from_micros(u64::from(d)));
        }
        if net.reused {
            acc.reused += 1;
        } else {
            acc.opened += 1;
        }
    }

    /// Tasks counted, ended or not.
    pub fn tasks(&self) -> u64 {
        self.tasks
    }

    /// Counts `n` more tasks, not ended yet.
    pub fn add_pending(&mut self, n: u64) {
        self.tasks += n;
    }

    /// Counts a loss this run resumed after.
    pub fn lose(&mut self, lost: Lost) {
        self.lost.get_or_insert_with(Lost::default).add(lost);
    }

    /// A loss with the rate the batch fell to in its gap, read from the time bins.
    fn lost_with_rate(&self, mut lost: Lost) -> Lost {
        if let (Some(times), Some(at)) = (self.times.as_deref(), lost.at) {
            let from = at.timestamp_millis().max(0) as u64;
            let to = from + lost.window_ms as u64;
            lost.rate_per_s = times
                .started_per_s(from, to)
                .map(|r| (r * 10.0).round() / 10.0);
        }
        lost
    }

    /// Counts `n` tasks that ended without running, as `status` (a shard ended
    /// `interrupted` or `cancelled` before it was claimed again).
    pub fn end_unrun(&mut self, status: TaskStatus, n: u64) {
        self.by_status[status_slot(status)] += n;
        let code = match status {
            TaskStatus::Interrupted => ErrorCode::Interrupted,
            _ => ErrorCode::Cancelled,
        };
        if n > 0 {
            *self.errors.entry(code).or_default() += n;
        }
    }

    /// An open model run's accumulator: it reports `late`.
    pub fn open(mut self) -> Self {
        self.late = Some((0, Duration::ZERO));
        self
    }

    /// A measured task made as it started (a load run whose count only the run decides).
    pub fn add_task(&mut self) {
        self.tasks += 1;
    }

    /// A warm-up task made as it started: counted apart, and nowhere else.
    pub fn add_warmup_task(&mut self) {
        self.warmup_tasks += 1;
    }

    /// An open model task started `lag` after its intended time.
    pub fn started_after(&mut self, lag: Duration) {
        if let Some((count, max)) = &mut self.late {
            if lag.as_secs_f64() * 1000.0 > LATE_AFTER_MS {
                *count += 1;
            }
            *max = (*max).max(lag);
        }
    }

    /// Counts one ended task under the batch and, where `place` says, its job and stage.
    pub fn record_in(
        &mut self,
        place: Place,
        status: TaskStatus,
        duration: Option<Duration>,
        output: Option<&TaskOutput>,
        error: Option<&TaskError>,
    ) {
        if let Some(parts) = &mut self.parts {
            if let Some(part) = place.job.and_then(|j| parts.jobs.get_mut(j)) {
                part.1.record(status, duration, output, error);
            }
            if let Some(part) = place.stage.and_then(|s| parts.stages.get_mut(s)) {
                part.1.record(status, duration, output, error);
            }
        }
        self.record(status, duration, output, error);
    }

    /// Counts one ended task (`duration` when it had started).
    pub fn record(
        &mut self,
        status: TaskStatus,
        duration: Option<Duration>,
        output: Option<&TaskOutput>,
        error: Option<&TaskError>,
    ) {
        let tally = Tally {
            by_status: &mut self.by_status,
            durations: &mut self.durations,
            http_status: &mut self.http_status,
            errors: &mut self.errors,
        };
        let counted = tally.record(status, duration, output, error);
        if duration.is_none() && status == TaskStatus::TimedOut {
            self.never_started += 1;
        }
        if let (Some(d), TaskStatus::Succeeded) = (counted, status) {
            self.succeeded.record(d);
        }
        if let Some(TaskOutput::Http(out)) = output {
            self.ttfb
                .record(Duration::from_micros((out.ttfb_ms * 1000.0) as u64));
        }
        if let Some(e) = error {
            self.first_errors
                .entry(e.code)
                .or_insert_with(|| e.message.clone());
        }
    }

    /// When a task that ended ran (µs since the Unix epoch), for the timeline.
    pub fn record_times(&mut self, start_us: u64, end_us: u64, error: bool) {
        self.times
            .get_or_insert_with(|| Box::new(TimeBins::new()))
            .record(start_us, end_us, error);
    }

    /// Makes every histogram of durations still kept as values (see `Timings`): for an
    /// accumulator about to give its figures and its stored form at once (a batch's packing).
    pub fn settle(&mut self) {
        for t in [&mut self.durations, &mut self.succeeded, &mut self.ttfb] {
            t.settle();
        }
        if let Some(net) = &mut self.net {
            net.phases.iter_mut().for_each(Timings::settle);
        }
        if let Some(parts) = &mut self.parts {
            parts.jobs.iter_mut().for_each(|(_, p)| p.settle());
            parts.stages.iter_mut().for_each(|(_, p)| p.settle());
        }
        if let Some(steps) = &mut self.steps {
            steps.values_mut().for_each(|s| s.ran.settle());
        }
    }

    /// The timeline's bins, if a task that ran has ended.
    pub fn times(&self) -> Option<&TimeBins> {
        self.times.as_deref()
    }

    /// The histogram behind a latency figure (`duration` or `ttfb`), in microseconds, with
    /// its values' sum.
    pub fn histogram(
        &self,
        metric: LatencyMetric,
    ) -> Option<(std::borrow::Cow<'_, Histogram<u64>>, u64)> {
        let t = match metric {
            LatencyMetric::Duration => &self.durations,
            LatencyMetric::Ttfb => &self.ttfb,
        };
        t.histogram()
    }

    /// The histogram of one job's durations (`by_job.KEY`), in microseconds.
    pub fn job_histogram(&self, key: &str) -> Option<std::borrow::Cow<'_, Histogram<u64>>> {
        let parts = self.parts.as_deref()?;
        let (_, part) = parts.jobs.iter().find(|(k, _)| k == key)?;
        part.durations().histogram().map(|(h, _)| h)
    }

    /// Counts a stored task that ended (a warm-up task counts nowhere).
    pub fn record_stored(&mut self, t: &crate::engine::task::TaskRecord) {
        if t.warmup {
            return;
        }
        let duration = t
            .timing
            .duration_ms
            .map(|d| Duration::from_micros((d * 1000.0) as u64));
        self.record(t.status, duration, t.output.as_ref(), t.error.as_ref());
        match &t.output {
            Some(TaskOutput::Http(out)) => self.record_results(&out.checks),
            Some(TaskOutput::Flow(flow)) => self.record_steps(flow),
            _ => {}
        }
        if let Some(phases) = &t.timing.phases {
            self.record_net(&NetTiming::from_phases(
                phases,
                t.timing.reused == Some(true),
            ));
        }
    }

    pub fn ended(&self) -> u64 {
        self.by_status
            .iter()
            .enumerate()
            .filter(|(slot, _)| {
                *slot != status_slot(TaskStatus::Pending)
                    && *slot != status_slot(TaskStatus::Running)
            })
            .map(|(_, n)| n)
            .sum()
    }

    pub fn summary(&self, wall: Option<Duration>) -> Summary {
        let count = |s: TaskStatus| self.by_status[status_slot(s)];
        let ended = self.ended();
        let duration_ms = self.durations.percentiles();
        // Tasks that ran: a task stopped before it started, or refused before it reached its
        // target, did no work to count.
        let ran = self.durations.len();
        let throughput_per_s = per_second(ran, wall);
        let parts = self.parts.as_deref();
        Summary {
            tasks: self.tasks,
            succeeded: count(TaskStatus::Succeeded),
            failed: count(TaskStatus::Failed),
            timed_out: count(TaskStatus::TimedOut),
            cancelled: count(TaskStatus::Cancelled),
            interrupted: count(TaskStatus::Interrupted),
            pending: self.tasks.saturating_sub(ended),
            duration_ms,
            duration_ms_succeeded: self.succeeded.percentiles(),
            ttfb_ms: self.ttfb.percentiles(),
            throughput_per_s,
            measured_ms: wall.map(|w| (w.as_micros() as f64).round() / 1000.0),
            http_status: self.http_status.clone(),
            errors: self.errors.clone(),
            first_errors: self.first_errors.clone(),
            late: self.late.map(|(count, max)| Late {
                count,
                max_ms: (max.as_micros() as f64).round() / 1000.0,
                concurrency_needed: None,
            }),
            warmup_tasks: self.warmup_tasks,
            never_started: self.never_started,
            lost: self.lost.clone().map(|l| self.lost_with_rate(l)),
            phases: self.net.as_ref().map(|n| {
                let [dns, connect, tls, send, wait, receive] =
                    n.phases.each_ref().map(Timings::percentiles);
                Box::new(PhaseSummary {
                    dns_ms: dns,
                    connect_ms: connect,
                    tls_ms: tls,
                    send_ms: send,
                    wait_ms: wait,
                    receive_ms: receive,
                })
            }),
            connections: self.net.as_ref().map(|n| Connections {
                opened: n.opened,
                reused: n.reused,
            }),
            by_job: parts.filter(|p| !p.jobs.is_empty()).map(|p| {
                p.jobs
                    .iter()
                    .map(|(key, acc)| (key.clone(), acc.job(wall)))
                    .collect()
            }),
            stages: parts.filter(|p| !p.stages.is_empty()).map(|p| {
                p.stages
                    .iter()
                    .enumerate()
                    .map(|(i, (bounds, acc))| acc.stage(i, *bounds))
                    .collect()
            }),
            checks: self.checks.clone(),
            by_step: self.steps.as_ref().map(|steps| {
                steps
                    .iter()
                    .map(|(key, acc)| (key.clone(), acc.ran.step(acc.skipped)))
                    .collect()
            }),
        }
    }
}
