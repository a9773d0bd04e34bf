//! The L7 reverse proxy: one Pingora HTTP proxy service per listener.
//!
//! Each request takes the listener's current runtime
//! ([`crate::runtime::ListenerRuntime`]) once, in `new_ctx`, and every
//! later phase reads that snapshot, so a reload never changes a request
//! under way. Each request is routed ([`router`]); routes that answer by themselves
//! ([`actions`]) do so in `request_filter`, proxied ones go through the
//! pool's circuit breaker, selection, retries and outlier detection
//! ([`crate::upstream`]), with the reverse-proxy header hygiene of
//! [`headers`]. Every request carries an id and a W3C trace context
//! ([`trace`]) upstream, back to the client and into the access log.

mod actions;
mod fresh_hit;
mod grpc;
mod head_timeout;
pub(crate) mod headers;
pub mod limits;
pub mod listener;
pub mod normalize;
pub mod router;
mod shaping;
pub mod tls;
pub mod trace;
mod transcode;

pub(crate) use actions::respond_error;

use crate::{
    access_log::{self, AccessLog},
    cache::{self, filters as cache_filters},
    compression,
    config::{Action, HashKey, Listener},
    metrics,
    runtime::{ListenerRuntime, Reloader, RouteRuntime},
    upstream::{Admission, PickInput, UpstreamPool, tls as upstream_tls},
};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::cache::key::HashBinary;
use pingora::cache::{CacheKey, CacheMeta, ForcedFreshness, HitHandler, RespCacheable};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::{
    Error, ErrorSource, ErrorType, Result,
    prelude::{HttpPeer, ProxyHttp, Session},
    proxy::FailToProxy,
    server::configuration::ServerConf,
    services::ServiceWithDependents,
};
use shaping::count_transform;
use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Instant, SystemTime},
};

/// Label for "no route" / "no pool" in metrics.
const NONE: &str = metrics::NONE;

/// The proxy logic of one listener.
pub struct EdgeProxy {
    listener: Arc<str>,
    /// The listener's runtime; a reload swaps it.
    runtime: Arc<ArcSwap<ListenerRuntime>>,
    access_log: Option<Arc<AccessLog>>,
    none: Arc<str>,
    /// This process's entry in `CDN-Loop`: a request that arrives with it
    /// has come round through a pool that points back at edge.
    loop_token: Arc<str>,
}

/// Per-request state.
pub struct RequestCtx {
    started: Instant,
    started_at: SystemTime,
    /// The listener's runtime when the request started: every phase reads
    /// this one.
    rt: Arc<ListenerRuntime>,
    route: Option<Arc<RouteRuntime>>,
    pool: Option<Arc<UpstreamPool>>,
    admission: Option<Admission>,
    /// The backend of the current attempt (counted in flight).
    backend: Option<usize>,
    tried: Vec<usize>,
    attempts: u32,
    upstream_started: Option<Instant>,
    upstream_ms: Option<f64>,
    /// Whether the last upstream attempt failed (connect error, 5xx).
    upstream_failed: bool,
    local_status: Option<u16>,
    /// The pool's circuit breaker refused this request.
    breaker_open: bool,
    /// The requested host, once worked out (routing, forwarded headers
    /// and the access log all need it).
    host: Option<Option<String>>,
    /// The normalised path routes match against, when it differs from the
    /// request's (normalised) path: `;parameters` left out.
    match_path: Option<String>,
    /// Cache policy and status of this request.
    cache: cache::RequestCache,
    /// Compression policy and encoder of this request.
    compression: compression::RequestCompression,
    /// The request body's pace, for `min_body_rate`.
    body_pace: limits::BodyPace,
    /// What the route's gateway policies found (consumer, headers).
    policy: crate::policy::Outcome,
    /// The request body to send instead of the client's (transformed).
    request_body: Option<Bytes>,
    /// The upstream path, when the route's template makes it.
    upstream_path: Option<String>,
    /// Whether `request_body` differs from what the client sent.
    body_changed: bool,
    /// The `Content-Type` of a rewritten body, when it changed.
    body_content_type: Option<&'static str>,
    /// Whether the response was refused or cut by its transformation
    /// (edge's doing, not the backend's: no retry, no breaker failure).
    shape_failed: bool,
    /// The response body's transformation.
    shape: crate::transform::response::ResponseShape,
    /// Why a response was refused at its head (a 502 body).
    shape_refusal: Option<String>,
    /// A mirror copy being collected: the upstream request and its body
    /// so far (`None` once sent or given up).
    mirror: Option<(Box<RequestHeader>, bytes::BytesMut)>,
    /// Whether this request's mirror copy was decided already (retries
    /// send no second copy).
    mirror_decided: bool,
    /// Whether the request is gRPC: edge's errors go to it as gRPC
    /// errors, and its outcome is its `grpc-status`.
    grpc: bool,
    /// The `grpc-status` of the answer (the backend's, or edge's own).
    grpc_status: Option<crate::grpc::Code>,
    /// The per-message size check of a gRPC request stream.
    grpc_frames: crate::grpc::frames::MessageLimit,
    /// The backend's trailers-only answer is to be retried elsewhere.
    grpc_retry: bool,
    /// Whether the client's own `grpc-timeout` bounds the attempts: its
    /// running out (a timeout, DEADLINE_EXCEEDED) is not the backend's
    /// failure.
    client_deadline: bool,
    /// Whether the request ended by the client's doing (it left, sent too
    /// much, its deadline ran out): neither the backend's success nor its
    /// failure, for outlier detection and the breaker.
    neutral: bool,
    /// Whether the request was transcoded to a gRPC call (its outcome is
    /// counted by gRPC status).
    transcoded: bool,
    /// The request's id and place in a trace, from its first phase on.
    identity: Option<trace::Identity>,
    /// Counts the request as in flight until it is dropped (SIGTERM
    /// waits for these).
    _in_flight: crate::drain::InFlight,
}

impl EdgeProxy {
    /// Ends the current attempt's accounting on its backend.
    fn finish_attempt(&self, ctx: &mut RequestCtx, success: bool) {
        if let (Some(pool), Some(b)) = (&ctx.pool, ctx.backend.take()) {
            pool.done(b, success);
            if let Some(started) = ctx.upstream_started {
                pool.observe_latency(started.elapsed());
            }
        }
        ctx.upstream_failed = !success;
    }

    /// Ends the current attempt neither as a success nor as a failure:
    /// what ended it was the client's doing.
    fn release_attempt(&self, ctx: &mut RequestCtx) {
        if let (Some(pool), Some(b)) = (&ctx.pool, ctx.backend.take()) {
            pool.release(b);
        }
        ctx.neutral = true;
    }

    /// Whether `code` from the backend counts as its failure: gRPC's 5xx
    /// codes, except a deadline the client itself set running out.
    fn grpc_backend_failed(ctx: &RequestCtx, code: crate::grpc::Code) -> bool {
        code.is_server_failure()
            && !(ctx.client_deadline && code == crate::grpc::Code::DeadlineExceeded)
    }

    /// Replaces the request's target and Host with their normal form
    /// ([`normalize`]), so that routing, the cache key, redirects and the
    /// upstream request all see the same request; an absolute-form target
    /// becomes origin-form with its authority in Host.
    fn normalize(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> std::result::Result<(), normalize::Reject> {
        let req = session.req_header();
        let normalize::NormalRequest { form, host, path } =
            normalize::normalize_request(req, ctx.rt.config.paths)?;
        let target = match req.uri.query() {
            Some(q) => format!("{}?{q}", path.path),
            None => path.path.clone(),
        };
        let changed_target = form == normalize::TargetForm::Absolute
            || req.uri.authority().is_some()
            || req.uri.path_and_query().map(|p| p.as_str()) != Some(target.as_str());
        let host_value = host.as_ref().map(normalize::Host::header_value);
        let changed_host = match &host_value {
            Some(v) => {
                let mut lines = req.headers.get_all(http::header::HOST).iter();
                lines.next().is_none_or(|h| h.as_bytes() != v.as_bytes())
            }
            None => false,
        };
        if path.match_path() != path.path {
            ctx.match_path = Some(path.match_path().to_string());
        }
        ctx.host = Some(host.map(|h| h.name));
        let req = session.req_header_mut();
        if changed_target {
            // Only characters a parsed URI already held, or fewer: this parses.
            let uri = target
                .parse::<http::Uri>()
                .map_err(|_| normalize::Reject::NotAbsolute)?;
            req.set_uri(uri);
        }
        if changed_host && let Some(v) = host_value {
            req.insert_header(http::header::HOST, v)
                .map_err(|_| normalize::Reject::BadHost)?;
        }
        Ok(())
    }

    /// The client address policies decide on: the peer, or the
    /// `X-Forwarded-For` entry the listener's trusted proxies vouch for.
    fn trusted_client(&self, session: &Session, rt: &ListenerRuntime) -> Option<IpAddr> {
        let xff = session
            .req_header()
            .headers
            .get_all(headers::XFF_NAME)
            .iter()
            .filter_map(|v| v.to_str().ok());
        crate::policy::client::trusted_client(client_ip(session), xff, &rt.config.trusted_proxies)
    }

    /// Gives the request its id and its place in a trace ([`trace`]):
    /// kept in `ctx` for the upstream request and the access log, and in
    /// the request head for edge's own answers.
    fn identify(&self, session: &mut Session, ctx: &mut RequestCtx) {
        let config = &ctx.rt.config;
        // An IPv4 peer on a `[::]` listener arrives as ::ffff:a.b.c.d.
        let trusted = client_ip(session)
            .map(|ip| ip.to_canonical())
            .is_some_and(|ip| config.trusted_proxies.iter().any(|n| n.contains(&ip)));
        let id = trace::Identity::of(
            &session.req_header().headers,
            trusted,
            &config.request_trace,
        );
        trace::mark(session.req_header_mut(), &id, &config.request_trace);
        ctx.identity = Some(id);
    }

    /// Whether another attempt may follow a failed one.
    fn may_retry(&self, ctx: &RequestCtx) -> bool {
        ctx.pool.as_ref().is_some_and(|p| p.may_retry(ctx.attempts))
    }

    /// Whether a gRPC request the backend answered with `code` (in a
    /// trailers-only head) goes to another backend: the pool retries that
    /// status, nothing of the answer reached the client, the body can be
    /// sent again from its start, and the retry budget allows.
    fn retry_grpc(&self, session: &Session, ctx: &RequestCtx, code: crate::grpc::Code) -> bool {
        ctx.pool
            .as_ref()
            .is_some_and(|p| p.config.retries.grpc_statuses.contains(&code))
            && session.response_written().is_none()
            && !session.as_ref().retry_buffer_truncated()
            && self.may_retry(ctx)
    }
}

/// Whether `e` is an upstream timeout of any kind.
fn is_timeout(e: &Error) -> bool {
    matches!(
        e.etype(),
        ErrorType::ConnectTimedout
            | ErrorType::ReadTimedout
            | ErrorType::WriteTimedout
            | ErrorType::TLSHandshakeTimedout
    )
}

impl EdgeProxy {
    /// What is left of the request's time budget for `pool`: the pool's
    /// `total`, or a gRPC client's `grpc-timeout` when shorter (past it,
    /// nobody waits for the answer). Spent: a 504, before the breaker is
    /// asked when the spent deadline is the client's.
    fn remaining_budget(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
        pool: &UpstreamPool,
    ) -> Result<Option<std::time::Duration>> {
        let deadline = if ctx.grpc {
            crate::grpc::timeout(&session.req_header().headers)
        } else {
            None
        };
        let (budget, clients) = match (pool.config.timeouts.total, deadline) {
            (Some(t), Some(d)) if d < t => (Some(d), true),
            (None, Some(d)) => (Some(d), true),
            (t, _) => (t, false),
        };
        ctx.client_deadline = clients;
        let Some(total) = budget else {
            return Ok(None);
        };
        match total.checked_sub(ctx.started.elapsed()) {
            Some(left) if !left.is_zero() => Ok(Some(left)),
            _ => {
                let what = if clients {
                    ctx.neutral = true;
                    "the call's grpc-timeout"
                } else {
                    "total timeout"
                };
                Err(Error::explain(
                    ErrorType::HTTPStatus(504),
                    format!("pool {}: {what} of {total:?} reached", pool.name),
                ))
            }
        }
    }
}

fn host_of(req: &RequestHeader) -> Option<String> {
    let raw = match req.uri.host() {
        Some(h) => h,
        None => req.headers.get(http::header::HOST)?.to_str().ok()?,
    };
    Some(strip_port(raw).to_ascii_lowercase())
}

/// `example.com:8080` → `example.com`; `[::1]:80` → `[::1]`; a bare IPv6
/// literal without brackets is left alone.
fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((h, port))
            if (h.ends_with(']') || !h.contains(':'))
                && port.bytes().all(|b| b.is_ascii_digit()) =>
        {
            h
        }
        _ => host,
    }
}

fn client_ip(session: &Session) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

fn hash_key(algorithm: crate::config::Algorithm, key: &HashKey, session: &Session) -> Vec<u8> {
    request_hash_key(algorithm, key, session.req_header(), client_ip(session))
}

/// The consistent-hashing input of a pool's `hash_key` for a connection
/// from `client` with no HTTP request to read (a stream listener's): the
/// client's address for `client_ip` (the form [`request_hash_key`] uses,
/// so a client lands on the same backend through either kind of
/// listener), empty otherwise. Empty unless the pool's `algorithm` is
/// `ketama`; `edge check` refuses other keys on a stream listener's pool.
pub(crate) fn client_hash_key(
    algorithm: crate::config::Algorithm,
    key: &HashKey,
    client: Option<IpAddr>,
) -> Vec<u8> {
    match (algorithm, key, client) {
        (crate::config::Algorithm::Ketama, HashKey::ClientIp, Some(ip)) => {
            ip.to_string().into_bytes()
        }
        _ => Vec::new(),
    }
}

/// The consistent-hashing input of a pool's `hash_key` for request `req`
/// from `client` (also for the calls edge makes for it). Empty, and made
/// without allocating, unless the pool's `algorithm` hashes on it
/// (`ketama`): every other algorithm ignores it.
pub(crate) fn request_hash_key(
    algorithm: crate::config::Algorithm,
    key: &HashKey,
    req: &RequestHeader,
    client: Option<IpAddr>,
) -> Vec<u8> {
    if algorithm != crate::config::Algorithm::Ketama {
        return Vec::new();
    }
    match key {
        HashKey::ClientIp => client_hash_key(algorithm, key, client),
        HashKey::Path => req.uri.path().as_bytes().to_vec(),
        HashKey::Header(name) => req
            .headers
            .get(name.as_str())
            .map(|v| v.as_bytes().to_vec())
            .unwrap_or_default(),
        HashKey::Cookie(name) => headers::cookie(&req.headers, name)
            .map(|v| v.as_bytes().to_vec())
            .unwrap_or_default(),
    }
}

#[async_trait]
impl ProxyHttp for EdgeProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> Self::CTX {
        RequestCtx {
            started: Instant::now(),
            started_at: SystemTime::now(),
            rt: self.runtime.load_full(),
            route: None,
            pool: None,
            admission: None,
            backend: None,
            tried: Vec::new(),
            attempts: 0,
            upstream_started: None,
            upstream_ms: None,
            upstream_failed: false,
            local_status: None,
            breaker_open: false,
            host: None,
            match_path: None,
            cache: cache::RequestCache::default(),
            compression: compression::RequestCompression::default(),
            body_pace: limits::BodyPace::default(),
            policy: crate::policy::Outcome::default(),
            request_body: None,
            upstream_path: None,
            body_changed: false,
            body_content_type: None,
            shape_failed: false,
            shape: Default::default(),
            shape_refusal: None,
            mirror: None,
            mirror_decided: false,
            grpc: false,
            grpc_status: None,
            grpc_frames: Default::default(),
            grpc_retry: false,
            client_deadline: false,
            neutral: false,
            transcoded: false,
            identity: None,
            _in_flight: crate::drain::InFlight::start(),
        }
    }

    /// Runs first, once the request head is read: refuses a declared body
    /// over the listener's `max_body_size` with 413.
    async fn early_request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<()> {
        // First of all, so that every answer from here on (a refused head
        // included) carries the request id.
        self.identify(session, ctx);
        // gRPC is HTTP/2: an HTTP/1 request saying application/grpc gets
        // no gRPC treatment (per-message body limits, gRPC errors).
        let req = session.req_header();
        ctx.grpc = req.version == http::Version::HTTP_2 && crate::grpc::is_grpc(&req.headers);
        let l = &ctx.rt.config.transport.limits;
        limits::check_head(session, l)?;
        limits::normalize_framing(session)?;
        // Pingora's wait for each piece of an HTTP/1 body (HTTP/2 streams
        // are paced by min_body_rate alone). An upgrade (WebSocket) keeps
        // Pingora's own, longer, idle limit for its tunnel.
        if !session.is_upgrade_req() {
            session.set_read_timeout(Some(l.body_read_timeout));
        }
        if ctx.grpc {
            // A gRPC stream's limit is per message (request_body_filter).
            return Ok(());
        }
        limits::check_declared_length(session, l.max_body_size)
    }

    /// Runs on each piece of request body: enforces `max_body_size` on
    /// bodies without a declared length.
    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        let l = &ctx.rt.config.transport.limits;
        // The client's doing: marked so, Pingora's HTTP/2 upstream path
        // ends the call (an error of another source there only stops
        // reading the body, and the upstream would wait for the rest).
        if ctx.grpc {
            if let (Some(max), Some(piece)) = (l.max_body_size, body.as_ref()) {
                ctx.grpc_frames.feed(piece, max).map_err(|len| {
                    limits::too_large(format!(
                        "gRPC message of {len} bytes is over max_body_size ({max})"
                    ))
                    .into_down()
                })?;
            }
        } else {
            limits::check_body_read(session, l.max_body_size).map_err(|e| e.into_down())?;
        }
        limits::check_body_rate(session, &mut ctx.body_pace, l).map_err(|e| e.into_down())?;
        // A body read and transformed in request_filter comes back here
        // from Pingora's replay buffer: what goes upstream is the new one.
        if let Some(new) = &ctx.request_body {
            *body = Some(if end_of_stream {
                new.clone()
            } else {
                Bytes::new()
            });
        }
        if ctx.mirror.is_some() {
            self.mirror_body(ctx, body.as_ref(), end_of_stream, client_ip(session));
        }
        Ok(())
    }

    /// Runs once the request head is read: routes it, answers it when the
    /// route does so itself (returns `true`), else asks the pool's circuit
    /// breaker whether it may go upstream.
    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        if let Err(reject) = self.normalize(session, ctx) {
            // A request edge cannot read safely ends its connection: what
            // follows on it (a body, a pipelined request) is not trusted.
            session.set_keepalive(None);
            let body = Bytes::from(format!("bad request: {reject}\n"));
            let status = actions::respond(session, 400, &[], &Default::default(), body).await?;
            ctx.local_status = Some(status);
            return Ok(true);
        }
        // A banned source whose packets XDP does not see (no XDP on this
        // interface, a connection opened before the ban, a client behind
        // a trusted proxy) is refused here.
        if ctx.rt.bans.any()
            && let Some(ip) = self.trusted_client(session, &ctx.rt)
            && ctx.rt.bans.is_banned(ip)
        {
            session.set_keepalive(None);
            let r = crate::policy::Rejection::new(
                403,
                "ban",
                "banned",
                "Your address is banned for a while",
            )
            .no_strike();
            metrics::policy_rejection(&self.listener, &self.none, r.policy, r.reason);
            ctx.policy.refused = Some((r.policy, r.reason));
            ctx.policy.strike = false;
            let status =
                actions::respond(session, r.status, &r.headers, &Default::default(), r.body)
                    .await?;
            ctx.local_status = Some(status);
            return Ok(true);
        }
        if headers::is_loop(session.req_header(), &self.loop_token) {
            metrics::loop_detected(&self.listener);
            session.set_keepalive(None);
            let body =
                Bytes::from_static(b"loop detected: this request has already passed this edge\n");
            let status = actions::respond(session, 508, &[], &Default::default(), body).await?;
            ctx.local_status = Some(status);
            return Ok(true);
        }
        let req = session.req_header();
        let host = ctx.host.get_or_insert_with(|| host_of(req));
        let view = router::RequestView {
            host: host.as_deref(),
            path: ctx.match_path.as_deref().unwrap_or(req.uri.path()),
            query: req.uri.query(),
            method: req.method.as_str(),
            headers: &req.headers,
        };
        ctx.route = router::select(ctx.rt.routes.iter().map(|r| &r.route), &view)
            .and_then(|i| ctx.rt.routes.get(i).cloned());
        let Some(compiled) = ctx.route.clone() else {
            let status = actions::respond(
                session,
                404,
                &[],
                &Default::default(),
                Bytes::from_static(b"no route\n"),
            )
            .await?;
            ctx.local_status = Some(status);
            return Ok(true);
        };
        if let Some(chain) = &compiled.policies {
            let head = session.req_header();
            let req = crate::policy::Request {
                head,
                client: self.trusted_client(session, &ctx.rt),
            };
            if let Err(r) = chain.run(&req, &mut ctx.policy).await {
                let status =
                    actions::respond(session, r.status, &r.headers, &Default::default(), r.body)
                        .await?;
                ctx.local_status = Some(status);
                return Ok(true);
            }
        }
        let shaping = &compiled.route.shaping;
        ctx.policy
            .response_headers
            .extend(shaping.deprecated.iter().cloned());
        if let Some(status) = self.shape_request(session, ctx, &compiled).await? {
            ctx.local_status = Some(status);
            return Ok(true);
        }
        if let Some(status) = self.transcode(session, ctx, &compiled).await? {
            ctx.local_status = Some(status);
            return Ok(true);
        }
        let route = &compiled.route;
        let extra = &ctx.policy.response_headers;
        let status = match &route.action {
            Action::Proxy { .. } => {
                let split = compiled.split.as_ref().and_then(|s| {
                    s.pick(
                        &session.req_header().headers,
                        self.trusted_client(session, &ctx.rt),
                    )
                });
                let split_away = split.is_some();
                ctx.pool = match split {
                    Some(pool) => {
                        metrics::split(&compiled.name, &pool.name);
                        Some(Arc::clone(pool))
                    }
                    None => compiled.pool.clone(),
                };
                // The cache key does not name the pool: a request split
                // to another pool neither reads nor fills the route's cache.
                ctx.cache.policy = if split_away {
                    None
                } else {
                    compiled.cache.clone()
                };
                ctx.cache.namespace = compiled.cache_namespace.clone();
                ctx.cache.authenticated = ctx.policy.authenticated_route;
                if compiled.route.shaping.response.is_some() {
                    // A transformed body is whole or nothing: no ranges of
                    // it, from the cache or the upstream.
                    session.ignore_downstream_range = true;
                }
                compression::request_filter(
                    session.req_header(),
                    compiled.compression.as_ref(),
                    &mut ctx.compression,
                );
                // PURGE from a client that may not purge is answered here.
                if cache_filters::request_filter(session, ctx.rt.cache.as_ref(), &mut ctx.cache)
                    .await?
                {
                    return Ok(true);
                }
                return self.serve_fresh_hit(session, ctx).await;
            }
            Action::Redirect { location, status } => {
                let req = session.req_header();
                let host = ctx.host.as_ref().and_then(Option::as_deref);
                let target = actions::redirect_location(
                    location,
                    host.unwrap_or_default(),
                    req.uri.path(),
                    req.uri.query(),
                );
                let mut headers = vec![("location".to_string(), target)];
                headers.extend(extra.iter().cloned());
                actions::respond(
                    session,
                    *status,
                    &headers,
                    &route.response_headers,
                    Bytes::new(),
                )
                .await?
            }
            Action::Respond {
                status,
                headers,
                body,
            } => {
                let headers = if extra.is_empty() {
                    std::borrow::Cow::Borrowed(headers)
                } else {
                    let mut headers = headers.clone();
                    headers.extend(extra.iter().cloned());
                    std::borrow::Cow::Owned(headers)
                };
                actions::respond(
                    session,
                    *status,
                    &headers,
                    &route.response_headers,
                    body.clone(),
                )
                .await?
            }
            Action::Aggregate(_) => {
                match self.aggregate(session, ctx, &compiled).await? {
                    Some(status) => status,
                    // The client left: nothing to answer.
                    None => return Ok(true),
                }
            }
            Action::Static {
                root,
                index,
                strip_prefix,
            } => {
                let ops = if extra.is_empty() {
                    std::borrow::Cow::Borrowed(&route.response_headers)
                } else {
                    let mut ops = route.response_headers.clone();
                    ops.add.extend(extra.iter().cloned());
                    std::borrow::Cow::Owned(ops)
                };
                actions::serve_file(session, root, index, strip_prefix.as_deref(), &ops).await?
            }
        };
        ctx.local_status = Some(status);
        Ok(true)
    }

    /// Turns the cache on for requests that may use it.
    fn request_cache_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<()> {
        cache_filters::request_cache_filter(session, ctx.rt.cache.as_ref(), &mut ctx.cache)
    }

    /// The cache key: listener, host, path and query.
    fn cache_key_callback(&self, session: &Session, ctx: &mut Self::CTX) -> Result<CacheKey> {
        cache_filters::cache_key_callback(session, ctx.rt.cache.as_ref(), &ctx.cache)
    }

    /// Vary: the variant of the request.
    fn cache_vary_filter(
        &self,
        meta: &CacheMeta,
        _ctx: &mut Self::CTX,
        req: &RequestHeader,
    ) -> Option<HashBinary> {
        cache_filters::cache_vary_filter(meta, req)
    }

    /// RFC 9111: may the response be stored, and for how long.
    fn response_cache_filter(
        &self,
        _session: &Session,
        resp: &ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<RespCacheable> {
        cache_filters::response_cache_filter(resp, &ctx.cache)
    }

    /// A client's `no-cache` revalidates a fresh hit.
    async fn cache_hit_filter(
        &self,
        session: &mut Session,
        _meta: &CacheMeta,
        _hit_handler: &mut HitHandler,
        is_fresh: bool,
        _ctx: &mut Self::CTX,
    ) -> Result<Option<ForcedFreshness>> {
        Ok(cache_filters::cache_hit_filter(session, is_fresh))
    }

    /// Stale-while-revalidate and stale-if-error.
    fn should_serve_stale(
        &self,
        _session: &mut Session,
        _ctx: &mut Self::CTX,
        error: Option<&Error>,
    ) -> bool {
        cache_filters::should_serve_stale(error)
    }

    /// PURGE from an allowed client.
    fn is_purge(&self, session: &Session, _ctx: &Self::CTX) -> bool {
        cache_filters::is_purge(session)
    }

    /// Compresses the body as it streams.
    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<Option<std::time::Duration>> {
        if let Some(route) = &ctx.route
            && let Some(t) = &route.route.shaping.response
        {
            match ctx.shape.body(t, body, end_of_stream) {
                Ok(Some(done)) => count_transform(&route.name, done),
                Ok(None) => {}
                Err(e) => {
                    let xml = ctx.shape.what() == Some(crate::transform::response::What::Xml);
                    let (what, text) = if xml {
                        ("xml_to_json", "the upstream's XML could not be converted")
                    } else {
                        (
                            "response_json",
                            "the upstream's response could not be transformed",
                        )
                    };
                    metrics::transform(&route.name, what, "error");
                    let why = format!("{text}: {e}");
                    tracing::warn!(route = %route.name, "{why}");
                    // While the head is still unsent (Pingora writes it
                    // with the first body bytes) this is a 502 with the
                    // reason; after, the response is cut short.
                    ctx.shape_refusal = Some(why.clone());
                    ctx.shape_failed = true;
                    return Err(Error::explain(ErrorType::HTTPStatus(502), why));
                }
            }
        }
        compression::response_body_filter(body, end_of_stream, &mut ctx.compression)?;
        Ok(None)
    }

    /// Picks the backend for this attempt (another one on a retry).
    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        let Some(pool) = ctx.pool.clone() else {
            return Err(Error::explain(
                ErrorType::HTTPStatus(500),
                "no pool for this route",
            ));
        };
        ctx.shape_refusal = None;
        let remaining = self.remaining_budget(session, ctx, &pool)?;
        if ctx.grpc && !pool.config.protocol.is_h2() {
            return Err(Error::explain(
                ErrorType::HTTPStatus(502),
                format!(
                    "pool {} speaks HTTP/1.1: gRPC needs protocol h2 or h2c",
                    pool.name
                ),
            ));
        }
        // A retry replays the body from its start.
        ctx.grpc_frames = Default::default();
        // The breaker is asked once per request, when it first needs the
        // pool: a cache hit never does, so an open breaker does not stop
        // cached answers (and stale-if-error can answer for it).
        if ctx.admission.is_none() {
            let admission = pool.admit();
            ctx.admission = Some(admission);
            if admission == Admission::Rejected {
                ctx.breaker_open = true;
                return Err(Error::explain(
                    ErrorType::HTTPStatus(503),
                    format!("pool {}: circuit breaker open", pool.name),
                ));
            }
        }
        let timeouts = &pool.config.timeouts;
        let key = hash_key(pool.config.algorithm, &pool.config.hash_key, session);
        let input = PickInput {
            client: client_ip(session),
            hash_key: &key,
        };
        let Some(index) = pool.select(input, &ctx.tried) else {
            return Err(Error::explain(
                ErrorType::HTTPStatus(503),
                format!("pool {} has no backend left to try", pool.name),
            ));
        };
        pool.start(index);
        ctx.backend = Some(index);
        ctx.tried.push(index);
        ctx.attempts += 1;
        ctx.upstream_started = Some(Instant::now());
        let addr: SocketAddr = pool.backends()[index].address;
        let mut peer = upstream_tls::upstream_peer(pool.tls.as_ref(), addr, pool.config.protocol);
        // The total budget caps every per-operation timeout.
        let cap = |d: Option<std::time::Duration>| match (d, remaining) {
            (Some(d), Some(r)) => Some(d.min(r)),
            (d, r) => d.or(r),
        };
        peer.options.connection_timeout = cap(timeouts.connect);
        peer.options.total_connection_timeout = cap(timeouts.connect);
        peer.options.read_timeout = cap(timeouts.read);
        peer.options.write_timeout = cap(timeouts.write);
        if let Some(idle) = pool.config.keepalive_idle {
            peer.options.idle_timeout = Some(idle);
        }
        Ok(Box::new(peer))
    }

    /// A connect failure: counts against the backend; retried on another
    /// backend while the pool's attempts and retry budget allow (the
    /// request has not been sent, so any method may be retried).
    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Self::CTX,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if ctx.client_deadline && is_timeout(&e) {
            // The client's deadline was the connect timeout: not the
            // backend's fault, and no time is left for another.
            self.release_attempt(ctx);
            e.set_retry(false);
            return e;
        }
        self.finish_attempt(ctx, false);
        e.set_retry(self.may_retry(ctx));
        e
    }

    /// An error after the request was (maybe) sent: retried only for
    /// idempotent methods whose body can be replayed, within the budget.
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Self::CTX,
        _client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        if ctx.shape_failed {
            // edge refused the answer (a transformation): neither the
            // backend's failure nor worth asking another backend.
            e.set_retry(false);
            return e;
        }
        if e.esource() == &ErrorSource::Downstream || (ctx.client_deadline && is_timeout(&e)) {
            // The client left, sent too much or too slowly, or its own
            // deadline ran out: not the backend's failure, nothing to retry.
            self.release_attempt(ctx);
            e.set_retry(false);
            return e;
        }
        if std::mem::take(&mut ctx.grpc_retry) {
            // upstream_response_filter found a retryable gRPC status and
            // checked the rest (nothing sent to the client, the body
            // replayable, the budget).
            e.set_retry(true);
            return e;
        }
        self.finish_attempt(ctx, false);
        // Once a head went to the client, another backend's answer could
        // only be appended to it.
        let head_sent = session.response_written().is_some();
        let replayable = session.req_header().method.is_idempotent()
            && !session.as_ref().retry_buffer_truncated();
        e.set_retry(!head_sent && replayable && self.may_retry(ctx));
        e
    }

    /// Adds the forwarded headers, `Via`, the request id and the trace
    /// context, rewrites the path and applies the route's request header
    /// changes.
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        let host = ctx
            .host
            .get_or_insert_with(|| host_of(session.req_header()));
        let client = headers::Client {
            peer: client_ip(session),
            trusted: &ctx.rt.config.trusted_proxies,
            untrusted_headers: &ctx.rt.config.untrusted_headers,
            scheme: tls::downstream_scheme(session),
            host: host.as_deref(),
        };
        headers::forwarded(upstream_request, &client)?;
        headers::via_request(upstream_request, session.req_header().version)?;
        headers::mark_loop(upstream_request, &self.loop_token)?;
        // Before the route's and the policies' changes, which may still
        // override them.
        if let Some(id) = &ctx.identity {
            trace::apply_request(upstream_request, id, &ctx.rt.config.request_trace)?;
        }
        if session.req_header().version == http::Version::HTTP_2 {
            headers::join_cookies(upstream_request)?;
        }
        let Some(compiled) = &ctx.route else {
            return Ok(());
        };
        let route = &compiled.route;
        if let Action::Proxy {
            strip_prefix,
            rewrite,
            ..
        } = &route.action
            && let Some(path) = headers::rewrite_path(
                upstream_request.uri.path(),
                strip_prefix.as_deref(),
                rewrite.as_ref(),
            )
        {
            let uri = match upstream_request.uri.query() {
                Some(q) => format!("{path}?{q}"),
                None => path,
            };
            let uri: http::Uri = uri.parse().map_err(|e| {
                Error::because(ErrorType::InternalError, "rewritten path is not a URI", e)
            })?;
            upstream_request.set_uri(uri);
        }
        // The template's path, and the query changes on what the route
        // sends (after strip_prefix or rewrite, which the template
        // excludes).
        if let Some(t) = &route.shaping.request
            && (ctx.upstream_path.is_some() || !t.query.is_empty())
        {
            let path = ctx
                .upstream_path
                .clone()
                .unwrap_or_else(|| upstream_request.uri.path().to_string());
            let query = if t.query.is_empty() {
                upstream_request.uri.query().map(str::to_string)
            } else {
                t.query.apply(upstream_request.uri.query())
            };
            let target = match query {
                Some(q) => format!("{path}?{q}"),
                None => path,
            };
            let uri: http::Uri = target.parse().map_err(|e| {
                Error::because(
                    ErrorType::InternalError,
                    "transformed target is not a URI",
                    e,
                )
            })?;
            upstream_request.set_uri(uri);
        }
        if route.shaping.response.is_some() {
            upstream_request.remove_header(&http::header::RANGE);
            upstream_request.remove_header(&http::header::IF_RANGE);
        }
        if let Some(body) = &ctx.request_body {
            // Read whole in request_filter: sent with its own length, and
            // nobody upstream is left waiting to say `100 Continue`.
            upstream_request.remove_header(&http::header::TRANSFER_ENCODING);
            upstream_request.remove_header(&http::header::EXPECT);
            upstream_request.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
            if ctx.body_changed {
                for digest in ["content-md5", "digest", "content-digest", "repr-digest"] {
                    upstream_request.remove_header(digest);
                }
            }
            if let Some(ct) = ctx.body_content_type {
                upstream_request.insert_header(http::header::CONTENT_TYPE, ct)?;
            }
        }
        headers::apply_request(upstream_request, &route.request_headers)?;
        headers::apply_policy_outcome(upstream_request, &ctx.policy)?;
        if let Some(m) = &compiled.mirror {
            if !ctx.mirror_decided {
                ctx.mirror_decided = true;
                if m.wants() {
                    ctx.mirror = Some((Box::new(upstream_request.clone()), bytes::BytesMut::new()));
                }
            } else if let Some((head, buf)) = ctx.mirror.as_mut() {
                // A retry replays the body from its start.
                **head = upstream_request.clone();
                buf.clear();
            }
            // A body read in request_filter is all here: the copy can go.
            if let Some(body) = &ctx.request_body
                && let Some((head, _)) = ctx.mirror.take()
            {
                if body.len() > m.max_body() {
                    m.skip();
                } else {
                    m.send(&head, body.clone(), client_ip(session));
                }
            }
        }
        Ok(())
    }

    /// The upstream's response head: latency, outlier detection (5xx is a
    /// failure), hidden headers and `Via`.
    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if let (Some(start), Some(pool)) = (ctx.upstream_started, &ctx.pool) {
            let secs = start.elapsed().as_secs_f64();
            pool.record_upstream_duration(secs);
            ctx.upstream_ms = Some(secs * 1000.0);
        }
        if let Some(pool) = &ctx.pool
            && pool.config.protocol.is_h2()
            && upstream_response.version != http::Version::HTTP_2
        {
            // Pingora falls back to HTTP/1.1 when a TLS backend picks no
            // ALPN; an h2 pool (gRPC) must not: its trailers would be lost.
            let why = format!(
                "pool {}: the backend answered over HTTP/1.1, not HTTP/2 (ALPN h2)",
                pool.name
            );
            self.finish_attempt(ctx, false);
            return Err(Error::explain(ErrorType::HTTPStatus(502), why));
        }
        let mut success = upstream_response.status.as_u16() < 500;
        // A gRPC answer's outcome is its grpc-status: in this head for a
        // trailers-only answer, else in the trailers, until which the
        // attempt stays in flight.
        let mut outcome_in_trailers = false;
        if ctx.grpc {
            match crate::grpc::status(&upstream_response.headers) {
                Some(code) => {
                    ctx.grpc_status = Some(code);
                    success &= !Self::grpc_backend_failed(ctx, code);
                    if self.retry_grpc(session, ctx, code) {
                        self.finish_attempt(ctx, false);
                        ctx.grpc_retry = true;
                        return Err(Error::explain(
                            ErrorType::HTTPStatus(503),
                            format!("the backend answered {}", code.name()),
                        ));
                    }
                }
                None => {
                    outcome_in_trailers =
                        success && crate::grpc::is_grpc(&upstream_response.headers);
                }
            }
        }
        if !outcome_in_trailers {
            self.finish_attempt(ctx, success);
        }
        headers::upstream_response(upstream_response, &ctx.rt.config.hidden_upstream_headers)?;
        // A revalidation's 304 updates the stored response's fields.
        cache_filters::upstream_response_filter(upstream_response, &mut ctx.cache);
        Ok(())
    }

    /// A gRPC answer's trailers: its grpc-status ends the attempt.
    fn upstream_response_trailer_filter(
        &self,
        _session: &mut Session,
        trailers: &mut http::HeaderMap,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if ctx.grpc {
            let code = crate::grpc::status(trailers);
            if code.is_some() {
                ctx.grpc_status = code;
            }
            if ctx.backend.is_some() {
                // Trailers without a grpc-status break the protocol.
                let failed = code.is_none_or(|c| Self::grpc_backend_failed(ctx, c));
                self.finish_attempt(ctx, !failed);
            }
        }
        Ok(())
    }

    /// The response head going to the client (also from the cache): the
    /// request id, cache status header, compression, the route's header
    /// changes.
    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        // Before the route's header changes, which may remove it.
        trace::stamp(session.req_header(), upstream_response)?;
        cache_filters::response_filter(
            session,
            upstream_response,
            ctx.rt.cache.as_ref(),
            &mut ctx.cache,
        )?;
        if let Some(route) = &ctx.route
            && let Some(t) = &route.route.shaping.response
        {
            let head_request = session.req_header().method == http::Method::HEAD;
            match ctx.shape.start(upstream_response, t, head_request) {
                Ok(Some(done)) => count_transform(&route.name, done),
                Ok(None) => {}
                Err(refusal) => {
                    let what = ctx.shape.what().map_or("xml_to_json", |w| w.label());
                    metrics::transform(&route.name, what, "error");
                    let why = refusal.0.clone();
                    ctx.shape_refusal = Some(refusal.0);
                    ctx.shape_failed = true;
                    return Err(Error::explain(ErrorType::HTTPStatus(502), why));
                }
            }
        }
        compression::response_filter(upstream_response, &mut ctx.compression)?;
        for name in &ctx.policy.response_remove {
            upstream_response.remove_header(*name);
        }
        for (name, value) in &ctx.policy.response_headers {
            upstream_response.append_header(name.clone(), value.as_str())?;
        }
        match &ctx.route {
            Some(route) => {
                headers::apply_response(upstream_response, &route.route.response_headers)
            }
            None => Ok(()),
        }
    }

    /// The request failed before a response went out: Pingora's mapping of
    /// errors to statuses, plus `Retry-After` and a plain reason when the
    /// circuit breaker refused it; every answer carries the request id.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Self::CTX,
    ) -> FailToProxy {
        let code = match e.etype() {
            ErrorType::HTTPStatus(code) => *code,
            // An upstream that did not answer in time, whichever timeout
            // (per operation, or `total` capping it) ran out: 504, as
            // nginx and Envoy answer.
            ErrorType::ConnectTimedout
            | ErrorType::ReadTimedout
            | ErrorType::WriteTimedout
            | ErrorType::TLSHandshakeTimedout
                if e.esource() == &ErrorSource::Upstream =>
            {
                504
            }
            _ => match e.esource() {
                ErrorSource::Upstream => 502,
                ErrorSource::Downstream => match e.etype() {
                    // The client stopped sending its body.
                    ErrorType::ReadTimedout => 408,
                    // The client is gone: nobody to answer.
                    ErrorType::WriteError
                    | ErrorType::WriteTimedout
                    | ErrorType::ReadError
                    | ErrorType::ConnectionClosed => 0,
                    _ => 400,
                },
                ErrorSource::Internal | ErrorSource::Unset => 500,
            },
        };
        // A head already sent cannot be taken back: anything written now
        // would read as part of its body. The connection is closed with
        // the body cut short, which the client sees as a failure.
        let head_sent = session.response_written().is_some();
        if code > 0 && !head_sent {
            let written = if ctx.grpc {
                let (grpc_code, message) = grpc::for_error(e, code, ctx.breaker_open);
                ctx.grpc_status = Some(grpc_code);
                ctx.local_status = Some(code);
                grpc::respond(session, grpc_code, &message, &[]).await
            } else if let Some(why) = ctx.shape_refusal.take() {
                let headers = [("content-type".to_string(), "application/json".to_string())];
                let body = crate::transform::message(&why, None);
                actions::respond(session, code, &headers, &Default::default(), body)
                    .await
                    .map(drop)
            } else if ctx.breaker_open {
                let headers = [("retry-after".to_string(), "1".to_string())];
                let body = Bytes::from_static(b"circuit breaker open\n");
                actions::respond(session, code, &headers, &Default::default(), body)
                    .await
                    .map(drop)
            } else {
                respond_error(session, code).await
            };
            if let Err(err) = written {
                tracing::debug!("cannot send the error response: {err}");
            }
        } else if code > 0 && ctx.grpc && session.req_header().version == http::Version::HTTP_2 {
            let (grpc_code, message) = grpc::for_error(e, code, false);
            ctx.grpc_status = Some(grpc_code);
            if let Err(err) = grpc::trailers(session, grpc_code, &message).await {
                tracing::debug!("cannot end the gRPC stream with its status: {err}");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// Runs once per request, after the response or the error: the breaker,
    /// metrics and the access log.
    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Self::CTX) {
        if ctx.backend.is_some() {
            match e {
                // The client went away, or broke its side: not the
                // backend's doing.
                Some(e) if e.esource() == &ErrorSource::Downstream => self.release_attempt(ctx),
                _ => self.finish_attempt(ctx, e.is_none()),
            }
        }
        let written = session.response_written().map(|r| r.status.as_u16());
        // A gRPC error edge gave went out as 200: what counts is the HTTP
        // status it stands for.
        let status = if ctx.grpc {
            ctx.local_status.or(written)
        } else {
            written.or(ctx.local_status)
        };
        if let (Some(pool), Some(admission)) = (&ctx.pool, ctx.admission)
            && admission != Admission::Rejected
        {
            // A transformation edge refused is not the backend's failure:
            // a client asking for huge answers must not open the breaker
            // for everyone.
            let grpc_failed = ctx
                .grpc_status
                .is_some_and(|c| Self::grpc_backend_failed(ctx, c));
            let failed = !ctx.shape_failed
                && (ctx.upstream_failed || grpc_failed || status.is_none_or(|s| s >= 500));
            if ctx.neutral && !ctx.upstream_failed {
                pool.cancel(admission);
            } else {
                pool.record(admission, !failed);
            }
        }
        let route = ctx.route.as_ref().map_or(&self.none, |r| &r.name);
        let pool_name = ctx.pool.as_ref().map_or(&self.none, |p| &p.name);
        let seconds = ctx.started.elapsed().as_secs_f64();
        let (bytes_in, bytes_out) = (
            session.as_ref().body_bytes_read() as u64,
            session.as_ref().body_bytes_sent() as u64,
        );
        // Answers count towards a ban when the source caused them: edge's
        // refusals that say so, and the service's own error statuses.
        if let Some(status) = status
            && status >= 400
            && (ctx.policy.refused.is_none() || ctx.policy.strike)
            && ctx.rt.bans.counting()
            && let Some(ip) = self.trusted_client(session, &ctx.rt)
        {
            let trusted = &ctx.rt.config.trusted_proxies;
            // A trusted proxy is never banned (it speaks for many
            // clients); a client known only from X-Forwarded-For is
            // refused by edge, not dropped in XDP, whose packets come
            // from the proxy.
            if !trusted.iter().any(|n| n.contains(&ip)) {
                let peer = client_ip(session).map(|p| p.to_canonical());
                ctx.rt.bans.record(ip, status, peer == Some(ip));
            }
        }
        if let Some(c) = &ctx.policy.consumer {
            c.stats.request(status, seconds, bytes_in, bytes_out);
        }
        if ctx.grpc || ctx.transcoded {
            metrics::grpc_request(&self.listener, route, pool_name, ctx.grpc_status);
        }
        metrics::http_request_with(
            &metrics::RequestDone {
                listener: &self.listener,
                route,
                pool: pool_name,
                status,
                seconds,
                bytes_in,
                bytes_out,
            },
            ctx.route.as_ref().map(|r| &r.metrics),
        );
        if let Some(log) = &self.access_log {
            let req = session.req_header();
            let host = ctx.host.take().unwrap_or_else(|| host_of(req));
            let target = req
                .uri
                .path_and_query()
                .map_or_else(|| req.uri.path(), |p| p.as_str());
            let redacted;
            let path = if ctx.policy.secret_query.is_empty() {
                target
            } else {
                redacted = crate::policy::auth::redact_query(target, &ctx.policy.secret_query);
                redacted.as_str()
            };
            let upstream = ctx.tried.last().and_then(|i| {
                let pool = ctx.pool.as_ref()?;
                Some(pool.backends().get(*i)?.address)
            });
            let identity = ctx.identity.as_ref();
            log.log(&access_log::Entry {
                time: access_log::Rfc3339(ctx.started_at),
                listener: &self.listener,
                request_id: identity.map(|i| i.request_id.as_str()),
                trace_id: identity.map(|i| trace::TraceId(i.trace.trace_id)),
                span_id: identity.map(|i| trace::SpanId(i.trace.parent_id)),
                parent_span_id: identity.and_then(|i| i.caller_span.map(trace::SpanId)),
                client: client_ip(session),
                method: req.method.as_str(),
                host: host.as_deref(),
                path,
                protocol: match req.version {
                    http::Version::HTTP_2 => "HTTP/2",
                    http::Version::HTTP_10 => "HTTP/1.0",
                    _ => "HTTP/1.1",
                },
                status: status.unwrap_or(0),
                bytes_in,
                bytes_out,
                duration_ms: seconds * 1000.0,
                upstream_ms: ctx.upstream_ms,
                route: ctx.route.as_ref().map(|_| route.as_ref()),
                pool: ctx.pool.as_ref().map(|p| p.name.as_ref()),
                upstream,
                attempts: ctx.attempts,
                cache: ctx.cache.status(),
                consumer: ctx.policy.consumer_name(),
                refused: ctx.policy.refused.map(|(p, r)| format!("{p}:{r}")),
                grpc_status: (ctx.grpc || ctx.transcoded)
                    .then(|| ctx.grpc_status.map_or("none", crate::grpc::Code::name)),
                error: e.map(|e| e.to_string()),
            });
        }
    }
}

/// One Pingora service per listener, each bound to its address (plain or
/// TLS, with its limits: see [`listener`]) and serving from the listener's
/// runtime in `reloader`.
pub fn services(
    conf: &Arc<ServerConf>,
    reloader: &Reloader,
    listeners: &[Listener],
    access_log: Option<Arc<AccessLog>>,
) -> anyhow::Result<Vec<Box<dyn ServiceWithDependents>>> {
    listeners
        .iter()
        .map(|l: &Listener| {
            let runtime = reloader
                .listener(&l.name)
                .ok_or_else(|| anyhow::anyhow!("listener {} has no runtime", l.name))?;
            let proxy = EdgeProxy {
                listener: Arc::from(l.name.as_str()),
                runtime: Arc::clone(&runtime),
                access_log: access_log.clone(),
                none: Arc::from(NONE),
                // Random per listener and process, so that two edges
                // chained on purpose, one after a restart, or one listener
                // of edge proxying to another never take each other for a
                // loop; a request that comes back to the same listener does.
                loop_token: Arc::from(format!("edge-{:016x}", fastrand::u64(..))),
            };
            if l.stream.is_some() {
                return crate::stream::service::service(conf, l, runtime);
            }
            listener::service(conf, l, runtime, proxy)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{request_hash_key, strip_port};
    use crate::config::{Algorithm, HashKey};

    /// Only consistent hashing reads the key: the other algorithms get
    /// an empty one, made without formatting or allocating per request.
    #[test]
    fn hash_keys_are_made_only_for_consistent_hashing() {
        let mut req = pingora::http::RequestHeader::build("GET", b"/a/b", None).unwrap();
        req.insert_header("x-user", "u1").unwrap();
        let client = Some("192.0.2.7".parse().unwrap());
        let keys = [
            (HashKey::ClientIp, &b"192.0.2.7"[..]),
            (HashKey::Path, &b"/a/b"[..]),
            (HashKey::Header("x-user".into()), &b"u1"[..]),
        ];
        for (key, want) in keys {
            assert_eq!(
                request_hash_key(Algorithm::Ketama, &key, &req, client),
                want
            );
            for other in [
                Algorithm::RoundRobin,
                Algorithm::WeightedRoundRobin,
                Algorithm::LeastConnections,
                Algorithm::P2c,
                Algorithm::IpHash,
            ] {
                let made = request_hash_key(other, &key, &req, client);
                assert!(made.is_empty() && made.capacity() == 0, "{other:?}");
            }
        }
    }

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("example.com:8080"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("::1"), "::1");
    }
}
