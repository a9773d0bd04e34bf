//! What the fuzz targets share: a plain-text form of an HTTP head, so that
//! seeds and reproducers can be read and written by hand.
//!
//! ```text
//! GET /v1/users?beta=1      <- start line: words separated by spaces
//! host: api.example.com     <- fields, `name: value`, up to a blank line
//! x-canary: 1
//!
//! ...                       <- the rest, for the target
//! ```

/// One head: the words of its start line and its fields, as bytes (a field
/// value need not be UTF-8).
#[derive(Debug, Default)]
pub struct Head<'a> {
    /// The start line's words.
    pub start: Vec<&'a [u8]>,
    /// `name: value` fields, the value without leading blanks.
    pub fields: Vec<(&'a [u8], &'a [u8])>,
}

/// Splits the head off the front of `data`; returns it and what follows
/// the blank line after it.
pub fn head(data: &[u8]) -> (Head<'_>, &[u8]) {
    let mut out = Head::default();
    let mut rest = data;
    let mut first = true;
    while !rest.is_empty() {
        let (line, after) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = after;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if first {
            out.start = words(line).collect();
            first = false;
            continue;
        }
        if line.is_empty() {
            break;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line, &line[line.len()..]),
        };
        let start = value
            .iter()
            .position(|&b| b != b' ' && b != b'\t')
            .unwrap_or(value.len());
        out.fields.push((name, &value[start..]));
    }
    (out, rest)
}

/// The lines of `data`.
pub fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

/// The space-separated words of `line`.
pub fn words(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|&b| b == b' ').filter(|w| !w.is_empty())
}

/// `bytes` as text, if UTF-8.
pub fn text(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes).ok()
}

/// The request a head with a two-word start line (`METHOD TARGET`)
/// describes, built as Pingora builds one; `None` when Pingora or the
/// `http` crate would not accept it.
pub fn request(head: &Head<'_>) -> Option<pingora::http::RequestHeader> {
    let [method, target] = head.start[..] else {
        return None;
    };
    let mut req = pingora::http::RequestHeader::build(method, target, None).ok()?;
    for (name, value) in &head.fields {
        let name = http::HeaderName::from_bytes(name).ok()?;
        let _ = req.append_header(name, *value);
    }
    Some(req)
}
