//! Prometheus metrics: one process-wide recorder, rendered by `GET /metrics`.
//!
//! Names follow Prometheus conventions (`fanout_` prefix, `_total` counters, `_seconds`
//! durations). The engine's per-task figures go through handles looked up once ([`meters`]),
//! so a task costs a few atomic additions, not a registry lookup per label set.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::engine::BatchStatus;
use crate::engine::meter::Meter;
use crate::engine::spec::{Kind, Mode};
use crate::engine::task::TaskStatus;
use crate::engine::wire_name as name;

/// Bucket bounds (seconds) for task and request durations: 1 ms to 5 minutes.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder (once; later calls return the same handle).
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .expect("the bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics stays empty");
            }
            describe();
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "fanout_batches_total",
        "Batches finished, by mode and final status"
    );
    describe_gauge!("fanout_batches_in_flight", "Batches running now");
    describe_counter!("fanout_tasks_total", "Tasks ended, by job kind and status");
    describe_gauge!("fanout_tasks_in_flight", "Tasks running now");
    describe_histogram!(
        "fanout_task_duration_seconds",
        Unit::Seconds,
        "Task duration (all attempts), by job kind"
    );
    describe_counter!(
        "fanout_http_requests_total",
        "API requests answered, by route, method and status"
    );
    describe_histogram!(
        "fanout_http_request_duration_seconds",
        Unit::Seconds,
        "API request latency to the response head, by route and method"
    );
    describe_counter!(
        "fanout_shards_claimed_total",
        "Shards this instance claimed (first claims and claims again after a loss)"
    );
    describe_counter!(
        "fanout_shards_reclaimed_total",
        "Shards this instance claimed after another instance lost them (to run or to end)"
    );
    describe_counter!(
        "fanout_shards_lost_total",
        "Shards this instance was running when it lost their lease"
    );
    describe_counter!(
        "fanout_lease_renewals_failed_total",
        "Lease renewals that failed or timed out"
    );
    describe_histogram!(
        "fanout_shard_claim_latency_seconds",
        Unit::Seconds,
        "From a shard joining the queue to this instance claiming it"
    );
    describe_histogram!(
        "fanout_claim_statement_seconds",
        Unit::Seconds,
        "How long one claim statement took"
    );
}

const KINDS: [Kind; 4] = [Kind::Http, Kind::Sleep, Kind::File, Kind::Flow];
const ENDED: [TaskStatus; 5] = TaskStatus::ENDED;

const MODES: [Mode; 2] = [Mode::Gather, Mode::Wait];
const FINAL: [BatchStatus; 4] = [
    BatchStatus::Completed,
    BatchStatus::Failed,
    BatchStatus::Cancelled,
    BatchStatus::Interrupted,
];

/// The engine's metric handles.
pub struct Meters {
    batches: [[Counter; 4]; 2],
    tasks: [[Counter; 5]; 4],
    durations: [Histogram; 4],
    tasks_in_flight: Gauge,
    batches_in_flight: Gauge,
}

/// The handles, registered with whatever recorder is installed at the first call (none in a
/// process that never serves: they then record nothing).
pub fn meters() -> &'static Meters {
    static METERS: OnceLock<Meters> = OnceLock::new();
    METERS.get_or_init(|| Meters {
        batches: MODES.map(|m| {
            FINAL.map(|s| {
                metrics::counter!("fanout_batches_total", "mode" => name(&m), "status" => name(&s))
            })
        }),
        tasks: KINDS.map(|k| {
            ENDED.map(|s| {
                metrics::counter!("fanout_tasks_total", "kind" => name(&k), "status" => name(&s))
            })
        }),
        durations: KINDS
            .map(|k| metrics::histogram!("fanout_task_duration_seconds", "kind" => name(&k))),
        tasks_in_flight: metrics::gauge!("fanout_tasks_in_flight"),
        batches_in_flight: metrics::gauge!("fanout_batches_in_flight"),
    })
}

impl Meter for Meters {
    fn batch_started(&self) {
        self.batches_in_flight.increment(1.0);
    }

    fn batch_finished(&self, mode: Mode, status: BatchStatus) {
        self.batches_in_flight.decrement(1.0);
        let m = MODES.iter().position(|&x| x == mode).unwrap_or(0);
        if let Some(s) = FINAL.iter().position(|&x| x == status) {
            self.batches[m][s].increment(1);
        }
    }

    fn tasks_started(&self, n: usize) {
        self.tasks_in_flight.increment(n as f64);
    }

    fn tasks_ended(&self, n: usize) {
        self.tasks_in_flight.decrement(n as f64);
    }

    fn task_ended(&self, kind: Kind, status: TaskStatus, duration: Option<Duration>) {
        let k = KINDS.iter().position(|&x| x == kind).unwrap_or(0);
        if let Some(s) = ENDED.iter().position(|&x| x == status) {
            self.tasks[k][s].increment(1);
        }
        if let Some(d) = duration {
            self.durations[k].record(d.as_secs_f64());
        }
    }
}

/// Drains recorded samples into the histograms now and then, so that a server nobody scrapes
/// keeps bounded memory.
pub fn spawn_upkeep(handle: PrometheusHandle) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    });
}
