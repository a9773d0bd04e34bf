//! The configuration files of the origin and of the proxies, written to be
//! equivalent: one worker each, keep-alive both ways (to clients and to the
//! one origin), X-Forwarded-For/-Proto added, no access log, the same
//! timeouts where the proxy has them, TLS 1.2+ with one certificate, and
//! room for [`PROXY_CONNECTIONS`] client connections. The bare Pingora
//! proxy takes its few settings on its command line (see `Bench::start`).

use std::{fmt::Write, path::Path};

/// The small body: 13 bytes.
pub const SMALL_BODY: &str = "hello, world\n";
/// The size of the large body.
pub const LARGE_SIZE: usize = 64 * 1024;
/// Origin paths: the small body, the large body, and the small body with
/// `Cache-Control: max-age` (the only one the proxies may cache).
pub const SMALL_PATH: &str = "/small";
/// See [`SMALL_PATH`].
pub const LARGE_PATH: &str = "/64k";
/// See [`SMALL_PATH`].
pub const CACHED_PATH: &str = "/cached";
/// How long the origin lets the cached path be cached.
const MAX_AGE_SECS: u32 = 3600;
/// Idle keep-alive connections to the origin each proxy keeps.
const UPSTREAM_IDLE: u32 = 64;
/// Store size, and largest object, of each proxy's cache.
const CACHE_MIB: u32 = 64;
const CACHE_OBJECT_MIB: u32 = 1;
/// Timeouts every proxy gets where it has the knob (seconds).
const CONNECT_TIMEOUT: u32 = 5;
const IO_TIMEOUT: u32 = 60;
/// Concurrent connections every proxy accepts at least (nginx's
/// `worker_connections` counts its upstream ones too): the memory row's
/// 10,000 idle client connections, with room.
pub const PROXY_CONNECTIONS: u32 = 16_384;
/// `worker_connections` of the other nginx instances (origin, backends).
const NGINX_CONNECTIONS: u32 = 4096;

/// The listening ports of one proxy.
#[derive(Clone, Copy)]
pub struct Listeners {
    /// Plain HTTP, proxied without caching.
    pub plain: u16,
    /// Plain HTTP, proxied through the proxy's cache.
    pub cache: u16,
    /// HTTPS, proxied without caching.
    pub tls: u16,
    /// Prior-knowledge HTTP/2 (h2c), proxied without caching: the plain
    /// port where the proxy detects the HTTP/2 preface there (edge, bare
    /// Pingora), else one of its own (nginx 1.22's `http2` and HAProxy's
    /// `proto h2` make a port HTTP/2 only).
    pub h2c: u16,
}

/// Every port of the benchmark; all on 127.0.0.1.
#[derive(Clone, Copy)]
pub struct Ports {
    /// The origin (plain HTTP).
    pub origin: u16,
    /// edge's listeners.
    pub edge: Listeners,
    /// The bare Pingora proxy's listeners (plain, TLS; its `cache` port is
    /// bound by nobody, it has no cache).
    pub pingora: Listeners,
    /// nginx's listeners.
    pub nginx: Listeners,
    /// HAProxy's listeners.
    pub haproxy: Listeners,
}

impl Ports {
    /// The listeners of the proxy in column `proxy` of
    /// [`super::report::PROXIES`] (edge, bare Pingora, nginx, HAProxy; any
    /// later column is HAProxy's).
    pub fn proxy(&self, proxy: usize) -> Listeners {
        match proxy {
            0 => self.edge,
            1 => self.pingora,
            2 => self.nginx,
            _ => self.haproxy,
        }
    }
}

/// Which of edge's configurations.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum EdgeKind {
    /// Plain proxying.
    Plain,
    /// Proxying through edge's cache.
    Cache,
    /// TLS termination.
    Tls,
    /// Plain proxying with room for [`PROXY_CONNECTIONS`] connections (the
    /// default `max_connections` is 10,000): the scale rows.
    Scale,
}

impl EdgeKind {
    /// The file name of the configuration.
    pub fn file_name(self) -> &'static str {
        match self {
            EdgeKind::Plain => "edge-proxy.yaml",
            EdgeKind::Cache => "edge-cache.yaml",
            EdgeKind::Tls => "edge-tls.yaml",
            EdgeKind::Scale => "edge-scale.yaml",
        }
    }
}

/// The origin: nginx serving fixed bodies from memory and a file, one
/// worker, logging only requests for the cached path (to `cached.log`), so
/// the benchmark can tell cache hits from misses.
pub fn origin(prefix: &Path, port: u16) -> String {
    let p = prefix.display();
    format!(
        "{head}
http {{
    access_log off;
    sendfile on;
    tcp_nodelay on;
    keepalive_timeout {IO_TIMEOUT}s;
    keepalive_requests 1000000;
    default_type text/plain;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = {SMALL_PATH} {{
            return 200 \"{small}\";
        }}
        location = {LARGE_PATH} {{
            default_type application/octet-stream;
            root {p}/www;
        }}
        location = {CACHED_PATH} {{
            access_log {p}/cached.log;
            add_header Cache-Control \"max-age={MAX_AGE_SECS}\" always;
            return 200 \"{small}\";
        }}
    }}
}}
",
        head = nginx_head(prefix),
        small = SMALL_BODY.escape_default(),
    )
}

/// Where an nginx `http` block writes temporary files: under `prefix`.
pub(crate) fn nginx_temp_paths(prefix: &Path) -> String {
    let p = prefix.display();
    format!(
        "    client_body_temp_path {p}/tmp/body;
    proxy_temp_path {p}/tmp/proxy;
    fastcgi_temp_path {p}/tmp/fastcgi;
    uwsgi_temp_path {p}/tmp/uwsgi;
    scgi_temp_path {p}/tmp/scgi;
"
    )
}

/// What every nginx instance here shares: one worker in the foreground,
/// everything it writes under `prefix`.
pub(crate) fn nginx_head(prefix: &Path) -> String {
    nginx_head_sized(prefix, NGINX_CONNECTIONS)
}

/// [`nginx_head`] with `connections` per worker. Their file descriptors
/// come from the limit nginx inherits, which the benchmark raises (see
/// `scale::raise_nofile`): `worker_rlimit_nofile` could not go further
/// without CAP_SYS_RESOURCE and only logs an alert when it fails.
fn nginx_head_sized(prefix: &Path, connections: u32) -> String {
    let p = prefix.display();
    format!(
        "daemon off;
master_process on;
worker_processes 1;
# As root nginx would switch its worker to nobody, who cannot read the
# benchmark's private temporary directory.
user root;
pid {p}/nginx.pid;
error_log {p}/error.log warn;
events {{
    worker_connections {connections};
}}
"
    )
}

/// nginx as reverse proxy: one worker, an upstream keep-alive pool,
/// response buffers large enough that 64 KiB never goes to a temporary
/// file, `proxy_cache` on its cache listener (files under the prefix,
/// which the page cache keeps in memory), and prior-knowledge HTTP/2 on a
/// listener of its own (in nginx 1.22 `http2` without `ssl` makes a port
/// h2c only).
pub fn nginx(prefix: &Path, ports: &Ports, cert: &Path, key: &Path) -> String {
    let p = prefix.display();
    let l = ports.nginx;
    let mut s = nginx_head_sized(prefix, PROXY_CONNECTIONS);
    let _ = write!(
        s,
        "http {{
    access_log off;
    sendfile on;
    tcp_nodelay on;
    keepalive_timeout {IO_TIMEOUT}s;
    keepalive_requests 1000000;
{temp}
    upstream origin {{
        server 127.0.0.1:{origin};
        keepalive {UPSTREAM_IDLE};
        keepalive_requests 1000000;
        keepalive_timeout {IO_TIMEOUT}s;
    }}
    proxy_http_version 1.1;
    proxy_set_header Connection \"\";
    proxy_set_header Host $host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_connect_timeout {CONNECT_TIMEOUT}s;
    proxy_read_timeout {IO_TIMEOUT}s;
    proxy_send_timeout {IO_TIMEOUT}s;
    proxy_buffer_size 8k;
    proxy_buffers 16 8k;
    proxy_cache_path {p}/cache levels=1:2 keys_zone=bench:10m max_size={CACHE_MIB}m inactive=60m use_temp_path=off;

    server {{
        listen 127.0.0.1:{plain} backlog=4096;
        location / {{
            proxy_pass http://origin;
        }}
    }}
    server {{
        listen 127.0.0.1:{cache} backlog=4096;
        location / {{
            proxy_pass http://origin;
            proxy_cache bench;
            add_header X-Cache-Status $upstream_cache_status;
        }}
    }}
    server {{
        listen 127.0.0.1:{tls} ssl backlog=4096;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{
            proxy_pass http://origin;
        }}
    }}
    # keepalive_requests and keepalive_timeout cover HTTP/2 too (1.19.7+).
    server {{
        listen 127.0.0.1:{h2c} http2 backlog=4096;
        location / {{
            proxy_pass http://origin;
        }}
    }}
}}
",
        origin = ports.origin,
        temp = nginx_temp_paths(prefix),
        plain = l.plain,
        cache = l.cache,
        tls = l.tls,
        h2c = l.h2c,
        cert = cert.display(),
        key = key.display(),
    );
    s
}

/// HAProxy's `defaults` section of every benchmark: keep-alive on both
/// sides, `X-Forwarded-For`, and the harness's timeouts.
pub fn haproxy_defaults() -> String {
    format!(
        "defaults
    mode http
    option http-keep-alive
    option forwardfor
    http-reuse always
    timeout connect {CONNECT_TIMEOUT}s
    timeout client {IO_TIMEOUT}s
    timeout server {IO_TIMEOUT}s
    timeout http-keep-alive {IO_TIMEOUT}s
    timeout http-request 10s
"
    )
}

/// HAProxy: one thread, `http-reuse always` to the origin, its
/// small-object `cache` on the cache frontend, the certificate and key in
/// one PEM (`pem`) for TLS, prior-knowledge HTTP/2 (`proto h2`) on a
/// frontend of its own. `maxconn` is set on the frontends the scale rows
/// load as well as globally: a frontend does not take the global value.
pub fn haproxy(ports: &Ports, pem: &Path) -> String {
    let l = ports.haproxy;
    format!(
        "global
    nbthread 1
    maxconn {PROXY_CONNECTIONS}
    # HAProxy wants 2 x maxconn descriptors and by default refuses to start
    # below that; the machine's hard limit may be lower, and idle client
    # connections need one each, so start anyway.
    no strict-limits
    tune.ssl.default-dh-param 2048

{defaults}
cache bench
    total-max-size {CACHE_MIB}
    max-object-size {object_bytes}
    max-age {MAX_AGE_SECS}

frontend plain
    bind 127.0.0.1:{plain} backlog 4096
    maxconn {PROXY_CONNECTIONS}
    http-request set-header X-Forwarded-Proto http
    default_backend origin

frontend h2c
    bind 127.0.0.1:{h2c} proto h2 backlog 4096
    maxconn {PROXY_CONNECTIONS}
    http-request set-header X-Forwarded-Proto http
    default_backend origin

frontend cached
    bind 127.0.0.1:{cache} backlog 4096
    http-request set-header X-Forwarded-Proto http
    default_backend origin_cached

frontend tls
    bind 127.0.0.1:{tls} ssl crt {pem} ssl-min-ver TLSv1.2 backlog 4096
    http-request set-header X-Forwarded-Proto https
    default_backend origin

backend origin
    server origin 127.0.0.1:{origin}

backend origin_cached
    http-request cache-use bench
    http-response cache-store bench
    server origin 127.0.0.1:{origin}
",
        plain = l.plain,
        cache = l.cache,
        tls = l.tls,
        h2c = l.h2c,
        origin = ports.origin,
        pem = pem.display(),
        object_bytes = CACHE_OBJECT_MIB * 1024 * 1024,
        defaults = haproxy_defaults(),
    )
}

/// edge's configuration of `kind`, in the YAML of the L7 schema. The
/// certificate paths are relative: edge resolves them against the
/// configuration's directory, where the benchmark writes them.
pub fn edge(kind: EdgeKind, ports: &Ports) -> String {
    let l = ports.edge;
    let (port, extra, top) = match kind {
        EdgeKind::Plain => (l.plain, String::new(), String::new()),
        EdgeKind::Cache => (
            l.cache,
            "    cache: { enabled: true }\n".to_string(),
            format!(
                "cache:\n  max_size: {CACHE_MIB}MiB\n  max_object_size: {CACHE_OBJECT_MIB}MiB\n"
            ),
        ),
        EdgeKind::Tls => (
            l.tls,
            "    tls:\n      certificates:\n        - cert: cert.pem\n          key: key.pem\n      min_version: \"1.2\"\n"
                .to_string(),
            String::new(),
        ),
        EdgeKind::Scale => (
            l.plain,
            format!("    limits: {{ max_connections: {PROXY_CONNECTIONS} }}\n"),
            String::new(),
        ),
    };
    format!(
        "# Written by `cargo xtask bench l7`.
listeners:
  - name: bench
    address: 127.0.0.1:{port}
    pool: origin
{extra}pools:
  - name: origin
    backends:
      - address: 127.0.0.1:{origin}
{top}server:
  threads: 1
",
        origin = ports.origin,
    )
}
