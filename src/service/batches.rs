//! [`Batches`]: the batches this instance runs, kept in memory while they run and written
//! through to the store as they go; a batch leaves memory once its last write is committed,
//! and reads of it then come from the store. Batches are accepted here ([`Batches::submit`]);
//! their shards run where `worker` claims them, and every shard that runs here, accepted or
//! claimed, is admitted and started by [`Batches::admit`] and [`Batches::launch`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::FutureExt;
use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Role;
use super::baseline::Baseline;
use crate::engine::batch::{Prior, ShardInfo, ShardStatus, StopReason};
use crate::engine::spec::{BatchSpec, Stripe};
use crate::engine::summary::SummaryAcc;
use crate::engine::{Admission, Batch, Busy, Engine};
use crate::request::Limits;
use crate::store::idempotency::{KeyLocks, request_hash};
use crate::store::{Inserted, KeyHolder, ListFilter, NewBatch, Owner, ShardRun, Store, StoreError};

pub struct Batches {
    pub(super) engine: Engine,
    pub(super) store: Arc<dyn Store>,
    /// The batches this instance runs whole, until their last write is committed.
    pub(super) live: RwLock<HashMap<Uuid, Arc<Batch>>>,
    keys: KeyLocks,
    pub(super) cluster: Cluster,
    /// The shards this process runs (of any batch), by (batch, shard).
    pub(super) held: parking_lot::Mutex<HashMap<(Uuid, u32), Held>>,
    /// Wakes this instance's claimer (a batch it accepted queued shards).
    pub(super) wake: tokio::sync::Notify,
    /// Shards whose run here stopped because their lease was taken for lost, (batch, shard,
    /// attempt): the next renewal lets their leases run out rather than renew them.
    pub(super) abandoned: parking_lot::Mutex<Vec<(Uuid, u32, u64)>>,
}

/// How this instance shares work with the others on its store.
#[derive(Clone)]
pub struct Cluster {
    pub role: Role,
    /// This process's leases.
    pub owner: Owner,
    pub started_at: chrono::DateTime<Utc>,
    /// The lease on a running shard (`--stale-after`).
    pub lease: Duration,
    /// Load runs larger than this are cut into shards, on a store instances share.
    pub shard_size: u64,
    /// The store is shared (PostgreSQL): load runs are cut into shards.
    pub shared: bool,
    /// What a claimed batch's request is checked against.
    pub limits: Arc<Limits>,
}

impl Cluster {
    /// One process alone with a store of its own (`fanout run` in-process): it accepts and
    /// runs everything, and shares nothing.
    pub fn alone(limits: Arc<Limits>) -> Cluster {
        Cluster {
            role: Role::All,
            owner: Owner {
                instance_id: "fanout-run".into(),
                token: Uuid::now_v7().to_string(),
            },
            started_at: Utc::now(),
            lease: Duration::from_secs(30),
            shard_size: u64::MAX,
            shared: false,
            limits,
        }
    }
}

/// How many shards a load run is cut into: at least `needed`, and, when its concurrency allows,
/// a divisor of it, so that every shard gets the same share. Shards that share unevenly end
/// unevenly: with 64 slots over 30 shards of 10,000 tasks, the four with 3 slots ended at
/// 2.4 s and the 26 with 2 at 3.3 s, the run's last second at a fraction of its concurrency.
fn shard_count(needed: usize, concurrency: usize) -> usize {
    if concurrency <= needed {
        return needed;
    }
    (needed..=concurrency)
        .find(|n| concurrency.is_multiple_of(*n))
        .unwrap_or(needed)
}

/// A shard this process runs.
pub(super) struct Held {
    pub batch: Arc<Batch>,
    pub run: ShardRun,
    /// When it started here.
    pub since: std::time::Instant,
}

/// A batch to accept, as the edge parsed it.
pub struct Submission {
    pub spec: BatchSpec,
    /// The request body as accepted: stored for reruns and for the instances that claim its
    /// shards.
    pub body: Bytes,
    pub key: Option<String>,
    /// The HTTP status its client is answered with (201, or 202 when it asked to be
    /// answered at once), kept for a repeat of its idempotency key.
    pub status: u16,
    /// Where its baseline checks read their figures from.
    pub baseline: Baseline,
}

/// What `submit` did.
pub enum Submitted {
    /// A new batch, now running.
    New(Arc<Batch>),
    /// The idempotency key's first batch, with the status code it was first answered with.
    Replay(Arc<Batch>, u16),
    /// A new batch whose work runs on whichever instances claim it: as stored.
    Queued(Arc<Batch>),
    /// The idempotency key belongs to a batch with another body.
    KeyReused,
    /// The server's bound on running and waiting tasks has no room for it.
    Busy(Busy),
    /// Its baseline cannot be compared with (`thresholds.baseline.batch`), in words.
    BadBaseline(String),
}

/// How a shard comes to run here.
pub(super) enum Start {
    /// A batch accepted here, new.
    New,
    /// A claimed shard, picked up from what the store kept of it, and ended at once when
    /// `stop` says so.
    Claimed {
        id: Uuid,
        created_at: DateTime<Utc>,
        prior: Box<Prior>,
        stop: Option<StopReason>,
    },
}

/// A shard admitted here: its batch and its room in the engine, ready to
/// [`launch`](Batches::launch).
pub(super) struct Admitted {
    pub batch: Arc<Batch>,
    spec: BatchSpec,
    admission: Admission,
    stop: Option<StopReason>,
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
    pub fn new(engine: Engine, store: Arc<dyn Store>, cluster: Cluster) -> Arc<Batches> {
        Arc::new(Batches {
            engine,
            store,
            live: RwLock::default(),
            keys: KeyLocks::default(),
            cluster,
            held: Default::default(),
            wake: tokio::sync::Notify::new(),
            abandoned: Default::default(),
        })
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// This instance's name (`--instance-id`).
    pub(super) fn instance_id(&self) -> &str {
        &self.cluster.owner.instance_id
    }

    /// Each shard's task count: one shard, unless the store is shared and a load run of a
    /// known size exceeds `--shard-size`.
    fn plan_shards(&self, spec: &BatchSpec) -> Vec<u64> {
        let tasks = spec.tasks().unwrap_or(0);
        let size = self.cluster.shard_size.max(1) as usize;
        if !(self.cluster.shared && spec.load.is_load && tasks > size) {
            return vec![tasks as u64];
        }
        let count = shard_count(tasks.div_ceil(size), spec.concurrency);
        (0..count)
            .map(|i| Stripe::shard(i, count).tasks_of(tasks) as u64)
            .collect()
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Accepts a batch: stores it (committed before this returns) and starts it. The one
    /// entry the HTTP handlers and `fanout run` call.
    pub async fn submit(self: &Arc<Self>, mut sub: Submission) -> Result<Submitted, StoreError> {
        if let Err(why) = self.resolve_baseline(&mut sub.spec, &sub.baseline).await? {
            return Ok(Submitted::BadBaseline(why));
        }
        let Some(key) = sub.key.take() else {
            return match self.create(sub.spec, &sub.body, None, sub.status).await? {
                Created::Done(submitted) => Ok(submitted),
                Created::KeyTaken => Err(StoreError::Conflict(
                    "a key conflict for a batch without a key".into(),
                )),
            };
        };
        let hash = request_hash(&sub.body);
        self.keys
            .with(&key, async {
                // Twice at most: a conflict on insert means another instance took the key
                // meanwhile.
                for _ in 0..2 {
                    if let Some(holder) = self.store.find_key(key.clone()).await? {
                        return self.replay(holder, &hash).await;
                    }
                    let keyed = Some((key.clone(), hash.clone()));
                    match self
                        .create(sub.spec.clone(), &sub.body, keyed, sub.status)
                        .await?
                    {
                        Created::KeyTaken => continue,
                        Created::Done(submitted) => return Ok(submitted),
                    }
                }
                Err(StoreError::Conflict(
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
            None => Err(StoreError::Missing(format!(
                "batch {} of an idempotency key",
                holder.batch
            ))),
        }
    }

    /// Stores and starts a batch (`KeyTaken` when another instance took its idempotency key
    /// meanwhile). A batch of one shard on an instance that runs work is admitted before it
    /// is stored, so that a batch with no room is refused, not stored and left unrun.
    async fn create(
        self: &Arc<Self>,
        spec: BatchSpec,
        body: &Bytes,
        key: Option<(String, String)>,
        status: u16,
    ) -> Result<Created, StoreError> {
        let shards = self.plan_shards(&spec);
        let tasks = spec.tasks().unwrap_or(0);
        let on_lost = spec.on_lost_for(status == 202);
        let here = self.cluster.role.runs_work() && shards.len() == 1;
        let (batch, admitted) = if here {
            match self.admit(spec, Start::New) {
                Ok(admitted) => (admitted.batch.clone(), Some(admitted)),
                Err(busy) => return Ok(Created::Done(Submitted::Busy(busy))),
            }
        } else {
            // Only its row is made here: whichever instances claim its shards run them.
            (self.engine.new_batch(&spec), None)
        };
        let (idempotency_key, request_hash) = key.unzip();
        let lease_until =
            Utc::now() + chrono::Duration::from_std(self.cluster.lease).unwrap_or_default();
        let row = NewBatch {
            id: batch.id,
            mode: batch.mode,
            label: batch.label.clone(),
            rules: batch.rules(),
            request: body.clone(),
            tasks_total: tasks,
            created_at: batch.created_at,
            idempotency_key,
            request_hash,
            answer_status: status,
            instance_id: self.instance_id().to_owned(),
            on_lost,
            shards,
            claimed: here.then(|| (self.cluster.owner.token.clone(), lease_until)),
        };
        let (id, shard_count) = (row.id, row.shards.len());
        if self.store.insert(row).await? == Inserted::KeyTaken {
            return Ok(Created::KeyTaken);
        }
        tracing::info!(batch_id = %id, tasks, shards = shard_count, "batch accepted");
        let Some(admitted) = admitted else {
            // Its shards are queued for whichever workers have room (this one too).
            self.wake.notify_one();
            let stored = self
                .store
                .load(id)
                .await?
                .ok_or_else(|| StoreError::Missing(format!("batch {id} after its commit")))?;
            return Ok(Created::Done(Submitted::Queued(stored)));
        };
        let run = ShardRun {
            index: 0,
            attempt: 1,
            count: 1,
            owner: self.cluster.owner.token.clone(),
            lost: CancellationToken::new(),
        };
        Ok(Created::Done(Submitted::New(self.launch(
            admitted,
            run,
            tasks as u64,
        ))))
    }

    /// Admits a shard to run here: reserves its room in the engine (none for one that ends
    /// at once) and makes its batch, new or picked up from the store's.
    pub(super) fn admit(&self, mut spec: BatchSpec, start: Start) -> Result<Admitted, Busy> {
        let stop = match &start {
            Start::New => None,
            Start::Claimed { stop, .. } => *stop,
        };
        let admission = match stop {
            Some(_) => self.engine.admit_none(),
            None => self.engine.admit(&spec)?,
        };
        let batch = match start {
            Start::New => self.engine.new_batch(&spec),
            Start::Claimed {
                id,
                created_at,
                prior,
                ..
            } => self.engine.resume_batch(id, created_at, &mut spec, *prior),
        };
        Ok(Admitted {
            batch,
            spec,
            admission,
            stop,
        })
    }

    /// Starts an admitted shard of `tasks` tasks as `run` and writes it through.
    pub(super) fn launch(
        self: &Arc<Self>,
        admitted: Admitted,
        run: ShardRun,
        tasks: u64,
    ) -> Arc<Batch> {
        let Admitted {
            batch,
            spec,
            admission,
            stop,
        } = admitted;
        batch.set_shards(vec![self.shard_info(&run, tasks)]);
        match stop {
            Some(StopReason::Cancelled) => batch.cancel_by_client(),
            Some(reason) => batch.stop(reason),
            None => {}
        }
        self.run_here(batch.clone(), spec, admission, run);
        batch
    }

    /// What answers show of a shard this process runs.
    fn shard_info(&self, run: &ShardRun, tasks: u64) -> ShardInfo {
        ShardInfo {
            index: run.index,
            tasks,
            instance_id: Some(self.instance_id().to_owned()),
            attempt: run.attempt,
            status: ShardStatus::Running,
            // Its first task's start, once it has one.
            started_at: None,
            finished_at: None,
        }
    }

    /// Runs a shard here and writes it through, until its last write is committed or it is
    /// lost. A whole batch (one shard) is served from memory meanwhile.
    fn run_here(
        self: &Arc<Self>,
        batch: Arc<Batch>,
        spec: BatchSpec,
        admission: Admission,
        run: ShardRun,
    ) {
        let whole = run.count == 1;
        let key = (batch.id, run.index);
        if whole {
            self.live.write().insert(batch.id, batch.clone());
        }
        self.held.lock().insert(
            key,
            Held {
                batch: batch.clone(),
                run: run.clone(),
                since: std::time::Instant::now(),
            },
        );
        self.engine.start(batch.clone(), spec, admission);
        // Once written for good, the store serves the batch. A store that keeps the batch
        // itself says so at once, and then it costs no task of its own.
        let mut written = self.store.follow(batch.clone(), run.clone());
        if (&mut written).now_or_never().is_some() {
            self.forget(key, whole);
            return;
        }
        let this = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::select! {
                _ = &mut written => {}
                _ = run.lost.cancelled() => {
                    // Another instance runs it now: stop this copy (its writes are refused).
                    metrics::counter!("fanout_shards_lost_total").increment(1);
                    if let Some(this) = this.upgrade() {
                        this.abandoned.lock().push((batch.id, run.index, run.attempt));
                    }
                    tracing::warn!(batch_id = %batch.id, shard = run.index, "stopping a shard whose lease was lost");
                    batch.stop(StopReason::Interrupted);
                    written.await;
                }
            }
            if let Some(this) = this.upgrade() {
                this.forget(key, whole);
            }
        });
    }

    fn forget(&self, key: (Uuid, u32), whole: bool) {
        self.held.lock().remove(&key);
        if whole {
            self.live.write().remove(&key.0);
        }
    }

    /// A batch as it is now: from memory when this instance runs it, else from the store.
    pub async fn get(&self, id: Uuid) -> Result<Option<Arc<Batch>>, StoreError> {
        if let Some(b) = self.live.read().get(&id) {
            return Ok(Some(b.clone()));
        }
        self.store.load(id).await
    }

    /// A batch's running totals, for its picture: live here, else merged from its shards'
    /// checkpoints.
    pub async fn totals(&self, batch: &Batch) -> Result<Option<SummaryAcc>, StoreError> {
        if let Some(acc) = batch.totals() {
            return Ok(Some(acc));
        }
        self.store.totals(batch.id).await
    }

    /// The request body a batch was accepted with.
    pub async fn request(&self, id: Uuid) -> Result<Option<String>, StoreError> {
        self.store.request(id).await
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
        // Its queued shards end now, those running elsewhere at their next renewal, and
        // those running here at once.
        self.store.request_cancel(id).await?;
        let here: Vec<Arc<Batch>> = self
            .held
            .lock()
            .iter()
            .filter(|((b, _), _)| *b == id)
            .map(|(_, h)| h.batch.clone())
            .collect();
        for shard in here {
            shard.cancel_by_client();
        }
        match self.store.load(id).await? {
            Some(now) if now.is_finished() => Ok(Cancelled::Here(now)),
            Some(now) => Ok(Cancelled::Requested(now)),
            None => Ok(Cancelled::Missing),
        }
    }

    /// Whether the store answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.store.ping().await
    }

    /// Retention, until `stop` is cancelled.
    pub fn start_retention(self: &Arc<Self>, retention: Duration, stop: CancellationToken) {
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

#[cfg(test)]
mod tests {
    use super::shard_count;

    #[test]
    fn shards_share_the_concurrency_evenly_when_they_can() {
        assert_eq!(shard_count(30, 64), 32);
        assert_eq!(shard_count(3, 64), 4);
        assert_eq!(shard_count(12, 24), 12);
        assert_eq!(shard_count(7, 10), 10);
        assert_eq!(shard_count(30, 16), 30, "fewer slots than shards: one each");
        assert_eq!(shard_count(1, 64), 1);
    }
}
