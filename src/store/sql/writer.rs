//! The group-commit writer: one task that writes, in one transaction a turn, every batch
//! accepted since the last turn and every task that ended since then in every batch it follows.
//! Under load a commit carries many batches, so the database sees far fewer transactions than
//! requests.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::db::SqlDb;
use super::{Save, Writes};
use crate::engine::batch::stored::Changes;
use crate::engine::{Batch, BatchStatus};
use crate::store::{Inserted, NewBatch, ShardRun, StoreError};

/// How often a running batch's ended tasks are written, at most.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Tasks from which a finished batch's last checkpoint keeps its totals even when its rows
/// could rebuild them: reading a thousand rows to draw a page costs more than the totals'
/// few kilobytes.
const TOTALS_KEPT_FROM: usize = 1_000;
/// How often a running shard's checkpoint is written, at least (while it runs).
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// The writer as the store uses it: its queue, and its end at shutdown.
pub(super) struct Writer {
    queue: mpsc::UnboundedSender<Command>,
    /// Cancelled at shutdown: the writer ends once every batch it follows is written.
    closing: CancellationToken,
    done: TaskTracker,
}

impl Writer {
    pub fn start(db: Arc<SqlDb>) -> Writer {
        let (queue, rx) = mpsc::unbounded_channel();
        let (closing, done) = (CancellationToken::new(), TaskTracker::new());
        done.spawn(write_loop(db, rx, closing.clone()));
        done.close();
        Writer {
            queue,
            closing,
            done,
        }
    }

    /// Inserts a batch row with the next turn; resolves once it is committed.
    pub async fn insert(&self, row: NewBatch) -> Result<Inserted, StoreError> {
        let (waiter, committed) = oneshot::channel();
        self.send(Command::Insert(Box::new(row), waiter))?;
        committed
            .await
            .map_err(|_| StoreError::Unavailable("the writer stopped".into()))?
    }

    /// Writes the shard's progress every turn; resolves once its last write is committed, or
    /// once a write found the shard taken over by another attempt.
    pub fn follow(&self, batch: Arc<Batch>, run: ShardRun) -> BoxFuture<'static, ()> {
        let (written, all_written) = oneshot::channel();
        let queue = self.queue.clone();
        Box::pin(async move {
            let lost = run.lost.clone();
            if queue
                .send(Command::Follow(batch.clone(), run, written))
                .is_err()
            {
                std::future::pending::<()>().await;
            }
            // Write the end of a batch at once rather than at the writer's next tick.
            tokio::select! {
                _ = batch.finished() => {}
                _ = lost.cancelled() => {}
            }
            let _ = queue.send(Command::Flush);
            if all_written.await.is_err() {
                // The writer stopped before the last write: the batch stays where it is
                // up to date (in memory) rather than be read back stale.
                std::future::pending::<()>().await;
            }
        })
    }

    /// Waits for the last commit, once every batch has ended.
    pub async fn close(&self) {
        self.closing.cancel();
        self.done.wait().await;
    }

    fn send(&self, command: Command) -> Result<(), StoreError> {
        self.queue
            .send(command)
            .map_err(|_| StoreError::Unavailable("the writer stopped".into()))
    }
}

/// What the writer is asked to do.
enum Command {
    /// Insert a batch row; answer once it is committed.
    Insert(Box<NewBatch>, Waiter),
    /// Write this shard's progress until it has finished; say so once it is all written.
    Follow(Arc<Batch>, ShardRun, oneshot::Sender<()>),
    /// A followed batch finished: write now.
    Flush,
}

/// A batch the writer keeps writing, and how far it got.
struct Followed {
    batch: Arc<Batch>,
    run: ShardRun,
    /// When its last checkpoint was written.
    checkpointed: Option<std::time::Instant>,
    /// How many of its ended tasks (in completion order) are written.
    written: usize,
    status: Option<BatchStatus>,
    /// Told once the batch's last write is committed.
    all_written: Option<oneshot::Sender<()>>,
}

/// Where an insert's outcome goes once it is committed.
type Waiter = oneshot::Sender<Result<Inserted, StoreError>>;

/// The one writer: a turn at most every [`FLUSH_EVERY`], or at once when a new batch waits
/// for its commit.
async fn write_loop(
    db: Arc<SqlDb>,
    mut rx: mpsc::UnboundedReceiver<Command>,
    closing: CancellationToken,
) {
    let mut followed: Vec<Followed> = Vec::new();
    let mut inserts: Vec<(NewBatch, Waiter)> = Vec::new();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            command = rx.recv() => match command {
                Some(c) => queue(c, &mut followed, &mut inserts),
                None => return,
            },
            _ = tick.tick() => {}
            _ = closing.cancelled(), if followed.is_empty() => {}
        }
        while let Ok(c) = rx.try_recv() {
            queue(c, &mut followed, &mut inserts);
        }
        if closing.is_cancelled() && followed.is_empty() && inserts.is_empty() {
            return;
        }
        let now = std::time::Instant::now();
        release_lost(&mut followed);
        let (saves, marks) = changes(&followed, now);
        if saves.is_empty() && inserts.is_empty() {
            continue;
        }
        let rows: usize = saves.iter().map(|s| s.tasks.len()).sum();
        let (new, began) = (inserts.len(), std::time::Instant::now());
        let (rows_in, waiters): (Vec<NewBatch>, Vec<Waiter>) = inserts.drain(..).unzip();
        let writes = Writes {
            inserts: rows_in,
            saves,
        };
        match db.write(writes).await {
            Ok(written) => {
                let took_ms = began.elapsed().as_millis() as u64;
                tracing::debug!(new, rows, took_ms, "written");
                for (done, result) in waiters.into_iter().zip(written.inserted) {
                    let _ = done.send(Ok(result));
                }
                settle(&mut followed, marks, &written.fenced, now);
            }
            Err(e) => {
                // New batches are refused (their clients get an error); progress stays in
                // memory and is written again next turn.
                tracing::error!(error = %e, "writing to the store failed; retrying");
                for done in waiters {
                    let _ = done.send(Err(e.clone()));
                }
                tokio::time::sleep(FLUSH_EVERY).await;
            }
        }
    }
}

/// What a turn wrote of one followed shard: its place in `followed`, the task rows written up
/// to, its status, whether it finished and whether it was checkpointed.
type Mark = (usize, usize, BatchStatus, bool, bool);

/// Lets go of the shards whose lease is gone (another attempt holds the shard, or may by
/// now): whatever such a copy did since is not written, not even how it stopped.
fn release_lost(followed: &mut Vec<Followed>) {
    for t in followed.iter_mut().filter(|t| t.run.lost.is_cancelled()) {
        if let Some(all_written) = t.all_written.take() {
            let _ = all_written.send(());
        }
    }
    followed.retain(|t| t.all_written.is_some());
}

/// The turn's saves: each followed shard's changes since its last write, with a checkpoint
/// when one is due.
fn changes(followed: &[Followed], now: std::time::Instant) -> (Vec<Save>, Vec<Mark>) {
    let mut saves = Vec::new();
    let mut marks = Vec::new();
    for (i, t) in followed.iter().enumerate() {
        // A checkpoint at least once a second, and at the end: what a run that claims the
        // shard again starts from. Taken before the changes, so that every task it says
        // ended has its row in this save or an earlier one.
        let due = t.checkpointed.is_none_or(|at| now - at >= CHECKPOINT_EVERY);
        let sharded = t.run.count > 1;
        let mut checkpoint = due.then(|| t.batch.checkpoint(sharded));
        let Changes {
            tasks,
            ended: upto,
            meta,
        } = t.batch.changes_since(t.written);
        let finished = meta.finished_at.is_some();
        if finished {
            // Nothing changes any more: the last checkpoint is complete. It carries the
            // totals (histograms, time bins) when the rows cannot rebuild them, and for a
            // batch of many tasks, whose page then reads them rather than every row; writing
            // them for every small batch cost a third of SQLite's POST rate under 1,000
            // clients.
            let many = t.batch.progress().1 >= TOTALS_KEPT_FROM;
            checkpoint = Some(t.batch.checkpoint(sharded || many));
        }
        let due = checkpoint.is_some();
        if tasks.is_empty() && !due && t.status == Some(meta.status) {
            continue;
        }
        marks.push((i, upto, meta.status, finished, due));
        saves.push(Save {
            batch: t.batch.clone(),
            run: t.run.clone(),
            meta,
            tasks,
            checkpoint,
        });
    }
    (saves, marks)
}

/// After a committed turn: each save's shard moves on to what was written, or, when the
/// write was fenced, learns that it lost its lease; a finished one is let go.
fn settle(
    followed: &mut Vec<Followed>,
    marks: Vec<Mark>,
    fenced: &[usize],
    now: std::time::Instant,
) {
    for (position, (i, upto, status, finished, checkpointed)) in marks.into_iter().enumerate() {
        let t = &mut followed[i];
        if fenced.contains(&position) {
            // Another attempt holds the shard: this run lost its lease, and nothing more of
            // it is written.
            tracing::warn!(batch_id = %t.batch.id, shard = t.run.index, attempt = t.run.attempt, "lost the shard's lease: its writes are refused");
            t.run.lost.cancel();
            if let Some(all_written) = t.all_written.take() {
                let _ = all_written.send(());
            }
            continue;
        }
        t.written = upto;
        t.status = Some(status);
        if checkpointed {
            t.checkpointed = Some(now);
        }
        if finished && let Some(all_written) = t.all_written.take() {
            // Written for good: from now on the database serves it.
            let _ = all_written.send(());
        }
    }
    followed.retain(|t| t.all_written.is_some());
}

/// Adds what a command asks for to the next turn's work.
fn queue(command: Command, followed: &mut Vec<Followed>, inserts: &mut Vec<(NewBatch, Waiter)>) {
    match command {
        Command::Insert(row, done) => inserts.push((*row, done)),
        Command::Follow(batch, run, all_written) => followed.push(Followed {
            batch,
            run,
            checkpointed: None,
            written: 0,
            status: None,
            all_written: Some(all_written),
        }),
        Command::Flush => {}
    }
}
