//! The instances sharing the store on SQL: each one's heartbeat, and the list of those seen.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::db::{SqlDb, parse_ts, ts};
use crate::store::{InstanceInfo, StoreError};

impl SqlDb {
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
}
