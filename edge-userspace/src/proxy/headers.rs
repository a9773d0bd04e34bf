//! What edge changes in headers as a reverse proxy: X-Forwarded-*, Via,
//! hidden upstream headers, path rewrites and the routes' header changes.

use crate::config::{HeaderOps, Pattern};
use ipnet::IpNet;
use pingora::{
    Result,
    http::{RequestHeader, ResponseHeader},
};
use std::net::IpAddr;

const XFF: &str = "x-forwarded-for";
const XFP: &str = "x-forwarded-proto";
const XFH: &str = "x-forwarded-host";
/// The pseudonym edge uses in `Via` (RFC 9110 §7.6.3).
pub const VIA_NAME: &str = "edge";

/// The client side of a request, as the forwarded headers describe it.
pub struct Client<'a> {
    /// The peer's address.
    pub peer: Option<IpAddr>,
    /// Peers whose X-Forwarded-* are kept.
    pub trusted: &'a [IpNet],
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The Host the client asked for.
    pub host: Option<&'a str>,
}

/// Sets X-Forwarded-For/-Proto/-Host. From a trusted proxy, its
/// X-Forwarded-For chain is kept and the peer appended, and its -Proto and
/// -Host are kept; from anyone else they are replaced, since a client could
/// write anything there.
pub fn forwarded(req: &mut RequestHeader, client: &Client<'_>) -> Result<()> {
    let trusted = client
        .peer
        .is_some_and(|ip| client.trusted.iter().any(|n| n.contains(&ip)));
    let existing = |req: &RequestHeader, name: &str| {
        req.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    match client.peer {
        Some(ip) => {
            let value = match existing(req, XFF) {
                Some(prev) if trusted => format!("{prev}, {ip}"),
                _ => ip.to_string(),
            };
            req.insert_header(XFF, value)?;
        }
        None => {
            req.remove_header(XFF);
        }
    }
    if !(trusted && existing(req, XFP).is_some()) {
        req.insert_header(XFP, client.scheme)?;
    }
    if !(trusted && existing(req, XFH).is_some()) {
        match client.host {
            Some(host) => {
                req.insert_header(XFH, host)?;
            }
            None => {
                req.remove_header(XFH);
            }
        }
    }
    Ok(())
}

/// Appends edge to `Via` of a message with version `version`.
fn via_value(prev: Option<&str>, version: http::Version) -> String {
    let proto = match version {
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    };
    match prev {
        Some(p) if !p.trim().is_empty() => format!("{p}, {proto} {VIA_NAME}"),
        _ => format!("{proto} {VIA_NAME}"),
    }
}

/// Adds edge to the request's `Via`.
pub fn via_request(req: &mut RequestHeader, client_version: http::Version) -> Result<()> {
    let prev = req.headers.get("via").and_then(|v| v.to_str().ok());
    let value = via_value(prev, client_version);
    req.insert_header("via", value)?;
    Ok(())
}

/// Adds edge to the response's `Via` and hides upstream headers.
pub fn upstream_response(resp: &mut ResponseHeader, hidden: &[String]) -> Result<()> {
    for name in hidden {
        resp.remove_header(name.as_str());
    }
    let prev = resp.headers.get("via").and_then(|v| v.to_str().ok());
    let value = via_value(prev, resp.version);
    resp.insert_header("via", value)?;
    Ok(())
}

/// Applies a route's header changes to a request.
pub fn apply_request(req: &mut RequestHeader, ops: &HeaderOps) -> Result<()> {
    for name in &ops.remove {
        req.remove_header(name.as_str());
    }
    for (k, v) in &ops.set {
        req.insert_header(k.clone(), v.as_str())?;
    }
    for (k, v) in &ops.add {
        req.append_header(k.clone(), v.as_str())?;
    }
    Ok(())
}

/// Applies a route's header changes to a response.
pub fn apply_response(resp: &mut ResponseHeader, ops: &HeaderOps) -> Result<()> {
    for name in &ops.remove {
        resp.remove_header(name.as_str());
    }
    for (k, v) in &ops.set {
        resp.insert_header(k.clone(), v.as_str())?;
    }
    for (k, v) in &ops.add {
        resp.append_header(k.clone(), v.as_str())?;
    }
    Ok(())
}

/// The path after `strip_prefix` and `rewrite`; `None` when unchanged.
pub fn rewrite_path(
    path: &str,
    strip_prefix: Option<&str>,
    rewrite: Option<&(Pattern, String)>,
) -> Option<String> {
    let mut out = None;
    if let Some(prefix) = strip_prefix
        && let Some(rest) = path.strip_prefix(prefix.trim_end_matches('/'))
        && (rest.is_empty() || rest.starts_with('/'))
    {
        out = Some(if rest.is_empty() {
            "/".to_string()
        } else {
            rest.to_string()
        });
    }
    if let Some((re, replacement)) = rewrite {
        let current = out.as_deref().unwrap_or(path);
        if re.0.is_match(current) {
            out = Some(re.0.replace(current, replacement.as_str()).into_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(req: &RequestHeader, name: &str) -> Option<String> {
        req.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }

    fn client<'a>(peer: &str, trusted: &'a [IpNet]) -> Client<'a> {
        Client {
            peer: Some(peer.parse().unwrap()),
            trusted,
            scheme: "http",
            host: Some("example.com"),
        }
    }

    #[test]
    fn untrusted_peers_cannot_forge_the_chain() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header(XFF, "198.51.100.1").unwrap();
        req.insert_header(XFP, "https").unwrap();
        req.insert_header(XFH, "evil.example").unwrap();
        forwarded(&mut req, &client("192.0.2.7", &[])).unwrap();
        assert_eq!(header(&req, XFF).as_deref(), Some("192.0.2.7"));
        assert_eq!(header(&req, XFP).as_deref(), Some("http"));
        assert_eq!(header(&req, XFH).as_deref(), Some("example.com"));
    }

    #[test]
    fn trusted_proxies_keep_the_chain() {
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header(XFF, "198.51.100.1").unwrap();
        req.insert_header(XFP, "https").unwrap();
        forwarded(&mut req, &client("10.1.2.3", &trusted)).unwrap();
        assert_eq!(header(&req, XFF).as_deref(), Some("198.51.100.1, 10.1.2.3"));
        assert_eq!(header(&req, XFP).as_deref(), Some("https"));
        assert_eq!(header(&req, XFH).as_deref(), Some("example.com"));
    }

    #[test]
    fn via_appends() {
        assert_eq!(via_value(None, http::Version::HTTP_11), "1.1 edge");
        assert_eq!(
            via_value(Some("1.0 fred"), http::Version::HTTP_2),
            "1.0 fred, 2 edge"
        );
    }

    #[test]
    fn rewrites() {
        let re = Pattern(regex::Regex::new("^/old/(.*)$").unwrap());
        let rw = (re, "/new/$1".to_string());
        assert_eq!(
            rewrite_path("/api/x", Some("/api"), None).as_deref(),
            Some("/x")
        );
        assert_eq!(
            rewrite_path("/api", Some("/api/"), None).as_deref(),
            Some("/")
        );
        assert_eq!(rewrite_path("/apix", Some("/api"), None), None);
        assert_eq!(
            rewrite_path("/old/a/b", None, Some(&rw)).as_deref(),
            Some("/new/a/b")
        );
        assert_eq!(
            rewrite_path("/p/old/a", Some("/p"), Some(&rw)).as_deref(),
            Some("/new/a")
        );
        assert_eq!(rewrite_path("/other", None, Some(&rw)), None);
    }
}
