//! The job kinds, one module each, behind one entry point: [`run_once`] runs a single attempt.

mod file;
pub mod http;
pub(crate) mod judging;
pub mod lean;
mod sleep;
pub mod tls;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::spec::JobKind;
use super::task::{ErrorCode, PhaseClock, TaskError, TaskOutput};
use crate::guard::NetGuard;
pub use tls::Trust;

/// What every job may use: the general HTTP clients, the outbound guard, the roots TLS
/// trusts, and the files root.
pub struct JobContext {
    http: http::Clients,
    pub guard: NetGuard,
    pub trust: Arc<Trust>,
    pub files: Arc<FilesRoot>,
}

impl JobContext {
    pub fn new(files_root: &Path, guard: NetGuard, trust: Arc<Trust>) -> JobContext {
        JobContext {
            http: http::Clients::new(&guard, trust.clone()),
            guard,
            trust,
            files: Arc::new(FilesRoot {
                path: files_root.to_owned(),
                dir: OnceLock::new(),
            }),
        }
    }

    pub fn has_files_root(&self) -> bool {
        self.files.dir().is_ok()
    }
}

/// The folder `file` jobs read from, opened on first use, so that one created after start-up
/// is found without a restart.
pub struct FilesRoot {
    path: PathBuf,
    dir: OnceLock<cap_std::fs::Dir>,
}

impl FilesRoot {
    fn dir(&self) -> Result<&cap_std::fs::Dir, Failure> {
        if let Some(dir) = self.dir.get() {
            return Ok(dir);
        }
        match cap_std::fs::Dir::open_ambient_dir(&self.path, cap_std::ambient_authority()) {
            Ok(dir) => Ok(self.dir.get_or_init(|| dir)),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                Err(Failure::new(
                    ErrorCode::NotFound,
                    format!(
                        "the files root {} does not exist: create that folder (or start the \
                     server with --files-root naming one)",
                        self.path.display()
                    ),
                ))
            }
            Err(e) => Err(Failure::new(
                ErrorCode::Io,
                format!("cannot open the files root {}: {e}", self.path.display()),
            )),
        }
    }
}

/// How one attempt failed.
#[derive(Debug)]
pub struct Failure {
    pub error: TaskError,
    /// What the job did produce, e.g. the HTTP answer whose status was not expected.
    pub output: Option<Box<TaskOutput>>,
    /// Connect errors, timeouts, and HTTP 5xx or 429 answers are worth another attempt.
    pub retryable: bool,
}

impl Failure {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Failure {
        let retryable = matches!(code, ErrorCode::Connect | ErrorCode::Timeout);
        Failure {
            error: TaskError::new(code, message),
            output: None,
            retryable,
        }
    }

    pub fn timeout(limit: Duration) -> Failure {
        Failure::new(
            ErrorCode::Timeout,
            format!(
                "no answer within the job's timeout of {} ms",
                limit.as_millis()
            ),
        )
    }
}

/// What a flow's step sends with besides the task's number: what its earlier steps captured
/// (its placeholders name them) and the `Cookie` header the task's jar holds for it.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlowState<'a> {
    pub captures: &'a [String],
    pub cookie: Option<&'a str>,
}

/// Runs one attempt of a job, begun at `started`; HTTP requests take the batch's lean path
/// (`lean` is there when the job is sent on it), whose phases are timed on `clock`.
pub async fn run_once(
    ctx: &JobContext,
    kind: &JobKind,
    lean: Option<lean::Lean<'_>>,
    started: Instant,
    clock: &mut PhaseClock,
    (seq, flow): (u64, FlowState<'_>),
) -> Result<TaskOutput, Failure> {
    match (kind, lean) {
        (JobKind::Http(job), Some(lean)) => {
            clock.measured = true;
            lean::run(lean, ctx, job, started, clock, seq).await
        }
        // Boxed: the general path's future is large, and every task's future would be as
        // large as the largest arm (and copied whole as it is set up), lean ones included.
        (JobKind::Http(job), None) => {
            let mut hop = http::Hop::rendered_with(job, seq, flow.captures);
            if let Some(cookie) = flow.cookie {
                hop.add_cookie(cookie);
            }
            Box::pin(http::run(&ctx.http, &ctx.files, job, hop, (started, seq))).await
        }
        (JobKind::Sleep(job), _) => Ok(sleep::run(job).await),
        (JobKind::File(job), _) => file::run(ctx.files.dir(), job).await,
        // A flow runs its steps one by one (`run::flow`), each an attempt of its own.
        (JobKind::Flow(_), _) => Err(Failure::new(
            ErrorCode::Invalid,
            "a flow is run by its steps, not as one attempt",
        )),
    }
}
