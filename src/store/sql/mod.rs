//! SQL storage: SQLite (the embedded default) and PostgreSQL (shared by several instances).
//! A batch's row is committed before the server answers; task rows are written as they end,
//! many per transaction, and the summary when the batch ends.
//!
//! - `db`: connecting, migrations, SQLite's one-process lock, values as text.
//! - `turn`: one turn of the writer in one transaction (inserts, fences, saves).
//! - `read`: batches read back, lists, idempotency keys.
//! - `claims`: the shard queue: claiming, giving back, NOTIFY and LISTEN.
//! - `leases`: renewals, the rescuer, cancelling everywhere, recovery at start-up.
//! - `instances`: the instances' heartbeats.
//! - `shards`: a sharded batch's shards read, merged and closed.
//! - `writer`: the group-commit writer every write goes through.

mod claims;
mod db;
mod instances;
mod leases;
mod read;
mod shards;
mod turn;
mod writer;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use uuid::Uuid;

use super::{
    Claimed, Inserted, InstanceInfo, KeyHolder, ListFilter, NewBatch, Owner, Renewal, RowWindow,
    Rows, ShardRun, Store, StoreError,
};
use crate::engine::Batch;
use crate::engine::batch::{BatchMeta, Checkpoint};
use crate::engine::summary::SummaryAcc;
use crate::engine::task::TaskRecord;
use db::SqlDb;
pub use db::SqliteSync;
use writer::Writer;

/// What one transaction writes: every batch accepted since the last one, and what ended in
/// every running batch since then.
#[derive(Default)]
struct Writes {
    inserts: Vec<NewBatch>,
    saves: Vec<Save>,
}

/// A shard's progress: the tasks that ended since the last save, the batch's fields (a
/// finished batch's, with `meta.summary` set, also its summary, `wall_ms` and `finished_at`)
/// and now and then a checkpoint; all of it fenced by the run's attempt.
struct Save {
    batch: Arc<Batch>,
    run: ShardRun,
    meta: BatchMeta,
    tasks: Vec<TaskRecord>,
    checkpoint: Option<Checkpoint>,
}

/// The database, and the writer in front of it.
pub struct SqlStore {
    db: Arc<SqlDb>,
    writer: Writer,
    /// PostgreSQL: wakes on NOTIFY when shards are queued.
    queued: Option<tokio::sync::watch::Receiver<u64>>,
}

impl SqlStore {
    /// Connects, creating an SQLite file if missing, and brings the schema up to date.
    pub async fn open(
        url: &str,
        sync: SqliteSync,
        lease: std::time::Duration,
    ) -> Result<SqlStore, StoreError> {
        let db = Arc::new(SqlDb::open(url, sync, lease).await?);
        let queued = (db.backend() == "postgres").then(|| claims::listen(url.to_owned()));
        Ok(SqlStore {
            writer: Writer::start(db.clone()),
            db,
            queued,
        })
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        self.db.backend()
    }
}

impl Store for SqlStore {
    fn insert(&self, row: NewBatch) -> BoxFuture<'_, Result<Inserted, StoreError>> {
        Box::pin(self.writer.insert(row))
    }

    fn follow(&self, batch: Arc<Batch>, run: ShardRun) -> BoxFuture<'static, ()> {
        self.writer.follow(batch, run)
    }

    fn load(&self, id: Uuid) -> BoxFuture<'_, Result<Option<Arc<Batch>>, StoreError>> {
        self.db.load(id)
    }

    fn load_head(&self, id: Uuid) -> BoxFuture<'_, Result<Option<Arc<Batch>>, StoreError>> {
        Box::pin(self.db.load_head(id))
    }

    fn rows(
        &self,
        id: Uuid,
        window: RowWindow,
        limit: usize,
    ) -> BoxFuture<'_, Result<Option<Rows>, StoreError>> {
        Box::pin(async move { self.db.rows(id, window, limit).await.map(Some) })
    }

    fn is_finished(&self, id: Uuid) -> BoxFuture<'_, Result<Option<bool>, StoreError>> {
        Box::pin(self.db.is_finished(id))
    }

    fn list(&self, filter: ListFilter) -> BoxFuture<'_, Result<Vec<Arc<Batch>>, StoreError>> {
        self.db.list(filter)
    }

    fn request(&self, id: Uuid) -> BoxFuture<'_, Result<Option<String>, StoreError>> {
        Box::pin(self.db.request(id))
    }

    fn totals(&self, id: Uuid) -> BoxFuture<'_, Result<Option<SummaryAcc>, StoreError>> {
        Box::pin(self.db.totals(id))
    }

    fn find_key(&self, key: String) -> BoxFuture<'_, Result<Option<KeyHolder>, StoreError>> {
        self.db.find_key(key)
    }

    fn renew(
        &self,
        owner: Owner,
        lease_until: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<Renewal, StoreError>> {
        Box::pin(self.db.renew(owner, lease_until))
    }

    fn beat(&self, instance: InstanceInfo) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.db.beat(instance))
    }

    fn instances(
        &self,
        seen_after: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<Vec<InstanceInfo>, StoreError>> {
        Box::pin(self.db.instances(seen_after))
    }

    fn claim(
        &self,
        owner: Owner,
        lease_until: DateTime<Utc>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Claimed>, StoreError>> {
        Box::pin(self.db.claim(owner, lease_until, limit))
    }

    fn abandon(
        &self,
        owner: Owner,
        batch: Uuid,
        index: u32,
        attempt: u64,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.db.abandon(owner, batch, index, attempt))
    }

    fn release(
        &self,
        batch: Uuid,
        index: u32,
        attempt: u64,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.db.release(batch, index, attempt))
    }

    fn rescue(
        &self,
        owner: Owner,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<Vec<Claimed>, StoreError>> {
        Box::pin(self.db.rescue(owner, now, lease_until))
    }

    fn request_cancel(&self, id: Uuid) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(self.db.request_cancel(id))
    }

    fn recover(&self, instance: String) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(self.db.recover(instance))
    }

    fn active_shards(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(self.db.active_shards())
    }

    fn queued_signal(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.queued.clone()
    }

    fn purge(&self, finished_before: DateTime<Utc>) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.db.purge(finished_before)
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.db.ping()
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.writer.close())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::engine::meter::NO_METER;
    use crate::engine::spec::OnLost;
    use crate::request::parse_batch;
    use crate::store::Inserted;

    fn new_batch(batch: &Batch, owner: &str, lease_until: DateTime<Utc>) -> NewBatch {
        NewBatch {
            id: batch.id,
            mode: batch.mode,
            label: None,
            rules: batch.rules(),
            request: bytes::Bytes::from_static(br#"{"jobs":[{"kind":"sleep","duration_ms":1}]}"#),
            tasks_total: 1,
            created_at: batch.created_at,
            idempotency_key: None,
            request_hash: None,
            answer_status: 202,
            instance_id: owner.into(),
            on_lost: OnLost::Rerun,
            shards: vec![1],
            claimed: Some((owner.into(), lease_until)),
        }
    }

    /// Instance A's lease ran out and B claimed the shard again; A, unaware, writes its
    /// outcome late. Nothing of it lands, A learns that it lost the shard, and B's write does.
    #[tokio::test]
    async fn a_stale_attempts_late_write_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("fence.db").display());
        let store = SqlStore::open(&url, SqliteSync::Normal, std::time::Duration::from_secs(30))
            .await
            .unwrap();
        let limits = crate::config::Config::defaults().limits();
        let spec = parse_batch(br#"{"jobs":[{"kind":"sleep","duration_ms":1}]}"#, &limits).unwrap();
        let a_copy = Batch::new(uuid::Uuid::now_v7(), &spec, NO_METER);
        let expired = Utc::now() - chrono::Duration::seconds(1);
        let row = new_batch(&a_copy, "a", expired);
        assert_eq!(store.insert(row).await.unwrap(), Inserted::New);

        let b = Owner {
            instance_id: "b".into(),
            token: "b".into(),
        };
        let lease = Utc::now() + chrono::Duration::seconds(30);
        assert!(
            store
                .rescue(b.clone(), Utc::now(), lease)
                .await
                .unwrap()
                .is_empty()
        );
        let claimed = store.claim(b.clone(), lease, 10).await.unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].attempt, 2);
        let lost = claimed[0].lost.as_ref().expect("a claim after a loss");
        assert_eq!(lost.shards, 1);
        assert_eq!(
            lost.instances,
            ["a"],
            "the claim names the instance it was lost by"
        );
        assert!(lost.at.is_some());
        assert!(
            store.claim(b.clone(), lease, 10).await.unwrap().is_empty(),
            "claimed once"
        );

        // A's copy ends (as cancelled: it never ran) and writes, as attempt 1.
        a_copy.start();
        a_copy.cancel_by_client();
        a_copy.finish();
        let a_run = ShardRun {
            index: 0,
            attempt: 1,
            count: 1,
            owner: "a".into(),
            lost: CancellationToken::new(),
        };
        store.follow(a_copy.clone(), a_run.clone()).await;
        assert!(a_run.lost.is_cancelled(), "A learns it lost the shard");
        let stored = store.load(a_copy.id).await.unwrap().unwrap();
        assert!(!stored.is_finished(), "A's late write changed nothing");
        assert_eq!(stored.status(), crate::engine::BatchStatus::Running);

        // B's attempt writes its outcome.
        let b_copy = Batch::resume(
            a_copy.id,
            a_copy.created_at,
            &spec,
            NO_METER,
            Default::default(),
        );
        b_copy.start();
        b_copy.stop(crate::engine::StopReason::Interrupted);
        b_copy.finish();
        let b_run = ShardRun {
            index: 0,
            attempt: 2,
            count: 1,
            owner: "b".into(),
            lost: CancellationToken::new(),
        };
        store.follow(b_copy.clone(), b_run.clone()).await;
        assert!(!b_run.lost.is_cancelled());
        let stored = store.load(a_copy.id).await.unwrap().unwrap();
        assert!(stored.is_finished());
        assert_eq!(stored.status(), crate::engine::BatchStatus::Interrupted);
        let json: serde_json::Value = serde_json::from_slice(&stored.to_json()).unwrap();
        assert_eq!(json["results"][0]["status"], "interrupted");
        assert_eq!(json["shards"][0]["attempt"], 2);
        assert_eq!(json["shards"][0]["instance_id"], "b");
    }
}
