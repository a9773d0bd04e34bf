//! Request and response transformations, XML → JSON, JSON Schema
//! validation and API versions through a real edge on loopback, with real
//! clients and real backends:
//!
//! - request transforms: the path from a template (a named capture of the
//!   route's regex, or the whole path), query remove/rename/set/add, JSON
//!   body remove/rename/set/add, seen by a backend that echoes what it got
//!   as JSON; other bodies byte for byte; chunked bodies; 413 over
//!   `max_body`.
//! - response transforms: JSON ops on plain, gzip, brotli and chunked
//!   upstream answers (served decoded); other encodings, non-JSON bodies and
//!   JSON over `max_body` untouched.
//! - XML → JSON exactly as the mapping says (nested, attributes, CDATA,
//!   entities, namespaces); malformed or too deep documents, any DOCTYPE
//!   (billion laughs, external entities: nothing is ever fetched) and
//!   documents over `max_body` are a 502.
//! - validation against an inline schema, a schema file and a declared
//!   draft: 400 with the errors, 415, 413, and the backend never sees a
//!   refused request.
//! - versions by path prefix, `Accept-Version`, `?version=` and a media
//!   type parameter; deprecated routes answer `Deprecation`, `Sunset` and
//!   `Link`.
//! - `edge check` accepts all of it and locates each mistake.
//!
//! The upstreams that must answer something particular (echo the request
//! as JSON, serve fixed documents, answer chunked) are the shared
//! [`Backend`] with a handler, or a small chunked server written here.

use anyhow::{Context, Result, bail, ensure};
use edge_tests::{
    backend::{Backend, Response},
    http::{self, Message},
    metrics::metric,
    proxy::Proxy,
    wait,
};
use serde_json::{Value, json};
use std::{
    io::{BufReader, Cursor, ErrorKind, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant, UNIX_EPOCH},
};

/// How long any awaited condition may take.
const DEADLINE: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------
// edge, clients and what they got back
// ---------------------------------------------------------------------

/// Starts edge with `yaml`, its `@NAME@` placeholders replaced: `@LISTEN@`
/// by the listener's address, the others by `vars`. `files` are written
/// into the config's directory first.
fn start(yaml: &str, vars: &[(&str, String)], files: &[(&str, String)]) -> Result<Proxy> {
    let files: Vec<(String, String)> = files
        .iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    let mut yaml = yaml.to_string();
    for (k, v) in vars {
        yaml = yaml.replace(&format!("@{k}@"), v);
    }
    Proxy::start_with(
        move |dir| {
            for (name, text) in &files {
                std::fs::write(dir.join(name), text)?;
            }
            Ok(())
        },
        move |listen, _| yaml.replace("@LISTEN@", &listen.to_string()),
    )
}

/// Any port on 127.0.0.1.
fn any_port() -> Result<SocketAddr> {
    Ok("127.0.0.1:0".parse()?)
}

/// A response, readable in a failure message (long bodies cut).
fn show(m: &Message) -> String {
    let mut s = format!("{}\n", m.start);
    for (k, v) in &m.headers {
        s.push_str(&format!("{k}: {v}\n"));
    }
    s.push('\n');
    if m.body.len() > 2000 {
        s.push_str(&String::from_utf8_lossy(&m.body[..2000]));
        s.push_str(&format!("... ({} bytes)", m.body.len()));
    } else {
        s.push_str(&m.text());
    }
    s
}

/// Every value of header `name` of `m`.
fn header_values(m: &Message, name: &str) -> Vec<String> {
    m.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
        .collect()
}

/// The body of a 200 as JSON.
fn ok_json(m: &Message) -> Result<Value> {
    ensure!(m.status() == Some(200), "expected 200, got:\n{}", show(m));
    serde_json::from_slice(&m.body).with_context(|| format!("not JSON:\n{}", show(m)))
}

/// An answer made by edge itself: `status`, `application/json`, a body
/// `{"message": ...}` whose message starts with `prefix`. Returns the body.
fn expect_error(m: &Message, status: u16, prefix: &str) -> Result<Value> {
    ensure!(
        m.status() == Some(status),
        "expected {status}, got:\n{}",
        show(m)
    );
    ensure!(
        m.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "edge's own answers are JSON:\n{}",
        show(m)
    );
    let body: Value = serde_json::from_slice(&m.body).with_context(|| show(m))?;
    let message = body["message"]
        .as_str()
        .with_context(|| format!("no message:\n{}", show(m)))?;
    ensure!(
        message.starts_with(prefix),
        "expected a message starting with {prefix:?}:\n{}",
        show(m)
    );
    Ok(body)
}

/// Writes `wire` on a new connection and reads one response. edge may
/// answer (a 413) and close before it has read everything: what could not
/// be written then does not matter, the answer does.
fn exchange(addr: SocketAddr, wire: &[u8]) -> Result<Message> {
    exchange_within(addr, wire, Duration::from_secs(10))
}

/// Like [`exchange`], waiting at most `read_timeout` for each read.
fn exchange_within(addr: SocketAddr, wire: &[u8], read_timeout: Duration) -> Result<Message> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(read_timeout))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    if let Err(e) = s.write_all(wire) {
        match e.kind() {
            ErrorKind::BrokenPipe
            | ErrorKind::ConnectionReset
            | ErrorKind::WouldBlock
            | ErrorKind::TimedOut => {}
            _ => return Err(e).context("sending the request"),
        }
    }
    http::read_message(&mut BufReader::new(s))?.context("closed without a response")
}

/// How a request body is framed.
#[derive(Clone, Copy)]
enum Framing {
    /// `Content-Length`.
    Length,
    /// `Transfer-Encoding: chunked`, in chunks of this many bytes.
    Chunked(usize),
}

/// `method path` with `headers` and `body` framed as told, on a new
/// connection.
fn send_body(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    framing: Framing,
) -> Result<Message> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let wire = match framing {
        Framing::Length => {
            head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
            let mut wire = head.into_bytes();
            wire.extend_from_slice(body);
            wire
        }
        Framing::Chunked(size) => {
            head.push_str("Transfer-Encoding: chunked\r\n\r\n");
            let mut wire = head.into_bytes();
            for c in body.chunks(size.max(1)) {
                wire.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                wire.extend_from_slice(c);
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b"0\r\n\r\n");
            wire
        }
    };
    exchange(addr, &wire)
}

/// `POST path` with a JSON body (Content-Length).
fn post_json(addr: SocketAddr, path: &str, body: &[u8]) -> Result<Message> {
    send_body(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body,
        Framing::Length,
    )
}

/// Waits until sample `name` with `labels` satisfies `want`.
fn wait_metric(
    p: &Proxy,
    name: &str,
    labels: &[(&str, &str)],
    want: impl Fn(f64) -> bool,
) -> Result<f64> {
    edge_tests::metrics::wait_metric(|| p.metrics(), name, labels, DEADLINE, want)
}

// ---------------------------------------------------------------------
// upstreams
// ---------------------------------------------------------------------

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Result<Vec<u8>> {
    ensure!(text.len().is_multiple_of(2), "odd hex length");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).context("bad hex"))
        .collect()
}

/// The echoing upstream: `200 application/json` with the request line,
/// header fields and body (hex, so byte for byte) it received.
fn echo_json(req: &Message) -> Response {
    let mut parts = req.start.split_whitespace();
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let headers: Vec<Value> = req.headers.iter().map(|(k, v)| json!([k, v])).collect();
    let body = json!({
        "method": method,
        "target": target,
        "headers": headers,
        "body_hex": hex(&req.body),
    });
    Response::new(200, body.to_string()).header("Content-Type", "application/json")
}

fn echo_backend(name: &str) -> Result<Backend> {
    Backend::start_with(name, None, any_port()?, Arc::new(echo_json))
}

/// What the echoing upstream received.
#[derive(Debug)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    /// Reads it from edge's answer, which must be the upstream's 200.
    fn of(m: &Message) -> Result<Self> {
        let v = ok_json(m)?;
        let text = |k: &str| {
            v[k].as_str()
                .map(str::to_string)
                .with_context(|| format!("no {k} in the echo:\n{}", show(m)))
        };
        let headers = v["headers"]
            .as_array()
            .with_context(|| format!("no headers in the echo:\n{}", show(m)))?
            .iter()
            .filter_map(|h| Some((h[0].as_str()?.to_string(), h[1].as_str()?.to_string())))
            .collect();
        let seen = Self {
            method: text("method")?,
            target: text("target")?,
            headers,
            body: unhex(&text("body_hex")?)?,
        };
        // A changed body goes with a length that says so.
        if let Some(len) = seen.header("content-length") {
            ensure!(
                len.parse::<usize>().ok() == Some(seen.body.len()),
                "upstream got Content-Length {len} with {} bytes: {seen:?}",
                seen.body.len()
            );
        }
        Ok(seen)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// The raw `name=value` pairs of the query, in order.
    fn raw_pairs(&self) -> Vec<&str> {
        match self.target.split_once('?') {
            Some((_, q)) => q.split('&').filter(|p| !p.is_empty()).collect(),
            None => Vec::new(),
        }
    }

    /// The decoded names of the query's pairs, in order.
    fn names(&self) -> Vec<String> {
        self.raw_pairs()
            .iter()
            .map(|p| decode(p.split_once('=').map_or(*p, |(k, _)| k)))
            .collect()
    }

    /// The decoded values of query parameter `name` (decoded too), in order.
    fn values(&self, name: &str) -> Vec<String> {
        self.raw_pairs()
            .iter()
            .filter_map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((*p, ""));
                (decode(k) == name).then(|| decode(v))
            })
            .collect()
    }

    fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "the upstream got a body that is not JSON: {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// A query component, percent-decoded (`+` is a space).
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The path of a request the upstream received.
fn target_path(req: &Message) -> String {
    let target = req.start.split_whitespace().nth(1).unwrap_or("/");
    target.split('?').next().unwrap_or("/").to_string()
}

/// The last segment of a request's path.
fn last_segment(req: &Message) -> String {
    target_path(req)
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// An upstream on 127.0.0.1 that answers every request with `200`, the
/// given content type and `body` sent chunked (no Content-Length), which
/// the shared [`Backend`] never does.
struct ChunkedOrigin {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl ChunkedOrigin {
    fn start(content_type: &str, body: &[u8]) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let mut wire = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        .into_bytes();
        for c in body.chunks(8192) {
            wire.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            wire.extend_from_slice(c);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"0\r\n\r\n");
        let wire = Arc::new(wire);
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (requests, stop) = (requests.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((s, _)) => {
                            let (wire, requests) = (wire.clone(), requests.clone());
                            std::thread::spawn(move || {
                                let _ = serve_chunked(s, &wire, &requests);
                            });
                        }
                        // Nothing to accept: look at the stop flag again soon.
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Ok(Self {
            addr,
            requests,
            stop,
            accept: Some(accept),
        })
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }
}

impl Drop for ChunkedOrigin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// Answers every request on `s` with `wire`, until the peer closes.
fn serve_chunked(s: TcpStream, wire: &[u8], requests: &AtomicUsize) -> Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_nodelay(true)?;
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    while let Some(req) = http::read_message(&mut r)? {
        requests.fetch_add(1, Ordering::Relaxed);
        w.write_all(wire)?;
        if req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            break;
        }
    }
    Ok(())
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes)?;
    Ok(e.finish()?)
}

fn brotli_bytes(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut w = brotli::CompressorWriter::new(Vec::new(), 4096, 5, 22);
    w.write_all(bytes)?;
    // into_inner ends the stream.
    Ok(w.into_inner())
}

/// The body of `m` decoded by its Content-Encoding (none or gzip).
fn decoded(m: &Message) -> Result<Vec<u8>> {
    match m.header("content-encoding") {
        None => Ok(m.body.clone()),
        Some(c) if c.eq_ignore_ascii_case("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&m.body[..]).read_to_end(&mut out)?;
            Ok(out)
        }
        Some(other) => bail!("unexpected content-encoding {other}:\n{}", show(m)),
    }
}

// ---------------------------------------------------------------------
// 1. request transformations
// ---------------------------------------------------------------------

const REQUEST_CONFIG: &str = r#"
listeners:
  - name: web
    address: @LISTEN@
    routes:
      - name: people
        match: {path: {regex: '^/api/people/(?P<id>[0-9]+)$'}}
        proxy: {pool: app}
        transform:
          request:
            path: "/v2/people/{id}"
            query:
              remove: [debug]
              rename: {q: search}
              set: {format: json, note: "a b&c"}
              add: {source: edge}
            json:
              remove: ["/password"]
              rename: {"/user/name": "/user/full_name"}
              set: {"/meta/via": "edge"}
              add: {"/meta/version": 2, "/extra/flag": true}
            max_body: 64KiB
      - name: whole
        match: {path: {prefix: /whole}}
        proxy: {pool: app}
        transform:
          request:
            path: "/mirror{path}"
      - name: tight
        match: {path: {prefix: /tight}}
        proxy: {pool: app}
        transform:
          request:
            json: {set: {"/tight": true}}
            max_body: 1KiB
pools:
  - name: app
    backends: [{address: '@APP@'}]
"#;

#[test]
fn request_path_query_and_json_body_are_transformed_for_the_upstream() -> Result<()> {
    let app = echo_backend("app")?;
    let p = start(REQUEST_CONFIG, &[("APP", app.addr().to_string())], &[])?;

    // Path from the capture; query: remove (also a percent-encoded name),
    // rename, set (replaces every occurrence), add (appended though
    // present); untouched pairs byte for byte; JSON ops in the body.
    let body = br#"{"password":"s3cret","user":{"name":"Bob","age":30},"meta":{"version":1},"other":[1,2]}"#;
    let m = send_body(
        p.listen,
        "POST",
        "/api/people/42?debug=1&q=bob&format=xml&format=csv&source=client&de%62ug=2&keep=a%20b",
        &[("Content-Type", "application/json; charset=utf-8")],
        body,
        Framing::Length,
    )?;
    let seen = Seen::of(&m)?;
    ensure!(seen.method == "POST", "{seen:?}");
    ensure!(seen.path() == "/v2/people/42", "{seen:?}");
    let names = seen.names();
    ensure!(
        !names.iter().any(|n| n == "debug" || n == "q"),
        "debug and q are gone: {}",
        seen.target
    );
    ensure!(seen.values("search") == ["bob"], "{}", seen.target);
    ensure!(seen.values("format") == ["json"], "{}", seen.target);
    ensure!(seen.values("note") == ["a b&c"], "{}", seen.target);
    ensure!(
        seen.values("source") == ["client", "edge"],
        "{}",
        seen.target
    );
    ensure!(
        seen.raw_pairs().contains(&"keep=a%20b"),
        "an untouched pair is kept byte for byte: {}",
        seen.target
    );
    ensure!(
        seen.raw_pairs().last() == Some(&"source=edge"),
        "add appends: {}",
        seen.target
    );
    ensure!(
        seen.json()?
            == json!({
                "user": {"full_name": "Bob", "age": 30},
                "meta": {"version": 1, "via": "edge"},
                "other": [1, 2],
                "extra": {"flag": true},
            }),
        "upstream body: {}",
        String::from_utf8_lossy(&seen.body)
    );
    ensure!(
        seen.header("content-type") == Some("application/json; charset=utf-8"),
        "{seen:?}"
    );

    // A `+json` type is JSON too; add fills what is absent, set and add
    // create missing parents; with no query, set and add make one.
    let m = send_body(
        p.listen,
        "PUT",
        "/api/people/7",
        &[("Content-Type", "application/vnd.api+json")],
        br#"{"user":{"name":"Al"}}"#,
        Framing::Length,
    )?;
    let seen = Seen::of(&m)?;
    ensure!(seen.path() == "/v2/people/7", "{seen:?}");
    ensure!(seen.values("format") == ["json"], "{}", seen.target);
    ensure!(seen.values("source") == ["edge"], "{}", seen.target);
    ensure!(
        seen.json()?
            == json!({
                "user": {"full_name": "Al"},
                "meta": {"via": "edge", "version": 2},
                "extra": {"flag": true},
            }),
        "upstream body: {}",
        String::from_utf8_lossy(&seen.body)
    );

    // Not JSON by its type: the body goes byte for byte, even if it looks
    // like JSON; the path and query are still rewritten.
    let plain = b"{\"password\": \"s3cret\",  \"user\": {\"name\": \"Bob\"}}\n\xe2\x82\xac";
    let m = send_body(
        p.listen,
        "POST",
        "/api/people/9",
        &[("Content-Type", "text/plain; charset=utf-8")],
        plain,
        Framing::Length,
    )?;
    let seen = Seen::of(&m)?;
    ensure!(seen.path() == "/v2/people/9", "{seen:?}");
    ensure!(
        seen.body == plain,
        "text/plain changed: {:?}",
        String::from_utf8_lossy(&seen.body)
    );

    // A chunked body between 16 KiB and 64 KiB.
    let items: Vec<Value> = (0..300)
        .map(|n| json!({"n": n, "pad": "p".repeat(100)}))
        .collect();
    let big = json!({"password": "x", "user": {"name": "Chunky"}, "items": items});
    let big_bytes = big.to_string().into_bytes();
    ensure!(
        big_bytes.len() > 16 * 1024 && big_bytes.len() < 64 * 1024,
        "{} bytes",
        big_bytes.len()
    );
    let m = send_body(
        p.listen,
        "POST",
        "/api/people/1000",
        &[("Content-Type", "application/json")],
        &big_bytes,
        Framing::Chunked(4000),
    )?;
    let seen = Seen::of(&m)?;
    ensure!(seen.path() == "/v2/people/1000", "{seen:?}");
    ensure!(
        seen.json()?
            == json!({
                "user": {"full_name": "Chunky"},
                "items": items,
                "meta": {"via": "edge", "version": 2},
                "extra": {"flag": true},
            }),
        "the chunked body was not transformed as expected ({} bytes upstream)",
        seen.body.len()
    );

    // {path}: the whole path; the query string is kept.
    let m = http::send(p.listen, "GET", "/whole/a/b?x=1&y=2", &[], b"")?;
    let seen = Seen::of(&m)?;
    ensure!(seen.target == "/mirror/whole/a/b?x=1&y=2", "{seen:?}");
    ensure!(seen.body.is_empty(), "{seen:?}");

    wait_metric(
        &p,
        "edge_transforms_total",
        &[
            ("route", "people"),
            ("what", "request_json"),
            ("result", "ok"),
        ],
        |v| v >= 3.0,
    )?;
    Ok(())
}

#[test]
fn request_bodies_over_max_body_get_413_and_never_reach_the_upstream() -> Result<()> {
    let app = echo_backend("app")?;
    let p = start(REQUEST_CONFIG, &[("APP", app.addr().to_string())], &[])?;

    // One byte over the (default and greatest) 64 KiB, declared.
    let wrapper = br#"{"pad":""}"#.len();
    let over = json!({"pad": "x".repeat(64 * 1024 + 1 - wrapper)})
        .to_string()
        .into_bytes();
    ensure!(over.len() == 64 * 1024 + 1, "{} bytes", over.len());
    let m = post_json(p.listen, "/api/people/1", &over)?;
    expect_error(&m, 413, "")?;

    // The same, streamed: no declared length.
    let m = send_body(
        p.listen,
        "POST",
        "/api/people/1",
        &[("Content-Type", "application/json")],
        &over,
        Framing::Chunked(8192),
    )?;
    expect_error(&m, 413, "")?;
    ensure!(app.requests() == 0, "the upstream saw {}", app.requests());

    // Exactly at a smaller route limit passes, one byte more does not.
    let wrapper = br#"{"pad":""}"#.len();
    let at_limit = json!({"pad": "y".repeat(1024 - wrapper)})
        .to_string()
        .into_bytes();
    ensure!(at_limit.len() == 1024, "{} bytes", at_limit.len());
    let seen = Seen::of(&post_json(p.listen, "/tight/x", &at_limit)?)?;
    ensure!(
        seen.json()?["tight"] == json!(true),
        "{:?}",
        String::from_utf8_lossy(&seen.body)
    );
    let mut one_more = at_limit.clone();
    one_more.insert(1, b' ');
    let m = post_json(p.listen, "/tight/x", &one_more)?;
    expect_error(&m, 413, "")?;
    ensure!(
        app.requests() == 1,
        "only the request within the limit went upstream, the upstream saw {}",
        app.requests()
    );
    Ok(())
}

// ---------------------------------------------------------------------
// 2. response transformations
// ---------------------------------------------------------------------

const RESPONSE_CONFIG: &str = r#"
listeners:
  - name: web
    address: @LISTEN@
    routes:
      - name: resp
        match: {path: {prefix: /r}}
        proxy: {pool: app}
        transform:
          response:
            json:
              remove: ["/secret"]
              rename: {"/user/name": "/user/display"}
              set: {"/meta/served_by": "edge"}
              add: {"/meta/v": "2", "/meta/new": true}
      - name: small
        match: {path: {prefix: /small}}
        proxy: {pool: app}
        transform:
          response:
            json: {remove: ["/secret"]}
            max_body: 2KiB
      - name: chunked
        match: {path: {prefix: /chunked}}
        proxy: {pool: streamer}
        transform:
          response:
            json:
              remove: ["/secret"]
              rename: {"/user/name": "/user/display"}
              set: {"/meta/served_by": "edge"}
              add: {"/meta/v": "2", "/meta/new": true}
pools:
  - name: app
    backends: [{address: '@APP@'}]
  - name: streamer
    backends: [{address: '@STREAMER@'}]
"#;

/// What the JSON upstream answers.
fn upstream_doc() -> Value {
    json!({"id": 1, "secret": "x", "user": {"name": "Ann", "age": 7}, "meta": {"v": "1"}, "list": [1, 2, 3]})
}

/// [`upstream_doc`] after the `resp` route's ops.
fn transformed_doc() -> Value {
    json!({"id": 1, "user": {"display": "Ann", "age": 7}, "meta": {"v": "1", "served_by": "edge", "new": true}, "list": [1, 2, 3]})
}

/// A JSON document over 2 KiB.
fn big_doc() -> Vec<u8> {
    json!({"secret": "x", "pad": "b".repeat(3000)})
        .to_string()
        .into_bytes()
}

fn response_origin() -> Result<(Backend, Vec<u8>)> {
    let doc = upstream_doc().to_string().into_bytes();
    let gz = gzip(&doc)?;
    let br = brotli_bytes(&doc)?;
    let zst = zstd::encode_all(&doc[..], 3)?;
    let zst_sent = zst.clone();
    let backend = Backend::start_with(
        "origin",
        None,
        any_port()?,
        Arc::new(move |req: &Message| {
            let json_type = ("Content-Type", "application/json");
            match last_segment(req).as_str() {
                "json" => Response::new(200, doc.clone()).header(json_type.0, json_type.1),
                "problem" => Response::new(200, doc.clone())
                    .header("Content-Type", "application/problem+json"),
                "gzip" => Response::new(200, gz.clone())
                    .header(json_type.0, json_type.1)
                    .header("Content-Encoding", "gzip"),
                "br" => Response::new(200, br.clone())
                    .header(json_type.0, json_type.1)
                    .header("Content-Encoding", "br"),
                "zstd" => Response::new(200, zst.clone())
                    .header(json_type.0, json_type.1)
                    .header("Content-Encoding", "zstd"),
                "text" => Response::new(200, doc.clone())
                    .header("Content-Type", "text/plain; charset=utf-8"),
                "big" => Response::new(200, big_doc()).header(json_type.0, json_type.1),
                _ => Response::new(404, "no such document"),
            }
        }),
    )?;
    Ok((backend, zst_sent))
}

#[test]
fn response_json_is_transformed_also_when_compressed_or_chunked() -> Result<()> {
    let (origin, _) = response_origin()?;
    let items: Vec<Value> = (0..800)
        .map(|n| json!({"n": n, "pad": "q".repeat(100)}))
        .collect();
    let streamed =
        json!({"secret": "x", "user": {"name": "Ann"}, "meta": {"v": "1"}, "items": items});
    let streamed_bytes = streamed.to_string().into_bytes();
    ensure!(streamed_bytes.len() > 64 * 1024, "{}", streamed_bytes.len());
    let streamer = ChunkedOrigin::start("application/json", &streamed_bytes)?;
    let p = start(
        RESPONSE_CONFIG,
        &[
            ("APP", origin.addr().to_string()),
            ("STREAMER", streamer.addr.to_string()),
        ],
        &[],
    )?;

    for path in ["/r/json", "/r/problem"] {
        let m = http::get(p.listen, path)?;
        ensure!(
            ok_json(&m)? == transformed_doc(),
            "{path}: got:\n{}",
            show(&m)
        );
    }
    let m = http::get(p.listen, "/r/json")?;
    ensure!(
        m.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{}",
        show(&m)
    );

    // Compressed upstream bodies are decoded, transformed and served
    // without their encoding (edge compresses nothing here).
    for path in ["/r/gzip", "/r/br"] {
        let m = http::get(p.listen, path)?;
        ensure!(
            m.header("content-encoding").is_none(),
            "{path}: served without an encoding:\n{}",
            show(&m)
        );
        ensure!(
            ok_json(&m)? == transformed_doc(),
            "{path}: got:\n{}",
            show(&m)
        );
    }
    // A client that takes gzip gets the transformed document, whether
    // edge re-encodes it or not.
    let m = http::request(p.listen, "GET", "/r/gzip", &[("Accept-Encoding", "gzip")])?;
    ensure!(m.status() == Some(200), "{}", show(&m));
    let body: Value = serde_json::from_slice(&decoded(&m)?).with_context(|| show(&m))?;
    ensure!(body == transformed_doc(), "gzip, accepted: {body}");

    // Chunked from the upstream, over 64 KiB.
    let m = http::get(p.listen, "/chunked/all")?;
    let want = json!({"user": {"display": "Ann"}, "meta": {"v": "1", "served_by": "edge", "new": true}, "items": items});
    ensure!(
        ok_json(&m)? == want,
        "the chunked answer was not transformed as expected ({} bytes)",
        m.body.len()
    );
    ensure!(streamer.requests() == 1, "{}", streamer.requests());

    wait_metric(
        &p,
        "edge_transforms_total",
        &[
            ("route", "resp"),
            ("what", "response_json"),
            ("result", "ok"),
        ],
        |v| v >= 6.0,
    )?;
    Ok(())
}

#[test]
fn response_transform_leaves_other_types_encodings_and_oversized_json_alone() -> Result<()> {
    let (origin, zst) = response_origin()?;
    let streamer = ChunkedOrigin::start("application/json", b"{}")?;
    let p = start(
        RESPONSE_CONFIG,
        &[
            ("APP", origin.addr().to_string()),
            ("STREAMER", streamer.addr.to_string()),
        ],
        &[],
    )?;
    let doc = upstream_doc().to_string().into_bytes();

    // Not JSON: untouched, though it looks like JSON.
    let m = http::get(p.listen, "/r/text")?;
    ensure!(m.status() == Some(200), "{}", show(&m));
    ensure!(m.body == doc, "text/plain changed:\n{}", show(&m));
    ensure!(
        m.header("content-type") == Some("text/plain; charset=utf-8"),
        "{}",
        show(&m)
    );

    // An encoding edge does not decode: passed through as it came.
    let m = http::get(p.listen, "/r/zstd")?;
    ensure!(m.status() == Some(200), "{}", show(&m));
    ensure!(m.header("content-encoding") == Some("zstd"), "{}", show(&m));
    ensure!(m.body == zst, "the zstd body changed");

    // Within the route's max_body: transformed; over it: byte for byte.
    let m = http::get(p.listen, "/small/json")?;
    let mut want = upstream_doc();
    want.as_object_mut().context("an object")?.remove("secret");
    ensure!(ok_json(&m)? == want, "{}", show(&m));
    let m = http::get(p.listen, "/small/big")?;
    ensure!(m.status() == Some(200), "{}", show(&m));
    ensure!(
        m.body == big_doc(),
        "a JSON answer over max_body passes unchanged:\n{}",
        show(&m)
    );

    // Counted, as not transformed.
    wait::until("the oversized answer to be counted", DEADLINE, || {
        let text = p.metrics()?;
        let counted = ["skipped", "error"].iter().any(|r| {
            metric(
                &text,
                "edge_transforms_total",
                &[
                    ("route", "small"),
                    ("what", "response_json"),
                    ("result", *r),
                ],
            )
            .is_some_and(|v| v >= 1.0)
        });
        Ok(counted.then_some(()))
    })?;
    Ok(())
}

// ---------------------------------------------------------------------
// 3. XML → JSON
// ---------------------------------------------------------------------

const XML_CONFIG: &str = r#"
listeners:
  - name: web
    address: @LISTEN@
    routes:
      - name: xml
        match: {path: {prefix: /x}}
        proxy: {pool: app}
        transform:
          response:
            xml_to_json: true
      - name: xmlops
        match: {path: {prefix: /ops}}
        proxy: {pool: app}
        transform:
          response:
            xml_to_json: true
            json: {remove: ["/library/open"], set: {"/library/via": "edge"}}
      - name: xmlsmall
        match: {path: {prefix: /small}}
        proxy: {pool: app}
        transform:
          response:
            xml_to_json: true
            max_body: 1KiB
      - name: xmldeep
        match: {path: {prefix: /deep}}
        proxy: {pool: app}
        transform:
          response:
            xml_to_json: {max_depth: 8}
pools:
  - name: app
    backends: [{address: '@APP@'}]
"#;

const NESTED_XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- the catalogue -->
<library>
  <name>City &amp; County</name>
  <book id="1" lang="en">
    <title>Dune</title>
    <author>Frank Herbert</author>
    <year>1965</year>
    <tags><tag>sf</tag><tag>classic</tag></tags>
  </book>
  <book id="2">
    <title>Empty</title>
    <note/>
    <blank>   </blank>
  </book>
  <?render fast?>
  <open>true</open>
</library>
"#;

fn nested_json() -> Value {
    json!({"library": {
        "name": "City & County",
        "book": [
            {
                "@id": "1", "@lang": "en",
                "title": "Dune", "author": "Frank Herbert", "year": "1965",
                "tags": {"tag": ["sf", "classic"]},
            },
            {"@id": "2", "title": "Empty", "note": null, "blank": null},
        ],
        "open": "true",
    }})
}

const ATTRIBUTES_XML: &str = r#"<?xml version="1.0"?>
<item sku="A&lt;1&gt;" qty="3" xml:lang="en">
  <price currency="EUR" net="true">9.50</price>
  <flag on="yes"/>
  <note lang="en">
      hi there
  </note>
  <code><![CDATA[a < b && c]]></code>
  <chars>&#65;&#x42;&quot;&apos;&amp;</chars>
  <dim w="1" h="2"><unit>cm</unit></dim>
</item>
"#;

fn attributes_json() -> Value {
    json!({"item": {
        "@sku": "A<1>", "@qty": "3", "@xml:lang": "en",
        "price": {"@currency": "EUR", "@net": "true", "#text": "9.50"},
        "flag": {"@on": "yes"},
        "note": {"@lang": "en", "#text": "hi there"},
        "code": "a < b && c",
        "chars": "AB\"'&",
        "dim": {"@w": "1", "@h": "2", "unit": "cm"},
    }})
}

const SOAP_XML: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:default">
  <soap:Header>
    <wsse:Security xmlns:wsse="urn:sec" soap:mustUnderstand="1"/>
  </soap:Header>
  <soap:Body>
    <m:GetPrice xmlns:m="urn:prices">
      <m:Item>Apple</m:Item>
      <m:Item>Pear</m:Item>
    </m:GetPrice>
  </soap:Body>
</soap:Envelope>
"#;

fn soap_json() -> Value {
    json!({"soap:Envelope": {
        "@xmlns:soap": "http://schemas.xmlsoap.org/soap/envelope/",
        "@xmlns": "urn:default",
        "soap:Header": {
            "wsse:Security": {"@xmlns:wsse": "urn:sec", "@soap:mustUnderstand": "1"},
        },
        "soap:Body": {
            "m:GetPrice": {"@xmlns:m": "urn:prices", "m:Item": ["Apple", "Pear"]},
        },
    }})
}

/// A document of about 10 KB and what it maps to.
fn ten_kb() -> (String, Value) {
    let mut xml = String::from("<list count=\"300\">\n");
    let mut entries = Vec::new();
    for i in 0..300 {
        xml.push_str(&format!("  <entry n=\"{i}\">value {i}</entry>\n"));
        entries.push(json!({"@n": i.to_string(), "#text": format!("value {i}")}));
    }
    xml.push_str("</list>\n");
    (xml, json!({"list": {"@count": "300", "entry": entries}}))
}

/// `levels` nested elements around a text.
fn nested(levels: usize) -> String {
    format!("{}x{}", "<d>".repeat(levels), "</d>".repeat(levels))
}

/// Nine levels of ten: a billion "lol"s if expanded.
fn billion_laughs() -> String {
    let mut dtd = String::from("<!ENTITY lol0 \"lol\">\n");
    for i in 1..10 {
        let prev = format!("&lol{};", i - 1).repeat(10);
        dtd.push_str(&format!("<!ENTITY lol{i} \"{prev}\">\n"));
    }
    format!("<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n{dtd}]>\n<lolz>&lol9;</lolz>\n")
}

/// The XML upstream: documents by the last path segment.
fn xml_origin(canary_port: u16) -> Result<Backend> {
    let (ten, _) = ten_kb();
    let big_small = format!(
        "<big>{}</big>",
        "<e>0123456789012345678901234567890123456789</e>".repeat(50)
    );
    let docs: Vec<(&'static str, &'static str, String)> = vec![
        ("nested", "application/xml", NESTED_XML.to_string()),
        (
            "attributes",
            "text/xml; charset=utf-8",
            ATTRIBUTES_XML.to_string(),
        ),
        (
            "soap",
            "application/soap+xml; charset=utf-8",
            SOAP_XML.to_string(),
        ),
        ("ten", "application/xml", ten),
        ("big", "application/xml", big_small),
        ("shallow", "application/xml", nested(3)),
        ("deep", "application/xml", nested(20)),
        ("plain", "text/plain", "<a>not converted</a>".to_string()),
        ("mismatched", "application/xml", "<a><b></a>".to_string()),
        ("unclosed", "application/xml", "<a><b></b>".to_string()),
        ("two-roots", "application/xml", "<a/><b/>".to_string()),
        ("trailing", "application/xml", "<a/>junk".to_string()),
        ("entity", "application/xml", "<a>&nbsp;</a>".to_string()),
        ("laughs", "application/xml", billion_laughs()),
        (
            "xxe-file",
            "application/xml",
            "<?xml version=\"1.0\"?>\n<!DOCTYPE foo [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\n<foo>&xxe;</foo>\n"
                .to_string(),
        ),
        (
            "xxe-http",
            "application/xml",
            format!(
                "<?xml version=\"1.0\"?>\n<!DOCTYPE foo [<!ENTITY xxe SYSTEM \"http://127.0.0.1:{canary_port}/xxe\">]>\n<foo>&xxe;</foo>\n"
            ),
        ),
        (
            "xxe-dtd",
            "application/xml",
            format!(
                "<?xml version=\"1.0\"?>\n<!DOCTYPE foo SYSTEM \"http://127.0.0.1:{canary_port}/foo.dtd\">\n<foo/>\n"
            ),
        ),
        (
            "xxe-param",
            "application/xml",
            format!(
                "<?xml version=\"1.0\"?>\n<!DOCTYPE foo [<!ENTITY % p SYSTEM \"http://127.0.0.1:{canary_port}/p\"> %p;]>\n<foo/>\n"
            ),
        ),
    ];
    Backend::start_with(
        "xml-origin",
        None,
        any_port()?,
        Arc::new(move |req: &Message| {
            let last = last_segment(req);
            match docs.iter().find(|(name, _, _)| *name == last) {
                Some((_, ct, body)) => Response::new(200, body.clone()).header("Content-Type", *ct),
                None => Response::new(404, "no such document"),
            }
        }),
    )
}

#[test]
fn xml_responses_are_converted_to_json_exactly_as_mapped() -> Result<()> {
    let canary = Backend::start("canary", None, any_port()?)?;
    let origin = xml_origin(canary.addr().port())?;
    let p = start(XML_CONFIG, &[("APP", origin.addr().to_string())], &[])?;

    let (ten_xml, ten_json) = ten_kb();
    ensure!(ten_xml.len() >= 10_000, "{} bytes", ten_xml.len());
    let cases = [
        ("/x/nested", nested_json()),
        ("/x/attributes", attributes_json()),
        ("/x/soap", soap_json()),
        ("/x/ten", ten_json),
        ("/deep/shallow", json!({"d": {"d": {"d": "x"}}})),
    ];
    for (path, want) in cases {
        let m = http::get(p.listen, path)?;
        let got = ok_json(&m)?;
        ensure!(
            got == want,
            "{path}: got\n{}\nwant\n{}",
            serde_json::to_string_pretty(&got)?,
            serde_json::to_string_pretty(&want)?
        );
        ensure!(
            m.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{path}: the type becomes JSON:\n{}",
            show(&m)
        );
    }

    // JSON ops apply after the conversion.
    let m = http::get(p.listen, "/ops/nested")?;
    let mut want = nested_json();
    let library = want["library"].as_object_mut().context("an object")?;
    library.remove("open");
    library.insert("via".into(), json!("edge"));
    ensure!(ok_json(&m)? == want, "{}", show(&m));

    // Not an XML type: untouched.
    let m = http::get(p.listen, "/x/plain")?;
    ensure!(
        m.status() == Some(200) && m.text() == "<a>not converted</a>",
        "{}",
        show(&m)
    );
    ensure!(
        m.header("content-type") == Some("text/plain"),
        "{}",
        show(&m)
    );
    Ok(())
}

#[test]
fn malformed_dangerous_deep_or_oversized_xml_is_a_502_and_nothing_is_fetched() -> Result<()> {
    // Where the external entities point: it must never see a connection.
    let canary = Backend::start("canary", None, any_port()?)?;
    let origin = xml_origin(canary.addr().port())?;
    let p = start(XML_CONFIG, &[("APP", origin.addr().to_string())], &[])?;
    const WHY: &str = "the upstream's XML could not be converted: ";

    for path in [
        "/x/mismatched",
        "/x/unclosed",
        "/x/two-roots",
        "/x/trailing",
        "/x/entity",
        "/deep/deep",
        "/small/big",
    ] {
        let m = http::get(p.listen, path)?;
        expect_error(&m, 502, WHY).with_context(|| path.to_string())?;
    }

    for path in [
        "/x/laughs",
        "/x/xxe-file",
        "/x/xxe-http",
        "/x/xxe-dtd",
        "/x/xxe-param",
    ] {
        let started = std::time::Instant::now();
        let m = http::get(p.listen, path)?;
        expect_error(&m, 502, WHY).with_context(|| path.to_string())?;
        let text = m.text();
        ensure!(
            !text.contains("lollol") && !text.contains("root:"),
            "{path}: an entity was expanded:\n{}",
            show(&m)
        );
        ensure!(
            started.elapsed() < Duration::from_secs(2),
            "{path}: took {:?}",
            started.elapsed()
        );
    }

    // Connections are accepted in the order they were made: once the
    // canary has accepted this one, it has accepted any edge made before.
    let _probe = TcpStream::connect_timeout(&canary.addr(), Duration::from_secs(2))?;
    wait::until("the canary to accept the probe", DEADLINE, || {
        Ok((canary.connections() >= 1).then_some(()))
    })?;
    ensure!(
        canary.connections() == 1 && canary.requests() == 0,
        "an external entity was fetched: the canary saw {} connections",
        canary.connections()
    );
    Ok(())
}

// ---------------------------------------------------------------------
// 4. validation
// ---------------------------------------------------------------------

/// An origin for one request: sends a chunked XML head at once, then its
/// body only when told (so the head has reached the client first).
fn held_xml_origin(
    body: Vec<u8>,
) -> Result<(SocketAddr, std::sync::mpsc::Sender<()>, JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let (go, wait_go) = std::sync::mpsc::channel::<()>();
    let t = std::thread::spawn(move || {
        let serve = || -> Result<()> {
            listener.set_nonblocking(false)?;
            let (s, _) = listener.accept()?;
            s.set_read_timeout(Some(DEADLINE))?;
            let mut w = s.try_clone()?;
            let mut r = BufReader::new(s);
            http::read_message(&mut r)?.context("no request")?;
            w.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nTransfer-Encoding: chunked\r\n\r\n",
            )?;
            w.flush()?;
            // Told to go, or the test gave up: either way, finish.
            let _ = wait_go.recv_timeout(DEADLINE);
            w.write_all(format!("{:x}\r\n", body.len()).as_bytes())?;
            w.write_all(&body)?;
            w.write_all(b"\r\n0\r\n\r\n")?;
            Ok(())
        };
        let _ = serve();
    });
    Ok((addr, go, t))
}

#[test]
fn xml_that_fails_after_the_head_went_out_cuts_the_response_short() -> Result<()> {
    let big = format!("<a>{}</a>", "<b>x</b>".repeat(400));
    for (path, body, what) in [
        ("/x/late", b"<a><b></c></a>".to_vec(), "malformed"),
        (
            "/small/late",
            big.into_bytes(),
            "over max_body without a length",
        ),
    ] {
        let (origin, go, t) = held_xml_origin(body)?;
        let p = start(XML_CONFIG, &[("APP", origin.to_string())], &[])?;
        let mut c = TcpStream::connect_timeout(&p.listen, DEADLINE)?;
        c.set_read_timeout(Some(DEADLINE))?;
        c.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())?;
        // The head first: edge has committed to a 200 before the body.
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = c.read(&mut buf).context("reading the head")?;
            ensure!(
                n > 0,
                "{what}: closed before the head: {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8_lossy(&got).to_string();
        ensure!(head.starts_with("HTTP/1.1 200"), "{what}: {head}");
        let _ = go.send(());
        // Then the body: cut, never ended, never the XML or an error
        // appended as if it were the document.
        let mut rest = Vec::new();
        match c.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Err(e) => return Err(e).context(format!("{what}: the response was not ended")),
        }
        got.extend_from_slice(&rest);
        let text = String::from_utf8_lossy(&got);
        ensure!(
            !text.ends_with("0\r\n\r\n") && !text.contains("<a>") && !text.contains("message"),
            "{what}: the response was completed:\n{text}"
        );
        wait_metric(
            &p,
            "edge_transforms_total",
            &[("what", "xml_to_json"), ("result", "error")],
            |v| v >= 1.0,
        )?;
        drop(p);
        let _ = t.join();
    }
    Ok(())
}

const VALIDATE_CONFIG: &str = r##"
listeners:
  - name: web
    address: @LISTEN@
    routes:
      - name: create
        match: {path: {exact: /people}}
        proxy: {pool: app}
        validate:
          schema:
            type: object
            required: [name]
            additionalProperties: false
            properties:
              name: {type: string}
              age: {type: integer, minimum: 0}
              tags: {type: array, items: {type: string}}
          max_errors: 2
          max_body: 1KiB
      - name: orders
        match: {path: {exact: /orders}}
        proxy: {pool: app}
        validate:
          schema_file: order.schema.json
      - name: pairs
        match: {path: {exact: /pairs}}
        proxy: {pool: app}
        validate:
          schema:
            $schema: "http://json-schema.org/draft-07/schema#"
            type: object
            properties:
              pair:
                type: array
                items: [{type: string}, {type: integer}]
pools:
  - name: app
    backends: [{address: '@APP@'}]
"##;

/// A schema-mismatch 400: the errors, each with a path and an error.
fn schema_errors(m: &Message) -> Result<Vec<(String, String)>> {
    let body = expect_error(m, 400, "request body does not match the schema")?;
    ensure!(
        body["message"] == "request body does not match the schema",
        "{}",
        show(m)
    );
    body["errors"]
        .as_array()
        .with_context(|| format!("no errors list:\n{}", show(m)))?
        .iter()
        .map(|e| -> Result<(String, String)> {
            let path = e["path"].as_str().context("an error without a path")?;
            let error = e["error"].as_str().context("an error without an error")?;
            ensure!(!error.is_empty(), "an empty error:\n{}", show(m));
            Ok((path.to_string(), error.to_string()))
        })
        .collect()
}

fn order_schema() -> String {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["sku", "qty"],
        "properties": {
            "sku": {"type": "string", "minLength": 1},
            "qty": {"type": "integer", "minimum": 1},
        },
    })
    .to_string()
}

#[test]
fn validation_passes_valid_bodies_and_refuses_the_rest_before_the_backend() -> Result<()> {
    let app = echo_backend("app")?;
    let p = start(
        VALIDATE_CONFIG,
        &[("APP", app.addr().to_string())],
        &[("order.schema.json", order_schema())],
    )?;
    let mut upstream = 0;

    // Valid: the backend gets it byte for byte (not re-serialised).
    let valid = br#"{ "name" : "Ann",   "age": 30, "tags": ["a"] }"#;
    let m = send_body(
        p.listen,
        "POST",
        "/people",
        &[("Content-Type", "application/json; charset=utf-8")],
        valid,
        Framing::Length,
    )?;
    let seen = Seen::of(&m)?;
    upstream += 1;
    ensure!(seen.body == valid, "{seen:?}");
    // Chunked counts as a body and is validated too.
    let m = send_body(
        p.listen,
        "POST",
        "/people",
        &[("Content-Type", "application/json")],
        valid,
        Framing::Chunked(7),
    )?;
    ensure!(Seen::of(&m)?.body == valid, "{}", show(&m));
    upstream += 1;
    // No body, not a method that needs one: passes.
    let m = http::get(p.listen, "/people")?;
    ensure!(Seen::of(&m)?.method == "GET", "{}", show(&m));
    upstream += 1;
    ensure!(app.requests() == upstream, "{}", app.requests());

    // Many mismatches: at most max_errors (2) of them.
    let m = post_json(
        p.listen,
        "/people",
        br#"{"age": -1, "tags": [1, 2], "extra": true}"#,
    )?;
    let errors = schema_errors(&m)?;
    ensure!(errors.len() == 2, "max_errors is 2:\n{}", show(&m));
    for (path, _) in &errors {
        ensure!(
            ["", "/age", "/tags/0", "/tags/1"].contains(&path.as_str()),
            "unexpected path {path:?}:\n{}",
            show(&m)
        );
    }
    // One mismatch: its path.
    let m = post_json(p.listen, "/people", br#"{"name": 5}"#)?;
    let errors = schema_errors(&m)?;
    ensure!(errors.len() == 1 && errors[0].0 == "/name", "{}", show(&m));

    // Not JSON at all.
    let m = post_json(p.listen, "/people", br#"{"name": "#)?;
    expect_error(&m, 400, "request body is not valid JSON: ")?;
    // Not a JSON type.
    let m = send_body(
        p.listen,
        "POST",
        "/people",
        &[("Content-Type", "text/plain")],
        br#"{"name": "Ann"}"#,
        Framing::Length,
    )?;
    expect_error(&m, 415, "")?;
    // POST and PUT with an empty body, PATCH with none at all.
    for method in ["POST", "PUT"] {
        let m = send_body(
            p.listen,
            method,
            "/people",
            &[("Content-Type", "application/json")],
            b"",
            Framing::Length,
        )?;
        let body = expect_error(&m, 400, "a JSON request body is required")?;
        ensure!(
            body["message"] == "a JSON request body is required",
            "{method}:\n{}",
            show(&m)
        );
    }
    let m = http::request(
        p.listen,
        "PATCH",
        "/people",
        &[("Content-Type", "application/json")],
    )?;
    expect_error(&m, 400, "a JSON request body is required")?;
    // Over the validation's max_body (1 KiB), declared or streamed.
    let wrapper = br#"{"name":""}"#.len();
    let large = json!({"name": "n".repeat(1025 - wrapper)})
        .to_string()
        .into_bytes();
    ensure!(large.len() == 1025, "{} bytes", large.len());
    let m = post_json(p.listen, "/people", &large)?;
    expect_error(&m, 413, "")?;
    let m = send_body(
        p.listen,
        "POST",
        "/people",
        &[("Content-Type", "application/json")],
        &large,
        Framing::Chunked(256),
    )?;
    expect_error(&m, 413, "")?;

    ensure!(
        app.requests() == upstream,
        "refused requests reached the backend: it saw {}, expected {upstream}",
        app.requests()
    );
    wait_metric(
        &p,
        "edge_validation_rejections_total",
        &[("route", "create")],
        |v| v >= 2.0,
    )?;
    Ok(())
}

#[test]
fn validation_with_a_schema_file_and_a_declared_draft() -> Result<()> {
    let app = echo_backend("app")?;
    let p = start(
        VALIDATE_CONFIG,
        &[("APP", app.addr().to_string())],
        &[("order.schema.json", order_schema())],
    )?;

    // The schema file, relative to the config.
    let good = br#"{"sku": "A-1", "qty": 2}"#;
    let seen = Seen::of(&post_json(p.listen, "/orders", good)?)?;
    ensure!(seen.body == good, "{seen:?}");
    let m = post_json(p.listen, "/orders", br#"{"sku": "A-1", "qty": 0}"#)?;
    let errors = schema_errors(&m)?;
    ensure!(errors.len() == 1 && errors[0].0 == "/qty", "{}", show(&m));
    let m = post_json(p.listen, "/orders", br#"{"qty": 1}"#)?;
    ensure!(!schema_errors(&m)?.is_empty(), "{}", show(&m));

    // `$schema` draft-07: `items` as an array checks positions.
    let good = br#"{"pair": ["a", 1]}"#;
    let seen = Seen::of(&post_json(p.listen, "/pairs", good)?)?;
    ensure!(seen.body == good, "{seen:?}");
    let m = post_json(p.listen, "/pairs", br#"{"pair": ["a", "b"]}"#)?;
    let errors = schema_errors(&m)?;
    ensure!(
        errors.len() == 1 && errors[0].0 == "/pair/1",
        "{}",
        show(&m)
    );

    ensure!(app.requests() == 2, "the backend saw {}", app.requests());
    Ok(())
}

// ---------------------------------------------------------------------
// 5. versions
// ---------------------------------------------------------------------

const VERSIONS_CONFIG: &str = r#"
listeners:
  - name: web
    address: @LISTEN@
    routes:
      - name: v1
        match: {path: {prefix: /v1}}
        proxy: {pool: v1}
        deprecated:
          since: 2026-01-01T00:00:00Z
          sunset: 2027-06-30T00:00:00Z
          link: https://example.com/migrate
      - name: v2
        match: {path: {prefix: /v2}}
        proxy: {pool: v2}
      - name: items-v2-header
        match: {path: {prefix: /items}, headers: [{name: Accept-Version, value: "2"}]}
        proxy: {pool: v2}
      - name: items-v2-query
        match: {path: {prefix: /items}, query: [{name: version, value: "2"}]}
        proxy: {pool: v2}
      - name: items-v2-media
        match: {path: {prefix: /items}, accept_param: {name: version, value: "2"}}
        proxy: {pool: v2}
      - name: items-v1
        match: {path: {prefix: /items}}
        proxy: {pool: v1}
        deprecated: {since: "2026-01-01T00:00:00Z"}
pools:
  - name: v1
    backends: [{address: '@V1@'}]
  - name: v2
    backends: [{address: '@V2@'}]
"#;

/// A request to route: target, header fields, the pool that must answer.
type Case = (
    &'static str,
    Vec<(&'static str, &'static str)>,
    &'static str,
);

/// 2026-01-01T00:00:00Z.
const SINCE: u64 = 1_767_225_600;
/// 2027-06-30T00:00:00Z.
const SUNSET: u64 = 1_814_313_600;

#[test]
fn versions_route_by_prefix_header_query_and_media_type_and_announce_deprecation() -> Result<()> {
    let v1 = Backend::start("v1", None, any_port()?)?;
    let v2 = Backend::start("v2", None, any_port()?)?;
    let p = start(
        VERSIONS_CONFIG,
        &[("V1", v1.addr().to_string()), ("V2", v2.addr().to_string())],
        &[],
    )?;
    let deprecation = format!("@{SINCE}");
    let sunset = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(SUNSET));
    ensure!(sunset == "Wed, 30 Jun 2027 00:00:00 GMT", "{sunset}");

    // (target, request header fields, the pool that must answer)
    let cases: Vec<Case> = vec![
        ("/v1/things", vec![], "v1"),
        ("/v2/things", vec![], "v2"),
        ("/items", vec![], "v1"),
        ("/items", vec![("Accept-Version", "2")], "v2"),
        ("/items", vec![("Accept-Version", "1")], "v1"),
        ("/items?version=2", vec![], "v2"),
        ("/items?version=1", vec![], "v1"),
        (
            "/items",
            vec![("Accept", "application/vnd.example+json; version=2")],
            "v2",
        ),
        (
            "/items",
            vec![(
                "Accept",
                "text/html;q=0.5, application/vnd.example+json;version=2;q=0.9",
            )],
            "v2",
        ),
        (
            "/items",
            vec![("Accept", "application/vnd.example+json; version=1")],
            "v1",
        ),
        ("/items", vec![("Accept", "application/json")], "v1"),
    ];
    for (path, headers, want) in &cases {
        let m = http::request(p.listen, "GET", path, headers)?;
        ensure!(m.status() == Some(200), "{path} {headers:?}:\n{}", show(&m));
        ensure!(
            m.header("x-backend") == Some(*want),
            "{path} {headers:?}: expected {want}:\n{}",
            show(&m)
        );
    }

    // Deprecated with a sunset and a link.
    let m = http::get(p.listen, "/v1/things")?;
    ensure!(
        header_values(&m, "deprecation") == [deprecation.clone()],
        "{}",
        show(&m)
    );
    ensure!(
        header_values(&m, "sunset") == [sunset.clone()],
        "{}",
        show(&m)
    );
    ensure!(
        header_values(&m, "link")
            .iter()
            .any(|l| l == "<https://example.com/migrate>; rel=\"deprecation\""),
        "{}",
        show(&m)
    );
    // Deprecated, nothing more.
    let m = http::get(p.listen, "/items")?;
    ensure!(
        header_values(&m, "deprecation") == [deprecation],
        "{}",
        show(&m)
    );
    ensure!(
        header_values(&m, "sunset").is_empty() && header_values(&m, "link").is_empty(),
        "{}",
        show(&m)
    );
    // Not deprecated: none of them.
    for (path, headers) in [
        ("/v2/things", vec![]),
        ("/items", vec![("Accept-Version", "2")]),
    ] {
        let m = http::request(p.listen, "GET", path, &headers)?;
        for h in ["deprecation", "sunset", "link"] {
            ensure!(
                header_values(&m, h).is_empty(),
                "{path}: {h} on a current route:\n{}",
                show(&m)
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------
// 6. edge check
// ---------------------------------------------------------------------

/// `edge check FILE`: whether it passed, and everything it said.
fn check(file: &Path) -> Result<(bool, String)> {
    edge_tests::edge::check(&[file])
}

use edge_tests::edge::{line_of, reports_line as located};

/// Whether `lower` (a lower-cased message) names `word`; a limit of
/// 64 KiB may be given in bytes.
fn names(lower: &str, word: &str) -> bool {
    lower.contains(&word.to_lowercase()) || (word == "64" && lower.contains("65536"))
}

/// A config whose only listener has `routes` (lines indented by six).
fn with_routes(routes: &str) -> String {
    format!(
        "listeners:\n  - name: web\n    address: 127.0.0.1:8080\n    routes:\n{routes}pools:\n  - name: app\n    backends: [{{address: 127.0.0.1:9000}}]\n"
    )
}

const EVERYTHING: &str = r#"      - name: people
        match: {path: {regex: '^/api/people/(?P<id>[0-9]+)$'}}
        proxy: {pool: app}
        transform:
          request:
            path: "/v2/people/{id}"
            query:
              remove: [debug]
              rename: {q: search}
              set: {format: json}
              add: {source: edge}
            json:
              remove: ["/password"]
              rename: {"/user/name": "/user/full_name"}
              set: {"/meta/via": "edge", "/meta/tags": [a, b]}
              add: {"/meta/version": 2, "/items/-": {x: 1}}
            max_body: 64KiB
          response:
            xml_to_json: {max_depth: 32}
            json: {remove: ["/secret", "/a~1b/c~0d"], rename: {"/a": "/b"}, set: {"/via": edge}, add: {"/v": 1}}
            max_body: 16MiB
        validate:
          schema: {type: object, required: [name], properties: {name: {type: string}}}
          max_body: 64KiB
          max_errors: 100
        deprecated:
          since: 2026-01-01T00:00:00Z
          sunset: 2027-06-30T00:00:00Z
          link: https://example.com/migrate
      - name: legacy
        match: {path: {prefix: /legacy}}
        proxy: {pool: app}
        transform:
          request: {path: "/new{path}"}
          response: {xml_to_json: true}
      - name: orders
        match: {path: {exact: /orders}}
        proxy: {pool: app}
        validate: {schema_file: order.schema.json, max_errors: 1}
      - name: media
        match: {path: {prefix: /items}, accept_param: {name: version, value: "2"}}
        proxy: {pool: app}
        deprecated: {since: 2026-01-01T00:00:00Z}
      - name: by-header
        match: {path: {prefix: /items}, headers: [{name: Accept-Version, value: "2"}]}
        proxy: {pool: app}
      - name: by-query
        match: {path: {prefix: /items}, query: [{name: version, value: "2"}]}
        proxy: {pool: app}
"#;

#[test]
fn edge_check_accepts_every_feature_and_locates_each_mistake() -> Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("order.schema.json"), order_schema())?;
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, with_routes(EVERYTHING))?;
    let (ok, text) = check(&good)?;
    ensure!(ok, "edge check refused the full config:\n{text}");
    ensure!(text.contains(&format!("{}: OK", good.display())), "{text}");

    // (name, route, the text on the offending line, what the message names)
    let bad: Vec<(&str, &str, &str, Vec<&str>)> = vec![
        (
            "template-not-a-capture",
            "      - name: people\n        match: {path: {regex: '^/api/people/(?P<id>[0-9]+)$'}}\n        proxy: {pool: app}\n        transform:\n          request: {path: \"/v2/people/{name}\"}\n",
            "{name}",
            vec!["name"],
        ),
        (
            "template-without-regex",
            "      - name: people\n        match: {path: {prefix: /p}}\n        proxy: {pool: app}\n        transform:\n          request: {path: \"/x/{id}\"}\n",
            "/x/{id}",
            vec!["id"],
        ),
        (
            "pointer-without-slash",
            "      - name: r\n        match: {path: {prefix: /p}}\n        proxy: {pool: app}\n        transform:\n          request: {json: {remove: [\"no-slash\"]}}\n",
            "no-slash",
            vec!["no-slash"],
        ),
        (
            "root-pointer",
            "      - name: r\n        match: {path: {prefix: /p}}\n        proxy: {pool: app}\n        transform:\n          response: {json: {set: {\"\": 1}}}\n",
            "response:",
            vec![],
        ),
        (
            "request-max-body",
            "      - name: r\n        match: {path: {prefix: /p}}\n        proxy: {pool: app}\n        transform:\n          request: {json: {set: {\"/a\": 1}}, max_body: 128KiB}\n",
            "128KiB",
            vec!["64"],
        ),
        (
            "validate-max-body",
            "      - name: r\n        match: {path: {prefix: /p}}\n        proxy: {pool: app}\n        validate: {schema: {type: object}, max_body: 128KiB}\n",
            "128KiB",
            vec!["64"],
        ),
        (
            "response-max-body",
            "      - name: r\n        match: {path: {prefix: /p}}\n        proxy: {pool: app}\n        transform:\n          response: {json: {remove: [\"/a\"]}, max_body: 32MiB}\n",
            "32MiB",
            vec!["16"],
        ),
        (
            "invalid-schema",
            "      - name: r\n        match: {path: {prefix: /p}}\n        proxy: {pool: app}\n        validate: {schema: {type: object, properties: {name: {type: 12}}}}\n",
            "type: 12",
            vec!["schema"],
        ),
        (
            "schema-and-file",
            "      - name: r\n        match: {path: {prefix: /p}}\n        proxy: {pool: app}\n        validate: {schema: {type: object}, schema_file: order.schema.json}\n",
            "validate:",
            vec!["schema"],
        ),
        (
            "missing-schema-file",
            "      - name: r\n        match: {path: {prefix: /p}}\n        proxy: {pool: app}\n        validate: {schema_file: missing.schema.json}\n",
            "missing.schema.json",
            vec!["missing.schema.json"],
        ),
        (
            "max-errors-zero",
            "      - name: r\n        match: {path: {prefix: /p}}\n        proxy: {pool: app}\n        validate: {schema: {type: object}, max_errors: 0}\n",
            "max_errors: 0",
            vec![],
        ),
    ];
    let mut failures = Vec::new();
    for (name, route, marker, words) in &bad {
        let file: PathBuf = dir.path().join(format!("{name}.yaml"));
        let yaml = with_routes(route);
        std::fs::write(&file, &yaml)?;
        let line = line_of(&yaml, marker)?;
        let (ok, text) = check(&file)?;
        let lower = text.to_lowercase();
        if ok {
            failures.push(format!("{name}: edge check accepted it:\n{text}"));
        } else if !located(&text, &file, line) {
            failures.push(format!(
                "{name}: no error at {}:{line}:COLUMN:\n{text}",
                file.display()
            ));
        } else if let Some(w) = words.iter().find(|w| !names(&lower, w)) {
            failures.push(format!("{name}: the message does not name {w:?}:\n{text}"));
        }
    }
    ensure!(failures.is_empty(), "{}", failures.join("\n---\n"));
    Ok(())
}

// ---------------------------------------------------------------------
// 7. regressions: retries and the breaker, ranges, strip_prefix, strict
//    JSON, 100-continue, bodies a route does not transform, HEAD, cache
// ---------------------------------------------------------------------

/// Reads from `c` until a whole response head (up to its blank line) is
/// in, for at most `within`: the head, and whatever came after it.
fn read_head_within(c: &mut TcpStream, within: Duration) -> Result<(Vec<u8>, Vec<u8>)> {
    let deadline = Instant::now() + within;
    let mut got: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = got.split_off(i + 4);
            return Ok((got, rest));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        ensure!(
            !left.is_zero(),
            "no response head within {within:?}, got {:?}",
            String::from_utf8_lossy(&got)
        );
        c.set_read_timeout(Some(left))?;
        match c.read(&mut buf) {
            Ok(0) => bail!(
                "closed before a whole response head: {:?}",
                String::from_utf8_lossy(&got)
            ),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => bail!(
                "no response head within {within:?}, got {:?}",
                String::from_utf8_lossy(&got)
            ),
            Err(e) => return Err(e).context("reading a response head"),
        }
    }
}

/// A response head as a [`Message`] without a body.
fn head_message(head: &[u8]) -> Result<Message> {
    let text = std::str::from_utf8(head).context("a response head that is not text")?;
    let mut lines = text.split("\r\n").filter(|l| !l.is_empty());
    let start = lines.next().context("an empty response head")?.to_string();
    let headers = lines
        .map(|l| {
            let (k, v) = l
                .split_once(':')
                .with_context(|| format!("a header line without ':': {l:?}"))?;
            Ok((k.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Message {
        start,
        headers,
        body: Vec::new(),
    })
}

/// What both backends of [`REFUSED_XML_CONFIG`] answer: not well formed.
const MALFORMED_XML: &str = "<a><b></c></a>";

const REFUSED_XML_CONFIG: &str = r#"
listeners:
  - name: web
    address: @LISTEN@
    routes:
      - name: xml
        match: {path: {prefix: /x}}
        proxy: {pool: app}
        transform:
          response:
            xml_to_json: true
      - name: plain
        match: {path: {prefix: /plain}}
        proxy: {pool: app}
pools:
  - name: app
    backends: [{address: '@A@'}, {address: '@B@'}]
    retries: {attempts: 1, min_per_window: 100}
    circuit_breaker: {error_ratio: 0.5, min_requests: 2, window: 10s, open_for: 10s, half_open_requests: 1}
"#;

#[test]
fn a_refused_transformation_is_not_retried_and_does_not_open_the_breaker() -> Result<()> {
    let malformed = |name: &str| -> Result<Backend> {
        Backend::start_with(
            name,
            None,
            any_port()?,
            Arc::new(|_: &Message| {
                Response::new(200, MALFORMED_XML).header("Content-Type", "application/xml")
            }),
        )
    };
    let (a, b) = (malformed("a")?, malformed("b")?);
    let p = start(
        REFUSED_XML_CONFIG,
        &[("A", a.addr().to_string()), ("B", b.addr().to_string())],
        &[],
    )?;

    // Each answer is edge's 502, after exactly one upstream request: the
    // refusal is edge's, another backend would answer the same.
    for i in 0..6 {
        let m = http::get(p.listen, &format!("/x/{i}"))?;
        expect_error(&m, 502, "the upstream's XML could not be converted: ")
            .with_context(|| format!("request {i}"))?;
        ensure!(
            a.requests() + b.requests() == i + 1,
            "after request {i} the backends saw {} + {} requests: a refused transformation was retried",
            a.requests(),
            b.requests()
        );
    }

    // Six refusals are not six backend failures: the breaker is closed
    // and the pool still serves a route without a transformation.
    let m = http::get(p.listen, "/plain")?;
    ensure!(
        m.status() == Some(200) && m.text() == MALFORMED_XML,
        "the pool should still serve /plain (a 503 means the breaker opened):\n{}",
        show(&m)
    );
    ensure!(
        a.requests() + b.requests() == 7,
        "{} + {}",
        a.requests(),
        b.requests()
    );
    let state = metric(
        &p.metrics()?,
        "edge_upstream_circuit_breaker_state",
        &[("pool", "app")],
    );
    ensure!(
        state.is_none_or(|s| s == 0.0),
        "the breaker is not closed: state {state:?}"
    );
    Ok(())
}

const RANGE_CONFIG: &str = r#"
listeners:
  - name: web
    address: @LISTEN@
    routes:
      - name: ranged
        match: {path: {prefix: /doc}}
        proxy: {pool: app}
        transform:
          response:
            json: {remove: ["/secret"]}
pools:
  - name: app
    backends: [{address: '@APP@'}]
"#;

/// The JSON document of the range-honouring upstream.
const RANGE_DOC: &str = r#"{"id":1,"secret":"hunter2","name":"Ann","list":[1,2,3]}"#;

/// `bytes=A-B` (both given).
fn byte_range(v: &str) -> Option<(usize, usize)> {
    let (a, b) = v.trim().strip_prefix("bytes=")?.split_once('-')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

#[test]
fn range_requests_never_bypass_a_response_transformation() -> Result<()> {
    let ranges_seen = Arc::new(AtomicUsize::new(0));
    let origin = {
        let ranges_seen = ranges_seen.clone();
        Backend::start_with(
            "ranged",
            None,
            any_port()?,
            Arc::new(move |req: &Message| {
                let doc = RANGE_DOC.as_bytes();
                if let Some(range) = req.header("range") {
                    ranges_seen.fetch_add(1, Ordering::SeqCst);
                    if let Some((a, b)) = byte_range(range) {
                        let end = b.min(doc.len() - 1);
                        if a <= end {
                            return Response::new(206, doc[a..=end].to_vec())
                                .header("Content-Type", "application/json")
                                .header("Content-Range", format!("bytes {a}-{end}/{}", doc.len()));
                        }
                    }
                }
                Response::new(200, doc.to_vec())
                    .header("Content-Type", "application/json")
                    .header("Accept-Ranges", "bytes")
            }),
        )?
    };
    let p = start(RANGE_CONFIG, &[("APP", origin.addr().to_string())], &[])?;

    let m = http::request(p.listen, "GET", "/doc/1", &[("Range", "bytes=0-20")])?;
    ensure!(
        !m.text().contains("secret"),
        "a range handed out what the transformation removes:\n{}",
        show(&m)
    );
    ensure!(
        m.header("content-range").is_none(),
        "a slice, not the transformed document:\n{}",
        show(&m)
    );
    ensure!(
        ok_json(&m)? == json!({"id": 1, "name": "Ann", "list": [1, 2, 3]}),
        "{}",
        show(&m)
    );
    ensure!(
        ranges_seen.load(Ordering::SeqCst) == 0,
        "the upstream was asked for a range of a document edge transforms"
    );
    ensure!(origin.requests() == 1, "{}", origin.requests());
    Ok(())
}

/// Routes for the request-side regressions, all on the echoing `app`.
const GAPS_CONFIG: &str = r#"
listeners:
  - name: web
    address: @LISTEN@
    routes:
      - name: api
        match: {path: {prefix: /api}}
        proxy: {pool: app, strip_prefix: /api}
        transform:
          request:
            query: {remove: [debug]}
      - name: checked
        match: {path: {exact: /checked}}
        proxy: {pool: app}
        validate:
          schema: {type: object, properties: {role: {type: string, enum: [admin, user]}}}
      - name: shaped
        match: {path: {prefix: /shaped}}
        proxy: {pool: app}
        transform:
          request:
            json: {set: {"/via": "edge"}}
pools:
  - name: app
    backends: [{address: '@APP@'}]
"#;

#[test]
fn query_changes_apply_after_strip_prefix() -> Result<()> {
    let app = echo_backend("app")?;
    let p = start(GAPS_CONFIG, &[("APP", app.addr().to_string())], &[])?;
    let m = http::get(p.listen, "/api/users?debug=1&x=2")?;
    let seen = Seen::of(&m)?;
    ensure!(
        seen.target == "/users?x=2",
        "the prefix is stripped and debug removed: the upstream got {:?}",
        seen.target
    );
    Ok(())
}

#[test]
fn duplicate_json_keys_are_refused_before_validation_and_transformation() -> Result<()> {
    let app = echo_backend("app")?;
    let p = start(GAPS_CONFIG, &[("APP", app.addr().to_string())], &[])?;
    for path in ["/checked", "/shaped"] {
        let m = post_json(p.listen, path, br#"{"role":"admin","role":"user"}"#)?;
        let body = expect_error(&m, 400, "request body is not valid JSON")
            .with_context(|| path.to_string())?;
        let message = body["message"].as_str().unwrap_or_default().to_lowercase();
        ensure!(
            message.contains("duplicate") && message.contains("role"),
            "{path}: the message should name the duplicate key:\n{}",
            show(&m)
        );
    }
    ensure!(
        app.requests() == 0,
        "the backend saw {} refused requests",
        app.requests()
    );
    Ok(())
}

#[test]
fn a_client_expecting_100_continue_gets_it_from_edge_on_body_reading_routes() -> Result<()> {
    let app = echo_backend("app")?;
    let p = start(GAPS_CONFIG, &[("APP", app.addr().to_string())], &[])?;
    let body = br#"{"name":"Ann"}"#;
    let mut c = TcpStream::connect_timeout(&p.listen, DEADLINE)?;
    c.set_write_timeout(Some(DEADLINE))?;
    let head = format!(
        "POST /shaped/continue HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        p.listen,
        body.len()
    );
    c.write_all(head.as_bytes())?;
    // The body is sent only once edge has asked for it.
    let (interim, rest) = read_head_within(&mut c, Duration::from_secs(3))
        .context("waiting for `100 Continue` before sending the body")?;
    ensure!(
        interim.starts_with(b"HTTP/1.1 100"),
        "expected `HTTP/1.1 100 Continue`, got {:?}",
        String::from_utf8_lossy(&interim)
    );
    c.write_all(body)?;
    c.set_read_timeout(Some(DEADLINE))?;
    let mut r = BufReader::new(Cursor::new(rest).chain(c));
    let m = http::read_message(&mut r)?.context("closed without a final response")?;
    let seen = Seen::of(&m)?;
    ensure!(
        seen.json()? == json!({"name": "Ann", "via": "edge"}),
        "upstream body: {}",
        String::from_utf8_lossy(&seen.body)
    );
    ensure!(
        seen.header("expect").is_none(),
        "the upstream was asked for 100-continue on a body edge already has: {seen:?}"
    );
    Ok(())
}

#[test]
fn non_json_bodies_on_a_json_transform_route_are_not_limited_or_touched() -> Result<()> {
    let app = echo_backend("app")?;
    let p = start(GAPS_CONFIG, &[("APP", app.addr().to_string())], &[])?;
    let body: Vec<u8> = (0..100 * 1024usize).map(|i| (i % 251) as u8).collect();
    let m = send_body(
        p.listen,
        "POST",
        "/shaped/blob",
        &[("Content-Type", "application/octet-stream")],
        &body,
        Framing::Length,
    )?;
    let seen = Seen::of(&m)?;
    ensure!(
        seen.body == body,
        "the octet-stream body changed: {} bytes upstream, {} sent",
        seen.body.len(),
        body.len()
    );
    ensure!(
        seen.header("content-type") == Some("application/octet-stream"),
        "{seen:?}"
    );
    Ok(())
}

#[test]
fn an_empty_chunked_body_on_a_body_reading_route_does_not_hang() -> Result<()> {
    let app = echo_backend("app")?;
    let p = start(GAPS_CONFIG, &[("APP", app.addr().to_string())], &[])?;
    let wire = format!(
        "POST /shaped/empty HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        p.listen
    );
    let m = exchange_within(p.listen, wire.as_bytes(), Duration::from_secs(3))
        .context("no answer within 3 s: the upstream is still waiting for a body")?;
    let seen = Seen::of(&m)?;
    ensure!(seen.method == "POST" && seen.body.is_empty(), "{seen:?}");
    Ok(())
}

#[test]
fn head_on_an_xml_route_gets_the_json_head() -> Result<()> {
    let origin = Backend::start_with(
        "xml",
        None,
        any_port()?,
        Arc::new(|_: &Message| {
            Response::new(200, "<doc><name>Ann</name></doc>")
                .header("Content-Type", "application/xml")
        }),
    )?;
    let p = start(XML_CONFIG, &[("APP", origin.addr().to_string())], &[])?;

    let get = http::get(p.listen, "/x/doc")?;
    ensure!(
        ok_json(&get)? == json!({"doc": {"name": "Ann"}}),
        "{}",
        show(&get)
    );
    let get_type = get
        .header("content-type")
        .context("the GET answer has a type")?
        .to_string();
    ensure!(get_type.starts_with("application/json"), "{}", show(&get));

    let mut c = TcpStream::connect_timeout(&p.listen, DEADLINE)?;
    c.set_write_timeout(Some(DEADLINE))?;
    c.write_all(
        format!(
            "HEAD /x/doc HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            p.listen
        )
        .as_bytes(),
    )?;
    let (head, mut rest) = read_head_within(&mut c, DEADLINE)?;
    c.set_read_timeout(Some(DEADLINE))?;
    match c.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => return Err(e).context("the HEAD answer was not ended"),
    }
    let m = head_message(&head)?;
    ensure!(m.status() == Some(200), "{}", show(&m));
    ensure!(
        m.header("content-type") == Some(get_type.as_str()),
        "a HEAD gets the head a GET gets ({get_type}):\n{}",
        show(&m)
    );
    ensure!(
        rest.is_empty(),
        "a HEAD answer has no body, got {:?}",
        String::from_utf8_lossy(&rest)
    );
    Ok(())
}

const CACHED_VERSIONS_CONFIG: &str = r#"
cache: {}
listeners:
  - name: web
    address: @LISTEN@
    cache: {}
    routes:
      - name: items-v2
        match: {path: {prefix: /items}, headers: [{name: accept-version, value: "2"}]}
        proxy: {pool: v2}
      - name: items-v1
        match: {path: {prefix: /items}}
        proxy: {pool: v1}
pools:
  - name: v1
    backends: [{address: '@V1@'}]
  - name: v2
    backends: [{address: '@V2@'}]
"#;

#[test]
fn routes_told_apart_by_a_header_do_not_share_cache_entries() -> Result<()> {
    let cacheable = |name: &'static str| -> Result<Backend> {
        Backend::start_with(
            name,
            None,
            any_port()?,
            Arc::new(move |_: &Message| {
                Response::new(200, format!("{name} answer"))
                    .header("Content-Type", "text/plain")
                    .header("Cache-Control", "max-age=60")
            }),
        )
    };
    let (v1, v2) = (cacheable("v1")?, cacheable("v2")?);
    let p = start(
        CACHED_VERSIONS_CONFIG,
        &[("V1", v1.addr().to_string()), ("V2", v2.addr().to_string())],
        &[],
    )?;
    let v2_header = [("Accept-Version", "2")];
    let served = |m: &Message, want: &str| -> Result<()> {
        ensure!(
            m.status() == Some(200)
                && m.header("x-backend") == Some(want)
                && m.text() == format!("{want} answer"),
            "expected {want}'s answer:\n{}",
            show(m)
        );
        Ok(())
    };

    // v2 first, until it is served from the cache.
    let m = http::request(p.listen, "GET", "/items/7", &v2_header)?;
    served(&m, "v2")?;
    wait::until("v2's answer to be cached", DEADLINE, || {
        let m = http::request(p.listen, "GET", "/items/7", &v2_header)?;
        served(&m, "v2")?;
        Ok((m.header("x-cache-status") == Some("HIT")).then_some(()))
    })?;
    // Without the header the request is v1's: never v2's cached answer.
    let m = http::get(p.listen, "/items/7")?;
    served(&m, "v1")?;
    ensure!(v1.requests() == 1, "v1 saw {}", v1.requests());

    // The other way round: v1's cached answer is not v2's.
    let m = http::get(p.listen, "/items/8")?;
    served(&m, "v1")?;
    wait::until("v1's answer to be cached", DEADLINE, || {
        let m = http::get(p.listen, "/items/8")?;
        served(&m, "v1")?;
        Ok((m.header("x-cache-status") == Some("HIT")).then_some(()))
    })?;
    let m = http::request(p.listen, "GET", "/items/8", &v2_header)?;
    served(&m, "v2")?;
    Ok(())
}

#[test]
fn a_json_request_body_goes_upstream_as_xml() -> Result<()> {
    let app = echo_backend("app")?;
    let p = start(
        r#"
listeners:
  - name: web
    address: @LISTEN@
    routes:
      - name: legacy
        match: {path: {prefix: /orders}}
        proxy: {pool: app}
        transform:
          request:
            json: {remove: ["/order/card"]}
            json_to_xml: true
pools:
  - name: app
    backends: [{address: '@APP@'}]
"#,
        &[("APP", app.addr().to_string())],
        &[],
    )?;
    let body = json!({"order": {
        "@id": "7",
        "card": "4111",
        "item": [{"@sku": "A-1", "#text": "two & more"}, "plain"],
        "note": null
    }});
    let seen = Seen::of(&post_json(
        p.listen,
        "/orders",
        body.to_string().as_bytes(),
    )?)?;
    let ct: Vec<&str> = seen
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.as_str())
        .collect();
    ensure!(ct == ["application/xml"], "content-type upstream: {ct:?}");
    let xml = String::from_utf8(seen.body.clone())?;
    ensure!(
        xml == "<?xml version=\"1.0\" encoding=\"UTF-8\"?><order id=\"7\"><item sku=\"A-1\">two &amp; more</item><item>plain</item><note/></order>",
        "upstream got {xml}"
    );
    let length: Vec<&str> = seen
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.as_str())
        .collect();
    ensure!(
        length == [xml.len().to_string()],
        "content-length upstream: {length:?}"
    );

    // A document with no XML form is the client's to fix: 400, and the
    // upstream never sees it.
    let before = app.requests();
    let m = post_json(p.listen, "/orders", br#"{"a": 1, "b": 2}"#)?;
    expect_error(&m, 400, "the request body has no XML form")?;
    let m = post_json(p.listen, "/orders", br#"{"order": {"bad name": 1}}"#)?;
    expect_error(&m, 400, "the request body has no XML form")?;
    ensure!(app.requests() == before, "the upstream saw a refused body");
    // Other bodies pass as they are.
    let m = send_body(
        p.listen,
        "POST",
        "/orders",
        &[("Content-Type", "text/plain")],
        b"{\"order\": 1}",
        Framing::Length,
    )?;
    ensure!(Seen::of(&m)?.body == b"{\"order\": 1}", "{}", show(&m));
    Ok(())
}

#[test]
fn a_bodiless_request_on_a_validating_route_goes_on_without_a_length() -> Result<()> {
    let app = echo_backend("app")?;
    let p = start(
        r#"
listeners:
  - name: web
    address: @LISTEN@
    routes:
      - name: items
        match: {path: {prefix: /items}}
        proxy: {pool: app}
        validate:
          schema: {type: object}
pools:
  - name: app
    backends: [{address: '@APP@'}]
"#,
        &[("APP", app.addr().to_string())],
        &[],
    )?;
    let seen = Seen::of(&http::get(p.listen, "/items/1")?)?;
    ensure!(
        seen.header("content-length").is_none() && seen.header("transfer-encoding").is_none(),
        "a GET without a body reached the upstream with framing: {:?}",
        seen.headers
    );
    Ok(())
}
