//! [`Batches`]: the batches this instance runs, kept in memory while they run, and written
//! through to the store (if any) by one writer task per batch.
//!
//! With `memory://` there is no store: batches stay in the map until retention drops them, and
//! nothing survives the process. With SQL, a batch leaves the map once its last write is
//! committed; reads of it then come from the database.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use parking_lot::{Mutex, RwLock};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::{Inserted, KeyHolder, ListFilter, NewBatch, Save, Store, StoreError, Writes};
use crate::engine::spec::BatchSpec;
use crate::engine::{Batch, BatchStatus, Busy, Engine};

/// How often a running batch's ended tasks are written, at most.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

pub struct Batches {
    engine: Engine,
    /// `None` for `memory://`.
    store: Option<Arc<dyn Store>>,
    instance_id: String,
    /// Batches this instance runs, and (for `memory://`) every batch it kept.
    live: RwLock<HashMap<Uuid, Arc<Batch>>>,
    /// Idempotency keys of `memory://` batches: key → (batch, request hash, answer status).
    memory_keys: Mutex<HashMap<String, KeyHolder>>,
    /// One lock per idempotency key being accepted, so a repeat waits for the first.
    key_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The one writer task's queue (none for `memory://`).
    writer: Option<mpsc::UnboundedSender<Command>>,
    /// Cancelled at shutdown: the writer ends once every batch it tracks is written.
    closing: CancellationToken,
    writer_done: TaskTracker,
}

/// What the writer is asked to do.
enum Command {
    /// Insert a batch row; answer once it is committed.
    Insert(Box<NewBatch>, oneshot::Sender<Result<Inserted, StoreError>>),
    /// Write this batch's progress until it has finished.
    Track(Arc<Batch>),
    /// A tracked batch finished: write now.
    Flush,
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
    /// Another instance took the idempotency key meanwhile (handled inside `submit`).
    KeyTaken,
}

/// What `cancel` found.
pub enum Found {
    /// Cancelled here; every task has ended.
    Cancelled(Arc<Batch>),
    /// Running on another instance, which was asked to cancel it.
    CancelRequested(Arc<Batch>),
    /// Already finished: nothing to cancel.
    Finished(Arc<Batch>),
    Missing,
}

/// Whether a batch belongs on a list page.
fn matches(filter: &ListFilter, b: &Batch) -> bool {
    filter.status.is_none_or(|s| b.status() == s)
        && filter
            .before
            .is_none_or(|(t, id)| (b.created_at, b.id) < (t, id))
}

impl Batches {
    pub fn new(engine: Engine, store: Option<Arc<dyn Store>>, instance_id: String) -> Arc<Batches> {
        let (tx, rx) = mpsc::unbounded_channel();
        let batches = Arc::new(Batches {
            engine,
            writer: store.as_ref().map(|_| tx),
            store: store.clone(),
            instance_id,
            live: RwLock::default(),
            memory_keys: Mutex::default(),
            key_locks: Mutex::default(),
            closing: CancellationToken::new(),
            writer_done: TaskTracker::new(),
        });
        if let Some(store) = store {
            let writer = write_loop(Arc::downgrade(&batches), store, rx, batches.closing.clone());
            batches.writer_done.spawn(writer);
        }
        batches.writer_done.close();
        batches
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Accepts a batch: stores it (committed before this returns) and starts it.
    pub async fn submit(
        self: &Arc<Self>,
        spec: BatchSpec,
        body: &[u8],
        key: Option<String>,
        answer_status: u16,
    ) -> Result<Submitted, StoreError> {
        let Some(key) = key else {
            return self.create(spec, body, None, answer_status).await;
        };
        let hash = request_hash(body);
        let lock = self
            .key_locks
            .lock()
            .entry(key.clone())
            .or_default()
            .clone();
        let _held = lock.lock().await;
        let result = async {
            // Twice at most: a conflict on insert means another instance took the key meanwhile.
            for _ in 0..2 {
                if let Some((id, first_hash, status)) = self.find_key(&key).await? {
                    if first_hash != hash {
                        return Ok(Submitted::KeyReused);
                    }
                    return match self.get(id).await? {
                        Some(batch) => Ok(Submitted::Replay(batch, status)),
                        None => Err(StoreError(format!(
                            "batch {id} of an idempotency key is gone"
                        ))),
                    };
                }
                let keyed = Some((key.clone(), hash.clone()));
                match self
                    .create(spec.clone(), body, keyed, answer_status)
                    .await?
                {
                    Submitted::KeyTaken => continue,
                    other => return Ok(other),
                }
            }
            Err(StoreError(
                "idempotency key conflict did not resolve".into(),
            ))
        }
        .await;
        drop(_held);
        self.key_locks.lock().remove(&key);
        result
    }

    async fn find_key(&self, key: &str) -> Result<Option<KeyHolder>, StoreError> {
        match &self.store {
            Some(store) => store.find_key(key.to_owned()).await,
            None => Ok(self.memory_keys.lock().get(key).cloned()),
        }
    }

    /// Stores and starts a batch (`KeyTaken` when another instance took its idempotency key
    /// meanwhile, `Busy` when the server has no room for it).
    async fn create(
        self: &Arc<Self>,
        spec: BatchSpec,
        body: &[u8],
        key: Option<(String, String)>,
        answer_status: u16,
    ) -> Result<Submitted, StoreError> {
        let admission = match self.engine.admit(&spec) {
            Ok(a) => a,
            Err(busy) => return Ok(Submitted::Busy(busy)),
        };
        let batch = self.engine.new_batch(&spec);
        match &self.store {
            Some(_) => {
                let row = NewBatch {
                    id: batch.id,
                    mode: batch.mode,
                    label: batch.label.clone(),
                    rules: batch.rules(),
                    request: String::from_utf8_lossy(body).into_owned(),
                    tasks_total: spec.tasks().unwrap_or(0),
                    created_at: batch.created_at,
                    idempotency_key: key.as_ref().map(|k| k.0.clone()),
                    request_hash: key.as_ref().map(|k| k.1.clone()),
                    answer_status,
                    instance_id: self.instance_id.clone(),
                };
                let (done, answer) = oneshot::channel();
                self.send(Command::Insert(Box::new(row), done))?;
                let inserted = answer
                    .await
                    .map_err(|_| StoreError("the writer stopped".into()))??;
                if inserted == Inserted::KeyTaken {
                    return Ok(Submitted::KeyTaken);
                }
            }
            None => {
                if let Some((k, hash)) = key {
                    self.memory_keys
                        .lock()
                        .insert(k, (batch.id, hash, answer_status));
                }
            }
        }
        self.live.write().insert(batch.id, batch.clone());
        tracing::info!(batch_id = %batch.id, tasks = spec.tasks(), mode = ?spec.mode, "batch accepted");
        self.engine.start(batch.clone(), spec, admission);
        if let Some(writer) = &self.writer {
            self.send(Command::Track(batch.clone()))?;
            // Write the end of a batch at once rather than at the writer's next tick.
            let (batch, writer) = (batch.clone(), writer.clone());
            tokio::spawn(async move {
                batch.finished().await;
                let _ = writer.send(Command::Flush);
            });
        }
        Ok(Submitted::New(batch))
    }

    fn send(&self, command: Command) -> Result<(), StoreError> {
        let writer = self
            .writer
            .as_ref()
            .ok_or_else(|| StoreError("no writer".into()))?;
        writer
            .send(command)
            .map_err(|_| StoreError("the writer stopped".into()))
    }

    /// A batch as it is now: from memory when this instance runs it, else from the store.
    pub async fn get(&self, id: Uuid) -> Result<Option<Arc<Batch>>, StoreError> {
        if let Some(b) = self.live.read().get(&id) {
            return Ok(Some(b.clone()));
        }
        match &self.store {
            Some(store) => Ok(store.load(id).await?.map(Batch::restore)),
            None => Ok(None),
        }
    }

    /// Batches newest first, without their tasks.
    pub async fn list(&self, filter: ListFilter) -> Result<Vec<Arc<Batch>>, StoreError> {
        match &self.store {
            Some(store) => {
                // The batches this instance runs are more up to date in memory than in the
                // database (whose status lags by up to a flush): judge those by memory. The
                // snapshot comes first: a batch that leaves memory after it has had its last
                // write, so one missing from the snapshot is up to date in the query below.
                let live: HashMap<Uuid, Arc<Batch>> = self.live.read().clone();
                let records = store.list(filter.clone()).await?;
                let mut all: Vec<Arc<Batch>> = live
                    .values()
                    .filter(|b| matches(&filter, b))
                    .cloned()
                    .collect();
                all.extend(
                    records
                        .into_iter()
                        .filter(|r| !live.contains_key(&r.id))
                        .map(Batch::restore),
                );
                all.sort_by_key(|b| std::cmp::Reverse((b.created_at, b.id)));
                all.truncate(filter.limit);
                Ok(all)
            }
            None => {
                let mut all = self.live_matching(&filter);
                all.sort_by_key(|b| std::cmp::Reverse((b.created_at, b.id)));
                all.truncate(filter.limit);
                Ok(all)
            }
        }
    }

    fn live_matching(&self, filter: &ListFilter) -> Vec<Arc<Batch>> {
        self.live
            .read()
            .values()
            .filter(|b| matches(filter, b))
            .cloned()
            .collect()
    }

    /// Cancels what still runs of a batch (DELETE).
    pub async fn cancel(&self, id: Uuid) -> Result<Found, StoreError> {
        let live = self.live.read().get(&id).cloned();
        if let Some(batch) = live {
            if batch.is_finished() {
                return Ok(Found::Finished(batch));
            }
            batch.cancel_by_client();
            // Cancelling drops the task futures; the batch records them at once.
            let _ = tokio::time::timeout(Duration::from_secs(5), batch.finished()).await;
            return Ok(Found::Cancelled(batch));
        }
        let Some(store) = &self.store else {
            return Ok(Found::Missing);
        };
        let Some(record) = store.load(id).await? else {
            return Ok(Found::Missing);
        };
        let batch = Batch::restore(record);
        if batch.is_finished() {
            return Ok(Found::Finished(batch));
        }
        store.request_cancel(id).await?;
        Ok(Found::CancelRequested(batch))
    }

    /// Whether the store answers (always, for `memory://`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        match &self.store {
            Some(store) => store.ping().await,
            None => Ok(()),
        }
    }

    /// At start-up: marks interrupted what this instance (in a previous life) left unfinished,
    /// and what instances that stopped heart-beating left.
    pub async fn recover(&self, stale_after: Duration) -> Result<u64, StoreError> {
        let Some(store) = &self.store else {
            return Ok(0);
        };
        let stale_before = Utc::now() - chrono::Duration::from_std(stale_after).unwrap_or_default();
        let ids = store
            .recover(self.instance_id.clone(), stale_before)
            .await?;
        // Give each its summary now, so that lists show what ended and what was interrupted.
        for &id in &ids {
            if let Some(record) = store.load(id).await? {
                let meta = Batch::restore(record).meta();
                let save = Save {
                    id,
                    meta,
                    tasks: Vec::new(),
                };
                let writes = Writes {
                    inserts: Vec::new(),
                    saves: vec![save],
                };
                store.write(writes).await?;
            }
        }
        Ok(ids.len() as u64)
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
        if self.store.is_some() {
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(heartbeat_every);
                loop {
                    tokio::select! {
                        _ = stop2.cancelled() => return,
                        _ = tick.tick() => this.heartbeat().await,
                    }
                }
            });
        }
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
        let Some(store) = &self.store else { return };
        match store.heartbeat(self.instance_id.clone()).await {
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
        match &self.store {
            Some(store) => match store.purge(cutoff).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "retention: deleted finished batches"),
                Err(e) => tracing::warn!(error = %e, "retention failed"),
            },
            None => {
                let mut live = self.live.write();
                let before = live.len();
                live.retain(|_, b| b.finished_at().is_none_or(|f| f >= cutoff));
                let kept: std::collections::HashSet<Uuid> = live.keys().copied().collect();
                drop(live);
                self.memory_keys
                    .lock()
                    .retain(|_, (id, _, _)| kept.contains(id));
                let n = before - kept.len();
                if n > 0 {
                    tracing::info!(deleted = n, "retention: dropped finished batches");
                }
            }
        }
    }

    /// Waits for the writer's last commit (after the engine stopped the batches).
    pub async fn flush(&self) {
        self.closing.cancel();
        self.writer_done.wait().await;
    }
}

/// A batch the writer keeps writing, and how far it got.
struct Tracked {
    batch: Arc<Batch>,
    /// How many of its ended tasks (in completion order) are written.
    written: usize,
    status: Option<BatchStatus>,
}

type Waiter = oneshot::Sender<Result<Inserted, StoreError>>;

/// The one writer: every turn (at most every [`FLUSH_EVERY`], or at once when a new batch
/// waits for its commit) it writes, in one transaction, every batch accepted since the last
/// turn and every task that ended since then in every batch it tracks. Under load a commit
/// carries many batches, so the database sees far fewer transactions than requests.
async fn write_loop(
    batches: std::sync::Weak<Batches>,
    store: Arc<dyn Store>,
    mut rx: mpsc::UnboundedReceiver<Command>,
    closing: CancellationToken,
) {
    let mut tracked: Vec<Tracked> = Vec::new();
    let mut inserts: Vec<(NewBatch, Waiter)> = Vec::new();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            command = rx.recv() => match command {
                Some(c) => take(c, &mut tracked, &mut inserts),
                None => return,
            },
            _ = tick.tick() => {}
            _ = closing.cancelled(), if tracked.is_empty() => {}
        }
        while let Ok(c) = rx.try_recv() {
            take(c, &mut tracked, &mut inserts);
        }
        if closing.is_cancelled() && tracked.is_empty() && inserts.is_empty() {
            return;
        }

        let mut saves = Vec::new();
        let mut marks = Vec::new();
        for (i, t) in tracked.iter().enumerate() {
            let crate::engine::batch::stored::Changes {
                tasks,
                ended: upto,
                meta,
            } = t.batch.changes_since(t.written);
            let finished = meta.finished_at.is_some();
            if tasks.is_empty() && !finished && t.status == Some(meta.status) {
                continue;
            }
            marks.push((i, upto, meta.status, finished));
            saves.push(Save {
                id: t.batch.id,
                meta,
                tasks,
            });
        }
        if saves.is_empty() && inserts.is_empty() {
            continue;
        }
        let rows: usize = saves.iter().map(|s| s.tasks.len()).sum();
        let (new, began) = (inserts.len(), std::time::Instant::now());
        let (rows_in, waiters): (Vec<NewBatch>, Vec<Waiter>) = inserts.drain(..).unzip();
        match store
            .write(Writes {
                inserts: rows_in,
                saves,
            })
            .await
        {
            Ok(results) => {
                let took_ms = began.elapsed().as_millis() as u64;
                tracing::debug!(new, rows, took_ms, "written");
                for (done, result) in waiters.into_iter().zip(results) {
                    let _ = done.send(Ok(result));
                }
                let mut finished_ids = Vec::new();
                for (i, upto, status, finished) in marks {
                    tracked[i].written = upto;
                    tracked[i].status = Some(status);
                    if finished {
                        finished_ids.push(tracked[i].batch.id);
                    }
                }
                tracked.retain(|t| !finished_ids.contains(&t.batch.id));
                if let Some(batches) = batches.upgrade() {
                    // Written for good: from now on the database serves these.
                    let mut live = batches.live.write();
                    for id in &finished_ids {
                        live.remove(id);
                    }
                }
            }
            Err(e) => {
                // New batches are refused (their clients get a 500); progress stays in memory
                // and is written again next turn.
                tracing::error!(error = %e, "writing to the store failed; retrying");
                for done in waiters {
                    let _ = done.send(Err(StoreError(e.0.clone())));
                }
                tokio::time::sleep(FLUSH_EVERY).await;
            }
        }
    }
}

fn take(command: Command, tracked: &mut Vec<Tracked>, inserts: &mut Vec<(NewBatch, Waiter)>) {
    match command {
        Command::Insert(row, done) => inserts.push((*row, done)),
        Command::Track(batch) => tracked.push(Tracked {
            batch,
            written: 0,
            status: None,
        }),
        Command::Flush => {}
    }
}

/// SHA-256 of the request's JSON with object keys sorted: the same JSON, however spelled,
/// hashes the same.
pub fn request_hash(body: &[u8]) -> String {
    fn canonical(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String(k.clone()).to_string());
                    out.push(':');
                    canonical(&map[k], out);
                }
                out.push('}');
            }
            serde_json::Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    canonical(item, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut text = String::new();
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => canonical(&v, &mut text),
        Err(_) => text = String::from_utf8_lossy(body).into_owned(),
    }
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::request_hash;

    #[test]
    fn the_same_json_spelled_differently_hashes_the_same() {
        let a = request_hash(br#"{"jobs":[{"kind":"sleep","duration_ms":1}],"label":"x"}"#);
        let b = request_hash(
            b"{ \"label\": \"x\",\n \"jobs\": [ {\"duration_ms\": 1, \"kind\": \"sleep\"} ] }",
        );
        let c = request_hash(br#"{"jobs":[{"kind":"sleep","duration_ms":2}],"label":"x"}"#);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
