//! RFC 9111 decisions: may a request use the cache, may a response be
//! stored, and for how long is it fresh (and then usable stale).
//!
//! pingora-cache parses Cache-Control and computes validators; what a
//! shared cache may store is decided here, with the listener's (or route's)
//! [`CachePolicy`] supplying what the response leaves open. The response's
//! age is in [`super::age`], the fields it keeps in [`super::fields`], the
//! targeted field that may replace Cache-Control in [`super::targeted`].

use super::{
    age::{self, Exchange},
    fields, targeted,
};
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

/// The directives that decide caching for this cache: those of the
/// policy's targeted field (RFC 9213) when it applies, else Cache-Control.
/// The flag says whether the targeted field applies (then Expires does not).
fn directives(policy: &CachePolicy, resp: &ResponseHeader) -> (Option<CacheControl>, bool) {
    if let Some(name) = &policy.targeted_cache_control
        && targeted::applies(&resp.headers, name)
    {
        return (
            CacheControl::from_resp_headers_named(name.as_str(), resp),
            true,
        );
    }
    (CacheControl::from_resp_headers(resp), false)
}

/// The freshness lifetime (RFC 9111 §4.2.1) explicitly given: s-maxage or
/// max-age, else (without a targeted field) `Expires` minus `Date`, so an
/// origin whose clock is off gets the lifetime it meant; an invalid
/// Expires is a time in the past (§5.3). `date` is the response's Date, or
/// when it arrived if it has none.
fn explicit_lifetime(
    cc: Option<&CacheControl>,
    targeted: bool,
    resp: &ResponseHeader,
    date: SystemTime,
) -> Option<Duration> {
    if let Some(ttl) = cc.and_then(|cc| cc.fresh_duration()) {
        return Some(ttl);
    }
    if targeted {
        return None;
    }
    calculate_expires_header_time(resp)
        .map(|expires| expires.duration_since(date).unwrap_or(Duration::ZERO))
}

/// Decides whether `resp` (the answer to a request that carried
/// Authorization if `authorized`, exchanged at `exchange`) may be stored,
/// and builds its metadata: freshness counted from the response's own age
/// (RFC 9111 §4.2.3), so that a response that was already old when it
/// arrived is fresh only for what is left and hits report its true `Age`.
pub fn response_cacheable(
    policy: &CachePolicy,
    resp: &ResponseHeader,
    authorized: bool,
    exchange: Exchange,
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
    let (cc, targeted) = directives(policy, resp);
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

    let now = exchange.received;
    let date = age::date_value(&resp.headers);
    let lifetime = match explicit_lifetime(cc.as_ref(), targeted, resp, date.unwrap_or(now)) {
        Some(lifetime) => lifetime,
        None if policy.heuristic_freshness && heuristically_cacheable(status) => policy.default_ttl,
        None => return Uncacheable(NoCacheReason::OriginNotCache),
    };
    // The response's age is counted from an epoch before its arrival:
    // Pingora measures both freshness and the Age it sends from it.
    let epoch = now
        .checked_sub(age::initial_age(&resp.headers, exchange))
        .unwrap_or(now);
    let fresh_until = epoch.checked_add(lifetime).unwrap_or(now);
    // Not fresh at all: stored only if it can be revalidated, else useless.
    let fresh_until = if fresh_until <= now {
        fresh_until.min(now.checked_sub(Duration::from_secs(1)).unwrap_or(now))
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
    // Per-connection fields are not part of the stored representation
    // (RFC 9111 §3.1); the Age we send is computed from the epoch.
    fields::strip_hop_by_hop(&mut header);
    header.remove_header(&header::AGE);
    // RFC 9110 §6.6.1: a response cached without Date gets the time it
    // arrived, so later age and Expires arithmetic has a Date to use; one
    // whose Date was named by Connection or `private="date"` (and so just
    // removed) keeps the Date it was read with.
    match date {
        None => {
            header.remove_header(&header::DATE);
            let _ = header.insert_header(header::DATE, httpdate::fmt_http_date(now));
        }
        Some(d) if !header.headers.contains_key(header::DATE) => {
            let _ = header.insert_header(header::DATE, httpdate::fmt_http_date(d));
        }
        Some(_) => {}
    }
    let mut meta = CacheMeta::new(fresh_until, now, swr, sie, header);
    if epoch != now {
        meta.set_epoch_override(epoch);
    }
    RespCacheable::Cacheable(meta)
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

    /// When the test responses arrive: a whole second, as HTTP dates
    /// have no fractions.
    fn arrival() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn at() -> Exchange {
        Exchange::at(arrival())
    }

    fn date(offset: i64) -> String {
        let t = if offset >= 0 {
            arrival() + Duration::from_secs(offset.unsigned_abs())
        } else {
            arrival() - Duration::from_secs(offset.unsigned_abs())
        };
        httpdate::fmt_http_date(t)
    }

    fn cacheable(c: RespCacheable) -> Option<CacheMeta> {
        match c {
            RespCacheable::Cacheable(m) => Some(m),
            RespCacheable::Uncacheable(_) => None,
        }
    }

    /// How long after arrival the response stays fresh.
    fn fresh_secs(c: RespCacheable) -> Option<u64> {
        cacheable(c).map(|m| {
            m.fresh_until()
                .duration_since(arrival())
                .map_or(0, |d| d.as_secs())
        })
    }

    /// How old the response was on arrival, as the Age of a hit counts it.
    fn age_secs(c: RespCacheable) -> Option<u64> {
        cacheable(c).map(|m| {
            arrival()
                .duration_since(m.epoch())
                .map_or(0, |d| d.as_secs())
        })
    }

    #[test]
    fn freshness_sources() {
        let p = CachePolicy::default();
        let c = |h: &[(&str, &str)]| fresh_secs(response_cacheable(&p, &resp(200, h), false, at()));
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
            fresh_secs(response_cacheable(&h, &resp(200, &[]), false, at())),
            Some(30)
        );
        assert_eq!(
            fresh_secs(response_cacheable(&h, &resp(302, &[]), false, at())),
            None
        );
        assert_eq!(
            fresh_secs(response_cacheable(&h, &resp(206, &[]), false, at())),
            None
        );
    }

    #[test]
    fn authorization_needs_explicit_permission() {
        let p = CachePolicy::default();
        let c = |h: &[(&str, &str)]| fresh_secs(response_cacheable(&p, &resp(200, h), true, at()));
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
        let meta = |h: &[(&str, &str)]| match response_cacheable(&p, &resp(200, h), false, at()) {
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
    fn upstream_age_and_date_shorten_freshness_and_set_the_age() {
        let p = CachePolicy::default();
        let c = |h: &[(&str, String)]| {
            let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let r = response_cacheable(&p, &resp(200, &h), false, at());
            let age = age_secs(response_cacheable(&p, &resp(200, &h), false, at()));
            (fresh_secs(r), age)
        };
        let cc = |v: &str| ("cache-control", v.to_string());
        // Age from an upstream cache.
        assert_eq!(
            c(&[cc("max-age=60"), ("age", "50".into())]),
            (Some(10), Some(50))
        );
        // Age implied by Date (apparent_age).
        assert_eq!(
            c(&[cc("max-age=60"), ("date", date(-45))]),
            (Some(15), Some(45))
        );
        // Both: the larger.
        assert_eq!(
            c(&[cc("max-age=60"), ("date", date(-45)), ("age", "5".into())]),
            (Some(15), Some(45))
        );
        // A Date from a fast clock implies no age.
        assert_eq!(
            c(&[cc("max-age=60"), ("date", date(3600))]),
            (Some(60), Some(0))
        );
        // Expires counts from Date, not from our clock.
        assert_eq!(
            c(&[("date", date(3600)), ("expires", date(3602))]),
            (Some(2), Some(0))
        );
        assert_eq!(
            c(&[("date", date(-10)), ("expires", date(20))]),
            (Some(20), Some(10))
        );
        // Older than its lifetime: stale on arrival.
        assert_eq!(
            c(&[
                cc("max-age=60"),
                ("age", "90".into()),
                ("etag", "\"1\"".into())
            ]),
            (Some(0), Some(90))
        );
        assert_eq!(c(&[cc("max-age=60"), ("age", "90".into())]).0, None);
        // The round trip counts too.
        let slow = Exchange {
            requested: arrival() - Duration::from_secs(3),
            received: arrival(),
        };
        let m = cacheable(response_cacheable(
            &p,
            &resp(200, &[("cache-control", "max-age=60")]),
            false,
            slow,
        ))
        .unwrap();
        assert_eq!(
            m.fresh_until().duration_since(arrival()).unwrap(),
            Duration::from_secs(57)
        );
    }

    #[test]
    fn a_date_named_by_connection_or_private_is_kept_all_the_same() {
        // Found by the cache_control fuzz target (tests/fuzz/artifacts-found).
        let p = CachePolicy::default();
        for named in [
            ("connection", "date"),
            ("cache-control", "max-age=60, private=\"date\""),
        ] {
            let r = resp(
                200,
                &[("cache-control", "max-age=60"), ("date", &date(-5)), named],
            );
            let meta = cacheable(response_cacheable(&p, &r, false, at())).unwrap();
            let dates: Vec<_> = meta.headers().get_all("date").iter().collect();
            assert_eq!(dates, [date(-5).as_str()], "{named:?}");
        }
    }

    #[test]
    fn stored_headers_lose_hop_by_hop_fields_and_gain_a_date() {
        let p = CachePolicy::default();
        let r = resp(
            200,
            &[
                ("cache-control", "max-age=60"),
                ("connection", "x-hop"),
                ("x-hop", "1"),
                ("keep-alive", "timeout=5"),
                ("transfer-encoding", "chunked"),
                ("upgrade", "h2c"),
                ("age", "3"),
                ("x-kept", "2"),
            ],
        );
        let meta = cacheable(response_cacheable(&p, &r, false, at())).unwrap();
        let h = meta.headers();
        for name in [
            "connection",
            "x-hop",
            "keep-alive",
            "transfer-encoding",
            "upgrade",
            "age",
        ] {
            assert!(!h.contains_key(name), "{name} stored");
        }
        assert_eq!(h.get("x-kept").unwrap(), "2");
        assert_eq!(h.get("date").unwrap().to_str().unwrap(), date(0));
        let dated = resp(200, &[("cache-control", "max-age=60"), ("date", &date(-5))]);
        let meta = cacheable(response_cacheable(&p, &dated, false, at())).unwrap();
        assert_eq!(
            meta.headers().get("date").unwrap().to_str().unwrap(),
            date(-5)
        );
    }

    #[test]
    fn a_targeted_field_replaces_cache_control_and_expires() {
        let p = CachePolicy::default();
        let c = |h: &[(&str, &str)]| fresh_secs(response_cacheable(&p, &resp(200, h), false, at()));
        let cdn = |v| ("cdn-cache-control", v);
        assert_eq!(
            c(&[("cache-control", "no-store"), cdn("max-age=600")]),
            Some(600)
        );
        assert_eq!(
            c(&[("cache-control", "private"), cdn("max-age=600")]),
            Some(600)
        );
        assert_eq!(c(&[("cache-control", "max-age=60"), cdn("no-store")]), None);
        assert_eq!(c(&[("cache-control", "max-age=60"), cdn("private")]), None);
        // 'none' is no directive: nothing explicit, and Expires is ignored.
        assert_eq!(c(&[("cache-control", "no-store"), cdn("none")]), None);
        let expires = date(3600);
        assert_eq!(c(&[("expires", &expires), cdn("none")]), None);
        assert_eq!(c(&[("expires", &expires), cdn("max-age=5")]), Some(5));
        // Invalid or empty: Cache-Control decides.
        assert_eq!(
            c(&[("cache-control", "max-age=60"), cdn("no-store,,")]),
            Some(60)
        );
        assert_eq!(c(&[("cache-control", "max-age=60"), cdn("")]), Some(60));
        assert_eq!(
            c(&[("cache-control", "max-age=60"), cdn("Max-Age=5")]),
            Some(60)
        );
        // Its s-maxage and stale windows are the ones used.
        assert_eq!(c(&[cdn("max-age=600, s-maxage=30")]), Some(30));
        let windows = cacheable(response_cacheable(
            &p,
            &resp(
                200,
                &[
                    ("cache-control", "max-age=1, stale-while-revalidate=99"),
                    cdn("max-age=1, stale-while-revalidate=7"),
                ],
            ),
            false,
            at(),
        ))
        .unwrap();
        assert_eq!(windows.stale_while_revalidate_sec(), 7);
        // An authorized request needs the targeted field's permission.
        let auth =
            |h: &[(&str, &str)]| fresh_secs(response_cacheable(&p, &resp(200, h), true, at()));
        assert_eq!(
            auth(&[("cache-control", "public, max-age=60"), cdn("max-age=60")]),
            None
        );
        assert_eq!(auth(&[cdn("public, max-age=60")]), Some(60));
        // Another target, or none.
        let other = CachePolicy {
            targeted_cache_control: Some(http::HeaderName::from_static("edge-cache-control")),
            ..CachePolicy::default()
        };
        let o =
            |h: &[(&str, &str)]| fresh_secs(response_cacheable(&other, &resp(200, h), false, at()));
        assert_eq!(
            o(&[("cache-control", "no-store"), cdn("max-age=600")]),
            None
        );
        assert_eq!(
            o(&[
                ("cache-control", "no-store"),
                ("edge-cache-control", "max-age=9")
            ]),
            Some(9)
        );
        let off = CachePolicy {
            targeted_cache_control: None,
            ..CachePolicy::default()
        };
        assert_eq!(
            fresh_secs(response_cacheable(
                &off,
                &resp(200, &[("cache-control", "max-age=60"), cdn("no-store")]),
                false,
                at()
            )),
            Some(60)
        );
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
