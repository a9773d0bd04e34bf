//! The scale rows of `cargo xtask bench l7`, on the proxies the HTTP rows
//! use (edge restarted with room for more connections):
//! - HTTP/2 downstream: h2load over prior-knowledge h2c, 50 connections,
//!   one stream in flight on each, so the row differs from the first HTTP
//!   row only in the protocol the client speaks;
//! - 100 and 1000 concurrent keep-alive connections (wrk), 13 B proxied;
//! - memory per idle keep-alive connection: xtask itself opens
//!   [`IDLE_CONNECTIONS`] connections to each proxy, sends one request on
//!   each and reads the answer, and compares the proxy's resident memory
//!   before and after.

use super::{
    Bench, CASES, Cpus, LOAD, Measured, RunCtx, SETTLE, SMALL, WARMUP,
    configs::{EdgeKind, SMALL_PATH},
    interrupted, measure, plain_url,
    proc::Proc,
    protocols::{self, H2Load},
    report::{COUNT, Cell, EDGE, IdleMemory, MemoryRow, PROXIES, Row, thousands},
    window, wrk,
};
use anyhow::{Context, Result, bail};
use std::{
    io::{ErrorKind, Read, Write},
    net::{Ipv4Addr, SocketAddrV4, TcpStream},
    os::fd::{FromRawFd, OwnedFd},
    path::Path,
    time::{Duration, Instant},
};

/// The HTTP/2 row's name.
const H2C_ROW: &str = "HTTP/2 (h2c, one stream per connection), 13 B";
/// Concurrent connections of the two connection-count rows.
const CONNECTION_COUNTS: [u32; 2] = [100, 1000];
/// Idle keep-alive connections the memory row opens to each proxy (fewer
/// if the open file limit does not allow them).
pub(super) const IDLE_CONNECTIONS: usize = 10_000;
/// Open files kept free besides the idle connections: xtask's own, and the
/// proxy's listeners, logs and upstream connections.
const FD_RESERVE: libc::rlim_t = 1000;
/// The open file limit the benchmark asks for: the idle connections on
/// both ends (xtask's and the proxy's), with room. Every process it starts
/// inherits it.
pub(super) const NOFILE: libc::rlim_t = 65_536;
/// Idle connections per source address (127.0.0.2, .3, ...): a quarter of
/// the kernel's usual ephemeral port range, so that each address has ports
/// to spare whatever the earlier rows left in TIME_WAIT.
pub(super) const PER_SOURCE: usize = 2500;
/// Longest time opening all idle connections may take (about a second is
/// usual); well below every proxy's 60 s keep-alive timeout.
const OPEN_DEADLINE: Duration = Duration::from_secs(40);
/// Connect, send and receive timeout of each idle connection's request.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Wait after the connections open (or close) before reading memory, so
/// the proxy has finished with them.
const MEMORY_SETTLE: Duration = Duration::from_secs(1);
/// Largest answer read on an idle connection.
const MAX_RESPONSE: usize = 64 * 1024;

/// Raises this process's soft limit on open files to [`NOFILE`] (and the
/// hard one, where the process may: CAP_SYS_RESOURCE), else as far as the
/// hard limit goes. Returns the soft limit now in force.
pub(super) fn raise_nofile() -> Result<libc::rlim_t> {
    let now = nofile_limits()?;
    if now.rlim_cur >= NOFILE {
        return Ok(now.rlim_cur);
    }
    let wanted = libc::rlimit {
        rlim_cur: NOFILE,
        rlim_max: now.rlim_max.max(NOFILE),
    };
    // SAFETY: setrlimit only reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } == 0 {
        return Ok(NOFILE);
    }
    let capped = libc::rlimit {
        rlim_cur: now.rlim_max,
        rlim_max: now.rlim_max,
    };
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &capped) } != 0 {
        return Err(std::io::Error::last_os_error()).context("setrlimit(RLIMIT_NOFILE)");
    }
    Ok(now.rlim_max)
}

/// The soft limit on open files (0 if it cannot be read).
pub(super) fn current_nofile() -> libc::rlim_t {
    nofile_limits().map_or(0, |l| l.rlim_cur)
}

fn nofile_limits() -> Result<libc::rlimit> {
    let mut now = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut now) } != 0 {
        return Err(std::io::Error::last_os_error()).context("getrlimit(RLIMIT_NOFILE)");
    }
    Ok(now)
}

/// The scale rows and the memory row, with edge started for them (its
/// configuration allows [`super::configs::PROXY_CONNECTIONS`]) and
/// stopped after. `nofile` is the open file limit in force.
pub(super) fn rows(bench: &mut Bench<'_>, nofile: libc::rlim_t) -> Result<(Vec<Row>, MemoryRow)> {
    let url = plain_url(bench.ports.edge.plain, SMALL_PATH);
    let mut preset: [Option<Cell>; COUNT] = Default::default();
    match bench.start_edge(EdgeKind::Scale, "scale rows", &url, SMALL)? {
        Ok(edge) => bench.proxies[EDGE] = Some(edge),
        Err(cell) => preset[EDGE] = Some(cell),
    }
    let measured = measure_rows(bench, &preset, nofile);
    if let Some(mut edge) = bench.proxies[EDGE].take() {
        edge.stop();
    }
    measured
}

fn measure_rows(
    bench: &mut Bench<'_>,
    preset: &[Option<Cell>; COUNT],
    nofile: libc::rlim_t,
) -> Result<(Vec<Row>, MemoryRow)> {
    // First, while no proxy has yet held more than the HTTP rows' 50
    // client connections at once: memory a proxy kept from a bigger peak
    // would absorb part of the growth.
    let memory = idle_memory(bench, preset, nofile)?;
    let ports = bench.ports;
    let mut rows = vec![bench.rounds(H2C_ROW, preset.clone(), |server, proxy, ctx| {
        measure_h2c(server, &plain_url(ports.proxy(proxy).h2c, SMALL_PATH), ctx)
    })?];
    // The first HTTP row's case (proxied, 13 B), with more connections.
    let small = &CASES[0];
    for connections in CONNECTION_COUNTS {
        let load = wrk::Load {
            connections,
            ..LOAD
        };
        let name = format!("proxied, 13 B response, {connections} connections");
        rows.push(bench.rounds(&name, preset.clone(), |server, proxy, ctx| {
            let url = plain_url(ports.proxy(proxy).plain, small.path);
            measure(server, small, &url, load, ctx)
        })?);
    }
    Ok((rows, memory))
}

/// One h2c run: a check request, a warm-up, then h2load for [`LOAD`]'s
/// time in a [`window`].
fn measure_h2c(server: &mut Proc, url: &str, ctx: &RunCtx<'_>) -> Result<Measured> {
    let run = H2Load {
        url,
        body: None,
        headers: &[],
    };
    let check = protocols::h2load(&run, ctx.cpus, ctx.dir, Some(1), Duration::ZERO)?;
    if check.requests != 1 || check.failed > 0 {
        bail!(
            "the check request got no 2xx answer over h2c: {:?}",
            check.errors
        );
    }
    protocols::h2load(&run, ctx.cpus, ctx.dir, None, WARMUP)?;
    server.check_running()?;
    window(server, ctx, || {
        protocols::h2load(&run, ctx.cpus, ctx.dir, None, LOAD.duration)
    })
}

/// The memory row: each running proxy in turn holds the idle connections.
fn idle_memory(
    bench: &mut Bench<'_>,
    preset: &[Option<Cell>; COUNT],
    nofile: libc::rlim_t,
) -> Result<MemoryRow> {
    let budget = usize::try_from(nofile.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX);
    let connections = IDLE_CONNECTIONS.min(budget);
    let case = format!(
        "{} idle keep-alive connections, resident memory per connection",
        thousands(connections as f64)
    );
    let mut cells = Vec::with_capacity(COUNT);
    for (proxy, preset) in preset.iter().enumerate() {
        interrupted()?;
        let who = PROXIES[proxy];
        if let Some(cell) = preset {
            cells.push(Err(match cell {
                Cell::NotApplicable(why) => format!("n/a: {why}"),
                Cell::Failed(why) => why.clone(),
                Cell::Done(_) => "not measured".to_string(),
            }));
            continue;
        }
        if connections == 0 {
            cells.push(Err(format!(
                "the open file limit ({nofile}) leaves no room for idle connections"
            )));
            continue;
        }
        let Some(server) = bench.proxies[proxy].as_mut() else {
            let why = bench.not_running[proxy]
                .clone()
                .unwrap_or_else(|| format!("{who} is not running"));
            cells.push(Err(why));
            continue;
        };
        println!("xtask: {who}, {case}");
        let port = bench.ports.proxy(proxy).plain;
        match hold_idle(server, port, connections, bench.cpus, bench.dir) {
            Ok(m) => {
                println!(
                    "xtask:   {:.1} KiB per connection (resident {} → {} KiB)",
                    m.kib_per_connection(),
                    m.before_kib,
                    m.after_kib
                );
                cells.push(Ok(m));
            }
            Err(e) => {
                interrupted()?;
                println!("xtask:   {who} failed: {e:#}");
                cells.push(Err(format!("{e:#}")));
            }
        }
        bench.origin.check_running()?;
    }
    Ok(MemoryRow {
        case,
        cells: cells
            .try_into()
            .map_err(|_| anyhow::anyhow!("one memory cell per proxy"))?,
    })
}

/// Warms `server` up as the measured rows do, reads its resident memory,
/// opens `connections` idle keep-alive connections to its plain `port`,
/// reads it again, checks that the proxy kept every connection, and
/// closes them.
fn hold_idle(
    server: &mut Proc,
    port: u16,
    connections: usize,
    cpus: &Cpus,
    dir: &Path,
) -> Result<IdleMemory> {
    let url = plain_url(port, SMALL_PATH);
    let log = dir.join("wrk.log");
    wrk::run_with_headers(&url, &[], cpus.wrk.as_deref(), LOAD.for_time(WARMUP), &log)?;
    // wrk's connections close as it exits; let the proxy finish with them.
    std::thread::sleep(SETTLE);
    server.check_running()?;
    let before_kib = server.rss_kib()?;
    let open = open_idle(port, connections)?;
    std::thread::sleep(MEMORY_SETTLE);
    let after_kib = server.rss_kib()?;
    let closed = closed_by_peer(&open)?;
    drop(open);
    // The proxy closes its ends before the next proxy is measured.
    std::thread::sleep(MEMORY_SETTLE);
    server.check_running()?;
    if closed > 0 {
        bail!("the proxy closed {closed} of the {connections} connections before the reading");
    }
    Ok(IdleMemory {
        connections,
        before_kib,
        after_kib,
    })
}

/// Opens `n` connections to 127.0.0.1:`port`, one after the other, each
/// from 127.0.0.2 onwards ([`PER_SOURCE`] per address), sends `GET /small`
/// on each and reads the whole answer, leaving each an idle keep-alive
/// connection.
fn open_idle(port: u16, n: usize) -> Result<Vec<TcpStream>> {
    let deadline = Instant::now() + OPEN_DEADLINE;
    let target = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let request = format!("GET {SMALL_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    let mut open = Vec::with_capacity(n);
    for i in 0..n {
        if i % 1000 == 0 {
            interrupted()?;
        }
        if Instant::now() >= deadline {
            bail!("opened only {i} of {n} connections in {OPEN_DEADLINE:?}");
        }
        let source = source_address(i)?;
        let mut stream = connect_from(source, target)
            .with_context(|| format!("connection {} of {n}, from {source}", i + 1))?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream
            .write_all(request.as_bytes())
            .and_then(|()| read_response(&mut stream))
            .with_context(|| format!("request on connection {} of {n}", i + 1))?;
        open.push(stream);
    }
    Ok(open)
}

/// The source address of idle connection `i`.
fn source_address(i: usize) -> Result<Ipv4Addr> {
    let host = u8::try_from(2 + i / PER_SOURCE)
        .context("more idle connections than 127.0.0.2 to 127.0.0.255 hold")?;
    Ok(Ipv4Addr::new(127, 0, 0, host))
}

/// A blocking TCP connection from `source` (any port) to `target`, the
/// connect bounded by [`IO_TIMEOUT`]. The standard library cannot bind
/// before connecting.
fn connect_from(source: Ipv4Addr, target: SocketAddrV4) -> std::io::Result<TcpStream> {
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns; it is
    // closed when `socket` drops, whatever happens below.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let timeout = libc::timeval {
        tv_sec: IO_TIMEOUT.as_secs() as libc::time_t,
        tv_usec: 0,
    };
    // SAFETY: the option value is a timeval of the size given, as
    // SO_SNDTIMEO expects; a blocking connect(2) honours it.
    check(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            (&raw const timeout).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    })?;
    let local = sockaddr(SocketAddrV4::new(source, 0));
    // SAFETY: `local` is a sockaddr_in of the size given.
    check(unsafe {
        libc::bind(
            fd,
            (&raw const local).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    })?;
    let remote = sockaddr(target);
    // SAFETY: as above.
    check(unsafe {
        libc::connect(
            fd,
            (&raw const remote).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    })?;
    Ok(TcpStream::from(socket))
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// A libc return value as a result.
fn check(ret: libc::c_int) -> std::io::Result<()> {
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Reads one answer to `GET /small`: 200, a `Content-Length` of the small
/// body, and exactly that many body bytes, nothing after.
fn read_response(stream: &mut impl Read) -> std::io::Result<()> {
    let mut got = Vec::with_capacity(512);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(done) = response_end(&got)? {
            if got.len() > done {
                return Err(invalid("bytes after the answer"));
            }
            if got.len() == done {
                return Ok(());
            }
        }
        if got.len() > MAX_RESPONSE {
            return Err(invalid("an answer larger than expected"));
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(invalid("the connection closed before the answer ended"));
        }
        got.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

/// Where the answer that `got` begins ends, once its head is complete;
/// fails on anything but a 200 with the small body's length.
fn response_end(got: &[u8]) -> std::io::Result<Option<usize>> {
    let Some(head_len) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(got.get(..head_len).unwrap_or_default());
    let status = head.lines().next().unwrap_or_default();
    if !status.starts_with("HTTP/1.1 200") {
        return Err(invalid(&format!("expected 200, got {status:?}")));
    }
    let length = head
        .lines()
        .skip(1)
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            if name.trim().eq_ignore_ascii_case("content-length") {
                value.trim().parse::<u64>().ok()
            } else {
                None
            }
        })
        .ok_or_else(|| invalid("no Content-Length"))?;
    if length != SMALL {
        return Err(invalid(&format!("a body of {length} bytes, not {SMALL}")));
    }
    Ok(Some(head_len + 4 + SMALL as usize))
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(ErrorKind::InvalidData, what.to_string())
}

/// How many of `open` the peer has closed (or sent unasked bytes on):
/// without a byte waiting, a non-blocking peek fails with WouldBlock.
fn closed_by_peer(open: &[TcpStream]) -> Result<usize> {
    let mut closed = 0;
    let mut byte = [0u8; 1];
    for stream in open {
        stream.set_nonblocking(true)?;
        match stream.peek(&mut byte) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            _ => closed += 1,
        }
    }
    Ok(closed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_whole_answer() {
        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nServer: x\r\n\r\nhello, world\n";
        assert!(read_response(&mut &answer[..]).is_ok());
        // In two pieces: the head alone is not the end.
        assert_eq!(response_end(&answer[..40]).unwrap(), None);
        assert_eq!(response_end(answer).unwrap(), Some(answer.len()));
        let mut longer = answer.to_vec();
        longer.extend_from_slice(b"HTTP");
        assert!(read_response(&mut &longer[..]).is_err());
        let cut = &answer[..answer.len() - 1];
        assert!(read_response(&mut &cut[..]).is_err());
        let refused =
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 13\r\n\r\nhello, world\n";
        assert!(read_response(&mut &refused[..]).is_err());
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nd\r\n";
        assert!(read_response(&mut &chunked[..]).is_err());
    }

    #[test]
    fn sources_spread_over_loopback_addresses() {
        assert_eq!(source_address(0).unwrap(), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(
            source_address(PER_SOURCE).unwrap(),
            Ipv4Addr::new(127, 0, 0, 3)
        );
        assert!(source_address(254 * PER_SOURCE).is_err());
    }
}
