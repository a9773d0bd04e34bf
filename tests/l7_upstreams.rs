//! Upstream pools through a real edge on loopback with real backends: each
//! load-balancing algorithm's distribution, active health checks, passive
//! outlier ejection, retries (on connect failures, never on a POST that
//! reached the upstream), the circuit breaker, timeouts, upstream
//! keep-alive, the access log and the request metrics.

use anyhow::{Result, bail};
use edge_tests::{
    backend::{Backend, Handler, Response, echo},
    http::{self, Message},
    proxy::{Proxy, free_port, refusing_port},
    wait,
};
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

const DEADLINE: Duration = Duration::from_secs(15);

fn backend(name: &str) -> Result<Backend> {
    Backend::start(name, None, "127.0.0.1:0".parse()?)
}

fn backend_with(name: &str, handler: Handler) -> Result<Backend> {
    Backend::start_with(name, None, "127.0.0.1:0".parse()?, handler)
}

fn served_by(m: &Message) -> String {
    m.header("x-backend").unwrap_or("-").to_string()
}

/// `n` GETs of `path`; how many each backend served.
fn spread(p: &Proxy, n: usize, path: &str) -> Result<HashMap<String, usize>> {
    let mut out = HashMap::new();
    for _ in 0..n {
        let r = http::get(p.listen, path)?;
        *out.entry(served_by(&r)).or_default() += 1;
    }
    Ok(out)
}

fn pool_yaml(listen: SocketAddr, pool: &str) -> String {
    format!(
        "listeners:\n  - name: web\n    address: {listen}\n    pool: app\npools:\n  - name: app\n{pool}"
    )
}

fn backends_yaml(backends: &[&Backend]) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|b| format!("{{address: {}}}", b.addr()))
        .collect();
    format!("    backends: [{}]\n", list.join(", "))
}

#[test]
fn round_robin_and_weighted_round_robin_distributions() -> Result<()> {
    let (a, b, c) = (backend("a")?, backend("b")?, backend("c")?);
    let p = Proxy::start(|l| {
        pool_yaml(
            l,
            &format!(
                "    algorithm: round_robin\n{}",
                backends_yaml(&[&a, &b, &c])
            ),
        )
    })?;
    let got = spread(&p, 30, "/")?;
    assert_eq!(
        got,
        HashMap::from([("a".into(), 10), ("b".into(), 10), ("c".into(), 10)])
    );
    drop(p);
    let p = Proxy::start(|l| {
        pool_yaml(
            l,
            &format!(
                "    algorithm: weighted_round_robin\n    backends: [{{address: {}, weight: 3}}, {{address: {}, weight: 1}}]\n",
                a.addr(),
                b.addr()
            ),
        )
    })?;
    let got = spread(&p, 40, "/")?;
    assert_eq!(got, HashMap::from([("a".into(), 30), ("b".into(), 10)]));
    Ok(())
}

/// With one backend busy on a slow request, least_connections and p2c
/// send every new request to the idle one.
#[test]
fn least_connections_and_p2c_avoid_the_busy_backend() -> Result<()> {
    let slow: Handler = Arc::new(|req: &Message| {
        if req.start.contains("/slow") {
            // Long enough that the quick requests below finish while it is held,
            // even on a loaded machine.
            std::thread::sleep(Duration::from_secs(3));
        }
        echo(req)
    });
    for algorithm in ["least_connections", "p2c"] {
        let (a, b) = (
            backend_with("a", slow.clone())?,
            backend_with("b", slow.clone())?,
        );
        let p = Proxy::start(|l| {
            pool_yaml(
                l,
                &format!("    algorithm: {algorithm}\n{}", backends_yaml(&[&a, &b])),
            )
        })?;
        let listen = p.listen;
        let long = std::thread::spawn(move || http::get(listen, "/slow"));
        let busy = wait::until("the slow request to reach a backend", DEADLINE, || {
            Ok(match (a.requests(), b.requests()) {
                (1, 0) => Some("a"),
                (0, 1) => Some("b"),
                _ => None,
            })
        })?;
        let got = spread(&p, 10, "/")?;
        let idle = if busy == "a" { "b" } else { "a" };
        assert_eq!(got, HashMap::from([(idle.to_string(), 10)]), "{algorithm}");
        let slow_resp = long
            .join()
            .map_err(|_| anyhow::anyhow!("slow request thread"))??;
        assert_eq!(served_by(&slow_resp), busy);
    }
    Ok(())
}

#[test]
fn ketama_and_ip_hash_are_sticky() -> Result<()> {
    let (a, b, c) = (backend("a")?, backend("b")?, backend("c")?);
    let p = Proxy::start(|l| {
        pool_yaml(
            l,
            &format!(
                "    algorithm: ketama\n    hash_key: header:X-User\n{}",
                backends_yaml(&[&a, &b, &c])
            ),
        )
    })?;
    let mut homes = HashMap::new();
    for round in 0..3 {
        for user in 0..30 {
            let id = format!("user-{user}");
            let r = http::send(p.listen, "GET", "/", &[("X-User", &id)], b"")?;
            let home = homes.entry(id.clone()).or_insert_with(|| served_by(&r));
            assert_eq!(*home, served_by(&r), "{id} moved in round {round}");
        }
    }
    let used: std::collections::HashSet<_> = homes.values().collect();
    assert_eq!(
        used.len(),
        3,
        "30 users spread over all 3 backends: {homes:?}"
    );
    drop(p);

    let p = Proxy::start(|l| {
        pool_yaml(
            l,
            &format!("    algorithm: ip_hash\n{}", backends_yaml(&[&a, &b, &c])),
        )
    })?;
    let mut used = std::collections::HashSet::new();
    for host in 1..=20u8 {
        let from: IpAddr = format!("127.0.0.{host}").parse()?;
        let first = served_by(&http::get_from(from, p.listen, "/", DEADLINE)?);
        for _ in 0..3 {
            assert_eq!(
                served_by(&http::get_from(from, p.listen, "/", DEADLINE)?),
                first,
                "{from}"
            );
        }
        used.insert(first);
    }
    assert!(used.len() >= 2, "20 clients all on one backend: {used:?}");
    Ok(())
}

#[test]
fn health_checks_take_a_backend_out_and_back() -> Result<()> {
    let sick = Arc::new(AtomicBool::new(false));
    let handler: Handler = {
        let sick = sick.clone();
        Arc::new(move |req: &Message| {
            if req.start.starts_with("GET /health ") && sick.load(Ordering::Relaxed) {
                Response::new(503, "sick")
            } else {
                echo(req)
            }
        })
    };
    let (a, b) = (backend("a")?, backend_with("b", handler)?);
    let p = Proxy::start(|l| {
        pool_yaml(
            l,
            &format!(
                "{}    health_check: {{ path: /health, expected_statuses: [200], interval: 100ms, timeout: 100ms, rise: 2, fall: 2 }}\n",
                backends_yaml(&[&a, &b])
            ),
        )
    })?;
    let gauge = format!(
        "edge_upstream_backend_healthy{{pool=\"app\",backend=\"{}\"}}",
        b.addr()
    );
    assert_eq!(p.sample(&gauge)?, Some(1.0));
    sick.store(true, Ordering::Relaxed);
    wait::until("b to be marked unhealthy", DEADLINE, || {
        Ok((p.sample(&gauge)? == Some(0.0)).then_some(()))
    })?;
    assert_eq!(spread(&p, 10, "/")?, HashMap::from([("a".into(), 10)]));
    sick.store(false, Ordering::Relaxed);
    wait::until("b to be healthy again", DEADLINE, || {
        Ok((p.sample(&gauge)? == Some(1.0)).then_some(()))
    })?;
    assert_eq!(
        spread(&p, 10, "/")?,
        HashMap::from([("a".into(), 5), ("b".into(), 5)])
    );

    // A TCP check notices a backend that stops listening, and its return.
    let port = free_port()?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let c = Backend::start("c", None, addr)?;
    let p = Proxy::start(|l| {
        pool_yaml(
            l,
            &format!(
                "{}    health_check: {{ type: tcp, interval: 100ms, timeout: 100ms, rise: 1, fall: 1 }}\n",
                backends_yaml(&[&a, &c])
            ),
        )
    })?;
    let gauge = format!("edge_upstream_backend_healthy{{pool=\"app\",backend=\"{addr}\"}}");
    drop(c);
    wait::until("c to be marked down", DEADLINE, || {
        Ok((p.sample(&gauge)? == Some(0.0)).then_some(()))
    })?;
    assert_eq!(spread(&p, 6, "/")?, HashMap::from([("a".into(), 6)]));
    let _c = Backend::start("c", None, addr)?;
    wait::until("c to be back", DEADLINE, || {
        Ok((p.sample(&gauge)? == Some(1.0)).then_some(()))
    })?;
    assert_eq!(
        spread(&p, 6, "/")?,
        HashMap::from([("a".into(), 3), ("c".into(), 3)])
    );
    Ok(())
}

#[test]
fn consecutive_5xx_eject_a_backend() -> Result<()> {
    let a = backend("a")?;
    let bad = backend_with("bad", Arc::new(|_: &Message| Response::new(500, "boom")))?;
    let p = Proxy::start(|l| {
        pool_yaml(
            l,
            &format!(
                "{}    outlier_detection: {{ consecutive_failures: 3, ejection_time: 1m }}\n",
                backends_yaml(&[&a, &bad])
            ),
        )
    })?;
    // Round robin alternates until `bad` has failed three times in a row.
    let mut n = 0;
    while bad.requests() < 3 {
        http::get(p.listen, "/")?;
        n += 1;
        if n > 20 {
            bail!("bad never got 3 requests");
        }
    }
    assert_eq!(spread(&p, 10, "/")?, HashMap::from([("a".into(), 10)]));
    assert_eq!(bad.requests(), 3);
    let ejections = format!(
        "edge_upstream_ejections_total{{pool=\"app\",backend=\"{}\"}}",
        bad.addr()
    );
    assert_eq!(p.sample(&ejections)?, Some(1.0));
    Ok(())
}

#[test]
fn retries_on_connect_failure_but_not_on_a_post_that_reached_the_upstream() -> Result<()> {
    // Connections to `dead` are refused.
    let (_reserved, dead) = refusing_port()?;
    let good = backend("good")?;
    let p = Proxy::start(|l| {
        pool_yaml(
            l,
            &format!(
                "    backends: [{{address: {dead}}}, {{address: {}}}]\n    retries: {{ attempts: 1, min_per_window: 100 }}\n",
                good.addr()
            ),
        )
    })?;
    for _ in 0..6 {
        let r = http::send(p.listen, "POST", "/", &[], b"payload")?;
        assert_eq!((r.status(), served_by(&r).as_str()), (Some(200), "good"));
    }
    assert!(
        p.sample("edge_upstream_retries_total{pool=\"app\"}")?
            .unwrap_or(0.0)
            >= 3.0
    );
    drop(p);

    // A backend that takes the request and drops the connection: a POST
    // may have had an effect, so it is not retried; a GET is.
    let dropper = backend_with("dropper", Arc::new(|_: &Message| Response::abort()))?;
    let p = Proxy::start(|l| {
        pool_yaml(
            l,
            &format!(
                "    backends: [{{address: {}}}, {{address: {}}}]\n    retries: {{ attempts: 1, min_per_window: 100 }}\n",
                dropper.addr(),
                good.addr()
            ),
        )
    })?;
    let before = good.requests();
    let r = http::send(p.listen, "POST", "/order", &[], b"buy 1")?;
    assert_eq!(r.status(), Some(502));
    assert_eq!((dropper.requests(), good.requests() - before), (1, 0));
    // The next request starts on `good` (round robin), the one after on
    // `dropper` and is retried on `good`.
    let r = http::send(p.listen, "GET", "/a", &[], b"")?;
    assert_eq!(served_by(&r), "good");
    let r = http::send(p.listen, "GET", "/b", &[], b"")?;
    assert_eq!((r.status(), served_by(&r).as_str()), (Some(200), "good"));
    assert_eq!(dropper.requests(), 2);
    Ok(())
}

#[test]
fn circuit_breaker_opens_and_recovers() -> Result<()> {
    let failing = Arc::new(AtomicBool::new(true));
    let handler: Handler = {
        let failing = failing.clone();
        Arc::new(move |req: &Message| {
            if failing.load(Ordering::Relaxed) {
                Response::new(500, "down")
            } else {
                echo(req)
            }
        })
    };
    let b = backend_with("b", handler)?;
    let p = Proxy::start(|l| {
        pool_yaml(
            l,
            &format!(
                "{}    circuit_breaker: {{ error_ratio: 0.5, min_requests: 4, window: 10s, open_for: 500ms, half_open_requests: 1 }}\n",
                backends_yaml(&[&b])
            ),
        )
    })?;
    for _ in 0..4 {
        assert_eq!(http::get(p.listen, "/")?.status(), Some(500));
    }
    // Outcomes are recorded as requests are logged, just after the client
    // has its response.
    wait::until("the breaker to open", DEADLINE, || {
        Ok(
            (p.sample("edge_upstream_circuit_breaker_state{pool=\"app\"}")? == Some(2.0))
                .then_some(()),
        )
    })?;
    let r = http::get(p.listen, "/")?;
    assert_eq!(r.status(), Some(503));
    assert_eq!(r.text(), "circuit breaker open\n");
    assert_eq!(b.requests(), 4, "an open breaker sends nothing upstream");
    assert_eq!(
        p.sample("edge_upstream_circuit_breaker_state{pool=\"app\"}")?,
        Some(2.0)
    );
    failing.store(false, Ordering::Relaxed);
    wait::until("a half-open probe to close the breaker", DEADLINE, || {
        Ok((http::get(p.listen, "/")?.status() == Some(200)).then_some(()))
    })?;
    // The breaker learns the probe's outcome when the request is logged,
    // just after the client has its response.
    wait::until("the breaker gauge to show closed", DEADLINE, || {
        Ok(
            (p.sample("edge_upstream_circuit_breaker_state{pool=\"app\"}")? == Some(0.0))
                .then_some(()),
        )
    })?;
    assert_eq!(spread(&p, 5, "/")?, HashMap::from([("b".into(), 5)]));
    Ok(())
}

#[test]
fn read_timeout_and_upstream_keepalive() -> Result<()> {
    let handler: Handler = Arc::new(|req: &Message| {
        if req.start.contains("/slow") {
            std::thread::sleep(Duration::from_secs(3));
        }
        echo(req)
    });
    let b = backend_with("b", handler)?;
    let p = Proxy::start(|l| {
        pool_yaml(
            l,
            &format!(
                "{}    timeouts: {{ connect: 1s, read: 300ms }}\n",
                backends_yaml(&[&b])
            ),
        )
    })?;
    for _ in 0..10 {
        assert_eq!(http::get(p.listen, "/")?.status(), Some(200));
    }
    // A connection goes back to the pool just after the client has its
    // response, so the next request may now and then open another one.
    assert!(
        b.connections() <= 3,
        "ten requests should reuse upstream connections, used {}",
        b.connections()
    );
    let start = Instant::now();
    let r = http::get(p.listen, "/slow")?;
    assert!(r.status().is_some_and(|s| s >= 500), "{:?}", r.start);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "the read timeout cut the wait short"
    );
    Ok(())
}

#[test]
fn access_log_and_request_metrics() -> Result<()> {
    let b = backend("b")?;
    let p = Proxy::start_with(
        |_| Ok(()),
        |listen, dir| {
            format!(
                "access_log: {{ path: {} }}\n{}",
                dir.join("access.log").display(),
                pool_yaml(listen, &backends_yaml(&[&b]))
            )
        },
    )?;
    for path in ["/a", "/b?x=1"] {
        http::send(p.listen, "GET", path, &[("Host", "shop.example.com")], b"")?;
    }
    let log = p.dir().join("access.log");
    let lines = wait::until("two access log lines", DEADLINE, || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        Ok((lines.len() >= 2).then_some(lines))
    })?;
    let entry: serde_json::Value = serde_json::from_str(&lines[1])?;
    assert_eq!(entry["method"], "GET");
    assert_eq!(entry["host"], "shop.example.com");
    assert_eq!(entry["path"], "/b?x=1");
    assert_eq!(entry["status"], 200);
    assert_eq!(entry["client"], "127.0.0.1");
    assert_eq!(entry["listener"], "web");
    assert_eq!(entry["route"], "default");
    assert_eq!(entry["pool"], "app");
    assert_eq!(entry["upstream"], b.addr().to_string());
    assert!(entry["bytes_out"].as_u64().is_some_and(|n| n > 0));
    assert!(entry["duration_ms"].as_f64().is_some());
    assert!(entry["time"].as_str().is_some_and(|t| t.ends_with('Z')));

    let m = p.metrics()?;
    let requests = "edge_http_requests_total{listener=\"web\",route=\"default\",pool=\"app\",status_class=\"2xx\"}";
    assert_eq!(edge_tests::proxy::sample(&m, requests), Some(2.0), "{m}");
    assert!(m.contains("edge_http_request_duration_seconds_bucket{listener=\"web\",route=\"default\",le=\"0.1\"}"), "{m}");
    assert!(
        m.contains("edge_http_upstream_duration_seconds_count{pool=\"app\"} 2"),
        "{m}"
    );
    assert!(
        edge_tests::proxy::sample(
            &m,
            "edge_http_response_bytes_total{listener=\"web\",route=\"default\"}"
        )
        .is_some_and(|n| n > 0.0)
    );
    Ok(())
}

/// Health checks of a TLS pool speak TLS and verify as the proxy does: the
/// right CA keeps the backend up, another CA takes it down.
#[test]
fn health_checks_of_a_tls_pool_use_tls() -> Result<()> {
    use edge_tests::tls::{Ca, TlsBackend};
    let right = Ca::new("backend CA")?;
    let wrong = Ca::new("some other CA")?;
    let backend = TlsBackend::start(&right.issue("backend", &["backend.test"])?, "ok")?;
    let be = backend.addr();
    let p = Proxy::start_with(
        |dir| {
            right.write(dir, "right-ca")?;
            wrong.write(dir, "wrong-ca")?;
            Ok(())
        },
        |listen, _| {
            format!(
                "\
listeners:
  - {{ name: web, address: '{listen}', pool: good }}
pools:
  - name: good
    backends: [{{address: '{be}'}}]
    tls: {{ sni: backend.test, ca: right-ca.pem }}
    health_check: {{ path: /health, interval: 100ms, timeout: 100ms, rise: 1, fall: 1 }}
  - name: untrusted
    backends: [{{address: '{be}'}}]
    tls: {{ sni: backend.test, ca: wrong-ca.pem }}
    health_check: {{ path: /health, interval: 100ms, timeout: 100ms, rise: 1, fall: 1 }}
"
            )
        },
    )?;
    let gauge =
        |pool: &str| format!("edge_upstream_backend_healthy{{pool=\"{pool}\",backend=\"{be}\"}}");
    wait::until(
        "the untrusted pool's backend to be marked down",
        DEADLINE,
        || Ok((p.sample(&gauge("untrusted"))? == Some(0.0)).then_some(())),
    )?;
    // Checks of both pools have completed handshakes by now; the good one
    // stays up through several more.
    let seen = backend.handshakes();
    wait::until("more TLS health checks", DEADLINE, || {
        Ok((backend.handshakes() >= seen + 3).then_some(()))
    })?;
    assert_eq!(p.sample(&gauge("good"))?, Some(1.0));
    let r = http::get(p.listen, "/")?;
    assert_eq!((r.status(), r.text().as_str()), (Some(200), "ok"));
    Ok(())
}
