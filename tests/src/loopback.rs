//! Running edge on loopback, without a namespace: free ports and a started,
//! ready `edge run`.

use crate::{edge::Edge, wait};
use anyhow::Result;
use std::{
    net::{SocketAddr, TcpListener, TcpStream},
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
/// its admin endpoint at `admin` answers and every address in `listeners`
/// accepts connections (each service binds on its own thread, so the admin
/// endpoint answering says nothing about the listeners).
pub fn start_edge(
    dir: &Path,
    yaml: &str,
    admin: SocketAddr,
    listeners: &[SocketAddr],
) -> Result<Edge> {
    let config = dir.join("edge.yaml");
    std::fs::write(&config, yaml)?;
    let mut edge = Edge::start(None, &config)?;
    edge.wait_ready(None, admin, Duration::from_secs(30))?;
    for &l in listeners {
        wait::until(
            &format!("edge to listen on {l}"),
            Duration::from_secs(10),
            || {
                Ok(TcpStream::connect_timeout(&l, Duration::from_secs(1))
                    .ok()
                    .map(drop))
            },
        )?;
    }
    Ok(edge)
}
