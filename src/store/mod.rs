//! Where accepted batches live. [`Batches`] is what the HTTP layer talks to: it keeps the
//! batches this instance runs in memory (always up to date) and, unless the database URL is
//! `memory://`, writes them through a [`Store`] so that they outlive the process.

mod registry;
pub mod sql;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use uuid::Uuid;

use crate::engine::BatchStatus;
use crate::engine::batch::{BatchMeta, BatchRecord, Rules};
use crate::engine::spec::Mode;
use crate::engine::task::TaskRecord;

pub use registry::{Batches, Found, Submitted};
pub use sql::SqliteSync;

/// Opens the store a `--database-url` names; `None` for `memory://`.
pub async fn open(
    url: &str,
    sync: SqliteSync,
) -> Result<Option<std::sync::Arc<dyn Store>>, StoreError> {
    if url == "memory://" || url == "memory:" {
        return Ok(None);
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
    Ok(Some(std::sync::Arc::new(store)))
}

/// A storage failure; its details are logged, never sent to clients.
#[derive(Debug, thiserror::Error)]
#[error("storage: {0}")]
pub struct StoreError(pub String);

/// The batch holding an idempotency key: its id, request hash, and first answer's status.
pub type KeyHolder = (Uuid, String, u16);

/// A batch row to insert, committed before the server answers.
#[derive(Debug)]
pub struct NewBatch {
    pub id: Uuid,
    pub mode: Mode,
    pub label: Option<String>,
    pub rules: Rules,
    /// The request body as accepted.
    pub request: String,
    pub tasks_total: usize,
    pub created_at: DateTime<Utc>,
    pub idempotency_key: Option<String>,
    pub request_hash: Option<String>,
    pub answer_status: u16,
    pub instance_id: String,
}

/// What one transaction writes: every batch accepted since the last one, and what ended in
/// every running batch since then.
#[derive(Debug, Default)]
pub struct Writes {
    pub inserts: Vec<NewBatch>,
    pub saves: Vec<Save>,
}

/// A batch's progress: the tasks that ended since the last save, and its fields; a finished
/// batch's (`meta.summary` set) also writes its summary, `wall_ms` and `finished_at`.
#[derive(Debug)]
pub struct Save {
    pub id: Uuid,
    pub meta: BatchMeta,
    pub tasks: Vec<TaskRecord>,
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

/// A durable backend. One implementation covers SQLite and PostgreSQL ([`sql::SqlStore`]).
pub trait Store: Send + Sync + 'static {
    /// Applies a group of writes in one transaction: new batch rows (one [`Inserted`] each, in
    /// order), then ended tasks and batch fields. All or nothing.
    fn write(&self, writes: Writes) -> BoxFuture<'_, Result<Vec<Inserted>, StoreError>>;

    fn load(&self, id: Uuid) -> BoxFuture<'_, Result<Option<BatchRecord>, StoreError>>;

    /// Batches without their tasks, newest first.
    fn list(&self, filter: ListFilter) -> BoxFuture<'_, Result<Vec<BatchRecord>, StoreError>>;

    /// The batch holding an idempotency key: its id, request hash and first answer status.
    fn find_key(&self, key: String) -> BoxFuture<'_, Result<Option<KeyHolder>, StoreError>>;

    /// Renews this instance's heartbeat on its unfinished batches; returns those whose
    /// cancellation another instance requested.
    fn heartbeat(&self, instance: String) -> BoxFuture<'_, Result<Vec<Uuid>, StoreError>>;

    /// Flags an unfinished batch for cancellation by whichever instance runs it.
    fn request_cancel(&self, id: Uuid) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// At start-up: marks `interrupted` this instance's unfinished batches and those whose
    /// heartbeat is older than `stale_before` — never another live instance's.
    fn recover(
        &self,
        instance: String,
        stale_before: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<Vec<Uuid>, StoreError>>;

    /// Deletes finished batches (and their tasks) that finished before the cut-off.
    fn purge(&self, finished_before: DateTime<Utc>) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Whether the database answers.
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>>;
}
