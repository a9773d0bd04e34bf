//! The one normal form of a request's target and host, worked out before
//! anything decides on it.
//!
//! Routing, the cache key, redirects and the upstream request all use the
//! normalised path and host, so a route (say `respond: 403` on `/admin`)
//! cannot be walked around with `//admin`, `/./admin`, `/%61dmin`,
//! `/x/../admin`, `/admin;x`, `Host: admin.example.` or `Host:
//! admin.example:abc`: each of these either normalises to what the route
//! sees, or is refused with 400.
//!
//! The path, by RFC 3986:
//! - percent-encodings of unreserved characters (`A-Z a-z 0-9 - . _ ~`)
//!   are decoded (§6.2.2.2); every other encoding is kept, with its hex
//!   digits upper-cased (§6.2.2.1). An encoded slash or backslash (`%2F`,
//!   `%5C`) and a raw `\` are refused by default: edge cannot decode them
//!   without changing the path's segments, and many backends (WSGI, Tomcat
//!   with encoded slashes allowed, IIS) do, so `/admin%2Fx` would reach
//!   `/admin/x` past a route on `/admin` (Envoy's and Apache's default);
//!   `encoded_slashes: keep` passes them on encoded. `%00` and a `%` not
//!   followed by two hex digits are refused.
//! - runs of `/` are merged into one when `merge_slashes` is on (the
//!   default, as nginx does).
//! - dot segments are removed (§5.2.4); a segment that is a dot segment
//!   but for `;parameters` (`..;x`, as Tomcat reads it) counts as one. A
//!   path that climbs above the root is refused, as nginx does.
//!
//! For matching only, the `;parameters` of each segment are left out
//! ([`Normalized::match_path`]): `/admin;x` is matched as `/admin`, since
//! servlet containers serve it as that. The path forwarded keeps them.

pub use crate::config::{EncodedSlashes, PathOptions};
use pingora::http::RequestHeader;
use std::net::Ipv6Addr;

/// Longest host name accepted (RFC 1035's 253 characters, plus a
/// trailing dot and a port).
const MAX_HOST: usize = 261;

/// Why a request target or host cannot be normalised (answered with 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    /// The path does not start with `/` (and is not `*`).
    #[error("the request target is not an absolute path")]
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    #[error("bad percent-encoding in the path")]
    BadEncoding,
    /// `%00`, or a raw control character or space.
    #[error("forbidden character in the path")]
    Forbidden,
    /// `%2F`, `%5C` or a raw backslash, with `encoded_slashes: reject`.
    #[error("encoded slash or backslash in the path")]
    EncodedSlash,
    /// `..` above the root.
    #[error("the path climbs above the root")]
    AboveRoot,
    /// Not a valid Host (RFC 9110 §7.2, RFC 3986 §3.2.2).
    #[error("invalid Host")]
    BadHost,
    /// Several Host header lines, or a Host unlike the request target's.
    #[error("conflicting Host")]
    ConflictingHost,
    /// An HTTP/1.1 request without Host.
    #[error("missing Host")]
    MissingHost,
}

/// A normalised path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    /// The path forwarded upstream (parameters kept).
    pub path: String,
    /// The path routes are matched against: `path` without each
    /// segment's `;parameters`. `None` when it equals `path`.
    match_path: Option<String>,
}

impl Normalized {
    /// The path routes match against.
    pub fn match_path(&self) -> &str {
        self.match_path.as_deref().unwrap_or(&self.path)
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes unreserved percent-encodings and upper-cases the others.
fn decode_unreserved(raw: &str, slashes: EncodedSlashes) -> Result<String, Reject> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(Reject::BadEncoding);
            };
            let decoded = hi * 16 + lo;
            if decoded == 0 {
                return Err(Reject::Forbidden);
            }
            if matches!(decoded, b'/' | b'\\') && slashes == EncodedSlashes::Reject {
                return Err(Reject::EncodedSlash);
            }
            if is_unreserved(decoded) {
                out.push(char::from(decoded));
            } else {
                out.push('%');
                out.push(char::from(bytes[i + 1].to_ascii_uppercase()));
                out.push(char::from(bytes[i + 2].to_ascii_uppercase()));
            }
            i += 3;
            continue;
        }
        if b <= b' ' || b == 0x7f {
            return Err(Reject::Forbidden);
        }
        // Some servers read `\` as `/`: `/x\..\admin` would be `/admin`.
        if b == b'\\' {
            return Err(Reject::EncodedSlash);
        }
        // Non-ASCII bytes cannot reach here through a parsed URI; a path
        // is ASCII, so byte-wise pushing keeps it valid UTF-8.
        if !b.is_ascii() {
            return Err(Reject::Forbidden);
        }
        out.push(char::from(b));
        i += 1;
    }
    Ok(out)
}

/// The name of a segment without its `;parameters`.
fn segment_name(segment: &str) -> &str {
    segment.split_once(';').map_or(segment, |(name, _)| name)
}

/// Normalises an origin-form path (no query) as the module describes.
pub fn normalize_path(raw: &str, options: PathOptions) -> Result<Normalized, Reject> {
    if !raw.starts_with('/') {
        return Err(Reject::NotAbsolute);
    }
    let merge_slashes = options.merge_slashes;
    let decoded = decode_unreserved(raw, options.encoded_slashes)?;
    // Segments after the leading '/'; an empty last one is a trailing '/'.
    let mut out: Vec<&str> = Vec::new();
    let mut segments = decoded[1..].split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match segment_name(segment) {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                if out.pop().is_none() {
                    return Err(Reject::AboveRoot);
                }
                if last {
                    out.push("");
                }
            }
            "" if merge_slashes && !last => {}
            _ => out.push(segment),
        }
    }
    let path = slash_joined(out.iter().copied(), decoded.len());
    let match_path = path
        .contains(';')
        .then(|| slash_joined(out.iter().map(|s| segment_name(s)), path.len()));
    Ok(Normalized { path, match_path })
}

/// `/` and `segments` joined by `/` (`/a/b`; `/` for none), built in one
/// allocation of `capacity` bytes (enough for the usual case).
fn slash_joined<'a>(segments: impl Iterator<Item = &'a str>, capacity: usize) -> String {
    let mut path = String::with_capacity(capacity.max(1));
    for s in segments {
        path.push('/');
        path.push_str(s);
    }
    if path.is_empty() {
        path.push('/');
    }
    path
}

/// The form of a request target (RFC 9112 §3.2) that edge accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetForm {
    /// `/path?query`.
    Origin,
    /// `http://host/path?query`: forwarded in origin form.
    Absolute,
}

/// Classifies the target bytes as received: origin-form and absolute-form
/// (`http` or `https`) are served; anything else (asterisk-form, a
/// target that does not start with `/`) is refused.
pub fn target_form(raw: &[u8]) -> Result<TargetForm, Reject> {
    let scheme = |s: &[u8]| raw.len() > s.len() && raw[..s.len()].eq_ignore_ascii_case(s);
    if raw.starts_with(b"/") {
        Ok(TargetForm::Origin)
    } else if scheme(b"http://") || scheme(b"https://") {
        Ok(TargetForm::Absolute)
    } else {
        Err(Reject::NotAbsolute)
    }
}

/// A validated host: lower-case, no trailing dot, port split off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The name or address (IPv6 in brackets), lower-case, without port.
    pub name: String,
    /// The port, if one was given.
    pub port: Option<u16>,
}

impl Host {
    /// The form sent upstream in `Host`.
    pub fn header_value(&self) -> String {
        match self.port {
            Some(p) => {
                use std::fmt::Write;
                // One allocation, not a `String` grown as it is formatted.
                let mut v = String::with_capacity(self.name.len() + 6);
                v.push_str(&self.name);
                // Writing to a `String` cannot fail.
                let _ = write!(v, ":{p}");
                v
            }
            None => self.name.clone(),
        }
    }
}

/// Parses and normalises a Host value (RFC 9110 §7.2: `uri-host [ ":"
/// port ]`). A reg-name may hold letters, digits, `-`, `.` and `_`; a
/// single trailing dot is dropped (`example.com.` is `example.com`);
/// percent-encoding and the other sub-delims are refused, since no DNS
/// name has them and backends disagree on what they mean.
pub fn parse_host(raw: &str) -> Result<Host, Reject> {
    if raw.is_empty() || raw.len() > MAX_HOST {
        return Err(Reject::BadHost);
    }
    let (name, port) = if let Some(rest) = raw.strip_prefix('[') {
        let (addr, after) = rest.split_once(']').ok_or(Reject::BadHost)?;
        addr.parse::<Ipv6Addr>().map_err(|_| Reject::BadHost)?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(Reject::BadHost)?),
        };
        (format!("[{}]", addr.to_ascii_lowercase()), port)
    } else {
        let (name, port) = match raw.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (raw, None),
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        // Every label 1 to 63 bytes: `admin.example..` (an empty label
        // after the one trailing dot dropped) is refused, not routed as a
        // host no route names while the backend reads `admin.example`.
        let valid = !name.is_empty()
            && name.len() <= 253
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
            && name.split('.').all(|l| (1..=63).contains(&l.len()));
        if !valid {
            return Err(Reject::BadHost);
        }
        (name.to_ascii_lowercase(), port)
    };
    let port = match port {
        // RFC 3986 allows an empty port; it means the default.
        None | Some("") => None,
        Some(p) if p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().map_err(|_| Reject::BadHost)?)
        }
        Some(_) => return Err(Reject::BadHost),
    };
    Ok(Host { name, port })
}

/// What the request says about its host, gathered for [`request_host`].
pub struct HostSources<'a> {
    /// The request target's authority (absolute-form, or HTTP/2's
    /// `:authority`).
    pub authority: Option<&'a str>,
    /// Every `Host` header line.
    pub host_headers: &'a [&'a [u8]],
    /// Whether the request is HTTP/1.1 (which must carry Host).
    pub http11: bool,
    /// Whether it is HTTP/2 or later.
    pub http2: bool,
}

/// The request's host, by RFC 9112 §3.2: more than one Host line, or an
/// invalid one, is refused; an HTTP/1.1 request without Host is refused;
/// for an absolute-form target the target's authority wins over Host (and
/// Host is then rewritten to match). In HTTP/2, `:authority` and Host
/// must agree when both are there (RFC 9113 §8.3.1).
pub fn request_host(src: &HostSources<'_>) -> Result<Option<Host>, Reject> {
    if src.host_headers.len() > 1 {
        return Err(Reject::ConflictingHost);
    }
    let header = match src.host_headers.first() {
        Some(v) => Some(parse_host(
            std::str::from_utf8(v).map_err(|_| Reject::BadHost)?,
        )?),
        None => None,
    };
    let authority = match src.authority {
        Some(a) => {
            // userinfo has no place in an HTTP target (RFC 9110 §4.2.4).
            if a.contains('@') {
                return Err(Reject::BadHost);
            }
            Some(parse_host(a)?)
        }
        None => None,
    };
    match (authority, header) {
        (Some(a), Some(h)) => {
            if src.http2 && a != h {
                return Err(Reject::ConflictingHost);
            }
            Ok(Some(a))
        }
        (Some(a), None) => {
            if src.http11 && !src.http2 {
                return Err(Reject::MissingHost);
            }
            Ok(Some(a))
        }
        (None, Some(h)) => Ok(Some(h)),
        (None, None) if src.http11 => Err(Reject::MissingHost),
        (None, None) => Ok(None),
    }
}

/// A request's target and host in normal form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalRequest {
    /// The form the target came in.
    pub form: TargetForm,
    /// The host, when the request names one.
    pub host: Option<Host>,
    /// The normalised path.
    pub path: Normalized,
}

/// Works out the normal form of `req`'s target and host: the one place
/// that decides what a request asks for, used by the proxy before routing
/// (and by the fuzz targets).
///
/// The target as it will go on the wire decides, not the URI alone:
/// Pingora keeps an absolute-form target (and anything it could not read
/// as origin-form, such as `GET  /admin`) verbatim and gives the URI only
/// a path, which routing would otherwise see. An HTTP/1 absolute-form
/// target's authority is only in that raw target; HTTP/2's `:authority`
/// is in the URI.
pub fn normalize_request(
    req: &RequestHeader,
    options: PathOptions,
) -> Result<NormalRequest, Reject> {
    let raw = req.raw_path();
    let form = target_form(raw)?;
    let raw_authority = match form {
        TargetForm::Absolute => pingora::http::authority::raw_target_authority(raw)
            .authority()
            .map(|a| std::str::from_utf8(a).map_err(|_| Reject::BadHost))
            .transpose()?,
        TargetForm::Origin => None,
    };
    let host_headers: Vec<&[u8]> = req
        .headers
        .get_all(http::header::HOST)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    let host = request_host(&HostSources {
        authority: raw_authority.or(req.uri.authority().map(|a| a.as_str())),
        host_headers: &host_headers,
        http11: req.version == http::Version::HTTP_11,
        http2: req.version >= http::Version::HTTP_2,
    })?;
    let path = normalize_path(req.uri.path(), options)?;
    Ok(NormalRequest { form, host, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slash_joined_is_slash_and_join() {
        let cases: [&[&str]; 6] = [&[], &[""], &["a"], &["a", ""], &["a", "b", "c"], &["", "x"]];
        for segments in cases {
            let want = format!("/{}", segments.join("/"));
            assert_eq!(slash_joined(segments.iter().copied(), 0), want);
            assert_eq!(slash_joined(segments.iter().copied(), 64), want);
        }
    }

    const KEEP: PathOptions = PathOptions {
        merge_slashes: true,
        encoded_slashes: EncodedSlashes::Keep,
    };
    const NO_MERGE: PathOptions = PathOptions {
        merge_slashes: false,
        encoded_slashes: EncodedSlashes::Reject,
    };

    fn norm(p: &str) -> Result<String, Reject> {
        normalize_path(p, PathOptions::default()).map(|n| n.path)
    }

    fn matched(p: &str) -> String {
        normalize_path(p, PathOptions::default())
            .unwrap()
            .match_path()
            .to_string()
    }

    #[test]
    fn bypasses_normalise_to_the_same_path() {
        for p in [
            "/admin",
            "//admin",
            "/./admin",
            "/%61dmin",
            "/%61%64%6D%69%6E",
            "/x/../admin",
            "/x/%2e%2e/admin",
            "/x/%2E./admin",
            "/x/..;/admin",
            "///admin",
            "/./x/./../admin",
        ] {
            assert_eq!(norm(p).as_deref(), Ok("/admin"), "{p}");
        }
        assert_eq!(matched("/admin;x"), "/admin");
        assert_eq!(matched("/admin;jsessionid=1/a;b=2"), "/admin/a");
        assert_eq!(norm("/admin;x").as_deref(), Ok("/admin;x"));
    }

    #[test]
    fn trailing_slashes_and_dots() {
        assert_eq!(norm("/").as_deref(), Ok("/"));
        assert_eq!(norm("/a/").as_deref(), Ok("/a/"));
        assert_eq!(norm("/a/.").as_deref(), Ok("/a/"));
        assert_eq!(norm("/a/b/..").as_deref(), Ok("/a/"));
        assert_eq!(norm("/a/..").as_deref(), Ok("/"));
        assert_eq!(norm("/a//b//").as_deref(), Ok("/a/b/"));
        assert_eq!(
            normalize_path("/a//b", NO_MERGE).map(|n| n.path).as_deref(),
            Ok("/a//b")
        );
        assert_eq!(norm("/a...b/.x").as_deref(), Ok("/a...b/.x"));
    }

    #[test]
    fn reserved_encodings_stay_encoded() {
        let keep = |p: &str| normalize_path(p, KEEP).map(|n| n.path);
        assert_eq!(keep("/a%2fb").as_deref(), Ok("/a%2Fb"));
        assert_eq!(keep("/a%5cb").as_deref(), Ok("/a%5Cb"));
        assert_eq!(norm("/admin%2Fsecret"), Err(Reject::EncodedSlash));
        assert_eq!(norm("/admin%5csecret"), Err(Reject::EncodedSlash));
        assert_eq!(norm("/x\\..\\admin"), Err(Reject::EncodedSlash));
        assert_eq!(keep("/x\\admin"), Err(Reject::EncodedSlash));
        assert_eq!(norm("/a%3Fb%20c").as_deref(), Ok("/a%3Fb%20c"));
        assert_eq!(norm("/%7e%41").as_deref(), Ok("/~A"));
    }

    #[test]
    fn unsafe_paths_are_refused() {
        assert_eq!(norm("/../etc/passwd"), Err(Reject::AboveRoot));
        assert_eq!(norm("/api/../../etc/passwd"), Err(Reject::AboveRoot));
        assert_eq!(norm("/%2e%2e/x"), Err(Reject::AboveRoot));
        assert_eq!(norm("/a%zz"), Err(Reject::BadEncoding));
        assert_eq!(norm("/a%2"), Err(Reject::BadEncoding));
        assert_eq!(norm("/a%00b"), Err(Reject::Forbidden));
        assert_eq!(norm("admin"), Err(Reject::NotAbsolute));
        assert_eq!(norm(""), Err(Reject::NotAbsolute));
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        for p in ["/a/./b/../c//d;x/%41%2f", "/x/..;/y/", "/%7E/%2e/"] {
            let once = normalize_path(p, KEEP).unwrap();
            let twice = normalize_path(&once.path, KEEP).unwrap();
            assert_eq!(once, twice, "{p}");
        }
    }

    #[test]
    fn whole_requests() {
        let req = |target: &[u8], host: Option<&str>| {
            let mut r = RequestHeader::build("GET", target, None).unwrap();
            if let Some(h) = host {
                r.insert_header("host", h).unwrap();
            }
            normalize_request(&r, PathOptions::default())
        };
        let n = req(b"http://Admin.Example./a/../x", Some("Admin.Example.")).unwrap();
        assert_eq!(n.form, TargetForm::Absolute);
        assert_eq!(n.host.unwrap().name, "admin.example");
        assert_eq!(n.path.path, "/x");
        assert_eq!(req(b"/x", None), Err(Reject::MissingHost));
        assert_eq!(req(b"%20/admin", Some("a")), Err(Reject::NotAbsolute));
    }

    #[test]
    fn target_forms() {
        assert_eq!(target_form(b"/a?b"), Ok(TargetForm::Origin));
        assert_eq!(target_form(b"http://a/x"), Ok(TargetForm::Absolute));
        assert_eq!(target_form(b"HTTPS://a"), Ok(TargetForm::Absolute));
        for bad in [
            &b"%20/admin"[..],
            b"*",
            b"a.example:443",
            b"http://",
            b"ftp://a/x",
            b"",
        ] {
            assert_eq!(target_form(bad), Err(Reject::NotAbsolute), "{bad:?}");
        }
    }

    #[test]
    fn hosts() {
        let h = |s: &str| parse_host(s).map(|h| h.header_value());
        assert_eq!(h("Admin.Example.").as_deref(), Ok("admin.example"));
        assert_eq!(h("admin.example:8080").as_deref(), Ok("admin.example:8080"));
        assert_eq!(h("admin.example:").as_deref(), Ok("admin.example"));
        assert_eq!(h("[::1]:80").as_deref(), Ok("[::1]:80"));
        assert_eq!(h("127.0.0.1").as_deref(), Ok("127.0.0.1"));
        for bad in [
            "admin.example:abc",
            "admin.example:99999",
            "admin.example:80:80",
            "a b",
            "a%41",
            "",
            ".",
            "..",
            "a..b",
            "admin.example..",
            "admin.example..:80",
            "a..",
            ".a",
            "[::1",
            "[zz]",
            "[::1]x",
            "ex@mple",
            "a/b",
        ] {
            assert_eq!(parse_host(bad), Err(Reject::BadHost), "{bad}");
        }
        assert_eq!(
            parse_host("admin.example:80").unwrap().name,
            "admin.example"
        );
    }

    #[test]
    fn host_sources() {
        let one: &[&[u8]] = &[b"a.example"];
        let two: &[&[u8]] = &[b"a.example", b"b.example"];
        let none: &[&[u8]] = &[];
        let src = |authority, host_headers, http2| HostSources {
            authority,
            host_headers,
            http11: true,
            http2,
        };
        let name = |r: Result<Option<Host>, Reject>| r.map(|h| h.map(|h| h.name));
        assert_eq!(
            name(request_host(&src(None, one, false))),
            Ok(Some("a.example".into()))
        );
        assert_eq!(
            request_host(&src(None, two, false)),
            Err(Reject::ConflictingHost)
        );
        assert_eq!(
            request_host(&src(None, none, false)),
            Err(Reject::MissingHost)
        );
        assert_eq!(
            request_host(&src(Some("x.example"), none, false)),
            Err(Reject::MissingHost)
        );
        assert_eq!(
            name(request_host(&src(Some("x.example"), one, false))),
            Ok(Some("x.example".into()))
        );
        assert_eq!(
            name(request_host(&src(Some("x.example"), none, true))),
            Ok(Some("x.example".into()))
        );
        assert_eq!(
            request_host(&src(Some("x.example"), one, true)),
            Err(Reject::ConflictingHost)
        );
        let http10 = HostSources {
            authority: None,
            host_headers: none,
            http11: false,
            http2: false,
        };
        assert_eq!(request_host(&http10), Ok(None));
    }
}
