//! What an exchange gives back, on either HTTP version: the target's response (its body
//! counted, and kept up to the job's cap when it will be shown), or a redirect the job follows.

use http::{HeaderMap, StatusCode};

use crate::engine::jobs::http::Hop;
use crate::engine::spec::HttpJob;

/// A redirect response's status and `Location`, which names a URL the job's own resolves.
pub(super) struct Redirect {
    status: StatusCode,
    location: Box<str>,
}

impl Redirect {
    /// `None` when the job does not follow redirects or `location` names no URL: the
    /// response is then the answer.
    pub(super) fn of(job: &HttpJob, status: StatusCode, location: &str) -> Option<Redirect> {
        (job.follow_redirects > 0 && status.is_redirection() && job.url.join(location).is_ok())
            .then(|| Redirect {
                status,
                location: location.into(),
            })
    }

    /// The request it asks for, from task `seq`'s rendered request: a relative `Location`
    /// resolves against the URL that was sent, and a 307 or 308 sends the same body again.
    pub(super) fn hop(&self, job: &HttpJob, seq: u64) -> Option<Hop> {
        Hop::rendered(job, seq).next(self.status, &self.location)
    }
}

/// The target's response, read.
pub(super) struct Response {
    pub(super) status: StatusCode,
    /// Kept when the response will be shown.
    pub(super) headers: Option<HeaderMap>,
    pub(super) body: Body,
    /// Read to its end, and the connection may carry the next request.
    pub(super) reusable: bool,
    pub(super) ttfb: std::time::Duration,
}

/// A response's body as it is read: counted, and kept up to the job's cap when it will be
/// shown.
pub(super) struct Body {
    pub(super) shown: bool,
    pub(super) cap: usize,
    pub(super) kept: Vec<u8>,
    pub(super) bytes: usize,
    pub(super) truncated: bool,
}

impl Body {
    /// An empty body, kept up to `cap` bytes if `shown`.
    pub(super) fn new(shown: bool, cap: usize) -> Body {
        Body {
            shown,
            cap,
            kept: Vec::new(),
            bytes: 0,
            truncated: false,
        }
    }

    /// Adds the next piece of the body; `false` once the body is longer than the cap.
    pub(super) fn append(&mut self, data: &[u8]) -> bool {
        let room = self.cap - self.bytes;
        if data.len() > room {
            if self.shown {
                self.kept.extend_from_slice(&data[..room]);
            }
            self.bytes = self.cap;
            self.truncated = true;
            return false;
        }
        self.bytes += data.len();
        if self.shown {
            self.kept.extend_from_slice(data);
        }
        true
    }
}
