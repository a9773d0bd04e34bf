//! Upper (and some lower) bounds of every size, count and duration in the
//! configuration, and the check that enforces them.
//!
//! `edge check` must refuse what `edge run` cannot survive: a value that
//! would allocate gigabytes (a circuit-breaker window counted per second, a
//! ketama ring of 10^8 points per backend), abort (a thread count the system
//! cannot spawn, a `Duration` or `Instant` that overflows) or never finish
//! (a grace period of u64::MAX seconds). Each bound is a named constant
//! here, with the reason for its value, so the README's table and the code
//! cannot drift apart.
//!
//! The check runs over the surface structs, beside the section validators:
//! those report a value they cannot parse (and the zeros they refuse), this
//! pass reports a parsed value that is out of bounds, each at its own
//! `file:line:column` and naming the bound (`must be at most 1h`).
//! Bounds that already lived with their section (the L4 table sizes, the
//! conntrack capacity, compression levels, percentages) are enforced there.

use super::{
    report::Report,
    surface,
    units::{self, Quantity},
};
use std::time::Duration;

// ------------------------------------------------------------------ file

/// Largest configuration file read: far above any real configuration
/// (the full example is 5 KiB), small enough that parsing it twice (serde
/// and the position index) stays well under a second.
pub const MAX_FILE_SIZE: u64 = 4 << 20;
/// Deepest nesting of YAML collections. edge's own schema nests 8 deep;
/// serde_yaml stops at 128, but only after libyaml has parsed the whole
/// document, in time quadratic in the depth.
pub const MAX_DEPTH: usize = 64;
/// Most alias uses (`*name`) in a file. Each one is expanded again by
/// serde, so a few nested anchors used many times ("billion laughs")
/// cost memory exponential in the nesting.
pub const MAX_ALIASES: usize = 100;

// ---------------------------------------------------------------- server

/// Most worker threads per listener service (`server.threads`); Pingora
/// spawns them all at start-up and aborts when the system refuses one.
pub const MAX_THREADS: usize = 1024;
/// Most worker threads over all listener services (`server.threads` times
/// the number of listeners; `threads` defaults to the CPUs of the host
/// that checks): a thread has a stack of its own, and the system's limit on
/// threads is commonly a few tens of thousands.
pub const MAX_WORKER_THREADS: usize = 16_384;
/// Longest drain after SIGTERM (`server.grace_period_seconds`): an hour;
/// a supervisor waits this long for edge to exit.
pub const MAX_GRACE_PERIOD_SECONDS: u64 = 3600;
/// Most idle upstream connections kept (`server.upstream_keepalive_pool_size`);
/// Pingora pre-allocates a map of this capacity.
pub const MAX_UPSTREAM_KEEPALIVE: usize = 65_536;

// ------------------------------------------------------------- listeners

/// Most L7 listeners: each is a Pingora service with its own threads.
pub const MAX_LISTENERS: usize = 256;
/// Most routes in one listener (the router compares a request against
/// them in precedence order).
pub const MAX_ROUTES: usize = 1024;
/// Most prefixes in one list (`trusted_proxies`, `cache.purge_allow`).
pub const MAX_PREFIXES: usize = 1024;
/// Most entries in a list of header names, a header map or a match list
/// (`pass_upstream_headers`, `respond.headers`, `add`/`set`/`remove`,
/// `match.hosts`/`methods`/`headers`/`query`, `content_types`,
/// `expected_statuses`).
pub const MAX_LIST: usize = 64;
/// Longest name (listener, pool, route): names are metric label values.
pub const MAX_NAME_LEN: usize = 128;
/// Longest header value edge sends from the configuration (`respond`,
/// `request_headers`, `response_headers`, a redirect `location`): 8 KiB is
/// the smallest header limit common servers and proxies accept.
pub const MAX_HEADER_VALUE_LEN: usize = 8 << 10;
/// Longest regular expression source; the regex crate's own compiled-size
/// limit (10 MiB) still applies to what is shorter.
pub const MAX_REGEX_LEN: usize = 4096;
/// Largest `respond.body`, held in memory for the process's life.
pub const MAX_RESPOND_BODY: u64 = 1 << 20;
/// Most certificates per TLS listener.
pub const MAX_CERTIFICATES: usize = 256;
/// Most `server_names` per certificate.
pub const MAX_SERVER_NAMES: usize = 1024;
/// Largest PEM file (certificate chain, key, CA bundle) read at check time;
/// a full public CA bundle is about 250 KiB.
pub const MAX_PEM_FILE: u64 = 1 << 20;
/// Longest `limits.header_read_timeout`.
pub const MAX_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Longest `limits.idle_timeout`.
pub const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Longest `limits.body_read_timeout`.
pub const MAX_BODY_READ_TIMEOUT: Duration = Duration::from_secs(3600);
/// Largest `limits.min_body_rate`, bytes per second: above 1 GiB/s every
/// client would be "too slow".
pub const MAX_MIN_BODY_RATE: u64 = 1 << 30;
/// Longest `admin.token`.
pub const MAX_TOKEN_LEN: usize = 4096;
/// Largest `limits.max_body_size` (a limit, not a buffer: bodies stream).
pub const MAX_BODY_SIZE: u64 = 64 << 30;
/// Most `limits.max_connections` (one file descriptor each).
pub const MAX_CONNECTIONS: u64 = 1_000_000;
/// Largest `compression.min_size` (a threshold; larger means "never").
pub const MAX_COMPRESSION_MIN_SIZE: u64 = 1 << 30;
/// Longest cache freshness or staleness window (`default_ttl`,
/// `stale_while_revalidate`, `stale_if_error`): a year, RFC 9111's
/// customary ceiling on freshness.
pub const MAX_CACHE_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

// ----------------------------------------------------------------- cache

/// Largest `cache.max_size` of the in-memory store.
pub const MAX_CACHE_SIZE: u64 = 64 << 30;
/// Largest `cache.max_object_size`: one response held in memory.
pub const MAX_CACHE_OBJECT_SIZE: u64 = 1 << 30;
/// Longest `cache.lock_timeout` a request waits behind another's fetch.
pub const MAX_CACHE_LOCK_TIMEOUT: Duration = Duration::from_secs(60);

// ----------------------------------------------------------------- pools

/// Most pools.
pub const MAX_POOLS: usize = 1024;
/// Most backends per pool: selection scans them per request, and the
/// ketama ring indexes them with 16 bits.
pub const MAX_BACKENDS: usize = 1024;
/// Largest backend weight, except in ketama pools: smooth weighted round
/// robin sums weights in an i64 and least-connections multiplies them by
/// in-flight counts in a u64, both far from overflow at this bound.
pub const MAX_WEIGHT: u32 = 1_000_000;
/// Largest backend weight in a ketama pool: each unit is 160 ring points.
pub const MAX_KETAMA_WEIGHT: u32 = 1000;
/// Largest sum of a ketama pool's weights: at most 1.6 M ring points
/// (about 13 MB), and well inside the u32 the ring builder sums them in.
pub const MAX_KETAMA_TOTAL_WEIGHT: u64 = 10_000;
/// Shortest health-check interval: a check per backend per interval.
pub const MIN_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// Longest health-check interval (the timeout is at most the interval).
pub const MAX_CHECK_INTERVAL: Duration = Duration::from_secs(3600);
/// Largest `rise` / `fall` threshold.
pub const MAX_RISE_FALL: u32 = 100;
/// Largest `outlier_detection.consecutive_failures`.
pub const MAX_CONSECUTIVE_FAILURES: u32 = 10_000;
/// Longest base `ejection_time`; repeated ejections grow it to 10x.
pub const MAX_EJECTION_TIME: Duration = Duration::from_secs(3600);
/// Longest `timeouts.connect`.
pub const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Longest `timeouts.read`, `write` and `total`.
pub const MAX_IO_TIMEOUT: Duration = Duration::from_secs(3600);
/// Most `retries.attempts` after the first.
pub const MAX_RETRY_ATTEMPTS: u32 = 10;
/// Largest `retries.min_per_window`.
pub const MAX_RETRY_MIN_PER_WINDOW: u32 = 10_000;
/// Shortest circuit-breaker window: its buckets are at least 1 s wide
/// below a minute.
pub const MIN_BREAKER_WINDOW: Duration = Duration::from_secs(1);
/// Longest circuit-breaker window (it keeps a fixed number of buckets, so
/// this bounds how stale its ratio may be, not its memory).
pub const MAX_BREAKER_WINDOW: Duration = Duration::from_secs(3600);
/// Largest `circuit_breaker.min_requests`.
pub const MAX_BREAKER_MIN_REQUESTS: u32 = 1_000_000;
/// Longest `circuit_breaker.open_for`.
pub const MAX_BREAKER_OPEN_FOR: Duration = Duration::from_secs(3600);
/// Largest `circuit_breaker.half_open_requests`.
pub const MAX_HALF_OPEN_REQUESTS: u32 = 1000;
/// Longest `keepalive.idle_timeout`.
pub const MAX_KEEPALIVE_IDLE: Duration = Duration::from_secs(3600);

// ----------------------------------------------------------------- check

/// Reports every value of `file` outside its bound.
pub(super) fn check(v: &mut Report<'_>, file: &surface::File) {
    if let Some(s) = &file.server {
        server(v, s);
    }
    if let Some(x) = &file.xdp {
        count(
            v,
            "xdp.interfaces",
            x.interfaces.len(),
            edge_common::MAX_IFACES as usize,
        );
        count(
            v,
            "xdp.deny",
            x.deny.len(),
            edge_common::MAX_DENY_ENTRIES as usize,
        );
    }
    if let Some(l4) = &file.l4 {
        for (i, s) in l4.services.iter().enumerate() {
            if let Some(h) = &s.health_check {
                let p = format!("l4.services[{i}].health_check");
                check_interval(v, &p, &h.interval);
                for (key, n) in [("rise", h.rise), ("fall", h.fall)] {
                    at_most(v, &format!("{p}.{key}"), n, MAX_RISE_FALL);
                }
            }
        }
    }
    if let Some(c) = &file.cache {
        size(v, "cache.max_size", &c.max_size, MAX_CACHE_SIZE);
        // An object larger than the store is already reported as such; the
        // bound is the next thing to say about it, once that is fixed.
        let store = c
            .max_size
            .as_ref()
            .and_then(|q| units::parse_size(&q.0).ok())
            .unwrap_or(super::cache::DEFAULT_MAX_SIZE);
        let object = c
            .max_object_size
            .as_ref()
            .and_then(|q| units::parse_size(&q.0).ok());
        if object.is_some_and(|o| o <= store) {
            size(
                v,
                "cache.max_object_size",
                &c.max_object_size,
                MAX_CACHE_OBJECT_SIZE,
            );
        }
        duration(
            v,
            "cache.lock_timeout",
            &c.lock_timeout,
            Duration::ZERO,
            MAX_CACHE_LOCK_TIMEOUT,
        );
        count(v, "cache.purge_allow", c.purge_allow.len(), MAX_PREFIXES);
    }
    if let Some(a) = &file.admin {
        if let Some(allow) = &a.allow {
            count(v, "admin.allow", allow.len(), MAX_PREFIXES);
        }
        if let Some(t) = &a.token {
            text(v, "admin.token", t, MAX_TOKEN_LEN);
        }
    }
    count(v, "listeners", file.listeners.len(), MAX_LISTENERS);
    worker_threads(v, file);
    for (i, l) in file.listeners.iter().enumerate() {
        listener(v, &format!("listeners[{i}]"), l);
    }
    count(v, "pools", file.pools.len(), MAX_POOLS);
    for (i, p) in file.pools.iter().enumerate() {
        pool(v, &format!("pools[{i}]"), p);
    }
}

fn server(v: &mut Report<'_>, s: &surface::Server) {
    if let Some(n) = s.threads {
        at_most(v, "server.threads", Some(n), MAX_THREADS);
    }
    at_most(
        v,
        "server.grace_period_seconds",
        s.grace_period_seconds,
        MAX_GRACE_PERIOD_SECONDS,
    );
    at_most(
        v,
        "server.upstream_keepalive_pool_size",
        s.upstream_keepalive_pool_size,
        MAX_UPSTREAM_KEEPALIVE,
    );
}

/// Each listener is a Pingora service with `server.threads` threads.
fn worker_threads(v: &mut Report<'_>, file: &surface::File) {
    let set = file.server.as_ref().and_then(|s| s.threads);
    let threads =
        set.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    let listeners = file.listeners.len();
    let total = threads.saturating_mul(listeners);
    // A thread count over its own bound is reported as such already.
    if total > MAX_WORKER_THREADS && threads <= MAX_THREADS {
        let (path, what) = match set {
            Some(_) => ("server.threads", "server.threads"),
            None => ("listeners", "threads (the CPUs of this host)"),
        };
        v.error(
            path.to_string(),
            format!(
                "{listeners} listeners with {threads} {what} each are {total} worker threads: \
                 must be at most {MAX_WORKER_THREADS} (lower server.threads)"
            ),
        );
    }
}

fn listener(v: &mut Report<'_>, path: &str, l: &surface::Listener) {
    name(v, &format!("{path}.name"), &l.name);
    count(v, &format!("{path}.routes"), l.routes.len(), MAX_ROUTES);
    count(
        v,
        &format!("{path}.trusted_proxies"),
        l.trusted_proxies.len(),
        MAX_PREFIXES,
    );
    count(
        v,
        &format!("{path}.pass_upstream_headers"),
        l.pass_upstream_headers.len(),
        MAX_LIST,
    );
    if let Some(list) = &l.untrusted_headers {
        count(
            v,
            &format!("{path}.untrusted_headers"),
            list.len(),
            MAX_LIST,
        );
    }
    if let Some(tls) = &l.tls {
        let p = format!("{path}.tls.certificates");
        count(v, &p, tls.certificates.len(), MAX_CERTIFICATES);
        for (j, c) in tls.certificates.iter().enumerate() {
            if let Some(names) = &c.server_names {
                count(
                    v,
                    &format!("{p}[{j}].server_names"),
                    names.len(),
                    MAX_SERVER_NAMES,
                );
            }
        }
    }
    if let Some(limits) = &l.limits {
        let p = format!("{path}.limits");
        duration(
            v,
            &format!("{p}.header_read_timeout"),
            &limits.header_read_timeout,
            Duration::ZERO,
            MAX_HEADER_READ_TIMEOUT,
        );
        duration(
            v,
            &format!("{p}.idle_timeout"),
            &limits.idle_timeout,
            Duration::ZERO,
            MAX_IDLE_TIMEOUT,
        );
        size(
            v,
            &format!("{p}.max_body_size"),
            &limits.max_body_size,
            MAX_BODY_SIZE,
        );
        at_most(
            v,
            &format!("{p}.max_connections"),
            limits.max_connections,
            MAX_CONNECTIONS,
        );
        duration(
            v,
            &format!("{p}.body_read_timeout"),
            &limits.body_read_timeout,
            Duration::ZERO,
            MAX_BODY_READ_TIMEOUT,
        );
        size(
            v,
            &format!("{p}.min_body_rate"),
            &limits.min_body_rate,
            MAX_MIN_BODY_RATE,
        );
    }
    cache_policy(v, &format!("{path}.cache"), l.cache.as_ref());
    compression(v, &format!("{path}.compression"), l.compression.as_ref());
    for (j, r) in l.routes.iter().enumerate() {
        route(v, &format!("{path}.routes[{j}]"), r);
    }
}

fn cache_policy(v: &mut Report<'_>, path: &str, c: Option<&super::cache::PolicySurface>) {
    let Some(c) = c else {
        return;
    };
    for (key, q) in [
        ("default_ttl", &c.default_ttl),
        ("stale_while_revalidate", &c.stale_while_revalidate),
        ("stale_if_error", &c.stale_if_error),
    ] {
        duration(
            v,
            &format!("{path}.{key}"),
            q,
            Duration::ZERO,
            MAX_CACHE_TTL,
        );
    }
}

fn compression(v: &mut Report<'_>, path: &str, c: Option<&super::compression::CompressionSurface>) {
    let Some(super::compression::CompressionSurface::On(s)) = c else {
        return;
    };
    size(
        v,
        &format!("{path}.min_size"),
        &s.min_size,
        MAX_COMPRESSION_MIN_SIZE,
    );
    if let Some(types) = &s.content_types {
        count(v, &format!("{path}.content_types"), types.len(), MAX_LIST);
    }
}

fn route(v: &mut Report<'_>, path: &str, r: &surface::Route) {
    if let Some(n) = &r.name {
        name(v, &format!("{path}.name"), n);
    }
    if let Some(m) = &r.matches {
        let p = format!("{path}.match");
        for (key, n) in [
            ("hosts", m.hosts.len()),
            ("methods", m.methods.len()),
            ("headers", m.headers.len()),
            ("query", m.query.len()),
        ] {
            count(v, &format!("{p}.{key}"), n, MAX_LIST);
        }
        if let Some(re) = m.path.as_ref().and_then(|p| p.regex.as_ref()) {
            regex(v, &format!("{p}.path.regex"), re);
        }
        for (key, list) in [("headers", &m.headers), ("query", &m.query)] {
            for (k, c) in list.iter().enumerate() {
                if let Some(re) = &c.regex {
                    regex(v, &format!("{p}.{key}[{k}].regex"), re);
                }
            }
        }
    }
    if let Some(rw) = r.proxy.as_ref().and_then(|p| p.rewrite.as_ref()) {
        regex(v, &format!("{path}.proxy.rewrite.regex"), &rw.regex);
    }
    if let Some(rd) = &r.redirect {
        text(
            v,
            &format!("{path}.redirect.location"),
            &rd.location,
            MAX_HEADER_VALUE_LEN,
        );
    }
    if let Some(rs) = &r.respond {
        header_map(v, &format!("{path}.respond.headers"), &rs.headers);
        let len = rs.body.len() as u64;
        if len > MAX_RESPOND_BODY {
            v.error(
                format!("{path}.respond.body"),
                format!(
                    "body is {}: must be at most {}",
                    show_size(len),
                    show_size(MAX_RESPOND_BODY)
                ),
            );
        }
    }
    for (key, ops) in [
        ("request_headers", &r.request_headers),
        ("response_headers", &r.response_headers),
    ] {
        if let Some(ops) = ops {
            let p = format!("{path}.{key}");
            header_map(v, &format!("{p}.add"), &ops.add);
            header_map(v, &format!("{p}.set"), &ops.set);
            count(v, &format!("{p}.remove"), ops.remove.len(), MAX_LIST);
        }
    }
    cache_policy(v, &format!("{path}.cache"), r.cache.as_ref());
    compression(v, &format!("{path}.compression"), r.compression.as_ref());
}

fn header_map(v: &mut Report<'_>, path: &str, map: &std::collections::BTreeMap<String, String>) {
    count(v, path, map.len(), MAX_LIST);
    for (k, value) in map {
        text(v, &format!("{path}.{k}"), value, MAX_HEADER_VALUE_LEN);
    }
}

fn pool(v: &mut Report<'_>, path: &str, p: &surface::Pool) {
    name(v, &format!("{path}.name"), &p.name);
    count(
        v,
        &format!("{path}.backends"),
        p.backends.len(),
        MAX_BACKENDS,
    );
    let ketama = p.algorithm == surface::Algorithm::Ketama;
    let max_weight = if ketama {
        MAX_KETAMA_WEIGHT
    } else {
        MAX_WEIGHT
    };
    let mut total: u64 = 0;
    for (j, b) in p.backends.iter().enumerate() {
        let w = b.weight.unwrap_or(1);
        total = total.saturating_add(u64::from(w));
        if w > max_weight {
            v.error(
                format!("{path}.backends[{j}].weight"),
                format!(
                    "weight is {w}: must be at most {max_weight}{}",
                    if ketama { " in a ketama pool" } else { "" }
                ),
            );
        }
    }
    if ketama && total > MAX_KETAMA_TOTAL_WEIGHT {
        v.error(
            format!("{path}.backends"),
            format!(
                "the weights of ketama pool {:?} add up to {total}: must be at most \
                 {MAX_KETAMA_TOTAL_WEIGHT} (each unit is 160 ring points)",
                p.name
            ),
        );
    }
    if let Some(h) = &p.health_check {
        let hp = format!("{path}.health_check");
        check_interval(v, &hp, &h.interval);
        for (key, n) in [("rise", h.rise), ("fall", h.fall)] {
            at_most(v, &format!("{hp}.{key}"), n, MAX_RISE_FALL);
        }
        count(
            v,
            &format!("{hp}.expected_statuses"),
            h.expected_statuses.len(),
            MAX_LIST,
        );
    }
    if let Some(o) = &p.outlier_detection {
        let op = format!("{path}.outlier_detection");
        at_most(
            v,
            &format!("{op}.consecutive_failures"),
            Some(o.consecutive_failures),
            MAX_CONSECUTIVE_FAILURES,
        );
        duration(
            v,
            &format!("{op}.ejection_time"),
            &o.ejection_time,
            Duration::ZERO,
            MAX_EJECTION_TIME,
        );
    }
    if let Some(t) = &p.timeouts {
        let tp = format!("{path}.timeouts");
        for (key, q, max) in [
            ("connect", &t.connect, MAX_CONNECT_TIMEOUT),
            ("read", &t.read, MAX_IO_TIMEOUT),
            ("write", &t.write, MAX_IO_TIMEOUT),
            ("total", &t.total, MAX_IO_TIMEOUT),
        ] {
            duration(v, &format!("{tp}.{key}"), q, Duration::ZERO, max);
        }
    }
    if let Some(r) = &p.retries {
        let rp = format!("{path}.retries");
        at_most(
            v,
            &format!("{rp}.attempts"),
            Some(r.attempts),
            MAX_RETRY_ATTEMPTS,
        );
        at_most(
            v,
            &format!("{rp}.min_per_window"),
            r.min_per_window,
            MAX_RETRY_MIN_PER_WINDOW,
        );
    }
    if let Some(c) = &p.circuit_breaker {
        let cp = format!("{path}.circuit_breaker");
        duration(
            v,
            &format!("{cp}.window"),
            &c.window,
            MIN_BREAKER_WINDOW,
            MAX_BREAKER_WINDOW,
        );
        at_most(
            v,
            &format!("{cp}.min_requests"),
            c.min_requests,
            MAX_BREAKER_MIN_REQUESTS,
        );
        duration(
            v,
            &format!("{cp}.open_for"),
            &c.open_for,
            Duration::ZERO,
            MAX_BREAKER_OPEN_FOR,
        );
        at_most(
            v,
            &format!("{cp}.half_open_requests"),
            c.half_open_requests,
            MAX_HALF_OPEN_REQUESTS,
        );
    }
    if let Some(k) = &p.keepalive {
        duration(
            v,
            &format!("{path}.keepalive.idle_timeout"),
            &Some(k.idle_timeout.clone()),
            Duration::ZERO,
            MAX_KEEPALIVE_IDLE,
        );
    }
}

fn check_interval(v: &mut Report<'_>, path: &str, q: &Option<Quantity>) {
    duration(
        v,
        &format!("{path}.interval"),
        q,
        MIN_CHECK_INTERVAL,
        MAX_CHECK_INTERVAL,
    );
}

/// The key a path ends in (`window` of `pools[0].circuit_breaker.window`).
fn key(path: &str) -> &str {
    path.rsplit(['.', '[']).next().unwrap_or(path)
}

/// A count or number at most `max`.
fn at_most<T: PartialOrd + std::fmt::Display>(
    v: &mut Report<'_>,
    path: &str,
    n: Option<T>,
    max: T,
) {
    if let Some(n) = n
        && n > max
    {
        v.error(
            path.to_string(),
            format!("{} is {n}: must be at most {max}", key(path)),
        );
    }
}

/// A list of at most `max` entries.
fn count(v: &mut Report<'_>, path: &str, len: usize, max: usize) {
    if len > max {
        v.error(
            path.to_string(),
            format!("{} has {len} entries: must have at most {max}", key(path)),
        );
    }
}

/// A duration from `min` to `max`. A value that does not parse, and a
/// zero, are left to the section's validator, which reports them.
fn duration(v: &mut Report<'_>, path: &str, q: &Option<Quantity>, min: Duration, max: Duration) {
    let Some(d) = q.as_ref().and_then(|q| units::parse_duration(&q.0).ok()) else {
        return;
    };
    if d > max {
        v.error(
            path.to_string(),
            format!(
                "{} is {}: must be at most {}",
                key(path),
                q.as_ref().map_or("", |q| q.0.trim()),
                show_duration(max)
            ),
        );
    } else if !d.is_zero() && d < min {
        v.error(
            path.to_string(),
            format!(
                "{} is {}: must be at least {}",
                key(path),
                q.as_ref().map_or("", |q| q.0.trim()),
                show_duration(min)
            ),
        );
    }
}

/// A byte size at most `max`; one that does not parse is reported elsewhere.
fn size(v: &mut Report<'_>, path: &str, q: &Option<Quantity>, max: u64) {
    let Some(q) = q else {
        return;
    };
    if let Ok(n) = units::parse_size(&q.0)
        && n > max
    {
        v.error(
            path.to_string(),
            format!(
                "{} is {}: must be at most {}",
                key(path),
                q.0.trim(),
                show_size(max)
            ),
        );
    }
}

/// A text of at most `max` bytes.
fn text(v: &mut Report<'_>, path: &str, value: &str, max: usize) {
    if value.len() > max {
        v.error(
            path.to_string(),
            format!(
                "{} is {} long: must be at most {}",
                key(path),
                show_size(value.len() as u64),
                show_size(max as u64)
            ),
        );
    }
}

fn name(v: &mut Report<'_>, path: &str, value: &str) {
    if value.len() > MAX_NAME_LEN {
        v.error(
            path.to_string(),
            format!(
                "name is {} bytes long: must be at most {MAX_NAME_LEN} (names are metric labels)",
                value.len()
            ),
        );
    }
}

fn regex(v: &mut Report<'_>, path: &str, source: &str) {
    if source.len() > MAX_REGEX_LEN {
        v.error(
            path.to_string(),
            format!(
                "regex is {} bytes long: must be at most {MAX_REGEX_LEN}",
                source.len()
            ),
        );
    }
}

/// `d` as the YAML would write it: the largest unit that divides it.
pub fn show_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        "0s".into()
    } else if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// `n` bytes as the YAML would write it: the largest binary unit that
/// divides it.
pub fn show_size(n: u64) -> String {
    const UNITS: [(u32, &str); 3] = [(30, "GiB"), (20, "MiB"), (10, "KiB")];
    for (shift, unit) in UNITS {
        if n != 0 && n.trailing_zeros() >= shift {
            return format!("{}{unit}", n >> shift);
        }
    }
    format!("{n} bytes")
}
