//! Metric names and the functions that record them, in one place so that
//! the names a dashboard depends on are easy to find.
//!
//! The Prometheus recorder is rendered by the admin endpoint; XDP counters
//! are read from the kernel at scrape time, so a scrape is never stale.

use crate::dataplane::ClassStats;
use edge_common::PacketClass;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::Arc;

/// Packets seen by the XDP program, by class, summed over CPUs.
pub const XDP_PACKETS: &str = "edge_xdp_packets_total";
/// Bytes seen by the XDP program, by class, summed over CPUs.
pub const XDP_BYTES: &str = "edge_xdp_bytes_total";
/// L7 requests by listener, pool and status class.
pub const HTTP_REQUESTS: &str = "edge_http_requests_total";
/// Whether the XDP program is attached to an interface (1), by mode.
pub const XDP_ATTACHED: &str = "edge_xdp_attached";

/// Responses of cache-enabled requests by listener and cache status
/// (HIT, MISS, EXPIRED, STALE, UPDATING, REVALIDATED, BYPASS, UNCACHEABLE).
pub const CACHE_RESPONSES: &str = "edge_cache_responses_total";
/// Objects removed from the cache store to stay under `cache.max_size`.
pub const CACHE_EVICTIONS: &str = "edge_cache_evictions_total";
/// Bytes held by the cache store (bodies and headers).
pub const CACHE_STORED_BYTES: &str = "edge_cache_stored_bytes";
/// Objects held by the cache store (each Vary variant counts).
pub const CACHE_STORED_OBJECTS: &str = "edge_cache_stored_objects";

/// Installs the global recorder and returns the handle that renders it.
pub fn install() -> Result<PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    let handle = PrometheusBuilder::new().install_recorder()?;
    metrics::describe_counter!(XDP_PACKETS, "Packets seen by the XDP program, by class.");
    metrics::describe_counter!(XDP_BYTES, "Bytes seen by the XDP program, by class.");
    metrics::describe_counter!(
        HTTP_REQUESTS,
        "L7 requests by listener, pool and status class."
    );
    metrics::describe_gauge!(
        XDP_ATTACHED,
        "1 while the XDP program is attached to the interface."
    );
    describe_cache();
    Ok(handle)
}

fn describe_cache() {
    metrics::describe_counter!(
        CACHE_RESPONSES,
        "Responses of cache-enabled requests by listener and cache status."
    );
    metrics::describe_counter!(
        CACHE_EVICTIONS,
        "Objects evicted from the cache store to stay under its byte bound."
    );
    metrics::describe_gauge!(
        CACHE_STORED_BYTES,
        "Bytes held by the cache store (bodies and headers)."
    );
    metrics::describe_gauge!(
        CACHE_STORED_OBJECTS,
        "Objects held by the cache store, Vary variants counted apart."
    );
}

/// Counts one response of a cache-enabled request.
pub fn cache_response(listener: &Arc<str>, status: &'static str) {
    metrics::counter!(CACHE_RESPONSES, "listener" => Arc::clone(listener), "status" => status)
        .increment(1);
}

/// Counts objects evicted from the cache store.
pub fn cache_evicted(objects: u64) {
    metrics::counter!(CACHE_EVICTIONS).increment(objects);
}

/// Records what the cache store holds.
pub fn cache_stored(bytes: u64, objects: u64) {
    metrics::gauge!(CACHE_STORED_BYTES).set(bytes as f64);
    metrics::gauge!(CACHE_STORED_OBJECTS).set(objects as f64);
}

/// The status class label of an HTTP status (`2xx`), or `none` when no
/// response was sent.
pub fn status_class(status: Option<u16>) -> &'static str {
    match status {
        Some(100..=199) => "1xx",
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        _ => "none",
    }
}

/// Counts one finished L7 request.
pub fn http_request(listener: &Arc<str>, pool: &Arc<str>, status: Option<u16>) {
    metrics::counter!(
        HTTP_REQUESTS,
        "listener" => Arc::clone(listener),
        "pool" => Arc::clone(pool),
        "status_class" => status_class(status),
    )
    .increment(1);
}

/// Records that XDP is attached to `iface` in `mode`.
pub fn xdp_attached(iface: &str, mode: &'static str) {
    metrics::gauge!(XDP_ATTACHED, "interface" => iface.to_string(), "mode" => mode).set(1.0);
}

/// Copies the kernel's per-class counters into the recorder.
pub fn refresh_xdp(stats: &ClassStats) {
    match stats.read() {
        Ok(counters) => {
            for (class, c) in PacketClass::ALL.iter().zip(counters) {
                metrics::counter!(XDP_PACKETS, "class" => class.name()).absolute(c.packets);
                metrics::counter!(XDP_BYTES, "class" => class.name()).absolute(c.bytes);
            }
        }
        Err(e) => tracing::warn!("reading XDP counters: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        assert_eq!(status_class(Some(200)), "2xx");
        assert_eq!(status_class(Some(404)), "4xx");
        assert_eq!(status_class(Some(503)), "5xx");
        assert_eq!(status_class(None), "none");
        assert_eq!(status_class(Some(42)), "none");
    }
}
