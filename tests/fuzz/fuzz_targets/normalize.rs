//! The path and Host normaliser (`proxy::normalize`), which everything that
//! decides on a request (routing, the cache key, redirects, the upstream
//! request) relies on to see one form of it.
//!
//! Input: the first line is a request path (no query); each further line
//! is a Host header value.
//!
//! ```text
//! /a/./b/../%63;x//d/
//! Example.COM.:8080
//! ```
//!
//! Invariants, for a path accepted with each of the listener's options
//! (`merge_slashes` on and off, encoded slashes refused or kept):
//! - the output starts with `/` and has no `.` or `..` segment (nor one
//!   that is a dot segment but for `;parameters`);
//! - normalising is idempotent: the output normalises to itself, match
//!   path included;
//! - the match path (parameters left out) is itself in normal form: what
//!   routes see is what a servlet container that drops parameters serves;
//! - with `merge_slashes`, no empty segment but a trailing one.
//!
//! For a Host: an accepted one is lower-case without a trailing dot, and
//! its header value parses back to it.

#![no_main]

use edge_fuzz::{lines, text};
use edge_userspace::proxy::normalize::{
    EncodedSlashes, HostSources, Normalized, PathOptions, normalize_path, parse_host, request_host,
    target_form,
};
use libfuzzer_sys::fuzz_target;

fn is_dot(segment: &str) -> bool {
    let name = segment.split_once(';').map_or(segment, |(n, _)| n);
    name == "." || name == ".."
}

fn check_path(raw: &str, options: PathOptions) {
    let merge_slashes = options.merge_slashes;
    let Ok(n) = normalize_path(raw, options) else {
        return;
    };
    let show = |n: &Normalized| format!("{:?} (match {:?})", n.path, n.match_path());
    for (what, path) in [("path", n.path.as_str()), ("match path", n.match_path())] {
        assert!(
            path.starts_with('/'),
            "{raw:?} gave the {what} {}",
            show(&n)
        );
        let segments: Vec<&str> = path[1..].split('/').collect();
        assert!(
            !segments.iter().any(|s| is_dot(s)),
            "{raw:?} gave the {what} {} with a dot segment",
            show(&n)
        );
        if merge_slashes {
            let inner = &segments[..segments.len() - 1];
            assert!(
                !inner.iter().any(|s| s.is_empty()),
                "{raw:?} (merge_slashes) gave the {what} {} with an empty segment",
                show(&n)
            );
        }
    }
    let again = normalize_path(&n.path, options);
    assert_eq!(
        again.as_ref(),
        Ok(&n),
        "not idempotent: {raw:?} gave {}, which gave {:?}",
        show(&n),
        again.as_ref().map(show)
    );
    let matched = normalize_path(n.match_path(), options);
    assert_eq!(
        matched.as_ref().map(|m| m.path.as_str()),
        Ok(n.match_path()),
        "{raw:?} gave the match path {:?}, which is not in normal form",
        n.match_path()
    );
}

fuzz_target!(|data: &[u8]| {
    let mut input = lines(data);
    let Some(path) = input.next().and_then(text) else {
        return;
    };
    let _ = target_form(path.as_bytes());
    for merge_slashes in [true, false] {
        for encoded_slashes in [EncodedSlashes::Reject, EncodedSlashes::Keep] {
            check_path(
                path,
                PathOptions {
                    merge_slashes,
                    encoded_slashes,
                    ..PathOptions::default()
                },
            );
        }
    }

    let hosts: Vec<&[u8]> = input.collect();
    for raw in hosts.iter().filter_map(|h| text(h)) {
        let Ok(host) = parse_host(raw) else {
            continue;
        };
        assert_eq!(host.name, host.name.to_ascii_lowercase(), "{raw:?}");
        assert!(!host.name.ends_with('.'), "{raw:?} kept its trailing dot");
        assert_eq!(
            parse_host(&host.header_value()).as_ref(),
            Ok(&host),
            "{raw:?} does not parse back"
        );
    }
    for (http11, http2) in [(true, false), (false, true), (false, false)] {
        let _ = request_host(&HostSources {
            authority: None,
            host_headers: &hosts,
            http11,
            http2,
        });
    }
});
