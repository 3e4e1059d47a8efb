//! The work an instance shares with the others on its store: claiming queued shards (as many
//! as its fair share and its free room allow), running them, renewing their leases, and the
//! rescuer that gives the shards of a lost instance to another or ends them.
//!
//! Every third of `--stale-after`, an instance renews its leases and its own heartbeat, and
//! runs the rescuer. Idle workers wake on the store's signal (PostgreSQL's NOTIFY) and poll
//! every second besides.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::batches::{Batches, Start};
use crate::engine::Batch;
use crate::engine::batch::{Prior, StopReason};
use crate::engine::spec::{BatchSpec, OnLost, Stripe};
use crate::request::parse_batch;
use crate::store::{Claimed, InstanceInfo, ShardRun, StoreError};

/// How often an idle worker looks for queued shards when nothing wakes it.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// How often a waiting client's batch, run elsewhere, is read again.
const WAIT_POLL: Duration = Duration::from_millis(50);

impl Batches {
    /// Renewals, heartbeats and the rescuer; with the worker role, the claimer too. Until
    /// `stop` is cancelled.
    pub fn start_sharing(self: &Arc<Self>, stop: CancellationToken) {
        let this = self.clone();
        let upkeep_stop = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(this.cluster.lease / 3);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut renewed = Instant::now();
            loop {
                tokio::select! {
                    _ = upkeep_stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if this.renew().await {
                    renewed = Instant::now();
                } else if renewed.elapsed() >= this.cluster.lease {
                    // No renewal for a whole lease: other instances may have claimed these
                    // shards by now. Stop them here rather than run two copies.
                    this.drop_all_held("no lease renewal succeeded for --stale-after");
                }
                this.rescue().await;
            }
        });
        if !self.cluster.role.runs_work() {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let mut signal = this.store.queued_signal();
            loop {
                this.claim_round().await;
                let notified = async {
                    match &mut signal {
                        Some(rx) => {
                            if rx.changed().await.is_err() {
                                std::future::pending::<()>().await;
                            }
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = this.wake.notified() => {}
                    _ = notified => {}
                    _ = tokio::time::sleep(POLL_EVERY) => {}
                }
            }
        });
    }

    /// At start-up: what this instance held in an earlier life is given up at once, so the
    /// rescuer's first turn deals with it.
    pub async fn recover(&self) -> Result<u64, StoreError> {
        self.store.recover(self.instance_id().to_owned()).await
    }

    /// Renews this process's leases and heartbeat; stops the shards it no longer holds and
    /// cancels those whose batch a client cancelled elsewhere. False when the store did not
    /// answer.
    async fn renew(&self) -> bool {
        let began = Instant::now();
        let until = Utc::now() + chrono::Duration::from_std(self.cluster.lease).unwrap_or_default();
        // Bounded: a store that does not answer (a partition) must not stall the loop that
        // notices the leases are gone.
        let asked = self.store.renew(self.cluster.owner.clone(), until);
        let answered = tokio::time::timeout(self.cluster.lease / 3, asked)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Unavailable(
                    "the store did not answer in time".into(),
                ))
            });
        let renewal = match answered {
            Ok(r) => r,
            Err(e) => {
                metrics::counter!("fanout_lease_renewals_failed_total").increment(1);
                tracing::warn!(error = %e, "renewing leases failed");
                return false;
            }
        };
        // Leases renewed by owner cover the shards stopped here too: let those run out.
        let abandoned = std::mem::take(&mut *self.abandoned.lock());
        for (i, &(batch, index, attempt)) in abandoned.iter().enumerate() {
            let owner = self.cluster.owner.clone();
            let asked = self.store.abandon(owner, batch, index, attempt);
            match tokio::time::timeout(self.cluster.lease / 3, asked).await {
                Ok(Ok(())) => {}
                _ => {
                    self.abandoned.lock().extend_from_slice(&abandoned[i..]);
                    break;
                }
            }
        }
        let running = {
            let held = self.held.lock();
            for (key, h) in held.iter() {
                let still = renewal
                    .held
                    .iter()
                    .any(|&(b, i, a)| (b, i) == *key && a == h.run.attempt);
                // A shard claimed since this renewal began is not in its answer yet.
                // A run that has ended holds nothing to renew (its last write ended the lease).
                if !still && h.since < began && !h.batch.is_finished() {
                    tracing::warn!(batch_id = %key.0, shard = key.1, "lease lost: another instance holds the shard");
                    h.run.lost.cancel();
                }
                if renewal.cancelled.contains(&key.0) {
                    tracing::info!(batch_id = %key.0, shard = key.1, "cancelled at another instance's request");
                    h.batch.cancel_by_client();
                }
            }
            held.len() as u64
        };
        let me = InstanceInfo {
            instance_id: self.instance_id().to_owned(),
            role: self.cluster.role.name().to_owned(),
            started_at: self.cluster.started_at,
            heartbeat_at: Utc::now(),
            running_shards: running,
        };
        match tokio::time::timeout(self.cluster.lease / 3, self.store.beat(me)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "instance heartbeat failed"),
            Err(_) => tracing::warn!("instance heartbeat: the store did not answer in time"),
        }
        true
    }

    fn drop_all_held(&self, why: &str) {
        let held = self.held.lock();
        if !held.is_empty() {
            tracing::warn!(shards = held.len(), why, "stopping every shard held here");
        }
        for h in held.values() {
            h.run.lost.cancel();
        }
    }

    /// One turn of the rescuer: lost shards are queued again or ended here.
    async fn rescue(self: &Arc<Self>) {
        let now = Utc::now();
        let until = now + chrono::Duration::from_std(self.cluster.lease).unwrap_or_default();
        let asked = self.store.rescue(self.cluster.owner.clone(), now, until);
        let answered = tokio::time::timeout(self.cluster.lease / 3, asked)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Unavailable(
                    "the store did not answer in time".into(),
                ))
            });
        match answered {
            Ok(to_end) => {
                for claimed in to_end {
                    metrics::counter!("fanout_shards_reclaimed_total").increment(1);
                    self.start_claimed(claimed, true);
                }
            }
            Err(e) => tracing::warn!(error = %e, "the rescuer's turn failed"),
        }
    }

    /// Claims queued shards, one at a time, while this instance has room and holds less
    /// than its fair share: the shards queued and running, over the workers that are up.
    async fn claim_round(self: &Arc<Self>) {
        loop {
            if self.engine.free() == 0 {
                return;
            }
            // A worker holding nothing may always take one: an idle worker's poll is then
            // the claim statement alone.
            let held = self.held.lock().len() as u64;
            let mut room = 1;
            if held > 0 {
                let asked = tokio::time::timeout(self.cluster.lease / 3, self.fair_share());
                let share = match asked.await.unwrap_or_else(|_| {
                    Err(StoreError::Unavailable(
                        "the store did not answer in time".into(),
                    ))
                }) {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot read the queue");
                        return;
                    }
                };
                tracing::trace!(share, held, "claim round");
                if held >= share {
                    return;
                }
                room = (share - held) as usize;
            }
            let until =
                Utc::now() + chrono::Duration::from_std(self.cluster.lease).unwrap_or_default();
            let began = Instant::now();
            let claimed = match self
                .store
                .claim(self.cluster.owner.clone(), until, room)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming shards failed");
                    return;
                }
            };
            if claimed.is_empty() {
                return;
            }
            metrics::histogram!("fanout_claim_statement_seconds")
                .record(began.elapsed().as_secs_f64());
            for c in claimed {
                if let Some(queued) = c.queued_at {
                    let waited = (Utc::now() - queued).to_std().unwrap_or_default();
                    metrics::histogram!("fanout_shard_claim_latency_seconds")
                        .record(waited.as_secs_f64());
                }
                metrics::counter!("fanout_shards_claimed_total").increment(1);
                if c.attempt > 1 {
                    metrics::counter!("fanout_shards_reclaimed_total").increment(1);
                }
                if !self.start_claimed(c, false) {
                    return;
                }
            }
        }
    }

    /// Shards this instance may hold: its share of the work queued and running.
    async fn fair_share(&self) -> Result<u64, StoreError> {
        let active = self.store.active_shards().await?;
        let seen_after =
            Utc::now() - chrono::Duration::from_std(self.cluster.lease).unwrap_or_default();
        let workers = self
            .store
            .instances(seen_after)
            .await?
            .iter()
            .filter(|i| i.role != "api" && i.instance_id != self.instance_id())
            .count() as u64
            + 1;
        Ok(active.div_ceil(workers).max(1))
    }

    /// Starts a claimed shard: resumed from its checkpoint, and when `end` (or its batch was
    /// cancelled, or cannot resume), ended there without starting a task. False when it had
    /// to be given back (no room here after all).
    fn start_claimed(self: &Arc<Self>, c: Claimed, end: bool) -> bool {
        let spec = match parse_batch(c.request.as_bytes(), &self.cluster.limits) {
            Ok(spec) => spec,
            Err(e) => {
                // Instances with other limits share the store; this one cannot run it.
                tracing::error!(batch_id = %c.batch_id, shard = c.index, error = ?e, "a claimed batch does not pass this instance's limits; giving it back");
                self.give_back(c.batch_id, c.index, c.attempt);
                return false;
            }
        };
        let spec = shard_spec(spec, c.index, c.count, c.tasks);
        let resumable = spec.tasks().is_some();
        let lost_run = c.attempt > 1;
        let stop = if c.cancel_requested {
            Some(StopReason::Cancelled)
        } else if end || (lost_run && (c.on_lost == OnLost::Interrupt || !resumable)) {
            Some(StopReason::Interrupted)
        } else {
            None
        };
        let start = Start::Claimed {
            id: c.batch_id,
            created_at: c.created_at,
            prior: Box::new(Prior {
                rows: c.rows,
                checkpoint: c.checkpoint,
                lost: c.lost,
            }),
            stop,
        };
        let Ok(admitted) = self.admit(spec, start) else {
            let (batch, index, attempt) = (c.batch_id, c.index, c.attempt);
            self.give_back(batch, index, attempt);
            return false;
        };
        let run = ShardRun {
            index: c.index,
            attempt: c.attempt,
            count: c.count,
            owner: self.cluster.owner.token.clone(),
            lost: CancellationToken::new(),
        };
        tracing::info!(batch_id = %c.batch_id, shard = c.index, attempt = c.attempt, ending = stop.is_some(), "running a claimed shard");
        self.launch(admitted, run, c.tasks);
        true
    }

    fn give_back(self: &Arc<Self>, batch: Uuid, index: u32, attempt: u64) {
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.store.release(batch, index, attempt).await {
                tracing::warn!(error = %e, "giving a shard back failed; its lease will run out");
            }
        });
    }

    /// Instances seen within `--stale-after`.
    pub async fn instances(&self) -> Result<Vec<InstanceInfo>, StoreError> {
        let seen_after =
            Utc::now() - chrono::Duration::from_std(self.cluster.lease).unwrap_or_default();
        self.store.instances(seen_after).await
    }

    /// Waits until a batch run elsewhere has finished, reading it from the store; `None` if
    /// it is gone.
    pub async fn wait_finished(&self, id: Uuid) -> Result<Option<Arc<Batch>>, StoreError> {
        loop {
            let here = self.live.read().get(&id).cloned();
            if let Some(b) = here {
                b.finished().await;
            }
            match self.store.is_finished(id).await? {
                Some(true) => return self.get(id).await,
                Some(false) => tokio::time::sleep(WAIT_POLL).await,
                None => return Ok(None),
            }
        }
    }
}

/// The part of a batch one shard runs: its stripe of the tasks (the job list turned so that
/// its `k`-th task runs the batch's job for task `stripe.global(k)`), its share of the
/// concurrency (at least 1). The rate stays the batch's: the stripe's tasks keep the batch's
/// due times.
fn shard_spec(mut spec: BatchSpec, index: u32, count: u32, tasks: u64) -> BatchSpec {
    if count <= 1 {
        return spec;
    }
    let stripe = Stripe::shard(index as usize, count as usize);
    let jobs = spec.jobs.len();
    // Task g runs job g % jobs; the stripe's k-th task is g = offset + k * stride, whose job
    // repeats with period jobs / gcd(jobs, stride).
    let period = jobs / gcd(jobs, stripe.stride);
    spec.jobs = (0..period)
        .map(|k| spec.jobs[stripe.global(k) % jobs].clone())
        .collect();
    let total = spec.concurrency;
    let (c, i) = (count as usize, index as usize);
    spec.concurrency = (total / c + usize::from(i < total % c)).max(1);
    spec.load.count = Some(tasks as usize);
    spec.load.max_tasks = spec.load.max_tasks.max(tasks as usize);
    spec.load.stripe = stripe;
    spec
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a.max(1) } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shards_jobs_follow_the_batch_task_it_stands_for() {
        for (jobs, count) in [(1, 3), (3, 3), (4, 6), (5, 3), (6, 4)] {
            for index in 0..count {
                let stripe = Stripe::shard(index, count);
                let period = jobs / gcd(jobs, count);
                for k in 0..50 {
                    let turned = (0..period)
                        .map(|j| stripe.global(j) % jobs)
                        .collect::<Vec<_>>();
                    assert_eq!(
                        turned[k % period],
                        stripe.global(k) % jobs,
                        "{jobs} jobs, shard {index} of {count}, task {k}"
                    );
                }
            }
        }
    }
}
