//! The Redis server `store: redis` limits count in: started for the run on
//! loopback, without persistence, and asked over RESP how many commands
//! it has processed (so that a cell can tell that its requests were
//! really counted there).

use crate::bench_l7::{START_TIMEOUT, interrupted, poll, proc::Proc};
use anyhow::{Context, Result, bail};
use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::Path,
    time::Duration,
};

/// How long one question to Redis may take.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// Starts `redis-server` on 127.0.0.1:`port` pinned to `cpus`, its files
/// (none: no snapshots, no append-only file) and log in `dir`, and waits
/// until it answers PING. Stopped (SIGTERM) when dropped.
pub fn start(dir: &Path, port: u16, cpus: Option<&str>) -> Result<Proc> {
    let port_s = port.to_string();
    let dir_s = dir.to_str().context("temporary path is not UTF-8")?;
    let mut redis = Proc::spawn(
        "redis-server",
        cpus,
        Path::new("redis-server"),
        &[
            "--port",
            &port_s,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            dir_s,
        ],
        &dir.join("redis.log"),
        libc::SIGTERM,
    )?;
    poll("Redis to answer PING", START_TIMEOUT, || {
        interrupted()?;
        redis.check_running()?;
        Ok(call(port, "PING").ok().filter(|r| r == "PONG"))
    })?;
    Ok(redis)
}

/// Commands the server has processed since it started
/// (`total_commands_processed` of `INFO stats`).
pub fn commands_processed(port: u16) -> Result<u64> {
    let info = call(port, "INFO stats")?;
    info.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .context("no total_commands_processed in INFO stats")?
        .trim()
        .parse()
        .context("total_commands_processed")
}

/// Sends one inline command on a new connection and returns its reply (a
/// simple or bulk string).
fn call(port: u16, command: &str) -> Result<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    s.write_all(format!("{command}\r\n").as_bytes())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(reply) = reply(&buf)? {
            return Ok(reply);
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            bail!("Redis closed the connection before answering {command}");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The reply in `buf` once it is complete: a simple string (`+OK`) or a
/// bulk string (`$LEN` then the bytes); an error reply (`-ERR`) fails.
fn reply(buf: &[u8]) -> Result<Option<String>> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    if end == 0 {
        bail!("an empty line from Redis");
    }
    let line = String::from_utf8_lossy(&buf[1..end]).into_owned();
    match buf[0] {
        b'+' => Ok(Some(line)),
        b'-' => bail!("Redis: {line}"),
        b'$' => {
            let len: usize = line
                .parse()
                .with_context(|| format!("Redis bulk length {line:?}"))?;
            let start = end + 2;
            if buf.len() < start + len + 2 {
                return Ok(None);
            }
            Ok(Some(
                String::from_utf8_lossy(&buf[start..start + len]).into_owned(),
            ))
        }
        other => bail!("unexpected Redis reply type {:?}", char::from(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        assert_eq!(reply(b"+PONG\r\n").unwrap().as_deref(), Some("PONG"));
        assert_eq!(reply(b"+PON").unwrap(), None);
        assert_eq!(reply(b"$5\r\nhello\r\n").unwrap().as_deref(), Some("hello"));
        assert_eq!(reply(b"$5\r\nhel").unwrap(), None);
        assert!(reply(b"-ERR unknown\r\n").is_err());
        assert!(reply(b":1\r\n").is_err());
    }
}
