//! The request body limit (`limits.max_body_size`): a request whose
//! Content-Length is over the limit is refused with 413 before anything is
//! sent upstream; a body without a declared length (chunked, or HTTP/2
//! without content-length) is counted as it streams and cut off with 413
//! (if no response has started yet) as soon as it passes the limit.

use bytes::Bytes;
use pingora::{Error, ErrorType, Result, proxy::Session};

/// The error that makes Pingora answer `413 Content Too Large`.
fn too_large(what: String) -> Box<Error> {
    Error::explain(ErrorType::HTTPStatus(413), what)
}

/// Refuses a request whose declared Content-Length exceeds `max`.
/// Run it once the request head is read (`early_request_filter`).
pub fn check_declared_length(session: &Session, max: Option<u64>) -> Result<()> {
    let Some(max) = max else { return Ok(()) };
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(len) if len > max => Err(too_large(format!(
            "request body of {len} bytes is over max_body_size ({max})"
        ))),
        _ => Ok(()),
    }
}

/// Request body bytes seen so far (one per request, in the request context).
#[derive(Debug, Default)]
pub struct BodyCounter {
    seen: u64,
}

impl BodyCounter {
    /// Counts `chunk`; fails with 413 once the body passes `max`.
    /// Run it on every piece of body (`request_body_filter`).
    pub fn add(&mut self, chunk: Option<&Bytes>, max: Option<u64>) -> Result<()> {
        let Some(max) = max else { return Ok(()) };
        self.seen = self
            .seen
            .saturating_add(chunk.map_or(0, |c| c.len() as u64));
        if self.seen > max {
            return Err(too_large(format!(
                "request body passed max_body_size ({max}) while streaming"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_across_chunks() {
        let mut c = BodyCounter::default();
        let chunk = Bytes::from_static(&[0; 600]);
        assert!(c.add(Some(&chunk), Some(1000)).is_ok());
        assert!(c.add(None, Some(1000)).is_ok());
        let e = c.add(Some(&chunk), Some(1000)).unwrap_err();
        assert_eq!(e.etype(), &ErrorType::HTTPStatus(413));
        let mut c = BodyCounter::default();
        assert!(c.add(Some(&chunk), None).is_ok());
    }
}
