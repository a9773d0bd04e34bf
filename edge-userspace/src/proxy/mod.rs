//! The L7 reverse proxy: one Pingora HTTP proxy service per listener.

mod forwarded;

use crate::{
    cache::{self, filters as cache_filters},
    compression,
    config::{CompressionPolicy, Config, Listener, Pool},
    metrics,
};
use async_trait::async_trait;
use bytes::Bytes;
use pingora::cache::key::HashBinary;
use pingora::cache::{CacheKey, CacheMeta, ForcedFreshness, HitHandler, RespCacheable};
use pingora::http::{RequestHeader, ResponseHeader};
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
    /// The process cache and this listener's policy, if caching is set up.
    cache: Option<cache::ListenerCache>,
    /// This listener's default compression.
    compression: Option<Arc<CompressionPolicy>>,
}

/// Per-request state.
#[derive(Default)]
pub struct RequestCtx {
    upstream: Option<SocketAddr>,
    /// Cache policy and status of this request.
    cache: cache::RequestCache,
    /// Compression policy and encoder of this request.
    compression: compression::RequestCompression,
}

#[async_trait]
impl ProxyHttp for EdgeProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> Self::CTX {
        RequestCtx::default()
    }

    /// Runs first: adopts the cache and compression policies; answers
    /// PURGE requests that may not purge.
    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        compression::request_filter(
            session.req_header(),
            self.compression.as_ref(),
            &mut ctx.compression,
        );
        cache_filters::request_filter(session, self.cache.as_ref(), &mut ctx.cache).await
    }

    /// Turns the cache on for requests that may use it.
    fn request_cache_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<()> {
        cache_filters::request_cache_filter(session, self.cache.as_ref(), &mut ctx.cache)
    }

    /// The cache key: listener, host, path and query.
    fn cache_key_callback(&self, session: &Session, ctx: &mut Self::CTX) -> Result<CacheKey> {
        cache_filters::cache_key_callback(session, self.cache.as_ref(), &ctx.cache)
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

    /// Runs on every response (also from cache): cache status header and
    /// compression.
    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        cache_filters::response_filter(session, resp, self.cache.as_ref(), &mut ctx.cache)?;
        compression::response_filter(resp, &mut ctx.compression)
    }

    /// Compresses the body as it streams.
    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<Option<std::time::Duration>> {
        compression::response_body_filter(body, end_of_stream, &mut ctx.compression)?;
        Ok(None)
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
    process_cache: Option<&'static cache::Cache>,
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
                cache: process_cache.map(|c| cache::ListenerCache {
                    cache: c,
                    policy: l.cache.clone().map(Arc::new),
                    namespace: Arc::from(l.name.as_str()),
                }),
                compression: l.compression.clone().map(Arc::new),
            };
            let mut service =
                http_proxy_service_with_name(conf, proxy, &format!("listener {}", l.name));
            service.add_tcp(&l.address.to_string());
            Box::new(service) as Box<dyn ServiceWithDependents>
        })
        .collect())
}
