//! Targeted cache-control fields (RFC 9213), e.g. `CDN-Cache-Control`:
//! directives aimed at one class of cache. When the field this cache
//! targets is present, non-empty and a valid Structured Fields Dictionary,
//! its directives are the response's caching policy for this cache, and
//! Cache-Control and Expires are ignored (RFC 9213 §2.2).
//!
//! The field is forwarded unchanged, on misses and hits alike: §3 expects
//! a CDN to pass it on for CDN caches further down and only allows
//! removing it. A route that must not pass it on removes it with
//! `response_headers: {remove: [CDN-Cache-Control]}`, which applies after
//! the cache has used it.

use http::{HeaderMap, HeaderName};

/// Whether `headers` carries `name` with a value this cache must obey:
/// present, not empty, and a valid Dictionary once its lines are joined
/// (RFC 9213 §2.1; RFC 9651 §4.2). Anything else is treated as absent.
pub fn applies(headers: &HeaderMap, name: &HeaderName) -> bool {
    let mut joined = Vec::new();
    for (i, line) in headers.get_all(name).iter().enumerate() {
        if i > 0 {
            joined.extend_from_slice(b", ");
        }
        joined.extend_from_slice(line.as_bytes());
    }
    let value = trim_sp(&joined);
    !value.is_empty() && is_dictionary(value)
}

fn trim_sp(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// A cursor over a field value, for the Structured Fields grammar.
struct Input<'a> {
    s: &'a [u8],
}

impl Input<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.first().copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let (&c, rest) = self.s.split_first()?;
        self.s = rest;
        Some(c)
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.s = &self.s[1..];
            true
        } else {
            false
        }
    }

    fn skip_sp(&mut self) {
        while self.eat(b' ') {}
    }

    fn skip_ows(&mut self) {
        while self.eat(b' ') || self.eat(b'\t') {}
    }
}

/// RFC 9651 §4.2.2: members separated by commas, no empty members, no
/// trailing comma.
fn is_dictionary(value: &[u8]) -> bool {
    let mut input = Input { s: value };
    loop {
        if !key(&mut input) {
            return false;
        }
        let ok = if input.eat(b'=') {
            member_value(&mut input)
        } else {
            parameters(&mut input)
        };
        if !ok {
            return false;
        }
        input.skip_ows();
        if input.peek().is_none() {
            return true;
        }
        if !input.eat(b',') {
            return false;
        }
        input.skip_ows();
        if input.peek().is_none() {
            return false;
        }
    }
}

/// `key = ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" )`
fn key(input: &mut Input<'_>) -> bool {
    if !matches!(input.peek(), Some(b'a'..=b'z' | b'*')) {
        return false;
    }
    while matches!(
        input.peek(),
        Some(b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'*')
    ) {
        input.bump();
    }
    true
}

/// An Item or an Inner List, then parameters.
fn member_value(input: &mut Input<'_>) -> bool {
    if input.eat(b'(') {
        loop {
            input.skip_sp();
            if input.eat(b')') {
                return parameters(input);
            }
            if !bare_item(input) || !parameters(input) {
                return false;
            }
            if !matches!(input.peek(), Some(b' ' | b')')) {
                return false;
            }
        }
    }
    bare_item(input) && parameters(input)
}

/// `*( ";" *SP key [ "=" bare-item ] )`
fn parameters(input: &mut Input<'_>) -> bool {
    while input.eat(b';') {
        input.skip_sp();
        if !key(input) {
            return false;
        }
        if input.eat(b'=') && !bare_item(input) {
            return false;
        }
    }
    true
}

/// Integer, Decimal, String, Token, Byte Sequence, Boolean, Date or
/// Display String (RFC 9651 §4.2.3.1).
fn bare_item(input: &mut Input<'_>) -> bool {
    match input.peek() {
        Some(b'-' | b'0'..=b'9') => number(input),
        Some(b'"') => string(input),
        Some(b'a'..=b'z' | b'A'..=b'Z' | b'*') => {
            while matches!(input.peek(), Some(c) if is_tchar(c) || c == b':' || c == b'/') {
                input.bump();
            }
            true
        }
        Some(b':') => {
            input.bump();
            while matches!(input.peek(), Some(c) if c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'='))
            {
                input.bump();
            }
            input.eat(b':')
        }
        Some(b'?') => {
            input.bump();
            input.eat(b'0') || input.eat(b'1')
        }
        Some(b'@') => {
            input.bump();
            number(input)
        }
        Some(b'%') => {
            input.bump();
            string(input)
        }
        _ => false,
    }
}

/// An Integer (at most 15 digits) or a Decimal (at most 12 integer and 3
/// fractional digits).
fn number(input: &mut Input<'_>) -> bool {
    input.eat(b'-');
    let digits = |input: &mut Input<'_>| {
        let mut n = 0;
        while matches!(input.peek(), Some(b'0'..=b'9')) {
            input.bump();
            n += 1;
        }
        n
    };
    let int = digits(input);
    if int == 0 {
        return false;
    }
    if input.eat(b'.') {
        let frac = digits(input);
        int <= 12 && (1..=3).contains(&frac)
    } else {
        int <= 15
    }
}

/// A quoted string of printable ASCII with `\"` and `\\` escapes.
fn string(input: &mut Input<'_>) -> bool {
    if !input.eat(b'"') {
        return false;
    }
    loop {
        match input.bump() {
            Some(b'"') => return true,
            Some(b'\\') => {
                if !matches!(input.bump(), Some(b'"' | b'\\')) {
                    return false;
                }
            }
            Some(0x20..=0x7e) => {}
            _ => return false,
        }
    }
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applies_to(lines: &[&str]) -> bool {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append("cdn-cache-control", l.parse().unwrap());
        }
        applies(&h, &HeaderName::from_static("cdn-cache-control"))
    }

    #[test]
    fn valid_dictionaries_apply() {
        for ok in [
            "max-age=60",
            "no-store",
            "none",
            "max-age=60, stale-while-revalidate=30",
            "no-cache=\"set-cookie\", max-age=0",
            "private, must-revalidate",
            "  max-age=600  ",
            "a;p=1, b=?0, c=(1 2);q, d=1.5, e=tok/en:x",
        ] {
            assert!(applies_to(&[ok]), "{ok:?}");
        }
        assert!(applies_to(&["max-age=60", "stale-if-error=5"]), "two lines");
    }

    #[test]
    fn absent_empty_and_invalid_fields_do_not() {
        assert!(!applies_to(&[]));
        for bad in [
            "",
            "   ",
            "no-store,,",
            "max-age=60,",
            ", max-age=60",
            "Max-Age=60",
            "max-age=",
            "max-age=60 s-maxage=5",
            "no-cache=\"unterminated",
            "max-age=1234567890123456",
            "9lives",
        ] {
            assert!(!applies_to(&[bad]), "{bad:?}");
        }
    }
}
