//! HTTP/1 conformance and request smuggling through edge, raw on both
//! sides: a client that writes exact bytes, and a raw TCP backend (written
//! here, not [`edge_tests::backend`], which parses) that records exactly
//! the bytes edge sends it. Each case is a row of a table: the bytes in,
//! what the client must get, and what the backend must receive, byte for
//! byte once the fields edge adds (`x-forwarded-*`, `via`, `cdn-loop`)
//! are masked.
//!
//! Rows marked `known_bad` are where edge is wrong today (unsafe, or
//! against RFC 9112): the row holds the correct expectation, and the test
//! prints the row (on stderr, past the harness's capture) instead of
//! failing. Once edge is fixed the row passes, and the test fails asking
//! for its mark to be dropped. Every row's outcome is printed with
//! `-- --nocapture`.
//!
//! The rows run one after another on one edge; between rows the backend
//! closes every connection, so what one row leaves in a connection can
//! never be read as part of the next.

use anyhow::{Context, Result};
use edge_tests::{http, proxy::Proxy, wait};
use std::{
    io::{BufReader, ErrorKind, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

// ---------------------------------------------------------------------------
// The raw backend.

/// What the backend answers to every complete request.
const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// How long the backend waits for the rest of a message once it started.
const MESSAGE_DEADLINE: Duration = Duration::from_secs(2);

/// One thing the backend received on a connection.
#[derive(Clone, Debug, PartialEq)]
struct Received {
    /// The bytes, exactly as they came.
    bytes: Vec<u8>,
    /// Whether they were a whole request by the framing its head declares
    /// (and so were answered); otherwise they are what was left when the
    /// connection ended or the deadline passed.
    complete: bool,
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    /// Clones of the open connections, to shut them down on `reset`.
    conns: Mutex<Vec<TcpStream>>,
    handlers: Mutex<Vec<JoinHandle<()>>>,
}

/// A TCP server on 127.0.0.1:0 that reads each request by its declared
/// framing, records the bytes and answers [`ANSWER`].
struct RawBackend {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl RawBackend {
    fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((s, _)) => {
                            let _ = s.set_nonblocking(false);
                            if let Ok(clone) = s.try_clone() {
                                shared.conns.lock().unwrap().push(clone);
                            }
                            let sh = shared.clone();
                            let h = std::thread::spawn(move || serve(s, &sh));
                            shared.handlers.lock().unwrap().push(h);
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Ok(Self {
            addr,
            shared,
            stop,
            accept: Some(accept),
        })
    }

    /// Closes every open connection (recording what each had left), waits
    /// for their threads and returns everything received since the last
    /// reset. Each row starts on fresh connections, so what one row left
    /// in a connection can never be read as part of the next.
    fn reset(&self) -> Vec<Received> {
        for c in self.shared.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        let handlers: Vec<_> = self.shared.handlers.lock().unwrap().drain(..).collect();
        for h in handlers {
            let _ = h.join();
        }
        std::mem::take(&mut *self.shared.received.lock().unwrap())
    }
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
        self.reset();
    }
}

/// Serves one connection: request after request until it ends.
fn serve(mut s: TcpStream, shared: &Shared) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = Vec::new();
    while let Some(end) = read_request(&mut s, &mut buf) {
        let bytes: Vec<u8> = buf.drain(..end).collect();
        shared.received.lock().unwrap().push(Received {
            bytes,
            complete: true,
        });
        if s.write_all(ANSWER).is_err() {
            break;
        }
    }
    if !buf.is_empty() {
        shared.received.lock().unwrap().push(Received {
            bytes: buf,
            complete: false,
        });
    }
}

/// Reads more into `buf`. `Ok(false)` at the end of the connection;
/// `Err` when `deadline` passed (or with no deadline, never: an idle
/// connection waits until it is shut down).
fn fill(s: &mut TcpStream, buf: &mut Vec<u8>, deadline: Option<Instant>) -> Result<bool, ()> {
    let mut chunk = [0u8; 8192];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return Ok(false),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(true);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(());
                }
            }
            Err(_) => return Ok(false),
        }
    }
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// The framing a request head declares, read the way a strict origin
/// would: a Transfer-Encoding ending in `chunked` wins, else the first
/// Content-Length, else no body.
enum Framing {
    None,
    Length(usize),
    Chunked,
}

fn framing(head: &[u8]) -> Framing {
    let text = String::from_utf8_lossy(head);
    let mut length = None;
    for line in text.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        if name == "transfer-encoding"
            && value
                .rsplit(',')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("chunked"))
        {
            return Framing::Chunked;
        }
        if name == "content-length" && length.is_none() {
            length = value.parse().ok();
        }
    }
    length.map_or(Framing::None, Framing::Length)
}

/// Reads one whole request into the front of `buf` and returns its length,
/// or `None` if the connection ended (or the deadline passed) first.
fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    let mut deadline = (!buf.is_empty()).then(|| Instant::now() + MESSAGE_DEADLINE);
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n", 0) {
            break i + 4;
        }
        if !fill(s, buf, deadline).ok()? {
            return None;
        }
        deadline.get_or_insert_with(|| Instant::now() + MESSAGE_DEADLINE);
    };
    let mut more = |buf: &mut Vec<u8>| fill(s, buf, deadline).ok().filter(|&b| b);
    match framing(&buf[..head_end]) {
        Framing::None => Some(head_end),
        Framing::Length(n) => {
            while buf.len() < head_end + n {
                more(buf)?;
            }
            Some(head_end + n)
        }
        Framing::Chunked => {
            let mut at = head_end;
            loop {
                let line_end = loop {
                    if let Some(i) = find(buf, b"\r\n", at) {
                        break i;
                    }
                    more(buf)?;
                };
                let line = String::from_utf8_lossy(&buf[at..line_end]).into_owned();
                let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
                at = line_end + 2;
                if size == 0 {
                    // Trailer fields, then the empty line.
                    loop {
                        let end = loop {
                            if let Some(i) = find(buf, b"\r\n", at) {
                                break i;
                            }
                            more(buf)?;
                        };
                        let empty = end == at;
                        at = end + 2;
                        if empty {
                            return Some(at);
                        }
                    }
                }
                while buf.len() < at + size + 2 {
                    more(buf)?;
                }
                if &buf[at + size..at + size + 2] != b"\r\n" {
                    return None;
                }
                at += size + 2;
            }
        }
    }
}

/// Fields edge adds to every request; their values depend on the run (the
/// request id and trace context are tested in `l7_tracing.rs`).
const ADDED: [&str; 7] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "via",
    "cdn-loop",
    "x-request-id",
    "traceparent",
];

/// `bytes` without the header lines edge adds (the head only; the body is
/// left as it is).
fn mask(bytes: &[u8]) -> Vec<u8> {
    let Some(head_end) = find(bytes, b"\r\n\r\n", 0) else {
        return bytes.to_vec();
    };
    let mut out = Vec::with_capacity(bytes.len());
    let head = &bytes[..head_end + 2];
    let mut at = 0;
    while at < head.len() {
        let end = find(head, b"\r\n", at).map_or(head.len(), |i| i + 2);
        let line = &head[at..end];
        let name = line
            .iter()
            .position(|&b| b == b':')
            .map(|i| String::from_utf8_lossy(&line[..i]).to_ascii_lowercase());
        if !name.is_some_and(|n| ADDED.contains(&n.as_str())) {
            out.extend_from_slice(line);
        }
        at = end;
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&bytes[head_end + 4..]);
    out
}

// ---------------------------------------------------------------------------
// The client.

/// What the client saw.
#[derive(Debug)]
struct Seen {
    /// Status of every response read, in order.
    statuses: Vec<u16>,
    /// Whether edge closed the connection (rather than the client giving up
    /// waiting).
    closed: bool,
    raw: Vec<u8>,
}

/// How long the client waits for a kept-alive connection to say more after
/// a whole response.
const CLIENT_IDLE: Duration = Duration::from_millis(300);
/// How long the client waits at most.
const CLIENT_DEADLINE: Duration = Duration::from_secs(4);

/// Every response parsed from `raw` (whole ones only).
fn parse_responses(raw: &[u8]) -> Vec<u16> {
    let mut reader = BufReader::new(raw);
    let mut out = Vec::new();
    while let Ok(Some(m)) = http::read_message(&mut reader) {
        out.push(m.status().unwrap_or(0));
    }
    out
}

fn send(addr: SocketAddr, input: &[u8]) -> Result<Seen> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_millis(50)))?;
    s.write_all(input)?;
    let started = Instant::now();
    let mut last = Instant::now();
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    let closed = loop {
        match s.read(&mut chunk) {
            Ok(0) => break true,
            Ok(n) => {
                raw.extend_from_slice(&chunk[..n]);
                last = Instant::now();
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                let answered = !parse_responses(&raw).is_empty();
                if started.elapsed() > CLIENT_DEADLINE || (answered && last.elapsed() > CLIENT_IDLE)
                {
                    break false;
                }
            }
            // A reset is edge closing too.
            Err(_) => break true,
        }
    };
    Ok(Seen {
        statuses: parse_responses(&raw),
        closed,
        raw,
    })
}

// ---------------------------------------------------------------------------
// The table.

/// What the client must get.
#[derive(Clone, Copy, Debug)]
enum Client {
    /// Exactly one response, with this status.
    Status(u16),
    /// Exactly one response with this status, then edge closes the
    /// connection (for rows that ask to keep it alive).
    StatusThenClose(u16),
}

/// What the backend must receive.
#[derive(Clone, Copy, Debug)]
enum Upstream {
    /// Not one byte.
    Nothing,
    /// Exactly one whole request, these bytes once masked.
    Exactly(&'static [u8]),
    /// Nothing, or these bytes (a head) and then the connection cut: edge
    /// may have sent the head before it read the bad body, but never a
    /// byte of body past the fault nor a whole request.
    AtMostHead(&'static [u8]),
}

struct Case {
    name: &'static str,
    input: &'static [u8],
    client: Client,
    upstream: Upstream,
    /// Edge gets this row wrong today; the expectation is the correct one.
    known_bad: bool,
}

const fn ok(name: &'static str, input: &'static [u8], upstream: &'static [u8]) -> Case {
    Case {
        name,
        input,
        client: Client::Status(200),
        upstream: Upstream::Exactly(upstream),
        known_bad: false,
    }
}

const fn refused(name: &'static str, input: &'static [u8], status: u16) -> Case {
    Case {
        name,
        input,
        client: Client::Status(status),
        upstream: Upstream::Nothing,
        known_bad: false,
    }
}

impl Case {
    const fn known_bad(mut self) -> Self {
        self.known_bad = true;
        self
    }

    const fn client(mut self, client: Client) -> Self {
        self.client = client;
        self
    }

    const fn upstream(mut self, upstream: Upstream) -> Self {
        self.upstream = upstream;
        self
    }
}

/// Runs every row on `edge` in front of `backend`; returns the failures
/// (rows not marked `known_bad` whose outcome differs) and prints a line
/// per row.
fn run(edge: SocketAddr, backend: &RawBackend, cases: &[Case]) -> Result<Vec<String>> {
    let mut failures = Vec::new();
    for case in cases {
        let started = Instant::now();
        let seen = send(edge, case.input).with_context(|| case.name)?;
        // Anything edge still sends lands before the connections close.
        std::thread::sleep(Duration::from_millis(50));
        let received = backend.reset();
        // Let edge see its pooled upstream connections closed before the
        // next row, so no row's request goes out on a dead one.
        std::thread::sleep(Duration::from_millis(30));
        let client_ok = match case.client {
            Client::Status(s) => seen.statuses == [s],
            Client::StatusThenClose(s) => seen.statuses == [s] && seen.closed,
        };
        let upstream_ok = match case.upstream {
            Upstream::Nothing => received.is_empty(),
            Upstream::Exactly(want) => {
                received.len() == 1 && received[0].complete && mask(&received[0].bytes) == want
            }
            Upstream::AtMostHead(head) => {
                received.is_empty()
                    || (received.len() == 1
                        && !received[0].complete
                        && mask(&received[0].bytes) == head)
            }
        };
        let pass = client_ok && upstream_ok;
        let verdict = match (pass, case.known_bad) {
            (true, false) => "ok",
            (false, false) => "FAIL",
            (false, true) => "known_bad",
            (true, true) => "FIXED (drop known_bad)",
        };
        let got_upstream: Vec<String> = received
            .iter()
            .map(|r| {
                format!(
                    "{}{:?}",
                    if r.complete { "" } else { "(incomplete) " },
                    String::from_utf8_lossy(&mask(&r.bytes))
                )
            })
            .collect();
        let line = format!(
            "[{verdict}] {} ({:?})\n    input:    {:?}\n    expected: client {:?}, backend {}\n    client:   statuses {:?}, closed {}, raw {:?}\n    backend:  {}",
            case.name,
            started.elapsed(),
            String::from_utf8_lossy(case.input),
            case.client,
            match case.upstream {
                Upstream::Nothing => "nothing".to_string(),
                Upstream::Exactly(b) => format!("{:?}", String::from_utf8_lossy(b)),
                Upstream::AtMostHead(b) =>
                    format!("nothing or (incomplete) {:?}", String::from_utf8_lossy(b)),
            },
            seen.statuses,
            seen.closed,
            String::from_utf8_lossy(&seen.raw[..seen.raw.len().min(200)]),
            if got_upstream.is_empty() {
                "nothing".to_string()
            } else {
                got_upstream.join(" + ")
            },
        );
        eprintln!("{line}");
        if case.known_bad && !pass {
            // Straight to the process's stderr, past the test harness's
            // capture, so a passing run still shows what is known bad.
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        }
        match (pass, case.known_bad) {
            (false, false) => failures.push(line),
            (true, true) => failures.push(format!(
                "{line}\n    this row passes now: drop its known_bad mark"
            )),
            _ => {}
        }
    }
    Ok(failures)
}

fn edge_in_front_of(backend: &RawBackend) -> Result<Proxy> {
    let addr = backend.addr;
    Proxy::start(|listen| {
        format!(
            "listeners:\n  - name: web\n    address: {listen}\n    pool: app\n\
             \x20   routes:\n      - name: admin\n        match: {{ path: {{ prefix: /admin }} }}\n\
             \x20       respond: {{ status: 403, body: no }}\n\
             pools:\n  - name: app\n    backends: [{{address: '{addr}'}}]\n"
        )
    })
}

fn check(cases: &[Case]) -> Result<()> {
    let backend = RawBackend::start()?;
    let edge = edge_in_front_of(&backend)?;
    // The backend answers through edge before any row runs.
    wait::until("edge to reach the backend", Duration::from_secs(10), || {
        let seen = send(
            edge.listen,
            b"GET /ready HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )?;
        Ok((seen.statuses == [200]).then_some(()))
    })?;
    std::thread::sleep(Duration::from_millis(50));
    backend.reset();
    std::thread::sleep(Duration::from_millis(30));
    let failures = run(edge.listen, &backend, cases)?;
    assert!(
        failures.is_empty(),
        "{} row(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Rows.

// In every row edge drops `Connection` (hop-by-hop, RFC 9110 §7.6.1), so
// the backend's bytes never hold the client's `Connection: close`, and
// Pingora writes `Transfer-Encoding: chunked` itself when it re-chunks a
// body. Where a row's outcome is a choice the RFCs leave open, its comment
// says so.

#[test]
fn content_length_and_transfer_encoding() -> Result<()> {
    check(&[
        ok(
            "baseline: Content-Length",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        ),
        ok(
            "baseline: chunked",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
        // Pingora's choice (RFC 9112 §6.1 allows it): Transfer-Encoding
        // wins, Content-Length is dropped, and the connection is closed
        // after the response.
        ok(
            "CL + TE: TE wins, CL dropped, connection closed",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        )
        .client(Client::StatusThenClose(200)),
        ok(
            "Content-Length: 5, 5 forwarded as one 5",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\nConnection: close\r\n\r\nhello",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        ),
        ok(
            "two Content-Length: 5 lines forwarded as one",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        ),
        refused(
            "Content-Length: 5 + Content-Length: 6",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello!",
            400,
        ),
        refused(
            "Content-Length: 5, 6",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\nConnection: close\r\n\r\nhello!",
            400,
        ),
        refused(
            "Content-Length: +5",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\nConnection: close\r\n\r\nhello",
            400,
        ),
        refused(
            "Content-Length: -1",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\nConnection: close\r\n\r\nhello",
            400,
        ),
        refused(
            "Content-Length: 0x5",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\nConnection: close\r\n\r\nhello",
            400,
        ),
        refused(
            "Content-Length: 1 0 (space inside)",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 0\r\nConnection: close\r\n\r\nhelloworld",
            400,
        ),
        // 1*DIGIT allows leading zeros; forwarded as they came.
        ok(
            "Content-Length: 005",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 005\r\nConnection: close\r\n\r\nhello",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 005\r\n\r\nhello",
        ),
        refused(
            "Content-Length : 5 (space before colon)",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\nConnection: close\r\n\r\nhello",
            400,
        ),
        refused(
            "Content-Length: empty",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\nConnection: close\r\n\r\n",
            400,
        ),
        refused(
            "Content-Length: 99999999999999999999 (overflows)",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\nConnection: close\r\n\r\nhello",
            400,
        ),
        // Trailing OWS is not part of the value (RFC 9112 §5).
        ok(
            "Content-Length: 5 with trailing space",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 \r\nConnection: close\r\n\r\nhello",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        ),
        refused(
            "HTTP/1.0 with Transfer-Encoding (RFC 9112 §6.1)",
            b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            400,
        ),
    ])
}

#[test]
fn obfuscated_transfer_encoding() -> Result<()> {
    check(&[
        // edge dechunks and would drop the gzip coding: 501 (RFC 9112 §6.1).
        refused(
            "TE: gzip, chunked",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            501,
        ),
        // chunked not last: 400 (RFC 9112 §6.3, a MUST).
        refused(
            "TE: chunked, identity",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            400,
        ),
        // OWS around the value is not part of it.
        ok(
            "TE: <tab><space>chunked",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \t chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
        ok(
            "TE:<tab>chunked",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
        ok(
            "TE: CHUNKED (case-insensitive; Pingora writes its own TE)",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
        // A field line led by whitespace is obs-fold (RFC 9112 §5.2).
        refused(
            "Transfer-Encoding line led by a tab (obs-fold)",
            b"POST / HTTP/1.1\r\nHost: a\r\n\tTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            400,
        ),
        // Pingora's check (RFC 9112 §6.3): a last coding other than
        // chunked is 400, before edge's 501 for codings it cannot apply.
        refused(
            "TE: xchunked",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            400,
        ),
        // Chunked twice is not allowed (RFC 9112 §6.1); edge's 501 for
        // anything but a lone chunked covers it. 400 would do as well: a
        // defensible choice, asserted as it is.
        refused(
            "TE: chunked + TE: chunked (two lines)",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            501,
        ),
        refused(
            "TE: gzip + TE: chunked (two lines)",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            501,
        ),
        refused(
            "TE: chunked + TE: identity (two lines)",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            400,
        ),
        refused(
            "Transfer-Encoding : chunked (space before colon, RFC 9112 §5.1)",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            400,
        ),
        refused(
            "TE: empty",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            400,
        ),
        refused(
            "TE: chunked, (empty last coding)",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            400,
        ),
    ])
}

#[test]
fn bad_chunks() -> Result<()> {
    const HEAD: &[u8] = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    let bad = |name, input| refused(name, input, 400).upstream(Upstream::AtMostHead(HEAD));
    check(&[
        bad(
            "chunk size not hex",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        ),
        bad(
            "chunk size overflowing (ffffffffffffffffff)",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        ),
        bad(
            "chunk size negative (-5)",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
        ),
        bad(
            "chunk size 0x5",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
        ),
        bad(
            "chunk size line ended by a bare LF",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\nhello\r\n0\r\n\r\n",
        ),
        // KNOWN BAD. A chunk extension may not hold a bare LF (RFC 9112
        // §7.1.1: token or quoted-string). A parser that ends the size line
        // at the LF reads "hello", the last chunk, then junk; edge (httparse
        // skips anything up to the CRLF inside an extension) reads a 5-byte
        // chunk "0\r\n\r\n" and a last chunk after it. Two parsers
        // disagreeing on where a body ends is what smuggling needs: in front
        // of edge, the junk is a request of the attacker's choosing. Left
        // as it is: chunk lines are parsed inside Pingora (httparse), which
        // edge cannot see; it needs a fix there.
        bad(
            "chunk extension with a bare LF",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5;a\nhello\r\n0\r\n\r\n\r\n0\r\n\r\n",
        )
        .known_bad(),
        bad(
            "chunk data not followed by CRLF",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhelloXX0\r\n\r\n",
        ),
        bad(
            "chunk data longer than its size",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nhello\r\n0\r\n\r\n",
        ),
        // Trailer fields after the last chunk are dropped: a recipient
        // that removes the chunked coding MAY discard them (RFC 9112
        // §7.1.2). A defensible choice, asserted as it is.
        ok(
            "trailer fields are dropped",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
        bad(
            "chunk extension with a bare CR",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5;a\rb\r\nhello\r\n0\r\n\r\n",
        ),
        // An extension is legal and dropped when edge re-chunks.
        ok(
            "chunk extension (legal)",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5;name=value\r\nhello\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
    ])
}

#[test]
fn header_and_target_syntax() -> Result<()> {
    check(&[
        refused(
            "obs-fold (line starting with a space)",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n two\r\nConnection: close\r\n\r\n",
            400,
        ),
        refused(
            "obs-fold (line starting with a tab)",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n\ttwo\r\nConnection: close\r\n\r\n",
            400,
        ),
        refused(
            "obs-fold hiding Transfer-Encoding",
            b"POST / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n Transfer-Encoding: chunked\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
            400,
        ),
        refused(
            "NUL in a header value",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\nConnection: close\r\n\r\n",
            400,
        ),
        refused(
            "bare CR in a header value",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\nConnection: close\r\n\r\n",
            400,
        ),
        refused(
            "bare LF in a header value (rest is not a field)",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\nb\r\nConnection: close\r\n\r\n",
            400,
        ),
        refused(
            "NUL in a header name",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-\x00A: a\r\nConnection: close\r\n\r\n",
            400,
        ),
        refused(
            "NUL in the request target",
            b"GET /a\x00b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            400,
        ),
        // KNOWN BAD, this row and the space and tab ones below: Pingora
        // percent-encodes what httparse refuses in a target (CR, space, tab
        // become %0D, %20, %09) and edge forwards the "corrected" request.
        // A bare CR must be treated as invalid (RFC 9112 §2.2) and a
        // recipient SHOULD NOT autocorrect an invalid request-line and
        // process it (RFC 9112 §3), as the invalid line may be crafted to
        // read differently to the filters before edge. Left as it is: the
        // escaping happens inside Pingora's parser, and edge only ever sees
        // the escaped target, which it routes and forwards alike (so no
        // route is walked around); it needs a Pingora option to refuse.
        refused(
            "bare CR in the request target",
            b"GET /a\rb HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            400,
        )
        .known_bad(),
        refused(
            "bare LF in the request target",
            b"GET /a\nb HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            400,
        ),
        refused(
            "space in the request target",
            b"GET /a b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            400,
        )
        .known_bad(),
        refused(
            "tab in the request target",
            b"GET /a\tb HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            400,
        )
        .known_bad(),
        // Pingora and httparse take a bare LF as the end of a field line,
        // which RFC 9112 §2.2 allows ("MAY recognize a single LF"); edge
        // forwards the two fields with CRLF, so the backend reads what edge
        // read. A defensible choice, asserted as it is.
        ok(
            "bare LF between two fields",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\nX-B: b\r\nConnection: close\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\r\nX-B: b\r\n\r\n",
        ),
        // Likewise for the request line and the end of the head.
        ok(
            "bare LF line ends throughout",
            b"GET / HTTP/1.1\nHost: a\nConnection: close\n\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        ),
        // The request-line has two spaces, which Pingora "corrects" by
        // percent-encoding the target into `%20/`; edge refuses a target
        // that is not origin- or absolute-form, so neither row is
        // forwarded (and the `/admin` route cannot be walked around).
        refused(
            "two spaces after the method",
            b"GET  / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            400,
        ),
        refused(
            "two spaces after the method, then /admin",
            b"GET  /admin HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            400,
        ),
        refused(
            "lower-case version",
            b"GET / http/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            400,
        ),
    ])
}

#[test]
fn request_target_and_host() -> Result<()> {
    check(&[
        // Pingora 0.9.1 keeps an absolute-form target verbatim and gives
        // the URI only its path; edge reads the form from the raw target
        // and forwards origin-form (RFC 9112 §3.2.1).
        ok(
            "absolute-form with matching Host",
            b"GET http://a.example/x HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n",
            b"GET /x HTTP/1.1\r\nHost: a.example\r\n\r\n",
        ),
        // When normalising changes the path, the target is rebuilt, in
        // origin-form.
        ok(
            "absolute-form with a path edge normalises",
            b"GET http://a.example/./x HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n",
            b"GET /x HTTP/1.1\r\nHost: a.example\r\n\r\n",
        ),
        refused(
            "absolute-form /admin (routed on its path)",
            b"GET http://a.example/admin HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n",
            403,
        ),
        refused(
            "absolute-form without Host",
            b"GET http://a.example/x HTTP/1.1\r\nConnection: close\r\n\r\n",
            400,
        ),
        refused(
            "absolute-form with another Host",
            b"GET http://a.example/x HTTP/1.1\r\nHost: b.example\r\nConnection: close\r\n\r\n",
            400,
        ),
        refused(
            "origin-form without Host (RFC 9112 §3.2)",
            b"GET /x HTTP/1.1\r\nConnection: close\r\n\r\n",
            400,
        ),
        refused(
            "two Host lines",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
            400,
        ),
        refused(
            "two equal Host lines",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\nConnection: close\r\n\r\n",
            400,
        ),
        refused(
            "Host: a, b",
            b"GET / HTTP/1.1\r\nHost: a, b\r\nConnection: close\r\n\r\n",
            400,
        ),
        refused(
            "Host with a port that is not a number",
            b"GET / HTTP/1.1\r\nHost: a:abc\r\nConnection: close\r\n\r\n",
            400,
        ),
        refused(
            "Host with a port over 65535",
            b"GET / HTTP/1.1\r\nHost: a:99999\r\nConnection: close\r\n\r\n",
            400,
        ),
        refused(
            "Host with two ports",
            b"GET / HTTP/1.1\r\nHost: a:80:80\r\nConnection: close\r\n\r\n",
            400,
        ),
        refused(
            "Host with userinfo",
            b"GET / HTTP/1.1\r\nHost: u@a\r\nConnection: close\r\n\r\n",
            400,
        ),
    ])
}

#[test]
fn smuggling_classics_reach_the_backend_as_one_request() -> Result<()> {
    check(&[
        // CL.TE: a front end reading by Content-Length (13 bytes) would see
        // one request; edge reads by chunked, so the rest is a second
        // request on the client connection, which edge must not serve
        // (it closes, RFC 9112 §6.1).
        ok(
            "CL.TE",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        )
        .client(Client::StatusThenClose(200)),
        // TE.CL: the smuggled request is chunk data; edge forwards it as
        // such, with only chunked framing, so no backend reads it as a
        // request.
        ok(
            "TE.CL",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n23\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n23\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n\r\n0\r\n\r\n",
        )
        .client(Client::StatusThenClose(200)),
        refused(
            "TE.TE: chunked + cow",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: cow\r\n\r\n23\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n\r\n0\r\n\r\n",
            400,
        ),
        refused(
            "TE.TE: chunked + x with Transfer-encoding spelled otherwise",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\ntransfer-encoding: x\r\n\r\n23\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n\r\n0\r\n\r\n",
            400,
        ),
        refused(
            "TE.TE: Transfer-Encoding : chunked beside CL",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding : chunked\r\n\r\n23\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n\r\n0\r\n\r\n",
            400,
        ),
        refused(
            "TE.TE: obs-folded Transfer-Encoding beside CL",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nX: y\r\n Transfer-Encoding: chunked\r\n\r\n23\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n\r\n0\r\n\r\n",
            400,
        ),
        refused(
            "CL.CL: 4 and 40",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcdGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
            400,
        ),
        // CL.0 (client-side desync): a route edge answers itself must
        // still consume (or close on) the body it did not read, or the
        // body is taken for the next request on a kept-alive connection.
        refused(
            "body of a request edge answers itself (CL.0)",
            b"POST /admin HTTP/1.1\r\nHost: a\r\nContent-Length: 35\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
            403,
        ),
        refused(
            "chunked body of a request edge answers itself (TE.0)",
            b"POST /admin HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n23\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n\r\n0\r\n\r\n",
            403,
        ),
        // A GET with a body: the body is forwarded as a body, framed as
        // received, never as a second request.
        ok(
            "GET with a Content-Length body holding a request",
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 35\r\nConnection: close\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 35\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        ),
        // A bare LF ends a field line (RFC 9112 §2.2 lets a recipient
        // accept it); edge then sees Transfer-Encoding and Content-Length
        // both, and forwards by chunked alone with CRLF line ends, so the
        // backend reads exactly what edge read.
        ok(
            "Transfer-Encoding behind a bare LF beside CL",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nX: y\nTransfer-Encoding: chunked\r\n\r\n23\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nX: y\r\nTransfer-Encoding: chunked\r\n\r\n23\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n\r\n0\r\n\r\n",
        )
        .client(Client::StatusThenClose(200)),
    ])
}
