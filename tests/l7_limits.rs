//! Per-listener limits and WebSocket pass-through, with real clients on
//! loopback: 413 for bodies over `max_body_size` (declared and streamed),
//! a slow client cut off by `header_read_timeout`, kept-alive connections
//! closed after `idle_timeout`, connections beyond `max_connections`
//! closed at once, and an `Upgrade: websocket` exchange carried through.

use anyhow::{Context, Result, bail, ensure};
use edge_tests::{
    backend::Backend,
    edge::Edge,
    http::{self, Message},
    loopback::{endpoints, start_edge},
    tls::{self, Ca, ClientOptions},
    wait,
};
use std::{
    io::{BufRead, BufReader, ErrorKind, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

/// edge with one listener (`limits` is its YAML flow mapping) in front of
/// `backend`.
struct Setup {
    _dir: tempfile::TempDir,
    _edge: Edge,
    admin: SocketAddr,
    listener: SocketAddr,
}

fn setup(limits: &str, backend: SocketAddr) -> Result<Setup> {
    let dir = tempfile::tempdir()?;
    let at = endpoints(1);
    let (listener, admin) = (at.listeners[0], at.admin);
    let yaml = format!(
        "\
listeners:
  - name: web
    address: '{listener}'
    pool: app
    limits: {limits}
pools:
  - name: app
    backends: [{{address: '{backend}'}}]
admin: {{address: '{admin}'}}
server: {{threads: 1}}
"
    );
    let edge = start_edge(dir.path(), &yaml, &at)?;
    Ok(Setup {
        _dir: dir,
        _edge: edge,
        admin,
        listener,
    })
}

fn connect(addr: SocketAddr) -> Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}

/// Sends raw bytes on a new connection and reads one response.
fn exchange(addr: SocketAddr, raw: &[u8]) -> Result<Message> {
    let mut s = connect(addr)?;
    s.write_all(raw)?;
    http::read_message(&mut BufReader::new(s))?.context("closed without a response")
}

/// Reads until the peer closes; fails on data or a timeout. A reset counts
/// as closed.
fn expect_closed(s: &mut impl Read) -> Result<()> {
    let mut buf = [0u8; 256];
    match s.read(&mut buf) {
        Ok(0) => Ok(()),
        Ok(n) => bail!(
            "expected the connection to close, got {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => Ok(()),
        Err(e) => Err(e).context("waiting for the connection to close"),
    }
}

#[test]
fn bodies_over_max_body_size_get_413_declared_or_streamed() -> Result<()> {
    let backend = Backend::start("be1", None, "127.0.0.1:0".parse()?)?;
    let s = setup("{max_body_size: 1KiB}", backend.addr())?;

    let r = exchange(
        s.listener,
        b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 1025\r\n\r\n",
    )?;
    assert_eq!(
        r.status(),
        Some(413),
        "declared length over the limit: {r:?}"
    );
    assert_eq!(backend.requests(), 0, "refused before going upstream");

    let mut ok =
        b"POST /up HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 1024\r\n\r\n"
            .to_vec();
    ok.extend_from_slice(&[b'x'; 1024]);
    let r = exchange(s.listener, &ok)?;
    assert_eq!(r.status(), Some(200), "exactly the limit: {r:?}");

    // Chunked: no declared length; counted as it streams.
    let chunk = format!("320\r\n{}\r\n", "y".repeat(0x320));
    let mut s2 = connect(s.listener)?;
    s2.write_all(b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")?;
    s2.write_all(chunk.as_bytes())?;
    s2.write_all(chunk.as_bytes())?;
    let r = http::read_message(&mut BufReader::new(s2))?.context("no response")?;
    assert_eq!(r.status(), Some(413), "streamed body over the limit: {r:?}");

    let mut small =
        b"POST /up HTTP/1.1\r\nHost: t\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    small.extend_from_slice(chunk.as_bytes());
    small.extend_from_slice(b"0\r\n\r\n");
    let r = exchange(s.listener, &small)?;
    assert_eq!(
        r.status(),
        Some(200),
        "streamed body under the limit: {r:?}"
    );
    Ok(())
}

/// Writes `head` one byte every 100 ms from a thread, until told to stop or
/// the connection fails.
struct Trickle {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Trickle {
    fn start(mut s: TcpStream, head: &'static [u8]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            for b in head.iter().cycle() {
                if flag.load(Ordering::Relaxed) || s.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Trickle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A head that never ends: header lines, one byte at a time.
const ENDLESS: &[u8] = b"X-Slow: still-coming\r\n";

#[test]
fn a_slow_client_is_cut_off_by_header_read_timeout() -> Result<()> {
    let backend = Backend::start("be1", None, "127.0.0.1:0".parse()?)?;
    let s = setup(
        "{header_read_timeout: 1s, idle_timeout: 30s}",
        backend.addr(),
    )?;

    // A slowloris: a byte every 100 ms, so every single read is quick.
    let mut c = connect(s.listener)?;
    c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n")?;
    let started = Instant::now();
    let _trickle = Trickle::start(c.try_clone()?, ENDLESS);
    let mut reader = BufReader::new(c);
    let r = http::read_message(&mut reader)?.context("closed without a response")?;
    let took = started.elapsed();
    assert_eq!(r.status(), Some(408), "{r:?}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "cut after {took:?}, expected about 1s"
    );
    expect_closed(&mut reader)?;

    // A client that connects and sends nothing is closed without a word.
    let mut idle = connect(s.listener)?;
    let started = Instant::now();
    expect_closed(&mut idle)?;
    assert!(started.elapsed() < Duration::from_secs(5));

    // On a kept-alive connection the next head is timed too.
    let mut c = connect(s.listener)?;
    c.write_all(b"GET /first HTTP/1.1\r\nHost: t\r\n\r\n")?;
    let mut reader = BufReader::new(c.try_clone()?);
    let r = http::read_message(&mut reader)?.context("no first response")?;
    assert_eq!(r.status(), Some(200), "{r:?}");
    // Longer than the head timeout, shorter than the idle timeout: the
    // clock starts at the next request's first byte, not here.
    std::thread::sleep(Duration::from_millis(1500));
    c.write_all(b"GET /second HTTP/1.1\r\n")?;
    let _trickle = Trickle::start(c, ENDLESS);
    let r = http::read_message(&mut reader)?.context("no second response")?;
    assert_eq!(r.status(), Some(408), "{r:?}");
    assert_eq!(
        backend.requests(),
        1,
        "only the first request went upstream"
    );
    Ok(())
}

#[test]
fn kept_alive_connections_close_after_idle_timeout() -> Result<()> {
    let backend = Backend::start("be1", None, "127.0.0.1:0".parse()?)?;
    let s = setup("{idle_timeout: 1s}", backend.addr())?;
    let mut c = connect(s.listener)?;
    c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")?;
    let mut reader = BufReader::new(c.try_clone()?);
    let r = http::read_message(&mut reader)?.context("no response")?;
    assert_eq!(r.status(), Some(200));
    let started = Instant::now();
    expect_closed(&mut reader)?;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "closed after {took:?}, expected about 1s"
    );
    Ok(())
}

#[test]
fn connections_beyond_max_connections_are_closed_at_once() -> Result<()> {
    let backend = Backend::start("be1", None, "127.0.0.1:0".parse()?)?;
    let s = setup("{max_connections: 2}", backend.addr())?;
    let request = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..2 {
        // The readiness probe's connection may hold a slot for a moment.
        let reader = wait::until("a connection slot", Duration::from_secs(5), || {
            let mut c = connect(s.listener)?;
            c.write_all(request)?;
            let mut reader = BufReader::new(c);
            let r = http::read_message(&mut reader).ok().flatten();
            Ok(r.filter(|r| r.status() == Some(200)).map(|_| reader))
        })?;
        held.push(reader);
    }
    let mut third = connect(s.listener)?;
    let started = Instant::now();
    // The request may race the close; either way no response comes.
    let _ = third.write_all(request);
    expect_closed(&mut third)?;
    assert!(started.elapsed() < Duration::from_secs(2), "closed at once");

    // A slot frees when a held connection closes.
    drop(held.pop());
    let r = wait::until("a free connection slot", Duration::from_secs(5), || {
        Ok(http::get(s.listener, "/")
            .ok()
            .filter(|m| m.status() == Some(200)))
    })?;
    assert_eq!(r.header("x-backend"), Some("be1"));
    // The held connection still works.
    let reader = &mut held[0];
    reader.get_mut().write_all(request)?;
    let r = http::read_message(reader)?.context("no response")?;
    assert_eq!(r.status(), Some(200));

    let metrics = http::get(s.admin, "/metrics")?.text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("edge_listener_connections_refused_total{listener=\"web\"}")),
        "{metrics}"
    );
    Ok(())
}

/// A WebSocket-ish upstream on raw sockets: answers an Upgrade with 101,
/// then echoes every byte.
fn upgrade_echo_server() -> Result<(SocketAddr, std::thread::JoinHandle<Result<String>>)> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    let t = std::thread::spawn(move || -> Result<String> {
        let (s, _) = l.accept()?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut reader = BufReader::new(s.try_clone()?);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            ensure!(reader.read_line(&mut line)? > 0, "closed inside the head");
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let mut w = s;
        w.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
        )?;
        let mut buf = [0u8; 1024];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                return Ok(head);
            }
            w.write_all(&buf[..n])?;
        }
    });
    Ok((addr, t))
}

#[test]
fn websocket_upgrade_is_passed_through() -> Result<()> {
    let (upstream, server) = upgrade_echo_server()?;
    let s = setup("{}", upstream)?;
    let mut c = connect(s.listener)?;
    c.write_all(
        b"GET /chat HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )?;
    let mut reader = BufReader::new(c.try_clone()?);
    let r = http::read_message(&mut reader)?.context("no response to the upgrade")?;
    assert_eq!(r.status(), Some(101), "{r:?}");
    assert_eq!(r.header("upgrade"), Some("websocket"));

    // Opaque bytes both ways, as WebSocket frames would be.
    for msg in [&b"\x81\x05hello"[..], b"\x82\x03\x00\x01\x02"] {
        c.write_all(msg)?;
        let mut back = vec![0u8; msg.len()];
        reader.read_exact(&mut back)?;
        assert_eq!(back, msg);
    }
    // A tunnel may stay quiet longer than the body-rate grace (5 s): the
    // minimum body rate is for uploads, not for what the application paces.
    std::thread::sleep(Duration::from_millis(5_500));
    c.write_all(b"\x81\x02hi")?;
    let mut back = [0u8; 4];
    reader.read_exact(&mut back)?;
    assert_eq!(&back, b"\x81\x02hi");
    drop(reader);
    drop(c);
    let head = server
        .join()
        .map_err(|_| anyhow::anyhow!("upstream thread panicked"))??;
    let head = head.to_ascii_lowercase();
    assert!(head.contains("upgrade: websocket"), "{head}");
    assert!(
        head.contains("sec-websocket-key: dghlihnhbxbszsbub25jzq=="),
        "{head}"
    );
    Ok(())
}

/// Reads and discards until the peer closes (a reset counts); fails after
/// the stream's read timeout.
fn drain_until_closed(s: &mut impl Read) -> Result<()> {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(()),
            // OpenSSL reports a peer that closes without close_notify so.
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e).context("waiting for the connection to close"),
        }
    }
}

#[test]
fn tls_listener_limits_h2_preface_idle_body_and_max_connections() -> Result<()> {
    let backend = Backend::start("be1", None, "127.0.0.1:0".parse()?)?;
    let dir = tempfile::tempdir()?;
    let ca = Ca::new("limits CA")?;
    ca.issue("web", &["web.test"])?.write(dir.path(), "web")?;
    let at = endpoints(1);
    let (listener, admin) = (at.listeners[0], at.admin);
    let yaml = format!(
        "\
listeners:
  - name: tls
    address: '{listener}'
    pool: app
    tls: {{certificates: [{{cert: web.pem, key: web.key}}]}}
    limits: {{header_read_timeout: 1s, idle_timeout: 1s, max_connections: 2, max_body_size: 1KiB}}
pools:
  - name: app
    backends: [{{address: '{}'}}]
admin: {{address: '{admin}'}}
server: {{threads: 1}}
",
        backend.addr()
    );
    let _edge = start_edge(dir.path(), &yaml, &at)?;
    let h1 = ClientOptions {
        sni: Some("web.test"),
        ..Default::default()
    };
    let h2 = ClientOptions {
        alpn: &["h2"],
        ..h1.clone()
    };

    // Two connections fill the listener; the third fails its handshake.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = tls::connect(listener, &ca.cert, &h1)?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: web.test\r\n\r\n")?;
        let mut reader = BufReader::new(s);
        let r = http::read_message(&mut reader)?.context("no response")?;
        assert_eq!(r.status(), Some(200));
        held.push(reader);
    }
    let refused = tls::connect(listener, &ca.cert, &h1);
    assert!(refused.is_err(), "a third connection must be refused");
    drop(held);
    wait::until("a free connection slot", Duration::from_secs(5), || {
        Ok(tls::connect(listener, &ca.cert, &h1).ok())
    })?;

    // An h2 client that never sends its preface is cut off.
    let mut silent = tls::connect(listener, &ca.cert, &h2)?;
    assert_eq!(silent.ssl().selected_alpn_protocol(), Some(&b"h2"[..]));
    let started = Instant::now();
    drain_until_closed(&mut silent)?;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "closed after {took:?}, expected about 1s"
    );

    // One that sends it and then nothing is closed after idle_timeout.
    let mut idle = wait::until("a connection slot", Duration::from_secs(5), || {
        Ok(tls::connect(listener, &ca.cert, &h2).ok())
    })?;
    idle.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")?;
    idle.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0])?; // empty SETTINGS
    let started = Instant::now();
    drain_until_closed(&mut idle)?;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "closed after {took:?}, expected about 1s"
    );

    // max_body_size over HTTP/2: declared (content-length) and streamed.
    let ca_file = ca.write(dir.path(), "ca")?;
    let h2_post = |streamed: bool| -> Result<String> {
        let mut cmd = std::process::Command::new("curl");
        cmd.args(["-sS", "--http2", "--max-time", "10", "--cacert"])
            .arg(&ca_file)
            .arg("--resolve")
            .arg(format!("web.test:{}:{}", listener.port(), listener.ip()))
            .args(["-o", "/dev/null", "-w", "%{http_version} %{http_code}"]);
        if streamed {
            // From a pipe: no length is known, so none is declared.
            cmd.args(["-X", "POST", "-T", "-"]);
        } else {
            cmd.args(["--data-binary", "@-"]);
        }
        let mut child = cmd
            .arg(format!("https://web.test:{}/up", listener.port()))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            // curl may stop reading once it has its answer.
            let _ = stdin.write_all(&[b'z'; 4096]);
        }
        let out = child.wait_with_output()?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    for streamed in [false, true] {
        // "0 000" is curl without a response. It happens now and then: the
        // 413 goes out before the request body has been read, the h2 stream
        // is then reset (RST_STREAM), and the reset sometimes overtakes
        // the queued response inside Pingora/h2 or inside curl 7.88's
        // upload. A retry gets the answer; anything else fails the test.
        let got = wait::until("an HTTP/2 answer", Duration::from_secs(5), || {
            Ok(Some(h2_post(streamed)?).filter(|o| o != "0 000"))
        })?;
        assert_eq!(got, "2 413", "streamed: {streamed}");
    }

    // The third connection, and any the wait for a free slot made while
    // the first two were still closing (more of them on a busy machine).
    let metrics = http::get(admin, "/metrics")?.text();
    let refused = edge_tests::proxy::sample(
        &metrics,
        "edge_listener_connections_refused_total{listener=\"tls\"} ",
    );
    assert!(refused.is_some_and(|n| n >= 1.0), "{metrics}");
    Ok(())
}
