//! Configuration: YAML → serde surface structs → validated [`Config`].
//!
//! [`load`] is the only way in; it reports every problem it finds as
//! `file:line:column: message`.

mod error;
pub mod l4;
mod locate;
pub mod model;
mod surface;
pub mod units;
mod validate;

pub use error::{ConfigError, Diagnostic};
pub use locate::Position;
pub use model::*;

use std::path::{Path, PathBuf};

/// Reads and checks the configuration at `file`.
pub fn load(file: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
        file: file.to_path_buf(),
        source,
    })?;
    parse(&text, file)
}

/// Checks configuration `text`; `file` names it in errors.
pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
    let invalid = |diagnostics| ConfigError::Invalid {
        file: PathBuf::from(file),
        diagnostics,
    };
    if text.trim().is_empty() {
        return Err(invalid(vec![Diagnostic {
            position: None,
            path: String::new(),
            message: "the file is empty: configure listeners and/or xdp.interfaces".into(),
        }]));
    }
    let surface: surface::File =
        serde_yaml::from_str(text).map_err(|e| invalid(vec![from_serde(&e)]))?;
    let locations = locate::Locations::index(text);
    let config = validate::validate(&surface, &locations).map_err(invalid)?;
    if config.listeners.is_empty() && config.xdp.interfaces.is_empty() {
        return Err(invalid(vec![Diagnostic {
            position: None,
            path: String::new(),
            message: "nothing to run: configure listeners and/or xdp.interfaces".into(),
        }]));
    }
    Ok(config)
}

fn from_serde(e: &serde_yaml::Error) -> Diagnostic {
    let position = e.location().map(|l| Position {
        line: l.line(),
        column: l.column(),
    });
    let mut message = e.to_string();
    // serde_yaml writes the position into the message (at its end, or before
    // a parser's context); the diagnostic already leads with it.
    if let Some(l) = e.location() {
        let position = format!(" at line {} column {}", l.line(), l.column());
        message = message.replacen(&position, "", 1);
    }
    Diagnostic {
        position,
        path: String::new(),
        message,
    }
}

#[cfg(test)]
mod tests;
