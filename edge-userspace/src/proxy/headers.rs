//! What edge changes in headers as a reverse proxy: X-Forwarded-*, Via,
//! hidden upstream headers, path rewrites and the routes' header changes.

use crate::config::{HeaderOps, Pattern};
use http::HeaderName;
use ipnet::IpNet;
use pingora::{
    Result,
    http::{RequestHeader, ResponseHeader},
};
use std::net::IpAddr;

// Looked up and removed as `HeaderName`s, which skip the parse a `&str`
// name costs on every lookup. Inserted as `&'static str`: Pingora parses
// an inserted name whatever its type (a custom one into an allocation of
// its own), and turns a `HeaderName` into a title-cased copy first.
const XFF: &str = "x-forwarded-for";
const XFP: &str = "x-forwarded-proto";
const XFH: &str = "x-forwarded-host";
/// `X-Forwarded-For`, for lookups.
pub const XFF_NAME: HeaderName = HeaderName::from_static(XFF);
const XFP_NAME: HeaderName = HeaderName::from_static(XFP);
const XFH_NAME: HeaderName = HeaderName::from_static(XFH);
const LOOP_NAME: HeaderName = HeaderName::from_static(LOOP_HEADER);
/// The pseudonym edge uses in `Via` (RFC 9110 §7.6.3).
pub const VIA_NAME: &str = "edge";

/// The client side of a request, as the forwarded headers describe it.
pub struct Client<'a> {
    /// The peer's address.
    pub peer: Option<IpAddr>,
    /// Peers whose X-Forwarded-* are kept.
    pub trusted: &'a [IpNet],
    /// Headers removed from the requests of peers not in `trusted`.
    pub untrusted_headers: &'a [HeaderName],
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
    // An IPv4 client on a `[::]` listener arrives as ::ffff:a.b.c.d.
    let trusted = client
        .peer
        .map(|ip| ip.to_canonical())
        .is_some_and(|ip| client.trusted.iter().any(|n| n.contains(&ip)));
    // Every line, in order: a chain split over several lines by the
    // proxies before edge is still one list (RFC 9110 §5.3), and keeping
    // only the first line would keep the client's claim and lose theirs.
    let existing = |req: &RequestHeader, name: &HeaderName| {
        let joined = req
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect::<Vec<_>>()
            .join(", ");
        (!joined.is_empty()).then_some(joined)
    };
    if !trusted {
        remove_listed(req, client.untrusted_headers);
    }
    match client.peer {
        Some(ip) => match trusted.then(|| existing(req, &XFF_NAME)).flatten() {
            Some(prev) => {
                req.insert_header(XFF, format!("{prev}, {ip}"))?;
            }
            None => {
                req.insert_header(XFF, ip_value(ip))?;
            }
        },
        None => {
            req.remove_header(&XFF_NAME);
        }
    }
    if !(trusted && existing(req, &XFP_NAME).is_some()) {
        req.insert_header(XFP, http::HeaderValue::from_static(client.scheme))?;
    }
    if !(trusted && existing(req, &XFH_NAME).is_some()) {
        match client.host {
            Some(host) => {
                req.insert_header(XFH, host)?;
            }
            None => {
                req.remove_header(&XFH_NAME);
            }
        }
    }
    Ok(())
}

/// Removes every field `listed` names from `req`. A lookup costs a hash
/// and a probe per listed name, a scan a comparison per field name and
/// listed name; a request usually carries fewer fields than the lists
/// name (13 untrusted ones by default), so it is scanned, unless it has
/// more names than the list. Either way nothing is allocated: the names
/// removed are the list's own.
fn remove_listed(req: &mut RequestHeader, listed: &[HeaderName]) {
    if req.headers.keys_len() <= listed.len() {
        // One scan per field removed, and a last one that finds none
        // (a client that is no proxy usually sends none of them).
        while let Some(name) = first_of(&req.headers, listed.iter()) {
            req.remove_header(name);
        }
    } else {
        for name in listed {
            req.remove_header(name);
        }
    }
}

/// The first of `names` that `headers` holds, in the order of the
/// message's own fields.
fn first_of<'n>(
    headers: &http::HeaderMap,
    names: impl Iterator<Item = &'n HeaderName> + Clone,
) -> Option<&'n HeaderName> {
    headers.keys().find_map(|k| names.clone().find(|n| *n == k))
}

/// An address as a header value, formatted on the stack: one allocation
/// (the value's own) instead of a `String` grown digit by digit.
fn ip_value(ip: IpAddr) -> http::HeaderValue {
    use std::io::Write;
    // The longest address as `Display` writes it is 39 bytes (eight
    // groups of four hex digits).
    let mut buf = [0u8; 48];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let written = write!(cursor, "{ip}").map(|()| cursor.position() as usize);
    match written.map(|n| http::HeaderValue::from_bytes(&buf[..n])) {
        Ok(Ok(value)) => value,
        // Cannot happen (an address fits and is visible ASCII); the slow
        // way still gives the right value.
        _ => http::HeaderValue::from_str(&ip.to_string())
            .unwrap_or_else(|_| http::HeaderValue::from_static("unknown")),
    }
}

/// The value of cookie `name` in the request's `Cookie` fields (all of
/// them, in order: HTTP/2 may split them).
pub fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// What the gateway policies ask of the upstream request: the client's
/// copies of identity headers and hidden credentials removed, then
/// edge's identity headers set.
pub fn apply_policy_outcome(req: &mut RequestHeader, out: &crate::policy::Outcome) -> Result<()> {
    for name in &out.upstream_remove {
        req.remove_header(name.as_str());
    }
    // `X_Consumer_Username` is the same header to CGI, WSGI, PHP and Rack.
    let aliases: Vec<http::HeaderName> = req
        .headers
        .keys()
        .filter(|k| k.as_str().contains('_'))
        .filter(|k| {
            let dashed = k.as_str().replace('_', "-");
            out.upstream_remove.contains(&dashed)
        })
        .cloned()
        .collect();
    for name in aliases {
        req.remove_header(&name);
    }
    for (name, value) in &out.upstream_set {
        req.insert_header(name.clone(), value.as_str())?;
    }
    if !out.cookie_remove.is_empty() {
        let kept: Vec<String> = req
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .map(str::trim)
            .filter(|c| {
                let name = c.split_once('=').map_or(*c, |(k, _)| k);
                !c.is_empty() && !out.cookie_remove.iter().any(|r| r == name)
            })
            .map(str::to_string)
            .collect();
        req.remove_header("cookie");
        if !kept.is_empty() {
            req.insert_header("cookie", kept.join("; "))?;
        }
    }
    if !out.query_remove.is_empty()
        && let Some(query) = req.uri.query()
    {
        let path = req.uri.path();
        let uri = match crate::policy::auth::remove_query_params(query, &out.query_remove) {
            Some(q) => format!("{path}?{q}"),
            None => path.to_string(),
        };
        let uri: http::Uri = uri.parse().map_err(|e| {
            pingora::Error::because(
                pingora::ErrorType::InternalError,
                "query without the credential",
                e,
            )
        })?;
        req.set_uri(uri);
    }
    Ok(())
}

/// Appends edge to `Via` of a message with version `version`. Without an
/// earlier `Via` (the usual case) the value is a constant: no allocation.
fn via_value(prev: Option<&str>, version: http::Version) -> http::HeaderValue {
    let (proto, alone) = match version {
        http::Version::HTTP_10 => ("1.0", "1.0 edge"),
        http::Version::HTTP_2 => ("2", "2 edge"),
        http::Version::HTTP_3 => ("3", "3 edge"),
        _ => ("1.1", "1.1 edge"),
    };
    match prev {
        Some(p) if !p.trim().is_empty() => {
            // `p` is visible ASCII (it came through `to_str`), as is the
            // rest: the fallback is unreachable.
            http::HeaderValue::try_from(format!("{p}, {proto} {VIA_NAME}"))
                .unwrap_or_else(|_| http::HeaderValue::from_static(alone))
        }
        _ => http::HeaderValue::from_static(alone),
    }
}

/// Adds edge to the request's `Via`.
pub fn via_request(req: &mut RequestHeader, client_version: http::Version) -> Result<()> {
    let prev = req
        .headers
        .get(http::header::VIA)
        .and_then(|v| v.to_str().ok());
    let value = via_value(prev, client_version);
    req.insert_header("via", value)?;
    Ok(())
}

/// Hop-by-hop fields (RFC 9110 §7.6.1), besides those the `Connection`
/// header names. `Transfer-Encoding` is not among them: on the proxy path
/// it is Pingora's to rewrite for each side's framing; requests edge
/// frames itself leave it out as well.
pub const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// [`HOP_BY_HOP`] as names, made from it (`from_static` gives a standard
/// header its standard name) and as long (a name added there fails to
/// compile until it is added here), so the two lists cannot drift apart.
static HOP_BY_HOP_NAMES: [HeaderName; HOP_BY_HOP.len()] = [
    HeaderName::from_static(HOP_BY_HOP[0]),
    HeaderName::from_static(HOP_BY_HOP[1]),
    HeaderName::from_static(HOP_BY_HOP[2]),
    HeaderName::from_static(HOP_BY_HOP[3]),
    HeaderName::from_static(HOP_BY_HOP[4]),
    HeaderName::from_static(HOP_BY_HOP[5]),
];

/// Removes the hop-by-hop fields of an upstream response, which describe
/// the upstream connection, not the client's (a `101 Switching Protocols`
/// keeps `Connection` and `Upgrade`, which make the switch), and `hidden`.
/// The lists' names are found by scanning the response's own field names
/// (a response carries a few fields, and a lookup of each listed name
/// would cost a hash each, for fields that are mostly absent); nothing is
/// allocated unless `Connection` names a field outside the lists.
fn strip_upstream_fields(resp: &mut ResponseHeader, hidden: &[HeaderName]) {
    let switching = resp.status == http::StatusCode::SWITCHING_PROTOCOLS;
    let listed = || {
        HOP_BY_HOP_NAMES
            .iter()
            .filter(move |n| {
                !(switching && (**n == http::header::CONNECTION || **n == http::header::UPGRADE))
            })
            .chain(hidden)
    };
    // Fields `Connection` names beyond the lists (rare): parsed, so
    // they are found whatever their spelling.
    let mut named: Vec<HeaderName> = Vec::new();
    for token in resp
        .headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
    {
        let is = |n: &str| token.eq_ignore_ascii_case(n);
        // Never let Connection name the framing or the identity fields.
        // The lists' own names are left to `listed`, which also keeps a
        // switch's `Connection` and `Upgrade`.
        if token.is_empty()
            || is("transfer-encoding")
            || is("content-length")
            || HOP_BY_HOP.iter().any(|n| is(n))
            || hidden.iter().any(|n| is(n.as_str()))
        {
            continue;
        }
        if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
            named.push(name);
        }
    }
    for name in &named {
        resp.remove_header(name);
    }
    while let Some(name) = first_of(&resp.headers, listed()) {
        resp.remove_header(name);
    }
}

/// Joins an HTTP/2 request's `cookie` crumbs into one field for an
/// HTTP/1.1 upstream (RFC 9113 §8.2.3), which expects a single line.
pub fn join_cookies(req: &mut RequestHeader) -> Result<()> {
    // The common case, one field or none, copies nothing.
    if req
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .nth(1)
        .is_none()
    {
        return Ok(());
    }
    let crumbs: Vec<String> = req
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    if crumbs.len() > 1 {
        req.insert_header(http::header::COOKIE, crumbs.join("; "))?;
    }
    Ok(())
}

/// The hop header that marks a request as having passed this edge
/// (RFC 8586 `CDN-Loop`, which no intermediary may remove).
pub const LOOP_HEADER: &str = "cdn-loop";

/// Whether `req` already carries `token` in its loop header: it has been
/// through this edge before, so forwarding it again would loop.
pub fn is_loop(req: &RequestHeader, token: &str) -> bool {
    req.headers
        .get_all(LOOP_NAME)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|entry| {
            let id = entry.split(';').next().unwrap_or_default().trim();
            id.eq_ignore_ascii_case(token)
        })
}

/// Adds `token` to the request's loop header.
pub fn mark_loop(req: &mut RequestHeader, token: &str) -> Result<()> {
    req.append_header(LOOP_HEADER, token)?;
    Ok(())
}

/// Makes a strong `ETag` weak (`W/"x"`): for a body edge changed
/// (compressed, transformed), which a strong validator no longer names.
pub fn weaken_etag(resp: &mut ResponseHeader) -> Result<()> {
    if let Some(etag) = resp.headers.get(http::header::ETAG)
        && !etag.as_bytes().starts_with(b"W/")
    {
        let mut weak = b"W/".to_vec();
        weak.extend_from_slice(etag.as_bytes());
        if let Ok(weak) = http::HeaderValue::from_bytes(&weak) {
            resp.insert_header(http::header::ETAG, weak)?;
        }
    }
    Ok(())
}

/// Adds edge to the response's `Via` and hides upstream headers.
pub fn upstream_response(resp: &mut ResponseHeader, hidden: &[HeaderName]) -> Result<()> {
    strip_upstream_fields(resp, hidden);
    let prev = resp
        .headers
        .get(http::header::VIA)
        .and_then(|v| v.to_str().ok());
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

    const UNTRUSTED: [HeaderName; 0] = [];

    fn client<'a>(peer: &str, trusted: &'a [IpNet]) -> Client<'a> {
        Client {
            peer: Some(peer.parse().unwrap()),
            trusted,
            untrusted_headers: &UNTRUSTED,
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
    fn a_chain_over_several_lines_is_joined_in_order() {
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header(XFF, "198.51.100.1").unwrap();
        req.append_header(XFF, "10.9.9.9, 10.8.8.8").unwrap();
        forwarded(&mut req, &client("10.1.2.3", &trusted)).unwrap();
        assert_eq!(
            header(&req, XFF).as_deref(),
            Some("198.51.100.1, 10.9.9.9, 10.8.8.8, 10.1.2.3")
        );
        assert_eq!(req.headers.get_all(XFF).iter().count(), 1);
    }

    #[test]
    fn untrusted_peers_lose_the_address_claims() {
        let list = [
            HeaderName::from_static("x-real-ip"),
            HeaderName::from_static("forwarded"),
        ];
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("x-real-ip", "1.2.3.4").unwrap();
        req.insert_header("forwarded", "for=1.2.3.4").unwrap();
        let mut c = client("192.0.2.7", &trusted);
        c.untrusted_headers = &list;
        forwarded(&mut req, &c).unwrap();
        assert!(req.headers.get("x-real-ip").is_none());
        assert!(req.headers.get("forwarded").is_none());
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("x-real-ip", "1.2.3.4").unwrap();
        let mut c = client("10.0.0.1", &trusted);
        c.untrusted_headers = &list;
        forwarded(&mut req, &c).unwrap();
        assert_eq!(header(&req, "x-real-ip").as_deref(), Some("1.2.3.4"));
    }

    #[test]
    fn hop_by_hop_response_fields_are_removed() {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.insert_header("connection", "keep-alive, X-Secret")
            .unwrap();
        resp.insert_header("keep-alive", "timeout=5").unwrap();
        resp.insert_header("proxy-connection", "keep-alive")
            .unwrap();
        resp.insert_header("x-secret", "1").unwrap();
        resp.insert_header("x-kept", "1").unwrap();
        resp.insert_header("content-length", "3").unwrap();
        strip_upstream_fields(&mut resp, &[]);
        for gone in ["connection", "keep-alive", "proxy-connection", "x-secret"] {
            assert!(resp.headers.get(gone).is_none(), "{gone}");
        }
        assert!(resp.headers.get("x-kept").is_some());
        assert!(resp.headers.get("content-length").is_some());
        let mut up = ResponseHeader::build(101, None).unwrap();
        up.insert_header("connection", "upgrade").unwrap();
        up.insert_header("upgrade", "websocket").unwrap();
        strip_upstream_fields(&mut up, &[]);
        assert!(up.headers.get("upgrade").is_some());
        assert!(up.headers.get("connection").is_some());
    }

    #[test]
    fn hidden_and_connection_named_fields_go_whatever_their_spelling() {
        let hidden = [
            http::header::SERVER,
            HeaderName::from_static("x-powered-by"),
        ];
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.insert_header("Server", "nginx").unwrap();
        resp.insert_header("X-Powered-By", "PHP").unwrap();
        resp.insert_header("Connection", "close, X-Hop").unwrap();
        resp.insert_header("x-hop", "1").unwrap();
        resp.insert_header("Transfer-Encoding", "chunked").unwrap();
        resp.insert_header("x-kept", "1").unwrap();
        upstream_response(&mut resp, &hidden).unwrap();
        let mut names: Vec<&str> = resp.headers.keys().map(|n| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["transfer-encoding", "via", "x-kept"]);
        // The map of spellings Pingora writes the head from lost them too
        // (it panics on a mismatch).
        let mut wire = Vec::new();
        resp.header_to_h1_wire(&mut wire);
        let wire = String::from_utf8(wire).unwrap();
        let mut lines: Vec<&str> = wire.split_terminator("\r\n").collect();
        lines.sort_unstable();
        assert_eq!(
            lines,
            ["Transfer-Encoding: chunked", "via: 1.1 edge", "x-kept: 1"]
        );
    }

    #[test]
    fn listed_names_are_removed_by_scan_and_by_lookup() {
        let listed = [
            HeaderName::from_static("x-real-ip"),
            HeaderName::from_static("forwarded"),
            HeaderName::from_static("x-client-ip"),
        ];
        let names = |req: &RequestHeader| {
            let mut n: Vec<String> = req.headers.keys().map(|k| k.to_string()).collect();
            n.sort_unstable();
            n
        };
        // Fewer fields than listed names: the scan.
        let mut few = RequestHeader::build("GET", b"/", None).unwrap();
        few.insert_header("Forwarded", "for=x").unwrap();
        few.insert_header("x-kept", "1").unwrap();
        remove_listed(&mut few, &listed);
        assert_eq!(names(&few), ["x-kept"]);
        // More: the lookups.
        let mut many = RequestHeader::build("GET", b"/", None).unwrap();
        for n in ["a", "b", "X-Client-IP", "forwarded"] {
            many.append_header(n, "1").unwrap();
        }
        many.append_header("forwarded", "2").unwrap();
        remove_listed(&mut many, &listed);
        assert_eq!(names(&many), ["a", "b"]);
        // Both maps Pingora keeps lost them (it panics on a mismatch).
        let mut wire = Vec::new();
        many.header_to_h1_wire(&mut wire);
        assert_eq!(wire, b"a: 1\r\nb: 1\r\n");
    }

    #[test]
    fn cookie_crumbs_are_joined() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("cookie", "a=1").unwrap();
        req.append_header("cookie", "b=2").unwrap();
        join_cookies(&mut req).unwrap();
        assert_eq!(header(&req, "cookie").as_deref(), Some("a=1; b=2"));
        assert_eq!(req.headers.get_all("cookie").iter().count(), 1);
    }

    #[test]
    fn loops_are_seen_by_token() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        assert!(!is_loop(&req, "edge-a"));
        req.append_header(LOOP_HEADER, "cdn1, edge-b; v=1").unwrap();
        assert!(!is_loop(&req, "edge-a"));
        mark_loop(&mut req, "edge-a").unwrap();
        assert!(is_loop(&req, "edge-a"));
        assert!(is_loop(&req, "EDGE-A"));
    }

    #[test]
    fn addresses_format_on_the_stack() {
        assert_eq!(ip_value("192.0.2.10".parse().unwrap()), "192.0.2.10");
        let longest: IpAddr = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap();
        assert_eq!(ip_value(longest), "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
        let mapped: IpAddr = "::ffff:255.255.255.255".parse().unwrap();
        assert_eq!(ip_value(mapped), "::ffff:255.255.255.255");
        assert_eq!(ip_value("2001:db8::1".parse().unwrap()), "2001:db8::1");
    }

    #[test]
    fn via_appends() {
        assert_eq!(via_value(None, http::Version::HTTP_11), "1.1 edge");
        assert_eq!(via_value(None, http::Version::HTTP_10), "1.0 edge");
        assert_eq!(via_value(None, http::Version::HTTP_2), "2 edge");
        assert_eq!(via_value(Some("  "), http::Version::HTTP_3), "3 edge");
        assert_eq!(VIA_NAME, "edge", "the constant values above spell it out");
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
