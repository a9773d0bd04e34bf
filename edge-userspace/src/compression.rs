//! Response compression (gzip, brotli, zstd) negotiated with the client's
//! Accept-Encoding, for configured content types and sizes.
//!
//! Pingora's own compression module compresses any text-like type, ignores
//! q-values and takes the client's first coding; edge needs the operator's
//! content types, minimum size and preference order, and must honour
//! `q=0`. So negotiation is done here and only pingora's encoders (gzip via
//! flate2, brotli, zstd) are reused.
//!
//! It runs in `response_filter`/`response_body_filter`, after the cache:
//! stored objects are what the upstream sent, and hits are compressed per
//! client like misses.

use crate::config::{CompressionPolicy, Encoding};
use bytes::Bytes;
use http::{StatusCode, header};
use pingora::Result;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::compression::{Algorithm, Encode};
use std::sync::Arc;

/// The compression state of one request, kept in the proxy's ctx.
#[derive(Default)]
pub struct RequestCompression {
    /// The policy this request follows; the proxy sets it (the listener's
    /// default, or a route's override).
    pub policy: Option<Arc<CompressionPolicy>>,
    /// The coding negotiated with the client, with its level.
    chosen: Option<(Encoding, u32)>,
    encoder: Option<Box<dyn Encode + Send + Sync>>,
}

impl RequestCompression {
    /// The coding applied to the response, if any.
    pub fn applied(&self) -> Option<Encoding> {
        self.encoder.as_ref().and(self.chosen.map(|(e, _)| e))
    }
}

/// One Accept-Encoding member: coding (lower case) and weight in 0..=1000.
fn accept_encoding(value: &str) -> Vec<(String, u16)> {
    value
        .split(',')
        .filter_map(|member| {
            let mut parts = member.split(';');
            let coding = parts.next()?.trim().to_ascii_lowercase();
            if coding.is_empty() {
                return None;
            }
            let mut q = 1000;
            for p in parts {
                if let Some((k, v)) = p.split_once('=')
                    && k.trim().eq_ignore_ascii_case("q")
                {
                    q = parse_qvalue(v.trim())?;
                }
            }
            Some((coding, q))
        })
        .collect()
}

/// `0`, `0.5`, `1.000` → 0, 500, 1000 (RFC 9110 §12.4.2); invalid → None.
fn parse_qvalue(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_val: u16 = format!("{frac:0<3}").parse().ok()?;
    match int {
        "0" => Some(frac_val),
        "1" if frac_val == 0 => Some(1000),
        _ => None,
    }
}

/// Picks the coding for a client that sent `accept`: the highest weight
/// among `offered`, ties going to the server's order; `None` if the client
/// accepts none of them (or sent no Accept-Encoding).
pub fn negotiate(accept: Option<&str>, offered: &[(Encoding, u32)]) -> Option<(Encoding, u32)> {
    let members = accept_encoding(accept?);
    let weight = |e: Encoding| {
        members
            .iter()
            .find(|(c, _)| c == e.as_str())
            .or_else(|| members.iter().find(|(c, _)| c == "*"))
            .map_or(0, |(_, q)| *q)
    };
    let mut best: Option<((Encoding, u32), u16)> = None;
    for &(e, level) in offered {
        let q = weight(e);
        if q > 0 && best.is_none_or(|(_, bq)| q > bq) {
            best = Some(((e, level), q));
        }
    }
    best.map(|(choice, _)| choice)
}

/// `request_filter` (or wherever the request's policy is known): remembers
/// the policy and negotiates the coding.
pub fn request_filter(
    req: &RequestHeader,
    policy: Option<&Arc<CompressionPolicy>>,
    state: &mut RequestCompression,
) {
    if state.policy.is_none() {
        state.policy = policy.cloned();
    }
    let Some(policy) = &state.policy else {
        return;
    };
    // A HEAD response must show what GET would, without a body to encode;
    // leaving both alone keeps them consistent with the upstream's.
    if req.method == http::Method::HEAD {
        return;
    }
    let accept = req
        .headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok());
    state.chosen = negotiate(accept, &policy.algorithms);
}

fn media_type(resp: &ResponseHeader) -> Option<String> {
    let ct = resp.headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(ct.split(';').next()?.trim().to_ascii_lowercase())
}

fn type_matches(policy: &CompressionPolicy, media: &str) -> bool {
    policy
        .content_types
        .iter()
        .any(|t| match t.strip_suffix("/*") {
            Some(prefix) => media.split('/').next() == Some(prefix),
            None => t == media,
        })
}

/// Whether the response is one this policy compresses (type, size,
/// status, not already encoded, no `no-transform`).
fn compressible(policy: &CompressionPolicy, resp: &ResponseHeader) -> bool {
    // A gRPC stream is framed message by message and ends in trailers: a
    // whole-body encoder would hold it back (gRPC compresses messages
    // itself).
    if crate::grpc::is_grpc(&resp.headers) {
        return false;
    }
    let status = resp.status;
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::PARTIAL_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return false;
    }
    let encoded = resp
        .headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    let no_transform = resp
        .headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("no-transform"));
    if encoded || no_transform {
        return false;
    }
    let too_small = resp
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
        .is_some_and(|len| len < policy.min_size);
    !too_small && media_type(resp).is_some_and(|m| type_matches(policy, &m))
}

fn add_vary_accept_encoding(resp: &mut ResponseHeader) -> Result<()> {
    let varies = resp
        .headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|n| {
            let n = n.trim();
            n == "*" || n.eq_ignore_ascii_case("accept-encoding")
        });
    if !varies {
        resp.append_header(header::VARY, "Accept-Encoding")?;
    }
    Ok(())
}

/// The encoder for `e` at `level`.
fn encoder(e: Encoding, level: u32) -> Option<Box<dyn Encode + Send + Sync>> {
    match e {
        Encoding::Zstd => Algorithm::Zstd.compressor(level),
        Encoding::Gzip => Algorithm::Gzip.compressor(level),
        Encoding::Brotli => Some(Box::new(Brotli::new(level))),
    }
}

/// Window of the brotli encoder (2^22 bytes, the format's default).
const BROTLI_LGWIN: u32 = 22;
/// Buffer of the brotli encoder.
const BROTLI_BUFFER: usize = 4096;

/// A brotli stream that is properly ended: pingora 0.9's brotli encoder
/// only flushes at the end, leaving the stream without its last
/// meta-block, which strict decoders reject as truncated.
struct Brotli {
    writer: Option<brotli::CompressorWriter<Vec<u8>>>,
    total_in: usize,
    total_out: usize,
    duration: std::time::Duration,
}

impl Brotli {
    fn new(level: u32) -> Self {
        Self {
            writer: Some(brotli::CompressorWriter::new(
                Vec::new(),
                BROTLI_BUFFER,
                level,
                BROTLI_LGWIN,
            )),
            total_in: 0,
            total_out: 0,
            duration: std::time::Duration::ZERO,
        }
    }
}

impl Encode for Brotli {
    fn encode(&mut self, input: &[u8], end: bool) -> Result<Bytes> {
        use pingora::OrErr;
        use std::io::Write;
        let start = std::time::Instant::now();
        let Some(writer) = self.writer.as_mut() else {
            return Ok(Bytes::new());
        };
        self.total_in += input.len();
        writer.write_all(input).or_err(
            pingora::ErrorType::InternalError,
            "while compressing brotli",
        )?;
        let out = if end {
            // into_inner() writes the final meta-block.
            self.writer
                .take()
                .map(|w| w.into_inner())
                .unwrap_or_default()
        } else {
            std::mem::take(writer.get_mut())
        };
        self.total_out += out.len();
        self.duration += start.elapsed();
        Ok(out.into())
    }

    fn stat(&self) -> (&'static str, usize, usize, std::time::Duration) {
        ("brotli", self.total_in, self.total_out, self.duration)
    }
}

/// `response_filter`: decides whether to compress, and rewrites the header
/// (Content-Encoding, no Content-Length, weak ETag, Vary).
pub fn response_filter(resp: &mut ResponseHeader, state: &mut RequestCompression) -> Result<()> {
    let Some(policy) = state.policy.clone() else {
        return Ok(());
    };
    if !compressible(&policy, resp) {
        return Ok(());
    }
    // The representation now depends on Accept-Encoding, whatever this
    // client gets.
    add_vary_accept_encoding(resp)?;
    let Some((encoding, level)) = state.chosen else {
        return Ok(());
    };
    let Some(encoder) = encoder(encoding, level) else {
        return Ok(());
    };
    resp.insert_header(header::CONTENT_ENCODING, encoding.as_str())?;
    resp.remove_header(&header::CONTENT_LENGTH);
    resp.remove_header(&header::ACCEPT_RANGES);
    resp.insert_header(header::TRANSFER_ENCODING, "chunked")?;
    // A strong validator names exact bytes, which these no longer are.
    crate::proxy::headers::weaken_etag(resp)?;
    state.encoder = Some(encoder);
    Ok(())
}

/// `response_body_filter`: encodes the body as it streams.
pub fn response_body_filter(
    body: &mut Option<Bytes>,
    end_of_stream: bool,
    state: &mut RequestCompression,
) -> Result<()> {
    let Some(encoder) = state.encoder.as_mut() else {
        return Ok(());
    };
    let input = body.as_deref().unwrap_or(&[]);
    if input.is_empty() && !end_of_stream {
        return Ok(());
    }
    *body = Some(encoder.encode(input, end_of_stream)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[(Encoding, u32)] = &[
        (Encoding::Zstd, 3),
        (Encoding::Brotli, 4),
        (Encoding::Gzip, 6),
    ];

    fn pick(accept: &str) -> Option<Encoding> {
        negotiate(Some(accept), ALL).map(|(e, _)| e)
    }

    #[test]
    fn negotiation_follows_q_values_then_server_order() {
        assert_eq!(pick("gzip"), Some(Encoding::Gzip));
        assert_eq!(pick("gzip, br"), Some(Encoding::Brotli));
        assert_eq!(pick("gzip, br, zstd"), Some(Encoding::Zstd));
        assert_eq!(pick("zstd;q=0.5, gzip;q=0.9"), Some(Encoding::Gzip));
        assert_eq!(pick("zstd;q=0, br;q=0, gzip;q=0"), None);
        assert_eq!(pick("*"), Some(Encoding::Zstd));
        assert_eq!(pick("*;q=0.1, zstd;q=0"), Some(Encoding::Brotli));
        assert_eq!(pick("identity"), None);
        assert_eq!(pick("GZIP;Q=1.0"), Some(Encoding::Gzip));
        assert_eq!(
            pick("deflate, gzip;q=2"),
            None,
            "an invalid q drops the member"
        );
        assert_eq!(negotiate(None, ALL), None);
    }

    #[test]
    fn brotli_streams_end() {
        let mut b = Brotli::new(4);
        let mut out = b.encode(b"hello ", false).unwrap().to_vec();
        out.extend_from_slice(&b.encode(b"world", false).unwrap());
        out.extend_from_slice(&b.encode(b"", true).unwrap());
        let mut plain = Vec::new();
        brotli::BrotliDecompress(&mut &out[..], &mut plain).unwrap();
        assert_eq!(plain, b"hello world");
    }

    #[test]
    fn qvalues() {
        assert_eq!(parse_qvalue("0"), Some(0));
        assert_eq!(parse_qvalue("0.5"), Some(500));
        assert_eq!(parse_qvalue("0.001"), Some(1));
        assert_eq!(parse_qvalue("1.000"), Some(1000));
        assert_eq!(parse_qvalue("1.5"), None);
        assert_eq!(parse_qvalue("0.0001"), None);
    }

    #[test]
    fn types_and_sizes() {
        let p = CompressionPolicy {
            algorithms: ALL.to_vec(),
            content_types: vec!["text/*".into(), "application/json".into()],
            min_size: 100,
        };
        let resp = |ct: &str, len: Option<u64>, extra: &[(&str, &str)]| {
            let mut r = ResponseHeader::build(200, None).unwrap();
            r.insert_header("content-type", ct).unwrap();
            if let Some(len) = len {
                r.insert_header("content-length", len.to_string()).unwrap();
            }
            for (k, v) in extra {
                r.insert_header(k.to_string(), *v).unwrap();
            }
            r
        };
        assert!(compressible(
            &p,
            &resp("text/html; charset=utf-8", Some(500), &[])
        ));
        assert!(compressible(&p, &resp("application/json", None, &[])));
        assert!(!compressible(&p, &resp("image/png", Some(500), &[])));
        assert!(!compressible(&p, &resp("text/plain", Some(50), &[])));
        assert!(!compressible(
            &p,
            &resp("text/plain", Some(500), &[("content-encoding", "gzip")])
        ));
        assert!(!compressible(
            &p,
            &resp(
                "text/plain",
                Some(500),
                &[("cache-control", "no-transform")]
            )
        ));
    }
}
