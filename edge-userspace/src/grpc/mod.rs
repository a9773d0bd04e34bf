//! gRPC as edge sees it: which requests are gRPC, their status codes and
//! deadlines, the per-message limit on request streams, and the standard
//! health-check protocol.
//!
//! edge does not decode gRPC messages to proxy them: it reads the HTTP/2
//! framing gRPC adds (`content-type`, `grpc-timeout`, `grpc-status` in the
//! head or the trailers, the 5-byte prefix of each length-prefixed
//! message) and leaves the protobuf payload to the two ends.

pub mod code;
pub mod frames;
pub mod health;

pub use code::Code;
use http::HeaderMap;
use std::time::Duration;

/// Whether a request or response with these headers is gRPC
/// (`application/grpc` or `application/grpc+FORMAT`); gRPC-Web, which
/// browsers speak over HTTP/1.1, is not. (The proxy takes only HTTP/2
/// requests for gRPC.)
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| is_grpc_type(v.as_bytes()))
}

fn is_grpc_type(value: &[u8]) -> bool {
    let Some(rest) = value.strip_prefix(b"application/grpc") else {
        return false;
    };
    match rest.first() {
        None | Some(b'+') | Some(b';') => true,
        Some(_) => false,
    }
}

/// Longest `grpc-timeout` value: at most 8 digits and a unit.
const MAX_TIMEOUT_DIGITS: usize = 8;

/// The deadline a client put in `grpc-timeout` (`100m`, `5S`, `1H`), or
/// `None` when absent or not of the form the gRPC spec allows (an
/// unreadable deadline is ignored, as gRPC servers do, rather than
/// turned into an error).
pub fn timeout(headers: &HeaderMap) -> Option<Duration> {
    parse_timeout(headers.get("grpc-timeout")?.to_str().ok()?)
}

/// `TimeoutValue TimeoutUnit`: 1 to 8 ASCII digits, then one of
/// `H M S m u n`.
pub fn parse_timeout(text: &str) -> Option<Duration> {
    let (unit, digits) = text.as_bytes().split_last()?;
    if digits.is_empty()
        || digits.len() > MAX_TIMEOUT_DIGITS
        || !digits.iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    // At most 8 digits: no overflow below.
    let n = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The `grpc-status` of a response head or its trailers, when present and
/// readable (an unreadable one is `UNKNOWN`, as gRPC clients take it).
pub fn status(headers: &HeaderMap) -> Option<Code> {
    let v = headers.get("grpc-status")?;
    Some(
        v.to_str()
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
            .map_or(Code::Unknown, Code::from_u32),
    )
}

/// `grpc-message` is percent-encoded UTF-8: everything outside printable
/// ASCII, and `%` itself, is escaped.
pub fn encode_message(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn grpc_content_types() {
        for ok in [
            "application/grpc",
            "application/grpc+proto",
            "application/grpc+json",
            "application/grpc; charset=utf-8",
        ] {
            assert!(is_grpc(&headers(&[("content-type", ok)])), "{ok}");
        }
        for not in [
            "application/grpc-web",
            "application/grpc-web+proto",
            "application/grpcx",
            "application/json",
        ] {
            assert!(!is_grpc(&headers(&[("content-type", not)])), "{not}");
        }
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(
            parse_timeout("99999999H"),
            Some(Duration::from_secs(99_999_999 * 3600))
        );
        assert_eq!(parse_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_timeout("7n"), Some(Duration::from_nanos(7)));
        for bad in [
            "",
            "1é",
            "m",
            "100",
            "100x",
            "123456789S",
            "-1S",
            "1.5S",
            " 1S",
            "1 S",
        ] {
            assert_eq!(parse_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn statuses() {
        assert_eq!(status(&headers(&[("grpc-status", "0")])), Some(Code::Ok));
        assert_eq!(
            status(&headers(&[("grpc-status", "14")])),
            Some(Code::Unavailable)
        );
        assert_eq!(
            status(&headers(&[("grpc-status", "x")])),
            Some(Code::Unknown)
        );
        assert_eq!(
            status(&headers(&[("grpc-status", "99")])),
            Some(Code::Unknown)
        );
        assert_eq!(status(&HeaderMap::new()), None);
    }

    #[test]
    fn messages_are_percent_encoded() {
        assert_eq!(encode_message("no route"), "no route");
        assert_eq!(encode_message("100% é\n"), "100%25 %C3%A9%0A");
    }
}
