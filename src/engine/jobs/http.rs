//! `http`: one request (following redirects when asked), its body read up to a byte cap.

use std::collections::BTreeMap;
use std::time::Instant;

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, StatusCode, header};

use std::sync::Arc;

use std::collections::HashMap;

use parking_lot::Mutex;

use super::judging::{self, Received};
use super::tls::{Alpn, Trust};
use super::{Failure, FilesRoot};
use crate::engine::check::Judged;
use crate::engine::spec::{HttpJob, HttpVersion, ResultsMode};
use crate::engine::task::{CONNECTING, ErrorCode, HttpOutput, HttpVersionName, TaskOutput, ms};
use crate::guard::{GuardedResolver, NetGuard, Refusal, TARGET};

/// The general path's clients: one for every set of options that changes how connections
/// are made (TLS, HTTP version, keep-alive), each shared by every job with those options so
/// that connections are pooled across jobs and batches. Every name they look up goes through
/// the guard's resolver.
pub struct Clients {
    guard: NetGuard,
    trust: Arc<Trust>,
    by_options: Mutex<HashMap<(bool, Alpn, bool), reqwest::Client>>,
}

impl Clients {
    pub fn new(guard: &NetGuard, trust: Arc<Trust>) -> Clients {
        Clients {
            guard: guard.clone(),
            trust,
            by_options: Mutex::default(),
        }
    }

    /// The client for a job's options; one with a client certificate is made for the job
    /// (its files are read beneath the files root).
    pub fn client(&self, job: &HttpJob, files: &FilesRoot) -> Result<reqwest::Client, Failure> {
        let alpn = Alpn::of(job.version);
        if job.tls.client_cert.is_some() {
            let config = self.trust.config_for(&job.tls, alpn, files)?;
            return Ok(self.build(config, job));
        }
        let key = (job.tls.insecure, alpn, job.keep_alive);
        if let Some(client) = self.by_options.lock().get(&key) {
            return Ok(client.clone());
        }
        let client = self.build(self.trust.config(job.tls.insecure, alpn), job);
        self.by_options.lock().insert(key, client.clone());
        Ok(client)
    }

    fn build(&self, tls: Arc<rustls::ClientConfig>, job: &HttpJob) -> reqwest::Client {
        let mut builder = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver(self.guard.clone())))
            // A proxy from the environment must not carry jobs past our own address checks.
            .no_proxy()
            // Redirects are followed here, hop by hop, so each hop can be checked and counted.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("fanout/", env!("CARGO_PKG_VERSION")))
            .tls_backend_preconfigured((*tls).clone());
        builder = match job.version {
            HttpVersion::Http1 => builder.http1_only(),
            HttpVersion::Http2 => builder.http2_prior_knowledge(),
            HttpVersion::Auto => builder,
        };
        if !job.keep_alive {
            builder = builder.pool_max_idle_per_host(0);
        }
        builder
            .build()
            .expect("the HTTP client's TLS back end initialises")
    }
}

/// One attempt sending `hop` (the job's request as task `seq` renders it), begun at
/// `started` (time to first byte counts from there).
pub async fn run(
    clients: &Clients,
    files: &FilesRoot,
    job: &HttpJob,
    hop: Hop,
    (started, seq): (Instant, u64),
) -> Result<TaskOutput, Failure> {
    follow(clients, &clients.guard, job, hop, (started, seq), files).await
}

/// One request of a job's chain of redirects: where it goes and what it sends.
pub struct Hop {
    url: url::Url,
    method: Method,
    body: Bytes,
    headers: HeaderMap,
    /// Redirects followed before this request.
    hops: u32,
}

impl Hop {
    /// The job's own request.
    pub fn first(job: &HttpJob) -> Hop {
        Hop {
            url: job.url.clone(),
            method: job.method.clone(),
            body: job.body.clone(),
            headers: job.headers.clone(),
            hops: 0,
        }
    }

    /// The job's own request for task `seq`, its placeholders rendered.
    pub fn rendered(job: &HttpJob, seq: u64) -> Hop {
        Hop::rendered_with(job, seq, &[])
    }

    /// The same for a flow's step, whose placeholders may name what earlier steps captured.
    pub fn rendered_with(job: &HttpJob, seq: u64, captures: &[String]) -> Hop {
        let mut hop = Hop::first(job);
        let Some(t) = &job.templates else {
            return hop;
        };
        let vars = crate::engine::template::Vars {
            captures,
            ..t.vars(seq)
        };
        if let Some(target) = &t.target {
            let mut url = job.origin_prefix();
            url.push_str(&target.render_string(&vars, true));
            // Checked when the batch was accepted with a sample; placeholders' values are
            // percent-encoded, so what they render parses too.
            if let Ok(u) = url::Url::parse(&url) {
                hop.url = u;
            }
        }
        for (name, value) in &t.headers {
            if let Ok(v) = http::HeaderValue::from_str(&value.render_string(&vars, false)) {
                hop.headers.insert(name.clone(), v);
            }
        }
        if let Some(body) = &t.body {
            hop.body = Bytes::from(body.render_string(&vars, false));
        }
        hop
    }

    pub fn url(&self) -> &url::Url {
        &self.url
    }

    /// Sends `cookie` (`a=1; b=2`, a flow's jar) after the cookies the job sets itself.
    pub fn add_cookie(&mut self, cookie: &str) {
        let joined = match self.headers.get(header::COOKIE).map(|v| v.to_str()) {
            Some(Ok(own)) => format!("{own}; {cookie}"),
            _ => cookie.to_owned(),
        };
        if let Ok(value) = http::HeaderValue::from_str(&joined) {
            self.headers.insert(header::COOKIE, value);
        }
    }

    pub fn header(&self, name: &http::HeaderName) -> Option<&http::HeaderValue> {
        self.headers.get(name)
    }

    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The request a redirect to `location` asks for, or `None` when it names no URL.
    pub fn next(mut self, status: StatusCode, location: &str) -> Option<Hop> {
        let next = self.url.join(location).ok()?;
        if changes_to_get(status, &self.method) {
            self.method = Method::GET;
            self.body = Bytes::new();
            self.headers.remove(header::CONTENT_TYPE);
            self.headers.remove(header::CONTENT_LENGTH);
        }
        if next.origin() != self.url.origin() {
            // As browsers and curl do: credentials stay with the origin they were for.
            self.headers.remove(header::AUTHORIZATION);
            self.headers.remove(header::COOKIE);
            self.headers.remove(header::PROXY_AUTHORIZATION);
        }
        self.url = next;
        self.hops += 1;
        Some(self)
    }
}

/// Sends `hop` and the redirects that follow it (as many as the job allows), and reads and
/// judges the last answer. `started` is when task `seq`'s first request went out (time to
/// first byte counts from there).
pub async fn follow(
    clients: &Clients,
    guard: &NetGuard,
    job: &HttpJob,
    mut hop: Hop,
    (started, seq): (Instant, u64),
    files: &FilesRoot,
) -> Result<TaskOutput, Failure> {
    let client = clients.client(job, files)?;
    let response = loop {
        // Every hop is judged anew: a redirect to a private address is refused like a request.
        let target = guard
            .preflight(&hop.url)
            .map_err(|r| Failure::new(ErrorCode::Forbidden, r.0))?;
        let request = client
            .request(hop.method.clone(), hop.url.clone())
            .headers(hop.headers.clone())
            .body(hop.body.clone())
            .send();
        let response = TARGET
            .scope(target, request)
            .await
            .map_err(|e| failure_from(&e))?;
        let status = response.status();
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .filter(|_| status.is_redirection())
            .map(str::to_owned);
        match location {
            Some(location) if hop.hops < job.follow_redirects => {
                match hop.next(status, &location) {
                    Some(next) => hop = next,
                    None => break response,
                }
            }
            Some(location) if job.follow_redirects > 0 && hop.url.join(&location).is_ok() => {
                let (out, _) = read_answer(response, job, started, seq).await?;
                return Err(Failure {
                    error: crate::engine::task::TaskError::new(
                        ErrorCode::Status,
                        format!(
                            "stopped after {} redirects (follow_redirects)",
                            job.follow_redirects
                        ),
                    ),
                    output: Some(Box::new(TaskOutput::Http(out))),
                    retryable: false,
                });
            }
            _ => break response,
        }
    };
    let (out, judged) = read_answer(response, job, started, seq).await?;
    judging::outcome(job, out, judged)
}

/// 303 always, and 301/302 after a POST, turn into a GET without a body (as browsers do).
fn changes_to_get(status: StatusCode, method: &Method) -> bool {
    status == StatusCode::SEE_OTHER
        || (matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND)
            && *method == Method::POST)
}

/// Reads the answer's body up to the job's cap, never buffering more than the cap, and judges
/// the job's checks on it (this path keeps every answer whole: what a check saw is kept too).
async fn read_answer(
    mut response: reqwest::Response,
    job: &HttpJob,
    started: Instant,
    seq: u64,
) -> Result<(HttpOutput, Option<Judged>), Failure> {
    let ttfb = started.elapsed();
    let version = HttpVersionName::of(response.version());
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let cap = job.max_response_bytes as usize;
    let mut buf = BytesMut::new();
    let mut truncated = false;
    while let Some(chunk) = response.chunk().await.map_err(|e| failure_from(&e))? {
        let room = cap - buf.len();
        if chunk.len() > room {
            buf.extend_from_slice(&chunk[..room]);
            truncated = true;
            break;
        }
        buf.extend_from_slice(&chunk);
        if buf.len() == cap {
            // Full to the byte: one more non-empty chunk means the body was longer.
            truncated = loop {
                match response.chunk().await {
                    Ok(Some(c)) if c.is_empty() => continue,
                    Ok(Some(_)) => break true,
                    _ => break false,
                }
            };
            break;
        }
    }
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let received = Received {
        status,
        headers: Some(&headers),
        body: &buf,
        truncated,
        ttfb,
    };
    let judged = judging::judge(job, &received, started, seq, ResultsMode::All);
    let mut out = response_output(status, &headers, &buf, truncated, ttfb);
    out.version = version;
    if job.cookies {
        out.set_cookies = headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
    }
    Ok((out, judged))
}

/// A response as a result: its body as text when it is UTF-8 (up to a character the cap cut in
/// two), else as base64.
pub fn response_output(
    status: StatusCode,
    headers: &HeaderMap,
    buf: &[u8],
    truncated: bool,
    ttfb: std::time::Duration,
) -> HttpOutput {
    let (body, body_base64) = match std::str::from_utf8(buf) {
        Ok(text) => (Some(text.to_owned()), None),
        // The cap cut a character in two: the text up to it is still text.
        Err(e) if truncated && e.error_len().is_none() => (
            Some(String::from_utf8_lossy(&buf[..e.valid_up_to()]).into_owned()),
            None,
        ),
        Err(_) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(buf)),
        ),
    };
    HttpOutput {
        status: status.as_u16(),
        headers: header_map(headers),
        body,
        body_base64,
        bytes: buf.len() as u64,
        truncated,
        ttfb_ms: ms(ttfb),
        ..HttpOutput::default()
    }
}

fn header_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        out.entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    out
}

/// Sorts a client error into the stable codes, reading its whole chain of causes.
fn failure_from(e: &reqwest::Error) -> Failure {
    let chain = causes(e);
    let text = chain.join(": ").to_lowercase();
    let mut cause: Option<&dyn std::error::Error> = Some(e);
    while let Some(c) = cause {
        if let Some(refusal) = c.downcast_ref::<Refusal>() {
            return Failure::new(ErrorCode::Forbidden, refusal.0.clone());
        }
        cause = c.source();
    }
    if let Some(tls) = super::tls::rustls_cause(e) {
        let host = e.url().and_then(|u| u.host_str()).unwrap_or("the server");
        return super::tls::handshake_failure(host, tls);
    }
    let code = if e.is_timeout() {
        ErrorCode::Timeout
    } else if text.contains("does not resolve")
        || text.contains("dns error")
        || text.contains("failed to lookup address")
    {
        ErrorCode::Dns
    } else if text.contains("certificate") || text.contains("tls") || text.contains("handshake") {
        ErrorCode::Tls
    } else if e.is_connect() || e.is_request() || e.is_body() {
        ErrorCode::Connect
    } else {
        ErrorCode::Io
    };
    // One sentence a person can act on, not the client's nested chain of wrappers: the
    // guard's own words for a name that does not resolve, the address and the system's
    // words for a connection that could not be made.
    let message = match (code, io_cause(e), e.url()) {
        (ErrorCode::Dns, _, _) => chain
            .iter()
            .rev()
            .find(|c| c.contains("does not resolve"))
            .cloned()
            .unwrap_or_else(|| dedup_chain(chain)),
        (ErrorCode::Connect, Some(io), Some(url)) if e.is_connect() => {
            let port = url.port_or_known_default().unwrap_or_default();
            format!(
                "{CONNECTING}{}:{port}: {io}",
                url.host_str().unwrap_or_default()
            )
        }
        _ => dedup_chain(chain),
    };
    Failure::new(code, message)
}

/// The innermost I/O error among an error's causes: what the system said.
fn io_cause(e: &reqwest::Error) -> Option<&std::io::Error> {
    let mut found = None;
    let mut cause: Option<&dyn std::error::Error> = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            found = Some(io);
        }
        cause = c.source();
    }
    found
}

/// An error's text and its causes' texts, outermost first.
fn causes(e: &dyn std::error::Error) -> Vec<String> {
    let mut chain = Vec::new();
    let mut source = Some(e);
    while let Some(s) = source {
        chain.push(s.to_string());
        source = s.source();
    }
    chain
}

/// reqwest and hyper repeat a cause's text in its parent's; keep each piece once.
fn dedup_chain(chain: Vec<String>) -> String {
    let mut out: Vec<String> = Vec::new();
    for part in chain {
        if !out.iter().any(|p| p.contains(&part)) {
            out.push(part);
        }
    }
    out.join(": ")
}
