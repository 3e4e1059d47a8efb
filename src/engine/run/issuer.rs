//! The schedule of a batch's tasks: which task number comes next, when it may start (as soon as
//! a slot is free, or at its place in the open model's schedule), which tasks are the warm-up,
//! and when the run is over. Pure logic over atomics, shared by all of a batch's drivers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::engine::batch::Started;
use crate::engine::spec::{LoadPlan, Stages, Stripe};

/// Hands out task numbers to a batch's drivers, in order, and says when each may start:
/// as soon as a slot is free (closed model), or at its place in the schedule (open model).
/// Also decides which tasks belong to the warm-up and when the run is over.
pub(super) struct Issuer {
    next: AtomicUsize,
    /// Measured (non-warm-up) tasks handed out, closed model.
    measured: AtomicUsize,
    epoch: Instant,
    /// Measured tasks at most.
    count: Option<usize>,
    /// Tasks at most, warm-up included.
    max_tasks: usize,
    warmup_end: Instant,
    /// No measured task starts at or after this.
    end: Option<Instant>,
    rate: Option<f64>,
    /// Open model with rate stages: the ramped schedule instead of `rate`.
    rate_ramp: Option<Arc<Stages>>,
    /// Closed model with concurrency stages: how many slots run at each moment.
    slot_ramp: Option<Arc<Stages>>,
    /// Open model: how many of the first tasks are the warm-up.
    open_warmup: usize,
    /// Cancelled when the run is to start no more tasks (those running go on).
    no_more: Option<CancellationToken>,
    /// Which of the batch's tasks the run is (open model: task `k` is due when the batch's
    /// task `stripe.global(k)` is), and where a resumed run picks up the schedule.
    stripe: Stripe,
    resume_at: Duration,
    /// A resumed run: tasks that ended before, which are not handed out again.
    ended: Option<Arc<[bool]>>,
}

/// A task number handed out.
#[derive(Debug, Clone, Copy)]
pub(super) struct Claim {
    pub index: usize,
    /// Open model: when it should start.
    pub due: Option<Instant>,
    pub warmup: bool,
}

impl Claim {
    /// The task's start, begun `now`; its latency counts from `at`.
    pub fn started(&self, at: Instant, now: Instant) -> Started {
        Started {
            index: self.index,
            at,
            lag: self.due.map(|due| now.saturating_duration_since(due)),
            warmup: self.warmup,
        }
    }
}

impl Issuer {
    pub fn new(plan: &LoadPlan, epoch: Instant) -> Issuer {
        let warmup_end = epoch + plan.warmup;
        Issuer {
            next: AtomicUsize::new(0),
            measured: AtomicUsize::new(0),
            epoch,
            count: plan.count,
            max_tasks: plan.max_tasks,
            warmup_end,
            end: plan.duration.map(|d| warmup_end + d),
            rate: plan.rate_per_s,
            rate_ramp: plan.rate_stages().and(plan.stages.clone()),
            slot_ramp: plan.concurrency_stages().and(plan.stages.clone()),
            open_warmup: plan.open_warmup_tasks(),
            no_more: None,
            stripe: plan.stripe,
            resume_at: plan.resume_at,
            ended: None,
        }
    }

    /// Tasks this run hands out at most, warm-up included.
    pub fn max_tasks(&self) -> usize {
        self.max_tasks
    }

    /// The same, skipping the tasks `ended` marks (a run resumed from a checkpoint).
    pub fn skipping(self, ended: Option<Arc<[bool]>>) -> Issuer {
        Issuer { ended, ..self }
    }

    /// The same, handing out no task once `no_more` is cancelled.
    pub fn until(self, no_more: CancellationToken) -> Issuer {
        Issuer {
            no_more: Some(no_more),
            ..self
        }
    }

    /// The run was told to start no more tasks: a task handed out before, still waiting for
    /// its time or a permit, does not start either.
    pub fn stopped(&self) -> bool {
        self.no_more.as_ref().is_some_and(|t| t.is_cancelled())
    }

    /// Closed model: tasks start as slots free up, not at scheduled times.
    pub fn is_closed(&self) -> bool {
        self.rate.is_none() && self.rate_ramp.is_none()
    }

    /// Closed model with concurrency stages: whether the slot of batch-wide rank `rank` may
    /// start a task now (`Ok`), or when it may next (`Err(Some(at))`; `Err(None)`: not before
    /// the run's end). Slots are ranked across drivers and shards so that the run's first
    /// `n` ranks are the `n` slots the ramp has in use.
    pub fn slot_open(&self, rank: usize, now: Instant) -> Result<(), Option<Instant>> {
        let Some(ramp) = &self.slot_ramp else {
            return Ok(());
        };
        let t = now.saturating_duration_since(self.epoch);
        if ramp.slots_at(t) > rank {
            return Ok(());
        }
        Err(ramp.rises_above(rank, t).map(|at| self.epoch + at))
    }

    /// The batch's number of the run's task `k` (a shard's run is a stripe of the batch).
    pub fn global(&self, k: usize) -> usize {
        self.stripe.global(k)
    }

    /// Whether slots come and go with concurrency stages.
    pub fn ramps_slots(&self) -> bool {
        self.slot_ramp.is_some()
    }

    /// Cancelled when the run is to start no more tasks.
    pub fn no_more(&self) -> Option<&CancellationToken> {
        self.no_more.as_ref()
    }

    /// Closed model with concurrency stages: how many of a driver's first `limit` slots are
    /// in use now, and when one more will be (`None`: not before the run's end).
    pub fn driver_slots(
        &self,
        driver: Stripe,
        limit: usize,
        now: Instant,
    ) -> (usize, Option<Instant>) {
        let Some(ramp) = &self.slot_ramp else {
            return (limit, None);
        };
        let t = now.saturating_duration_since(self.epoch);
        let used = ramp.slots_at(t);
        // Ranks grow with `j`: the slots in use are a prefix.
        let (mut lo, mut hi) = (0, limit);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.slot_rank(driver, mid) < used {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let next = (lo < limit)
            .then(|| ramp.rises_above(self.slot_rank(driver, lo), t))
            .flatten()
            .map(|at| self.epoch + at);
        (lo, next)
    }

    /// A slot's batch-wide rank: slot `j` of driver `driver`.
    pub fn slot_rank(&self, driver: Stripe, j: usize) -> usize {
        // Driver `d` of `n` holds the shard's slots d, d + n, ...; shard `i` of `m` the
        // batch's slots i, i + m, ...
        self.stripe.global(driver.global(j))
    }

    /// The next task, or `None` when the run has no more to start.
    pub fn claim(&self) -> Option<Claim> {
        loop {
            if self.stopped() {
                return None;
            }
            let claim = if self.is_closed() {
                self.claim_now()
            } else {
                self.claim_scheduled()
            }?;
            let ended = self.ended.as_ref();
            if !ended.is_some_and(|e| e.get(claim.index).copied().unwrap_or(false)) {
                return Some(claim);
            }
        }
    }

    /// Open model: task `i` is due at `i / rate` seconds after the start, or where the rate
    /// stages' integral reaches `i`.
    fn claim_scheduled(&self) -> Option<Claim> {
        let total = self.open_warmup + self.count?;
        let index = self
            .next
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |i| {
                (i < total.min(self.max_tasks)).then_some(i + 1)
            })
            .ok()?;
        // The batch's schedule, whichever stripe of it this is.
        let g = self.stripe.global(index);
        let at = match (&self.rate_ramp, self.rate) {
            (Some(ramp), _) => ramp.due(g),
            (None, Some(rate)) => Duration::from_secs_f64(g as f64 / rate),
            (None, None) => Duration::ZERO,
        };
        let due = self.epoch + at.saturating_sub(self.resume_at);
        let warmup = index < self.open_warmup;
        if !warmup && self.end.is_some_and(|end| due >= end) {
            return None;
        }
        Some(Claim {
            index,
            due: Some(due),
            warmup,
        })
    }

    /// Closed model: a task whenever a driver has a free slot, until the count or the time
    /// is up. Tasks handed out before the warm-up ends are the warm-up.
    fn claim_now(&self) -> Option<Claim> {
        let now = Instant::now();
        let mut warmup = now < self.warmup_end;
        // The warm-up leaves room under --max-jobs for the whole measured run: past that, the
        // next task is a measured one that waits for the warm-up to end.
        let room = self.max_tasks.saturating_sub(self.count.unwrap_or(0));
        let mut due = None;
        if warmup && self.next.load(Ordering::Acquire) >= room {
            warmup = false;
            due = Some(self.warmup_end);
        }
        if !warmup {
            if self.end.is_some_and(|end| now >= end) {
                return None;
            }
            let n = self.measured.fetch_add(1, Ordering::AcqRel);
            if self.count.is_some_and(|count| n >= count) {
                return None;
            }
        }
        let index = self
            .next
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |i| {
                (i < self.max_tasks).then_some(i + 1)
            })
            .ok();
        let Some(index) = index else {
            if self.end.is_some() {
                tracing::warn!(
                    limit = self.max_tasks,
                    "a load run for a duration reached --max-jobs tasks and stops early"
                );
            }
            return None;
        };
        Some(Claim { index, due, warmup })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(count: Option<usize>) -> LoadPlan {
        LoadPlan {
            count,
            duration: None,
            rate_per_s: None,
            warmup: Duration::ZERO,
            max_tasks: 1_000,
            is_load: true,
            stripe: Stripe::WHOLE,
            resume_at: Duration::ZERO,
            connections: None,
            stages: None,
        }
    }

    fn drain(issuer: &Issuer) -> Vec<Claim> {
        std::iter::from_fn(|| issuer.claim()).take(10_000).collect()
    }

    #[test]
    fn the_closed_model_hands_out_every_task_once_in_order_then_stops() {
        let issuer = Issuer::new(&plan(Some(5)), Instant::now());
        let claims = drain(&issuer);
        let indices: Vec<usize> = claims.iter().map(|c| c.index).collect();
        assert_eq!(indices, vec![0, 1, 2, 3, 4]);
        assert!(claims.iter().all(|c| c.due.is_none() && !c.warmup));
        assert!(issuer.claim().is_none(), "stays exhausted");
    }

    #[test]
    fn the_open_model_schedules_task_i_at_i_over_the_rate() {
        let epoch = Instant::now();
        let issuer = Issuer::new(
            &LoadPlan {
                rate_per_s: Some(100.0),
                ..plan(Some(10))
            },
            epoch,
        );
        let claims = drain(&issuer);
        assert_eq!(claims.len(), 10);
        for (i, c) in claims.iter().enumerate() {
            assert_eq!(c.index, i);
            assert_eq!(c.due, Some(epoch + Duration::from_millis(10 * i as u64)));
            assert!(!c.warmup);
        }
    }

    #[test]
    fn an_open_model_warm_up_is_the_tasks_due_within_it_and_the_measured_count_follows() {
        let epoch = Instant::now();
        let issuer = Issuer::new(
            &LoadPlan {
                rate_per_s: Some(100.0),
                warmup: Duration::from_millis(50),
                ..plan(Some(10))
            },
            epoch,
        );
        let claims = drain(&issuer);
        assert_eq!(claims.len(), 15);
        assert!(claims[..5].iter().all(|c| c.warmup));
        assert!(claims[5..].iter().all(|c| !c.warmup));
        assert_eq!(claims[14].due, Some(epoch + Duration::from_millis(140)));
    }

    #[test]
    fn an_open_model_run_for_a_duration_starts_nothing_due_at_or_after_its_end() {
        let epoch = Instant::now();
        let issuer = Issuer::new(
            &LoadPlan {
                rate_per_s: Some(10.0),
                duration: Some(Duration::from_secs(1)),
                ..plan(Some(100))
            },
            epoch,
        );
        let claims = drain(&issuer);
        assert_eq!(claims.len(), 10, "due at 0.0 s .. 0.9 s");
        assert!(
            claims
                .iter()
                .all(|c| c.due.unwrap() < epoch + Duration::from_secs(1))
        );
    }

    #[test]
    fn a_closed_model_run_whose_time_is_up_starts_nothing() {
        let long_ago = Instant::now() - Duration::from_secs(10);
        let issuer = Issuer::new(
            &LoadPlan {
                duration: Some(Duration::from_secs(1)),
                ..plan(None)
            },
            long_ago,
        );
        assert!(issuer.claim().is_none());
    }

    #[test]
    fn a_run_for_a_duration_stops_at_the_task_bound() {
        let issuer = Issuer::new(
            &LoadPlan {
                duration: Some(Duration::from_secs(3600)),
                max_tasks: 3,
                ..plan(None)
            },
            Instant::now(),
        );
        assert_eq!(drain(&issuer).len(), 3);
    }

    #[test]
    fn a_closed_model_warm_up_leaves_room_for_the_whole_measured_run() {
        // The warm-up lasts an hour, so by time every claim would be warm-up; the bound of 8
        // tasks leaves 5 for it and keeps 3 for the measured run, which waits for the
        // warm-up's end.
        let epoch = Instant::now();
        let issuer = Issuer::new(
            &LoadPlan {
                warmup: Duration::from_secs(3600),
                max_tasks: 8,
                ..plan(Some(3))
            },
            epoch,
        );
        let claims = drain(&issuer);
        assert_eq!(claims.len(), 8);
        assert!(claims[..5].iter().all(|c| c.warmup && c.due.is_none()));
        let warmup_end = epoch + Duration::from_secs(3600);
        assert!(
            claims[5..]
                .iter()
                .all(|c| !c.warmup && c.due == Some(warmup_end))
        );
    }

    #[test]
    fn no_task_is_handed_out_once_starting_stopped() {
        let stop = CancellationToken::new();
        let issuer = Issuer::new(&plan(Some(10)), Instant::now()).until(stop.clone());
        assert_eq!(issuer.claim().map(|c| c.index), Some(0));
        stop.cancel();
        assert!(issuer.claim().is_none());
    }

    #[test]
    fn a_claim_reports_how_late_it_started() {
        let epoch = Instant::now();
        let claim = Claim {
            index: 3,
            due: Some(epoch),
            warmup: false,
        };
        let started = claim.started(epoch, epoch + Duration::from_millis(7));
        assert_eq!(started.index, 3);
        assert_eq!(started.lag, Some(Duration::from_millis(7)));
        let closed = Claim { due: None, ..claim };
        assert_eq!(closed.started(epoch, epoch).lag, None);
    }

    /// The open model's schedule cut into 1, 2 and 3 striped shards: together they start the
    /// same batch tasks at the same due times as one shard does (k6's segment-sum tests).
    #[test]
    fn striped_shards_together_start_every_task_when_one_shard_would() {
        let epoch = Instant::now();
        let total = 101;
        let whole: Vec<(usize, Instant)> = drain(&Issuer::new(
            &LoadPlan {
                rate_per_s: Some(250.0),
                ..plan(Some(total))
            },
            epoch,
        ))
        .iter()
        .map(|c| (c.index, c.due.unwrap()))
        .collect();
        assert_eq!(whole.len(), total);
        for shards in 1..=3 {
            let mut together: Vec<(usize, Instant)> = Vec::new();
            for s in 0..shards {
                let stripe = Stripe::shard(s, shards);
                let issuer = Issuer::new(
                    &LoadPlan {
                        rate_per_s: Some(250.0),
                        stripe,
                        ..plan(Some(stripe.tasks_of(total)))
                    },
                    epoch,
                );
                together.extend(
                    drain(&issuer)
                        .iter()
                        .map(|c| (stripe.global(c.index), c.due.unwrap())),
                );
            }
            together.sort_by_key(|&(g, _)| g);
            assert_eq!(together, whole, "{shards} shards");
        }
    }

    #[test]
    fn a_stripe_maps_its_tasks_to_the_batch_and_back() {
        let stripe = Stripe::shard(2, 3);
        assert_eq!(stripe.tasks_of(10), 3, "tasks 2, 5, 8");
        assert_eq!(stripe.tasks_of(9), 3, "tasks 2, 5, 8");
        assert_eq!(stripe.tasks_of(8), 2, "tasks 2, 5");
        assert_eq!(stripe.global(2), 8);
        assert_eq!(stripe.local(8), Some(2));
        assert_eq!(stripe.local(7), None);
        assert_eq!(Stripe::shard(0, 3).tasks_of(2), 1);
        assert_eq!(Stripe::shard(2, 3).tasks_of(2), 0);
    }

    #[test]
    fn a_resumed_run_skips_the_tasks_that_ended_and_picks_up_the_schedule() {
        let epoch = Instant::now();
        let ended: Arc<[bool]> = vec![true, true, false, true, false].into();
        let issuer = Issuer::new(
            &LoadPlan {
                rate_per_s: Some(100.0),
                resume_at: Duration::from_millis(20),
                connections: None,
                ..plan(Some(5))
            },
            epoch,
        )
        .skipping(Some(ended));
        let claims = drain(&issuer);
        let got: Vec<(usize, Option<Instant>)> = claims.iter().map(|c| (c.index, c.due)).collect();
        assert_eq!(
            got,
            vec![
                (2, Some(epoch)),
                (4, Some(epoch + Duration::from_millis(20)))
            ]
        );
    }
}
