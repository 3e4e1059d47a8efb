//! Where accepted batches live: the [`Store`] trait and one module per backend.

pub mod memory;

use std::sync::Arc;

use futures::future::BoxFuture;
use uuid::Uuid;

use crate::engine::Batch;

/// A storage failure; its details are logged, never sent to clients.
#[derive(Debug, thiserror::Error)]
#[error("storage: {0}")]
pub struct StoreError(pub String);

/// Keeps batches so that they can be read back after (and while) they run.
pub trait Store: Send + Sync + 'static {
    /// Keeps a batch that was just accepted; done before the server answers.
    fn insert(&self, batch: Arc<Batch>) -> BoxFuture<'_, Result<(), StoreError>>;

    /// The batch with that id, if any.
    fn get(&self, id: Uuid) -> BoxFuture<'_, Result<Option<Arc<Batch>>, StoreError>>;
}

/// Opens the backend a `--database-url` names.
pub fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    match url {
        "memory://" | "memory:" => Ok(Arc::new(memory::MemoryStore::default())),
        other => Err(StoreError(format!(
            "unsupported database URL {other:?}: this version keeps batches in memory only (memory://)"
        ))),
    }
}
