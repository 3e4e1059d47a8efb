//! `GET /batches/{id}/events`: tasks in completion order, resumable, replayed once finished.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

/// One server-sent event.
#[derive(Debug, Clone)]
struct Sse {
    event: String,
    id: Option<String>,
    data: Value,
}

/// An open event stream, read event by event.
struct Stream {
    response: reqwest::Response,
    buffer: String,
}

impl Stream {
    async fn open(app: &TestApp, id: &str, last_event_id: Option<&str>) -> Stream {
        let mut req = app.client.get(format!("{}/batches/{id}/events", app.base));
        if let Some(last) = last_event_id {
            req = req.header("last-event-id", last);
        }
        let response = req.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Stream {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (comments skipped), or `None` when the server closed the stream.
    async fn next(&mut self) -> Option<Sse> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = (String::from("message"), None, String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() && id.is_none() {
                    continue; // a keep-alive comment
                }
                return Some(Sse {
                    event,
                    id,
                    data: serde_json::from_str(&data).unwrap(),
                });
            }
            let chunk = tokio::time::timeout(Duration::from_secs(20), self.response.chunk())
                .await
                .expect("the stream went quiet for 20 s")
                .unwrap()?;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Every event until the stream closes.
    async fn all(mut self) -> Vec<Sse> {
        let mut out = Vec::new();
        while let Some(e) = self.next().await {
            out.push(e);
        }
        out
    }
}

fn tasks(events: &[Sse]) -> Vec<&Sse> {
    events.iter().filter(|e| e.event == "task").collect()
}

#[tokio::test]
async fn tasks_arrive_in_completion_order_then_the_batch_closes_the_stream() {
    let app = spawn_app().await;
    let id = app
        .submit(&json!({ "jobs": [
            { "kind": "sleep", "id": "slow", "duration_ms": 600 },
            { "kind": "sleep", "id": "fast", "duration_ms": 100 },
            { "kind": "sleep", "id": "medium", "duration_ms": 350 }
        ] }))
        .await;

    let events = Stream::open(&app, &id, None).await.all().await;

    let t = tasks(&events);
    let order: Vec<&str> = t.iter().map(|e| e.data["id"].as_str().unwrap()).collect();
    assert_eq!(order, ["fast", "medium", "slow"]);
    let ids: Vec<&str> = t.iter().map(|e| e.id.as_deref().unwrap()).collect();
    assert_eq!(ids, ["1", "2", "3"]);
    for e in &t {
        assert_eq!(e.data["seq"].to_string(), *e.id.as_ref().unwrap());
        assert_eq!(e.data["status"], "succeeded");
    }
    let last = events.last().unwrap();
    assert_eq!(last.event, "batch");
    assert_eq!(last.data["id"], id.as_str());
    assert_eq!(last.data["status"], "completed");
    assert_eq!(last.data["summary"]["succeeded"], 3);
    // The stream followed the batch while it ran: progress came before the last task.
    let first_progress = events.iter().position(|e| e.event == "progress");
    assert!(
        first_progress.is_some_and(|p| p < events.len() - 2),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_reconnect_with_last_event_id_gets_no_duplicates_and_no_gaps() {
    let app = spawn_app().await;
    let jobs: Vec<Value> = (0..40)
        .map(|i| json!({ "kind": "sleep", "duration_ms": 20 + (i * 7) % 50 }))
        .collect();
    let id = app.submit(&json!({ "jobs": jobs, "concurrency": 4 })).await;

    // Read a few tasks, then hang up mid-batch.
    let mut first = Stream::open(&app, &id, None).await;
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let e = first.next().await.unwrap();
        if e.event == "task" {
            seen.push(e.id.unwrap().parse::<u32>().unwrap());
        }
    }
    drop(first);
    let last = seen.last().unwrap().to_string();
    let rest = Stream::open(&app, &id, Some(&last)).await.all().await;

    seen.extend(
        tasks(&rest)
            .iter()
            .map(|e| e.id.as_ref().unwrap().parse::<u32>().unwrap()),
    );
    assert_eq!(seen, (1..=40).collect::<Vec<u32>>());
    assert_eq!(rest.last().unwrap().event, "batch");
}

#[tokio::test]
async fn a_finished_batch_replays_then_closes_also_after_a_restart() {
    let app = spawn_app().await;
    let res = app
        .post(&json!({ "mode": "wait", "jobs": [
            { "kind": "sleep", "duration_ms": 80 },
            { "kind": "sleep", "duration_ms": 10 }
        ] }))
        .await;
    let id = res.json["id"].as_str().unwrap().to_owned();
    let done: Vec<Value> = res.json["done"].as_array().unwrap().clone();

    let replay = Stream::open(&app, &id, None).await.all().await;
    let t = tasks(&replay);
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].data["index"], done[0]["index"]);
    assert_eq!(t[1].data["index"], done[1]["index"]);
    assert_eq!(replay.last().unwrap().event, "batch");

    if crate::helpers::backend() != "memory" {
        let app = app.restart().await;
        let replay = Stream::open(&app, &id, None).await.all().await;
        let again: Vec<Value> = tasks(&replay)
            .iter()
            .map(|e| e.data["index"].clone())
            .collect();
        assert_eq!(again, [done[0]["index"].clone(), done[1]["index"].clone()]);
        let resumed = Stream::open(&app, &id, Some("1")).await.all().await;
        assert_eq!(tasks(&resumed).len(), 1);
        assert_eq!(tasks(&resumed)[0].id.as_deref(), Some("2"));
    }
}

#[tokio::test]
async fn a_consumer_that_never_reads_does_not_stop_the_batch() {
    let app = spawn_app().await;
    // Answers of 4 KiB each: far more than socket buffers hold unread.
    let target = crate::helpers::spawn_target().await;
    let id = app
        .submit(&json!({
            "jobs": [{ "kind": "http", "url": format!("{}/bytes/4096", target.base) }],
            "load": { "repeat": 3000 }, "concurrency": 32
        }))
        .await;

    let stalled = app
        .client
        .get(format!("{}/batches/{id}/events", app.base))
        .send()
        .await
        .unwrap();
    let b = app.finished(&id).await;

    assert_eq!(b["summary"]["succeeded"], 3000);
    drop(stalled);
}

#[tokio::test]
async fn results_none_sends_progress_and_the_batch_but_no_tasks() {
    let app = spawn_app().await;
    let id = app
        .submit(&json!({
            "jobs": [{ "kind": "sleep", "duration_ms": 30 }],
            "load": { "repeat": 20 }, "concurrency": 2, "results": "none"
        }))
        .await;

    let events = Stream::open(&app, &id, None).await.all().await;

    assert!(tasks(&events).is_empty());
    assert!(events.iter().any(|e| e.event == "progress"));
    let last = events.last().unwrap();
    assert_eq!(last.event, "batch");
    assert_eq!(last.data["summary"]["tasks"], 20);
}

#[tokio::test]
async fn an_unknown_batch_is_a_404_problem() {
    let app = spawn_app().await;
    let res = app
        .get("/batches/01a21366-4f5f-70f8-a4c3-8bc44efdd12d/events")
        .await;
    assert_eq!(res.status, 404);
    assert_eq!(res.json["code"], "batch_not_found");
}

#[tokio::test]
#[cfg_attr(
    fanout_test_backend = "memory",
    ignore = "needs a durable store: memory:// keeps nothing across a restart"
)]
async fn with_results_errors_a_stored_batch_resumes_across_the_gaps_in_seq() {
    let app = spawn_app().await;
    // Files that do not exist fail; sleeps succeed and are not sent (results: errors).
    let jobs: Vec<Value> = (0..12)
        .map(|i| {
            if i % 3 == 0 {
                json!({ "kind": "file", "path": format!("missing-{i}.txt") })
            } else {
                json!({ "kind": "sleep", "duration_ms": 1 + i })
            }
        })
        .collect();
    let res = app
        .post(&json!({ "jobs": jobs, "return_exceptions": true, "results": "errors", "concurrency": 2 }))
        .await;
    let id = res.json["id"].as_str().unwrap().to_owned();
    let live = Stream::open(&app, &id, None).await.all().await;
    let live_ids: Vec<String> = tasks(&live).iter().map(|e| e.id.clone().unwrap()).collect();
    assert_eq!(live_ids.len(), 4, "{live:?}");

    let app = app.restart().await;
    let replay = Stream::open(&app, &id, None).await.all().await;
    let replay_ids: Vec<String> = tasks(&replay)
        .iter()
        .map(|e| e.id.clone().unwrap())
        .collect();
    assert_eq!(replay_ids, live_ids);
    let resumed = Stream::open(&app, &id, Some(&live_ids[1]))
        .await
        .all()
        .await;
    let resumed_ids: Vec<String> = tasks(&resumed)
        .iter()
        .map(|e| e.id.clone().unwrap())
        .collect();
    assert_eq!(resumed_ids, live_ids[2..].to_vec());
    assert_eq!(resumed.last().unwrap().event, "batch");
}

#[tokio::test]
async fn large_results_arrive_whole_and_once_a_stretch_at_a_time() {
    let app = spawn_app().await;
    let target = crate::helpers::spawn_target().await;
    // 12 answers of 100 KiB: more than one turn's worth of queued event data.
    let res = app
        .post(&json!({
            "jobs": [{ "kind": "http", "url": format!("{}/bytes/102400", target.base) }],
            "load": { "repeat": 12 }, "concurrency": 3
        }))
        .await;
    let id = res.json["id"].as_str().unwrap().to_owned();

    let events = Stream::open(&app, &id, None).await.all().await;

    let ids: Vec<u32> = tasks(&events)
        .iter()
        .map(|e| e.id.as_ref().unwrap().parse().unwrap())
        .collect();
    assert_eq!(ids, (1..=12).collect::<Vec<u32>>());
    for e in tasks(&events) {
        assert_eq!(e.data["output"]["bytes"], 102400);
        assert_eq!(e.data["output"]["body"].as_str().unwrap().len(), 102400);
    }
    assert_eq!(events.last().unwrap().event, "batch");
}

#[tokio::test]
async fn a_reconnect_after_the_batch_event_is_told_204_so_an_event_source_stops() {
    let app = spawn_app().await;
    // With results "errors" the last tasks are not sent: the batch event's id still says
    // where the stream ended.
    let id = app
        .submit(
            &json!({ "results": "errors", "return_exceptions": true, "jobs": [
                { "kind": "file", "path": "missing.txt" },
                { "kind": "sleep", "duration_ms": 30 },
                { "kind": "sleep", "duration_ms": 60 }
            ]}),
        )
        .await;
    let events = Stream::open(&app, &id, None).await.all().await;
    let last = events.last().unwrap();
    assert_eq!(last.event, "batch");
    let end = last.id.clone().expect("the batch event has an id");
    assert_eq!(end, "4", "one past the last completion");

    // A client that saw the last task but not the end still gets the end.
    let almost = Stream::open(&app, &id, Some("3")).await.all().await;
    assert_eq!(almost.last().unwrap().event, "batch");

    let again = app
        .client
        .get(format!("{}/batches/{id}/events", app.base))
        .header("last-event-id", &end)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 204);

    // A reconnect that has not seen the tasks yet still gets them and the batch.
    let rest = Stream::open(&app, &id, Some("0")).await.all().await;
    assert_eq!(tasks(&rest).len(), 1);
    assert_eq!(rest.last().unwrap().event, "batch");
}
