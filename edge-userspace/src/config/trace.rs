//! Request ids and trace context (`listeners[].request_id`,
//! `listeners[].tracing`): surface, validation and model in one place.
//!
//! Both are on for every HTTP listener without a line of configuration:
//! a request id costs one header and is what users of nginx's
//! `$request_id` and Envoy's `x-request-id` expect to find in their logs,
//! and propagating `traceparent` costs a parse and a new span id. What
//! can be chosen is the id's field, whether trusted proxies' ids are
//! kept, and the share of the traces edge starts that are sampled, which
//! defaults to none: sampling commits the services behind edge to
//! recording, which is theirs to ask for.

use super::{bounds::MAX_NAME_LEN, validate::Validator};
use serde::Deserialize;

/// The field a request id travels in by default.
pub const DEFAULT_REQUEST_ID_HEADER: &str = "X-Request-Id";

/// Fields that cannot carry a request id besides the hop-by-hop ones
/// ([`crate::proxy::headers::HOP_BY_HOP`]): HTTP's framing, the trace
/// context itself, fields edge writes for its own purposes, and fields
/// whose meaning a client or backend relies on.
const RESERVED: [&str; 16] = [
    "transfer-encoding",
    "content-length",
    "content-type",
    "content-encoding",
    "host",
    "traceparent",
    "tracestate",
    "via",
    "cdn-loop",
    "forwarded",
    "cookie",
    "set-cookie",
    "authorization",
    "proxy-authorization",
    "location",
    "www-authenticate",
];

/// `listeners[].request_id` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestIdSurface {
    /// The field's name; default `X-Request-Id`.
    #[serde(default)]
    pub header: Option<String>,
    /// Whether an id from a peer in `trusted_proxies` is kept; default true.
    #[serde(default)]
    pub trust_incoming: Option<bool>,
}

/// `listeners[].tracing` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracingSurface {
    /// The share (0 to 1) of the traces edge starts that are sampled;
    /// default 0.
    #[serde(default)]
    pub sample_ratio: Option<f64>,
}

/// A listener's request ids and W3C trace context, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestTrace {
    /// The request id field, as written (HTTP/1 sends it in this case);
    /// `Bytes`, so that the copy each request's headers take is a
    /// reference count rather than an allocation. Checked to be a valid
    /// field name (ASCII).
    pub header: bytes::Bytes,
    /// Whether an id a trusted proxy sent is kept (else edge makes one).
    pub trust_incoming: bool,
    /// The share of the traces edge starts (no valid `traceparent` came
    /// in) that are sampled; an incoming trace keeps its caller's choice.
    pub sample_ratio: f64,
}

impl RequestTrace {
    /// [`RequestTrace::header`] as text.
    pub fn header_str(&self) -> &str {
        // Checked as a field name when the configuration was read.
        std::str::from_utf8(&self.header).unwrap_or(DEFAULT_REQUEST_ID_HEADER)
    }
}

impl Default for RequestTrace {
    fn default() -> Self {
        Self {
            header: bytes::Bytes::from_static(DEFAULT_REQUEST_ID_HEADER.as_bytes()),
            trust_incoming: true,
            sample_ratio: 0.0,
        }
    }
}

/// Checks a listener's `request_id` and `tracing` (`path` is the
/// listener's).
pub(super) fn validate(
    v: &mut Validator<'_>,
    path: &str,
    request_id: Option<&RequestIdSurface>,
    tracing_settings: Option<&TracingSurface>,
) -> RequestTrace {
    let mut out = RequestTrace::default();
    if let Some(r) = request_id {
        if let Some(header) = &r.header {
            let hpath = format!("{path}.request_id.header");
            let lower = header.to_ascii_lowercase();
            if header.len() > MAX_NAME_LEN {
                v.error(
                    hpath,
                    format!("the header name is longer than {MAX_NAME_LEN} characters"),
                );
            } else if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                v.error(
                    hpath,
                    format!("bad header name {header:?}: letters, digits and !#$%&'*+-.^_`|~ only"),
                );
            } else if RESERVED.contains(&lower.as_str())
                || crate::proxy::headers::HOP_BY_HOP.contains(&lower.as_str())
                || lower.starts_with("x-forwarded-")
                || lower.starts_with("grpc-")
            {
                v.error(
                    hpath,
                    format!(
                        "{header} cannot carry the request id: HTTP, gRPC or edge itself gives \
                         it a meaning (use a name such as X-Request-Id)"
                    ),
                );
            } else {
                out.header = bytes::Bytes::from(header.clone());
            }
        }
        out.trust_incoming = r.trust_incoming.unwrap_or(true);
    }
    if let Some(ratio) = tracing_settings.and_then(|t| t.sample_ratio) {
        // NaN is out of range too.
        if (0.0..=1.0).contains(&ratio) {
            out.sample_ratio = ratio;
        } else {
            v.error(
                format!("{path}.tracing.sample_ratio"),
                format!("sample_ratio {ratio} is out of range: 0 to 1"),
            );
        }
    }
    out
}
