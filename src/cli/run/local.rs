//! `fanout run` in-process: the batch is submitted to a service of its own on `memory://`,
//! as `POST /batches` submits it, with the service's defaults except where a one-off run on
//! one's own machine wants others.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

use super::{Picture, REPORT_BINS, RunArgs, Unusable, describe, tasks_bar};
use crate::config::Config;
use crate::engine::jobs::Trust;
use crate::engine::meter::NO_METER;
use crate::engine::spec::ResultsMode;
use crate::engine::summary::{LatencyMetric, Summary};
use crate::engine::{Batch, Busy, Engine, StopReason};
use crate::guard::{NetGuard, NetPolicy};
use crate::request::parse_batch;
use crate::service::{Baseline, Batches, Cluster, Submission, Submitted};
use crate::store::memory::MemoryStore;

/// `--max-jobs` by default with `results: errors` or `none`: a task costs a few bytes.
const SPARSE_MAX_JOBS: usize = 10_000_000;
/// `--max-jobs` by default with `results: all`: every task keeps its record.
const FULL_MAX_JOBS: usize = 1_000_000;
/// Longest a batch may run in-process: a load test's length is its author's to choose (the
/// service's hour guards a shared server).
const MAX_BATCH_DURATION: Duration = Duration::from_secs(24 * 3600);

/// The service's settings as this run uses them.
fn config(args: &RunArgs, max_jobs: usize) -> Result<Config, Unusable> {
    let mut config = Config::defaults();
    config.database_url = "memory://".into();
    config.allow_net = args.allow_net.clone();
    config.files_root = args.files_root.clone();
    config.ca_file = args.ca_file.clone();
    // The batch file is the user's own, and so is the machine: nobody else's jobs to guard.
    config.allow_insecure_tls = true;
    config.max_jobs = max_jobs;
    config.max_queue = max_jobs;
    config.max_concurrency = u32::try_from(args.max_concurrency.max(1)).unwrap_or(u32::MAX);
    // The batch file is the user's own: no body limit.
    config.max_body_bytes = usize::MAX;
    config.max_batch_duration = MAX_BATCH_DURATION;
    Ok(config)
}

/// Runs the batch here and answers it as the API would once it has finished.
/// `baseline`: the summary of the baseline run's report (`--baseline FILE`).
/// `picture`: read the finished batch's picture too (an HTML report).
pub(super) async fn run(
    args: &RunArgs,
    body: &[u8],
    baseline: Option<&Summary>,
    picture: bool,
) -> Result<(Value, Option<Picture>), Unusable> {
    let mut config = config(args, args.max_jobs.unwrap_or(SPARSE_MAX_JOBS))?;
    let mut spec = parse_batch(body, &config.limits()).map_err(|e| Unusable(describe(&e)))?;
    if args.max_jobs.is_none() && spec.results == ResultsMode::All {
        // Every task keeps its whole record: a lower default bound on memory.
        config = self::config(args, FULL_MAX_JOBS)?;
        spec = parse_batch(body, &config.limits()).map_err(|e| {
            Unusable(format!(
                "{}\n  (with results \"all\" the default is {FULL_MAX_JOBS} tasks: use results \"errors\" or \"none\", or --max-jobs)",
                describe(&e)
            ))
        })?;
    }
    let policy = NetPolicy::parse(&config.allow_net).map_err(Unusable)?;
    let trust = Trust::new(&config.ca_file).map_err(Unusable)?;
    let engine = Engine::new(config.engine(NetGuard::new(policy), Arc::new(trust), NO_METER));
    let batches = Batches::new(
        engine,
        Arc::new(MemoryStore::default()),
        Cluster::alone(Arc::new(config.limits())),
    );
    let submission = Submission {
        spec,
        body: Bytes::copy_from_slice(body),
        key: None,
        status: 201,
        baseline: baseline.map_or(Baseline::Stored, |s| Baseline::Given(Box::new(s.clone()))),
    };
    let batch = match batches.submit(submission).await {
        Ok(Submitted::New(batch)) => batch,
        Ok(Submitted::Busy(Busy::Never { tasks, capacity })) => {
            return Err(Unusable(format!(
                "the batch holds {tasks} tasks at once; this run allows {capacity} (--max-jobs)"
            )));
        }
        Ok(Submitted::BadBaseline(why)) => return Err(Unusable(why)),
        Ok(_) => return Err(Unusable("the batch was not accepted".into())),
        Err(e) => return Err(Unusable(e.to_string())),
    };
    let bar = progress_bar(&batch);
    tokio::select! {
        () = batch.finished() => {}
        () = crate::app::shutdown_signal() => stop(&batch).await,
    }
    if let Some(bar) = bar {
        bar.abort();
        eprint!("\r\x1b[2K");
    }
    let answer = serde_json::from_slice(&batch.to_json()).map_err(|e| Unusable(e.to_string()))?;
    Ok((answer, picture.then(|| picture_of(&batch))))
}

/// The finished batch's picture, from its totals in this process.
fn picture_of(batch: &Batch) -> Picture {
    let timeline = batch.timeline(None, None, None, REPORT_BINS as usize);
    let latency = [
        ("duration", LatencyMetric::Duration),
        ("ttfb", LatencyMetric::Ttfb),
    ]
    .into_iter()
    .map(|(name, metric)| {
        let l = batch.latency(None, metric);
        (name.to_owned(), serde_json::to_value(l).expect("JSON"))
    })
    .collect();
    Picture {
        timeline: serde_json::to_value(timeline).expect("JSON"),
        latency,
    }
}

/// How long the tasks running at Ctrl-C or SIGTERM may take to end before they are stopped.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Ctrl-C or SIGTERM: start no more tasks, give the running ones [`STOP_GRACE`] to end, then
/// stop them; the batch ends `interrupted`, so its report fails.
async fn stop(batch: &Batch) {
    eprintln!(
        "\nfanout run: stopping: no new tasks; those running get {} s to end",
        STOP_GRACE.as_secs()
    );
    batch.stop_starting(StopReason::Interrupted);
    if tokio::time::timeout(STOP_GRACE, batch.finished())
        .await
        .is_err()
    {
        batch.stop(StopReason::Interrupted);
        batch.finished().await;
    }
}

/// A progress bar on stderr while the batch runs, when stderr is a terminal (nothing extra in
/// a CI log).
fn progress_bar(batch: &Arc<Batch>) -> Option<tokio::task::JoinHandle<()>> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let batch = batch.clone();
    Some(tokio::spawn(async move {
        let bar = tasks_bar();
        loop {
            // A load run for a duration makes its tasks as it goes: the length grows.
            let (done, total) = batch.progress();
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }))
}
