//! SQL storage: SQLite (the embedded default) and PostgreSQL (shared by several instances).
//! A batch's row is committed before the server answers; task rows are written as they end,
//! many per transaction, and the summary when the batch ends.
//!
//! - `db`: the schema's queries, one set for both databases.
//! - `writer`: the group-commit writer every write goes through.

mod db;
mod writer;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use uuid::Uuid;

use super::{Inserted, KeyHolder, ListFilter, NewBatch, Store, StoreError};
use crate::engine::Batch;
use crate::engine::batch::BatchMeta;
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

/// A batch's progress: the tasks that ended since the last save, and its fields; a finished
/// batch's (`meta.summary` set) also writes its summary, `wall_ms` and `finished_at`.
struct Save {
    batch: Arc<Batch>,
    meta: BatchMeta,
    tasks: Vec<TaskRecord>,
}

/// The database, and the writer in front of it.
pub struct SqlStore {
    db: Arc<SqlDb>,
    writer: Writer,
}

impl SqlStore {
    /// Connects, creating an SQLite file if missing, and brings the schema up to date.
    pub async fn open(url: &str, sync: SqliteSync) -> Result<SqlStore, StoreError> {
        let db = Arc::new(SqlDb::open(url, sync).await?);
        Ok(SqlStore {
            writer: Writer::start(db.clone()),
            db,
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

    fn follow(&self, batch: Arc<Batch>) -> BoxFuture<'static, ()> {
        self.writer.follow(batch)
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

    fn heartbeat(&self, instance: String) -> BoxFuture<'_, Result<Vec<Uuid>, StoreError>> {
        self.db.heartbeat(instance)
    }

    fn request_cancel(&self, id: Uuid) -> BoxFuture<'_, Result<bool, StoreError>> {
        self.db.request_cancel(id)
    }

    fn recover(
        &self,
        instance: String,
        stale_before: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let ids = self.db.recover(instance, stale_before).await?;
            // Give each its summary now, so that lists show what ended and what was
            // interrupted.
            for &id in &ids {
                if let Some(batch) = self.db.load(id).await? {
                    let save = Save {
                        meta: batch.meta(),
                        batch,
                        tasks: Vec::new(),
                    };
                    let writes = Writes {
                        inserts: Vec::new(),
                        saves: vec![save],
                    };
                    self.db.write(writes).await?;
                }
            }
            Ok(ids.len() as u64)
        })
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
