//! The YAML file as written: serde structs that mirror the document.
//!
//! Unknown keys are errors everywhere (`deny_unknown_fields`): a typo must not
//! silently fall back to a default. Addresses and prefixes stay strings here;
//! `validate` parses them so that every bad value is reported at once, each
//! with its own line and column.

use super::units::Quantity;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The whole configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// The kernel fast path.
    #[serde(default)]
    pub xdp: Option<Xdp>,
    /// L4 services balanced in XDP.
    #[serde(default)]
    pub l4: Option<super::l4::Surface>,
    /// L7 listeners.
    #[serde(default)]
    pub listeners: Vec<Listener>,
    /// Upstream pools.
    #[serde(default)]
    pub pools: Vec<Pool>,
    /// The admin endpoint (Prometheus metrics, health).
    #[serde(default)]
    pub admin: Option<Admin>,
    /// Process-wide settings.
    #[serde(default)]
    pub server: Option<Server>,
    /// The process-wide HTTP cache store.
    #[serde(default)]
    pub cache: Option<super::cache::CacheSurface>,
    /// The JSON access log.
    #[serde(default)]
    pub access_log: Option<AccessLog>,
    /// Known callers of the gateway.
    #[serde(default)]
    pub consumers: Vec<super::gateway::surface::Consumer>,
    /// Process-wide gateway settings (the shared rate-limit store).
    #[serde(default)]
    pub gateway: Option<super::gateway::surface::Gateway>,
    /// VIPs announced over BGP through BIRD.
    #[serde(default)]
    pub bgp: Option<super::bgp::BgpSurface>,
}

/// `access_log:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLog {
    /// File to append JSON lines to; `-` is standard output.
    pub path: String,
}

/// `xdp:`: where the XDP program runs and what it drops.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Xdp {
    /// Interfaces to attach to.
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    /// Source prefixes (CIDR) dropped before anything else.
    #[serde(default)]
    pub deny: Vec<String>,
    /// The bpffs mount `edge run` pins its maps and links under.
    #[serde(default)]
    pub bpffs: Option<String>,
}

/// `xdp.interfaces[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    /// Interface name, e.g. `eth0`.
    pub name: String,
    /// Attach mode.
    #[serde(default)]
    pub mode: XdpMode,
    /// Whether a failed native attach may fall back to generic mode.
    #[serde(default)]
    pub fallback_to_generic: bool,
}

/// How the XDP program is attached.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum XdpMode {
    /// In the driver, before an skb exists (the fast one).
    #[default]
    Native,
    /// In the generic network stack: works on any device, much slower.
    Generic,
}

impl XdpMode {
    /// The name used in the YAML file.
    pub fn as_str(self) -> &'static str {
        match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
        }
    }
}

/// `listeners[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// Unique name, used in metrics.
    pub name: String,
    /// `IP:port` to listen on.
    pub address: String,
    /// Shorthand for a catch-all route to this pool, tried after `routes`.
    #[serde(default)]
    pub pool: Option<String>,
    /// Routes, matched by the documented precedence.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Peers whose X-Forwarded-* headers are believed.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Headers removed from requests of peers not in `trusted_proxies`
    /// (they claim a client address or a URL edge did not see); default
    /// `Forwarded`, `X-Real-IP`, `X-Forwarded-Port`, `X-Forwarded-Prefix`,
    /// `X-Client-IP`, `True-Client-IP`, `X-Original-URL`, `X-Rewrite-URL`.
    #[serde(default)]
    pub untrusted_headers: Option<Vec<String>>,
    /// Merge runs of `/` in request paths before routing (default true).
    #[serde(default)]
    pub merge_slashes: Option<bool>,
    /// `reject` (default) or `keep`: what to do with `%2F` and `%5C` in
    /// request paths.
    #[serde(default)]
    pub encoded_slashes: Option<String>,
    /// Upstream response headers passed on that edge hides by default
    /// (`Server`, `X-Powered-By`).
    #[serde(default)]
    pub pass_upstream_headers: Vec<String>,
    /// TLS termination; absent: plain HTTP.
    #[serde(default)]
    pub tls: Option<super::tls::ListenerTlsSurface>,
    /// HTTP/2 besides HTTP/1.1 (default true): offered through ALPN on a
    /// TLS listener, accepted with prior knowledge (h2c, as gRPC clients
    /// send it) on a plain one.
    #[serde(default)]
    pub http2: Option<bool>,
    /// Connection and request limits.
    #[serde(default)]
    pub limits: Option<super::tls::LimitsSurface>,
    /// The listener's default cache policy.
    #[serde(default)]
    pub cache: Option<super::cache::PolicySurface>,
    /// The listener's default response compression.
    #[serde(default)]
    pub compression: Option<super::compression::CompressionSurface>,
    /// Gateway policies every route of the listener starts from.
    #[serde(default)]
    pub policies: Option<super::gateway::surface::Policies>,
    /// `http` (default), `tcp` (raw TCP to `pool`) or `tls_passthrough`
    /// (TLS to a pool chosen by the ClientHello's server name).
    #[serde(default)]
    pub mode: Option<String>,
    /// TLS passthrough: server names to pools.
    #[serde(default)]
    pub sni: Vec<super::stream::SniRouteSurface>,
    /// The PROXY protocol towards the backends of a stream listener.
    #[serde(default)]
    pub proxy_protocol: Option<super::stream::ProxyProtocolSurface>,
    /// The request id field, and whether trusted proxies' ids are kept.
    #[serde(default)]
    pub request_id: Option<super::trace::RequestIdSurface>,
    /// W3C trace context: the share of the traces edge starts that are
    /// sampled.
    #[serde(default)]
    pub tracing: Option<super::trace::TracingSurface>,
}

/// `listeners[].routes[]`: a match and one action.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Name used in metrics and the access log; defaults to `route<N>`.
    #[serde(default)]
    pub name: Option<String>,
    /// Conditions, all of which must hold; none matches every request.
    #[serde(default, rename = "match")]
    pub matches: Option<Match>,
    /// Proxy to a pool.
    #[serde(default)]
    pub proxy: Option<ProxyAction>,
    /// Answer with a redirect.
    #[serde(default)]
    pub redirect: Option<Redirect>,
    /// Answer with a fixed response.
    #[serde(default)]
    pub respond: Option<Respond>,
    /// Serve files from a directory.
    #[serde(default, rename = "static")]
    pub static_files: Option<StaticFiles>,
    /// Changes to the request sent upstream.
    #[serde(default)]
    pub request_headers: Option<HeaderOps>,
    /// Changes to the response sent to the client.
    #[serde(default)]
    pub response_headers: Option<HeaderOps>,
    /// This route's cache policy, instead of the listener's.
    #[serde(default)]
    pub cache: Option<super::cache::PolicySurface>,
    /// This route's response compression (or `off`), instead of the listener's.
    #[serde(default)]
    pub compression: Option<super::compression::CompressionSurface>,
    /// This route's gateway policies, over the listener's.
    #[serde(default)]
    pub policies: Option<super::gateway::surface::Policies>,
    /// Call several upstreams and merge their JSON answers.
    #[serde(default)]
    pub aggregate: Option<super::shaping::surface::Aggregate>,
    /// Request and response transformations.
    #[serde(default)]
    pub transform: Option<super::shaping::surface::Transform>,
    /// JSON Schema validation of the request body.
    #[serde(default)]
    pub validate: Option<super::shaping::surface::Validate>,
    /// Marks the route deprecated.
    #[serde(default)]
    pub deprecated: Option<super::shaping::surface::Deprecated>,
    /// Shares of the requests sent to other pools.
    #[serde(default)]
    pub split: Vec<super::shaping::surface::Split>,
    /// Copies of the requests sent to a shadow pool.
    #[serde(default)]
    pub mirror: Option<super::shaping::surface::Mirror>,
    /// JSON over HTTP to unary gRPC calls (the route's pool speaks h2 or
    /// h2c).
    #[serde(default)]
    pub transcode: Option<super::transcode::TranscodeSurface>,
}

/// `routes[].match`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// Host names: exact, or `*.example.com` for any subdomain.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Path condition.
    #[serde(default)]
    pub path: Option<PathMatch>,
    /// Methods, any of which matches.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Request header conditions.
    #[serde(default)]
    pub headers: Vec<ValueMatch>,
    /// Query parameter conditions.
    #[serde(default)]
    pub query: Vec<ValueMatch>,
    /// A media-type parameter in `Accept` (`version=2`).
    #[serde(default)]
    pub accept_param: Option<super::shaping::surface::NameValue>,
    /// A gRPC service, and optionally one of its methods.
    #[serde(default)]
    pub grpc: Option<GrpcMatch>,
}

/// `match.grpc`: gRPC requests (`content-type: application/grpc`) to
/// `/SERVICE/METHOD`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcMatch {
    /// The fully-qualified service, `package.Service`.
    pub service: String,
    /// One method of it; absent: all of them.
    #[serde(default)]
    pub method: Option<String>,
}

/// A path condition: exactly one of the three.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathMatch {
    /// The whole path.
    #[serde(default)]
    pub exact: Option<String>,
    /// A prefix on a segment boundary (`/api` matches `/api` and `/api/x`).
    #[serde(default)]
    pub prefix: Option<String>,
    /// A regular expression the path must match.
    #[serde(default)]
    pub regex: Option<String>,
}

/// A header or query parameter condition.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueMatch {
    /// Header or parameter name.
    pub name: String,
    /// Exact value; with neither `value` nor `regex`, presence matches.
    #[serde(default)]
    pub value: Option<String>,
    /// Regular expression over the value.
    #[serde(default)]
    pub regex: Option<String>,
}

/// `routes[].proxy`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyAction {
    /// Pool name.
    pub pool: String,
    /// A path prefix removed before the request goes upstream.
    #[serde(default)]
    pub strip_prefix: Option<String>,
    /// A regex path rewrite.
    #[serde(default)]
    pub rewrite: Option<Rewrite>,
}

/// `proxy.rewrite`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rewrite {
    /// Regular expression over the path.
    pub regex: String,
    /// Replacement, with `$1`-style groups.
    pub replacement: String,
}

/// `routes[].redirect`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redirect {
    /// Target; `{host}`, `{path}` and `{query}` are filled in from the request.
    pub location: String,
    /// 301, 302, 303, 307 or 308; default 302.
    #[serde(default)]
    pub status: Option<u16>,
}

/// `routes[].respond`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Respond {
    /// Status code.
    pub status: u16,
    /// Header fields.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Body text.
    #[serde(default)]
    pub body: String,
}

/// `routes[].static`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticFiles {
    /// Directory served; relative to the config file.
    pub root: String,
    /// File served for a directory; default `index.html`.
    #[serde(default)]
    pub index: Option<String>,
    /// A path prefix removed before looking up the file.
    #[serde(default)]
    pub strip_prefix: Option<String>,
}

/// Header changes: `remove`, then `set` (replace), then `add` (append).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderOps {
    /// Appended fields.
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    /// Fields replaced (or added).
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Fields removed.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// `pools[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// Unique name.
    pub name: String,
    /// Load-balancing algorithm.
    #[serde(default)]
    pub algorithm: Algorithm,
    /// What `ketama` hashes: `client_ip`, `path`, `header:NAME` or `cookie:NAME`.
    #[serde(default)]
    pub hash_key: Option<String>,
    /// Backends.
    pub backends: Vec<Backend>,
    /// Active health checks.
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
    /// Passive ejection of failing backends.
    #[serde(default)]
    pub outlier_detection: Option<OutlierDetection>,
    /// Upstream timeouts.
    #[serde(default)]
    pub timeouts: Option<Timeouts>,
    /// Retries.
    #[serde(default)]
    pub retries: Option<Retries>,
    /// The pool's circuit breaker.
    #[serde(default)]
    pub circuit_breaker: Option<CircuitBreaker>,
    /// Upstream connection reuse.
    #[serde(default)]
    pub keepalive: Option<Keepalive>,
    /// TLS towards the backends; absent: plain.
    #[serde(default)]
    pub tls: Option<super::tls::PoolTlsSurface>,
    /// What the backends speak: `http1` (default), `h2` (HTTP/2 over the
    /// pool's TLS, by ALPN) or `h2c` (plain HTTP/2 with prior knowledge).
    /// gRPC needs `h2` or `h2c`.
    #[serde(default)]
    pub protocol: Option<String>,
}

/// Load-balancing algorithms.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Each backend in turn.
    #[default]
    RoundRobin,
    /// In turn, in proportion to weights (nginx's smooth weighted round robin).
    WeightedRoundRobin,
    /// The backend with the fewest requests in flight (relative to weight).
    LeastConnections,
    /// The less loaded of two random backends ("power of two choices").
    P2c,
    /// Consistent hashing (ketama) on `hash_key`.
    Ketama,
    /// A hash of the client address: sticky sessions.
    IpHash,
}

impl Algorithm {
    /// The name used in the YAML file.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round_robin",
            Algorithm::WeightedRoundRobin => "weighted_round_robin",
            Algorithm::LeastConnections => "least_connections",
            Algorithm::P2c => "p2c",
            Algorithm::Ketama => "ketama",
            Algorithm::IpHash => "ip_hash",
        }
    }
}

/// `pools[].backends[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    /// `IP:port` of the backend.
    pub address: String,
    /// Relative weight, default 1.
    #[serde(default)]
    pub weight: Option<u32>,
}

/// `pools[].health_check`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// `http` (default), `grpc` or `tcp`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// The service a `grpc` check asks about; default the whole server.
    #[serde(default)]
    pub service: Option<String>,
    /// Path of the HTTP check; default `/`.
    #[serde(default)]
    pub path: Option<String>,
    /// Host header of the HTTP check; default the backend address.
    #[serde(default)]
    pub host: Option<String>,
    /// Statuses that count as healthy; default 200-399.
    #[serde(default)]
    pub expected_statuses: Vec<u16>,
    /// Time between checks.
    #[serde(default)]
    pub interval: Option<Quantity>,
    /// Time a check may take.
    #[serde(default)]
    pub timeout: Option<Quantity>,
    /// Consecutive successes that make a backend healthy.
    #[serde(default)]
    pub rise: Option<u32>,
    /// Consecutive failures that make it unhealthy.
    #[serde(default)]
    pub fall: Option<u32>,
}

/// `pools[].outlier_detection`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutlierDetection {
    /// Consecutive connect errors or 5xx responses that eject a backend.
    pub consecutive_failures: u32,
    /// First ejection time; each further ejection doubles it, up to 10x.
    #[serde(default)]
    pub ejection_time: Option<Quantity>,
    /// Most of the pool that may be ejected at once, in percent; default 50.
    #[serde(default)]
    pub max_ejected_percent: Option<u32>,
}

/// `pools[].timeouts`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// TCP (and TLS) connect.
    #[serde(default)]
    pub connect: Option<Quantity>,
    /// Between reads from the upstream.
    #[serde(default)]
    pub read: Option<Quantity>,
    /// Between writes to the upstream.
    #[serde(default)]
    pub write: Option<Quantity>,
    /// From the first attempt until the response head.
    #[serde(default)]
    pub total: Option<Quantity>,
}

/// `pools[].retries`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retries {
    /// Further attempts after the first.
    pub attempts: u32,
    /// Retries allowed as a percentage of recent requests; default 20.
    #[serde(default)]
    pub budget_percent: Option<u32>,
    /// Retries always allowed per 10 s, whatever the ratio; default 3.
    #[serde(default)]
    pub min_per_window: Option<u32>,
    /// gRPC statuses of a trailers-only answer that are retried (by
    /// name); default `[UNAVAILABLE]`.
    #[serde(default)]
    pub grpc_status: Option<Vec<String>>,
}

/// `pools[].circuit_breaker`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreaker {
    /// Error ratio (0 to 1) over the window that opens the breaker.
    pub error_ratio: f64,
    /// Length of the sliding window; default 10s.
    #[serde(default)]
    pub window: Option<Quantity>,
    /// Requests in the window before the ratio counts; default 20.
    #[serde(default)]
    pub min_requests: Option<u32>,
    /// Time the breaker stays open before probing; default 10s.
    #[serde(default)]
    pub open_for: Option<Quantity>,
    /// Probe requests let through while half-open; default 3.
    #[serde(default)]
    pub half_open_requests: Option<u32>,
}

/// `pools[].keepalive`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keepalive {
    /// Idle upstream connections are closed after this; `0s` disables reuse.
    pub idle_timeout: Quantity,
}

/// `admin:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// `IP:port` serving `/metrics` and `/healthz`.
    pub address: String,
    /// Client prefixes allowed to change anything (purge); default
    /// loopback only.
    #[serde(default)]
    pub allow: Option<Vec<String>>,
    /// A bearer token every changing request must carry as
    /// `Authorization: Bearer TOKEN`.
    #[serde(default)]
    pub token: Option<String>,
}

/// `server:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Worker threads per listener service; defaults to the number of CPUs.
    #[serde(default)]
    pub threads: Option<usize>,
    /// Seconds to keep serving in-flight requests after SIGTERM.
    #[serde(default)]
    pub grace_period_seconds: Option<u64>,
    /// Idle upstream connections kept, over all pools; default 128.
    #[serde(default)]
    pub upstream_keepalive_pool_size: Option<usize>,
    /// Whether a service's worker threads share one work-stealing runtime
    /// (true) or each run their own; default true.
    #[serde(default)]
    pub work_stealing: Option<bool>,
}
