//! The queries: one portable schema in `migrations/` and one set of statements for SQLite and
//! PostgreSQL, through sqlx's `Any` driver. [`SqlDb::write`] applies one turn of the
//! group-commit writer in one transaction (task rows as multi-row upserts).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use sqlx::any::{AnyPoolOptions, AnyRow};
// Dynamic SQL here is built from constants and numbered placeholders only; values are bound.
use sqlx::{AnyPool, AssertSqlSafe, Executor, Row};
use uuid::Uuid;

use super::Writes;
use crate::engine::batch::{BatchMeta, BatchRecord, Rules};
use crate::engine::spec::{Kind, ResultsMode};
use crate::engine::task::{ErrorCode, TaskError, TaskRecord, TaskStatus, Timing, format_micros};
use crate::engine::wire_name as name;
use crate::engine::{Batch, BatchStatus};
use crate::store::{Inserted, KeyHolder, ListFilter, StoreError};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Task rows per statement. Rows travel as one JSON array bound as a single parameter, which
/// both databases unpack in C: binding 15 parameters per row through the driver cost seconds
/// per 100,000 rows.
const ROWS_PER_STATEMENT: usize = 5_000;

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
        .map_err(|e| StoreError(format!("cannot open {path}: {e}")))?;
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
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError(format!(
            "{path} is in use by another fanout process: an SQLite file belongs to one instance \
             (stop the other one, give this one another --database-url, or share work on PostgreSQL)"
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError(format!("cannot lock {path}: {e}"))),
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError(e.to_string())
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError(format!("migrations: {e}"))
    }
}

/// Task rows as one JSON array of arrays, in the column order of the upsert below. Written
/// straight to text (no `serde_json::Value` per row): at 100,000 rows this is most of the
/// work the writer does besides the database's own.
fn task_rows_json(tasks: &[TaskRecord], attempt: u64) -> String {
    struct Row<'a>(&'a TaskRecord, u64);
    impl serde::Serialize for Row<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeTuple;
            let t = self.0;
            let mut row = s.serialize_tuple(15)?;
            row.serialize_element(&t.index)?;
            row.serialize_element(&t.id)?;
            row.serialize_element(&t.kind)?;
            row.serialize_element(&t.status)?;
            row.serialize_element(&t.attempts)?;
            row.serialize_element(&t.seq)?;
            row.serialize_element(&t.output.as_ref().map(json))?;
            row.serialize_element(&t.error.as_ref().map(|e| e.code))?;
            row.serialize_element(&t.error.as_ref().map(|e| e.message.as_str()))?;
            row.serialize_element(&t.timing.queued_ms)?;
            row.serialize_element(&t.timing.started_at.as_ref().map(ts))?;
            row.serialize_element(&t.timing.finished_at.as_ref().map(ts))?;
            row.serialize_element(&t.timing.duration_ms)?;
            row.serialize_element(&self.1)?;
            row.serialize_element(&i64::from(t.warmup))?;
            row.end()
        }
    }
    let rows: Vec<Row<'_>> = tasks.iter().map(|t| Row(t, attempt)).collect();
    serde_json::to_string(&rows).expect("task rows serialize")
}

impl SqlDb {
    /// The bulk upsert of task rows: `$1` the batch id, `$2` a JSON array of rows. The two
    /// databases differ only in how a JSON array becomes rows.
    fn upsert_tasks_sql(&self) -> &'static str {
        /// The statement around the one clause that differs: how a JSON array becomes rows.
        macro_rules! upsert_from {
            ($rows:literal) => {
                concat!(
                    "INSERT INTO tasks (batch_id, idx, job_id, kind, status, attempts, seq, output, error_code, ",
                    "error_message, queued_ms, started_at, finished_at, duration_ms, run_attempt, warmup) ",
                    "SELECT $1, CAST(value ->> 0 AS BIGINT), value ->> 1, value ->> 2, value ->> 3, ",
                    "CAST(value ->> 4 AS BIGINT), CAST(value ->> 5 AS BIGINT), value ->> 6, value ->> 7, value ->> 8, ",
                    "CAST(value ->> 9 AS DOUBLE PRECISION), value ->> 10, value ->> 11, ",
                    "CAST(value ->> 12 AS DOUBLE PRECISION), CAST(value ->> 13 AS BIGINT), CAST(value ->> 14 AS BIGINT) ",
                    $rows,
                    " ON CONFLICT (batch_id, idx) DO UPDATE SET status = excluded.status, attempts = excluded.attempts, ",
                    "seq = excluded.seq, output = excluded.output, error_code = excluded.error_code, ",
                    "error_message = excluded.error_message, queued_ms = excluded.queued_ms, ",
                    "started_at = excluded.started_at, finished_at = excluded.finished_at, ",
                    "duration_ms = excluded.duration_ms, run_attempt = excluded.run_attempt, warmup = excluded.warmup ",
                    "WHERE tasks.run_attempt <= excluded.run_attempt"
                )
            };
        }
        if self.backend == "sqlite" {
            // JSONB rows: `->>` then reads each column without parsing the row's text again.
            // (`WHERE true` keeps SQLite's parser from reading ON CONFLICT as part of a join.)
            upsert_from!("FROM jsonb_each($2) WHERE true")
        } else {
            upsert_from!("FROM jsonb_array_elements(CAST($2 AS jsonb))")
        }
    }

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

const BATCH_COLUMNS: &str = "id, mode, status, label, options, tasks_total, created_at, started_at, \
     finished_at, wall_ms, error, summary";

fn batch_record(row: &AnyRow, tasks: Vec<TaskRecord>) -> Result<BatchRecord, StoreError> {
    let bad = |what: &str| StoreError(format!("stored batch has an unreadable {what}"));
    let id: String = row.try_get("id")?;
    let rules: Rules =
        serde_json::from_str(&row.try_get::<String, _>("options")?).map_err(|_| bad("options"))?;
    Ok(BatchRecord {
        id: Uuid::parse_str(&id).map_err(|_| bad("id"))?,
        mode: named(&row.try_get::<String, _>("mode")?).ok_or_else(|| bad("mode"))?,
        label: row.try_get("label")?,
        created_at: parse_ts(row.try_get("created_at")?).ok_or_else(|| bad("created_at"))?,
        rules,
        meta: BatchMeta {
            status: named(&row.try_get::<String, _>("status")?).ok_or_else(|| bad("status"))?,
            started_at: parse_ts(row.try_get("started_at")?),
            finished_at: parse_ts(row.try_get("finished_at")?),
            wall_ms: row.try_get("wall_ms")?,
            error: row
                .try_get::<Option<String>, _>("error")?
                .and_then(|e| serde_json::from_str(&e).ok()),
            tasks_total: row.try_get::<i64, _>("tasks_total")? as usize,
            summary: row
                .try_get::<Option<String>, _>("summary")?
                .and_then(|s| serde_json::from_str(&s).ok()),
        },
        tasks,
        shards: Vec::new(),
    })
}

/// The batch ids of `SELECT id` / `RETURNING id` rows.
pub(super) fn ids(rows: &[AnyRow]) -> Vec<Uuid> {
    rows.iter()
        .filter_map(|r| r.try_get::<String, _>("id").ok())
        .filter_map(|id| Uuid::parse_str(&id).ok())
        .collect()
}

pub(super) fn task_record(row: &AnyRow) -> Result<TaskRecord, StoreError> {
    let bad = |what: &str| StoreError(format!("stored task has an unreadable {what}"));
    let code: Option<String> = row.try_get("error_code")?;
    let message: Option<String> = row.try_get("error_message")?;
    Ok(TaskRecord {
        index: row.try_get::<i64, _>("idx")? as u32,
        id: row.try_get("job_id")?,
        kind: named(&row.try_get::<String, _>("kind")?).ok_or_else(|| bad("kind"))?,
        status: named(&row.try_get::<String, _>("status")?).ok_or_else(|| bad("status"))?,
        attempts: row.try_get::<i64, _>("attempts")? as u32,
        seq: row.try_get::<Option<i64>, _>("seq")?.map(|s| s as u32),
        output: row
            .try_get::<Option<String>, _>("output")?
            .and_then(|o| serde_json::from_str(&o).ok()),
        error: match code {
            Some(code) => Some(TaskError::new(
                named::<ErrorCode>(&code).ok_or_else(|| bad("error code"))?,
                message.unwrap_or_default(),
            )),
            None => None,
        },
        timing: Timing {
            queued_ms: row.try_get("queued_ms")?,
            started_at: parse_ts(row.try_get("started_at")?),
            finished_at: parse_ts(row.try_get("finished_at")?),
            duration_ms: row.try_get("duration_ms")?,
        },
        warmup: row.try_get::<i64, _>("warmup")? != 0,
    })
}

/// A save's fence row: batch, shard, attempt, owner, then what it writes on the shard row:
/// status, finished_at, checkpoint (as text), checkpoint_at, started_at.
fn fence_row(save: &super::Save, now: &str) -> serde_json::Value {
    let meta = &save.meta;
    let status = match (meta.finished_at, meta.status) {
        (None, _) => "running",
        (Some(_), BatchStatus::Cancelled) => "cancelled",
        (Some(_), BatchStatus::Interrupted) => "interrupted",
        (Some(_), _) => "completed",
    };
    serde_json::json!([
        save.batch.id.to_string(),
        save.run.index,
        save.run.attempt,
        save.run.owner,
        status,
        meta.finished_at.as_ref().map(ts),
        save.checkpoint.as_ref().map(json),
        save.checkpoint.as_ref().map(|_| now),
        meta.started_at.as_ref().map(ts),
    ])
}

/// What one transaction of the writer did.
pub struct Written {
    /// Each insert's outcome, in order.
    pub inserted: Vec<Inserted>,
    /// The saves (by position) whose shard another attempt holds now: nothing of them was
    /// written.
    pub fenced: Vec<usize>,
}

impl SqlDb {
    pub fn write(&self, writes: Writes) -> BoxFuture<'_, Result<Written, StoreError>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            let now = ts(&Utc::now());
            let mut inserted = Vec::with_capacity(writes.inserts.len());
            let mut queued = false;
            let mut new_shards = Vec::new();
            for b in writes.inserts {
                // DO NOTHING rather than an error, so that a taken key does not abort the
                // other writes of this transaction.
                let done = sqlx::query(
                    "INSERT INTO batches (id, mode, status, label, options, request, tasks_total, created_at, \
                     idempotency_key, request_hash, answer_status, instance_id, heartbeat_at, shard_count, on_lost) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
                     ON CONFLICT (idempotency_key) DO NOTHING",
                )
                .bind(b.id.to_string())
                .bind(name(&b.mode))
                .bind("running")
                .bind(b.label)
                .bind(json(&b.rules))
                .bind(String::from_utf8_lossy(&b.request).into_owned())
                .bind(b.tasks_total as i64)
                .bind(ts(&b.created_at))
                .bind(b.idempotency_key)
                .bind(b.request_hash)
                .bind(b.answer_status as i64)
                .bind(b.instance_id.clone())
                .bind(now.clone())
                .bind(b.shards.len() as i64)
                .bind(name(&b.on_lost))
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    inserted.push(Inserted::KeyTaken);
                    continue;
                }
                inserted.push(Inserted::New);
                let claimed = b.claimed.as_ref().filter(|_| b.shards.len() == 1);
                queued |= claimed.is_none();
                for (index, tasks) in b.shards.iter().enumerate() {
                    // Its started_at is set by its run's first write: when its first task
                    // started.
                    new_shards.push(serde_json::json!([
                        b.id.to_string(),
                        index,
                        tasks,
                        if claimed.is_some() {
                            "running"
                        } else {
                            "queued"
                        },
                        claimed.map(|_| b.instance_id.clone()),
                        claimed.map(|c| c.0.clone()),
                        i64::from(claimed.is_some()),
                        claimed.map(|c| ts(&c.1)),
                        now.clone(),
                    ]));
                }
            }
            // Every new shard of this turn in one statement, as task rows are written.
            if !new_shards.is_empty() {
                sqlx::query(AssertSqlSafe(self.insert_shards_sql()))
                    .bind(serde_json::Value::Array(new_shards).to_string())
                    .execute(&mut *tx)
                    .await?;
            }
            if queued {
                self.notify_queued(&mut tx).await?;
            }
            // The fence, for every save of this turn in one statement: a shard's row changes
            // only for the attempt that holds it, and the rest of its save is written only if
            // it did. The rows stay locked until the commit, so a claim (SKIP LOCKED) cannot
            // take a shard over in between.
            let fences: Vec<serde_json::Value> = writes
                .saves
                .iter()
                .map(|save| fence_row(save, &now))
                .collect();
            let held: std::collections::HashSet<(String, i64)> = if fences.is_empty() {
                Default::default()
            } else {
                sqlx::query(AssertSqlSafe(self.fence_sql()))
                    .bind(serde_json::Value::Array(fences).to_string())
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .filter_map(|r| Some((r.try_get("batch_id").ok()?, r.try_get("idx").ok()?)))
                    .collect()
            };
            let mut fenced = Vec::new();
            for (position, save) in writes.saves.into_iter().enumerate() {
                if held.contains(&(save.batch.id.to_string(), i64::from(save.run.index))) {
                    self.save(&mut tx, save, &now).await?;
                } else {
                    fenced.push(position);
                }
            }
            tx.commit().await?;
            Ok(Written { inserted, fenced })
        })
    }

    /// New shard rows, from one JSON array bound as `$1` (see [`SqlDb::write`]).
    fn insert_shards_sql(&self) -> &'static str {
        macro_rules! insert_from {
            ($rows:literal) => {
                concat!(
                    "INSERT INTO shards (batch_id, idx, tasks, status, instance_id, owner, attempt, lease_until, queued_at) ",
                    "SELECT value ->> 0, CAST(value ->> 1 AS BIGINT), CAST(value ->> 2 AS BIGINT), value ->> 3, ",
                    "value ->> 4, value ->> 5, CAST(value ->> 6 AS BIGINT), value ->> 7, value ->> 8 ",
                    $rows
                )
            };
        }
        if self.backend == "sqlite" {
            insert_from!("FROM jsonb_each($1)")
        } else {
            insert_from!("FROM jsonb_array_elements(CAST($1 AS jsonb))")
        }
    }

    /// The fence of a turn's saves, from one JSON array bound as `$1` (rows of
    /// [`fence_row`]): returns the shards whose attempt still holds them, which alone are
    /// written further.
    fn fence_sql(&self) -> &'static str {
        macro_rules! fence_from {
            ($rows:literal) => {
                concat!(
                    "UPDATE shards SET status = j.value ->> 4, finished_at = j.value ->> 5, ",
                    "checkpoint = COALESCE(j.value ->> 6, shards.checkpoint), ",
                    "checkpoint_at = COALESCE(j.value ->> 7, shards.checkpoint_at), ",
                    "started_at = COALESCE(shards.started_at, j.value ->> 8) ",
                    $rows,
                    " WHERE shards.batch_id = j.value ->> 0 AND shards.idx = CAST(j.value ->> 1 AS BIGINT) ",
                    "AND shards.attempt = CAST(j.value ->> 2 AS BIGINT) AND shards.owner = j.value ->> 3 ",
                    "AND shards.status = 'running' RETURNING shards.batch_id, shards.idx"
                )
            };
        }
        if self.backend == "sqlite" {
            fence_from!("FROM (SELECT value FROM jsonb_each($1)) AS j")
        } else {
            fence_from!("FROM jsonb_array_elements(CAST($1 AS jsonb)) AS j(value)")
        }
    }

    /// One shard's progress, in the writer's transaction, once its fence passed: its task
    /// rows and the batch's fields (a sharded batch's closing, when its last shard ended).
    async fn save(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        save: super::Save,
        now: &str,
    ) -> Result<(), StoreError> {
        let run = &save.run;
        let meta = &save.meta;
        let finished = meta.finished_at.is_some();
        let id = save.batch.id.to_string();
        let mut tasks = save.tasks;
        if run.count > 1 {
            // A stripe of the batch: rows under the batch's task numbers, and the batch's
            // next completion numbers.
            let stripe = run.stripe();
            let row = sqlx::query(
                "UPDATE batches SET started_at = COALESCE(started_at, $1), last_seq = last_seq + $2 \
                 WHERE id = $3 RETURNING last_seq",
            )
            .bind(meta.started_at.as_ref().map(ts))
            .bind(tasks.len() as i64)
            .bind(id.clone())
            .fetch_one(&mut **tx)
            .await?;
            let last: i64 = row.try_get("last_seq")?;
            let first = last - tasks.len() as i64;
            for (n, t) in tasks.iter_mut().enumerate() {
                t.index = stripe.global(t.index as usize) as u32;
                t.seq = Some((first + n as i64 + 1) as u32);
            }
        }
        for chunk in tasks.chunks(ROWS_PER_STATEMENT) {
            sqlx::query(AssertSqlSafe(self.upsert_tasks_sql()))
                .bind(id.clone())
                .bind(task_rows_json(chunk, run.attempt))
                .execute(&mut **tx)
                .await?;
        }
        if run.count > 1 {
            if finished {
                self.close_batch(tx, save.batch.id).await?;
            }
            return Ok(());
        }
        // `tasks_total` too: a load run for a duration counts its tasks as it goes.
        let common = sqlx::query(if meta.summary.is_some() {
            "UPDATE batches SET status = $1, started_at = COALESCE(started_at, $2), error = $3, heartbeat_at = $4, \
             tasks_total = $5, finished_at = $6, wall_ms = $7, summary = $8 WHERE id = $9"
        } else {
            "UPDATE batches SET status = $1, started_at = COALESCE(started_at, $2), error = $3, heartbeat_at = $4, \
             tasks_total = $5 WHERE id = $6"
        })
        .bind(name(&meta.status))
        .bind(meta.started_at.as_ref().map(ts))
        .bind(meta.error.as_ref().map(json))
        .bind(now.to_owned())
        .bind(meta.tasks_total as i64);
        let query = match &meta.summary {
            Some(summary) => common
                .bind(meta.finished_at.as_ref().map(ts))
                .bind(meta.wall_ms)
                .bind(json(summary))
                .bind(id),
            None => common.bind(id),
        };
        query.execute(&mut **tx).await?;
        Ok(())
    }

    pub fn load(&self, id: Uuid) -> BoxFuture<'_, Result<Option<Arc<Batch>>, StoreError>> {
        Box::pin(async move {
            let id = id.to_string();
            let Some(row) = sqlx::query(AssertSqlSafe(format!(
                "SELECT {BATCH_COLUMNS}, request FROM batches WHERE id = $1"
            )))
            .bind(id.clone())
            .fetch_optional(&self.pool)
            .await?
            else {
                return Ok(None);
            };
            let total = row.try_get::<i64, _>("tasks_total")? as usize;
            let rows = sqlx::query(
                "SELECT idx, job_id, kind, status, attempts, seq, output, error_code, error_message, queued_ms, \
                 started_at, finished_at, duration_ms, warmup FROM tasks WHERE batch_id = $1 ORDER BY idx",
            )
            .bind(id.clone())
            .fetch_all(&self.pool)
            .await?;
            let results = serde_json::from_str::<Rules>(&row.try_get::<String, _>("options")?)
                .map_or(ResultsMode::All, |r| r.results);
            let rows = rows
                .iter()
                .map(task_record)
                .collect::<Result<Vec<_>, _>>()?;
            let tasks = task_list(results, &row.try_get::<String, _>("request")?, total, rows);
            let mut record = batch_record(&row, tasks)?;
            record.shards = self.shard_infos(&id).await?;
            if record.shards.len() > 1 && record.meta.summary.is_none() {
                record.meta.summary = self.live_summary(&id, total as u64).await?;
            }
            if record.meta.status == crate::engine::BatchStatus::Interrupted {
                // What had not ended when the process stopped ends as interrupted.
                for t in record.tasks.iter_mut().filter(|t| !t.status.is_finished()) {
                    t.status = TaskStatus::Interrupted;
                    t.error = Some(TaskError::new(
                        ErrorCode::Interrupted,
                        "the server stopped while the task ran",
                    ));
                }
            }
            Ok(Some(Batch::restore(record)))
        })
    }

    pub fn list(&self, filter: ListFilter) -> BoxFuture<'_, Result<Vec<Arc<Batch>>, StoreError>> {
        Box::pin(async move {
            let mut sql = format!("SELECT {BATCH_COLUMNS} FROM batches WHERE 1 = 1");
            let mut n = 0;
            let mut arg = || {
                n += 1;
                format!("${n}")
            };
            if filter.status.is_some() {
                sql.push_str(&format!(" AND status = {}", arg()));
            }
            if filter.before.is_some() {
                let (a, b, c) = (arg(), arg(), arg());
                sql.push_str(&format!(
                    " AND (created_at < {a} OR (created_at = {b} AND id < {c}))"
                ));
            }
            sql.push_str(&format!(
                " ORDER BY created_at DESC, id DESC LIMIT {}",
                arg()
            ));
            let mut q = sqlx::query(AssertSqlSafe(sql));
            if let Some(status) = &filter.status {
                q = q.bind(name(status));
            }
            if let Some((created, id)) = &filter.before {
                q = q.bind(ts(created)).bind(ts(created)).bind(id.to_string());
            }
            q = q.bind(filter.limit as i64);
            let rows = q.fetch_all(&self.pool).await?;
            rows.iter()
                .map(|r| batch_record(r, Vec::new()).map(Batch::restore))
                .collect()
        })
    }

    pub fn find_key(&self, key: String) -> BoxFuture<'_, Result<Option<KeyHolder>, StoreError>> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT id, request_hash, answer_status FROM batches WHERE idempotency_key = $1",
            )
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
            Ok(row.and_then(|r| {
                let id: String = r.try_get("id").ok()?;
                let hash: Option<String> = r.try_get("request_hash").ok()?;
                let status: i64 = r.try_get("answer_status").ok()?;
                Some(KeyHolder {
                    batch: Uuid::parse_str(&id).ok()?,
                    request_hash: hash.unwrap_or_default(),
                    first_status: status as u16,
                })
            }))
        })
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

/// A stored batch's tasks as [`BatchRecord`] holds them: with `results: all`, every task in
/// index order, those without a row as `pending` placeholders made from the stored request;
/// otherwise only the rows (the other tasks are counted by the summary and need none).
fn task_list(
    results: ResultsMode,
    request: &str,
    total: usize,
    rows: Vec<TaskRecord>,
) -> Vec<TaskRecord> {
    if results != ResultsMode::All || rows.len() >= total {
        return rows;
    }
    let mut tasks = placeholders(request, total);
    for t in rows {
        let i = t.index as usize;
        if i < tasks.len() {
            tasks[i] = t;
        }
    }
    tasks
}

/// Placeholders for tasks that have no row: from the stored request, their kind and id.
fn placeholders(request: &str, total: usize) -> Vec<TaskRecord> {
    let jobs: Vec<serde_json::Value> = serde_json::from_str::<serde_json::Value>(request)
        .ok()
        .and_then(|v| v.get("jobs").cloned())
        .and_then(|j| serde_json::from_value(j).ok())
        .unwrap_or_default();
    (0..total)
        .map(|i| {
            // A load run repeats the job list.
            let job = if jobs.is_empty() {
                None
            } else {
                jobs.get(i % jobs.len())
            };
            TaskRecord::pending(
                i as u32,
                job.and_then(|j| j.get("id"))
                    .and_then(|v| v.as_str())
                    .map(str::to_owned),
                job.and_then(|j| j.get("kind"))
                    .and_then(|k| k.as_str())
                    .and_then(named::<Kind>)
                    .unwrap_or(Kind::Sleep),
            )
        })
        .collect()
}
