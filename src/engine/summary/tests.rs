//! The accumulator's figures, merges and stored form.

use super::*;

#[test]
fn percentiles_follow_the_recorded_durations() {
    let mut acc = SummaryAcc::new(100);
    for ms in 1..=100u64 {
        acc.record(
            TaskStatus::Succeeded,
            Some(Duration::from_millis(ms)),
            None,
            None,
        );
    }
    let s = acc.summary(Some(Duration::from_secs(1)));
    let d = s.duration_ms.expect("durations recorded");
    assert_eq!(d.min, 1.0);
    assert!((d.p50 - 50.0).abs() < 0.1, "p50 {}", d.p50);
    assert!((d.p99 - 99.0).abs() < 0.1, "p99 {}", d.p99);
    assert!((d.max - 100.0).abs() < 0.1, "max {}", d.max);
    assert!((d.mean - 50.5).abs() < 0.01, "mean {}", d.mean);
    assert_eq!(s.throughput_per_s, 100.0);
    assert_eq!(s.pending, 0);
}

#[test]
fn unended_tasks_count_as_pending_and_errors_by_code() {
    let mut acc = SummaryAcc::new(3);
    acc.record(
        TaskStatus::TimedOut,
        Some(Duration::from_millis(5)),
        None,
        Some(&TaskError::new(ErrorCode::Timeout, "too slow")),
    );
    let s = acc.summary(None);
    assert_eq!((s.timed_out, s.pending), (1, 2));
    assert_eq!(s.errors.get(&ErrorCode::Timeout), Some(&1));
    assert_eq!(s.first_errors[&ErrorCode::Timeout], "too slow");
}

#[test]
fn tasks_that_never_reached_their_target_have_no_latency_and_no_throughput() {
    let mut acc = SummaryAcc::new(4);
    for (code, message) in [
        (ErrorCode::Forbidden, "127.0.0.1:3000 is loopback"),
        (ErrorCode::Forbidden, "another refusal"),
        (
            ErrorCode::Dns,
            "no-such-host.invalid: name does not resolve",
        ),
        (
            ErrorCode::Connect,
            "connecting to 127.0.0.1:9: connection refused",
        ),
    ] {
        acc.record(
            TaskStatus::Failed,
            Some(Duration::from_micros(60)),
            None,
            Some(&TaskError::new(code, message)),
        );
    }
    let s = acc.summary(Some(Duration::from_millis(1)));
    assert!(s.duration_ms.is_none(), "{:?}", s.duration_ms);
    assert_eq!(s.throughput_per_s, 0.0);
    assert_eq!(s.failed, 4);
    assert_eq!(
        s.first_errors[&ErrorCode::Forbidden],
        "127.0.0.1:3000 is loopback"
    );
}

#[test]
fn a_task_that_reached_its_target_and_failed_counts_its_latency() {
    let mut acc = SummaryAcc::new(1);
    acc.record(
        TaskStatus::Failed,
        Some(Duration::from_millis(3)),
        None,
        Some(&TaskError::new(ErrorCode::Status, "500")),
    );
    let s = acc.summary(Some(Duration::from_secs(1)));
    let max = s.duration_ms.map(|d| d.max).unwrap_or_default();
    assert!((max - 3.0).abs() < 0.01, "max {max}");
    assert_eq!(s.throughput_per_s, 1.0);
}

/// Shards' accumulators added together give the percentiles of one histogram fed every
/// shard's values, and exact counts, also after a round trip through a checkpoint.
#[test]
fn merged_shards_equal_one_histogram_of_every_value() {
    let mut one = SummaryAcc::new(3000);
    let mut shards = [
        SummaryAcc::new(1000),
        SummaryAcc::new(1000),
        SummaryAcc::new(1000),
    ];
    for i in 0..3000u64 {
        // Each shard sees its own distribution: 1-1000 µs, 2-20 ms and 50-100 ms.
        let us = match i % 3 {
            0 => 1 + i % 1000,
            1 => 2_000 + (i * 7919) % 18_000,
            _ => 50_000 + (i * 104_729) % 50_000,
        };
        let status = if i % 10 == 0 {
            TaskStatus::Failed
        } else {
            TaskStatus::Succeeded
        };
        let error =
            (status == TaskStatus::Failed).then(|| TaskError::new(ErrorCode::Status, "500"));
        let d = Some(Duration::from_micros(us));
        one.record(status, d, None, error.as_ref());
        shards[(i % 3) as usize].record(status, d, None, error.as_ref());
    }
    let mut merged = SummaryAcc::new(0);
    for shard in &shards {
        let stored = serde_json::to_string(shard).expect("serializes");
        let back: SummaryAcc = serde_json::from_str(&stored).expect("reads back");
        merged.merge(&back);
    }
    let wall = Some(Duration::from_secs(3));
    let (a, b) = (one.summary(wall), merged.summary(wall));
    assert_eq!(
        serde_json::to_value(&a).unwrap(),
        serde_json::to_value(&b).unwrap()
    );
    assert_eq!((b.tasks, b.failed, b.succeeded), (3000, 300, 2700));
    // Averaging the shards' p99 would give about 70 ms; the combined histogram's is the
    // top shard's.
    assert!(b.duration_ms.unwrap().p99 > 95.0);
}

#[test]
fn a_few_values_kept_as_they_are_give_the_figures_and_stored_form_of_a_histogram() {
    // Durations from 37 µs to some seconds, in an order that is not sorted.
    let all: Vec<Duration> = (0..200u64)
        .map(|i| Duration::from_micros(37 + (i * 7919 % 200) * (i % 13 + 1) * 997))
        .collect();
    // Recorded one by one, merged from halves, and merged from many small pieces: every way
    // crosses from a few values kept as they are to a histogram at its own moment.
    let mut one = Timings::new();
    all.iter().for_each(|&d| one.record(d));
    let (mut a, mut b) = (Timings::new(), Timings::new());
    all[..100].iter().for_each(|&d| a.record(d));
    all[100..].iter().for_each(|&d| b.record(d));
    a.merge(&b);
    let mut pieces = Timings::new();
    for chunk in all.chunks(7) {
        let mut p = Timings::new();
        chunk.iter().for_each(|&d| p.record(d));
        pieces.merge(&p);
    }
    let mut hdr = Timings::empty();
    all.iter()
        .for_each(|d| hdr.record(d.as_micros() as u64).unwrap());
    for n in [1, 5, 64, 65, 200] {
        let mut few = Timings::new();
        all[..n].iter().for_each(|&d| few.record(d));
        let mut h = Timings::empty();
        all[..n]
            .iter()
            .for_each(|d| h.record(d.as_micros() as u64).unwrap());
        let p = few.percentiles().unwrap();
        assert_eq!(few.len(), n as u64);
        assert_eq!(
            p.p99,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            "{n} values"
        );
        assert_eq!(
            p.p50,
            h.value_at_quantile(0.50) as f64 / 1000.0,
            "{n} values"
        );
        assert_eq!(p.max, h.max() as f64 / 1000.0);
        // The stored form is the histogram's, however the values were kept.
        let back: Timings = serde_json::from_value(serde_json::to_value(&few).unwrap()).unwrap();
        let figures = |t: &Timings| serde_json::to_value(t.percentiles()).unwrap();
        assert_eq!(figures(&back), figures(&few));
    }
    for t in [&one, &a, &pieces] {
        assert_eq!(t.len(), 200);
        let figures = |t: &Timings| serde_json::to_value(t.percentiles()).unwrap();
        assert_eq!(figures(t), figures(&one));
        let (h, sum) = t.histogram().unwrap();
        assert_eq!(h.as_ref(), &hdr);
        assert_eq!(sum, all.iter().map(|d| d.as_micros() as u64).sum::<u64>());
    }
}

/// Two shards at 100 tasks/s each for 10 s; the second was lost from 3 s to 5 s.
#[test]
fn a_merged_loss_says_who_when_and_the_rate_the_batch_fell_to() {
    let t0 = 1_700_000_000_000u64;
    let gap = (t0 + 3000)..(t0 + 5000);
    let (mut a, mut b) = (SummaryAcc::new(1000), SummaryAcc::new(1000));
    for i in 0..1000u64 {
        let at = t0 + i * 10;
        // Bins record µs.
        a.record_times(at * 1000, (at + 5) * 1000, false);
        if !gap.contains(&at) {
            b.record_times(at * 1000, (at + 5) * 1000, false);
        }
    }
    let at = chrono::DateTime::from_timestamp_millis(gap.start as i64);
    b.lose(Lost {
        shards: 1,
        tasks: 4,
        window_ms: 2000.0,
        instances: vec!["node3".into()],
        at,
        rate_per_s: None,
    });
    // A stored loss from before the instance and the gap's start were kept.
    a.lose(serde_json::from_str(r#"{"shards":1,"tasks":0,"window_ms":800}"#).unwrap());

    a.merge(&b);
    let lost = a.summary(None).lost.expect("a loss");

    assert_eq!((lost.shards, lost.tasks, lost.window_ms), (2, 4, 2000.0));
    assert_eq!(lost.instances, ["node3"]);
    assert_eq!(lost.at, at, "the start of the longest gap");
    // To a bin's width (16 ms here) at either end of the gap.
    let rate = lost.rate_per_s.expect("a rate");
    assert!(
        (99.0..=101.0).contains(&rate),
        "one shard of two ran meanwhile: {rate}"
    );
}
