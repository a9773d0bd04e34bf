//! The PROXY protocol on edge's listeners (`proxy_protocol.accept_from`),
//! on loopback with a real backend:
//!
//! - a real HAProxy in front of a plain HTTP listener, one frontend
//!   sending v1 and one v2: the backend's X-Forwarded-For names the
//!   client that connected to HAProxy, not HAProxy.
//! - a trusted peer that opens without a header is closed unanswered and
//!   counted (`missing`), a bad header too (`malformed`); an untrusted
//!   peer is served as it is (and a header from it is never believed); a
//!   hand-written v1 header's client becomes X-Forwarded-For, and
//!   `PROXY UNKNOWN` keeps the peer's own address.
//! - a TLS listener reads the header (v1 or v2) before the handshake: the
//!   header's client reaches the backend over HTTPS, and a trusted peer
//!   that starts the handshake at once is refused.
//!
//! The trusted peer is 127.0.0.1 (HAProxy is told to connect from there);
//! test clients that must not be trusted bind 127.0.0.55 and 127.0.0.66.

use anyhow::{Context, Result, anyhow, bail, ensure};
use edge_tests::{
    backend::Backend,
    http::{self, Message},
    metrics::{metric, wait_metric},
    process::{Process, program},
    proxy::{Proxy, unique_loopback},
    tls::{self, Ca},
    wait,
};
use openssl::{
    ssl::{SslConnector, SslMethod, SslStream, SslVerifyMode},
    x509::store::X509StoreBuilder,
};
use std::{
    ffi::OsStr,
    io::{BufReader, ErrorKind, Read, Write},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream},
    time::Duration,
};

/// How long any awaited condition may take.
const DEADLINE: Duration = Duration::from_secs(15);

/// The peer every listener here trusts to send a PROXY header.
const TRUSTED: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
/// The client behind HAProxy (not trusted by edge).
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 55));
/// A client that connects to edge directly (not trusted).
const STRANGER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 66));

/// The refusal counter.
const REFUSED: &str = "edge_proxy_protocol_refused_total";

/// The v2 signature.
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// Starts edge with one listener, `name`, that accepts the PROXY protocol
/// from [`TRUSTED`] and sends everything to `backend`; `extra` is added to
/// the listener (e.g. its `tls` section). Files go in the config's
/// directory through `prepare`.
fn start(
    name: &str,
    extra: &str,
    backend: &Backend,
    prepare: impl FnOnce(&std::path::Path) -> Result<()>,
) -> Result<Proxy> {
    let backend = backend.addr();
    Proxy::start_with(prepare, move |listen, _| {
        format!(
            "\
listeners:
  - name: {name}
    address: {listen}
    proxy_protocol: {{ accept_from: [{TRUSTED}/32] }}
    pool: app
{extra}
pools:
  - name: app
    backends: [{{ address: '{backend}' }}]
"
        )
    })
}

/// `name`'s refusals for `reason` so far (0 before the first).
fn refused(p: &Proxy, listener: &str, reason: &str) -> Result<f64> {
    Ok(metric(
        &p.metrics()?,
        REFUSED,
        &[("listener", listener), ("reason", reason)],
    )
    .unwrap_or(0.0))
}

/// Waits until `listener`'s refusals for `reason` are `want`.
fn wait_refused(p: &Proxy, listener: &str, reason: &str, want: f64) -> Result<()> {
    wait_metric(
        || p.metrics(),
        REFUSED,
        &[("listener", listener), ("reason", reason)],
        DEADLINE,
        |v| v == want,
    )?;
    Ok(())
}

/// The X-Forwarded-For the backend received, from its echo of the
/// request head (which must have been served).
fn forwarded_for(resp: &Message) -> Result<String> {
    ensure!(resp.status() == Some(200), "not served: {resp:?}");
    let text = resp.text();
    text.lines()
        .find_map(|l| l.strip_prefix("x-forwarded-for: "))
        .map(str::to_string)
        .with_context(|| format!("no X-Forwarded-For reached the backend:\n{text}"))
}

/// A GET of `path` for `addr`, with the extra header lines `extra`
/// (each ending in CRLF), closing the connection after the answer.
fn get_request(addr: SocketAddr, path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n").into_bytes()
}

/// A v1 header naming `client` (TCP4).
fn v1(client: SocketAddr, local: SocketAddr) -> Vec<u8> {
    format!(
        "PROXY TCP4 {} {} {} {}\r\n",
        client.ip(),
        local.ip(),
        client.port(),
        local.port()
    )
    .into_bytes()
}

/// A v2 `PROXY` header naming `client` (TCP over IPv4), written by hand.
fn v2(client: SocketAddr, local: SocketAddr) -> Result<Vec<u8>> {
    let (SocketAddr::V4(c), SocketAddr::V4(l)) = (client, local) else {
        bail!("v2 here is written for IPv4 only");
    };
    let mut h = V2_SIGNATURE.to_vec();
    // Version 2, command PROXY; TCP over IPv4; 12 bytes of addresses.
    h.extend_from_slice(&[0x21, 0x11, 0x00, 0x0c]);
    h.extend_from_slice(&c.ip().octets());
    h.extend_from_slice(&l.ip().octets());
    h.extend_from_slice(&c.port().to_be_bytes());
    h.extend_from_slice(&l.port().to_be_bytes());
    Ok(h)
}

/// Connects from `from` to `addr`, writes `bytes` and reads the answer.
fn exchange(from: IpAddr, addr: SocketAddr, bytes: &[u8]) -> Result<Message> {
    let mut s = http::connect_from(from, addr, DEADLINE)?;
    s.set_read_timeout(Some(DEADLINE))?;
    s.write_all(bytes)?;
    let mut r = BufReader::new(s);
    http::read_message(&mut r)?.context("edge closed the connection without a response")
}

/// Connects from `from` to `addr`, writes `bytes`, and expects edge to
/// close the connection without answering a byte.
fn closed_unanswered(from: IpAddr, addr: SocketAddr, bytes: &[u8]) -> Result<()> {
    let mut s = http::connect_from(from, addr, DEADLINE)?;
    s.set_read_timeout(Some(DEADLINE))?;
    s.write_all(bytes)?;
    let mut got = Vec::new();
    match s.read_to_end(&mut got) {
        Ok(_) => {}
        // Closed with the request still unread: the kernel resets it.
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => bail!(
            "edge did not close the connection: {e} (answered so far: {:?})",
            String::from_utf8_lossy(&got)
        ),
    }
    ensure!(
        got.is_empty(),
        "edge answered a connection it should have closed: {:?}",
        String::from_utf8_lossy(&got)
    );
    Ok(())
}

// ---------------------------------------------------------------------
// HAProxy in front
// ---------------------------------------------------------------------

/// A real HAProxy in TCP mode with two frontends in front of `edge`: one
/// sends the v1 header, the other v2. Stopped by its PID when dropped.
struct Haproxy {
    process: Process,
    v1: SocketAddr,
    v2: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    fn start(edge: SocketAddr) -> Result<Self> {
        let program = program("haproxy").context(
            "haproxy is not installed: the PROXY protocol test needs a real HAProxy \
             (Debian package haproxy)",
        )?;
        let dir = tempfile::tempdir()?;
        // An address of its own, so fixed ports cannot collide.
        let ip = unique_loopback();
        let (v1, v2) = (SocketAddr::new(ip, 18080), SocketAddr::new(ip, 18081));
        // `source`: HAProxy connects to edge from the trusted address
        // whatever the kernel would pick.
        let config = format!(
            "\
global
    maxconn 100

defaults
    mode tcp
    timeout connect 5s
    timeout client 5s
    timeout server 5s

listen v1
    bind {v1}
    server e {edge} source {TRUSTED} send-proxy

listen v2
    bind {v2}
    server e {edge} source {TRUSTED} send-proxy-v2
"
        );
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg, config)?;
        let mut process = Process::spawn(
            "haproxy",
            None,
            &program,
            &[OsStr::new("-f"), cfg.as_os_str(), OsStr::new("-db")],
            &dir.path().join("haproxy.log"),
        )?;
        let ready = wait::until("haproxy to accept connections", DEADLINE, || {
            process.check_running()?;
            Ok([v1, v2]
                .iter()
                .all(|a| TcpStream::connect_timeout(a, Duration::from_secs(1)).is_ok())
                .then_some(()))
        });
        ready.map_err(|e| e.context(format!("haproxy log:\n{}", process.log_text())))?;
        Ok(Self {
            process,
            v1,
            v2,
            _dir: dir,
        })
    }
}

#[test]
fn haproxy_in_front_sends_v1_and_v2() -> Result<()> {
    let backend = Backend::start("be", None, "127.0.0.1:0".parse()?)?;
    let p = start("web", "", &backend, |_| Ok(()))?;
    let mut haproxy = Haproxy::start(p.listen)?;

    for (version, front) in [("v1", haproxy.v1), ("v2", haproxy.v2)] {
        let resp = http::get_from(CLIENT, front, &format!("/{version}"), DEADLINE)
            .with_context(|| format!("through HAProxy's {version} frontend"))
            .with_context(|| format!("haproxy log:\n{}", haproxy.process.log_text()))?;
        let xff = forwarded_for(&resp).with_context(|| format!("the {version} frontend"))?;
        let last = xff.rsplit(',').next().unwrap_or("").trim();
        assert_eq!(
            last, "127.0.0.55",
            "{version}: the backend sees the client behind HAProxy (X-Forwarded-For: {xff})"
        );
        assert!(
            !xff.contains(&TRUSTED.to_string()),
            "{version}: HAProxy's own address is not the client (X-Forwarded-For: {xff})"
        );
    }
    haproxy.process.check_running()?;

    // HAProxy always opened with a valid header (its readiness probes may
    // have closed before sending anything: those count as `closed`).
    for reason in ["missing", "malformed", "too_large", "timeout"] {
        assert_eq!(
            refused(&p, "web", reason)?,
            0.0,
            "no refusal for {reason}:\n{}",
            p.metrics()?
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------
// trusted and untrusted peers, by hand
// ---------------------------------------------------------------------

#[test]
fn a_trusted_peer_without_a_header_is_refused() -> Result<()> {
    let backend = Backend::start("be", None, "127.0.0.1:0".parse()?)?;
    let p = start("web", "", &backend, |_| Ok(()))?;
    let to = p.listen;

    // A trusted peer that speaks HTTP at once: closed unanswered, counted.
    closed_unanswered(TRUSTED, to, &get_request(to, "/no-header", ""))?;
    wait_refused(&p, "web", "missing", 1.0)?;
    assert_eq!(
        backend.requests(),
        0,
        "the request never reached the backend"
    );

    // An untrusted peer needs no header: served, with its own address.
    let resp = exchange(STRANGER, to, &get_request(to, "/stranger", ""))?;
    assert_eq!(forwarded_for(&resp)?, "127.0.0.66");

    // A v1 header from the trusted peer: its client is the client, and
    // what the client wrote in X-Forwarded-For is not believed.
    let mut bytes = v1("192.0.2.9:5555".parse()?, "127.0.0.1:80".parse()?);
    assert_eq!(bytes, b"PROXY TCP4 192.0.2.9 127.0.0.1 5555 80\r\n");
    bytes.extend(get_request(to, "/v1", "X-Forwarded-For: 203.0.113.1\r\n"));
    let resp = exchange(TRUSTED, to, &bytes)?;
    assert_eq!(forwarded_for(&resp)?, "192.0.2.9");

    // A v2 header by hand, too.
    let mut bytes = v2("198.51.100.7:4444".parse()?, "127.0.0.1:80".parse()?)?;
    bytes.extend(get_request(to, "/v2", ""));
    let resp = exchange(TRUSTED, to, &bytes)?;
    assert_eq!(forwarded_for(&resp)?, "198.51.100.7");

    // UNKNOWN (a health check): the peer speaks for itself.
    let mut bytes = b"PROXY UNKNOWN\r\n".to_vec();
    bytes.extend(get_request(to, "/unknown", ""));
    let resp = exchange(TRUSTED, to, &bytes)?;
    assert_eq!(forwarded_for(&resp)?, TRUSTED.to_string());

    // A header that is not one: closed unanswered, counted apart.
    let served = backend.requests();
    let mut bytes = b"PROXY TCP4 nonsense\r\n".to_vec();
    bytes.extend(get_request(to, "/malformed", ""));
    closed_unanswered(TRUSTED, to, &bytes)?;
    wait_refused(&p, "web", "malformed", 1.0)?;

    // A header from an untrusted peer is never believed: it is the start
    // of an HTTP request (a bad one), and nothing reaches the backend.
    let mut bytes = v1("192.0.2.9:5555".parse()?, "127.0.0.1:80".parse()?);
    bytes.extend(get_request(to, "/forged", ""));
    let mut s = http::connect_from(STRANGER, to, DEADLINE)?;
    s.set_read_timeout(Some(DEADLINE))?;
    s.write_all(&bytes)?;
    // (Closed without an answer, or a 400: either way, not served.)
    if let Ok(Some(resp)) = http::read_message(&mut BufReader::new(s)) {
        assert_ne!(
            resp.status(),
            Some(200),
            "a forged header must not be served: {resp:?}"
        );
    }
    assert_eq!(
        backend.requests(),
        served,
        "nothing more reached the backend"
    );

    // Each refusal was counted once, under its own reason.
    assert_eq!(refused(&p, "web", "missing")?, 1.0);
    assert_eq!(refused(&p, "web", "malformed")?, 1.0);
    Ok(())
}

// ---------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------

/// A TLS handshake over `tcp` (whatever was written on it before),
/// trusting only `ca`, with SNI and name check for edge.test.
fn handshake(tcp: TcpStream, ca: &Ca) -> Result<SslStream<TcpStream>> {
    let mut b = SslConnector::builder(SslMethod::tls_client())?;
    let mut store = X509StoreBuilder::new()?;
    store.add_cert(ca.cert.clone())?;
    b.set_verify_cert_store(store.build())?;
    b.set_verify(SslVerifyMode::PEER);
    let connector = b.build();
    tcp.set_read_timeout(Some(DEADLINE))?;
    connector
        .connect("edge.test", tcp)
        .map_err(|e| anyhow!("TLS handshake: {e}"))
}

/// Connects from `from` to `addr`, writes `preamble` in the clear, then
/// does the TLS handshake over the same connection.
fn tls_after(
    from: IpAddr,
    addr: SocketAddr,
    preamble: &[u8],
    ca: &Ca,
) -> Result<SslStream<TcpStream>> {
    let mut tcp = http::connect_from(from, addr, DEADLINE)?;
    tcp.write_all(preamble)?;
    handshake(tcp, ca)
}

#[test]
fn tls_listener_reads_the_header_before_the_handshake() -> Result<()> {
    let backend = Backend::start("be", None, "127.0.0.1:0".parse()?)?;
    let ca = Ca::new("edge test CA")?;
    let leaf = ca.issue("edge", &["edge.test"])?;
    // Relative paths: they resolve against the configuration's directory.
    let tls_section = "    tls:\n      certificates:\n        - { cert: edge.pem, key: edge.key }";
    let p = start("secure", tls_section, &backend, |dir| {
        leaf.write(dir, "edge")?;
        Ok(())
    })?;
    let to = p.listen;

    // A v1 header in the clear, then TLS on the same connection.
    let header = v1("192.0.2.9:5555".parse()?, "127.0.0.1:443".parse()?);
    let s = tls_after(TRUSTED, to, &header, &ca)?;
    let resp = tls::get(s, "edge.test", "/v1")?;
    assert_eq!(forwarded_for(&resp)?, "192.0.2.9");
    assert!(
        resp.text().contains("x-forwarded-proto: https"),
        "{}",
        resp.text()
    );

    // And a v2 header.
    let header = v2("198.51.100.7:4444".parse()?, "127.0.0.1:443".parse()?)?;
    let s = tls_after(TRUSTED, to, &header, &ca)?;
    let resp = tls::get(s, "edge.test", "/v2")?;
    assert_eq!(forwarded_for(&resp)?, "198.51.100.7");

    // A trusted peer that starts the handshake at once: its ClientHello
    // is no header, and the connection is closed.
    let err = tls_after(TRUSTED, to, b"", &ca)
        .err()
        .context("a trusted peer without a header must not complete a handshake")?;
    assert!(format!("{err:#}").contains("handshake"), "{err:#}");
    wait_refused(&p, "secure", "missing", 1.0)?;

    // An untrusted client does TLS directly, with its own address.
    let s = tls_after(STRANGER, to, b"", &ca)?;
    let resp = tls::get(s, "edge.test", "/stranger")?;
    assert_eq!(forwarded_for(&resp)?, "127.0.0.66");
    assert_eq!(backend.requests(), 3, "three requests were served");
    Ok(())
}
