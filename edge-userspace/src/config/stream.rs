//! Stream listeners: raw TCP to a pool (`mode: tcp`), TLS routed by SNI
//! without terminating it (`mode: tls_passthrough`), and the PROXY
//! protocol towards their backends.

use super::{
    model::{HashKey, HostMatch, Pool},
    surface,
    validate::Validator,
};
use crate::stream::proxy_protocol::Version;
use serde::Deserialize;

/// Most `sni` routes of one listener.
pub const MAX_SNI_ROUTES: usize = 1024;
/// Most `proxy_protocol.accept_from` prefixes of one listener.
pub const MAX_ACCEPT_FROM: usize = 1024;

/// `listeners[].sni[]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SniRouteSurface {
    /// Server names: exact, or `*.example.com` for any subdomain (not the
    /// name itself).
    pub names: Vec<String>,
    /// The pool such connections go to.
    pub pool: String,
}

/// `listeners[].proxy_protocol` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyProtocolSurface {
    /// Written ahead of each stream to the backend: `v1` or `v2`
    /// (stream listeners).
    #[serde(default)]
    pub send: Option<String>,
    /// Peers (CIDR) that must open each connection with a PROXY header
    /// (v1 or v2), whose client address edge then uses (any listener).
    #[serde(default)]
    pub accept_from: Vec<String>,
}

/// What a stream listener does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamMode {
    /// Raw TCP to one pool.
    Tcp,
    /// TLS, by the ClientHello's server name, to a pool.
    TlsPassthrough,
}

impl StreamMode {
    /// The name used in the YAML file.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamMode::Tcp => "tcp",
            StreamMode::TlsPassthrough => "tls_passthrough",
        }
    }
}

/// A stream listener's settings, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSettings {
    /// TCP or TLS passthrough.
    pub mode: StreamMode,
    /// TCP: the pool; TLS passthrough: the pool of connections whose name
    /// no `sni` route has (or that send none); `None`: they are closed.
    pub pool: Option<String>,
    /// Server names (lower case) to pools, in file order.
    pub sni: Vec<(Vec<HostMatch>, String)>,
    /// The PROXY protocol header written to backends.
    pub send_proxy: Option<Version>,
}

impl StreamSettings {
    /// One line for `edge check` and the start-up log.
    pub fn summary(&self) -> String {
        let mut out = self.mode.as_str().to_string();
        if !self.sni.is_empty() {
            out.push_str(&format!(", {} sni route(s)", self.sni.len()));
        }
        match (&self.pool, self.mode) {
            (Some(p), StreamMode::Tcp) => out.push_str(&format!(" to pool {p}")),
            (Some(p), StreamMode::TlsPassthrough) => out.push_str(&format!(", default pool {p}")),
            (None, _) => {}
        }
        if let Some(v) = self.send_proxy {
            out.push_str(&format!(", PROXY {} to backends", v.as_str()));
        }
        out
    }
}

/// The listener's mode: `None` for HTTP.
pub(super) fn mode(v: &mut Validator<'_>, path: &str, l: &surface::Listener) -> Option<StreamMode> {
    match l.mode.as_deref() {
        None | Some("http") => None,
        Some("tcp") => Some(StreamMode::Tcp),
        Some("tls_passthrough") => Some(StreamMode::TlsPassthrough),
        Some(other) => {
            v.error(
                format!("{path}.mode"),
                format!("unknown mode {other:?}: expected http, tcp or tls_passthrough"),
            );
            None
        }
    }
}

/// Checks a stream listener's own keys (and that no HTTP-only key is set).
pub(super) fn settings(
    v: &mut Validator<'_>,
    path: &str,
    mode: StreamMode,
    l: &surface::Listener,
    pools: &[Pool],
) -> StreamSettings {
    for (key, set) in [
        ("routes", !l.routes.is_empty()),
        ("tls", l.tls.is_some()),
        ("http2", l.http2.is_some()),
        ("trusted_proxies", !l.trusted_proxies.is_empty()),
        ("untrusted_headers", l.untrusted_headers.is_some()),
        ("merge_slashes", l.merge_slashes.is_some()),
        ("encoded_slashes", l.encoded_slashes.is_some()),
        ("pass_upstream_headers", !l.pass_upstream_headers.is_empty()),
        ("cache", l.cache.is_some()),
        ("compression", l.compression.is_some()),
        ("policies", l.policies.is_some()),
        ("request_id", l.request_id.is_some()),
        ("tracing", l.tracing.is_some()),
    ] {
        if set {
            let why = if key == "tls" && mode == StreamMode::TlsPassthrough {
                " (a passthrough listener leaves TLS to the backends, with their own certificates)"
            } else {
                ""
            };
            v.error(
                format!("{path}.{key}"),
                format!("{key} only applies to mode: http{why}"),
            );
        }
    }
    // A stream's backends get the client's bytes as they are: a pool
    // that speaks TLS or HTTP/2 to its backends is an HTTP pool.
    let stream_pool = |v: &mut Validator<'_>, at: String, name: &str| {
        let found = super::l7::pool_ref(v, at.clone(), name, pools)?;
        // A stream has no HTTP request: only the client's address can be
        // hashed.
        if let Some(p) = pools.iter().find(|p| p.name == found)
            && p.algorithm == super::model::Algorithm::Ketama
            && p.hash_key != HashKey::ClientIp
        {
            let text = match &p.hash_key {
                HashKey::Path => "path".to_string(),
                HashKey::Header(n) => format!("header:{n}"),
                HashKey::Cookie(n) => format!("cookie:{n}"),
                HashKey::ClientIp => "client_ip".to_string(),
            };
            v.error(
                at.clone(),
                format!(
                    "pool {found:?} hashes on {text}: a stream listener has no HTTP request \
                     to read it from (use hash_key: client_ip)"
                ),
            );
        }
        if let Some(p) = pools.iter().find(|p| p.name == found)
            && (p.tls.is_some() || p.protocol.is_h2())
        {
            let what = if p.tls.is_some() { "TLS" } else { "HTTP/2" };
            v.error(
                at,
                format!(
                    "pool {found:?} speaks {what} to its backends: a stream listener passes \
                     bytes through as they are (TLS passthrough leaves TLS to client and backend)"
                ),
            );
        }
        Some(found)
    };
    let pool = l
        .pool
        .as_ref()
        .and_then(|p| stream_pool(v, format!("{path}.pool"), p));
    let mut sni = Vec::new();
    match mode {
        StreamMode::Tcp => {
            if l.pool.is_none() {
                v.error(
                    format!("{path}.mode"),
                    "a tcp listener needs a pool: its connections go there",
                );
            }
            if !l.sni.is_empty() {
                v.error(
                    format!("{path}.sni"),
                    "sni only applies to mode: tls_passthrough",
                );
            }
        }
        StreamMode::TlsPassthrough => {
            if l.sni.is_empty() && l.pool.is_none() {
                v.error(
                    format!("{path}.mode"),
                    "a tls_passthrough listener needs sni routes, a default pool, or both",
                );
            }
            if l.sni.len() > MAX_SNI_ROUTES {
                v.error(
                    format!("{path}.sni"),
                    format!("at most {MAX_SNI_ROUTES} sni routes"),
                );
            }
            let mut seen = std::collections::HashMap::new();
            for (i, r) in l.sni.iter().enumerate() {
                let rpath = format!("{path}.sni[{i}]");
                if r.names.is_empty() {
                    v.error(format!("{rpath}.names"), "name at least one server name");
                }
                let mut names = Vec::new();
                for (j, n) in r.names.iter().enumerate() {
                    let npath = format!("{rpath}.names[{j}]");
                    let Some(m) = server_name(n) else {
                        v.error(
                            npath,
                            format!(
                                "bad server name {n:?}: expected a DNS name such as \
                                 example.com or *.example.com"
                            ),
                        );
                        continue;
                    };
                    v.unique(&mut seen, m.clone(), npath, || {
                        format!("server name {n:?} is routed twice")
                    });
                    names.push(m);
                }
                if let Some(p) = stream_pool(v, format!("{rpath}.pool"), &r.pool) {
                    sni.push((names, p));
                }
            }
        }
    }
    let send_proxy = l
        .proxy_protocol
        .as_ref()
        .and_then(|p| match p.send.as_deref() {
            None => None,
            Some("v1") => Some(Version::V1),
            Some("v2") => Some(Version::V2),
            Some(other) => {
                v.error(
                    format!("{path}.proxy_protocol.send"),
                    format!("unknown PROXY protocol version {other:?}: expected v1 or v2"),
                );
                None
            }
        });
    StreamSettings {
        mode,
        pool,
        sni,
        send_proxy,
    }
}

/// `proxy_protocol.accept_from` of any listener.
pub(super) fn accept_from(
    v: &mut Validator<'_>,
    path: &str,
    l: &surface::Listener,
) -> Vec<ipnet::IpNet> {
    let Some(p) = &l.proxy_protocol else {
        return Vec::new();
    };
    if p.accept_from.len() > MAX_ACCEPT_FROM {
        v.error(
            format!("{path}.proxy_protocol.accept_from"),
            format!("at most {MAX_ACCEPT_FROM} prefixes"),
        );
    }
    p.accept_from
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            super::validate::parse_cidr(v, format!("{path}.proxy_protocol.accept_from[{i}]"), c)
        })
        .collect()
}

/// `name` as a server-name condition: exact, or `*.suffix`.
fn server_name(name: &str) -> Option<HostMatch> {
    let name = name.to_ascii_lowercase();
    let (wild, rest) = match name.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, name.as_str()),
    };
    let ok = !rest.is_empty()
        && rest.len() <= 253
        && rest.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    ok.then(|| {
        if wild {
            HostMatch::Suffix(format!(".{rest}"))
        } else {
            HostMatch::Exact(rest.to_string())
        }
    })
}
