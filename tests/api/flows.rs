//! Flows: a task that awaits, reads what came back, and goes on. A local app with a login that
//! returns a token and an order number, a cart that needs the token, and an order page; flows
//! through it that succeed, fail at the right step, and are refused at the right field.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::helpers::{serve_counted, spawn_app};

/// The app: `POST /login` (sets the cookie `session=s1`), `GET /cart/{order}` (needs
/// `Authorization: Bearer tok-123` and the cookie), `GET /order/{order}`; `hits` counts every
/// request.
struct Shop {
    base: String,
    hits: Arc<AtomicUsize>,
}

async fn shop() -> Shop {
    let app = Router::new()
        .route(
            "/login",
            post(|| async {
                (
                    [("set-cookie", "session=s1; Path=/; HttpOnly")],
                    axum::Json(json!({ "access_token": "tok-123", "note": "order-981 made" })),
                )
            }),
        )
        .route(
            "/cart/{order}",
            get(|Path(order): Path<String>, headers: HeaderMap| async move {
                let authorized = headers
                    .get("authorization")
                    .is_some_and(|v| v == "Bearer tok-123")
                    && headers
                        .get("cookie")
                        .is_some_and(|v| v.to_str().unwrap_or_default().contains("session=s1"));
                if !authorized {
                    return (
                        StatusCode::UNAUTHORIZED,
                        axum::Json(json!({ "error": "who?" })),
                    );
                }
                (
                    StatusCode::OK,
                    axum::Json(json!({ "order": order, "items": [1, 2] })),
                )
            }),
        )
        .route(
            "/order/{order}",
            get(|Path(order): Path<String>| async move { format!("order {order}") }),
        );
    let (base, hits) = serve_counted(app).await;
    Shop { base, hits }
}

/// Log in, take the token and the order number, fetch the cart with them, then the order.
fn checkout(base: &str, token_path: &str) -> Value {
    json!({ "kind": "flow", "id": "checkout", "steps": [
        { "kind": "http", "id": "login", "method": "POST", "url": format!("{base}/login"),
          "capture": { "token": token_path,
                       "order": { "on": "json:$.note", "regex": "order-(\\d+)" } } },
        { "kind": "sleep", "duration_ms": 1, "max_ms": 5 },
        { "kind": "http", "id": "cart", "url": format!("{base}/cart/{{{{order}}}}"),
          "headers": { "Authorization": "Bearer {{token}}" },
          "checks": [{ "on": "json:$.items", "exists": true }] },
        { "kind": "http", "id": "order", "url": format!("{base}/order/{{{{order}}}}") },
    ] })
}

#[tokio::test]
async fn a_flow_carries_what_one_answer_said_into_the_next_requests() {
    let app = spawn_app().await;
    let shop = shop().await;
    let res = app
        .post(&json!({ "jobs": [checkout(&shop.base, "json:$.access_token")] }))
        .await;
    assert_eq!(res.status, 201, "{}", res.json);
    let task = &res.json["results"][0];
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(task["kind"], "flow");
    let steps = task["output"]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 4);
    assert_eq!(
        steps[0]["captured"],
        json!({ "token": "tok-123", "order": "981" })
    );
    assert_eq!(
        steps[2]["output"]["body"],
        r#"{"items":[1,2],"order":"981"}"#
    );
    assert_eq!(steps[3]["output"]["body"], "order 981");
    assert!(
        steps.iter().all(|s| s["status"] == "succeeded"),
        "{steps:?}"
    );
    assert_eq!(shop.hits.load(Ordering::SeqCst), 3);
    // The flow's duration is the whole of it.
    let whole = task["timing"]["duration_ms"].as_f64().unwrap();
    let parts: f64 = steps
        .iter()
        .map(|s| s["duration_ms"].as_f64().unwrap())
        .sum();
    assert!(whole >= parts, "{whole} < {parts}");
}

#[tokio::test]
async fn a_flow_ends_at_its_first_failed_step_and_names_it() {
    let app = spawn_app().await;
    let shop = shop().await;
    // A capture that selects nothing fails its step with `check`.
    let res = app
        .post(&json!({ "jobs": [checkout(&shop.base, "json:$.token")] }))
        .await;
    let task = &res.json["results"][0];
    assert_eq!(task["status"], "failed", "{task}");
    assert_eq!(task["error"]["code"], "check");
    assert_eq!(task["error"]["step"], json!({ "index": 0, "id": "login" }));
    assert!(
        task["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("capture \"token\" failed: json:$.token"),
        "{}",
        task["error"]
    );
    let status: Vec<&str> = task["output"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(status, ["failed", "skipped", "skipped", "skipped"]);
    assert_eq!(shop.hits.load(Ordering::SeqCst), 1);
    // The page's rows carry the steps, for the task pane to list.
    let id = res.json["id"].as_str().unwrap();
    let rows = app.get(&format!("/batches/{id}/timeline")).await.json;
    let steps = &rows["tasks"][0]["steps"];
    assert_eq!(steps[0]["status"], "failed", "{rows}");
    assert_eq!(steps[0]["error"], "check");
    assert_eq!(
        steps[3],
        json!({ "index": 3, "id": "order", "status": "skipped", "duration_ms": null })
    );

    // Without the cookie jar the cart answers 401: the flow fails there, on its status.
    let mut flow = checkout(&shop.base, "json:$.access_token");
    flow["cookies"] = json!(false);
    let res = app.post(&json!({ "jobs": [flow] })).await;
    let task = &res.json["results"][0];
    assert_eq!(task["error"]["code"], "status", "{task}");
    assert_eq!(task["error"]["step"], json!({ "index": 2, "id": "cart" }));

    // Without the token, likewise.
    let mut flow = checkout(&shop.base, "json:$.access_token");
    flow["steps"][2]["headers"] = json!({});
    let res = app.post(&json!({ "jobs": [flow] })).await;
    let task = &res.json["results"][0];
    assert_eq!(task["error"]["code"], "status", "{task}");
    assert_eq!(task["error"]["step"], json!({ "index": 2, "id": "cart" }));
    assert_eq!(task["output"]["steps"][3]["status"], "skipped");
}

#[tokio::test]
async fn a_load_run_of_flows_counts_flows_as_tasks_and_sends_every_step() {
    let app = spawn_app().await;
    let shop = shop().await;
    // Two flows weighted 3:1, one of which fails at its cart (no token).
    let mut tokenless = checkout(&shop.base, "json:$.access_token");
    tokenless["id"] = json!("anonymous");
    tokenless["steps"][2]["headers"] = json!({});
    let mut checkout = checkout(&shop.base, "json:$.access_token");
    checkout["weight"] = json!(3);
    let res = app
        .post(&json!({ "jobs": [checkout, tokenless],
            "load": { "repeat": 50 }, "concurrency": 20, "results": "none",
            "thresholds": { "by_step": {
                "checkout/cart": { "max_error_rate": 0, "p99_ms": 60000 },
                "anonymous/cart": { "max_error_rate": 0 } } } }))
        .await;
    assert_eq!(res.status, 201, "{}", res.json);
    let s = &res.json["summary"];
    assert_eq!(s["tasks"], 200);
    assert_eq!(s["succeeded"], 150, "{s}");
    // 150 flows of 3 requests, 50 of 2 (the cart refused, the order skipped).
    assert_eq!(shop.hits.load(Ordering::SeqCst), 550);
    let steps = &s["by_step"];
    assert_eq!(steps["checkout/login"]["succeeded"], 150, "{steps}");
    assert_eq!(steps["checkout/cart"]["succeeded"], 150);
    assert_eq!(steps["checkout/1"]["tasks"], 150, "the sleep, by its place");
    assert_eq!(steps["anonymous/cart"]["failed"], 50);
    assert_eq!(steps["anonymous/cart"]["http_status"], json!({ "401": 50 }));
    assert_eq!(steps["anonymous/order"]["skipped"], 50);
    assert_eq!(steps["anonymous/order"]["tasks"], 0);
    assert_eq!(
        s["checks"]["json:$.items exists true"]["passed"], 150,
        "{s}"
    );
    let verdict = &res.json["verdict"];
    let check = |name: &str| {
        verdict["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {verdict}"))
    };
    assert_eq!(
        check("by_step.checkout/cart.max_error_rate")["passed"],
        true
    );
    assert_eq!(check("by_step.checkout/cart.p99_ms")["passed"], true);
    assert_eq!(
        check("by_step.anonymous/cart.max_error_rate")["actual"],
        1.0
    );
    assert_eq!(verdict["passed"], false);
}

#[tokio::test]
async fn bad_flows_are_refused_each_at_its_field() {
    let app = spawn_app().await;
    let url = "http://127.0.0.1:9/x";
    let steps: Vec<Value> = (0..65)
        .map(|_| json!({ "kind": "sleep", "duration_ms": 1 }))
        .collect();
    let res = app
        .post(&json!({ "jobs": [
            { "kind": "flow", "steps": [
                { "kind": "http", "url": format!("{url}/{{{{tokn}}}}") },
                { "kind": "http", "url": url, "capture": { "seq": "status", "a": "stauts" } },
                { "kind": "flow", "steps": [] },
                { "kind": "http", "url": "http://{{host}}/x" },
            ] },
            { "kind": "http", "url": url, "capture": { "t": "status" } },
            { "kind": "flow", "steps": steps, "retries": { "max": 1 } },
            { "kind": "flow", "steps": [
                { "kind": "http", "url": url, "capture": { "t": "status" } },
                { "kind": "http", "url": url, "capture": { "t": "body" } },
            ] },
        ] }))
        .await;
    assert_eq!(res.status, 422, "{}", res.json);
    let fields: Vec<&str> = res.json["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for field in [
        "jobs[0].steps[0].url",
        "jobs[0].steps[1].capture.seq",
        "jobs[0].steps[1].capture.a",
        "jobs[0].steps[2].kind",
        "jobs[0].steps[3].url",
        "jobs[1].capture",
        "jobs[2].steps",
        "jobs[2].retries",
        "jobs[3].steps[1].capture.t",
    ] {
        assert!(fields.contains(&field), "{field} not in {fields:?}");
    }
}

#[tokio::test]
#[cfg_attr(
    fanout_test_backend = "memory",
    ignore = "needs a durable store: memory:// keeps nothing across a restart"
)]
async fn a_flows_timeout_bounds_all_its_steps_and_a_stored_flow_still_names_its_step() {
    let app = spawn_app().await;
    let res = app
        .post(
            &json!({ "jobs": [{ "kind": "flow", "timeout_ms": 300, "steps": [
            { "kind": "sleep", "id": "short", "duration_ms": 10 },
            { "kind": "sleep", "id": "long", "duration_ms": 5000 },
            { "kind": "sleep", "id": "never", "duration_ms": 1 },
        ] }], "return_exceptions": true }),
        )
        .await;
    let task = &res.json["results"][0];
    assert_eq!(task["status"], "timed_out", "{task}");
    assert_eq!(task["error"]["step"], json!({ "index": 1, "id": "long" }));
    let status: Vec<&str> = task["output"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(status, ["succeeded", "timed_out", "skipped"]);

    let id = res.json["id"].as_str().unwrap().to_owned();
    let app = app.restart().await;
    let stored = app.get(&format!("/batches/{id}")).await.json;
    assert_eq!(
        stored["results"][0]["error"]["step"],
        json!({ "index": 1, "id": "long" }),
        "{stored}"
    );
}

#[tokio::test]
async fn a_step_threshold_names_a_step_the_flows_have() {
    let app = spawn_app().await;
    let flow = json!({ "kind": "flow", "id": "f", "steps": [
        { "kind": "sleep", "id": "nap", "duration_ms": 1 } ] });
    let res = app
        .post(&json!({ "jobs": [flow], "thresholds": { "by_step": {
            "f/naps": { "p95_ms": 10 }, "f/nap": { "min_throughput_per_s": 1 } } } }))
        .await;
    assert_eq!(res.status, 422, "{}", res.json);
    let text = res.json["errors"].to_string();
    assert!(text.contains("thresholds.by_step.f/naps"), "{text}");
    assert!(text.contains("the keys are f/nap"), "{text}");
    assert!(
        text.contains("thresholds.by_step.f/nap.min_throughput_per_s"),
        "{text}"
    );
}
