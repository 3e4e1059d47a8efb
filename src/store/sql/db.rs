//! The database: connecting (one pool for the writer and reads, one for leases and claims),
//! the schema's migrations, SQLite's one-process lock, and how values are stored as text.
//! The statements live with what they do: `write` (the writer's turns), `read` (batches read
//! back), `shards` (claims, leases, the rescuer).

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use sqlx::any::{AnyPoolOptions, AnyRow};
// Dynamic SQL here is built from constants and numbered placeholders only; values are bound.
use sqlx::{AnyPool, AssertSqlSafe, Executor, Row};
use uuid::Uuid;

use crate::engine::task::format_micros;
use crate::store::StoreError;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How hard SQLite should try to keep a commit across a power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SqliteSync {
    /// WAL with `synchronous=NORMAL`: a commit survives a crash of the process; the last
    /// commits before a power loss may be lost.
    Normal,
    /// WAL with `synchronous=FULL`: every commit is on disk before the answer.
    Full,
}

pub struct SqlDb {
    pub(super) pool: AnyPool,
    /// A pool of its own for leases, claims and the rescuer, so that the writer's
    /// transactions cannot starve a lease renewal of a connection.
    pub(super) control: AnyPool,
    pub(super) backend: &'static str,
    /// SQLite: the file is this process's alone while it runs (see [`hold_file`]).
    _held: Option<std::fs::File>,
}

/// An SQLite file is one process's: a second `serve` on it would recover (interrupt or rerun)
/// the first one's running work as if it were left over. An advisory lock on the file says
/// who has it; the system drops it when the process ends, however it ends.
async fn hold_file(url: &str) -> Result<Option<std::fs::File>, StoreError> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(None);
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .open(path)
        .map_err(|e| StoreError::Setup(format!("cannot open {path}: {e}")))?;
    // A process that is stopping (or an instance restarted in the same process) lets go
    // within moments: wait that long before refusing.
    let mut tries = 0;
    loop {
        match file.try_lock() {
            Err(std::fs::TryLockError::WouldBlock) if tries < 30 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => break lock_outcome(other, file, path),
        }
    }
}

fn lock_outcome(
    outcome: Result<(), std::fs::TryLockError>,
    file: std::fs::File,
    path: &str,
) -> Result<Option<std::fs::File>, StoreError> {
    match outcome {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Setup(format!(
            "{path} is in use by another fanout process: an SQLite file belongs to one instance \
             (stop the other one, give this one another --database-url, or share work on PostgreSQL)"
        ))),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(StoreError::Setup(format!("cannot lock {path}: {e}")))
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match e {
            E::RowNotFound => StoreError::Missing("row".into()),
            E::ColumnDecode { .. }
            | E::Decode(_)
            | E::ColumnNotFound(_)
            | E::TypeNotFound { .. } => StoreError::Corrupt(e.to_string()),
            E::Configuration(_) | E::Migrate(_) => StoreError::Setup(e.to_string()),
            // The connection, the pool, the protocol or the statement: the database may
            // answer the same call later.
            _ => StoreError::Unavailable(e.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Setup(format!("migrations: {e}"))
    }
}

impl SqlDb {
    /// Connects, creating an SQLite file if missing, and brings the schema up to date.
    pub async fn open(url: &str, sync: SqliteSync, lease: Duration) -> Result<SqlDb, StoreError> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        let url = if sqlite && !url.contains("mode=") {
            format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
        } else {
            url.to_owned()
        };
        let pragmas = match sync {
            SqliteSync::Normal => {
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=10000;"
            }
            SqliteSync::Full => {
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=10000;"
            }
        };
        let stuck_ms = (lease.as_millis() / 2).max(500) as u64;
        let connect = |max: u32| {
            AnyPoolOptions::new()
                .max_connections(if sqlite { max.min(4) } else { max })
                .acquire_timeout(Duration::from_secs(10))
                .after_connect(move |conn, _| {
                    Box::pin(async move {
                        if conn.backend_name().eq_ignore_ascii_case("sqlite") {
                            conn.execute(pragmas).await?;
                        } else {
                            // No transaction here waits on this process for long; one that
                            // does has lost its process (or its link), and the shard rows it
                            // locked must not wait for it.
                            conn.execute(AssertSqlSafe(format!(
                                "SET idle_in_transaction_session_timeout = {stuck_ms}"
                            )))
                            .await?;
                        }
                        Ok(())
                    })
                })
        };
        let pool = connect(10).connect(&url).await?;
        let held = if sqlite { hold_file(&url).await? } else { None };
        MIGRATOR.run(&pool).await?;
        let control = connect(2).connect(&url).await?;
        Ok(SqlDb {
            pool,
            control,
            backend: if sqlite { "sqlite" } else { "postgres" },
            _held: held,
        })
    }

    pub fn backend(&self) -> &'static str {
        self.backend
    }

    pub fn purge(&self, finished_before: DateTime<Utc>) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let cutoff = ts(&finished_before);
            let mut tx = self.pool.begin().await?;
            sqlx::query(
                "DELETE FROM tasks WHERE batch_id IN \
                 (SELECT id FROM batches WHERE finished_at IS NOT NULL AND finished_at < $1)",
            )
            .bind(cutoff.clone())
            .execute(&mut *tx)
            .await?;
            let done = sqlx::query(
                "DELETE FROM batches WHERE finished_at IS NOT NULL AND finished_at < $1",
            )
            .bind(cutoff)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(done.rows_affected())
        })
    }

    pub fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            Ok(())
        })
    }
}

pub(super) fn ts(t: &DateTime<Utc>) -> String {
    format_micros(t)
}

pub(super) fn parse_ts(s: Option<String>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::from_str(&s).ok())
}

/// Reads a snake_case enum name stored as text.
pub(super) fn named<T: DeserializeOwned>(s: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
}

pub(super) fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("stored values serialize")
}

/// The batch ids of `SELECT id` / `RETURNING id` rows.
pub(super) fn ids(rows: &[AnyRow]) -> Vec<Uuid> {
    rows.iter()
        .filter_map(|r| r.try_get::<String, _>("id").ok())
        .filter_map(|id| Uuid::parse_str(&id).ok())
        .collect()
}
