//! A collector of diagnostics for the checks that run beside the section
//! validators (bounds, values sent on the wire, start-up conditions,
//! warnings): each is reported at the position of its YAML node.

use super::{error::Diagnostic, locate::Locations};

/// Diagnostics found by one pass, in the order found.
pub(super) struct Report<'a> {
    locations: &'a Locations,
    /// What was found.
    pub(super) diagnostics: Vec<Diagnostic>,
}

impl<'a> Report<'a> {
    /// An empty report over the document `locations` indexes.
    pub(super) fn new(locations: &'a Locations) -> Self {
        Self {
            locations,
            diagnostics: Vec::new(),
        }
    }

    /// Reports `message` at the YAML node `path` (e.g. `pools[0].name`).
    pub(super) fn error(&mut self, path: String, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic {
            position: self.locations.find(&path),
            path,
            message: message.into(),
        });
    }

    /// Reports a warning: the same as [`Self::error`], in a report whose
    /// diagnostics are warnings.
    pub(super) fn warn(&mut self, path: String, message: impl Into<String>) {
        self.error(path, message);
    }

    /// `line N` of `path`, for messages that point at a second place.
    pub(super) fn line_of(&self, path: &str) -> String {
        self.locations
            .find(path)
            .map_or_else(|| path.to_string(), |p| format!("line {}", p.line))
    }
}
