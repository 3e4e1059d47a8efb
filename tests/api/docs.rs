use crate::helpers::spawn_app;

#[test]
fn the_committed_openapi_yaml_matches_the_code() {
    let generated = fanout::app::openapi_yaml();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &generated).unwrap();
        return;
    }
    assert!(
        committed == generated,
        "openapi.yaml is stale: run `cargo run -- openapi > openapi.yaml` (or UPDATE_OPENAPI=1 cargo test)"
    );
}

#[tokio::test]
async fn the_openapi_example_batch_runs_as_is() {
    let app = spawn_app().await;
    let doc = app.get("/openapi.json").await.json;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let example = doc["components"]["schemas"]["BatchRequest"]["example"].clone();
    assert!(example.is_object(), "the request schema carries an example");

    // What Swagger UI's "Try it out" sends.
    let res = app.post(&example).await;

    assert_eq!(res.status, 201, "{}", res.json);
    assert_eq!(res.json["status"], "completed");
    assert_eq!(
        res.json["summary"]["succeeded"],
        res.json["summary"]["tasks"]
    );
}

#[tokio::test]
async fn swagger_ui_is_served_offline_at_docs() {
    let app = spawn_app().await;

    let page = app
        .client
        .get(format!("{}/docs/", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    let init = app
        .client
        .get(format!("{}/docs/swagger-initializer.js", app.base))
        .send()
        .await
        .unwrap();
    assert!(init.text().await.unwrap().contains("/openapi.json"));
    let bundle = app
        .client
        .get(format!("{}/docs/swagger-ui-bundle.js", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(bundle.status(), 200);
}
