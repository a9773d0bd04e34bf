//! Routing and the routes' actions through a real edge on loopback with
//! real backends: host/path/method/header/query matching and precedence,
//! prefix strip and regex rewrite, header changes, redirects, fixed
//! responses, static files, and the reverse-proxy header hygiene.

use anyhow::Result;
use edge_tests::{
    backend::{Backend, echo},
    http::{self, Message},
    proxy::Proxy,
};
use std::{net::SocketAddr, sync::Arc};

fn backend(name: &str) -> Result<Backend> {
    Backend::start(name, None, "127.0.0.1:0".parse()?)
}

fn get(p: &Proxy, host: &str, path: &str) -> Result<Message> {
    http::send(p.listen, "GET", path, &[("Host", host)], b"")
}

fn served_by(m: &Message) -> Option<&str> {
    m.header("x-backend")
}

#[test]
fn routes_follow_the_documented_precedence() -> Result<()> {
    let (api, v2, www, fallback, users) = (
        backend("api")?,
        backend("v2")?,
        backend("www")?,
        backend("fallback")?,
        backend("users")?,
    );
    let pool = |name: &str, b: &Backend| {
        format!(
            "  - name: {name}\n    backends: [{{address: {}}}]\n",
            b.addr()
        )
    };
    let p = Proxy::start(|listen| {
        format!(
            "\
listeners:
  - name: web
    address: {listen}
    pool: fallback
    routes:
      - name: wild
        match: {{ hosts: ['*.example.com'] }}
        proxy: {{ pool: www }}
      - name: api
        match: {{ hosts: [api.example.com] }}
        proxy: {{ pool: api }}
      - name: versioned
        match: {{ hosts: [api.example.com], path: {{ regex: '^/v[0-9]+/' }} }}
        proxy: {{ pool: v2 }}
      - name: users
        match: {{ hosts: [api.example.com], path: {{ prefix: /v1/users }} }}
        proxy: {{ pool: users, strip_prefix: /v1 }}
      - name: users-post
        match: {{ hosts: [api.example.com], path: {{ prefix: /v1/users }}, methods: [POST] }}
        respond: {{ status: 201, body: created }}
      - name: beta
        match: {{ hosts: [api.example.com], path: {{ prefix: /v1/users }}, query: [{{ name: beta, value: '1' }}] }}
        respond: {{ status: 200, body: beta }}
      - name: canary
        match: {{ hosts: [api.example.com], path: {{ prefix: /v1/users }}, headers: [{{ name: X-Canary, regex: '^(1|true)$' }}] }}
        respond: {{ status: 200, body: canary }}
      - name: rewrite
        match: {{ path: {{ prefix: /old }} }}
        proxy: {{ pool: fallback, rewrite: {{ regex: '^/old/(.*)$', replacement: '/new/$1' }} }}
        request_headers: {{ add: {{ X-Added: yes }}, set: {{ User-Agent: edge-test }}, remove: [X-Secret] }}
        response_headers: {{ set: {{ X-Route: rewrite }}, remove: [Content-Type] }}
pools:
{}{}{}{}{}",
            pool("api", &api),
            pool("v2", &v2),
            pool("www", &www),
            pool("fallback", &fallback),
            pool("users", &users),
        )
    })?;

    assert_eq!(served_by(&get(&p, "other.org", "/")?), Some("fallback"));
    assert_eq!(served_by(&get(&p, "www.example.com", "/")?), Some("www"));
    assert_eq!(
        served_by(&get(&p, "WWW.Example.com:8080", "/")?),
        Some("www")
    );
    assert_eq!(served_by(&get(&p, "example.com", "/")?), Some("fallback"));
    assert_eq!(served_by(&get(&p, "api.example.com", "/")?), Some("api"));
    assert_eq!(served_by(&get(&p, "api.example.com", "/v2/x")?), Some("v2"));
    let users_resp = get(&p, "api.example.com", "/v1/users/7?x=1")?;
    assert_eq!(served_by(&users_resp), Some("users"));
    // strip_prefix: the backend sees the path without /v1.
    assert!(
        users_resp.text().starts_with("GET /users/7?x=1 HTTP/1.1"),
        "{}",
        users_resp.text()
    );
    let created = http::send(
        p.listen,
        "POST",
        "/v1/users",
        &[("Host", "api.example.com")],
        b"{}",
    )?;
    assert_eq!(
        (created.status(), created.text().as_str()),
        (Some(201), "created")
    );
    assert_eq!(
        get(&p, "api.example.com", "/v1/users?beta=1")?.text(),
        "beta"
    );
    let canary = http::send(
        p.listen,
        "GET",
        "/v1/users",
        &[("Host", "api.example.com"), ("X-Canary", "true")],
        b"",
    )?;
    assert_eq!(canary.text(), "canary");

    let rewritten = http::send(
        p.listen,
        "GET",
        "/old/a/b?q=1",
        &[
            ("Host", "other.org"),
            ("X-Secret", "s3cr3t"),
            ("User-Agent", "curl"),
        ],
        b"",
    )?;
    let seen = rewritten.text();
    assert!(seen.starts_with("GET /new/a/b?q=1 HTTP/1.1"), "{seen}");
    assert!(seen.contains("x-added: yes"), "{seen}");
    assert!(seen.contains("user-agent: edge-test"), "{seen}");
    assert!(!seen.contains("s3cr3t"), "{seen}");
    assert_eq!(rewritten.header("x-route"), Some("rewrite"));
    assert_eq!(rewritten.header("content-type"), None);
    Ok(())
}

#[test]
fn redirects_fixed_responses_static_files_and_no_route() -> Result<()> {
    let p = Proxy::start_with(
        |dir| {
            std::fs::create_dir_all(dir.join("www/docs"))?;
            std::fs::write(dir.join("www/index.html"), "<h1>home</h1>")?;
            std::fs::write(dir.join("www/docs/a.css"), "body{}")?;
            std::fs::write(dir.join("secret.txt"), "do not serve")?;
            Ok(())
        },
        |listen, _| {
            format!(
                "\
listeners:
  - name: web
    address: {listen}
    routes:
      - match: {{ hosts: [old.example.com] }}
        redirect: {{ location: 'https://new.example.com{{path}}{{query}}', status: 301 }}
      - name: health
        match: {{ path: {{ exact: /healthz }}, methods: [GET, HEAD] }}
        respond: {{ status: 200, headers: {{ Content-Type: text/plain, Cache-Control: no-store }}, body: ok }}
      - name: site
        match: {{ path: {{ prefix: /site }} }}
        static: {{ root: www, strip_prefix: /site }}
"
            )
        },
    )?;
    let r = get(&p, "old.example.com", "/a/b?c=d")?;
    assert_eq!(r.status(), Some(301));
    assert_eq!(
        r.header("location"),
        Some("https://new.example.com/a/b?c=d")
    );

    let r = get(&p, "x", "/healthz")?;
    assert_eq!((r.status(), r.text().as_str()), (Some(200), "ok"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let head = http::send(p.listen, "HEAD", "/healthz", &[], b"")?;
    assert_eq!(head.status(), Some(200));
    assert_eq!(head.header("content-length"), Some("2"));
    let post = http::send(p.listen, "POST", "/healthz", &[], b"")?;
    assert_eq!(post.status(), Some(404), "method does not match: no route");

    let r = get(&p, "x", "/site/")?;
    assert_eq!(
        (r.status(), r.text().as_str()),
        (Some(200), "<h1>home</h1>")
    );
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let r = get(&p, "x", "/site/docs/a.css")?;
    assert_eq!((r.status(), r.text().as_str()), (Some(200), "body{}"));
    assert_eq!(r.header("content-type"), Some("text/css; charset=utf-8"));
    assert!(r.header("last-modified").is_some());
    for escape in [
        "/site/../secret.txt",
        "/site/%2e%2e/secret.txt",
        "/site/docs/%2E%2E/%2E%2E/secret.txt",
    ] {
        let r = get(&p, "x", escape)?;
        assert_eq!(r.status(), Some(404), "{escape}: {}", r.text());
        assert!(!r.text().contains("do not serve"));
    }
    assert_eq!(get(&p, "x", "/site/missing.txt")?.status(), Some(404));
    let put = http::send(p.listen, "PUT", "/site/index.html", &[], b"x")?;
    assert_eq!(put.status(), Some(405));
    assert_eq!(put.header("allow"), Some("GET, HEAD"));
    assert_eq!(get(&p, "x", "/nothing-here")?.status(), Some(404));
    Ok(())
}

#[test]
fn forwarded_headers_via_and_hidden_upstream_headers() -> Result<()> {
    let handler = Arc::new(|req: &http::Message| {
        echo(req)
            .header("Server", "Apache/2.4.1 (Unix)")
            .header("X-Powered-By", "PHP/5.1")
    });
    let b = Backend::start_with("b", None, "127.0.0.1:0".parse()?, handler)?;
    let addr: SocketAddr = b.addr();
    let config = |trusted: &'static str, pass: &'static str| {
        move |listen: SocketAddr| {
            format!(
                "listeners:\n  - name: web\n    address: {listen}\n    pool: app\n    trusted_proxies: [{trusted}]\n    pass_upstream_headers: [{pass}]\npools:\n  - name: app\n    backends: [{{address: {addr}}}]\n"
            )
        }
    };
    let spoof = [
        ("Host", "shop.example.com"),
        ("X-Forwarded-For", "203.0.113.9"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "evil.example"),
    ];
    {
        // Not trusted: the client's X-Forwarded-* are replaced.
        let p = Proxy::start(config("10.0.0.0/8", ""))?;
        let r = http::send(p.listen, "GET", "/", &spoof, b"")?;
        let seen = r.text();
        assert!(seen.contains("x-forwarded-for: 127.0.0.1\n"), "{seen}");
        assert!(seen.contains("x-forwarded-proto: http\n"), "{seen}");
        assert!(
            seen.contains("x-forwarded-host: shop.example.com\n"),
            "{seen}"
        );
        assert!(seen.contains("via: 1.1 edge\n"), "{seen}");
        assert_eq!(r.header("server"), None);
        assert_eq!(r.header("x-powered-by"), None);
        assert_eq!(r.header("via"), Some("1.1 edge"));
    }
    // Trusted (loopback): the chain is kept and extended; Server passes.
    let p = Proxy::start(config("127.0.0.0/8", "Server"))?;
    let r = http::send(p.listen, "GET", "/", &spoof, b"")?;
    let seen = r.text();
    assert!(
        seen.contains("x-forwarded-for: 203.0.113.9, 127.0.0.1\n"),
        "{seen}"
    );
    assert!(seen.contains("x-forwarded-proto: https\n"), "{seen}");
    assert!(seen.contains("x-forwarded-host: evil.example\n"), "{seen}");
    assert_eq!(r.header("server"), Some("Apache/2.4.1 (Unix)"));
    assert_eq!(r.header("x-powered-by"), None);
    Ok(())
}

/// A route's `cache:` and `compression:` replace the listener's.
#[test]
fn routes_override_the_listeners_cache_and_compression() -> Result<()> {
    let handler = Arc::new(|req: &http::Message| {
        echo(req)
            .header("Cache-Control", "max-age=60")
            .header("Content-Type", "text/plain")
    });
    let b = Backend::start_with("b", None, "127.0.0.1:0".parse()?, handler)?;
    let addr = b.addr();
    let p = Proxy::start(|listen| {
        format!(
            "\
cache: {{ max_size: 1MiB }}
listeners:
  - name: web
    address: {listen}
    cache: {{ enabled: true }}
    compression: {{ algorithms: [gzip], content_types: [text/plain], min_size: 1 }}
    routes:
      - name: fresh
        match: {{ path: {{ prefix: /fresh }} }}
        proxy: {{ pool: app }}
        cache: {{ enabled: false }}
        compression: off
    pool: app
pools:
  - name: app
    backends: [{{address: {addr}}}]
"
        )
    })?;
    let gzip = [("Accept-Encoding", "gzip")];
    // The listener's policy: cached (one upstream request) and compressed.
    let first = http::send(p.listen, "GET", "/cached", &gzip, b"")?;
    let second = http::send(p.listen, "GET", "/cached", &gzip, b"")?;
    assert_eq!(first.header("content-encoding"), Some("gzip"));
    assert_eq!(second.header("x-cache-status"), Some("HIT"));
    assert_eq!(b.requests(), 1);
    // The route's: neither.
    for _ in 0..2 {
        let r = http::send(p.listen, "GET", "/fresh", &gzip, b"")?;
        assert_eq!(r.header("content-encoding"), None);
        assert_ne!(r.header("x-cache-status"), Some("HIT"));
    }
    assert_eq!(b.requests(), 3);
    Ok(())
}
