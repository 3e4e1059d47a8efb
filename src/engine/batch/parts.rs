//! Which job and which stage a load run's task counts under in `summary.by_job` and
//! `summary.stages`.

use std::sync::Arc;
use std::time::Instant;

use crate::engine::spec::{BatchSpec, Stages, Stripe};
use crate::engine::summary::{Place, SummaryAcc};

/// What a batch needs to place each task: its job list position's part, its stages and its
/// stripe of the batch's tasks.
pub(super) struct Placing {
    /// By job list position: the part of the job's key (empty: no `by_job`).
    job_part: Box<[u32]>,
    stages: Option<Arc<Stages>>,
    stripe: Stripe,
}

impl Placing {
    /// The places of `spec`'s tasks, and the accumulator laid out for them; `None` when the
    /// summary has no parts (one job and no stages, or not a load run).
    pub(super) fn of(spec: &BatchSpec, acc: SummaryAcc) -> (Option<Placing>, SummaryAcc) {
        let keys = spec.job_keys.as_deref().filter(|_| spec.load.is_load);
        let stages = spec.load.stages.clone();
        if keys.is_none() && stages.is_none() {
            return (None, acc);
        }
        // By place in this list (a load run's list repeats jobs by weight, and a shard's is
        // turned): the part of its job's key.
        let (names, job_part) = match keys {
            Some(k) => (
                k.names.clone(),
                spec.jobs
                    .iter()
                    .map(|j| k.of_group[j.group as usize])
                    .collect(),
            ),
            None => (Vec::new(), Box::default()),
        };
        let bounds = stages.as_ref().map_or_else(Vec::new, |s| {
            s.bounds()
                .into_iter()
                .map(|(a, b)| (a.as_secs_f64() * 1000.0, b.as_secs_f64() * 1000.0))
                .collect()
        });
        let placing = Placing {
            job_part,
            stages,
            stripe: spec.load.stripe,
        };
        (Some(placing), acc.with_parts(names, bounds))
    }

    /// Task `index` of the run (a position in its stripe), started at `started` (if it did)
    /// in a run that began at `epoch`.
    pub(super) fn place(
        &self,
        index: usize,
        started: Option<Instant>,
        epoch: Option<Instant>,
    ) -> Place {
        let job = (!self.job_part.is_empty())
            .then(|| self.job_part[index % self.job_part.len()] as usize);
        let stage = self.stages.as_ref().and_then(|s| {
            if s.kind == crate::engine::spec::StageKind::Rate {
                Some(s.stage_of_task(self.stripe.global(index)))
            } else {
                let (started, epoch) = (started?, epoch?);
                Some(s.stage_at(started.saturating_duration_since(epoch)))
            }
        });
        Place { job, stage }
    }
}
