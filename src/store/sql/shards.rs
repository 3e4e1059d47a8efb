//! Shards on SQL: claiming (`FOR UPDATE SKIP LOCKED` in one statement on PostgreSQL), leases
//! and their renewal, the rescuer, closing a batch once its shards have ended, and the
//! instances' own heartbeats. Every statement re-checks the state it changes, so that two
//! instances racing for one shard, or a rescuer racing a late renewal, change it once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};
use uuid::Uuid;

use super::db::{SqlDb, ids, json, named, parse_ts, ts};
use super::read::task_record;
use crate::engine::BatchStatus;
use crate::engine::batch::{Checkpoint, ShardInfo, ShardStatus};
use crate::engine::spec::{OnLost, Stripe};
use crate::engine::summary::{Lost, Summary, SummaryAcc};
use crate::engine::task::{TaskRecord, TaskStatus};
use crate::engine::wire_name;
use crate::store::{Claimed, InstanceInfo, Owner, Renewal, StoreError};

/// The channel NOTIFY wakes idle workers on.
pub const CHANNEL: &str = "fanout_shards";

/// Shards one rescuer turn claims to end `interrupted`, at most.
const RESCUE_AT_MOST: i64 = 100;

/// A shard's lease has run out (or was never set: a row from before leases).
const EXPIRED: &str = "(lease_until IS NULL OR lease_until < $NOW)";

const SHARD_COLUMNS: &str = "batch_id, idx, tasks, status, instance_id, attempt, queued_at, started_at, finished_at, checkpoint, checkpoint_at";

impl SqlDb {
    /// Tells idle workers that shards were queued (PostgreSQL; SQLite's one process needs
    /// no telling).
    pub(super) async fn notify_queued(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    ) -> Result<(), StoreError> {
        if self.backend == "postgres" {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(CHANNEL)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// The claim statement: the queued shards of the oldest batches, taken by one statement
    /// so that no two instances take the same one (SKIP LOCKED on PostgreSQL; SQLite has one
    /// writer at a time). The pick is a materialized CTE: as `IN (SELECT ... LIMIT n FOR
    /// UPDATE SKIP LOCKED)`, PostgreSQL may run the subquery once per candidate row, each run
    /// skipping the rows the last one locked, and claim far more than `n`.
    fn claim_sql(&self, which: &str, limit: &str) -> String {
        let lock = if self.backend == "postgres" {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        let columns = SHARD_COLUMNS
            .split(", ")
            .map(|c| format!("shards.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "WITH picked AS MATERIALIZED (SELECT batch_id, idx FROM shards WHERE {which} \
             ORDER BY batch_id, idx LIMIT {limit}{lock}) \
             UPDATE shards SET status = 'running', owner = $1, instance_id = $2, attempt = attempt + 1, \
             lease_until = $3, started_at = COALESCE(started_at, $4) \
             FROM picked WHERE shards.batch_id = picked.batch_id AND shards.idx = picked.idx \
             RETURNING {columns}"
        )
    }

    pub async fn claim(
        &self,
        owner: Owner,
        lease_until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Claimed>, StoreError> {
        let now = Utc::now();
        let rows = sqlx::query(AssertSqlSafe(self.claim_sql("status = 'queued'", "$5")))
            .bind(owner.token)
            .bind(owner.instance_id)
            .bind(ts(&lease_until))
            .bind(ts(&now))
            .bind(limit as i64)
            .fetch_all(&self.control)
            .await?;
        self.claimed(rows, now).await
    }

    /// What a worker needs of each shard it claimed: the batch's request, the shard's rows
    /// and checkpoint, and the gap since its last checkpoint when it was claimed again.
    async fn claimed(
        &self,
        rows: Vec<AnyRow>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Claimed>, StoreError> {
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            let info = shard_info(&row)?;
            let batch_id: String = row.try_get("batch_id")?;
            let Some(batch) = sqlx::query(
                "SELECT request, created_at, on_lost, shard_count, cancel_requested FROM batches WHERE id = $1",
            )
            .bind(batch_id.clone())
            .fetch_optional(&self.control)
            .await?
            else {
                continue;
            };
            let count = batch.try_get::<i64, _>("shard_count")?.max(1) as u32;
            let checkpoint: Option<Checkpoint> = row
                .try_get::<Option<String>, _>("checkpoint")?
                .and_then(|c| serde_json::from_str(&c).ok());
            let checkpoint_at = parse_ts(row.try_get("checkpoint_at")?);
            let stripe = Stripe::shard(info.index as usize, count as usize);
            let rows = shard_rows(&self.control, &batch_id, info.index, count)
                .await?
                .into_iter()
                .filter_map(|mut t| {
                    t.index = stripe.local(t.index as usize)? as u32;
                    Some(t)
                })
                .collect();
            // A claim after the first is a loss being made good: the shard had no runner
            // from its last checkpoint until now.
            let lost = (info.attempt > 1).then(|| Lost {
                shards: 1,
                tasks: checkpoint
                    .as_ref()
                    .map_or(0, |c| c.started.saturating_sub(c.ended)),
                window_ms: checkpoint_at
                    .or(info.started_at)
                    .map_or(0.0, |at| (now - at).num_milliseconds().max(0) as f64),
            });
            claimed.push(Claimed {
                batch_id: Uuid::parse_str(&batch_id)
                    .map_err(|_| StoreError("stored shard has an unreadable batch id".into()))?,
                index: info.index,
                attempt: info.attempt,
                count,
                tasks: info.tasks,
                request: batch.try_get("request")?,
                created_at: parse_ts(batch.try_get("created_at")?).unwrap_or(now),
                on_lost: named(&batch.try_get::<String, _>("on_lost")?)
                    .unwrap_or(OnLost::Interrupt),
                rows,
                checkpoint,
                checkpoint_at,
                lost,
                cancel_requested: batch.try_get::<i64, _>("cancel_requested")? != 0,
                queued_at: parse_ts(row.try_get("queued_at")?),
            });
        }
        Ok(claimed)
    }

    pub async fn active_shards(&self) -> Result<u64, StoreError> {
        let row =
            sqlx::query("SELECT COUNT(*) AS n FROM shards WHERE status IN ('queued', 'running')")
                .fetch_one(&self.control)
                .await?;
        Ok(row.try_get::<i64, _>("n")?.max(0) as u64)
    }

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

    pub async fn abandon(
        &self,
        owner: Owner,
        batch: Uuid,
        index: u32,
        attempt: u64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE shards SET lease_until = $1 WHERE batch_id = $2 AND idx = $3 AND attempt = $4 \
             AND owner = $5 AND status = 'running'",
        )
        .bind(ts(&(Utc::now() - chrono::Duration::seconds(1))))
        .bind(batch.to_string())
        .bind(i64::from(index))
        .bind(attempt as i64)
        .bind(owner.token)
        .execute(&self.control)
        .await?;
        Ok(())
    }

    pub async fn release(&self, batch: Uuid, index: u32, attempt: u64) -> Result<(), StoreError> {
        // The claim did not count: the attempt goes back too, so a later claim is not taken
        // for a loss.
        sqlx::query(
            "UPDATE shards SET status = 'queued', owner = NULL, attempt = attempt - 1 \
             WHERE batch_id = $1 AND idx = $2 AND attempt = $3 AND status = 'running'",
        )
        .bind(batch.to_string())
        .bind(i64::from(index))
        .bind(attempt as i64)
        .execute(&self.control)
        .await?;
        Ok(())
    }

    pub async fn renew(
        &self,
        owner: Owner,
        lease_until: DateTime<Utc>,
    ) -> Result<Renewal, StoreError> {
        let rows = sqlx::query(
            "UPDATE shards SET lease_until = $1 WHERE owner = $2 AND status = 'running' \
             RETURNING batch_id, idx, attempt",
        )
        .bind(ts(&lease_until))
        .bind(owner.token.clone())
        .fetch_all(&self.control)
        .await?;
        let held = rows
            .iter()
            .filter_map(|r| {
                let id: String = r.try_get("batch_id").ok()?;
                Some((
                    Uuid::parse_str(&id).ok()?,
                    r.try_get::<i64, _>("idx").ok()? as u32,
                    r.try_get::<i64, _>("attempt").ok()? as u64,
                ))
            })
            .collect();
        let cancelled = sqlx::query(
            "SELECT DISTINCT b.id FROM shards s JOIN batches b ON b.id = s.batch_id \
             WHERE s.owner = $1 AND s.status = 'running' AND b.cancel_requested = 1",
        )
        .bind(owner.token)
        .fetch_all(&self.control)
        .await?;
        Ok(Renewal {
            held,
            cancelled: ids(&cancelled),
        })
    }

    pub async fn beat(&self, me: InstanceInfo) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO instances (instance_id, role, started_at, heartbeat_at, running_shards) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (instance_id) DO UPDATE SET role = excluded.role, \
             started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, \
             running_shards = excluded.running_shards",
        )
        .bind(me.instance_id)
        .bind(me.role)
        .bind(ts(&me.started_at))
        .bind(ts(&me.heartbeat_at))
        .bind(me.running_shards as i64)
        .execute(&self.control)
        .await?;
        Ok(())
    }

    pub async fn instances(
        &self,
        seen_after: DateTime<Utc>,
    ) -> Result<Vec<InstanceInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT instance_id, role, started_at, heartbeat_at, running_shards FROM instances \
             WHERE heartbeat_at > $1 ORDER BY instance_id",
        )
        .bind(ts(&seen_after))
        .fetch_all(&self.control)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(InstanceInfo {
                    instance_id: r.try_get("instance_id")?,
                    role: r.try_get("role")?,
                    started_at: parse_ts(r.try_get("started_at")?).unwrap_or_default(),
                    heartbeat_at: parse_ts(r.try_get("heartbeat_at")?).unwrap_or_default(),
                    running_shards: r.try_get::<i64, _>("running_shards")?.max(0) as u64,
                })
            })
            .collect()
    }

    pub async fn rescue(
        &self,
        owner: Owner,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<Claimed>, StoreError> {
        let expired = EXPIRED.replace("$NOW", "$1");
        // Lost shards of batches that rerun go back to the queue; the UPDATE re-checks the
        // lease itself, so a renewal that landed meanwhile keeps its shard.
        let requeued = sqlx::query(AssertSqlSafe(format!(
            "UPDATE shards SET status = 'queued', owner = NULL, queued_at = $1 \
             WHERE status = 'running' AND {expired} AND batch_id IN \
             (SELECT id FROM batches WHERE on_lost = 'rerun' AND cancel_requested = 0) RETURNING batch_id"
        )))
        .bind(ts(&now))
        .fetch_all(&self.control)
        .await?;
        if !requeued.is_empty() {
            tracing::warn!(
                shards = requeued.len(),
                "queued again: shards whose instance stopped renewing its lease"
            );
            if self.backend == "postgres" {
                sqlx::query("SELECT pg_notify($1, '')")
                    .bind(CHANNEL)
                    .execute(&self.control)
                    .await?;
            }
        }
        // The others (on_lost: interrupt, or cancelled) are claimed here, to be ended from
        // their checkpoint by a run that starts nothing.
        let which = format!("status = 'running' AND {}", EXPIRED.replace("$NOW", "$4"));
        let rows = sqlx::query(AssertSqlSafe(
            self.claim_sql(&which, &RESCUE_AT_MOST.to_string()),
        ))
        .bind(owner.token)
        .bind(owner.instance_id)
        .bind(ts(&lease_until))
        .bind(ts(&now))
        .fetch_all(&self.control)
        .await?;
        let to_end = self.claimed(rows, now).await?;
        // Batches whose shards all ended but that were not closed (their last writer died
        // between the two, or their shards were cancelled while queued).
        let open = sqlx::query(
            "SELECT b.id FROM batches b WHERE b.finished_at IS NULL AND NOT EXISTS \
             (SELECT 1 FROM shards s WHERE s.batch_id = b.id AND s.status IN ('queued', 'running'))",
        )
        .fetch_all(&self.control)
        .await?;
        for id in ids(&open) {
            let mut tx = self.control.begin().await?;
            self.close_batch(&mut tx, id).await?;
            tx.commit().await?;
        }
        Ok(to_end)
    }

    pub async fn request_cancel(&self, id: Uuid) -> Result<bool, StoreError> {
        let mut tx = self.control.begin().await?;
        let done = sqlx::query(
            "UPDATE batches SET cancel_requested = 1 WHERE id = $1 AND finished_at IS NULL",
        )
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        // Queued shards end here; running ones are cancelled by their owner at its next
        // renewal.
        sqlx::query(
            "UPDATE shards SET status = 'cancelled', finished_at = $1 WHERE batch_id = $2 AND status = 'queued'",
        )
        .bind(ts(&Utc::now()))
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        self.close_batch(&mut tx, id).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn recover(&self, instance: String) -> Result<u64, StoreError> {
        let past = ts(&(Utc::now() - chrono::Duration::seconds(1)));
        let done = if self.backend == "sqlite" {
            // One process holds the file: whatever is unfinished in it was left by an earlier
            // process.
            sqlx::query("UPDATE shards SET lease_until = $1 WHERE status = 'running'")
                .bind(past)
                .execute(&self.control)
                .await?
        } else {
            sqlx::query(
                "UPDATE shards SET lease_until = $1 WHERE status = 'running' AND instance_id = $2",
            )
            .bind(past)
            .bind(instance)
            .execute(&self.control)
            .await?
        };
        Ok(done.rows_affected())
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
async fn shard_rows<'e>(
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

fn shard_info(row: &AnyRow) -> Result<ShardInfo, StoreError> {
    let status: String = row.try_get("status")?;
    Ok(ShardInfo {
        index: row.try_get::<i64, _>("idx")? as u32,
        tasks: row.try_get::<i64, _>("tasks")?.max(0) as u64,
        instance_id: row.try_get("instance_id")?,
        attempt: row.try_get::<i64, _>("attempt")?.max(0) as u64,
        status: named(&status)
            .ok_or_else(|| StoreError(format!("stored shard has an unknown status {status}")))?,
        started_at: parse_ts(row.try_get("started_at")?),
        finished_at: parse_ts(row.try_get("finished_at")?),
    })
}

fn checkpoint_acc(row: &AnyRow) -> Option<SummaryAcc> {
    row.try_get::<Option<String>, _>("checkpoint")
        .ok()
        .flatten()
        .and_then(|c| serde_json::from_str::<Checkpoint>(&c).ok())
        .and_then(|c| c.acc)
}

/// Wakes idle workers when another instance queues shards: PostgreSQL's LISTEN on a
/// connection of its own, reconnecting after a drop. Workers poll as well, so a lost
/// notification (or a pooler that drops them) only delays a claim.
pub fn listen(url: String) -> tokio::sync::watch::Receiver<u64> {
    let (tx, rx) = tokio::sync::watch::channel(0u64);
    tokio::spawn(async move {
        let mut woken = 0u64;
        loop {
            match sqlx::postgres::PgListener::connect(&url).await {
                Ok(mut listener) => {
                    if let Err(e) = listener.listen(CHANNEL).await {
                        tracing::warn!(error = %e, "LISTEN failed; workers poll");
                    } else {
                        loop {
                            match listener.recv().await {
                                Ok(_) => {
                                    woken += 1;
                                    if tx.send(woken).is_err() {
                                        return;
                                    }
                                }
                                Err(e) => {
                                    tracing::debug!(error = %e, "LISTEN connection lost");
                                    break;
                                }
                            }
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "cannot LISTEN; workers poll"),
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    rx
}
