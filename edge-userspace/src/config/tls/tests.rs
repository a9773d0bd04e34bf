//! Listener TLS, limits and upstream TLS in the configuration, with real
//! certificate files and the exact messages a user sees.

use super::server_name;
use crate::config::{ConfigError, TlsVersion, parse};
use openssl::{
    asn1::Asn1Time,
    bn::{BigNum, MsbOption},
    ec::{EcGroup, EcKey},
    hash::MessageDigest,
    nid::Nid,
    pkey::{PKey, Private},
    x509::{X509, X509NameBuilder, extension::SubjectAlternativeName},
};
use std::{path::Path, time::Duration};

fn key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

/// A self-signed certificate for `cn` with SAN DNS names `dns`, valid from
/// `from` days to `to` days from now (negative: in the past).
fn cert(cn: &str, dns: &[&str], key: &PKey<Private>, from: i64, to: i64) -> X509 {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(key).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    b.set_not_before(&Asn1Time::from_unix(now + from * 86_400).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::from_unix(now + to * 86_400).unwrap())
        .unwrap();
    if !dns.is_empty() {
        let mut san = SubjectAlternativeName::new();
        for d in dns {
            san.dns(d);
        }
        let ext = san.build(&b.x509v3_context(None, None)).unwrap();
        b.append_extension(ext).unwrap();
    }
    b.sign(key, MessageDigest::sha256()).unwrap();
    b.build()
}

/// Writes `<name>.pem` and `<name>.key` under `dir`.
fn write(dir: &Path, name: &str, cn: &str, dns: &[&str]) {
    let k = key();
    let c = cert(cn, dns, &k, -1, 30);
    std::fs::write(dir.join(format!("{name}.pem")), c.to_pem().unwrap()).unwrap();
    std::fs::write(
        dir.join(format!("{name}.key")),
        k.private_key_to_pem_pkcs8().unwrap(),
    )
    .unwrap();
}

/// A directory with certificates `a` (a.example.com), `b` (b.example.com,
/// *.b.example.com) and `bare` (no SAN), and a CA file `ca.pem`.
fn certs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("certs")).unwrap();
    let d = dir.path().join("certs");
    write(&d, "a", "a", &["a.example.com"]);
    write(&d, "b", "b", &["b.example.com", "*.b.example.com"]);
    write(&d, "bare", "bare", &[]);
    std::fs::copy(d.join("a.pem"), d.join("ca.pem")).unwrap();
    std::fs::write(d.join("garbage.pem"), "not a certificate\n").unwrap();
    dir
}

/// The diagnostics for `yaml` placed in `dir`, with `dir` shown as `DIR`.
fn errors(dir: &Path, yaml: &str) -> Vec<String> {
    let file = dir.join("edge.yaml");
    match parse(yaml, &file) {
        Ok(c) => panic!("expected errors, got {c:?}"),
        Err(ConfigError::Invalid { diagnostics, .. }) => diagnostics
            .iter()
            .map(|d| {
                d.display_in(Path::new("edge.yaml"))
                    .to_string()
                    .replace(&dir.display().to_string(), "DIR")
            })
            .collect(),
        Err(e) => panic!("unexpected error {e}"),
    }
}

const POOL: &str = "pools:\n  - {name: app, backends: [{address: 10.0.0.2:80}]}\n";

#[test]
fn a_tls_listener_becomes_the_model() {
    let dir = certs();
    let yaml = "\
listeners:
  - name: web
    address: 0.0.0.0:443
    pool: app
    http2: false
    tls:
      min_version: 1.3
      certificates:
        - {cert: certs/a.pem, key: certs/a.key}
        - cert: certs/b.pem
          key: certs/b.key
          server_names: [B.example.com., '*.b.example.com', other.example.org]
    limits:
      header_read_timeout: 2s
      idle_timeout: 1500ms
      max_body_size: 1MiB
      max_connections: 100
  - {name: plain, address: 0.0.0.0:80, pool: app}
pools:
  - name: app
    backends: [{address: 10.0.0.2:443}]
    tls: {sni: Backend.Internal, ca: certs/ca.pem}
";
    let c = parse(yaml, &dir.path().join("edge.yaml")).unwrap();
    let t = &c.listeners[0].transport;
    let tls = t.tls.as_ref().unwrap();
    assert!(!t.http2);
    assert_eq!(tls.min_version, TlsVersion::Tls13);
    let certs = dir.path().join("certs");
    assert_eq!(tls.certificates[0].cert, certs.join("a.pem"));
    assert_eq!(tls.certificates[0].key, certs.join("a.key"));
    assert_eq!(tls.certificates[0].server_names, ["a.example.com"]);
    assert!(!tls.certificates[0].expired);
    assert_eq!(
        tls.certificates[1].server_names,
        ["b.example.com", "*.b.example.com", "other.example.org"]
    );
    assert_eq!(t.limits.header_read_timeout, Duration::from_secs(2));
    assert_eq!(t.limits.idle_timeout, Duration::from_secs(2), "rounded up");
    assert_eq!(t.limits.max_body_size, Some(1 << 20));
    assert_eq!(t.limits.max_connections, Some(100));

    let plain = &c.listeners[1].transport;
    assert!(plain.tls.is_none());
    assert!(plain.http2);
    assert_eq!(plain.limits.header_read_timeout, Duration::from_secs(10));
    assert_eq!(plain.limits.idle_timeout, Duration::from_secs(60));
    assert_eq!(plain.limits.max_body_size, None);
    assert_eq!(plain.limits.max_connections, Some(10_000), "the default");

    let up = c.pools[0].tls.as_ref().unwrap();
    assert_eq!(up.sni.as_deref(), Some("backend.internal"));
    assert!(up.verify);
    assert_eq!(up.ca.as_deref(), Some(certs.join("ca.pem").as_path()));

    let summary = c.summary();
    assert!(
        summary.contains("  tls: min 1.3, alpn http/1.1\n"),
        "{summary}"
    );
    assert!(
        summary.contains("certs/a.pem (default): a.example.com (expires "),
        "{summary}"
    );
}

#[test]
fn missing_and_unparsable_files() {
    let dir = certs();
    let yaml = format!(
        "\
listeners:
  - name: web
    address: 0.0.0.0:443
    pool: app
    tls:
      certificates:
        - cert: certs/missing.pem
          key: certs/a.key
        - cert: certs/garbage.pem
          key: certs/garbage.pem
{POOL}"
    );
    assert_eq!(
        errors(dir.path(), &yaml),
        [
            "edge.yaml:7:17: listeners[0].tls.certificates[0].cert: cannot read certificate file DIR/certs/missing.pem: No such file or directory (os error 2)",
            "edge.yaml:9:17: listeners[0].tls.certificates[1].cert: DIR/certs/garbage.pem has no PEM certificate (expected -----BEGIN CERTIFICATE-----)",
            "edge.yaml:10:16: listeners[0].tls.certificates[1].key: DIR/certs/garbage.pem has no unencrypted PEM private key (expected -----BEGIN PRIVATE KEY-----)",
        ]
    );
}

#[test]
fn a_key_that_does_not_match_its_certificate() {
    let dir = certs();
    let yaml = format!(
        "\
listeners:
  - name: web
    address: 0.0.0.0:443
    pool: app
    tls:
      certificates:
        - {{cert: certs/a.pem, key: certs/b.key}}
{POOL}"
    );
    assert_eq!(
        errors(dir.path(), &yaml),
        [
            "edge.yaml:7:36: listeners[0].tls.certificates[0].key: the private key in DIR/certs/b.key does not match the certificate in DIR/certs/a.pem (the first certificate in the file must be the leaf)"
        ]
    );
}

#[test]
fn bad_min_version_names_and_certificate_lists() {
    let dir = certs();
    let yaml = format!(
        "\
listeners:
  - name: web
    address: 0.0.0.0:443
    pool: app
    tls:
      min_version: 1.1
      certificates:
        - {{cert: certs/a.pem, key: certs/a.key, server_names: [www.example.com, 'bad name']}}
        - {{cert: certs/b.pem, key: certs/b.key, server_names: [WWW.example.com]}}
        - {{cert: certs/bare.pem, key: certs/bare.key}}
  - name: empty
    address: 0.0.0.0:444
    pool: app
    tls:
      min_version: \"TLSv1.3\"
      certificates: []
{POOL}"
    );
    assert_eq!(
        errors(dir.path(), &yaml),
        [
            "edge.yaml:6:20: listeners[0].tls.min_version: bad min_version \"1.1\": expected \"1.2\" or \"1.3\"",
            "edge.yaml:8:81: listeners[0].tls.certificates[0].server_names[1]: bad server name \"bad name\": expected a DNS name such as www.example.com, or a wildcard such as *.example.com",
            "edge.yaml:9:64: listeners[0].tls.certificates[1].server_names[0]: server name \"www.example.com\" is already served by the certificate at line 8 (a name may belong to one certificate; set server_names to choose)",
            "edge.yaml:10:18: listeners[0].tls.certificates[2].cert: certificate \"certs/bare.pem\" has no DNS names in its subjectAltName and no server_names, so SNI can never choose it (only the first certificate is a default): list server_names",
            "edge.yaml:15:20: listeners[1].tls.min_version: bad min_version \"TLSv1.3\": expected \"1.2\" or \"1.3\"",
            "edge.yaml:16:21: listeners[1].tls.certificates: a TLS listener needs at least one certificate",
        ]
    );
}

#[test]
fn default_names_from_two_certificates_may_not_overlap() {
    let dir = certs();
    let yaml = format!(
        "\
listeners:
  - name: web
    address: 0.0.0.0:443
    pool: app
    tls:
      certificates:
        - {{cert: certs/b.pem, key: certs/b.key}}
        - {{cert: certs/b.pem, key: certs/b.key}}
{POOL}"
    );
    assert_eq!(
        errors(dir.path(), &yaml),
        [
            "edge.yaml:8:18: listeners[0].tls.certificates[1].cert: server name \"b.example.com\" is already served by the certificate at line 7 (a name may belong to one certificate; set server_names to choose)",
            "edge.yaml:8:18: listeners[0].tls.certificates[1].cert: server name \"*.b.example.com\" is already served by the certificate at line 7 (a name may belong to one certificate; set server_names to choose)",
        ]
    );
}

#[test]
fn bad_limits() {
    let dir = certs();
    let yaml = format!(
        "\
listeners:
  - name: web
    address: 0.0.0.0:80
    pool: app
    limits:
      header_read_timeout: 0s
      idle_timeout: 500ms
      max_body_size: 10 parsecs
      max_connections: 0
  - name: web2
    address: 0.0.0.0:81
    pool: app
    limits: {{header_read_timeout: soon, surprise: 1}}
{POOL}"
    );
    assert_eq!(
        errors(dir.path(), &yaml),
        [
            "edge.yaml:13:41: listeners[1].limits: unknown field `surprise`, expected one of `header_read_timeout`, `idle_timeout`, `max_body_size`, `max_connections`, `body_read_timeout`, `min_body_rate`, `max_uri_length`, `max_request_headers`, `max_request_head_size`, `http2_max_streams`, `http2_connection_buffer`"
        ]
    );
    let yaml = yaml.replace(", surprise: 1", "");
    assert_eq!(
        errors(dir.path(), &yaml),
        [
            "edge.yaml:6:28: listeners[0].limits.header_read_timeout: header_read_timeout must be greater than 0",
            "edge.yaml:7:21: listeners[0].limits.idle_timeout: idle_timeout must be at least 1s (keep-alive idle time counts whole seconds)",
            "edge.yaml:8:22: listeners[0].limits.max_body_size: bad size \"10 parsecs\": expected bytes, optionally with a unit, such as 512, 64KiB, 10MiB or 1GiB",
            "edge.yaml:9:24: listeners[0].limits.max_connections: max_connections must be at least 1",
            "edge.yaml:13:35: listeners[1].limits.header_read_timeout: bad duration \"soon\": expected a number with a unit, such as 250ms, 5s, 2m or 1h",
        ]
    );
}

#[test]
fn bad_upstream_tls() {
    let dir = certs();
    let yaml = "\
listeners:
  - {name: web, address: 0.0.0.0:80, pool: a}
pools:
  - name: a
    backends: [{address: 10.0.0.2:443}]
    tls: {ca: certs/ca.pem}
  - name: b
    backends: [{address: 10.0.0.3:443}]
    tls: {sni: '*.internal', ca: certs/nope.pem}
  - name: c
    backends: [{address: 10.0.0.4:443}]
    tls: {verify: false, ca: certs/garbage.pem}
";
    assert_eq!(
        errors(dir.path(), yaml),
        [
            "edge.yaml:6:10: pools[0].tls: verify needs sni: the backend's certificate is checked against that name (set sni, or verify: false to skip verification)",
            "edge.yaml:9:16: pools[1].tls.sni: bad sni \"*.internal\": expected a DNS name such as backend.internal",
            "edge.yaml:9:34: pools[1].tls.ca: cannot read CA file DIR/certs/nope.pem: No such file or directory (os error 2)",
            "edge.yaml:12:30: pools[2].tls.ca: DIR/certs/garbage.pem has no PEM certificate (expected -----BEGIN CERTIFICATE-----)",
        ]
    );
}

#[test]
fn an_expired_certificate_is_flagged_in_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let k = key();
    let c = cert("old", &["old.example.com"], &k, -10, -1);
    std::fs::write(dir.path().join("old.pem"), c.to_pem().unwrap()).unwrap();
    std::fs::write(
        dir.path().join("old.key"),
        k.private_key_to_pem_pkcs8().unwrap(),
    )
    .unwrap();
    let yaml = format!(
        "\
listeners:
  - name: web
    address: 0.0.0.0:443
    pool: app
    tls:
      certificates: [{{cert: old.pem, key: old.key, server_names: [old.example.com]}}]
{POOL}"
    );
    let config = parse(&yaml, &dir.path().join("edge.yaml")).unwrap();
    let tls = config.listeners[0].transport.tls.as_ref().unwrap();
    assert!(tls.certificates[0].expired);
    assert!(
        config.summary().contains(", EXPIRED)"),
        "{}",
        config.summary()
    );
}

#[test]
fn server_names() {
    assert_eq!(
        server_name("WWW.Example.COM."),
        Ok("www.example.com".into())
    );
    assert_eq!(server_name("*.example.com"), Ok("*.example.com".into()));
    assert!(server_name("*.com").is_err());
    assert!(server_name("a.*.example.com").is_err());
    assert!(server_name("-a.example.com").is_err());
    assert!(server_name("").is_err());
    assert!(server_name("a..b").is_err());
}
