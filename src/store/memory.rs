//! `memory://`: a [`Store`] in this process's memory, which keeps each batch itself (not rows
//! copied from it) from the moment it is accepted. Nothing outlives the process, so there is
//! nothing to recover and no other instance to hear from; retention still applies.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use parking_lot::Mutex;
use uuid::Uuid;

use super::{
    Claimed, Inserted, InstanceInfo, KeyHolder, ListFilter, NewBatch, Owner, Renewal, RowWindow,
    Rows, ShardRun, Store, StoreError,
};
use crate::engine::Batch;
use crate::engine::summary::SummaryAcc;

/// Every batch accepted, and the idempotency keys they hold.
#[derive(Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    /// This process, the one instance there is.
    instance: Mutex<Option<InstanceInfo>>,
}

#[derive(Default)]
struct State {
    batches: HashMap<Uuid, Arc<Batch>>,
    /// Each batch's request body, as accepted.
    requests: HashMap<Uuid, bytes::Bytes>,
    keys: HashMap<String, KeyHolder>,
}

impl Store for MemoryStore {
    fn insert(&self, row: NewBatch) -> BoxFuture<'_, Result<Inserted, StoreError>> {
        let mut st = self.state.lock();
        let inserted = match (row.idempotency_key, row.request_hash) {
            (Some(key), _) if st.keys.contains_key(&key) => Inserted::KeyTaken,
            (Some(key), Some(request_hash)) => {
                let holder = KeyHolder {
                    batch: row.id,
                    request_hash,
                    first_status: row.answer_status,
                };
                st.keys.insert(key, holder);
                Inserted::New
            }
            _ => Inserted::New,
        };
        if inserted == Inserted::New {
            // A copy of its own: the body is a view of the connection's read buffer (8 KB or
            // more), which keeping the view would keep as long as the batch.
            st.requests
                .insert(row.id, bytes::Bytes::copy_from_slice(&row.request));
        }
        Box::pin(std::future::ready(Ok(inserted)))
    }

    /// Keeps the batch itself, which is always up to date: written for good at once.
    fn follow(&self, batch: Arc<Batch>, _run: ShardRun) -> BoxFuture<'static, ()> {
        self.state.lock().batches.insert(batch.id, batch);
        Box::pin(std::future::ready(()))
    }

    fn load(&self, id: Uuid) -> BoxFuture<'_, Result<Option<Arc<Batch>>, StoreError>> {
        let batch = self.state.lock().batches.get(&id).cloned();
        Box::pin(std::future::ready(Ok(batch)))
    }

    fn load_head(&self, id: Uuid) -> BoxFuture<'_, Result<Option<Arc<Batch>>, StoreError>> {
        self.load(id)
    }

    fn rows(
        &self,
        _id: Uuid,
        _window: RowWindow,
        _limit: usize,
    ) -> BoxFuture<'_, Result<Option<Rows>, StoreError>> {
        Box::pin(std::future::ready(Ok(None)))
    }

    fn is_finished(&self, id: Uuid) -> BoxFuture<'_, Result<Option<bool>, StoreError>> {
        let finished = self.state.lock().batches.get(&id).map(|b| b.is_finished());
        Box::pin(std::future::ready(Ok(finished)))
    }

    fn request(&self, id: Uuid) -> BoxFuture<'_, Result<Option<String>, StoreError>> {
        let body = self.state.lock().requests.get(&id).cloned();
        let text = body.map(|b| String::from_utf8_lossy(&b).into_owned());
        Box::pin(std::future::ready(Ok(text)))
    }

    fn totals(&self, _id: Uuid) -> BoxFuture<'_, Result<Option<SummaryAcc>, StoreError>> {
        // Every batch stays in memory with its totals live: nothing is read back.
        Box::pin(std::future::ready(Ok(None)))
    }

    fn list(&self, filter: ListFilter) -> BoxFuture<'_, Result<Vec<Arc<Batch>>, StoreError>> {
        let st = self.state.lock();
        let mut found: Vec<&Arc<Batch>> =
            st.batches.values().filter(|b| filter.admits(b)).collect();
        found.sort_by_key(|b| std::cmp::Reverse((b.created_at, b.id)));
        let batches = found.into_iter().take(filter.limit).cloned().collect();
        Box::pin(std::future::ready(Ok(batches)))
    }

    fn find_key(&self, key: String) -> BoxFuture<'_, Result<Option<KeyHolder>, StoreError>> {
        let holder = self.state.lock().keys.get(&key).cloned();
        Box::pin(std::future::ready(Ok(holder)))
    }

    /// One process holds every batch, and nothing outlives it: there are no leases to renew.
    fn renew(
        &self,
        _owner: Owner,
        _lease_until: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<Renewal, StoreError>> {
        Box::pin(std::future::ready(Ok(Renewal::default())))
    }

    fn beat(&self, instance: InstanceInfo) -> BoxFuture<'_, Result<(), StoreError>> {
        *self.instance.lock() = Some(instance);
        Box::pin(std::future::ready(Ok(())))
    }

    fn instances(
        &self,
        _seen_after: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<Vec<InstanceInfo>, StoreError>> {
        let me = self.instance.lock().clone();
        Box::pin(std::future::ready(Ok(me.into_iter().collect())))
    }

    /// Every batch runs where it was accepted: nothing is ever queued.
    fn claim(
        &self,
        _owner: Owner,
        _lease_until: DateTime<Utc>,
        _limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Claimed>, StoreError>> {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }

    fn abandon(
        &self,
        _owner: Owner,
        _batch: Uuid,
        _index: u32,
        _attempt: u64,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn release(
        &self,
        _batch: Uuid,
        _index: u32,
        _attempt: u64,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn rescue(
        &self,
        _owner: Owner,
        _now: DateTime<Utc>,
        _lease_until: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<Vec<Claimed>, StoreError>> {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }

    /// Every batch here runs in this process, which cancels it itself.
    fn request_cancel(&self, _id: Uuid) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(std::future::ready(Ok(false)))
    }

    fn active_shards(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(std::future::ready(Ok(0)))
    }

    fn recover(&self, _instance: String) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(std::future::ready(Ok(0)))
    }

    fn purge(&self, finished_before: DateTime<Utc>) -> BoxFuture<'_, Result<u64, StoreError>> {
        let mut st = self.state.lock();
        let State {
            batches,
            requests,
            keys,
        } = &mut *st;
        let gone: std::collections::HashSet<Uuid> = batches
            .values()
            .filter(|b| b.finished_at().is_some_and(|f| f < finished_before))
            .map(|b| b.id)
            .collect();
        for id in &gone {
            batches.remove(id);
            requests.remove(id);
        }
        // A key lives as long as its batch.
        keys.retain(|_, holder| !gone.contains(&holder.batch));
        let purged = gone.len() as u64;
        Box::pin(std::future::ready(Ok(purged)))
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// Every write happened as it was made.
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}
