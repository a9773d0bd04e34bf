//! Configuration errors: each names the file, line and column and says why.

use super::locate::Position;
use std::{fmt, path::PathBuf};

/// One problem found in a configuration file. Whether it is an error (the
/// file is refused) or a warning (it loads) is said by the list it is in:
/// [`ConfigError::Invalid`] or [`Checked::warnings`](super::Checked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where, if known.
    pub position: Option<Position>,
    /// The path of the value inside the document (`listeners[1].address`).
    pub path: String,
    /// What is wrong and, where possible, what would be right.
    pub message: String,
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file was read and is wrong; every problem found is listed.
    #[error("{}", render(file, diagnostics))]
    Invalid {
        /// The file.
        file: PathBuf,
        /// The problems, in document order.
        diagnostics: Vec<Diagnostic>,
    },
}

fn render(file: &std::path::Path, diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for (i, d) in diagnostics.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&d.display_in(file).to_string());
    }
    out
}

impl Diagnostic {
    /// Renders as `file:line:column: message`.
    pub fn display_in<'a>(&'a self, file: &'a std::path::Path) -> impl fmt::Display + 'a {
        DisplayIn {
            d: self,
            file,
            warning: false,
        }
    }

    /// Renders as a warning: `file:line:column: warning: message`.
    pub fn warning_in<'a>(&'a self, file: &'a std::path::Path) -> impl fmt::Display + 'a {
        DisplayIn {
            d: self,
            file,
            warning: true,
        }
    }
}

struct DisplayIn<'a> {
    d: &'a Diagnostic,
    file: &'a std::path::Path,
    warning: bool,
}

impl fmt::Display for DisplayIn<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(p) = self.d.position {
            write!(f, ":{}:{}", p.line, p.column)?;
        }
        write!(f, ": ")?;
        if self.warning {
            write!(f, "warning: ")?;
        }
        if !self.d.path.is_empty() {
            write!(f, "{}: ", self.d.path)?;
        }
        write!(f, "{}", self.d.message)
    }
}
