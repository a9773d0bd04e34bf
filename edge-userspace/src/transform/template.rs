//! Path templates: the upstream path of a `transform.request.path` or of
//! an aggregation call, such as `/v2/people/{id}`.
//!
//! A variable's value is percent-encoded as one path segment, so a value
//! can never add a segment, a query or a fragment (`a/b?c#d` becomes
//! `a%2Fb%3Fc%23d`). The one exception is `{path}`, the whole normalised
//! request path, whose slashes are the point of using it.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// The variable holding the whole normalised request path.
const WHOLE_PATH: &str = "path";

/// Bytes written as is in a segment (RFC 3986 `pchar`): unreserved,
/// sub-delims but `;`, `:` and `@`. `/`, `?`, `#` and `%` are encoded, and
/// `;` too: a decoded `%3B` written raw would make `..;` of a value, a
/// dot segment to Tomcat and Jetty.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'!')
    .remove(b'$')
    .remove(b'&')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b'=')
    .remove(b':')
    .remove(b'@');

/// Bytes written as is from `{path}`: a segment's, and `/`. Its `%` are
/// kept too: the normalised path only holds `%` as the start of a valid
/// encoding, which encoding again would change.
const PATH: &AsciiSet = &SEGMENT.remove(b'/').remove(b'%').remove(b';');

/// Bytes written as is in a query (a variable after a literal `?`):
/// unreserved only, so a value cannot add a parameter.
const QUERY: &AsciiSet = super::query::UNRESERVED;

/// A parsed path template.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    /// Written as is (`{{` and `}}` already turned into braces).
    Literal(String),
    /// Replaced by the variable's value.
    Var(String),
}

impl Template {
    /// Parses `s`: text that starts with `/`, with `{name}` variables
    /// (`name` is `[A-Za-z_][A-Za-z0-9_]*`) and `{{` / `}}` for literal
    /// braces. Positions in errors count characters from 1.
    pub fn parse(s: &str) -> Result<Template, String> {
        if !s.starts_with('/') {
            return Err(format!("path template {s:?} must start with '/'"));
        }
        let chars: Vec<char> = s.chars().collect();
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut i = 0;
        while let Some(&c) = chars.get(i) {
            let next = chars.get(i + 1).copied();
            match c {
                '{' if next == Some('{') => {
                    literal.push('{');
                    i += 2;
                }
                '}' if next == Some('}') => {
                    literal.push('}');
                    i += 2;
                }
                '}' => {
                    return Err(format!(
                        "path template {s:?}: lone '}}' at character {} (write '}}}}' for a literal brace)",
                        i + 1
                    ));
                }
                '{' => {
                    let start = i + 1;
                    let Some(len) = chars
                        .get(start..)
                        .and_then(|rest| rest.iter().position(|&c| c == '}'))
                    else {
                        return Err(format!(
                            "path template {s:?}: unclosed '{{' at character {} (write '{{{{' for a literal brace)",
                            i + 1
                        ));
                    };
                    let name: String = chars.iter().skip(start).take(len).collect();
                    check_name(&name).map_err(|why| {
                        format!("path template {s:?}: {why} at character {}", i + 1)
                    })?;
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Var(name));
                    i = start + len + 1;
                }
                _ => {
                    literal.push(c);
                    i += 1;
                }
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template { parts })
    }

    /// The names of the variables, in order (a name used twice comes
    /// twice), so a caller can check each is known before serving.
    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Var(name) => Some(name.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// The path, with each variable replaced by `lookup`'s value for it,
    /// percent-encoded (see the module's documentation); a variable without
    /// a value is replaced by nothing.
    pub fn render(&self, lookup: &dyn Fn(&str) -> Option<String>) -> String {
        let mut out = String::new();
        let mut in_query = false;
        for part in &self.parts {
            match part {
                Part::Literal(text) => {
                    in_query |= text.contains('?');
                    out.push_str(text);
                }
                Part::Var(name) => {
                    let value = lookup(name.as_str()).unwrap_or_default();
                    let set = if in_query {
                        QUERY
                    } else if name == WHOLE_PATH {
                        PATH
                    } else {
                        SEGMENT
                    };
                    out.extend(utf8_percent_encode(&value, set));
                }
            }
        }
        out
    }
}

/// The variables of a request: `{path}` and the named captures of the
/// route's path regex on the path it matched, decoded (the template
/// encodes each value again for where it goes, so `%C3%A9` does not
/// become `%25C3...`).
pub struct Captures<'a> {
    path: &'a str,
    captures: Option<regex::Captures<'a>>,
}

impl<'a> Captures<'a> {
    /// The variables of `path`, as `regex` (the route's) captures them in
    /// `matched_path`.
    pub fn new(regex: Option<&regex::Regex>, matched_path: &'a str, path: &'a str) -> Self {
        Self {
            path,
            captures: regex.and_then(|r| r.captures(matched_path)),
        }
    }

    /// The value of variable `name`.
    pub fn get(&self, name: &str) -> Option<String> {
        if name == WHOLE_PATH {
            return Some(self.path.to_string());
        }
        let m = self.captures.as_ref()?.name(name)?;
        Some(
            percent_encoding::percent_decode_str(m.as_str())
                .decode_utf8_lossy()
                .into_owned(),
        )
    }
}

/// Whether `t` renders to a valid origin-form target whatever its
/// variables hold (values are encoded; the literal text must be valid).
pub fn renders_a_uri(t: &Template) -> bool {
    t.render(&|_| Some("x".to_string()))
        .parse::<http::uri::PathAndQuery>()
        .is_ok()
}

/// Whether the path of `target` (before any `?`) has a `.` or `..`
/// segment, also as `..;x` (a dot segment to Tomcat and Jetty): a rendered
/// path with one would reach what the route did not match.
pub fn has_dot_segment(target: &str) -> bool {
    let path = target.split('?').next().unwrap_or_default();
    path.split('/').any(|seg| {
        let seg = seg.split(';').next().unwrap_or_default();
        seg == "." || seg == ".."
    })
}

/// Checks a variable name against `[A-Za-z_][A-Za-z0-9_]*`.
fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return Err("empty variable name '{}'".to_string());
    };
    let first_ok = first.is_ascii_alphabetic() || first == '_';
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "bad variable name {name:?} (letters, digits and '_', not starting with a digit)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Template {
        Template::parse(s).unwrap()
    }

    fn with(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    fn render(s: &str, pairs: &[(&str, &str)]) -> String {
        t(s).render(&with(pairs))
    }

    #[test]
    fn literal_only() {
        assert_eq!(render("/", &[]), "/");
        assert_eq!(render("/v2/people", &[]), "/v2/people");
        assert_eq!(t("/v2/people").vars().count(), 0);
        // Literal text is written as configured, not encoded.
        assert_eq!(render("/a b/é", &[]), "/a b/é");
    }

    #[test]
    fn variables() {
        let tpl = t("/v2/people/{id}/x{_y}z/{a_1}");
        assert_eq!(tpl.vars().collect::<Vec<_>>(), vec!["id", "_y", "a_1"]);
        assert_eq!(
            tpl.render(&with(&[("id", "42"), ("_y", "Y"), ("a_1", "A")])),
            "/v2/people/42/xYz/A"
        );
    }

    #[test]
    fn adjacent_and_repeated_variables() {
        let tpl = t("/{a}{b}/{a}");
        assert_eq!(tpl.vars().collect::<Vec<_>>(), vec!["a", "b", "a"]);
        assert_eq!(tpl.render(&with(&[("a", "1"), ("b", "2")])), "/12/1");
    }

    #[test]
    fn missing_variable_is_empty() {
        assert_eq!(render("/a/{x}/b", &[]), "/a//b");
        assert_eq!(render("/a/{x}", &[("y", "1")]), "/a/");
    }

    #[test]
    fn escaped_braces() {
        let tpl = t("/a{{b}}");
        assert_eq!(tpl.vars().count(), 0);
        assert_eq!(tpl.render(&with(&[])), "/a{b}");
        assert_eq!(render("/{{{id}}}", &[("id", "7")]), "/{7}");
        assert_eq!(render("/{{id}}", &[("id", "7")]), "/{id}");
        assert_eq!(render("/}}{{", &[]), "/}{");
    }

    #[test]
    fn values_are_encoded_as_one_segment() {
        assert_eq!(render("/x/{id}", &[("id", "a/b")]), "/x/a%2Fb");
        assert_eq!(render("/x/{id}", &[("id", "a?b#c")]), "/x/a%3Fb%23c");
        assert_eq!(render("/x/{id}", &[("id", "a b")]), "/x/a%20b");
        assert_eq!(render("/x/{id}", &[("id", "é☃")]), "/x/%C3%A9%E2%98%83");
        assert_eq!(render("/x/{id}", &[("id", "100%")]), "/x/100%25");
        assert_eq!(render("/x/{id}", &[("id", "%2F")]), "/x/%252F");
        assert_eq!(
            render("/x/{id}", &[("id", "a\\b\"<>`{}|^")]),
            "/x/a%5Cb%22%3C%3E%60%7B%7D%7C%5E"
        );
        assert_eq!(render("/x/{id}", &[("id", "\n\0")]), "/x/%0A%00");
        assert_eq!(render("/x/{id}", &[("id", "..")]), "/x/..");
    }

    #[test]
    fn segment_characters_are_kept() {
        let kept = "AZaz09-._~!$&'()*+,=:@";
        assert_eq!(render("/{v}", &[("v", kept)]), format!("/{kept}"));
    }

    #[test]
    fn dot_segments_are_found() {
        assert!(has_dot_segment("/a/../b"));
        assert!(has_dot_segment("/a/..;x/b"));
        assert!(has_dot_segment("/a/."));
        assert!(!has_dot_segment("/a/...b/c?x=/../"));
        assert!(!has_dot_segment("/a/..%3B/b"));
    }

    #[test]
    fn a_semicolon_never_makes_a_dot_segment() {
        assert_eq!(render("/a/{v}/b", &[("v", "..;")]), "/a/..%3B/b");
        assert_eq!(render("/{path}", &[("path", "a;b")]), "/a;b");
    }

    #[test]
    fn values_after_a_question_mark_cannot_add_parameters() {
        assert_eq!(
            render("/orders?user={id}", &[("id", "42&role=admin")]),
            "/orders?user=42%26role%3Dadmin"
        );
        assert_eq!(render("/u/{id}", &[("id", "a&b=c")]), "/u/a&b=c");
    }

    #[test]
    fn whole_path_keeps_slashes_and_encodings() {
        let tpl = t("/v2{path}");
        assert_eq!(tpl.vars().collect::<Vec<_>>(), vec!["path"]);
        assert_eq!(
            tpl.render(&with(&[("path", "/api/people/%C3%A9;v=1")])),
            "/v2/api/people/%C3%A9;v=1"
        );
        assert_eq!(
            tpl.render(&with(&[("path", "/a b/?#/é")])),
            "/v2/a%20b/%3F%23/%C3%A9"
        );
        assert_eq!(tpl.render(&with(&[])), "/v2");
    }

    #[test]
    fn only_the_path_variable_keeps_slashes() {
        assert_eq!(render("/{paths}", &[("paths", "/a")]), "/%2Fa");
        assert_eq!(render("/{Path}", &[("Path", "/a")]), "/%2Fa");
    }

    #[test]
    fn must_start_with_a_slash() {
        for bad in ["", "v2/{id}", "{path}", " /a", "{{/a"] {
            let err = Template::parse(bad).unwrap_err();
            assert!(err.contains("must start with '/'"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn unclosed_brace() {
        let err = Template::parse("/a/{id").unwrap_err();
        assert!(err.contains("unclosed '{' at character 4"), "{err}");
        let err = Template::parse("/{").unwrap_err();
        assert!(err.contains("unclosed '{' at character 2"), "{err}");
        let err = Template::parse("/{{{").unwrap_err();
        assert!(err.contains("unclosed '{' at character 4"), "{err}");
    }

    #[test]
    fn lone_closing_brace() {
        let err = Template::parse("/ab}").unwrap_err();
        assert!(err.contains("lone '}' at character 4"), "{err}");
        let err = Template::parse("/{a}}").unwrap_err();
        assert!(err.contains("lone '}' at character 5"), "{err}");
        // `{{name}` is a literal `{` then a stray `}`.
        let err = Template::parse("/{{id}").unwrap_err();
        assert!(err.contains("lone '}' at character 6"), "{err}");
    }

    #[test]
    fn positions_count_characters() {
        let err = Template::parse("/é/{x").unwrap_err();
        assert!(err.contains("at character 4"), "{err}");
    }

    #[test]
    fn bad_names() {
        let err = Template::parse("/{}").unwrap_err();
        assert!(err.contains("empty variable name"), "{err}");
        assert!(err.contains("at character 2"), "{err}");
        for bad in [
            "/{1a}", "/{a-b}", "/{a b}", "/{é}", "/{a.b}", "/{ a}", "/x/{a{b}",
        ] {
            let err = Template::parse(bad).unwrap_err();
            assert!(err.contains("bad variable name"), "{bad:?}: {err}");
        }
        let err = Template::parse("/x/{9}").unwrap_err();
        assert!(
            err.contains("\"9\"") && err.contains("at character 4"),
            "{err}"
        );
    }

    #[test]
    fn parse_is_deterministic() {
        assert_eq!(t("/a/{b}/{{c}}"), t("/a/{b}/{{c}}"));
        assert_ne!(t("/a/{b}"), t("/a/{c}"));
        assert_eq!(t("/a/{b}").clone(), t("/a/{b}"));
    }
}
