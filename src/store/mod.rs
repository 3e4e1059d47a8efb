//! Where accepted batches live: the [`Store`] trait, its rows and statements. It knows rows,
//! leases and checkpoints, not roles or request types; [`crate::service`] decides what to
//! store and when.
//!
//! - `idempotency`: idempotency keys (the per-key locks and the request hash).
//! - [`sql`]: SQLite and PostgreSQL, written through a group-commit writer; [`memory`]:
//!   `memory://`, which keeps nothing across a restart.

pub mod idempotency;
pub mod memory;
pub mod sql;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use uuid::Uuid;

use crate::engine::Batch;
use crate::engine::BatchStatus;
use crate::engine::batch::Checkpoint;
use crate::engine::batch::Rules;
use crate::engine::spec::{Mode, OnLost, Stripe};
use crate::engine::summary::{Lost, SummaryAcc};
use crate::engine::task::TaskRecord;

pub use sql::SqliteSync;

/// Opens the store a `--database-url` names.
/// `lease` is `--stale-after`: a transaction left open (its instance cut off from the
/// database mid-write) is ended by PostgreSQL within half of it, so that the locks it holds do
/// not keep its shards from being claimed again.
pub async fn open(
    url: &str,
    sync: SqliteSync,
    lease: std::time::Duration,
) -> Result<Arc<dyn Store>, StoreError> {
    if url == "memory://" || url == "memory:" {
        return Ok(Arc::new(memory::MemoryStore::default()));
    }
    if !(url.starts_with("sqlite:")
        || url.starts_with("postgres://")
        || url.starts_with("postgresql://"))
    {
        return Err(StoreError::Setup(format!(
            "unsupported database URL (use sqlite://FILE, postgres://..., or memory://): {}",
            url.split('@').next_back().unwrap_or_default()
        )));
    }
    let store = sql::SqlStore::open(url, sync, lease).await?;
    tracing::info!(backend = store.backend(), "store ready, schema up to date");
    Ok(Arc::new(store))
}

/// A storage failure, by what a caller can do about it; its details are logged, never sent
/// to clients.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database did not answer or refused the statement, or the writer stopped: the
    /// same call may work later.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A write that kept losing to another instance's (an idempotency key taken meanwhile).
    #[error("storage conflict: {0}")]
    Conflict(String),
    /// A row the store had committed is not there.
    #[error("storage: missing {0}")]
    Missing(String),
    /// A stored row that does not read back.
    #[error("storage: corrupt row: {0}")]
    Corrupt(String),
    /// The store cannot be opened as configured (its URL, its file, its schema).
    #[error("storage: {0}")]
    Setup(String),
}

/// The batch holding an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyHolder {
    pub batch: Uuid,
    /// The hash of the request it was accepted with (`idempotency::request_hash`).
    pub request_hash: String,
    /// The HTTP status its client was first answered with.
    pub first_status: u16,
}

/// The process that holds leases: its instance id, and a token of its own start (a restart
/// under the same instance id holds nothing of its previous life).
#[derive(Debug, Clone)]
pub struct Owner {
    pub instance_id: String,
    pub token: String,
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
    pub on_lost: OnLost,
    /// Each shard's task count (one shard unless a load run was cut).
    pub shards: Vec<u64>,
    /// The accepting process runs the one shard itself: claimed at once, attempt 1, with
    /// this lease.
    pub claimed: Option<(String, DateTime<Utc>)>,
}

/// A shard's run, as the writer fences its writes: they change something only while this
/// attempt holds the shard.
#[derive(Debug, Clone)]
pub struct ShardRun {
    pub index: u32,
    pub attempt: u64,
    /// Shards in the batch; with more than one, the run's tasks are a stripe of the batch's.
    pub count: u32,
    pub owner: String,
    /// Cancelled when a write finds the shard taken over: the run has lost its lease.
    pub lost: tokio_util::sync::CancellationToken,
}

impl ShardRun {
    pub fn stripe(&self) -> Stripe {
        Stripe::shard(self.index as usize, self.count as usize)
    }
}

/// A shard this process claimed, with what it needs to run it.
#[derive(Debug)]
pub struct Claimed {
    pub batch_id: Uuid,
    pub index: u32,
    pub attempt: u64,
    pub count: u32,
    pub tasks: u64,
    /// The request body as accepted.
    pub request: String,
    pub created_at: DateTime<Utc>,
    pub on_lost: OnLost,
    /// Its stored task rows (batch task numbers) and last checkpoint.
    pub rows: Vec<TaskRecord>,
    pub checkpoint: Option<Checkpoint>,
    /// When it was last checkpointed (or started), for the gap a re-claim closes.
    pub checkpoint_at: Option<DateTime<Utc>>,
    /// Its earlier losses, with the one this claim closes.
    pub lost: Option<Lost>,
    /// A client asked to cancel the batch.
    pub cancel_requested: bool,
    /// When it joined the queue.
    pub queued_at: Option<DateTime<Utc>>,
}

/// What one lease renewal found.
#[derive(Debug, Default)]
pub struct Renewal {
    /// The shards this process still holds: (batch, shard, attempt).
    pub held: Vec<(Uuid, u32, u64)>,
    /// Batches of held shards that a client asked to cancel.
    pub cancelled: Vec<Uuid>,
}

/// One instance sharing the store, as `GET /instances` lists it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct InstanceInfo {
    pub instance_id: String,
    /// `all`, `api` or `worker`.
    pub role: String,
    #[schema(value_type = String, format = DateTime)]
    pub started_at: DateTime<Utc>,
    #[schema(value_type = String, format = DateTime)]
    pub heartbeat_at: DateTime<Utc>,
    pub running_shards: u64,
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

/// Which task rows [`Store::rows`] reads: those of tasks that started, and of them those that
/// started at or after `started_from`, before `started_before`, and ended at or after
/// `ended_from` or have not ended (each bound only when given).
#[derive(Debug, Clone, Copy, Default)]
pub struct RowWindow {
    pub started_from: Option<DateTime<Utc>>,
    pub started_before: Option<DateTime<Utc>>,
    pub ended_from: Option<DateTime<Utc>>,
}

/// What [`Store::rows`] found: how many rows matched, and the rows when they were few enough.
#[derive(Debug, Default)]
pub struct Rows {
    pub matched: usize,
    /// Empty when more than the limit matched.
    pub records: Vec<TaskRecord>,
}

/// A backend: SQLite and PostgreSQL ([`sql::SqlStore`], which groups its writes), or this
/// process's memory ([`memory::MemoryStore`]).
pub trait Store: Send + Sync + 'static {
    /// Stores a new batch's row; resolves once it is committed (before the server answers).
    fn insert(&self, row: NewBatch) -> BoxFuture<'_, Result<Inserted, StoreError>>;

    /// Writes a running shard's progress as it goes, fenced by its attempt; resolves once it
    /// has finished and its last write is committed (from then on the store serves it), or
    /// once a write found it taken over (`run.lost` is then cancelled).
    fn follow(&self, batch: Arc<Batch>, run: ShardRun) -> BoxFuture<'static, ()>;

    /// A batch as stored.
    fn load(&self, id: Uuid) -> BoxFuture<'_, Result<Option<Arc<Batch>>, StoreError>>;

    /// A finished batch as stored, without its task rows (as [`Store::list`] gives it): for
    /// reads that show none of them. A batch still running, or a store that keeps batches in
    /// memory, gives it whole, as [`Store::load`] does.
    fn load_head(&self, id: Uuid) -> BoxFuture<'_, Result<Option<Arc<Batch>>, StoreError>>;

    /// A batch's task rows in `window`, in start order, as written (`load` also ends the
    /// unended tasks of an interrupted batch), unless more than `limit` match.
    /// `None` from a store that keeps batches whole in memory (read them with `load`).
    fn rows(
        &self,
        id: Uuid,
        window: RowWindow,
        limit: usize,
    ) -> BoxFuture<'_, Result<Option<Rows>, StoreError>>;

    /// Whether a batch has finished (`None`: no such batch): a cheap read for polling.
    fn is_finished(&self, id: Uuid) -> BoxFuture<'_, Result<Option<bool>, StoreError>>;

    /// The request body a batch was accepted with (for `rerun`).
    fn request(&self, id: Uuid) -> BoxFuture<'_, Result<Option<String>, StoreError>>;

    /// A batch's running totals merged from its shards' checkpoints (the page's histograms
    /// and time bins); `None` when no checkpoint carries them.
    fn totals(&self, id: Uuid) -> BoxFuture<'_, Result<Option<SummaryAcc>, StoreError>>;

    /// Batches without their tasks, newest first.
    fn list(&self, filter: ListFilter) -> BoxFuture<'_, Result<Vec<Arc<Batch>>, StoreError>>;

    /// The batch holding an idempotency key.
    fn find_key(&self, key: String) -> BoxFuture<'_, Result<Option<KeyHolder>, StoreError>>;

    /// Renews the leases this process holds, until `lease_until`; says which it still holds
    /// and which of their batches a client asked to cancel.
    fn renew(
        &self,
        owner: Owner,
        lease_until: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<Renewal, StoreError>>;

    /// Records this instance's own heartbeat (for `GET /instances` and fair claiming).
    fn beat(&self, instance: InstanceInfo) -> BoxFuture<'_, Result<(), StoreError>>;

    /// The instances whose heartbeat is after `seen_after`.
    fn instances(
        &self,
        seen_after: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<Vec<InstanceInfo>, StoreError>>;

    /// Claims up to `limit` queued shards (oldest batch first), each as a new attempt under
    /// a lease until `lease_until`.
    fn claim(
        &self,
        owner: Owner,
        lease_until: DateTime<Utc>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Claimed>, StoreError>>;

    /// Lets a lease this process holds run out now: its run here was stopped (the lease was
    /// taken for lost), so the rescuer gives the shard to another attempt.
    fn abandon(
        &self,
        owner: Owner,
        batch: Uuid,
        index: u32,
        attempt: u64,
    ) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Gives back a claimed shard this process cannot run after all.
    fn release(
        &self,
        batch: Uuid,
        index: u32,
        attempt: u64,
    ) -> BoxFuture<'_, Result<(), StoreError>>;

    /// The rescuer's turn: shards whose lease expired before `now` go back to the queue
    /// (`on_lost: rerun`) or are claimed here to be ended `interrupted`; batches whose
    /// shards have all ended are closed. Returns the shards claimed to be interrupted.
    fn rescue(
        &self,
        owner: Owner,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<Vec<Claimed>, StoreError>>;

    /// Flags an unfinished batch for cancellation by whichever instances run its shards, and
    /// ends its queued shards `cancelled` (closing the batch when nothing of it runs).
    fn request_cancel(&self, id: Uuid) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// At start-up: the leases this instance held in an earlier life expire now (SQLite, one
    /// process's file: every lease), so the rescuer deals with them at once. Returns how many.
    fn recover(&self, instance: String) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Shards queued or running, across every instance (for a worker's fair share).
    fn active_shards(&self) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Wakes when another instance queued shards (PostgreSQL's NOTIFY); `None` when the
    /// store cannot tell, and workers poll.
    fn queued_signal(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    /// Deletes finished batches (and their tasks) that finished before the cut-off.
    fn purge(&self, finished_before: DateTime<Utc>) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Whether the database answers.
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// At shutdown, once every batch has ended: resolves when every write is committed.
    fn close(&self) -> BoxFuture<'_, ()>;
}
