//! X-Forwarded-For / X-Forwarded-Proto on requests going upstream.

use pingora::{Result, http::RequestHeader};
use std::net::IpAddr;

const XFF: &str = "x-forwarded-for";
const XFP: &str = "x-forwarded-proto";

/// Appends the client to X-Forwarded-For (keeping what earlier proxies
/// wrote, as nginx's `$proxy_add_x_forwarded_for` does) and sets
/// X-Forwarded-Proto to the scheme the client used.
pub fn apply(req: &mut RequestHeader, client: Option<IpAddr>, scheme: &'static str) -> Result<()> {
    if let Some(ip) = client {
        let value = match req.headers.get(XFF).and_then(|v| v.to_str().ok()) {
            Some(prev) if !prev.trim().is_empty() => format!("{prev}, {ip}"),
            _ => ip.to_string(),
        };
        req.insert_header(XFF, value)?;
    }
    req.insert_header(XFP, scheme)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(req: &RequestHeader, name: &str) -> Option<String> {
        req.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }

    #[test]
    fn sets_both_headers() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        apply(&mut req, Some("192.0.2.7".parse().unwrap()), "http").unwrap();
        assert_eq!(header(&req, XFF).as_deref(), Some("192.0.2.7"));
        assert_eq!(header(&req, XFP).as_deref(), Some("http"));
    }

    #[test]
    fn appends_to_an_existing_chain() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header(XFF, "198.51.100.1").unwrap();
        req.insert_header(XFP, "https").unwrap();
        apply(&mut req, Some("2001:db8::1".parse().unwrap()), "http").unwrap();
        assert_eq!(
            header(&req, XFF).as_deref(),
            Some("198.51.100.1, 2001:db8::1")
        );
        assert_eq!(header(&req, XFP).as_deref(), Some("http"));
    }
}
