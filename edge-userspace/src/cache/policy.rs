//! RFC 9111 decisions: may a request use the cache, may a response be
//! stored, and for how long is it fresh (and then usable stale).
//!
//! pingora-cache parses Cache-Control and computes validators; what a
//! shared cache may store is decided here, with the listener's (or route's)
//! [`CachePolicy`] supplying what the response leaves open.

use crate::config::CachePolicy;
use http::{HeaderMap, Method, StatusCode, header};
use pingora::cache::{
    CacheMeta, NoCacheReason, RespCacheable,
    cache_control::{CacheControl, Cacheable, InterpretCacheControl},
    filters::calculate_expires_header_time,
};
use pingora::http::{RequestHeader, ResponseHeader};
use std::time::{Duration, SystemTime};

/// Why a request does not use the cache at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Only GET and HEAD are cached.
    Method,
    /// The request said `Cache-Control: no-store`.
    NoStore,
}

/// Whether `req` may be answered from, and stored in, the cache.
pub fn request_eligible(req: &RequestHeader) -> Result<(), Skip> {
    if req.method != Method::GET && req.method != Method::HEAD {
        return Err(Skip::Method);
    }
    if CacheControl::from_req_headers(req).is_some_and(|cc| cc.no_store()) {
        return Err(Skip::NoStore);
    }
    Ok(())
}

/// Whether the request asks that a stored response be revalidated before
/// use (`Cache-Control: no-cache`, or `Pragma: no-cache` without
/// Cache-Control, RFC 9111 §5.4).
pub fn request_wants_revalidation(req: &RequestHeader) -> bool {
    match CacheControl::from_req_headers(req) {
        Some(cc) => cc.no_cache() || cc.max_age().ok().flatten() == Some(0),
        None => req
            .headers
            .get(header::PRAGMA)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"no-cache")),
    }
}

/// Statuses cacheable by default (RFC 9110 §15.1): only these may be
/// stored on heuristic freshness.
fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Decides whether `resp` (the answer to a request that carried
/// Authorization if `authorized`) may be stored, and builds its metadata.
pub fn response_cacheable(
    policy: &CachePolicy,
    resp: &ResponseHeader,
    authorized: bool,
) -> RespCacheable {
    use RespCacheable::Uncacheable;
    let status = resp.status;
    // Partial and not-modified answers are never the stored representation;
    // informational ones are not final.
    if status == StatusCode::PARTIAL_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status.is_informational()
    {
        return Uncacheable(NoCacheReason::OriginNotCache);
    }
    let cc = CacheControl::from_resp_headers(resp);
    if let Some(cc) = &cc
        && cc.is_cacheable() == Cacheable::No
    {
        return Uncacheable(NoCacheReason::OriginNotCache);
    }
    // RFC 9111 §3.5: a shared cache stores an answer to an authorized
    // request only if the response explicitly allows it.
    if authorized
        && !cc
            .as_ref()
            .is_some_and(|cc| cc.allow_caching_authorized_req())
    {
        return Uncacheable(NoCacheReason::Custom("authorization"));
    }
    // `Vary: *` can never match a later request.
    if vary_names(&resp.headers).any(|n| n == "*") {
        return Uncacheable(NoCacheReason::Custom("vary-star"));
    }
    // Like nginx and Varnish: a response that sets a cookie is someone's
    // session, not a shared representation.
    if resp.headers.contains_key(header::SET_COOKIE) {
        return Uncacheable(NoCacheReason::Custom("set-cookie"));
    }

    let now = SystemTime::now();
    // The response's age when it reached us (RFC 9111 §4.2.3), so an
    // upstream cache's time is not counted twice.
    let age = resp
        .headers
        .get(header::AGE)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_secs);
    let explicit = cc
        .as_ref()
        .and_then(|cc| cc.fresh_duration())
        .map(|ttl| now + ttl.saturating_sub(age))
        .or_else(|| calculate_expires_header_time(resp));
    let fresh_until = match explicit {
        Some(t) => t,
        None if policy.heuristic_freshness && heuristically_cacheable(status) => {
            now + policy.default_ttl.saturating_sub(age)
        }
        None => return Uncacheable(NoCacheReason::OriginNotCache),
    };
    // Not fresh at all: stored only if it can be revalidated, else useless.
    let fresh_until = if fresh_until <= now {
        now.checked_sub(Duration::from_secs(1)).unwrap_or(now)
    } else {
        fresh_until
    };

    // no-cache and must-revalidate forbid serving stale without asking
    // the origin; pingora already zeroes must-revalidate and s-maxage.
    let no_cache = cc.as_ref().is_some_and(|cc| cc.no_cache());
    let (swr, sie) = if no_cache {
        (0, 0)
    } else {
        let pick = |given: Option<Duration>, default: Duration| {
            u32::try_from(given.unwrap_or(default).as_secs()).unwrap_or(u32::MAX)
        };
        (
            pick(
                cc.as_ref()
                    .and_then(|cc| cc.serve_stale_while_revalidate_duration()),
                policy.stale_while_revalidate,
            ),
            pick(
                cc.as_ref()
                    .and_then(|cc| cc.serve_stale_if_error_duration()),
                policy.stale_if_error,
            ),
        )
    };
    // Already stale, with nothing to revalidate with and no stale window:
    // storing it would only cost memory.
    let validator =
        resp.headers.contains_key(header::ETAG) || resp.headers.contains_key(header::LAST_MODIFIED);
    if fresh_until <= now && !validator && swr == 0 && sie == 0 {
        return Uncacheable(NoCacheReason::OriginNotCache);
    }
    let mut header = resp.clone();
    if let Some(cc) = &cc {
        cc.strip_private_headers(&mut header);
    }
    // Hop-by-hop and per-connection fields are not part of the stored
    // representation; the Age we send is computed from our own clock.
    for h in [header::CONNECTION, header::AGE] {
        header.remove_header(&h);
    }
    RespCacheable::Cacheable(CacheMeta::new(fresh_until, now, swr, sie, header))
}

/// The field names a response varies on, lower case.
pub fn vary_names(headers: &HeaderMap) -> impl Iterator<Item = String> + '_ {
    headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, headers: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(status, None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn fresh_secs(c: RespCacheable) -> Option<u64> {
        match c {
            RespCacheable::Cacheable(m) => Some(m.fresh_sec()),
            RespCacheable::Uncacheable(_) => None,
        }
    }

    #[test]
    fn freshness_sources() {
        let p = CachePolicy::default();
        let c = |h: &[(&str, &str)]| fresh_secs(response_cacheable(&p, &resp(200, h), false));
        assert_eq!(c(&[("cache-control", "max-age=60")]), Some(60));
        assert_eq!(c(&[("cache-control", "max-age=60, s-maxage=5")]), Some(5));
        assert_eq!(
            c(&[("cache-control", "max-age=60"), ("age", "20")]),
            Some(40)
        );
        assert_eq!(c(&[("cache-control", "no-store, max-age=60")]), None);
        assert_eq!(c(&[("cache-control", "private, max-age=60")]), None);
        assert_eq!(
            c(&[("cache-control", "no-cache"), ("etag", "\"1\"")]),
            Some(0)
        );
        assert_eq!(
            c(&[("cache-control", "no-cache")]),
            None,
            "stale and no validator"
        );
        assert_eq!(c(&[("cache-control", "max-age=0")]), None);
        assert_eq!(
            c(&[("expires", "garbage"), ("last-modified", "x")]),
            Some(0)
        );
        assert_eq!(c(&[]), None, "no heuristics by default");
        assert_eq!(c(&[("vary", "*"), ("cache-control", "max-age=9")]), None);
        assert_eq!(
            c(&[("set-cookie", "a=b"), ("cache-control", "max-age=9")]),
            None
        );
        let h = CachePolicy {
            heuristic_freshness: true,
            default_ttl: Duration::from_secs(30),
            ..CachePolicy::default()
        };
        assert_eq!(
            fresh_secs(response_cacheable(&h, &resp(200, &[]), false)),
            Some(30)
        );
        assert_eq!(
            fresh_secs(response_cacheable(&h, &resp(302, &[]), false)),
            None
        );
        assert_eq!(
            fresh_secs(response_cacheable(&h, &resp(206, &[]), false)),
            None
        );
    }

    #[test]
    fn authorization_needs_explicit_permission() {
        let p = CachePolicy::default();
        let c = |h: &[(&str, &str)]| fresh_secs(response_cacheable(&p, &resp(200, h), true));
        assert_eq!(c(&[("cache-control", "max-age=60")]), None);
        assert_eq!(c(&[("cache-control", "public, max-age=60")]), Some(60));
        assert_eq!(c(&[("cache-control", "s-maxage=60")]), Some(60));
        assert_eq!(
            c(&[("cache-control", "max-age=60, must-revalidate")]),
            Some(60)
        );
    }

    #[test]
    fn stale_windows() {
        let p = CachePolicy {
            stale_while_revalidate: Duration::from_secs(7),
            stale_if_error: Duration::from_secs(8),
            ..CachePolicy::default()
        };
        let meta = |h: &[(&str, &str)]| match response_cacheable(&p, &resp(200, h), false) {
            RespCacheable::Cacheable(m) => (m.stale_while_revalidate_sec(), m.stale_if_error_sec()),
            RespCacheable::Uncacheable(r) => panic!("uncacheable: {r:?}"),
        };
        assert_eq!(meta(&[("cache-control", "max-age=1")]), (7, 8));
        assert_eq!(
            meta(&[(
                "cache-control",
                "max-age=1, stale-while-revalidate=3, stale-if-error=4"
            )]),
            (3, 4)
        );
        assert_eq!(
            meta(&[("cache-control", "max-age=1, must-revalidate")]),
            (0, 0)
        );
        assert_eq!(
            meta(&[("cache-control", "no-cache"), ("etag", "\"1\"")]),
            (0, 0)
        );
        assert_eq!(meta(&[("cache-control", "s-maxage=1")]), (0, 0));
    }

    #[test]
    fn requests() {
        let req = |m: &str, h: &[(&str, &str)]| {
            let mut r = RequestHeader::build(m, b"/", None).unwrap();
            for (k, v) in h {
                r.append_header(k.to_string(), *v).unwrap();
            }
            r
        };
        assert_eq!(request_eligible(&req("GET", &[])), Ok(()));
        assert_eq!(request_eligible(&req("HEAD", &[])), Ok(()));
        assert_eq!(request_eligible(&req("POST", &[])), Err(Skip::Method));
        assert_eq!(
            request_eligible(&req("GET", &[("cache-control", "no-store")])),
            Err(Skip::NoStore)
        );
        assert!(request_wants_revalidation(&req(
            "GET",
            &[("cache-control", "no-cache")]
        )));
        assert!(request_wants_revalidation(&req(
            "GET",
            &[("pragma", "no-cache")]
        )));
        assert!(!request_wants_revalidation(&req("GET", &[])));
    }
}
