//! Requests edge makes to a pool itself, outside Pingora's proxy path
//! (aggregation calls, mirror copies): through the pool's circuit breaker,
//! balancing, health and retries, like a proxied request, with a bounded
//! response body.

use super::{Admission, PickInput, UpstreamPool, tls as upstream_tls};

use bytes::{Bytes, BytesMut};
use pingora::{connectors::http::Connector, http::RequestHeader};
use std::{
    net::IpAddr,
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

/// How long an idle connection is kept for the next call.
const IDLE: Duration = Duration::from_secs(60);

/// The process's connector for these calls: its connection pool is
/// shared by every route and survives reloads.
pub fn connector() -> &'static Connector {
    static CONNECTOR: OnceLock<Connector> = OnceLock::new();
    CONNECTOR.get_or_init(|| Connector::new(None))
}

/// One request.
pub struct CallRequest<'a> {
    /// Method.
    pub method: &'a http::Method,
    /// Origin-form target.
    pub target: &'a str,
    /// Header fields sent.
    pub headers: &'a [(http::HeaderName, http::HeaderValue)],
    /// Body sent.
    pub body: Option<Bytes>,
    /// Largest response body read.
    pub max_body: usize,
    /// When the whole call, all its attempts, must be done.
    pub deadline: Instant,
    /// The client, for balancing by client address.
    pub client: Option<IpAddr>,
    /// The consistent-hashing key of the pool's `hash_key`, from the
    /// client's request (empty unless the pool is `ketama`).
    pub hash_key: &'a [u8],
    /// Whether to read the response body (a mirror drains it instead).
    pub read_body: bool,
    /// Whether it is a gRPC call: its outcome is its `grpc-status` (from
    /// the head of a trailers-only answer, else the trailers), and a
    /// trailers-only status the pool retries is retried.
    pub grpc: bool,
}

/// How a gRPC call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcOutcome {
    /// Its status.
    pub code: crate::grpc::Code,
    /// `grpc-message`, decoded.
    pub message: String,
    /// Whether the status came in the head (no message was sent).
    pub trailers_only: bool,
}

/// A response.
#[derive(Debug)]
pub struct CallResponse {
    /// Status.
    pub status: u16,
    /// `Content-Type`, if any.
    pub content_type: Option<String>,
    /// Body (empty when not read).
    pub body: Bytes,
    /// A gRPC call's outcome.
    pub grpc: Option<GrpcOutcome>,
}

impl CallResponse {
    /// Whether the backend did its job: no 5xx, no gRPC server failure.
    fn succeeded(&self) -> bool {
        self.status < 500
            && self
                .grpc
                .as_ref()
                .is_none_or(|g| !g.code.is_server_failure())
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The pool's circuit breaker is open.
    #[error("circuit breaker open")]
    BreakerOpen,
    /// No backend is left to try.
    #[error("no backend available")]
    NoBackend,
    /// No connection to the backend: the request was not sent.
    #[error("connecting: {0}")]
    Connect(String),
    /// Writing or reading failed once the request was (maybe) sent.
    #[error("{0}")]
    Io(String),
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The body is larger than allowed.
    #[error("the body is larger than {0} bytes")]
    TooLarge(usize),
}

/// Ends the accounting of a call left unfinished (its future dropped: the
/// client went away): neither the backend's success nor its failure.
struct Pending<'p> {
    pool: &'p UpstreamPool,
    admission: Admission,
    attempt: Option<usize>,
    recorded: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.attempt.take() {
            self.pool.release(i);
        }
        if !self.recorded {
            self.pool.cancel(self.admission);
        }
    }
}

/// Sends `req` to a backend of `pool` before its deadline; while the
/// pool's retry policy allows, tries another backend after a connect
/// failure (nothing was sent) or, for an idempotent method, a 5xx. A
/// mirror is never retried (`retry` false).
pub async fn call(
    pool: &Arc<UpstreamPool>,
    req: &CallRequest<'_>,
    retry: bool,
) -> Result<CallResponse, CallError> {
    let admission = pool.admit();
    if admission == Admission::Rejected {
        return Err(CallError::BreakerOpen);
    }
    let mut pending = Pending {
        pool,
        admission,
        attempt: None,
        recorded: false,
    };
    // The pool's `total` bounds its attempts here as on the proxy path.
    let deadline = match pool.config.timeouts.total {
        Some(total) => req.deadline.min(Instant::now() + total),
        None => req.deadline,
    };
    let mut tried = Vec::new();
    let mut attempts = 0u32;
    let result = loop {
        let Some(left) = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
        else {
            break Err(CallError::Timeout(Duration::ZERO));
        };
        let Some(i) = pool.select(
            PickInput {
                client: req.client,
                hash_key: req.hash_key,
            },
            &tried,
        ) else {
            break Err(CallError::NoBackend);
        };
        let Some(backend) = pool.backends().get(i) else {
            break Err(CallError::NoBackend);
        };
        pool.start(i);
        pending.attempt = Some(i);
        tried.push(i);
        attempts += 1;
        let started = Instant::now();
        let mut peer =
            upstream_tls::upstream_peer(pool.tls.as_ref(), backend.address, pool.config.protocol);
        let t = &pool.config.timeouts;
        let cap = |d: Option<Duration>| Some(d.map_or(left, |d| d.min(left)));
        peer.options.connection_timeout = cap(t.connect);
        peer.options.total_connection_timeout = cap(t.connect);
        peer.options.read_timeout = cap(t.read);
        peer.options.write_timeout = cap(t.write);
        let r = match tokio::time::timeout(left, once(&peer, req)).await {
            Ok(r) => r,
            Err(_) => Err(CallError::Timeout(left)),
        };
        pool.record_upstream_duration(started.elapsed().as_secs_f64());
        let ok = matches!(&r, Ok(resp) if resp.succeeded());
        pending.attempt = None;
        pool.done(i, ok);
        let again = match &r {
            Err(CallError::Connect(_)) => true,
            Ok(CallResponse { grpc: Some(g), .. }) => {
                g.trailers_only && pool.config.retries.grpc_statuses.contains(&g.code)
            }
            Ok(resp) => resp.status >= 500 && req.method.is_idempotent(),
            Err(_) => false,
        };
        if ok || !retry || !again || !pool.may_retry(attempts) {
            break r;
        }
    };
    let ok = matches!(&result, Ok(resp) if resp.succeeded());
    pending.recorded = true;
    pool.record(admission, ok);
    result
}

async fn once(
    peer: &pingora::upstreams::peer::HttpPeer,
    r: &CallRequest<'_>,
) -> Result<CallResponse, CallError> {
    let io = |e: Box<pingora::Error>| CallError::Io(e.to_string());
    let connector = connector();
    let (mut session, _) = connector
        .get_http_session(peer)
        .await
        .map_err(|e| CallError::Connect(e.to_string()))?;
    if r.grpc
        && !matches!(
            session,
            pingora::protocols::http::client::HttpSession::H2(_)
        )
    {
        // A TLS backend that picked no ALPN: Pingora would speak HTTP/1.1,
        // which has no trailers for gRPC's status.
        return Err(CallError::Connect(
            "the backend did not agree to HTTP/2 (ALPN h2)".to_string(),
        ));
    }
    let mut head = RequestHeader::build(r.method.clone(), r.target.as_bytes(), None).map_err(io)?;
    for (name, value) in r.headers {
        head.append_header(name.clone(), value.clone())
            .map_err(io)?;
    }
    if let Some(body) = &r.body {
        head.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())
            .map_err(io)?;
    } else if r.method == http::Method::POST || r.method == http::Method::PUT {
        head.insert_header(http::header::CONTENT_LENGTH, "0")
            .map_err(io)?;
    }
    session
        .write_request_header(Box::new(head))
        .await
        .map_err(io)?;
    if let Some(body) = &r.body
        && !body.is_empty()
    {
        session
            .write_request_body(body.clone(), true)
            .await
            .map_err(io)?;
    }
    session.finish_request_body().await.map_err(io)?;
    session.read_response_header().await.map_err(io)?;
    let (status, content_type) = match session.response_header() {
        Some(h) => (
            h.status.as_u16(),
            h.headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        ),
        None => (0, None),
    };
    let in_head = session.response_header().and_then(|h| {
        crate::grpc::status(&h.headers).map(|c| (c, crate::transcode::grpc_message(&h.headers)))
    });
    let mut body = BytesMut::new();
    while let Some(chunk) = session.read_response_body().await.map_err(io)? {
        if r.read_body {
            if body.len() + chunk.len() > r.max_body {
                return Err(CallError::TooLarge(r.max_body));
            }
            body.extend_from_slice(&chunk);
        }
    }
    let grpc = if r.grpc {
        Some(match in_head {
            Some((code, message)) => GrpcOutcome {
                code,
                message,
                trailers_only: true,
            },
            None => {
                let trailers = match &mut session {
                    pingora::protocols::http::client::HttpSession::H2(h2) => {
                        h2.read_trailers().await.map_err(io)?
                    }
                    _ => None,
                };
                let found = trailers.as_ref().and_then(|t| {
                    crate::grpc::status(t).map(|c| (c, crate::transcode::grpc_message(t)))
                });
                match found {
                    Some((code, message)) => GrpcOutcome {
                        code,
                        message,
                        trailers_only: false,
                    },
                    None => GrpcOutcome {
                        code: crate::grpc::Code::Unknown,
                        message: "the backend's answer has no grpc-status".to_string(),
                        trailers_only: false,
                    },
                }
            }
        })
    } else {
        None
    };
    // The whole answer was read: the connection may serve the next call.
    connector
        .release_http_session(session, peer, Some(IDLE))
        .await;
    Ok(CallResponse {
        status,
        content_type,
        body: body.freeze(),
        grpc,
    })
}
