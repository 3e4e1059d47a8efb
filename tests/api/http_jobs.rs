use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with, spawn_target};

#[tokio::test]
async fn an_http_job_reports_status_headers_body_and_timing() {
    let app = spawn_app().await;
    let target = spawn_target().await;

    let res = app
        .post(&json!({ "jobs": [{ "kind": "http", "url": format!("{}/hello", target.base) }] }))
        .await;

    let r = &res.json["results"][0];
    assert_eq!(r["status"], "succeeded", "{r}");
    let out = &r["output"];
    assert_eq!(out["status"], 200);
    assert_eq!(out["body"], "hello");
    assert_eq!(out["bytes"], 5);
    assert_eq!(out["truncated"], false);
    assert_eq!(out["headers"]["x-target"], "yes");
    assert!(out["ttfb_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(res.json["summary"]["http_status"]["200"], 1);
}

#[tokio::test]
async fn method_headers_and_body_are_sent_as_given() {
    let app = spawn_app().await;
    let target = spawn_target().await;

    let res = app
        .post(&json!({ "jobs": [{
            "kind": "http", "method": "put", "url": format!("{}/echo", target.base),
            "headers": { "x-token": "abc", "content-type": "text/plain" }, "body": "payload"
        }] }))
        .await;

    let echoed: serde_json::Value =
        serde_json::from_str(res.json["results"][0]["output"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(echoed["method"], "PUT");
    assert_eq!(echoed["headers"]["x-token"], "abc");
    assert_eq!(echoed["body"], "payload");
}

#[tokio::test]
async fn the_body_is_cut_at_the_byte_cap_and_marked_truncated() {
    let app = spawn_app().await;
    let target = spawn_target().await;

    let res = app
        .post(&json!({ "jobs": [
            { "kind": "http", "url": format!("{}/bytes/100000", target.base), "max_response_bytes": 1000 },
            { "kind": "http", "url": format!("{}/bytes/1000", target.base), "max_response_bytes": 1000 }
        ] }))
        .await;

    let cut = &res.json["results"][0];
    assert_eq!(cut["status"], "succeeded", "truncation is not an error");
    assert_eq!(cut["output"]["bytes"], 1000);
    assert_eq!(cut["output"]["truncated"], true);
    assert_eq!(cut["output"]["body"].as_str().unwrap().len(), 1000);
    let exact = &res.json["results"][1]["output"];
    assert_eq!(exact["bytes"], 1000);
    assert_eq!(
        exact["truncated"], false,
        "a body exactly at the cap is whole"
    );
}

#[tokio::test]
async fn the_server_caps_max_response_bytes() {
    let app = spawn_app_with(|c| c.max_response_bytes = 64).await;
    let target = spawn_target().await;

    let res = app
        .post(&json!({ "jobs": [{ "kind": "http", "url": format!("{}/bytes/1000", target.base), "max_response_bytes": 100000 }] }))
        .await;

    assert_eq!(res.json["results"][0]["output"]["bytes"], 64);
    assert_eq!(res.json["results"][0]["output"]["truncated"], true);
}

#[tokio::test]
async fn a_binary_body_comes_back_as_base64() {
    let app = spawn_app().await;
    let target = spawn_target().await;

    let res = app
        .post(&json!({ "jobs": [{ "kind": "http", "url": format!("{}/binary", target.base) }] }))
        .await;

    let out = &res.json["results"][0]["output"];
    assert!(out.get("body").is_none());
    assert_eq!(out["body_base64"], "//4AgA==");
}

#[tokio::test]
async fn a_status_outside_expect_status_fails_the_job() {
    let app = spawn_app().await;
    let target = spawn_target().await;

    let res = app
        .post(&json!({ "return_exceptions": true, "jobs": [
            { "kind": "http", "url": format!("{}/status/404", target.base) },
            { "kind": "http", "url": format!("{}/status/404", target.base), "expect_status": [404] },
            { "kind": "http", "url": format!("{}/status/201", target.base), "expect_status": ["4xx"] },
            { "kind": "http", "url": format!("{}/status/500", target.base), "expect_status": "any" },
            { "kind": "http", "url": format!("{}/status/302", target.base) }
        ] }))
        .await;

    let r = &res.json["results"];
    assert_eq!(r[0]["status"], "failed");
    assert_eq!(r[0]["error"]["code"], "status");
    assert!(r[0]["error"]["message"].as_str().unwrap().contains("404"));
    assert_eq!(r[1]["status"], "succeeded");
    assert_eq!(r[2]["status"], "failed");
    assert_eq!(r[3]["status"], "succeeded");
    assert_eq!(
        r[4]["status"], "succeeded",
        "3xx counts as success by default, as in k6"
    );
}

#[tokio::test]
async fn redirects_are_followed_only_when_asked_and_up_to_the_hop_limit() {
    let app = spawn_app().await;
    let target = spawn_target().await;

    let res = app
        .post(&json!({ "return_exceptions": true, "jobs": [
            { "kind": "http", "url": format!("{}/redirect/2", target.base) },
            { "kind": "http", "url": format!("{}/redirect/2", target.base), "follow_redirects": 3 },
            { "kind": "http", "url": format!("{}/redirect/5", target.base), "follow_redirects": 2 }
        ] }))
        .await;

    let r = &res.json["results"];
    assert_eq!(r[0]["output"]["status"], 303);
    assert_eq!(r[1]["output"]["status"], 200);
    assert_eq!(r[1]["output"]["body"], "hello");
    assert_eq!(r[2]["status"], "failed");
    assert_eq!(r[2]["error"]["code"], "status");
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error() {
    let app = spawn_app().await;
    // Bind then drop, so the port is very likely closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();

    let res = app
        .post(&json!({ "return_exceptions": true, "jobs": [
            { "kind": "http", "url": format!("http://127.0.0.1:{port}/"), "retries": { "max": 1, "backoff_ms": 1 } }
        ] }))
        .await;

    let r = &res.json["results"][0];
    assert_eq!(r["error"]["code"], "connect", "{r}");
    assert_eq!(r["attempts"], 2, "connect errors are retried");
}

#[tokio::test]
async fn a_slow_answer_over_the_job_timeout_is_timed_out() {
    let app = spawn_app().await;
    let target = spawn_target().await;

    let res = app
        .post(&json!({ "return_exceptions": true, "jobs": [
            { "kind": "http", "url": format!("{}/slow/3000", target.base), "timeout_ms": 100 }
        ] }))
        .await;

    assert_eq!(res.json["results"][0]["status"], "timed_out");
}
