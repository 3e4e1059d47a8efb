//! One exchange on an HTTP/2 connection, framed by the h2 crate: the job's request as a
//! stream, its answer read and kept as the HTTP/1 exchange keeps one.

use std::time::Instant;

use http::header;

use super::pool::H2Conn;
use super::{Body, counted, failed_before_response, failed_in_body, with_job_headers};
use crate::engine::check::Judged;
use crate::engine::jobs::Failure;
use crate::engine::jobs::http::response_output;
use crate::engine::jobs::judging::{self, Received};
use crate::engine::spec::{HttpJob, ResultsMode};
use crate::engine::task::{HttpOutput, HttpVersionName, NetTiming, PhaseClock};

/// The head of a job's HTTP/2 request: the headers the HTTP/1 path sends (the job's own
/// replace them), the authority in the URI rather than a `Host` header.
pub(super) fn head(job: &HttpJob) -> Result<http::request::Parts, http::Error> {
    let (mut parts, ()) = http::Request::builder()
        .method(job.method.clone())
        .uri(job.url.as_str())
        .version(http::Version::HTTP_2)
        .body(())?
        .into_parts();
    with_job_headers(&mut parts.headers, job);
    // HTTP/2 carries the host as `:authority`.
    parts.headers.remove(header::HOST);
    Ok(parts)
}

/// How an HTTP/2 exchange ended, short of failing.
// Unboxed: an answer is made once per request and moved once; a box would be an allocation
// per request to save copying a few hundred bytes.
#[allow(clippy::large_enum_variant)]
pub(super) enum Answer {
    /// The server had not processed the request and said so: the connection is going away
    /// (GOAWAY, as servers send after so many requests) or it refused the stream. It may go
    /// again on another connection, whatever its method (RFC 9113, section 8.7).
    Refused(h2::Error),
    /// A redirect the job follows: the general path takes it from here.
    Redirect(super::Redirect),
    /// The answer, with the job's checks judged on it.
    Done(HttpOutput, Option<Judged>),
}

/// Sends the job's request as a new stream on `conn` for task `seq`, reads its answer
/// (keeping the body only when `results` will show it or a check reads it) and judges it.
pub(super) async fn exchange(
    conn: &H2Conn,
    job: &HttpJob,
    head: &http::request::Parts,
    body: bytes::Bytes,
    results: ResultsMode,
    (started, seq): (Instant, u64),
    clock: &mut PhaseClock,
) -> Result<Answer, Failure> {
    let lost = |e: h2::Error| failed_before_response(format!("the HTTP/2 connection failed: {e}"));
    // Waits while the server's limit on open streams is reached. A connection that cannot
    // take a stream now has sent nothing of this request.
    let mut send = match conn.send.clone().ready().await {
        Ok(send) => send,
        Err(e) => return Ok(Answer::Refused(e)),
    };
    let mut request = http::Request::new(());
    *request.method_mut() = head.method.clone();
    *request.uri_mut() = head.uri.clone();
    *request.version_mut() = http::Version::HTTP_2;
    *request.headers_mut() = head.headers.clone();
    let bodiless = body.is_empty();
    let (response, mut stream) = match send.send_request(request, bodiless) {
        Ok(sent) => sent,
        Err(e) => return Ok(Answer::Refused(e)),
    };
    if !bodiless {
        stream.send_data(body, true).map_err(lost)?;
    }
    clock.mark(NetTiming::SEND);
    let response = match response.await {
        Ok(response) => response,
        Err(e) if unprocessed(&e) => return Ok(Answer::Refused(e)),
        Err(e) => {
            return Err(failed_before_response(format!(
                "the server ended the HTTP/2 stream: {e}"
            )));
        }
    };
    clock.mark(NetTiming::WAIT);
    let ttfb = started.elapsed();
    let (parts, mut incoming) = response.into_parts();
    let status = parts.status;
    if let Some(location) = parts
        .headers
        .get(header::LOCATION)
        .and_then(|l| l.to_str().ok())
        && let Some(redirect) = super::Redirect::of(job, status, location)
    {
        return Ok(Answer::Redirect(redirect));
    }
    let kept = job.keeps_answer(results, status.as_u16());
    let mut body = Body::new(kept, job.max_response_bytes as usize);
    while let Some(chunk) = incoming.data().await {
        let chunk = chunk.map_err(|e| failed_in_body(format!("reading the answer: {e}")))?;
        // Lets the server send as much again.
        let _ = incoming.flow_control().release_capacity(chunk.len());
        if !body.append(&chunk) {
            // Past the cap: dropping the stream resets it.
            break;
        }
    }
    clock.mark(NetTiming::RECEIVE);
    let received = Received {
        status,
        headers: Some(&parts.headers),
        body: &body.kept,
        truncated: body.truncated,
        ttfb,
    };
    let judged = judging::judge(job, &received, started, seq, results);
    let mut out = if judging::shown(job, results, status.as_u16(), judged.as_ref()) {
        response_output(status, &parts.headers, &body.kept, body.truncated, ttfb)
    } else {
        counted(status, &body, ttfb)
    };
    out.version = Some(HttpVersionName::Http2);
    Ok(Answer::Done(out, judged))
}

/// Whether the server said it did not process the stream: refused it, or is going away
/// gracefully (a stream past its last one is reset so).
fn unprocessed(e: &h2::Error) -> bool {
    e.reason() == Some(h2::Reason::REFUSED_STREAM)
        || (e.is_go_away() && e.reason() == Some(h2::Reason::NO_ERROR))
}
