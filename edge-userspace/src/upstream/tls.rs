//! TLS towards a pool's backends: SNI, verification, trusted CAs.

use crate::{config::UpstreamTls, proxy::tls::read_chain};
use anyhow::Result;
use pingora::{prelude::HttpPeer, tls::x509::X509};
use std::{
    hash::{Hash, Hasher},
    net::SocketAddr,
    sync::Arc,
};

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

/// A peer for backend `addr`: plain, or with the pool's TLS.
pub fn upstream_peer(tls: Option<&UpstreamTlsPeer>, addr: SocketAddr) -> HttpPeer {
    match tls {
        Some(tls) => tls.peer(addr),
        None => HttpPeer::new(addr, false, String::new()),
    }
}
