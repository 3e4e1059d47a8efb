//! The text report read from answers made by hand: each section, and answers from servers
//! of other versions.

use super::*;
use crate::cli::run::junit::junit;

#[test]
fn an_answer_from_another_version_still_reads_and_reports() {
    // An error code, a check and a field this build does not know, and fields left out.
    let answer = serde_json::json!({
        "id": "b1", "status": "completed", "label": "smoke",
        "summary": {
            "tasks": 2, "succeeded": 1, "failed": 1,
            "errors": { "quota": 1 }, "first_errors": { "quota": "over quota" },
            "something_new": [1, 2]
        },
        "verdict": { "passed": false, "checks": [
            { "name": "p42_ms", "limit": 10, "actual": 12, "passed": false }
        ] }
    });
    let report: Report = serde_json::from_value(answer).expect("reads");
    assert!(!report.passed());
    let text = text(&report);
    assert!(text.contains("errors      quota: 1"), "{text}");
    assert!(text.contains("quota (first): over quota"), "{text}");
    assert!(text.contains("[FAIL] p42_ms"), "{text}");
    assert!(junit(&report).contains("p42_ms: actual 12 against limit 10"));
}

#[test]
fn a_lost_instance_is_named_in_the_text_and_fails_the_junit_lost_case() {
    let detail = "instance node3 lost at 2025-05-01T10:00:07.210Z: 2 shards had no runner \
                  for 4915 ms; the batch started 1000.5 tasks/s meanwhile";
    let answer = serde_json::json!({
        "id": "b1", "status": "completed",
        "summary": { "tasks": 40000, "succeeded": 40000,
            "lost": { "shards": 2, "tasks": 0, "window_ms": 4915.0, "instances": ["node3"],
                "at": "2025-05-01T10:00:07.210000Z", "rate_per_s": 1000.5 } },
        "verdict": { "passed": false, "checks": [
            { "name": "p95_ms", "limit": 200, "actual": 12, "passed": true },
            { "name": "lost", "limit": 0, "actual": 4915, "passed": false, "detail": detail }
        ] }
    });
    let report: Report = serde_json::from_value(answer).expect("reads");

    let text = text(&report);
    let xml = junit(&report);

    assert!(
        text.contains(&format!("  lost        {detail}\n")),
        "{text}"
    );
    assert!(text.contains("[FAIL] lost"), "{text}");
    assert!(
        xml.contains("<testcase classname=\"fanout.thresholds\" name=\"lost\""),
        "{xml}"
    );
    assert!(
        xml.contains(&format!("message=\"lost: {detail}\"")),
        "{xml}"
    );
}

#[test]
fn a_loss_reported_by_an_older_server_still_reads() {
    let answer = serde_json::json!({
        "id": "b1", "status": "completed",
        "summary": { "tasks": 10, "succeeded": 10,
            "lost": { "shards": 1, "tasks": 3, "window_ms": 250.0 } }
    });
    let report: Report = serde_json::from_value(answer).expect("reads");

    assert!(
        text(&report)
            .contains("  lost        an instance lost: 1 shard had no runner for 250 ms\n"),
        "{}",
        text(&report)
    );
}

#[test]
fn the_text_report_numbers_stages_from_1_as_the_page_does() {
    let stage = |index: u32, start_ms: f64| {
        serde_json::json!({
            "index": index, "start_ms": start_ms, "end_ms": start_ms + 1000.0,
            "tasks": 10, "succeeded": 10, "throughput_per_s": 10.0, "errors": {}
        })
    };
    let answer = serde_json::json!({
        "id": "b1", "status": "completed",
        "summary": { "tasks": 30, "succeeded": 30,
            "stages": [stage(0, 0.0), stage(1, 1000.0), stage(2, 2000.0)] }
    });
    let report: Report = serde_json::from_value(answer).expect("reads");
    let text = text(&report);
    let numbers: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("  stages"))
        .skip(1)
        .take(3)
        .map(|l| l.split_whitespace().next().unwrap_or_default())
        .collect();
    assert_eq!(numbers, ["1", "2", "3"], "{text}");
    assert!(text.contains("    1  0-1 "), "{text}");
}
