//! TLS on edge's listeners and towards its pools, with certificates made in
//! the test and real handshakes on loopback: SNI picks the certificate
//! (exact, wildcard, default), `min_version: "1.3"` refuses a TLS 1.2-only
//! client, h2 is negotiated by ALPN (and served: curl --http2), and upstream
//! TLS verifies the backend against the pool's CA and SNI.

use anyhow::{Context, Result};
use edge_tests::{
    backend::Backend,
    http,
    loopback::{endpoints, start_edge},
    tls::{self, Ca, ClientOptions, TlsBackend},
};
use openssl::ssl::SslVersion;
use std::{net::SocketAddr, path::Path, process::Command};

/// Two certificates from one root CA: `a` (SAN a.example.test, the
/// default), issued by an intermediate CA that its file carries after the
/// leaf, as real chains do; and `b` (SAN b.example.test and
/// *.b.example.test), issued by the root.
fn write_certificates(dir: &Path) -> Result<Ca> {
    let ca = Ca::new("edge test CA")?;
    ca.write(dir, "ca")?;
    let intermediate = ca.intermediate("edge test intermediate")?;
    intermediate
        .issue("a", &["a.example.test"])?
        .write_chain(dir, "a", &[&intermediate.cert])?;
    ca.issue("b", &["b.example.test", "*.b.example.test"])?
        .write(dir, "b")?;
    Ok(ca)
}

struct Setup {
    _dir: tempfile::TempDir,
    _edge: edge_tests::edge::Edge,
    _backend: Backend,
    ca: Ca,
    ca_file: std::path::PathBuf,
    /// Two certificates, TLS 1.2+, h2 offered.
    web: SocketAddr,
    /// One certificate, TLS 1.3 only, no h2.
    strict: SocketAddr,
}

fn setup() -> Result<Setup> {
    let dir = tempfile::tempdir()?;
    let ca = write_certificates(dir.path())?;
    let backend = Backend::start("be1", None, "127.0.0.1:0".parse()?)?;
    let at = endpoints(2);
    let (web, strict, admin) = (at.listeners[0], at.listeners[1], at.admin);
    // Relative paths: they resolve against the configuration's directory.
    let yaml = format!(
        "\
listeners:
  - name: web
    address: {web}
    pool: app
    tls:
      certificates:
        - cert: a.pem
          key: a.key
        - cert: b.pem
          key: b.key
  - name: strict
    address: {strict}
    pool: app
    http2: false
    tls:
      min_version: \"1.3\"
      certificates:
        - {{cert: b.pem, key: b.key, server_names: [b.example.test]}}
pools:
  - name: app
    backends: [{{address: {}}}]
admin: {{address: {admin}}}
server: {{threads: 1}}
",
        backend.addr()
    );
    let edge = start_edge(dir.path(), &yaml, &at)?;
    Ok(Setup {
        ca_file: dir.path().join("ca.pem"),
        _dir: dir,
        _edge: edge,
        _backend: backend,
        ca,
        web,
        strict,
    })
}

/// The common name of the certificate served for `sni`.
fn served(s: &Setup, addr: SocketAddr, sni: Option<&str>) -> Result<String> {
    let stream = tls::connect(
        addr,
        &s.ca.cert,
        &ClientOptions {
            sni,
            ..Default::default()
        },
    )?;
    let cert = tls::served_certificate(&stream)?;
    tls::common_name(&cert).context("no CN")
}

#[test]
fn sni_picks_the_certificate_and_the_first_is_the_default() -> Result<()> {
    let s = setup()?;
    assert_eq!(served(&s, s.web, Some("a.example.test"))?, "a");
    assert_eq!(served(&s, s.web, Some("b.example.test"))?, "b");
    assert_eq!(
        served(&s, s.web, Some("x.b.example.test"))?,
        "b",
        "wildcard"
    );
    assert_eq!(served(&s, s.web, Some("X.B.Example.Test"))?, "b", "case");
    assert_eq!(
        served(&s, s.web, Some("y.x.b.example.test"))?,
        "a",
        "a wildcard covers one label: the default answers"
    );
    assert_eq!(served(&s, s.web, Some("other.example.test"))?, "a");
    assert_eq!(served(&s, s.web, None)?, "a", "no SNI: the default");

    // The intermediate goes out with the leaf: a client that trusts only
    // the root verifies the chain (tls::connect verifies it).
    let stream = tls::connect(
        s.web,
        &s.ca.cert,
        &ClientOptions {
            sni: Some("a.example.test"),
            ..Default::default()
        },
    )?;
    let chain = stream
        .ssl()
        .peer_cert_chain()
        .context("no chain presented")?;
    let names: Vec<String> = chain
        .iter()
        .filter_map(|c| {
            c.subject_name()
                .entries_by_nid(openssl::nid::Nid::COMMONNAME)
                .next()
                .and_then(|e| e.data().to_string().ok())
        })
        .collect();
    assert_eq!(names, ["a", "edge test intermediate"]);

    // The default names come from the certificate's subjectAltName.
    let stream = tls::connect(
        s.web,
        &s.ca.cert,
        &ClientOptions {
            sni: Some("x.b.example.test"),
            ..Default::default()
        },
    )?;
    let cert = tls::served_certificate(&stream)?;
    assert_eq!(
        tls::dns_names(&cert),
        ["b.example.test", "*.b.example.test"]
    );

    // And HTTPS is proxied, with X-Forwarded-Proto: https.
    let resp = tls::get(stream, "x.b.example.test", "/hello")?;
    assert_eq!(resp.status(), Some(200), "{resp:?}");
    assert_eq!(resp.header("x-backend"), Some("be1"));
    assert!(
        resp.text().contains("x-forwarded-proto: https"),
        "{}",
        resp.text()
    );
    assert!(
        resp.text().contains("x-forwarded-for: 127.0.0.1"),
        "the client address survives TLS: {}",
        resp.text()
    );
    Ok(())
}

#[test]
fn min_version_1_3_refuses_a_tls_1_2_client() -> Result<()> {
    let s = setup()?;
    let only_12 = ClientOptions {
        sni: Some("b.example.test"),
        max_version: Some(SslVersion::TLS1_2),
        alpn: &[],
    };
    let err = tls::connect(s.strict, &s.ca.cert, &only_12)
        .err()
        .context("a TLS 1.2-only client must be refused by a 1.3 listener")?;
    assert!(
        format!("{err:#}").contains("handshake"),
        "unexpected error: {err:#}"
    );
    let ok = tls::connect(
        s.strict,
        &s.ca.cert,
        &ClientOptions {
            sni: Some("b.example.test"),
            ..Default::default()
        },
    )?;
    assert_eq!(ok.ssl().version_str(), "TLSv1.3");
    // The default minimum, 1.2, lets the same client in.
    let ok = tls::connect(s.web, &s.ca.cert, &only_12)?;
    assert_eq!(ok.ssl().version_str(), "TLSv1.2");
    Ok(())
}

#[test]
fn http2_is_negotiated_by_alpn_and_served() -> Result<()> {
    let s = setup()?;
    let offer = ClientOptions {
        sni: Some("a.example.test"),
        max_version: None,
        alpn: &["h2", "http/1.1"],
    };
    let h2 = tls::connect(s.web, &s.ca.cert, &offer)?;
    assert_eq!(h2.ssl().selected_alpn_protocol(), Some(&b"h2"[..]));
    let offer_strict = ClientOptions {
        sni: Some("b.example.test"),
        ..offer.clone()
    };
    let h1 = tls::connect(s.strict, &s.ca.cert, &offer_strict)?;
    assert_ne!(
        h1.ssl().selected_alpn_protocol(),
        Some(&b"h2"[..]),
        "http2: false must not offer h2"
    );

    // A real HTTP/2 exchange through the proxy.
    let out = curl(&s, s.web, "a.example.test", "--http2")?;
    assert_eq!(out.lines().last(), Some("2 200"), "{out}");
    assert!(out.contains("x-forwarded-proto: https"), "{out}");
    // HTTP/1.1 is always there.
    let out = curl(&s, s.web, "a.example.test", "--http1.1")?;
    assert_eq!(out.lines().last(), Some("1.1 200"), "{out}");
    let out = curl(&s, s.strict, "b.example.test", "--http2")?;
    assert_eq!(out.lines().last(), Some("1.1 200"), "{out}");
    Ok(())
}

/// `curl` over HTTPS to `name` at `addr`: the body, then a line with the
/// HTTP version and status.
fn curl(s: &Setup, addr: SocketAddr, name: &str, version: &str) -> Result<String> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", version, "--cacert"])
        .arg(&s.ca_file)
        .arg("--resolve")
        .arg(format!("{name}:{}:{}", addr.port(), addr.ip()))
        .args(["-w", "\n%{http_version} %{http_code}"])
        .arg(format!("https://{name}:{}/", addr.port()))
        .output()
        .context("running curl")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    anyhow::ensure!(
        out.status.success(),
        "curl failed: {}{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(text)
}

#[test]
fn upstream_tls_verifies_the_backend_against_the_pools_ca_and_sni() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let right = Ca::new("backend CA")?;
    let wrong = Ca::new("some other CA")?;
    right.write(dir.path(), "right-ca")?;
    wrong.write(dir.path(), "wrong-ca")?;
    let backend = TlsBackend::start(&right.issue("backend", &["backend.test"])?, "over tls")?;
    let be = backend.addr();
    let at = endpoints(4);
    let admin = at.admin;
    let pools = [
        ("good", "{sni: backend.test, ca: right-ca.pem}"),
        ("wrong_ca", "{sni: backend.test, ca: wrong-ca.pem}"),
        ("wrong_name", "{sni: other.test, ca: right-ca.pem}"),
        ("unverified", "{verify: false}"),
    ];
    let mut yaml = String::from("listeners:\n");
    let listeners = at.listeners.clone();
    for ((name, _), addr) in pools.iter().zip(&listeners) {
        yaml.push_str(&format!(
            "  - {{name: {name}, address: '{addr}', pool: {name}}}\n"
        ));
    }
    yaml.push_str("pools:\n");
    for (name, tls) in &pools {
        yaml.push_str(&format!(
            "  - {{name: {name}, backends: [{{address: '{be}'}}], tls: {tls}}}\n"
        ));
    }
    yaml.push_str(&format!(
        "admin: {{address: '{admin}'}}\nserver: {{threads: 1}}\n"
    ));
    let _edge = start_edge(dir.path(), &yaml, &at)?;

    // The verified pool first, so that a pooled upstream connection exists
    // that the other pools must not reuse.
    let good = http::get(listeners[0], "/")?;
    assert_eq!(good.status(), Some(200), "{good:?}");
    assert_eq!(good.text(), "over tls");
    assert_eq!(good.header("x-tls-sni"), Some("backend.test"));
    for (i, what) in [
        (1, "a CA that did not sign it"),
        (2, "a name it does not have"),
    ] {
        let r = http::get(listeners[i], "/")?;
        assert_eq!(
            r.status(),
            Some(502),
            "a backend certificate checked against {what} must fail: {r:?}"
        );
    }
    let unverified = http::get(listeners[3], "/")?;
    assert_eq!(unverified.status(), Some(200), "{unverified:?}");
    assert_eq!(
        unverified.header("x-tls-sni"),
        Some("-"),
        "no SNI configured"
    );
    assert!(backend.handshakes() >= 2);
    Ok(())
}

#[test]
fn edge_check_reports_certificate_problems_with_their_line() -> Result<()> {
    let dir = tempfile::tempdir()?;
    write_certificates(dir.path())?;
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "\
listeners:
  - name: web
    address: 127.0.0.1:8443
    pool: app
    tls:
      min_version: \"1.0\"
      certificates:
        - cert: missing.pem
          key: a.key
        - cert: b.pem
          key: a.key
pools:
  - {name: app, backends: [{address: 127.0.0.1:9000}]}
",
    )?;
    let out = Command::new(edge_tests::edge::binary()?)
        .arg("check")
        .arg(&file)
        .output()?;
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    let (f, d) = (file.display(), dir.path().display());
    for expected in [
        format!(
            "{f}:6:20: listeners[0].tls.min_version: bad min_version \"1.0\": expected \"1.2\" or \"1.3\""
        ),
        format!(
            "{f}:8:17: listeners[0].tls.certificates[0].cert: cannot read certificate file {d}/missing.pem: No such file or directory (os error 2)"
        ),
        format!(
            "{f}:11:16: listeners[0].tls.certificates[1].key: the private key in {d}/a.key does not match the certificate in {d}/b.pem (the first certificate in the file must be the leaf)"
        ),
    ] {
        assert!(text.contains(&expected), "missing {expected:?} in:\n{text}");
    }
    Ok(())
}
