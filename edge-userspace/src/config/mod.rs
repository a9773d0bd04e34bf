//! Configuration: YAML → serde surface structs → validated [`Config`].
//!
//! [`load`] (or [`check`], which also returns the warnings) is the only way
//! in; it reports every problem it finds as `file:line:column: message`.

pub mod bgp;
pub mod bounds;
pub mod cache;
pub mod compression;
mod error;
pub mod gateway;
pub mod l4;
mod l7;
mod locate;
pub mod model;
mod preflight;
mod prescan;
mod report;
pub mod shaping;
pub mod stream;
mod surface;
pub mod tls;
pub mod trace;
pub mod transcode;
pub mod units;
mod validate;

pub use error::{ConfigError, Diagnostic};
pub use locate::Position;
pub use model::*;

use bounds::{MAX_FILE_SIZE, show_size};
use std::path::{Path, PathBuf};

/// A configuration that loads, and what edge noticed about it on the way.
#[derive(Clone, Debug, PartialEq)]
pub struct Checked {
    /// The checked configuration.
    pub config: Config,
    /// Things that are allowed but probably wrong (a pool that forwards to
    /// edge's own listener), rendered with [`Diagnostic::warning_in`].
    pub warnings: Vec<Diagnostic>,
}

/// Reads and checks the configuration at `file`, logging its warnings.
pub fn load(file: &Path) -> Result<Config, ConfigError> {
    load_with_text(file).map(|(config, _)| config)
}

/// [`load`], also returning the text the configuration was read from (the
/// daemon shows it, redacted, on the admin API).
pub fn load_with_text(file: &Path) -> Result<(Config, String), ConfigError> {
    let text = read(file)?;
    let checked = check_text(&text, file)?;
    for w in &checked.warnings {
        tracing::warn!("{}", w.warning_in(file));
    }
    Ok((checked.config, text))
}

/// Reads and checks the configuration at `file`, returning its warnings.
///
/// At most [`MAX_FILE_SIZE`] bytes are read: a larger file is refused
/// without reading the rest.
pub fn check(file: &Path) -> Result<Checked, ConfigError> {
    check_text(&read(file)?, file)
}

/// Reads the text of `file`: at most [`MAX_FILE_SIZE`] bytes and one more,
/// so that [`check_text`] can refuse a larger file without reading it all.
pub fn read(file: &Path) -> Result<String, ConfigError> {
    use std::io::Read;
    let read_error = |source| ConfigError::Read {
        file: file.to_path_buf(),
        source,
    };
    let mut text = String::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(MAX_FILE_SIZE + 1).read_to_string(&mut text))
        .map_err(read_error)?;
    Ok(text)
}

/// Where the value at `path` (`listeners[1].address`) stands in `text`.
pub fn locate(text: &str, path: &str) -> Option<Position> {
    locate::Locations::index(text).find(path)
}

/// Checks configuration `text`; `file` names it in errors.
pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
    check_text(text, file).map(|c| c.config)
}

/// Checks configuration `text`, returning its warnings; `file` names it
/// in errors and gives the directory relative paths resolve against.
pub fn check_text(text: &str, file: &Path) -> Result<Checked, ConfigError> {
    let invalid = |diagnostics| ConfigError::Invalid {
        file: PathBuf::from(file),
        diagnostics,
    };
    let whole = |message: String| Diagnostic {
        position: None,
        path: String::new(),
        message,
    };
    if text.len() as u64 > MAX_FILE_SIZE {
        return Err(invalid(vec![whole(format!(
            "the file is larger than {}: a configuration must be at most {}",
            show_size(MAX_FILE_SIZE),
            show_size(MAX_FILE_SIZE)
        ))]));
    }
    if text.trim().is_empty() {
        return Err(invalid(vec![whole(
            "the file is empty: configure listeners and/or xdp.interfaces".into(),
        )]));
    }
    // Before either parser builds anything: both are slow on deep nesting,
    // and serde expands aliases.
    if let Some(d) = prescan::scan(text) {
        return Err(invalid(vec![d]));
    }
    let surface: surface::File =
        serde_yaml::from_str(text).map_err(|e| invalid(vec![from_serde(&e)]))?;
    let locations = locate::Locations::index(text);
    let base_dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    // Files the validators read whole must be small regular files first.
    let mut files = report::Report::new(&locations);
    preflight::files(&mut files, &surface, base_dir);
    if !files.diagnostics.is_empty() {
        return Err(invalid(files.diagnostics));
    }
    // The section validators, then the passes beside them: bounds, and
    // what `edge run` would meet. All their errors are reported together.
    let validated = validate::validate(&surface, &locations, base_dir);
    let mut more = report::Report::new(&locations);
    bounds::check(&mut more, &surface);
    preflight::check(&mut more, &surface, base_dir);
    let config = match validated {
        Ok(config) if more.diagnostics.is_empty() => config,
        result => {
            let mut diagnostics = result.err().unwrap_or_default();
            diagnostics.append(&mut more.diagnostics);
            diagnostics.sort_by_key(|d| d.position.map(|p| (p.line, p.column)));
            return Err(invalid(diagnostics));
        }
    };
    if config.listeners.is_empty() && config.xdp.interfaces.is_empty() {
        return Err(invalid(vec![whole(
            "nothing to run: configure listeners and/or xdp.interfaces".into(),
        )]));
    }
    let mut warnings = report::Report::new(&locations);
    preflight::warnings(&mut warnings, &config);
    Ok(Checked {
        config,
        warnings: warnings.diagnostics,
    })
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
mod cache_tests;
#[cfg(test)]
mod gateway_tests;
#[cfg(test)]
mod hardening_tests;
#[cfg(test)]
mod shaping_tests;
#[cfg(test)]
mod tests;
