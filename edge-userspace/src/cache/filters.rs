//! What the proxy's `ProxyHttp` cache callbacks do. Each callback in
//! `proxy/mod.rs` is a one-line call to the function of the same name here,
//! so the proxy can be rebuilt (routes, policies) without touching this.

use super::{ListenerCache, RequestCache, age::Exchange, fields, invalidate, key, policy, storage};
use crate::metrics;
use http::header;
use pingora::cache::{
    CacheKey, CacheMeta, CacheOptionOverrides, CachePhase, ForcedFreshness, NoCacheReason,
    RespCacheable, key::HashBinary,
};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use pingora::{Error, ErrorSource, Result};
use std::time::SystemTime;

/// The method that removes a URL (every variant) from the cache.
pub const PURGE: &str = "PURGE";

fn is_purge_method(req: &RequestHeader) -> bool {
    req.method.as_str() == PURGE
}

/// `request_filter`: adopts the listener's policy unless the proxy already
/// chose one (a route's), and answers PURGE requests that may not purge:
/// 405 where nothing is cached, 403 to clients outside `purge_allow`.
/// Returns `true` when it has answered.
pub async fn request_filter(
    session: &mut Session,
    listener: Option<&ListenerCache>,
    state: &mut RequestCache,
) -> Result<bool> {
    if state.policy.is_none() {
        state.policy = listener.and_then(|l| l.policy.clone());
    }
    if !is_purge_method(session.req_header()) {
        return Ok(false);
    }
    let enabled = state.policy.as_ref().is_some_and(|p| p.enabled);
    let Some(listener) = listener.filter(|_| enabled) else {
        crate::proxy::respond_error(session, 405).await?;
        return Ok(true);
    };
    let client = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip().to_canonical());
    let allowed = client.is_some_and(|ip| {
        listener
            .cache
            .config()
            .purge_allow
            .iter()
            .any(|net| net.contains(&ip))
    });
    if !allowed {
        crate::proxy::respond_error(session, 403).await?;
        return Ok(true);
    }
    Ok(false)
}

/// `request_cache_filter`: turns the cache on for requests that may use it.
pub fn request_cache_filter(
    session: &mut Session,
    listener: Option<&ListenerCache>,
    state: &mut RequestCache,
) -> Result<()> {
    let Some(listener) = listener else {
        return Ok(());
    };
    if !state.policy.as_ref().is_some_and(|p| p.enabled) {
        return Ok(());
    }
    let req = session.req_header();
    if !is_purge_method(req)
        && let Err(skip) = policy::request_eligible(req)
    {
        state.skip = Some(skip);
        return Ok(());
    }
    state.authorized = state.authenticated || req.headers.contains_key(header::AUTHORIZATION);
    state.requested_at = Some(SystemTime::now());
    let cache = listener.cache;
    let mut overrides = CacheOptionOverrides::default();
    overrides.wait_timeout = Some(cache.config().lock_timeout);
    session.cache.enable(
        storage::as_storage(cache.storage()),
        Some(cache.eviction),
        None,
        Some(cache.lock),
        Some(overrides),
    );
    session.cache.set_max_file_size_bytes(
        usize::try_from(cache.config().max_object_size).unwrap_or(usize::MAX),
    );
    Ok(())
}

/// `cache_key_callback`: the request's namespace (the listener's name
/// unless a route set one), host, path and query.
pub fn cache_key_callback(
    session: &Session,
    listener: Option<&ListenerCache>,
    state: &RequestCache,
) -> Result<CacheKey> {
    let namespace = match (&state.namespace, listener) {
        (Some(ns), _) => ns,
        (None, Some(l)) => &l.namespace,
        (None, None) => "",
    };
    Ok(key::request_key(namespace, session.req_header()))
}

/// `cache_vary_filter`.
pub fn cache_vary_filter(meta: &CacheMeta, req: &RequestHeader) -> Option<HashBinary> {
    key::variance(meta, req)
}

/// `upstream_response_filter`: keeps a 304 for [`response_cache_filter`],
/// which Pingora then calls with the stored response (RFC 9111 §4.3.4).
/// A 304 that is no revalidation's is never looked at: Pingora does not
/// run the cache filter for it.
pub fn upstream_response_filter(resp: &ResponseHeader, state: &mut RequestCache) {
    if resp.status == http::StatusCode::NOT_MODIFIED {
        state.not_modified = Some(Box::new(resp.clone()));
    }
}

/// `response_cache_filter`. After a 304, `resp` is the stored response
/// with the few fields Pingora merges; every other field of the 304 is
/// merged here, so that what is stored and served is the updated response.
pub fn response_cache_filter(resp: &ResponseHeader, state: &RequestCache) -> Result<RespCacheable> {
    let Some(p) = &state.policy else {
        return Ok(RespCacheable::Uncacheable(NoCacheReason::NeverEnabled));
    };
    let received = SystemTime::now();
    let exchange = Exchange {
        requested: state.requested_at.unwrap_or(received),
        received,
    };
    Ok(match &state.not_modified {
        Some(not_modified) => {
            let merged = fields::merge_not_modified(resp, not_modified, received);
            policy::response_cacheable(p, &merged, state.authorized, exchange)
        }
        None => policy::response_cacheable(p, resp, state.authorized, exchange),
    })
}

/// `cache_hit_filter`: a client's `no-cache` makes a fresh hit revalidate.
pub fn cache_hit_filter(session: &Session, is_fresh: bool) -> Option<ForcedFreshness> {
    (is_fresh && policy::request_wants_revalidation(session.req_header()))
        .then_some(ForcedFreshness::ForceExpired)
}

/// `should_serve_stale`: during revalidation (`error` is `None`) whenever
/// the response's stale-while-revalidate window allows (pingora checked
/// it); on an upstream failure (unreachable, 5xx) within stale-if-error.
pub fn should_serve_stale(error: Option<&Error>) -> bool {
    error.is_none_or(|e| e.esource() == &ErrorSource::Upstream)
}

/// `is_purge`: PURGE from an allowed client (others were answered in
/// [`request_filter`]).
pub fn is_purge(session: &Session) -> bool {
    is_purge_method(session.req_header()) && session.cache.enabled()
}

/// The status reported for a response, from what the cache did.
fn status(session: &Session, state: &RequestCache) -> Option<&'static str> {
    if !state.policy.as_ref().is_some_and(|p| p.enabled) || is_purge_method(session.req_header()) {
        return None;
    }
    if state.fresh_hit {
        return Some("HIT");
    }
    Some(match session.cache.phase() {
        CachePhase::Hit => "HIT",
        CachePhase::Miss => "MISS",
        CachePhase::Stale => "STALE",
        CachePhase::StaleUpdating => "UPDATING",
        CachePhase::Expired => "EXPIRED",
        CachePhase::Revalidated | CachePhase::RevalidatedNoCache(_) => "REVALIDATED",
        CachePhase::Bypass => "BYPASS",
        CachePhase::Disabled(NoCacheReason::NeverEnabled) if state.skip.is_some() => "BYPASS",
        CachePhase::Disabled(
            NoCacheReason::OriginNotCache
            | NoCacheReason::ResponseTooLarge
            | NoCacheReason::Custom(_),
        ) => "UNCACHEABLE",
        CachePhase::Disabled(_) | CachePhase::Uninit | CachePhase::CacheKey => "MISS",
    })
}

/// Removes what the cache holds for the target of an unsafe request that
/// succeeded, and for its same-host `Location` and `Content-Location`
/// (RFC 9111 §4.4), every Vary variant of each. A fetch of the old
/// representation still in flight may store it again afterwards: the
/// invalidation is not a lock.
fn invalidate(
    req: &RequestHeader,
    resp: &ResponseHeader,
    listener: &ListenerCache,
    state: &RequestCache,
) {
    if is_purge_method(req) || !invalidate::invalidates(&req.method, resp.status) {
        return;
    }
    let namespace = state.namespace.as_deref().unwrap_or(&listener.namespace);
    let host = key::host(req);
    let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
    listener.cache.purge(namespace, host, path);
    for (host, path) in invalidate::locations(host, path, &resp.headers) {
        listener.cache.purge(namespace, &host, &path);
    }
}

/// `response_filter`: invalidates after unsafe requests, records the cache
/// status and reports it in the status header (if configured).
pub fn response_filter(
    session: &Session,
    resp: &mut ResponseHeader,
    listener: Option<&ListenerCache>,
    state: &mut RequestCache,
) -> Result<()> {
    let Some(listener) = listener else {
        return Ok(());
    };
    invalidate(session.req_header(), resp, listener, state);
    let Some(status) = status(session, state) else {
        return Ok(());
    };
    // A background revalidation is not a client's response.
    if state.status.is_none() && session.subrequest_ctx.is_none() {
        metrics::cache_response(&listener.namespace, status);
    }
    state.status = Some(status);
    if let Some(name) = &listener.cache.config().status_header {
        resp.insert_header(name.clone(), status)?;
    }
    Ok(())
}
