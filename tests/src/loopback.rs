//! Running edge on loopback, without a namespace: free ports and a started,
//! ready `edge run`.

use crate::edge::Edge;
use anyhow::Result;
use std::{
    net::{SocketAddr, TcpListener},
    path::Path,
    time::Duration,
};

/// A loopback address with a port that was free a moment ago (the kernel
/// hands out ephemeral ports round the range, so it stays free long enough
/// for a test to bind it).
pub fn free_addr() -> Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Writes `yaml` to `dir/edge.yaml`, starts edge with it and waits until
/// its admin endpoint at `admin` answers.
pub fn start_edge(dir: &Path, yaml: &str, admin: SocketAddr) -> Result<Edge> {
    let config = dir.join("edge.yaml");
    std::fs::write(&config, yaml)?;
    let mut edge = Edge::start(None, &config)?;
    edge.wait_ready(None, admin, Duration::from_secs(30))?;
    Ok(edge)
}
