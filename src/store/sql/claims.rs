//! The shard queue on SQL: claiming queued shards (`FOR UPDATE SKIP LOCKED` in one statement
//! on PostgreSQL), giving one back or letting its lease run out, and waking idle workers with
//! NOTIFY. Every statement re-checks the state it changes, so that two instances racing for
//! one shard change it once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};
use uuid::Uuid;

use super::db::{SqlDb, named, parse_ts, ts};
use super::shards::{SHARD_COLUMNS, shard_info, shard_rows};
use crate::engine::batch::Checkpoint;
use crate::engine::spec::{OnLost, Stripe};
use crate::engine::summary::Lost;
use crate::store::{Claimed, Owner, StoreError};

/// The channel NOTIFY wakes idle workers on.
pub const CHANNEL: &str = "fanout_shards";

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
    /// writer at a time). It keeps the instance it takes each shard from (the old
    /// `instance_id`: SET reads the row as it was), which a claim after the first lost. The pick is a materialized CTE: as `IN (SELECT ... LIMIT n FOR
    /// UPDATE SKIP LOCKED)`, PostgreSQL may run the subquery once per candidate row, each run
    /// skipping the rows the last one locked, and claim far more than `n`.
    pub(super) fn claim_sql(&self, which: &str, limit: &str) -> String {
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
             lease_until = $3, started_at = COALESCE(started_at, $4), lost_instance_id = shards.instance_id \
             FROM picked WHERE shards.batch_id = picked.batch_id AND shards.idx = picked.idx \
             RETURNING {columns}, shards.lost_instance_id"
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
    pub(super) async fn claimed(
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
            let gap_from = checkpoint_at.or(info.started_at);
            let lost = (info.attempt > 1).then(|| Lost {
                shards: 1,
                tasks: checkpoint
                    .as_ref()
                    .map_or(0, |c| c.started.saturating_sub(c.ended)),
                window_ms: gap_from.map_or(0.0, |at| (now - at).num_milliseconds().max(0) as f64),
                instances: row
                    .try_get::<Option<String>, _>("lost_instance_id")
                    .ok()
                    .flatten()
                    .into_iter()
                    .collect(),
                at: gap_from,
                rate_per_s: None,
            });
            claimed.push(Claimed {
                batch_id: Uuid::parse_str(&batch_id).map_err(|_| {
                    StoreError::Corrupt("stored shard has an unreadable batch id".into())
                })?,
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
        // The claim did not count: the attempt and the instance go back too, so a later
        // claim is not taken for a loss, nor names this instance as the one lost.
        sqlx::query(
            "UPDATE shards SET status = 'queued', owner = NULL, attempt = attempt - 1, \
             instance_id = lost_instance_id \
             WHERE batch_id = $1 AND idx = $2 AND attempt = $3 AND status = 'running'",
        )
        .bind(batch.to_string())
        .bind(i64::from(index))
        .bind(attempt as i64)
        .execute(&self.control)
        .await?;
        Ok(())
    }
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
