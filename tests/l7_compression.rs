//! Response compression, end to end: each coding decodes back to the
//! upstream's body; excluded types, small bodies, `q=0` and already encoded
//! bodies are left alone; with the cache, one stored object is sent to each
//! client in the coding it negotiated.

use anyhow::{Context, Result, bail, ensure};
use edge_tests::{
    backend::{Backend, Response},
    http::Message,
    loopback::LoopbackEdge,
};
use std::{io::Read, net::SocketAddr, sync::Arc};

/// A compressible page, comfortably above every `min_size` here.
fn page() -> String {
    "<p>edge compresses what it is told to compress.</p>\n".repeat(100)
}

fn origin() -> Result<Backend> {
    Backend::start_with(
        "origin",
        None,
        "127.0.0.1:0".parse()?,
        Arc::new(|req: &Message| {
            let path = req.start.split_whitespace().nth(1).unwrap_or("/");
            let (ct, body, extra): (&str, Vec<u8>, Option<(&str, &str)>) = match path {
                "/png" => ("image/png", page().into_bytes(), None),
                "/small" => ("text/html", b"<p>tiny</p>".to_vec(), None),
                "/gzipped" => (
                    "text/html",
                    page().into_bytes(),
                    Some(("Content-Encoding", "gzip")),
                ),
                "/json" => ("application/json; charset=utf-8", page().into_bytes(), None),
                "/cached" => (
                    "text/html",
                    page().into_bytes(),
                    Some(("Cache-Control", "max-age=60")),
                ),
                _ => (
                    "text/html; charset=utf-8",
                    page().into_bytes(),
                    Some(("ETag", "\"p1\"")),
                ),
            };
            let mut r = Response::new(200, body).header("Content-Type", ct);
            if let Some((k, v)) = extra {
                r = r.header(k, v);
            }
            r
        }),
    )
}

fn config(origin: SocketAddr) -> impl FnOnce(SocketAddr, SocketAddr) -> String {
    move |listen, admin| {
        format!(
            "cache: {{}}
listeners:
  - name: web
    address: {listen}
    pool: app
    cache: {{}}
    compression:
      algorithms: [zstd, br, gzip]
      content_types: [text/html, application/json]
      min_size: 256
pools:
  - name: app
    backends: [{{address: '{origin}'}}]
admin:
  address: {admin}
"
        )
    }
}

fn decode(m: &Message) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    match m.header("content-encoding") {
        None => out = m.body.clone(),
        Some("gzip") => {
            flate2::read::GzDecoder::new(&m.body[..]).read_to_end(&mut out)?;
        }
        Some("br") => {
            brotli::BrotliDecompress(&mut &m.body[..], &mut out)?;
        }
        Some("zstd") => out = zstd::decode_all(&m.body[..])?,
        Some(other) => bail!("unexpected content-encoding {other}"),
    }
    Ok(out)
}

fn varies_on_accept_encoding(m: &Message) -> bool {
    m.headers
        .iter()
        .filter(|(k, _)| k == "vary")
        .any(|(_, v)| v.to_ascii_lowercase().contains("accept-encoding"))
}

#[test]
fn each_algorithm_round_trips_and_follows_q_values() -> Result<()> {
    let origin = origin()?;
    let edge = LoopbackEdge::start(config(origin.addr()))?;
    let cases: &[(&str, Option<&str>)] = &[
        ("gzip", Some("gzip")),
        ("br", Some("br")),
        ("zstd", Some("zstd")),
        // Server preference among equals, the client's weights first.
        ("gzip, br, zstd", Some("zstd")),
        ("zstd;q=0.2, gzip;q=0.8", Some("gzip")),
        ("*", Some("zstd")),
        ("*, zstd;q=0", Some("br")),
        ("gzip;q=0, br;q=0, zstd;q=0", None),
        ("identity", None),
    ];
    for (accept, want) in cases {
        let m = edge.request("GET", "/page", &[("Accept-Encoding", accept)])?;
        ensure!(m.status() == Some(200), "{accept}: {m:?}");
        ensure!(
            m.header("content-encoding") == *want,
            "{accept}: got {:?}, want {want:?}",
            m.header("content-encoding")
        );
        ensure!(
            varies_on_accept_encoding(&m),
            "{accept}: no Vary: {:?}",
            m.headers
        );
        let body = decode(&m).with_context(|| format!("decoding {accept}"))?;
        ensure!(
            body == page().as_bytes(),
            "{accept}: body differs after decoding"
        );
        if want.is_some() {
            ensure!(
                m.body.len() < page().len() / 4,
                "{accept}: {} bytes",
                m.body.len()
            );
            ensure!(
                m.header("etag") == Some("W/\"p1\""),
                "{accept}: {:?}",
                m.header("etag")
            );
        } else {
            ensure!(
                m.header("etag") == Some("\"p1\""),
                "{accept}: {:?}",
                m.header("etag")
            );
        }
    }
    let json = edge.request("GET", "/json", &[("Accept-Encoding", "gzip")])?;
    ensure!(
        json.header("content-encoding") == Some("gzip"),
        "{:?}",
        json.headers
    );
    ensure!(decode(&json)? == page().as_bytes());
    Ok(())
}

#[test]
fn excluded_types_small_and_encoded_bodies_are_left_alone() -> Result<()> {
    let origin = origin()?;
    let edge = LoopbackEdge::start(config(origin.addr()))?;
    let ae = [("Accept-Encoding", "gzip, br, zstd")];
    let png = edge.request("GET", "/png", &ae)?;
    ensure!(png.header("content-encoding").is_none() && png.body == page().as_bytes());
    ensure!(!varies_on_accept_encoding(&png), "{:?}", png.headers);
    let small = edge.request("GET", "/small", &ae)?;
    ensure!(small.header("content-encoding").is_none() && small.text() == "<p>tiny</p>");
    // An upstream's encoding is passed through, not encoded twice.
    let gz = edge.request("GET", "/gzipped", &ae)?;
    ensure!(gz.header("content-encoding") == Some("gzip") && gz.body == page().as_bytes());
    // No Accept-Encoding: identity, but the response still varies on it.
    let plain = edge.get("/page")?;
    ensure!(plain.header("content-encoding").is_none() && plain.body == page().as_bytes());
    ensure!(varies_on_accept_encoding(&plain));
    Ok(())
}

#[test]
fn cached_objects_are_stored_once_and_encoded_per_client() -> Result<()> {
    let origin = origin()?;
    let edge = LoopbackEdge::start(config(origin.addr()))?;
    let first = edge.request("GET", "/cached", &[("Accept-Encoding", "br")])?;
    ensure!(first.header("x-cache-status") == Some("MISS"));
    ensure!(first.header("content-encoding") == Some("br"));
    ensure!(decode(&first)? == page().as_bytes(), "br body differs");
    for (accept, want) in [
        ("gzip", Some("gzip")),
        ("zstd", Some("zstd")),
        ("identity", None),
    ] {
        let m = edge.request("GET", "/cached", &[("Accept-Encoding", accept)])?;
        ensure!(
            m.header("x-cache-status") == Some("HIT"),
            "{accept}: {:?}",
            m.headers
        );
        ensure!(
            m.header("content-encoding") == want,
            "{accept}: {:?}",
            m.headers
        );
        ensure!(decode(&m)? == page().as_bytes(), "{accept}: body differs");
    }
    ensure!(origin.requests() == 1, "origin saw {}", origin.requests());
    Ok(())
}
