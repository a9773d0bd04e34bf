//! Stream listeners through a real edge on loopback, with real backends:
//!
//! - `mode: tcp` relays a real Redis: commands and answers pass unchanged,
//!   connection after connection, although the pool's first backend
//!   refuses connections (a failed connect is retried on the other); each
//!   connection is counted, and the bytes of each stream both ways.
//! - `limits.idle_timeout` closes a stream on which nothing moves, not one
//!   that keeps talking, and the bytes of the streams it cut are counted
//!   all the same; `limits.max_connections` closes the connection
//!   over the limit at once, counts it, and lets a new one in once a slot
//!   is free.
//! - `mode: tls_passthrough` routes by the ClientHello's server name (an
//!   exact name, a `*.` wildcard, the default pool for other names or no
//!   name) to HTTPS backends, whose own certificates the client sees: edge
//!   never terminates TLS. What is not a usable ClientHello (plain HTTP, a
//!   handshake or a record too large, silence past `header_read_timeout`)
//!   and a name no route takes without a default pool are closed and
//!   counted by reason.
//! - `proxy_protocol.send` (v1 and v2) tells a real nginx, listening with
//!   `proxy_protocol`, the client's address; without it nginx refuses.
//! - `edge check` locates stream configuration mistakes, a stream listener
//!   to a pool that speaks TLS or HTTP/2 to its backends among them.

use anyhow::{Context, Result, anyhow, bail, ensure};
use edge_tests::{
    edge::{Refused, check, expect_refused},
    http,
    metrics::{metric, wait_metric},
    process::Process,
    proxy::{Proxy, free_port, refusing_port},
    redis::Redis,
    tls::{self, Ca, ClientOptions, TlsBackend},
    wait,
};
use std::{
    io::{BufReader, ErrorKind, Read, Write},
    net::{Shutdown, SocketAddr, TcpStream},
    path::Path,
    time::{Duration, Instant},
};

/// How long any awaited condition may take.
const DEADLINE: Duration = Duration::from_secs(15);

/// Starts edge with `yaml` (see [`Proxy::start_template`]).
fn start(yaml: &str, vars: &[(&str, String)]) -> Result<Proxy> {
    Proxy::start_template(yaml, vars)
}

/// A client connection to `addr`, reads bounded.
fn connect(addr: SocketAddr) -> Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Sends `command` on `s` and reads the answer, which must be `want`.
fn ask(s: &mut TcpStream, command: &str, want: &str) -> Result<()> {
    s.write_all(command.as_bytes())
        .with_context(|| format!("sending {command:?}"))?;
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while got.len() < want.len() {
        let n = s.read(&mut buf).with_context(|| {
            format!(
                "reading the answer to {command:?} (so far {:?})",
                String::from_utf8_lossy(&got)
            )
        })?;
        if n == 0 {
            bail!(
                "the connection closed after {:?} in answer to {command:?}",
                String::from_utf8_lossy(&got)
            );
        }
        got.extend_from_slice(&buf[..n]);
    }
    ensure!(
        got == want.as_bytes(),
        "{command:?} was answered {:?}, not {want:?}",
        String::from_utf8_lossy(&got)
    );
    Ok(())
}

/// Waits up to `within` for the other side to close `s` (end of stream or
/// reset) and says how long that took. Bytes arriving instead, or the
/// connection still open at the end, fail.
fn closed_by_edge(s: &mut TcpStream, within: Duration) -> Result<Duration> {
    let start = Instant::now();
    s.set_read_timeout(Some(within))?;
    let mut buf = [0u8; 512];
    match s.read(&mut buf) {
        Ok(0) => Ok(start.elapsed()),
        Ok(n) => bail!(
            "got {:?} where the connection should have been closed",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
            ) =>
        {
            Ok(start.elapsed())
        }
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            bail!("the connection is still open after {within:?}")
        }
        Err(e) => Err(e).context("waiting for the connection to close"),
    }
}

// ---------------------------------------------------------------------
// a real Redis behind a tcp listener
// ---------------------------------------------------------------------

/// A tcp listener to pool `redis`, with `@LIMITS@` for its limits.
const TCP_REDIS: &str = "\
listeners:
  - name: redis
    address: @LISTEN@
    mode: tcp
    pool: redis
    limits: @LIMITS@
pools:
  - name: redis
    algorithm: round_robin
    backends: @BACKENDS@
    retries: { attempts: 1, budget_percent: 100, min_per_window: 100 }
";

#[test]
fn tcp_listener_proxies_redis() -> Result<()> {
    let redis = Redis::start()?;
    let (_refusing, refusing) = refusing_port()?;
    // The refusing backend first: round robin sends every other connection
    // there first, and the retry (a budget floor high enough that none is
    // ever denied) takes it to Redis.
    let p = start(
        TCP_REDIS,
        &[
            ("LIMITS", "{}".into()),
            (
                "BACKENDS",
                format!(
                    "[{{ address: '{refusing}' }}, {{ address: '{}' }}]",
                    redis.addr()
                ),
            ),
        ],
    )?;
    let ok = |text: &str| {
        metric(
            text,
            "edge_stream_connections_total",
            &[("listener", "redis"), ("pool", "redis"), ("result", "ok")],
        )
        .unwrap_or(0.0)
    };
    let before = ok(&p.metrics()?);

    const CONNECTIONS: usize = 6;
    let (mut sent, mut received) = (0usize, 0usize);
    for i in 0..CONNECTIONS {
        let mut s = connect(p.listen)?;
        // Inline commands; what the first connection set, the others read.
        let exchange = [
            ("PING\r\n".to_string(), "+PONG\r\n".to_string()),
            (format!("SET k{i} v{i}\r\n"), "+OK\r\n".to_string()),
            (format!("GET k{i}\r\n"), format!("$2\r\nv{i}\r\n")),
            ("GET k0\r\n".to_string(), "$2\r\nv0\r\n".to_string()),
        ];
        for (command, answer) in &exchange {
            ask(&mut s, command, answer).with_context(|| format!("connection {i}"))?;
            sent += command.len();
            received += answer.len();
        }
        // A clean end both ways (the client's, then Redis's), so edge
        // knows the stream's exact byte counts.
        s.shutdown(Shutdown::Write)?;
        let mut rest = Vec::new();
        s.read_to_end(&mut rest)
            .with_context(|| format!("connection {i}: waiting for the end of the stream"))?;
        ensure!(
            rest.is_empty(),
            "connection {i}: unexpected {:?} after the answers",
            String::from_utf8_lossy(&rest)
        );
    }

    // (Edge's readiness probe may add a connection of its own: at least.)
    wait_metric(
        || p.metrics(),
        "edge_stream_connections_total",
        &[("listener", "redis"), ("pool", "redis"), ("result", "ok")],
        DEADLINE,
        |v| v >= before + CONNECTIONS as f64,
    )?;
    let text = p.metrics()?;
    for result in ["connect_failed", "no_backend", "breaker_open"] {
        let n = metric(
            &text,
            "edge_stream_connections_total",
            &[("listener", "redis"), ("result", result)],
        );
        ensure!(
            n.unwrap_or(0.0) == 0.0,
            "no connection failed, yet {result} counts {n:?}"
        );
    }
    let retried = metric(&text, "edge_upstream_retries_total", &[("pool", "redis")]);
    ensure!(
        retried.is_some_and(|n| n >= 1.0),
        "the refused connects were retried: {retried:?}"
    );
    // Every stream ended cleanly, so every byte is counted (the probe's
    // connection carried none).
    redis_bytes(&p, sent, received).context("every byte of the clean streams")
}

/// Waits until `edge_stream_bytes_total` of listener and pool `redis`
/// reads exactly `up` and `down`.
fn redis_bytes(p: &Proxy, up: usize, down: usize) -> Result<()> {
    for (direction, want) in [("up", up), ("down", down)] {
        wait_metric(
            || p.metrics(),
            "edge_stream_bytes_total",
            &[
                ("listener", "redis"),
                ("pool", "redis"),
                ("direction", direction),
            ],
            DEADLINE,
            |v| v == want as f64,
        )
        .with_context(|| format!("{want} bytes {direction}"))?;
    }
    Ok(())
}

/// A tcp listener to a ketama pool of three HTTP backends.
const TCP_KETAMA: &str = "\
listeners:
  - name: sticky
    address: @LISTEN@
    mode: tcp
    pool: sticky
pools:
  - name: sticky
    algorithm: ketama
    backends: @BACKENDS@
";

/// Which backend answers a request sent through `listen` from `from`.
fn backend_for(from: std::net::IpAddr, listen: SocketAddr) -> Result<String> {
    let mut s = http::connect_from(from, listen, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
    let m = http::read_message(&mut BufReader::new(s))?.context("closed without an answer")?;
    m.header("x-backend")
        .map(str::to_string)
        .with_context(|| format!("no X-Backend in {}", m.start))
}

/// A stream listener's ketama pool hashes the client's address: each
/// client stays on one backend, and different clients spread. (The key
/// was empty once, which sent every connection to one backend.)
#[test]
fn a_ketama_pool_behind_a_tcp_listener_hashes_the_client_address() -> Result<()> {
    let backends = ["k1", "k2", "k3"]
        .iter()
        .map(|name| {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
            edge_tests::backend::Backend::start(name, None, addr)
        })
        .collect::<Result<Vec<_>>>()?;
    let list = backends
        .iter()
        .map(|b| format!("{{ address: {} }}", b.addr()))
        .collect::<Vec<_>>()
        .join(", ");
    let p = start(TCP_KETAMA, &[("BACKENDS", format!("[{list}]"))])?;
    let mut seen = std::collections::BTreeSet::new();
    for last in 10..40u8 {
        let from = std::net::IpAddr::from([127, 0, 0, last]);
        let first = backend_for(from, p.listen)?;
        for _ in 0..2 {
            let again = backend_for(from, p.listen)?;
            ensure!(again == first, "{from} moved from {first} to {again}");
        }
        seen.insert(first);
    }
    ensure!(
        seen.len() >= 2,
        "30 clients all went to {seen:?}: the pool does not hash them"
    );
    Ok(())
}

/// The idle timeout of the limits test.
const IDLE: Duration = Duration::from_secs(1);
/// How often the busy connection talks: well within [`IDLE`].
const PACE: Duration = Duration::from_millis(400);
/// How long it keeps talking: more than twice [`IDLE`].
const KEEP_TALKING: Duration = Duration::from_millis(2500);

#[test]
fn idle_and_connection_limits() -> Result<()> {
    let redis = Redis::start()?;
    let backends = format!("[{{ address: '{}' }}]", redis.addr());

    // idle_timeout: 1s.
    let p = start(
        TCP_REDIS,
        &[
            ("LIMITS", "{ idle_timeout: 1s }".into()),
            ("BACKENDS", backends.clone()),
        ],
    )?;
    let listen = p.listen;
    // A connection that says one thing and then nothing, on its own thread
    // so that the time edge takes to close it is measured while...
    let quiet = std::thread::spawn(move || -> Result<Duration> {
        let mut s = connect(listen)?;
        ask(&mut s, "PING\r\n", "+PONG\r\n")?;
        closed_by_edge(&mut s, IDLE * 5)
    });
    // ...another one keeps talking. The sleeps are the behaviour under
    // test, not a wait for something: gaps shorter than the idle timeout,
    // for more than twice its length in all.
    let mut busy = connect(listen)?;
    ask(&mut busy, "PING\r\n", "+PONG\r\n")?;
    // PINGs answered on both connections: the quiet one's and that one.
    let mut pings: usize = 2;
    let talking = Instant::now();
    while talking.elapsed() < KEEP_TALKING {
        std::thread::sleep(PACE);
        ask(&mut busy, "PING\r\n", "+PONG\r\n").with_context(|| {
            format!(
                "the busy connection, after {:?} of a PING every {PACE:?}",
                talking.elapsed()
            )
        })?;
        pings += 1;
    }
    let idled = quiet
        .join()
        .map_err(|_| anyhow!("the quiet client panicked"))?
        .context("the quiet connection is closed by the idle timeout")?;
    ensure!(
        idled >= IDLE * 7 / 10,
        "the quiet connection was closed after {idled:?}, before the idle timeout ({IDLE:?})"
    );
    // Once the busy one falls silent, it goes the same way.
    let idled = closed_by_edge(&mut busy, IDLE * 5)
        .context("the busy connection, silent at last, is closed by the idle timeout")?;
    ensure!(
        idled >= IDLE * 7 / 10,
        "the busy connection was closed {idled:?} after its last PING, before the idle timeout"
    );
    // Both streams were cut by the idle timeout, not ended cleanly: their
    // bytes are counted all the same, both ways (edge's readiness probe
    // carried none).
    redis_bytes(&p, pings * "PING\r\n".len(), pings * "+PONG\r\n".len())
        .context("the bytes of the streams the idle timeout closed")?;
    drop(p);

    // max_connections: 2 (and an idle timeout far beyond the test).
    let p = start(
        TCP_REDIS,
        &[
            ("LIMITS", "{ max_connections: 2, idle_timeout: 60s }".into()),
            ("BACKENDS", backends),
        ],
    )?;
    let open = |want: f64| {
        wait_metric(
            || p.metrics(),
            "edge_listener_connections",
            &[("listener", "redis")],
            DEADLINE,
            move |v| v == want,
        )
    };
    // Edge's readiness probe (a connection of its own, relayed to Redis
    // like any other) has come and gone: it takes no slot from the test.
    wait::until("edge's readiness probe to end", DEADLINE, || {
        let text = p.metrics()?;
        let relayed = metric(
            &text,
            "edge_stream_connections_total",
            &[("listener", "redis"), ("result", "ok")],
        );
        let now_open = metric(&text, "edge_listener_connections", &[("listener", "redis")]);
        Ok((relayed.is_some_and(|n| n >= 1.0) && now_open == Some(0.0)).then_some(()))
    })?;
    let mut first = connect(p.listen)?;
    ask(&mut first, "PING\r\n", "+PONG\r\n")?;
    let mut second = connect(p.listen)?;
    ask(&mut second, "PING\r\n", "+PONG\r\n")?;
    open(2.0)?;
    let mut third = connect(p.listen)?;
    // Its PING must not be answered; a write that meets the close already
    // is as good.
    let _ = third.write_all(b"PING\r\n");
    // (At once: nothing else here would close it within seconds.)
    closed_by_edge(&mut third, Duration::from_secs(3))
        .context("the connection over max_connections is closed")?;
    wait_metric(
        || p.metrics(),
        "edge_listener_connections_refused_total",
        &[("listener", "redis")],
        DEADLINE,
        |v| v == 1.0,
    )?;
    // The two admitted ones are untouched.
    ask(&mut first, "PING\r\n", "+PONG\r\n")?;
    ask(&mut second, "PING\r\n", "+PONG\r\n")?;
    // A slot set free is taken again.
    drop(first);
    open(1.0)?;
    let mut fourth = connect(p.listen)?;
    ask(&mut fourth, "PING\r\n", "+PONG\r\n").context("a connection once a slot is free")?;
    open(2.0)?;
    let refused = metric(
        &p.metrics()?,
        "edge_listener_connections_refused_total",
        &[("listener", "redis")],
    );
    ensure!(refused == Some(1.0), "one refusal in all: {refused:?}");
    Ok(())
}

// ---------------------------------------------------------------------
// TLS passthrough
// ---------------------------------------------------------------------

/// `header_read_timeout` of the passthrough listener: how long edge waits
/// for a ClientHello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(1);

/// A passthrough listener: a.test to `a`, any subdomain of b.test to `b`,
/// anything else to `@DEFAULT@` (a `pool:` line, or nothing).
const PASSTHROUGH: &str = "\
listeners:
  - name: tls
    address: @LISTEN@
    mode: tls_passthrough
    sni:
      - { names: [a.test], pool: a }
      - { names: [\"*.b.test\"], pool: b }
@DEFAULT@
    limits: { header_read_timeout: 1s }
pools:
  - name: a
    backends: [{ address: '@A@' }]
  - name: b
    backends: [{ address: '@B@' }]
  - name: fallback
    backends: [{ address: '@F@' }]
";

/// The start of a ClientHello, in one small record, declaring a message
/// of 16 KiB + 1 bytes: more than edge reads for one.
const HUGE_HELLO: [u8; 9] = [0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x40, 0x01];
/// A record header declaring 16 KiB + 5 bytes, over TLS's 16 KiB limit
/// on records, then the start of a ClientHello.
const HUGE_RECORD: [u8; 9] = [0x16, 0x03, 0x01, 0x40, 0x05, 0x01, 0x00, 0x40, 0x01];

/// A TLS connection through `addr` with `sni`, trusting `ca`: the common
/// name of the certificate it was shown, and the answer to `GET /`.
fn through(addr: SocketAddr, ca: &Ca, sni: Option<&str>) -> Result<(String, http::Message)> {
    let s = tls::connect(
        addr,
        &ca.cert,
        &ClientOptions {
            sni,
            ..Default::default()
        },
    )?;
    let cn = tls::common_name(&tls::served_certificate(&s)?).context("no common name")?;
    let r = tls::get(s, sni.unwrap_or("no-sni.test"), "/")?;
    Ok((cn, r))
}

#[test]
fn tls_passthrough_routes_by_sni() -> Result<()> {
    let ca = Ca::new("stream test CA")?;
    let a = TlsBackend::start(&ca.issue("a.test", &["a.test"])?, "A")?;
    let b = TlsBackend::start(&ca.issue("*.b.test", &["*.b.test"])?, "B")?;
    let f = TlsBackend::start(&ca.issue("fallback.test", &["fallback.test"])?, "F")?;
    let vars = |default: &str| {
        vec![
            ("DEFAULT", default.to_string()),
            ("A", a.addr().to_string()),
            ("B", b.addr().to_string()),
            ("F", f.addr().to_string()),
        ]
    };
    let p = start(PASSTHROUGH, &vars("    pool: fallback"))?;

    // (SNI sent, the certificate's common name, the body)
    let cases = [
        (Some("a.test"), "a.test", "A"),
        // Names are matched without regard to case.
        (Some("A.Test"), "a.test", "A"),
        (Some("x.b.test"), "*.b.test", "B"),
        // The wildcard is for subdomains, not b.test itself.
        (Some("b.test"), "fallback.test", "F"),
        (Some("other.test"), "fallback.test", "F"),
        (None, "fallback.test", "F"),
    ];
    for (sni, cn, body) in cases {
        let (got_cn, r) = through(p.listen, &ca, sni).with_context(|| format!("SNI {sni:?}"))?;
        ensure!(
            got_cn == cn,
            "SNI {sni:?}: the client was shown {got_cn:?}, not the backend's own {cn:?}"
        );
        ensure!(
            r.status() == Some(200) && r.text() == body,
            "SNI {sni:?}: {} {:?}, not 200 {body:?}",
            r.start,
            r.text()
        );
        // The backend saw the client's own ClientHello.
        ensure!(
            r.header("x-tls-sni") == Some(sni.unwrap_or("-")),
            "SNI {sni:?}: the backend saw {:?}",
            r.header("x-tls-sni")
        );
    }
    let handshakes = (a.handshakes(), b.handshakes(), f.handshakes());
    ensure!(
        handshakes == (2, 1, 3),
        "handshakes (a, b, fallback): {handshakes:?}"
    );
    let text = p.metrics()?;
    for (pool, n) in [("a", 2.0), ("b", 1.0), ("fallback", 3.0)] {
        let got = metric(
            &text,
            "edge_stream_connections_total",
            &[("listener", "tls"), ("pool", pool), ("result", "ok")],
        );
        ensure!(got == Some(n), "connections to {pool}: {got:?}, not {n}");
    }

    // What is not a usable ClientHello is closed, counted by reason.
    let refused = |reason: &str| {
        wait_metric(
            || p.metrics(),
            "edge_tls_passthrough_refused_total",
            &[("listener", "tls"), ("reason", reason)],
            DEADLINE,
            |v| v == 1.0,
        )
    };
    let probes: [(&str, &[u8], &str); 3] = [
        (
            "plain HTTP",
            b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
            "not_tls",
        ),
        ("a ClientHello over 16 KiB", &HUGE_HELLO, "too_large"),
        ("a record over 16 KiB", &HUGE_RECORD, "malformed"),
    ];
    for (what, bytes, reason) in probes {
        let mut s = connect(p.listen)?;
        s.write_all(bytes)?;
        closed_by_edge(&mut s, HELLO_TIMEOUT * 5).with_context(|| what.to_string())?;
        refused(reason).with_context(|| format!("{what} is counted as {reason}"))?;
    }
    // Nothing at all: closed once header_read_timeout is over.
    let mut s = connect(p.listen)?;
    let waited = closed_by_edge(&mut s, HELLO_TIMEOUT * 5).context("a silent client")?;
    ensure!(
        waited >= HELLO_TIMEOUT * 7 / 10,
        "a silent client was closed after {waited:?}, before header_read_timeout ({HELLO_TIMEOUT:?})"
    );
    refused("timeout")?;
    let handshakes = (a.handshakes(), b.handshakes(), f.handshakes());
    ensure!(
        handshakes == (2, 1, 3),
        "no refused connection reached a backend: handshakes {handshakes:?}"
    );
    drop(p);

    // Without a default pool, a name no route takes is closed.
    let p = start(PASSTHROUGH, &vars(""))?;
    let r = through(p.listen, &ca, Some("other.test"));
    ensure!(
        r.is_err(),
        "an unrouted name was served without a default pool: {:?}",
        r.map(|(cn, m)| (cn, m.start))
    );
    wait_metric(
        || p.metrics(),
        "edge_tls_passthrough_refused_total",
        &[("listener", "tls"), ("reason", "no_route")],
        DEADLINE,
        |v| v == 1.0,
    )?;
    let (cn, r) = through(p.listen, &ca, Some("a.test")).context("a routed name")?;
    ensure!(
        cn == "a.test" && r.text() == "A",
        "a.test: {cn:?} {:?}",
        r.text()
    );
    ensure!(
        f.handshakes() == 3,
        "the fallback backend was reached: {}",
        f.handshakes()
    );
    Ok(())
}

// ---------------------------------------------------------------------
// the PROXY protocol towards a real nginx
// ---------------------------------------------------------------------

/// Where Debian's nginx is.
const NGINX: &str = "/usr/sbin/nginx";

/// A real nginx on loopback that expects a PROXY protocol header on each
/// connection and answers every request with the client address the
/// header named; stopped by its PID when dropped (through [`Process`]).
struct Nginx {
    _server: Process,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Nginx {
    fn start() -> Result<Self> {
        let program = Path::new(NGINX);
        ensure!(
            program.is_file(),
            "{NGINX} is missing: the PROXY protocol test needs a real nginx (Debian package nginx)"
        );
        let dir = tempfile::tempdir()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let d = dir.path().display();
        // Everything nginx writes stays in the directory.
        let conf = format!(
            "\
daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{}}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen {addr} proxy_protocol;
        location / {{
            return 200 \"$proxy_protocol_addr:$proxy_protocol_port\\n\";
        }}
    }}
}}
"
        );
        let conf_file = dir.path().join("nginx.conf");
        std::fs::write(&conf_file, conf)?;
        // `-e`: the error log before the config is read, not the
        // compiled-in path.
        let args = [
            "-c".to_string(),
            conf_file.display().to_string(),
            "-p".into(),
            format!("{d}/"),
            "-e".into(),
            format!("{d}/error.log"),
        ];
        let mut server =
            Process::spawn("nginx", None, program, &args, &dir.path().join("nginx.out"))?;
        wait::until("nginx to accept connections", DEADLINE, || {
            server.check_running()?;
            Ok(TcpStream::connect_timeout(&addr, Duration::from_secs(1))
                .ok()
                .map(drop))
        })
        .map_err(|e| e.context(format!("nginx's output:\n{}", server.log_text())))?;
        Ok(Self {
            _server: server,
            addr,
            dir,
        })
    }

    /// nginx's error log so far.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

/// A tcp listener to nginx, with `@PROXY@` for its `proxy_protocol` line.
const TO_NGINX: &str = "\
listeners:
  - name: pp
    address: @LISTEN@
    mode: tcp
    pool: nginx
@PROXY@
pools:
  - name: nginx
    backends: [{ address: '@NGINX@' }]
";

/// `GET /` through `addr` on a new connection: the client's own address
/// (as edge saw it) and the answer, if any (`Err`: the connection broke).
fn get_through(addr: SocketAddr) -> Result<(SocketAddr, Result<Option<http::Message>>)> {
    let mut s = connect(addr)?;
    let me = s.local_addr()?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
    let mut r = BufReader::new(s);
    Ok((me, http::read_message(&mut r)))
}

#[test]
fn proxy_protocol_reaches_a_real_backend() -> Result<()> {
    let nginx = Nginx::start()?;
    for version in ["v1", "v2"] {
        let p = start(
            TO_NGINX,
            &[
                (
                    "PROXY",
                    format!("    proxy_protocol: {{ send: {version} }}"),
                ),
                ("NGINX", nginx.addr.to_string()),
            ],
        )?;
        // Two connections: each gets its own header.
        for i in 0..2 {
            let (me, answer) = get_through(p.listen)?;
            let r = answer
                .and_then(|m| m.context("closed without an answer"))
                .with_context(|| {
                    format!(
                        "{version}, connection {i}: nginx did not answer; its log:\n{}",
                        nginx.log()
                    )
                })?;
            ensure!(
                r.status() == Some(200),
                "{version}, connection {i}: {} {:?}",
                r.start,
                r.text()
            );
            ensure!(
                r.text().trim_end() == me.to_string(),
                "{version}, connection {i}: nginx was told the client is {:?}; it is {me}",
                r.text().trim_end()
            );
        }
    }

    // Without the header, nginx (which expects it) refuses the request.
    let p = start(
        TO_NGINX,
        &[("PROXY", String::new()), ("NGINX", nginx.addr.to_string())],
    )?;
    let (_, answer) = get_through(p.listen)?;
    if let Ok(Some(m)) = &answer {
        ensure!(
            m.status() != Some(200),
            "nginx answered 200 without a PROXY header: {:?}",
            m.text()
        );
    }
    wait::until("nginx to log the missing header", DEADLINE, || {
        Ok(nginx.log().contains("broken header").then_some(()))
    })
    .map_err(|e| e.context(format!("nginx's log:\n{}", nginx.log())))?;
    Ok(())
}

// ---------------------------------------------------------------------
// edge check
// ---------------------------------------------------------------------

/// A config of `listeners` (YAML list items) and pools `redis`, `a`, `b`.
fn check_config(listeners: &str) -> String {
    check_config_with(listeners, "")
}

/// Like [`check_config`], with `pools` (more YAML list items) after `b`.
fn check_config_with(listeners: &str, pools: &str) -> String {
    format!(
        "\
listeners:
{listeners}pools:
  - name: redis
    backends: [{{ address: 127.0.0.1:6379 }}]
  - name: a
    backends: [{{ address: 127.0.0.1:9001 }}]
  - name: b
    backends: [{{ address: 127.0.0.1:9002 }}]
{pools}"
    )
}

/// Pools for HTTP backends only: `tls_pool` speaks TLS to its backends,
/// `h2c_pool` HTTP/2.
const HTTP_POOLS: &str = "  - name: tls_pool
    tls: { sni: x.test }
    backends: [{ address: 127.0.0.1:9443 }]
  - name: h2c_pool
    protocol: h2c
    backends: [{ address: 127.0.0.1:9003 }]
  - name: by_path
    algorithm: ketama
    hash_key: path
    backends: [{ address: 127.0.0.1:9004 }]
";

#[test]
fn stream_configs_are_checked() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        check_config(
            "  - name: redis
    address: 127.0.0.1:6380
    mode: tcp
    pool: redis
    proxy_protocol: { send: v2 }
    limits: { idle_timeout: 30s, max_connections: 100 }
  - name: tls
    address: 127.0.0.1:8443
    mode: tls_passthrough
    sni:
      - { names: [a.test, www.a.test], pool: a }
      - { names: [\"*.b.test\"], pool: b }
    pool: a
    limits: { header_read_timeout: 2s }
",
        ),
    )?;
    let (ok, text) = check(&[good.as_path()])?;
    ensure!(ok, "a good stream config is refused:\n{text}");

    // (name, listeners, marker of the faulty line, a word the message must
    // have). Collections that are wrong as a whole are written in flow
    // style, on their key's line: a block collection is located at its
    // first entry, the line below the key.
    let bad = [
        (
            "tcp-without-pool",
            "  - name: redis
    address: 127.0.0.1:6380
    mode: tcp
",
            "mode: tcp",
            "needs a pool",
        ),
        (
            "passthrough-with-tls",
            "  - name: tls
    address: 127.0.0.1:8443
    mode: tls_passthrough
    pool: a
    tls: { certificates: [{ cert: /nonexistent/a.pem, key: /nonexistent/a.key }] }
",
            "tls:",
            "mode: http",
        ),
        (
            "sni-on-http",
            "  - name: web
    address: 127.0.0.1:8080
    pool: a
    sni: [{ names: [a.test], pool: a }]
",
            "sni:",
            "tls_passthrough",
        ),
        (
            "proxy-protocol-v3",
            "  - name: redis
    address: 127.0.0.1:6380
    mode: tcp
    pool: redis
    proxy_protocol: { send: v3 }
",
            "proxy_protocol",
            "v3",
        ),
        (
            "bad-server-name",
            "  - name: tls
    address: 127.0.0.1:8443
    mode: tls_passthrough
    sni:
      - { names: [a.test], pool: a }
      - { names: [\"a b\"], pool: b }
",
            "a b",
            "bad server name",
        ),
        (
            "unknown-mode",
            "  - name: udp
    address: 127.0.0.1:5353
    mode: udp
    pool: a
",
            "mode: udp",
            "unknown mode",
        ),
        (
            "passthrough-without-a-pool",
            "  - name: tls
    address: 127.0.0.1:8443
    mode: tls_passthrough
",
            "mode: tls_passthrough",
            "needs sni routes",
        ),
        (
            "sni-to-an-unknown-pool",
            "  - name: tls
    address: 127.0.0.1:8443
    mode: tls_passthrough
    sni:
      - { names: [a.test], pool: nowhere }
",
            "nowhere",
            "nowhere",
        ),
        (
            "name-routed-twice",
            "  - name: tls
    address: 127.0.0.1:8443
    mode: tls_passthrough
    sni:
      - { names: [a.test], pool: a }
      - { names: [A.test], pool: b }
",
            "A.test",
            "routed twice",
        ),
    ];
    // A stream listener passes bytes through as they are: not to a pool
    // that speaks TLS or HTTP/2 to its backends ([`HTTP_POOLS`]).
    let bad_pools = [
        (
            "tcp-to-a-tls-pool",
            "  - name: redis
    address: 127.0.0.1:6380
    mode: tcp
    pool: tls_pool
",
            "pool: tls_pool",
            "TLS",
        ),
        (
            "tcp-to-an-h2c-pool",
            "  - name: redis
    address: 127.0.0.1:6380
    mode: tcp
    pool: h2c_pool
",
            "pool: h2c_pool",
            "HTTP/2",
        ),
        (
            "sni-to-a-tls-pool",
            "  - name: tls
    address: 127.0.0.1:8443
    mode: tls_passthrough
    sni:
      - { names: [a.test], pool: tls_pool }
",
            "pool: tls_pool",
            "TLS",
        ),
        (
            "tcp-to-a-pool-hashing-on-the-path",
            "  - name: redis
    address: 127.0.0.1:6380
    mode: tcp
    pool: by_path
",
            "pool: by_path",
            "client_ip",
        ),
    ];
    let cases = bad
        .into_iter()
        .map(|(name, listeners, marker, word)| (name, check_config(listeners), marker, word))
        .chain(
            bad_pools
                .into_iter()
                .map(|(name, listeners, marker, word)| {
                    (name, check_config_with(listeners, HTTP_POOLS), marker, word)
                }),
        );
    let cases = cases
        .into_iter()
        .map(|(name, yaml, marker, word)| Refused {
            name,
            yaml,
            marker,
            word,
        })
        .collect();
    expect_refused(dir.path(), cases)?;
    Ok(())
}
