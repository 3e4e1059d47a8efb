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
use crate::engine::Batch;
use crate::engine::batch::{BatchMeta, BatchRecord, Rules};
use crate::engine::spec::{Kind, ResultsMode};
use crate::engine::task::{ErrorCode, TaskError, TaskRecord, TaskStatus, Timing, format_micros};
use crate::engine::wire_name as name;
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
    pool: AnyPool,
    backend: &'static str,
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
fn task_rows_json(tasks: &[TaskRecord]) -> String {
    struct Row<'a>(&'a TaskRecord);
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
            row.serialize_element(&1)?;
            row.serialize_element(&i64::from(t.warmup))?;
            row.end()
        }
    }
    let rows: Vec<Row<'_>> = tasks.iter().map(Row).collect();
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
    pub async fn open(url: &str, sync: SqliteSync) -> Result<SqlDb, StoreError> {
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
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 4 } else { 10 })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if conn.backend_name().eq_ignore_ascii_case("sqlite") {
                        conn.execute(pragmas).await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(SqlDb {
            pool,
            backend: if sqlite { "sqlite" } else { "postgres" },
        })
    }

    pub fn backend(&self) -> &'static str {
        self.backend
    }
}

fn ts(t: &DateTime<Utc>) -> String {
    format_micros(t)
}

fn parse_ts(s: Option<String>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::from_str(&s).ok())
}

/// Reads a snake_case enum name stored as text.
fn named<T: DeserializeOwned>(s: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
}

fn json<T: serde::Serialize>(v: &T) -> String {
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
fn ids(rows: &[AnyRow]) -> Vec<Uuid> {
    rows.iter()
        .filter_map(|r| r.try_get::<String, _>("id").ok())
        .filter_map(|id| Uuid::parse_str(&id).ok())
        .collect()
}

fn task_record(row: &AnyRow) -> Result<TaskRecord, StoreError> {
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

impl SqlDb {
    pub fn write(&self, writes: Writes) -> BoxFuture<'_, Result<Vec<Inserted>, StoreError>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            let now = ts(&Utc::now());
            let mut inserted = Vec::with_capacity(writes.inserts.len());
            for b in writes.inserts {
                // DO NOTHING rather than an error, so that a taken key does not abort the
                // other writes of this transaction.
                let done = sqlx::query(
                    "INSERT INTO batches (id, mode, status, label, options, request, tasks_total, created_at, \
                     idempotency_key, request_hash, answer_status, instance_id, heartbeat_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
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
                .bind(b.instance_id)
                .bind(now.clone())
                .execute(&mut *tx)
                .await?;
                inserted.push(if done.rows_affected() == 1 {
                    Inserted::New
                } else {
                    Inserted::KeyTaken
                });
            }
            for save in writes.saves {
                let id = save.batch.id.to_string();
                for chunk in save.tasks.chunks(ROWS_PER_STATEMENT) {
                    sqlx::query(AssertSqlSafe(self.upsert_tasks_sql()))
                        .bind(id.clone())
                        .bind(task_rows_json(chunk))
                        .execute(&mut *tx)
                        .await?;
                }
                let meta = &save.meta;
                // `tasks_total` too: a load run for a duration counts its tasks as it goes.
                let common = sqlx::query(if meta.summary.is_some() {
                    "UPDATE batches SET status = $1, started_at = $2, error = $3, heartbeat_at = $4, \
                     tasks_total = $5, finished_at = $6, wall_ms = $7, summary = $8 WHERE id = $9"
                } else {
                    "UPDATE batches SET status = $1, started_at = $2, error = $3, heartbeat_at = $4, \
                     tasks_total = $5 WHERE id = $6"
                })
                .bind(name(&meta.status))
                .bind(meta.started_at.as_ref().map(ts))
                .bind(meta.error.as_ref().map(json))
                .bind(now.clone())
                .bind(meta.tasks_total as i64);
                let query = match &meta.summary {
                    Some(summary) => common
                        .bind(meta.finished_at.as_ref().map(ts))
                        .bind(meta.wall_ms)
                        .bind(json(summary))
                        .bind(id),
                    None => common.bind(id),
                };
                query.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(inserted)
        })
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
            .bind(id)
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

    pub fn heartbeat(&self, instance: String) -> BoxFuture<'_, Result<Vec<Uuid>, StoreError>> {
        Box::pin(async move {
            sqlx::query("UPDATE batches SET heartbeat_at = $1 WHERE instance_id = $2 AND finished_at IS NULL")
                .bind(ts(&Utc::now()))
                .bind(instance.clone())
                .execute(&self.pool)
                .await?;
            let rows = sqlx::query(
                "SELECT id FROM batches WHERE instance_id = $1 AND finished_at IS NULL AND cancel_requested = 1",
            )
            .bind(instance)
            .fetch_all(&self.pool)
            .await?;
            Ok(ids(&rows))
        })
    }

    pub fn request_cancel(&self, id: Uuid) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let done = sqlx::query(
                "UPDATE batches SET cancel_requested = 1 WHERE id = $1 AND finished_at IS NULL",
            )
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected() > 0)
        })
    }

    pub fn recover(
        &self,
        instance: String,
        stale_before: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<Vec<Uuid>, StoreError>> {
        Box::pin(async move {
            let now = ts(&Utc::now());
            let rows = sqlx::query(
                "UPDATE batches SET status = 'interrupted', finished_at = $1, interrupted_at = $1 \
                 WHERE finished_at IS NULL AND (instance_id = $2 OR heartbeat_at < $3) RETURNING id",
            )
            .bind(now)
            .bind(instance)
            .bind(ts(&stale_before))
            .fetch_all(&self.pool)
            .await?;
            Ok(ids(&rows))
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
