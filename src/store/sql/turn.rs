//! One turn of the group-commit writer, in one transaction: new batch rows and their shard
//! rows, the fence of every save (only the attempt that holds a shard writes its outcome),
//! then every save's task rows and batch fields. Each kind of row goes in one statement for
//! the whole turn, from one JSON array, so that a turn of 500 small batches costs the
//! database as many statements as a turn of one.

use chrono::Utc;
use futures::future::BoxFuture;
use sqlx::{AssertSqlSafe, Row};

use super::Writes;
use super::db::{SqlDb, json, ts};
use crate::engine::BatchStatus;
use crate::engine::batch::BatchMeta;
use crate::engine::task::TaskRecord;
use crate::engine::wire_name as name;
use crate::store::{Inserted, NewBatch, ShardRun, StoreError};

/// Task rows per statement. Rows travel as one JSON array bound as a single parameter, which
/// both databases unpack in C: binding 15 parameters per row through the driver cost seconds
/// per 100,000 rows.
const ROWS_PER_STATEMENT: usize = 5_000;

/// A statement that reads its rows from a JSON array bound as a parameter: the same text
/// around the one clause that differs between the databases, how the array becomes rows.
macro_rules! from_json {
    ($db:expr, [$($head:literal),* $(,)?], sqlite: $sqlite:literal, postgres: $pg:literal,
     [$($tail:literal),* $(,)?] $(,)?) => {
        if $db.backend == "sqlite" {
            concat!($($head,)* $sqlite, $($tail,)*)
        } else {
            concat!($($head,)* $pg, $($tail,)*)
        }
    };
}

/// One task row, in the column order of the upsert below, written straight to text (no
/// `serde_json::Value` per row): at 100,000 rows this is most of the work the writer does
/// besides the database's own. Each row names its batch: rows nested under their batch's id
/// made SQLite copy the whole group (megabytes) out of the array for every row's `->>`.
struct TaskRow<'a> {
    batch: &'a str,
    task: &'a TaskRecord,
    attempt: u64,
}

impl serde::Serialize for TaskRow<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let t = self.task;
        let mut row = s.serialize_tuple(17)?;
        row.serialize_element(self.batch)?;
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
        row.serialize_element(&self.attempt)?;
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

/// The task rows of a turn's saves, as JSON arrays of [`TaskRow`]s of at most
/// [`ROWS_PER_STATEMENT`] rows each: one statement's argument apiece.
#[derive(Default)]
struct TaskRows {
    /// Finished statements' arguments.
    done: Vec<String>,
    /// The statement being filled, and how many rows it holds.
    open: Vec<u8>,
    rows: usize,
}

impl TaskRows {
    fn add(&mut self, batch: &str, tasks: &[TaskRecord], attempt: u64) {
        for task in tasks {
            self.open
                .push(if self.open.is_empty() { b'[' } else { b',' });
            let row = TaskRow {
                batch,
                task,
                attempt,
            };
            serde_json::to_writer(&mut self.open, &row).expect("task rows serialize");
            self.rows += 1;
            if self.rows == ROWS_PER_STATEMENT {
                self.cut();
            }
        }
    }

    fn cut(&mut self) {
        if !self.open.is_empty() {
            self.open.push(b']');
            let text = String::from_utf8(std::mem::take(&mut self.open));
            self.done.push(text.expect("serde_json writes UTF-8"));
            self.rows = 0;
        }
    }

    fn statements(mut self) -> Vec<String> {
        self.cut();
        self.done
    }
}

/// A new batch's row, in the column order of [`SqlDb::insert_batches_sql`].
fn batch_row(b: &NewBatch) -> serde_json::Value {
    serde_json::json!([
        b.id.to_string(),
        name(&b.mode),
        b.label,
        json(&b.rules),
        String::from_utf8_lossy(&b.request),
        b.tasks_total,
        ts(&b.created_at),
        b.idempotency_key,
        b.request_hash,
        b.answer_status,
        b.instance_id,
        b.shards.len(),
        name(&b.on_lost),
    ])
}

/// A whole batch's fields after a save, in the column order of
/// [`SqlDb::update_batches_sql`]: the summary, `wall_ms` and `finished_at` once it finished.
fn update_row(id: &str, meta: &BatchMeta) -> serde_json::Value {
    let finished = meta.summary.is_some();
    serde_json::json!([
        id,
        name(&meta.status),
        meta.started_at.as_ref().map(ts),
        meta.error.as_ref().map(json),
        meta.tasks_total,
        meta.finished_at.as_ref().filter(|_| finished).map(ts),
        meta.wall_ms.filter(|_| finished),
        meta.summary.as_ref().map(json),
    ])
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
    /// The bulk upsert of task rows from `$1`, a JSON array of [`TaskRow`]s. The two
    /// databases differ only in how a JSON array becomes rows.
    fn upsert_tasks_sql(&self) -> &'static str {
        from_json!(
            self,
            [
                "INSERT INTO tasks (batch_id, idx, job_id, kind, status, attempts, seq, output, error_code, ",
                "error_message, queued_ms, started_at, finished_at, duration_ms, run_attempt, warmup, net) ",
                "SELECT r.value ->> 0, CAST(r.value ->> 1 AS BIGINT), r.value ->> 2, r.value ->> 3, r.value ->> 4, ",
                "CAST(r.value ->> 5 AS BIGINT), CAST(r.value ->> 6 AS BIGINT), r.value ->> 7, r.value ->> 8, r.value ->> 9, ",
                "CAST(r.value ->> 10 AS DOUBLE PRECISION), r.value ->> 11, r.value ->> 12, ",
                "CAST(r.value ->> 13 AS DOUBLE PRECISION), CAST(r.value ->> 14 AS BIGINT), CAST(r.value ->> 15 AS BIGINT), ",
                "r.value ->> 16 ",
            ],
            // JSONB rows: `->>` then reads each column without parsing the row's text again.
            // (`WHERE true` keeps SQLite's parser from reading ON CONFLICT as part of a join.)
            sqlite: "FROM jsonb_each($1) AS r WHERE true",
            postgres: "FROM jsonb_array_elements(CAST($1 AS jsonb)) AS r(value)",
            [
                " ON CONFLICT (batch_id, idx) DO UPDATE SET status = excluded.status, attempts = excluded.attempts, ",
                "seq = excluded.seq, output = excluded.output, error_code = excluded.error_code, ",
                "error_message = excluded.error_message, queued_ms = excluded.queued_ms, ",
                "started_at = excluded.started_at, finished_at = excluded.finished_at, ",
                "duration_ms = excluded.duration_ms, run_attempt = excluded.run_attempt, warmup = excluded.warmup, ",
                "net = excluded.net ",
                "WHERE tasks.run_attempt <= excluded.run_attempt",
            ],
        )
    }

    /// New batch rows from `$1`, a JSON array of [`batch_row`]s, `$2` the heartbeat: returns
    /// the ids inserted (a row whose idempotency key is taken is not).
    fn insert_batches_sql(&self) -> &'static str {
        from_json!(
            self,
            [
                "INSERT INTO batches (id, mode, status, label, options, request, tasks_total, created_at, ",
                "idempotency_key, request_hash, answer_status, instance_id, heartbeat_at, shard_count, on_lost) ",
                "SELECT value ->> 0, value ->> 1, 'running', value ->> 2, value ->> 3, value ->> 4, ",
                "CAST(value ->> 5 AS BIGINT), value ->> 6, value ->> 7, value ->> 8, CAST(value ->> 9 AS BIGINT), ",
                "value ->> 10, $2, CAST(value ->> 11 AS BIGINT), value ->> 12 ",
            ],
            sqlite: "FROM jsonb_each($1) WHERE true",
            postgres: "FROM jsonb_array_elements(CAST($1 AS jsonb))",
            [
                " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
            ],
        )
    }

    /// Whole batches' fields from `$1`, a JSON array of [`update_row`]s, `$2` the heartbeat.
    /// A field a row leaves null (the summary of a batch still running) keeps its value.
    fn update_batches_sql(&self) -> &'static str {
        from_json!(
            self,
            [
                "UPDATE batches SET status = j.value ->> 1, started_at = COALESCE(batches.started_at, j.value ->> 2), ",
                "error = j.value ->> 3, heartbeat_at = $2, tasks_total = CAST(j.value ->> 4 AS BIGINT), ",
                "finished_at = COALESCE(j.value ->> 5, batches.finished_at), ",
                "wall_ms = COALESCE(CAST(j.value ->> 6 AS DOUBLE PRECISION), batches.wall_ms), ",
                "summary = COALESCE(j.value ->> 7, batches.summary) ",
            ],
            sqlite: "FROM (SELECT value FROM jsonb_each($1)) AS j",
            postgres: "FROM jsonb_array_elements(CAST($1 AS jsonb)) AS j(value)",
            [
                " WHERE batches.id = j.value ->> 0",
            ],
        )
    }

    /// One turn in one transaction, in statements whose number does not grow with the
    /// batches in it: the new batches, their shards, the fence, the task rows (about one
    /// statement per [`ROWS_PER_STATEMENT`]), the whole batches' fields. Only a sharded save
    /// adds statements of its own (its completion numbers, its batch's closing).
    pub fn write(&self, writes: Writes) -> BoxFuture<'_, Result<Written, StoreError>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            let now = ts(&Utc::now());
            let (inserted, queued) = self.insert_batches(&mut tx, &writes.inserts, &now).await?;
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
            let mut rows = TaskRows::default();
            let mut updates = Vec::new();
            let mut closing = Vec::new();
            for (position, save) in writes.saves.into_iter().enumerate() {
                let id = save.batch.id.to_string();
                if !held.contains(&(id.clone(), i64::from(save.run.index))) {
                    fenced.push(position);
                    continue;
                }
                let mut tasks = save.tasks;
                if save.run.count > 1 {
                    self.number_stripe(&mut tx, &id, &save.run, &save.meta, &mut tasks)
                        .await?;
                    if save.meta.finished_at.is_some() {
                        closing.push(save.batch.id);
                    }
                } else {
                    // `tasks_total` too: a load run for a duration counts its tasks as it goes.
                    updates.push(update_row(&id, &save.meta));
                }
                rows.add(&id, &tasks, save.run.attempt);
            }
            for statement in rows.statements() {
                sqlx::query(AssertSqlSafe(self.upsert_tasks_sql()))
                    .bind(statement)
                    .execute(&mut *tx)
                    .await?;
            }
            if !updates.is_empty() {
                // Planned at every turn, not prepared once: PostgreSQL keeps the generic plan
                // of a prepared statement until the table is next analyzed, and one made
                // while `batches` was nearly empty scans the whole table to join the JSON
                // rows (a turn's update grew from 0.1 to 2.6 ms over 5,000 batches).
                sqlx::query(AssertSqlSafe(self.update_batches_sql()))
                    .bind(serde_json::Value::Array(updates).to_string())
                    .bind(now.clone())
                    .persistent(self.backend == "sqlite")
                    .execute(&mut *tx)
                    .await?;
            }
            // After the task rows: a closing reads a shard's rows when it kept no totals.
            for id in closing {
                self.close_batch(&mut tx, id).await?;
            }
            tx.commit().await?;
            Ok(Written { inserted, fenced })
        })
    }

    /// A turn's new batch rows and their shard rows, two statements in all: each insert's
    /// outcome, and whether any shard was queued (rather than claimed by its inserter).
    async fn insert_batches(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        batches: &[NewBatch],
        now: &str,
    ) -> Result<(Vec<Inserted>, bool), StoreError> {
        if batches.is_empty() {
            return Ok((Vec::new(), false));
        }
        let rows: Vec<serde_json::Value> = batches.iter().map(batch_row).collect();
        // DO NOTHING rather than an error, so that a taken key does not abort the other
        // writes of this transaction.
        let new: std::collections::HashSet<String> =
            sqlx::query(AssertSqlSafe(self.insert_batches_sql()))
                .bind(serde_json::Value::Array(rows).to_string())
                .bind(now.to_owned())
                .fetch_all(&mut **tx)
                .await?
                .iter()
                .filter_map(|r| r.try_get("id").ok())
                .collect();
        let mut inserted = Vec::with_capacity(batches.len());
        let mut queued = false;
        let mut new_shards = Vec::new();
        for b in batches {
            let id = b.id.to_string();
            if !new.contains(&id) {
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
                    id,
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
                    now,
                ]));
            }
        }
        // Every new shard of this turn in one statement, as task rows are written.
        if !new_shards.is_empty() {
            sqlx::query(AssertSqlSafe(self.insert_shards_sql()))
                .bind(serde_json::Value::Array(new_shards).to_string())
                .execute(&mut **tx)
                .await?;
        }
        Ok((inserted, queued))
    }

    /// New shard rows, from one JSON array bound as `$1` (see [`SqlDb::write`]).
    fn insert_shards_sql(&self) -> &'static str {
        from_json!(
            self,
            [
                "INSERT INTO shards (batch_id, idx, tasks, status, instance_id, owner, attempt, lease_until, queued_at) ",
                "SELECT value ->> 0, CAST(value ->> 1 AS BIGINT), CAST(value ->> 2 AS BIGINT), value ->> 3, ",
                "value ->> 4, value ->> 5, CAST(value ->> 6 AS BIGINT), value ->> 7, value ->> 8 ",
            ],
            sqlite: "FROM jsonb_each($1)",
            postgres: "FROM jsonb_array_elements(CAST($1 AS jsonb))",
            [],
        )
    }

    /// The fence of a turn's saves, from one JSON array bound as `$1` (rows of
    /// [`fence_row`]): returns the shards whose attempt still holds them, which alone are
    /// written further.
    fn fence_sql(&self) -> &'static str {
        from_json!(
            self,
            [
                "UPDATE shards SET status = j.value ->> 4, finished_at = j.value ->> 5, ",
                "checkpoint = COALESCE(j.value ->> 6, shards.checkpoint), ",
                "checkpoint_at = COALESCE(j.value ->> 7, shards.checkpoint_at), ",
                "started_at = COALESCE(shards.started_at, j.value ->> 8) ",
            ],
            sqlite: "FROM (SELECT value FROM jsonb_each($1)) AS j",
            postgres: "FROM jsonb_array_elements(CAST($1 AS jsonb)) AS j(value)",
            [
                " WHERE shards.batch_id = j.value ->> 0 AND shards.idx = CAST(j.value ->> 1 AS BIGINT) ",
                "AND shards.attempt = CAST(j.value ->> 2 AS BIGINT) AND shards.owner = j.value ->> 3 ",
                "AND shards.status = 'running' RETURNING shards.batch_id, shards.idx",
            ],
        )
    }

    /// A stripe's task rows get the batch's task numbers and the batch's next completion
    /// numbers, and the batch its first start.
    async fn number_stripe(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        id: &str,
        run: &ShardRun,
        meta: &BatchMeta,
        tasks: &mut [TaskRecord],
    ) -> Result<(), StoreError> {
        let stripe = run.stripe();
        let row = sqlx::query(
            "UPDATE batches SET started_at = COALESCE(started_at, $1), last_seq = last_seq + $2 \
             WHERE id = $3 RETURNING last_seq",
        )
        .bind(meta.started_at.as_ref().map(ts))
        .bind(tasks.len() as i64)
        .bind(id.to_owned())
        .fetch_one(&mut **tx)
        .await?;
        let last: i64 = row.try_get("last_seq")?;
        let first = last - tasks.len() as i64;
        for (n, t) in tasks.iter_mut().enumerate() {
            t.index = stripe.global(t.index as usize) as u32;
            t.seq = Some((first + n as i64 + 1) as u32);
        }
        Ok(())
    }
}
