//! Answers edge itself gives a gRPC client: a gRPC error ("trailers-only":
//! HTTP 200, `content-type: application/grpc`, `grpc-status` and
//! `grpc-message` in a head that ends the stream), never an HTML page or
//! a bare HTTP status, which gRPC clients report only as a protocol error.

use crate::grpc::{Code, encode_message};
use pingora::protocols::http::HttpTask;
use pingora::{ErrorSource, ErrorType, Result, http::ResponseHeader, prelude::Session};

/// Sends gRPC error `code` with `message`, and `headers` and the request
/// id as response metadata (`www-authenticate`, rate-limit fields).
pub async fn respond(
    session: &mut Session,
    code: Code,
    message: &str,
    headers: &[(String, String)],
) -> Result<()> {
    let mut resp = ResponseHeader::build(200, Some(headers.len() + 4))?;
    for (k, v) in headers {
        let k = k.to_ascii_lowercase();
        // Framing and the status are edge's to say.
        if matches!(
            k.as_str(),
            "content-type" | "content-length" | "grpc-status" | "grpc-message"
        ) {
            continue;
        }
        resp.append_header(k, v.as_str())?;
    }
    super::trace::stamp(session.req_header(), &mut resp)?;
    resp.insert_header(http::header::CONTENT_TYPE, "application/grpc")?;
    resp.insert_header("grpc-status", code.number().to_string())?;
    let message = encode_message(message.trim());
    if !message.is_empty() {
        resp.insert_header("grpc-message", message)?;
    }
    if session.req_header().version != http::Version::HTTP_2 {
        resp.insert_header(http::header::CONTENT_LENGTH, "0")?;
    }
    // As a proxy task the head carries END_STREAM itself: the client sees
    // a trailers-only answer, which strict clients (grpc-go) require,
    // rather than a head followed by an empty DATA frame.
    session
        .write_response_tasks(vec![HttpTask::Header(Box::new(resp), true)])
        .await?;
    Ok(())
}

/// Ends a gRPC answer whose head already went out with trailers carrying
/// `code`: the backend's stream broke, and a gRPC client reads these as
/// the call's status (a bare stream reset would read as INTERNAL or
/// CANCELLED, hiding that another try may succeed).
pub async fn trailers(session: &mut Session, code: Code, message: &str) -> Result<()> {
    let mut t = http::HeaderMap::with_capacity(2);
    t.insert("grpc-status", http::HeaderValue::from(code.number()));
    if let Ok(v) = http::HeaderValue::from_str(&encode_message(message.trim())) {
        t.insert("grpc-message", v);
    }
    session
        .write_response_tasks(vec![HttpTask::Trailer(Some(Box::new(t)))])
        .await?;
    Ok(())
}

/// The gRPC status and message for a request that failed with `e` (whose
/// HTTP status would have been `status`).
pub fn for_error(e: &pingora::Error, status: u16, breaker_open: bool) -> (Code, String) {
    if breaker_open {
        return (Code::Unavailable, "circuit breaker open".to_string());
    }
    let code = Code::for_http_status(status);
    let message = match e.etype() {
        // edge's own refusals explain themselves: the innermost one's
        // words (outer ones add where it happened, the backend's address
        // among it, which is not the client's business).
        ErrorType::HTTPStatus(_) => {
            let mut inner = e;
            // `more_context` keeps the error it wraps as a boxed cause.
            while let Some(cause) = inner
                .cause
                .as_ref()
                .and_then(|c| {
                    c.downcast_ref::<Box<pingora::Error>>()
                        .map(|b| &**b)
                        .or_else(|| c.downcast_ref::<pingora::Error>())
                })
                .filter(|c| matches!(c.etype(), ErrorType::HTTPStatus(_)))
            {
                inner = cause;
            }
            inner
                .context
                .as_ref()
                .map_or_else(|| code.name().to_string(), |c| c.as_str().to_string())
        }
        ErrorType::ConnectTimedout
        | ErrorType::ReadTimedout
        | ErrorType::WriteTimedout
        | ErrorType::TLSHandshakeTimedout
            if e.esource() == &ErrorSource::Upstream =>
        {
            "upstream timed out".to_string()
        }
        _ if e.esource() == &ErrorSource::Upstream => "upstream unavailable".to_string(),
        _ => code.name().to_string(),
    };
    (code, message)
}
