//! edge as an L7 proxy on loopback, for the HTTP behaviour tests: a config
//! written to a temporary directory, edge started on free ports and waited
//! for, plus Prometheus scraping.

use crate::{edge::Edge, http, loopback};
use anyhow::{Context, Result};
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

/// A free TCP port on 127.0.0.1 (free when asked: someone else may take
/// it before it is used, so prefer [`unique_loopback`] for listeners).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A loopback address that no other proxy of this process uses, derived
/// from the PID and a counter. Listeners bound there on fixed ports cannot
/// collide with ports the kernel hands out for `127.0.0.1:0`, as a "free"
/// port found by binding and closing can.
pub fn unique_loopback() -> IpAddr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    IpAddr::V4(Ipv4Addr::new(
        127,
        100 + (pid % 150) as u8,
        ((pid / 150) % 256) as u8,
        1 + (n % 250) as u8,
    ))
}

/// A loopback address where connections are refused: the port is bound
/// (so nobody else gets it while the socket lives) but never listens.
pub fn refusing_port() -> Result<(socket2::Socket, SocketAddr)> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    let addr = socket
        .local_addr()?
        .as_socket()
        .context("a bound IPv4 socket has an address")?;
    Ok((socket, addr))
}

/// A running edge on loopback.
pub struct Proxy {
    /// The proxy; stopped when dropped.
    pub edge: Edge,
    /// The first listener's address.
    pub listen: SocketAddr,
    /// The admin endpoint.
    pub admin: SocketAddr,
    dir: tempfile::TempDir,
}

impl Proxy {
    /// Starts edge with the YAML `config(listen, admin)` returns; the admin
    /// section is added. Files the config names may go in [`Proxy::dir`]
    /// through `prepare`, which runs before edge starts.
    pub fn start_with(
        prepare: impl FnOnce(&Path) -> Result<()>,
        config: impl FnOnce(SocketAddr, &Path) -> String,
    ) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        prepare(dir.path())?;
        let at = loopback::endpoints(1);
        let (listen, admin) = (at.listeners[0], at.admin);
        let yaml = format!(
            "{}\nadmin:\n  address: {admin}\nserver:\n  threads: 2\n  grace_period_seconds: 0\n",
            config(listen, dir.path())
        );
        let edge = loopback::start_edge(dir.path(), &yaml, &at)
            .with_context(|| format!("config:\n{yaml}"))?;
        Ok(Self {
            edge,
            listen,
            admin,
            dir,
        })
    }

    /// Starts edge with `yaml`, its `@NAME@` placeholders filled in:
    /// `@LISTEN@` with the listener's address, the others from `vars`.
    pub fn start_template(yaml: &str, vars: &[(&str, String)]) -> Result<Self> {
        let mut yaml = yaml.to_string();
        for (k, v) in vars {
            yaml = yaml.replace(&format!("@{k}@"), v);
        }
        Self::start_with(
            |_| Ok(()),
            move |listen, _| yaml.replace("@LISTEN@", &listen.to_string()),
        )
    }

    /// Like [`Proxy::start_with`] with nothing to prepare.
    pub fn start(config: impl FnOnce(SocketAddr) -> String) -> Result<Self> {
        Self::start_with(|_| Ok(()), |listen, _| config(listen))
    }

    /// The temporary directory holding the config.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// The Prometheus text.
    pub fn metrics(&self) -> Result<String> {
        Ok(http::get(self.admin, "/metrics")?.text())
    }

    /// The value of the first sample whose line starts with `prefix`.
    pub fn sample(&self, prefix: &str) -> Result<Option<f64>> {
        Ok(sample(&self.metrics()?, prefix))
    }
}

/// The value of the first Prometheus sample line starting with `prefix`.
pub fn sample(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // The test harness shows this only when the test fails.
        let status = self.edge.exit_status();
        eprintln!(
            "--- edge log ({}, exit status {status:?}) ---\n{}",
            self.listen,
            self.edge.log_text()
        );
    }
}
