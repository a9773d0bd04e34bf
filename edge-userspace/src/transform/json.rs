//! Edits of a JSON document addressed by JSON pointers (RFC 6901): the
//! `json` block of a route's `transform` (remove, rename, set, add).
//!
//! The operations never fail: a body is the client's or the upstream's,
//! not the operator's, so a pointer that does not fit the document (a
//! string where an object was expected, an index past the end) leaves the
//! document as it was for that operation instead of refusing the request.

use serde_json::{Map, Value};
use std::fmt;

/// A JSON pointer (RFC 6901) naming a member or an element below the root.
///
/// The tokens are stored unescaped (`~1` → `/`, `~0` → `~`). The root
/// pointer `""` is refused by [`Pointer::parse`]: replacing or removing a
/// whole body is not what a field edit is for.
#[derive(Clone, Debug, PartialEq)]
pub struct Pointer(Vec<String>);

impl Pointer {
    /// Parses `s`, which must start with `/`.
    ///
    /// `"/"` names the member with the empty name, as RFC 6901 says.
    /// A `~` not followed by `0` or `1` is an error.
    pub fn parse(s: &str) -> Result<Pointer, String> {
        if s.is_empty() {
            return Err(
                "the root pointer \"\" is not allowed: name a member, e.g. \"/field\"".to_string(),
            );
        }
        let Some(rest) = s.strip_prefix('/') else {
            return Err(format!(
                "JSON pointer {s:?} must start with '/' (e.g. \"/{s}\")"
            ));
        };
        let mut tokens = Vec::new();
        for raw in rest.split('/') {
            tokens.push(unescape(raw).map_err(|why| format!("JSON pointer {s:?}: {why}"))?);
        }
        Ok(Pointer(tokens))
    }
}

/// Undoes RFC 6901's escapes in one reference token.
fn unescape(raw: &str) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '~' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('0') => out.push('~'),
            Some('1') => out.push('/'),
            Some(other) => {
                return Err(format!(
                    "bad escape \"~{other}\" (write ~0 for '~' and ~1 for '/')"
                ));
            }
            None => return Err("a token ends with '~' (write ~0 for '~')".to_string()),
        }
    }
    Ok(out)
}

impl fmt::Display for Pointer {
    /// The escaped form, as it would be written in the configuration.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for token in &self.0 {
            // `~` first, or the `~` of a `~1` just written would be escaped again.
            write!(f, "/{}", token.replace('~', "~0").replace('/', "~1"))?;
        }
        Ok(())
    }
}

/// The edits of one JSON body, applied in the order remove, rename, set,
/// add (each list in its own order).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JsonOps {
    /// Members or elements deleted when present.
    pub remove: Vec<Pointer>,
    /// Values moved from the first pointer to the second (written there as
    /// `set` would); nothing happens when the source is absent.
    pub rename: Vec<(Pointer, Pointer)>,
    /// Values written whether or not the target exists; missing parent
    /// objects are created.
    pub set: Vec<(Pointer, Value)>,
    /// Values written only when the target is absent; missing parent
    /// objects are created.
    pub add: Vec<(Pointer, Value)>,
}

impl JsonOps {
    /// True when there is nothing to do, so the body need not be parsed.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.rename.is_empty()
            && self.set.is_empty()
            && self.add.is_empty()
    }

    /// Applies every operation to `doc`. An operation whose pointer does
    /// not fit `doc` (a scalar on the way, a missing array element, `-`
    /// other than as the last token) is skipped.
    pub fn apply(&self, doc: &mut Value) {
        for p in &self.remove {
            take(doc, p);
        }
        for (from, to) in &self.rename {
            rename(doc, from, to);
        }
        for (p, v) in &self.set {
            // Cloned per document: the configured value is shared by every request.
            let _ = write(doc, p, v.clone(), Mode::Set);
        }
        for (p, v) in &self.add {
            let _ = write(doc, p, v.clone(), Mode::Add);
        }
    }
}

/// Whether a write replaces what is already there.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Set,
    Add,
}

/// An array index token: decimal without leading zeros (RFC 6901 §4), so
/// `01` or `+1` never address an element by accident.
fn index(token: &str) -> Option<usize> {
    let digits = !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit());
    if !digits || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    token.parse().ok()
}

/// The value at `path` below `cur`. With `create`, missing object members
/// are inserted as empty objects. Creation only happens once the walk has
/// left the existing document, and from there on every step succeeds, so a
/// walk that fails has changed nothing.
fn walk<'a>(cur: &'a mut Value, path: &[String], create: bool) -> Option<&'a mut Value> {
    let Some((token, rest)) = path.split_first() else {
        return Some(cur);
    };
    let next = match cur {
        Value::Object(map) => {
            if create {
                map.entry(token.as_str())
                    .or_insert_with(|| Value::Object(Map::new()))
            } else {
                map.get_mut(token.as_str())?
            }
        }
        Value::Array(items) => items.get_mut(index(token)?)?,
        _ => return None,
    };
    walk(next, rest, create)
}

/// Removes and returns the value at `p`, if there is one.
fn take(doc: &mut Value, p: &Pointer) -> Option<Value> {
    let (last, parent) = p.0.split_last()?;
    match walk(doc, parent, false)? {
        Value::Object(map) => map.remove(last.as_str()),
        Value::Array(items) => {
            let i = index(last)?;
            (i < items.len()).then(|| items.remove(i))
        }
        _ => None,
    }
}

/// Writes `value` at `p`. On failure the value is handed back, so a
/// rename can put it where it came from.
fn write(doc: &mut Value, p: &Pointer, value: Value, mode: Mode) -> Result<(), Value> {
    let Some((last, parent)) = p.0.split_last() else {
        return Err(value);
    };
    // An add whose target exists must not create parents either; they do
    // exist then, so the same walk serves both modes.
    let Some(parent) = walk(doc, parent, true) else {
        return Err(value);
    };
    match parent {
        Value::Object(map) => {
            if mode == Mode::Add && map.contains_key(last.as_str()) {
                // Present: not a failure, the add is simply not needed.
                return Ok(());
            }
            map.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(items) if last == "-" => {
            items.push(value);
            Ok(())
        }
        Value::Array(items) => match index(last) {
            Some(i) if i < items.len() => {
                if mode == Mode::Set {
                    items[i] = value;
                }
                Ok(())
            }
            // Past the end: only `-` appends, so an index never leaves a gap.
            _ => Err(value),
        },
        _ => Err(value),
    }
}

/// Moves the value at `from` to `to`. When it cannot be written at `to`,
/// it goes back where it was, so a rename never loses data.
fn rename(doc: &mut Value, from: &Pointer, to: &Pointer) {
    // Taking first would shift an array's elements under the target.
    if from == to {
        return;
    }
    let Some(value) = take(doc, from) else {
        return;
    };
    if let Err(value) = write(doc, to, value, Mode::Set) {
        put_back(doc, from, value);
    }
}

/// Reinserts a value just taken from `p`. The parent is still there: the
/// failed write created nothing.
fn put_back(doc: &mut Value, p: &Pointer, value: Value) {
    let Some((last, parent)) = p.0.split_last() else {
        return;
    };
    match walk(doc, parent, false) {
        Some(Value::Object(map)) => {
            map.insert(last.clone(), value);
        }
        Some(Value::Array(items)) => {
            if let Some(i) = index(last).filter(|&i| i <= items.len()) {
                items.insert(i, value);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> Pointer {
        Pointer::parse(s).unwrap()
    }

    fn ops() -> JsonOps {
        JsonOps::default()
    }

    #[test]
    fn parse_tokens_and_escapes() {
        assert_eq!(p("/a"), Pointer(vec!["a".into()]));
        assert_eq!(
            p("/a/b/0"),
            Pointer(vec!["a".into(), "b".into(), "0".into()])
        );
        assert_eq!(p("/a~1b"), Pointer(vec!["a/b".into()]));
        assert_eq!(p("/m~0n"), Pointer(vec!["m~n".into()]));
        // `~01` is `~1` literally, not `/`: ~0 is unescaped on its own.
        assert_eq!(p("/~01"), Pointer(vec!["~1".into()]));
        assert_eq!(p("/"), Pointer(vec!["".into()]));
        assert_eq!(p("//"), Pointer(vec!["".into(), "".into()]));
        assert_eq!(p("/a/"), Pointer(vec!["a".into(), "".into()]));
        assert_eq!(p("/é/ü"), Pointer(vec!["é".into(), "ü".into()]));
    }

    #[test]
    fn parse_refusals() {
        assert!(Pointer::parse("").unwrap_err().contains("root"));
        assert!(Pointer::parse("a").unwrap_err().contains("start with '/'"));
        assert!(Pointer::parse("#/a").is_err());
        assert!(Pointer::parse("/a~2").unwrap_err().contains("~2"));
        assert!(Pointer::parse("/a~").unwrap_err().contains("ends with '~'"));
        assert!(Pointer::parse("/~/a").is_err());
        assert!(Pointer::parse("/a/~x").is_err());
    }

    #[test]
    fn display_round_trips() {
        for s in ["/a", "/a~1b", "/m~0n", "/~01", "/", "//", "/a/0/-", "/é"] {
            assert_eq!(p(s).to_string(), s);
            assert_eq!(p(&p(s).to_string()), p(s));
        }
    }

    #[test]
    fn is_empty() {
        assert!(ops().is_empty());
        let mut o = ops();
        o.add.push((p("/a"), json!(1)));
        assert!(!o.is_empty());
        let mut o = ops();
        o.rename.push((p("/a"), p("/b")));
        assert!(!o.is_empty());
    }

    #[test]
    fn remove_members_and_elements() {
        let mut o = ops();
        o.remove = vec![
            p("/password"),
            p("/user/secret"),
            p("/list/1"),
            p("/missing"),
            p("/x/y"),
        ];
        let mut doc = json!({
            "password": "p", "keep": 1,
            "user": {"secret": "s", "name": "n"},
            "list": [0, 1, 2],
            "x": 5
        });
        o.apply(&mut doc);
        assert_eq!(
            doc,
            json!({"keep": 1, "user": {"name": "n"}, "list": [0, 2], "x": 5})
        );
    }

    #[test]
    fn remove_odd_indexes_are_ignored() {
        let mut o = ops();
        o.remove = vec![
            p("/l/-"),
            p("/l/01"),
            p("/l/9"),
            p("/l/-1"),
            p("/l/+0"),
            p("/l/a"),
        ];
        let mut doc = json!({"l": [1, 2]});
        o.apply(&mut doc);
        assert_eq!(doc, json!({"l": [1, 2]}));
    }

    #[test]
    fn remove_escaped_and_empty_names() {
        let mut o = ops();
        o.remove = vec![p("/a~1b"), p("/"), p("/t~0")];
        let mut doc = json!({"a/b": 1, "": 2, "t~": 3, "a": {"b": 4}});
        o.apply(&mut doc);
        assert_eq!(doc, json!({"a": {"b": 4}}));
    }

    #[test]
    fn removes_apply_in_order() {
        // Removing /l/0 twice drops the first two elements.
        let mut o = ops();
        o.remove = vec![p("/l/0"), p("/l/0")];
        let mut doc = json!({"l": ["a", "b", "c"]});
        o.apply(&mut doc);
        assert_eq!(doc, json!({"l": ["c"]}));
    }

    #[test]
    fn set_overwrites_and_creates_parents() {
        let mut o = ops();
        o.set = vec![
            (p("/meta/via"), json!("edge")),
            (p("/a/b/c"), json!({"deep": true})),
            (p("/name"), json!(null)),
        ];
        let mut doc = json!({"name": "x", "meta": {"via": "old", "other": 1}});
        o.apply(&mut doc);
        assert_eq!(
            doc,
            json!({
                "name": null,
                "meta": {"via": "edge", "other": 1},
                "a": {"b": {"c": {"deep": true}}}
            })
        );
    }

    #[test]
    fn set_skips_scalars_on_the_way() {
        let mut o = ops();
        o.set = vec![
            (p("/s/x"), json!(1)),
            (p("/n/x"), json!(1)),
            (p("/z/x"), json!(1)),
            (p("/s/x/y"), json!(1)),
        ];
        let mut doc = json!({"s": "str", "n": 3, "z": null});
        o.apply(&mut doc);
        assert_eq!(doc, json!({"s": "str", "n": 3, "z": null}));
    }

    #[test]
    fn scalar_and_array_roots() {
        let mut o = ops();
        o.set = vec![(p("/a"), json!(1))];
        o.remove = vec![p("/a")];
        for mut doc in [json!("text"), json!(3), json!(null), json!(true)] {
            let before = doc.clone();
            o.apply(&mut doc);
            assert_eq!(doc, before);
        }
        // A root array: "a" is not an index.
        let mut doc = json!([1]);
        o.apply(&mut doc);
        assert_eq!(doc, json!([1]));

        let mut o = ops();
        o.set = vec![(p("/0"), json!("x")), (p("/-"), json!("y"))];
        let mut doc = json!([1, 2]);
        o.apply(&mut doc);
        assert_eq!(doc, json!(["x", 2, "y"]));
    }

    #[test]
    fn set_in_arrays() {
        let mut o = ops();
        o.set = vec![
            (p("/l/1"), json!("b")),
            (p("/l/-"), json!("d")),
            (p("/l/9"), json!("never")),
            (p("/l/01"), json!("never")),
            (p("/items/0/tag"), json!("t")),
            (p("/items/5/tag"), json!("never")),
            (p("/items/-/tag"), json!("never")),
        ];
        let mut doc = json!({"l": ["a", "x", "c"], "items": [{"id": 1}]});
        o.apply(&mut doc);
        assert_eq!(
            doc,
            json!({"l": ["a", "b", "c", "d"], "items": [{"id": 1, "tag": "t"}]})
        );
    }

    #[test]
    fn set_does_not_create_arrays() {
        // A missing parent is always made an object, even for a numeric token.
        let mut o = ops();
        o.set = vec![(p("/new/0"), json!(1)), (p("/other/-"), json!(2))];
        let mut doc = json!({});
        o.apply(&mut doc);
        assert_eq!(doc, json!({"new": {"0": 1}, "other": {"-": 2}}));
    }

    #[test]
    fn numeric_tokens_in_objects_are_names() {
        let mut o = ops();
        o.set = vec![(p("/o/0"), json!("zero")), (p("/o/01"), json!("one"))];
        let mut doc = json!({"o": {"0": "old"}});
        o.apply(&mut doc);
        assert_eq!(doc, json!({"o": {"0": "zero", "01": "one"}}));
    }

    #[test]
    fn add_only_when_absent() {
        let mut o = ops();
        o.add = vec![
            (p("/meta/version"), json!(2)),
            (p("/present"), json!("new")),
            (p("/nulled"), json!("new")),
            (p("/x/y/z"), json!([1])),
        ];
        let mut doc = json!({"present": "old", "nulled": null});
        o.apply(&mut doc);
        assert_eq!(
            doc,
            json!({
                "present": "old",
                "nulled": null,
                "meta": {"version": 2},
                "x": {"y": {"z": [1]}}
            })
        );
    }

    #[test]
    fn add_in_arrays() {
        let mut o = ops();
        o.add = vec![
            (p("/l/0"), json!("never")),
            (p("/l/5"), json!("never")),
            (p("/l/-"), json!("end")),
        ];
        let mut doc = json!({"l": ["a"]});
        o.apply(&mut doc);
        assert_eq!(doc, json!({"l": ["a", "end"]}));
    }

    #[test]
    fn add_skips_what_does_not_fit() {
        let mut o = ops();
        o.add = vec![
            (p("/s/x"), json!(1)),
            (p("/n/x"), json!(1)),
            (p("/n/x/y"), json!(1)),
        ];
        let mut doc = json!({"s": [true], "n": 1});
        o.apply(&mut doc);
        assert_eq!(doc, json!({"s": [true], "n": 1}));
    }

    #[test]
    fn set_then_add_sees_the_set() {
        let mut o = ops();
        o.set = vec![(p("/a"), json!(1))];
        o.add = vec![(p("/a"), json!(2))];
        let mut doc = json!({});
        o.apply(&mut doc);
        assert_eq!(doc, json!({"a": 1}));
    }

    #[test]
    fn order_remove_rename_set_add() {
        let mut o = ops();
        o.remove = vec![p("/old")];
        o.rename = vec![(p("/user/name"), p("/user/full_name"))];
        o.set = vec![(p("/user/name"), json!("set"))];
        o.add = vec![
            (p("/old"), json!("added")),
            (p("/user/full_name"), json!("never")),
        ];
        let mut doc = json!({"old": 1, "user": {"name": "Ann"}});
        o.apply(&mut doc);
        assert_eq!(
            doc,
            json!({"old": "added", "user": {"name": "set", "full_name": "Ann"}})
        );
    }

    #[test]
    fn rename_moves_values() {
        let mut o = ops();
        o.rename = vec![
            (p("/user/name"), p("/user/full_name")),
            (p("/a"), p("/moved/into/here")),
            (p("/absent"), p("/never")),
        ];
        let mut doc = json!({"user": {"name": "Ann", "full_name": "old"}, "a": [1, 2]});
        o.apply(&mut doc);
        assert_eq!(
            doc,
            json!({"user": {"full_name": "Ann"}, "moved": {"into": {"here": [1, 2]}}})
        );
    }

    #[test]
    fn rename_onto_itself_changes_nothing() {
        let mut o = ops();
        o.rename = vec![(p("/a"), p("/a")), (p("/l/0"), p("/l/0"))];
        let mut doc = json!({"a": 1, "l": ["x", "y"]});
        o.apply(&mut doc);
        assert_eq!(doc, json!({"a": 1, "l": ["x", "y"]}));
    }

    #[test]
    fn rename_with_arrays() {
        let mut o = ops();
        o.rename = vec![
            (p("/l/0"), p("/l/-")),
            (p("/l/0"), p("/first")),
            (p("/name"), p("/l/-")),
        ];
        let mut doc = json!({"l": ["a", "b", "c"], "name": "n"});
        o.apply(&mut doc);
        assert_eq!(doc, json!({"l": ["c", "a", "n"], "first": "b"}));
    }

    #[test]
    fn rename_into_an_existing_element() {
        let mut o = ops();
        o.rename = vec![(p("/v"), p("/l/1"))];
        let mut doc = json!({"v": "new", "l": ["a", "b"]});
        o.apply(&mut doc);
        assert_eq!(doc, json!({"l": ["a", "new"]}));
    }

    #[test]
    fn rename_that_cannot_write_keeps_the_value() {
        let mut o = ops();
        o.rename = vec![
            (p("/a"), p("/s/x")),
            (p("/l/1"), p("/s/x")),
            (p("/l/0"), p("/l/9")),
            (p("/b"), p("/l/-/x")),
        ];
        let mut doc = json!({"a": 1, "b": 2, "s": "scalar", "l": ["x", "y", "z"]});
        let before = doc.clone();
        o.apply(&mut doc);
        assert_eq!(doc, before);
    }

    #[test]
    fn rename_whose_target_moves_when_the_source_goes() {
        // Taking /l/0 shifts the array, so /l/2 no longer exists: the value
        // goes back to index 0 and the array is as it was.
        let mut o = ops();
        o.rename = vec![(p("/l/0"), p("/l/2"))];
        let mut doc = json!({"l": ["a", "b", "c"]});
        o.apply(&mut doc);
        assert_eq!(doc, json!({"l": ["a", "b", "c"]}));
    }

    #[test]
    fn rename_into_its_own_child() {
        let mut o = ops();
        o.rename = vec![(p("/a"), p("/a/b"))];
        let mut doc = json!({"a": {"x": 1}});
        o.apply(&mut doc);
        assert_eq!(doc, json!({"a": {"b": {"x": 1}}}));
    }

    #[test]
    fn rename_with_escaped_names() {
        let mut o = ops();
        o.rename = vec![(p("/a~1b"), p("/c~0d"))];
        let mut doc = json!({"a/b": 1});
        o.apply(&mut doc);
        assert_eq!(doc, json!({"c~d": 1}));
    }

    #[test]
    fn empty_ops_change_nothing() {
        let mut doc = json!({"a": [1, {"b": null}]});
        let before = doc.clone();
        ops().apply(&mut doc);
        assert_eq!(doc, before);
    }
}
