//! One listener as a Pingora service: its endpoint (plain or TLS), and the
//! connection-level limits Pingora does not offer per listener.
//!
//! [`ListenerApp`] wraps Pingora's [`HttpProxy`] application:
//! - `max_connections`: a semaphore with one permit per open connection.
//!   (Pingora 0.9 has no per-listener connection limit; its
//!   `ConnectionFilter`, behind the `connection_filter` feature, sees only
//!   the peer address and never learns when a connection ends.)
//!   A connection beyond the limit is closed at once, without a response
//!   (Envoy's listener behaviour; the client sees the connection close or
//!   reset). On TLS listeners the check also runs before the handshake, so
//!   a full listener spends no handshake on it; the permit itself is taken
//!   after the handshake, when Pingora hands the connection over.
//! - `idle_timeout`: the keep-alive timeout of HTTP/1 connections, and
//!   Pingora's idle timeout of HTTP/2 connections.
//! - `header_read_timeout`: see [`head_timeout`](super::head_timeout)
//!   (HTTP/1 request heads, and the HTTP/2 connection preface).
//!
//! HTTP/2 connections (ALPN `h2` on TLS listeners; on plain listeners a
//! connection that opens with the HTTP/2 preface, "prior knowledge" h2c,
//! as Envoy's automatic codec detects it) go to Pingora's own handling;
//! HTTP/1 connections run the same keep-alive loop as Pingora's, with the
//! two timeouts added.

use super::head_timeout::HeadTimeout;
use crate::stream::accept;
use crate::{
    config::{Limits, Listener},
    runtime::ListenerRuntime,
};
use anyhow::Result;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::{
    apps::{HttpServerApp, HttpServerOptions, ServerApp},
    listeners::PreTlsProcess,
    protocols::{
        ALPN, GetSocketDigest, Stream, UniqueID, http::ServerSession,
        l4::stream::Stream as L4Stream,
    },
    proxy::{HttpProxy, ProxyHttp, http_proxy},
    server::{ShutdownWatch, configuration::ServerConf},
    services::{ServiceWithDependents, listening::Service},
};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A plain listener's read buffer per connection. Pingora's default is
/// 64 KiB, zeroed when the connection is accepted, so each idle keep-alive
/// connection held about 88 KiB of resident memory (nginx: under 1 KiB):
/// 10 000 idle clients took 900 MB. A request head is rarely over a few
/// KiB; a larger one (up to `max_request_head_size`) or a body is read in
/// several reads instead of one.
const READ_BUFFER: usize = 4 * 1024;
/// A TLS listener's: one TLS record, what OpenSSL asks for at a time.
const TLS_READ_BUFFER: usize = 16 * 1024;
/// Pingora's default write buffer (one MSS).
const WRITE_BUFFER: usize = 1460;
/// How long a stopped listener lets connections it accepted a moment
/// before send their request (see `ListenerApp::cleanup`).
const FIRST_REQUEST_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Builds the Pingora service for listener `l` around `proxy`; a TLS
/// listener takes each handshake's certificate from `runtime`.
pub fn service<SV>(
    conf: &Arc<ServerConf>,
    l: &Listener,
    runtime: Arc<ArcSwap<ListenerRuntime>>,
    proxy: SV,
) -> Result<Box<dyn ServiceWithDependents>>
where
    SV: ProxyHttp + Send + Sync + 'static,
    SV::CTX: Send + Sync,
{
    let limits = &l.transport.limits;
    let mut app = http_proxy(conf, proxy);
    let mut options = HttpServerOptions::default();
    options.h2_idle_timeout = Some(limits.idle_timeout);
    let h2c = l.transport.tls.is_none() && l.transport.http2;
    options.h2c = h2c;
    app.server_options = Some(options);
    // Pingora's bounded defaults, with this listener's stream limit and a
    // send buffer per stream that keeps the connection's total within
    // `http2_connection_buffer` (h2's own default is 400 KiB per stream,
    // 40 MiB for a connection of 100 streams nobody reads).
    let mut h2 = pingora::protocols::http::v2::server::default_h2_options();
    h2.max_concurrent_streams(limits.http2_max_streams);
    h2.max_send_buffer_size(limits.http2_stream_buffer());
    app.h2_options = Some(h2);
    let slots = slots(limits);
    let metrics = ConnectionMetrics::new(&l.name);
    let app = ListenerApp {
        proxy: Arc::new(app),
        metrics: metrics.clone(),
        limits: limits.clone(),
        slots: slots.clone(),
        h2c,
        proxy_accept: if l.transport.tls.is_none() {
            l.proxy_accept.clone()
        } else {
            Vec::new()
        },
    };
    let mut service = Service::new(format!("listener {}", l.name), app);
    let address = l.address.to_string();
    match &l.transport.tls {
        Some(tls) => {
            let settings = super::tls::listener_settings(tls, l.transport.http2, runtime)?;
            if slots.is_some() || !l.proxy_accept.is_empty() {
                let check = BeforeHandshake {
                    metrics,
                    slots,
                    proxy_accept: l.proxy_accept.clone(),
                    wait: limits.header_read_timeout,
                };
                service.endpoints().set_pre_tls_callback(Arc::new(check));
            }
            service.add_listener(
                pingora::listeners::ListenerConfig::tcp(address)
                    .tls(settings)
                    .l4_buffer(pingora::protocols::l4::stream::L4BufferSettings::new(
                        TLS_READ_BUFFER,
                        WRITE_BUFFER,
                    )),
            );
        }
        None => service.add_listener(pingora::listeners::ListenerConfig::tcp(address).l4_buffer(
            pingora::protocols::l4::stream::L4BufferSettings::new(READ_BUFFER, WRITE_BUFFER),
        )),
    }
    Ok(Box::new(service))
}

/// A listener's connection metrics, registered once.
#[derive(Clone)]
pub(crate) struct ConnectionMetrics {
    open: metrics::Gauge,
    refused: metrics::Counter,
    listener: Arc<str>,
    counts: Arc<Counts>,
}

/// A listener's connections, for the admin API (the gauge above is
/// write-only, and absent without a metrics recorder).
#[derive(Default)]
struct Counts {
    open: std::sync::atomic::AtomicU64,
    total: std::sync::atomic::AtomicU64,
}

/// Every listener's counts, by name; a handful of entries, one per
/// configured listener, so it needs no other bound.
static COUNTS: std::sync::LazyLock<
    parking_lot::Mutex<std::collections::HashMap<String, Arc<Counts>>>,
> = std::sync::LazyLock::new(Default::default);

/// Listener `name`'s connections: open now, and accepted in all.
pub fn connection_counts(name: &str) -> (u64, u64) {
    use std::sync::atomic::Ordering::Relaxed;
    COUNTS
        .lock()
        .get(name)
        .map_or((0, 0), |c| (c.open.load(Relaxed), c.total.load(Relaxed)))
}

impl ConnectionMetrics {
    /// Registers listener `listener`'s.
    pub(crate) fn new(listener: &str) -> Self {
        let label = listener.to_string();
        Self {
            open: metrics::gauge!("edge_listener_connections", "listener" => label.clone()),
            refused: metrics::counter!(
                "edge_listener_connections_refused_total",
                "listener" => label
            ),
            listener: Arc::from(listener),
            counts: Arc::clone(COUNTS.lock().entry(listener.to_string()).or_default()),
        }
    }

    fn refused(&self) {
        self.refused.increment(1);
        tracing::debug!(listener = %self.listener, "max_connections reached: closing a new connection");
    }
}

/// Before a TLS handshake: refuses the connection when no slot is free,
/// and reads the PROXY header of a peer that sends one.
struct BeforeHandshake {
    metrics: ConnectionMetrics,
    slots: Option<Arc<Semaphore>>,
    proxy_accept: Vec<ipnet::IpNet>,
    wait: std::time::Duration,
}

/// Takes one of `slots` (if the listener limits its connections) for a
/// new connection, counted in `metrics`; `None` when all are taken.
pub(crate) fn admit(slots: Option<&Arc<Semaphore>>, metrics: &ConnectionMetrics) -> Option<Open> {
    let permit = match slots {
        None => None,
        Some(slots) => match Arc::clone(slots).try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                metrics.refused();
                return None;
            }
        },
    };
    metrics.open.increment(1.0);
    metrics
        .counts
        .open
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    metrics
        .counts
        .total
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Some(Open {
        counts: Arc::clone(&metrics.counts),
        open: metrics.open.clone(),
        _permit: permit,
        _in_flight: crate::drain::InFlight::start(),
    })
}

/// The connection slots of a listener with `limits`, if it has a limit.
pub(crate) fn slots(limits: &Limits) -> Option<Arc<Semaphore>> {
    limits
        .max_connections
        .map(|n| Arc::new(Semaphore::new(n.min(Semaphore::MAX_PERMITS))))
}

#[async_trait]
impl PreTlsProcess for BeforeHandshake {
    async fn process(&self, stream: &mut L4Stream) -> pingora::Result<()> {
        if self
            .slots
            .as_ref()
            .is_some_and(|s| s.available_permits() == 0)
        {
            self.metrics.refused();
            return pingora::Error::e_explain(
                pingora::ErrorType::ConnectRefused,
                "listener at max_connections",
            );
        }
        if !self.proxy_accept.is_empty() {
            let peer = stream
                .get_socket_digest()
                .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).copied());
            let trusted = &self.proxy_accept;
            match accept::check(stream, peer, trusted, self.wait, &self.metrics.listener).await {
                accept::Verdict::Client(Some(client)) => {
                    let fd = stream.id();
                    stream.set_socket_digest(accept::digest(fd, client));
                }
                accept::Verdict::AsIs | accept::Verdict::Client(None) => {}
                accept::Verdict::Refused => {
                    return pingora::Error::e_explain(
                        pingora::ErrorType::ConnectRefused,
                        "no valid PROXY protocol header",
                    );
                }
            }
        }
        Ok(())
    }
}

/// Pingora's HTTP proxy application with this listener's limits.
pub struct ListenerApp<SV: ProxyHttp> {
    proxy: Arc<HttpProxy<SV>>,
    metrics: ConnectionMetrics,
    limits: Limits,
    slots: Option<Arc<Semaphore>>,
    /// Whether a plain connection may open with the HTTP/2 preface.
    h2c: bool,
    /// Peers that open with a PROXY protocol header (plain listeners; a
    /// TLS listener reads it before the handshake).
    proxy_accept: Vec<ipnet::IpNet>,
}

/// An admitted connection: holds its slot and counts as open while it lives.
pub(crate) struct Open {
    open: metrics::Gauge,
    counts: Arc<Counts>,
    _permit: Option<OwnedSemaphorePermit>,
    /// A drain waits for it: a connection accepted just before the
    /// listeners stopped has not read its request yet, and the process
    /// must not end under it. Idle kept-alive connections close at once
    /// when the shutdown starts.
    _in_flight: crate::drain::InFlight,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.open.decrement(1.0);
        self.counts
            .open
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl<SV> ListenerApp<SV>
where
    SV: ProxyHttp + Send + Sync + 'static,
    SV::CTX: Send + Sync,
{
    /// Takes a connection slot, or says why not.
    fn admit(&self) -> Option<Open> {
        admit(self.slots.as_ref(), &self.metrics)
    }

    /// Pingora's HTTP/1 keep-alive loop, with the head deadline and the
    /// idle timeout of this listener.
    async fn serve_http1(&self, stream: Stream, shutdown: &ShutdownWatch) {
        let (stream, next) = HeadTimeout::new(stream, self.limits.header_read_timeout);
        let idle = self.limits.idle_timeout.as_secs().max(1);
        let mut session = ServerSession::new_http1(Box::new(stream));
        // Requests a client sends before the previous response are served
        // in order (RFC 9112 §9.3.2); the setting carries over to every
        // later session of the connection.
        session.set_pipelining_enabled(true);
        if *shutdown.borrow() {
            session.set_keepalive(None);
        } else {
            session.set_keepalive(Some(idle));
        }
        session.set_keepalive_reuses_remaining(
            self.proxy
                .server_options()
                .and_then(|o| o.keepalive_request_limit),
        );
        let mut reused = self.proxy.process_new_http(session, shutdown).await;
        while let Some((stream, settings)) = reused.map(|r| r.consume()) {
            next.starts();
            let mut session = ServerSession::new_http1(stream);
            if let Some(settings) = settings {
                settings.apply_to_session(&mut session);
            }
            // Pingora turns an HTTP/1.1 request's keep-alive into "no
            // timeout" once it has read the head, and carries that over to
            // the wait for the next request; put the idle timeout back.
            if session.get_keepalive().is_some() {
                session.set_keepalive(Some(idle));
            }
            reused = self.proxy.process_new_http(session, shutdown).await;
        }
    }
}

/// The connection preface of HTTP/2 with prior knowledge (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether a plain connection opens with the HTTP/2 preface. The bytes
/// stay in the stream (peeked) for whichever protocol reads them. The
/// first four decide: no HTTP/1 request starts with `PRI ` (RFC 9113
/// §3.4 chose the method so), and an HTTP/1 client is never made to wait
/// for 24 bytes its request may not have.
async fn opens_with_h2_preface(stream: &mut Stream) -> std::io::Result<bool> {
    let mut head = [0u8; 4];
    if !stream.try_peek(&mut head).await? || head != H2_PREFACE[..4] {
        return Ok(false);
    }
    let mut whole = [0u8; 24];
    Ok(stream.try_peek(&mut whole).await? && &whole == H2_PREFACE)
}

#[async_trait]
impl<SV> ServerApp for ListenerApp<SV>
where
    SV: ProxyHttp + Send + Sync + 'static,
    SV::CTX: Send + Sync,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let _open = self.admit()?;
        let mut stream = stream;
        if !self.proxy_accept.is_empty() {
            let peer = stream
                .get_socket_digest()
                .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).copied());
            let wait = self.limits.header_read_timeout;
            let trusted = &self.proxy_accept;
            match accept::check(&mut stream, peer, trusted, wait, &self.metrics.listener).await {
                accept::Verdict::Client(Some(client)) => {
                    let fd = stream.id();
                    stream.set_socket_digest(accept::digest(fd, client));
                }
                accept::Verdict::AsIs | accept::Verdict::Client(None) => {}
                accept::Verdict::Refused => return None,
            }
        }
        let h2 = match stream.selected_alpn_proto() {
            Some(ALPN::H2) => true,
            _ if self.h2c => {
                match tokio::time::timeout(
                    self.limits.header_read_timeout,
                    opens_with_h2_preface(&mut stream),
                )
                .await
                {
                    Ok(Ok(h2)) => h2,
                    // Closed, broken or silent before sending four bytes:
                    // no request to answer (and a cut peek may have
                    // consumed some).
                    _ => return None,
                }
            }
            _ => false,
        };
        if h2 {
            // HTTP/2 multiplexes requests; Pingora's connection handling
            // (with `h2_idle_timeout`) serves it to the end.
            let stream = HeadTimeout::h2_preface(stream, self.limits.header_read_timeout);
            return ServerApp::process_new(&self.proxy, Box::new(stream), shutdown).await;
        }
        self.serve_http1(stream, shutdown).await;
        None
    }

    /// Runs once the listener has stopped accepting. Pingora's cleanup
    /// ends every connection still waiting for a request head, including
    /// one accepted a moment before whose TLS handshake or request is on
    /// its way (the client would see a reset). So the listener first waits
    /// [`FIRST_REQUEST_GRACE`] (or the head timeout, if shorter): such
    /// connections send their request, which is answered with `Connection:
    /// close` (as are requests on kept-alive connections meanwhile). The
    /// wait counts as in flight, so a drain does not end the process under
    /// it.
    async fn cleanup(&self) {
        let _hold = crate::drain::InFlight::start();
        tokio::time::sleep(FIRST_REQUEST_GRACE.min(self.limits.header_read_timeout)).await;
        self.proxy.http_cleanup().await;
    }
}
