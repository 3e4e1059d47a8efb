//! Leases on SQL: their renewal, the rescuer that gives expired shards to another attempt or
//! ends them, cancelling a batch wherever its shards are, and recovering this instance's own
//! earlier leases at start-up. Every statement re-checks the state it changes, so that a
//! rescuer racing a late renewal changes a shard once.

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, Row};
use uuid::Uuid;

use super::claims::CHANNEL;
use super::db::{SqlDb, ids, ts};
use crate::store::{Claimed, Owner, Renewal, StoreError};

/// Shards one rescuer turn claims to end `interrupted`, at most.
const RESCUE_AT_MOST: i64 = 100;

/// A shard's lease has run out (or was never set: a row from before leases).
const EXPIRED: &str = "(lease_until IS NULL OR lease_until < $NOW)";

impl SqlDb {
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
}
