//! The admin API's JSON views: listeners, pools and their backends, L4
//! services, the XDP program, the configuration. Each is built from a
//! snapshot of the live state when asked; nothing here is on a request's
//! path.

use crate::{
    config::Listener,
    dataplane::Dataplane,
    l4::control::ServiceView,
    upstream::{BackendState, BreakerState, UpstreamPool},
};
use edge_common::PacketClass;
use serde_json::{Value, json};
use std::sync::Arc;

/// `{"error": why}`.
pub fn error(why: impl std::fmt::Display) -> Value {
    json!({ "error": why.to_string() })
}

/// A listener: name, address, kind and connections.
pub fn listener(l: &Listener) -> Value {
    let kind = match &l.stream {
        Some(s) => s.mode.as_str(),
        None if l.transport.tls.is_some() => "https",
        None => "http",
    };
    let (open, total) = crate::proxy::listener::connection_counts(&l.name);
    json!({
        "name": l.name,
        "address": l.address.to_string(),
        "kind": kind,
        "connections_active": open,
        "connections_total": total,
    })
}

fn breaker(state: Option<BreakerState>) -> Value {
    match state {
        None => Value::Null,
        Some(BreakerState::Closed) => json!("closed"),
        Some(BreakerState::HalfOpen) => json!("half_open"),
        Some(BreakerState::Open) => json!("open"),
    }
}

fn backend(b: &BackendState) -> Value {
    json!({
        "address": b.address.to_string(),
        "weight": b.weight,
        "state": b.state(),
        "healthy": b.healthy,
        "drained": b.drained,
        "ejected_for_seconds": b.ejected_for.map(|d| d.as_secs_f64()),
        "ejections": b.ejections,
        "in_flight": b.in_flight,
        "requests_total": b.requests,
        "failures_total": b.failures,
        "error_ratio": b.error_ratio,
    })
}

/// A pool with its backends.
pub fn pool(p: &UpstreamPool) -> Value {
    let backends = p.states();
    let requests: u64 = backends.iter().map(|b| b.requests).sum();
    let failures: u64 = backends.iter().map(|b| b.failures).sum();
    json!({
        "name": &*p.name,
        "algorithm": p.config.algorithm.as_str(),
        "protocol": p.config.protocol.as_str(),
        "breaker": breaker(p.breaker_state()),
        "requests_total": requests,
        "failures_total": failures,
        "latency_ms": p.latency().map(|l| json!({
            "p50": l.p50, "p90": l.p90, "p99": l.p99, "count": l.count,
        })),
        "backends": backends.iter().map(backend).collect::<Vec<_>>(),
    })
}

/// Every pool.
pub fn pools(pools: &[Arc<UpstreamPool>]) -> Value {
    Value::Array(pools.iter().map(|p| pool(p)).collect())
}

/// A consumer's usage since edge started: requests by status class, body
/// bytes in and out.
pub fn consumer(name: &str, groups: &[String]) -> Value {
    let usage = crate::policy::usage::read(name);
    let mut requests = serde_json::Map::new();
    for (i, class) in crate::metrics::STATUS_CLASSES.iter().enumerate() {
        let n = usage.as_ref().map_or(0, |u| u.requests[i]);
        requests.insert((*class).to_string(), json!(n));
    }
    json!({
        "name": name,
        "groups": groups,
        "requests": requests,
        "requests_total": usage.as_ref().map_or(0, |u| u.requests.iter().sum::<u64>()),
        "bytes_in": usage.as_ref().map_or(0, |u| u.bytes_in),
        "bytes_out": usage.as_ref().map_or(0, |u| u.bytes_out),
    })
}

/// An L4 service with its backends.
pub fn service(s: &ServiceView) -> Value {
    let backends: Vec<Value> = s
        .backends
        .iter()
        .map(|b| {
            let state = if b.drained {
                "draining"
            } else if !b.healthy {
                "down"
            } else if !b.resolved {
                "unresolved"
            } else {
                "healthy"
            };
            json!({
                "address": b.address.to_string(),
                "weight": b.weight,
                "state": state,
                "healthy": b.healthy,
                "drained": b.drained,
                "resolved": b.resolved,
                "packets_total": b.packets,
                "bytes_total": b.bytes,
            })
        })
        .collect();
    json!({
        "name": s.name,
        "vip": s.vip.to_string(),
        "port": s.port,
        "protocol": s.protocol,
        "backends": backends,
        // Hex, so that JSON readers that hold numbers as doubles compare
        // all 64 bits.
        "table": {
            "size": s.table_size,
            "digest": s.table_digest.map(|d| format!("{d:016x}")),
        },
    })
}

/// The XDP program: interfaces, pinning, per-class counters.
pub fn xdp(dp: &Dataplane) -> Value {
    let interfaces: Vec<Value> = dp
        .attached()
        .iter()
        .map(|(name, mode)| json!({ "name": name, "mode": mode.as_str() }))
        .collect();
    let mut counters = serde_json::Map::new();
    if let Ok(read) = dp.stats().read() {
        for (class, c) in PacketClass::ALL.iter().zip(read) {
            counters.insert(
                class.name().to_string(),
                json!({ "packets": c.packets, "bytes": c.bytes }),
            );
        }
    }
    json!({
        "interfaces": interfaces,
        "pinned": dp.pinned().is_some(),
        "pin_dir": dp.pinned().map(|(dir, _)| dir.display().to_string()),
        "counters": counters,
    })
}
