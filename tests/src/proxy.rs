//! edge as an L7 proxy on loopback, for the HTTP behaviour tests: a config
//! written to a temporary directory, edge started on free ports and waited
//! for, plus Prometheus scraping.

use crate::{edge::Edge, http};
use anyhow::{Context, Result};
use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    time::Duration,
};

/// How long edge may take to come up.
const READY: Duration = Duration::from_secs(20);

/// A free TCP port on 127.0.0.1 (free when asked; the kernel does not hand
/// it out again at once).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
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
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let yaml = format!(
            "{}\nadmin:\n  address: {admin}\nserver:\n  threads: 2\n  grace_period_seconds: 0\n",
            config(listen, dir.path())
        );
        let file = dir.path().join("edge.yaml");
        std::fs::write(&file, yaml)?;
        let mut edge = Edge::start(None, &file)?;
        edge.wait_ready(None, admin, READY).with_context(|| {
            format!(
                "config:\n{}",
                std::fs::read_to_string(&file).unwrap_or_default()
            )
        })?;
        Ok(Self {
            edge,
            listen,
            admin,
            dir,
        })
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
