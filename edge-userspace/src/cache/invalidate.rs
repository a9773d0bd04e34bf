//! Invalidation after updates (RFC 9111 §4.4): a non-error response to an
//! unsafe request removes what the cache holds for the target URI, and
//! for the URIs in `Location` and `Content-Location` when they are on the
//! same host (a response cannot make us drop another site's entries).

use http::{HeaderMap, Method, StatusCode, header};

/// The safe methods (RFC 9110 §9.2.1); every other method, unknown ones
/// included, may change the resource.
fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Whether a `status` response to a `method` request invalidates: an
/// unsafe method, and a 2xx or 3xx (an error changed nothing).
pub fn invalidates(method: &Method, status: StatusCode) -> bool {
    !is_safe(method) && (status.is_success() || status.is_redirection())
}

/// The `(host, path?query)` pairs to invalidate besides the target: the
/// responses' `Location` and `Content-Location`, resolved against the
/// target (`host` + `path`), when their host is the target's. At most one
/// of each field is used (repeated ones are invalid, RFC 9110 §10.2.2).
pub fn locations(host: &str, path: &str, resp: &HeaderMap) -> Vec<(String, String)> {
    [header::LOCATION, header::CONTENT_LOCATION]
        .into_iter()
        .filter_map(|name| {
            let mut values = resp.get_all(name).iter();
            let value = values.next()?;
            if values.next().is_some() {
                return None;
            }
            resolve(host, path, value.to_str().ok()?)
        })
        .filter(|(h, p)| !(h.eq_ignore_ascii_case(host) && p == path))
        .collect()
}

/// Resolves the URI reference `reference` against the target `host` +
/// `path` (RFC 3986 §5.2); `None` when it is on another host, has a scheme
/// other than http(s), or cannot be parsed.
pub fn resolve(host: &str, path: &str, reference: &str) -> Option<(String, String)> {
    let reference = reference.trim();
    let reference = reference.split_once('#').map_or(reference, |(r, _)| r);
    let scheme_end = reference.find([':', '/', '?']);
    let ((authority, rest), has_authority) = match scheme_end {
        Some(i) if reference.as_bytes()[i] == b':' => {
            let scheme = &reference[..i];
            if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
                return None;
            }
            (
                split_authority(reference[i + 1..].strip_prefix("//")?),
                true,
            )
        }
        _ => match reference.strip_prefix("//") {
            Some(network_path) => (split_authority(network_path), true),
            None => ((host, reference), false),
        },
    };
    // Keys hold the host as clients send it: no userinfo.
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if authority.is_empty() || !host_part(authority).eq_ignore_ascii_case(host_part(host)) {
        return None;
    }
    let (ref_path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let base_path = path.split_once('?').map_or(path, |(p, _)| p);
    let merged = if has_authority || ref_path.starts_with('/') {
        // A path after an authority is absolute, or empty (RFC 3986 §5.2.3).
        if ref_path.is_empty() {
            "/".to_string()
        } else {
            ref_path.to_string()
        }
    } else if ref_path.is_empty() {
        // No query either: the target itself, invalidated anyway.
        query?;
        base_path.to_string()
    } else {
        let dir = base_path.rfind('/').map_or("/", |i| &base_path[..=i]);
        format!("{dir}{ref_path}")
    };
    let mut resolved = remove_dot_segments(&merged);
    if let Some(q) = query {
        resolved.push('?');
        resolved.push_str(q);
    }
    Some((authority.to_string(), resolved))
}

/// Splits `authority/path?query` after `//`.
fn split_authority(s: &str) -> (&str, &str) {
    match s.find(['/', '?']) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

/// The host of an authority without userinfo: no port.
fn host_part(hostport: &str) -> &str {
    if hostport.starts_with('[') {
        return hostport.find(']').map_or(hostport, |i| &hostport[..=i]);
    }
    hostport.split_once(':').map_or(hostport, |(h, _)| h)
}

/// RFC 3986 §5.2.4 on an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
        if i == last && matches!(*segment, "." | "..") {
            out.push("");
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_non_error_responses_invalidate() {
        let post = Method::POST;
        assert!(invalidates(&post, StatusCode::OK));
        assert!(invalidates(&post, StatusCode::CREATED));
        assert!(invalidates(&post, StatusCode::NO_CONTENT));
        assert!(invalidates(&post, StatusCode::SEE_OTHER));
        assert!(!invalidates(&post, StatusCode::NOT_FOUND));
        assert!(!invalidates(&post, StatusCode::SERVICE_UNAVAILABLE));
        assert!(!invalidates(&post, StatusCode::CONTINUE));
        for m in ["PUT", "DELETE", "PATCH", "FROB"] {
            let m = Method::from_bytes(m.as_bytes()).unwrap();
            assert!(invalidates(&m, StatusCode::OK), "{m}");
        }
        for m in [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE] {
            assert!(!invalidates(&m, StatusCode::OK), "{m}");
        }
    }

    #[test]
    fn references_resolve_against_the_target() {
        let r = |reference| resolve("example.com:8080", "/a/b/c?x=1", reference);
        let at = |host: &str, path: &str| Some((host.to_string(), path.to_string()));
        assert_eq!(r("/new"), at("example.com:8080", "/new"));
        assert_eq!(r("/new?q=2#frag"), at("example.com:8080", "/new?q=2"));
        assert_eq!(r("d"), at("example.com:8080", "/a/b/d"));
        assert_eq!(r("../d"), at("example.com:8080", "/a/d"));
        assert_eq!(r("./"), at("example.com:8080", "/a/b/"));
        assert_eq!(r(".."), at("example.com:8080", "/a/"));
        assert_eq!(r("?y=2"), at("example.com:8080", "/a/b/c?y=2"));
        assert_eq!(r("/a/./b/../../g"), at("example.com:8080", "/g"));
        assert_eq!(r(""), None, "the target itself");
        assert_eq!(r("#top"), None);
        // Absolute and network-path references on the same host, whatever
        // the port or case; their authority makes the key.
        assert_eq!(r("http://EXAMPLE.com:8080/x"), at("EXAMPLE.com:8080", "/x"));
        assert_eq!(r("https://example.com/x"), at("example.com", "/x"));
        assert_eq!(r("//example.com:8080"), at("example.com:8080", "/"));
        assert_eq!(r("http://user@example.com/x"), at("example.com", "/x"));
        // Another host, or not http(s): never ours to drop.
        assert_eq!(r("http://other.example/x"), None);
        assert_eq!(r("//other.example/x"), None);
        assert_eq!(r("http://example.com.evil/x"), None);
        assert_eq!(r("mailto:a@example.com"), None);
        assert_eq!(r("http:/x"), None);
        assert_eq!(
            resolve("[::1]:80", "/", "http://[::1]:81/v6"),
            at("[::1]:81", "/v6")
        );
    }

    #[test]
    fn locations_of_a_response() {
        let mut h = HeaderMap::new();
        h.insert(header::LOCATION, "/created/7".parse().unwrap());
        h.insert(
            header::CONTENT_LOCATION,
            "http://other.example/created/7".parse().unwrap(),
        );
        assert_eq!(
            locations("example.com", "/items", &h),
            [("example.com".to_string(), "/created/7".to_string())]
        );
        h.append(header::LOCATION, "/second".parse().unwrap());
        assert!(locations("example.com", "/items", &h).is_empty());
        let mut same = HeaderMap::new();
        same.insert(header::CONTENT_LOCATION, "/items".parse().unwrap());
        assert!(
            locations("example.com", "/items", &same).is_empty(),
            "the target is not listed twice"
        );
    }
}
