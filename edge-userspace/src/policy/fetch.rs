//! Small, bounded HTTP requests for what the gateway asks other servers
//! itself (JWKS documents, token introspection), over Pingora's client
//! connector.

use bytes::{Bytes, BytesMut};
use pingora::{connectors::http::Connector, http::RequestHeader, upstreams::peer::HttpPeer};
use std::time::Duration;

/// How long an idle connection is kept for the next call.
const IDLE: Duration = Duration::from_secs(60);

/// Largest body fetched.
pub const MAX_BODY: usize = 1024 * 1024;

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL has no usable host.
    #[error("bad URL")]
    Url,
    /// The name did not resolve.
    #[error("cannot resolve {0}")]
    Resolve(String),
    /// Connecting, writing or reading failed.
    #[error("{0}")]
    Io(String),
    /// A status other than 200.
    #[error("status {0}")]
    Status(u16),
    /// The body is larger than [`MAX_BODY`].
    #[error("the body is larger than {MAX_BODY} bytes")]
    TooLarge,
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// GETs `url` within `timeout`; the body of a 200, at most [`MAX_BODY`].
pub async fn get(
    connector: &Connector,
    url: &http::Uri,
    timeout: Duration,
) -> Result<Bytes, FetchError> {
    let req = Request {
        method: "GET",
        url,
        headers: &[],
        body: None,
    };
    tokio::time::timeout(timeout, send(connector, &req))
        .await
        .map_err(|_| FetchError::Timeout(timeout))?
}

/// POSTs a form to `url` within `timeout` with the given extra header
/// fields; the body of a 200, at most [`MAX_BODY`].
pub async fn post_form(
    connector: &Connector,
    url: &http::Uri,
    headers: &[(&str, String)],
    form: String,
    timeout: Duration,
) -> Result<Bytes, FetchError> {
    let req = Request {
        method: "POST",
        url,
        headers,
        body: Some(form),
    };
    tokio::time::timeout(timeout, send(connector, &req))
        .await
        .map_err(|_| FetchError::Timeout(timeout))?
}

struct Request<'a> {
    method: &'static str,
    url: &'a http::Uri,
    headers: &'a [(&'a str, String)],
    body: Option<String>,
}

async fn send(connector: &Connector, r: &Request<'_>) -> Result<Bytes, FetchError> {
    let url = r.url;
    let host = url.host().ok_or(FetchError::Url)?;
    let tls = url.scheme_str() == Some("https");
    let port = url.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addr = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|e| FetchError::Resolve(format!("{host}: {e}")))?
        .next()
        .ok_or_else(|| FetchError::Resolve(host.to_string()))?;
    let peer = HttpPeer::new(addr, tls, bare.to_string());
    let io = |e: Box<pingora::Error>| FetchError::Io(e.to_string());
    let (mut session, _) = connector.get_http_session(&peer).await.map_err(io)?;
    let path = url.path_and_query().map_or("/", |p| p.as_str());
    let mut req = RequestHeader::build(r.method, path.as_bytes(), None).map_err(io)?;
    let authority = url.authority().map_or(host, |a| a.as_str());
    req.insert_header("host", authority).map_err(io)?;
    req.insert_header("accept", "application/json")
        .map_err(io)?;
    req.insert_header("user-agent", "edge").map_err(io)?;
    for (name, value) in r.headers {
        req.insert_header(name.to_string(), value.as_str())
            .map_err(io)?;
    }
    if let Some(body) = &r.body {
        req.insert_header("content-type", "application/x-www-form-urlencoded")
            .map_err(io)?;
        req.insert_header("content-length", body.len().to_string())
            .map_err(io)?;
    }
    session
        .write_request_header(Box::new(req))
        .await
        .map_err(io)?;
    if let Some(body) = &r.body {
        session
            .write_request_body(Bytes::from(body.clone()), true)
            .await
            .map_err(io)?;
    }
    session.finish_request_body().await.map_err(io)?;
    session.read_response_header().await.map_err(io)?;
    let status = session.response_header().map_or(0, |r| r.status.as_u16());
    if status != 200 {
        return Err(FetchError::Status(status));
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = session.read_response_body().await.map_err(io)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(FetchError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    // The whole answer was read: the connection may serve the next call.
    connector
        .release_http_session(session, &peer, Some(IDLE))
        .await;
    Ok(body.freeze())
}
