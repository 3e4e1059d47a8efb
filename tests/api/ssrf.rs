//! The outbound guard, through the real client: every notation of loopback, the private and
//! special ranges, names that resolve to them, redirects, rebinding, proxies, and the
//! allow-list. A table lookup stands in for DNS, and a recording dialer stands in for
//! connecting to anything but loopback, so no packet leaves the machine even if the guard is
//! wrong (CI also runs this file in a network namespace with loopback only).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use fanout::app::Hooks;
use fanout::guard::{Dialer, Lookup, Refusal};
use futures::future::BoxFuture;
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_hooked, spawn_target};

/// Names resolve from a table; `rebind.test` answers a public address, then loopback.
struct TableLookup {
    table: HashMap<&'static str, Vec<IpAddr>>,
    rebinds: AtomicUsize,
    /// Every lookup.
    lookups: AtomicUsize,
}

impl Lookup for TableLookup {
    fn lookup(&self, host: &str) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
        // As DNS does: names are case-insensitive, and a trailing dot only marks them absolute.
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let host = host.as_str();
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let found = if host == "rebind.test" {
            let first = self.rebinds.fetch_add(1, Ordering::SeqCst) == 0;
            vec![
                if first { "93.184.216.34" } else { "127.0.0.1" }
                    .parse()
                    .unwrap(),
            ]
        } else {
            self.table.get(host).cloned().unwrap_or_default()
        };
        // A name whose lookup takes a while, as a real one may.
        let slow = host == "slow.test";
        Box::pin(async move {
            if slow {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            if found.is_empty() {
                Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such host",
                ))
            } else {
                Ok(found)
            }
        })
    }
}

/// Lets loopback through (the local targets); records everything else and connects nowhere.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<(String, Vec<SocketAddr>)>>,
}

impl Dialer for Recorder {
    fn approve(&self, host: &str, addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, Refusal> {
        if addrs.iter().all(|a| a.ip().is_loopback()) {
            return Ok(addrs);
        }
        self.seen.lock().push((host.to_owned(), addrs));
        Err(Refusal("recorded, not dialled".into()))
    }
}

fn lookup() -> Arc<TableLookup> {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let table = HashMap::from([
        ("localhost", vec![ip("127.0.0.1"), ip("::1")]),
        ("loopback.test", vec![ip("127.0.0.1")]),
        ("slow.test", vec![ip("127.0.0.1")]),
        ("private.test", vec![ip("10.0.0.5")]),
        ("metadata.test", vec![ip("169.254.169.254")]),
        ("ula.test", vec![ip("fd00::1")]),
        ("mapped.test", vec![ip("::ffff:127.0.0.1")]),
        ("cgnat.test", vec![ip("100.64.1.1")]),
        ("public.test", vec![ip("93.184.216.34")]),
        ("public6.test", vec![ip("2606:4700::1111")]),
        (
            "mixed.test",
            vec![ip("127.0.0.1"), ip("93.184.216.34"), ip("10.1.1.1")],
        ),
    ]);
    Arc::new(TableLookup {
        table,
        rebinds: AtomicUsize::new(0),
        lookups: AtomicUsize::new(0),
    })
}

async fn guarded_app(allow: &[&str]) -> (TestApp, Arc<Recorder>) {
    let (app, recorder, _) = guarded_app_and_lookup(allow).await;
    (app, recorder)
}

/// As [`guarded_app`], with the name table, to count its lookups.
async fn guarded_app_and_lookup(allow: &[&str]) -> (TestApp, Arc<Recorder>, Arc<TableLookup>) {
    let lookup = lookup();
    let recorder = Arc::new(Recorder::default());
    let hooks = Hooks {
        lookup: Some(lookup.clone()),
        dialer: Some(recorder.clone()),
        general_client: false,
    };
    let allow: Vec<String> = allow.iter().map(|s| s.to_string()).collect();
    let app = spawn_app_hooked(|c| c.allow_net = allow, hooks).await;
    (app, recorder, lookup)
}

/// As [`run_all`], then again as a load run (whose plain-HTTP requests take the lean path,
/// with its own lookups and connections): both must judge every URL alike.
async fn run_all_both_ways(app: &TestApp, urls: &[String]) -> Vec<Value> {
    let plain = run_all(app, urls).await;
    let jobs: Vec<Value> = urls
        .iter()
        .map(|u| json!({ "kind": "http", "url": u }))
        .collect();
    let res = app
        .post(&json!({ "load": { "repeat": 1 }, "concurrency": 1, "jobs": jobs }))
        .await;
    assert_eq!(res.status, 201, "{}", res.json);
    let lean = res.json["results"].as_array().unwrap();
    for ((url, p), l) in urls.iter().zip(&plain).zip(lean) {
        assert_eq!(p["status"], l["status"], "{url}: {p} / load run: {l}");
        assert_eq!(
            p["error"]["code"], l["error"]["code"],
            "{url}: {p} / load run: {l}"
        );
        let recorded = |v: &Value| {
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("recorded"))
        };
        assert_eq!(recorded(p), recorded(l), "{url}: {p} / load run: {l}");
    }
    plain
}

async fn run_all(app: &TestApp, urls: &[String]) -> Vec<Value> {
    let jobs: Vec<Value> = urls
        .iter()
        .map(|u| json!({ "kind": "http", "url": u }))
        .collect();
    let res = app
        .post(&json!({ "return_exceptions": true, "concurrency": 1, "jobs": jobs }))
        .await;
    assert_eq!(res.status, 201, "{}", res.json);
    res.json["results"].as_array().unwrap().clone()
}

#[tokio::test]
async fn every_spelling_of_a_non_public_address_is_forbidden() {
    let target = spawn_target().await;
    let port = target.base.rsplit(':').next().unwrap().to_owned();
    let (app, recorder) = guarded_app(&[]).await;
    let p = &port;
    let urls: Vec<String> = [
        format!("http://127.0.0.1:{p}/hello"),
        format!("http://localhost:{p}/hello"),
        format!("http://LOCALHOST.:{p}/hello"),
        format!("http://127.1:{p}/hello"),
        format!("http://127.0.1:{p}/hello"),
        format!("http://2130706433:{p}/hello"),
        format!("http://0x7f000001:{p}/hello"),
        format!("http://0x7f.0.0.1:{p}/hello"),
        format!("http://0x7f.1:{p}/hello"),
        format!("http://0177.0.0.1:{p}/hello"),
        format!("http://017700000001:{p}/hello"),
        format!("http://127.000.000.001:{p}/hello"),
        format!("http://127.255.255.254:{p}/hello"),
        format!("http://[::1]:{p}/hello"),
        format!("http://[0:0:0:0:0:0:0:1]:{p}/hello"),
        format!("http://[::ffff:127.0.0.1]:{p}/hello"),
        format!("http://[::ffff:7f00:1]:{p}/hello"),
        format!("http://[0:0:0:0:0:ffff:127.0.0.1]:{p}/hello"),
        format!("http://[::127.0.0.1]:{p}/hello"),
        format!("http://[::ffff:0:127.0.0.1]:{p}/hello"),
        format!("http://[64:ff9b::127.0.0.1]:{p}/hello"),
        format!("http://[2002:7f00:1::]:{p}/hello"),
        format!("http://0.0.0.0:{p}/hello"),
        format!("http://0:{p}/hello"),
        format!("http://[::]:{p}/hello"),
        format!("http://loopback.test:{p}/hello"),
        format!("http://mapped.test:{p}/hello"),
        format!("http://user:pass@127.0.0.1:{p}/hello"),
        format!("http://user@public.test:{p}/"),
        "http://10.0.0.1/".into(),
        "http://10.255.255.255/".into(),
        "http://172.16.0.1/".into(),
        "http://172.31.255.255/".into(),
        "http://192.168.1.1/".into(),
        "http://100.64.0.1/".into(),
        "http://100.127.255.255/".into(),
        "http://169.254.169.254/latest/meta-data/".into(),
        "http://169.254.0.1/".into(),
        "http://[::ffff:169.254.169.254]/".into(),
        "http://[::ffff:a9fe:a9fe]/".into(),
        "http://[64:ff9b::a9fe:a9fe]/".into(),
        "http://[fd00:ec2::254]/".into(),
        "http://[fe80::1]/".into(),
        "http://[fc00::1]/".into(),
        "http://[fec0::1]/".into(),
        "http://224.0.0.1/".into(),
        "http://239.255.255.250/".into(),
        "http://[ff02::1]/".into(),
        "http://255.255.255.255/".into(),
        "http://192.0.2.1/".into(),
        "http://198.51.100.1/".into(),
        "http://203.0.113.1/".into(),
        "http://[2001:db8::1]/".into(),
        "http://[3fff::1]/".into(),
        "http://198.18.0.1/".into(),
        "http://198.19.255.255/".into(),
        "http://240.0.0.1/".into(),
        "http://192.0.0.1/".into(),
        "http://192.88.99.1/".into(),
        "http://[2001::1]/".into(),
        "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/".into(),
        "http://[100::1]/".into(),
        "http://[::ffff:10.0.0.1]/".into(),
        "http://[2002:a00:1::]/".into(),
        "http://private.test/".into(),
        "http://metadata.test/latest/meta-data/".into(),
        "http://ula.test/".into(),
        "http://cgnat.test/".into(),
    ]
    .to_vec();
    assert!(urls.len() >= 60, "{} inputs", urls.len());

    let results = run_all_both_ways(&app, &urls).await;

    for (url, r) in urls.iter().zip(&results) {
        assert_eq!(r["status"], "failed", "{url}: {r}");
        assert_eq!(r["error"]["code"], "forbidden", "{url}: {r}");
        let message = r["error"]["message"].as_str().unwrap();
        assert!(
            !message.contains("recorded"),
            "{url} reached the dialer: {message}"
        );
        assert_eq!(r["attempts"], 1, "{url}: forbidden is never retried");
    }
    assert_eq!(
        target.hits.load(Ordering::SeqCst),
        0,
        "the local target was reached"
    );
    assert!(
        recorder.seen.lock().is_empty(),
        "nothing refused may reach the dialer: {:?}",
        recorder.seen.lock()
    );
    // The refusal names the rule.
    assert!(
        results[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("loopback")
    );
    assert!(
        results[36]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("link-local"),
        "{}",
        results[36]
    );
}

#[tokio::test]
async fn public_addresses_are_allowed_and_only_they_are_dialled() {
    let (app, recorder) = guarded_app(&[]).await;
    let urls: Vec<String> = [
        "http://93.184.216.34/",
        "https://[2606:4700::1111]/",
        "http://public.test/",
        "http://public6.test/",
        "http://mixed.test:8080/",
        "http://[::ffff:93.184.216.34]/",
        "http://[64:ff9b::808:808]/",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();

    let results = run_all_both_ways(&app, &urls).await;

    for (url, r) in urls.iter().zip(&results) {
        let message = r["error"]["message"].as_str().unwrap_or("");
        assert!(
            message.contains("recorded"),
            "{url} was not allowed through: {r}"
        );
    }
    let seen = recorder.seen.lock().clone();
    let by_host: HashMap<String, Vec<SocketAddr>> = seen.into_iter().collect();
    assert_eq!(
        by_host["public.test"],
        vec!["93.184.216.34:80".parse().unwrap()]
    );
    assert_eq!(
        by_host["mixed.test"],
        vec!["93.184.216.34:8080".parse::<SocketAddr>().unwrap()],
        "a name with public and private addresses dials only the public one"
    );
    assert_eq!(
        by_host["2606:4700::1111"],
        vec!["[2606:4700::1111]:443".parse().unwrap()]
    );
}

#[tokio::test]
async fn a_name_that_does_not_resolve_fails_dns_without_retry() {
    let (app, _) = guarded_app(&[]).await;

    let res = app
        .post(&json!({ "return_exceptions": true, "jobs": [
            { "kind": "http", "url": "http://nowhere.test/", "retries": { "max": 3, "backoff_ms": 1 } }
        ]}))
        .await;

    let r = &res.json["results"][0];
    assert_eq!(r["error"]["code"], "dns", "{r}");
    assert_eq!(r["attempts"], 1);
    // One sentence, not the client's chain of wrappers.
    let message = r["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("nowhere.test: name does not resolve"),
        "{message}"
    );
    assert!(!message.contains("error sending request"), "{message}");
}

#[tokio::test]
async fn a_load_run_to_a_name_that_does_not_resolve_looks_it_up_about_once_a_second() {
    let (app, _, lookup) = guarded_app_and_lookup(&[]).await;

    let res = app
        .post(&json!({
            "jobs": [{ "kind": "http", "url": "http://nowhere.test/" }],
            "load": { "repeat": 500 }, "concurrency": 4, "results": "none"
        }))
        .await;

    assert_eq!(res.status, 201, "{}", res.json);
    let s = &res.json["summary"];
    assert_eq!(s["failed"], 500, "{s}");
    assert_eq!(s["errors"]["dns"], 500, "{s}");
    // Every request failed as `dns`, but the name was looked up once for the batch (and again
    // only after a second), not 500 times.
    let lookups = lookup.lookups.load(Ordering::SeqCst);
    assert!((1..=3).contains(&lookups), "{lookups} lookups");
}

#[tokio::test]
async fn a_load_run_looks_its_origin_up_once_for_all_its_slots() {
    let target = spawn_target().await;
    let port = target.base.rsplit(':').next().unwrap().to_owned();
    let (app, _, lookup) = guarded_app_and_lookup(&[&format!("slow.test:{port}")]).await;

    // 64 slots in many drivers, all starting at once, and a lookup that takes 100 ms: one
    // lookup between them.
    let res = app
        .post(&json!({
            "jobs": [{ "kind": "http", "url": format!("http://slow.test:{port}/hello") }],
            "load": { "repeat": 3000 }, "concurrency": 64, "results": "none"
        }))
        .await;

    assert_eq!(res.status, 201, "{}", res.json);
    assert_eq!(
        res.json["summary"]["succeeded"], 3000,
        "{}",
        res.json["summary"]
    );
    assert_eq!(lookup.lookups.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_rebinding_name_is_judged_at_every_lookup() {
    let (app, recorder) = guarded_app(&[]).await;

    let results = run_all(
        &app,
        &["http://rebind.test/".into(), "http://rebind.test/".into()],
    )
    .await;

    assert!(
        results[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("recorded"),
        "{}",
        results[0]
    );
    assert_eq!(results[1]["error"]["code"], "forbidden", "{}", results[1]);
    assert!(
        results[1]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("loopback")
    );
    assert_eq!(recorder.seen.lock().len(), 1);
}

#[tokio::test]
async fn redirects_are_judged_hop_by_hop() {
    let target = spawn_target().await;
    let port = target.base.rsplit(':').next().unwrap().to_owned();
    let (app, recorder) = guarded_app(&[&format!("127.0.0.1:{port}")]).await;
    let base = &target.base;
    let jobs = json!([
        { "kind": "http", "url": format!("{base}/redirect-to?url=http://169.254.169.254/latest/meta-data/"), "follow_redirects": 3 },
        { "kind": "http", "url": format!("{base}/redirect-to?url=http://127.0.0.2:{port}/hello"), "follow_redirects": 3 },
        { "kind": "http", "url": format!("{base}/redirect-to?url=http://localhost:{port}/hello"), "follow_redirects": 3 },
        { "kind": "http", "url": format!("{base}/redirect-to?url=http://public.test/"), "follow_redirects": 3 },
        { "kind": "http", "url": format!("{base}/loop"), "follow_redirects": 5 },
        { "kind": "http", "url": format!("{base}/redirect/2"), "follow_redirects": 5 }
    ]);

    let res = app
        .post(&json!({ "return_exceptions": true, "concurrency": 1, "jobs": jobs }))
        .await;

    let r = &res.json["results"];
    assert_eq!(r[0]["error"]["code"], "forbidden", "{}", r[0]);
    assert_eq!(
        r[1]["error"]["code"], "forbidden",
        "the allowed address's neighbour: {}",
        r[1]
    );
    assert_eq!(
        r[2]["status"], "succeeded",
        "localhost:{port} dials 127.0.0.1:{port}, which is allowed: {}",
        r[2]
    );
    assert!(
        r[3]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("recorded"),
        "{}",
        r[3]
    );
    assert_eq!(
        r[4]["error"]["code"], "status",
        "a redirect loop stops at the hop limit: {}",
        r[4]
    );
    assert_eq!(r[5]["status"], "succeeded");
    assert_eq!(recorder.seen.lock().len(), 1);

    // A load run sends the first hop on its own connections; the hops after it are judged the
    // same way.
    let load = app
        .post(&json!({ "load": { "repeat": 1 }, "concurrency": 1, "jobs": jobs }))
        .await;
    let l = &load.json["results"];
    for i in 0..6 {
        assert_eq!(l[i]["status"], r[i]["status"], "{i}: {} / {}", l[i], r[i]);
        assert_eq!(
            l[i]["error"]["code"], r[i]["error"]["code"],
            "{i}: {}",
            l[i]
        );
    }
    assert_eq!(recorder.seen.lock().len(), 2);
}

#[tokio::test]
async fn the_allow_list_opens_exactly_what_it_names() {
    let target = spawn_target().await;
    let other = spawn_target().await;
    let port = target.base.rsplit(':').next().unwrap().to_owned();
    let other_port = other.base.rsplit(':').next().unwrap().to_owned();
    let (app, _) = guarded_app(&[
        &format!("127.0.0.1:{port}"),
        "10.0.0.0/30",
        &format!("loopback.test:{other_port}"),
    ])
    .await;

    let results = run_all(
        &app,
        &[
            format!("http://127.0.0.1:{port}/hello"),
            format!("http://127.0.0.1:{other_port}/hello"),
            format!("http://127.0.0.2:{port}/hello"),
            format!("http://[::1]:{port}/hello"),
            format!("http://loopback.test:{other_port}/hello"),
            format!("http://loopback.test:{port}/hello"),
            "http://10.0.0.4/".into(),
        ],
    )
    .await;

    assert_eq!(results[0]["status"], "succeeded", "{}", results[0]);
    for i in [1, 2, 3, 6] {
        assert_eq!(
            results[i]["error"]["code"], "forbidden",
            "{i}: {}",
            results[i]
        );
    }
    assert_eq!(
        results[4]["status"], "succeeded",
        "a host rule opens that name and port: {}",
        results[4]
    );
    assert_eq!(
        results[5]["status"], "succeeded",
        "loopback.test resolves to 127.0.0.1, and 127.0.0.1:{port} is allowed"
    );
    assert_eq!(target.hits.load(Ordering::SeqCst), 2);
    assert_eq!(other.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn non_http_schemes_are_invalid_requests() {
    let (app, _) = guarded_app(&[]).await;
    for url in [
        "file:///etc/passwd",
        "ftp://example.com/",
        "gopher://127.0.0.1:70/",
        "data:text/plain,hi",
    ] {
        let res = app
            .post(&json!({ "jobs": [{ "kind": "http", "url": url }] }))
            .await;
        assert_eq!(res.status, 422, "{url}: {}", res.json);
        assert_eq!(res.json["errors"][0]["field"], "jobs[0].url");
    }
}

#[tokio::test]
async fn names_of_this_machine_and_of_metadata_services_are_refused_by_name_before_any_lookup() {
    let (app, recorder, lookup) = guarded_app_and_lookup(&[]).await;
    let urls: Vec<String> = [
        "http://localhost/",
        "http://localhost./",
        "http://app.localhost:8080/",
        "http://A.B.LOCALHOST./",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://metadata/",
        "http://instance-data/latest/meta-data/",
    ]
    .iter()
    .map(|u| u.to_string())
    .collect();

    let results = run_all_both_ways(&app, &urls).await;

    for (url, r) in urls.iter().zip(&results) {
        assert_eq!(r["error"]["code"], "forbidden", "{url}: {r}");
        let message = r["error"]["message"].as_str().unwrap();
        assert!(message.contains("refused by name"), "{url}: {message}");
        assert!(message.contains("add --allow-net"), "{url}: {message}");
    }
    assert_eq!(
        lookup.lookups.load(Ordering::SeqCst),
        0,
        "no name was looked up"
    );
    assert!(recorder.seen.lock().is_empty());
}

#[tokio::test]
async fn a_localhost_name_opens_with_the_loopback_address_it_stands_for() {
    let target = spawn_target().await;
    let port = target.base.rsplit(':').next().unwrap().to_owned();
    let (app, _, _) = guarded_app_and_lookup(&[&format!("127.0.0.1:{port}")]).await;

    let results = run_all_both_ways(&app, &[format!("http://localhost.:{port}/hello")]).await;

    assert_eq!(results[0]["status"], "succeeded", "{}", results[0]);
}
