//! Purge by key from the admin endpoint:
//! `PURGE /cache/<listener>/<host><path>[?query]` removes every variant of
//! that URL as cached by that listener, e.g.
//! `curl -X PURGE http://127.0.0.1:9100/cache/web/example.com/index.html`.
//! The admin address is the access control (bind it to a private address).

use super::Cache;
use http::StatusCode;
use pingora::http::RequestHeader;

/// Where purge-by-key requests go on the admin endpoint.
pub const PREFIX: &str = "/cache/";

/// Answers `req` if it is for the cache's admin routes: the status and a
/// one-line body.
pub fn handle(cache: &Cache, req: &RequestHeader) -> Option<(StatusCode, String)> {
    let target = req.uri.path_and_query()?.as_str().strip_prefix(PREFIX)?;
    if req.method.as_str() != super::filters::PURGE {
        return Some((
            StatusCode::METHOD_NOT_ALLOWED,
            format!("use PURGE {PREFIX}<listener>/<host>/<path>\n"),
        ));
    }
    let (listener, rest) = target.split_once('/')?;
    let (host, path) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    if listener.is_empty() || host.is_empty() {
        return Some((
            StatusCode::BAD_REQUEST,
            format!("use PURGE {PREFIX}<listener>/<host>/<path>\n"),
        ));
    }
    let purged = cache.purge(listener, host, &path);
    let status = if purged > 0 {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    Some((
        status,
        format!("purged {purged} object(s) for {listener} {host}{path}\n"),
    ))
}
