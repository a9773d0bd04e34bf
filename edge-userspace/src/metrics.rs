//! Metric names and the functions that record them, in one place so that
//! the names a dashboard depends on are easy to find.
//!
//! The Prometheus recorder is rendered by the admin endpoint; XDP counters
//! are read from the kernel at scrape time, so a scrape is never stale.

use crate::{dataplane::ClassStats, upstream::BreakerState};
use edge_common::PacketClass;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::Arc;

/// Packets seen by the XDP program, by class, summed over CPUs.
pub const XDP_PACKETS: &str = "edge_xdp_packets_total";
/// Bytes seen by the XDP program, by class, summed over CPUs.
pub const XDP_BYTES: &str = "edge_xdp_bytes_total";
/// L7 requests by listener, route, pool and status class.
pub const HTTP_REQUESTS: &str = "edge_http_requests_total";
/// Time from the request head to the end of the response, by listener and route.
pub const HTTP_DURATION: &str = "edge_http_request_duration_seconds";
/// Time from choosing a backend to its response head, by pool.
pub const UPSTREAM_DURATION: &str = "edge_http_upstream_duration_seconds";
/// Request body bytes read from clients, by listener and route.
pub const HTTP_REQUEST_BYTES: &str = "edge_http_request_bytes_total";
/// Response body bytes sent to clients, by listener and route.
pub const HTTP_RESPONSE_BYTES: &str = "edge_http_response_bytes_total";
/// 1 while a backend passes its health checks, by pool and backend.
pub const BACKEND_HEALTHY: &str = "edge_upstream_backend_healthy";
/// Outlier ejections, by pool and backend.
pub const EJECTIONS: &str = "edge_upstream_ejections_total";
/// Retries, by pool.
pub const RETRIES: &str = "edge_upstream_retries_total";
/// Stream listener connections by outcome (ok, connect_failed,
/// no_backend, breaker_open).
pub const STREAM_CONNECTIONS: &str = "edge_stream_connections_total";
/// Bytes relayed by stream listeners, by direction.
pub const STREAM_BYTES: &str = "edge_stream_bytes_total";
/// TLS passthrough connections closed before a pool was chosen, by reason.
pub const PASSTHROUGH_REFUSED: &str = "edge_tls_passthrough_refused_total";
/// Connections closed for a missing or bad PROXY protocol header.
pub const PROXY_PROTOCOL_REFUSED: &str = "edge_proxy_protocol_refused_total";
/// gRPC requests by their final `grpc-status`.
pub const GRPC_REQUESTS: &str = "edge_grpc_requests_total";
/// Circuit breaker state by pool: 0 closed, 1 half-open, 2 open.
pub const BREAKER_STATE: &str = "edge_upstream_circuit_breaker_state";
/// Access log lines dropped because the writer fell behind.
pub const ACCESS_LOG_DROPPED: &str = "edge_access_log_dropped_total";

/// Histogram buckets for latencies, in seconds (100 µs to 30 s).
const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0, 30.0,
];
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
/// L4 path events (fragments dropped, ICMP forwarded, SYN budget drops,
/// second chances on the previous Maglev table...).
pub const L4_EVENTS: &str = "edge_l4_events_total";

/// 1 while BIRD announces the prefix (a host route), 0 once withdrawn, by
/// prefix; at most `bgp::MAX_TRACKED_PREFIXES` prefixes have a series.
pub const BGP_ANNOUNCED: &str = "edge_bgp_announced";
/// `configure` exchanges with BIRD, by result (ok, error).
pub const BGP_CONFIGURE: &str = "edge_bgp_configure_total";
/// 1 once the host is drained (every BGP route withdrawn, for good).
pub const BGP_HOST_DRAINED: &str = "edge_bgp_host_drained";
/// Newly announced prefixes given no `edge_bgp_announced` series because
/// `bgp::MAX_TRACKED_PREFIXES` prefixes have one already.
pub const BGP_PREFIXES_UNTRACKED: &str = "edge_bgp_prefixes_untracked_total";

/// How often histogram samples are folded into their buckets.
///
/// The recorder keeps every raw histogram sample until something folds
/// them, and only a scrape did: with nobody scraping, each request left
/// about 40 bytes behind for good. Folding on a schedule bounds that to
/// the samples of one interval.
pub const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Installs the global recorder and returns the handle that renders it,
/// with a thread that folds histogram samples every [`UPKEEP_INTERVAL`].
///
/// Call it only when something can read the metrics (the admin endpoint):
/// without a recorder, recording is a no-op and holds nothing.
pub fn install() -> Result<PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets(&LATENCY_BUCKETS)?
        .install_recorder()?;
    let upkeep = handle.clone();
    // A plain thread: the recorder is installed before Pingora starts its
    // runtimes, and the fold must go on whatever they do.
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                upkeep.run_upkeep();
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(
            "cannot start the metrics upkeep thread ({e}): histograms fold only when scraped"
        );
    }
    metrics::describe_counter!(XDP_PACKETS, "Packets seen by the XDP program, by class.");
    metrics::describe_counter!(XDP_BYTES, "Bytes seen by the XDP program, by class.");
    metrics::describe_counter!(
        HTTP_REQUESTS,
        "L7 requests by listener, route, pool and status class."
    );
    metrics::describe_histogram!(
        HTTP_DURATION,
        metrics::Unit::Seconds,
        "Request duration seen by the client side, by listener and route."
    );
    metrics::describe_histogram!(
        UPSTREAM_DURATION,
        metrics::Unit::Seconds,
        "Time from choosing a backend to its response head, by pool."
    );
    metrics::describe_counter!(HTTP_REQUEST_BYTES, "Request body bytes read from clients.");
    metrics::describe_counter!(HTTP_RESPONSE_BYTES, "Response body bytes sent to clients.");
    metrics::describe_gauge!(BACKEND_HEALTHY, "1 while the backend passes health checks.");
    metrics::describe_counter!(CONFIG_RELOADS, "Configuration reloads, by result.");
    metrics::describe_gauge!(CONFIG_GENERATION, "The live configuration's generation.");
    // Both results from the start, so a dashboard sees 0 rather than nothing.
    for result in ["ok", "error"] {
        metrics::counter!(CONFIG_RELOADS, "result" => result).absolute(0);
    }
    metrics::describe_counter!(
        POLICY_REJECTIONS,
        "Requests a gateway policy refused, by listener, route, policy and reason."
    );
    metrics::describe_counter!(
        TRANSFORMS,
        "Body transformations by route, what and result (ok, skipped, error)."
    );
    metrics::describe_counter!(
        VALIDATION_REJECTIONS,
        "Requests refused by a route's JSON Schema or body checks, by route and reason."
    );
    metrics::describe_counter!(
        SPLIT_REQUESTS,
        "Requests a traffic split sent to another pool."
    );
    metrics::describe_counter!(
        MIRROR_REQUESTS,
        "Copies of requests to a shadow pool, by route and result (sent, ok, error, skipped)."
    );
    metrics::describe_counter!(
        AGGREGATE_CALLS,
        "Upstream calls of aggregations, by route, call and result."
    );
    metrics::describe_counter!(CONSUMER_REQUESTS, "Requests by consumer and status class.");
    metrics::describe_histogram!(
        CONSUMER_DURATION,
        metrics::Unit::Seconds,
        "Request duration by consumer."
    );
    metrics::describe_counter!(CONSUMER_BYTES, "Body bytes by consumer and direction.");
    metrics::describe_counter!(JWKS_FETCHES, "JWKS fetches by result.");
    metrics::describe_counter!(
        RATELIMIT_EVICTIONS,
        "Local rate-limit keys evicted to stay within gateway.max_limit_keys."
    );
    metrics::describe_counter!(
        RATELIMIT_STORE_ERRORS,
        "Rate-limit checks the shared store could not answer."
    );
    metrics::describe_counter!(EJECTIONS, "Outlier ejections of a backend.");
    metrics::describe_counter!(RETRIES, "Retries granted, by pool.");
    metrics::describe_counter!(
        STREAM_CONNECTIONS,
        "Stream listener connections to a pool, by result (ok, connect_failed, no_backend, breaker_open)."
    );
    metrics::describe_counter!(
        STREAM_BYTES,
        "Bytes relayed by stream listeners (up: client to backend; down: back; 0 for streams cut by an error or the idle timeout)."
    );
    metrics::describe_counter!(
        PASSTHROUGH_REFUSED,
        "TLS passthrough connections closed before a pool was chosen, by reason (not_tls, malformed, too_large, timeout, closed, no_route)."
    );
    metrics::describe_counter!(
        PROXY_PROTOCOL_REFUSED,
        "Connections from proxy_protocol.accept_from peers closed for a missing or bad PROXY header, by reason (missing, malformed, too_large, closed, timeout)."
    );
    metrics::describe_counter!(
        GRPC_REQUESTS,
        "gRPC requests by their final grpc-status (none: the stream broke or the client left)."
    );
    metrics::describe_gauge!(
        BREAKER_STATE,
        "Circuit breaker state: 0 closed, 1 half-open, 2 open."
    );
    metrics::describe_counter!(
        ACCESS_LOG_DROPPED,
        "Access log lines dropped (writer behind)."
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
    describe_cache();
    describe_bgp();
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

fn describe_bgp() {
    metrics::describe_gauge!(
        BGP_ANNOUNCED,
        "1 while BIRD announces the prefix, 0 once withdrawn, by prefix."
    );
    metrics::describe_counter!(
        BGP_CONFIGURE,
        "Configure exchanges with BIRD, by result (ok: BIRD took the file)."
    );
    metrics::describe_gauge!(
        BGP_HOST_DRAINED,
        "1 once the host is drained: every BGP route withdrawn, for good."
    );
    metrics::describe_counter!(
        BGP_PREFIXES_UNTRACKED,
        "Newly announced prefixes given no edge_bgp_announced series (its bound was reached)."
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

/// One finished L7 request, as the metrics see it.
pub struct RequestDone<'a> {
    /// Listener name.
    pub listener: &'a Arc<str>,
    /// Route name (`none` when nothing matched).
    pub route: &'a Arc<str>,
    /// Pool name (`none` for routes that answer themselves).
    pub pool: &'a Arc<str>,
    /// Status sent, if any.
    pub status: Option<u16>,
    /// Total time.
    pub seconds: f64,
    /// Request body bytes read.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
}

fn status_class_index(status: Option<u16>) -> usize {
    match status {
        Some(s @ 100..=599) => usize::from(s / 100 - 1),
        _ => 5,
    }
}

/// A route's request metrics, registered once when the route is compiled
/// (after the recorder is installed): a request then records through
/// handles instead of hashing its labels and looking them up in the
/// registry, about 1 µs a request.
pub struct RouteHandles {
    listener: Arc<str>,
    route: Arc<str>,
    /// The pool the request counters are labelled with: the route's own.
    pool: Arc<str>,
    requests: [metrics::Counter; 6],
    duration: metrics::Histogram,
    bytes_in: metrics::Counter,
    bytes_out: metrics::Counter,
}

impl RouteHandles {
    /// Handles for `route` on `listener`, whose requests go to `pool`
    /// (`none` for a route that answers itself).
    pub fn new(listener: &Arc<str>, route: &Arc<str>, pool: &Arc<str>) -> Self {
        let requests = STATUS_CLASSES.map(|class| {
            metrics::counter!(
                HTTP_REQUESTS,
                "listener" => Arc::clone(listener),
                "route" => Arc::clone(route),
                "pool" => Arc::clone(pool),
                "status_class" => class,
            )
        });
        let labels = [
            ("listener", Arc::clone(listener)),
            ("route", Arc::clone(route)),
        ];
        Self {
            listener: Arc::clone(listener),
            route: Arc::clone(route),
            pool: Arc::clone(pool),
            requests,
            duration: metrics::histogram!(HTTP_DURATION, &labels),
            bytes_in: metrics::counter!(HTTP_REQUEST_BYTES, &labels),
            bytes_out: metrics::counter!(HTTP_RESPONSE_BYTES, &labels),
        }
    }

    /// Whether these handles carry `r`'s labels.
    fn fits(&self, r: &RequestDone<'_>) -> bool {
        *self.listener == **r.listener && *self.route == **r.route
    }
}

/// Counts one finished L7 request, through `handles` when they are the
/// request's route's (a split to another pool only looks up its counter).
pub fn http_request_with(r: &RequestDone<'_>, handles: Option<&RouteHandles>) {
    let Some(h) = handles.filter(|h| h.fits(r)) else {
        return http_request(r);
    };
    if *h.pool == **r.pool {
        h.requests[status_class_index(r.status)].increment(1);
    } else {
        request_counter(r).increment(1);
    }
    h.duration.record(r.seconds);
    h.bytes_in.increment(r.bytes_in);
    h.bytes_out.increment(r.bytes_out);
}

/// The request counter of `r`'s labels, looked up in the registry.
fn request_counter(r: &RequestDone<'_>) -> metrics::Counter {
    metrics::counter!(
        HTTP_REQUESTS,
        "listener" => Arc::clone(r.listener),
        "route" => Arc::clone(r.route),
        "pool" => Arc::clone(r.pool),
        "status_class" => status_class(r.status),
    )
}

/// Counts one finished L7 request.
pub fn http_request(r: &RequestDone<'_>) {
    request_counter(r).increment(1);
    let labels = [
        ("listener", Arc::clone(r.listener)),
        ("route", Arc::clone(r.route)),
    ];
    metrics::histogram!(HTTP_DURATION, &labels).record(r.seconds);
    metrics::counter!(HTTP_REQUEST_BYTES, &labels).increment(r.bytes_in);
    metrics::counter!(HTTP_RESPONSE_BYTES, &labels).increment(r.bytes_out);
}

/// A pool's time-to-response-head histogram, registered once with it.
pub fn upstream_duration(pool: &Arc<str>) -> metrics::Histogram {
    metrics::histogram!(UPSTREAM_DURATION, "pool" => Arc::clone(pool))
}

/// Records a backend's health.
pub fn backend_health(pool: &Arc<str>, backend: &Arc<str>, healthy: bool) {
    metrics::gauge!(BACKEND_HEALTHY, "pool" => Arc::clone(pool), "backend" => Arc::clone(backend))
        .set(if healthy { 1.0 } else { 0.0 });
}

/// Counts an outlier ejection.
pub fn ejection(pool: &Arc<str>, backend: &Arc<str>) {
    metrics::counter!(EJECTIONS, "pool" => Arc::clone(pool), "backend" => Arc::clone(backend))
        .increment(1);
}

/// Counts a finished gRPC request by its status (`none` when no status
/// was seen: the stream broke, or the client left).
pub fn grpc_request(
    listener: &Arc<str>,
    route: &Arc<str>,
    pool: &Arc<str>,
    status: Option<crate::grpc::Code>,
) {
    metrics::counter!(
        GRPC_REQUESTS,
        "listener" => Arc::clone(listener),
        "route" => Arc::clone(route),
        "pool" => Arc::clone(pool),
        "grpc_status" => status.map_or("none", crate::grpc::Code::name),
    )
    .increment(1);
}

/// Counts a stream listener's connection to `pool` by `result`.
pub fn stream_connection(listener: &Arc<str>, pool: &Arc<str>, result: &'static str) {
    metrics::counter!(
        STREAM_CONNECTIONS,
        "listener" => Arc::clone(listener),
        "pool" => Arc::clone(pool),
        "result" => result,
    )
    .increment(1);
}

/// Counts the bytes of a finished stream.
pub fn stream_closed(listener: &Arc<str>, pool: &Arc<str>, up: u64, down: u64) {
    for (direction, n) in [("up", up), ("down", down)] {
        metrics::counter!(
            STREAM_BYTES,
            "listener" => Arc::clone(listener),
            "pool" => Arc::clone(pool),
            "direction" => direction,
        )
        .increment(n);
    }
}

/// Counts a connection from a PROXY-protocol peer closed for `reason`.
pub fn proxy_protocol_refused(listener: &Arc<str>, reason: &'static str) {
    metrics::counter!(
        PROXY_PROTOCOL_REFUSED,
        "listener" => Arc::clone(listener),
        "reason" => reason,
    )
    .increment(1);
}

/// Counts a TLS passthrough connection closed before it had a pool.
pub fn passthrough_refused(listener: &Arc<str>, reason: &'static str) {
    metrics::counter!(
        PASSTHROUGH_REFUSED,
        "listener" => Arc::clone(listener),
        "reason" => reason,
    )
    .increment(1);
}

/// Counts a retry.
pub fn retry(pool: &Arc<str>) {
    metrics::counter!(RETRIES, "pool" => Arc::clone(pool)).increment(1);
}

/// Records a circuit breaker's state.
pub fn breaker_state(pool: &Arc<str>, state: BreakerState) {
    metrics::gauge!(BREAKER_STATE, "pool" => Arc::clone(pool)).set(state as u8 as f64);
}

/// Requests answered 508 because they came back round to this edge.
pub const LOOPS: &str = "edge_http_loops_detected_total";

/// Counts a request refused as a forwarding loop.
pub fn loop_detected(listener: &Arc<str>) {
    metrics::counter!(LOOPS, "listener" => Arc::clone(listener)).increment(1);
}

/// Requests a gateway policy refused, by listener, route, policy and reason.
pub const POLICY_REJECTIONS: &str = "edge_policy_rejections_total";
/// Requests by consumer and status class.
pub const CONSUMER_REQUESTS: &str = "edge_consumer_requests_total";
/// Request duration by consumer.
pub const CONSUMER_DURATION: &str = "edge_consumer_request_duration_seconds";
/// Body bytes by consumer and direction (`in`, `out`).
pub const CONSUMER_BYTES: &str = "edge_consumer_bytes_total";
/// JWKS fetches by result.
pub const JWKS_FETCHES: &str = "edge_jwks_fetches_total";
/// Local rate-limit keys evicted to stay within `gateway.max_limit_keys`.
pub const RATELIMIT_EVICTIONS: &str = "edge_ratelimit_evictions_total";
/// Rate-limit checks the shared store could not answer.
pub const RATELIMIT_STORE_ERRORS: &str = "edge_ratelimit_store_errors_total";

/// Counts a request a policy refused.
pub fn policy_rejection(
    listener: &Arc<str>,
    route: &Arc<str>,
    policy: &'static str,
    reason: &'static str,
) {
    metrics::counter!(POLICY_REJECTIONS,
        "listener" => Arc::clone(listener),
        "route" => Arc::clone(route),
        "policy" => policy,
        "reason" => reason)
    .increment(1);
}

/// One consumer's usage metrics, registered once per generation so that
/// a request pays an atomic add per metric, not a registry lookup.
pub struct ConsumerStats {
    /// By status class, in [`STATUS_CLASSES`] order.
    requests: Vec<metrics::Counter>,
    duration: metrics::Histogram,
    bytes_in: metrics::Counter,
    bytes_out: metrics::Counter,
    /// The same, readable by the admin API and kept across reloads.
    usage: Arc<crate::policy::usage::Usage>,
}

impl std::fmt::Debug for ConsumerStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConsumerStats")
    }
}

/// The label of an absent route or pool.
pub const NONE: &str = "none";

/// The status classes of [`status_class`], in order.
pub const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];

impl ConsumerStats {
    /// The handles of consumer `name` (a name from the configuration).
    pub fn new(name: &Arc<str>) -> Self {
        Self {
            requests: STATUS_CLASSES
                .iter()
                .map(|c| {
                    metrics::counter!(CONSUMER_REQUESTS,
                        "consumer" => Arc::clone(name),
                        "status" => *c)
                })
                .collect(),
            duration: metrics::histogram!(CONSUMER_DURATION, "consumer" => Arc::clone(name)),
            bytes_in: metrics::counter!(CONSUMER_BYTES, "consumer" => Arc::clone(name), "direction" => "in"),
            bytes_out: metrics::counter!(CONSUMER_BYTES, "consumer" => Arc::clone(name), "direction" => "out"),
            usage: crate::policy::usage::of(name),
        }
    }

    /// Records one finished request.
    pub fn request(&self, status: Option<u16>, seconds: f64, bytes_in: u64, bytes_out: u64) {
        let class = status_class(status);
        if let Some(i) = STATUS_CLASSES.iter().position(|c| *c == class) {
            if let Some(c) = self.requests.get(i) {
                c.increment(1);
            }
            self.usage.record(i, bytes_in, bytes_out);
        }
        self.duration.record(seconds);
        self.bytes_in.increment(bytes_in);
        self.bytes_out.increment(bytes_out);
    }
}

/// Sources banned by L7 verdicts.
pub const BANS_PLACED: &str = "edge_bans_total";
/// Bans not placed because the ban list was full.
pub const BANS_REFUSED: &str = "edge_bans_refused_total";
/// Bans standing now.
pub const BANS_ACTIVE: &str = "edge_bans_active";
/// Ban map writes or removals the kernel refused.
pub const BAN_ERRORS: &str = "edge_bans_errors_total";

/// Counts a ban map write or removal that failed.
pub fn ban_error() {
    metrics::counter!(BAN_ERRORS).increment(1);
}

/// Counts a ban placed.
pub fn ban_placed() {
    metrics::counter!(BANS_PLACED).increment(1);
}

/// Counts a ban the full list refused.
pub fn ban_refused() {
    metrics::counter!(BANS_REFUSED).increment(1);
}

/// Records the number of standing bans.
pub fn bans_active(n: usize) {
    metrics::gauge!(BANS_ACTIVE).set(n as f64);
}

/// Counts a JWKS fetch.
pub fn jwks_fetch(ok: bool) {
    metrics::counter!(JWKS_FETCHES, "result" => if ok { "ok" } else { "error" }).increment(1);
}

/// Counts a local rate-limit key evicted.
pub fn ratelimit_evicted() {
    metrics::counter!(RATELIMIT_EVICTIONS).increment(1);
}

/// Counts a check the shared store could not answer.
pub fn ratelimit_store_error() {
    metrics::counter!(RATELIMIT_STORE_ERRORS, "store" => "redis").increment(1);
}

/// Configuration reloads, by result (`ok`, `error`).
pub const CONFIG_RELOADS: &str = "edge_config_reloads_total";
/// The live configuration's generation (1 at start, one more per reload).
pub const CONFIG_GENERATION: &str = "edge_config_generation";

/// Counts a reload that was applied (`ok`) or refused (`error`).
pub fn config_reload(ok: bool) {
    metrics::counter!(CONFIG_RELOADS, "result" => if ok { "ok" } else { "error" }).increment(1);
}

/// Records the live configuration generation.
pub fn config_generation(generation: u64) {
    metrics::gauge!(CONFIG_GENERATION).set(generation as f64);
}

/// Counts access log lines dropped.
pub fn access_log_dropped() {
    access_log_dropped_n(1);
}

/// Counts `n` access log lines dropped at once (a failed write).
pub fn access_log_dropped_n(n: u64) {
    metrics::counter!(ACCESS_LOG_DROPPED).increment(n);
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

/// `edge_transforms_total{route,what,result}`.
pub const TRANSFORMS: &str = "edge_transforms_total";
/// `edge_validation_rejections_total{route,reason}`.
pub const VALIDATION_REJECTIONS: &str = "edge_validation_rejections_total";
/// `edge_split_requests_total{route,pool}`.
pub const SPLIT_REQUESTS: &str = "edge_split_requests_total";
/// `edge_mirror_requests_total{route,result}`.
pub const MIRROR_REQUESTS: &str = "edge_mirror_requests_total";
/// `edge_aggregate_calls_total{route,call,result}`.
pub const AGGREGATE_CALLS: &str = "edge_aggregate_calls_total";

/// Counts a body transformation.
pub fn transform(route: &Arc<str>, what: &'static str, result: &'static str) {
    metrics::counter!(TRANSFORMS, "route" => Arc::clone(route), "what" => what, "result" => result)
        .increment(1);
}

/// Counts a request refused by its body checks.
pub fn validation_rejection(route: &Arc<str>, reason: &'static str) {
    metrics::counter!(VALIDATION_REJECTIONS, "route" => Arc::clone(route), "reason" => reason)
        .increment(1);
}

/// Counts a request a split sent to `pool`.
pub fn split(route: &Arc<str>, pool: &Arc<str>) {
    metrics::counter!(SPLIT_REQUESTS, "route" => Arc::clone(route), "pool" => Arc::clone(pool))
        .increment(1);
}

/// Counts a mirror copy's fate.
pub fn mirror(route: &Arc<str>, result: &'static str) {
    metrics::counter!(MIRROR_REQUESTS, "route" => Arc::clone(route), "result" => result)
        .increment(1);
}

/// Counts an aggregation call.
pub fn aggregate_call(route: &Arc<str>, call: &Arc<str>, ok: bool) {
    metrics::counter!(AGGREGATE_CALLS,
        "route" => Arc::clone(route),
        "call" => Arc::clone(call),
        "result" => if ok { "ok" } else { "error" })
    .increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        for status in [
            None,
            Some(42),
            Some(100),
            Some(204),
            Some(399),
            Some(404),
            Some(599),
            Some(600),
        ] {
            assert_eq!(
                STATUS_CLASSES[status_class_index(status)],
                status_class(status)
            );
        }
        assert_eq!(status_class(Some(200)), "2xx");
        assert_eq!(status_class(Some(404)), "4xx");
        assert_eq!(status_class(Some(503)), "5xx");
        assert_eq!(status_class(None), "none");
        assert_eq!(status_class(Some(42)), "none");
    }
}
