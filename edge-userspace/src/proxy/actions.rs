//! Routes that answer by themselves: redirects, fixed responses and files
//! from a directory.

use crate::config::HeaderOps;
use bytes::Bytes;
use pingora::{Result, http::ResponseHeader, prelude::Session};
use std::path::{Component, Path, PathBuf};
use tokio::io::AsyncReadExt;

/// Size of the chunks a file is sent in.
const FILE_CHUNK: usize = 64 * 1024;

/// Sends a complete response: header fields, the request id, route header
/// changes, body. A gRPC request gets an error status as a gRPC error
/// instead, whose message is the body's text (see [`super::grpc`]).
pub async fn respond(
    session: &mut Session,
    status: u16,
    headers: &[(String, String)],
    ops: &HeaderOps,
    body: Bytes,
) -> Result<u16> {
    if status >= 400 && crate::grpc::is_grpc(&session.req_header().headers) {
        let code = crate::grpc::Code::for_http_status(status);
        let message = grpc_message(&body);
        super::grpc::respond(session, code, &message, headers).await?;
        return Ok(status);
    }
    let mut resp = ResponseHeader::build(status, Some(headers.len() + 3))?;
    for (k, v) in headers {
        resp.append_header(k.clone(), v.as_str())?;
    }
    // After the route's fields (edge's id wins over a fixed one), before
    // its header changes (which may remove it).
    super::trace::stamp(session.req_header(), &mut resp)?;
    // A 204 or 304 has no body and says nothing of one (RFC 9110 §8.6).
    if !matches!(status, 204 | 304) {
        resp.insert_header("content-length", body.len().to_string())?;
    }
    super::headers::apply_response(&mut resp, ops)?;
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(resp), head_only || body.is_empty())
        .await?;
    if !head_only && !body.is_empty() {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(status)
}

/// Sends Pingora's bare error response for `status` (empty body, the
/// connection closed after it) with the request id.
pub(crate) async fn respond_error(session: &mut Session, status: u16) -> Result<()> {
    let mut resp = pingora::protocols::http::ServerSession::generate_error(status);
    // An answer without the id beats none at all.
    if let Err(e) = super::trace::stamp(session.req_header(), &mut resp) {
        tracing::debug!("cannot add the request id to a {status}: {e}");
    }
    session
        .as_downstream_mut()
        .write_error_response(resp, Bytes::new())
        .await
}

/// The text of an error body as a one-line `grpc-message`: a JSON
/// body's `message`, else the body itself.
fn grpc_message(body: &[u8]) -> String {
    let json = serde_json::from_slice::<serde_json::Value>(body).ok();
    let text = match json.as_ref().and_then(|v| v.get("message")?.as_str()) {
        Some(m) => m.to_string(),
        None => String::from_utf8_lossy(body).into_owned(),
    };
    text.lines().next().unwrap_or_default().trim().to_string()
}

/// Fills `{host}`, `{path}` and `{query}` (with its `?`) into `template`.
///
/// A path that starts with `//` (possible with `merge_slashes: false`) is
/// given one leading `/`: `Location: //evil.example` would send the client
/// to another site.
pub fn redirect_location(template: &str, host: &str, path: &str, query: Option<&str>) -> String {
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    let path = match path.trim_start_matches('/') {
        rest if rest.len() + 1 < path.len() => &path[path.len() - rest.len() - 1..],
        _ => path,
    };
    template
        .replace("{host}", host)
        .replace("{path}", path)
        .replace("{query}", &query)
}

/// The file under `root` for request path `path`, or `None` when the path
/// tries to leave `root` (`..`, encoded or not) or is not valid.
pub fn resolve(
    root: &Path,
    path: &str,
    strip_prefix: Option<&str>,
    index: &str,
) -> Option<PathBuf> {
    let path = match strip_prefix {
        Some(prefix) => path
            .strip_prefix(prefix.trim_end_matches('/'))
            .unwrap_or(path),
        None => path,
    };
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .ok()?;
    if decoded.contains('\0') || decoded.contains('\\') {
        return None;
    }
    let mut out = root.to_path_buf();
    for component in Path::new(decoded.as_ref()).components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => out.push(part),
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    if decoded.ends_with('/') || out.is_dir() {
        out.push(index);
    }
    Some(out)
}

/// The content type for a file name's extension.
pub fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("json") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        Some("xml") => "application/xml",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("ico") => "image/x-icon",
        Some("wasm") => "application/wasm",
        Some("pdf") => "application/pdf",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// Serves a file from `root`: GET and HEAD only, 404 for what is not a
/// regular file inside `root` (symbolic links out of it included).
pub async fn serve_file(
    session: &mut Session,
    root: &Path,
    index: &str,
    strip_prefix: Option<&str>,
    ops: &HeaderOps,
) -> Result<u16> {
    let method = session.req_header().method.clone();
    if method != http::Method::GET && method != http::Method::HEAD {
        let allow = [("allow".to_string(), "GET, HEAD".to_string())];
        return respond(session, 405, &allow, ops, Bytes::new()).await;
    }
    let path = session.req_header().uri.path().to_string();
    let not_found = || Bytes::from_static(b"not found\n");
    let Some(file) = resolve(root, &path, strip_prefix, index) else {
        return respond(session, 404, &[], ops, not_found()).await;
    };
    // Canonical paths catch symbolic links that point outside the root.
    let inside = match (
        tokio::fs::canonicalize(&file).await,
        tokio::fs::canonicalize(root).await,
    ) {
        (Ok(f), Ok(r)) => f.starts_with(&r),
        _ => false,
    };
    let opened = if inside {
        tokio::fs::File::open(&file).await.ok()
    } else {
        None
    };
    let Some(mut f) = opened else {
        return respond(session, 404, &[], ops, not_found()).await;
    };
    let meta = match f.metadata().await {
        Ok(m) if m.is_file() => m,
        _ => return respond(session, 404, &[], ops, not_found()).await,
    };
    let mut resp = ResponseHeader::build(200, Some(4))?;
    resp.insert_header("content-type", content_type(&file))?;
    resp.insert_header("content-length", meta.len().to_string())?;
    if let Ok(modified) = meta.modified() {
        resp.insert_header("last-modified", httpdate::fmt_http_date(modified))?;
    }
    super::trace::stamp(session.req_header(), &mut resp)?;
    super::headers::apply_response(&mut resp, ops)?;
    let head_only = method == http::Method::HEAD || meta.len() == 0;
    session
        .write_response_header(Box::new(resp), head_only)
        .await?;
    if head_only {
        return Ok(200);
    }
    let mut left = meta.len();
    let mut buf = vec![0u8; FILE_CHUNK];
    while left > 0 {
        let n = f.read(&mut buf).await.map_err(|e| {
            pingora::Error::because(pingora::ErrorType::ReadError, "reading a static file", e)
        })?;
        if n == 0 {
            break;
        }
        left = left.saturating_sub(n as u64);
        session
            .write_response_body(Some(Bytes::copy_from_slice(&buf[..n])), left == 0)
            .await?;
    }
    Ok(200)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_inside_the_root_only() {
        let root = Path::new("/srv/www");
        assert_eq!(
            resolve(root, "/a/b.txt", None, "index.html"),
            Some(PathBuf::from("/srv/www/a/b.txt"))
        );
        assert_eq!(
            resolve(root, "/static/a.css", Some("/static"), "index.html"),
            Some(PathBuf::from("/srv/www/a.css"))
        );
        assert_eq!(
            resolve(root, "/dir/", None, "index.html"),
            Some(PathBuf::from("/srv/www/dir/index.html"))
        );
        assert_eq!(resolve(root, "/../etc/passwd", None, "index.html"), None);
        assert_eq!(
            resolve(root, "/a/%2e%2e/%2e%2e/etc/passwd", None, "i"),
            None
        );
        assert_eq!(resolve(root, "/a%00b", None, "i"), None);
    }

    #[test]
    fn locations() {
        assert_eq!(
            redirect_location(
                "https://{host}{path}{query}",
                "a.example",
                "/x",
                Some("q=1")
            ),
            "https://a.example/x?q=1"
        );
        assert_eq!(redirect_location("/new", "h", "/old", None), "/new");
        assert_eq!(
            redirect_location("{path}", "h", "//evil.example/x", None),
            "/evil.example/x"
        );
        assert_eq!(redirect_location("{path}", "h", "/", None), "/");
    }
}
