//! An HTTP answer judged: its status against `expect_status`, then the job's checks, on either
//! path (general or lean) and either HTTP version.

use std::time::{Duration, Instant};

use http::{HeaderMap, StatusCode};

use super::Failure;
use crate::engine::check::{Answer, Judge, Judged};
use crate::engine::spec::{HttpJob, ResultsMode};
use crate::engine::task::{ErrorCode, HttpOutput, TaskError, TaskOutput, ms};
use crate::engine::template::{Template, Vars};

/// What the checks read of an answer, before its output is made (which may drop the body).
pub struct Received<'a> {
    pub status: StatusCode,
    /// `None` when they were not kept (no check reads them).
    pub headers: Option<&'a HeaderMap>,
    pub body: &'a [u8],
    pub truncated: bool,
    pub ttfb: Duration,
}

/// Judges the job's checks on an answer whose status `expect_status` accepts (`None` when the
/// job has no checks, or the status already failed it). What a check saw is kept for the
/// task's output only when `results` shows the task: every task with `all`, a failed one with
/// `errors` (judged again for its words, which only failed tasks pay).
pub fn judge(
    job: &HttpJob,
    got: &Received<'_>,
    started: Instant,
    seq: u64,
    results: ResultsMode,
) -> Option<Judged> {
    if job.checks.is_none() && job.captures.is_none() {
        return None;
    }
    if !job.expect_status.accepts(got.status.as_u16()) {
        return None;
    }
    // A flow's step may capture without checking anything.
    let none;
    let checks = match job.checks.as_deref() {
        Some(checks) => checks,
        None => {
            none = crate::engine::check::JobChecks::new(Vec::new());
            &none
        }
    };
    let none = HeaderMap::new();
    let judge = Judge::pruned(
        Answer {
            status: got.status.as_u16(),
            headers: got.headers.unwrap_or(&none),
            body: got.body,
            truncated: got.truncated,
            duration_ms: ms(started.elapsed()),
            ttfb_ms: Some(ms(got.ttfb)),
        },
        // A capture may read a path the checks do not: the whole body then.
        checks.keep.as_ref().filter(|_| job.captures.is_none()),
    );
    let render = |text: &str| render(job, text, seq);
    let mut judged = checks.judge(&judge, render, results.shows(false));
    if judged.failure.is_some() && !results.shows(false) && results.shows(true) {
        judged = checks.judge(&judge, render, true);
    }
    if judged.failure.is_none() {
        for capture in job.captures.iter().flat_map(|c| c.iter()) {
            match capture.take(&judge) {
                Ok(value) => judged.captured.push(value),
                Err(why) => {
                    judged.failure = Some(why);
                    break;
                }
            }
        }
    }
    Some(judged)
}

/// Whether `results` shows the task an answer ends: failed by its status or by a hard check.
pub fn shown(job: &HttpJob, results: ResultsMode, status: u16, judged: Option<&Judged>) -> bool {
    let failed = !job.expect_status.accepts(status) || judged.is_some_and(|j| j.failure.is_some());
    results.shows(failed)
}

/// A check's value with its placeholders filled in for task `seq` (`{{seq}}`, `{{data.COL}}`,
/// ...). Validation parsed and bound every one, so a value that does not parse here cannot
/// come; it would stay as written.
fn render(job: &HttpJob, text: &str, seq: u64) -> String {
    let Ok(Some(mut template)) = Template::parse(text) else {
        return text.to_owned();
    };
    let templates = job.templates.as_deref();
    let columns = templates
        .and_then(|t| t.data.as_deref())
        .map_or(&[][..], |d| &d.columns[..]);
    if template.bind(columns).is_err() {
        return text.to_owned();
    }
    let vars = templates.map_or(
        Vars {
            seq,
            ..Vars::default()
        },
        |t| t.vars(seq),
    );
    template.render_string(&vars, false)
}

/// The answer as the job's result: a failure when its status is not one `expect_status`
/// accepts (retried when it is a 5xx or a 429), or when a hard check failed (not retried: the
/// same request is expected to give the same wrong answer).
pub fn outcome(
    job: &HttpJob,
    mut out: HttpOutput,
    judged: Option<Judged>,
) -> Result<TaskOutput, Failure> {
    let status = out.status;
    if !job.expect_status.accepts(status) {
        return Err(Failure {
            error: TaskError::new(
                ErrorCode::Status,
                format!("status {status}, expected {}", job.expect_status.describe()),
            ),
            output: Some(Box::new(TaskOutput::Http(out))),
            retryable: status >= 500 || status == 429,
        });
    }
    let Some(judged) = judged else {
        return Ok(TaskOutput::Http(out));
    };
    if job.checks.is_some() {
        out.checks_passed = Some(judged.passed);
        out.checks = judged.results;
    }
    out.captured = judged.captured;
    match judged.failure {
        Some(message) => Err(Failure {
            error: TaskError::new(ErrorCode::Check, message),
            output: Some(Box::new(TaskOutput::Http(out))),
            retryable: false,
        }),
        None => Ok(TaskOutput::Http(out)),
    }
}
