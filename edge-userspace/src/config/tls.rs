//! Listener transport (TLS termination, HTTP/2, connection limits) and
//! upstream TLS: the YAML surface, the checked model, and the validation
//! that turns one into the other.
//!
//! Certificate and key files are opened and parsed here, at `edge check`
//! time, so that a missing file, a key that does not match its certificate
//! or a name served twice is reported with its line instead of failing at
//! start-up. Relative paths resolve against the configuration file's
//! directory.

use super::{units::Quantity, validate::Validator};
use openssl::{
    asn1::Asn1Time,
    pkey::{PKey, Private},
    x509::X509,
};
use serde::{Deserialize, Deserializer, de};
use std::{collections::HashMap, fmt, path::PathBuf, time::Duration};

/// Default `limits.header_read_timeout`.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `limits.idle_timeout`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------- surface

/// `listeners[].tls`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTlsSurface {
    /// Certificates; the first is the default.
    pub certificates: Vec<CertificateSurface>,
    /// `"1.2"` or `"1.3"`.
    #[serde(default)]
    pub min_version: Option<VersionText>,
}

/// `listeners[].tls.certificates[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateSurface {
    /// PEM certificate chain, leaf first.
    pub cert: String,
    /// PEM private key.
    pub key: String,
    /// SNI names this certificate answers; default: its SAN DNS names.
    #[serde(default)]
    pub server_names: Option<Vec<String>>,
}

/// `listeners[].limits`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSurface {
    /// Time allowed for a complete request head.
    #[serde(default)]
    pub header_read_timeout: Option<Quantity>,
    /// Keep-alive idle time between requests.
    #[serde(default)]
    pub idle_timeout: Option<Quantity>,
    /// Largest request body accepted.
    #[serde(default)]
    pub max_body_size: Option<Quantity>,
    /// Concurrent connections on this listener.
    #[serde(default)]
    pub max_connections: Option<u64>,
    /// Longest wait for the next piece of a request body.
    #[serde(default)]
    pub body_read_timeout: Option<Quantity>,
    /// Slowest average request body rate accepted, in bytes per second
    /// (`0B` turns it off).
    #[serde(default)]
    pub min_body_rate: Option<Quantity>,
    /// Longest request target (path and query).
    #[serde(default)]
    pub max_uri_length: Option<Quantity>,
    /// Most request header fields.
    #[serde(default)]
    pub max_request_headers: Option<u64>,
    /// Largest request head (target and header fields).
    #[serde(default)]
    pub max_request_head_size: Option<Quantity>,
    /// Most concurrent HTTP/2 streams per connection.
    #[serde(default)]
    pub http2_max_streams: Option<u64>,
    /// Response bytes buffered for one HTTP/2 connection's streams, all
    /// together (each stream gets an equal share).
    #[serde(default)]
    pub http2_connection_buffer: Option<Quantity>,
}

/// `pools[].tls`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolTlsSurface {
    /// Server name sent in SNI and checked against the backend's certificate.
    #[serde(default)]
    pub sni: Option<String>,
    /// Verify the backend's certificate chain and name.
    #[serde(default = "default_verify")]
    pub verify: bool,
    /// PEM file of the CA certificates trusted for this pool.
    #[serde(default)]
    pub ca: Option<String>,
}

fn default_verify() -> bool {
    true
}

/// A TLS version as written: `"1.3"`, or the YAML number `1.3`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionText(pub String);

impl<'de> Deserialize<'de> for VersionText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = VersionText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a TLS version such as \"1.2\" or \"1.3\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<VersionText, E> {
                Ok(VersionText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<VersionText, E> {
                Ok(VersionText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<VersionText, E> {
                Ok(VersionText(v.to_string()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

// ------------------------------------------------------------------ model

/// How a listener talks to clients below HTTP routing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerTransport {
    /// TLS termination; `None` is plain HTTP.
    pub tls: Option<TlsTermination>,
    /// HTTP/2: offered through ALPN on a TLS listener, accepted with
    /// prior knowledge (h2c) on a plain one.
    pub http2: bool,
    /// Connection and request limits.
    pub limits: Limits,
}

impl ListenerTransport {
    /// Lines for `edge check` and the start-up log.
    pub fn summary(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(tls) = &self.tls {
            out.push(format!(
                "tls: min {}, alpn {}",
                tls.min_version.as_str(),
                if self.http2 {
                    "h2, http/1.1"
                } else {
                    "http/1.1"
                }
            ));
            for (i, c) in tls.certificates.iter().enumerate() {
                out.push(format!(
                    "certificate {}{}: {} (expires {}{})",
                    c.cert.display(),
                    if i == 0 { " (default)" } else { "" },
                    if c.server_names.is_empty() {
                        "no names".to_string()
                    } else {
                        c.server_names.join(", ")
                    },
                    c.not_after,
                    if c.expired { ", EXPIRED" } else { "" }
                ));
            }
        }
        out
    }
}

impl Default for ListenerTransport {
    fn default() -> Self {
        Self {
            tls: None,
            http2: true,
            limits: Limits::default(),
        }
    }
}

/// A listener's TLS settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsTermination {
    /// Certificates; `certificates[0]` is the default.
    pub certificates: Vec<CertificateFiles>,
    /// Lowest TLS version accepted.
    pub min_version: TlsVersion,
}

/// One certificate, checked: the files parse and the key matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateFiles {
    /// PEM chain, resolved path.
    pub cert: PathBuf,
    /// PEM key, resolved path.
    pub key: PathBuf,
    /// Lower-case names (exact, or `*.` wildcards) chosen by SNI.
    pub server_names: Vec<String>,
    /// The leaf's notAfter, as OpenSSL prints it.
    pub not_after: String,
    /// Whether the leaf had expired when the file was checked.
    pub expired: bool,
}

/// Lowest TLS version a listener accepts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

impl TlsVersion {
    /// The name used in the YAML file.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
        }
    }
}

/// Per-listener limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// A request head must arrive completely within this (from the
    /// connection's start for the first request, from its first byte for
    /// later ones on a kept-alive connection).
    pub header_read_timeout: Duration,
    /// An idle kept-alive connection is closed after this (whole seconds).
    pub idle_timeout: Duration,
    /// Request bodies larger than this get 413; `None`: no limit.
    pub max_body_size: Option<u64>,
    /// Concurrent connections (default [`DEFAULT_MAX_CONNECTIONS`]).
    pub max_connections: Option<usize>,
    /// Longest wait for the next piece of a request body (408).
    pub body_read_timeout: Duration,
    /// Slowest average body rate, bytes per second, once
    /// [`MIN_RATE_GRACE`] has passed (408); `None`: off.
    pub min_body_rate: Option<u64>,
    /// Longest request target (414).
    pub max_uri_length: usize,
    /// Most request header fields (431).
    pub max_request_headers: usize,
    /// Largest request head, target plus fields (431).
    pub max_request_head_size: usize,
    /// Most concurrent HTTP/2 streams per connection.
    pub http2_max_streams: u32,
    /// Response bytes buffered per HTTP/2 connection, over all streams.
    pub http2_connection_buffer: usize,
}

/// Default `max_connections`: enough for a busy host, small enough that
/// a flood of idle connections cannot take the memory of the machine.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default `body_read_timeout` (nginx's `client_body_timeout` is 60s).
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `min_body_rate`, bytes per second (Apache's mod_reqtimeout
/// default is 500).
pub const DEFAULT_MIN_BODY_RATE: u64 = 500;
/// Time a body is given before `min_body_rate` is enforced.
pub const MIN_RATE_GRACE: Duration = Duration::from_secs(5);
/// Default `max_uri_length` (8 KiB, as nginx's `large_client_header_buffers`).
pub const DEFAULT_MAX_URI_LENGTH: usize = 8 * 1024;
/// Default `max_request_headers`.
pub const DEFAULT_MAX_REQUEST_HEADERS: usize = 100;
/// Default `max_request_head_size`.
pub const DEFAULT_MAX_REQUEST_HEAD_SIZE: usize = 64 * 1024;
/// Pingora's own ceilings: what a listener may be configured up to (its
/// parser refuses more with 400 whatever edge says).
pub const PINGORA_MAX_HEADERS: usize = 256;
/// Pingora's request head buffer.
pub const PINGORA_MAX_HEAD: usize = 1024 * 1024;
/// Default `http2_max_streams` (Pingora's and nginx's default).
pub const DEFAULT_HTTP2_MAX_STREAMS: u32 = 100;
/// Most `http2_max_streams` accepted.
pub const MAX_HTTP2_STREAMS: u64 = 1000;
/// Default `http2_connection_buffer`.
pub const DEFAULT_HTTP2_CONNECTION_BUFFER: usize = 1024 * 1024;
/// Smallest per-stream HTTP/2 send buffer: one frame of the default size.
pub const MIN_HTTP2_STREAM_BUFFER: usize = 16 * 1024;

impl Limits {
    /// Each HTTP/2 stream's send buffer: the connection's budget shared
    /// among its streams, at least one frame.
    pub fn http2_stream_buffer(&self) -> usize {
        (self.http2_connection_buffer / self.http2_max_streams.max(1) as usize)
            .max(MIN_HTTP2_STREAM_BUFFER)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_body_size: None,
            max_connections: Some(DEFAULT_MAX_CONNECTIONS),
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            min_body_rate: Some(DEFAULT_MIN_BODY_RATE),
            max_uri_length: DEFAULT_MAX_URI_LENGTH,
            max_request_headers: DEFAULT_MAX_REQUEST_HEADERS,
            max_request_head_size: DEFAULT_MAX_REQUEST_HEAD_SIZE,
            http2_max_streams: DEFAULT_HTTP2_MAX_STREAMS,
            http2_connection_buffer: DEFAULT_HTTP2_CONNECTION_BUFFER,
        }
    }
}

/// TLS towards a pool's backends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamTls {
    /// SNI and the name the certificate is checked against.
    pub sni: Option<String>,
    /// Verify the certificate chain and name.
    pub verify: bool,
    /// CA file trusted instead of the system store, resolved path.
    pub ca: Option<PathBuf>,
}

// ------------------------------------------------------------- validation

/// Checks a listener's `tls`, `http2` and `limits` at `path`
/// (`listeners[i]`).
pub(super) fn listener_transport(
    v: &mut Validator<'_>,
    path: &str,
    tls: Option<&ListenerTlsSurface>,
    http2: Option<bool>,
    limits: Option<&LimitsSurface>,
) -> ListenerTransport {
    ListenerTransport {
        tls: tls.and_then(|t| termination(v, &format!("{path}.tls"), t)),
        http2: http2.unwrap_or(true),
        limits: self::limits(v, &format!("{path}.limits"), limits),
    }
}

fn termination(
    v: &mut Validator<'_>,
    path: &str,
    tls: &ListenerTlsSurface,
) -> Option<TlsTermination> {
    let min_version = match tls.min_version.as_ref().map(|t| t.0.as_str()) {
        None | Some("1.2") => TlsVersion::Tls12,
        Some("1.3") => TlsVersion::Tls13,
        Some(other) => {
            v.error(
                format!("{path}.min_version"),
                format!("bad min_version {other:?}: expected \"1.2\" or \"1.3\""),
            );
            TlsVersion::Tls12
        }
    };
    if tls.certificates.is_empty() {
        v.error(
            format!("{path}.certificates"),
            "a TLS listener needs at least one certificate",
        );
        return None;
    }
    // name -> path of the node that claimed it first
    let mut claimed: HashMap<String, String> = HashMap::new();
    let mut certificates = Vec::new();
    let mut ok = true;
    for (j, c) in tls.certificates.iter().enumerate() {
        let cpath = format!("{path}.certificates[{j}]");
        let Some(files) = certificate(v, &cpath, c) else {
            ok = false;
            continue;
        };
        let (names, name_paths): (Vec<String>, Vec<String>) = match &c.server_names {
            Some(list) => {
                let mut names = Vec::new();
                let mut paths = Vec::new();
                for (k, n) in list.iter().enumerate() {
                    let npath = format!("{cpath}.server_names[{k}]");
                    match server_name(n) {
                        Ok(n) => {
                            names.push(n);
                            paths.push(npath);
                        }
                        Err(msg) => {
                            v.error(npath, msg);
                            ok = false;
                        }
                    }
                }
                (names, paths)
            }
            None => {
                let names = files.san_names.clone();
                let paths = vec![format!("{cpath}.cert"); names.len()];
                (names, paths)
            }
        };
        if names.is_empty() && j > 0 {
            v.error(
                format!("{cpath}.cert"),
                format!(
                    "certificate {:?} has no DNS names in its subjectAltName and no server_names, \
                     so SNI can never choose it (only the first certificate is a default): \
                     list server_names",
                    c.cert
                ),
            );
            ok = false;
        }
        for (n, npath) in names.iter().zip(name_paths) {
            if let Some(first) = claimed.get(n) {
                let msg = format!(
                    "server name {n:?} is already served by the certificate at {} \
                     (a name may belong to one certificate; set server_names to choose)",
                    v.line_of(first)
                );
                v.error(npath, msg);
                ok = false;
            } else {
                claimed.insert(n.clone(), npath);
            }
        }
        certificates.push(CertificateFiles {
            cert: files.cert,
            key: files.key,
            server_names: names,
            not_after: files.not_after,
            expired: files.expired,
        });
    }
    ok.then_some(TlsTermination {
        certificates,
        min_version,
    })
}

/// What [`certificate`] learnt from the files.
struct CheckedFiles {
    cert: PathBuf,
    key: PathBuf,
    san_names: Vec<String>,
    not_after: String,
    expired: bool,
}

/// Reads and parses a certificate chain and its key, and checks that they
/// belong together.
fn certificate(v: &mut Validator<'_>, path: &str, c: &CertificateSurface) -> Option<CheckedFiles> {
    let cert_path = v.base_dir().join(&c.cert);
    let key_path = v.base_dir().join(&c.key);
    let chain = read_certificates(v, format!("{path}.cert"), &cert_path, "certificate");
    let key = read_key(v, format!("{path}.key"), &key_path);
    let (chain, key) = (chain?, key?);
    let leaf = chain.first()?;
    let matches = leaf
        .public_key()
        .map(|public| public.public_eq(&key))
        .unwrap_or(false);
    if !matches {
        v.error(
            format!("{path}.key"),
            format!(
                "the private key in {} does not match the certificate in {} \
                 (the first certificate in the file must be the leaf)",
                key_path.display(),
                cert_path.display()
            ),
        );
        return None;
    }
    let san_names = leaf
        .subject_alt_names()
        .map(|names| {
            names
                .iter()
                .filter_map(|n| n.dnsname())
                .filter_map(|n| server_name(n).ok())
                .collect()
        })
        .unwrap_or_default();
    let expired = Asn1Time::days_from_now(0)
        .map(|now| leaf.not_after() < now)
        .unwrap_or(false);
    Some(CheckedFiles {
        cert: cert_path,
        key: key_path,
        san_names,
        not_after: leaf.not_after().to_string(),
        expired,
    })
}

/// Reads a PEM file of one or more certificates.
fn read_certificates(
    v: &mut Validator<'_>,
    path: String,
    file: &std::path::Path,
    what: &str,
) -> Option<Vec<X509>> {
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            v.error(
                path,
                format!("cannot read {what} file {}: {e}", file.display()),
            );
            return None;
        }
    };
    match X509::stack_from_pem(&bytes) {
        Ok(chain) if !chain.is_empty() => Some(chain),
        _ => {
            v.error(
                path,
                format!(
                    "{} has no PEM certificate (expected -----BEGIN CERTIFICATE-----)",
                    file.display()
                ),
            );
            None
        }
    }
}

fn read_key(v: &mut Validator<'_>, path: String, file: &std::path::Path) -> Option<PKey<Private>> {
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            v.error(
                path,
                format!("cannot read key file {}: {e}", file.display()),
            );
            return None;
        }
    };
    match PKey::private_key_from_pem(&bytes) {
        Ok(k) => Some(k),
        Err(_) => {
            v.error(
                path,
                format!(
                    "{} has no unencrypted PEM private key (expected -----BEGIN PRIVATE KEY-----)",
                    file.display()
                ),
            );
            None
        }
    }
}

/// Normalises a server name: lower case, no trailing dot; either a DNS name
/// or `*.` followed by one with at least two labels.
pub fn server_name(name: &str) -> Result<String, String> {
    let n = name.trim_end_matches('.').to_ascii_lowercase();
    let (wild, base) = match n.strip_prefix("*.") {
        Some(base) => (true, base),
        None => (false, n.as_str()),
    };
    let labels_ok = !base.is_empty()
        && base.len() <= 253
        && base.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !labels_ok || (wild && !base.contains('.')) {
        return Err(format!(
            "bad server name {name:?}: expected a DNS name such as www.example.com, \
             or a wildcard such as *.example.com"
        ));
    }
    Ok(n)
}

fn limits(v: &mut Validator<'_>, path: &str, l: Option<&LimitsSurface>) -> Limits {
    let mut out = Limits::default();
    let Some(l) = l else {
        return out;
    };
    if let Some(q) = &l.header_read_timeout {
        let p = format!("{path}.header_read_timeout");
        match v.duration(p.clone(), q) {
            Some(d) if d.is_zero() => v.error(p, "header_read_timeout must be greater than 0"),
            Some(d) => out.header_read_timeout = d,
            None => {}
        }
    }
    if let Some(q) = &l.idle_timeout {
        let p = format!("{path}.idle_timeout");
        match v.duration(p.clone(), q) {
            Some(d) if d < Duration::from_secs(1) => v.error(
                p,
                "idle_timeout must be at least 1s (keep-alive idle time counts whole seconds)",
            ),
            // Keep-alive timeouts count whole seconds: round up.
            Some(d) => out.idle_timeout = Duration::from_secs(d.as_secs_f64().ceil() as u64),
            None => {}
        }
    }
    if let Some(q) = &l.max_body_size {
        out.max_body_size = v.size(format!("{path}.max_body_size"), q);
    }
    match l.max_connections {
        Some(0) => v.error(
            format!("{path}.max_connections"),
            "max_connections must be at least 1",
        ),
        Some(n) => out.max_connections = Some(usize::try_from(n).unwrap_or(usize::MAX)),
        None => {}
    }
    request_limits(v, path, l, &mut out);
    out
}

/// The request-level limits of `limits:` (body pace, head sizes, HTTP/2).
fn request_limits(v: &mut Validator<'_>, path: &str, l: &LimitsSurface, out: &mut Limits) {
    if let Some(q) = &l.body_read_timeout {
        let p = format!("{path}.body_read_timeout");
        match v.duration(p.clone(), q) {
            Some(d) if d.is_zero() => v.error(p, "body_read_timeout must be greater than 0"),
            Some(d) => out.body_read_timeout = d,
            None => {}
        }
    }
    if let Some(q) = &l.min_body_rate {
        out.min_body_rate = v
            .size(format!("{path}.min_body_rate"), q)
            .and_then(|n| (n > 0).then_some(n));
    }
    let bounded = |v: &mut Validator<'_>, key: &str, n: Option<u64>, max: usize| {
        let n = n?;
        if n == 0 || n > max as u64 {
            v.error(
                format!("{path}.{key}"),
                format!("{key} must be between 1 and {max} (Pingora's own ceiling)"),
            );
            return None;
        }
        usize::try_from(n).ok()
    };
    let uri = l
        .max_uri_length
        .as_ref()
        .and_then(|q| v.size(format!("{path}.max_uri_length"), q));
    if let Some(n) = bounded(v, "max_uri_length", uri, PINGORA_MAX_HEAD) {
        out.max_uri_length = n;
    }
    if let Some(n) = bounded(
        v,
        "max_request_headers",
        l.max_request_headers,
        PINGORA_MAX_HEADERS,
    ) {
        out.max_request_headers = n;
    }
    let head = l
        .max_request_head_size
        .as_ref()
        .and_then(|q| v.size(format!("{path}.max_request_head_size"), q));
    if let Some(n) = bounded(v, "max_request_head_size", head, PINGORA_MAX_HEAD) {
        out.max_request_head_size = n;
    }
    if let Some(n) = bounded(
        v,
        "http2_max_streams",
        l.http2_max_streams,
        MAX_HTTP2_STREAMS as usize,
    ) {
        out.http2_max_streams = u32::try_from(n).unwrap_or(DEFAULT_HTTP2_MAX_STREAMS);
    }
    let buffer = l
        .http2_connection_buffer
        .as_ref()
        .and_then(|q| v.size(format!("{path}.http2_connection_buffer"), q));
    // A quarter of a GiB per connection is far past any use; more would
    // let a few connections take the machine.
    if let Some(n) = bounded(v, "http2_connection_buffer", buffer, 256 * 1024 * 1024) {
        out.http2_connection_buffer = n.max(MIN_HTTP2_STREAM_BUFFER);
    }
}

/// Checks a pool's `tls` at `path` (`pools[i].tls`).
pub(super) fn pool_tls(
    v: &mut Validator<'_>,
    path: &str,
    tls: Option<&PoolTlsSurface>,
) -> Option<UpstreamTls> {
    let tls = tls?;
    let sni = match &tls.sni {
        Some(s) => match server_name(s) {
            Ok(n) if !n.starts_with("*.") => Some(n),
            _ => {
                v.error(
                    format!("{path}.sni"),
                    format!("bad sni {s:?}: expected a DNS name such as backend.internal"),
                );
                None
            }
        },
        None => None,
    };
    if tls.verify && tls.sni.is_none() {
        v.error(
            path.to_string(),
            "verify needs sni: the backend's certificate is checked against that name \
             (set sni, or verify: false to skip verification)",
        );
    }
    let ca = tls.ca.as_ref().and_then(|ca| {
        let file = v.base_dir().join(ca);
        read_certificates(v, format!("{path}.ca"), &file, "CA").map(|_| file)
    });
    Some(UpstreamTls {
        sni,
        verify: tls.verify,
        ca,
    })
}

#[cfg(test)]
mod tests;
