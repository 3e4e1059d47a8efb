//! SQL storage: SQLite (the embedded default) and PostgreSQL (shared by several instances).
//! A batch's row is committed before the server answers; task rows are written as they end,
//! many per transaction, and the summary when the batch ends.
//!
//! - `db`: the schema's queries, one set for both databases.
//! - `writer`: the group-commit writer every write goes through.

mod db;
mod shards;
mod writer;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use uuid::Uuid;

use super::{
    Claimed, Inserted, InstanceInfo, KeyHolder, ListFilter, NewBatch, Owner, Renewal, ShardRun,
    Store, StoreError,
};
use crate::engine::Batch;
use crate::engine::batch::{BatchMeta, Checkpoint};
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
    pub async fn open(url: &str, sync: SqliteSync) -> Result<SqlStore, StoreError> {
        let db = Arc::new(SqlDb::open(url, sync).await?);
        let queued = (db.backend() == "postgres").then(|| shards::listen(url.to_owned()));
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

    fn list(&self, filter: ListFilter) -> BoxFuture<'_, Result<Vec<Arc<Batch>>, StoreError>> {
        self.db.list(filter)
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
