//! REST→gRPC transcoding through a real edge on loopback, to a real gRPC
//! backend (grpcio, `tests/grpc/bookstore.py`) serving the
//! `google.api.http`-annotated `config/protos/bookstore.proto`, whose
//! descriptor set protoc builds:
//!
//! - requests made of path variables, query parameters (a bool, an int32,
//!   a repeated string) and the JSON body, bound to one field
//!   (`body: "book"`) or to the whole message (`body: "*"`); an
//!   additional binding, whose path variable sets the field the body has
//!   too.
//! - replies as JSON by the proto3 mapping (lowerCamelCase names, int64
//!   as strings, default values left out), `application/json`, over
//!   HTTP/1.1 and over HTTP/2 (h2c, by curl).
//! - a backend's gRPC error as its HTTP status (NOT_FOUND 404,
//!   UNAVAILABLE 503) with a `{"code", "message", "details"}` body, the
//!   call counted by its gRPC status.
//! - edge's own refusals, in the same JSON: 404 (code 5) for a request no
//!   method is bound to; 400 (code 3) for a body that is not JSON, an
//!   unknown JSON field, an unknown query parameter, a path variable or a
//!   query value of the wrong type.
//! - `edge check` locates transcoding mistakes: a service not in the
//!   descriptor set, a missing descriptor set, a pool that speaks
//!   HTTP/1.1.

use anyhow::{Context, Result, ensure};
use edge_tests::{
    edge::{Refused, check, expect_refused},
    grpc::{self, BookstoreBackend},
    http,
    metrics::wait_metric,
    proxy::Proxy,
};
use serde_json::{Value, json};
use std::{process::Command, time::Duration};

/// How long any awaited condition may take.
const DEADLINE: Duration = Duration::from_secs(15);

/// One listener transcoding `/v1` to `shop.v1.Bookstore` at `@BACKEND@`;
/// the descriptor set is next to the config.
const BOOKS: &str = "\
listeners:
  - name: api
    address: @LISTEN@
    routes:
      - name: books
        match: { path: { prefix: /v1 } }
        transcode:
          descriptor_set: bookstore.pb
          services: [shop.v1.Bookstore]
        proxy: { pool: books }
pools:
  - name: books
    protocol: h2c
    backends: [{ address: '@BACKEND@' }]
";

/// A bookstore backend and an edge transcoding to it.
fn shop() -> Result<(BookstoreBackend, Proxy)> {
    shop_with(BOOKS)
}

/// [`shop`] with its own configuration (`@LISTEN@`, `@BACKEND@`).
fn shop_with(yaml: &'static str) -> Result<(BookstoreBackend, Proxy)> {
    let dir = tempfile::tempdir()?;
    let descriptors = dir.path().join("bookstore.pb");
    grpc::descriptor_set(&descriptors)?;
    let backend = BookstoreBackend::start(&descriptors)?;
    let addr = backend.addr.to_string();
    let proxy = Proxy::start_with(
        |config_dir| {
            std::fs::copy(&descriptors, config_dir.join("bookstore.pb"))?;
            Ok(())
        },
        move |listen, _| {
            yaml.replace("@LISTEN@", &listen.to_string())
                .replace("@BACKEND@", &addr)
        },
    )?;
    Ok((backend, proxy))
}

/// `method path` through `p` over HTTP/1.1, with JSON `body` (none if
/// empty): the status and the JSON answer, which must say it is JSON.
fn call(p: &Proxy, method: &str, path: &str, body: &str) -> Result<(u16, Value)> {
    let headers: &[(&str, &str)] = if body.is_empty() {
        &[]
    } else {
        &[("content-type", "application/json")]
    };
    let m = http::send(p.listen, method, path, headers, body.as_bytes())?;
    let status = m.status().context("a response without a status")?;
    ensure!(
        m.header("content-type") == Some("application/json"),
        "{method} {path}: {status} with content-type {:?}: {}",
        m.header("content-type"),
        m.text()
    );
    let json = serde_json::from_slice(&m.body)
        .with_context(|| format!("{method} {path}: {status} {}", m.text()))?;
    Ok((status, json))
}

/// `method path` with `body` is answered `status` and exactly `want`.
fn expect(p: &Proxy, method: &str, path: &str, body: &str, status: u16, want: Value) -> Result<()> {
    let (got_status, got) = call(p, method, path, body)?;
    ensure!(
        got_status == status && got == want,
        "{method} {path} {body}: expected {status} {want}, got {got_status} {got}"
    );
    Ok(())
}

/// `method path` with `body` is refused with HTTP `status` and gRPC
/// `code`, in the JSON error form (edge words the message).
fn refused(p: &Proxy, method: &str, path: &str, body: &str, status: u16, code: u64) -> Result<()> {
    let (got_status, got) = call(p, method, path, body)?;
    ensure!(
        got_status == status
            && got["code"] == code
            && got["message"].is_string()
            && got["details"] == json!([]),
        "{method} {path} {body}: expected {status} with code {code}, got {got_status} {got}"
    );
    Ok(())
}

#[test]
fn transcodes_json_to_grpc_and_back() -> Result<()> {
    let (_backend, p) = shop()?;
    let cases = [
        // Path variables; the int64 comes back as a string, defaults not
        // at all.
        (
            "GET",
            "/v1/shelves/a/books/7",
            "",
            json!({"id": "7", "title": "book 7 on a"}),
        ),
        (
            "GET",
            "/v1/shelves/my%20shelf/books/3",
            "",
            json!({"id": "3", "title": "book 3 on my shelf"}),
        ),
        (
            "GET",
            "/v1/shelves/a/books/7?include_tags=true",
            "",
            json!({"id": "7", "title": "book 7 on a", "tags": ["a", "b"]}),
        ),
        // body: "book"; the shelf from the path.
        (
            "POST",
            "/v1/shelves/s1/books",
            r#"{"title": "T", "inStock": true}"#,
            json!({"id": "1000", "title": "T", "author": "s1", "inStock": true}),
        ),
        // Query parameters by field name, a repeated one repeated.
        (
            "GET",
            "/v1/shelves/s/books?page_size=2&tags=x&tags=y",
            "",
            json!({
                "books": [
                    {"id": "1", "title": "b1", "tags": ["x", "y"]},
                    {"id": "2", "title": "b2", "tags": ["x", "y"]},
                ],
                "shelf": "s",
            }),
        ),
        // body: "*", the int64 given as a JSON number.
        (
            "POST",
            "/v1/echo",
            r#"{"id": 5, "title": "x", "tags": ["t"], "inStock": true}"#,
            json!({"id": "5", "title": "x", "tags": ["t"], "inStock": true}),
        ),
        // The additional binding: the path's id wins over the body's.
        (
            "PUT",
            "/v1/echo/9",
            r#"{"id": "1", "title": "y"}"#,
            json!({"id": "9", "title": "y"}),
        ),
    ];
    for (method, path, body, want) in cases {
        expect(&p, method, path, body, 200, want)?;
    }

    // The same over HTTP/2 with prior knowledge.
    let out = Command::new("curl")
        .args(["--http2-prior-knowledge", "-s", "--max-time", "10"])
        .args(["-w", "\n%{http_version} %{response_code} %{content_type}"])
        .arg(format!("http://{}/v1/shelves/a/books/1", p.listen))
        .output()
        .context("running curl")?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "curl failed ({}): {text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let (body, head) = text.rsplit_once('\n').context("curl's -w line")?;
    ensure!(
        head == "2 200 application/json",
        "over HTTP/2: {head:?} (version, status, content type): {body}"
    );
    let got: Value =
        serde_json::from_str(body).with_context(|| format!("over HTTP/2: {body:?}"))?;
    ensure!(
        got == json!({"id": "1", "title": "book 1 on a"}),
        "over HTTP/2: {got}"
    );
    Ok(())
}

#[test]
fn errors_are_json() -> Result<()> {
    let (_backend, p) = shop()?;
    // The backend's errors, by the standard mapping.
    expect(
        &p,
        "GET",
        "/v1/shelves/a/books/404",
        "",
        404,
        json!({"code": 5, "message": "no book 404", "details": []}),
    )?;
    wait_metric(
        || p.metrics(),
        "edge_grpc_requests_total",
        &[("route", "books"), ("grpc_status", "NOT_FOUND")],
        DEADLINE,
        |v| v == 1.0,
    )?;

    // edge's own refusals, as (method, path, body, HTTP status, gRPC code).
    let refusals = [
        // Nothing bound to the path, or to the method.
        ("GET", "/v1/nothing", "", 404, 5),
        ("DELETE", "/v1/echo", "", 404, 5),
        // A request that does not fit the message.
        ("POST", "/v1/echo", "not json", 400, 3),
        (
            "POST",
            "/v1/echo",
            r#"{"title": "x", "colour": "red"}"#,
            400,
            3,
        ),
        ("GET", "/v1/shelves/a/books?colour=red", "", 400, 3),
        ("GET", "/v1/shelves/a/books/abc", "", 400, 3),
        (
            "GET",
            "/v1/shelves/a/books/7?include_tags=maybe",
            "",
            400,
            3,
        ),
    ];
    for (method, path, body, status, code) in refusals {
        refused(&p, method, path, body, status, code)?;
    }

    // Last: a server failure the pool may hold against the backend.
    expect(
        &p,
        "GET",
        "/v1/shelves/a/books/503",
        "",
        503,
        json!({"code": 14, "message": "shelf offline", "details": []}),
    )?;
    wait_metric(
        || p.metrics(),
        "edge_grpc_requests_total",
        &[("route", "books"), ("grpc_status", "UNAVAILABLE")],
        DEADLINE,
        |v| v == 1.0,
    )?;
    Ok(())
}

/// A config with route `books` transcoding by `transcode` (what follows
/// `transcode:`) to pool `books` of `protocol`.
fn config(transcode: &str, protocol: &str) -> String {
    format!(
        "\
listeners:
  - name: api
    address: 127.0.0.1:8080
    routes:
      - name: books
        match: {{ path: {{ prefix: /v1 }} }}
        transcode:{transcode}
        proxy: {{ pool: books }}
pools:
  - name: books
    protocol: {protocol}
    backends: [{{ address: 127.0.0.1:9000 }}]
"
    )
}

/// A block `transcode` for [`config`]: each service on its own line.
fn block(descriptor_set: &str, services: &[&str]) -> String {
    let mut out = format!("\n          descriptor_set: {descriptor_set}\n          services:");
    for s in services {
        out.push_str(&format!("\n            - {s}"));
    }
    out
}

#[test]
fn transcode_configs_are_checked() -> Result<()> {
    let dir = tempfile::tempdir()?;
    grpc::descriptor_set(&dir.path().join("bookstore.pb"))?;
    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        config(&block("bookstore.pb", &["shop.v1.Bookstore"]), "h2c"),
    )?;
    let (ok, text) = check(&[good.as_path()])?;
    ensure!(ok, "a good transcoding config is refused:\n{text}");

    // (name, transcode, pool protocol, marker of the faulty line, a word
    // the message must have). A block mapping's position is its first
    // key's, so the whole-transcode error is shown with a flow mapping.
    let bad = [
        (
            "unknown-service",
            block("bookstore.pb", &["shop.v1.Bookstore", "shop.v1.Nope"]),
            "h2c",
            "- shop.v1.Nope",
            "shop.v1.Nope",
        ),
        (
            "missing-descriptor-set",
            block("missing.pb", &["shop.v1.Bookstore"]),
            "h2c",
            "descriptor_set: missing.pb",
            "missing.pb",
        ),
        (
            "http1-pool",
            " { descriptor_set: bookstore.pb, services: [shop.v1.Bookstore] }".to_string(),
            "http1",
            "transcode:",
            "h2c",
        ),
    ];
    let cases = bad
        .into_iter()
        .map(|(name, transcode, protocol, marker, word)| Refused {
            name,
            yaml: config(&transcode, protocol),
            marker,
            word,
        })
        .collect();
    expect_refused(dir.path(), cases)?;
    Ok(())
}

/// `config/protos/bookstore.pb`, which `config/grpc.yaml` names, is what
/// protoc makes of `bookstore.proto` today: the example cannot drift
/// from its source.
#[test]
fn the_example_descriptor_set_is_up_to_date() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let fresh = dir.path().join("bookstore.pb");
    grpc::descriptor_set(&fresh)?;
    let committed = grpc::protos().join("bookstore.pb");
    ensure!(
        std::fs::read(&fresh)? == std::fs::read(&committed)?,
        "{} is stale: rebuild it as the head of bookstore.proto says",
        committed.display()
    );
    Ok(())
}

/// [`BOOKS`] with replies of at most 1 KiB.
const SMALL_REPLIES: &str = "\
listeners:
  - name: api
    address: @LISTEN@
    routes:
      - name: books
        match: { path: { prefix: /v1 } }
        transcode:
          descriptor_set: bookstore.pb
          services: [shop.v1.Bookstore]
          max_response: 1KiB
        proxy: { pool: books }
pools:
  - name: books
    protocol: h2c
    backends: [{ address: '@BACKEND@' }]
";

/// What edge holds of a transcoded call is bounded: a request body over
/// 64 KiB is refused before any call, and a reply over `max_response` is
/// not turned into JSON; a reply within it still is.
#[test]
fn request_and_reply_sizes_are_bounded() -> Result<()> {
    let (_backend, p) = shop_with(SMALL_REPLIES)?;
    let title = "x".repeat(70 * 1024);
    let big = json!({ "title": title }).to_string();
    refused(&p, "POST", "/v1/echo", &big, 413, 8)?;
    let (status, small) = call(&p, "GET", "/v1/shelves/s/books?page_size=2", "")?;
    ensure!(
        status == 200 && small["books"].as_array().map(Vec::len) == Some(2),
        "a reply within max_response: {status} {small}"
    );
    let (status, err) = call(&p, "GET", "/v1/shelves/s/books?page_size=500", "")?;
    ensure!(
        status == 502
            && err["code"] == 8
            && err["message"]
                .as_str()
                .is_some_and(|m| m.contains("larger")),
        "a reply over max_response: {status} {err}"
    );
    Ok(())
}
