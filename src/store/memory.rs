//! `memory://`: batches in a map, gone when the process stops. For `fanout run`, benchmarks and
//! trying things out.

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use parking_lot::RwLock;
use uuid::Uuid;

use super::{Store, StoreError};
use crate::engine::Batch;

#[derive(Default)]
pub struct MemoryStore {
    batches: RwLock<HashMap<Uuid, Arc<Batch>>>,
}

impl Store for MemoryStore {
    fn insert(&self, batch: Arc<Batch>) -> BoxFuture<'_, Result<(), StoreError>> {
        self.batches.write().insert(batch.id, batch);
        Box::pin(async { Ok(()) })
    }

    fn get(&self, id: Uuid) -> BoxFuture<'_, Result<Option<Arc<Batch>>, StoreError>> {
        let found = self.batches.read().get(&id).cloned();
        Box::pin(async move { Ok(found) })
    }
}
