//! A linear pre-scan of the YAML text, before either parser builds
//! anything from it: it bounds the nesting depth and the number of alias
//! uses (see [`bounds`](super::bounds)), and stops at the first violation.
//!
//! Both parsers edge uses are slow on hostile input. serde_yaml (libyaml)
//! loads the whole event stream before it checks its recursion limit, and
//! that load is quadratic in the depth of nested flow collections (100 000
//! levels of `[` take minutes); serde then expands every alias again, so a
//! few nested anchors used many times cost memory exponential in their
//! nesting. yaml-rust2's event parser, used here, does not expand aliases
//! and emits events as it goes, so stopping at depth [`MAX_DEPTH`] means
//! the deep part of the document is never looked at.

use super::{
    bounds::{MAX_ALIASES, MAX_DEPTH},
    error::Diagnostic,
    locate::Position,
};
use yaml_rust2::{Event, parser::Parser, scanner::Marker};

/// yaml-rust2's message when flow collections nest 256 deep.
const SCANNER_DEPTH_LIMIT: &str = "recursion limit exceeded";

fn position(mark: &Marker) -> Position {
    Position {
        line: mark.line(),
        column: mark.col() + 1,
    }
}

/// The first place where `text` nests deeper than [`MAX_DEPTH`] or uses
/// more than [`MAX_ALIASES`] aliases. A syntax error ends the scan quietly:
/// serde reports it with its own message.
pub(super) fn scan(text: &str) -> Option<Diagnostic> {
    let mut parser = Parser::new_from_str(text);
    let mut depth = 0usize;
    let mut aliases = 0usize;
    let too_deep = |mark: &Marker| Diagnostic {
        position: Some(position(mark)),
        path: String::new(),
        message: format!(
            "collections are nested more than {MAX_DEPTH} deep: nesting must be at most \
             {MAX_DEPTH} levels"
        ),
    };
    loop {
        let (event, mark) = match parser.next_token() {
            Ok(next) => next,
            // The scanner reads ahead of the events while a flow
            // collection could still turn out to be a mapping key, and
            // refuses a 256th level of flow nesting itself, before this
            // loop has seen the events of the 65th.
            Err(e) if e.info() == SCANNER_DEPTH_LIMIT => return Some(too_deep(e.marker())),
            Err(_) => return None,
        };
        match event {
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some(too_deep(&mark));
                }
            }
            Event::SequenceEnd | Event::MappingEnd => depth = depth.saturating_sub(1),
            Event::Alias(_) => {
                aliases += 1;
                if aliases > MAX_ALIASES {
                    return Some(Diagnostic {
                        position: Some(position(&mark)),
                        path: String::new(),
                        message: format!(
                            "more than {MAX_ALIASES} aliases (*name): alias uses must be at most \
                             {MAX_ALIASES}, since each is expanded again and a few nested ones \
                             can cost gigabytes"
                        ),
                    });
                }
            }
            Event::StreamEnd => return None,
            _ => {}
        }
    }
}
