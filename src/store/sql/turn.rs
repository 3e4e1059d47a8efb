//! One turn of the group-commit writer, in one transaction: new batch rows and their shard
//! rows, the fence of every save (only the attempt that holds a shard writes its outcome),
//! then each save's task rows (multi-row upserts from one JSON array) and batch fields.

use chrono::Utc;
use futures::future::BoxFuture;
use sqlx::{AssertSqlSafe, Row};

use super::Writes;
use super::db::{SqlDb, json, ts};
use crate::engine::BatchStatus;
use crate::engine::task::TaskRecord;
use crate::engine::wire_name as name;
use crate::store::{Inserted, StoreError};

/// Task rows per statement. Rows travel as one JSON array bound as a single parameter, which
/// both databases unpack in C: binding 15 parameters per row through the driver cost seconds
/// per 100,000 rows.
const ROWS_PER_STATEMENT: usize = 5_000;

/// Task rows as one JSON array of arrays, in the column order of the upsert below. Written
/// straight to text (no `serde_json::Value` per row): at 100,000 rows this is most of the
/// work the writer does besides the database's own.
fn task_rows_json(tasks: &[TaskRecord], attempt: u64) -> String {
    struct Row<'a>(&'a TaskRecord, u64);
    impl serde::Serialize for Row<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeTuple;
            let t = self.0;
            let mut row = s.serialize_tuple(16)?;
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
            row.serialize_element(&t.timing.phases.map(|phases| {
                json(&crate::engine::task::StoredNet {
                    phases,
                    reused: t.timing.reused.unwrap_or(false),
                })
            }))?;
            row.end()
        }
    }
    let rows: Vec<Row<'_>> = tasks.iter().map(|t| Row(t, attempt)).collect();
    serde_json::to_string(&rows).expect("task rows serialize")
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
    /// The bulk upsert of task rows: `$1` the batch id, `$2` a JSON array of rows. The two
    /// databases differ only in how a JSON array becomes rows.
    fn upsert_tasks_sql(&self) -> &'static str {
        /// The statement around the one clause that differs: how a JSON array becomes rows.
        macro_rules! upsert_from {
            ($rows:literal) => {
                concat!(
                    "INSERT INTO tasks (batch_id, idx, job_id, kind, status, attempts, seq, output, error_code, ",
                    "error_message, queued_ms, started_at, finished_at, duration_ms, run_attempt, warmup, net) ",
                    "SELECT $1, CAST(value ->> 0 AS BIGINT), value ->> 1, value ->> 2, value ->> 3, ",
                    "CAST(value ->> 4 AS BIGINT), CAST(value ->> 5 AS BIGINT), value ->> 6, value ->> 7, value ->> 8, ",
                    "CAST(value ->> 9 AS DOUBLE PRECISION), value ->> 10, value ->> 11, ",
                    "CAST(value ->> 12 AS DOUBLE PRECISION), CAST(value ->> 13 AS BIGINT), CAST(value ->> 14 AS BIGINT), ",
                    "value ->> 15 ",
                    $rows,
                    " ON CONFLICT (batch_id, idx) DO UPDATE SET status = excluded.status, attempts = excluded.attempts, ",
                    "seq = excluded.seq, output = excluded.output, error_code = excluded.error_code, ",
                    "error_message = excluded.error_message, queued_ms = excluded.queued_ms, ",
                    "started_at = excluded.started_at, finished_at = excluded.finished_at, ",
                    "duration_ms = excluded.duration_ms, run_attempt = excluded.run_attempt, warmup = excluded.warmup, ",
                    "net = excluded.net ",
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
}
