//! The request body limit (`limits.max_body_size`): a request whose
//! Content-Length is over the limit is refused with 413 before anything is
//! sent upstream; a body without a declared length (chunked, or HTTP/2
//! without content-length) is measured as it streams and cut off with 413
//! (if no response has started yet) as soon as it passes the limit.

use pingora::{Error, ErrorType, Result, proxy::Session};

/// The error that makes Pingora answer `413 Content Too Large`.
fn too_large(what: String) -> Box<Error> {
    Error::explain(ErrorType::HTTPStatus(413), what)
}

/// Whether `len` bytes pass `max`.
fn over(len: u64, max: Option<u64>) -> Option<u64> {
    max.filter(|&max| len > max)
}

/// Refuses a request whose declared Content-Length exceeds `max`.
/// Run it once the request head is read (`early_request_filter`).
pub fn check_declared_length(session: &Session, max: Option<u64>) -> Result<()> {
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
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

#[cfg(test)]
mod tests {
    use super::over;

    #[test]
    fn limits() {
        assert_eq!(over(1024, Some(1024)), None);
        assert_eq!(over(1025, Some(1024)), Some(1024));
        assert_eq!(over(u64::MAX, None), None);
    }
}
