//! The HTTP cache's configuration: the process-wide store (`cache:`) and the
//! per-listener (later per-route) policy (`listeners[].cache`). Surface
//! structs, their validation and the model types live together here so that
//! the section can be read, and merged, as one piece.

use super::{
    units::Quantity,
    validate::{Validator, parse_cidr},
};
use http::HeaderName;
use ipnet::IpNet;
use serde::Deserialize;
use std::time::Duration;

/// Default byte bound of the in-memory store.
pub const DEFAULT_MAX_SIZE: u64 = 256 << 20;
/// Default largest response body that is stored.
pub const DEFAULT_MAX_OBJECT_SIZE: u64 = 8 << 20;
/// Default time concurrent misses wait for the first fetch of a key.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(3);
/// Default name of the header that says how the cache served a response.
pub const DEFAULT_STATUS_HEADER: &str = "X-Cache-Status";
/// Default freshness given by heuristics to responses that carry none.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);
/// Default targeted cache-control field (RFC 9213) the cache obeys ahead
/// of Cache-Control: the one aimed at CDNs.
pub const DEFAULT_TARGETED_CACHE_CONTROL: &str = "cdn-cache-control";

/// `cache:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSurface {
    /// Byte bound of the store.
    #[serde(default)]
    pub max_size: Option<Quantity>,
    /// Largest response stored.
    #[serde(default)]
    pub max_object_size: Option<Quantity>,
    /// How long concurrent misses wait for the first fetch.
    #[serde(default)]
    pub lock_timeout: Option<Quantity>,
    /// Header naming the cache status; `""` disables it.
    #[serde(default)]
    pub status_header: Option<String>,
    /// Client prefixes allowed to send PURGE.
    #[serde(default)]
    pub purge_allow: Vec<String>,
}

/// `listeners[].cache` (and, later, `routes[].cache`) as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySurface {
    /// Whether responses are cached.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Whether responses without freshness information are cached.
    #[serde(default)]
    pub heuristic_freshness: Option<bool>,
    /// Their freshness when heuristics are on.
    #[serde(default)]
    pub default_ttl: Option<Quantity>,
    /// Stale-while-revalidate window when the response does not give one.
    #[serde(default)]
    pub stale_while_revalidate: Option<Quantity>,
    /// Stale-if-error window when the response does not give one.
    #[serde(default)]
    pub stale_if_error: Option<Quantity>,
    /// The targeted cache-control field obeyed ahead of Cache-Control
    /// (RFC 9213); `""` obeys Cache-Control only.
    #[serde(default)]
    pub targeted_cache_control: Option<String>,
}

/// The process-wide cache store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// Bytes the store may hold (bodies and headers); eviction beyond.
    pub max_size: u64,
    /// Larger responses are not stored.
    pub max_object_size: u64,
    /// How long concurrent misses for one key wait for the first fetch.
    pub lock_timeout: Duration,
    /// Header that reports the cache status, if any.
    pub status_header: Option<HeaderName>,
    /// Clients allowed to PURGE.
    pub purge_allow: Vec<IpNet>,
}

/// How one listener (or route) uses the cache: RFC 9111 with these defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachePolicy {
    /// Whether responses are looked up and stored at all.
    pub enabled: bool,
    /// Whether a response with no explicit freshness (no max-age,
    /// s-maxage or Expires) is stored, fresh for `default_ttl`.
    pub heuristic_freshness: bool,
    /// Freshness of such responses when heuristics are on.
    pub default_ttl: Duration,
    /// Stale-while-revalidate when the response says nothing.
    pub stale_while_revalidate: Duration,
    /// Stale-if-error when the response says nothing.
    pub stale_if_error: Duration,
    /// The targeted field (RFC 9213) whose directives, when present and
    /// valid, replace Cache-Control and Expires for this cache; `None`
    /// when only Cache-Control counts.
    pub targeted_cache_control: Option<HeaderName>,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            heuristic_freshness: false,
            default_ttl: DEFAULT_TTL,
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            targeted_cache_control: Some(HeaderName::from_static(DEFAULT_TARGETED_CACHE_CONTROL)),
        }
    }
}

/// Validates `cache:`.
pub(super) fn store(v: &mut Validator<'_>, s: Option<&CacheSurface>) -> Option<CacheConfig> {
    let s = s?;
    let max_size = size(v, "cache.max_size", s.max_size.as_ref(), DEFAULT_MAX_SIZE);
    let max_object_size = size(
        v,
        "cache.max_object_size",
        s.max_object_size.as_ref(),
        DEFAULT_MAX_OBJECT_SIZE.min(max_size),
    );
    if max_object_size > max_size {
        v.error(
            "cache.max_object_size".into(),
            format!(
                "max_object_size ({max_object_size} bytes) exceeds max_size ({max_size} bytes)"
            ),
        );
    }
    let lock_timeout = match &s.lock_timeout {
        Some(q) => match v.duration("cache.lock_timeout".into(), q) {
            Some(d) if d.is_zero() => {
                v.error(
                    "cache.lock_timeout".into(),
                    "lock_timeout must be longer than 0",
                );
                DEFAULT_LOCK_TIMEOUT
            }
            Some(d) => d,
            None => DEFAULT_LOCK_TIMEOUT,
        },
        None => DEFAULT_LOCK_TIMEOUT,
    };
    let status_header = match s.status_header.as_deref() {
        None => HeaderName::from_static("x-cache-status").into(),
        Some("") => None,
        Some(name) => match HeaderName::from_bytes(name.as_bytes()) {
            Ok(h) => Some(h),
            Err(_) => {
                v.error(
                    "cache.status_header".into(),
                    format!(
                        "bad header name {name:?}: letters, digits and !#$%&'*+-.^_`|~ only, or \"\" to disable"
                    ),
                );
                None
            }
        },
    };
    let mut purge_allow = Vec::new();
    for (i, text) in s.purge_allow.iter().enumerate() {
        if let Some(net) = parse_cidr(v, format!("cache.purge_allow[{i}]"), text) {
            purge_allow.push(net);
        }
    }
    Some(CacheConfig {
        max_size,
        max_object_size,
        lock_timeout,
        status_header,
        purge_allow,
    })
}

fn size(v: &mut Validator<'_>, path: &str, q: Option<&Quantity>, default: u64) -> u64 {
    let Some(q) = q else {
        return default;
    };
    match v.size(path.into(), q) {
        Some(0) => {
            v.error(
                path.into(),
                format!("{} must be at least 1 byte", leaf(path)),
            );
            default
        }
        Some(n) => n,
        None => default,
    }
}

fn leaf(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

/// Validates a listener's (or route's) `cache:` at `path`; `store` says
/// whether a top-level `cache:` section exists to hold what it caches.
pub(super) fn policy(
    v: &mut Validator<'_>,
    path: &str,
    s: Option<&PolicySurface>,
    store: bool,
) -> Option<CachePolicy> {
    let s = s?;
    let defaults = CachePolicy::default();
    let enabled = s.enabled.unwrap_or(true);
    if enabled && !store {
        v.error(
            path.to_string(),
            "caching is enabled here but there is no top-level `cache:` section to store responses in",
        );
    }
    let heuristic_freshness = s.heuristic_freshness.unwrap_or(false);
    let mut duration = |field: &str, q: Option<&Quantity>, default: Duration| {
        q.and_then(|q| v.duration(format!("{path}.{field}"), q))
            .unwrap_or(default)
    };
    let default_ttl = duration("default_ttl", s.default_ttl.as_ref(), defaults.default_ttl);
    let stale_while_revalidate = duration(
        "stale_while_revalidate",
        s.stale_while_revalidate.as_ref(),
        defaults.stale_while_revalidate,
    );
    let stale_if_error = duration(
        "stale_if_error",
        s.stale_if_error.as_ref(),
        defaults.stale_if_error,
    );
    if s.default_ttl.is_some() && !heuristic_freshness {
        v.error(
            format!("{path}.default_ttl"),
            "default_ttl only applies with heuristic_freshness: true",
        );
    }
    if heuristic_freshness && default_ttl.is_zero() {
        v.error(
            format!("{path}.default_ttl"),
            "default_ttl must be longer than 0 (or turn heuristic_freshness off)",
        );
    }
    let targeted_cache_control = match s.targeted_cache_control.as_deref() {
        None => defaults.targeted_cache_control,
        Some("") => None,
        Some(name) => match HeaderName::from_bytes(name.as_bytes()) {
            Ok(h) if h == http::header::CACHE_CONTROL => {
                v.error(
                    format!("{path}.targeted_cache_control"),
                    "targeted_cache_control names a field other than Cache-Control (e.g. CDN-Cache-Control), or \"\" to obey Cache-Control only",
                );
                None
            }
            Ok(h) => Some(h),
            Err(_) => {
                v.error(
                    format!("{path}.targeted_cache_control"),
                    format!(
                        "bad header name {name:?}: letters, digits and !#$%&'*+-.^_`|~ only, or \"\" to obey Cache-Control only"
                    ),
                );
                None
            }
        },
    };
    Some(CachePolicy {
        enabled,
        heuristic_freshness,
        default_ttl,
        stale_while_revalidate,
        stale_if_error,
        targeted_cache_control,
    })
}
