//! A sharded batch's shards on SQL, read and closed: their list and merged totals, and closing
//! the batch once every shard has ended.

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};
use uuid::Uuid;

use super::db::{SqlDb, json, named, parse_ts, ts};
use super::read::task_record;
use crate::engine::BatchStatus;
use crate::engine::batch::{Checkpoint, ShardInfo, ShardStatus};
use crate::engine::summary::{Summary, SummaryAcc};
use crate::engine::task::{TaskRecord, TaskStatus};
use crate::engine::wire_name;
use crate::store::StoreError;

/// A shard row's columns, as [`shard_info`] and [`checkpoint_acc`] read them.
pub(super) const SHARD_COLUMNS: &str = "batch_id, idx, tasks, status, instance_id, attempt, queued_at, started_at, finished_at, checkpoint, checkpoint_at";

impl SqlDb {
    pub async fn is_finished(&self, id: Uuid) -> Result<Option<bool>, StoreError> {
        let row = sqlx::query("SELECT finished_at FROM batches WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get::<Option<String>, _>("finished_at")?.is_some()),
            None => None,
        })
    }

    /// A batch's shards, as answers list them.
    pub(super) async fn shard_infos(&self, id: &str) -> Result<Vec<ShardInfo>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {SHARD_COLUMNS} FROM shards WHERE batch_id = $1 ORDER BY idx"
        )))
        .bind(id.to_owned())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(shard_info).collect()
    }

    /// A batch's totals merged from its shards' checkpoints, if any carries them.
    pub(super) async fn totals(&self, id: Uuid) -> Result<Option<SummaryAcc>, StoreError> {
        let rows = sqlx::query("SELECT checkpoint FROM shards WHERE batch_id = $1")
            .bind(id.to_string())
            .fetch_all(&self.pool)
            .await?;
        let mut merged: Option<SummaryAcc> = None;
        for acc in rows.iter().filter_map(checkpoint_acc) {
            match &mut merged {
                None => merged = Some(acc),
                Some(m) => m.merge(&acc),
            }
        }
        Ok(merged)
    }

    /// A sharded batch's summary so far, from its shards' checkpoints.
    pub(super) async fn live_summary(
        &self,
        id: &str,
        tasks_total: u64,
    ) -> Result<Option<Summary>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {SHARD_COLUMNS} FROM shards WHERE batch_id = $1"
        )))
        .bind(id.to_owned())
        .fetch_all(&self.pool)
        .await?;
        let mut merged = SummaryAcc::new(0);
        let mut counted = 0;
        let mut first: Option<DateTime<Utc>> = None;
        for row in &rows {
            let info = shard_info(row)?;
            first = match (first, info.started_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if let Some(acc) = checkpoint_acc(row) {
                counted += acc.tasks();
                merged.merge(&acc);
            }
        }
        // Shards that have not checkpointed yet: their tasks are pending.
        merged.add_pending(tasks_total.saturating_sub(counted));
        let wall = first.map(|f| (Utc::now() - f).to_std().unwrap_or_default());
        Ok(Some(merged.summary(wall)))
    }

    /// Closes a batch whose shards have all ended: its summary merged from theirs (counts
    /// added, histograms added, never percentiles averaged), its status from how they ended.
    /// Locks the batch row first (PostgreSQL), so that two shards ending at once on two
    /// instances do not both close it, nor neither.
    pub(super) async fn close_batch(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        id: Uuid,
    ) -> Result<(), StoreError> {
        let lock = if self.backend == "postgres" {
            " FOR UPDATE"
        } else {
            ""
        };
        let Some(batch) = sqlx::query(AssertSqlSafe(format!(
            "SELECT cancel_requested, shard_count, options FROM batches WHERE id = $1 AND finished_at IS NULL{lock}"
        )))
        .bind(id.to_string())
        .fetch_optional(&mut **tx)
        .await?
        else {
            return Ok(());
        };
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {SHARD_COLUMNS} FROM shards WHERE batch_id = $1 ORDER BY idx"
        )))
        .bind(id.to_string())
        .fetch_all(&mut **tx)
        .await?;
        let shards: Vec<(ShardInfo, Option<SummaryAcc>)> = rows
            .iter()
            .map(|r| Ok((shard_info(r)?, checkpoint_acc(r))))
            .collect::<Result<_, StoreError>>()?;
        if shards.iter().any(|(s, _)| !s.status.is_finished()) {
            return Ok(());
        }
        let count = batch.try_get::<i64, _>("shard_count")?.max(1) as u32;
        let mut merged = SummaryAcc::new(0);
        for (shard, acc) in shards.iter() {
            let mut acc = match acc {
                Some(acc) => acc.clone(),
                None => {
                    // A one-shard batch keeps every task's row: its totals are those rows.
                    let mut acc = SummaryAcc::new(shard.tasks);
                    let rows = shard_rows(&mut **tx, &id.to_string(), shard.index, count).await?;
                    for t in rows.iter().filter(|t| t.status.is_finished()) {
                        acc.record_stored(t);
                    }
                    acc
                }
            };
            let unended = shard.tasks.saturating_sub(acc.ended());
            match shard.status {
                ShardStatus::Cancelled => acc.end_unrun(TaskStatus::Cancelled, unended),
                _ => acc.end_unrun(TaskStatus::Interrupted, unended),
            }
            merged.merge(&acc);
        }
        let started = shards.iter().filter_map(|(s, _)| s.started_at).min();
        let finished = shards.iter().filter_map(|(s, _)| s.finished_at).max();
        let wall = match (started, finished) {
            (Some(a), Some(b)) => (b - a).to_std().ok(),
            _ => None,
        };
        let status = if batch.try_get::<i64, _>("cancel_requested")? != 0 {
            BatchStatus::Cancelled
        } else if shards
            .iter()
            .any(|(s, _)| s.status == ShardStatus::Interrupted)
        {
            BatchStatus::Interrupted
        } else {
            BatchStatus::Completed
        };
        let now = Utc::now();
        sqlx::query(
            "UPDATE batches SET status = $1, finished_at = $2, wall_ms = $3, summary = $4, \
             started_at = COALESCE(started_at, $5) WHERE id = $6 AND finished_at IS NULL",
        )
        .bind(wire_name(&status))
        .bind(ts(&finished.unwrap_or(now).max(started.unwrap_or(now))))
        .bind(wall.map(|w| w.as_secs_f64() * 1000.0))
        .bind(json(&merged.summary(wall)))
        .bind(started.as_ref().map(ts))
        .bind(id.to_string())
        .execute(&mut **tx)
        .await?;
        tracing::info!(batch_id = %id, shards = shards.len(), status = ?status, "sharded batch closed");
        Ok(())
    }
}

/// A shard's stored task rows, under the batch's task numbers (task `g` of shard `index` of
/// `count`: `g % count == index`).
pub(super) async fn shard_rows<'e>(
    db: impl sqlx::Executor<'e, Database = sqlx::Any>,
    batch_id: &str,
    index: u32,
    count: u32,
) -> Result<Vec<TaskRecord>, StoreError> {
    let rows = sqlx::query(
        "SELECT idx, job_id, kind, status, attempts, seq, output, error_code, error_message, queued_ms, \
         started_at, finished_at, duration_ms, warmup, net FROM tasks WHERE batch_id = $1 AND idx % $2 = $3",
    )
    .bind(batch_id.to_owned())
    .bind(i64::from(count))
    .bind(i64::from(index))
    .fetch_all(db)
    .await?;
    rows.iter().map(task_record).collect()
}

pub(super) fn shard_info(row: &AnyRow) -> Result<ShardInfo, StoreError> {
    let status: String = row.try_get("status")?;
    Ok(ShardInfo {
        index: row.try_get::<i64, _>("idx")? as u32,
        tasks: row.try_get::<i64, _>("tasks")?.max(0) as u64,
        instance_id: row.try_get("instance_id")?,
        attempt: row.try_get::<i64, _>("attempt")?.max(0) as u64,
        status: named(&status).ok_or_else(|| {
            StoreError::Corrupt(format!("stored shard has an unknown status {status}"))
        })?,
        started_at: parse_ts(row.try_get("started_at")?),
        finished_at: parse_ts(row.try_get("finished_at")?),
    })
}

pub(super) fn checkpoint_acc(row: &AnyRow) -> Option<SummaryAcc> {
    row.try_get::<Option<String>, _>("checkpoint")
        .ok()
        .flatten()
        .and_then(|c| serde_json::from_str::<Checkpoint>(&c).ok())
        .and_then(|c| c.acc)
}
