//! Response compression's configuration (`listeners[].compression`, later
//! `routes[].compression`): surface, validation and model in one place.

use super::{units::Quantity, validate::Validator};
use serde::{Deserialize, Deserializer, de};
use std::{collections::HashMap, fmt};

/// Default smallest body that is compressed, in bytes.
pub const DEFAULT_MIN_SIZE: u64 = 256;
/// Default content types compressed (a trailing `/*` matches a whole type).
pub const DEFAULT_CONTENT_TYPES: &[&str] = &[
    "text/*",
    "application/json",
    "application/javascript",
    "application/xml",
    "image/svg+xml",
];

/// A content coding edge can produce.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// zstd (RFC 8878).
    #[serde(rename = "zstd")]
    Zstd,
    /// Brotli (RFC 7932).
    #[serde(rename = "br")]
    Brotli,
    /// gzip (RFC 1952).
    #[serde(rename = "gzip")]
    Gzip,
}

impl Encoding {
    /// The token used in Accept-Encoding / Content-Encoding and the YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Zstd => "zstd",
            Encoding::Brotli => "br",
            Encoding::Gzip => "gzip",
        }
    }

    /// The levels the encoder accepts.
    pub fn levels(self) -> std::ops::RangeInclusive<u32> {
        match self {
            Encoding::Zstd => 1..=19,
            Encoding::Brotli => 1..=11,
            Encoding::Gzip => 1..=9,
        }
    }

    /// A level that trades little latency for a good ratio on dynamic
    /// responses (brotli 11 and zstd 19 are for precompressed assets).
    pub fn default_level(self) -> u32 {
        match self {
            Encoding::Zstd => 3,
            Encoding::Brotli => 4,
            Encoding::Gzip => 6,
        }
    }
}

/// `compression:` as written: `off`/`false`, or settings.
#[derive(Debug)]
pub enum CompressionSurface {
    /// `compression: off` (or `false`).
    Off,
    /// `compression: { ... }`.
    On(Settings),
}

/// The settings of `compression: { ... }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Server preference order.
    #[serde(default)]
    pub algorithms: Option<Vec<Encoding>>,
    /// Media types compressed.
    #[serde(default)]
    pub content_types: Option<Vec<String>>,
    /// Smallest body compressed.
    #[serde(default)]
    pub min_size: Option<Quantity>,
    /// One level for every algorithm (else each its default).
    #[serde(default)]
    pub level: Option<u32>,
}

impl<'de> Deserialize<'de> for CompressionSurface {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = CompressionSurface;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`off` or a map of compression settings")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                if v {
                    Ok(CompressionSurface::On(Settings::default()))
                } else {
                    Ok(CompressionSurface::Off)
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match v {
                    "off" => Ok(CompressionSurface::Off),
                    "on" => Ok(CompressionSurface::On(Settings::default())),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                Settings::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(CompressionSurface::On)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// How responses are compressed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompressionPolicy {
    /// Codings with their levels, in server preference order.
    pub algorithms: Vec<(Encoding, u32)>,
    /// Media types (lower case, no parameters); `type/*` matches a type.
    pub content_types: Vec<String>,
    /// Bodies shorter than this (by Content-Length) are left alone.
    pub min_size: u64,
}

/// Validates a `compression:` at `path`; `None` when absent or `off`.
pub(super) fn policy(
    v: &mut Validator<'_>,
    path: &str,
    s: Option<&CompressionSurface>,
) -> Option<CompressionPolicy> {
    let CompressionSurface::On(s) = s? else {
        return None;
    };
    let algorithms = s
        .algorithms
        .clone()
        .unwrap_or_else(|| vec![Encoding::Zstd, Encoding::Brotli, Encoding::Gzip]);
    if algorithms.is_empty() {
        v.error(
            format!("{path}.algorithms"),
            "no algorithms: list some of zstd, br, gzip (or write `compression: off`)",
        );
    }
    let mut seen = HashMap::new();
    let mut out = Vec::new();
    for (i, a) in algorithms.iter().enumerate() {
        let apath = format!("{path}.algorithms[{i}]");
        let repeated = seen.contains_key(a);
        v.unique(&mut seen, *a, apath, || {
            format!("algorithm {} is listed twice", a.as_str())
        });
        if repeated {
            continue;
        }
        let level = match s.level {
            Some(level) if !a.levels().contains(&level) => {
                v.error(
                    format!("{path}.level"),
                    format!(
                        "level {level} is out of range for {} ({}..={})",
                        a.as_str(),
                        a.levels().start(),
                        a.levels().end()
                    ),
                );
                a.default_level()
            }
            Some(level) => level,
            None => a.default_level(),
        };
        out.push((*a, level));
    }
    let content_types: Vec<String> = match &s.content_types {
        Some(list) => list.iter().map(|t| t.trim().to_ascii_lowercase()).collect(),
        None => DEFAULT_CONTENT_TYPES
            .iter()
            .map(|t| t.to_string())
            .collect(),
    };
    if content_types.is_empty() {
        v.error(
            format!("{path}.content_types"),
            "no content types: list some, such as text/html (or write `compression: off`)",
        );
    }
    for (i, t) in content_types.iter().enumerate() {
        let valid = t
            .split_once('/')
            .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && !b.contains('/'))
            && !t.contains([';', ' ', ',']);
        if !valid {
            v.error(
                format!("{path}.content_types[{i}]"),
                format!(
                    "bad content type {t:?}: expected type/subtype, such as text/html or text/*"
                ),
            );
        }
    }
    let min_size = match &s.min_size {
        Some(q) => v
            .size(format!("{path}.min_size"), q)
            .unwrap_or(DEFAULT_MIN_SIZE),
        None => DEFAULT_MIN_SIZE,
    };
    Some(CompressionPolicy {
        algorithms: out,
        content_types,
        min_size,
    })
}
