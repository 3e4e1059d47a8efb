//! `memory://`: a [`Store`] in this process's memory. Nothing outlives the process, so there
//! is nothing to recover and no other instance to hear from; retention still applies.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use parking_lot::Mutex;
use uuid::Uuid;

use super::{Inserted, KeyHolder, ListFilter, NewBatch, Store, StoreError, Writes, task_list};
use crate::engine::batch::{BatchMeta, BatchRecord, BatchStatus};
use crate::engine::task::TaskRecord;

/// Every batch written, and the idempotency keys they hold.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    batches: HashMap<Uuid, Stored>,
    keys: HashMap<String, KeyHolder>,
}

/// A batch as written: its row, its fields as last saved, and its task rows by index.
struct Stored {
    row: NewBatch,
    meta: BatchMeta,
    tasks: BTreeMap<u32, TaskRecord>,
}

impl Stored {
    fn record(&self, with_tasks: bool) -> BatchRecord {
        let tasks = if with_tasks {
            let rows = self.tasks.values().cloned().collect();
            task_list(
                self.row.rules.results,
                &self.row.request,
                self.meta.tasks_total,
                rows,
            )
        } else {
            Vec::new()
        };
        BatchRecord {
            id: self.row.id,
            mode: self.row.mode,
            label: self.row.label.clone(),
            created_at: self.row.created_at,
            rules: self.row.rules.clone(),
            meta: self.meta.clone(),
            tasks,
        }
    }
}

impl Store for MemoryStore {
    fn write(&self, writes: Writes) -> BoxFuture<'_, Result<Vec<Inserted>, StoreError>> {
        let mut st = self.state.lock();
        let mut inserted = Vec::with_capacity(writes.inserts.len());
        for row in writes.inserts {
            if let (Some(key), Some(hash)) = (&row.idempotency_key, &row.request_hash) {
                if st.keys.contains_key(key) {
                    inserted.push(Inserted::KeyTaken);
                    continue;
                }
                let holder = KeyHolder {
                    batch: row.id,
                    request_hash: hash.clone(),
                    first_status: row.answer_status,
                };
                st.keys.insert(key.clone(), holder);
            }
            let meta = BatchMeta {
                status: BatchStatus::Running,
                started_at: None,
                finished_at: None,
                wall_ms: None,
                error: None,
                tasks_total: row.tasks_total,
                summary: None,
            };
            st.batches.insert(
                row.id,
                Stored {
                    row,
                    meta,
                    tasks: BTreeMap::new(),
                },
            );
            inserted.push(Inserted::New);
        }
        for save in writes.saves {
            if let Some(stored) = st.batches.get_mut(&save.id) {
                stored.meta = save.meta;
                stored
                    .tasks
                    .extend(save.tasks.into_iter().map(|t| (t.index, t)));
            }
        }
        Box::pin(std::future::ready(Ok(inserted)))
    }

    fn load(&self, id: Uuid) -> BoxFuture<'_, Result<Option<BatchRecord>, StoreError>> {
        let record = self.state.lock().batches.get(&id).map(|b| b.record(true));
        Box::pin(std::future::ready(Ok(record)))
    }

    fn list(&self, filter: ListFilter) -> BoxFuture<'_, Result<Vec<BatchRecord>, StoreError>> {
        let st = self.state.lock();
        let mut found: Vec<&Stored> = st
            .batches
            .values()
            .filter(|b| filter.status.is_none_or(|s| b.meta.status == s))
            .filter(|b| {
                filter
                    .before
                    .is_none_or(|before| (b.row.created_at, b.row.id) < before)
            })
            .collect();
        found.sort_by_key(|b| std::cmp::Reverse((b.row.created_at, b.row.id)));
        let records = found
            .into_iter()
            .take(filter.limit)
            .map(|b| b.record(false))
            .collect();
        Box::pin(std::future::ready(Ok(records)))
    }

    fn find_key(&self, key: String) -> BoxFuture<'_, Result<Option<KeyHolder>, StoreError>> {
        let holder = self.state.lock().keys.get(&key).cloned();
        Box::pin(std::future::ready(Ok(holder)))
    }

    /// One process holds every batch: no other instance asks to cancel anything.
    fn heartbeat(&self, _instance: String) -> BoxFuture<'_, Result<Vec<Uuid>, StoreError>> {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }

    /// A batch this process does not run is a finished one: nothing to cancel.
    fn request_cancel(&self, _id: Uuid) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(std::future::ready(Ok(false)))
    }

    /// Nothing outlives the process, so nothing is left over from an earlier one.
    fn recover(
        &self,
        _instance: String,
        _stale_before: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<Vec<Uuid>, StoreError>> {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }

    fn purge(&self, finished_before: DateTime<Utc>) -> BoxFuture<'_, Result<u64, StoreError>> {
        let mut st = self.state.lock();
        let before = st.batches.len();
        st.batches
            .retain(|_, b| b.meta.finished_at.is_none_or(|f| f >= finished_before));
        let State { batches, keys } = &mut *st;
        keys.retain(|_, holder| batches.contains_key(&holder.batch));
        let purged = (before - batches.len()) as u64;
        Box::pin(std::future::ready(Ok(purged)))
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(std::future::ready(Ok(())))
    }
}
