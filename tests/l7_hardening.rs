//! The faults found when edge was attacked (issue 8), each through a real
//! edge on loopback with real backends and raw sockets: route bypass by
//! unnormalised paths and hosts, forwarded-header spoofing, hop-by-hop
//! response fields, pipelining, timeouts, forwarding loops, admin access,
//! head limits, slow bodies, and stopping.

use anyhow::{Context, Result};
use edge_tests::{
    backend::{Backend, Handler, Response, echo},
    http::{self, Message},
    loopback,
    proxy::Proxy,
    wait,
};
use std::{
    io::{BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    sync::Arc,
    time::{Duration, Instant},
};

fn backend(name: &str) -> Result<Backend> {
    Backend::start(name, None, "127.0.0.1:0".parse()?)
}

fn backend_with(name: &str, handler: Handler) -> Result<Backend> {
    Backend::start_with(name, None, "127.0.0.1:0".parse()?, handler)
}

fn pool(name: &str, b: &Backend) -> String {
    format!(
        "  - name: {name}\n    backends: [{{address: {}}}]\n",
        b.addr()
    )
}

/// edge with one listener whose catch-all is pool `app` of `app`;
/// `listener` is added to the listener, `pool` to the pool (YAML lines).
fn proxy(app: &Backend, listener: &str, pool_extra: &str) -> Result<Proxy> {
    Proxy::start(|listen| {
        format!(
            "listeners:\n  - name: web\n    address: {listen}\n    pool: app\n{listener}pools:\n{}{pool_extra}",
            pool("app", app)
        )
    })
}

/// Sends `raw` bytes as they are and reads every response until the
/// connection closes (or 10 s pass).
fn raw(addr: SocketAddr, raw: &[u8]) -> Result<Vec<Message>> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(raw)?;
    let mut reader = BufReader::new(stream);
    let mut out = Vec::new();
    while let Ok(Some(m)) = http::read_message(&mut reader) {
        out.push(m);
    }
    Ok(out)
}

fn raw_one(addr: SocketAddr, request: &str) -> Result<Message> {
    raw(addr, request.as_bytes())?
        .into_iter()
        .next()
        .with_context(|| format!("no response to {request:?}"))
}

#[test]
fn no_path_or_host_walks_around_a_route() -> Result<()> {
    let app = backend("app")?;
    let p = Proxy::start(|listen| {
        format!(
            "\
listeners:
  - name: web
    address: {listen}
    pool: app
    routes:
      - name: admin
        match: {{ path: {{ prefix: /admin }} }}
        respond: {{ status: 403, body: \"no\" }}
      - name: admin-host
        match: {{ hosts: [admin.example] }}
        respond: {{ status: 403, body: \"no\" }}
pools:
{}",
            pool("app", &app)
        )
    })?;
    for path in [
        "/admin",
        "//admin/",
        "/./admin/",
        "/%61dmin/",
        "/%61%64%6d%69%6e",
        "/x/../admin/",
        "/x/%2e%2e/admin",
        "/x/..;/admin",
        "/admin;x",
        "/admin;jsessionid=1/secret",
    ] {
        let r = raw_one(
            p.listen,
            &format!("GET {path} HTTP/1.1\r\nHost: www.example\r\nConnection: close\r\n\r\n"),
        )?;
        assert_eq!(r.status(), Some(403), "{path}: {}", r.start);
    }
    for host in ["admin.example.", "ADMIN.example", "admin.example:80"] {
        let r = raw_one(
            p.listen,
            &format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        )?;
        assert_eq!(r.status(), Some(403), "Host {host}: {}", r.start);
    }
    // HTTP/1.0 needs no Host: an absolute-form target's host is routed on.
    let r = raw_one(
        p.listen,
        "GET http://admin.example/ HTTP/1.0\r\nConnection: close\r\n\r\n",
    )?;
    assert_eq!(r.status(), Some(403), "{}", r.start);
    // Hosts and targets that cannot be normalised safely.
    for request in [
        "GET / HTTP/1.1\r\nHost: admin.example:abc\r\nConnection: close\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: admin.example..\r\nConnection: close\r\n\r\n",
        "GET /admin%2Fsecret HTTP/1.1\r\nHost: www.example\r\nConnection: close\r\n\r\n",
        "GET /admin%5csecret HTTP/1.1\r\nHost: www.example\r\nConnection: close\r\n\r\n",
        "GET /x\\..\\admin HTTP/1.1\r\nHost: www.example\r\nConnection: close\r\n\r\n",
        "GET /admin\\x HTTP/1.1\r\nHost: www.example\r\nConnection: close\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a.example\r\nHost: admin.example\r\nConnection: close\r\n\r\n",
        "GET http://admin.example/ HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET /../etc/passwd HTTP/1.1\r\nHost: www.example\r\nConnection: close\r\n\r\n",
        "GET /a%zz HTTP/1.1\r\nHost: www.example\r\nConnection: close\r\n\r\n",
        "GET /a%00 HTTP/1.1\r\nHost: www.example\r\nConnection: close\r\n\r\n",
    ] {
        let r = raw_one(p.listen, request)?;
        assert_eq!(r.status(), Some(400), "{request:?}: {}", r.start);
    }
    // In absolute form the target's host is the one routed on (RFC 9112
    // §3.2.2); Pingora already refuses a Host that disagrees with it.
    let r = raw_one(
        p.listen,
        "GET http://admin.example/ HTTP/1.1\r\nHost: admin.example\r\nConnection: close\r\n\r\n",
    )?;
    assert_eq!(r.status(), Some(403), "{}", r.start);
    let r = raw_one(
        p.listen,
        "GET http://admin.example/ HTTP/1.1\r\nHost: www.example\r\nConnection: close\r\n\r\n",
    )?;
    assert!(matches!(r.status(), Some(400 | 403)), "{}", r.start);
    assert_eq!(app.requests(), 0, "nothing reached the backend");
    // What is forwarded is the normalised request.
    let r = raw_one(
        p.listen,
        "GET http://WWW.Example.:80/a/./b/../%63//d?q=%2e HTTP/1.1\r\nHost: WWW.Example.:80\r\nConnection: close\r\n\r\n",
    )?;
    assert_eq!(r.status(), Some(200), "{}", r.start);
    let body = r.text();
    assert!(body.starts_with("GET /a/c/d?q=%2e HTTP/1.1\n"), "{body}");
    assert!(body.contains("host: www.example:80\n"), "{body}");
    Ok(())
}

#[test]
fn strip_prefix_cannot_climb_out() -> Result<()> {
    let app = backend("app")?;
    let p = Proxy::start(|listen| {
        format!(
            "\
listeners:
  - name: web
    address: {listen}
    routes:
      - match: {{ path: {{ prefix: /api }} }}
        proxy: {{ pool: app, strip_prefix: /api }}
pools:
{}",
            pool("app", &app)
        )
    })?;
    let r = raw_one(
        p.listen,
        "GET /api/../../etc/passwd HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )?;
    assert_eq!(r.status(), Some(400), "{}", r.start);
    assert_eq!(app.requests(), 0);
    let r = raw_one(
        p.listen,
        "GET /api/./x/%2e%2e/y HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )?;
    assert!(r.text().starts_with("GET /y HTTP/1.1\n"), "{}", r.text());
    Ok(())
}

#[test]
fn forwarded_headers_join_lines_and_drop_untrusted_claims() -> Result<()> {
    let app = backend("app")?;
    let p = Proxy::start(|listen| {
        let other = SocketAddr::new(listen.ip(), listen.port() + 1);
        format!(
            "\
listeners:
  - name: trusting
    address: {listen}
    pool: app
    trusted_proxies: [127.0.0.0/8]
  - name: strict
    address: {other}
    pool: app
pools:
{}",
            pool("app", &app)
        )
    })?;
    let spoof = "X-Forwarded-For: 203.0.113.1\r\nX-Forwarded-For: 10.0.0.2, 10.0.0.3\r\n\
                 X-Real-IP: 203.0.113.9\r\nForwarded: for=203.0.113.9\r\nTrue-Client-IP: 203.0.113.9\r\n\
                 X-Original-URL: /admin\r\nX-Rewrite-URL: /admin\r\nX-Client-IP: 203.0.113.9\r\n\
                 X-Forwarded-Port: 1\r\nX-Forwarded-Prefix: /x\r\n";
    let r = raw_one(
        p.listen,
        &format!("GET / HTTP/1.1\r\nHost: a\r\n{spoof}Connection: close\r\n\r\n"),
    )?;
    let body = r.text();
    // The test client connects from 127.0.0.1 whatever address edge has.
    let peer = "127.0.0.1";
    assert!(
        body.contains(&format!(
            "x-forwarded-for: 203.0.113.1, 10.0.0.2, 10.0.0.3, {peer}\n"
        )),
        "{body}"
    );
    assert!(
        body.contains("x-real-ip: 203.0.113.9"),
        "trusted keeps: {body}"
    );
    let strict = SocketAddr::new(p.listen.ip(), p.listen.port() + 1);
    let r = raw_one(
        strict,
        &format!("GET / HTTP/1.1\r\nHost: a\r\n{spoof}Connection: close\r\n\r\n"),
    )?;
    let body = r.text().to_ascii_lowercase();
    assert!(
        body.contains(&format!("x-forwarded-for: {peer}\n")),
        "{body}"
    );
    for gone in [
        "x-real-ip",
        "forwarded:",
        "true-client-ip",
        "x-original-url",
        "x-rewrite-url",
        "x-client-ip",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "203.0.113",
    ] {
        assert!(!body.contains(gone), "{gone} reached the backend: {body}");
    }
    Ok(())
}

#[test]
fn hop_by_hop_response_fields_stay_upstream() -> Result<()> {
    let handler: Handler = Arc::new(|_: &Message| {
        Response::new(200, "ok")
            .header("Connection", "X-Internal")
            .header("X-Internal", "secret")
            .header("Keep-Alive", "timeout=99")
            .header("Proxy-Connection", "keep-alive")
            .header("X-Public", "yes")
    });
    let app = backend_with("app", handler)?;
    let p = proxy(&app, "", "")?;
    let r = http::get(p.listen, "/")?;
    assert_eq!(r.status(), Some(200));
    assert_eq!(r.header("x-public"), Some("yes"));
    for gone in ["x-internal", "keep-alive", "proxy-connection"] {
        assert_eq!(r.header(gone), None, "{gone}: {:?}", r.headers);
    }
    assert!(
        r.header("connection")
            .is_none_or(|v| v.eq_ignore_ascii_case("close")),
        "{:?}",
        r.headers
    );
    Ok(())
}

#[test]
fn pipelined_requests_are_answered_in_order() -> Result<()> {
    let app = backend("app")?;
    let p = proxy(&app, "", "")?;
    let responses = raw(
        p.listen,
        b"GET /one HTTP/1.1\r\nHost: a\r\n\r\nGET /two HTTP/1.1\r\nHost: a\r\n\r\n\
          GET /three HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )?;
    let firsts: Vec<String> = responses
        .iter()
        .map(|m| m.text().lines().next().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        firsts,
        [
            "GET /one HTTP/1.1",
            "GET /two HTTP/1.1",
            "GET /three HTTP/1.1"
        ],
        "{responses:?}"
    );
    Ok(())
}

#[test]
fn upstream_timeouts_answer_504() -> Result<()> {
    let handler: Handler = Arc::new(|req: &Message| {
        if req.start.contains("/slow") {
            std::thread::sleep(Duration::from_secs(3));
        }
        echo(req)
    });
    let app = backend_with("app", handler)?;
    let p = proxy(&app, "", "    timeouts: { read: 10s, total: 300ms }\n")?;
    let t = Instant::now();
    let r = http::get(p.listen, "/slow")?;
    assert_eq!(r.status(), Some(504), "{}", r.start);
    assert!(t.elapsed() < Duration::from_secs(2));
    Ok(())
}

#[test]
fn a_pool_pointing_back_at_edge_answers_508() -> Result<()> {
    let p = Proxy::start(|listen| {
        format!(
            "listeners:\n  - name: web\n    address: {listen}\n    pool: me\npools:\n  - name: me\n    backends: [{{address: {listen}}}]\n"
        )
    })?;
    let r = http::get(p.listen, "/")?;
    assert_eq!(r.status(), Some(508), "{}", r.start);
    // One trip round, not thousands: the first return is refused.
    let loops = p.sample("edge_http_loops_detected_total")?;
    assert_eq!(loops, Some(1.0));
    let requests = || -> Result<f64> {
        Ok(p.metrics()?
            .lines()
            .filter(|l| l.starts_with("edge_http_requests_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    };
    // The client's request is counted once its answer has gone out.
    wait::until(
        "both requests to be counted",
        Duration::from_secs(5),
        || Ok((requests()? >= 2.0).then_some(())),
    )?;
    assert_eq!(requests()?, 2.0, "the client's request and its one return");
    Ok(())
}

#[test]
fn admin_changes_need_the_allow_list_and_the_token() -> Result<()> {
    let at = loopback::endpoints(1);
    let (listen, admin) = (at.listeners[0], at.admin);
    let dir = tempfile::tempdir()?;
    let app = backend("app")?;
    let yaml = |allow: &str, token: &str| {
        format!(
            "listeners:\n  - name: web\n    address: {listen}\n    pool: app\n    cache: {{ enabled: true }}\n\
             pools:\n{}cache: {{ max_size: 1MiB }}\nadmin:\n  address: {admin}\n{allow}{token}\
             server: {{ threads: 1, grace_period_seconds: 0 }}\n",
            pool("app", &app)
        )
    };
    // Changes from a peer outside the allow-list are refused; reads are not.
    let edge = loopback::start_edge(dir.path(), &yaml("  allow: [10.0.0.0/8]\n", ""), &at)?;
    let r = http::request(admin, "PURGE", "/cache/web/a/x", &[])?;
    assert_eq!(r.status(), Some(403), "{}", r.text());
    assert_eq!(http::get(admin, "/metrics")?.status(), Some(200));
    drop(edge);
    let token = "s3cret-token-0123456789";
    let edge = loopback::start_edge(dir.path(), &yaml("", &format!("  token: {token}\n")), &at)?;
    let r = http::request(admin, "PURGE", "/cache/web/a/x", &[])?;
    assert_eq!(r.status(), Some(401), "{}", r.text());
    assert!(r.header("www-authenticate").is_some());
    let r = http::request(
        admin,
        "PURGE",
        "/cache/web/a/x",
        &[("Authorization", "Bearer wrong-token-0123456789")],
    )?;
    assert_eq!(r.status(), Some(401));
    let bearer = format!("Bearer {token}");
    let r = http::request(
        admin,
        "PURGE",
        "/cache/web/a/x",
        &[("Authorization", &bearer)],
    )?;
    assert!(
        matches!(r.status(), Some(200 | 404)),
        "allowed through: {}",
        r.start
    );
    let log = edge.log_text();
    assert!(log.contains("admin change"), "writes are logged: {log}");
    Ok(())
}

#[test]
fn request_heads_over_the_limits_get_414_and_431() -> Result<()> {
    let app = backend("app")?;
    let p = proxy(
        &app,
        "    limits: { max_uri_length: 100B, max_request_headers: 10, max_request_head_size: 2KiB }\n",
        "",
    )?;
    let long = format!("/{}", "a".repeat(200));
    assert_eq!(http::get(p.listen, &long)?.status(), Some(414));
    let many: Vec<(String, String)> = (0..12).map(|i| (format!("X-H{i}"), "v".into())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        http::request(p.listen, "GET", "/", &many)?.status(),
        Some(431)
    );
    let big = "v".repeat(3000);
    assert_eq!(
        http::request(p.listen, "GET", "/", &[("X-Big", &big)])?.status(),
        Some(431)
    );
    assert_eq!(http::get(p.listen, "/fine")?.status(), Some(200));
    assert_eq!(app.requests(), 1);
    Ok(())
}

#[test]
fn a_trickling_body_gets_408() -> Result<()> {
    let app = backend("app")?;
    let p = proxy(&app, "    limits: { min_body_rate: 1KiB }\n", "")?;
    let mut s = TcpStream::connect(p.listen)?;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    s.write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n")?;
    let started = Instant::now();
    let mut got = Vec::new();
    // One byte every 200 ms, for at most 15 s, until edge answers.
    while started.elapsed() < Duration::from_secs(15) {
        if s.write_all(b"x").is_err() {
            break;
        }
        let mut buf = [0u8; 1024];
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(_) => {}
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "got {text:?}");
    assert!(started.elapsed() < Duration::from_secs(12));
    Ok(())
}

/// An edge whose grace period is long, for the stopping tests.
fn long_grace(app: &Backend) -> Result<(edge_tests::edge::Edge, SocketAddr, tempfile::TempDir)> {
    let at = loopback::endpoints(1);
    let listen = at.listeners[0];
    let dir = tempfile::tempdir()?;
    let yaml = format!(
        "listeners:\n  - name: web\n    address: {listen}\n    pool: app\npools:\n{}admin:\n  address: {}\nserver: {{ threads: 1, grace_period_seconds: 30 }}\n",
        pool("app", app),
        at.admin
    );
    let edge = loopback::start_edge(dir.path(), &yaml, &at)?;
    Ok((edge, listen, dir))
}

/// Fails unless `t` is less than `limit` ago: how long a stop took.
fn took_less_than(t: Instant, limit: Duration) {
    assert!(t.elapsed() < limit, "took {:?}", t.elapsed());
}

fn signal(edge: &edge_tests::edge::Edge, sig: libc::c_int) -> Result<()> {
    let pid = edge.pid().context("edge is not running")?;
    // SAFETY: kill(2) on the PID of our own, not yet reaped, child.
    if unsafe { libc::kill(pid as libc::pid_t, sig) } != 0 {
        anyhow::bail!("kill: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// With nothing in flight, `sig` stops an edge with a 30 s grace at once.
fn an_idle_edge_stops_at_once_on(sig: libc::c_int) -> Result<()> {
    let app = backend("app")?;
    let (mut edge, listen, _dir) = long_grace(&app)?;
    assert_eq!(http::get(listen, "/")?.status(), Some(200));
    let t = Instant::now();
    signal(&edge, sig)?;
    assert_eq!(edge.wait_exit(Duration::from_secs(10))?, Some(0));
    took_less_than(t, Duration::from_secs(5));
    Ok(())
}

#[test]
fn sigterm_with_nothing_in_flight_stops_at_once() -> Result<()> {
    an_idle_edge_stops_at_once_on(libc::SIGTERM)
}

/// An edge with a long grace period and one request in flight, held by
/// its backend for `hold`.
struct InFlight {
    edge: edge_tests::edge::Edge,
    client: std::thread::JoinHandle<Result<Message>>,
    _dir: tempfile::TempDir,
    _app: Backend,
}

fn one_in_flight(hold: Duration) -> Result<InFlight> {
    let handler: Handler = Arc::new(move |req: &Message| {
        if req.start.contains("/slow") {
            std::thread::sleep(hold);
        }
        echo(req)
    });
    let app = backend_with("app", handler)?;
    let (edge, listen, dir) = long_grace(&app)?;
    let client = std::thread::spawn(move || http::get(listen, "/slow"));
    wait::until(
        "the slow request to reach the backend",
        Duration::from_secs(5),
        || Ok((app.requests() > 0).then_some(())),
    )?;
    Ok(InFlight {
        edge,
        client,
        _dir: dir,
        _app: app,
    })
}

#[test]
fn sigterm_finishes_what_is_in_flight_then_stops() -> Result<()> {
    // Every part bound, so nothing of the setup is dropped early.
    let InFlight {
        mut edge,
        client,
        _dir,
        _app,
    } = one_in_flight(Duration::from_millis(1500))?;
    let t = Instant::now();
    signal(&edge, libc::SIGTERM)?;
    let r = client
        .join()
        .map_err(|_| anyhow::anyhow!("client panicked"))??;
    assert_eq!(r.status(), Some(200), "the request in flight was served");
    assert_eq!(edge.wait_exit(Duration::from_secs(10))?, Some(0));
    took_less_than(t, Duration::from_secs(6));
    Ok(())
}

#[test]
fn a_second_signal_during_the_drain_stops_at_once() -> Result<()> {
    let InFlight {
        mut edge,
        client: _client,
        _dir,
        _app,
    } = one_in_flight(Duration::from_secs(20))?;
    signal(&edge, libc::SIGTERM)?;
    // Still draining a while later: the request is in flight.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        edge.exit_status().is_none(),
        "edge left before the drain ended"
    );
    let t = Instant::now();
    signal(&edge, libc::SIGINT)?;
    edge.wait_exit(Duration::from_secs(5))?;
    took_less_than(t, Duration::from_secs(3));
    Ok(())
}

/// edge's resident set size, from /proc.
fn rss_bytes(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")?;
    Ok(kb * 1024)
}

/// Sends pipelined GETs over `conns` keep-alive connections until `count`
/// requests are answered or `limit` passes; returns how many were.
fn load(addr: SocketAddr, conns: usize, count: usize, limit: Duration) -> Result<usize> {
    const BATCH: usize = 64;
    let deadline = Instant::now() + limit;
    let per = count.div_ceil(conns);
    let workers: Vec<_> = (0..conns)
        .map(|_| {
            std::thread::spawn(move || -> Result<usize> {
                let stream = TcpStream::connect(addr)?;
                stream.set_read_timeout(Some(Duration::from_secs(10)))?;
                let mut writer = stream.try_clone()?;
                let mut reader = BufReader::new(stream);
                let batch = "GET /m HTTP/1.1\r\nHost: a\r\n\r\n".repeat(BATCH);
                let mut done = 0;
                while done < per && Instant::now() < deadline {
                    writer.write_all(batch.as_bytes())?;
                    for _ in 0..BATCH {
                        let m = http::read_message(&mut reader)?.context("closed")?;
                        anyhow::ensure!(m.status() == Some(200), "{}", m.start);
                    }
                    done += BATCH;
                }
                Ok(done)
            })
        })
        .collect();
    let mut total = 0;
    for w in workers {
        total += w
            .join()
            .map_err(|_| anyhow::anyhow!("load thread panicked"))??;
    }
    Ok(total)
}

#[test]
fn memory_stays_flat_with_nobody_scraping() -> Result<()> {
    let p = Proxy::start(|listen| {
        format!(
            "listeners:\n  - name: web\n    address: {listen}\n    routes:\n      - respond: {{ status: 200, body: ok }}\n"
        )
    })?;
    let pid = p.edge.pid().context("edge is not running")?;
    // Warm up with as much load as is then measured, past several folds
    // of the histograms: the allocator and the recorder's sample blocks
    // (freed a little after each fold) reach their steady state here, not
    // in the measured run. Only what keeps growing after that is a leak.
    let warm = load(p.listen, 4, 400_000, Duration::from_secs(30))?;
    // Each reading follows a fold: the recorder folds every 5 s whatever
    // happens, so up to 5 s of unfolded samples (several MB at a fast
    // machine's rate) would otherwise sit in one reading and not the
    // other. Nothing outside edge can see a fold happen (scraping would
    // fold too, and this test is about nobody scraping), hence a wait of
    // one interval and a bit.
    let after_a_fold = || -> Result<u64> {
        std::thread::sleep(edge_userspace::metrics::UPKEEP_INTERVAL + Duration::from_secs(1));
        rss_bytes(pid)
    };
    let before = after_a_fold()?;
    let n = load(p.listen, 4, 400_000, Duration::from_secs(30))?;
    let after = after_a_fold()?;
    let grown = after.saturating_sub(before);
    eprintln!(
        "warm-up {warm} requests, then {n}: RSS {before} -> {after} bytes ({:.1} bytes/request)",
        grown as f64 / n as f64
    );
    // Unfolded samples cost about 40 bytes a request (16 MB for 400k);
    // a fold every 5 s bounds them to one interval's worth.
    assert!(
        n >= 100_000,
        "only {n} requests in 30 s: the machine is too slow for this test"
    );
    assert!(
        grown < 4 * 1024 * 1024,
        "RSS grew by {grown} bytes over {n} requests"
    );
    Ok(())
}

#[test]
fn http2_requests_are_normalised_and_their_cookies_joined() -> Result<()> {
    let app = backend("app")?;
    let ca = edge_tests::tls::Ca::new("edge test CA")?;
    let p = Proxy::start_with(
        |dir| {
            ca.write(dir, "ca")?;
            ca.issue("a", &["a.example.test"])?.write(dir, "a")?;
            Ok(())
        },
        |listen, _| {
            format!(
                "listeners:\n  - name: web\n    address: {listen}\n    pool: app\n    routes:\n      - match: {{ path: {{ prefix: /admin }} }}\n        respond: {{ status: 403 }}\n    tls:\n      certificates: [{{ cert: a.pem, key: a.key }}]\npools:\n{}",
                pool("app", &app)
            )
        },
    )?;
    let curl = |path: &str| -> Result<String> {
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "10",
                "--http2",
                "--path-as-is",
                "--cacert",
            ])
            .arg(p.dir().join("ca.pem"))
            .arg("--resolve")
            .arg(format!(
                "a.example.test:{}:{}",
                p.listen.port(),
                p.listen.ip()
            ))
            .args(["-H", "Cookie: a=1", "-H", "Cookie: b=2"])
            .args(["-w", "\n%{http_version} %{http_code}"])
            .arg(format!("https://a.example.test:{}{path}", p.listen.port()))
            .output()
            .context("running curl")?;
        anyhow::ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let out = curl("/x/../admin")?;
    assert!(out.ends_with("\n2 403"), "{out}");
    let out = curl("/a/./b/%2e%2e/c")?;
    assert!(out.ends_with("\n2 200"), "{out}");
    assert!(out.starts_with("GET /a/c HTTP/1.1\n"), "{out}");
    let cookies: Vec<&str> = out.lines().filter(|l| l.starts_with("cookie:")).collect();
    assert_eq!(cookies, ["cookie: a=1; b=2"], "{out}");
    Ok(())
}

#[test]
fn a_body_that_stops_coming_gets_408() -> Result<()> {
    let app = backend("app")?;
    let p = proxy(&app, "    limits: { body_read_timeout: 1s }\n", "")?;
    let mut s = TcpStream::connect(p.listen)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let t = Instant::now();
    s.write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")?;
    let mut reader = BufReader::new(s);
    let r = http::read_message(&mut reader)?.context("no response")?;
    assert_eq!(r.status(), Some(408), "{}", r.start);
    took_less_than(t, Duration::from_secs(5));
    Ok(())
}

#[test]
fn sigquit_drains_like_sigterm() -> Result<()> {
    an_idle_edge_stops_at_once_on(libc::SIGQUIT)
}

#[test]
fn a_bodiless_request_retried_after_the_rate_grace_is_not_408() -> Result<()> {
    // The first backend answers too late (past the 5 s grace of
    // min_body_rate); the GET is retried on the second and must be served.
    let handler: Handler = Arc::new(|req: &Message| {
        std::thread::sleep(Duration::from_secs(8));
        echo(req)
    });
    let slow = backend_with("slow", handler)?;
    let fast = backend("fast")?;
    let p = Proxy::start(|listen| {
        format!(
            "listeners:\n  - name: web\n    address: {listen}\n    pool: app\npools:\n  - name: app\n    backends: [{{address: {}}}, {{address: {}}}]\n    timeouts: {{ read: 5500ms }}\n    retries: {{ attempts: 1 }}\n",
            slow.addr(),
            fast.addr()
        )
    })?;
    // Round robin: one of the first two requests goes to the slow one.
    for _ in 0..2 {
        let r = http::get(p.listen, "/")?;
        assert_eq!(r.status(), Some(200), "{} {}", r.start, r.text());
        assert_eq!(r.header("x-backend"), Some("fast"));
        if slow.requests() > 0 {
            return Ok(());
        }
    }
    anyhow::bail!("no request went to the slow backend");
}
