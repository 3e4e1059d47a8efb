//! HTTPS and HTTP/2 against servers this test starts on loopback, with a CA and certificates
//! made here: trust (`--ca-file`, `tls.insecure`, client certificates, `server_name`),
//! certificate failures in words, `http_version` and `keep_alive`, and each request's phases.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::routing::get;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_hooked, spawn_app_with};

/// A CA made for one test.
pub(crate) struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, as PEM.
pub(crate) struct Leaf {
    cert: String,
    key: String,
}

impl Pki {
    pub(crate) fn new(name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        Pki {
            ca: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    pub(crate) fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// A certificate for `names` (DNS names or IP addresses) signed by this CA.
    pub(crate) fn leaf(&self, names: &[&str], expired: bool) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

fn chain(leaf: &Leaf) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let certs = CertificateDer::pem_slice_iter(leaf.cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    (
        certs,
        PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).unwrap(),
    )
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A server configuration offering `alpn`, requiring a client certificate from `clients`
/// when given.
pub(crate) fn server_config(
    leaf: &Leaf,
    alpn: &[&str],
    clients: Option<&Pki>,
) -> Arc<rustls::ServerConfig> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match clients {
        Some(pki) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(pki.ca.der().clone()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                roots.into(),
                provider(),
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let (certs, key) = chain(leaf);
    let mut config = builder.with_single_cert(certs, key).unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(config)
}

/// A target on loopback: its port, how many connections it accepted, and how many of their
/// TLS handshakes resumed an earlier session.
struct Target {
    port: u16,
    connections: Arc<AtomicUsize>,
    resumed: Arc<AtomicUsize>,
}

impl Target {
    fn url(&self, scheme: &str, host: &str, path: &str) -> String {
        format!("{scheme}://{host}:{}{path}", self.port)
    }

    fn accepted(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

fn routes() -> Router {
    Router::new()
        .route(
            "/",
            get(|req: axum::extract::Request| async move { format!("{:?}", req.version()) }),
        )
        .route("/hello", get(|| async { ([("x-target", "yes")], "hello") }))
        .route(
            "/status/{code}",
            get(
                |axum::extract::Path(code): axum::extract::Path<u16>| async move {
                    (
                        axum::http::StatusCode::from_u16(code).unwrap(),
                        format!("status {code}"),
                    )
                },
            ),
        )
        .route(
            "/bytes/{n}",
            get(|axum::extract::Path(n): axum::extract::Path<usize>| async move { "a".repeat(n) }),
        )
        .route("/binary", get(|| async { vec![0xffu8, 0xfe, 0x00, 0x80] }))
        .route(
            "/redirect",
            get(|| async { axum::response::Redirect::to("/hello") }),
        )
}

/// Serves `routes` over TLS (when `tls` is given) or plain TCP, HTTP/1.1 and HTTP/2 alike
/// (h2c with prior knowledge on plain TCP).
async fn serve(tls: Option<Arc<rustls::ServerConfig>>) -> Target {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    let resumed = Arc::new(AtomicUsize::new(0));
    let resumes = resumed.clone();
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            counted.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            let resumes = resumes.clone();
            tokio::spawn(async move {
                let service = hyper_util::service::TowerToHyperService::new(routes());
                let builder = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                );
                match acceptor {
                    Some(acceptor) => {
                        // A failed handshake is the point of some tests.
                        let Ok(stream) = acceptor.accept(tcp).await else {
                            return;
                        };
                        if stream.get_ref().1.handshake_kind()
                            == Some(rustls::HandshakeKind::Resumed)
                        {
                            resumes.fetch_add(1, Ordering::SeqCst);
                        }
                        let _ = builder
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                    }
                    None => {
                        let _ = builder
                            .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                            .await;
                    }
                }
            });
        }
    });
    Target {
        port,
        connections,
        resumed,
    }
}

/// Serves HTTP/2 over TLS and sends GOAWAY on each connection after `limit` requests, as
/// nginx does after `keepalive_requests`.
async fn serve_limited(tls: Arc<rustls::ServerConfig>, limit: usize) -> Target {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            counted.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let served = Arc::new(AtomicUsize::new(0));
                let enough = Arc::new(tokio::sync::Notify::new());
                let (s, e) = (served.clone(), enough.clone());
                let service = hyper::service::service_fn(move |_req| {
                    if s.fetch_add(1, Ordering::SeqCst) + 1 == limit {
                        e.notify_one();
                    }
                    async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new("ok".to_owned()))
                    }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                );
                let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => return,
                    _ = enough.notified() => {}
                }
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            });
        }
    });
    Target {
        port,
        connections,
        resumed: Arc::default(),
    }
}

/// An HTTPS target with a certificate for `localhost` and 127.0.0.1 from `pki`.
async fn https_target(pki: &Pki, alpn: &[&str]) -> Target {
    let leaf = pki.leaf(&["localhost", "127.0.0.1"], false);
    serve(Some(server_config(&leaf, alpn, None))).await
}

/// An app that trusts `pki`'s CA (`--ca-file`) and may reach `localhost`.
async fn trusting_app(pki: &Pki) -> TestApp {
    let dir = tempfile::tempdir().unwrap().keep();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, pki.ca_pem()).unwrap();
    spawn_app_with(|c| {
        c.ca_file = vec![ca];
        c.allow_net.push("localhost".into());
    })
    .await
}

async fn one(app: &TestApp, job: Value) -> Value {
    let res = app
        .post(&json!({ "jobs": [job], "return_exceptions": true }))
        .await;
    assert_eq!(res.status, 201, "{}", res.json);
    res.json["results"][0].clone()
}

fn message(task: &Value) -> String {
    task["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_private_ca_given_with_ca_file_is_trusted_and_without_it_the_issuer_is_unknown() {
    let pki = Pki::new("private CA");
    let target = https_target(&pki, &["http/1.1"]).await;
    let url = target.url("https", "127.0.0.1", "/hello");

    let trusting = trusting_app(&pki).await;
    let ok = one(&trusting, json!({ "kind": "http", "url": url })).await;
    assert_eq!(ok["status"], "succeeded", "{ok}");
    assert_eq!(ok["output"]["body"], "hello");
    assert_eq!(ok["output"]["version"], "HTTP/1.1");

    let plain = spawn_app_with(|_| {}).await;
    let refused = one(&plain, json!({ "kind": "http", "url": url })).await;
    assert_eq!(refused["error"]["code"], "tls", "{refused}");
    assert!(message(&refused).contains("unknown issuer"), "{refused}");
    assert!(message(&refused).contains("--ca-file"), "{refused}");
    // A load run says the same, on the same path.
    let load = plain
        .post(&json!({ "jobs": [{ "kind": "http", "url": url }], "load": { "repeat": 3 }, "results": "errors" }))
        .await;
    assert_eq!(load.json["summary"]["errors"]["tls"], 3, "{}", load.json);
}

#[tokio::test]
async fn an_expired_certificate_and_a_name_mismatch_fail_tls_with_different_words() {
    let pki = Pki::new("private CA");
    let app = trusting_app(&pki).await;
    let expired = serve(Some(server_config(
        &pki.leaf(&["localhost", "127.0.0.1"], true),
        &["http/1.1"],
        None,
    )))
    .await;
    let other = serve(Some(server_config(
        &pki.leaf(&["other.test"], false),
        &["http/1.1"],
        None,
    )))
    .await;

    let old = one(
        &app,
        json!({ "kind": "http", "url": expired.url("https", "127.0.0.1", "/") }),
    )
    .await;
    assert_eq!(old["error"]["code"], "tls", "{old}");
    assert!(message(&old).contains("expired"), "{old}");

    let wrong = one(
        &app,
        json!({ "kind": "http", "url": other.url("https", "127.0.0.1", "/") }),
    )
    .await;
    assert_eq!(wrong["error"]["code"], "tls", "{wrong}");
    assert!(message(&wrong).contains("name mismatch"), "{wrong}");
    assert!(message(&wrong).contains("other.test"), "{wrong}");
    assert_ne!(message(&old), message(&wrong));

    // `server_name` sends and checks the name the certificate has.
    let named = one(
        &app,
        json!({ "kind": "http", "url": other.url("https", "127.0.0.1", "/hello"),
                "tls": { "server_name": "other.test" } }),
    )
    .await;
    assert_eq!(named["status"], "succeeded", "{named}");
}

#[tokio::test]
async fn insecure_works_only_where_the_server_allows_it() {
    let pki = Pki::new("unknown CA");
    let target = https_target(&pki, &["http/1.1"]).await;
    let job = json!({ "kind": "http", "url": target.url("https", "127.0.0.1", "/hello"),
                      "tls": { "insecure": true } });

    let strict = spawn_app_with(|_| {}).await;
    let refused = strict.post(&json!({ "jobs": [job] })).await;
    assert_eq!(refused.status, 422, "{}", refused.json);
    assert_eq!(refused.json["errors"][0]["field"], "jobs[0].tls.insecure");
    assert!(
        refused.json["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("--allow-insecure-tls")
    );

    let lenient = spawn_app_with(|c| c.allow_insecure_tls = true).await;
    let ok = one(&lenient, job).await;
    assert_eq!(ok["status"], "succeeded", "{ok}");
}

#[tokio::test]
async fn mutual_tls_sends_the_client_certificate_from_the_files_root() {
    let pki = Pki::new("server CA");
    let clients = Pki::new("client CA");
    let leaf = pki.leaf(&["localhost", "127.0.0.1"], false);
    let target = serve(Some(server_config(&leaf, &["http/1.1"], Some(&clients)))).await;
    let app = trusting_app(&pki).await;
    let client = clients.leaf(&["client.test"], false);
    std::fs::create_dir_all(app.root().join("certs")).unwrap();
    std::fs::write(app.root().join("certs/client.pem"), &client.cert).unwrap();
    std::fs::write(app.root().join("certs/client.key"), &client.key).unwrap();
    let url = target.url("https", "127.0.0.1", "/hello");

    let without = one(&app, json!({ "kind": "http", "url": url })).await;
    assert_eq!(without["error"]["code"], "tls", "{without}");
    assert!(
        message(&without).contains("client certificate"),
        "{without}"
    );

    let with = json!({ "kind": "http", "url": url,
                       "tls": { "client_cert": "certs/client.pem", "client_key": "certs/client.key" } });
    let ok = one(&app, with.clone()).await;
    assert_eq!(ok["status"], "succeeded", "{ok}");
    let load = app
        .post(&json!({ "jobs": [with], "load": { "repeat": 20 }, "concurrency": 4, "results": "errors" }))
        .await;
    assert_eq!(load.json["summary"]["succeeded"], 20, "{}", load.json);

    // Paths outside the files root are refused as written; a missing file says which.
    let outside = app
        .post(&json!({ "jobs": [{ "kind": "http", "url": url,
            "tls": { "client_cert": "/etc/ssl/cert.pem", "client_key": "../key.pem" } }] }))
        .await;
    assert_eq!(outside.status, 422, "{}", outside.json);
    let missing = one(
        &app,
        json!({ "kind": "http", "url": url,
                "tls": { "client_cert": "certs/none.pem", "client_key": "certs/client.key" } }),
    )
    .await;
    assert_eq!(missing["error"]["code"], "not_found", "{missing}");
    assert!(message(&missing).contains("certs/none.pem"), "{missing}");
}

#[tokio::test]
async fn http_version_picks_http_2_by_alpn_or_by_prior_knowledge() {
    let pki = Pki::new("private CA");
    let app = trusting_app(&pki).await;
    let both = https_target(&pki, &["h2", "http/1.1"]).await;
    let h1_only = https_target(&pki, &["http/1.1"]).await;
    let plain = serve(None).await;

    let cases = [
        (both.url("https", "127.0.0.1", "/"), "auto", Some("HTTP/2")),
        (both.url("https", "127.0.0.1", "/"), "2", Some("HTTP/2")),
        (both.url("https", "127.0.0.1", "/"), "1.1", Some("HTTP/1.1")),
        (
            h1_only.url("https", "127.0.0.1", "/"),
            "auto",
            Some("HTTP/1.1"),
        ),
        (h1_only.url("https", "127.0.0.1", "/"), "2", None),
        (plain.url("http", "127.0.0.1", "/"), "2", Some("HTTP/2")),
        (
            plain.url("http", "127.0.0.1", "/"),
            "auto",
            Some("HTTP/1.1"),
        ),
    ];
    for (url, version, expected) in cases {
        let job = json!({ "kind": "http", "url": url, "http_version": version });
        let single = one(&app, job.clone()).await;
        let load = app
            .post(&json!({ "jobs": [job], "load": { "repeat": 4 }, "concurrency": 2, "results": "all" }))
            .await;
        for task in std::iter::once(&single).chain(load.json["results"].as_array().unwrap()) {
            match expected {
                Some(v) => {
                    assert_eq!(task["status"], "succeeded", "{url} {version}: {task}");
                    assert_eq!(task["output"]["version"], v, "{url} {version}: {task}");
                    // What the server saw agrees.
                    let seen = if v == "HTTP/2" {
                        "HTTP/2.0"
                    } else {
                        "HTTP/1.1"
                    };
                    assert_eq!(task["output"]["body"], seen, "{url} {version}");
                }
                None => {
                    assert_eq!(task["error"]["code"], "tls", "{url} {version}: {task}");
                    assert!(message(task).contains("HTTP/2"), "{task}");
                }
            }
        }
    }
}

#[tokio::test]
async fn a_load_run_over_http_2_multiplexes_64_slots_on_one_connection() {
    let pki = Pki::new("private CA");
    let app = trusting_app(&pki).await;
    let target = https_target(&pki, &["h2"]).await;
    let res = app
        .post(&json!({
            "jobs": [{ "kind": "http", "url": target.url("https", "127.0.0.1", "/hello"), "http_version": "2" }],
            "load": { "repeat": 3000, "connections": 1 }, "concurrency": 64, "results": "none"
        }))
        .await;
    let s = &res.json["summary"];
    assert_eq!(s["tasks"], 3000, "{s}");
    assert_eq!(s["succeeded"], 3000, "{s}");
    assert_eq!(s["http_status"]["200"], 3000, "{s}");
    assert_eq!(target.accepted(), 1);
    assert_eq!(s["connections"]["opened"], 1, "{s}");
    assert_eq!(s["connections"]["reused"], 2999, "{s}");
}

fn phase(task: &Value, name: &str) -> f64 {
    task["timing"]["phases"][name].as_f64().unwrap()
}

#[tokio::test]
async fn phases_show_a_new_connection_then_a_kept_one_and_add_up_to_the_duration() {
    let pki = Pki::new("private CA");
    let app = trusting_app(&pki).await;
    let target = https_target(&pki, &["http/1.1"]).await;
    let res = app
        .post(&json!({
            "jobs": [{ "kind": "http", "url": target.url("https", "localhost", "/hello") }],
            "load": { "repeat": 3 }, "concurrency": 1, "results": "all"
        }))
        .await;
    let tasks = res.json["results"].as_array().unwrap();
    let first = &tasks[0];
    assert_eq!(first["timing"]["reused"], false, "{first}");
    for name in ["dns_ms", "connect_ms", "tls_ms", "wait_ms"] {
        assert!(phase(first, name) > 0.0, "{name}: {first}");
    }
    for task in &tasks[1..] {
        assert_eq!(task["timing"]["reused"], true, "{task}");
        for name in ["dns_ms", "connect_ms", "tls_ms"] {
            assert_eq!(phase(task, name), 0.0, "{name}: {task}");
        }
        assert!(phase(task, "wait_ms") > 0.0, "{task}");
    }
    for task in tasks {
        let sum: f64 = [
            "dns_ms",
            "connect_ms",
            "tls_ms",
            "send_ms",
            "wait_ms",
            "receive_ms",
        ]
        .iter()
        .map(|n| phase(task, n))
        .sum();
        let duration = task["timing"]["duration_ms"].as_f64().unwrap();
        assert!(sum <= duration + 0.01, "{sum} > {duration}: {task}");
        assert!(duration - sum < 1.0, "{sum} vs {duration}: {task}");
    }
    let s = &res.json["summary"];
    assert_eq!(s["connections"], json!({ "opened": 1, "reused": 2 }), "{s}");
    assert!(s["phases"]["tls_ms"]["p50"].as_f64().unwrap() > 0.0, "{s}");
    assert!(s["phases"]["wait_ms"]["max"].as_f64().unwrap() > 0.0, "{s}");
    // Kept with the batch: read back from storage the same.
    let id = res.json["id"].as_str().unwrap();
    let again = app.get(&format!("/batches/{id}")).await.json;
    assert_eq!(again["results"][1]["timing"], tasks[1]["timing"]);
}

#[tokio::test]
async fn without_keep_alive_every_request_opens_a_connection() {
    let pki = Pki::new("private CA");
    let app = trusting_app(&pki).await;
    for alpn in [&["http/1.1"][..], &["h2"][..]] {
        let target = https_target(&pki, alpn).await;
        let res = app
            .post(&json!({
                "jobs": [{ "kind": "http", "url": target.url("https", "127.0.0.1", "/hello"), "keep_alive": false }],
                "load": { "repeat": 40 }, "concurrency": 4, "results": "errors"
            }))
            .await;
        let s = &res.json["summary"];
        assert_eq!(s["succeeded"], 40, "{alpn:?}: {s}");
        assert_eq!(
            s["connections"],
            json!({ "opened": 40, "reused": 0 }),
            "{alpn:?}: {s}"
        );
        assert_eq!(target.accepted(), 40, "{alpn:?}");
        // Every handshake after the first few resumes a session the batch's connections made
        // (the first slots all start before any ticket has come back).
        assert!(
            target.resumed.load(Ordering::SeqCst) >= 30,
            "{alpn:?}: {:?}",
            target.resumed
        );
        assert!(s["phases"]["tls_ms"]["min"].as_f64().unwrap() > 0.0, "{s}");
    }
}

/// What a task's answer says, as the differential compares it.
fn seen_as(task: &Value) -> Value {
    let out = &task["output"];
    let mut headers = out["headers"].clone();
    // The server's clock ticks between the two requests.
    if let Some(h) = headers.as_object_mut() {
        h.remove("date");
    }
    json!({
        "status": task["status"], "error": task["error"]["code"], "http": out["status"],
        "headers": headers, "body": out["body"], "body_base64": out["body_base64"],
        "bytes": out["bytes"], "truncated": out["truncated"], "version": out["version"],
    })
}

#[tokio::test]
async fn https_and_http_2_on_fanouts_connections_answer_as_the_general_client_does() {
    let pki = Pki::new("private CA");
    let dir = tempfile::tempdir().unwrap().keep();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, pki.ca_pem()).unwrap();
    let app = trusting_app(&pki).await;
    let reference = spawn_app_hooked(
        |c| c.ca_file = vec![ca],
        fanout::app::Hooks {
            general_client: true,
            ..Default::default()
        },
    )
    .await;
    let h1 = https_target(&pki, &["http/1.1"]).await;
    let h2 = https_target(&pki, &["h2"]).await;
    let cases: Vec<(&str, Value)> = vec![
        ("/hello", json!({})),
        ("/hello", json!({ "method": "HEAD" })),
        ("/status/503", json!({})),
        ("/status/204", json!({})),
        ("/bytes/100", json!({ "max_response_bytes": 10 })),
        ("/bytes/10", json!({ "max_response_bytes": 10 })),
        ("/binary", json!({})),
        ("/redirect", json!({})),
        ("/redirect", json!({ "follow_redirects": 1 })),
    ];
    for target in [&h1, &h2] {
        for (path, extra) in &cases {
            let mut job = json!({ "kind": "http", "url": target.url("https", "127.0.0.1", path), "timeout_ms": 5000 });
            job.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let expected = seen_as(&one(&reference, job.clone()).await);
            assert_eq!(
                seen_as(&one(&app, job.clone()).await),
                expected,
                "{path} {extra}"
            );
            for results in ["all", "errors"] {
                let load = app
                    .post(&json!({ "jobs": [job], "load": { "repeat": 3 }, "concurrency": 1, "results": results }))
                    .await;
                for task in load.json["results"].as_array().unwrap() {
                    assert_eq!(seen_as(task), expected, "{path} {extra} {results}: {task}");
                }
            }
        }
    }
}

#[tokio::test]
async fn requests_an_http_2_connection_going_away_did_not_take_go_on_another() {
    let pki = Pki::new("private CA");
    let app = trusting_app(&pki).await;
    let leaf = pki.leaf(&["localhost", "127.0.0.1"], false);
    let target = serve_limited(server_config(&leaf, &["h2"], None), 100).await;
    let res = app
        .post(&json!({
            "jobs": [{ "kind": "http", "url": target.url("https", "127.0.0.1", "/"), "http_version": "2", "method": "POST", "body": "x" }],
            "load": { "repeat": 2000, "connections": 1 }, "concurrency": 16, "results": "errors"
        }))
        .await;
    let s = &res.json["summary"];
    assert_eq!(s["succeeded"], 2000, "{s}");
    // Each connection serves its 100 and those already under way when it said so.
    assert!(target.accepted() >= 5, "{}", target.accepted());
}

#[tokio::test]
async fn checks_are_judged_on_https_answers_over_http_1_1_and_http_2() {
    let pki = Pki::new("private CA");
    let app = trusting_app(&pki).await;
    let target = https_target(&pki, &["h2", "http/1.1"]).await;
    for version in ["1.1", "2"] {
        let res = app
            .post(&json!({
                "jobs": [{ "kind": "http", "url": target.url("https", "127.0.0.1", "/hello"),
                    "http_version": version,
                    "checks": [
                        { "name": "greets", "on": "body", "equals": "hello" },
                        { "name": "marked", "on": "header:x-target", "equals": "yes" },
                        { "name": "wrong", "on": "body", "contains": "bye", "soft": true }
                    ] }],
                "load": { "repeat": 300 }, "concurrency": 16, "results": "none"
            }))
            .await;
        let s = &res.json["summary"];
        assert_eq!(s["succeeded"], 300, "HTTP/{version}: {s}");
        assert_eq!(
            s["checks"]["greets"],
            json!({ "passed": 300, "failed": 0 }),
            "{s}"
        );
        assert_eq!(
            s["checks"]["marked"],
            json!({ "passed": 300, "failed": 0 }),
            "{s}"
        );
        assert_eq!(
            s["checks"]["wrong"],
            json!({ "passed": 0, "failed": 300 }),
            "{s}"
        );
    }
}
