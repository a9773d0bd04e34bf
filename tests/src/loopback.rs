//! Running edge on loopback, without a namespace: addresses no one else
//! uses, and a started edge whose endpoints all accept.

use crate::{edge::Edge, http, proxy::unique_loopback, wait};
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

/// A running edge with its configuration directory; stops when dropped.
pub struct LoopbackEdge {
    /// Where the listener is.
    pub listen: SocketAddr,
    /// Where the admin endpoint is.
    pub admin: SocketAddr,
    edge: Edge,
    _dir: tempfile::TempDir,
}

impl LoopbackEdge {
    /// Starts edge with the YAML `config` builds from (listener address,
    /// admin address), and waits until it answers.
    pub fn start(config: impl FnOnce(SocketAddr, SocketAddr) -> String) -> Result<Self> {
        let at = endpoints(1);
        let (listen, admin) = (at.listeners[0], at.admin);
        let dir = tempfile::tempdir()?;
        let edge = start_edge(dir.path(), &config(listen, admin), &at)?;
        Ok(Self {
            listen,
            admin,
            edge,
            _dir: dir,
        })
    }

    /// Sends a request to the listener.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<http::Message> {
        http::request(self.listen, method, path, headers)
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Result<http::Message> {
        self.request("GET", path, &[])
    }

    /// The Prometheus text of the admin endpoint.
    pub fn metrics(&self) -> Result<String> {
        Ok(http::get(self.admin, "/metrics")?.text())
    }

    /// The value of the first sample whose line starts with `prefix`.
    pub fn sample(&self, prefix: &str) -> Result<Option<f64>> {
        Ok(self
            .metrics()?
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok()))
    }

    /// Waits until `probe` holds, failing with edge's log if it never does.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        probe: impl FnMut() -> Result<Option<T>>,
    ) -> Result<T> {
        wait::until(what, timeout, probe)
            .map_err(|e| e.context(format!("edge log:\n{}", self.edge.log_text())))
    }

    /// What edge logged so far.
    pub fn log(&self) -> String {
        self.edge.log_text()
    }
}
