//! `fanout run --server URL`: the batch runs on a fanout server; this follows its event stream
//! and reads the finished batch.

use std::fmt::Write as _;

use serde_json::Value;

use super::{Picture, REPORT_BINS, Unusable, tasks_bar};

pub(super) async fn run(
    server: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> Result<Value, Unusable> {
    let base = server.trim_end_matches('/');
    let url = format!("{base}/batches");
    let client = reqwest::Client::new();
    let with_token = |request: reqwest::RequestBuilder| match token {
        Some(t) => request.bearer_auth(t),
        None => request,
    };
    let started = read_json(
        &url,
        with_token(
            client
                .post(&url)
                .header("content-type", "application/json")
                .header("prefer", "respond-async")
                .body(body),
        ),
    )
    .await?;
    let id = started["id"]
        .as_str()
        .ok_or_else(|| Unusable(format!("{url} answered without a batch id")))?
        .to_owned();
    let batch_url = format!("{url}/{id}");
    if started["finished_at"].is_null() {
        let events = with_token(client.get(format!("{batch_url}/events")));
        let followed = tokio::select! {
            followed = follow(events) => followed,
            () = crate::app::shutdown_signal() => {
                cancel(&batch_url, with_token(client.delete(&batch_url))).await;
                Err("stopped".to_owned())
            }
        };
        match followed {
            Ok(ended) => {
                // A server that drained and stopped once the batch ended cannot be read again:
                // its last event has the summary and the verdict, which the report needs.
                return match with_token(client.get(&batch_url)).send().await {
                    Ok(r) => read_answer(&batch_url, r).await,
                    Err(e) => {
                        tracing::debug!(error = %e, "the batch could not be read after its end");
                        eprintln!(
                            "fanout run: the server stopped after the batch ended; reporting its last event (no task results)"
                        );
                        Ok(ended)
                    }
                };
            }
            Err(e) => {
                // The stream broke (a proxy, an older server, a server draining): wait by
                // reading the batch instead.
                tracing::debug!(error = %e, "event stream unavailable, polling");
                return poll(&batch_url, with_token, &client).await;
            }
        }
    }
    read_json(&batch_url, with_token(client.get(&batch_url))).await
}

/// The finished batch's picture, as the server's page reads it.
pub(super) async fn picture(
    server: &str,
    token: Option<&str>,
    batch: &Value,
) -> Result<Picture, Unusable> {
    let id = batch["id"].as_str().unwrap_or_default();
    let base = format!("{}/batches/{id}", server.trim_end_matches('/'));
    let client = reqwest::Client::new();
    let get = |url: String| {
        let request = client.get(&url);
        let request = match token {
            Some(t) => request.bearer_auth(t),
            None => request,
        };
        async move { read_json(&url, request).await }
    };
    let timeline = get(format!("{base}/timeline?bins={REPORT_BINS}")).await?;
    let mut latency = std::collections::BTreeMap::new();
    for metric in ["duration", "ttfb"] {
        latency.insert(
            metric.to_owned(),
            get(format!("{base}/latency?metric={metric}")).await?,
        );
    }
    Ok(Picture { timeline, latency })
}

/// How long a server that does not answer (draining, restarting) is waited for.
const UNREACHABLE_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// Ctrl-C or SIGTERM: cancels the batch where it runs (its partial summary is then read and
/// reported, and its verdict fails).
async fn cancel(batch_url: &str, delete: reqwest::RequestBuilder) {
    eprintln!("\nfanout run: stopping: cancelling {batch_url} on the server");
    match delete.send().await {
        Ok(r) if r.status().is_success() || r.status() == reqwest::StatusCode::CONFLICT => {}
        Ok(r) => eprintln!(
            "fanout run: the server answered the cancel with {}",
            r.status()
        ),
        Err(e) => eprintln!("fanout run: cannot cancel {batch_url}: {e}"),
    }
}

/// Reads the batch every half second until it has finished. A server that is draining (503)
/// or briefly gone is waited for, up to [`UNREACHABLE_FOR`] without an answer.
async fn poll(
    batch_url: &str,
    with_token: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    client: &reqwest::Client,
) -> Result<Value, Unusable> {
    let mut answered_at = tokio::time::Instant::now();
    let mut signal = std::pin::pin!(crate::app::shutdown_signal());
    let mut stopping = false;
    loop {
        let sent = tokio::select! {
            sent = with_token(client.get(batch_url)).send() => sent,
            () = &mut signal => {
                // Once the signal handler is installed the process no longer dies of one: a
                // first stop cancels the batch (the next read reports it), a second one ends
                // the wait.
                if stopping {
                    return Err(Unusable(format!("stopped before {batch_url} was read")));
                }
                stopping = true;
                cancel(batch_url, with_token(client.delete(batch_url))).await;
                signal.set(crate::app::shutdown_signal());
                continue;
            }
        };
        match sent {
            Ok(r) if r.status() != reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                answered_at = tokio::time::Instant::now();
                let b = read_answer(batch_url, r).await?;
                if !b["finished_at"].is_null() {
                    return Ok(b);
                }
            }
            Err(e) if !(e.is_connect() || e.is_timeout()) => {
                return Err(unreachable(batch_url, &e));
            }
            _ if answered_at.elapsed() > UNREACHABLE_FOR => {
                return Err(Unusable(format!(
                    "{batch_url} did not answer for {} s",
                    UNREACHABLE_FOR.as_secs()
                )));
            }
            // Draining (503), or not listening for a moment: wait.
            _ => {}
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Reads a batch's event stream until its `batch` event, drawing progress on a terminal; the
/// answer is that event's batch (without its task lists).
async fn follow(request: reqwest::RequestBuilder) -> Result<Value, String> {
    use std::io::IsTerminal;
    let mut response = request.send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("events answered {}", response.status()));
    }
    let bar = std::io::stderr().is_terminal().then(tasks_bar);
    let mut buffer = String::new();
    let result = loop {
        let Some(end) = buffer.find("\n\n") else {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    // Lines may end in CRLF (a proxy's rewrite): read them as LF.
                    buffer.push_str(&String::from_utf8_lossy(&chunk).replace('\r', ""));
                    continue;
                }
                Ok(None) => break Err("the event stream ended early".to_owned()),
                Err(e) => break Err(e.to_string()),
            }
        };
        let block: String = buffer.drain(..end + 2).collect();
        let event = block
            .lines()
            .find_map(|l| l.strip_prefix("event:"))
            .map(str::trim);
        let data = block
            .lines()
            .find_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .unwrap_or_default();
        match event {
            Some("batch") => {
                break serde_json::from_str(data).map_err(|e| format!("the batch event: {e}"));
            }
            Some("progress") => {
                if let (Some(bar), Ok(p)) = (&bar, serde_json::from_str::<Value>(data)) {
                    bar.set_length(p["tasks"].as_u64().unwrap_or(0));
                    bar.set_position(p["ended"].as_u64().unwrap_or(0));
                }
            }
            Some("task") => {
                if let Some(bar) = &bar {
                    bar.inc(1);
                }
            }
            _ => {}
        }
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    result
}

/// The guard's advice in a server's answer (`add --allow-net ADDR`) is for whoever starts the
/// server: a run on a server says so, since `fanout run --server` takes no `--allow-net`.
pub(super) fn hint_at_serve(answer: &mut Value) {
    match answer {
        Value::String(s) if s.contains("add --allow-net ") => *s = serve_hint(s),
        Value::Array(items) => items.iter_mut().for_each(hint_at_serve),
        Value::Object(fields) => fields.values_mut().for_each(hint_at_serve),
        _ => {}
    }
}

/// `add --allow-net ADDR` rewritten as `start the server with `fanout serve --allow-net ADDR``.
fn serve_hint(text: &str) -> String {
    const ADD: &str = "add --allow-net ";
    let mut out = String::with_capacity(text.len() + 40);
    let mut rest = text;
    while let Some(at) = rest.find(ADD) {
        out.push_str(&rest[..at]);
        let after = &rest[at + ADD.len()..];
        let end = after
            .find(|c: char| c.is_whitespace() || c == ',' || c == ';' || c == ')')
            .unwrap_or(after.len());
        out.push_str(&format!(
            "start the server with `fanout serve --allow-net {}`",
            &after[..end]
        ));
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Why a server could not be reached, in words: reqwest's own message ("error sending
/// request") names no cause, its innermost source does ("Connection refused").
fn unreachable(url: &str, e: &reqwest::Error) -> Unusable {
    let mut cause: &dyn std::error::Error = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    let why = cause.to_string();
    let hint = if why.to_lowercase().contains("connection refused") {
        " (is `fanout serve` running there?)"
    } else {
        ""
    };
    Unusable(format!("cannot reach {url}: {why}{hint}"))
}

/// Sends a request and reads its JSON answer; a problem answer becomes the reason.
async fn read_json(url: &str, request: reqwest::RequestBuilder) -> Result<Value, Unusable> {
    let response = request.send().await.map_err(|e| unreachable(url, &e))?;
    read_answer(url, response).await
}

/// Reads a JSON answer; a problem answer becomes the reason.
async fn read_answer(url: &str, response: reqwest::Response) -> Result<Value, Unusable> {
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| Unusable(format!("reading the answer of {url}: {e}")))?;
    let json: Value = serde_json::from_slice(&bytes).map_err(|_| {
        Unusable(format!(
            "{url} answered {status} with no JSON: is it a fanout server?"
        ))
    })?;
    if !status.is_success() {
        let mut why = format!(
            "{url} answered {status}: {}",
            json["detail"].as_str().unwrap_or("")
        );
        for e in json["errors"].as_array().into_iter().flatten() {
            let _ = write!(
                why,
                "\n  {}: {}",
                e["field"].as_str().unwrap_or(""),
                e["message"].as_str().unwrap_or("")
            );
        }
        return Err(Unusable(why));
    }
    Ok(json)
}
