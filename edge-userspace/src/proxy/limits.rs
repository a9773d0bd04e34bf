//! The request body limit (`limits.max_body_size`): a request whose
//! Content-Length is over the limit is refused with 413 before anything is
//! sent upstream; a body without a declared length (chunked, or HTTP/2
//! without content-length) is measured as it streams and cut off with 413
//! (if no response has started yet) as soon as it passes the limit.
//!
//! Also the limits on the request head (414, 431) and on the pace of the
//! body (408).

use crate::config::{Limits, tls::MIN_RATE_GRACE};
use pingora::{Error, ErrorType, Result, proxy::Session};
use std::time::{Duration, Instant};

/// The error that makes Pingora answer `413 Content Too Large`.
pub fn too_large(what: String) -> Box<Error> {
    Error::explain(ErrorType::HTTPStatus(413), what)
}

/// Whether `len` bytes pass `max`.
fn over(len: u64, max: Option<u64>) -> Option<u64> {
    max.filter(|&max| len > max)
}

/// The body length a message's `Content-Length` declares, if it does.
pub fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// Refuses a request whose declared Content-Length exceeds `max`.
/// Run it once the request head is read (`early_request_filter`).
pub fn check_declared_length(session: &Session, max: Option<u64>) -> Result<()> {
    let declared = declared_length(&session.req_header().headers);
    match declared.and_then(|len| over(len, max).map(|max| (len, max))) {
        Some((len, max)) => Err(too_large(format!(
            "request body of {len} bytes is over max_body_size ({max})"
        ))),
        None => Ok(()),
    }
}

/// Fails with 413 once more than `max` body bytes have been read from the
/// client. Run it on every piece of body (`request_body_filter`).
///
/// It reads Pingora's count of bytes received from the client rather than
/// adding up the pieces it is shown: on a retry Pingora replays the
/// buffered body through the same filter, and that must not count twice.
pub fn check_body_read(session: &Session, max: Option<u64>) -> Result<()> {
    let read = session.as_ref().body_bytes_read() as u64;
    match over(read, max) {
        Some(max) => Err(too_large(format!(
            "request body passed max_body_size ({max}) while streaming"
        ))),
        None => Ok(()),
    }
}

/// Refuses a request head over the listener's limits: a target longer
/// than `max_uri_length` gets 414, more than `max_request_headers` fields
/// or a head over `max_request_head_size` gets 431 (RFC 6585 §5).
pub fn check_head(session: &Session, limits: &Limits) -> Result<()> {
    let req = session.req_header();
    let target = req.uri.path_and_query().map_or(0, |p| p.as_str().len());
    if target > limits.max_uri_length {
        return Err(Error::explain(
            ErrorType::HTTPStatus(414),
            format!(
                "request target of {target} bytes is over max_uri_length ({})",
                limits.max_uri_length
            ),
        ));
    }
    let fields = req.headers.len();
    if fields > limits.max_request_headers {
        return Err(Error::explain(
            ErrorType::HTTPStatus(431),
            format!(
                "{fields} header fields are over max_request_headers ({})",
                limits.max_request_headers
            ),
        ));
    }
    // As it came on the wire: "name: value\r\n" per field.
    let head = target
        + req
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum::<usize>();
    if head > limits.max_request_head_size {
        return Err(Error::explain(
            ErrorType::HTTPStatus(431),
            format!(
                "request head of {head} bytes is over max_request_head_size ({})",
                limits.max_request_head_size
            ),
        ));
    }
    Ok(())
}

/// Normalises a request's framing before anything uses it: a
/// Content-Length repeated with one value (`5, 5`, which Pingora reads
/// as 5) is forwarded as that one value, never as the list the next hop
/// may read otherwise (RFC 9110 §8.6); a Transfer-Encoding other than a
/// lone `chunked` gets 501, since edge would drop the other codings while
/// dechunking (RFC 9112 §6.1).
pub fn normalize_framing(session: &mut Session) -> Result<()> {
    let req = session.req_header();
    let codings: Vec<String> = req
        .headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(|t| String::from_utf8_lossy(t).trim().to_ascii_lowercase())
        .collect();
    if !codings.is_empty() && codings != ["chunked"] {
        return Err(Error::explain(
            ErrorType::HTTPStatus(501),
            format!("transfer coding {codings:?} is not supported: only chunked"),
        ));
    }
    let lengths: Vec<&[u8]> = req
        .headers
        .get_all(http::header::CONTENT_LENGTH)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .collect();
    if lengths.len() > 1 {
        let first = lengths[0];
        if lengths.iter().any(|l| *l != first) || first.is_empty() {
            return Err(Error::explain(
                ErrorType::HTTPStatus(400),
                "conflicting Content-Length values",
            ));
        }
        let single = String::from_utf8_lossy(first).into_owned();
        session
            .req_header_mut()
            .insert_header(http::header::CONTENT_LENGTH, single)?;
    }
    Ok(())
}

/// Whether the request body is a stream the application paces, not an
/// upload: a WebSocket tunnel or a gRPC stream may rightly stay quiet for
/// minutes, so no minimum rate applies to it.
fn paced_by_the_application(session: &Session) -> bool {
    session.is_upgrade_req()
        || session.was_upgraded()
        || session
            .req_header()
            .headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// Whether a body of `read` bytes after `elapsed` is slower than
/// `min_rate` bytes per second, once the grace time is over.
fn too_slow(read: u64, elapsed: Duration, min_rate: Option<u64>) -> bool {
    match min_rate {
        Some(rate) if elapsed > MIN_RATE_GRACE => {
            (read as f64) < rate as f64 * elapsed.as_secs_f64()
        }
        _ => false,
    }
}

/// The pace of one request's body, for `min_body_rate`.
#[derive(Debug, Default)]
pub struct BodyPace {
    /// When the first body byte arrived.
    first: Option<Instant>,
    /// Body bytes read from the client when last looked at.
    seen: u64,
}

/// Fails with 408 when the request body comes in slower than
/// `min_body_rate` on average since its first byte: a client trickling one
/// byte a second would otherwise hold a request and an upstream connection
/// for as long as it likes. Only new bytes from the client count: the
/// filter also runs for requests without a body (after a connect that may
/// take long) and for the body replayed on a retry, and neither says
/// anything about the client.
pub fn check_body_rate(session: &Session, pace: &mut BodyPace, limits: &Limits) -> Result<()> {
    let read = session.as_ref().body_bytes_read() as u64;
    if read <= pace.seen || paced_by_the_application(session) {
        return Ok(());
    }
    pace.seen = read;
    let first = *pace.first.get_or_insert_with(Instant::now);
    if too_slow(read, first.elapsed(), limits.min_body_rate) {
        return Err(Error::explain(
            ErrorType::HTTPStatus(408),
            format!(
                "request body slower than min_body_rate ({} B/s)",
                limits.min_body_rate.unwrap_or_default()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Duration, over, too_slow};

    #[test]
    fn slow_bodies() {
        let s = Duration::from_secs;
        assert!(!too_slow(0, s(4), Some(500)), "within the grace time");
        assert!(too_slow(6, s(6), Some(500)));
        assert!(!too_slow(3_000, s(6), Some(500)));
        assert!(!too_slow(0, s(600), None));
    }

    #[test]
    fn limits() {
        assert_eq!(over(1024, Some(1024)), None);
        assert_eq!(over(1025, Some(1024)), Some(1024));
        assert_eq!(over(u64::MAX, None), None);
    }
}
