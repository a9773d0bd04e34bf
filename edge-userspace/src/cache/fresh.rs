//! Fresh hits served without pingora-cache's state machine.
//!
//! Most cache hits are the plainest case: a GET with no conditions, no
//! range and no cache directives of its own, for a fresh response that
//! does not vary. For those the proxy takes the stored response from
//! [`MemoryStorage::fresh_hit`](super::storage::MemoryStorage::fresh_hit)
//! in `request_filter` and answers with it itself, through the same
//! response filters a pingora-cache hit goes through. Every other request
//! (and every miss, stale, varying or large-header object) takes
//! pingora-cache's path as before, which also decides what is stored.
//!
//! The answer is the one pingora-cache's hit path gives (its
//! `cache_hit_header`): the stored header, `Age`, HTTP/1.1, and chunked
//! framing where the stored response has no `Content-Length`.

use super::{ListenerCache, RequestCache, filters, storage::FreshHit};
use http::header;
use pingora::Result;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use std::time::{Duration, SystemTime};

/// Request fields that make a hit more than "send the stored response":
/// conditions (a 304, or a 412 upstream), ranges (a 206), and the client's
/// own cache directives (`no-cache` revalidates, `no-store` bypasses).
const DEFER: [header::HeaderName; 8] = [
    header::CACHE_CONTROL,
    header::PRAGMA,
    header::RANGE,
    header::IF_RANGE,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_MATCH,
    header::IF_UNMODIFIED_SINCE,
];

/// Whether `req` may be answered from a fresh hit without pingora-cache:
/// a GET none of whose fields is in [`DEFER`]. (Authorization does not
/// matter here: it decides what is stored, not which stored response a
/// hit gets.)
fn plain_get(req: &RequestHeader) -> bool {
    req.method == http::Method::GET && !DEFER.iter().any(|name| req.headers.contains_key(name))
}

/// The fresh hit for this request, if it has one and may take it: the
/// request's cache policy is on, the request is a [`plain_get`], and the
/// store holds a fresh, non-varying response under its key. Marks the
/// request's cache status `HIT`.
pub fn lookup(
    session: &Session,
    listener: Option<&ListenerCache>,
    state: &mut RequestCache,
) -> Option<FreshHit> {
    let cache = listener?.cache;
    if !state.policy.as_ref().is_some_and(|p| p.enabled) || !plain_get(session.req_header()) {
        return None;
    }
    // pingora-cache goes upstream when the key cannot be made; so does
    // this path, by leaving the request to it.
    let key = filters::cache_key_callback(session, listener, state).ok()?;
    let hit = cache.storage().fresh_hit(&key, SystemTime::now());
    state.fresh_hit = hit.is_some();
    hit
}

/// The response head of a fresh hit (its stored `header`, `age` old)
/// before the response filters, as pingora-cache's `cache_hit_header`
/// makes it.
pub fn head(header: ResponseHeader, age: Duration) -> Result<Box<ResponseHeader>> {
    let mut head = Box::new(header);
    // RFC 9111 §4: a response served from a cache without validation
    // carries Age.
    head.insert_header(header::AGE, age.as_secs())?;
    // What the store keeps is always read back as HTTP/1.1.
    head.set_version(http::Version::HTTP_11);
    let no_body = matches!(head.status.as_u16(), 204 | 304);
    if !no_body
        && !head.status.is_informational()
        && head.headers.get(header::CONTENT_LENGTH).is_none()
    {
        head.insert_header(header::TRANSFER_ENCODING, "chunked")?;
    }
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(fields: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/a", None).unwrap();
        for (k, v) in fields {
            req.insert_header(k.to_string(), *v).unwrap();
        }
        req
    }

    #[test]
    fn only_unconditional_gets_without_directives_take_the_fresh_path() {
        assert!(plain_get(&get(&[
            ("Accept-Encoding", "gzip"),
            ("Cookie", "a=1")
        ])));
        for field in DEFER {
            assert!(!plain_get(&get(&[(field.as_str(), "x")])), "{field}");
        }
        let mut head = get(&[]);
        head.set_method(http::Method::HEAD);
        assert!(!plain_get(&head));
    }

    #[test]
    fn the_head_is_pingora_caches_hit_header() {
        let mut sized = ResponseHeader::build(200, None).unwrap();
        sized.insert_header("Content-Length", "3").unwrap();
        sized.set_version(http::Version::HTTP_10);
        let h = head(sized, Duration::from_millis(61_900)).unwrap();
        assert_eq!(h.headers["age"], "61");
        assert_eq!(h.version, http::Version::HTTP_11);
        assert!(h.headers.get("transfer-encoding").is_none());

        let chunked = ResponseHeader::build(200, None).unwrap();
        let h = head(chunked, Duration::ZERO).unwrap();
        assert_eq!(h.headers["transfer-encoding"], "chunked");
        assert_eq!(h.headers["age"], "0");

        let empty = ResponseHeader::build(204, None).unwrap();
        let h = head(empty, Duration::ZERO).unwrap();
        assert!(h.headers.get("transfer-encoding").is_none());
    }
}
