//! `edge check`'s look at the servers the gateway will ask: a JWKS or
//! introspection URL that cannot be reached now is a warning, not an
//! error (the server may come up before edge needs it, and edge keeps
//! trying).

use crate::config::Config;
use std::{collections::BTreeMap, net::ToSocketAddrs, time::Duration};

/// How long `edge check` waits for each server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// One warning per URL no TCP connection could be opened to, naming the
/// first route that uses it.
pub fn unreachable(config: &Config) -> Vec<String> {
    let mut urls: BTreeMap<String, (String, &'static str)> = BTreeMap::new();
    for l in &config.listeners {
        for r in &l.routes {
            let Some(auth) = &r.policies.auth else {
                continue;
            };
            let place = format!("listener {} route {}", l.name, r.name);
            if let Some(j) = auth.jwt.as_ref().and_then(|j| j.jwks.as_ref()) {
                urls.entry(j.url.to_string())
                    .or_insert((place.clone(), "JWKS"));
            }
            if let Some(i) = &auth.introspection {
                urls.entry(i.url.to_string())
                    .or_insert((place, "introspection"));
            }
        }
    }
    urls.into_iter()
        .filter_map(|(url, (place, what))| {
            let why = reach(&url).err()?;
            Some(format!(
                "warning: {place}: the {what} URL {url} cannot be reached now ({why}); \
                 edge will keep trying"
            ))
        })
        .collect()
}

fn reach(url: &str) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{e}"))?;
    let host = uri.host().ok_or("no host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    let addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    let mut last = String::from("no address");
    for a in addrs {
        match std::net::TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("{a}: {e}"),
        }
    }
    Err(last)
}
