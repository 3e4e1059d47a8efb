//! [`Batches`]: the batches this instance runs, kept in memory while they run and written
//! through to the store as they go; a batch leaves memory once its last write is committed,
//! and reads of it then come from the store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use futures::FutureExt;
use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::idempotency::{KeyLocks, request_hash};
use super::{Inserted, KeyHolder, ListFilter, NewBatch, Store, StoreError};
use crate::engine::spec::BatchSpec;
use crate::engine::{Batch, Busy, Engine};

pub struct Batches {
    engine: Engine,
    store: Arc<dyn Store>,
    instance_id: String,
    /// The batches this instance runs, until their last write is committed.
    live: RwLock<HashMap<Uuid, Arc<Batch>>>,
    keys: KeyLocks,
}

/// What `submit` did.
pub enum Submitted {
    /// A new batch, now running.
    New(Arc<Batch>),
    /// The idempotency key's first batch, with the status code it was first answered with.
    Replay(Arc<Batch>, u16),
    /// The idempotency key belongs to a batch with another body.
    KeyReused,
    /// The server's bound on running and waiting tasks has no room for it.
    Busy(Busy),
}

/// What `create` did: `submit`'s outcomes, or a key that another instance took meanwhile.
enum Created {
    Done(Submitted),
    KeyTaken,
}

/// What a cancel (DELETE) found.
pub enum Cancelled {
    /// Cancelled here; every task has ended.
    Here(Arc<Batch>),
    /// Running on another instance, which was asked to cancel it.
    Requested(Arc<Batch>),
    /// Already finished: nothing to cancel.
    AlreadyFinished(Arc<Batch>),
    Missing,
}

impl Batches {
    pub fn new(engine: Engine, store: Arc<dyn Store>, instance_id: String) -> Arc<Batches> {
        Arc::new(Batches {
            engine,
            store,
            instance_id,
            live: RwLock::default(),
            keys: KeyLocks::default(),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Accepts a batch: stores it (committed before this returns) and starts it.
    /// `status` is the HTTP status its client is answered with, kept for a repeat of its
    /// idempotency key.
    pub async fn submit(
        self: &Arc<Self>,
        spec: BatchSpec,
        body: Bytes,
        key: Option<String>,
        status: u16,
    ) -> Result<Submitted, StoreError> {
        let Some(key) = key else {
            return match self.create(spec, &body, None, status).await? {
                Created::Done(submitted) => Ok(submitted),
                Created::KeyTaken => Err(StoreError(
                    "the store reported a key conflict for a batch without a key".into(),
                )),
            };
        };
        let hash = request_hash(&body);
        self.keys
            .with(&key, async {
                // Twice at most: a conflict on insert means another instance took the key
                // meanwhile.
                for _ in 0..2 {
                    if let Some(holder) = self.store.find_key(key.clone()).await? {
                        return self.replay(holder, &hash).await;
                    }
                    let keyed = Some((key.clone(), hash.clone()));
                    match self.create(spec.clone(), &body, keyed, status).await? {
                        Created::KeyTaken => continue,
                        Created::Done(submitted) => return Ok(submitted),
                    }
                }
                Err(StoreError(
                    "idempotency key conflict did not resolve".into(),
                ))
            })
            .await
    }

    /// The answer to a repeat of an idempotency key.
    async fn replay(&self, holder: KeyHolder, hash: &str) -> Result<Submitted, StoreError> {
        if holder.request_hash != hash {
            return Ok(Submitted::KeyReused);
        }
        match self.get(holder.batch).await? {
            Some(batch) => Ok(Submitted::Replay(batch, holder.first_status)),
            None => Err(StoreError(format!(
                "batch {} of an idempotency key is gone",
                holder.batch
            ))),
        }
    }

    /// Stores and starts a batch (`KeyTaken` when another instance took its idempotency key
    /// meanwhile).
    async fn create(
        self: &Arc<Self>,
        spec: BatchSpec,
        body: &Bytes,
        key: Option<(String, String)>,
        status: u16,
    ) -> Result<Created, StoreError> {
        let admission = match self.engine.admit(&spec) {
            Ok(a) => a,
            Err(busy) => return Ok(Created::Done(Submitted::Busy(busy))),
        };
        let batch = self.engine.new_batch(&spec);
        let (idempotency_key, request_hash) = key.unzip();
        let row = NewBatch {
            id: batch.id,
            mode: batch.mode,
            label: batch.label.clone(),
            rules: batch.rules(),
            request: body.clone(),
            tasks_total: spec.tasks().unwrap_or(0),
            created_at: batch.created_at,
            idempotency_key,
            request_hash,
            answer_status: status,
            instance_id: self.instance_id.clone(),
        };
        if self.store.insert(row).await? == Inserted::KeyTaken {
            return Ok(Created::KeyTaken);
        }
        self.live.write().insert(batch.id, batch.clone());
        tracing::info!(batch_id = %batch.id, tasks = spec.tasks(), mode = ?spec.mode, "batch accepted");
        self.engine.start(batch.clone(), spec, admission);
        // Once written for good, the store serves the batch. A store that keeps the batch
        // itself says so at once, and then it costs no task of its own.
        let mut written = self.store.follow(batch.clone());
        if (&mut written).now_or_never().is_some() {
            self.live.write().remove(&batch.id);
        } else {
            let (this, id) = (Arc::downgrade(self), batch.id);
            tokio::spawn(async move {
                written.await;
                if let Some(this) = this.upgrade() {
                    this.live.write().remove(&id);
                }
            });
        }
        Ok(Created::Done(Submitted::New(batch)))
    }

    /// A batch as it is now: from memory when this instance runs it, else from the store.
    pub async fn get(&self, id: Uuid) -> Result<Option<Arc<Batch>>, StoreError> {
        if let Some(b) = self.live.read().get(&id) {
            return Ok(Some(b.clone()));
        }
        self.store.load(id).await
    }

    /// Batches newest first, without their tasks.
    pub async fn list(&self, filter: ListFilter) -> Result<Vec<Arc<Batch>>, StoreError> {
        // The batches this instance runs are more up to date in memory than in the store
        // (whose status lags by up to a flush): judge those by memory. The snapshot comes
        // first: a batch leaves memory after its last write, so one missing from the snapshot
        // is up to date in the store.
        let live: HashMap<Uuid, Arc<Batch>> = self.live.read().clone();
        let stored = self.store.list(filter.clone()).await?;
        let mut all: Vec<Arc<Batch>> = live
            .values()
            .filter(|b| filter.admits(b))
            .cloned()
            .collect();
        all.extend(stored.into_iter().filter(|b| !live.contains_key(&b.id)));
        all.sort_by_key(|b| std::cmp::Reverse((b.created_at, b.id)));
        all.truncate(filter.limit);
        Ok(all)
    }

    /// Cancels what still runs of a batch (DELETE).
    pub async fn cancel(&self, id: Uuid) -> Result<Cancelled, StoreError> {
        let Some(batch) = self.get(id).await? else {
            return Ok(Cancelled::Missing);
        };
        if batch.is_finished() {
            return Ok(Cancelled::AlreadyFinished(batch));
        }
        if batch.is_live() {
            batch.cancel_by_client();
            // Cancelling drops the task futures; the batch records them at once.
            let _ = tokio::time::timeout(Duration::from_secs(5), batch.finished()).await;
            return Ok(Cancelled::Here(batch));
        }
        self.store.request_cancel(id).await?;
        Ok(Cancelled::Requested(batch))
    }

    /// Whether the store answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.store.ping().await
    }

    /// At start-up: marks interrupted what this instance (in a previous life) left unfinished,
    /// and what instances that stopped heart-beating left.
    pub async fn recover(&self, stale_after: Duration) -> Result<u64, StoreError> {
        let stale_before = Utc::now() - chrono::Duration::from_std(stale_after).unwrap_or_default();
        self.store
            .recover(self.instance_id.clone(), stale_before)
            .await
    }

    /// Heartbeat (and remote cancel requests) and retention, until `stop` is cancelled.
    pub fn start_background(
        self: &Arc<Self>,
        heartbeat_every: Duration,
        retention: Option<Duration>,
        stop: CancellationToken,
    ) {
        let this = self.clone();
        let stop2 = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(heartbeat_every);
            loop {
                tokio::select! {
                    _ = stop2.cancelled() => return,
                    _ = tick.tick() => this.heartbeat().await,
                }
            }
        });
        if let Some(retention) = retention {
            let this = self.clone();
            let every = (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(600));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tick.tick() => this.purge(retention).await,
                    }
                }
            });
        }
    }

    async fn heartbeat(&self) {
        match self.store.heartbeat(self.instance_id.clone()).await {
            Ok(cancelled) => {
                for id in cancelled {
                    if let Some(b) = self.live.read().get(&id) {
                        tracing::info!(batch_id = %id, "cancelled at another instance's request");
                        b.cancel_by_client();
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
        }
    }

    async fn purge(&self, retention: Duration) {
        let cutoff = Utc::now() - chrono::Duration::from_std(retention).unwrap_or_default();
        match self.store.purge(cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "retention: deleted finished batches"),
            Err(e) => tracing::warn!(error = %e, "retention failed"),
        }
    }

    /// Waits for the store's last commit (after the engine stopped the batches).
    pub async fn flush(&self) {
        self.store.close().await;
    }
}
