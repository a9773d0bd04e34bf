//! The configuration files of the origin and of the three proxies, written
//! to be equivalent: one worker each, keep-alive both ways (to clients and
//! to the one origin), X-Forwarded-For/-Proto added, no access log, the
//! same timeouts where the proxy has them, TLS 1.2+ with one certificate.

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

/// The listening ports of one proxy.
#[derive(Clone, Copy)]
pub struct Listeners {
    /// Plain HTTP, proxied without caching.
    pub plain: u16,
    /// Plain HTTP, proxied through the proxy's cache.
    pub cache: u16,
    /// HTTPS, proxied without caching.
    pub tls: u16,
}

/// Every port of the benchmark; all on 127.0.0.1.
#[derive(Clone, Copy)]
pub struct Ports {
    /// The origin (plain HTTP).
    pub origin: u16,
    /// edge's listeners.
    pub edge: Listeners,
    /// nginx's listeners.
    pub nginx: Listeners,
    /// HAProxy's listeners.
    pub haproxy: Listeners,
}

/// Which of edge's three configurations.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum EdgeKind {
    /// Plain proxying.
    Plain,
    /// Proxying through edge's cache.
    Cache,
    /// TLS termination.
    Tls,
}

impl EdgeKind {
    /// The file name of the configuration.
    pub fn file_name(self) -> &'static str {
        match self {
            EdgeKind::Plain => "edge-proxy.yaml",
            EdgeKind::Cache => "edge-cache.yaml",
            EdgeKind::Tls => "edge-tls.yaml",
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
    worker_connections 4096;
}}
"
    )
}

/// nginx as reverse proxy: one worker, an upstream keep-alive pool,
/// response buffers large enough that 64 KiB never goes to a temporary
/// file, `proxy_cache` on its cache listener (files under the prefix,
/// which the page cache keeps in memory).
pub fn nginx(prefix: &Path, ports: &Ports, cert: &Path, key: &Path) -> String {
    let p = prefix.display();
    let l = ports.nginx;
    let mut s = nginx_head(prefix);
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
}}
",
        origin = ports.origin,
        temp = nginx_temp_paths(prefix),
        plain = l.plain,
        cache = l.cache,
        tls = l.tls,
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
/// one PEM (`pem`) for TLS.
pub fn haproxy(ports: &Ports, pem: &Path) -> String {
    let l = ports.haproxy;
    format!(
        "global
    nbthread 1
    maxconn 8192
    tune.ssl.default-dh-param 2048

{defaults}
cache bench
    total-max-size {CACHE_MIB}
    max-object-size {object_bytes}
    max-age {MAX_AGE_SECS}

frontend plain
    bind 127.0.0.1:{plain} backlog 4096
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
