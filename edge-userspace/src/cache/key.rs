//! Cache keys and Vary variance.
//!
//! The primary key is `namespace \n host \n path?query`: the namespace (the
//! listener's name) keeps listeners that proxy different pools apart, the
//! host is lower-cased, the path and query are kept byte for byte. GET and
//! HEAD share a key (HEAD is fetched upstream as GET).

use super::policy::vary_names;
use pingora::cache::{CacheKey, CacheMeta, VarianceBuilder, key::HashBinary};
use pingora::http::RequestHeader;

/// The key of `host` + `path_and_query` under `namespace`.
pub fn primary(namespace: &str, host: &str, path_and_query: &str) -> CacheKey {
    CacheKey::new(primary_prefix(namespace, host, path_and_query), "")
}

/// The primary key's text for `namespace`, `host` and a path: whole, the
/// key's own text; a path prefix, what every key under it starts with.
pub fn primary_prefix(namespace: &str, host: &str, path: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(namespace.len() + host.len() + path.len() + 2);
    k.extend_from_slice(namespace.as_bytes());
    k.push(b'\n');
    k.extend(host.bytes().map(|b| b.to_ascii_lowercase()));
    k.push(b'\n');
    k.extend_from_slice(path.as_bytes());
    k
}

/// The host a request is for: the URI's authority (h2, absolute form),
/// else the Host header.
pub fn host(req: &RequestHeader) -> &str {
    req.uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            req.headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .unwrap_or("")
}

/// The key of request `req` under `namespace`.
pub fn request_key(namespace: &str, req: &RequestHeader) -> CacheKey {
    let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
    primary(namespace, host(req), path)
}

/// The variance of `req` against the stored response `meta`: the values of
/// the request fields its `Vary` names. `None` when it does not vary.
pub fn variance(meta: &CacheMeta, req: &RequestHeader) -> Option<HashBinary> {
    let mut names: Vec<String> = vary_names(meta.headers()).collect();
    if names.is_empty() {
        return None;
    }
    names.sort_unstable();
    names.dedup();
    let mut builder = VarianceBuilder::new();
    for name in names {
        // Several lines of one field are one comma-joined value (RFC 9110
        // §5.3); an absent field and an empty one differ.
        let mut value = Vec::new();
        for (i, v) in req.headers.get_all(name.as_str()).iter().enumerate() {
            if i > 0 {
                value.extend_from_slice(b", ");
            }
            value.extend_from_slice(v.as_bytes());
        }
        if req.headers.get(name.as_str()).is_none() {
            value = b"\0absent".to_vec();
        } else if name == "accept-encoding" {
            value = normalize_accept_encoding(&value);
        }
        builder.add_owned_name_value(name, value);
    }
    builder.finalize()
}

/// Browsers spell the same Accept-Encoding many ways (order, spaces,
/// q-values); one variant per *set of accepted codings* keeps an upstream's
/// `Vary: Accept-Encoding` from splitting the cache per browser version.
fn normalize_accept_encoding(value: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(value).to_ascii_lowercase();
    let mut codings: Vec<&str> = text
        .split(',')
        .filter_map(|member| {
            let mut parts = member.split(';').map(str::trim);
            let coding = parts.next().filter(|c| !c.is_empty())?;
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (!refused).then_some(coding)
        })
        .collect();
    codings.sort_unstable();
    codings.dedup();
    codings.join(",").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::cache::key::CacheHashKey;

    #[test]
    fn accept_encoding_variants_are_normalized() {
        let n = |v: &str| String::from_utf8(normalize_accept_encoding(v.as_bytes())).unwrap();
        assert_eq!(n("gzip, deflate, br"), "br,deflate,gzip");
        assert_eq!(n("br;q=1.0, gzip;q=0.8, deflate"), "br,deflate,gzip");
        assert_eq!(n("gzip, br;q=0"), "gzip");
        assert_eq!(n("GZIP"), "gzip");
    }

    #[test]
    fn keys_separate_namespaces_hosts_and_queries() {
        let a = primary("web", "Example.com", "/a?x=1").primary();
        assert_eq!(a, primary("web", "example.com", "/a?x=1").primary());
        assert_ne!(a, primary("alt", "example.com", "/a?x=1").primary());
        assert_ne!(a, primary("web", "example.org", "/a?x=1").primary());
        assert_ne!(a, primary("web", "example.com", "/a?x=2").primary());
    }
}
