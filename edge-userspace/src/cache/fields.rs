//! Which header fields a stored response keeps (RFC 9111 §3.1) and how a
//! 304 updates them (§3.2, §4.3.4).

use http::{HeaderMap, HeaderName, header};
use pingora::http::ResponseHeader;
use std::time::SystemTime;

/// Fields that describe one connection, never a stored response (RFC 9110
/// §7.6.1), besides those a `Connection` field names. On a hit Pingora
/// frames the body itself (it adds `Transfer-Encoding: chunked` when there
/// is no Content-Length), so none of these is needed to serve it.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Fields a 304 does not update (RFC 9111 §3.2): Content-Length (the stored
/// body's length is what it is); Content-Encoding and Content-Range, which
/// describe the stored body as received, not the 304; `Vary`, because
/// Pingora keeps the stored variant's key over a 304 and the stored `Vary`
/// must stay the one that key was computed from.
const NOT_UPDATED_BY_304: [&str; 4] = [
    "content-length",
    "content-encoding",
    "content-range",
    "vary",
];

/// The field names `headers`' `Connection` fields list, lower case; names
/// that are not valid field names are skipped.
fn connection_names(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect()
}

/// Whether `name` is hop-by-hop in a message whose `Connection` fields
/// name `listed`.
fn is_hop_by_hop(name: &HeaderName, listed: &[HeaderName]) -> bool {
    HOP_BY_HOP.contains(&name.as_str()) || listed.contains(name)
}

/// Removes the hop-by-hop fields, and those `Connection` names, from a
/// response about to be stored.
pub fn strip_hop_by_hop(resp: &mut ResponseHeader) {
    for name in connection_names(&resp.headers) {
        resp.remove_header(&name);
    }
    for name in HOP_BY_HOP {
        resp.remove_header(name);
    }
}

/// The stored response `stored` updated with the fields of the 304
/// `not_modified` (RFC 9111 §4.3.4): each field the 304 carries replaces
/// the stored one, except hop-by-hop fields and [`NOT_UPDATED_BY_304`]. A
/// 304 without `Date` is dated `received` (RFC 9110 §6.6.1), so the stored
/// `Date` of the old response does not make the refreshed one look old.
pub fn merge_not_modified(
    stored: &ResponseHeader,
    not_modified: &ResponseHeader,
    received: SystemTime,
) -> ResponseHeader {
    let mut merged = stored.clone();
    let listed = connection_names(&not_modified.headers);
    for name in not_modified.headers.keys() {
        if is_hop_by_hop(name, &listed) || NOT_UPDATED_BY_304.contains(&name.as_str()) {
            continue;
        }
        merged.remove_header(name);
        for value in not_modified.headers.get_all(name) {
            // Cannot fail: the name and value come from a parsed header.
            let _ = merged.append_header(name.clone(), value.clone());
        }
    }
    if !not_modified.headers.contains_key(header::DATE) {
        let _ = merged.insert_header(header::DATE, httpdate::fmt_http_date(received));
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, fields: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(status, None).unwrap();
        for (k, v) in fields {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn values<'a>(r: &'a ResponseHeader, name: &str) -> Vec<&'a str> {
        r.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    #[test]
    fn hop_by_hop_fields_and_those_connection_names_are_removed() {
        let mut r = resp(
            200,
            &[
                ("connection", "X-Hop, keep-alive"),
                ("connection", "x-other"),
                ("x-hop", "1"),
                ("x-other", "2"),
                ("keep-alive", "timeout=5"),
                ("proxy-connection", "keep-alive"),
                ("te", "trailers"),
                ("trailer", "x-sum"),
                ("transfer-encoding", "chunked"),
                ("upgrade", "h2c"),
                ("x-kept", "3"),
                ("content-type", "text/plain"),
            ],
        );
        strip_hop_by_hop(&mut r);
        let mut left: Vec<&str> = r.headers.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-type", "x-kept"]);
    }

    #[test]
    fn a_304_replaces_the_stored_fields_it_carries() {
        let received = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let stored = resp(
            200,
            &[
                ("content-type", "text/plain"),
                ("content-length", "8"),
                ("content-encoding", "gzip"),
                ("vary", "accept-encoding"),
                ("etag", "\"v1\""),
                ("x-version", "1"),
                ("x-multi", "a"),
                ("x-multi", "b"),
                ("x-untouched", "kept"),
                ("date", "Mon, 01 Jan 2024 00:00:00 GMT"),
            ],
        );
        let not_modified = resp(
            304,
            &[
                ("etag", "\"v1\""),
                ("x-version", "2"),
                ("x-multi", "c"),
                ("content-length", "0"),
                ("content-encoding", "br"),
                ("vary", "accept-language"),
                ("connection", "x-hop"),
                ("x-hop", "per-connection"),
                ("keep-alive", "timeout=5"),
                ("cache-control", "max-age=60"),
            ],
        );
        let merged = merge_not_modified(&stored, &not_modified, received);
        assert_eq!(merged.status.as_u16(), 200, "still the stored response");
        assert_eq!(values(&merged, "x-version"), ["2"]);
        assert_eq!(values(&merged, "x-multi"), ["c"], "all values replaced");
        assert_eq!(values(&merged, "cache-control"), ["max-age=60"]);
        assert_eq!(values(&merged, "x-untouched"), ["kept"]);
        assert_eq!(values(&merged, "content-type"), ["text/plain"]);
        // What describes the stored body, or the variant key, stays.
        assert_eq!(values(&merged, "content-length"), ["8"]);
        assert_eq!(values(&merged, "content-encoding"), ["gzip"]);
        assert_eq!(values(&merged, "vary"), ["accept-encoding"]);
        // Per-connection fields of the 304 are not stored.
        for name in ["x-hop", "connection", "keep-alive"] {
            assert!(values(&merged, name).is_empty(), "{name}");
        }
        // The 304 had no Date: it is dated when it arrived.
        assert_eq!(
            values(&merged, "date"),
            [httpdate::fmt_http_date(received).as_str()]
        );
        let dated = resp(304, &[("date", "Tue, 02 Jan 2024 00:00:00 GMT")]);
        let merged = merge_not_modified(&stored, &dated, received);
        assert_eq!(values(&merged, "date"), ["Tue, 02 Jan 2024 00:00:00 GMT"]);
    }
}
