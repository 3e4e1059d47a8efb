//! The group-commit writer: one task that writes, in one transaction a turn, every batch
//! accepted since the last turn and every task that ended since then in every batch it tracks.
//! Under load a commit carries many batches, so the database sees far fewer transactions than
//! requests.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::batches::Batches;
use super::{Inserted, NewBatch, Save, Store, StoreError, Writes};
use crate::engine::batch::stored::Changes;
use crate::engine::{Batch, BatchStatus};

/// How often a running batch's ended tasks are written, at most.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// What the writer is asked to do.
pub(super) enum Command {
    /// Insert a batch row; answer once it is committed.
    Insert(Box<NewBatch>, Waiter),
    /// Write this batch's progress until it has finished.
    Track(Arc<Batch>),
    /// A tracked batch finished: write now.
    Flush,
}

/// A batch the writer keeps writing, and how far it got.
struct Tracked {
    batch: Arc<Batch>,
    /// How many of its ended tasks (in completion order) are written.
    written: usize,
    status: Option<BatchStatus>,
}

/// Where an insert's outcome goes once it is committed.
pub(super) type Waiter = oneshot::Sender<Result<Inserted, StoreError>>;

/// The one writer: a turn at most every [`FLUSH_EVERY`], or at once when a new batch waits
/// for its commit.
pub(super) async fn write_loop(
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
                Some(c) => queue(c, &mut tracked, &mut inserts),
                None => return,
            },
            _ = tick.tick() => {}
            _ = closing.cancelled(), if tracked.is_empty() => {}
        }
        while let Ok(c) = rx.try_recv() {
            queue(c, &mut tracked, &mut inserts);
        }
        if closing.is_cancelled() && tracked.is_empty() && inserts.is_empty() {
            return;
        }

        let rows = store.writes_task_rows();
        let mut saves = Vec::new();
        let mut marks = Vec::new();
        for (i, t) in tracked.iter().enumerate() {
            let Changes {
                tasks,
                ended: upto,
                meta,
            } = t.batch.changes_since(t.written, rows);
            let finished = meta.finished_at.is_some();
            if tasks.is_empty() && !finished && t.status == Some(meta.status) {
                continue;
            }
            marks.push((i, upto, meta.status, finished));
            saves.push(Save {
                batch: t.batch.clone(),
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
                    batches.written_for_good(&finished_ids);
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

/// Adds what a command asks for to the next turn's work.
fn queue(command: Command, tracked: &mut Vec<Tracked>, inserts: &mut Vec<(NewBatch, Waiter)>) {
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
