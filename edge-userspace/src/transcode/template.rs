//! `google.api.http` path templates (`/v1/{name=shelves/*}/books/{id}:get`):
//! parsed once, matched against normalised request paths.
//!
//! ```text
//! Template = "/" Segments [ Verb ] ;
//! Segments = Segment { "/" Segment } ;
//! Segment  = "*" | "**" | LITERAL | Variable ;
//! Variable = "{" FieldPath [ "=" Segments ] "}" ;
//! FieldPath = IDENT { "." IDENT } ;
//! Verb     = ":" LITERAL ;
//! ```
//! `**` matches the rest of the path and must come last.

use std::fmt;

/// Longest template accepted.
const MAX_TEMPLATE: usize = 1024;

/// Values a matched path gives: each field path and its value.
pub type Bound = Vec<(Vec<String>, String)>;

/// One segment to match.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    /// Exactly this (percent-decoded) text.
    Literal(String),
    /// Any one segment.
    One,
    /// Any number of segments, to the end.
    Rest,
}

/// A variable: the field it sets and the segments it spans.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Variable {
    field: Vec<String>,
    start: usize,
    /// One past its last segment; `None`: to the end of the path.
    end: Option<usize>,
}

/// A parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    segments: Vec<Segment>,
    variables: Vec<Variable>,
    verb: Option<String>,
    text: String,
}

/// Why a template does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("path template {template:?}: {why}")]
pub struct TemplateError {
    template: String,
    why: String,
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn ident(s: &str) -> bool {
    s.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn literal(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=@".contains(&b) && b != b'*')
}

impl Template {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let err = |why: &str| TemplateError {
            template: text.to_string(),
            why: why.to_string(),
        };
        if text.len() > MAX_TEMPLATE {
            return Err(err("longer than 1024 bytes"));
        }
        let rest = text
            .strip_prefix('/')
            .ok_or_else(|| err("must start with '/'"))?;
        // The verb follows the last ':' outside braces.
        let mut depth = 0i32;
        let mut verb_at = None;
        for (i, c) in rest.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ':' if depth == 0 => verb_at = Some(i),
                _ => {}
            }
        }
        let (body, verb) = match verb_at {
            Some(i) => {
                let verb = &rest[i + 1..];
                if !literal(verb) {
                    return Err(err("the verb after ':' must be a literal"));
                }
                (&rest[..i], Some(verb.to_string()))
            }
            None => (rest, None),
        };
        let mut t = Template {
            segments: Vec::new(),
            variables: Vec::new(),
            verb,
            text: text.to_string(),
        };
        let mut chars = body;
        while !chars.is_empty() || t.segments.is_empty() {
            if let Some(inner) = chars.strip_prefix('{') {
                let close = inner.find('}').ok_or_else(|| err("'{' without '}'"))?;
                let (spec, after) = (&inner[..close], &inner[close + 1..]);
                if spec.contains('{') {
                    return Err(err("variables cannot nest"));
                }
                let (field, segs) = match spec.split_once('=') {
                    Some((f, s)) => (f, s),
                    None => (spec, "*"),
                };
                let field: Vec<String> = field.split('.').map(str::to_string).collect();
                if !field.iter().all(|p| ident(p)) {
                    return Err(err("a variable names a field path (a.b.c)"));
                }
                if t.variables.iter().any(|v| v.field == field) {
                    return Err(err("a field is bound twice"));
                }
                let start = t.segments.len();
                for s in segs.split('/') {
                    t.push(s).map_err(&err)?;
                }
                let end = (t.segments.last() != Some(&Segment::Rest)).then_some(t.segments.len());
                t.variables.push(Variable { field, start, end });
                chars = after;
            } else {
                let end = chars.find('/').unwrap_or(chars.len());
                t.push(&chars[..end]).map_err(&err)?;
                chars = &chars[end..];
            }
            match chars.strip_prefix('/') {
                Some("") => return Err(err("ends with '/'")),
                Some(next) => chars = next,
                None if chars.is_empty() => break,
                None => return Err(err("a variable must be a whole segment")),
            }
        }
        if let Some(i) = t.segments.iter().position(|s| *s == Segment::Rest)
            && i + 1 != t.segments.len()
        {
            return Err(err("'**' must be the last segment"));
        }
        Ok(t)
    }

    fn push(&mut self, s: &str) -> Result<(), &'static str> {
        if self.segments.last() == Some(&Segment::Rest) {
            return Err("'**' must be the last segment");
        }
        self.segments.push(match s {
            "*" => Segment::One,
            "**" => Segment::Rest,
            s if literal(s) => Segment::Literal(decode(s).ok_or("bad percent-encoding")?),
            "" => return Err("empty segment"),
            _ => return Err("a segment is a literal, '*', '**' or a {variable}"),
        });
        Ok(())
    }

    /// The fields the template's variables bind, as dotted paths.
    pub fn fields(&self) -> impl Iterator<Item = String> + '_ {
        self.variables.iter().map(|v| v.field.join("."))
    }

    /// Matches `path` (normalised, no query): each variable's field path
    /// and its value (percent-decoded; a multi-segment value keeps its
    /// `/`), or `None` when it does not match.
    pub fn matches(&self, path: &str) -> Option<Bound> {
        let rest = path.strip_prefix('/')?;
        let rest = match &self.verb {
            Some(verb) => rest.strip_suffix(verb.as_str())?.strip_suffix(':')?,
            None => rest,
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let mut i = 0;
        for s in &self.segments {
            match s {
                Segment::Rest => {
                    i = parts.len();
                    break;
                }
                Segment::One => {
                    if parts.get(i).is_none_or(|p| p.is_empty()) {
                        return None;
                    }
                }
                Segment::Literal(l) => {
                    if decode(parts.get(i)?)? != *l {
                        return None;
                    }
                }
            }
            i += 1;
        }
        if i != parts.len() {
            return None;
        }
        self.variables
            .iter()
            .map(|v| {
                let end = v.end.unwrap_or(parts.len());
                let raw = parts.get(v.start..end)?.join("/");
                Some((v.field.clone(), decode(&raw)?))
            })
            .collect()
    }
}

/// Percent-decodes `s` to UTF-8.
fn decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(t: &str, path: &str) -> Option<Vec<(String, String)>> {
        Template::parse(t)
            .unwrap()
            .matches(path)
            .map(|v| v.into_iter().map(|(f, s)| (f.join("."), s)).collect())
    }

    #[test]
    fn literals_and_variables() {
        assert_eq!(m("/v1/books", "/v1/books"), Some(vec![]));
        assert_eq!(m("/v1/books", "/v1/book"), None);
        assert_eq!(
            m(
                "/v1/shelves/{shelf}/books/{book.id}",
                "/v1/shelves/7/books/a%20b"
            ),
            Some(vec![
                ("shelf".into(), "7".into()),
                ("book.id".into(), "a b".into())
            ])
        );
        assert_eq!(m("/v1/shelves/{shelf}", "/v1/shelves/"), None);
        assert_eq!(m("/v1/shelves/{shelf}", "/v1/shelves/1/x"), None);
    }

    #[test]
    fn multi_segment_variables_rest_and_verbs() {
        assert_eq!(
            m("/v1/{name=shelves/*/books/*}", "/v1/shelves/1/books/2"),
            Some(vec![("name".into(), "shelves/1/books/2".into())])
        );
        assert_eq!(
            m("/v1/{name=shelves/*/books/*}", "/v1/shelves/1/books"),
            None
        );
        assert_eq!(
            m("/files/{path=**}", "/files/a/b/c.txt"),
            Some(vec![("path".into(), "a/b/c.txt".into())])
        );
        assert_eq!(
            m("/v1/{name=messages/*}:cancel", "/v1/messages/9:cancel"),
            Some(vec![("name".into(), "messages/9".into())])
        );
        assert_eq!(m("/v1/{name=messages/*}:cancel", "/v1/messages/9"), None);
        assert_eq!(m("/v1/*/x", "/v1/any/x"), Some(vec![]));
    }

    #[test]
    fn bad_templates() {
        for bad in [
            "v1/x",
            "/v1/{x",
            "/v1/{x}}",
            "/v1/{a{b}}",
            "/v1/{1x}",
            "/v1/**/x",
            "/v1/x/",
            "/v1//x",
            "/v1/{x}{y}",
            "/v1/{x}/{x}",
            "/v1/a b",
            "/v1/x:",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }
}
