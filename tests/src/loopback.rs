//! edge on loopback, without namespaces: for L7 behaviour tests (cache,
//! compression) that need real sockets but no lab.
//!
//! Each test gets its own loopback address, `127.<pid>.<slot>` (the PID's
//! low 16 bits, top bit set), so tests
//! of one process and of concurrent processes never share a port; edge's
//! listener is on port 8080 and its admin endpoint on 9100 of that address.

use crate::{edge::Edge, http, wait};
use anyhow::Result;
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream},
    time::Duration,
};

/// How long edge may take to start.
const READY: Duration = Duration::from_secs(30);

/// A loopback address unique to this process and `slot` (1..=255).
pub fn address(slot: u8) -> IpAddr {
    let pid = std::process::id();
    // The high bit keeps clear of 127.0.0.0/16, where host services live.
    IpAddr::V4(Ipv4Addr::new(
        127,
        ((pid >> 8) as u8) | 0x80,
        pid as u8,
        slot,
    ))
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
    pub fn start(slot: u8, config: impl FnOnce(SocketAddr, SocketAddr) -> String) -> Result<Self> {
        let ip = address(slot);
        let listen = SocketAddr::new(ip, 8080);
        let admin = SocketAddr::new(ip, 9100);
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("edge.yaml");
        std::fs::write(&path, config(listen, admin))?;
        let mut edge = Edge::start(None, &path)?;
        edge.wait_ready(None, admin, READY)?;
        // Pingora starts the admin service before the listeners.
        wait::until("edge's listener to accept", READY, || {
            Ok(TcpStream::connect_timeout(&listen, Duration::from_secs(1))
                .ok()
                .map(drop))
        })
        .map_err(|e| e.context(format!("edge log:\n{}", edge.log_text())))?;
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
