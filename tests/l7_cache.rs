//! The HTTP cache, end to end: real clients, edge as a child process on
//! loopback, and a real upstream whose handler sets the cache headers and
//! counts what reaches it.

use anyhow::{Context, Result, ensure};
use edge_tests::{
    backend::{Backend, Handler, Response},
    http::Message,
    loopback::LoopbackEdge,
};
use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

/// Upper bound of every wait: expiries here are 1 s, refreshes immediate.
const WAIT: Duration = Duration::from_secs(10);

const STATUS: &str = "x-cache-status";

fn backend(handler: Handler) -> Result<Backend> {
    Backend::start_with("origin", None, "127.0.0.1:0".parse()?, handler)
}

/// A handler answering `body` with `headers` on every request.
fn fixed(body: &'static str, headers: &'static [(&'static str, &'static str)]) -> Handler {
    Arc::new(move |_req: &Message| {
        let mut r = Response::new(200, body).header("Content-Type", "text/plain");
        for (k, v) in headers {
            r = r.header(k, *v);
        }
        r
    })
}

fn path_of(req: &Message) -> String {
    req.start
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string()
}

/// A config with the `cache:` section `store` and listener cache policy
/// `policy` (YAML flow maps), proxying to `origin`.
fn config(
    origin: SocketAddr,
    store: &'static str,
    policy: &'static str,
) -> impl FnOnce(SocketAddr, SocketAddr) -> String {
    move |listen, admin| {
        format!(
            "cache: {store}
listeners:
  - name: web
    address: {listen}
    pool: app
    cache: {policy}
pools:
  - name: app
    backends: [{{address: '{origin}'}}]
admin:
  address: {admin}
server:
  threads: 2
"
        )
    }
}

fn status(m: &Message) -> &str {
    m.header(STATUS).unwrap_or("-")
}

fn expect(m: &Message, code: u16, cache: &str, body: &str) -> Result<()> {
    ensure!(
        m.status() == Some(code) && status(m) == cache && m.text() == body,
        "expected {code} {cache} {body:?}, got {} {} {:?} ({:?})",
        m.status().unwrap_or(0),
        status(m),
        m.text(),
        m.headers
    );
    Ok(())
}

/// Waits until `path` is no longer served fresh from the cache.
fn until_not_hit(edge: &LoopbackEdge, path: &str, headers: &[(&str, &str)]) -> Result<Message> {
    edge.wait_for(&format!("{path} to expire"), WAIT, || {
        let m = edge.request("GET", path, headers)?;
        Ok((status(&m) != "HIT").then_some(m))
    })
}

#[test]
fn miss_then_hit_with_age() -> Result<()> {
    let origin = backend(fixed("hello", &[("Cache-Control", "max-age=60")]))?;
    let edge = LoopbackEdge::start(config(origin.addr(), "{}", "{}"))?;
    expect(&edge.get("/a")?, 200, "MISS", "hello")?;
    let hit = edge.get("/a")?;
    expect(&hit, 200, "HIT", "hello")?;
    let age: u64 = hit.header("age").context("a hit has Age")?.parse()?;
    ensure!(age <= 60, "Age {age}");
    expect(&edge.get("/a?x=1")?, 200, "MISS", "hello")?;
    let head = edge.request("HEAD", "/a", &[])?;
    ensure!(status(&head) == "HIT" && head.body.is_empty(), "{head:?}");
    // Ranges are cut from the stored body.
    let range = edge.request("GET", "/a", &[("Range", "bytes=1-3")])?;
    ensure!(
        range.status() == Some(206) && range.text() == "ell",
        "{range:?}"
    );
    ensure!(origin.requests() == 2, "origin saw {}", origin.requests());
    // A hit does not reach the upstream, and a POST is never cached.
    let post = edge.request("POST", "/a", &[("Content-Length", "0")])?;
    ensure!(status(&post) == "BYPASS", "{post:?}");
    ensure!(origin.requests() == 3, "origin saw {}", origin.requests());
    let hits = edge.sample("edge_cache_responses_total{listener=\"web\",status=\"HIT\"}")?;
    ensure!(hits == Some(3.0), "hit counter {hits:?}");
    Ok(())
}

#[test]
fn shared_cache_uses_s_maxage_over_max_age() -> Result<()> {
    let origin = backend(Arc::new(|req: &Message| {
        let cc = match path_of(req).as_str() {
            "/long" => "max-age=0, s-maxage=60",
            _ => "max-age=60, s-maxage=1",
        };
        Response::new(200, "x").header("Cache-Control", cc)
    }))?;
    let edge = LoopbackEdge::start(config(origin.addr(), "{}", "{}"))?;
    expect(&edge.get("/long")?, 200, "MISS", "x")?;
    expect(&edge.get("/long")?, 200, "HIT", "x")?;
    expect(&edge.get("/short")?, 200, "MISS", "x")?;
    let later = until_not_hit(&edge, "/short", &[])?;
    expect(&later, 200, "EXPIRED", "x")?;
    Ok(())
}

#[test]
fn no_store_private_and_set_cookie_are_not_stored() -> Result<()> {
    let origin = backend(Arc::new(|req: &Message| {
        let r = Response::new(200, "x");
        match path_of(req).as_str() {
            "/no-store" => r.header("Cache-Control", "no-store, max-age=60"),
            "/private" => r.header("Cache-Control", "private, max-age=60"),
            _ => r
                .header("Cache-Control", "max-age=60")
                .header("Set-Cookie", "session=1"),
        }
    }))?;
    let edge = LoopbackEdge::start(config(origin.addr(), "{}", "{}"))?;
    for path in ["/no-store", "/private", "/cookie"] {
        expect(&edge.get(path)?, 200, "UNCACHEABLE", "x")?;
        expect(&edge.get(path)?, 200, "UNCACHEABLE", "x")?;
    }
    ensure!(origin.requests() == 6, "origin saw {}", origin.requests());
    Ok(())
}

#[test]
fn no_cache_revalidates_every_time_with_the_etag() -> Result<()> {
    let conditional = Arc::new(AtomicUsize::new(0));
    let seen = conditional.clone();
    let origin = backend(Arc::new(move |req: &Message| {
        if req.header("if-none-match") == Some("\"v1\"") {
            seen.fetch_add(1, Ordering::SeqCst);
            return Response::new(304, "").header("ETag", "\"v1\"");
        }
        Response::new(200, "body-v1")
            .header("Cache-Control", "no-cache")
            .header("ETag", "\"v1\"")
    }))?;
    let edge = LoopbackEdge::start(config(origin.addr(), "{}", "{}"))?;
    expect(&edge.get("/n")?, 200, "MISS", "body-v1")?;
    expect(&edge.get("/n")?, 200, "REVALIDATED", "body-v1")?;
    expect(&edge.get("/n")?, 200, "REVALIDATED", "body-v1")?;
    ensure!(conditional.load(Ordering::SeqCst) == 2);
    Ok(())
}

#[test]
fn vary_keeps_variants_apart() -> Result<()> {
    let origin = backend(Arc::new(|req: &Message| {
        let lang = req.header("accept-language").unwrap_or("none").to_string();
        Response::new(200, format!("in {lang}"))
            .header("Cache-Control", "max-age=60")
            .header("Vary", "Accept-Language")
    }))?;
    let edge = LoopbackEdge::start(config(origin.addr(), "{}", "{}"))?;
    let en = [("Accept-Language", "en")];
    let fr = [("Accept-Language", "fr")];
    expect(&edge.request("GET", "/v", &en)?, 200, "MISS", "in en")?;
    expect(&edge.request("GET", "/v", &fr)?, 200, "MISS", "in fr")?;
    expect(&edge.request("GET", "/v", &en)?, 200, "HIT", "in en")?;
    expect(&edge.request("GET", "/v", &fr)?, 200, "HIT", "in fr")?;
    expect(&edge.get("/v")?, 200, "MISS", "in none")?;
    expect(&edge.get("/v")?, 200, "HIT", "in none")?;
    ensure!(origin.requests() == 3, "origin saw {}", origin.requests());
    Ok(())
}

#[test]
fn accept_encoding_variants_are_keyed_by_the_codings_accepted() -> Result<()> {
    let origin = backend(fixed(
        "body",
        &[("Cache-Control", "max-age=60"), ("Vary", "Accept-Encoding")],
    ))?;
    let edge = LoopbackEdge::start(config(origin.addr(), "{}", "{}"))?;
    let ae = |v| [("Accept-Encoding", v)];
    expect(
        &edge.request("GET", "/ae", &ae("gzip, br"))?,
        200,
        "MISS",
        "body",
    )?;
    expect(
        &edge.request("GET", "/ae", &ae("br,gzip"))?,
        200,
        "HIT",
        "body",
    )?;
    expect(
        &edge.request("GET", "/ae", &ae("gzip;q=0.5, br"))?,
        200,
        "HIT",
        "body",
    )?;
    expect(
        &edge.request("GET", "/ae", &ae("gzip"))?,
        200,
        "MISS",
        "body",
    )?;
    expect(
        &edge.request("GET", "/ae", &ae("gzip, br;q=0"))?,
        200,
        "HIT",
        "body",
    )?;
    ensure!(origin.requests() == 2, "origin saw {}", origin.requests());
    Ok(())
}

/// An origin whose responses expire after 1 s and answer a matching
/// conditional request (`check` on the request) with 304.
fn revalidating_origin(
    validator: (&'static str, &'static str),
    check: fn(&Message) -> bool,
) -> Result<(Backend, Arc<AtomicUsize>)> {
    let not_modified = Arc::new(AtomicUsize::new(0));
    let count = not_modified.clone();
    let origin = backend(Arc::new(move |req: &Message| {
        if check(req) {
            count.fetch_add(1, Ordering::SeqCst);
            return Response::new(304, "")
                .header("Cache-Control", "max-age=60")
                .header(validator.0, validator.1);
        }
        Response::new(200, "original")
            .header("Cache-Control", "max-age=1")
            .header(validator.0, validator.1)
    }))?;
    Ok((origin, not_modified))
}

#[test]
fn etag_revalidation_refreshes_the_entry() -> Result<()> {
    let (origin, not_modified) = revalidating_origin(("ETag", "\"abc\""), |r| {
        r.header("if-none-match") == Some("\"abc\"")
    })?;
    let edge = LoopbackEdge::start(config(origin.addr(), "{}", "{}"))?;
    expect(&edge.get("/e")?, 200, "MISS", "original")?;
    let revalidated = until_not_hit(&edge, "/e", &[])?;
    expect(&revalidated, 200, "REVALIDATED", "original")?;
    // The 304 made the entry fresh for its new max-age.
    expect(&edge.get("/e")?, 200, "HIT", "original")?;
    ensure!(not_modified.load(Ordering::SeqCst) == 1);
    ensure!(origin.requests() == 2, "origin saw {}", origin.requests());
    Ok(())
}

#[test]
fn last_modified_revalidation_refreshes_the_entry() -> Result<()> {
    const LM: &str = "Wed, 21 Oct 2015 07:28:00 GMT";
    let (origin, not_modified) = revalidating_origin(("Last-Modified", LM), |r| {
        r.header("if-modified-since") == Some(LM)
    })?;
    let edge = LoopbackEdge::start(config(origin.addr(), "{}", "{}"))?;
    expect(&edge.get("/l")?, 200, "MISS", "original")?;
    let revalidated = until_not_hit(&edge, "/l", &[])?;
    expect(&revalidated, 200, "REVALIDATED", "original")?;
    expect(&edge.get("/l")?, 200, "HIT", "original")?;
    ensure!(not_modified.load(Ordering::SeqCst) == 1);
    Ok(())
}

#[test]
fn stale_while_revalidate_serves_stale_and_refreshes_in_the_background() -> Result<()> {
    let version = Arc::new(AtomicUsize::new(0));
    let v = version.clone();
    let origin = backend(Arc::new(move |_req: &Message| {
        let n = v.fetch_add(1, Ordering::SeqCst) + 1;
        let cc = if n == 1 {
            "max-age=1, stale-while-revalidate=60"
        } else {
            "max-age=60"
        };
        Response::new(200, format!("v{n}")).header("Cache-Control", cc)
    }))?;
    let edge = LoopbackEdge::start(config(origin.addr(), "{}", "{}"))?;
    expect(&edge.get("/s")?, 200, "MISS", "v1")?;
    let stale = until_not_hit(&edge, "/s", &[])?;
    expect(&stale, 200, "UPDATING", "v1")?;
    edge.wait_for("the background refresh", WAIT, || {
        Ok((origin.requests() >= 2).then_some(()))
    })?;
    let fresh = edge.wait_for("the refreshed entry", WAIT, || {
        let m = edge.get("/s")?;
        Ok((m.text() == "v2").then_some(m))
    })?;
    expect(&fresh, 200, "HIT", "v2")?;
    ensure!(origin.requests() == 2, "origin saw {}", origin.requests());
    // The background refresh is not counted as a client's response.
    let m = edge.metrics()?;
    // (A request between the refresh's fetch and its store is UPDATING too.)
    ensure!(m.contains("status=\"UPDATING\"}"), "{m}");
    ensure!(!m.contains("status=\"EXPIRED\""), "{m}");
    Ok(())
}

#[test]
fn stale_if_error_serves_stale_when_the_upstream_fails_or_is_down() -> Result<()> {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let origin = backend(Arc::new(move |req: &Message| {
        let n = c.fetch_add(1, Ordering::SeqCst);
        if path_of(req) == "/five" && n > 0 {
            return Response::new(503, "down");
        }
        Response::new(200, "saved").header("Cache-Control", "max-age=1, stale-if-error=60")
    }))?;
    let edge = LoopbackEdge::start(config(origin.addr(), "{}", "{}"))?;
    expect(&edge.get("/five")?, 200, "MISS", "saved")?;
    expect(&edge.get("/gone")?, 200, "MISS", "saved")?;
    let stale = until_not_hit(&edge, "/five", &[])?;
    expect(&stale, 200, "STALE", "saved")?;
    drop(origin);
    let stale = until_not_hit(&edge, "/gone", &[])?;
    expect(&stale, 200, "STALE", "saved")?;
    Ok(())
}

#[test]
fn listener_stale_defaults_apply_unless_the_response_forbids_stale() -> Result<()> {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let origin = backend(Arc::new(move |req: &Message| {
        let n = c.fetch_add(1, Ordering::SeqCst);
        if n >= 2 {
            return Response::new(503, "down");
        }
        let cc = match path_of(req).as_str() {
            "/strict" => "max-age=1, must-revalidate",
            _ => "max-age=1",
        };
        Response::new(200, "old").header("Cache-Control", cc)
    }))?;
    let edge = LoopbackEdge::start(config(origin.addr(), "{}", "{stale_if_error: 1m}"))?;
    expect(&edge.get("/lenient")?, 200, "MISS", "old")?;
    expect(&edge.get("/strict")?, 200, "MISS", "old")?;
    // The response said nothing about stale: the listener's 1m applies.
    let stale = until_not_hit(&edge, "/lenient", &[])?;
    expect(&stale, 200, "STALE", "old")?;
    // must-revalidate: the error goes to the client, not the stale body.
    let strict = until_not_hit(&edge, "/strict", &[])?;
    ensure!(
        strict.status() == Some(503) && strict.text() == "down",
        "{strict:?}"
    );
    Ok(())
}

#[test]
fn concurrent_misses_make_one_upstream_request() -> Result<()> {
    const CLIENTS: usize = 8;
    let origin = backend(Arc::new(|_req: &Message| {
        // The upstream is slow: every client arrives while the first fetch
        // is in flight.
        std::thread::sleep(Duration::from_millis(1500));
        Response::new(200, "slow").header("Cache-Control", "max-age=60")
    }))?;
    let edge = LoopbackEdge::start(config(origin.addr(), "{lock_timeout: 10s}", "{}"))?;
    let listen = edge.listen;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| std::thread::spawn(move || edge_tests::http::request(listen, "GET", "/lock", &[])))
        .collect();
    let mut statuses = Vec::new();
    for c in clients {
        let m = c.join().map_err(|_| anyhow::anyhow!("client panicked"))??;
        ensure!(m.status() == Some(200) && m.text() == "slow", "{m:?}");
        statuses.push(status(&m).to_string());
    }
    ensure!(
        origin.requests() == 1,
        "origin saw {} requests",
        origin.requests()
    );
    statuses.sort();
    ensure!(
        statuses.iter().filter(|s| *s == "MISS").count() == 1
            && statuses.iter().filter(|s| *s == "HIT").count() == CLIENTS - 1,
        "{statuses:?}"
    );
    Ok(())
}

#[test]
fn purge_removes_every_variant_for_allowed_clients() -> Result<()> {
    let origin = backend(Arc::new(|req: &Message| {
        let lang = req.header("accept-language").unwrap_or("none").to_string();
        Response::new(200, lang)
            .header("Cache-Control", "max-age=60")
            .header("Vary", "Accept-Language")
    }))?;
    let edge = LoopbackEdge::start(config(origin.addr(), "{purge_allow: [127.0.0.0/8]}", "{}"))?;
    let en = [("Accept-Language", "en")];
    let fr = [("Accept-Language", "fr")];
    for h in [&en, &fr] {
        edge.request("GET", "/p", h)?;
        ensure!(status(&edge.request("GET", "/p", h)?) == "HIT");
    }
    let purge = edge.request("PURGE", "/p", &[])?;
    ensure!(purge.status() == Some(200), "{purge:?}");
    expect(&edge.request("GET", "/p", &en)?, 200, "MISS", "en")?;
    expect(&edge.request("GET", "/p", &fr)?, 200, "MISS", "fr")?;
    let again = edge.request("PURGE", "/nothing-here", &[])?;
    ensure!(again.status() == Some(404), "{again:?}");
    let objects = edge.sample("edge_cache_stored_objects")?;
    ensure!(objects == Some(2.0), "stored objects {objects:?}");
    // Purge by key on the admin endpoint: listener, host, path.
    let key = format!("/cache/web/{}/p", edge.listen);
    let admin = edge_tests::http::request(edge.admin, "PURGE", &key, &[])?;
    ensure!(admin.status() == Some(200), "{admin:?}");
    ensure!(
        admin.text().starts_with("purged 2 object(s)"),
        "{}",
        admin.text()
    );
    expect(&edge.request("GET", "/p", &en)?, 200, "MISS", "en")?;
    let again = edge_tests::http::request(edge.admin, "PURGE", "/cache/web/nowhere/p", &[])?;
    ensure!(again.status() == Some(404), "{again:?}");
    let get = edge_tests::http::request(edge.admin, "GET", &key, &[])?;
    ensure!(get.status() == Some(405), "{get:?}");
    Ok(())
}

#[test]
fn purge_is_refused_outside_purge_allow_and_where_nothing_is_cached() -> Result<()> {
    let origin = backend(fixed("kept", &[("Cache-Control", "max-age=60")]))?;
    let origin_addr = origin.addr();
    let edge = LoopbackEdge::start(move |listen: SocketAddr, admin: SocketAddr| {
        let other = SocketAddr::new(listen.ip(), 8081);
        let base = config(origin_addr, "{purge_allow: [10.0.0.0/8]}", "{}")(listen, admin);
        base.replace(
            "pools:",
            &format!("  - name: nocache\n    address: {other}\n    pool: app\npools:"),
        )
    })?;
    expect(&edge.get("/k")?, 200, "MISS", "kept")?;
    let refused = edge.request("PURGE", "/k", &[])?;
    ensure!(refused.status() == Some(403), "{refused:?}");
    expect(&edge.get("/k")?, 200, "HIT", "kept")?;
    let other = SocketAddr::new(edge.listen.ip(), 8081);
    let m = edge_tests::http::request(other, "PURGE", "/k", &[])?;
    ensure!(m.status() == Some(405), "{m:?}");
    ensure!(
        m.header(STATUS).is_none(),
        "no cache, no status header: {m:?}"
    );
    Ok(())
}

#[test]
fn eviction_keeps_the_store_under_max_size() -> Result<()> {
    const OBJECT: usize = 8 * 1024;
    const MAX: f64 = 64.0 * 1024.0;
    let origin = backend(Arc::new(|_req: &Message| {
        Response::new(200, vec![b'x'; OBJECT]).header("Cache-Control", "max-age=600")
    }))?;
    let edge = LoopbackEdge::start(config(
        origin.addr(),
        "{max_size: 64KiB, max_object_size: 16KiB}",
        "{}",
    ))?;
    for i in 0..12 {
        let m = edge.get(&format!("/obj/{i}"))?;
        ensure!(
            status(&m) == "MISS" && m.body.len() == OBJECT,
            "{i}: {:?}",
            m.headers
        );
    }
    let (bytes, evicted) = edge.wait_for("eviction to settle", WAIT, || {
        let bytes = edge.sample("edge_cache_stored_bytes")?.unwrap_or(f64::MAX);
        let evicted = edge.sample("edge_cache_evictions_total")?.unwrap_or(0.0);
        Ok((bytes <= MAX && evicted >= 4.0).then_some((bytes, evicted)))
    })?;
    ensure!(bytes > MAX / 2.0, "the store is used, not emptied: {bytes}");
    // Least recently used first: the oldest are gone, the newest stay.
    ensure!(status(&edge.get("/obj/11")?) == "HIT");
    ensure!(status(&edge.get("/obj/0")?) == "MISS");
    println!("stored {bytes} bytes after {evicted} evictions");
    Ok(())
}

#[test]
fn large_objects_and_authorized_requests_are_not_stored() -> Result<()> {
    let origin = backend(Arc::new(|req: &Message| match path_of(req).as_str() {
        "/big" => Response::new(200, vec![b'b'; 4096]).header("Cache-Control", "max-age=60"),
        "/public" => Response::new(200, "pub").header("Cache-Control", "public, max-age=60"),
        _ => Response::new(200, "mine").header("Cache-Control", "max-age=60"),
    }))?;
    let edge = LoopbackEdge::start(config(origin.addr(), "{max_object_size: 1KiB}", "{}"))?;
    for _ in 0..2 {
        let m = edge.get("/big")?;
        ensure!(
            status(&m) == "UNCACHEABLE" && m.body.len() == 4096,
            "{:?}",
            m.headers
        );
    }
    let auth = [("Authorization", "Bearer t")];
    expect(
        &edge.request("GET", "/mine", &auth)?,
        200,
        "UNCACHEABLE",
        "mine",
    )?;
    expect(
        &edge.request("GET", "/mine", &auth)?,
        200,
        "UNCACHEABLE",
        "mine",
    )?;
    expect(&edge.request("GET", "/public", &auth)?, 200, "MISS", "pub")?;
    expect(&edge.request("GET", "/public", &auth)?, 200, "HIT", "pub")?;
    ensure!(origin.requests() == 5, "origin saw {}", origin.requests());
    Ok(())
}

#[test]
fn expires_heuristics_and_a_disabled_status_header() -> Result<()> {
    let origin = backend(Arc::new(|req: &Message| match path_of(req).as_str() {
        "/expires" => Response::new(200, "e").header("Expires", "Thu, 01 Jan 2099 00:00:00 GMT"),
        "/expired" => Response::new(200, "e").header("Expires", "Thu, 01 Jan 1970 00:00:00 GMT"),
        _ => Response::new(200, "none"),
    }))?;
    let edge = LoopbackEdge::start(config(origin.addr(), "{status_header: ''}", "{}"))?;
    edge.get("/expires")?;
    edge.get("/expires")?;
    edge.get("/expired")?;
    edge.get("/expired")?;
    edge.get("/plain")?;
    let m = edge.get("/plain")?;
    ensure!(m.header(STATUS).is_none(), "{m:?}");
    // Only the far-future Expires was served from the cache.
    ensure!(origin.requests() == 5, "origin saw {}", origin.requests());
    drop(edge);

    let edge = LoopbackEdge::start(config(
        origin.addr(),
        "{}",
        "{heuristic_freshness: true, default_ttl: 1m}",
    ))?;
    expect(&edge.get("/plain")?, 200, "MISS", "none")?;
    expect(&edge.get("/plain")?, 200, "HIT", "none")?;
    Ok(())
}

#[test]
fn a_client_no_cache_forces_revalidation() -> Result<()> {
    let origin = backend(fixed("c", &[("Cache-Control", "max-age=60")]))?;
    let edge = LoopbackEdge::start(config(origin.addr(), "{}", "{}"))?;
    expect(&edge.get("/c")?, 200, "MISS", "c")?;
    expect(&edge.get("/c")?, 200, "HIT", "c")?;
    let m = edge.request("GET", "/c", &[("Cache-Control", "no-cache")])?;
    ensure!(status(&m) != "HIT" && m.text() == "c", "{m:?}");
    ensure!(origin.requests() == 2, "origin saw {}", origin.requests());
    Ok(())
}

/// The request's Host, port included (X-Forwarded-Host has no port).
fn host_of(req: &Message) -> String {
    req.header("host").unwrap_or_default().to_string()
}

fn method_of(req: &Message) -> String {
    req.start
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

#[test]
fn unsafe_methods_invalidate_the_target_and_same_host_locations() -> Result<()> {
    let origin = backend(Arc::new(|req: &Message| {
        let path = path_of(req);
        match (method_of(req).as_str(), path.as_str()) {
            ("GET", _) => Response::new(200, format!("{path} {}", host_of(req)))
                .header("Cache-Control", "max-age=60")
                .header("Vary", "Accept-Language"),
            ("POST", "/r") => Response::new(201, "created")
                .header("Location", "/loc")
                .header("Content-Location", format!("http://{}/cloc", host_of(req))),
            ("PUT", "/r2") => {
                Response::new(200, "put").header("Location", "http://other.example/x")
            }
            ("DELETE", _) => Response::new(404, "no such thing"),
            _ => Response::new(200, "done"),
        }
    }))?;
    let edge = LoopbackEdge::start(config(origin.addr(), "{}", "{}"))?;
    let en = [("Accept-Language", "en")];
    let fr = [("Accept-Language", "fr")];
    let other = [("Host", "other.example")];
    let cached: [(&str, &[(&str, &str)]); 10] = [
        ("/r", &en),
        ("/r", &fr),
        ("/loc", &[]),
        ("/cloc", &[]),
        ("/r2", &[]),
        ("/x", &other),
        ("/gone", &[]),
        ("/u", &[]),
        ("/o", &[]),
        ("/d", &[]),
    ];
    for (path, headers) in cached {
        edge.request("GET", path, headers)?;
        let m = edge.request("GET", path, headers)?;
        ensure!(status(&m) == "HIT", "{path} {headers:?} not cached: {m:?}");
    }
    let post = edge.request("POST", "/r", &[])?;
    ensure!(post.status() == Some(201), "{post:?}");
    // The target (every variant) and both same-host locations went.
    for (path, headers) in [("/r", &en[..]), ("/r", &fr), ("/loc", &[]), ("/cloc", &[])] {
        let m = edge.request("GET", path, headers)?;
        ensure!(
            status(&m) == "MISS",
            "{path} {headers:?} still cached: {m:?}"
        );
    }
    // A Location on another host is not ours to invalidate.
    let put = edge.request("PUT", "/r2", &[])?;
    ensure!(put.status() == Some(200), "{put:?}");
    ensure!(status(&edge.get("/r2")?) == "MISS");
    let x = edge.request("GET", "/x", &other)?;
    ensure!(status(&x) == "HIT", "{x:?}");
    // An error answer changed nothing, so nothing is invalidated.
    let delete = edge.request("DELETE", "/gone", &[])?;
    ensure!(delete.status() == Some(404), "{delete:?}");
    ensure!(status(&edge.get("/gone")?) == "HIT");
    // Safe methods leave the entry alone; unknown methods are unsafe.
    let options = edge.request("OPTIONS", "/o", &[])?;
    ensure!(options.status() == Some(200), "{options:?}");
    ensure!(status(&edge.get("/o")?) == "HIT");
    let frob = edge.request("FROB", "/u", &[])?;
    ensure!(frob.status() == Some(200), "{frob:?}");
    ensure!(status(&edge.get("/u")?) == "MISS");
    let delete = edge.request("PATCH", "/d", &[("Content-Length", "0")])?;
    ensure!(delete.status() == Some(200), "{delete:?}");
    ensure!(status(&edge.get("/d")?) == "MISS");
    Ok(())
}

#[test]
fn not_modified_updates_the_stored_headers() -> Result<()> {
    let origin = backend(Arc::new(|req: &Message| {
        if req.header("if-none-match") == Some("\"v1\"") {
            return Response::new(304, "")
                .header("Cache-Control", "max-age=60")
                .header("ETag", "\"v1\"")
                .header("X-Version", "2")
                .header("Last-Modified", "Thu, 01 Jan 2026 00:00:00 GMT")
                .header("Connection", "x-hop")
                .header("X-Hop", "per-connection");
        }
        Response::new(200, "original")
            .header("Cache-Control", "max-age=1")
            .header("ETag", "\"v1\"")
            .header("X-Version", "1")
            .header("Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT")
    }))?;
    let edge = LoopbackEdge::start(config(origin.addr(), "{}", "{}"))?;
    let first = edge.get("/m")?;
    expect(&first, 200, "MISS", "original")?;
    ensure!(first.header("x-version") == Some("1"), "{first:?}");
    let revalidated = until_not_hit(&edge, "/m", &[])?;
    expect(&revalidated, 200, "REVALIDATED", "original")?;
    let hit = edge.get("/m")?;
    expect(&hit, 200, "HIT", "original")?;
    for m in [&revalidated, &hit] {
        ensure!(m.header("x-version") == Some("2"), "not updated: {m:?}");
        ensure!(
            m.header("last-modified") == Some("Thu, 01 Jan 2026 00:00:00 GMT"),
            "not updated: {m:?}"
        );
        ensure!(
            m.header("x-hop").is_none(),
            "a 304's hop-by-hop field was kept: {m:?}"
        );
        ensure!(m.header("content-length") == Some("8"), "{m:?}");
    }
    Ok(())
}

/// `t` as an IMF-fixdate (RFC 9110 §5.6.7), for origins that send Date.
fn http_date(t: std::time::SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

#[test]
fn upstream_age_and_date_count_against_freshness() -> Result<()> {
    let origin = backend(Arc::new(|req: &Message| {
        let now = std::time::SystemTime::now();
        let r = Response::new(200, "aged");
        match path_of(req).as_str() {
            // An upstream cache already held it for 50 of its 60 seconds.
            "/age" => r.header("Cache-Control", "max-age=60").header("Age", "50"),
            // Sent 50 s ago by the origin's clock, fresh for 53.
            "/date" => r
                .header("Cache-Control", "max-age=53")
                .header("Date", http_date(now - Duration::from_secs(50))),
            // An origin whose clock is an hour ahead: Expires is 2 s after
            // its Date, so the response is fresh for 2 s, not an hour.
            _ => {
                let date = now + Duration::from_secs(3600);
                r.header("Date", http_date(date))
                    .header("Expires", http_date(date + Duration::from_secs(2)))
            }
        }
    }))?;
    let edge = LoopbackEdge::start(config(origin.addr(), "{}", "{}"))?;
    let age =
        |m: &Message| -> Result<u64> { Ok(m.header("age").context("a hit has Age")?.parse()?) };
    edge.get("/age")?;
    let hit = edge.get("/age")?;
    expect(&hit, 200, "HIT", "aged")?;
    let a = age(&hit)?;
    ensure!(
        (50..=60).contains(&a),
        "Age {a}: the upstream's 50 s are not counted"
    );

    edge.get("/date")?;
    let hit = edge.get("/date")?;
    expect(&hit, 200, "HIT", "aged")?;
    let a = age(&hit)?;
    ensure!(
        (50..=53).contains(&a),
        "Age {a}: the time since Date is not counted"
    );
    let later = until_not_hit(&edge, "/date", &[])?;
    expect(&later, 200, "EXPIRED", "aged")?;

    edge.get("/expires")?;
    let hit = edge.get("/expires")?;
    expect(&hit, 200, "HIT", "aged")?;
    ensure!(age(&hit)? <= 2, "{hit:?}");
    let later = until_not_hit(&edge, "/expires", &[])?;
    expect(&later, 200, "EXPIRED", "aged")?;
    Ok(())
}

#[test]
fn hop_by_hop_fields_are_not_stored() -> Result<()> {
    let origin = backend(fixed(
        "hop",
        &[
            ("Cache-Control", "max-age=60"),
            ("Connection", "X-Hop, keep-alive"),
            ("X-Hop", "per-connection"),
            ("Keep-Alive", "timeout=30"),
            ("Proxy-Connection", "keep-alive"),
            ("X-Kept", "end-to-end"),
        ],
    ))?;
    let edge = LoopbackEdge::start(config(origin.addr(), "{}", "{}"))?;
    expect(&edge.get("/h")?, 200, "MISS", "hop")?;
    let hit = edge.get("/h")?;
    expect(&hit, 200, "HIT", "hop")?;
    for name in ["x-hop", "keep-alive", "proxy-connection"] {
        ensure!(
            hit.header(name).is_none(),
            "{name} served from the cache: {hit:?}"
        );
    }
    ensure!(hit.header("x-kept") == Some("end-to-end"), "{hit:?}");
    Ok(())
}

#[test]
fn cdn_cache_control_is_obeyed_ahead_of_cache_control() -> Result<()> {
    let origin = backend(Arc::new(|req: &Message| {
        let r = Response::new(200, "cdn");
        match path_of(req).as_str() {
            "/cdn" => r
                .header("Cache-Control", "no-store")
                .header("CDN-Cache-Control", "max-age=60"),
            "/cdn-no-store" => r
                .header("Cache-Control", "max-age=60")
                .header("CDN-Cache-Control", "no-store"),
            // Not a valid Dictionary: ignored, Cache-Control applies.
            "/cdn-invalid" => r
                .header("Cache-Control", "max-age=60")
                .header("CDN-Cache-Control", "no-store,,"),
            _ => r
                .header("Cache-Control", "no-store")
                .header("Edge-Cache-Control", "max-age=60"),
        }
    }))?;
    let edge = LoopbackEdge::start(config(origin.addr(), "{}", "{}"))?;
    expect(&edge.get("/cdn")?, 200, "MISS", "cdn")?;
    let hit = edge.get("/cdn")?;
    expect(&hit, 200, "HIT", "cdn")?;
    // Forwarded unchanged, for CDN caches further down.
    ensure!(
        hit.header("cdn-cache-control") == Some("max-age=60"),
        "{hit:?}"
    );
    ensure!(hit.header("cache-control") == Some("no-store"), "{hit:?}");
    expect(&edge.get("/cdn-no-store")?, 200, "UNCACHEABLE", "cdn")?;
    expect(&edge.get("/cdn-no-store")?, 200, "UNCACHEABLE", "cdn")?;
    edge.get("/cdn-invalid")?;
    expect(&edge.get("/cdn-invalid")?, 200, "HIT", "cdn")?;
    expect(&edge.get("/own")?, 200, "UNCACHEABLE", "cdn")?;
    drop(edge);

    // Another target field, or none.
    let edge = LoopbackEdge::start(config(
        origin.addr(),
        "{}",
        "{targeted_cache_control: Edge-Cache-Control}",
    ))?;
    edge.get("/own")?;
    expect(&edge.get("/own")?, 200, "HIT", "cdn")?;
    expect(&edge.get("/cdn")?, 200, "UNCACHEABLE", "cdn")?;
    drop(edge);
    let edge = LoopbackEdge::start(config(origin.addr(), "{}", "{targeted_cache_control: ''}"))?;
    expect(&edge.get("/cdn")?, 200, "UNCACHEABLE", "cdn")?;
    edge.get("/cdn-no-store")?;
    expect(&edge.get("/cdn-no-store")?, 200, "HIT", "cdn")?;
    Ok(())
}

#[test]
fn the_admin_api_purges_by_url_and_by_prefix() -> Result<()> {
    let origin = backend(fixed("kept", &[("Cache-Control", "max-age=60")]))?;
    let edge = LoopbackEdge::start(config(origin.addr(), "{}", "{}"))?;
    for path in ["/a/1", "/a/2?x=1", "/ab", "/b/1"] {
        edge.request("GET", path, &[])?;
        ensure!(status(&edge.request("GET", path, &[])?) == "HIT", "{path}");
    }
    let host = edge.listen.to_string();
    let purge = |body: String, content_type: &str| {
        edge_tests::http::send(
            edge.admin,
            "POST",
            "/api/cache/purge",
            &[("content-type", content_type)],
            body.as_bytes(),
        )
    };
    let json = "application/json";
    let m = purge(
        format!(r#"{{"listener": "web", "host": "{host}", "prefix": "/a/"}}"#),
        json,
    )?;
    let v: serde_json::Value = serde_json::from_slice(&m.body)?;
    ensure!(m.status() == Some(200) && v["purged"] == 2, "{v}");
    for (path, want) in [
        ("/a/1", "MISS"),
        ("/a/2?x=1", "MISS"),
        ("/ab", "HIT"),
        ("/b/1", "HIT"),
    ] {
        ensure!(
            status(&edge.request("GET", path, &[])?) == want,
            "{path}: not {want}"
        );
    }
    let m = purge(
        format!(r#"{{"listener": "web", "host": "{host}", "path": "/b/1"}}"#),
        json,
    )?;
    let v: serde_json::Value = serde_json::from_slice(&m.body)?;
    ensure!(v["purged"] == 1, "{v}");
    ensure!(status(&edge.request("GET", "/b/1", &[])?) == "MISS");
    // Both, neither, or not JSON: refused, nothing purged.
    let both = format!(r#"{{"listener": "web", "host": "{host}", "path": "/ab", "prefix": "/"}}"#);
    ensure!(purge(both, json)?.status() == Some(400));
    let neither = format!(r#"{{"listener": "web", "host": "{host}"}}"#);
    ensure!(purge(neither, json)?.status() == Some(400));
    let form = format!(r#"{{"listener": "web", "host": "{host}", "prefix": "/"}}"#);
    ensure!(purge(form, "text/plain")?.status() == Some(415));
    // A body past the admin API's bound is refused unread.
    let huge = format!(
        r#"{{"listener": "web", "host": "{host}", "prefix": "/{}"}}"#,
        "a".repeat(20 * 1024)
    );
    ensure!(purge(huge, json)?.status() == Some(413));
    ensure!(status(&edge.request("GET", "/ab", &[])?) == "HIT");
    // A prefix stays within its host: a.example's purge leaves
    // a.example.evil's entry.
    for h in ["a.example", "a.example.evil"] {
        edge.request("GET", "/x", &[("Host", h)])?;
        ensure!(
            status(&edge.request("GET", "/x", &[("Host", h)])?) == "HIT",
            "{h}"
        );
    }
    let m = purge(
        r#"{"listener": "web", "host": "a.example", "prefix": "/"}"#.to_string(),
        json,
    )?;
    let v: serde_json::Value = serde_json::from_slice(&m.body)?;
    ensure!(v["purged"] == 1, "{v}");
    ensure!(status(&edge.request("GET", "/x", &[("Host", "a.example")])?) == "MISS");
    ensure!(status(&edge.request("GET", "/x", &[("Host", "a.example.evil")])?) == "HIT");
    Ok(())
}

/// A response's fields that differ from one answer to the next.
const PER_ANSWER: [&str; 5] = ["date", "age", "x-request-id", "traceparent", "tracestate"];

fn stable_fields(m: &Message) -> Vec<(String, String)> {
    let mut fields: Vec<_> = m
        .headers
        .iter()
        .filter(|(k, _)| !PER_ANSWER.contains(&k.as_str()))
        .cloned()
        .collect();
    fields.sort();
    fields
}

/// A plain GET for a fresh object is answered by edge's fresh-hit path; the
/// same GET with a condition that does not hold goes through
/// pingora-cache's hit path and must get the same answer: the same status,
/// fields (the route's changes, Accept-Ranges, compression and its Vary)
/// and body.
#[test]
fn fresh_hits_answer_as_pingora_caches_hit_path() -> Result<()> {
    let page = "<p>cached</p>".repeat(100);
    let origin = backend(Arc::new(move |_req: &Message| {
        Response::new(200, page.clone())
            .header("Content-Type", "text/html")
            .header("Cache-Control", "max-age=60")
            .header("ETag", "\"v1\"")
            .header("X-Drop", "1")
            .header("X-Keep", "1")
    }))?;
    let addr = origin.addr();
    let edge = LoopbackEdge::start(move |listen, admin| {
        format!(
            "cache: {{}}
listeners:
  - name: web
    address: {listen}
    cache: {{}}
    compression: {{ algorithms: [gzip], content_types: [text/html], min_size: 256 }}
    routes:
      - name: pages
        match: {{ path: {{ prefix: / }} }}
        proxy: {{ pool: app }}
        response_headers: {{ add: {{ X-Route: pages }}, remove: [X-Drop] }}
pools:
  - name: app
    backends: [{{address: '{addr}'}}]
admin:
  address: {admin}
"
        )
    })?;
    expect(&edge.get("/p")?, 200, "MISS", &"<p>cached</p>".repeat(100))?;
    for accept in [&[][..], &[("Accept-Encoding", "gzip")][..]] {
        let fresh = edge.request("GET", "/p", accept)?;
        let mut conditional = accept.to_vec();
        conditional.push(("If-None-Match", "\"other\""));
        let full = edge.request("GET", "/p", &conditional)?;
        ensure!(
            status(&fresh) == "HIT" && fresh.status() == Some(200),
            "{fresh:?}"
        );
        ensure!(
            fresh.start == full.start
                && stable_fields(&fresh) == stable_fields(&full)
                && fresh.body == full.body,
            "the fresh-hit path answered {} {:?} with {} bytes, pingora-cache's {} {:?} with {}",
            fresh.start,
            stable_fields(&fresh),
            fresh.body.len(),
            full.start,
            stable_fields(&full),
            full.body.len()
        );
        ensure!(
            fresh.header("x-route") == Some("pages")
                && fresh.header("x-drop").is_none()
                && fresh.header("age").is_some(),
            "{fresh:?}"
        );
    }
    ensure!(origin.requests() == 1, "origin saw {}", origin.requests());
    Ok(())
}
