//! Durations (`250ms`, `5s`, `2m`, `1h`) and byte sizes (`512`, `64KiB`,
//! `10MB`, `1GiB`) as written in the YAML file.
//!
//! The surface keeps them as [`Quantity`] text (a YAML string or integer), and
//! validation parses them here, so a bad value is reported with its line
//! together with every other error instead of stopping the parse.

use serde::{Deserialize, Deserializer, de};
use std::{fmt, time::Duration};

/// A duration or size as written: a string, or a bare integer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quantity(pub String);

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Quantity;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 5s or a size such as 64KiB")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Parses a duration: an integer followed by `ms`, `s`, `m` or `h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let bad = || {
        format!("bad duration {text:?}: expected a number with a unit, such as 250ms, 5s, 2m or 1h")
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let ms = match unit.trim() {
        "ms" => Some(n),
        "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => return Err(bad()),
    };
    ms.map(Duration::from_millis)
        .ok_or_else(|| format!("duration {text:?} is too large"))
}

/// Parses a byte size: an integer, optionally followed by `B`, `KB`/`KiB`,
/// `MB`/`MiB` or `GB`/`GiB` (the `K`, `M`, `G` forms are binary: 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let bad = || {
        format!(
            "bad size {text:?}: expected bytes, optionally with a unit, such as 512, 64KiB, 10MiB or 1GiB"
        )
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KB" | "KiB" | "k" | "kB" => 1 << 10,
        "M" | "MB" | "MiB" => 1 << 20,
        "G" | "GB" | "GiB" => 1 << 30,
        _ => return Err(bad()),
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(
            parse_duration("5")
                .unwrap_err()
                .contains("expected a number with a unit")
        );
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("1.5s").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("10MB"), Ok(10 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert!(parse_size("12 parsecs").unwrap_err().contains("bad size"));
        assert!(
            parse_size("99999999999999GiB")
                .unwrap_err()
                .contains("too large")
        );
    }
}
