//! Health probing shared by the L7 pools and the L4 services: one check
//! (a TCP connect, an HTTP/1.1 GET whose status must be acceptable, or
//! the standard gRPC health check over HTTP/2; over TLS for pools whose
//! backends speak it)
//! and the rise/fall thresholds that turn results into a state.

use crate::config::{CheckKind, UpstreamTls};
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use std::{net::SocketAddr, time::Duration};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};
use tokio_openssl::SslStream;

/// Longest status line a check reads.
const MAX_STATUS_LINE: usize = 1024;

/// TLS for checks of backends that speak it: the pool's `tls` settings,
/// with the connector built once.
pub struct TlsProbe {
    connector: SslConnector,
    sni: Option<String>,
    verify: bool,
}

impl TlsProbe {
    /// The probe for a pool with upstream `tls`; `h2` asks for HTTP/2
    /// through ALPN (gRPC checks).
    pub fn new(tls: &UpstreamTls, h2: bool) -> Result<Self, String> {
        let mut b = SslConnector::builder(SslMethod::tls_client())
            .map_err(|e| format!("TLS client setup: {e}"))?;
        if h2 {
            b.set_alpn_protos(b"\x02h2")
                .map_err(|e| format!("TLS ALPN: {e}"))?;
        }
        if let Some(ca) = &tls.ca {
            b.set_ca_file(ca)
                .map_err(|e| format!("reading CA file {}: {e}", ca.display()))?;
        }
        if !tls.verify {
            b.set_verify(SslVerifyMode::NONE);
        }
        Ok(Self {
            connector: b.build(),
            sni: tls.sni.clone(),
            verify: tls.verify,
        })
    }
}

/// One check of `addr` within `timeout`, over TLS when `tls` is given;
/// `Err` says why it failed.
pub async fn probe(
    addr: SocketAddr,
    kind: &CheckKind,
    timeout: Duration,
    tls: Option<&TlsProbe>,
) -> Result<(), String> {
    match tokio::time::timeout(timeout, attempt(addr, kind, tls)).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

async fn attempt(addr: SocketAddr, kind: &CheckKind, tls: Option<&TlsProbe>) -> Result<(), String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let Some(tls) = tls else {
        return match kind {
            CheckKind::Grpc { service, authority } => {
                let authority = authority.clone().unwrap_or_else(|| addr.to_string());
                crate::grpc::health::check(tcp, &authority, service, false).await
            }
            _ => http_check(tcp, addr, kind, None).await,
        };
    };
    let ssl = tls
        .connector
        .configure()
        .map_err(|e| format!("TLS: {e}"))?
        .verify_hostname(tls.verify)
        .use_server_name_indication(tls.sni.is_some())
        .into_ssl(tls.sni.as_deref().unwrap_or(""))
        .map_err(|e| format!("TLS: {e}"))?;
    let mut stream = SslStream::new(ssl, tcp).map_err(|e| format!("TLS: {e}"))?;
    std::pin::Pin::new(&mut stream)
        .connect()
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    if let CheckKind::Grpc { service, authority } = kind {
        if stream.ssl().selected_alpn_protocol() != Some(b"h2") {
            return Err("the backend did not agree to HTTP/2 (ALPN h2)".to_string());
        }
        let authority = authority
            .clone()
            .or_else(|| tls.sni.clone())
            .unwrap_or_else(|| addr.to_string());
        return crate::grpc::health::check(stream, &authority, service, true).await;
    }
    http_check(stream, addr, kind, tls.sni.as_deref()).await
}

/// The HTTP part of a check on an open connection (a TCP check passes as
/// soon as it is open).
async fn http_check<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    addr: SocketAddr,
    kind: &CheckKind,
    sni: Option<&str>,
) -> Result<(), String> {
    let CheckKind::Http {
        path,
        host,
        statuses,
    } = kind
    else {
        return Ok(());
    };
    let host = host
        .clone()
        .or_else(|| sni.map(str::to_string))
        .unwrap_or_else(|| addr.to_string());
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: edge-health-check\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::with_capacity(128);
    let mut chunk = [0u8; 256];
    while !buf.contains(&b'\n') && buf.len() < MAX_STATUS_LINE {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let status = status_of(&buf).ok_or_else(|| {
        let line = String::from_utf8_lossy(&buf);
        format!(
            "not an HTTP response: {:?}",
            line.lines().next().unwrap_or("")
        )
    })?;
    let ok = if statuses.is_empty() {
        (200..400).contains(&status)
    } else {
        statuses.contains(&status)
    };
    if ok {
        Ok(())
    } else {
        Err(format!("status {status}"))
    }
}

/// The status code of an HTTP/1.x response's first line.
pub fn status_of(response: &[u8]) -> Option<u16> {
    let line = response.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_whitespace();
    if !words.next()?.starts_with("HTTP/1.") {
        return None;
    }
    words.next()?.parse().ok()
}

/// A backend's health as rise/fall thresholds see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tracker {
    /// Current state.
    pub up: bool,
    streak: u32,
}

impl Tracker {
    /// A backend starts up: traffic flows at once, and `fall` failures take
    /// it out (as HAProxy and Envoy do by default).
    pub fn new() -> Self {
        Self::starting(true)
    }

    /// A tracker that starts from a known state (a backend carried over by
    /// a reload keeps its verdict).
    pub fn starting(up: bool) -> Self {
        Self { up, streak: 0 }
    }

    /// Records one result; returns the new state when it changed.
    pub fn observe(&mut self, ok: bool, rise: u32, fall: u32) -> Option<bool> {
        if ok == self.up {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if self.up { fall } else { rise };
        if self.streak >= needed {
            self.up = ok;
            self.streak = 0;
            Some(ok)
        } else {
            None
        }
    }
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rise_and_fall() {
        let mut t = Tracker::new();
        assert_eq!(t.observe(false, 2, 3), None);
        assert_eq!(t.observe(true, 2, 3), None, "a success resets the streak");
        assert_eq!(t.observe(false, 2, 3), None);
        assert_eq!(t.observe(false, 2, 3), None);
        assert_eq!(t.observe(false, 2, 3), Some(false));
        assert_eq!(t.observe(false, 2, 3), None);
        assert_eq!(t.observe(true, 2, 3), None);
        assert_eq!(t.observe(true, 2, 3), Some(true));
        assert!(t.up);
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(
            status_of(b"HTTP/1.0 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(status_of(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_of(b""), None);
    }
}
