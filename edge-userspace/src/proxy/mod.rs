//! The L7 reverse proxy: one Pingora HTTP proxy service per listener.

mod forwarded;
mod head_timeout;
pub mod limits;
pub mod listener;
pub mod tls;

use crate::{
    config::{Config, Listener, Pool},
    metrics,
};
use async_trait::async_trait;
use pingora::http::RequestHeader;
use pingora::{
    Error, ErrorType, Result,
    lb::{LoadBalancer, selection::RoundRobin},
    prelude::{HttpPeer, ProxyHttp, Session},
    server::configuration::ServerConf,
    services::ServiceWithDependents,
};
use std::{net::SocketAddr, sync::Arc};

/// How many backends `select` may try before giving up; every backend of a
/// round-robin pool is reachable well within it.
const MAX_SELECT_ITERATIONS: usize = 256;

/// A pool's backends behind its selection algorithm.
pub struct UpstreamPool {
    name: Arc<str>,
    balancer: LoadBalancer<RoundRobin>,
    tls: Option<tls::UpstreamTlsPeer>,
}

impl UpstreamPool {
    /// Builds the selector for `pool`.
    pub fn new(pool: &Pool) -> anyhow::Result<Self> {
        Ok(Self {
            name: Arc::from(pool.name.as_str()),
            balancer: LoadBalancer::try_from_iter(pool.backends.iter().copied())?,
            tls: pool
                .tls
                .as_ref()
                .map(tls::UpstreamTlsPeer::load)
                .transpose()?,
        })
    }

    fn select(&self) -> Option<SocketAddr> {
        let backend = self.balancer.select(b"", MAX_SELECT_ITERATIONS)?;
        backend.addr.as_inet().copied()
    }
}

/// The proxy logic of one listener.
pub struct EdgeProxy {
    listener: Arc<str>,
    pool: Arc<UpstreamPool>,
    /// `limits.max_body_size` of the listener.
    max_body_size: Option<u64>,
}

/// Per-request state.
#[derive(Default)]
pub struct RequestCtx {
    upstream: Option<SocketAddr>,
    body: limits::BodyCounter,
}

#[async_trait]
impl ProxyHttp for EdgeProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> Self::CTX {
        RequestCtx::default()
    }

    /// Runs first, once the request head is read: refuses a declared body
    /// over `max_body_size`.
    async fn early_request_filter(
        &self,
        session: &mut Session,
        _ctx: &mut Self::CTX,
    ) -> Result<()> {
        limits::check_declared_length(session, self.max_body_size)
    }

    /// Runs on each piece of request body: enforces `max_body_size`.
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        ctx.body.add(body.as_ref(), self.max_body_size)
    }

    /// Runs once the request header is read: picks the backend.
    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        let Some(addr) = self.pool.select() else {
            return Err(Error::explain(
                ErrorType::HTTPStatus(503),
                format!("pool {} has no available backend", self.pool.name),
            ));
        };
        ctx.upstream = Some(addr);
        Ok(Box::new(tls::upstream_peer(self.pool.tls.as_ref(), addr)))
    }

    /// Runs before the request goes upstream: adds X-Forwarded-For/-Proto.
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        _ctx: &mut Self::CTX,
    ) -> Result<()> {
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        forwarded::apply(upstream_request, client, tls::downstream_scheme(session))
    }

    /// Runs once per request, after the response or the error: metrics.
    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Self::CTX) {
        let status = session.response_written().map(|r| r.status.as_u16());
        metrics::http_request(&self.listener, &self.pool.name, status);
        tracing::debug!(
            listener = %self.listener,
            upstream = ?ctx.upstream,
            status = ?status,
            "request done"
        );
    }
}

/// One Pingora service per listener, each bound to its address.
pub fn services(
    conf: &Arc<ServerConf>,
    config: &Config,
) -> anyhow::Result<Vec<Box<dyn ServiceWithDependents>>> {
    let pools: Vec<Arc<UpstreamPool>> = config
        .pools
        .iter()
        .map(|p| UpstreamPool::new(p).map(Arc::new))
        .collect::<anyhow::Result<_>>()?;
    config
        .listeners
        .iter()
        .map(|l: &Listener| {
            let proxy = EdgeProxy {
                listener: Arc::from(l.name.as_str()),
                pool: Arc::clone(&pools[l.pool]),
                max_body_size: l.transport.limits.max_body_size,
            };
            listener::service(conf, l, proxy)
        })
        .collect()
}
