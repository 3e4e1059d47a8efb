//! Batches read back: one batch with its task rows (placeholders for the tasks without one,
//! its shards, and a sharded batch's summary so far), lists, and idempotency keys.

use std::sync::Arc;

use futures::future::BoxFuture;
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};
use uuid::Uuid;

use super::db::{SqlDb, named, parse_ts, ts};
use crate::engine::Batch;
use crate::engine::batch::{BatchMeta, BatchRecord, Rules};
use crate::engine::spec::{Kind, ResultsMode};
use crate::engine::task::{
    ErrorCode, StepRef, StepStatus, StoredNet, TaskError, TaskOutput, TaskRecord, Timing,
};
use crate::engine::wire_name as name;
use crate::store::{KeyHolder, ListFilter, RowWindow, Rows, StoreError};

const BATCH_COLUMNS: &str = "id, mode, status, label, options, tasks_total, created_at, started_at, \
     finished_at, wall_ms, error, summary";

const TASK_COLUMNS: &str = "idx, job_id, kind, status, attempts, seq, output, error_code, \
     error_message, queued_ms, started_at, finished_at, duration_ms, warmup, net";

fn batch_record(row: &AnyRow, tasks: Vec<TaskRecord>) -> Result<BatchRecord, StoreError> {
    let bad = |what: &str| StoreError::Corrupt(format!("stored batch has an unreadable {what}"));
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

pub(super) fn task_record(row: &AnyRow) -> Result<TaskRecord, StoreError> {
    let bad = |what: &str| StoreError::Corrupt(format!("stored task has an unreadable {what}"));
    let code: Option<String> = row.try_get("error_code")?;
    let message: Option<String> = row.try_get("error_message")?;
    let net: Option<StoredNet> = row
        .try_get::<Option<String>, _>("net")?
        .and_then(|n| serde_json::from_str(&n).ok());
    let output: Option<TaskOutput> = row
        .try_get::<Option<String>, _>("output")?
        .and_then(|o| serde_json::from_str(&o).ok());
    let step = output.as_ref().and_then(failed_step);
    Ok(TaskRecord {
        index: row.try_get::<i64, _>("idx")? as u32,
        id: row.try_get("job_id")?,
        kind: named(&row.try_get::<String, _>("kind")?).ok_or_else(|| bad("kind"))?,
        status: named(&row.try_get::<String, _>("status")?).ok_or_else(|| bad("status"))?,
        attempts: row.try_get::<i64, _>("attempts")? as u32,
        seq: row.try_get::<Option<i64>, _>("seq")?.map(|s| s as u32),
        output,
        error: match code {
            Some(code) => Some(TaskError {
                // A flow's failed step is its first one that did not succeed (the others
                // after it were skipped), as its stored output says.
                step,
                ..TaskError::new(
                    named::<ErrorCode>(&code).ok_or_else(|| bad("error code"))?,
                    message.unwrap_or_default(),
                )
            }),
            None => None,
        },
        timing: Timing {
            queued_ms: row.try_get("queued_ms")?,
            started_at: parse_ts(row.try_get("started_at")?),
            finished_at: parse_ts(row.try_get("finished_at")?),
            duration_ms: row.try_get("duration_ms")?,
            phases: net.map(|n| n.phases),
            reused: net.map(|n| n.reused),
        },
        warmup: row.try_get::<i64, _>("warmup")? != 0,
    })
}

/// The step a flow's stored output says failed it.
fn failed_step(output: &TaskOutput) -> Option<StepRef> {
    let TaskOutput::Flow(flow) = output else {
        return None;
    };
    flow.steps
        .iter()
        .find(|s| matches!(s.status, StepStatus::Failed | StepStatus::TimedOut))
        .map(|s| StepRef {
            index: s.index,
            id: s.id.clone(),
        })
}

impl SqlDb {
    /// The request body a batch was accepted with.
    pub async fn request(&self, id: Uuid) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT request FROM batches WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get::<String, _>("request")?),
            None => None,
        })
    }

    /// A batch's row: [`BATCH_COLUMNS`] and the columns `more` names (`", request"`).
    async fn batch_row(&self, id: &str, more: &str) -> Result<Option<AnyRow>, StoreError> {
        Ok(sqlx::query(AssertSqlSafe(format!(
            "SELECT {BATCH_COLUMNS}{more} FROM batches WHERE id = $1"
        )))
        .bind(id.to_owned())
        .fetch_optional(&self.pool)
        .await?)
    }

    pub fn load(&self, id: Uuid) -> BoxFuture<'_, Result<Option<Arc<Batch>>, StoreError>> {
        Box::pin(async move {
            let id = id.to_string();
            let Some(row) = self.batch_row(&id, ", request").await? else {
                return Ok(None);
            };
            let total = row.try_get::<i64, _>("tasks_total")? as usize;
            let rows = sqlx::query(AssertSqlSafe(format!(
                "SELECT {TASK_COLUMNS} FROM tasks WHERE batch_id = $1 ORDER BY idx"
            )))
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
                record.tasks.iter_mut().for_each(TaskRecord::interrupt);
            }
            Ok(Some(Batch::restore(record)))
        })
    }

    /// A finished batch without its task rows: its stored summary stands for them. One
    /// without a summary (still running) comes whole, as [`SqlDb::load`] reads it.
    pub async fn load_head(&self, uuid: Uuid) -> Result<Option<Arc<Batch>>, StoreError> {
        let id = uuid.to_string();
        let Some(row) = self.batch_row(&id, "").await? else {
            return Ok(None);
        };
        let mut record = batch_record(&row, Vec::new())?;
        if record.meta.summary.is_none() || record.meta.finished_at.is_none() {
            return self.load(uuid).await;
        }
        record.shards = self.shard_infos(&id).await?;
        Ok(Some(Batch::restore(record)))
    }

    /// The task rows of a batch in `window`, by start, unless more than `limit` match: then
    /// only their number.
    pub async fn rows(
        &self,
        id: Uuid,
        window: RowWindow,
        limit: usize,
    ) -> Result<Rows, StoreError> {
        let id = id.to_string();
        let mut filter = String::from("batch_id = $1 AND started_at IS NOT NULL");
        // Timestamps are fixed-width RFC 3339 text: compared as text, they compare as times.
        let mut binds = Vec::new();
        for (bound, test) in [
            (window.started_from, "started_at >= "),
            (window.started_before, "started_at < "),
        ] {
            if let Some(t) = bound {
                binds.push(ts(&t));
                filter.push_str(&format!(" AND {test}${}", binds.len() + 1));
            }
        }
        if let Some(t) = window.ended_from {
            binds.push(ts(&t));
            let n = binds.len() + 1;
            filter.push_str(&format!(
                " AND (finished_at IS NULL OR finished_at >= ${n})"
            ));
        }
        let query = |sql: String| {
            let mut q = sqlx::query(AssertSqlSafe(sql)).bind(id.clone());
            for b in &binds {
                q = q.bind(b.clone());
            }
            q
        };
        // Counted first: reading the rows of a window too full to use costs far more.
        let matched: i64 = query(format!("SELECT COUNT(*) AS n FROM tasks WHERE {filter}"))
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        let matched = matched.max(0) as usize;
        if matched > limit {
            return Ok(Rows {
                matched,
                records: Vec::new(),
            });
        }
        let rows = query(format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE {filter} ORDER BY started_at, idx"
        ))
        .fetch_all(&self.pool)
        .await?;
        let records = rows
            .iter()
            .map(task_record)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Rows { matched, records })
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
