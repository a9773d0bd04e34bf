//! gRPC through a real edge on loopback, with real gRPC backends and a
//! real gRPC client (grpcio, `tests/grpc/*.py`) and raw HTTP/2 calls:
//!
//! - unary, server-streaming, client-streaming and bidi calls over h2c
//!   (HTTP/2 with prior knowledge on a plain listener, to an `h2c` pool)
//!   and over TLS (h2 by ALPN on both sides); metadata and trailers pass
//!   through, a backend's error status too, and each call is counted by
//!   its final status.
//! - edge's own errors as gRPC "trailers-only" answers: UNIMPLEMENTED
//!   when no route matches, UNAVAILABLE for a backend that refuses
//!   connections or a pool that speaks HTTP/1.1, DEADLINE_EXCEEDED at the
//!   client's `grpc-timeout` however long the pool's timeouts are,
//!   RESOURCE_EXHAUSTED for one message over `max_body_size` (a long
//!   stream of small messages passes), its message naming the limit and
//!   not the backend; UNAVAILABLE from an `h2` pool whose TLS backend
//!   speaks only HTTP/1.1 (no fallback to it).
//! - gRPC is HTTP/2 only: an HTTP/1.1 request saying `application/grpc`
//!   keeps the plain body limit (413).
//! - a backend killed mid-stream: the client's stream ends UNAVAILABLE,
//!   the backend is ejected and the other serves. Calls the client ends
//!   (it goes away mid-stream, sends a message over the limit, or its own
//!   deadline runs out) neither eject the backend nor open the breaker.
//! - gRPC health checks take a NOT_SERVING backend out and back.
//! - an UNAVAILABLE answer is retried on another backend; NOT_FOUND is
//!   not retried.
//! - `edge check` locates gRPC configuration mistakes.

use anyhow::{Context, Result, bail, ensure};
use edge_tests::{
    edge::{Refused, check, expect_refused},
    grpc::{
        self, BackendOptions, GRPC_HEADERS, GrpcBackend, GrpcClient, RawAnswer, frame, raw_call,
    },
    http,
    metrics::{metric, wait_metric},
    proxy::{Proxy, refusing_port},
    tls::{Ca, TlsBackend},
    wait,
};
use serde_json::{Value, json};
use std::{
    net::{SocketAddr, TcpListener},
    path::Path,
    time::{Duration, Instant},
};

/// How long any awaited condition may take.
const DEADLINE: Duration = Duration::from_secs(15);

/// Starts edge with `yaml` (see [`Proxy::start_template`]).
fn start(yaml: &str, vars: &[(&str, String)]) -> Result<Proxy> {
    Proxy::start_template(yaml, vars)
}

/// A plain backend.
fn backend(name: &str) -> Result<GrpcBackend> {
    GrpcBackend::start(name, &BackendOptions::default())
}

/// `[{address: A}, ...]` for a pool's `backends`.
fn addresses(backends: &[&GrpcBackend]) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|b| format!("{{ address: '{}' }}", b.addr))
        .collect();
    format!("[{}]", list.join(", "))
}

/// A client.py command calling `test.Echo` with `kind` at `target`.
fn echo(target: SocketAddr, tls: &Value, kind: &str, requests: &[&str]) -> Value {
    let method = match kind {
        "unary" => "Unary",
        "server_stream" => "ServerStream",
        "client_stream" => "ClientStream",
        _ => "Bidi",
    };
    grpc::command(target, tls, kind, &format!("/test.Echo/{method}"), requests)
}

/// A plaintext unary call of `test.Echo` through `p`.
fn unary(c: &mut GrpcClient, p: &Proxy, request: &str) -> Result<Value> {
    c.call(&echo(p.listen, &Value::Null, "unary", &[request]))
}

/// Which backend answered a call (its `x-backend` metadata).
fn served_by(done: &Value) -> String {
    done["trailers"]["x-backend"]
        .as_str()
        .or(done["initial"]["x-backend"].as_str())
        .unwrap_or("-")
        .to_string()
}

/// `n` unary calls through `p`, each of which must succeed; who served
/// them.
fn served(c: &mut GrpcClient, p: &Proxy, n: usize) -> Result<Vec<String>> {
    let mut by = Vec::with_capacity(n);
    for i in 0..n {
        let r = unary(c, p, &format!("call {i}"))?;
        ensure!(r["code"] == "OK", "call {i}: {r}");
        by.push(served_by(&r));
    }
    Ok(by)
}

/// The four kinds of calls at `target`, all served by `backend`.
fn four_kinds(c: &mut GrpcClient, target: SocketAddr, tls: &Value, backend: &str) -> Result<()> {
    let r = c.call(&echo(target, tls, "unary", &["hello"]))?;
    ensure!(
        r["code"] == "OK" && r["responses"] == json!(["hello"]),
        "{r}"
    );
    ensure!(
        r["initial"]["x-backend"] == backend
            && r["trailers"]["x-backend"] == backend
            && r["trailers"]["x-trailer"] == "kept",
        "metadata and trailers pass through: {r}"
    );
    let r = c.call(&echo(target, tls, "unary", &["status:5:not here"]))?;
    ensure!(
        r["code"] == "NOT_FOUND"
            && r["details"] == "not here"
            && r["trailers"]["x-backend"] == backend,
        "the backend's status, message and trailers pass through: {r}"
    );
    let r = c.call(&echo(target, tls, "server_stream", &["3:0"]))?;
    ensure!(
        r["code"] == "OK"
            && r["responses"] == json!(["0", "1", "2"])
            && r["initial"]["x-backend"] == backend
            && r["trailers"]["x-backend"] == backend,
        "{r}"
    );
    let r = c.call(&echo(target, tls, "client_stream", &["a", "b", "c"]))?;
    ensure!(
        r["code"] == "OK" && r["responses"] == json!(["a|b|c"]),
        "{r}"
    );
    let r = c.call(&echo(target, tls, "bidi", &["x", "y"]))?;
    ensure!(
        r["code"] == "OK" && r["responses"] == json!(["echo:x", "echo:y"]),
        "{r}"
    );
    Ok(())
}

/// One listener routing `test.Echo` to pool `echo`, whose settings (after
/// its name) are `@POOL@`.
const ECHO: &str = "\
listeners:
  - name: grpc
    address: @LISTEN@
    routes:
      - name: echo
        match: { grpc: { service: test.Echo } }
        proxy: { pool: echo }
pools:
  - name: echo
@POOL@";

/// [`ECHO`]'s pool over TLS (HTTP/2 by ALPN) to backend `@B1@`, trusting
/// `@CA@`.
const H2_POOL: &str = "    protocol: h2
    tls: { ca: '@CA@', sni: backend.test }
    backends: [{ address: '@B1@' }]
";

#[test]
fn four_kinds_through_h2c() -> Result<()> {
    let b = backend("b1")?;
    let pool = format!("    protocol: h2c\n    backends: {}\n", addresses(&[&b]));
    let p = start(ECHO, &[("POOL", pool)])?;
    let mut c = GrpcClient::start()?;
    four_kinds(&mut c, p.listen, &Value::Null, "b1")?;
    let counted = |status: &str, want: f64| {
        wait_metric(
            || p.metrics(),
            "edge_grpc_requests_total",
            &[("route", "echo"), ("pool", "echo"), ("grpc_status", status)],
            DEADLINE,
            |v| v == want,
        )
    };
    counted("OK", 4.0)?;
    counted("NOT_FOUND", 1.0)?;
    Ok(())
}

#[test]
fn four_kinds_through_tls_h2() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = Ca::new("gRPC test CA")?;
    let ca_file = ca.write(dir.path(), "ca")?;
    let (cert, key) = ca
        .issue("grpc.test", &["grpc.test"])?
        .write(dir.path(), "edge")?;
    let backend_tls = ca
        .issue("backend.test", &["backend.test"])?
        .write(dir.path(), "backend")?;
    let b = GrpcBackend::start(
        "tls1",
        &BackendOptions {
            tls: Some(backend_tls),
            ..Default::default()
        },
    )?;
    let listener_tls = "    tls: { certificates: [{ cert: '@CERT@', key: '@KEY@' }] }\n    routes:";
    let p = start(
        &ECHO.replace("    routes:", listener_tls),
        &[
            ("POOL", H2_POOL.to_string()),
            ("CERT", cert.display().to_string()),
            ("KEY", key.display().to_string()),
            ("CA", ca_file.display().to_string()),
            ("B1", b.addr.to_string()),
        ],
    )?;
    let mut c = GrpcClient::start()?;
    four_kinds(&mut c, p.listen, &grpc::tls(&ca_file, "grpc.test"), "tls1")
}

/// A raw gRPC call of `path` with `extra` headers and one message.
fn raw(addr: SocketAddr, path: &str, extra: &[(&str, &str)], msg: &[u8]) -> Result<RawAnswer> {
    let mut headers: Vec<(&str, &str)> = GRPC_HEADERS.to_vec();
    headers.extend_from_slice(extra);
    raw_call(addr, path, &headers, &frame(msg))
}

/// `a` is edge's own gRPC error `code`: a trailers-only answer.
fn edge_error(a: &RawAnswer, code: &str) -> Result<()> {
    ensure!(
        a.status == 200
            && a.ends_with_head
            && a.header("content-type") == Some("application/grpc")
            && a.header("grpc-status") == Some(code),
        "expected a trailers-only answer with grpc-status {code}, got {a:?}"
    );
    Ok(())
}

#[test]
fn edge_errors_are_grpc_errors() -> Result<()> {
    let b = backend("b1")?;
    let (_reserved, refused) = refusing_port()?;
    // A listening socket nobody accepts on: connections complete (the
    // kernel's backlog), then nothing is ever said. The Python backend
    // applies the grpc-timeout it is sent by itself, so only this one
    // shows that edge applies it too.
    let hole = TcpListener::bind("127.0.0.1:0")?;
    let p = start(
        "\
listeners:
  - name: grpc
    address: @LISTEN@
    limits: { max_body_size: 1KiB }
    routes:
      - name: echo
        match: { grpc: { service: test.Echo } }
        proxy: { pool: slow }
      - name: hole
        match: { grpc: { service: test.Hole } }
        proxy: { pool: hole }
      - name: refused
        match: { grpc: { service: test.Refused } }
        proxy: { pool: refused }
      - name: legacy
        match: { grpc: { service: test.Legacy } }
        proxy: { pool: legacy }
pools:
  - name: slow
    protocol: h2c
    timeouts: { connect: 30s, read: 30s }
    backends: [{ address: '@B1@' }]
  - name: hole
    protocol: h2c
    timeouts: { connect: 30s, read: 30s, write: 30s }
    backends: [{ address: '@HOLE@' }]
  - name: refused
    protocol: h2c
    backends: [{ address: '@REFUSED@' }]
  - name: legacy
    backends: [{ address: '@B1@' }]
",
        &[
            ("B1", b.addr.to_string()),
            ("HOLE", hole.local_addr()?.to_string()),
            ("REFUSED", refused.to_string()),
        ],
    )?;

    let a = raw(p.listen, "/other.Svc/M", &[], b"x")?;
    edge_error(&a, "12").context("no route")?;
    let a = raw(p.listen, "/test.Refused/M", &[], b"x")?;
    edge_error(&a, "14").context("a backend refusing connections")?;
    let a = raw(p.listen, "/test.Legacy/M", &[], b"x")?;
    edge_error(&a, "14").context("an HTTP/1.1 pool")?;
    ensure!(
        a.grpc_message().is_some_and(|m| m.contains("h2")),
        "the message says gRPC needs h2: {a:?}"
    );

    for path in ["/test.Hole/Unary", "/test.Echo/Unary"] {
        let started = Instant::now();
        let a = raw(p.listen, path, &[("grpc-timeout", "300m")], b"sleep:3000")?;
        let took = started.elapsed();
        ensure!(
            a.status == 200 && a.grpc_status() == Some("4"),
            "{path}: expected DEADLINE_EXCEEDED, got {a:?}"
        );
        ensure!(
            took < Duration::from_secs(2),
            "{path}: the 300 ms grpc-timeout took {took:?}"
        );
        if path.starts_with("/test.Hole/") {
            edge_error(&a, "4").context("edge's own DEADLINE_EXCEEDED")?;
        }
    }

    // max_body_size bounds each message, not the stream.
    let a = raw(p.listen, "/test.Echo/Unary", &[], &[b'x'; 2000])?;
    edge_error(&a, "8").context("a 2000-byte message over a 1 KiB limit")?;
    // edge's own words, not the error chain around them (where it
    // happened, the backend's address among it).
    let said = a.grpc_message().unwrap_or_default();
    let backend_addr = b.addr.to_string();
    ensure!(
        said.contains("max_body_size")
            && !said.contains("Peer")
            && !said.contains(backend_addr.as_str()),
        "the message names the limit, not the backend ({backend_addr}): {said:?}"
    );
    let parts: Vec<String> = (0..20).map(|i| format!("{i:0>200}")).collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let mut c = GrpcClient::start()?;
    let r = c.call(&echo(p.listen, &Value::Null, "client_stream", &parts))?;
    ensure!(
        r["code"] == "OK" && r["responses"] == json!([parts.join("|")]),
        "20 messages of 200 bytes under a 1 KiB limit: {}",
        r["code"]
    );
    Ok(())
}

#[test]
fn http1_grpc_content_type_keeps_the_body_limit() -> Result<()> {
    let b = backend("b1")?;
    // Routed by path: the request is one edge could take to the pool.
    let p = start(
        "\
listeners:
  - name: grpc
    address: @LISTEN@
    limits: { max_body_size: 1KiB }
    routes:
      - name: echo
        match: { path: { prefix: /test.Echo/ } }
        proxy: { pool: echo }
pools:
  - name: echo
    protocol: h2c
    backends: [{ address: '@B1@' }]
",
        &[("B1", b.addr.to_string())],
    )?;
    // One gRPC message: 4000 bytes in all, declared by Content-Length.
    let body = frame(&[b'x'; 3995]);
    ensure!(body.len() == 4000, "{} bytes", body.len());
    let r = http::send(
        p.listen,
        "POST",
        "/test.Echo/Unary",
        &[("content-type", "application/grpc"), ("te", "trailers")],
        &body,
    )?;
    ensure!(
        r.status() == Some(413),
        "gRPC is HTTP/2 only: an HTTP/1.1 body over max_body_size gets 413, got {} {:?} {:?}",
        r.start,
        r.headers,
        r.text()
    );
    Ok(())
}

#[test]
fn h2_pool_never_falls_back_to_http1() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = Ca::new("gRPC test CA")?;
    let ca_file = ca.write(dir.path(), "ca")?;
    // An HTTPS backend that picks no ALPN protocol: HTTP/1.1 only.
    let b = TlsBackend::start(&ca.issue("backend.test", &["backend.test"])?, "not gRPC")?;
    let p = start(
        ECHO,
        &[
            ("POOL", H2_POOL.to_string()),
            ("CA", ca_file.display().to_string()),
            ("B1", b.addr().to_string()),
        ],
    )?;
    let a = raw(p.listen, "/test.Echo/Unary", &[], b"hello")?;
    ensure!(
        b.handshakes() >= 1,
        "edge never completed a TLS handshake with the backend: {a:?}"
    );
    ensure!(
        a.status == 200 && a.grpc_status() == Some("14"),
        "an h2 pool whose backend speaks HTTP/1.1 is UNAVAILABLE, not a fallback: {a:?}"
    );
    ensure!(
        a.grpc_message().is_some_and(|m| m.contains("HTTP/2")),
        "the message says the backend did not speak HTTP/2: {a:?}"
    );
    Ok(())
}

/// Pool `echo` with `backends`, round robin, plus `extra` settings.
fn echo_pool(backends: &[&GrpcBackend], extra: &str) -> String {
    format!(
        "    protocol: h2c\n    algorithm: round_robin\n    backends: {}\n{extra}",
        addresses(backends)
    )
}

#[test]
fn backend_killed_mid_stream() -> Result<()> {
    let (b1, b2) = (backend("b1")?, backend("b2")?);
    let pool = echo_pool(
        &[&b1, &b2],
        "    outlier_detection: { consecutive_failures: 1, ejection_time: 60s }\n",
    );
    let p = start(ECHO, &[("POOL", pool)])?;
    let mut c = GrpcClient::start()?;
    c.send(&echo(p.listen, &Value::Null, "server_stream", &["50:100"]))?;
    let first = c.next_line(DEADLINE)?;
    ensure!(
        first["event"] == "message",
        "expected a first message: {first}"
    );
    let serving = first["initial"]["x-backend"].as_str().unwrap_or("-");
    let (mut gone, other) = match serving {
        "b1" => (b1, b2),
        "b2" => (b2, b1),
        s => bail!("the stream came from {s:?}: {first}"),
    };
    gone.kill();
    let done = c.until_done(DEADLINE)?;
    ensure!(
        done["code"] == "UNAVAILABLE",
        "the broken stream ends UNAVAILABLE: {done}"
    );
    let got = done["responses"].as_array().map_or(0, Vec::len);
    ensure!(
        (1..50).contains(&got),
        "{got} messages before the break: {done}"
    );

    let gone_addr = gone.addr.to_string();
    wait_metric(
        || p.metrics(),
        "edge_upstream_ejections_total",
        &[("pool", "echo"), ("backend", gone_addr.as_str())],
        DEADLINE,
        |v| v >= 1.0,
    )?;
    let by = served(&mut c, &p, 6)?;
    ensure!(
        by.iter().all(|s| *s == other.name),
        "all served by {} once {} is ejected: {by:?}",
        other.name,
        gone.name
    );
    Ok(())
}

/// `echo` behind a listener whose messages may be 1 KiB at most; the
/// pool's settings (after its name) are `@POOL@`.
const LIMITED_ECHO: &str = "\
listeners:
  - name: grpc
    address: @LISTEN@
    limits: { max_body_size: 1KiB }
    routes:
      - name: echo
        match: { grpc: { service: test.Echo } }
        proxy: { pool: echo }
pools:
  - name: echo
@POOL@";

/// The gRPC calls on `route` edge has counted, whatever their status:
/// those it is done with.
fn calls(p: &Proxy, route: &str) -> Result<f64> {
    let label = format!("route=\"{route}\"");
    Ok(p.metrics()?
        .lines()
        .filter(|l| l.starts_with("edge_grpc_requests_total{") && l.contains(label.as_str()))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>())
}

/// Waits until edge has counted `n` gRPC calls on `route`.
fn wait_calls(p: &Proxy, route: &str, n: f64) -> Result<()> {
    wait::until(
        &format!("{n} gRPC calls counted on route {route}"),
        DEADLINE,
        || Ok((calls(p, route)? >= n).then_some(())),
    )
}

#[test]
fn client_side_endings_do_not_eject_backends() -> Result<()> {
    let b = backend("b1")?;
    // One failure would eject the only backend (max_ejected_percent: 100;
    // by default at most half the pool goes), two calls of which one
    // failed would open the breaker.
    let pool = echo_pool(
        &[&b],
        concat!(
            "    outlier_detection: { consecutive_failures: 1, ejection_time: 60s, max_ejected_percent: 100 }\n",
            "    circuit_breaker: { error_ratio: 0.5, min_requests: 2, window: 10s, open_for: 60s }\n",
        ),
    );
    let p = start(LIMITED_ECHO, &[("POOL", pool)])?;

    // Clients that go away mid-stream: client.py killed (its Drop) once
    // the first message came, which breaks its connection and the stream.
    for i in 0..3 {
        let mut c = GrpcClient::start()?;
        c.send(&echo(p.listen, &Value::Null, "server_stream", &["50:100"]))?;
        let first = c.next_line(DEADLINE)?;
        ensure!(
            first["event"] == "message",
            "stream {i}: expected a first message (UNAVAILABLE: the backend was \
             ejected for a client that went away): {first}"
        );
        drop(c);
    }
    wait_calls(&p, "echo", 3.0).context("edge is done with the broken streams")?;

    // Messages over max_body_size: the client's doing.
    for i in 0..3 {
        let a = raw(p.listen, "/test.Echo/Unary", &[], &[b'x'; 2000])?;
        edge_error(&a, "8").with_context(|| format!("call {i}: a message over 1 KiB"))?;
    }
    wait_calls(&p, "echo", 6.0)?;

    // The client's own deadline running out, whether edge or the backend
    // (which applies grpc-timeout too) says so first.
    for i in 0..3 {
        let a = raw(
            p.listen,
            "/test.Echo/Unary",
            &[("grpc-timeout", "50m")],
            b"sleep:1000",
        )?;
        ensure!(
            a.status == 200 && a.grpc_status() == Some("4"),
            "call {i}: expected DEADLINE_EXCEEDED, got {a:?}"
        );
    }
    wait_calls(&p, "echo", 9.0)?;

    let text = p.metrics()?;
    let addr = b.addr.to_string();
    let ejected = metric(
        &text,
        "edge_upstream_ejections_total",
        &[("pool", "echo"), ("backend", addr.as_str())],
    );
    ensure!(
        ejected.is_none_or(|n| n == 0.0),
        "the backend was ejected for the clients' doing: {ejected:?}"
    );
    let state = metric(
        &text,
        "edge_upstream_circuit_breaker_state",
        &[("pool", "echo")],
    );
    ensure!(
        state.is_none_or(|s| s == 0.0),
        "the breaker is not closed: state {state:?}"
    );
    let mut c = GrpcClient::start()?;
    let r = unary(&mut c, &p, "still serving")?;
    ensure!(
        r["code"] == "OK" && r["responses"] == json!(["still serving"]),
        "the backend still serves: {r}"
    );
    Ok(())
}

/// Writes `status` into a backend's health file in one step.
fn set_health(file: &Path, status: &str) -> Result<()> {
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, status)?;
    std::fs::rename(&tmp, file)?;
    Ok(())
}

#[test]
fn grpc_health_checks() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let files = [dir.path().join("b1.health"), dir.path().join("b2.health")];
    let mut started = Vec::new();
    for (name, file) in ["b1", "b2"].into_iter().zip(&files) {
        set_health(file, "SERVING")?;
        let opts = BackendOptions {
            health_file: Some(file.clone()),
            ..Default::default()
        };
        started.push(GrpcBackend::start(name, &opts)?);
    }
    let (b1, b2) = (&started[0], &started[1]);
    let pool = echo_pool(
        &[b1, b2],
        "    health_check: { type: grpc, service: test.Echo, interval: 200ms, timeout: 150ms, rise: 1, fall: 1 }\n",
    );
    let p = start(ECHO, &[("POOL", pool)])?;
    let b1_addr = b1.addr.to_string();
    let healthy = |want: f64| {
        wait_metric(
            || p.metrics(),
            "edge_upstream_backend_healthy",
            &[("pool", "echo"), ("backend", b1_addr.as_str())],
            DEADLINE,
            |v| v == want,
        )
    };
    healthy(1.0)?;
    set_health(&files[0], "NOT_SERVING")?;
    healthy(0.0)?;
    let mut c = GrpcClient::start()?;
    let by = served(&mut c, &p, 6)?;
    ensure!(by.iter().all(|s| s == "b2"), "b1 is NOT_SERVING: {by:?}");

    set_health(&files[0], "SERVING")?;
    healthy(1.0)?;
    let by = served(&mut c, &p, 6)?;
    ensure!(by.iter().any(|s| s == "b1"), "b1 serves again: {by:?}");
    Ok(())
}

#[test]
fn unavailable_is_retried_elsewhere() -> Result<()> {
    let b1 = GrpcBackend::start(
        "b1",
        &BackendOptions {
            unavailable: true,
            ..Default::default()
        },
    )?;
    let b2 = backend("b2")?;
    let retries = "    retries: { attempts: 1, min_per_window: 100 }\n";
    let p = start(ECHO, &[("POOL", echo_pool(&[&b1, &b2], retries))])?;
    let mut c = GrpcClient::start()?;
    let by = served(&mut c, &p, 8)?;
    ensure!(
        by.iter().all(|s| s == "b2"),
        "b1's UNAVAILABLE is retried on b2: {by:?}"
    );
    let retried = metric(
        &p.metrics()?,
        "edge_upstream_retries_total",
        &[("pool", "echo")],
    );
    ensure!(
        retried.is_some_and(|n| n >= 1.0),
        "retries counted: {retried:?}"
    );
    drop(p);

    // NOT_FOUND is the call's answer, not the backend's failure.
    let p = start(ECHO, &[("POOL", echo_pool(&[&b2], retries))])?;
    for _ in 0..4 {
        let r = unary(&mut c, &p, "status:5:nope")?;
        ensure!(r["code"] == "NOT_FOUND" && served_by(&r) == "b2", "{r}");
    }
    wait_metric(
        || p.metrics(),
        "edge_grpc_requests_total",
        &[("route", "echo"), ("grpc_status", "NOT_FOUND")],
        DEADLINE,
        |v| v == 4.0,
    )?;
    let retried = metric(
        &p.metrics()?,
        "edge_upstream_retries_total",
        &[("pool", "echo")],
    );
    ensure!(
        retried.unwrap_or(0.0) == 0.0,
        "NOT_FOUND is not retried: {retried:?}"
    );
    Ok(())
}

/// A config routing gRPC with `route_match` to pool `echo`, whose
/// settings after its backends are `pool`.
fn config(route_match: &str, pool: &str) -> String {
    format!(
        "\
listeners:
  - name: grpc
    address: 127.0.0.1:8080
    routes:
      - name: echo
        match: {route_match}
        proxy: {{ pool: echo }}
pools:
  - name: echo
    backends: [{{ address: 127.0.0.1:9000 }}]
{pool}"
    )
}

#[test]
fn configs_are_checked() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        config(
            "{ grpc: { service: test.Echo, method: Unary } }",
            "    protocol: h2c\n    retries: { attempts: 1, grpc_status: [UNAVAILABLE, RESOURCE_EXHAUSTED] }\n    health_check: { type: grpc, service: test.Echo }\n",
        ),
    )?;
    let (ok, text) = check(&[good.as_path()])?;
    ensure!(ok, "a good gRPC config is refused:\n{text}");

    let service = "{ grpc: { service: test.Echo } }";
    // (name, route match, pool settings, marker of the faulty line, a word
    // the message must have)
    let bad = [
        (
            "h2-without-tls",
            service,
            "    protocol: h2\n",
            "protocol: h2",
            "h2 is HTTP/2 over TLS",
        ),
        (
            "unknown-grpc-status",
            service,
            "    protocol: h2c\n    retries: { attempts: 1, grpc_status: [NOPE] }\n",
            "grpc_status",
            "NOPE",
        ),
        (
            "bad-service-name",
            "{ grpc: { service: \"bad service\" } }",
            "    protocol: h2c\n",
            "bad service",
            "bad service",
        ),
        (
            "grpc-check-with-path",
            service,
            "    protocol: h2c\n    health_check: { type: grpc, path: /x }\n",
            "health_check",
            "path",
        ),
    ];
    let cases = bad
        .into_iter()
        .map(|(name, route_match, pool, marker, word)| Refused {
            name,
            yaml: config(route_match, pool),
            marker,
            word,
        })
        .collect();
    expect_refused(dir.path(), cases)?;
    Ok(())
}
