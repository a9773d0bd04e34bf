//! Request identity and W3C Trace Context (level 1) on the proxy path.
//!
//! Every request gets an id: the one a trusted proxy sent, when the
//! listener keeps incoming ids and it is 1 to 128 visible ASCII
//! characters, else a new random UUID (version 4). The id is not the
//! trace id: a caller's trace spans many requests, and each request needs
//! an id of its own.
//!
//! Every request also has a place in a trace. A valid incoming
//! `traceparent` keeps its trace id and its sampled flag (the caller
//! decided), and edge's hop gets a new span id, sent upstream as the
//! `parent-id`; with none, or an invalid one, edge starts a trace, sampled
//! at the listener's `sample_ratio`. `tracestate` travels unchanged beside
//! a valid `traceparent`, and is dropped when it breaks its bounds or its
//! grammar, or when the `traceparent` was invalid (the spec forbids
//! reading it then).
//!
//! Ids come from OpenSSL's generator, drawn in blocks per thread: 128-bit
//! trace ids must stay unique across every thread, process and host that
//! reports to one tracing system, which a generator with 64 bits of state
//! (fastrand) cannot promise. They are not secrets all the same: nothing
//! may use one as a credential.
//!
//! The functions here work on header maps and heads only; `proxy` calls
//! them from its phases.

use crate::config::RequestTrace;
use pingora::http::{RequestHeader, ResponseHeader};
use serde::{Serialize, Serializer};
use std::{cell::RefCell, fmt};

/// The W3C trace context field.
pub const TRACEPARENT: &str = "traceparent";
/// The vendors' state beside it.
pub const TRACESTATE: &str = "tracestate";
// Looked up by `HeaderName`, which skips the parse of a `&str` name.
const TRACEPARENT_NAME: http::HeaderName = http::HeaderName::from_static(TRACEPARENT);
const TRACESTATE_NAME: http::HeaderName = http::HeaderName::from_static(TRACESTATE);
/// Longest incoming request id kept.
pub const MAX_REQUEST_ID_LEN: usize = 128;
/// Longest `tracestate` passed on (the spec asks vendors to pass at least
/// 512 characters; longer ones are dropped whole, not cut).
pub const MAX_TRACESTATE_LEN: usize = 512;
/// Most list members of a `tracestate` (the spec's own limit).
pub const MAX_TRACESTATE_MEMBERS: usize = 32;
/// Length of a version-00 `traceparent`: `vv-` + 32 + `-` + 16 + `-` + 2.
const TRACEPARENT_LEN: usize = 55;
/// The one flag of level 1.
const SAMPLED: u8 = 0x01;

/// A parsed `traceparent`: what every version so far has in common.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    /// The whole trace's id (never zero).
    pub trace_id: u128,
    /// The id of the sender's span (never zero).
    pub parent_id: u64,
    /// Trace flags.
    pub flags: u8,
}

impl TraceParent {
    /// Whether the trace is sampled (recorded by the caller).
    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }

    /// The field in version 00, the only version edge writes.
    pub fn header_value(&self) -> String {
        let mut v = String::with_capacity(55);
        v.push_str("00-");
        push_hex(&mut v, self.trace_id, 32);
        v.push('-');
        push_hex(&mut v, u128::from(self.parent_id), 16);
        v.push('-');
        push_hex(&mut v, u128::from(self.flags), 2);
        v
    }
}

/// Appends the low `digits` hex digits of `n` (lower case, zero-padded):
/// once or twice a request, where format! cost more than the rest.
fn push_hex(out: &mut String, n: u128, digits: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in (0..digits).rev() {
        out.push(char::from(HEX[((n >> (4 * i)) & 0xf) as usize]));
    }
}

/// Parses a `traceparent` value as W3C Trace Context level 1 says: lower-
/// case hex only, neither id all zeros, version `ff` invalid, version 00
/// exactly 55 characters; a higher version is read by its first four
/// fields when what follows them starts with `-`. Surrounding spaces and
/// tabs (HTTP's optional whitespace) are ignored.
pub fn parse_traceparent(value: &[u8]) -> Option<TraceParent> {
    let v = trim_ows(value);
    if v.len() < TRACEPARENT_LEN {
        return None;
    }
    let version = lower_hex(v.get(0..2)?)?;
    let dashes = [2usize, 35, 52].iter().all(|&i| v.get(i) == Some(&b'-'));
    if version == 0xff || !dashes {
        return None;
    }
    let trace_id = lower_hex(v.get(3..35)?)?;
    let parent_id = u64::try_from(lower_hex(v.get(36..52)?)?).ok()?;
    let flags = u8::try_from(lower_hex(v.get(53..55)?)?).ok()?;
    let rest_ok = if version == 0 {
        v.len() == TRACEPARENT_LEN
    } else {
        // Fields a later version adds follow after a dash; nothing of
        // them is read.
        v.len() == TRACEPARENT_LEN || v.get(TRACEPARENT_LEN) == Some(&b'-')
    };
    if !rest_ok || trace_id == 0 || parent_id == 0 {
        return None;
    }
    Some(TraceParent {
        trace_id,
        parent_id,
        flags,
    })
}

/// `bytes` as a number, if they are 1 to 32 lower-case hex digits.
fn lower_hex(bytes: &[u8]) -> Option<u128> {
    if bytes.is_empty() || bytes.len() > 32 {
        return None;
    }
    bytes.iter().try_fold(0u128, |n, &b| {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        Some((n << 4) | u128::from(digit))
    })
}

/// `v` without leading and trailing spaces and tabs.
fn trim_ows(v: &[u8]) -> &[u8] {
    let ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = v.iter().position(|b| !ows(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !ows(b)).map_or(start, |i| i + 1);
    v.get(start..end).unwrap_or_default()
}

/// Whether a `tracestate` value may be passed on: at most
/// [`MAX_TRACESTATE_LEN`] bytes and [`MAX_TRACESTATE_MEMBERS`] members,
/// each `key=value` by the spec's grammar, no key twice. Empty members
/// (`a=1,,b=2`) are allowed, as the spec says.
pub fn valid_tracestate(value: &str) -> bool {
    if value.len() > MAX_TRACESTATE_LEN {
        return false;
    }
    let mut keys: Vec<&str> = Vec::new();
    for member in value.split(',') {
        let member = member.trim_matches([' ', '\t']);
        if member.is_empty() {
            continue;
        }
        let Some((key, val)) = member.split_once('=') else {
            return false;
        };
        if !valid_key(key) || !valid_value(val) || keys.contains(&key) {
            return false;
        }
        keys.push(key);
        if keys.len() > MAX_TRACESTATE_MEMBERS {
            return false;
        }
    }
    true
}

/// A character of a `tracestate` key after its first.
fn key_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'*' | b'/')
}

/// A `tracestate` key: `simple-key`, or `tenant@system` (multi-tenant).
fn valid_key(key: &str) -> bool {
    let part = |s: &str, max: usize, first: fn(&u8) -> bool| {
        let b = s.as_bytes();
        b.len() <= max && b.first().is_some_and(first) && b.iter().all(|&c| key_char(c))
    };
    let digit_or_lower = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    match key.split_once('@') {
        None => part(key, 256, u8::is_ascii_lowercase),
        Some((tenant, system)) => {
            part(tenant, 241, digit_or_lower) && part(system, 14, u8::is_ascii_lowercase)
        }
    }
}

/// A `tracestate` value: 1 to 256 printable ASCII characters, neither `,`
/// nor `=`, not ending in a space.
fn valid_value(value: &str) -> bool {
    (1..=256).contains(&value.len())
        && value
            .bytes()
            .all(|b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=')
        && !value.ends_with(' ')
}

/// Whether an incoming request id may be kept: 1 to
/// [`MAX_REQUEST_ID_LEN`] visible ASCII characters (no spaces, nothing a
/// log line or another header could be forged with).
pub fn valid_request_id(value: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&value.len())
        && value.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// Whether a trace edge starts is sampled, for a uniform `draw` in [0, 1).
pub fn sample(ratio: f64, draw: f64) -> bool {
    ratio >= 1.0 || draw < ratio
}

/// A request id as a version-4 UUID (`8-4-4-4-12` lower-case hex), made
/// from 128 random bits: the form Envoy and most frameworks use, accepted
/// wherever an id is expected to be a UUID.
pub fn request_id_from(random: u128) -> String {
    // Version 4 (bits 76..80) and the RFC 9562 variant `10` (bits 62..64).
    let n = (random & !(0xf_u128 << 76)) | (0x4_u128 << 76);
    let n = (n & !(0x3_u128 << 62)) | (0x2_u128 << 62);
    let mut id = String::with_capacity(36);
    for (shift, digits) in [(96, 8), (80, 4), (64, 4), (48, 4), (0, 12)] {
        if !id.is_empty() {
            id.push('-');
        }
        push_hex(&mut id, n >> shift, digits);
    }
    id
}

/// Random bytes drawn from OpenSSL at once per thread: one draw serves
/// about 25 requests (16 bytes of request id, 8 of span id, 16 of trace
/// id at most each), so the generator's cost is spread thin.
const POOL: usize = 1024;

/// A thread's unused random bytes.
struct Pool {
    bytes: [u8; POOL],
    used: usize,
}

thread_local! {
    static RANDOM: RefCell<Pool> = const {
        RefCell::new(Pool {
            bytes: [0; POOL],
            used: POOL,
        })
    };
}

/// Fills `out` (at most [`POOL`] bytes) with random bytes.
fn fill_random(out: &mut [u8]) {
    RANDOM.with(|pool| {
        // Never borrowed twice: nothing in here draws again.
        let mut pool = pool.borrow_mut();
        if pool.used + out.len() > POOL {
            if let Err(e) = openssl::rand::rand_bytes(&mut pool.bytes) {
                // Should never happen; fastrand's ids are still unique
                // in practice, only from a smaller state.
                tracing::warn!("OpenSSL's random generator failed ({e}): ids from fastrand");
                fastrand::fill(&mut pool.bytes);
            }
            pool.used = 0;
        }
        let start = pool.used;
        match pool.bytes.get(start..start + out.len()) {
            Some(src) => out.copy_from_slice(src),
            None => fastrand::fill(out),
        }
        pool.used = start + out.len();
    });
}

/// 128 random bits.
fn random_u128() -> u128 {
    let mut b = [0u8; 16];
    fill_random(&mut b);
    u128::from_ne_bytes(b)
}

/// A new trace id (never zero).
pub fn new_trace_id() -> u128 {
    loop {
        let id = random_u128();
        if id != 0 {
            return id;
        }
    }
}

/// A new span id: never zero, never `other` (the caller's span).
pub fn new_span_id(other: u64) -> u64 {
    loop {
        let mut b = [0u8; 8];
        fill_random(&mut b);
        let id = u64::from_ne_bytes(b);
        if id != 0 && id != other {
            return id;
        }
    }
}

/// One request's identity: its id and its place in a trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The request's id: a trusted proxy's, or edge's own.
    pub request_id: String,
    /// What goes upstream: the trace, edge's span as the parent, the
    /// sampled flag.
    pub trace: TraceParent,
    /// The caller's span; `None` when edge started the trace.
    pub caller_span: Option<u64>,
    /// The caller's `tracestate`, passed on as it came.
    pub tracestate: Option<String>,
}

impl Identity {
    /// The identity of a request with `headers` from a peer that is
    /// (`trusted_peer`) or is not one of the listener's trusted proxies.
    pub fn of(headers: &http::HeaderMap, trusted_peer: bool, settings: &RequestTrace) -> Self {
        let kept = (settings.trust_incoming && trusted_peer)
            .then(|| single(headers, settings.header_str()))
            .flatten()
            .filter(|v| valid_request_id(v.as_bytes()))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let request_id = kept.unwrap_or_else(|| request_id_from(random_u128()));
        // Several traceparent lines are as invalid as a malformed one.
        let incoming =
            single(headers, TRACEPARENT_NAME).and_then(|v| parse_traceparent(v.as_bytes()));
        match incoming {
            Some(caller) => Self {
                request_id,
                trace: TraceParent {
                    trace_id: caller.trace_id,
                    parent_id: new_span_id(caller.parent_id),
                    // Level 1 defines one flag; the others are sent as 0.
                    flags: caller.flags & SAMPLED,
                },
                caller_span: Some(caller.parent_id),
                tracestate: tracestate(headers),
            },
            None => {
                let sampled = sample(settings.sample_ratio, fastrand::f64());
                Self {
                    request_id,
                    trace: TraceParent {
                        trace_id: new_trace_id(),
                        parent_id: new_span_id(0),
                        flags: if sampled { SAMPLED } else { 0 },
                    },
                    caller_span: None,
                    tracestate: None,
                }
            }
        }
    }
}

/// A W3C trace id, written (shown, and serialised as a string) as 32
/// lower-case hex digits.
#[derive(Clone, Copy, Debug)]
pub struct TraceId(pub u128);

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl Serialize for TraceId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A W3C span id, written as 16 lower-case hex digits.
#[derive(Clone, Copy, Debug)]
pub struct SpanId(pub u64);

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl Serialize for SpanId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The value of `name` when the request has exactly one such field.
fn single(
    headers: &http::HeaderMap,
    name: impl http::header::AsHeaderName,
) -> Option<&http::HeaderValue> {
    let mut lines = headers.get_all(name).iter();
    match (lines.next(), lines.next()) {
        (Some(v), None) => Some(v),
        _ => None,
    }
}

/// The request's `tracestate` fields as one value (the spec lets a list
/// span several fields), if valid and not empty.
fn tracestate(headers: &http::HeaderMap) -> Option<String> {
    let mut joined = String::new();
    for v in headers.get_all(TRACESTATE_NAME) {
        let text = v.to_str().ok()?;
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(text);
        // Past the bound already: no need to copy the rest.
        if joined.len() > MAX_TRACESTATE_LEN {
            return None;
        }
    }
    let empty = joined
        .split(',')
        .all(|m| m.trim_matches([' ', '\t']).is_empty());
    (!empty && valid_tracestate(&joined)).then_some(joined)
}

/// Sets the request id and the trace context on a request edge sends
/// upstream (replacing what the client sent).
pub fn apply_request(
    req: &mut RequestHeader,
    id: &Identity,
    settings: &RequestTrace,
) -> pingora::Result<()> {
    req.insert_header(settings.header.clone(), id.request_id.as_str())?;
    req.insert_header(TRACEPARENT, id.trace.header_value())?;
    match &id.tracestate {
        Some(state) => req.insert_header(TRACESTATE, state.as_str())?,
        None => {
            req.remove_header(&TRACESTATE_NAME);
        }
    }
    Ok(())
}

/// The request id as edge's answers carry it: kept in the request head's
/// extensions, so that every way edge answers (a route's own response, a
/// refusal, an error, a gRPC status) finds it without the proxy's
/// per-request state.
#[derive(Clone, Debug)]
pub struct Stamp {
    header: bytes::Bytes,
    value: http::HeaderValue,
}

/// Keeps `id`'s request id in `req` for the answers ([`stamp`]).
pub fn mark(req: &mut RequestHeader, id: &Identity, settings: &RequestTrace) {
    // Always a valid value: checked when kept, hex when made.
    if let Ok(value) = http::HeaderValue::from_str(&id.request_id) {
        req.extensions_mut().insert(Stamp {
            header: settings.header.clone(),
            value,
        });
    }
}

/// Puts the request id [`mark`] kept in `req` on the answer `resp`
/// (replacing one the backend sent: the client and the access log must
/// see the same id).
pub fn stamp(req: &RequestHeader, resp: &mut ResponseHeader) -> pingora::Result<()> {
    if let Some(s) = req.extensions.get::<Stamp>() {
        resp.insert_header(s.header.clone(), s.value.clone())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    const PARENT: &str = "b7ad6b7169203331";

    fn settings(ratio: f64) -> RequestTrace {
        RequestTrace {
            sample_ratio: ratio,
            ..RequestTrace::default()
        }
    }

    fn headers(fields: &[(&str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in fields {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn parse(s: &str) -> Option<TraceParent> {
        parse_traceparent(s.as_bytes())
    }

    #[test]
    fn the_specs_example_parses() {
        let p = parse(&format!("00-{TRACE}-{PARENT}-01")).unwrap();
        assert_eq!(p.trace_id, 0x0af7651916cd43dd8448eb211c80319c);
        assert_eq!(p.parent_id, 0xb7ad6b7169203331);
        assert!(p.sampled());
        assert_eq!(p.header_value(), format!("00-{TRACE}-{PARENT}-01"));
        let p = parse(&format!("00-{TRACE}-{PARENT}-00")).unwrap();
        assert!(!p.sampled());
        // Optional whitespace around the value.
        assert!(parse(&format!(" \t00-{TRACE}-{PARENT}-01 ")).is_some());
    }

    #[test]
    fn invalid_traceparents_are_refused() {
        let bad = [
            String::new(),
            "00".to_string(),
            // Upper-case hex, anywhere.
            format!("00-{}-{PARENT}-01", TRACE.to_uppercase()),
            format!("00-{TRACE}-{}-01", PARENT.to_uppercase()),
            format!("00-{TRACE}-{PARENT}-0A"),
            "0A-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_string(),
            // All-zero ids.
            format!("00-{}-{PARENT}-01", "0".repeat(32)),
            format!("00-{TRACE}-{}-01", "0".repeat(16)),
            // Version ff is invalid whatever follows.
            format!("ff-{TRACE}-{PARENT}-01"),
            // Version 00 has exactly four fields.
            format!("00-{TRACE}-{PARENT}-01-"),
            format!("00-{TRACE}-{PARENT}-01-extra"),
            // Wrong lengths and separators.
            format!("00-{TRACE}0-{PARENT}-01"),
            format!("00-{}-{PARENT}-01", &TRACE[1..]),
            format!("00-{TRACE}-{PARENT}-1"),
            format!("00_{TRACE}-{PARENT}-01"),
            format!("00-{TRACE}_{PARENT}-01"),
            format!("00-{TRACE}-{PARENT}_01"),
            format!("0-{TRACE}-{PARENT}-01"),
            // Not hex.
            format!("00-{}g-{PARENT}-01", &TRACE[1..]),
            format!("00-{TRACE}-{PARENT}-0g"),
            format!("00-{TRACE}-{PARENT}-.1"),
        ];
        for b in &bad {
            assert_eq!(parse(b), None, "{b:?}");
        }
    }

    #[test]
    fn a_higher_version_is_read_by_its_known_fields() {
        let p = parse(&format!("cc-{TRACE}-{PARENT}-01")).unwrap();
        assert_eq!(p.trace_id, 0x0af7651916cd43dd8448eb211c80319c);
        assert!(
            parse(&format!(
                "cc-{TRACE}-{PARENT}-01-what-the-future-will-be-like"
            ))
            .is_some()
        );
        // What follows the flags must start with a dash.
        assert_eq!(
            parse(&format!(
                "cc-{TRACE}-{PARENT}-01.what-the-future-will-not-be-like"
            )),
            None
        );
        // And it is written back as version 00.
        assert!(p.header_value().starts_with("00-"));
    }

    #[test]
    fn tracestate_bounds_and_grammar() {
        assert!(valid_tracestate("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"));
        assert!(valid_tracestate(
            "rojo=00f067aa0ba902b7 , , congo=t61rcWkgMzE"
        ));
        assert!(valid_tracestate("tenant1@vendor=x,a-b_c*d/e=1"));
        assert!(!valid_tracestate("Rojo=1"), "upper-case key");
        assert!(!valid_tracestate("rojo"), "no value");
        assert!(!valid_tracestate("rojo="), "empty value");
        assert!(!valid_tracestate("rojo=a=b"), "= in the value");
        assert!(!valid_tracestate("a=1,a=2"), "a key twice");
        assert!(
            !valid_tracestate("t@vendorvendorvendor=1"),
            "system id too long"
        );
        assert!(!valid_tracestate("a=caf\u{e9}"), "not ASCII");
        let members: Vec<String> = (0..32).map(|i| format!("k{i}=v")).collect();
        assert!(valid_tracestate(&members.join(",")));
        let members: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert!(!valid_tracestate(&members.join(",")), "33 members");
        let over: Vec<String> = ["a", "b", "c"]
            .iter()
            .map(|k| format!("{k}={}", "x".repeat(255)))
            .collect();
        let over = over.join(",");
        assert!(over.len() > MAX_TRACESTATE_LEN);
        assert!(!valid_tracestate(&over), "over 512 bytes");
    }

    #[test]
    fn request_ids() {
        assert!(valid_request_id(b"abc-123_XYZ.~!"));
        assert!(valid_request_id("x".repeat(128).as_bytes()));
        assert!(!valid_request_id("x".repeat(129).as_bytes()));
        assert!(!valid_request_id(b""));
        assert!(!valid_request_id(b"has space"));
        assert!(!valid_request_id(b"tab\there"));
        assert!(!valid_request_id(b"nul\0"));
        assert!(!valid_request_id("caf\u{e9}".as_bytes()));
        let id = request_id_from(u128::MAX);
        assert_eq!(id, "ffffffff-ffff-4fff-bfff-ffffffffffff");
        let id = request_id_from(0);
        assert_eq!(id, "00000000-0000-4000-8000-000000000000");
        let a = request_id_from(random_u128());
        assert_eq!(a.len(), 36);
        assert!(valid_request_id(a.as_bytes()));
        assert_ne!(a, request_id_from(random_u128()));
    }

    #[test]
    fn sampling_follows_the_ratio() {
        for draw in [0.0, 0.5, 0.999_999] {
            assert!(!sample(0.0, draw));
            assert!(sample(1.0, draw));
        }
        assert!(sample(0.25, 0.1));
        assert!(!sample(0.25, 0.3));
        for _ in 0..100 {
            let id = Identity::of(&http::HeaderMap::new(), false, &settings(1.0));
            assert!(id.trace.sampled());
            let id = Identity::of(&http::HeaderMap::new(), false, &settings(0.0));
            assert!(!id.trace.sampled());
        }
    }

    #[test]
    fn an_incoming_trace_is_continued_with_a_new_span() {
        let tp = format!("00-{TRACE}-{PARENT}-01");
        let h = headers(&[
            (TRACEPARENT, tp.as_str()),
            (TRACESTATE, "rojo=00f067aa0ba902b7"),
            (TRACESTATE, "congo=t61rcWkgMzE"),
        ]);
        // The caller's sampling decision holds whatever the ratio.
        let id = Identity::of(&h, false, &settings(0.0));
        assert_eq!(TraceId(id.trace.trace_id).to_string(), TRACE);
        assert_ne!(SpanId(id.trace.parent_id).to_string(), PARENT);
        assert_ne!(id.trace.parent_id, 0);
        assert_eq!(
            id.caller_span.map(|s| SpanId(s).to_string()).as_deref(),
            Some(PARENT)
        );
        assert!(id.trace.sampled());
        assert_eq!(
            id.tracestate.as_deref(),
            Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
        );
        let again = Identity::of(&h, false, &settings(0.0));
        assert_ne!(again.trace.parent_id, id.trace.parent_id);
        // Not sampled by the caller: not sampled, even at ratio 1.
        let tp = format!("00-{TRACE}-{PARENT}-00");
        let h = headers(&[(TRACEPARENT, tp.as_str())]);
        assert!(!Identity::of(&h, false, &settings(1.0)).trace.sampled());
        // Unknown flags are not passed on (level 1 has only `sampled`).
        let tp = format!("00-{TRACE}-{PARENT}-ff");
        let h = headers(&[(TRACEPARENT, tp.as_str())]);
        assert_eq!(Identity::of(&h, false, &settings(0.0)).trace.flags, 0x01);
    }

    #[test]
    fn an_invalid_trace_starts_a_new_one_without_its_state() {
        let bad = format!("00-{}-{PARENT}-01", TRACE.to_uppercase());
        let h = headers(&[(TRACEPARENT, bad.as_str()), (TRACESTATE, "rojo=1")]);
        let id = Identity::of(&h, false, &settings(1.0));
        assert_ne!(TraceId(id.trace.trace_id).to_string(), TRACE.to_string());
        assert_ne!(id.trace.trace_id, 0);
        assert_eq!(id.caller_span, None);
        assert_eq!(id.tracestate, None);
        assert!(id.trace.sampled());
        // Two traceparent fields: which one is right is unknown.
        let tp = format!("00-{TRACE}-{PARENT}-01");
        let h = headers(&[(TRACEPARENT, tp.as_str()), (TRACEPARENT, tp.as_str())]);
        assert_ne!(
            TraceId(Identity::of(&h, false, &settings(0.0)).trace.trace_id).to_string(),
            TRACE
        );
        // A tracestate that breaks its grammar is dropped, the trace kept.
        let h = headers(&[(TRACEPARENT, tp.as_str()), (TRACESTATE, "Bad=1")]);
        let id = Identity::of(&h, false, &settings(0.0));
        assert_eq!(TraceId(id.trace.trace_id).to_string(), TRACE);
        assert_eq!(id.tracestate, None);
    }

    #[test]
    fn incoming_request_ids_are_kept_only_from_trusted_peers() {
        let s = settings(0.0);
        let h = headers(&[("x-request-id", "abc-123")]);
        assert_eq!(Identity::of(&h, true, &s).request_id, "abc-123");
        assert_ne!(Identity::of(&h, false, &s).request_id, "abc-123");
        let no_trust = RequestTrace {
            trust_incoming: false,
            ..s.clone()
        };
        assert_ne!(Identity::of(&h, true, &no_trust).request_id, "abc-123");
        let long = "x".repeat(129);
        let h = headers(&[("x-request-id", long.as_str())]);
        assert_ne!(Identity::of(&h, true, &s).request_id, long);
        let h = headers(&[("x-request-id", "a"), ("x-request-id", "b")]);
        let id = Identity::of(&h, true, &s).request_id;
        assert!(id != "a" && id != "b");
        // Another header name.
        let custom = RequestTrace {
            header: "X-Correlation-Id".into(),
            ..s.clone()
        };
        let h = headers(&[("x-correlation-id", "corr-1")]);
        assert_eq!(Identity::of(&h, true, &custom).request_id, "corr-1");
        // Generated ids differ.
        let (a, b) = (
            Identity::of(&http::HeaderMap::new(), true, &s),
            Identity::of(&http::HeaderMap::new(), true, &s),
        );
        assert_ne!(a.request_id, b.request_id);
        assert_ne!(a.trace.trace_id, b.trace.trace_id);
    }

    #[test]
    fn the_upstream_request_and_the_answer_carry_it() {
        let s = settings(0.0);
        let tp = format!("00-{TRACE}-{PARENT}-01");
        let h = headers(&[(TRACEPARENT, tp.as_str())]);
        let id = Identity::of(&h, false, &s);
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("x-request-id", "forged").unwrap();
        req.insert_header(TRACESTATE, "stale=1").unwrap();
        apply_request(&mut req, &id, &s).unwrap();
        assert_eq!(
            req.headers.get("x-request-id").unwrap().to_str().unwrap(),
            id.request_id
        );
        assert_eq!(req.headers.get_all("x-request-id").iter().count(), 1);
        let tp = req.headers.get(TRACEPARENT).unwrap().to_str().unwrap();
        assert_eq!(parse(tp), Some(id.trace));
        assert!(req.headers.get(TRACESTATE).is_none());
        mark(&mut req, &id, &s);
        let mut resp = ResponseHeader::build(502, None).unwrap();
        resp.insert_header("x-request-id", "the backend's").unwrap();
        stamp(&req, &mut resp).unwrap();
        assert_eq!(
            resp.headers.get("x-request-id").unwrap().to_str().unwrap(),
            id.request_id
        );
        // Nothing marked: nothing stamped.
        let bare = RequestHeader::build("GET", b"/", None).unwrap();
        let mut resp = ResponseHeader::build(404, None).unwrap();
        stamp(&bare, &mut resp).unwrap();
        assert!(resp.headers.get("x-request-id").is_none());
    }

    #[test]
    fn ids_are_never_zero_and_spans_never_repeat_the_caller() {
        for _ in 0..1000 {
            assert_ne!(new_trace_id(), 0);
            assert_ne!(new_span_id(1), 0);
        }
        // More draws than one block of random bytes holds.
        let ids: std::collections::HashSet<u128> = (0..500).map(|_| new_trace_id()).collect();
        assert_eq!(ids.len(), 500);
    }
}
