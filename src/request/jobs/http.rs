//! An HTTP job as clients send it, and its validation: the URL and method, headers and body,
//! templates, TLS options, `expect_status` and `checks`.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use base64::Engine as _;
use serde::Deserialize;
use utoipa::ToSchema;

use super::super::checks::{CheckRequest, parse_checks, value_templates};
use super::super::{FieldError, Limits, MAX_REDIRECTS};
use super::Scope;
use crate::engine::check::capture::{self, Capture};
use crate::engine::check::{JobChecks, Patterns, Predicate, Subject};
use crate::engine::spec::{ClientCert, ExpectStatus, HttpJob, HttpVersion, TlsOptions};
use crate::engine::template::{HttpTemplates, Template};

job_request! {
    /// An HTTP request.
    pub struct HttpJobRequest {
        /// Default `GET`.
        #[schema(example = "GET")]
        pub method: Option<String>,
        /// `http` or `https`.
        #[schema(
            example = "http://127.0.0.1:3000/health",
            pattern = "^[hH][tT][tT][pP][sS]?://[^/?#@]+"
        )]
        pub url: String,
        #[serde(default)]
        pub headers: BTreeMap<String, String>,
        /// Request body as text.
        pub body: Option<String>,
        /// Request body as base64 (instead of `body`).
        pub body_base64: Option<String>,
        /// Statuses that count as success: codes (`201`), classes (`"2xx"`), or `"any"`.
        /// Default 200–399.
        #[schema(schema_with = expect_status_schema, example = json!(["2xx", 304]))]
        pub expect_status: Option<ExpectStatusRequest>,
        /// Most body bytes kept; the rest is dropped and `truncated` set. Capped by the server.
        pub max_response_bytes: Option<u64>,
        /// Redirect hops to follow. Default 0: a 3xx is the answer.
        #[serde(default)]
        #[schema(maximum = 20)]
        pub follow_redirects: u32,
        /// How `https` connections are made: trust, client certificate, server name.
        pub tls: Option<TlsRequest>,
        /// `auto` (default: HTTP/2 when the server offers it in the TLS handshake, else
        /// HTTP/1.1), `1.1`, or `2` (on `http`, with prior knowledge).
        pub http_version: Option<HttpVersion>,
        /// Default true. `false`: a new connection for every request (and attempt).
        pub keep_alive: Option<bool>,
        /// What the answer must be, judged after `expect_status` passed (at most 32). A failed
        /// check fails the task with `error.code: "check"` (not retried); a `soft` one only
        /// counts. Counted in `summary.checks`.
        #[serde(default)]
        #[schema(max_items = 32)]
        pub checks: Vec<CheckRequest>,
        /// In a flow's step: what to keep of the answer for the steps after it, by name (used
        /// there as `{{NAME}}`): a subject as checks read it (`"json:$.access_token"`), or
        /// `{ "on": SUBJECT, "regex": "order-(\\d+)" }` (its first group, else the whole
        /// match). A capture that selects nothing fails the step (`check`).
        #[serde(default)]
        #[schema(value_type = Object, example = json!(null))]
        pub capture: BTreeMap<String, CaptureRequest>,
    }
}

/// One capture: a subject, or a subject and a pattern that cuts its value.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum CaptureRequest {
    Subject(String),
    Cut(CutRequest),
    /// Anything else, refused in the API's words.
    Unreadable(serde::de::IgnoredAny),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CutRequest {
    on: String,
    regex: String,
}

/// An HTTP job's TLS options.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsRequest {
    /// Skip the certificate checks (the connection is still encrypted). Refused with a 422
    /// unless the server runs with `--allow-insecure-tls`.
    #[serde(default)]
    pub insecure: bool,
    /// A PEM certificate chain for mutual TLS, relative to the server's files root; with
    /// `client_key`.
    #[schema(min_length = 1, max_length = 1024, example = json!(null))]
    pub client_cert: Option<String>,
    /// The PEM private key of `client_cert`, relative to the files root.
    #[schema(min_length = 1, max_length = 1024, example = json!(null))]
    pub client_key: Option<String>,
    /// The name sent as SNI and checked against the certificate, instead of the URL's host.
    #[schema(min_length = 1, max_length = 253, example = json!(null))]
    pub server_name: Option<String>,
}

/// Longest client certificate path accepted.
const MAX_PATH: usize = 1024;

/// The schema of `expect_status`, as [`parse_expect`] reads it: a status code, a class
/// (`"2xx"`), a code as text, or `"any"`; or a list of at least one of those.
fn expect_status_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
    let code = || {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(100))
            .maximum(Some(599))
    };
    let text = || {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^([Aa][Nn][Yy]|[1-5][Xx][Xx]|[1-5][0-9][0-9])$"))
    };
    let one = || OneOfBuilder::new().item(code()).item(text());
    OneOfBuilder::new()
        .item(code())
        .item(text())
        .item(ArrayBuilder::new().items(one()).min_items(Some(1)))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .description(Some(
            "Statuses that count as success: codes (`201`), classes (`\"2xx\"`), or `\"any\"`; \
             one or a list. Default 200–399.",
        ))
        .build()
        .into()
}

/// `expect_status`: one matcher or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ExpectStatusRequest {
    One(StatusMatcher),
    Many(Vec<StatusMatcher>),
    /// Anything else, refused by the validation in the API's words (serde would only say that
    /// no variant matched).
    Unreadable(serde::de::IgnoredAny),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StatusMatcher {
    Code(u64),
    Text(String),
}

impl HttpJobRequest {
    pub(super) fn kind(
        &self,
        at: &str,
        scope: &mut Scope<'_>,
        errors: &mut Vec<FieldError>,
    ) -> Option<HttpJob> {
        let limits = scope.limits;
        // What the flow's earlier steps capture, which this step's placeholders may name.
        let earlier: Vec<String> = scope.captures.as_deref().cloned().unwrap_or_default();
        let earlier: Vec<&str> = earlier.iter().map(String::as_str).collect();
        let before = errors.len();
        let mut err = |field: &str, message: String| {
            errors.push(FieldError::new(format!("{at}.{field}"), message));
        };
        let method = self.method(&mut err);
        let url = self.url(&mut err);
        let headers = self.headers(&mut err);
        let body = self.body(&mut err);
        let expect_status = self.expect_status(&mut err);
        if self.follow_redirects > MAX_REDIRECTS {
            err("follow_redirects", format!("at most {MAX_REDIRECTS}"));
        }
        let tls = self.tls_options(limits, &mut err);
        let templates = self.templates(&earlier, &mut err);
        let checks = self.checks(at, scope.patterns, errors);
        let captures = self.captures(at, scope, errors);
        if errors.len() > before {
            return None;
        }
        let url = url?;
        Some(HttpJob {
            origin: origin_key(&url, &tls),
            method,
            url,
            headers,
            body,
            expect_status,
            max_response_bytes: self
                .max_response_bytes
                .unwrap_or(limits.max_response_bytes)
                .min(limits.max_response_bytes),
            follow_redirects: self.follow_redirects,
            tls,
            version: self.http_version.unwrap_or_default(),
            keep_alive: self.keep_alive.unwrap_or(true),
            templates: templates.map(Arc::new),
            checks,
            captures,
            cookies: false,
        })
    }

    /// `checks`, compiled (JSONPaths and patterns), with every invalid one reported.
    fn checks(
        &self,
        at: &str,
        patterns: &mut Patterns,
        errors: &mut Vec<FieldError>,
    ) -> Option<Arc<JobChecks>> {
        if self.checks.is_empty() {
            return None;
        }
        match parse_checks(&self.checks, &format!("{at}.checks"), patterns) {
            Ok(list) => Some(Arc::new(JobChecks::new(list))),
            Err(mut found) => {
                errors.append(&mut found);
                None
            }
        }
    }

    /// `method`, `GET` when absent.
    fn method(&self, err: &mut impl FnMut(&str, String)) -> http::Method {
        let Some(m) = &self.method else {
            return http::Method::GET;
        };
        http::Method::from_str(&m.to_ascii_uppercase()).unwrap_or_else(|_| {
            err("method", format!("not an HTTP method: {m:?}"));
            http::Method::GET
        })
    }

    /// `url`: absolute, `http` or `https`, with a host.
    fn url(&self, err: &mut impl FnMut(&str, String)) -> Option<url::Url> {
        match url::Url::parse(&self.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
            Ok(u) if !matches!(u.scheme(), "http" | "https") => {
                err(
                    "url",
                    format!("scheme must be http or https, not {:?}", u.scheme()),
                );
                None
            }
            Ok(_) => {
                err("url", "the URL has no host".into());
                None
            }
            Err(e) => {
                err("url", format!("not a valid URL: {e}"));
                None
            }
        }
    }

    fn headers(&self, err: &mut impl FnMut(&str, String)) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        for (name, value) in &self.headers {
            match (
                http::HeaderName::from_str(name),
                http::HeaderValue::from_str(value),
            ) {
                // Names differ only in case are one header twice (RFC 9110, section 5.1), which
                // a server must refuse: say so here instead of sending both.
                (Ok(n), Ok(_)) if headers.contains_key(&n) => err(
                    &format!("headers.{name}"),
                    format!("repeats the header {n} (header names are case-insensitive)"),
                ),
                (Ok(n), Ok(v)) => {
                    headers.append(n, v);
                }
                (Err(_), _) => err(&format!("headers.{name}"), "not a valid header name".into()),
                (_, Err(_)) => err(
                    &format!("headers.{name}"),
                    "not a valid header value".into(),
                ),
            }
        }
        headers
    }

    /// `body` or `body_base64`, decoded; empty when neither is given.
    fn body(&self, err: &mut impl FnMut(&str, String)) -> bytes::Bytes {
        match (&self.body, &self.body_base64) {
            (Some(_), Some(_)) => {
                err("body_base64", "give body or body_base64, not both".into());
                bytes::Bytes::new()
            }
            (Some(text), None) => bytes::Bytes::from(text.clone()),
            (None, Some(b64)) => match base64::engine::general_purpose::STANDARD.decode(b64) {
                Ok(raw) => bytes::Bytes::from(raw),
                Err(e) => {
                    err("body_base64", format!("not valid base64: {e}"));
                    bytes::Bytes::new()
                }
            },
            (None, None) => bytes::Bytes::new(),
        }
    }

    fn expect_status(&self, err: &mut impl FnMut(&str, String)) -> ExpectStatus {
        let parsed = match &self.expect_status {
            None => return ExpectStatus::default(),
            Some(ExpectStatusRequest::One(m)) => parse_expect(std::slice::from_ref(m)),
            Some(ExpectStatusRequest::Many(ms)) => parse_expect(ms),
            Some(ExpectStatusRequest::Unreadable(_)) => {
                Err("must be a status (201), a class (\"2xx\"), \"any\", or a list of those".into())
            }
        };
        parsed.unwrap_or_else(|m| {
            err("expect_status", m);
            ExpectStatus::default()
        })
    }

    /// `capture`, in a flow's step: each name new to the flow, each subject and pattern
    /// compiled; the names join the flow's for the steps after this one.
    fn captures(
        &self,
        at: &str,
        scope: &mut Scope<'_>,
        errors: &mut Vec<FieldError>,
    ) -> Option<Arc<[Capture]>> {
        if self.capture.is_empty() {
            return None;
        }
        let Some(names) = scope.captures.as_deref_mut() else {
            errors.push(FieldError::new(
                format!("{at}.capture"),
                "only a flow's steps capture: put this job in a flow's steps",
            ));
            return None;
        };
        let mut captures = Vec::with_capacity(self.capture.len());
        for (name, request) in &self.capture {
            let field = format!("{at}.capture.{name}");
            let mut refuse = |message: String| errors.push(FieldError::new(field.clone(), message));
            if let Some(why) = capture::bad_name(name) {
                refuse(why);
                continue;
            }
            if names.contains(name) {
                refuse(format!("an earlier step captures {name:?} already"));
                continue;
            }
            let (on, pattern) = match request {
                CaptureRequest::Subject(on) => (on, None),
                CaptureRequest::Cut(cut) => (&cut.on, Some(cut.regex.as_str())),
                CaptureRequest::Unreadable(_) => {
                    refuse(
                        "a subject (\"json:$.token\"), or { \"on\": SUBJECT, \"regex\": \"...\" }"
                            .into(),
                    );
                    continue;
                }
            };
            let subject = Subject::parse(on).map_err(&mut refuse).ok();
            let pattern = match pattern.map(|p| scope.patterns.matches(p)) {
                Some(Ok(Predicate::Matches(re))) => Some(re),
                Some(Err(why)) => {
                    refuse(why);
                    None
                }
                _ => None,
            };
            if let Some(subject) = subject {
                names.push(name.clone());
                captures.push(Capture {
                    name: name.clone(),
                    subject,
                    pattern,
                });
            }
        }
        Some(captures.into())
    }

    /// The placeholders in the URL's path and query, the header values and the text body,
    /// parsed into segments (in a flow's step, `earlier` names what the steps before it
    /// capture); `None` when there are none. `load.data` columns are bound later.
    fn templates(
        &self,
        earlier: &[&str],
        err: &mut impl FnMut(&str, String),
    ) -> Option<HttpTemplates> {
        // The origin is what connections are made to and what the guard judges: it must be
        // as written. Placeholders go in the path and the query.
        let authority_end = self
            .url
            .find("://")
            .map(|s| s + 3)
            .and_then(|s| self.url[s..].find(['/', '?', '#']).map(|e| s + e))
            .unwrap_or(self.url.len());
        let (origin, target) = self.url.split_at(authority_end);
        if origin.contains("{{") {
            err(
                "url",
                "a placeholder cannot be in the URL's scheme, host or port, only in its path and query"
                    .into(),
            );
        }
        let mut parse = |field: &str, text: &str| match Template::parse_with(text, earlier) {
            Ok(t) => t,
            Err(message) => {
                err(field, message);
                None
            }
        };
        // A fragment is not sent.
        let target = target.split('#').next().unwrap_or_default();
        // In origin form: `?q=1` after the host is `/?q=1` on the wire.
        let target = if target.starts_with('/') {
            parse("url", target)
        } else {
            parse("url", &format!("/{target}"))
        };
        let mut headers = Vec::new();
        for (name, value) in &self.headers {
            if let (Some(t), Ok(n)) = (
                parse(&format!("headers.{name}"), value),
                http::HeaderName::from_str(name),
            ) {
                headers.push((n, t));
            }
        }
        let body = self.body.as_deref().and_then(|b| parse("body", b));
        let checks = value_templates(&self.checks, "checks", &mut *err);
        (target.is_some() || !headers.is_empty() || body.is_some() || !checks.is_empty()).then_some(
            HttpTemplates {
                target,
                headers,
                body,
                checks,
                data: None,
            },
        )
    }

    fn tls_options(&self, limits: &Limits, err: &mut impl FnMut(&str, String)) -> TlsOptions {
        let Some(tls) = &self.tls else {
            return TlsOptions::default();
        };
        if tls.insecure && !limits.allow_insecure_tls {
            err(
                "tls.insecure",
                "this server checks every certificate: start it with --allow-insecure-tls to \
                 allow tls.insecure (or give it the CA with --ca-file)"
                    .into(),
            );
        }
        let mut path = |field: &str, p: &Option<String>| -> Option<String> {
            let p = p.as_ref()?;
            let relative = std::path::Path::new(p);
            if p.is_empty() || p.len() > MAX_PATH {
                err(field, format!("a path of 1 to {MAX_PATH} bytes"));
            } else if relative.is_absolute()
                || relative
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                err(
                    field,
                    "must be relative to the files root, without ..".into(),
                );
            }
            Some(p.clone())
        };
        let cert = path("tls.client_cert", &tls.client_cert);
        let key = path("tls.client_key", &tls.client_key);
        let client_cert = match (cert, key) {
            (Some(cert), Some(key)) => Some(ClientCert { cert, key }),
            (None, None) => None,
            (Some(_), None) => {
                err("tls.client_key", "give client_key with client_cert".into());
                None
            }
            (None, Some(_)) => {
                err("tls.client_cert", "give client_cert with client_key".into());
                None
            }
        };
        if let Some(name) = &tls.server_name
            && rustls::pki_types::ServerName::try_from(name.as_str()).is_err()
        {
            err(
                "tls.server_name",
                format!("{name:?} is not a DNS name or an IP address"),
            );
        }
        if tls.server_name.is_some()
            && self
                .headers
                .keys()
                .any(|h| crate::engine::jobs::lean::sets_framing(h))
        {
            err(
                "tls.server_name",
                "cannot be combined with headers that set the message's framing \
                 (Content-Length, Transfer-Encoding, Connection, Upgrade, TE, Expect)"
                    .into(),
            );
        }
        TlsOptions {
            insecure: tls.insecure,
            client_cert,
            server_name: tls.server_name.clone(),
        }
    }
}

/// What the job's connections are pooled by: scheme, host and port, and for `https` the TLS
/// options that change the connection.
fn origin_key(url: &url::Url, tls: &TlsOptions) -> String {
    let mut key = format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or(80)
    );
    if url.scheme() == "https" && *tls != TlsOptions::default() {
        use std::fmt::Write as _;
        let _ = write!(key, " {tls:?}");
    }
    key
}

pub(in crate::request) fn parse_expect(matchers: &[StatusMatcher]) -> Result<ExpectStatus, String> {
    if matchers.is_empty() {
        return Err("give at least one status, class (\"2xx\") or \"any\"".into());
    }
    let mut ranges = Vec::new();
    for m in matchers {
        match m {
            StatusMatcher::Code(c) if (100..=599).contains(c) => {
                ranges.push((*c as u16, *c as u16))
            }
            StatusMatcher::Code(c) => return Err(format!("{c} is not an HTTP status (100-599)")),
            StatusMatcher::Text(t) if t.eq_ignore_ascii_case("any") => {
                return Ok(ExpectStatus::Any);
            }
            StatusMatcher::Text(t) => {
                let lower = t.to_ascii_lowercase();
                let class = lower.strip_suffix("xx").and_then(|d| d.parse::<u16>().ok());
                match class {
                    Some(d @ 1..=5) if lower.len() == 3 => ranges.push((d * 100, d * 100 + 99)),
                    _ => match t.parse::<u16>() {
                        Ok(c) if (100..=599).contains(&c) => ranges.push((c, c)),
                        _ => {
                            return Err(format!(
                                "{t:?} is not a status, a class like \"2xx\", or \"any\""
                            ));
                        }
                    },
                }
            }
        }
    }
    Ok(ExpectStatus::Ranges(ranges))
}
