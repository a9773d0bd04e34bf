//! A real `redis-server` on loopback for the tests that need one (the
//! gateway's shared rate limits, the TCP listener): no persistence, its
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
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
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
    /// Its port on 127.0.0.1.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    /// Starts one on a free port and waits until it answers PING.
    pub fn start() -> Result<Self> {
        let program = program("redis-server").context(
            "redis-server is not on PATH: this test needs a real Redis \
             (Debian package redis-server)",
        )?;
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let args = [
            "--port".to_string(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "no".into(),
            "--dir".into(),
            dir.path().display().to_string(),
        ];
        let mut server = Process::spawn(
            "redis-server",
            None,
            &program,
            &args,
            &dir.path().join("redis.log"),
        )?;
        wait::until("redis-server to answer PING", START, || {
            server.check_running()?;
            Ok(ping(port).ok().filter(|pong| *pong).map(|_| ()))
        })?;
        Ok(Self {
            server,
            port,
            _dir: dir,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Stops it now (a test of what happens without it).
    pub fn stop(&mut self) -> Result<()> {
        self.server.stop()?;
        Ok(())
    }
}
