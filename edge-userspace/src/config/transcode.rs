//! `routes[].transcode`: REST→gRPC transcoding from a descriptor set.

use super::{model::Pool, validate::Validator};
use serde::Deserialize;
use std::path::PathBuf;

/// Default `max_response`.
const DEFAULT_MAX_RESPONSE: u64 = 4 * 1024 * 1024;

/// `routes[].transcode` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranscodeSurface {
    /// A `protoc --include_imports --descriptor_set_out` file, relative
    /// to the config file.
    pub descriptor_set: String,
    /// Fully-qualified services whose `google.api.http` bindings the
    /// route serves.
    pub services: Vec<String>,
    /// Largest reply message turned into JSON; default 4 MiB, at most
    /// 16 MiB.
    #[serde(default)]
    pub max_response: Option<super::units::Quantity>,
}

/// A route's transcoding, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transcode {
    /// The descriptor set (absolute).
    pub descriptor_set: PathBuf,
    /// The services served.
    pub services: Vec<String>,
    /// Largest reply message, bytes.
    pub max_response: usize,
}

/// Checks `t` at `path` (a route proxying to `pool`): the descriptor set
/// loads, names every service, and each binding is usable.
pub(super) fn validate(
    v: &mut Validator<'_>,
    path: &str,
    t: &TranscodeSurface,
    pool: Option<&Pool>,
) -> Option<Transcode> {
    match pool {
        None => {
            v.error(
                path.to_string(),
                "transcode needs the route to proxy to a pool (of protocol h2 or h2c)",
            );
        }
        Some(p) if !p.protocol.is_h2() => v.error(
            path.to_string(),
            format!(
                "transcode calls gRPC: pool {:?} must have protocol h2 or h2c (it has {})",
                p.name,
                p.protocol.as_str()
            ),
        ),
        Some(_) => {}
    }
    if t.services.is_empty() {
        v.error(format!("{path}.services"), "name at least one service");
    }
    let max = match &t.max_response {
        Some(q) => v
            .size(format!("{path}.max_response"), q)
            .unwrap_or(DEFAULT_MAX_RESPONSE),
        None => DEFAULT_MAX_RESPONSE,
    };
    if max == 0 || max > super::shaping::MAX_RESPONSE_BODY {
        v.error(
            format!("{path}.max_response"),
            format!(
                "max_response must be between 1 byte and {} bytes (it is {max})",
                super::shaping::MAX_RESPONSE_BODY
            ),
        );
    }
    let file = v.base_dir().join(&t.descriptor_set);
    match crate::transcode::Transcoder::load(&file, &t.services) {
        Ok(_) => {}
        Err(crate::transcode::LoadError::UnknownService(name)) => {
            let i = t.services.iter().position(|s| *s == name).unwrap_or(0);
            v.error(
                format!("{path}.services[{i}]"),
                format!("service {name} is not in {}", file.display()),
            );
        }
        Err(crate::transcode::LoadError::NoBindings(name)) => {
            let i = t.services.iter().position(|s| *s == name).unwrap_or(0);
            v.error(
                format!("{path}.services[{i}]"),
                format!("service {name} has no method with a google.api.http option"),
            );
        }
        Err(e) => v.error(format!("{path}.descriptor_set"), e.to_string()),
    }
    Some(Transcode {
        descriptor_set: file,
        services: t.services.clone(),
        max_response: usize::try_from(max.clamp(1, super::shaping::MAX_RESPONSE_BODY))
            .unwrap_or(usize::MAX),
    })
}
