//! The `serve` options. Every flag has a `FANOUT_*` environment twin; lists are comma-separated
//! there.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use std::sync::Arc;

use crate::engine::EngineConfig;
use crate::engine::jobs::Trust;
use crate::engine::meter::Meter;
use crate::guard::NetGuard;
use crate::request::Limits;
use crate::service::Role;
use crate::store::SqliteSync;

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address and port to listen on.
    #[arg(long, env = "FANOUT_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Where batches are kept: `sqlite://FILE` (created if missing), `postgres://...` (several
    /// instances may share one), or `memory://` (nothing kept after exit).
    #[arg(
        long,
        env = "FANOUT_DATABASE_URL",
        default_value = "sqlite://fanout.db"
    )]
    pub database_url: String,

    /// SQLite durability: `normal` (a commit survives a process crash) or `full` (it also
    /// survives a power loss, at some cost per commit).
    #[arg(long, env = "FANOUT_SQLITE_SYNC", value_enum, default_value_t = SqliteSync::Normal)]
    pub sqlite_sync: SqliteSync,

    /// Delete finished batches older than this (e.g. `7d`, `12h`); default: keep them.
    #[arg(long, env = "FANOUT_RETENTION", value_parser = parse_duration)]
    pub retention: Option<Duration>,

    /// The lease on a running shard: renewed every third of it while its instance lives; once
    /// it runs out, another instance claims the shard again (or ends it, as `on_lost` says).
    #[arg(long, env = "FANOUT_STALE_AFTER", default_value = "30s", value_parser = parse_stale_after)]
    pub stale_after: Duration,

    /// What this instance does: `all` (accepts and runs batches), `api` (accepts, reads,
    /// lists and cancels them, runs none) or `worker` (claims and runs shards; serves only
    /// /healthz, /readyz and /metrics).
    #[arg(long, env = "FANOUT_ROLE", value_enum, default_value_t = Role::All)]
    pub role: Role,

    /// On PostgreSQL, a load run of more tasks than this is cut into shards that any
    /// instance with the worker role may claim.
    #[arg(long, env = "FANOUT_SHARD_SIZE", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub shard_size: u64,

    /// Folder that `file` jobs read from; nothing outside it is readable.
    #[arg(long, env = "FANOUT_FILES_ROOT", default_value = "./files")]
    pub files_root: PathBuf,

    /// What HTTP jobs may reach besides public addresses (repeatable): a CIDR (`10.0.0.0/8`),
    /// an address (`127.0.0.1`), an address and port (`127.0.0.1:3000`), or a host name with or
    /// without a port (`localhost:3000`). Everything else that is not public is refused.
    #[arg(long, env = "FANOUT_ALLOW_NET", value_delimiter = ',')]
    pub allow_net: Vec<String>,

    /// PEM file of CA certificates that HTTPS jobs trust besides the platform's roots
    /// (repeatable).
    #[arg(long, env = "FANOUT_CA_FILE", value_delimiter = ',')]
    pub ca_file: Vec<PathBuf>,

    /// Let jobs set `tls.insecure` (skip certificate checks); without it such a job is a 422.
    #[arg(long, env = "FANOUT_ALLOW_INSECURE_TLS")]
    pub allow_insecure_tls: bool,

    /// Most tasks one batch may hold; larger batches get 413.
    #[arg(long, env = "FANOUT_MAX_JOBS", default_value_t = 100_000)]
    pub max_jobs: usize,

    /// Jobs in flight across all batches; a batch's `concurrency` is clamped to it.
    #[arg(long, env = "FANOUT_MAX_CONCURRENCY", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrency: u32,

    /// Tasks that may wait for a slot server-wide, beyond those running; a batch that would
    /// exceed it gets 429 with Retry-After.
    #[arg(long, env = "FANOUT_MAX_QUEUE", default_value_t = 100_000)]
    pub max_queue: usize,

    /// Longest a job attempt may run: the default `timeout_ms` of every job, and its upper
    /// bound (a larger `timeout_ms` is a 422).
    #[arg(long, env = "FANOUT_MAX_JOB_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub max_job_timeout: Duration,

    /// Longest a batch may run; what still runs then ends `timed_out` (a larger `timeout_ms`
    /// is a 422).
    #[arg(long, env = "FANOUT_MAX_BATCH_DURATION", default_value = "1h", value_parser = parse_duration)]
    pub max_batch_duration: Duration,

    /// Largest request body accepted, in bytes; larger bodies get 413.
    #[arg(long, env = "FANOUT_MAX_BODY_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Most response body bytes an HTTP job keeps (its `max_response_bytes` is capped to it).
    #[arg(long, env = "FANOUT_MAX_RESPONSE_BYTES", default_value_t = 1024 * 1024)]
    pub max_response_bytes: u64,

    /// Most bytes a file job reads (its `max_bytes` is capped to it).
    #[arg(long, env = "FANOUT_MAX_FILE_BYTES", default_value_t = 1024 * 1024)]
    pub max_file_bytes: u64,

    /// Bearer token required on every batch endpoint (repeatable). Without one, anyone who can
    /// reach the listener can run jobs.
    #[arg(
        long,
        env = "FANOUT_API_TOKEN",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_token: Vec<String>,

    /// A file of accepted tokens as SHA-256 hex digests, one per line (`#` starts a comment),
    /// so the tokens themselves need not be stored on the server.
    #[arg(long, env = "FANOUT_API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,

    /// Bearer token for `GET /metrics` (open without one, whatever `--api-token` says).
    #[arg(long, env = "FANOUT_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,

    /// Name of this instance in logs and stored rows (default: host name and listen address).
    #[arg(long, env = "FANOUT_INSTANCE_ID")]
    pub instance_id: Option<String>,

    /// Log line format.
    #[arg(long, env = "FANOUT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,

    /// On SIGTERM or Ctrl-C, how long running batches may go on before they are interrupted.
    #[arg(long, env = "FANOUT_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

impl Config {
    /// The defaults, as `fanout serve` with no flags and no `FANOUT_*` variables would use
    /// them: the flags' own defaults, read from their declarations above.
    pub fn defaults() -> Config {
        use clap::{Args as _, FromArgMatches as _};
        let command = Config::augment_args(clap::Command::new("fanout"))
            .mut_args(|arg| arg.env(None::<&'static str>));
        let matches = command
            .try_get_matches_from(["fanout"])
            .expect("every flag's default parses");
        Config::from_arg_matches(&matches).expect("every flag's default parses")
    }

    /// The limits requests are checked and clamped against.
    pub fn limits(&self) -> Limits {
        Limits {
            max_body_bytes: self.max_body_bytes,
            max_jobs: self.max_jobs,
            max_concurrency: self.max_concurrency as usize,
            max_response_bytes: self.max_response_bytes,
            max_file_bytes: self.max_file_bytes,
            max_job_timeout: self.max_job_timeout,
            max_batch_duration: self.max_batch_duration,
            allow_insecure_tls: self.allow_insecure_tls,
            files_root: Some(self.files_root.clone()),
        }
    }

    /// What the engine needs of these settings, with the guard HTTP jobs go through and the
    /// meter batches report to.
    pub fn engine(
        &self,
        guard: NetGuard,
        trust: Arc<Trust>,
        meter: &'static dyn Meter,
    ) -> EngineConfig {
        EngineConfig {
            trust,
            general_client: false,
            max_concurrency: self.max_concurrency as usize,
            max_queue: self.max_queue,
            max_batch_duration: self.max_batch_duration,
            files_root: self.files_root.clone(),
            guard,
            meter,
        }
    }

    pub fn instance_id(&self) -> String {
        self.instance_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "localhost".into());
            format!("{host}:{}", self.listen.port())
        })
    }
}

/// `--stale-after`: a duration of at least 300 ms (a third of it is the heartbeat).
fn parse_stale_after(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(300) {
        return Err("must be at least 300ms (its third is the heartbeat)".into());
    }
    Ok(d)
}

/// `500ms`, `10s`, `5m`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("not a duration: {s:?} (try 10s, 500ms, 5m)"))?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        "d" => Duration::from_secs(n * 86_400),
        _ => return Err(format!("unknown unit in {s:?}: use ms, s, m, h or d")),
    };
    Ok(d)
}
