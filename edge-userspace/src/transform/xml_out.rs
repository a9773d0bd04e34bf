//! JSON → XML of request bodies, the inverse of [`super::xml`]'s mapping,
//! for a legacy service that only reads XML:
//!
//! - the document is an object with one member, the root element;
//! - a string, number or boolean is the element's text, `null` an empty
//!   element;
//! - an object's `"@name"` members are attributes (scalars only), its
//!   `"#text"` the element's text, every other member a child element;
//! - an array is the element repeated, once per item.
//!
//! Names must be XML names; text and attribute values are escaped. So
//! `xml_to_json(json_to_xml(doc)) == doc` for documents of strings and
//! nulls.

use serde_json::{Map, Value};
use std::fmt::Write;

/// Why a JSON document has no XML form.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JsonToXmlError {
    /// Not an object with exactly one member.
    #[error("the document must be an object with one member, the root element")]
    Root,
    /// A member name that is no XML name.
    #[error("{0:?} is not an XML name")]
    Name(String),
    /// An attribute whose value is an object or an array.
    #[error("attribute {0:?} must be a string, number, boolean or null")]
    Attribute(String),
    /// An array directly inside an array.
    #[error("element {0:?} holds an array of arrays")]
    Nested(String),
    /// `#text` that is an object or an array.
    #[error("\"#text\" of {0:?} must be a string, number, boolean or null")]
    Text(String),
    /// A control character XML 1.0 cannot carry, even escaped.
    #[error("a value holds U+{0:04X}, which XML 1.0 cannot carry")]
    Char(u32),
}

/// The XML form of `doc`, with an XML declaration.
pub fn json_to_xml(doc: &Value) -> Result<Vec<u8>, JsonToXmlError> {
    let Value::Object(root) = doc else {
        return Err(JsonToXmlError::Root);
    };
    let mut members = root.iter();
    let (Some((name, value)), None) = (members.next(), members.next()) else {
        return Err(JsonToXmlError::Root);
    };
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    // An explicit stack: nesting is bounded by the JSON reader (128), but
    // the writer need not rely on it.
    let mut stack: Vec<Step<'_>> = vec![Step::Open(name, value)];
    while let Some(step) = stack.pop() {
        match step {
            Step::Close(name) => {
                let _ = write!(out, "</{name}>");
            }
            Step::Open(name, value) => {
                check_name(name)?;
                match value {
                    Value::Array(items) => {
                        for item in items.iter().rev() {
                            if item.is_array() {
                                return Err(JsonToXmlError::Nested(name.clone()));
                            }
                            stack.push(Step::Open(name, item));
                        }
                    }
                    Value::Object(m) => {
                        open(&mut out, name, m)?;
                        stack.push(Step::Close(name));
                        for (child, v) in m.iter().rev() {
                            if !child.starts_with('@') && child != "#text" {
                                stack.push(Step::Open(child, v));
                            }
                        }
                    }
                    Value::Null => {
                        let _ = write!(out, "<{name}/>");
                    }
                    scalar => {
                        let _ = write!(out, "<{name}>");
                        out.push_str(&escape(&scalar_text(scalar), false)?);
                        let _ = write!(out, "</{name}>");
                    }
                }
            }
        }
    }
    Ok(out.into_bytes())
}

enum Step<'a> {
    Open(&'a String, &'a Value),
    Close(&'a String),
}

/// Writes `<name attr="..">text` of an object element.
fn open(out: &mut String, name: &str, m: &Map<String, Value>) -> Result<(), JsonToXmlError> {
    let _ = write!(out, "<{name}");
    for (k, v) in m {
        let Some(attr) = k.strip_prefix('@') else {
            continue;
        };
        check_name(attr)?;
        if v.is_array() || v.is_object() {
            return Err(JsonToXmlError::Attribute(attr.to_string()));
        }
        let _ = write!(out, " {attr}=\"{}\"", escape(&scalar_text(v), true)?);
    }
    out.push('>');
    if let Some(text) = m.get("#text") {
        if text.is_array() || text.is_object() {
            return Err(JsonToXmlError::Text(name.to_string()));
        }
        out.push_str(&escape(&scalar_text(text), false)?);
    }
    Ok(())
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `text` escaped for element content or (`attribute`) a quoted
/// attribute value. White space a parser would normalise (a CR anywhere;
/// tab and line feed in an attribute) is written as a character
/// reference, so it reads back as sent.
fn escape(text: &str, attribute: bool) -> Result<String, JsonToXmlError> {
    let mut out = String::with_capacity(text.len());
    for c in quick_xml::escape::escape(text).chars() {
        match c {
            '\r' => out.push_str("&#13;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\t' if attribute => out.push_str("&#9;"),
            '\n' | '\t' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {
                return Err(JsonToXmlError::Char(c as u32));
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// XML 1.0 names, restricted to what the mapping can round-trip: a
/// letter, `_` or `:` first, then letters, digits, `-`, `.`, `_`, `:`
/// (non-ASCII letters included).
fn check_name(name: &str) -> Result<(), JsonToXmlError> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '-' | '.' | '_' | ':'))
        && !name.to_ascii_lowercase().starts_with("xml");
    if ok {
        Ok(())
    } else {
        Err(JsonToXmlError::Name(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::xml::{XmlLimits, xml_to_json};
    use serde_json::json;

    fn xml(doc: Value) -> String {
        String::from_utf8(json_to_xml(&doc).unwrap()).unwrap()
    }

    #[test]
    fn the_mapping_is_the_inverse_of_xml_to_json() {
        let doc = json!({"order": {
            "@id": "7",
            "item": [{"@sku": "A-1", "#text": "two & more"}, "plain", null],
            "note": "<b>",
            "empty": null
        }});
        let text = xml(doc.clone());
        assert!(text.starts_with("<?xml version=\"1.0\""), "{text}");
        assert!(
            text.contains("<item sku=\"A-1\">two &amp; more</item>"),
            "{text}"
        );
        assert!(text.contains("<note>&lt;b&gt;</note>"), "{text}");
        let back = xml_to_json(text.as_bytes(), &XmlLimits::default()).unwrap();
        assert_eq!(back, doc);
    }

    #[test]
    fn scalars_become_text() {
        assert_eq!(
            xml(json!({"a": {"n": 1.5, "b": true, "s": "x"}})),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><a><b>true</b><n>1.5</n><s>x</s></a>"
        );
    }

    #[test]
    fn what_has_no_xml_form_is_refused() {
        assert_eq!(json_to_xml(&json!([1])), Err(JsonToXmlError::Root));
        assert_eq!(
            json_to_xml(&json!({"a": 1, "b": 2})),
            Err(JsonToXmlError::Root)
        );
        assert_eq!(json_to_xml(&json!({})), Err(JsonToXmlError::Root));
        assert!(matches!(
            json_to_xml(&json!({"a b": 1})),
            Err(JsonToXmlError::Name(_))
        ));
        assert!(matches!(
            json_to_xml(&json!({"a": {"1x": 1}})),
            Err(JsonToXmlError::Name(_))
        ));
        assert!(matches!(
            json_to_xml(&json!({"a": {"@x": {"y": 1}}})),
            Err(JsonToXmlError::Attribute(_))
        ));
        assert!(matches!(
            json_to_xml(&json!({"a": {"b": [[1]]}})),
            Err(JsonToXmlError::Nested(_))
        ));
        assert!(matches!(
            json_to_xml(&json!({"a": {"#text": [1]}})),
            Err(JsonToXmlError::Text(_))
        ));
        assert!(matches!(
            json_to_xml(&json!({"a": {"@x\"><evil": 1}})),
            Err(JsonToXmlError::Name(_))
        ));
        assert!(matches!(
            json_to_xml(&json!({"xml-stylesheet": 1})),
            Err(JsonToXmlError::Name(_))
        ));
        assert_eq!(
            json_to_xml(&json!({"a": "bell\u{7}"})),
            Err(JsonToXmlError::Char(7))
        );
    }

    #[test]
    fn white_space_reads_back_as_sent() {
        let text = xml(json!({"a": {"@v": "x\ty\nz", "b": "1\r\n2"}}));
        assert!(text.contains("v=\"x&#9;y&#10;z\""), "{text}");
        assert!(text.contains("<b>1&#13;\n2</b>"), "{text}");
    }

    #[test]
    fn deep_documents_do_not_recurse() {
        // Built by hand: `json!` would serialise (recursively) what it wraps.
        let wrap = |name: &str, v: Value| Value::Object(Map::from_iter([(name.to_string(), v)]));
        let mut doc = Value::String("x".into());
        for _ in 0..10_000 {
            doc = wrap("a", doc);
        }
        let wrapped = wrap("r", doc);
        let text = json_to_xml(&wrapped).unwrap();
        assert!(text.len() > 70_000);
        // serde_json's Drop recurses: take the value apart by hand.
        let mut stack = vec![wrapped];
        while let Some(v) = stack.pop() {
            if let Value::Object(m) = v {
                stack.extend(m.into_iter().map(|(_, v)| v));
            }
        }
    }
}
