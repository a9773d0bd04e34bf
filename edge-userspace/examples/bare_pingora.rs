//! A bare Pingora reverse proxy, none of edge's code: the yardstick
//! `cargo xtask bench l7` puts beside edge, so that the gap between the two
//! is what edge adds to Pingora, and the gap to nginx and HAProxy what
//! Pingora itself costs.
//!
//! It does what the benchmark's other proxies are configured to do and no
//! more: one worker thread, HTTP/1.1 and prior-knowledge h2c on the plain
//! listener, optionally TLS (HTTP/2 by ALPN) on a second one, round robin
//! over the upstreams through Pingora's default keep-alive pool, and
//! `X-Forwarded-For` / `X-Forwarded-Proto` on every upstream request. It
//! uses edge's allocator (mimalloc) with allocation counting, as the
//! benchmark's edge build does, so the comparison isolates edge's code.
//!
//! ```text
//! cargo build --release -p edge-userspace --example bare_pingora --features alloc-count
//! target/release/examples/bare_pingora --listen 127.0.0.1:8080 \
//!     [--tls 127.0.0.1:8443 --cert cert.pem --key key.pem] \
//!     --upstream 127.0.0.1:9000 [--upstream ...]
//! ```

use async_trait::async_trait;
use edge_userspace::alloc_count::{CountingAlloc, start_reporter};
use pingora::{
    ErrorType,
    apps::HttpServerOptions,
    http::RequestHeader,
    listeners::tls::TlsSettings,
    proxy::{ProxyHttp, Session, http_proxy_service},
    server::{
        Server,
        configuration::{Opt, ServerConf},
    },
    upstreams::peer::HttpPeer,
};
use std::{
    net::SocketAddr,
    process::ExitCode,
    sync::atomic::{AtomicUsize, Ordering},
};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

const USAGE: &str = "usage: bare_pingora --listen ADDR [--tls ADDR --cert PEM --key PEM] \
--upstream ADDR [--upstream ADDR ...]";

/// What the command line asks for.
struct Args {
    listen: String,
    tls: Option<Tls>,
    upstreams: Vec<SocketAddr>,
}

/// The TLS listener and its certificate.
struct Tls {
    listen: String,
    cert: String,
    key: String,
}

impl Args {
    /// Reads `--listen`, `--tls`, `--cert`, `--key` and `--upstream`
    /// (repeatable); a missing or unknown argument is an error naming it.
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut listen = None;
        let (mut tls, mut cert, mut key) = (None, None, None);
        let mut upstreams = Vec::new();
        while let Some(flag) = args.next() {
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--listen" => listen = Some(value),
                "--tls" => tls = Some(value),
                "--cert" => cert = Some(value),
                "--key" => key = Some(value),
                "--upstream" => upstreams.push(
                    value
                        .parse::<SocketAddr>()
                        .map_err(|e| format!("--upstream {value}: {e}"))?,
                ),
                other => return Err(format!("unknown argument {other}")),
            }
        }
        let listen = listen.ok_or("--listen is missing")?;
        if upstreams.is_empty() {
            return Err("no --upstream".into());
        }
        let tls = match (tls, cert, key) {
            (Some(listen), Some(cert), Some(key)) => Some(Tls { listen, cert, key }),
            (None, None, None) => None,
            _ => return Err("--tls, --cert and --key go together".into()),
        };
        Ok(Self {
            listen,
            tls,
            upstreams,
        })
    }
}

/// The proxy: round robin over fixed upstreams, forwarded headers added.
struct Bare {
    /// Built once; each request gets a copy (Pingora takes the peer boxed).
    peers: Vec<HttpPeer>,
    next: AtomicUsize,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut Self::CTX,
    ) -> pingora::Result<Box<HttpPeer>> {
        // Relaxed: spreading requests needs no ordering with anything else.
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        let peer = self
            .peers
            .get(turn % self.peers.len().max(1))
            .ok_or_else(|| pingora::Error::explain(ErrorType::InternalError, "no upstream"))?;
        Ok(Box::new(peer.clone()))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        _ctx: &mut Self::CTX,
    ) -> pingora::Result<()> {
        // As nginx's $proxy_add_x_forwarded_for: the client's own list
        // with the peer appended.
        if let Some(ip) = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
        {
            let value = match upstream_request
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
            {
                Some(prev) => format!("{prev}, {ip}"),
                None => ip.to_string(),
            };
            upstream_request.insert_header("x-forwarded-for", value)?;
        }
        let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        let scheme = if tls { "https" } else { "http" };
        upstream_request.insert_header("x-forwarded-proto", scheme)?;
        Ok(())
    }
}

fn main() -> ExitCode {
    start_reporter();
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("bare_pingora: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bare_pingora: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Builds the server and runs it until SIGINT (at once) or SIGTERM
/// (graceful).
fn serve(args: Args) -> Result<(), String> {
    // One worker thread, as edge's `server.threads: 1` in the benchmark;
    // everything else (keep-alive pool size, work stealing) Pingora's
    // defaults, which are edge's defaults too.
    let conf = ServerConf {
        threads: 1,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None::<Opt>, conf);
    server.bootstrap();
    let proxy = Bare {
        peers: args
            .upstreams
            .iter()
            .map(|a| HttpPeer::new(*a, false, String::new()))
            .collect(),
        next: AtomicUsize::new(0),
    };
    let mut service = http_proxy_service(&server.configuration, proxy);
    // HttpServerOptions is non-exhaustive: set the field on its default.
    let mut options = HttpServerOptions::default();
    // Prior-knowledge HTTP/2 on the plain listener, as edge's listeners;
    // Pingora ignores it on TLS connections, where ALPN decides.
    options.h2c = true;
    let app = service
        .app_logic_mut()
        .ok_or("the proxy service has no application")?;
    app.server_options = Some(options);
    service.add_tcp(&args.listen);
    if let Some(tls) = &args.tls {
        // Mozilla's intermediate profile: TLS 1.2 and 1.3, as edge's
        // `min_version: "1.2"` in the benchmark.
        let mut settings = TlsSettings::intermediate(&tls.cert, &tls.key)
            .map_err(|e| format!("TLS settings from {} and {}: {e}", tls.cert, tls.key))?;
        settings.enable_h2();
        service.add_tls_with_settings(&tls.listen, None, settings);
    }
    server.add_service(service);
    server.run_forever()
}
