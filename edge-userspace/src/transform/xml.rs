//! XML → JSON conversion for a route's `response.xml_to_json`.
//!
//! The mapping:
//! - `<root>...</root>` becomes `{"root": VALUE}`; names are kept as written,
//!   prefix included (`soap:Body`).
//! - An element with no attributes and no child elements becomes its text as a
//!   string (`<a>x</a>` → `"x"`), or `null` when it has no text.
//! - Any other element becomes an object: attributes as `"@name"` (namespace
//!   declarations too: `"@xmlns"`, `"@xmlns:p"`), child elements by name (a name
//!   seen more than once becomes an array in document order), and its text, if
//!   any, as `"#text"`.
//! - Values stay strings: nothing is guessed to be a number or a boolean.
//! - Character data (text, references, CDATA) between two element boundaries is
//!   one run; each run is trimmed of XML whitespace, whitespace-only runs are
//!   dropped, and the runs of one element are joined with a single space.
//!   Comments and processing instructions are dropped (they do not split a
//!   run); the XML declaration is ignored.
//!
//! The input comes from an upstream, so it is treated as hostile: a DOCTYPE is
//! refused outright, so no entity is ever declared, expanded or fetched
//! (billion laughs, XXE); only the five predefined entities and numeric
//! character references are decoded and any other reference is an error; the
//! nesting depth is bounded; and the walk keeps its own stack on the heap, so
//! no document can exhaust the thread's stack while it is parsed. The input's
//! size is bounded by the caller (the route's `max_body`). Only UTF-8 input is
//! accepted.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use serde_json::{Map, Value};

/// Key under which an element's text goes when the element is an object.
const TEXT_KEY: &str = "#text";

/// Longest piece of the input (a name, an entity) quoted in an error, so that
/// the 502 body stays short whatever the document holds.
const QUOTE_MAX_CHARS: usize = 40;

/// Longest reason carried by [`XmlError::Malformed`], for the same reason.
const REASON_MAX_CHARS: usize = 160;

/// Bounds applied while converting one document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XmlLimits {
    /// Deepest element nesting accepted; the root element is at depth 1.
    ///
    /// The resulting JSON is as deep as the document, and serialising or
    /// dropping a `serde_json::Value` recurses, so the configuration should keep
    /// this in the hundreds at most.
    pub max_depth: usize,
}

impl XmlLimits {
    /// Default of [`XmlLimits::max_depth`].
    pub const DEFAULT_MAX_DEPTH: usize = 64;
}

impl Default for XmlLimits {
    fn default() -> Self {
        Self {
            max_depth: Self::DEFAULT_MAX_DEPTH,
        }
    }
}

/// Why a document could not be converted. `Display` is a short reason meant
/// for the body of the 502 answer.
#[derive(Debug, thiserror::Error)]
pub enum XmlError {
    /// The document is not well-formed XML (or not UTF-8).
    #[error("malformed XML at byte {at}: {reason}")]
    Malformed {
        /// Byte offset in the input where the problem was seen.
        at: u64,
        /// What is wrong.
        reason: String,
    },
    /// The document has a DOCTYPE, which is refused so that no entity is ever
    /// declared, expanded or fetched.
    #[error("a DTD is not accepted")]
    Dtd,
    /// An entity reference other than the five predefined ones (the name,
    /// shortened if long).
    #[error("unknown entity &{0};")]
    UnknownEntity(String),
    /// A numeric character reference that is not a valid XML character (the
    /// reference without `&` and `;`, shortened if long).
    #[error("invalid character reference &{0};")]
    InvalidCharRef(String),
    /// Elements nest deeper than [`XmlLimits::max_depth`] (the limit).
    #[error("nesting deeper than {0}")]
    TooDeep(usize),
    /// The document has no element at all.
    #[error("no root element")]
    NoRoot,
    /// A second element follows the root element.
    #[error("more than one root element")]
    MultipleRoots,
    /// Character data before or after the root element (byte offset).
    #[error("text outside the root element at byte {0}")]
    TextOutsideRoot(u64),
    /// The input ended inside this element (its name, shortened if long).
    #[error("element <{0}> is not closed")]
    Unclosed(String),
}

/// Converts one XML document into JSON (see the module documentation for the
/// mapping and what is refused).
pub fn xml_to_json(input: &[u8], limits: &XmlLimits) -> Result<Value, XmlError> {
    let mut reader = Reader::from_reader(input);
    let config = reader.config_mut();
    // Whitespace is trimmed here, per run: the reader's trimming works per
    // text event, and references split a run into several events.
    config.trim_text(false);
    // Well-formedness is the reader's job where it can do it; set explicitly
    // so that a change of defaults cannot loosen it.
    config.check_end_names = true;
    config.allow_unmatched_ends = false;
    config.allow_dangling_amp = false;
    config.expand_empty_elements = false;

    let mut doc = Builder::new(limits.max_depth);
    loop {
        // Where the next event starts, for errors found after reading it.
        let at = reader.buffer_position();
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(error) => return Err(parse_error(&reader, &error)),
        };
        match event {
            Event::Start(start) => {
                doc.end_run();
                let frame = doc.open(&start, at)?;
                doc.stack.push(frame);
            }
            Event::Empty(start) => {
                doc.end_run();
                let frame = doc.open(&start, at)?;
                doc.close(frame);
            }
            Event::End(end) => {
                doc.end_run();
                let name = end.name().0;
                // The reader already matches end tags against start tags;
                // this only keeps a reader change from building a wrong tree.
                let frame = match doc.stack.pop() {
                    Some(frame) if frame.name == name => frame,
                    _ => {
                        return Err(malformed(
                            at,
                            format!("unexpected closing tag </{}>", quote(name)),
                        ));
                    }
                };
                doc.close(frame);
            }
            Event::Text(text) => doc.text(&text.xml10_content(), at)?,
            Event::CData(cdata) => doc.cdata(&cdata.xml10_content(), at)?,
            Event::GeneralRef(reference) => {
                let c = resolve_reference(&reference)?;
                doc.character(c, at)?;
            }
            // Refused before anything in it is looked at: nothing declared in
            // a DTD is ever expanded or fetched.
            Event::DocType(_) => return Err(XmlError::Dtd),
            Event::Comment(_) | Event::PI(_) | Event::Decl(_) => {}
            Event::Eof => return doc.finish(),
        }
    }
}

/// An element whose end tag has not been read yet.
struct Frame {
    /// The element's name as written.
    name: String,
    /// Attributes (`"@name"`) and the child elements closed so far, in one map
    /// because they end up in the same JSON object.
    fields: Map<String, Value>,
    /// The element's trimmed text runs so far, joined by one space.
    text: String,
}

impl Frame {
    /// The element's name and JSON value.
    fn into_entry(self) -> (String, Value) {
        let Frame {
            name,
            mut fields,
            text,
        } = self;
        let value = if fields.is_empty() {
            if text.is_empty() {
                Value::Null
            } else {
                Value::String(text)
            }
        } else {
            if !text.is_empty() {
                fields.insert(TEXT_KEY.to_owned(), Value::String(text));
            }
            Value::Object(fields)
        };
        (name, value)
    }
}

/// The state of one conversion: the open elements on a heap stack (never the
/// call stack), the character data of the current run, and the result.
struct Builder {
    max_depth: usize,
    stack: Vec<Frame>,
    /// Character data seen since the last element boundary, untrimmed.
    run: String,
    /// `{"root": VALUE}` once the root element is closed.
    root: Option<Value>,
}

impl Builder {
    fn new(max_depth: usize) -> Self {
        Self {
            max_depth,
            stack: Vec::new(),
            run: String::new(),
            root: None,
        }
    }

    /// Starts an element: checks where it may stand and reads its attributes.
    fn open(&self, start: &BytesStart<'_>, at: u64) -> Result<Frame, XmlError> {
        if self.stack.is_empty() && self.root.is_some() {
            return Err(XmlError::MultipleRoots);
        }
        if self.stack.len() >= self.max_depth {
            return Err(XmlError::TooDeep(self.max_depth));
        }
        let name = start.name().0;
        // The reader takes whatever precedes the first whitespace as the
        // name; a real XML name also cannot collide with "@..." or "#text".
        if !is_xml_name(name) {
            return Err(malformed(
                at,
                format!("invalid element name \"{}\"", quote(name)),
            ));
        }
        let mut fields = Map::new();
        let mut attributes = start.attributes();
        // Duplicated attributes are an error, not a silent overwrite.
        attributes.with_checks(true);
        for attribute in attributes {
            let attribute =
                attribute.map_err(|e| malformed(at, format!("bad attribute in <{name}>: {e}")))?;
            let key = attribute.key.0;
            if !is_xml_name(key) {
                return Err(malformed(
                    at,
                    format!("invalid attribute name \"{}\"", quote(key)),
                ));
            }
            let value = attribute_value(&attribute.value, at)?;
            fields.insert(format!("@{key}"), Value::String(value));
        }
        Ok(Frame {
            name: name.to_owned(),
            fields,
            text: String::new(),
        })
    }

    /// Ends an element: its value goes into its parent, or becomes the result
    /// when it is the root.
    fn close(&mut self, frame: Frame) {
        let (name, value) = frame.into_entry();
        match self.stack.last_mut() {
            Some(parent) => insert_child(&mut parent.fields, name, value),
            None => {
                let mut root = Map::new();
                root.insert(name, value);
                self.root = Some(Value::Object(root));
            }
        }
    }

    /// Moves the current run, trimmed, into the open element's text. Called at
    /// every element boundary.
    fn end_run(&mut self) {
        let trimmed = self.run.trim_matches(is_xml_whitespace);
        // The run is only ever filled inside an element, so there is one.
        if !trimmed.is_empty()
            && let Some(open) = self.stack.last_mut()
        {
            if !open.text.is_empty() {
                open.text.push(' ');
            }
            open.text.push_str(trimmed);
        }
        self.run.clear();
    }

    /// Text between markup: only whitespace may stand outside the root.
    fn text(&mut self, text: &str, at: u64) -> Result<(), XmlError> {
        if self.stack.is_empty() {
            if text.chars().all(is_xml_whitespace) {
                return Ok(());
            }
            return Err(XmlError::TextOutsideRoot(at));
        }
        self.run.push_str(text);
        Ok(())
    }

    /// A CDATA section, which XML allows only inside the root.
    fn cdata(&mut self, text: &str, at: u64) -> Result<(), XmlError> {
        if self.stack.is_empty() {
            return Err(XmlError::TextOutsideRoot(at));
        }
        self.run.push_str(text);
        Ok(())
    }

    /// A decoded reference, which XML allows only inside the root.
    fn character(&mut self, c: char, at: u64) -> Result<(), XmlError> {
        if self.stack.is_empty() {
            return Err(XmlError::TextOutsideRoot(at));
        }
        self.run.push(c);
        Ok(())
    }

    /// The end of the input: the root must have been read and closed.
    fn finish(self) -> Result<Value, XmlError> {
        if let Some(open) = self.stack.last() {
            return Err(XmlError::Unclosed(quote(&open.name)));
        }
        self.root.ok_or(XmlError::NoRoot)
    }
}

/// Adds a child element's value under its name; a repeated name turns into an
/// array in document order. An element's value is never itself an array, so an
/// array found under the name is the one made for earlier repeats.
fn insert_child(fields: &mut Map<String, Value>, name: String, value: Value) {
    match fields.get_mut(&name) {
        Some(Value::Array(items)) => items.push(value),
        Some(existing) => {
            let first = std::mem::take(existing);
            *existing = Value::Array(vec![first, value]);
        }
        None => {
            fields.insert(name, value);
        }
    }
}

/// Decodes a raw attribute value: references resolved as in text (anything
/// but the predefined entities and character references is an error), and
/// tabs and line ends normalised to spaces as XML requires.
fn attribute_value(raw: &str, at: u64) -> Result<String, XmlError> {
    let special = |c: char| matches!(c, '&' | '<' | '\t' | '\n' | '\r');
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find(special) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        // Every special character is one byte long.
        let after = &tail[1..];
        if tail.starts_with('&') {
            let Some(end) = after.find(';') else {
                return Err(malformed(at, "`&` without `;` in an attribute value"));
            };
            out.push(resolve_reference(&after[..end])?);
            rest = &after[end + 1..];
        } else if tail.starts_with('<') {
            return Err(malformed(at, "`<` in an attribute value"));
        } else {
            // A CR LF pair is one line end, hence one space.
            out.push(' ');
            rest = match after.strip_prefix('\n') {
                Some(next) if tail.starts_with('\r') => next,
                _ => after,
            };
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Resolves the content of a reference (between `&` and `;`): one of the five
/// predefined entities or a character reference; anything else is an error,
/// since no DTD can have declared it.
fn resolve_reference(name: &str) -> Result<char, XmlError> {
    if let Some(number) = name.strip_prefix('#') {
        return char_reference(number).ok_or_else(|| XmlError::InvalidCharRef(quote(name)));
    }
    match name {
        "lt" => Ok('<'),
        "gt" => Ok('>'),
        "amp" => Ok('&'),
        "apos" => Ok('\''),
        "quot" => Ok('"'),
        _ => Err(XmlError::UnknownEntity(quote(name))),
    }
}

/// The character of `&#NNN;` or `&#xHHH;` (given without `&#` and `;`), if it
/// is one XML allows.
fn char_reference(number: &str) -> Option<char> {
    let (digits, radix) = match number.strip_prefix('x') {
        Some(hex) => (hex, 16),
        None => (number, 10),
    };
    // `from_str_radix` alone would also take a leading `+`.
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let code = u32::from_str_radix(digits, radix).ok()?;
    let c = char::from_u32(code)?;
    is_xml_char(c).then_some(c)
}

/// XML 1.0's `Char` production: what a character reference may produce.
fn is_xml_char(c: char) -> bool {
    matches!(c,
        '\t' | '\n' | '\r'
        | '\u{20}'..='\u{D7FF}'
        | '\u{E000}'..='\u{FFFD}'
        | '\u{10000}'..='\u{10FFFF}')
}

/// XML's whitespace, narrower than Unicode's.
fn is_xml_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// A loose check of XML's `Name` production: ASCII is checked exactly and any
/// non-ASCII character is accepted.
fn is_xml_name(name: &str) -> bool {
    let start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':' || !c.is_ascii();
    let mut chars = name.chars();
    match chars.next() {
        Some(first) if start(first) => {
            chars.all(|c| start(c) || c.is_ascii_digit() || c == '-' || c == '.')
        }
        _ => false,
    }
}

/// A piece of the input for an error message, shortened if long.
fn quote(s: &str) -> String {
    shorten(s, QUOTE_MAX_CHARS)
}

fn shorten(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

fn malformed(at: u64, reason: impl AsRef<str>) -> XmlError {
    XmlError::Malformed {
        at,
        reason: shorten(reason.as_ref(), REASON_MAX_CHARS),
    }
}

/// A reader error, placed where the reader says the problem starts.
fn parse_error(reader: &Reader<&[u8]>, error: &quick_xml::Error) -> XmlError {
    let at = match error {
        // These point at the start of the faulty markup; the others are only
        // known to lie before the reader's current position.
        quick_xml::Error::Syntax(_) | quick_xml::Error::IllFormed(_) => reader.error_position(),
        _ => reader.buffer_position(),
    };
    malformed(at, error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::{Duration, Instant};

    fn convert(xml: &str) -> Result<Value, XmlError> {
        xml_to_json(xml.as_bytes(), &XmlLimits::default())
    }

    fn ok(xml: &str) -> Value {
        match convert(xml) {
            Ok(value) => value,
            Err(e) => panic!("{xml:?} should convert, got: {e}"),
        }
    }

    fn err(xml: &str) -> XmlError {
        match convert(xml) {
            Ok(value) => panic!("{xml:?} should fail, got: {value}"),
            Err(e) => e,
        }
    }

    fn nested(depth: usize, leaf: &str) -> String {
        format!("{}{leaf}{}", "<a>".repeat(depth), "</a>".repeat(depth))
    }

    fn is_malformed(e: &XmlError) -> bool {
        matches!(e, XmlError::Malformed { .. })
    }

    #[test]
    fn default_limits() {
        assert_eq!(XmlLimits::default().max_depth, 64);
        assert_eq!(XmlLimits::default().max_depth, XmlLimits::DEFAULT_MAX_DEPTH);
    }

    #[test]
    fn simple_element_is_its_text() {
        assert_eq!(ok("<a>x</a>"), json!({"a": "x"}));
    }

    #[test]
    fn nested_elements_and_values_stay_strings() {
        let xml = "<root><user><name>Ann</name><age>42</age><admin>true</admin>\
                   <score>-1.5e3</score></user></root>";
        assert_eq!(
            ok(xml),
            json!({"root": {"user": {
                "name": "Ann", "age": "42", "admin": "true", "score": "-1.5e3"
            }}})
        );
    }

    #[test]
    fn attributes_become_at_keys() {
        assert_eq!(
            ok(r#"<user id="7" active='true'><name>Ann</name></user>"#),
            json!({"user": {"@id": "7", "@active": "true", "name": "Ann"}})
        );
        // Attributes only: an object without "#text".
        assert_eq!(
            ok(r#"<img src="a.png" alt=""/>"#),
            json!({"img": {"@src": "a.png", "@alt": ""}})
        );
        // Attribute values are not trimmed.
        assert_eq!(ok(r#"<a b=" x "/>"#), json!({"a": {"@b": " x "}}));
    }

    #[test]
    fn repeated_elements_become_arrays() {
        assert_eq!(
            ok("<list><item>1</item><item>2</item></list>"),
            json!({"list": {"item": ["1", "2"]}})
        );
        assert_eq!(
            ok("<list><item>1</item><item>2</item><item>3</item></list>"),
            json!({"list": {"item": ["1", "2", "3"]}})
        );
    }

    #[test]
    fn repeated_elements_among_other_siblings_keep_document_order() {
        let xml = "<r><a>1</a><b>x</b><a>2</a><c/><a>3</a><b>y</b></r>";
        assert_eq!(
            ok(xml),
            json!({"r": {"a": ["1", "2", "3"], "b": ["x", "y"], "c": null}})
        );
        // Repeats of different shapes (null, string, object) share one array.
        let xml = r#"<r><p/><p>t</p><p id="3">u</p><p id="4"/></r>"#;
        assert_eq!(
            ok(xml),
            json!({"r": {"p": [
                null,
                "t",
                {"@id": "3", "#text": "u"},
                {"@id": "4"}
            ]}})
        );
        // A single child stays a plain value, not a one-element array.
        assert_eq!(ok("<r><p>1</p></r>"), json!({"r": {"p": "1"}}));
    }

    #[test]
    fn repeated_root_children_with_nested_repeats() {
        let xml = "<orders><order><line>a</line><line>b</line></order>\
                   <order><line>c</line></order></orders>";
        assert_eq!(
            ok(xml),
            json!({"orders": {"order": [
                {"line": ["a", "b"]},
                {"line": "c"}
            ]}})
        );
    }

    #[test]
    fn empty_elements_are_null() {
        assert_eq!(ok("<a/>"), json!({"a": null}));
        assert_eq!(ok("<a></a>"), json!({"a": null}));
        assert_eq!(ok("<a>  \n\t </a>"), json!({"a": null}));
        assert_eq!(ok("<a><![CDATA[]]></a>"), json!({"a": null}));
        assert_eq!(ok("<a><b/></a>"), json!({"a": {"b": null}}));
    }

    #[test]
    fn attributes_and_text_make_an_object_with_text_key() {
        assert_eq!(
            ok(r#"<price currency="EUR"> 9.90 </price>"#),
            json!({"price": {"@currency": "EUR", "#text": "9.90"}})
        );
    }

    #[test]
    fn mixed_content_joins_trimmed_runs() {
        assert_eq!(
            ok("<p>Hello <b>world</b> again <i>!</i> end</p>"),
            json!({"p": {"b": "world", "i": "!", "#text": "Hello again end"}})
        );
        // Whitespace-only runs between children add nothing.
        assert_eq!(
            ok("<p>\n  <b>x</b>\n  <b>y</b>\n</p>"),
            json!({"p": {"b": ["x", "y"]}})
        );
    }

    #[test]
    fn cdata_is_text() {
        assert_eq!(
            ok("<code><![CDATA[<a> & b]]></code>"),
            json!({"code": "<a> & b"})
        );
        // One run with the text around it.
        assert_eq!(ok("<c>x <![CDATA[y]]> z</c>"), json!({"c": "x y z"}));
        assert_eq!(
            ok(r#"<c k="v"><![CDATA[&amp;]]></c>"#),
            json!({"c": {"@k": "v", "#text": "&amp;"}})
        );
    }

    #[test]
    fn namespaces_keep_prefixes_and_declarations() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">
  <soap:Header/>
  <soap:Body>
    <m:GetPriceResponse xmlns:m="https://example.com/prices">
      <m:Price>1.90</m:Price>
    </m:GetPriceResponse>
  </soap:Body>
</soap:Envelope>"#;
        assert_eq!(
            ok(xml),
            json!({"soap:Envelope": {
                "@xmlns:soap": "http://schemas.xmlsoap.org/soap/envelope/",
                "soap:Header": null,
                "soap:Body": {
                    "m:GetPriceResponse": {
                        "@xmlns:m": "https://example.com/prices",
                        "m:Price": "1.90"
                    }
                }
            }})
        );
        assert_eq!(
            ok(r#"<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title></feed>"#),
            json!({"feed": {"@xmlns": "http://www.w3.org/2005/Atom", "title": "t"}})
        );
    }

    #[test]
    fn predefined_entities_are_decoded() {
        assert_eq!(
            ok("<a>&lt;b&gt; &amp; &quot;q&quot; &apos;s&apos;</a>"),
            json!({"a": "<b> & \"q\" 's'"})
        );
        assert_eq!(
            ok(r#"<a t="x &amp; y &lt;z&gt; &quot;&apos;"/>"#),
            json!({"a": {"@t": "x & y <z> \"'"}})
        );
    }

    #[test]
    fn numeric_references_are_decoded() {
        assert_eq!(
            ok("<a>&#38; &#x26; &#x1F600; &#0065;&#x00042;</a>"),
            json!({"a": "& & \u{1F600} AB"})
        );
        assert_eq!(ok(r#"<a t="&#60;&#x3E;"/>"#), json!({"a": {"@t": "<>"}}));
        // A referenced space is whitespace like any other at a run's edge.
        assert_eq!(ok("<a>&#32;x&#32;y&#x20;</a>"), json!({"a": "x y"}));
    }

    #[test]
    fn invalid_character_references_are_refused() {
        for reference in [
            "&#0;",
            "&#1;",
            "&#xD800;",
            "&#xFFFE;",
            "&#x110000;",
            "&#99999999999;",
            "&#;",
            "&#x;",
            "&#12a;",
            "&#X41;",
            "&#+65;",
            "&#-1;",
            "&# 65;",
        ] {
            let xml = format!("<a>{reference}</a>");
            let e = err(&xml);
            assert!(
                matches!(e, XmlError::InvalidCharRef(_)),
                "{reference}: got {e:?}"
            );
            let xml = format!(r#"<a b="{reference}"/>"#);
            let e = err(&xml);
            assert!(
                matches!(e, XmlError::InvalidCharRef(_)),
                "{reference} in attribute: got {e:?}"
            );
        }
        assert_eq!(
            err("<a>&#0;</a>").to_string(),
            "invalid character reference &#0;"
        );
    }

    #[test]
    fn billion_laughs_is_refused_without_expansion() {
        let xml = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ELEMENT lolz (#PCDATA)>
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<lolz>&lol9;</lolz>"#;
        let started = Instant::now();
        let e = err(xml);
        assert!(matches!(e, XmlError::Dtd), "got {e:?}");
        assert_eq!(e.to_string(), "a DTD is not accepted");
        // Expansion would take 10^9 "lol"s; refusing takes nothing.
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn undeclared_entities_are_refused() {
        let e = err("<lolz>&lol9;</lolz>");
        assert!(
            matches!(&e, XmlError::UnknownEntity(name) if name == "lol9"),
            "got {e:?}"
        );
        let e = err("<x>&xxe;</x>");
        assert!(
            matches!(&e, XmlError::UnknownEntity(name) if name == "xxe"),
            "got {e:?}"
        );
        assert_eq!(e.to_string(), "unknown entity &xxe;");
        let e = err(r#"<x a="&xxe;"/>"#);
        assert!(
            matches!(&e, XmlError::UnknownEntity(name) if name == "xxe"),
            "got {e:?}"
        );
        // HTML's entities are not XML's.
        assert!(matches!(err("<x>&nbsp;</x>"), XmlError::UnknownEntity(_)));
        assert!(matches!(err("<x>&AMP;</x>"), XmlError::UnknownEntity(_)));
        assert!(matches!(err("<x>&;</x>"), XmlError::UnknownEntity(_)));
    }

    #[test]
    fn external_entities_are_refused() {
        let xml = r#"<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><x>&xxe;</x>"#;
        assert!(matches!(err(xml), XmlError::Dtd));
        let xml = r#"<?xml version="1.0"?><!DOCTYPE x SYSTEM "http://example.invalid/x.dtd"><x/>"#;
        assert!(matches!(err(xml), XmlError::Dtd));
        // Parameter entities live in a DTD too.
        let xml = r#"<!DOCTYPE x [<!ENTITY % p SYSTEM "http://example.invalid/p">%p;]><x/>"#;
        assert!(matches!(err(xml), XmlError::Dtd));
    }

    #[test]
    fn any_doctype_is_refused() {
        assert!(matches!(err("<!DOCTYPE note><note/>"), XmlError::Dtd));
        assert!(matches!(err("<!doctype html><html/>"), XmlError::Dtd));
        // Even after the root.
        assert!(matches!(err("<a/><!DOCTYPE a>"), XmlError::Dtd));
    }

    #[test]
    fn depth_is_limited() {
        let limit = XmlLimits::default().max_depth;
        assert!(convert(&nested(limit, "x")).is_ok());
        let e = err(&nested(limit + 1, "x"));
        assert!(matches!(e, XmlError::TooDeep(64)), "got {e:?}");
        assert_eq!(e.to_string(), "nesting deeper than 64");
        assert!(matches!(err(&nested(100, "")), XmlError::TooDeep(64)));
        // A self-closing element counts as a level too.
        assert!(convert(&nested(limit - 1, "<b/>")).is_ok());
        assert!(matches!(err(&nested(limit, "<b/>")), XmlError::TooDeep(64)));
    }

    #[test]
    fn depth_limit_is_configurable() {
        let limits = XmlLimits { max_depth: 2 };
        assert_eq!(
            xml_to_json(b"<a><b>x</b></a>", &limits).ok(),
            Some(json!({"a": {"b": "x"}}))
        );
        assert!(matches!(
            xml_to_json(b"<a><b><c/></b></a>", &limits),
            Err(XmlError::TooDeep(2))
        ));
        let limits = XmlLimits { max_depth: 200 };
        let value = xml_to_json(nested(200, "deep").as_bytes(), &limits).unwrap();
        let mut inner = &value;
        for _ in 0..200 {
            inner = &inner["a"];
        }
        assert_eq!(inner, &json!("deep"));
    }

    /// Runs a conversion on a thread with a small stack: a walk that recursed
    /// per level could not get through 100 000 levels on it.
    fn on_small_stack(xml: String, limits: XmlLimits) -> Result<Value, XmlError> {
        std::thread::Builder::new()
            .stack_size(512 * 1024)
            .spawn(move || xml_to_json(xml.as_bytes(), &limits))
            .unwrap()
            .join()
            .unwrap()
    }

    #[test]
    fn very_deep_document_does_not_overflow_the_stack() {
        let deep = 100_000;
        let e = on_small_stack(nested(deep, "x"), XmlLimits::default()).unwrap_err();
        assert!(matches!(e, XmlError::TooDeep(64)), "got {e:?}");

        // Without a depth limit the whole document is walked (and found
        // unclosed, so no equally deep JSON value is built).
        let unlimited = XmlLimits {
            max_depth: usize::MAX,
        };
        let e = on_small_stack("<a>".repeat(deep), unlimited).unwrap_err();
        assert!(
            matches!(&e, XmlError::Unclosed(name) if name == "a"),
            "got {e:?}"
        );
        let xml = format!("{}</b>", "<a>".repeat(deep));
        let e = on_small_stack(xml, unlimited).unwrap_err();
        assert!(is_malformed(&e), "got {e:?}");
    }

    #[test]
    fn malformed_documents_are_refused() {
        for xml in [
            "<a></b>",
            "</a>",
            "<a><b></a></b>",
            "<a>x & y</a>",
            "<a>&amp</a>",
            "<a",
            "<a><b",
            "<a><!-- never closed",
            "<a><![CDATA[never closed",
            r#"<a x="1" x="2"/>"#,
            "<a x=1/>",
            "<a x/>",
            r#"<a x="1/>"#,
            r#"<a b="<"/>"#,
            r#"<a b="x & y"/>"#,
            "<1a/>",
            "<-a/>",
            "<@a/>",
            "<#text/>",
            "<>x</>",
            r#"<a 1x="v"/>"#,
            r#"<a @x="v"/>"#,
        ] {
            let e = err(xml);
            assert!(is_malformed(&e), "{xml:?}: got {e:?}");
            assert!(
                e.to_string().starts_with("malformed XML at byte "),
                "{xml:?}: {e}"
            );
        }
    }

    #[test]
    fn malformed_errors_say_where() {
        let e = err("<a></b>");
        assert!(matches!(e, XmlError::Malformed { at: 3, .. }), "got {e:?}");
        let e = err(r#"<a x="1" x="2"/>"#);
        assert!(
            matches!(&e, XmlError::Malformed { at: 0, reason } if reason.contains("duplicated")),
            "got {e:?}"
        );
    }

    #[test]
    fn invalid_utf8_is_refused() {
        let e = xml_to_json(b"<a>\xff\xfe</a>", &XmlLimits::default()).unwrap_err();
        assert!(is_malformed(&e), "got {e:?}");
        let e = xml_to_json(b"<a b=\"\xc3\"/>", &XmlLimits::default()).unwrap_err();
        assert!(is_malformed(&e), "got {e:?}");
    }

    #[test]
    fn document_structure_is_checked() {
        assert!(matches!(err(""), XmlError::NoRoot));
        assert!(matches!(err(" \n\t "), XmlError::NoRoot));
        assert!(matches!(
            err("<?xml version=\"1.0\"?><!-- c -->"),
            XmlError::NoRoot
        ));
        assert_eq!(err("").to_string(), "no root element");

        assert!(matches!(err("<a/><b/>"), XmlError::MultipleRoots));
        assert!(matches!(err("<a>1</a>\n<a>2</a>"), XmlError::MultipleRoots));
        assert_eq!(err("<a/><b/>").to_string(), "more than one root element");

        assert!(matches!(err("<a>"), XmlError::Unclosed(_)));
        assert_eq!(err("<a><b>x").to_string(), "element <b> is not closed");

        let e = err("<a/>x");
        assert!(matches!(e, XmlError::TextOutsideRoot(4)), "got {e:?}");
        assert!(matches!(err("x<a/>"), XmlError::TextOutsideRoot(0)));
        assert!(matches!(err("<a/>&amp;"), XmlError::TextOutsideRoot(_)));
        assert!(matches!(err("&#32;<a/>"), XmlError::TextOutsideRoot(_)));
        assert!(matches!(
            err("<![CDATA[x]]><a/>"),
            XmlError::TextOutsideRoot(_)
        ));
        assert!(matches!(
            err("<a/><![CDATA[ ]]>"),
            XmlError::TextOutsideRoot(_)
        ));
    }

    #[test]
    fn whitespace_handling() {
        assert_eq!(
            ok("\n  <a>\n  <b>  x  y  </b>\n</a>\n\n"),
            json!({"a": {"b": "x  y"}})
        );
        // Line ends are normalised to LF, inner whitespace is kept.
        assert_eq!(ok("<a>x\r\ny\rz</a>"), json!({"a": "x\ny\nz"}));
        // Attribute values: tabs and line ends become spaces (CR LF one space).
        assert_eq!(
            ok("<a b=\"x\ny\tz\r\nw\rv\"/>"),
            json!({"a": {"@b": "x y z w v"}})
        );
        // Whitespace around the end tag's name is allowed.
        assert_eq!(ok("<a>x</a >"), json!({"a": "x"}));
        // Attributes spread over lines.
        assert_eq!(
            ok("<a\n  b=\"1\"\n  c='2'\n/>"),
            json!({"a": {"@b": "1", "@c": "2"}})
        );
    }

    #[test]
    fn prolog_comments_and_processing_instructions_are_dropped() {
        let xml = "\u{FEFF}<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
                   <!-- before --><?pi data?>\n\
                   <a><!-- inside -->x<!-- splits nothing -->y<?pi?></a>\n\
                   <!-- after -->\n";
        assert_eq!(ok(xml), json!({"a": "xy"}));
    }

    #[test]
    fn non_ascii_names_and_text() {
        assert_eq!(
            ok("<données é=\"ü\"><città>Zürich — 東京</città></données>"),
            json!({"données": {"@é": "ü", "città": "Zürich — 東京"}})
        );
    }

    #[test]
    fn long_names_are_shortened_in_errors() {
        let name = "x".repeat(10_000);
        let e = err(&format!("<a>&{name};</a>"));
        assert!(matches!(e, XmlError::UnknownEntity(_)));
        assert!(e.to_string().len() < 80, "{e}");
        let e = err(&format!("<{name}>"));
        assert!(matches!(e, XmlError::Unclosed(_)));
        assert!(e.to_string().len() < 80, "{e}");
        let e = err(&format!("<{name}></{name}x>"));
        assert!(is_malformed(&e));
        assert!(e.to_string().len() < 250, "{e}");
    }

    #[test]
    fn ten_kilobyte_document_converts() {
        let mut xml = String::from("<?xml version=\"1.0\"?>\n<catalog>\n");
        let mut books = 0;
        while xml.len() < 10 * 1024 {
            xml.push_str(&format!(
                "  <book id=\"{books}\" lang=\"en\">\n    <title>Title &amp; {books}</title>\n    \
                 <author>Author {books}</author>\n    <price>{books}.99</price>\n  </book>\n"
            ));
            books += 1;
        }
        xml.push_str("</catalog>\n");
        assert!(xml.len() >= 10 * 1024);

        let value = ok(&xml);
        let list = value["catalog"]["book"].as_array().unwrap();
        assert_eq!(list.len(), books);
        assert_eq!(
            list[0],
            json!({
                "@id": "0", "@lang": "en",
                "title": "Title & 0", "author": "Author 0", "price": "0.99"
            })
        );
        let last = books - 1;
        assert_eq!(list[last]["@id"], json!(last.to_string()));
        assert_eq!(list[last]["price"], json!(format!("{last}.99")));
    }
}
