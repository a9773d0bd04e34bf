//! Edits of a request's query string: the `query` block of a route's
//! `transform` (remove, rename, set, add).
//!
//! Names are compared as the router compares them (percent-decoded, `+`
//! read as a space), so `remove: [a b]` removes `a+b=1` and `a%20b=1`.
//! A pair that no operation touches goes out byte for byte as it came in:
//! re-encoding it could change what a backend reads (`+` against `%20`, an
//! encoding a backend decodes differently). What edge writes itself is
//! percent-encoded, every byte but the unreserved characters.

use crate::proxy::router::query_component;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Bytes written as is in a name or value edge writes: RFC 3986's
/// unreserved characters. Everything else, `+` and `=` and `&` included,
/// is encoded, so no value can add or split a pair. Also the set of every
/// other place edge percent-encodes a component (path templates' query
/// variables, form bodies, `edge ctl`'s path segments).
pub const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The edits of one query string, applied in the order remove, rename,
/// set, add. Names and values are as the operator wrote them (not
/// encoded).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueryOps {
    /// Names whose every pair is dropped.
    pub remove: Vec<String>,
    /// `(from, to)`: every pair named `from` is renamed `to`, its value
    /// kept as it was sent. The renames are applied at once, each to the
    /// names as they were before any rename, so `{a: b, b: a}` swaps.
    pub rename: Vec<(String, String)>,
    /// `(name, value)`: every pair named `name` is replaced by one pair,
    /// where the first one was (or at the end when there was none).
    pub set: Vec<(String, String)>,
    /// `(name, value)`: a pair appended, even when the name is present.
    pub add: Vec<(String, String)>,
}

/// One `name=value` (or bare `name`) of the query string.
struct Pair {
    /// As it will be written.
    raw: String,
    /// The decoded name, for comparisons.
    name: String,
}

impl Pair {
    /// A pair of the client's query string.
    fn parse(raw: &str) -> Pair {
        let name = raw.split_once('=').map_or(raw, |(name, _)| name);
        Pair {
            raw: raw.to_string(),
            name: query_component(name),
        }
    }

    /// A pair written by edge.
    fn new(name: &str, value: &str) -> Pair {
        Pair {
            raw: format!("{}={}", encode(name), encode(value)),
            name: name.to_string(),
        }
    }
}

fn encode(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

impl QueryOps {
    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.rename.is_empty()
            && self.set.is_empty()
            && self.add.is_empty()
    }

    /// The query string (without `?`) after the edits of `query` (the
    /// client's, without `?`), or `None` when no pair is left. Empty pairs
    /// (`a=1&&b=2`, a trailing `&`) carry nothing and are dropped.
    pub fn apply(&self, query: Option<&str>) -> Option<String> {
        let mut pairs: Vec<Pair> = query
            .unwrap_or("")
            .split('&')
            .filter(|raw| !raw.is_empty())
            .map(Pair::parse)
            .collect();

        pairs.retain(|p| !self.remove.contains(&p.name));

        for p in &mut pairs {
            let Some((_, to)) = self.rename.iter().find(|(from, _)| *from == p.name) else {
                continue;
            };
            // Onto itself: left alone, so its bytes stay as they were sent.
            if *to == p.name {
                continue;
            }
            let value = p.raw.split_once('=').map(|(_, value)| value);
            p.raw = match value {
                Some(value) => format!("{}={value}", encode(to)),
                None => encode(to),
            };
            p.name = to.clone();
        }

        for (name, value) in &self.set {
            let mut placed = false;
            let mut next = Vec::with_capacity(pairs.len() + 1);
            for p in pairs {
                if p.name != *name {
                    next.push(p);
                } else if !placed {
                    next.push(Pair::new(name, value));
                    placed = true;
                }
            }
            if !placed {
                next.push(Pair::new(name, value));
            }
            pairs = next;
        }

        for (name, value) in &self.add {
            pairs.push(Pair::new(name, value));
        }

        if pairs.is_empty() {
            return None;
        }
        let raws: Vec<&str> = pairs.iter().map(|p| p.raw.as_str()).collect();
        Some(raws.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn kv(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn ops() -> QueryOps {
        QueryOps::default()
    }

    #[test]
    fn is_empty() {
        assert!(ops().is_empty());
        let mut o = ops();
        o.remove = s(&["a"]);
        assert!(!o.is_empty());
        let mut o = ops();
        o.add = kv(&[("a", "1")]);
        assert!(!o.is_empty());
    }

    #[test]
    fn nothing_to_do_keeps_bytes() {
        let o = ops();
        assert_eq!(o.apply(None), None);
        assert_eq!(o.apply(Some("")), None);
        let q = "b=%41&a+b=c+d&flag&x=&=v&e=%zz&u=%C3%A9&k==v";
        assert_eq!(o.apply(Some(q)).as_deref(), Some(q));
    }

    #[test]
    fn empty_pairs_are_dropped() {
        let mut o = ops();
        o.remove = s(&["zzz"]);
        assert_eq!(o.apply(Some("a=1&&b=2&")).as_deref(), Some("a=1&b=2"));
        assert_eq!(o.apply(Some("&&")), None);
    }

    #[test]
    fn remove_every_occurrence() {
        let mut o = ops();
        o.remove = s(&["debug"]);
        assert_eq!(
            o.apply(Some("debug=1&x=2&debug&debug=&y=debug")).as_deref(),
            Some("x=2&y=debug")
        );
        // Names are case-sensitive.
        assert_eq!(o.apply(Some("Debug=1")).as_deref(), Some("Debug=1"));
    }

    #[test]
    fn remove_last_pair_gives_none() {
        let mut o = ops();
        o.remove = s(&["a", "b"]);
        assert_eq!(o.apply(Some("a=1&b&a=2")), None);
        assert_eq!(o.apply(None), None);
    }

    #[test]
    fn remove_compares_decoded_names() {
        let mut o = ops();
        o.remove = s(&["a b"]);
        assert_eq!(
            o.apply(Some("a%20b=1&a+b=2&ab=3&a%2Bb=4")).as_deref(),
            Some("ab=3&a%2Bb=4")
        );
        let mut o = ops();
        o.remove = s(&["a+b"]);
        assert_eq!(
            o.apply(Some("a%20b=1&a+b=2&a%2Bb=4")).as_deref(),
            Some("a%20b=1&a+b=2")
        );
        let mut o = ops();
        o.remove = s(&["é"]);
        assert_eq!(o.apply(Some("%C3%A9=1&e=2")).as_deref(), Some("e=2"));
    }

    #[test]
    fn rename_keeps_raw_values() {
        let mut o = ops();
        o.rename = kv(&[("q", "search")]);
        assert_eq!(
            o.apply(Some("q=hello+world&x=1&q=%C3%A9&q&q=")).as_deref(),
            Some("search=hello+world&x=1&search=%C3%A9&search&search=")
        );
        // A value holding '=' is kept whole.
        assert_eq!(o.apply(Some("q==a=b")).as_deref(), Some("search==a=b"));
    }

    #[test]
    fn rename_encodes_the_new_name() {
        let mut o = ops();
        o.rename = kv(&[("q", "my q&x=é")]);
        assert_eq!(
            o.apply(Some("q=1")).as_deref(),
            Some("my%20q%26x%3D%C3%A9=1")
        );
    }

    #[test]
    fn rename_matches_decoded_names() {
        let mut o = ops();
        o.rename = kv(&[("a b", "c")]);
        assert_eq!(
            o.apply(Some("a%20b=1&a+b=2&a%2Bb=3")).as_deref(),
            Some("c=1&c=2&a%2Bb=3")
        );
    }

    #[test]
    fn rename_onto_itself_keeps_bytes() {
        let mut o = ops();
        o.rename = kv(&[("a b", "a b")]);
        assert_eq!(o.apply(Some("a+b=1&a%20b")).as_deref(), Some("a+b=1&a%20b"));
    }

    #[test]
    fn renames_apply_at_once() {
        let mut o = ops();
        o.rename = kv(&[("a", "b"), ("b", "a")]);
        assert_eq!(o.apply(Some("a=1&b=2")).as_deref(), Some("b=1&a=2"));
        let mut o = ops();
        o.rename = kv(&[("a", "b"), ("b", "c")]);
        assert_eq!(o.apply(Some("a=1&b=2")).as_deref(), Some("b=1&c=2"));
    }

    #[test]
    fn rename_of_an_absent_name_changes_nothing() {
        let mut o = ops();
        o.rename = kv(&[("q", "search")]);
        assert_eq!(o.apply(Some("x=1")).as_deref(), Some("x=1"));
        assert_eq!(o.apply(None), None);
    }

    #[test]
    fn set_replaces_every_occurrence_at_the_first() {
        let mut o = ops();
        o.set = kv(&[("format", "json")]);
        assert_eq!(
            o.apply(Some("a=1&format=xml&b=2&format=csv&format"))
                .as_deref(),
            Some("a=1&format=json&b=2")
        );
        // A bare name counts as present.
        assert_eq!(
            o.apply(Some("format&a=1")).as_deref(),
            Some("format=json&a=1")
        );
        // Encoded names match.
        assert_eq!(o.apply(Some("form%61t=x")).as_deref(), Some("format=json"));
    }

    #[test]
    fn set_appends_when_absent() {
        let mut o = ops();
        o.set = kv(&[("format", "json")]);
        assert_eq!(o.apply(Some("a=1")).as_deref(), Some("a=1&format=json"));
        assert_eq!(o.apply(None).as_deref(), Some("format=json"));
        assert_eq!(o.apply(Some("")).as_deref(), Some("format=json"));
    }

    #[test]
    fn set_encodes_name_and_value() {
        let mut o = ops();
        o.set = kv(&[("a b", "x y+z&w=v/é?#%"), ("e", "")]);
        assert_eq!(
            o.apply(Some("a+b=old")).as_deref(),
            Some("a%20b=x%20y%2Bz%26w%3Dv%2F%C3%A9%3F%23%25&e=")
        );
        let mut o = ops();
        o.set = kv(&[("k", "A-z.0_9~")]);
        assert_eq!(o.apply(None).as_deref(), Some("k=A-z.0_9~"));
    }

    #[test]
    fn set_twice_keeps_the_last() {
        let mut o = ops();
        o.set = kv(&[("a", "1"), ("a", "2")]);
        assert_eq!(o.apply(Some("x&a=0")).as_deref(), Some("x&a=2"));
    }

    #[test]
    fn add_appends_even_when_present() {
        let mut o = ops();
        o.add = kv(&[("source", "edge"), ("source", "two words")]);
        assert_eq!(
            o.apply(Some("source=x")).as_deref(),
            Some("source=x&source=edge&source=two%20words")
        );
        assert_eq!(
            o.apply(None).as_deref(),
            Some("source=edge&source=two%20words")
        );
    }

    #[test]
    fn order_remove_rename_set_add() {
        let o = QueryOps {
            remove: s(&["debug", "search"]),
            rename: kv(&[("q", "search")]),
            set: kv(&[("search", "fixed"), ("format", "json")]),
            add: kv(&[("debug", "1")]),
        };
        // The client's own `search` is removed before `q` becomes `search`,
        // and set then replaces the renamed pairs.
        assert_eq!(
            o.apply(Some("search=mine&q=a&debug=1&q=b&z")).as_deref(),
            Some("search=fixed&z&format=json&debug=1")
        );
    }
}
