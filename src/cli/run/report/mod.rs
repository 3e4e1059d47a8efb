//! What `fanout run` prints of a finished batch for people (`text`), read from the batch as
//! the API answers it; `junit` writes the same batch for CI dashboards.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Deserialize;

use crate::engine::summary::{CheckCount, Connections, Late, Lost, Percentiles, PhaseSummary};
use crate::engine::verdict::{Check, Verdict};

/// The parts of a batch answer the reports read: a subset of the API's batch view (which
/// only serializes). Error codes are kept as text, and every field has a default, so that a
/// report reads an answer from a server of another version (one that knows an error code this
/// build does not); the figures without codes are read as the API's own types.
#[derive(Debug, Clone, Deserialize)]
pub struct Report {
    pub id: String,
    #[serde(default)]
    pub mode: String,
    pub status: String,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub wall_ms: Option<f64>,
    #[serde(default)]
    pub error: Option<Failure>,
    pub summary: Figures,
    #[serde(default)]
    pub verdict: Option<Verdict>,
}

/// `summary`, as the reports read it: the API's [`Summary`](crate::engine::summary::Summary)
/// with its error codes as text.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Figures {
    pub tasks: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub cancelled: u64,
    pub interrupted: u64,
    pub pending: u64,
    pub duration_ms: Option<Percentiles>,
    pub duration_ms_succeeded: Option<Percentiles>,
    pub ttfb_ms: Option<Percentiles>,
    pub throughput_per_s: f64,
    pub measured_ms: Option<f64>,
    pub http_status: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    pub first_errors: BTreeMap<String, String>,
    pub late: Option<Late>,
    pub warmup_tasks: u64,
    pub lost: Option<Lost>,
    pub phases: Option<PhaseSummary>,
    pub connections: Option<Connections>,
    pub by_job: Option<BTreeMap<String, Part>>,
    pub stages: Option<Vec<Part>>,
    pub checks: Option<BTreeMap<String, CheckCount>>,
    pub by_step: Option<BTreeMap<String, Part>>,
}

/// One job's or one stage's figures (the API's `JobSummary` and `StageSummary`, with their
/// error codes as text).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Part {
    pub index: Option<u32>,
    pub start_ms: Option<f64>,
    pub end_ms: Option<f64>,
    pub tasks: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub throughput_per_s: f64,
    pub duration_ms: Option<Percentiles>,
    pub errors: BTreeMap<String, u64>,
    /// A flow's step: the flows that ended before it.
    pub skipped: u64,
}

impl Part {
    /// Tasks that did not succeed.
    fn errors(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// One phase's figures in a summary's phases.
type PhaseOf = fn(&PhaseSummary) -> &Option<Percentiles>;

/// The phases of an HTTP request in the order they happen.
const PHASES: [(&str, PhaseOf); 6] = [
    ("dns", |p| &p.dns_ms),
    ("connect", |p| &p.connect_ms),
    ("tls", |p| &p.tls_ms),
    ("send", |p| &p.send_ms),
    ("wait", |p| &p.wait_ms),
    ("receive", |p| &p.receive_ms),
];

/// `error`: why a gather batch failed (the API's `BatchError`, its code as text).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Failure {
    pub index: Option<u32>,
    pub code: String,
    pub message: String,
}

/// A lower bound: the figure must reach the limit (`min_...`, a job's `min_...`,
/// `baseline.throughput_per_s`, `completed`, and check pass rates).
fn is_minimum(check: &Check) -> bool {
    let last = check.name.rsplit('.').next().unwrap_or_default();
    last.starts_with("min_")
        || check.name == "completed"
        || check.name == "baseline.throughput_per_s"
        || check.name == "check_rate"
        || check.name.starts_with("checks.")
}

impl Report {
    /// The verdict when there is one; otherwise, whether every task succeeded.
    pub fn passed(&self) -> bool {
        match &self.verdict {
            Some(v) => v.passed,
            None => self.status == "completed" && self.summary.succeeded == self.summary.tasks,
        }
    }
}

/// A figure as people read it: whole numbers without decimals, others to 2 digits (4 below
/// one), trailing zeros dropped; `-` for none.
pub(super) fn num(v: Option<f64>) -> String {
    match v {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        Some(f) => {
            let digits = if f.abs() >= 1.0 { 2 } else { 4 };
            let text = format!("{f:.digits$}");
            text.trim_end_matches('0').trim_end_matches('.').to_owned()
        }
        None => "-".into(),
    }
}

pub(super) fn count(n: u64) -> String {
    num(Some(n as f64))
}

/// A summary a person reads at a glance.
pub fn text(b: &Report) -> String {
    let s = &b.summary;
    let mut out = String::new();
    header(&mut out, b);
    pace(&mut out, b);
    distributions(&mut out, s);
    network(&mut out, s);
    if let Some(d) = s.duration_ms.as_ref().filter(|d| d.max > 0.0) {
        latency_bars(&mut out, d);
    }
    stages(&mut out, s);
    by_job(&mut out, s);
    by_step(&mut out, s);
    outcomes(&mut out, b);
    checks(&mut out, s);
    verdict(&mut out, b);
    out
}

/// A line per check: its pass rate and counts, failures marked.
fn checks(out: &mut String, s: &Figures) {
    let Some(checks) = s.checks.as_ref().filter(|c| !c.is_empty()) else {
        return;
    };
    let _ = writeln!(out, "  checks      passed / judged");
    for (name, c) in checks {
        let rate = c
            .rate()
            .map_or_else(|| "-".to_owned(), |r| format!("{}%", num(Some(r * 100.0))));
        let mark = if c.failed > 0 { "✗" } else { "✓" };
        let _ = writeln!(
            out,
            "    {mark} {rate:>7}  {} / {}  {name}",
            count(c.passed),
            count(c.passed + c.failed)
        );
    }
}

/// The batch, its status, and how its tasks ended.
fn header(out: &mut String, b: &Report) {
    let s = &b.summary;
    let label = b
        .label
        .as_deref()
        .map(|l| format!(" {l:?}"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "fanout batch {}{label}: {} ({} mode)",
        b.id, b.status, b.mode
    );
    let _ = writeln!(
        out,
        "  tasks       {} total, {} succeeded, {} failed, {} timed out, {} cancelled, {} interrupted",
        count(s.tasks),
        count(s.succeeded),
        count(s.failed),
        count(s.timed_out),
        count(s.cancelled),
        count(s.interrupted)
    );
}

/// The wall time and throughput, the warm-up, how far an open model run fell behind, and
/// what a lost instance cost it.
fn pace(out: &mut String, b: &Report) {
    let s = &b.summary;
    // Throughput is counted over the measured run: say which stretch that was when a warm-up
    // makes it shorter than the wall time.
    let measured = match (s.measured_ms, b.wall_ms) {
        (Some(m), Some(w)) if (w - m).abs() >= 1.0 => {
            format!(" over the {} ms after the warm-up", num(Some(m)))
        }
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        "  wall        {} ms   throughput {} tasks/s{measured}",
        num(b.wall_ms),
        num(Some(s.throughput_per_s))
    );
    if s.warmup_tasks > 0 {
        let _ = writeln!(
            out,
            "  warm-up     {} tasks, left out of every figure below",
            count(s.warmup_tasks)
        );
    }
    if let Some(late) = &s.late {
        let _ = writeln!(
            out,
            "  late        {} tasks started behind schedule (most by {} ms); latency counts from the intended start",
            count(late.count),
            num(Some(late.max_ms))
        );
    }
    // Said whether or not a threshold judges it: the load was not applied as asked.
    if let Some(lost) = &s.lost {
        let _ = writeln!(out, "  lost        {}", lost.words());
    }
    if let Some(needed) = s.late.as_ref().and_then(|l| l.concurrency_needed) {
        let _ = writeln!(
            out,
            "  hint        every slot was busy when tasks were due: this rate needs a concurrency of about {}",
            count(needed)
        );
    }
}

/// The percentiles of every task's duration, of the successes' and of time to first byte.
fn distributions(out: &mut String, s: &Figures) {
    for (name, p) in [
        ("duration", &s.duration_ms),
        ("succeeded", &s.duration_ms_succeeded),
        ("ttfb", &s.ttfb_ms),
    ] {
        if let Some(p) = p {
            let _ = writeln!(
                out,
                "  {name:<11} min {}  mean {}  p50 {}  p90 {}  p95 {}  p99 {}  p99.9 {}  max {} (ms)",
                num(Some(p.min)),
                num(Some(p.mean)),
                num(Some(p.p50)),
                num(Some(p.p90)),
                num(Some(p.p95)),
                num(Some(p.p99)),
                num(Some(p.p999)),
                num(Some(p.max))
            );
        }
    }
}

/// Where the HTTP requests' time went, and the connections they used.
fn network(out: &mut String, s: &Figures) {
    if let Some(phases) = &s.phases {
        // Where the time went, as k6 and browsers split it: p50 and p99 of each phase.
        let _ = writeln!(
            out,
            "  phases      p50 / p99 (ms), each over the requests that had it"
        );
        for (name, phase) in PHASES {
            if let Some(p) = phase(phases) {
                let _ = writeln!(
                    out,
                    "    {name:<9} {} / {}",
                    num(Some(p.p50)),
                    num(Some(p.p99))
                );
            }
        }
    }
    if let Some(c) = &s.connections {
        let _ = writeln!(
            out,
            "  connections {} opened, {} requests on kept ones",
            count(c.opened),
            count(c.reused)
        );
    }
}

/// A row of a part's figures after its first column: tasks, rate, p50, p95, errors.
fn part_figures(p: &Part) -> String {
    format!(
        "{:>8} {:>9} {:>9} {:>9} {:>7}",
        count(p.tasks),
        num(Some(p.throughput_per_s)),
        num(p.duration_ms.as_ref().map(|d| d.p50)),
        num(p.duration_ms.as_ref().map(|d| d.p95)),
        count(p.errors()),
    )
}

/// Each stage's figures, numbered from 1 as the page numbers them.
fn stages(out: &mut String, s: &Figures) {
    let Some(stages) = s.stages.as_ref().filter(|s| !s.is_empty()) else {
        return;
    };
    let _ = writeln!(
        out,
        "  stages      {:<13} {:>8} {:>9} {:>9} {:>9} {:>7}",
        "from-to (s)", "tasks", "per s", "p50 ms", "p95 ms", "errors"
    );
    for st in stages {
        let span = format!(
            "{}-{}",
            num(st.start_ms.map(|m| m / 1000.0)),
            num(st.end_ms.map(|m| m / 1000.0))
        );
        let number = st.index.unwrap_or_default() + 1;
        let _ = writeln!(out, "    {number:<2} {span:<21} {}", part_figures(st));
    }
}

/// Each job's figures, by its key.
fn by_job(out: &mut String, s: &Figures) {
    let Some(jobs) = s.by_job.as_ref().filter(|j| !j.is_empty()) else {
        return;
    };
    let _ = writeln!(
        out,
        "  by job      {:<16} {:>8} {:>9} {:>9} {:>9} {:>7}",
        "job", "tasks", "per s", "p50 ms", "p95 ms", "errors"
    );
    for (key, j) in jobs {
        let _ = writeln!(out, "    {key:<26} {}", part_figures(j));
    }
}

/// Each flow step's figures: its runs, its latency, how many failed and how many flows never
/// reached it.
fn by_step(out: &mut String, s: &Figures) {
    let Some(steps) = s.by_step.as_ref().filter(|j| !j.is_empty()) else {
        return;
    };
    let _ = writeln!(
        out,
        "  by step     {:<16} {:>8} {:>9} {:>9} {:>7} {:>8}",
        "flow/step", "ran", "p50 ms", "p95 ms", "failed", "skipped"
    );
    for (key, p) in steps {
        let _ = writeln!(
            out,
            "    {key:<26} {:>8} {:>9} {:>9} {:>7} {:>8}",
            count(p.tasks),
            num(p.duration_ms.as_ref().map(|d| d.p50)),
            num(p.duration_ms.as_ref().map(|d| d.p95)),
            count(p.failed + p.timed_out),
            count(p.skipped),
        );
    }
}

/// The HTTP statuses and error codes counted, the first message of each code, and what
/// failed the batch.
fn outcomes(out: &mut String, b: &Report) {
    let s = &b.summary;
    if !s.http_status.is_empty() {
        let _ = writeln!(out, "  statuses    {}", table(&s.http_status));
    }
    if !s.errors.is_empty() {
        let _ = writeln!(out, "  errors      {}", table(&s.errors));
        for line in first_errors(s) {
            let _ = writeln!(out, "    {line}");
        }
    }
    if let Some(hint) = refused_by_the_guard(s) {
        let _ = writeln!(out, "  hint        {hint}");
    }
    if let Some(e) = &b.error {
        let _ = writeln!(
            out,
            "  failed by   task {}: {} ({})",
            num(e.index.map(f64::from)),
            e.code,
            e.message
        );
    }
}

/// Counts by name on one line: `200: 3  503: 1`.
fn table(counts: &BTreeMap<String, u64>) -> String {
    let cells: Vec<String> = counts
        .iter()
        .map(|(k, v)| format!("{k}: {}", count(*v)))
        .collect();
    cells.join("  ")
}

/// Each threshold's check, or without thresholds whether every task succeeded.
fn verdict(out: &mut String, b: &Report) {
    let Some(v) = &b.verdict else {
        let _ = writeln!(
            out,
            "  result      {}",
            if b.passed() {
                "PASSED (every task succeeded)"
            } else {
                "FAILED (not every task succeeded)"
            }
        );
        return;
    };
    let _ = writeln!(
        out,
        "  verdict     {}",
        if v.passed { "PASSED" } else { "FAILED" }
    );
    for c in &v.checks {
        let op = match (is_minimum(c), c.passed) {
            (true, true) => ">=",
            (true, false) => "<",
            (false, true) => "<=",
            (false, false) => ">",
        };
        let detail = c
            .detail
            .as_deref()
            .map(|d| format!("  ({d})"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "    [{}] {:<20} {} {op} {}{detail}",
            if c.passed { "ok" } else { "FAIL" },
            c.name,
            num(c.actual),
            num(Some(c.limit))
        );
    }
    for w in &v.warnings {
        let _ = writeln!(out, "  warning     {}: {}", w.code, w.detail);
    }
}

/// The first message of each error code, a line each.
pub(super) fn first_errors(s: &Figures) -> Vec<String> {
    s.first_errors
        .iter()
        .map(|(code, message)| format!("{code} (first): {message}"))
        .collect()
}

/// When most tasks were refused by the guard, why and what to do: such a run measured
/// nothing of its target.
pub(super) fn refused_by_the_guard(s: &Figures) -> Option<String> {
    let refused = s.errors.get("forbidden").copied()?;
    let ended = s.tasks.saturating_sub(s.pending);
    if ended == 0 || refused * 2 < ended {
        return None;
    }
    let first = s
        .first_errors
        .get("forbidden")
        .map(String::as_str)
        .unwrap_or("refused by the outbound guard");
    Some(format!(
        "{} of {} tasks were refused by the outbound guard and measured nothing: {first}",
        count(refused),
        count(ended)
    ))
}

/// The duration percentiles as bars scaled to the longest.
fn latency_bars(out: &mut String, d: &Percentiles) {
    let _ = writeln!(out, "  latency");
    for (name, v) in [
        ("p50", d.p50),
        ("p90", d.p90),
        ("p95", d.p95),
        ("p99", d.p99),
        ("p99.9", d.p999),
        ("max", d.max),
    ] {
        let bar = "#".repeat(((v / d.max) * 40.0).round() as usize);
        let _ = writeln!(out, "    {name:>5} {v:>10.2} ms |{bar}");
    }
}

#[cfg(test)]
mod tests;
