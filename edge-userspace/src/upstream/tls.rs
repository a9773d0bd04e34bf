//! TLS towards a pool's backends (SNI, verification, trusted CAs), and
//! the HTTP version spoken over it.

use crate::{
    config::{UpstreamProtocol, UpstreamTls},
    proxy::tls::read_chain,
};
use anyhow::Result;
use pingora::{prelude::HttpPeer, protocols::ALPN, tls::x509::X509};
use std::{
    hash::{Hash, Hasher},
    net::SocketAddr,
    sync::Arc,
    time::Duration,
};

/// Requests multiplexed on one HTTP/2 connection to a backend (Pingora's
/// default is 1: one stream at a time); the backend's own
/// `SETTINGS_MAX_CONCURRENT_STREAMS` lowers it.
const H2_STREAMS_PER_CONNECTION: usize = 100;
/// Pings on idle HTTP/2 connections to backends, so that a backend gone
/// without a word (a host down, a silent NAT drop) is noticed before a
/// request is put on its connection.
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);

/// A pool's upstream TLS, loaded.
pub struct UpstreamTlsPeer {
    sni: String,
    verify: bool,
    ca: Option<Arc<Box<[X509]>>>,
    /// Pingora reuses upstream connections by a peer hash that leaves out
    /// the trusted CAs; this key (a digest of them) keeps a connection that
    /// one pool verified with its CAs from serving a pool that trusts others.
    group_key: u64,
}

impl UpstreamTlsPeer {
    /// Loads the CA file of a checked configuration.
    pub fn load(tls: &UpstreamTls) -> Result<Self> {
        let ca = match &tls.ca {
            Some(path) => Some(read_chain(path)?),
            None => None,
        };
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for c in ca.iter().flatten() {
            c.to_der()?.hash(&mut hasher);
        }
        Ok(Self {
            sni: tls.sni.clone().unwrap_or_default(),
            verify: tls.verify,
            group_key: if ca.is_some() { hasher.finish() } else { 0 },
            ca: ca.map(|c| Arc::new(c.into_boxed_slice())),
        })
    }

    /// A TLS peer for backend `addr`.
    pub fn peer(&self, addr: SocketAddr) -> HttpPeer {
        let mut peer = HttpPeer::new(addr, true, self.sni.clone());
        // Pingora checks the chain and, through `verify_hostname`, that the
        // certificate names the SNI (validation insists on an SNI when
        // verifying: without one Pingora would skip verification).
        peer.options.verify_cert = self.verify;
        peer.options.verify_hostname = self.verify;
        peer.options.ca = self.ca.clone();
        peer.group_key = self.group_key;
        peer
    }
}

/// A peer for backend `addr`: plain, or with the pool's TLS, speaking
/// the pool's `protocol`.
pub fn upstream_peer(
    tls: Option<&UpstreamTlsPeer>,
    addr: SocketAddr,
    protocol: UpstreamProtocol,
) -> HttpPeer {
    let mut peer = match tls {
        Some(tls) => tls.peer(addr),
        None => HttpPeer::new(addr, false, String::new()),
    };
    if protocol.is_h2() {
        // HTTP/2 only, never a fall-back to HTTP/1.1: gRPC needs its
        // trailers. On a plain peer Pingora takes this as prior knowledge
        // (h2c); over TLS it is what ALPN offers.
        peer.options.alpn = ALPN::H2;
        peer.options.max_h2_streams = H2_STREAMS_PER_CONNECTION;
        peer.options.h2_ping_interval = Some(H2_PING_INTERVAL);
    }
    peer
}
