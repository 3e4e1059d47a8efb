//! The documentation against the code: the committed OpenAPI file, Swagger UI, the links of
//! the README and docs/, and the flags `serve` and `run` print.

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

/// The repository's root.
fn root() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The README and every page of docs/, with their paths.
fn markdown_pages() -> Vec<(std::path::PathBuf, String)> {
    let root = root();
    let mut paths = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            paths.push(path);
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect()
}

/// The targets of the markdown links `[text](target)` in `text`, code spans and blocks included
/// (a link written in code is still worth keeping true).
fn link_targets(text: &str) -> Vec<&str> {
    let mut targets = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let end = after.find([')', ' ', '\n']).unwrap_or(after.len());
        targets.push(&after[..end]);
        rest = &after[end..];
    }
    targets
}

#[test]
fn every_relative_link_in_the_readme_and_docs_resolves() {
    let mut broken = Vec::new();

    for (page, text) in markdown_pages() {
        let dir = page.parent().unwrap();
        for target in link_targets(&text) {
            let external = ["http://", "https://", "mailto:"]
                .iter()
                .any(|scheme| target.starts_with(scheme));
            if external || target.starts_with('#') || target.is_empty() {
                continue;
            }
            let file = target.split('#').next().unwrap();
            if !dir.join(file).exists() {
                let page = page.strip_prefix(root()).unwrap_or(&page);
                broken.push(format!("{}: {target}", page.display()));
            }
        }
    }

    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn every_flag_of_serve_and_run_help_is_documented() {
    let docs: String = markdown_pages().into_iter().map(|(_, text)| text).collect();
    let mut missing = Vec::new();

    for command in ["serve", "run"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_fanout"))
            .args([command, "--help"])
            .output()
            .unwrap();
        assert!(out.status.success(), "fanout {command} --help failed");
        let help = String::from_utf8(out.stdout).unwrap();
        for flag in long_flags(&help) {
            if !mentions(&docs, &flag) && !missing.contains(&flag) {
                missing.push(flag);
            }
        }
    }

    assert!(
        missing.is_empty(),
        "flags of `fanout serve --help` or `fanout run --help` found nowhere in README.md or docs/: {}",
        missing.join(", ")
    );
}

/// Whether `text` holds `flag` as a whole word (`--max-jobs`, not a prefix of `--max-jobs-x`).
fn mentions(text: &str, flag: &str) -> bool {
    text.match_indices(flag).any(|(at, _)| {
        let next = text[at + flag.len()..].chars().next();
        !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

/// Every `--long-flag` token in a help text.
fn long_flags(help: &str) -> Vec<String> {
    let mut flags = Vec::new();
    for word in help.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')) {
        let Some(name) = word.strip_prefix("--") else {
            continue;
        };
        let name = name.trim_end_matches('-');
        if name.starts_with(|c: char| c.is_ascii_alphabetic()) {
            let flag = format!("--{name}");
            if !flags.contains(&flag) {
                flags.push(flag);
            }
        }
    }
    flags
}
