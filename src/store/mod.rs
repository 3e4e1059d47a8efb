//! Where accepted batches live. [`Batches`] is what the HTTP layer talks to: it keeps the
//! batches this instance runs in memory (always up to date) and writes them through a
//! [`Store`].
//!
//! - [`batches`]: the registry of batches this instance runs, and submitting one.
//! - `idempotency`: idempotency keys.
//! - [`sql`]: SQLite and PostgreSQL, written through a group-commit writer; [`memory`]:
//!   `memory://`, which keeps nothing across a restart.

pub mod batches;
mod idempotency;
pub mod memory;
pub mod sql;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use uuid::Uuid;

use crate::engine::Batch;
use crate::engine::BatchStatus;
use crate::engine::batch::Rules;
use crate::engine::spec::Mode;

pub use batches::{Batches, Cancelled, Submitted};
pub use sql::SqliteSync;

/// Opens the store a `--database-url` names.
pub async fn open(url: &str, sync: SqliteSync) -> Result<Arc<dyn Store>, StoreError> {
    if url == "memory://" || url == "memory:" {
        return Ok(Arc::new(memory::MemoryStore::default()));
    }
    if !(url.starts_with("sqlite:")
        || url.starts_with("postgres://")
        || url.starts_with("postgresql://"))
    {
        return Err(StoreError(format!(
            "unsupported database URL (use sqlite://FILE, postgres://..., or memory://): {}",
            url.split('@').next_back().unwrap_or_default()
        )));
    }
    let store = sql::SqlStore::open(url, sync).await?;
    tracing::info!(backend = store.backend(), "store ready, schema up to date");
    Ok(Arc::new(store))
}

/// A storage failure; its details are logged, never sent to clients.
#[derive(Debug, thiserror::Error)]
#[error("storage: {0}")]
pub struct StoreError(pub String);

/// The batch holding an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyHolder {
    pub batch: Uuid,
    /// The hash of the request it was accepted with (`idempotency::request_hash`).
    pub request_hash: String,
    /// The HTTP status its client was first answered with.
    pub first_status: u16,
}

/// A batch row to insert, committed before the server answers.
#[derive(Debug)]
pub struct NewBatch {
    pub id: Uuid,
    pub mode: Mode,
    pub label: Option<String>,
    pub rules: Rules,
    /// The request body as accepted: the body the request came with, not a copy of it.
    pub request: bytes::Bytes,
    pub tasks_total: usize,
    pub created_at: DateTime<Utc>,
    pub idempotency_key: Option<String>,
    pub request_hash: Option<String>,
    pub answer_status: u16,
    pub instance_id: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Inserted {
    New,
    /// Another batch already holds this idempotency key.
    KeyTaken,
}

/// `GET /batches` filters: newest first, keyset pagination on (created_at, id).
#[derive(Debug, Clone)]
pub struct ListFilter {
    pub status: Option<BatchStatus>,
    /// Only batches strictly older than this (created_at, id).
    pub before: Option<(DateTime<Utc>, Uuid)>,
    pub limit: usize,
}

impl ListFilter {
    /// Whether a batch in memory belongs on the page (the SQL store asks the same in SQL).
    pub fn admits(&self, b: &Batch) -> bool {
        self.status.is_none_or(|s| b.status() == s)
            && self
                .before
                .is_none_or(|(t, id)| (b.created_at, b.id) < (t, id))
    }
}

/// A backend: SQLite and PostgreSQL ([`sql::SqlStore`], which groups its writes), or this
/// process's memory ([`memory::MemoryStore`]).
pub trait Store: Send + Sync + 'static {
    /// Stores a new batch's row; resolves once it is committed (before the server answers).
    fn insert(&self, row: NewBatch) -> BoxFuture<'_, Result<Inserted, StoreError>>;

    /// Writes a running batch's progress as it goes; resolves once the batch has finished and
    /// its last write is committed (from then on the store serves it).
    fn follow(&self, batch: Arc<Batch>) -> BoxFuture<'static, ()>;

    /// A batch as stored.
    fn load(&self, id: Uuid) -> BoxFuture<'_, Result<Option<Arc<Batch>>, StoreError>>;

    /// Batches without their tasks, newest first.
    fn list(&self, filter: ListFilter) -> BoxFuture<'_, Result<Vec<Arc<Batch>>, StoreError>>;

    /// The batch holding an idempotency key.
    fn find_key(&self, key: String) -> BoxFuture<'_, Result<Option<KeyHolder>, StoreError>>;

    /// Renews this instance's heartbeat on its unfinished batches; returns those whose
    /// cancellation another instance requested.
    fn heartbeat(&self, instance: String) -> BoxFuture<'_, Result<Vec<Uuid>, StoreError>>;

    /// Flags an unfinished batch for cancellation by whichever instance runs it.
    fn request_cancel(&self, id: Uuid) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// At start-up: marks `interrupted` this instance's unfinished batches and those whose
    /// heartbeat is older than `stale_before` — never another live instance's — and gives
    /// each its summary; returns how many there were.
    fn recover(
        &self,
        instance: String,
        stale_before: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Deletes finished batches (and their tasks) that finished before the cut-off.
    fn purge(&self, finished_before: DateTime<Utc>) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Whether the database answers.
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// At shutdown, once every batch has ended: resolves when every write is committed.
    fn close(&self) -> BoxFuture<'_, ()>;
}
