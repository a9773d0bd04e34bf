//! The cache's RFC 9111 decisions on arbitrary request and response heads:
//! Cache-Control (and Pragma, Age, Expires, Vary, validators, cookies,
//! Authorization) through `cache::policy`, then the stored metadata through
//! the cache key, the Vary variance and the serialisation the store uses.
//!
//! Input (see `edge_fuzz::head`): the request head, a blank line, the
//! response head, whose start line is the status and then the route's
//! cache policy, the request's authorization and how long the upstream
//! took (the exchange's delay):
//!
//! ```text
//! GET /img/logo.png
//! cache-control: max-age=0
//!
//! 200 heuristic ttl=300 swr=10 sie=60 targeted=cdn-cache-control authorized delay=2
//! cache-control: public, max-age=60, stale-while-revalidate=30
//! age: 5
//! vary: accept-encoding
//! ```
//!
//! Invariants, beyond not panicking:
//! - only GET and HEAD may use the cache;
//! - 206, 304 and 1xx answers, `Set-Cookie` and `Vary: *` are never stored;
//! - what is stored has no `Age` or `Connection` field, exactly one `Date`,
//!   keeps the status, and survives the store's serialisation round trip.

#![no_main]

use edge_fuzz::{head, text};
use edge_userspace::cache::{age::Exchange, key, policy};
use edge_userspace::config::CachePolicy;
use libfuzzer_sys::fuzz_target;
use pingora::cache::{CacheMeta, RespCacheable};
use pingora::http::ResponseHeader;
use std::time::{Duration, SystemTime};

fn seconds(v: &str) -> Option<Duration> {
    v.parse::<u32>().ok().map(|s| Duration::from_secs(s.into()))
}

fuzz_target!(|data: &[u8]| {
    let (request, rest) = head(data);
    let Some(req) = edge_fuzz::request(&request) else {
        return;
    };
    let eligible = policy::request_eligible(&req);
    if req.method != http::Method::GET && req.method != http::Method::HEAD {
        assert_eq!(eligible, Err(policy::Skip::Method));
    }
    let _ = policy::request_wants_revalidation(&req);
    let _ = key::request_key("fuzz", &req);

    let (response, _) = head(rest);
    let Some((status, options)) = response.start.split_first() else {
        return;
    };
    let Some(Ok(status)) = text(status).map(str::parse::<u16>) else {
        return;
    };
    let Ok(mut resp) = ResponseHeader::build(status, None) else {
        return;
    };
    let mut p = CachePolicy::default();
    let mut authorized = false;
    let received = SystemTime::now();
    let mut exchange = Exchange::at(received);
    for option in options {
        let Some(option) = text(option) else {
            return;
        };
        let known = match option.split_once('=') {
            None if option == "heuristic" => {
                p.heuristic_freshness = true;
                true
            }
            None if option == "authorized" => {
                authorized = true;
                true
            }
            Some(("ttl", v)) => seconds(v).map(|d| p.default_ttl = d).is_some(),
            Some(("swr", v)) => seconds(v).map(|d| p.stale_while_revalidate = d).is_some(),
            Some(("sie", v)) => seconds(v).map(|d| p.stale_if_error = d).is_some(),
            Some(("targeted", v)) => http::HeaderName::from_bytes(v.as_bytes())
                .map(|n| p.targeted_cache_control = Some(n))
                .is_ok(),
            Some(("delay", v)) => seconds(v)
                .map(|d| exchange.requested = received - d)
                .is_some(),
            _ => false,
        };
        if !known {
            return;
        }
    }
    for (name, value) in &response.fields {
        let Ok(name) = http::HeaderName::from_bytes(name) else {
            return;
        };
        let _ = resp.append_header(name, *value);
    }

    let RespCacheable::Cacheable(meta) =
        policy::response_cacheable(&p, &resp, authorized, exchange)
    else {
        return;
    };
    assert!(
        status != 206 && status != 304 && !(100..200).contains(&status),
        "stored a {status}"
    );
    assert!(
        !resp.headers.contains_key(http::header::SET_COOKIE),
        "stored a Set-Cookie response"
    );
    assert!(
        !policy::vary_names(&resp.headers).any(|n| n == "*"),
        "stored a Vary: * response"
    );
    let stored = meta.response_header();
    assert_eq!(stored.status, resp.status);
    for hop in [http::header::AGE, http::header::CONNECTION] {
        assert!(!stored.headers.contains_key(&hop), "stored the {hop} field");
    }
    assert_eq!(
        stored.headers.get_all(http::header::DATE).iter().count(),
        1,
        "stored without exactly one Date"
    );
    let _ = key::variance(&meta, &req);

    let (internal, header) = meta.serialize().expect("serialising stored metadata");
    let back = CacheMeta::deserialize(&internal, &header).expect("reading back stored metadata");
    assert_eq!(back.response_header().status, stored.status);
    assert_eq!(back.headers().len(), stored.headers.len());
    assert_eq!(back.fresh_until(), meta.fresh_until());
    assert_eq!(
        back.stale_while_revalidate_sec(),
        meta.stale_while_revalidate_sec()
    );
    assert_eq!(back.stale_if_error_sec(), meta.stale_if_error_sec());
});
