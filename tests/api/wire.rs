//! The lean path's HTTP/1 client (the requests of load runs) against a server that writes
//! scripted answers piece by piece: each answer must read as the general path (reqwest and
//! hyper) reads it, connections must be kept exactly when HTTP/1.1 allows, and requests must
//! go out as the job describes them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::helpers::{TestApp, spawn_app, spawn_app_hooked, spawn_app_with};

/// A server that answers each request by its path with scripted bytes.
struct Scripted {
    base: String,
    /// Connections accepted so far.
    connections: Arc<AtomicUsize>,
    /// Every request as it arrived, head and body.
    requests: Arc<Mutex<Vec<Vec<u8>>>>,
}

/// An answer: the pieces it is written in (with a short pause between them), and whether the
/// connection closes after it.
struct Script {
    pieces: Vec<Vec<u8>>,
    close: bool,
}

fn keep(pieces: &[&[u8]]) -> Script {
    Script {
        pieces: pieces.iter().map(|p| p.to_vec()).collect(),
        close: false,
    }
}

fn then_close(pieces: &[&[u8]]) -> Script {
    Script {
        close: true,
        ..keep(pieces)
    }
}

fn script(path: &str) -> Script {
    match path {
        "/length" => {
            keep(&[b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nX-A: 2\r\n\r\nhello"])
        }
        "/head-split" => keep(&[
            b"HTTP/1.1 200 OK\r\nContent-",
            b"Length: 2\r\n",
            b"\r\n",
            b"o",
            b"k",
        ]),
        "/chunked" => keep(&[
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhel",
            b"lo\r\n6\r",
            b"\n world\r\n0\r\nTrailer-A: x\r\n\r\n",
        ]),
        "/until-close" => then_close(&[
            b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil ",
            b"the end",
        ]),
        "/http10-keep-alive" => {
            keep(&[b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"])
        }
        "/conn-close" => {
            then_close(&[b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"])
        }
        "/no-content" => keep(&[b"HTTP/1.1 204 No Content\r\n\r\n"]),
        "/not-modified" => keep(&[b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"]),
        "/interim" => keep(&[
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
            b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
        ]),
        "/big" => {
            let mut answer = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n".to_vec();
            answer.extend([b'a'; 1000]);
            Script {
                pieces: vec![answer],
                close: false,
            }
        }
        "/big-chunked" => {
            let mut answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for _ in 0..3 {
                answer.extend(b"190\r\n");
                answer.extend([b'b'; 400]);
                answer.extend(b"\r\n");
            }
            answer.extend(b"0\r\n\r\n");
            Script {
                pieces: vec![answer],
                close: false,
            }
        }
        "/exact" => keep(&[b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789"]),
        "/binary" => keep(&[b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n\xff\xfe\x00\x80"]),
        "/error" => keep(&[
            b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 4\r\n\r\nbusy",
        ]),
        "/redirect" => {
            keep(&[b"HTTP/1.1 302 Found\r\nLocation: /length\r\nContent-Length: 0\r\n\r\n"])
        }
        "/garbage" => then_close(&[b"garbage\r\n\r\n"]),
        "/short" => then_close(&[b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"]),
        "/bad-length" => then_close(&[b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nok"]),
        "/two-lengths" => {
            then_close(&[b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!"])
        }
        "/bad-chunk" => then_close(&[
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n",
        ]),
        "/cut-chunked" => {
            then_close(&[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"])
        }
        "/http10-chunked" => keep(&[
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        ]),
        "/plus-length" => then_close(&[b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok"]),
        "/not-modified-bad-length" => {
            keep(&[b"HTTP/1.1 304 Not Modified\r\nContent-Length: abc\r\n\r\n"])
        }
        "/empty-chunk-line" => {
            then_close(&[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n\r\n"])
        }
        "/chunk-lf-ext" => then_close(&[
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;a\nb\r\nx\r\n0\r\n\r\n",
        ]),
        "/chunk-no-crlf" => {
            then_close(&[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX"])
        }
        "/te-and-length" => keep(&[
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 100\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        ]),
        "/te-other" => then_close(&[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nraw"]),
        "/te-empty" => {
            then_close(&[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: \r\nContent-Length: 2\r\n\r\nok"])
        }
        "/extra-bytes" => keep(&[b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokJUNK"]),
        "/late-trailer" => keep(&[
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n",
            b"Trailer-A: x\r\n",
            b"\r\n",
        ]),
        "/redirect-utf8" => keep(&[
            b"HTTP/1.1 302 Found\r\nLocation: /caf\xc3\xa9\r\nContent-Length: 0\r\n\r\n",
        ]),
        // Looks kept alive, but the server closes the connection right after the answer.
        "/idle-close" => then_close(&[b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]),
        _ => keep(&[b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\necho"]),
    }
}

async fn spawn_scripted() -> Scripted {
    spawn_scripted_over(None).await
}

/// The scripted server, over TLS when `tls` is given (each answer's close then sends TLS's
/// close_notify first, as a server that ends the connection cleanly does).
async fn spawn_scripted_over(tls: Option<tokio_rustls::TlsAcceptor>) -> Scripted {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let base = format!("{scheme}://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (count, seen) = (connections.clone(), requests.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            match &tls {
                None => {
                    tokio::spawn(serve(stream, seen.clone()));
                }
                Some(acceptor) => {
                    let (acceptor, seen) = (acceptor.clone(), seen.clone());
                    tokio::spawn(async move {
                        if let Ok(mut tls) = acceptor.accept(stream).await {
                            serve_on(&mut tls, seen).await;
                            let _ = tls.shutdown().await;
                        }
                    });
                }
            }
        }
    });
    Scripted {
        base,
        connections,
        requests,
    }
}

/// Reads requests one after another (head, then as many body bytes as Content-Length says)
/// and answers each as scripted.
async fn serve(mut stream: tokio::net::TcpStream, seen: Arc<Mutex<Vec<Vec<u8>>>>) {
    serve_on(&mut stream, seen).await;
}

async fn serve_on<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            if !read_more(stream, &mut buf).await {
                return;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        while buf.len() < head_end + length {
            if !read_more(stream, &mut buf).await {
                return;
            }
        }
        let request: Vec<u8> = buf.drain(..head_end + length).collect();
        let path = head
            .split(' ')
            .nth(1)
            .unwrap_or("/")
            .split('?')
            .next()
            .unwrap()
            .to_owned();
        seen.lock().unwrap().push(request);
        if path == "/continue-flood" {
            // Interim answers without end, as fast as the client takes them.
            let burst = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(100);
            while stream.write_all(&burst).await.is_ok() {}
            return;
        }
        let mut script = script(&path);
        if head.starts_with("head ") {
            // The answer to a HEAD request has a head only.
            let whole = script.pieces.concat();
            let end = whole.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            script.pieces = vec![whole[..end].to_vec()];
        }
        for (i, piece) in script.pieces.iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if stream.write_all(piece).await.is_err() {
                return;
            }
        }
        if script.close {
            return;
        }
    }
}

/// Reads what the client sent next onto `buf`; `false` once the connection has ended.
async fn read_more<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

/// What a task's result says of the answer, leaving out timings and error texts.
fn seen_as(task: &Value) -> Value {
    let out = &task["output"];
    json!({
        "status": task["status"],
        "error": task["error"]["code"],
        "http": out["status"],
        "headers": out["headers"],
        "body": out["body"],
        "body_base64": out["body_base64"],
        "bytes": out["bytes"],
        "truncated": out["truncated"],
    })
}

/// The scripted answers the differential reads through both paths.
fn differential_cases() -> Vec<(&'static str, Value)> {
    vec![
        ("/length", json!({})),
        ("/length", json!({ "method": "HEAD" })),
        ("/head-split", json!({})),
        ("/chunked", json!({})),
        ("/until-close", json!({})),
        ("/http10-keep-alive", json!({})),
        ("/conn-close", json!({})),
        ("/no-content", json!({})),
        ("/not-modified", json!({})),
        ("/interim", json!({})),
        ("/big", json!({ "max_response_bytes": 10 })),
        ("/big-chunked", json!({ "max_response_bytes": 10 })),
        ("/exact", json!({ "max_response_bytes": 10 })),
        ("/binary", json!({})),
        ("/error", json!({})),
        ("/redirect", json!({ "follow_redirects": 1 })),
        ("/redirect", json!({})),
        ("/garbage", json!({})),
        ("/short", json!({})),
        ("/bad-length", json!({})),
        ("/two-lengths", json!({})),
        ("/bad-chunk", json!({})),
        ("/cut-chunked", json!({})),
        ("/http10-chunked", json!({})),
        ("/plus-length", json!({})),
        ("/not-modified-bad-length", json!({})),
        ("/empty-chunk-line", json!({})),
        ("/chunk-lf-ext", json!({})),
        ("/chunk-no-crlf", json!({})),
        ("/te-and-length", json!({})),
        ("/te-other", json!({})),
        ("/te-empty", json!({})),
        ("/extra-bytes", json!({})),
        ("/late-trailer", json!({})),
        ("/redirect-utf8", json!({ "follow_redirects": 1 })),
    ]
}

/// Every scripted answer read by `app` (one task, and load runs that keep or count the
/// answers) as `reference` (the general client) reads it.
async fn differential(app: &TestApp, reference: &TestApp, base: &str) {
    for (path, extra) in differential_cases() {
        // A bounded wait, so that a misread answer fails the test rather than stalling it.
        let mut job = json!({ "kind": "http", "url": format!("{base}{path}"), "timeout_ms": 5000 });
        job.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());

        // The general path: one task, no `load`.
        let general = reference
            .post(&json!({ "jobs": [job], "return_exceptions": true }))
            .await;
        assert_eq!(general.status, 201, "{}", general.json);
        let expected = seen_as(&general.json["results"][0]);
        // A batch without `load` on its own connections reads it the same.
        let single = app
            .post(&json!({ "jobs": [job], "return_exceptions": true }))
            .await;
        assert_eq!(
            seen_as(&single.json["results"][0]),
            expected,
            "{path} {extra}: one task"
        );

        // The lean path: the same job three times on one slot, as a load run.
        let lean = app
            .post(&json!({ "jobs": [job], "load": { "repeat": 3 }, "concurrency": 1, "results": "all" }))
            .await;
        assert_eq!(lean.status, 201, "{}", lean.json);
        for task in lean.json["results"].as_array().unwrap() {
            assert_eq!(seen_as(task), expected, "{path} {extra}: {task}");
            if task["status"] == "failed" {
                assert!(
                    task["error"]["message"]
                        .as_str()
                        .is_some_and(|m| !m.is_empty()),
                    "{task}"
                );
            }
        }

        // Again with answers counted rather than kept: the same outcomes.
        let counted = app
            .post(&json!({ "jobs": [job], "load": { "repeat": 3 }, "concurrency": 1, "results": "errors" }))
            .await;
        assert_eq!(counted.status, 201, "{}", counted.json);
        for key in ["succeeded", "failed", "http_status", "errors"] {
            assert_eq!(
                counted.json["summary"][key], lean.json["summary"][key],
                "{path} {extra}: {key}"
            );
        }
        for task in counted.json["results"].as_array().unwrap() {
            assert_eq!(seen_as(task), expected, "{path} {extra}: {task}");
        }
    }
}

fn general_client() -> fanout::app::Hooks {
    fanout::app::Hooks {
        general_client: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn load_runs_read_every_kind_of_answer_as_the_general_path_does() {
    let app = spawn_app().await;
    // The reference: batches without `load` on the general client (reqwest and hyper).
    let reference = spawn_app_hooked(|_| {}, general_client()).await;
    let server = spawn_scripted().await;
    differential(&app, &reference, &server.base).await;
}

#[tokio::test]
async fn over_tls_every_kind_of_answer_reads_as_the_general_client_reads_it() {
    let pki = crate::tls::Pki::new("scripted CA");
    let acceptor = tokio_rustls::TlsAcceptor::from(crate::tls::server_config(
        &pki.leaf(&["localhost", "127.0.0.1"], false),
        &["http/1.1"],
        None,
    ));
    let server = spawn_scripted_over(Some(acceptor)).await;
    let dir = tempfile::tempdir().unwrap().keep();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, pki.ca_pem()).unwrap();
    let trusting = ca.clone();
    let app = spawn_app_with(move |c| c.ca_file = vec![trusting]).await;
    let reference = spawn_app_hooked(move |c| c.ca_file = vec![ca], general_client()).await;
    differential(&app, &reference, &server.base).await;
}

#[tokio::test]
async fn load_runs_keep_a_connection_exactly_when_http_1_1_allows() {
    let app = spawn_app().await;
    let server = spawn_scripted().await;
    // Five requests on one slot: one connection when answers keep it open, five when they
    // end it (or when the server closes it unannounced, which a GET survives by sending again
    // on a new connection).
    let cases = [
        ("/length", "GET", 1),
        ("/length", "HEAD", 1),
        ("/chunked", "HEAD", 1),
        ("/chunked", "GET", 1),
        ("/late-trailer", "GET", 1),
        ("/http10-keep-alive", "GET", 1),
        ("/no-content", "GET", 1),
        ("/interim", "GET", 1),
        ("/conn-close", "GET", 5),
        ("/until-close", "GET", 5),
        ("/idle-close", "GET", 5),
        ("/big", "GET", 5),
        ("/te-and-length", "GET", 5),
        ("/extra-bytes", "GET", 5),
    ];
    for (path, method, connections) in cases {
        let before = server.connections.load(Ordering::SeqCst);
        let res = app
            .post(&json!({
                "jobs": [{ "kind": "http", "method": method, "url": format!("{}{path}", server.base),
                           "max_response_bytes": 100 }],
                "load": { "repeat": 5 }, "concurrency": 1, "results": "errors"
            }))
            .await;
        assert_eq!(res.status, 201, "{}", res.json);
        assert_eq!(
            res.json["summary"]["succeeded"], 5,
            "{method} {path}: {}",
            res.json
        );
        let used = server.connections.load(Ordering::SeqCst) - before;
        assert_eq!(used, connections, "{method} {path}");
    }
}

#[tokio::test]
async fn load_runs_send_the_method_headers_and_body_the_job_gives() {
    let app = spawn_app().await;
    let server = spawn_scripted().await;
    let port = server.base.rsplit(':').next().unwrap().to_owned();

    let res = app
        .post(&json!({
            "jobs": [
                { "kind": "http", "method": "POST", "url": format!("{}/echo?q=1&r=%20", server.base),
                  "headers": { "x-test": "1", "User-Agent": "mine" }, "body": "ping" },
                { "kind": "http", "method": "POST", "url": format!("{}/empty", server.base) },
                { "kind": "http", "url": format!("{}/plain", server.base) },
                // A job that sets its own framing goes the general way, and still arrives.
                { "kind": "http", "method": "PUT", "url": format!("{}/own-length", server.base),
                  "headers": { "content-length": "3" }, "body": "abc" }
            ],
            "load": { "repeat": 1 }, "concurrency": 1, "results": "errors"
        }))
        .await;
    assert_eq!(res.status, 201, "{}", res.json);
    assert_eq!(res.json["summary"]["succeeded"], 4, "{}", res.json);

    let requests = server.requests.lock().unwrap().clone();
    let text: Vec<String> = requests
        .iter()
        .map(|r| String::from_utf8_lossy(r).into_owned())
        .collect();
    let find = |start: &str| {
        text.iter()
            .find(|r| r.starts_with(start))
            .unwrap_or_else(|| panic!("no request starting {start:?} in {text:?}"))
            .to_lowercase()
    };
    let echo = find("POST /echo?q=1&r=%20 HTTP/1.1\r\n");
    assert!(
        echo.contains(&format!("\r\nhost: 127.0.0.1:{port}\r\n")),
        "{echo}"
    );
    assert!(echo.contains("\r\nx-test: 1\r\n"), "{echo}");
    assert!(echo.contains("\r\nuser-agent: mine\r\n"), "{echo}");
    assert!(
        !echo.contains("fanout/"),
        "the job's User-Agent replaces ours: {echo}"
    );
    assert!(echo.contains("\r\ncontent-length: 4\r\n"), "{echo}");
    assert!(echo.ends_with("\r\n\r\nping"), "{echo}");
    let empty = find("POST /empty HTTP/1.1\r\n");
    assert!(empty.contains("\r\ncontent-length: 0\r\n"), "{empty}");
    let plain = find("GET /plain HTTP/1.1\r\n");
    assert!(!plain.contains("content-length"), "{plain}");
    assert!(plain.contains("\r\nuser-agent: fanout/"), "{plain}");
    let own = find("PUT /own-length HTTP/1.1\r\n");
    assert!(own.ends_with("\r\n\r\nabc"), "{own}");
}

#[tokio::test]
async fn a_load_run_never_sends_a_post_twice() {
    let app = spawn_app().await;
    let server = spawn_scripted().await;
    // The server closes each connection right after its answer, unannounced. A GET found on
    // a closed connection goes again on a new one; a POST is never sent twice, whether it
    // then succeeds or fails.
    let res = app
        .post(&json!({
            "jobs": [{ "kind": "http", "method": "POST", "url": format!("{}/idle-close", server.base),
                       "body": "once" }],
            "load": { "repeat": 20 }, "concurrency": 1, "results": "errors"
        }))
        .await;
    assert_eq!(res.status, 201, "{}", res.json);
    let s = &res.json["summary"];
    assert_eq!(s["tasks"], 20, "{s}");
    let posts = server
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.starts_with(b"POST /idle-close "))
        .count() as u64;
    // Every task that succeeded was sent once; one that failed was sent at most once.
    let succeeded = s["succeeded"].as_u64().unwrap();
    assert!(
        (succeeded..=20).contains(&posts),
        "{posts} POSTs for 20 tasks: {s}"
    );
}

#[tokio::test]
async fn endless_interim_answers_end_the_request_rather_than_the_run() {
    let app = spawn_app().await;
    let server = spawn_scripted().await;
    let res = app
        .post(&json!({
            "jobs": [
                { "kind": "http", "url": format!("{}/continue-flood", server.base), "timeout_ms": 5000 },
                { "kind": "http", "url": format!("{}/length", server.base) }
            ],
            "load": { "repeat": 2 }, "concurrency": 2, "results": "errors"
        }))
        .await;
    assert_eq!(res.status, 201, "{}", res.json);
    let s = &res.json["summary"];
    assert_eq!(s["succeeded"], 2, "{s}");
    assert_eq!(s["tasks"], 4, "{s}");
}

#[tokio::test]
async fn a_url_the_guard_refuses_is_refused_in_a_load_run_even_when_its_origin_is_approved() {
    let app = spawn_app().await;
    let server = spawn_scripted().await;
    // The same origin, once plainly and once with credentials in the URL: the origin's lookup
    // is approved once, but the URL with credentials is still refused, every time.
    let with_credentials = server.base.replace("http://", "http://user:secret@");
    let res = app
        .post(&json!({
            "jobs": [
                { "kind": "http", "url": format!("{}/length", server.base) },
                { "kind": "http", "url": format!("{with_credentials}/length") }
            ],
            "load": { "repeat": 3 }, "concurrency": 1, "results": "errors"
        }))
        .await;
    assert_eq!(res.status, 201, "{}", res.json);
    let s = &res.json["summary"];
    assert_eq!(s["succeeded"], 3, "{s}");
    assert_eq!(s["errors"]["forbidden"], 3, "{s}");
    let sent = server.requests.lock().unwrap().len();
    assert_eq!(sent, 3, "only the plain URL's requests arrive");
}
