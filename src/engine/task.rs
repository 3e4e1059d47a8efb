//! What a task is while it runs and after it ends: statuses, outputs, errors and timings, in the
//! shape the API reports them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, Serializer};
use utoipa::ToSchema;

use super::spec::Kind;

/// A task's status. `pending`: waiting for a concurrency slot; `running`: started, not ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
    Interrupted,
}

impl TaskStatus {
    /// The statuses a task can end with.
    pub const ENDED: [TaskStatus; 5] = [
        TaskStatus::Succeeded,
        TaskStatus::Failed,
        TaskStatus::TimedOut,
        TaskStatus::Cancelled,
        TaskStatus::Interrupted,
    ];

    pub fn is_finished(self) -> bool {
        !matches!(self, TaskStatus::Pending | TaskStatus::Running)
    }

    /// A failure in `asyncio.gather`'s sense: the job raised (or timed out).
    pub fn is_failure(self) -> bool {
        matches!(self, TaskStatus::Failed | TaskStatus::TimedOut)
    }
}

/// The stable machine-readable reason a task did not succeed.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The attempt (or, in gather mode, the batch deadline) ran out of time.
    Timeout,
    /// The connection could not be made or broke.
    Connect,
    /// The host name did not resolve.
    Dns,
    /// The TLS handshake or certificate check failed.
    Tls,
    /// The HTTP answer's status is outside `expect_status`.
    Status,
    /// A check on the answer failed (`checks`); not retried.
    Check,
    /// Reading failed for another reason.
    Io,
    /// The file does not exist.
    NotFound,
    /// Refused by a guard: outside the files root, or an address the policy does not allow.
    Forbidden,
    /// The target is not what the job can read (not a regular file, not UTF-8, ...).
    Invalid,
    /// Cancelled before it ended (fail_fast, wait's `on_timeout: cancel`, DELETE).
    Cancelled,
    /// The process running the task stopped while it ran.
    Interrupted,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Timeout => "timeout",
            ErrorCode::Connect => "connect",
            ErrorCode::Dns => "dns",
            ErrorCode::Tls => "tls",
            ErrorCode::Status => "status",
            ErrorCode::Check => "check",
            ErrorCode::Io => "io",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Invalid => "invalid",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::Interrupted => "interrupted",
        }
    }
}

/// How a failed dial's message starts, on either HTTP path.
pub const CONNECTING: &str = "connecting to ";

/// Why a task did not succeed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskError {
    pub code: ErrorCode,
    /// For people; not stable.
    pub message: String,
    /// A flow: the step that failed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<StepRef>,
}

/// A flow's step, by its place and its `id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StepRef {
    pub index: u32,
    pub id: Option<String>,
}

impl TaskError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        TaskError {
            code,
            message: message.into(),
            step: None,
        }
    }

    /// Whether the task reached its target before it failed: one refused by a guard, whose
    /// name did not resolve, or whose connection could not be made did not; one whose
    /// connection broke once made did (an overloaded target resets connections).
    pub fn reached_target(&self) -> bool {
        match self.code {
            ErrorCode::Forbidden | ErrorCode::Dns => false,
            // Both HTTP paths word a failed dial so: "connecting to HOST:PORT: ...".
            ErrorCode::Connect => !self.message.starts_with(CONNECTING),
            _ => true,
        }
    }
}

/// What a job produced, by kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum TaskOutput {
    Http(HttpOutput),
    Sleep(SleepOutput),
    File(FileOutput),
    Flow(FlowOutput),
}

/// What a flow's steps did, in order: those after the first that failed are `skipped`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FlowOutput {
    pub steps: Vec<StepResult>,
    /// What `summary.by_step` calls the flow: its `id`, else its place in `jobs`.
    #[serde(default)]
    pub flow: String,
}

impl FlowOutput {
    /// A step's key in `summary.by_step`: `FLOW/STEP`, each its `id`, else its place.
    pub fn step_key(&self, step: &StepResult) -> String {
        match &step.id {
            Some(id) => format!("{}/{id}", self.flow),
            None => format!("{}/{}", self.flow, step.index),
        }
    }
}

/// One step of a flow: how it ended, its attempts, its answer and its time. Captured values
/// are in its answer only (never in the summary, logs or metrics).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StepResult {
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub kind: Kind,
    pub status: StepStatus,
    pub attempts: u32,
    /// The step's own output (an `http`, `sleep` or `file` job's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub output: Option<Box<TaskOutput>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<TaskError>,
    /// From its start to its end, its attempts and backoff included; null when skipped.
    pub duration_ms: Option<f64>,
    /// What its `capture` took, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub captured: BTreeMap<String, String>,
}

/// How a flow's step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Succeeded,
    Failed,
    TimedOut,
    /// An earlier step failed: it did not run.
    Skipped,
}

/// The answer to an `http` job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HttpOutput {
    pub status: u16,
    /// Response headers; repeated headers are joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// The body as text, when it is UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The body in base64, when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    /// Body bytes read (at most `max_response_bytes`).
    pub bytes: u64,
    /// True when `max_response_bytes` cut the body. Not an error.
    pub truncated: bool,
    /// From the start of the last attempt to the response headers.
    pub ttfb_ms: f64,
    /// The HTTP version the answer came in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<HttpVersionName>,
    /// Each of the job's checks, judged (in the job's order): when the job has checks and the
    /// status was one `expect_status` accepts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<crate::engine::check::CheckResult>,
    /// Which of the job's checks passed, one bit each (check `i`: bit `i`), for the summary's
    /// counts; `None` when none was judged. Never shown: `checks` says it.
    #[serde(skip)]
    #[schema(ignore)]
    pub checks_passed: Option<u32>,
    /// A flow's step: what its `capture` took, in order, for the steps after it. Never shown
    /// (captured values appear in no answer but the step's own body).
    #[serde(skip)]
    #[schema(ignore)]
    pub captured: Vec<String>,
    /// A flow's step with cookies: the answer's `Set-Cookie` values, for the task's jar.
    #[serde(skip)]
    #[schema(ignore)]
    pub set_cookies: Vec<String>,
}

/// An answer's HTTP version, as `output.version` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum HttpVersionName {
    #[serde(rename = "HTTP/1.0")]
    Http10,
    #[serde(rename = "HTTP/1.1")]
    Http1,
    #[serde(rename = "HTTP/2")]
    Http2,
}

impl HttpVersionName {
    pub fn of(v: http::Version) -> Option<HttpVersionName> {
        match v {
            http::Version::HTTP_10 => Some(HttpVersionName::Http10),
            http::Version::HTTP_11 => Some(HttpVersionName::Http1),
            http::Version::HTTP_2 => Some(HttpVersionName::Http2),
            _ => None,
        }
    }
}

/// The answer to a `sleep` job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SleepOutput {
    /// Measured; never less than `duration_ms`.
    pub slept_ms: f64,
}

/// The answer to a `file` job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FileOutput {
    /// Bytes read (at most `max_bytes`).
    pub bytes: u64,
    /// SHA-256 of the bytes read, hex.
    pub sha256: String,
    /// The bytes read as text (`utf8`) or base64 (`base64`); absent with `encoding: none`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// True when the file is longer than `max_bytes`. Not an error.
    pub truncated: bool,
}

/// One task's result, as every answer reports it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskRecord {
    /// The task's number: its position in `jobs`, or in a load run, the repetition (task `i`
    /// runs job `i % jobs.len()`).
    pub index: u32,
    /// The job's `id`, echoed back.
    pub id: Option<String>,
    pub kind: Kind,
    pub status: TaskStatus,
    /// Attempts made (1 + retries used); 0 when the task never started.
    pub attempts: u32,
    /// Order of completion within the batch, from 1; null until the task ends.
    pub seq: Option<u32>,
    /// Present when the job produced an answer; with `error.code: "status"` both are present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<TaskOutput>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<TaskError>,
    pub timing: Timing,
    /// Started during the load run's warm-up: left out of the summary and the verdict.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub warmup: bool,
}

impl TaskRecord {
    /// A task that has not started.
    /// Ends it `interrupted` unless it had ended: what a task that had not ended when the
    /// process stopped reads as.
    pub fn interrupt(&mut self) {
        if !self.status.is_finished() {
            self.status = TaskStatus::Interrupted;
            self.error = Some(TaskError::new(
                ErrorCode::Interrupted,
                "the process running it stopped while it ran",
            ));
        }
    }

    pub fn pending(index: u32, id: Option<String>, kind: Kind) -> TaskRecord {
        TaskRecord {
            index,
            id,
            kind,
            status: TaskStatus::Pending,
            attempts: 0,
            seq: None,
            output: None,
            error: None,
            timing: Timing::default(),
            warmup: false,
        }
    }
}

/// When a task waited, started and ended.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Timing {
    /// From the batch's start to this task's start: time spent waiting for a slot.
    pub queued_ms: Option<f64>,
    #[serde(serialize_with = "micros_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "micros_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<DateTime<Utc>>,
    /// From start to end, all attempts and backoff included.
    pub duration_ms: Option<f64>,
    /// HTTP jobs sent on fanout's own connections: where the last attempt's time went.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phases: Option<Phases>,
    /// HTTP jobs: whether the last attempt went on a connection already open (then
    /// `dns_ms`, `connect_ms` and `tls_ms` are 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reused: Option<bool>,
}

/// Where an HTTP request's time went, in order; together they make up its attempt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Phases {
    /// Looking the host name up (through the guard), waiting for a lookup already under way
    /// included.
    pub dns_ms: f64,
    /// Opening the TCP connection.
    pub connect_ms: f64,
    /// The TLS handshake.
    pub tls_ms: f64,
    /// Writing the request (on HTTP/2, waiting for the server to allow another stream too).
    pub send_ms: f64,
    /// From the request's last byte to the answer's first.
    pub wait_ms: f64,
    /// From the answer's first byte to its last.
    pub receive_ms: f64,
}

/// A task's phases as storage keeps them.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct StoredNet {
    pub phases: Phases,
    pub reused: bool,
}

/// An HTTP attempt's phases as they are measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetTiming {
    /// dns, connect, tls, send, wait, receive, in microseconds (small: every load run
    /// request's outcome carries them).
    pub phases: [u32; 6],
    /// Whether the request went on a connection already open.
    pub reused: bool,
}

impl NetTiming {
    pub const DNS: usize = 0;
    pub const CONNECT: usize = 1;
    pub const TLS: usize = 2;
    pub const SEND: usize = 3;
    pub const WAIT: usize = 4;
    pub const RECEIVE: usize = 5;
    pub const NAMES: [&'static str; 6] = [
        "dns_ms",
        "connect_ms",
        "tls_ms",
        "send_ms",
        "wait_ms",
        "receive_ms",
    ];

    pub fn phases(&self) -> Phases {
        let [dns, connect, tls, send, wait, receive] = self.phases.map(|us| f64::from(us) / 1000.0);
        Phases {
            dns_ms: dns,
            connect_ms: connect,
            tls_ms: tls,
            send_ms: send,
            wait_ms: wait,
            receive_ms: receive,
        }
    }

    pub fn from_phases(p: &Phases, reused: bool) -> NetTiming {
        let d = |v: f64| (v.max(0.0) * 1000.0).round() as u32;
        NetTiming {
            phases: [
                d(p.dns_ms),
                d(p.connect_ms),
                d(p.tls_ms),
                d(p.send_ms),
                d(p.wait_ms),
                d(p.receive_ms),
            ],
            reused,
        }
    }
}

/// Times the phases of one HTTP attempt as it goes: each mark ends the phase it names and
/// starts the next.
#[derive(Debug, Clone, Copy)]
pub struct PhaseClock {
    pub timing: NetTiming,
    /// Whether the attempt went on fanout's own connections, whose phases are timed (the
    /// general client's are not).
    pub measured: bool,
    last: std::time::Instant,
}

impl PhaseClock {
    pub fn start(at: std::time::Instant) -> PhaseClock {
        PhaseClock {
            timing: NetTiming::default(),
            measured: false,
            last: at,
        }
    }

    /// Ends phase `phase` now; its time adds to what it had. Returns the time read, for
    /// whoever needs it too.
    pub fn mark(&mut self, phase: usize) -> std::time::Instant {
        let now = std::time::Instant::now();
        let us = now.saturating_duration_since(self.last).as_micros();
        let slot = &mut self.timing.phases[phase];
        *slot = slot.saturating_add(u32::try_from(us).unwrap_or(u32::MAX));
        self.last = now;
        now
    }
}

/// RFC 3339 with microseconds (`2026-11-25T13:18:51.365214Z`): enough to show which tasks
/// overlapped. Written digit by digit: a 100,000-task answer holds 200,000 of these, and
/// chrono's format strings made them a visible share of the answer time. Fixed width, so the
/// text sorts as the time does (storage relies on that).
pub fn format_micros(t: &DateTime<Utc>) -> String {
    use chrono::{Datelike, Timelike};
    let mut buf = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut v: u32| {
        for i in (at..at + width).rev() {
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, t.year().clamp(0, 9999) as u32);
    put(5, 2, t.month());
    put(8, 2, t.day());
    put(11, 2, t.hour());
    put(14, 2, t.minute());
    put(17, 2, t.second());
    put(20, 6, t.timestamp_subsec_micros().min(999_999));
    String::from_utf8(buf.to_vec()).expect("ASCII digits")
}

pub fn micros<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_micros(t))
}

pub fn micros_opt<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => micros(t, s),
        None => s.serialize_none(),
    }
}

/// Milliseconds with microsecond resolution, the unit every `_ms` field uses.
pub fn ms(d: std::time::Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_with_microseconds() {
        let t: DateTime<Utc> = "2026-01-05T03:04:05.000789Z".parse().unwrap();
        let json = serde_json::to_string(&Timing {
            started_at: Some(t),
            ..Default::default()
        })
        .unwrap();
        assert!(json.contains("\"2026-01-05T03:04:05.000789Z\""), "{json}");
        let formatted = t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
        assert!(json.contains(&formatted));
    }
}
