//! The PROXY protocol on accepted connections: a peer in the listener's
//! `proxy_protocol.accept_from` must open with a header, and the client
//! it names becomes the connection's peer address for everything after
//! (routing, policies, X-Forwarded-For, logs). Peers not listed are
//! served as they are, so a header from them is never believed.

use super::proxy_protocol::read_header;
use crate::metrics;
use ipnet::IpNet;
use pingora::protocols::{SocketDigest, l4::socket::SocketAddr as PeerAddr};
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio::io::AsyncRead;

/// What became of a new connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The peer is not one that sends a header: nothing changes.
    AsIs,
    /// The header named this client (`None`: the peer speaks for itself,
    /// a `LOCAL` health check).
    Client(Option<SocketAddr>),
    /// No valid header within the time: the connection is closed.
    Refused,
}

/// Reads the header from `stream` when `peer` is in `trusted`, within
/// `timeout`; refusals are counted for `listener`.
pub async fn check<S: AsyncRead + Unpin>(
    stream: &mut S,
    peer: Option<SocketAddr>,
    trusted: &[IpNet],
    timeout: Duration,
    listener: &Arc<str>,
) -> Verdict {
    let Some(peer) = peer else {
        return Verdict::AsIs;
    };
    let ip = peer.ip().to_canonical();
    if !trusted.iter().any(|n| n.contains(&ip)) {
        return Verdict::AsIs;
    }
    match tokio::time::timeout(timeout, read_header(stream)).await {
        Ok(Ok(client)) => Verdict::Client(client),
        Ok(Err(reason)) => {
            metrics::proxy_protocol_refused(listener, reason);
            Verdict::Refused
        }
        Err(_) => {
            metrics::proxy_protocol_refused(listener, "timeout");
            Verdict::Refused
        }
    }
}

/// A socket digest for connection `fd` whose peer is `client`.
pub fn digest(fd: i32, client: SocketAddr) -> SocketDigest {
    let d = SocketDigest::from_raw_fd(fd);
    // A fresh digest: its peer is not set yet.
    let _ = d.peer_addr.set(Some(PeerAddr::Inet(client)));
    d
}
