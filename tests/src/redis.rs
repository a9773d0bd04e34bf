//! A real `redis-server` on loopback (or in a lab's namespace) for the
//! tests that need one (the gateway's shared rate limits, the TCP
//! listener, limits shared by edge hosts): no persistence, its
//! files in a temporary directory, stopped by its PID when dropped.

use crate::{
    process::{Process, program},
    proxy::free_port,
    wait,
};
use anyhow::{Context, Result};
use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

/// How long the server may take to answer its first PING.
const START: Duration = Duration::from_secs(10);

/// Whether a Redis server answers PING on 127.0.0.1:`port`.
pub fn ping(port: u16) -> Result<bool> {
    ping_at(SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Whether a Redis server answers PING at `addr`.
pub fn ping_at(addr: SocketAddr) -> Result<bool> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(1)))?;
    s.write_all(b"*1\r\n$4\r\nPING\r\n")?;
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf)?;
    Ok(buf[..n].starts_with(b"+PONG"))
}

/// A running `redis-server`.
pub struct Redis {
    server: Process,
    /// Its port.
    pub port: u16,
    at: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Redis {
    /// Starts one on a free port and waits until it answers PING.
    pub fn start() -> Result<Self> {
        let port = free_port()?;
        Self::start_at(None, SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// Starts one in namespace `ns` (`None`: here) listening on `addr`,
    /// and waits until it answers PING there: the Redis several edge
    /// hosts of a network lab share.
    pub fn start_at(ns: Option<&str>, addr: SocketAddr) -> Result<Self> {
        let program = program("redis-server").context(
            "redis-server is not on PATH: this test needs a real Redis \
             (Debian package redis-server)",
        )?;
        let dir = tempfile::tempdir()?;
        let port = addr.port();
        // Redis serves only loopback clients without a password unless
        // told otherwise; a lab's Redis serves the hosts of its namespace
        // network, which nothing else reaches.
        let protected = if addr.ip().is_loopback() { "yes" } else { "no" };
        let args = [
            "--protected-mode".to_string(),
            protected.into(),
            "--port".to_string(),
            port.to_string(),
            "--bind".into(),
            addr.ip().to_string(),
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "no".into(),
            "--dir".into(),
            dir.path().display().to_string(),
        ];
        let mut server = Process::spawn(
            "redis-server",
            ns,
            &program,
            &args,
            &dir.path().join("redis.log"),
        )?;
        let ns = ns.map(str::to_string);
        wait::until("redis-server to answer PING", START, || {
            server.check_running()?;
            let pong = match &ns {
                Some(ns) => crate::netns::run_in(ns, move || ping_at(addr)),
                None => ping_at(addr),
            };
            Ok(pong.ok().filter(|pong| *pong).map(|_| ()))
        })?;
        Ok(Self {
            server,
            port,
            at: addr,
            _dir: dir,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.at
    }

    /// Stops it now (a test of what happens without it).
    pub fn stop(&mut self) -> Result<()> {
        self.server.stop()?;
        Ok(())
    }
}
