//! The L7 reverse proxy: one Pingora HTTP proxy service per listener.

mod forwarded;

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
    proxy::http_proxy_service_with_name,
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
}

impl UpstreamPool {
    /// Builds the selector for `pool`.
    pub fn new(pool: &Pool) -> std::io::Result<Self> {
        Ok(Self {
            name: Arc::from(pool.name.as_str()),
            balancer: LoadBalancer::try_from_iter(pool.backends.iter().copied())?,
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
}

/// Per-request state.
#[derive(Default)]
pub struct RequestCtx {
    upstream: Option<SocketAddr>,
}

#[async_trait]
impl ProxyHttp for EdgeProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> Self::CTX {
        RequestCtx::default()
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
        Ok(Box::new(HttpPeer::new(addr, false, String::new())))
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
        forwarded::apply(upstream_request, client, "http")
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
) -> std::io::Result<Vec<Box<dyn ServiceWithDependents>>> {
    let pools: Vec<Arc<UpstreamPool>> = config
        .pools
        .iter()
        .map(|p| UpstreamPool::new(p).map(Arc::new))
        .collect::<std::io::Result<_>>()?;
    Ok(config
        .listeners
        .iter()
        .map(|l: &Listener| {
            let proxy = EdgeProxy {
                listener: Arc::from(l.name.as_str()),
                pool: Arc::clone(&pools[l.pool]),
            };
            let mut service =
                http_proxy_service_with_name(conf, proxy, &format!("listener {}", l.name));
            service.add_tcp(&l.address.to_string());
            Box::new(service) as Box<dyn ServiceWithDependents>
        })
        .collect())
}
