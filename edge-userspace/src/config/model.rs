//! The validated configuration: what the rest of edge reads. Every address is
//! parsed, every reference resolved; nothing downstream sees raw YAML.

use bytes::Bytes;
use ipnet::IpNet;
use std::{net::SocketAddr, path::PathBuf, time::Duration};

pub use super::bgp::BgpConfig;
pub use super::cache::{CacheConfig, CachePolicy};
pub use super::compression::{CompressionPolicy, Encoding};
pub use super::surface::{Algorithm, XdpMode};
pub use super::tls::{
    CertificateFiles, Limits, ListenerTransport, TlsTermination, TlsVersion, UpstreamTls,
};
pub use super::trace::RequestTrace;

/// A checked configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The kernel fast path.
    pub xdp: XdpConfig,
    /// L4 services balanced in XDP.
    pub l4: super::l4::L4Config,
    /// L7 listeners.
    pub listeners: Vec<Listener>,
    /// Upstream pools; routes refer to them by name.
    pub pools: Vec<Pool>,
    /// Admin endpoint, if any.
    pub admin: Option<AdminConfig>,
    /// Process-wide settings.
    pub server: ServerConfig,
    /// The HTTP cache store; `None`: nothing is cached anywhere.
    pub cache: Option<CacheConfig>,
    /// Where the JSON access log goes, if anywhere.
    pub access_log: Option<LogTarget>,
    /// Known callers of the gateway.
    pub consumers: Vec<super::gateway::Consumer>,
    /// Process-wide gateway settings.
    pub gateway: super::gateway::GatewayConfig,
    /// BGP announcements through BIRD; `None`: edge announces nothing.
    pub bgp: Option<BgpConfig>,
}

/// The admin endpoint.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Address it listens on.
    pub address: SocketAddr,
    /// Peers allowed to make changes (purge).
    pub allow: Vec<IpNet>,
    /// Bearer token changes must carry, if set.
    pub token: Option<String>,
}

// The token is a secret: never print it.
impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("address", &self.address)
            .field("allow", &self.allow)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Who may change things through the admin endpoint by default: loopback.
pub const ADMIN_ALLOW_DEFAULT: [&str; 2] = ["127.0.0.0/8", "::1/128"];

/// Access log destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogTarget {
    /// Standard output.
    Stdout,
    /// A file, appended to.
    File(PathBuf),
}

/// The XDP program's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct XdpConfig {
    /// Interfaces to attach to.
    pub interfaces: Vec<Interface>,
    /// Denied source prefixes, host bits clear.
    pub deny: Vec<IpNet>,
    /// The bpffs mount `edge run` pins its maps and links under.
    pub bpffs: PathBuf,
}

/// Where `edge run` pins by default.
pub const DEFAULT_BPFFS: &str = "/sys/fs/bpf";

impl Default for XdpConfig {
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            deny: Vec::new(),
            bpffs: PathBuf::from(DEFAULT_BPFFS),
        }
    }
}

/// One interface the XDP program runs on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// Interface name.
    pub name: String,
    /// Requested attach mode.
    pub mode: XdpMode,
    /// Whether native may fall back to generic.
    pub fallback_to_generic: bool,
}

/// One L7 listener.
#[derive(Clone, Debug, PartialEq)]
pub struct Listener {
    /// Unique name.
    pub name: String,
    /// Address to bind.
    pub address: SocketAddr,
    /// Routes in file order (the `pool:` shorthand last); the router
    /// applies the precedence.
    pub routes: Vec<Route>,
    /// Peers whose X-Forwarded-* headers are kept.
    pub trusted_proxies: Vec<IpNet>,
    /// Lower-case names of headers removed from untrusted peers' requests.
    pub untrusted_headers: Vec<http::HeaderName>,
    /// How request paths are normalised before routing.
    pub paths: PathOptions,
    /// Lower-case names of upstream response headers hidden from clients.
    pub hidden_upstream_headers: Vec<http::HeaderName>,
    /// TLS, HTTP/2 and limits.
    pub transport: ListenerTransport,
    /// Default cache policy of the listener's requests.
    pub cache: Option<CachePolicy>,
    /// Default response compression of the listener.
    pub compression: Option<CompressionPolicy>,
    /// A stream listener's settings (TCP, TLS passthrough); `None`: HTTP.
    pub stream: Option<super::stream::StreamSettings>,
    /// Peers that must send a PROXY protocol header first.
    pub proxy_accept: Vec<ipnet::IpNet>,
    /// Request ids and W3C trace context.
    pub request_trace: RequestTrace,
}

/// What to do with `%2F`, `%5C` in a request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EncodedSlashes {
    /// Refuse the request (400).
    #[default]
    Reject,
    /// Pass them on encoded (a raw `\` is still refused).
    Keep,
}

/// How a listener normalises request paths (see `proxy::normalize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathOptions {
    /// Merge runs of `/`.
    pub merge_slashes: bool,
    /// `%2F` / `%5C` handling.
    pub encoded_slashes: EncodedSlashes,
}

impl Default for PathOptions {
    fn default() -> Self {
        Self {
            merge_slashes: true,
            encoded_slashes: EncodedSlashes::Reject,
        }
    }
}

/// A route: conditions and what to do.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    /// Name for metrics and logs.
    pub name: String,
    /// Conditions.
    pub matcher: RouteMatch,
    /// The action.
    pub action: Action,
    /// Changes to the upstream request.
    pub request_headers: HeaderOps,
    /// Changes to the response.
    pub response_headers: HeaderOps,
    /// The cache policy of the route's requests (its own, else the
    /// listener's).
    pub cache: Option<CachePolicy>,
    /// The response compression of the route (its own, else the listener's).
    pub compression: Option<CompressionPolicy>,
    /// Gateway policies (its own over the listener's).
    pub policies: super::gateway::PolicySet,
    /// Transformations, validation, deprecation, split and mirror.
    pub shaping: super::shaping::Shaping,
    /// REST→gRPC transcoding.
    pub transcode: Option<super::transcode::Transcode>,
}

/// A route's conditions; empty ones always hold.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouteMatch {
    /// Host conditions, any of which matches.
    pub hosts: Vec<HostMatch>,
    /// Path condition.
    pub path: Option<PathMatch>,
    /// Methods, upper-case, any of which matches.
    pub methods: Vec<String>,
    /// Header conditions (names lower-case), all of which must hold.
    pub headers: Vec<ValueMatch>,
    /// Query parameter conditions, all of which must hold.
    pub query: Vec<ValueMatch>,
    /// A media-type parameter (name lower-case, value) some media range
    /// of `Accept` must carry.
    pub accept_param: Option<(String, String)>,
    /// Only gRPC requests (`content-type: application/grpc`); the service
    /// and method are in `path`.
    pub grpc: bool,
}

/// A host condition, lower-case.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HostMatch {
    /// The whole host name.
    Exact(String),
    /// `*.example.com`, stored as `.example.com`: any name ending in it.
    Suffix(String),
}

/// A path condition.
#[derive(Clone, Debug, PartialEq)]
pub enum PathMatch {
    /// The whole path.
    Exact(String),
    /// A prefix ending on a segment boundary.
    Prefix(String),
    /// A regular expression.
    Regex(Pattern),
}

/// A regular expression that compares by its source text.
#[derive(Clone, Debug)]
pub struct Pattern(pub regex::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

/// A header or query condition.
#[derive(Clone, Debug, PartialEq)]
pub struct ValueMatch {
    /// Name (lower-case for headers).
    pub name: String,
    /// What the value must be.
    pub value: ValueCond,
}

/// What a header or parameter value must be.
#[derive(Clone, Debug, PartialEq)]
pub enum ValueCond {
    /// Present with any value.
    Present,
    /// Exactly this.
    Exact(String),
    /// Matching this.
    Regex(Pattern),
}

/// What a route does.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Proxy to a pool.
    Proxy {
        /// The name of one of [`Config::pools`].
        pool: String,
        /// Prefix removed from the path.
        strip_prefix: Option<String>,
        /// Regex rewrite of the path.
        rewrite: Option<(Pattern, String)>,
    },
    /// Redirect.
    Redirect {
        /// Location template (`{host}`, `{path}`, `{query}`).
        location: String,
        /// 3xx status.
        status: u16,
    },
    /// A fixed response.
    Respond {
        /// Status.
        status: u16,
        /// Header fields.
        headers: Vec<(String, String)>,
        /// Body.
        body: Bytes,
    },
    /// Several upstream calls whose JSON answers are merged.
    Aggregate(super::shaping::Aggregate),
    /// Files from a directory.
    Static {
        /// The directory (absolute).
        root: PathBuf,
        /// Index file name.
        index: String,
        /// Prefix removed before the lookup.
        strip_prefix: Option<String>,
    },
}

/// Header changes, applied as remove, set, add.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderOps {
    /// Appended.
    pub add: Vec<(String, String)>,
    /// Replaced.
    pub set: Vec<(String, String)>,
    /// Removed (lower-case).
    pub remove: Vec<String>,
}

impl HeaderOps {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.set.is_empty() && self.remove.is_empty()
    }
}

/// One upstream pool.
#[derive(Clone, Debug, PartialEq)]
pub struct Pool {
    /// Unique name.
    pub name: String,
    /// Selection algorithm.
    pub algorithm: Algorithm,
    /// What consistent hashing hashes.
    pub hash_key: HashKey,
    /// Backends, at least one.
    pub backends: Vec<BackendSpec>,
    /// Active health checks.
    pub health_check: Option<HealthCheck>,
    /// Passive ejection.
    pub outlier: Option<Outlier>,
    /// Upstream timeouts.
    pub timeouts: Timeouts,
    /// Retry policy.
    pub retries: RetryPolicy,
    /// Circuit breaker.
    pub breaker: Option<Breaker>,
    /// Idle upstream connection lifetime; zero disables reuse.
    pub keepalive_idle: Option<Duration>,
    /// TLS towards the backends; `None`: plain.
    pub tls: Option<UpstreamTls>,
    /// What the backends speak.
    pub protocol: UpstreamProtocol,
}

/// The HTTP version a pool speaks to its backends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1.
    #[default]
    Http1,
    /// HTTP/2 over TLS, agreed by ALPN.
    H2,
    /// Plain HTTP/2 with prior knowledge.
    H2c,
}

impl UpstreamProtocol {
    /// The name used in the YAML file.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamProtocol::Http1 => "http1",
            UpstreamProtocol::H2 => "h2",
            UpstreamProtocol::H2c => "h2c",
        }
    }

    /// Whether it is HTTP/2.
    pub fn is_h2(self) -> bool {
        self != UpstreamProtocol::Http1
    }
}

/// A backend of a pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendSpec {
    /// Its address.
    pub address: SocketAddr,
    /// Relative weight (at least 1).
    pub weight: u32,
}

/// The key consistent hashing uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum HashKey {
    /// The client's address.
    #[default]
    ClientIp,
    /// The request path.
    Path,
    /// A request header (lower-case name).
    Header(String),
    /// A cookie.
    Cookie(String),
}

/// An active health check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// HTTP GET, gRPC health check or TCP connect.
    pub kind: CheckKind,
    /// Time between checks.
    pub interval: Duration,
    /// Time one check may take.
    pub timeout: Duration,
    /// Successes to become healthy.
    pub rise: u32,
    /// Failures to become unhealthy.
    pub fall: u32,
}

/// What a health check does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckKind {
    /// Connect only.
    Tcp,
    /// `GET path`, healthy on one of `statuses` (empty: 200-399).
    Http {
        /// Path.
        path: String,
        /// Host header, if not the backend address.
        host: Option<String>,
        /// Healthy statuses.
        statuses: Vec<u16>,
    },
    /// `grpc.health.v1.Health/Check` over HTTP/2 (h2c, or h2 inside the
    /// pool's TLS), healthy when the answer is SERVING.
    Grpc {
        /// The service asked about; empty: the server as a whole.
        service: String,
        /// `:authority` of the check, if not the SNI or backend address.
        authority: Option<String>,
    },
}

/// Passive outlier ejection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outlier {
    /// Consecutive failures that eject.
    pub consecutive_failures: u32,
    /// Base ejection time.
    pub ejection_time: Duration,
    /// Most of the pool ejected at once, percent.
    pub max_ejected_percent: u32,
}

/// Upstream timeouts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// Connect.
    pub connect: Option<Duration>,
    /// Between reads.
    pub read: Option<Duration>,
    /// Between writes.
    pub write: Option<Duration>,
    /// Until the response head, over all attempts.
    pub total: Option<Duration>,
}

/// When to try again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Further attempts after the first.
    pub attempts: u32,
    /// Retries as a percentage of recent requests.
    pub budget_percent: u32,
    /// Retries always allowed per window.
    pub min_per_window: u32,
    /// gRPC statuses of trailers-only answers that are retried.
    pub grpc_statuses: Vec<crate::grpc::Code>,
}

/// A circuit breaker.
#[derive(Clone, Debug, PartialEq)]
pub struct Breaker {
    /// Error ratio that opens it.
    pub error_ratio: f64,
    /// Sliding window.
    pub window: Duration,
    /// Requests before the ratio counts.
    pub min_requests: u32,
    /// Open time before probing.
    pub open_for: Duration,
    /// Probes while half-open.
    pub half_open_requests: u32,
}

/// Process-wide settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Worker threads per service.
    pub threads: usize,
    /// Seconds of grace after SIGTERM.
    pub grace_period_seconds: u64,
    /// Idle upstream connections kept, over all pools.
    pub upstream_keepalive_pool_size: usize,
    /// Work-stealing runtimes for the services.
    pub work_stealing: bool,
}

impl Config {
    /// The TCP ports the L7 listeners own, which the XDP program passes up.
    pub fn l7_ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self.listeners.iter().map(|l| l.address.port()).collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// A one-paragraph summary for `edge check` and the start-up log.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for l in &self.listeners {
            if let Some(st) = &l.stream {
                out.push_str(&format!(
                    "listener {} on {}: {}\n",
                    l.name,
                    l.address,
                    st.summary()
                ));
                continue;
            }
            out.push_str(&format!(
                "listener {} on {}: {} route{}\n",
                l.name,
                l.address,
                l.routes.len(),
                if l.routes.len() == 1 { "" } else { "s" }
            ));
            for line in l.transport.summary() {
                out.push_str(&format!("  {line}\n"));
            }
        }
        for pool in &self.pools {
            out.push_str(&format!(
                "pool {} ({}, {}{} backend{}{})\n",
                pool.name,
                pool.algorithm.as_str(),
                match pool.protocol {
                    UpstreamProtocol::Http1 => String::new(),
                    p => format!("{}, ", p.as_str()),
                },
                pool.backends.len(),
                if pool.backends.len() == 1 { "" } else { "s" },
                if pool.health_check.is_some() {
                    ", health-checked"
                } else {
                    ""
                }
            ));
        }
        for i in &self.xdp.interfaces {
            out.push_str(&format!(
                "xdp on {} ({}{})\n",
                i.name,
                i.mode.as_str(),
                if i.fallback_to_generic {
                    ", may fall back to generic"
                } else {
                    ""
                }
            ));
        }
        out.push_str(&format!("deny list: {} prefixes\n", self.xdp.deny.len()));
        for s in &self.l4.services {
            out.push_str(&format!(
                "l4 service {} on {} port {}/{} -> {} backend{} (maglev {})\n",
                s.name,
                s.vip,
                s.port,
                s.protocol.as_str(),
                s.backends.len(),
                if s.backends.len() == 1 { "" } else { "s" },
                s.table_size
            ));
        }
        if let Some(c) = &self.cache {
            let caching: Vec<&str> = self
                .listeners
                .iter()
                .filter(|l| l.cache.as_ref().is_some_and(|p| p.enabled))
                .map(|l| l.name.as_str())
                .collect();
            out.push_str(&format!(
                "cache: {} bytes max, objects up to {} bytes, used by: {}\n",
                c.max_size,
                c.max_object_size,
                if caching.is_empty() {
                    "no listener".to_string()
                } else {
                    caching.join(", ")
                }
            ));
        }
        if let Some(b) = &self.bgp {
            out.push_str(&format!(
                "bgp: AS {} (router id {}), {} neighbor{}, through BIRD at {} writing {}\n",
                b.local_as,
                b.router_id,
                b.neighbors.len(),
                if b.neighbors.len() == 1 { "" } else { "s" },
                b.bird_socket.display(),
                b.bird_config.display()
            ));
        }
        match &self.admin {
            Some(a) => out.push_str(&format!(
                "admin (metrics) on http://{}/metrics\n",
                a.address
            )),
            None => out.push_str("admin endpoint: off\n"),
        }
        out
    }
}
