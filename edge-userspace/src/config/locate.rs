//! Where each value of a YAML document is: a map from a node's path
//! (`listeners[1].address`) to its line and column.
//!
//! serde gives a position only for the first error it meets; validation
//! errors are found later, on plain structs, so they name the path of the
//! offending value and this index turns it back into a position.

use std::collections::HashMap;
use yaml_rust2::{
    Event,
    parser::{MarkedEventReceiver, Parser},
    scanner::Marker,
};

/// A 1-based line and column in the source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

/// Path → position of every node in a document.
#[derive(Debug, Default)]
pub struct Locations {
    nodes: HashMap<String, Position>,
}

impl Locations {
    /// Indexes `source`. A document the scanner rejects yields an empty
    /// index; serde reports the syntax error itself.
    pub fn index(source: &str) -> Self {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(source);
        if parser.load(&mut builder, false).is_err() {
            return Self::default();
        }
        Self {
            nodes: builder.nodes,
        }
    }

    /// The position of `path`, or of its nearest indexed ancestor (a missing
    /// key is reported where its parent is).
    pub fn find(&self, path: &str) -> Option<Position> {
        let mut path = path;
        loop {
            if let Some(pos) = self.nodes.get(path) {
                return Some(*pos);
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }
}

enum Frame {
    Mapping { path: String, key: Option<String> },
    Sequence { path: String, next: usize },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    nodes: HashMap<String, Position>,
}

impl Builder {
    /// The path of the node that starts now, or `None` if it is a mapping key.
    fn node_path(&mut self) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Mapping { path, key }) => {
                let key = key.take()?;
                Some(if path.is_empty() {
                    key
                } else {
                    format!("{path}.{key}")
                })
            }
            Some(Frame::Sequence { path, next }) => {
                *next += 1;
                Some(format!("{path}[{}]", *next - 1))
            }
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let position = Position {
            line: mark.line(),
            column: mark.col() + 1,
        };
        match ev {
            Event::Scalar(value, ..) => match self.node_path() {
                Some(path) => {
                    self.nodes.insert(path, position);
                }
                None => {
                    if let Some(Frame::Mapping { key, .. }) = self.stack.last_mut() {
                        *key = Some(value);
                    }
                }
            },
            Event::Alias(_) => {
                if let Some(path) = self.node_path() {
                    self.nodes.insert(path, position);
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                // A collection used as a mapping key has no path of its own.
                let path = self.node_path().unwrap_or_default();
                self.nodes.insert(path.clone(), position);
                self.stack.push(if matches!(ev, Event::MappingStart(..)) {
                    Frame::Mapping { path, key: None }
                } else {
                    Frame::Sequence { path, next: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
listeners:
  - name: a
    address: 1.2.3.4:80
  - name: b
    address: \"bad\"
xdp:
  deny: [10.0.0.0/8, nope]
";

    #[test]
    fn finds_nested_values() {
        let loc = Locations::index(DOC);
        assert_eq!(
            loc.find("listeners[1].address"),
            Some(Position {
                line: 5,
                column: 14
            })
        );
        assert_eq!(
            loc.find("listeners[0].name"),
            Some(Position {
                line: 2,
                column: 11
            })
        );
        assert_eq!(
            loc.find("xdp.deny[1]"),
            Some(Position {
                line: 7,
                column: 22
            })
        );
    }

    #[test]
    fn falls_back_to_the_parent() {
        let loc = Locations::index(DOC);
        assert_eq!(loc.find("listeners[1].pool"), loc.find("listeners[1]"));
    }
}
