//! A load run's stages: the arrival rate or the closed model's slots, ramped linearly from
//! stage to stage, and when each task is due or each slot open.

use std::time::Duration;

/// What a load run's stages ramp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageKind {
    /// The arrival rate (k6's `ramping-arrival-rate`).
    Rate,
    /// The slots running tasks one after another (k6's `ramping-vus`).
    Concurrency,
}

/// One stage: ramp linearly to `target` over `duration`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    pub duration: Duration,
    pub target: f64,
}

/// `load.stages`, validated: a piecewise linear rate or concurrency over the run, each stage
/// ramping from the previous one's target (the first from `from`).
#[derive(Debug, Clone, PartialEq)]
pub struct Stages {
    pub kind: StageKind,
    pub from: f64,
    pub list: Vec<Stage>,
    /// Rate stages: the tasks due before each stage's end (the integral of the rate), so
    /// that task `k`'s stage and due time are found without walking the ramp.
    arrivals: Vec<f64>,
}

impl Stages {
    pub fn new(kind: StageKind, from: f64, list: Vec<Stage>) -> Stages {
        let mut arrivals = Vec::with_capacity(list.len());
        let mut total = 0.0;
        for (r0, stage) in Self::ramps(from, &list) {
            total += stage.duration.as_secs_f64() * (r0 + stage.target) / 2.0;
            arrivals.push(total);
        }
        Stages {
            kind,
            from,
            list,
            arrivals,
        }
    }

    /// Each stage with the value it ramps from.
    fn ramps(from: f64, list: &[Stage]) -> impl Iterator<Item = (f64, &Stage)> {
        let starts = std::iter::once(from).chain(list.iter().map(|s| s.target));
        starts.zip(list)
    }

    /// Every stage's start and end, from the run's start.
    pub fn bounds(&self) -> Vec<(Duration, Duration)> {
        let mut at = Duration::ZERO;
        self.list
            .iter()
            .map(|s| {
                let start = at;
                at += s.duration;
                (start, at)
            })
            .collect()
    }

    /// The whole run's length.
    pub fn total(&self) -> Duration {
        self.list.iter().map(|s| s.duration).sum()
    }

    /// Rate stages: how many tasks the ramp starts (task `k` is due when the integral of the
    /// rate reaches `k`; the first at once).
    pub fn tasks(&self) -> usize {
        let total = self.arrivals.last().copied().unwrap_or(0.0);
        // The integral of a ramp is exact in arithmetic; rounding must not add a task due
        // after the end.
        (total - 1e-9).max(0.0).ceil() as usize
    }

    /// Rate stages: the stage task `k` is due in.
    pub fn stage_of_task(&self, k: usize) -> usize {
        let k = k as f64;
        self.arrivals
            .partition_point(|&a| a <= k)
            .min(self.list.len().saturating_sub(1))
    }

    /// Rate stages: when task `k` is due, from the run's start.
    pub fn due(&self, k: usize) -> Duration {
        let s = self.stage_of_task(k);
        let before = if s == 0 { 0.0 } else { self.arrivals[s - 1] };
        let (start, _) = self.bounds()[s];
        let r0 = if s == 0 {
            self.from
        } else {
            self.list[s - 1].target
        };
        let stage = self.list[s];
        let d = stage.duration.as_secs_f64();
        // Within the stage the tasks due by `t` are r0 t + (r1 - r0) t² / 2d; solved for the
        // task's place x in the form that stays exact when the rate is flat or starts at 0.
        let x = (k as f64 - before).max(0.0);
        let a = (stage.target - r0) / (2.0 * d);
        let root = (r0 * r0 + 4.0 * a * x).max(0.0).sqrt();
        let t = if x == 0.0 { 0.0 } else { 2.0 * x / (r0 + root) };
        start + Duration::from_secs_f64(t.clamp(0.0, d))
    }

    /// The stage `t` after the run's start falls in (the last one past the end).
    pub fn stage_at(&self, t: Duration) -> usize {
        let mut end = Duration::ZERO;
        for (i, s) in self.list.iter().enumerate() {
            end += s.duration;
            if t < end {
                return i;
            }
        }
        self.list.len().saturating_sub(1)
    }

    /// The ramped value `t` after the run's start.
    pub fn value_at(&self, t: Duration) -> f64 {
        let mut start = Duration::ZERO;
        for (r0, s) in Self::ramps(self.from, &self.list) {
            if t < start + s.duration {
                let f = (t - start).as_secs_f64() / s.duration.as_secs_f64();
                return r0 + (s.target - r0) * f;
            }
            start += s.duration;
        }
        self.list.last().map_or(self.from, |s| s.target)
    }

    /// Concurrency stages: the slots in use `t` after the start (the ramp, rounded).
    pub fn slots_at(&self, t: Duration) -> usize {
        (self.value_at(t) + 0.5).floor().max(0.0) as usize
    }

    /// Concurrency stages: the first time at or after `from` when more than `rank` slots are
    /// in use, if that happens before the end.
    pub fn rises_above(&self, rank: usize, from: Duration) -> Option<Duration> {
        let level = rank as f64 + 0.5;
        let mut start = Duration::ZERO;
        for (r0, s) in Self::ramps(self.from, &self.list) {
            let end = start + s.duration;
            if end > from {
                let t0 = from.max(start);
                let at_t0 = self.value_at(t0);
                if at_t0 >= level {
                    return Some(t0);
                }
                if s.target >= level && s.target > r0 {
                    let f = (level - r0) / (s.target - r0);
                    let t = start + s.duration.mul_f64(f.clamp(0.0, 1.0));
                    return Some(t.max(t0));
                }
            }
            start = end;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(kind: StageKind, from: f64, stages: &[(u64, f64)]) -> Stages {
        let list = stages
            .iter()
            .map(|&(ms, target)| Stage {
                duration: Duration::from_millis(ms),
                target,
            })
            .collect();
        Stages::new(kind, from, list)
    }

    /// 0 → 200/s over 2 s, 200/s for 2 s, 200 → 0/s over 2 s: 200 + 400 + 200 tasks, each due
    /// where the integral of the rate reaches its number.
    #[test]
    fn rate_stages_start_the_integral_of_the_rate_at_its_times() {
        let s = ramp(
            StageKind::Rate,
            0.0,
            &[(2000, 200.0), (2000, 200.0), (2000, 0.0)],
        );
        assert_eq!(s.tasks(), 800);
        let per_stage = (0..800).fold([0; 3], |mut n, k| {
            n[s.stage_of_task(k)] += 1;
            n
        });
        assert_eq!(per_stage, [200, 400, 200]);
        // In the first stage N(t) = 50 t²: task 50 is due at 1 s, task 200 at 2 s.
        assert_eq!(s.due(0), Duration::ZERO);
        assert!((s.due(50).as_secs_f64() - 1.0).abs() < 1e-6);
        assert!((s.due(200).as_secs_f64() - 2.0).abs() < 1e-6);
        // Flat: one task every 5 ms.
        assert!((s.due(300).as_secs_f64() - 2.5).abs() < 1e-6);
        // Ramping down: the last task is due before the end, and dues only grow.
        assert!(s.due(799) < Duration::from_secs(6));
        assert!((1..800).all(|k| s.due(k) >= s.due(k - 1)));
        // Tasks due in the last second of the ramp down: the integral of 100 → 0 over 1 s.
        let last_second = (0..800)
            .filter(|&k| s.due(k) >= Duration::from_secs(5))
            .count();
        assert!((49..=51).contains(&last_second), "{last_second}");
    }

    #[test]
    fn a_rate_ramp_from_a_starting_rate_counts_it() {
        let s = ramp(StageKind::Rate, 100.0, &[(1000, 300.0)]);
        assert_eq!(s.tasks(), 200);
        // 100 t + 100 t² = 100 at t = (√5 - 1) / 2.
        assert!((s.due(100).as_secs_f64() - 0.618_034).abs() < 1e-5);
    }

    #[test]
    fn concurrency_stages_open_slots_in_rank_order() {
        let s = ramp(
            StageKind::Concurrency,
            0.0,
            &[(1000, 10.0), (1000, 10.0), (1000, 0.0)],
        );
        assert_eq!(s.slots_at(Duration::ZERO), 0);
        assert_eq!(s.slots_at(Duration::from_millis(500)), 5);
        assert_eq!(s.slots_at(Duration::from_millis(1500)), 10);
        assert_eq!(s.slots_at(Duration::from_millis(2500)), 5);
        // Slot 4 (the fifth) opens when the ramp passes 4.5: at 450 ms.
        let at = s.rises_above(4, Duration::ZERO).unwrap();
        assert_eq!(at, Duration::from_millis(450));
        assert_eq!(s.slots_at(at), 5);
        // Already open: now.
        assert_eq!(
            s.rises_above(4, Duration::from_millis(1200)),
            Some(Duration::from_millis(1200))
        );
        // Ramping down, slot 9 never opens again.
        assert_eq!(s.rises_above(9, Duration::from_millis(2100)), None);
        assert_eq!(s.stage_at(Duration::from_millis(1999)), 1);
        assert_eq!(s.stage_at(Duration::from_millis(2000)), 2);
        assert_eq!(s.total(), Duration::from_secs(3));
    }
}
