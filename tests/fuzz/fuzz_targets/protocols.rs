//! The protocol parsers that read what clients and peers send before any
//! routing, on arbitrary input; the first byte picks which:
//!
//! - `h`: a TLS ClientHello (`stream::client_hello`), the second byte the
//!   size of the pieces it arrives in: the incremental reader agrees with
//!   a whole parse at every length, and a server name is a lower-case DNS
//!   name of at most 253 bytes.
//! - `p`: a PROXY protocol header (`stream::proxy_protocol`): a header
//!   found lies within the input and reads the same from its own bytes;
//!   a client address it names, written back as v1 and v2, reads back.
//! - `g`: gRPC's length prefixes (`grpc::frames`), the second byte the
//!   piece size and the third the limit: pieces or whole, the same verdict;
//!   and `grpc-timeout` values, never more than 99 999 999 hours.
//! - `t`: a `google.api.http` path template from the first line matched
//!   against the second (`transcode::template`): a match binds each
//!   variable once, to a value without a `?`.

#![no_main]

use edge_userspace::{
    grpc::{self, frames::MessageLimit},
    stream::{
        client_hello::{self, Hello},
        proxy_protocol::{self, Parsed, Version},
    },
    transcode::template::Template,
};
use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;

fn hello(rest: &[u8]) {
    let Some((&size, bytes)) = rest.split_first() else {
        return;
    };
    let step = usize::from(size.max(1));
    let mut reader = client_hello::Reader::default();
    let mut end = 0;
    loop {
        end = (end + step).min(bytes.len());
        let incremental = reader.read(&bytes[..end]);
        let whole = client_hello::parse(&bytes[..end]);
        assert_eq!(incremental, whole, "at {end} bytes");
        if let Hello::Name(Some(name)) = &whole {
            assert!(name.len() <= 253 && !name.ends_with('.'));
            assert_eq!(*name, name.to_ascii_lowercase());
        }
        if whole != Hello::Incomplete || end == bytes.len() {
            break;
        }
    }
}

fn proxy(rest: &[u8]) {
    if let Parsed::Header { client, len } = proxy_protocol::parse(rest) {
        assert!(len <= rest.len());
        assert_eq!(
            proxy_protocol::parse(&rest[..len]),
            Parsed::Header { client, len }
        );
        if let Some(client) = client {
            let local: SocketAddr = match client {
                SocketAddr::V4(_) => "192.0.2.1:80".parse().unwrap_or(client),
                SocketAddr::V6(_) => "[2001:db8::1]:80".parse().unwrap_or(client),
            };
            for v in [Version::V1, Version::V2] {
                let h = proxy_protocol::header(v, client, local);
                assert_eq!(
                    proxy_protocol::parse(&h),
                    Parsed::Header {
                        client: Some(client),
                        len: h.len()
                    }
                );
            }
        }
    }
}

fn frames(rest: &[u8]) {
    let [size, max, bytes @ ..] = rest else {
        return;
    };
    let max = u64::from(*max) * 16;
    let mut whole = MessageLimit::default();
    let expected = whole.feed(bytes, max);
    let mut pieces = MessageLimit::default();
    let got = bytes
        .chunks(usize::from((*size).max(1)))
        .map(|p| pieces.feed(p, max))
        .find(Result::is_err)
        .unwrap_or(Ok(()));
    assert_eq!(got, expected);
    if let Ok(text) = std::str::from_utf8(bytes)
        && let Some(d) = grpc::parse_timeout(text)
    {
        assert!(d.as_secs() <= 99_999_999 * 3600);
    }
}

fn template(rest: &[u8]) {
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let (template, path) = text.split_once('\n').unwrap_or((text, "/"));
    let Ok(t) = Template::parse(template) else {
        return;
    };
    if let Some(bound) = t.matches(path) {
        let fields: Vec<String> = t.fields().collect();
        assert_eq!(bound.len(), fields.len());
        for (field, _) in &bound {
            assert!(!field.is_empty());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which {
        b'h' => hello(rest),
        b'p' => proxy(rest),
        b'g' => frames(rest),
        b't' => template(rest),
        _ => {}
    }
});
