//! Which job and which stage a load run's task counts under in `summary.by_job` and
//! `summary.stages`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use crate::engine::spec::{BatchSpec, Stages, Stripe};
use crate::engine::summary::{Place, SummaryAcc};

/// Most jobs a load run breaks its summary down by: each one keeps histograms of its own.
pub const MAX_BY_JOB: usize = 64;

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
        let keys = job_keys(spec);
        let stages = spec.load.stages.clone();
        if keys.is_none() && stages.is_none() {
            return (None, acc);
        }
        let (names, job_part) = match keys {
            Some((names, parts)) => (names, parts),
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

/// A load run of several jobs: the keys `by_job` uses (each job's `id`, else its place in the
/// request's `jobs`; jobs that share an `id` count together), and each job list position's
/// key. `None` for one job, more than [`MAX_BY_JOB`], or a batch without `load`.
pub fn job_keys(spec: &BatchSpec) -> Option<(Vec<String>, Box<[u32]>)> {
    if !spec.load.is_load {
        return None;
    }
    // The request's jobs, by their place in it (a load run's list repeats them by weight,
    // and a shard's list is turned).
    let mut by_group: BTreeMap<u32, String> = BTreeMap::new();
    for j in &spec.jobs {
        by_group
            .entry(j.group)
            .or_insert_with(|| j.id.clone().unwrap_or_else(|| j.group.to_string()));
    }
    let mut names: Vec<String> = Vec::new();
    let mut part_of: BTreeMap<u32, u32> = BTreeMap::new();
    for (group, key) in by_group {
        let part = match names.iter().position(|n| *n == key) {
            Some(p) => p,
            None => {
                names.push(key);
                names.len() - 1
            }
        };
        part_of.insert(group, part as u32);
    }
    if !(2..=MAX_BY_JOB).contains(&names.len()) {
        return None;
    }
    let parts = spec.jobs.iter().map(|j| part_of[&j.group]).collect();
    Some((names, parts))
}
