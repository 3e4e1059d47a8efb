//! The job kinds as validated: what each runs (`http`, `sleep`, `file`, `flow`), an HTTP job's
//! TLS options and HTTP version, and which statuses count as success.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{JobSpec, ResultsMode};

#[derive(Debug, Clone)]
pub enum JobKind {
    /// Boxed: an HTTP job is much larger than the others, and a batch may hold 100,000 sleeps.
    Http(Box<HttpJob>),
    Sleep(SleepJob),
    File(Arc<FileJob>),
    /// Steps run one after another in one task, later ones using what earlier ones captured.
    Flow(Arc<FlowJob>),
}

/// The `kind` names of the job kinds, as they appear in requests and results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Http,
    Sleep,
    File,
    Flow,
}

impl JobKind {
    pub fn kind(&self) -> Kind {
        match self {
            JobKind::Http(_) => Kind::Http,
            JobKind::Sleep(_) => Kind::Sleep,
            JobKind::File(_) => Kind::File,
            JobKind::Flow(_) => Kind::Flow,
        }
    }
}

#[derive(Debug, Clone)]
pub struct HttpJob {
    pub method: http::Method,
    pub url: url::Url,
    /// What connections to the URL are keyed by: scheme, `host:port`, and (for `https`) the
    /// job's TLS options, so that jobs whose connections differ never share one.
    pub origin: String,
    pub headers: http::HeaderMap,
    pub body: bytes::Bytes,
    pub expect_status: ExpectStatus,
    pub max_response_bytes: u64,
    pub follow_redirects: u32,
    pub tls: TlsOptions,
    pub version: HttpVersion,
    /// `false`: a new connection for every request.
    pub keep_alive: bool,
    /// Placeholders in its URL's path and query, header values or body, rendered per task.
    pub templates: Option<Arc<crate::engine::template::HttpTemplates>>,
    /// What its answer must be (`checks`), judged after `expect_status` passed.
    pub checks: Option<Arc<crate::engine::check::JobChecks>>,
    /// A flow's step: what it keeps of its answer for the steps after it (`capture`), taken
    /// after its checks passed, in the order of the flow's captures.
    pub captures: Option<Arc<[crate::engine::check::capture::Capture]>>,
    /// A step of a flow with `cookies`: its answer's `Set-Cookie` values go to the task's jar.
    pub cookies: bool,
}

impl HttpJob {
    /// Whether an answer with `status` is kept whole (headers and body) as it is read: when
    /// `results` would show it as it stands, or when the job's checks read either.
    pub fn keeps_answer(&self, results: ResultsMode, status: u16) -> bool {
        let accepted = self.expect_status.accepts(status);
        results.shows(!accepted)
            || (accepted
                && self
                    .checks
                    .as_ref()
                    .is_some_and(|c| c.needs_headers || c.needs_body))
    }

    /// The URL up to its path, as the job wrote it: `scheme://host[:port]`.
    pub fn origin_prefix(&self) -> String {
        let u = &self.url;
        match u.port() {
            Some(p) => format!("{}://{}:{p}", u.scheme(), u.host_str().unwrap_or_default()),
            None => format!("{}://{}", u.scheme(), u.host_str().unwrap_or_default()),
        }
    }
}

/// A job's TLS options (`tls`), checked: `insecure` only where the server allows it, the
/// client certificate's paths relative to the files root.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsOptions {
    /// Skip the certificate checks.
    pub insecure: bool,
    /// PEM certificate chain and key for mutual TLS, beneath the files root.
    pub client_cert: Option<ClientCert>,
    /// Sent as SNI and checked against the certificate instead of the URL's host.
    pub server_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientCert {
    pub cert: String,
    pub key: String,
}

/// `http_version`: which HTTP a job speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, ToSchema)]
pub enum HttpVersion {
    /// HTTP/2 when the server offers it in the TLS handshake (ALPN), else HTTP/1.1; plain
    /// `http` is HTTP/1.1.
    #[default]
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = "1.1")]
    Http1,
    /// ALPN `h2` on `https`; prior knowledge (h2c) on `http`.
    #[serde(rename = "2")]
    Http2,
}

#[derive(Debug, Clone, Copy)]
pub struct SleepJob {
    pub duration: Duration,
    /// Think time: each task sleeps a uniformly random time from `duration` to this.
    pub max: Option<Duration>,
}

impl SleepJob {
    /// How long one task sleeps: `duration`, or a uniformly random time up to `max`.
    pub fn pick(&self) -> Duration {
        match self.max {
            Some(max) if max > self.duration => {
                let span = (max - self.duration).as_micros() as u64;
                self.duration + Duration::from_micros(rand::random_range(0..=span))
            }
            _ => self.duration,
        }
    }

    /// The longest one task sleeps.
    pub fn longest(&self) -> Duration {
        self.max.unwrap_or(self.duration).max(self.duration)
    }
}

/// A flow: its steps (`http`, `sleep` or `file` jobs), run in order in one task; the first
/// that fails ends it.
#[derive(Debug, Clone)]
pub struct FlowJob {
    pub steps: Vec<JobSpec>,
    /// A cookie jar of the task's own, carried across its steps (RFC 6265, `cookie_store`).
    pub cookies: bool,
}

#[derive(Debug, Clone)]
pub struct FileJob {
    /// Relative to the files root; the file guard still resolves it beneath the root.
    pub path: String,
    pub max_bytes: u64,
    pub encoding: FileEncoding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileEncoding {
    /// The content as text (`content`), when it is valid UTF-8; otherwise the job fails `invalid`.
    #[default]
    Utf8,
    /// The content as base64 (`content`).
    Base64,
    /// Size and SHA-256 only.
    None,
}

/// Which HTTP statuses count as success. Default: 200–399, as k6 counts failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectStatus {
    Any,
    /// Inclusive ranges; a code like `404` is `404..=404`, a class like `"2xx"` is `200..=299`.
    Ranges(Vec<(u16, u16)>),
}

impl Default for ExpectStatus {
    fn default() -> Self {
        ExpectStatus::Ranges(vec![(200, 399)])
    }
}

impl ExpectStatus {
    pub fn accepts(&self, status: u16) -> bool {
        match self {
            ExpectStatus::Any => true,
            ExpectStatus::Ranges(ranges) => {
                ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&status))
            }
        }
    }

    /// For messages: `200-399`, `201, 4xx`.
    pub fn describe(&self) -> String {
        match self {
            ExpectStatus::Any => "any".to_owned(),
            ExpectStatus::Ranges(ranges) => ranges
                .iter()
                .map(|&(lo, hi)| {
                    if lo == hi {
                        lo.to_string()
                    } else if lo % 100 == 0 && hi == lo + 99 {
                        format!("{}xx", lo / 100)
                    } else {
                        format!("{lo}-{hi}")
                    }
                })
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}
