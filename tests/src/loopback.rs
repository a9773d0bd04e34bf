//! Running edge on loopback, without a namespace: addresses no one else
//! uses, and a started edge whose endpoints all accept.

use crate::{edge::Edge, proxy::unique_loopback, wait};
use anyhow::Result;
use std::{
    net::{SocketAddr, TcpStream},
    path::Path,
    time::Duration,
};

/// First listener port; the others follow.
const FIRST_PORT: u16 = 18080;
/// The admin endpoint's port.
const ADMIN_PORT: u16 = 19100;

/// The endpoints of one edge.
#[derive(Clone, Debug)]
pub struct Endpoints {
    /// Listener addresses.
    pub listeners: Vec<SocketAddr>,
    /// The admin endpoint.
    pub admin: SocketAddr,
}

/// `n` listener addresses and an admin address on a loopback address that
/// no other edge of this process uses (see [`unique_loopback`]), on fixed
/// ports outside the ephemeral range, so nothing else can take them.
pub fn endpoints(n: u16) -> Endpoints {
    let ip = unique_loopback();
    Endpoints {
        listeners: (0..n)
            .map(|i| SocketAddr::new(ip, FIRST_PORT + i))
            .collect(),
        admin: SocketAddr::new(ip, ADMIN_PORT),
    }
}

/// Writes `yaml` to `dir/edge.yaml`, starts edge with it and waits until
/// its admin endpoint answers and every listener accepts connections (each
/// service binds on its own thread, so the admin endpoint answering says
/// nothing about the listeners).
pub fn start_edge(dir: &Path, yaml: &str, at: &Endpoints) -> Result<Edge> {
    let config = dir.join("edge.yaml");
    std::fs::write(&config, yaml)?;
    let mut edge = Edge::start(None, &config)?;
    edge.wait_ready(None, at.admin, Duration::from_secs(30))?;
    for &l in &at.listeners {
        wait::until(
            &format!("edge to listen on {l}"),
            Duration::from_secs(10),
            || {
                // A connection to itself (TCP simultaneous open) is not edge.
                Ok(TcpStream::connect_timeout(&l, Duration::from_secs(1))
                    .ok()
                    .filter(|s| s.local_addr().ok() != s.peer_addr().ok())
                    .map(drop))
            },
        )?;
    }
    Ok(edge)
}
