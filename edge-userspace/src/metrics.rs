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

/// L4 packets forwarded, by service and backend.
pub const L4_PACKETS: &str = "edge_l4_packets_total";
/// L4 bytes forwarded (as received), by service and backend.
pub const L4_BYTES: &str = "edge_l4_bytes_total";
/// L4 flows started, by service and backend.
pub const L4_NEW_FLOWS: &str = "edge_l4_new_flows_total";
/// L4 conntrack misses on mid-flow TCP packets, by service and backend.
pub const L4_LRU_MISSES: &str = "edge_l4_lru_misses_total";
/// Whether an L4 backend passes its health check (0/1).
pub const L4_BACKEND_HEALTHY: &str = "edge_l4_backend_healthy";
/// The live Maglev table generation of an L4 service.
pub const L4_MAGLEV_GENERATION: &str = "edge_l4_maglev_generation";
/// L4 path events (fragments dropped, ICMP forwarded, SYN budget drops...).
pub const L4_EVENTS: &str = "edge_l4_events_total";

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
    metrics::describe_counter!(L4_PACKETS, "L4 packets forwarded, by service and backend.");
    metrics::describe_counter!(L4_BYTES, "L4 bytes forwarded, by service and backend.");
    metrics::describe_counter!(L4_NEW_FLOWS, "L4 flows started, by service and backend.");
    metrics::describe_counter!(
        L4_LRU_MISSES,
        "Conntrack misses on mid-flow TCP packets, by service and backend."
    );
    metrics::describe_gauge!(L4_BACKEND_HEALTHY, "1 while the L4 backend is healthy.");
    metrics::describe_gauge!(L4_MAGLEV_GENERATION, "Live Maglev table generation.");
    metrics::describe_counter!(L4_EVENTS, "L4 fast-path events, by kind.");
    Ok(handle)
}

/// Copies one L4 backend's kernel counters into the recorder.
pub fn l4_counters(service: &str, backend: &str, c: &edge_common::L4Counters) {
    let labels = [
        ("service", service.to_string()),
        ("backend", backend.to_string()),
    ];
    metrics::counter!(L4_PACKETS, &labels).absolute(c.packets);
    metrics::counter!(L4_BYTES, &labels).absolute(c.bytes);
    metrics::counter!(L4_NEW_FLOWS, &labels).absolute(c.new_flows);
    metrics::counter!(L4_LRU_MISSES, &labels).absolute(c.lru_misses);
}

/// Records an L4 backend's health.
pub fn l4_healthy(service: &str, backend: &str, up: bool) {
    metrics::gauge!(L4_BACKEND_HEALTHY, "service" => service.to_string(), "backend" => backend.to_string())
        .set(if up { 1.0 } else { 0.0 });
}

/// Records an L4 service's table generation.
pub fn l4_generation(service: &str, generation: u32) {
    metrics::gauge!(L4_MAGLEV_GENERATION, "service" => service.to_string())
        .set(f64::from(generation));
}

/// Copies the L4 event counters into the recorder.
pub fn l4_events(counts: &[u64; edge_common::L4Event::COUNT as usize]) {
    for (e, n) in edge_common::L4Event::ALL.iter().zip(counts) {
        metrics::counter!(L4_EVENTS, "event" => e.name()).absolute(*n);
    }
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
