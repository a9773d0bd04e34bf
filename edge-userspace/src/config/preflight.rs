//! What `edge run` would meet that validation can already see: the files it
//! reads (small regular files only), values edge
//! sends on the wire (a redirect `Location`, a health check's request line
//! and `Host`), the access log it opens at start-up, and — as warnings — a
//! pool that sends requests back to one of edge's own listeners.
//!
//! A value that cannot be sent makes every request of its route fail at run
//! time, and a log that cannot be opened stops `edge run` from starting;
//! both are errors here, with their line. A forwarding loop is a warning:
//! it may be meant (a test, a second edge behind a port forward), and the
//! proxy answers a looping request with 508 anyway.

use super::{
    bounds::{MAX_PEM_FILE, show_size},
    model::Config,
    report::Report,
    surface,
};
use std::{
    net::{IpAddr, SocketAddr},
    path::Path,
};

/// Reports the values of `file` that `edge run` could not use.
pub(super) fn check(r: &mut Report<'_>, file: &surface::File, base_dir: &Path) {
    for (i, l) in file.listeners.iter().enumerate() {
        for (j, name) in l.pass_upstream_headers.iter().enumerate() {
            header_name(
                r,
                format!("listeners[{i}].pass_upstream_headers[{j}]"),
                name,
            );
        }
        for (j, route) in l.routes.iter().enumerate() {
            if let Some(rd) = &route.redirect {
                let path = format!("listeners[{i}].routes[{j}].redirect.location");
                if rd.location.is_empty() {
                    r.error(path, "location is empty: give the URL to redirect to");
                } else if let Some(why) = bad_header_value(&rd.location) {
                    r.error(
                        path,
                        format!(
                            "location {:?} cannot be sent as a Location header: {why}",
                            rd.location
                        ),
                    );
                }
            }
        }
    }
    for (i, p) in file.pools.iter().enumerate() {
        if let Some(h) = &p.health_check {
            let hp = format!("pools[{i}].health_check");
            if let Some(path) = &h.path
                && let Some((at, b)) = path
                    .bytes()
                    .enumerate()
                    .find(|(_, b)| !b.is_ascii_graphic())
            {
                r.error(
                    format!("{hp}.path"),
                    format!(
                        "health check path {path:?} cannot be sent in a request line: {} at \
                         byte {at} (percent-encode it)",
                        describe(b)
                    ),
                );
            }
            if let Some(host) = &h.host {
                let why = if host.is_empty() {
                    Some("it is empty".to_string())
                } else {
                    host.bytes()
                        .find(|b| !b.is_ascii_graphic())
                        .map(|b| format!("{} is not allowed in a host", describe(b)))
                };
                if let Some(why) = why {
                    r.error(
                        format!("{hp}.host"),
                        format!(
                            "health check host {host:?} cannot be sent as a Host header: {why}"
                        ),
                    );
                }
            }
        }
        if let Some(key) = p.hash_key.as_deref()
            && let Some(("header", name)) = key.split_once(':')
            && !name.is_empty()
        {
            header_name(r, format!("pools[{i}].hash_key"), name);
        }
    }
    if let Some(log) = &file.access_log {
        access_log(r, &log.path, base_dir);
    }
}

/// Reports the files named in `file` (certificates, keys, CA bundles) that
/// are not regular files of at most [`MAX_PEM_FILE`] bytes. It runs before
/// the section validators, which read them whole: a device such as
/// /dev/zero, or a file of gigabytes, would never finish.
pub(super) fn files(r: &mut Report<'_>, file: &surface::File, base_dir: &Path) {
    for (i, l) in file.listeners.iter().enumerate() {
        let Some(tls) = &l.tls else {
            continue;
        };
        for (j, c) in tls.certificates.iter().enumerate() {
            let p = format!("listeners[{i}].tls.certificates[{j}]");
            pem(r, format!("{p}.cert"), &base_dir.join(&c.cert));
            pem(r, format!("{p}.key"), &base_dir.join(&c.key));
        }
    }
    for (i, p) in file.pools.iter().enumerate() {
        if let Some(ca) = p.tls.as_ref().and_then(|t| t.ca.as_ref()) {
            pem(r, format!("pools[{i}].tls.ca"), &base_dir.join(ca));
        }
    }
}

fn pem(r: &mut Report<'_>, path: String, file: &Path) {
    // A file that cannot be opened is reported by the validator, which
    // says why.
    let Ok(meta) = std::fs::metadata(file) else {
        return;
    };
    if !meta.is_file() {
        r.error(path, format!("{} is not a regular file", file.display()));
    } else if meta.len() > MAX_PEM_FILE {
        r.error(
            path,
            format!(
                "{} is {}: a PEM file must be at most {}",
                file.display(),
                show_size(meta.len()),
                show_size(MAX_PEM_FILE)
            ),
        );
    }
}

/// Warns about forwarding loops of a checked `config`: a pool backend that
/// is one of edge's own listeners.
pub(super) fn warnings(r: &mut Report<'_>, config: &Config) {
    if let Some(bgp) = &config.bgp {
        super::bgp::warnings(r, bgp);
    }
    for (i, pool) in config.pools.iter().enumerate() {
        for (j, b) in pool.backends.iter().enumerate() {
            let Some((k, l)) = config
                .listeners
                .iter()
                .enumerate()
                .find(|(_, l)| reaches(b.address, l.address))
            else {
                continue;
            };
            let msg = format!(
                "backend {} of pool {:?} is edge's own listener {:?} ({}, {}): requests sent to \
                 it come back to edge in a loop",
                b.address,
                pool.name,
                l.name,
                l.address,
                r.line_of(&format!("listeners[{k}].address"))
            );
            r.warn(format!("pools[{i}].backends[{j}].address"), msg);
        }
    }
}

/// Whether a connection to `backend` reaches a socket bound to `listener`.
///
/// The same address does; so does a loopback or unspecified backend
/// address (a connect to 0.0.0.0 goes to the local host) on the port of a
/// wildcard listener of its family (`[::]` also takes IPv4 on Linux), or of
/// a loopback listener.
pub(super) fn reaches(backend: SocketAddr, listener: SocketAddr) -> bool {
    if backend.port() != listener.port() {
        return false;
    }
    let (b, l) = (backend.ip().to_canonical(), listener.ip().to_canonical());
    if b == l {
        return true;
    }
    let local = b.is_loopback() || b.is_unspecified();
    let same_family = b.is_ipv4() == l.is_ipv4();
    let wildcard = l.is_unspecified() && (same_family || matches!(listener.ip(), IpAddr::V6(_)));
    local && (wildcard || (b.is_unspecified() && l.is_loopback() && same_family))
}

fn header_name(r: &mut Report<'_>, path: String, name: &str) {
    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        r.error(
            path,
            format!("bad header name {name:?}: letters, digits and !#$%&'*+-.^_`|~ only"),
        );
    }
}

/// Why `value` cannot be an HTTP header value, if it cannot: CR, LF, NUL
/// and the other control characters but tab are refused by every HTTP
/// library (and CR/LF would split the response).
pub(super) fn bad_header_value(value: &str) -> Option<String> {
    value
        .bytes()
        .enumerate()
        .find(|(_, b)| (*b < 0x20 && *b != b'\t') || *b == 0x7f)
        .map(|(at, b)| {
            format!(
                "{} at byte {at} is not allowed in a header value",
                describe(b)
            )
        })
}

fn describe(b: u8) -> String {
    match b {
        b'\r' => "CR (\\r)".into(),
        b'\n' => "LF (\\n)".into(),
        0 => "NUL".into(),
        b' ' => "a space".into(),
        b if b.is_ascii_graphic() => format!("{:?}", b as char),
        b => format!("byte 0x{b:02x}"),
    }
}

/// Checks that the access log `path` can be opened for appending: `edge
/// run` opens it before it serves anything, and stops if it cannot. The
/// check runs as the user running `edge check`.
fn access_log(r: &mut Report<'_>, path: &str, base_dir: &Path) {
    const KEY: &str = "access_log.path";
    if path == "-" {
        return;
    }
    if path.is_empty() {
        r.error(
            KEY.into(),
            "path is empty: give a file, or \"-\" for standard output",
        );
        return;
    }
    let file = base_dir.join(path);
    if file.is_dir() {
        r.error(
            KEY.into(),
            format!(
                "{} is a directory: give a file to append to",
                file.display()
            ),
        );
        return;
    }
    if file.exists() {
        if !writable(&file, libc::W_OK) {
            r.error(
                KEY.into(),
                format!("{} exists and is not writable", file.display()),
            );
        }
        return;
    }
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    if !dir.is_dir() {
        r.error(
            KEY.into(),
            format!(
                "directory {} does not exist: create it, or log elsewhere",
                dir.display()
            ),
        );
    } else if !writable(dir, libc::W_OK | libc::X_OK) {
        r.error(
            KEY.into(),
            format!(
                "directory {} is not writable: {} cannot be created",
                dir.display(),
                file.display()
            ),
        );
    }
}

/// Whether this process may access `path` in `mode` (access(2): the real
/// user, as `edge run` started by the same user would be).
fn writable(path: &Path, mode: libc::c_int) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a NUL-terminated string that outlives the call, and
    // access(2) only reads it.
    unsafe { libc::access(c.as_ptr(), mode) == 0 }
}
