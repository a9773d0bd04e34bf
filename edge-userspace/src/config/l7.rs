//! Validation of the L7 sections: pools and listeners with their routes.

use super::{
    model::{
        Action, BackendSpec, Breaker, CachePolicy, CheckKind, CompressionPolicy, EncodedSlashes,
        HashKey, HeaderOps, HealthCheck, HostMatch, Listener, Outlier, PathMatch, PathOptions,
        Pattern, Pool, RetryPolicy, Route, RouteMatch, Timeouts, UpstreamProtocol, ValueCond,
        ValueMatch,
    },
    surface,
    validate::{Validator, overlaps, parse_cidr},
};
use std::{collections::HashMap, net::SocketAddr, time::Duration};

const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_RISE: u32 = 2;
const DEFAULT_FALL: u32 = 3;
const DEFAULT_EJECTION: Duration = Duration::from_secs(30);
const DEFAULT_MAX_EJECTED_PERCENT: u32 = 50;
const DEFAULT_RETRY_BUDGET_PERCENT: u32 = 20;
const DEFAULT_RETRY_MIN_PER_WINDOW: u32 = 3;
const DEFAULT_BREAKER_WINDOW: Duration = Duration::from_secs(10);
const DEFAULT_BREAKER_MIN_REQUESTS: u32 = 20;
const DEFAULT_BREAKER_OPEN: Duration = Duration::from_secs(10);
const DEFAULT_BREAKER_PROBES: u32 = 3;
/// Upstream response headers hidden unless `pass_upstream_headers` names them.
const HIDDEN_BY_DEFAULT: [&str; 2] = ["server", "x-powered-by"];
/// Headers a client could use to claim another address or URL: removed
/// from requests of peers that are not trusted proxies, by default.
/// The method overrides are among them: a route decided on `GET` would
/// otherwise run as the `DELETE` a Rails or Express backend reads there.
const UNTRUSTED_BY_DEFAULT: [&str; 13] = [
    "forwarded",
    "x-real-ip",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-uri",
    "x-original-host",
    "x-client-ip",
    "true-client-ip",
    "x-original-url",
    "x-rewrite-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Checks `pools[]`.
pub(super) fn pools(v: &mut Validator<'_>, pools: &[surface::Pool]) -> Vec<Pool> {
    let mut names = HashMap::new();
    let mut out = Vec::new();
    for (i, pool) in pools.iter().enumerate() {
        let path = format!("pools[{i}]");
        if pool.name.is_empty() {
            v.error(format!("{path}.name"), "pool name is empty");
        }
        v.unique(
            &mut names,
            pool.name.clone(),
            format!("{path}.name"),
            || format!("pool {:?} is defined twice", pool.name),
        );
        if pool.backends.is_empty() {
            v.error(
                format!("{path}.backends"),
                format!("pool {:?} has no backends", pool.name),
            );
        }
        let mut seen = HashMap::new();
        let mut backends = Vec::new();
        for (j, b) in pool.backends.iter().enumerate() {
            let bpath = format!("{path}.backends[{j}].address");
            let weight = b.weight.unwrap_or(1);
            if weight == 0 {
                v.error(
                    format!("{path}.backends[{j}].weight"),
                    "weight must be at least 1 (remove the backend to take it out)",
                );
            }
            if let Some(address) = v.socket_addr(bpath.clone(), &b.address) {
                v.unique(&mut seen, address, bpath, || {
                    format!("backend {address} is listed twice in pool {:?}", pool.name)
                });
                backends.push(BackendSpec {
                    address,
                    weight: weight.max(1),
                });
            }
        }
        let hash_key = hash_key(v, &path, pool);
        let health_check = pool
            .health_check
            .as_ref()
            .map(|h| health_check(v, &format!("{path}.health_check"), h));
        let outlier = pool.outlier_detection.as_ref().map(|o| {
            let opath = format!("{path}.outlier_detection");
            if o.consecutive_failures == 0 {
                v.error(
                    format!("{opath}.consecutive_failures"),
                    "consecutive_failures must be at least 1",
                );
            }
            let max = o.max_ejected_percent.unwrap_or(DEFAULT_MAX_EJECTED_PERCENT);
            if max > 100 {
                v.error(
                    format!("{opath}.max_ejected_percent"),
                    "max_ejected_percent is a percentage: 0 to 100",
                );
            }
            Outlier {
                consecutive_failures: o.consecutive_failures.max(1),
                ejection_time: opt_duration(v, &opath, "ejection_time", &o.ejection_time)
                    .unwrap_or(DEFAULT_EJECTION),
                max_ejected_percent: max.min(100),
            }
        });
        let timeouts = pool.timeouts.as_ref().map_or_else(Timeouts::default, |t| {
            let tpath = format!("{path}.timeouts");
            Timeouts {
                connect: opt_duration(v, &tpath, "connect", &t.connect),
                read: opt_duration(v, &tpath, "read", &t.read),
                write: opt_duration(v, &tpath, "write", &t.write),
                total: opt_duration(v, &tpath, "total", &t.total),
            }
        });
        let retries = pool
            .retries
            .as_ref()
            .map_or_else(RetryPolicy::default, |r| {
                let budget = r.budget_percent.unwrap_or(DEFAULT_RETRY_BUDGET_PERCENT);
                if budget > 100 {
                    v.error(
                        format!("{path}.retries.budget_percent"),
                        "budget_percent is a percentage: 0 to 100",
                    );
                }
                RetryPolicy {
                    attempts: r.attempts,
                    budget_percent: budget.min(100),
                    min_per_window: r.min_per_window.unwrap_or(DEFAULT_RETRY_MIN_PER_WINDOW),
                    grpc_statuses: grpc_statuses(v, &format!("{path}.retries"), r),
                }
            });
        let breaker = pool.circuit_breaker.as_ref().map(|c| {
            let cpath = format!("{path}.circuit_breaker");
            if !(c.error_ratio > 0.0 && c.error_ratio <= 1.0) {
                v.error(
                    format!("{cpath}.error_ratio"),
                    format!(
                        "error_ratio {} is out of range: more than 0, at most 1",
                        c.error_ratio
                    ),
                );
            }
            let probes = c.half_open_requests.unwrap_or(DEFAULT_BREAKER_PROBES);
            if probes == 0 {
                v.error(
                    format!("{cpath}.half_open_requests"),
                    "half_open_requests must be at least 1",
                );
            }
            Breaker {
                error_ratio: c.error_ratio,
                window: opt_duration(v, &cpath, "window", &c.window)
                    .unwrap_or(DEFAULT_BREAKER_WINDOW),
                min_requests: c.min_requests.unwrap_or(DEFAULT_BREAKER_MIN_REQUESTS),
                open_for: opt_duration(v, &cpath, "open_for", &c.open_for)
                    .unwrap_or(DEFAULT_BREAKER_OPEN),
                half_open_requests: probes.max(1),
            }
        });
        let keepalive_idle = pool
            .keepalive
            .as_ref()
            .and_then(|k| v.duration(format!("{path}.keepalive.idle_timeout"), &k.idle_timeout));
        out.push(Pool {
            name: pool.name.clone(),
            algorithm: pool.algorithm,
            hash_key,
            backends,
            health_check,
            outlier,
            timeouts,
            retries,
            breaker,
            keepalive_idle,
            tls: super::tls::pool_tls(v, &format!("{path}.tls"), pool.tls.as_ref()),
            protocol: protocol(v, &path, pool),
        });
    }
    out
}

/// `pools[].protocol`: `h2` needs the pool's TLS (ALPN picks it), `h2c`
/// is plain.
fn protocol(v: &mut Validator<'_>, path: &str, pool: &surface::Pool) -> UpstreamProtocol {
    let ppath = format!("{path}.protocol");
    let protocol = match pool.protocol.as_deref() {
        None | Some("http1") => UpstreamProtocol::Http1,
        Some("h2") => UpstreamProtocol::H2,
        Some("h2c") => UpstreamProtocol::H2c,
        Some(other) => {
            v.error(
                ppath,
                format!("unknown protocol {other:?}: expected http1, h2 or h2c"),
            );
            return UpstreamProtocol::Http1;
        }
    };
    match (protocol, pool.tls.is_some()) {
        (UpstreamProtocol::H2, false) => v.error(
            ppath,
            "h2 is HTTP/2 over TLS: add the pool's tls, or use h2c for plain HTTP/2",
        ),
        (UpstreamProtocol::H2c, true) => v.error(
            ppath,
            "h2c is plain HTTP/2: use h2 for HTTP/2 over the pool's tls",
        ),
        _ => {}
    }
    protocol
}

/// `retries.grpc_status`: gRPC status names; default UNAVAILABLE.
fn grpc_statuses(
    v: &mut Validator<'_>,
    path: &str,
    r: &surface::Retries,
) -> Vec<crate::grpc::Code> {
    let Some(names) = &r.grpc_status else {
        return vec![crate::grpc::Code::Unavailable];
    };
    names
        .iter()
        .enumerate()
        .filter_map(|(i, name)| {
            let code = crate::grpc::Code::from_name(name);
            if code.is_none() || code == Some(crate::grpc::Code::Ok) {
                v.error(
                    format!("{path}.grpc_status[{i}]"),
                    format!(
                        "{name:?} is not a gRPC error status: expected a name such as \
                         UNAVAILABLE or RESOURCE_EXHAUSTED"
                    ),
                );
                return None;
            }
            code
        })
        .collect()
}

fn opt_duration(
    v: &mut Validator<'_>,
    parent: &str,
    key: &str,
    q: &Option<super::units::Quantity>,
) -> Option<Duration> {
    let q = q.as_ref()?;
    let d = v.duration(format!("{parent}.{key}"), q)?;
    if d.is_zero() {
        v.error(
            format!("{parent}.{key}"),
            format!("{key} must be more than 0"),
        );
        return None;
    }
    Some(d)
}

/// `client_ip`, `path`, `header:NAME` (lower-cased) or `cookie:NAME`.
pub(super) fn parse_hash_key(text: &str) -> Option<HashKey> {
    match text.split_once(':') {
        None if text == "client_ip" => Some(HashKey::ClientIp),
        None if text == "path" => Some(HashKey::Path),
        Some(("header", name)) if !name.is_empty() => {
            Some(HashKey::Header(name.to_ascii_lowercase()))
        }
        Some(("cookie", name)) if !name.is_empty() => Some(HashKey::Cookie(name.to_string())),
        _ => None,
    }
}

fn hash_key(v: &mut Validator<'_>, path: &str, pool: &surface::Pool) -> HashKey {
    let Some(text) = pool.hash_key.as_deref() else {
        return HashKey::default();
    };
    let kpath = format!("{path}.hash_key");
    if pool.algorithm != surface::Algorithm::Ketama {
        v.error(
            kpath.clone(),
            format!(
                "hash_key only applies to algorithm: ketama (this pool uses {})",
                pool.algorithm.as_str()
            ),
        );
    }
    match parse_hash_key(text) {
        Some(key) => key,
        None => {
            v.error(
                kpath,
                format!(
                    "bad hash_key {text:?}: expected client_ip, path, header:NAME or cookie:NAME"
                ),
            );
            HashKey::default()
        }
    }
}

fn health_check(v: &mut Validator<'_>, path: &str, h: &surface::HealthCheck) -> HealthCheck {
    if h.service.is_some() && h.kind.as_deref() != Some("grpc") {
        v.error(
            format!("{path}.service"),
            "service only applies to type: grpc",
        );
    }
    let kind = match h.kind.as_deref() {
        None | Some("http") => {
            let p = h.path.clone().unwrap_or_else(|| "/".to_string());
            if !p.starts_with('/') {
                v.error(
                    format!("{path}.path"),
                    format!("health check path {p:?} must start with '/'"),
                );
            }
            for (i, s) in h.expected_statuses.iter().enumerate() {
                if !(100..=599).contains(s) {
                    v.error(
                        format!("{path}.expected_statuses[{i}]"),
                        format!("{s} is not an HTTP status (100-599)"),
                    );
                }
            }
            CheckKind::Http {
                path: p,
                host: h.host.clone(),
                statuses: h.expected_statuses.clone(),
            }
        }
        Some("tcp") => {
            for (key, set) in [
                ("path", h.path.is_some()),
                ("host", h.host.is_some()),
                ("expected_statuses", !h.expected_statuses.is_empty()),
            ] {
                if set {
                    v.error(
                        format!("{path}.{key}"),
                        format!("{key} only applies to type: http"),
                    );
                }
            }
            CheckKind::Tcp
        }
        Some("grpc") => {
            for (key, set) in [
                ("path", h.path.is_some()),
                ("expected_statuses", !h.expected_statuses.is_empty()),
            ] {
                if set {
                    v.error(
                        format!("{path}.{key}"),
                        format!(
                            "{key} does not apply to type: grpc (it asks \
                             grpc.health.v1.Health/Check and wants SERVING)"
                        ),
                    );
                }
            }
            let service = h.service.clone().unwrap_or_default();
            if !service.is_empty() && !grpc_name(&service, true) {
                v.error(
                    format!("{path}.service"),
                    format!("{service:?} is not a gRPC service name (package.Service)"),
                );
            }
            CheckKind::Grpc {
                service,
                authority: h.host.clone(),
            }
        }
        Some(other) => {
            v.error(
                format!("{path}.type"),
                format!("unknown health check type {other:?}: expected http, grpc or tcp"),
            );
            CheckKind::Tcp
        }
    };
    let interval = opt_duration(v, path, "interval", &h.interval).unwrap_or(DEFAULT_CHECK_INTERVAL);
    let timeout = opt_duration(v, path, "timeout", &h.timeout).unwrap_or(DEFAULT_CHECK_TIMEOUT);
    if timeout > interval {
        v.error(
            format!("{path}.timeout"),
            format!(
                "timeout ({}ms) is longer than interval ({}ms)",
                timeout.as_millis(),
                interval.as_millis()
            ),
        );
    }
    for (key, value) in [("rise", h.rise), ("fall", h.fall)] {
        if value == Some(0) {
            v.error(format!("{path}.{key}"), format!("{key} must be at least 1"));
        }
    }
    HealthCheck {
        kind,
        interval,
        timeout,
        rise: h.rise.unwrap_or(DEFAULT_RISE).max(1),
        fall: h.fall.unwrap_or(DEFAULT_FALL).max(1),
    }
}

/// Checks `listeners[]` and their routes against the checked `pools`.
pub(super) fn listeners(
    v: &mut Validator<'_>,
    listeners: &[surface::Listener],
    pools: &[Pool],
    cache_store: bool,
    consumers: &[super::gateway::Consumer],
    gateway: &super::gateway::GatewayConfig,
) -> Vec<Listener> {
    let mut names = HashMap::new();
    let mut bound: Vec<(SocketAddr, String)> = Vec::new();
    let mut out = Vec::new();
    for (i, l) in listeners.iter().enumerate() {
        let path = format!("listeners[{i}]");
        if l.name.is_empty() {
            v.error(format!("{path}.name"), "listener name is empty");
        }
        v.unique(&mut names, l.name.clone(), format!("{path}.name"), || {
            format!("listener {:?} is defined twice", l.name)
        });
        let cache =
            super::cache::policy(v, &format!("{path}.cache"), l.cache.as_ref(), cache_store);
        let compression =
            super::compression::policy(v, &format!("{path}.compression"), l.compression.as_ref());
        let policies = match &l.policies {
            Some(p) => {
                super::gateway::validate::policies(v, &format!("{path}.policies"), p, consumers)
            }
            None => Default::default(),
        };
        let defaults = Defaults {
            cache: &cache,
            compression: &compression,
            cache_store,
            policies: &policies,
            consumers,
            gateway,
        };
        let stream_mode = super::stream::mode(v, &path, l);
        let stream = stream_mode.map(|m| super::stream::settings(v, &path, m, l, pools));
        if stream_mode.is_none() {
            if !l.sni.is_empty() {
                v.error(
                    format!("{path}.sni"),
                    "sni only applies to mode: tls_passthrough",
                );
            }
            if l.proxy_protocol.as_ref().is_some_and(|p| p.send.is_some()) {
                v.error(
                    format!("{path}.proxy_protocol.send"),
                    "proxy_protocol.send only applies to mode: tcp or tls_passthrough \
                     (an HTTP listener tells its backends the client in X-Forwarded-For)",
                );
            }
        }
        let mut routes = Vec::new();
        let mut route_names = HashMap::new();
        for (j, r) in l.routes.iter().enumerate() {
            let rpath = format!("{path}.routes[{j}]");
            if let Some(route) = route(v, &rpath, j, r, pools, &defaults) {
                v.unique(
                    &mut route_names,
                    route.name.clone(),
                    format!("{rpath}.name"),
                    || format!("route {:?} is defined twice in this listener", route.name),
                );
                routes.push(route);
            }
        }
        if stream.is_some() {
            // A stream listener's pool is its own, not a route's.
        } else if let Some(pool) = &l.pool {
            if let Some(pool) = pool_ref(v, format!("{path}.pool"), pool, pools) {
                routes.push(Route {
                    name: "default".into(),
                    matcher: RouteMatch::default(),
                    action: Action::Proxy {
                        pool,
                        strip_prefix: None,
                        rewrite: None,
                    },
                    request_headers: HeaderOps::default(),
                    response_headers: HeaderOps::default(),
                    cache: cache.clone(),
                    compression: compression.clone(),
                    shaping: Default::default(),
                    transcode: None,
                    policies: super::gateway::validate::merge(
                        v,
                        &format!("{path}.policies"),
                        &policies,
                        None,
                    ),
                });
            }
        } else if l.routes.is_empty() {
            v.error(
                format!("{path}.name"),
                format!(
                    "listener {:?} has neither routes nor a pool: requests would have nowhere to go",
                    l.name
                ),
            );
        }
        let trusted_proxies = l
            .trusted_proxies
            .iter()
            .enumerate()
            .filter_map(|(j, c)| parse_cidr(v, format!("{path}.trusted_proxies[{j}]"), c))
            .collect();
        let encoded_slashes = match l.encoded_slashes.as_deref() {
            None | Some("reject") => EncodedSlashes::Reject,
            Some("keep") => EncodedSlashes::Keep,
            Some(other) => {
                v.error(
                    format!("{path}.encoded_slashes"),
                    format!("encoded_slashes is {other:?}: expected reject or keep"),
                );
                EncodedSlashes::Reject
            }
        };
        let untrusted_headers = match &l.untrusted_headers {
            Some(list) => list
                .iter()
                .enumerate()
                .filter_map(|(j, h)| {
                    // `from_bytes` lower-cases the name.
                    match http::HeaderName::from_bytes(h.as_bytes()) {
                        Ok(name) => Some(name),
                        Err(_) => {
                            v.error(
                                format!("{path}.untrusted_headers[{j}]"),
                                format!("{h:?} is not a valid header name"),
                            );
                            None
                        }
                    }
                })
                .collect(),
            None => UNTRUSTED_BY_DEFAULT
                .iter()
                .map(|h| http::HeaderName::from_static(h))
                .collect(),
        };
        let passed: Vec<String> = l
            .pass_upstream_headers
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        let hidden_upstream_headers = HIDDEN_BY_DEFAULT
            .iter()
            .filter(|h| !passed.iter().any(|p| p == *h))
            .map(|h| http::HeaderName::from_static(h))
            .collect();
        let transport =
            super::tls::listener_transport(v, &path, l.tls.as_ref(), l.http2, l.limits.as_ref());
        let request_trace =
            super::trace::validate(v, &path, l.request_id.as_ref(), l.tracing.as_ref());
        let apath = format!("{path}.address");
        let Some(address) = v.socket_addr(apath.clone(), &l.address) else {
            continue;
        };
        if let Some((other, opath)) = bound.iter().find(|(a, _)| overlaps(*a, address)) {
            let msg = format!(
                "listener {:?} on {address} overlaps {other} ({})",
                l.name,
                v.line_of(opath)
            );
            v.error(apath.clone(), msg);
        }
        bound.push((address, apath));
        out.push(Listener {
            name: l.name.clone(),
            address,
            routes,
            trusted_proxies,
            untrusted_headers,
            paths: PathOptions {
                merge_slashes: l.merge_slashes.unwrap_or(true),
                encoded_slashes,
            },
            hidden_upstream_headers,
            transport,
            cache,
            compression,
            stream,
            proxy_accept: super::stream::accept_from(v, &path, l),
            request_trace,
        });
    }
    out
}

/// What a route inherits from its listener.
struct Defaults<'a> {
    cache: &'a Option<CachePolicy>,
    compression: &'a Option<CompressionPolicy>,
    cache_store: bool,
    policies: &'a (
        super::gateway::PolicySet,
        Option<super::gateway::RateLimitHeaders>,
    ),
    consumers: &'a [super::gateway::Consumer],
    gateway: &'a super::gateway::GatewayConfig,
}

/// The name of pool `name` if it is defined (routes refer to pools by
/// name, so that a reload that reorders pools changes nothing).
pub(super) fn pool_ref(
    v: &mut Validator<'_>,
    path: String,
    name: &str,
    pools: &[Pool],
) -> Option<String> {
    let found = pools.iter().any(|p| p.name == name);
    if !found {
        let known: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
        v.error(
            path,
            format!(
                "pool {name:?} is not defined (defined: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        );
    }
    found.then(|| name.to_string())
}

pub(super) fn regex(v: &mut Validator<'_>, path: String, text: &str) -> Option<Pattern> {
    match regex::Regex::new(text) {
        Ok(r) => Some(Pattern(r)),
        Err(e) => {
            // The regex crate's message spans lines (it draws the pattern);
            // keep its last line, which says what is wrong.
            let why = e.to_string();
            let why = why.lines().last().unwrap_or("invalid").trim().to_string();
            v.error(path, format!("bad regex {text:?}: {why}"));
            None
        }
    }
}

fn route(
    v: &mut Validator<'_>,
    path: &str,
    index: usize,
    r: &surface::Route,
    pools: &[Pool],
    defaults: &Defaults<'_>,
) -> Option<Route> {
    let matcher = r
        .matches
        .as_ref()
        .map(|m| route_match(v, &format!("{path}.match"), m))
        .unwrap_or_default();
    let actions: Vec<&str> = [
        ("proxy", r.proxy.is_some()),
        ("redirect", r.redirect.is_some()),
        ("respond", r.respond.is_some()),
        ("static", r.static_files.is_some()),
        ("aggregate", r.aggregate.is_some()),
    ]
    .iter()
    .filter(|(_, set)| *set)
    .map(|(name, _)| *name)
    .collect();
    if actions.len() != 1 {
        v.error(
            path.to_string(),
            if actions.is_empty() {
                "a route needs one action: proxy, redirect, respond, static or aggregate"
                    .to_string()
            } else {
                format!(
                    "a route has one action, this one has {}",
                    actions.join(" and ")
                )
            },
        );
        return None;
    }
    let captures: Vec<String> = match &matcher.path {
        Some(PathMatch::Regex(p)) => p.0.capture_names().flatten().map(str::to_string).collect(),
        _ => Vec::new(),
    };
    let cx = super::shaping::validate::Context {
        path,
        captures: &captures,
        pools,
        proxied: r.proxy.is_some(),
        rewrites_path: r
            .proxy
            .as_ref()
            .is_some_and(|p| p.strip_prefix.is_some() || p.rewrite.is_some()),
    };
    let action = if let Some(a) = &r.aggregate {
        Action::Aggregate(super::shaping::validate::aggregate(v, &cx, a)?)
    } else if let Some(p) = &r.proxy {
        let pool = pool_ref(v, format!("{path}.proxy.pool"), &p.pool, pools)?;
        if let Some(prefix) = &p.strip_prefix
            && !prefix.starts_with('/')
        {
            v.error(
                format!("{path}.proxy.strip_prefix"),
                format!("strip_prefix {prefix:?} must start with '/'"),
            );
        }
        let rewrite = match &p.rewrite {
            Some(rw) => Some((
                regex(v, format!("{path}.proxy.rewrite.regex"), &rw.regex)?,
                rw.replacement.clone(),
            )),
            None => None,
        };
        Action::Proxy {
            pool,
            strip_prefix: p.strip_prefix.clone(),
            rewrite,
        }
    } else if let Some(rd) = &r.redirect {
        let status = rd.status.unwrap_or(302);
        if ![301, 302, 303, 307, 308].contains(&status) {
            v.error(
                format!("{path}.redirect.status"),
                format!("redirect status {status} is not one of 301, 302, 303, 307, 308"),
            );
        }
        Action::Redirect {
            location: rd.location.clone(),
            status,
        }
    } else if let Some(rs) = &r.respond {
        if !(200..=599).contains(&rs.status) {
            v.error(
                format!("{path}.respond.status"),
                format!("status {} is not a final HTTP status (200-599)", rs.status),
            );
        }
        let headers = header_pairs(v, &format!("{path}.respond.headers"), &rs.headers);
        Action::Respond {
            status: rs.status,
            headers,
            body: bytes::Bytes::from(rs.body.clone()),
        }
    } else if let Some(st) = &r.static_files {
        let root = v.base_dir().join(&st.root);
        if !root.is_dir() {
            v.error(
                format!("{path}.static.root"),
                format!("{} is not a readable directory", root.display()),
            );
        }
        Action::Static {
            root,
            index: st.index.clone().unwrap_or_else(|| "index.html".into()),
            strip_prefix: st.strip_prefix.clone(),
        }
    } else {
        return None;
    };
    let request_headers = header_ops(v, &format!("{path}.request_headers"), &r.request_headers);
    let response_headers = header_ops(v, &format!("{path}.response_headers"), &r.response_headers);
    let proxied = matches!(action, Action::Proxy { .. });
    for (key, set) in [
        ("cache", r.cache.is_some()),
        ("compression", r.compression.is_some()),
    ] {
        if set && !proxied {
            v.error(
                format!("{path}.{key}"),
                format!("{key} only applies to routes that proxy"),
            );
        }
    }
    let cache = match &r.cache {
        Some(c) => super::cache::policy(v, &format!("{path}.cache"), Some(c), defaults.cache_store),
        None => defaults.cache.clone(),
    };
    let compression = match &r.compression {
        Some(c) => super::compression::policy(v, &format!("{path}.compression"), Some(c)),
        None => defaults.compression.clone(),
    };
    if r.name.is_none()
        && r.policies.as_ref().is_some_and(|p| {
            p.rate_limits.as_ref().is_some_and(|l| !l.is_empty()) || p.concurrency.is_some()
        })
    {
        v.error(
            format!("{path}.policies"),
            "name this route: its rate-limit and concurrency counts are kept by the route's name across reloads",
        );
    }
    let own = r.policies.as_ref().map(|p| {
        let ppath = format!("{path}.policies");
        (
            p,
            super::gateway::validate::policies(v, &ppath, p, defaults.consumers),
        )
    });
    let policies =
        super::gateway::validate::merge(v, &format!("{path}.policies"), defaults.policies, own);
    if policies
        .rate_limits
        .iter()
        .any(|l| l.store == super::gateway::LimitStore::Redis)
        && defaults.gateway.redis.is_none()
    {
        v.error(
            format!("{path}.policies"),
            "a rate limit has store: redis but gateway.redis is not configured",
        );
    }
    let shaping = super::shaping::validate::shaping(v, &cx, r);
    let transcode = r.transcode.as_ref().and_then(|t| {
        let tpath = format!("{path}.transcode");
        let pool = match &action {
            Action::Proxy { pool, .. } => pools.iter().find(|p| p.name == *pool),
            _ => None,
        };
        for (key, set) in [
            ("transform", r.transform.is_some()),
            ("validate", r.validate.is_some()),
            ("split", !r.split.is_empty()),
            ("mirror", r.mirror.is_some()),
        ] {
            if set {
                v.error(
                    format!("{path}.{key}"),
                    format!("{key} does not go with transcode, which makes the request and the reply itself"),
                );
            }
        }
        super::transcode::validate(v, &tpath, t, pool)
    });
    Some(Route {
        transcode,
        policies,
        shaping,
        name: r.name.clone().unwrap_or_else(|| format!("route{index}")),
        matcher,
        action,
        request_headers,
        response_headers,
        cache,
        compression,
    })
}

fn route_match(v: &mut Validator<'_>, path: &str, m: &surface::Match) -> RouteMatch {
    let mut hosts = Vec::new();
    for (i, h) in m.hosts.iter().enumerate() {
        let h = h.to_ascii_lowercase();
        let bad = h.is_empty() || h.contains(['/', ' ', ':']) || h[1..].contains('*');
        if bad || (h.starts_with('*') && !h.starts_with("*.")) {
            v.error(
                format!("{path}.hosts[{i}]"),
                format!("bad host {h:?}: expected a name such as example.com or *.example.com"),
            );
            continue;
        }
        // Requests are matched on their normalised host: a name that is
        // not in normal form (a trailing dot, an empty label) would never
        // match, and a deny rule written so would be silently dead.
        let probe = h
            .strip_prefix('*')
            .map_or_else(|| h.clone(), |s| format!("x{s}"));
        match crate::proxy::normalize::parse_host(&probe) {
            Ok(n) if n.port.is_none() && n.name == probe => {}
            _ => {
                v.error(
                    format!("{path}.hosts[{i}]"),
                    format!(
                        "host {h:?} can never match: requests are matched on their normalised host \
                         (lower case, no trailing dot, labels of 1 to 63 letters, digits, '-' or '_')"
                    ),
                );
                continue;
            }
        }
        hosts.push(match h.strip_prefix('*') {
            Some(suffix) => HostMatch::Suffix(suffix.to_string()),
            None => HostMatch::Exact(h),
        });
    }
    let grpc_path = m.grpc.as_ref().and_then(|g| {
        let gpath = format!("{path}.grpc");
        if m.path.is_some() {
            v.error(
                gpath.clone(),
                "grpc sets the path (/SERVICE/METHOD): leave out path",
            );
        }
        if !grpc_name(&g.service, true) {
            v.error(
                format!("{gpath}.service"),
                format!(
                    "{:?} is not a gRPC service name: dot-separated identifiers, \
                     such as helloworld.Greeter",
                    g.service
                ),
            );
            return None;
        }
        match &g.method {
            Some(method) if !grpc_name(method, false) => {
                v.error(
                    format!("{gpath}.method"),
                    format!("{method:?} is not a gRPC method name (an identifier)"),
                );
                None
            }
            Some(method) => Some(PathMatch::Exact(format!("/{}/{method}", g.service))),
            None => Some(PathMatch::Prefix(format!("/{}/", g.service))),
        }
    });
    let path_match = m.path.as_ref().and_then(|p| {
        let ppath = format!("{path}.path");
        let set = [p.exact.is_some(), p.prefix.is_some(), p.regex.is_some()];
        if set.iter().filter(|s| **s).count() != 1 {
            v.error(
                ppath,
                "a path condition has exactly one of exact, prefix, regex",
            );
            return None;
        }
        for (key, value) in [("exact", &p.exact), ("prefix", &p.prefix)] {
            if let Some(value) = value
                && !value.starts_with('/')
            {
                v.error(
                    format!("{ppath}.{key}"),
                    format!("path {value:?} must start with '/'"),
                );
                return None;
            }
            // Requests are matched on their normalised path, so a path
            // not in that form (`/a/../b`, `/%7euser`, `/a;x`) would never
            // match: say so rather than leave a dead rule.
            if let Some(value) = value {
                let lenient = super::model::PathOptions {
                    merge_slashes: false,
                    encoded_slashes: super::model::EncodedSlashes::Keep,
                };
                let normal = crate::proxy::normalize::normalize_path(value, lenient);
                let same = normal
                    .as_ref()
                    .is_ok_and(|n| n.path == *value && n.match_path() == value.as_str());
                if !same {
                    let hint = match &normal {
                        Ok(n) => format!("requests are matched as {:?}", n.match_path()),
                        Err(e) => format!("no request is: {e}"),
                    };
                    v.error(
                        format!("{ppath}.{key}"),
                        format!("path {value:?} can never match: {hint}"),
                    );
                    return None;
                }
            }
        }
        if let Some(e) = &p.exact {
            Some(PathMatch::Exact(e.clone()))
        } else if let Some(prefix) = &p.prefix {
            Some(PathMatch::Prefix(prefix.clone()))
        } else {
            let r = p.regex.as_deref().unwrap_or_default();
            regex(v, format!("{ppath}.regex"), r).map(PathMatch::Regex)
        }
    });
    let methods = m
        .methods
        .iter()
        .enumerate()
        .filter_map(|(i, method)| {
            let up = method.to_ascii_uppercase();
            if up.is_empty() || !up.bytes().all(|b| b.is_ascii_alphabetic()) {
                v.error(
                    format!("{path}.methods[{i}]"),
                    format!("bad method {method:?}"),
                );
                return None;
            }
            Some(up)
        })
        .collect();
    let headers = value_matches(v, &format!("{path}.headers"), &m.headers, true);
    let query = value_matches(v, &format!("{path}.query"), &m.query, false);
    let accept_param = m.accept_param.as_ref().and_then(|a| {
        let name = a.name.to_ascii_lowercase();
        let token = |t: &str| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        };
        if !token(&name) {
            v.error(
                format!("{path}.accept_param.name"),
                format!("{:?} is not a media-type parameter name", a.name),
            );
            return None;
        }
        Some((name, a.value.clone()))
    });
    RouteMatch {
        hosts,
        path: grpc_path.or(path_match),
        methods,
        headers,
        query,
        accept_param,
        grpc: m.grpc.is_some(),
    }
}

/// A protobuf identifier (`[A-Za-z_][A-Za-z0-9_]*`), or with `dotted`
/// several joined by dots (a fully-qualified service name).
pub(super) fn grpc_name(text: &str, dotted: bool) -> bool {
    let ident = |s: &str| {
        s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    if dotted {
        text.split('.').all(ident)
    } else {
        ident(text)
    }
}

fn value_matches(
    v: &mut Validator<'_>,
    path: &str,
    items: &[surface::ValueMatch],
    header: bool,
) -> Vec<ValueMatch> {
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let ipath = format!("{path}[{i}]");
        if header && http::HeaderName::from_bytes(item.name.as_bytes()).is_err() {
            v.error(
                format!("{ipath}.name"),
                format!("bad header name {:?}", item.name),
            );
            continue;
        }
        let value = match (&item.value, &item.regex) {
            (Some(_), Some(_)) => {
                v.error(ipath, "give value or regex, not both");
                continue;
            }
            (Some(val), None) => ValueCond::Exact(val.clone()),
            (None, Some(r)) => match regex(v, format!("{ipath}.regex"), r) {
                Some(p) => ValueCond::Regex(p),
                None => continue,
            },
            (None, None) => ValueCond::Present,
        };
        out.push(ValueMatch {
            name: if header {
                item.name.to_ascii_lowercase()
            } else {
                item.name.clone()
            },
            value,
        });
    }
    out
}

fn header_pairs(
    v: &mut Validator<'_>,
    path: &str,
    map: &std::collections::BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, val) in map {
        // Say which half is wrong and why: CR or LF in a value would split
        // the message, so no HTTP library sends it, and every request of
        // the route would fail.
        let why = if http::HeaderName::from_bytes(k.as_bytes()).is_err() {
            Some(format!(
                "bad header name {k:?}: letters, digits and !#$%&'*+-.^_`|~ only"
            ))
        } else {
            super::preflight::bad_header_value(val)
                .map(|why| format!("header {k}: value {val:?} cannot be sent: {why}"))
        };
        if let Some(why) = why {
            v.error(format!("{path}.{k}"), why);
            continue;
        }
        out.push((k.clone(), val.clone()));
    }
    out
}

fn header_ops(v: &mut Validator<'_>, path: &str, ops: &Option<surface::HeaderOps>) -> HeaderOps {
    let Some(ops) = ops else {
        return HeaderOps::default();
    };
    let mut remove = Vec::new();
    for (i, name) in ops.remove.iter().enumerate() {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            v.error(
                format!("{path}.remove[{i}]"),
                format!("bad header name {name:?}"),
            );
        } else {
            remove.push(name.to_ascii_lowercase());
        }
    }
    HeaderOps {
        add: header_pairs(v, &format!("{path}.add"), &ops.add),
        set: header_pairs(v, &format!("{path}.set"), &ops.set),
        remove,
    }
}
