//! A stream listener as a Pingora service: each connection is admitted
//! (the listener's `max_connections`), routed to a pool (its own, or by
//! the TLS server name), connected to a backend the pool picks (its
//! balancing, health, outlier detection, breaker and retries on connect
//! failures), given a PROXY protocol header if configured, and relayed
//! both ways until it closes or idles out.

use super::{
    accept,
    client_hello::{self, Hello, MAX_READ},
    copy, proxy_protocol,
};
use crate::{
    config::{Limits, Listener, stream::StreamMode},
    metrics,
    proxy::listener::{self, ConnectionMetrics},
    runtime::ListenerRuntime,
    upstream::{Admission, PickInput, UpstreamPool},
};
use anyhow::Result;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::{
    apps::ServerApp,
    protocols::Stream,
    server::{ShutdownWatch, configuration::ServerConf},
    services::{ServiceWithDependents, listening::Service},
};
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::Semaphore,
};

/// Connect timeout of a pool that sets none.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds the Pingora service of stream listener `l`.
pub fn service(
    _conf: &Arc<ServerConf>,
    l: &Listener,
    runtime: Arc<ArcSwap<ListenerRuntime>>,
) -> Result<Box<dyn ServiceWithDependents>> {
    let limits = l.transport.limits.clone();
    let app = StreamApp {
        listener: Arc::from(l.name.as_str()),
        runtime,
        slots: listener::slots(&limits),
        metrics: ConnectionMetrics::new(&l.name),
        limits,
    };
    let mut service = Service::new(format!("stream {}", l.name), app);
    service.add_tcp(&l.address.to_string());
    Ok(Box::new(service))
}

/// One stream listener.
struct StreamApp {
    listener: Arc<str>,
    runtime: Arc<ArcSwap<ListenerRuntime>>,
    limits: Limits,
    slots: Option<Arc<Semaphore>>,
    metrics: ConnectionMetrics,
}

/// A backend connection, and what to settle on it when the stream ends.
struct Upstream {
    stream: TcpStream,
    backend: usize,
    admission: Admission,
}

#[async_trait]
impl ServerApp for StreamApp {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        _shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let _open = listener::admit(self.slots.as_ref(), &self.metrics)?;
        let rt = self.runtime.load_full();
        let (settings, pools) = (rt.config.stream.as_ref()?, rt.stream.as_ref()?);
        let digest = stream.get_socket_digest();
        let peer = digest
            .as_ref()
            .and_then(|d| d.peer_addr())
            .and_then(|a| a.as_inet())
            .copied();
        let trusted = &rt.config.proxy_accept;
        let wait = self.limits.header_read_timeout;
        let client = match accept::check(&mut stream, peer, trusted, wait, &self.listener).await {
            accept::Verdict::AsIs | accept::Verdict::Client(None) => peer,
            accept::Verdict::Client(Some(client)) => Some(client),
            accept::Verdict::Refused => return None,
        };
        let local = digest
            .as_ref()
            .and_then(|d| d.local_addr())
            .and_then(|a| a.as_inet())
            .copied();
        // What was read to route the connection, to be sent on first.
        let mut first = Vec::new();
        let pool = match settings.mode {
            StreamMode::Tcp => pools.pool.clone(),
            StreamMode::TlsPassthrough => {
                match read_server_name(&mut stream, &mut first, self.limits.header_read_timeout)
                    .await
                {
                    Ok(name) => {
                        let pool = pools.pool_for(name.as_deref()).cloned();
                        if pool.is_none() {
                            metrics::passthrough_refused(&self.listener, "no_route");
                        }
                        pool
                    }
                    Err(reason) => {
                        metrics::passthrough_refused(&self.listener, reason);
                        return None;
                    }
                }
            }
        };
        let pool = pool?;
        let mut opening = Vec::with_capacity(first.len() + 64);
        if let Some(version) = settings.send_proxy {
            // A backend that expects a header would read the client's
            // bytes as one: without the addresses, no connection.
            let (Some(client), Some(local)) = (client, local) else {
                tracing::warn!(listener = %self.listener, "no client address for the PROXY header: closing");
                return None;
            };
            opening.extend(proxy_protocol::header(version, client, local));
        }
        opening.extend_from_slice(&first);
        let mut up = self.connect(&pool, client).await?;
        // A backend that takes the connection but reads nothing gets the
        // idle timeout to take these bytes.
        let sent = opening.is_empty()
            || tokio::time::timeout(self.limits.idle_timeout, up.stream.write_all(&opening))
                .await
                .is_ok_and(|r| r.is_ok());
        let copied = if sent {
            Some(copy::bidirectional(&mut stream, &mut up.stream, self.limits.idle_timeout).await)
        } else {
            None
        };
        // The backend took the connection: whatever happens after is the
        // stream's business, not a backend failure.
        pool.done(up.backend, true);
        pool.record(up.admission, true);
        // What was read to route it is counted once it was passed on.
        let (bytes_up, bytes_down) = copied
            .as_ref()
            .map_or((0, 0), |c| (c.up + first.len() as u64, c.down));
        metrics::stream_closed(&self.listener, &pool.name, bytes_up, bytes_down);
        None
    }
}

impl StreamApp {
    /// A connection to a backend of `pool`: another backend after a failed
    /// connect while the pool's retries allow.
    async fn connect(
        &self,
        pool: &Arc<UpstreamPool>,
        client: Option<SocketAddr>,
    ) -> Option<Upstream> {
        let admission = pool.admit();
        if admission == Admission::Rejected {
            metrics::stream_connection(&self.listener, &pool.name, "breaker_open");
            return None;
        }
        let timeout = pool
            .config
            .timeouts
            .connect
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let mut tried = Vec::new();
        // A ketama pool hashes the client's address: without it every
        // connection would hash the same empty key to one backend.
        let key = crate::proxy::client_hash_key(
            pool.config.algorithm,
            &pool.config.hash_key,
            client.map(|c| c.ip()),
        );
        loop {
            let input = PickInput {
                client: client.map(|c| c.ip()),
                hash_key: &key,
            };
            let Some(i) = pool.select(input, &tried) else {
                metrics::stream_connection(&self.listener, &pool.name, "no_backend");
                pool.record(admission, false);
                return None;
            };
            tried.push(i);
            pool.start(i);
            let addr = pool.backends()[i].address;
            match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    metrics::stream_connection(&self.listener, &pool.name, "ok");
                    return Some(Upstream {
                        stream,
                        backend: i,
                        admission,
                    });
                }
                Ok(Err(e)) => {
                    tracing::debug!(listener = %self.listener, backend = %addr, "connect: {e}");
                }
                Err(_) => {
                    tracing::debug!(listener = %self.listener, backend = %addr, "connect timed out");
                }
            }
            pool.done(i, false);
            if !pool.may_retry(tried.len() as u32) {
                metrics::stream_connection(&self.listener, &pool.name, "connect_failed");
                pool.record(admission, false);
                return None;
            }
        }
    }
}

/// Reads the ClientHello into `buf` (up to [`MAX_READ`] bytes, within
/// `timeout`) and returns the server name it asks for; `Err` is a metric
/// label saying why not.
async fn read_server_name(
    stream: &mut Stream,
    buf: &mut Vec<u8>,
    timeout: Duration,
) -> Result<Option<String>, &'static str> {
    let read = async {
        let mut chunk = [0u8; 4096];
        let mut reader = client_hello::Reader::default();
        loop {
            match reader.read(buf) {
                Hello::Name(name) => return Ok(name),
                Hello::Refused(r) => return Err(r.label()),
                Hello::Incomplete => {}
            }
            let want = MAX_READ.saturating_sub(buf.len()).min(chunk.len());
            match stream.read(&mut chunk[..want]).await {
                Ok(0) | Err(_) => return Err("closed"),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Err("timeout"))
}
