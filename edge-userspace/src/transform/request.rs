//! The request side: a body the route must see before the request goes
//! on (read whole, bounded), JSON Schema validation, JSON body changes,
//! and the upstream path and query.
//!
//! The body is read in `request_filter`, before any upstream is chosen,
//! so a refused request never reaches a service. Pingora then replays it
//! from its retry buffer, which holds at most
//! [`MAX_REQUEST_BODY`](crate::config::shaping::MAX_REQUEST_BODY) bytes:
//! hence that bound on every body read here.

use super::{is_json, message};
use crate::config::shaping::{RequestTransform, Shaping, Validation};
use bytes::{Bytes, BytesMut};
use pingora::{http::RequestHeader, prelude::Session};

/// A request edge answers itself.
#[derive(Debug)]
pub struct Refusal {
    /// Status.
    pub status: u16,
    /// JSON body.
    pub body: Bytes,
    /// Short reason for metrics and the log.
    pub reason: &'static str,
}

impl Refusal {
    /// A body that must be JSON and is not.
    pub fn not_json() -> Self {
        Self::new(415, "not_json", "the request body must be application/json")
    }

    fn new(status: u16, reason: &'static str, text: &str) -> Self {
        Self {
            status,
            body: message(text, None),
            reason,
        }
    }
}

/// Why the body could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// Larger than the route reads.
    TooLarge(Refusal),
    /// The client's side failed (timeout, reset).
    Io(Box<pingora::Error>),
}

/// Reads the whole request body, at most `max` bytes, with Pingora's
/// retry buffer on so that the proxy sends what was read; `check` runs
/// after each piece (the listener's body pace).
pub async fn read_body(
    session: &mut Session,
    max: usize,
    check: &mut (dyn FnMut(&Session) -> pingora::Result<()> + Send),
) -> Result<Bytes, ReadError> {
    let too_large = || {
        ReadError::TooLarge(Refusal::new(
            413,
            "body_too_large",
            &format!("the request body is larger than this route accepts ({max} bytes)"),
        ))
    };
    let declared = crate::proxy::limits::declared_length(&session.req_header().headers);
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    session.as_mut().enable_retry_buffering();
    let mut buf = BytesMut::new();
    while let Some(chunk) = session.read_request_body().await.map_err(ReadError::Io)? {
        if buf.len() + chunk.len() > max {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
        check(session).map_err(ReadError::Io)?;
    }
    Ok(buf.freeze())
}

/// Whether the request says it has a body.
pub fn declares_body(head: &RequestHeader) -> bool {
    let h = &head.headers;
    h.contains_key(http::header::TRANSFER_ENCODING)
        || h.get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

/// Whether the request's body is JSON by its `Content-Type`.
pub fn json_body(head: &RequestHeader) -> bool {
    is_json(
        head.headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    )
}

/// A request body edge rewrote.
#[derive(Debug)]
pub struct Rewritten {
    /// The new body.
    pub body: Bytes,
    /// Its `Content-Type`, when that changed (JSON → XML).
    pub content_type: Option<&'static str>,
}

/// Validates and transforms a body read by [`read_body`]: the body to
/// send instead, if it changed, or why the request is refused.
pub fn prepare(
    shaping: &Shaping,
    head: &RequestHeader,
    body: &Bytes,
) -> Result<Option<Rewritten>, Refusal> {
    let json = json_body(head);
    let mut doc = None;
    if let Some(v) = &shaping.validate {
        doc = validate(v, head, json, body)?;
    }
    let ops = shaping
        .request
        .as_ref()
        .map(|r: &RequestTransform| &r.json)
        .filter(|o| !o.is_empty());
    let to_xml = shaping.request.as_ref().is_some_and(|r| r.json_to_xml);
    if (ops.is_none() && !to_xml) || !json || body.is_empty() {
        return Ok(None);
    }
    let mut doc = match doc {
        Some(d) => d,
        // A body that says it is JSON and is not could carry what the
        // changes were meant to remove: refused, not passed on.
        None => parse(body)?,
    };
    if let Some(ops) = ops {
        ops.apply(&mut doc);
    }
    if to_xml {
        return super::xml_out::json_to_xml(&doc)
            .map(|v| {
                Some(Rewritten {
                    body: Bytes::from(v),
                    content_type: Some("application/xml"),
                })
            })
            .map_err(|e| {
                Refusal::new(
                    400,
                    "no_xml_form",
                    &format!("the request body has no XML form: {e}"),
                )
            });
    }
    serde_json::to_vec(&doc)
        .map(|v| {
            Some(Rewritten {
                body: Bytes::from(v),
                content_type: None,
            })
        })
        .map_err(|_| Refusal::new(500, "transform", "the request body could not be rewritten"))
}

fn parse(body: &Bytes) -> Result<serde_json::Value, Refusal> {
    super::strict::parse(body).map_err(|e| {
        Refusal::new(
            400,
            "invalid_json",
            &format!("request body is not valid JSON: {e}"),
        )
    })
}

fn validate(
    v: &Validation,
    head: &RequestHeader,
    json: bool,
    body: &Bytes,
) -> Result<Option<serde_json::Value>, Refusal> {
    if body.is_empty() {
        let m = &head.method;
        if m == http::Method::POST || m == http::Method::PUT || m == http::Method::PATCH {
            return Err(Refusal::new(
                400,
                "body_required",
                "a JSON request body is required",
            ));
        }
        return Ok(None);
    }
    if !json {
        return Err(Refusal::not_json());
    }
    let doc = parse(body)?;
    let errors: Vec<serde_json::Value> = v
        .schema
        .validator
        .iter_errors(&doc)
        .take(v.max_errors)
        .map(|e| {
            serde_json::json!({
                "path": e.instance_path().as_str(),
                "error": e.to_string(),
            })
        })
        .collect();
    if errors.is_empty() {
        return Ok(Some(doc));
    }
    Err(Refusal {
        status: 400,
        body: message(
            "request body does not match the schema",
            Some(("errors", serde_json::Value::Array(errors))),
        ),
        reason: "schema",
    })
}

/// The upstream path from the route's template, `Ok(None)` without one;
/// a result with a `.` or `..` segment is refused, since it would reach a
/// path the route did not match.
pub fn upstream_path(
    t: &RequestTransform,
    route_regex: Option<&regex::Regex>,
    matched_path: &str,
    path: &str,
) -> Result<Option<String>, Refusal> {
    let Some(template) = &t.path else {
        return Ok(None);
    };
    let vars = super::template::Captures::new(route_regex, matched_path, path);
    let rendered = template.render(&|name: &str| vars.get(name));
    if super::template::has_dot_segment(&rendered) {
        return Err(Refusal::new(
            400,
            "bad_path",
            "the path cannot be mapped to the upstream path",
        ));
    }
    Ok(Some(rendered))
}
