//! A route's transformations: the pure pieces (JSON pointer operations,
//! query changes, path templates, XML → JSON) and their use on requests
//! ([`request`]) and responses ([`response`]).

pub mod json;
pub mod query;
pub mod request;
pub mod response;
pub mod strict;
pub mod template;
pub mod xml;
pub mod xml_out;

use bytes::Bytes;

/// Whether a `Content-Type` value is JSON (`application/json`, `*/*+json`).
pub fn is_json(content_type: Option<&str>) -> bool {
    media_type(content_type).is_some_and(|m| m == "application/json" || m.ends_with("+json"))
}

/// Whether a `Content-Type` value is XML (`application/xml`, `text/xml`,
/// `*/*+xml`).
pub fn is_xml(content_type: Option<&str>) -> bool {
    media_type(content_type)
        .is_some_and(|m| m == "application/xml" || m == "text/xml" || m.ends_with("+xml"))
}

fn media_type(content_type: Option<&str>) -> Option<String> {
    let ct = content_type?;
    let m = ct.split(';').next()?.trim().to_ascii_lowercase();
    m.contains('/').then_some(m)
}

/// A JSON `{"message": ...}` body, with extra members.
pub fn message(text: &str, extra: Option<(&str, serde_json::Value)>) -> Bytes {
    let mut body = serde_json::Map::new();
    body.insert("message".into(), serde_json::Value::String(text.into()));
    if let Some((k, v)) = extra {
        body.insert(k.into(), v);
    }
    let mut out = serde_json::Value::Object(body).to_string().into_bytes();
    out.push(b'\n');
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_are_recognised() {
        assert!(is_json(Some("application/json")));
        assert!(is_json(Some("Application/JSON; charset=utf-8")));
        assert!(is_json(Some("application/problem+json")));
        assert!(!is_json(Some("text/plain")));
        assert!(!is_json(None));
        assert!(is_xml(Some("text/xml; charset=utf-8")));
        assert!(is_xml(Some("application/atom+xml")));
        assert!(!is_xml(Some("application/json")));
    }
}
