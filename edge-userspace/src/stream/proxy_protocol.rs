//! The PROXY protocol (HAProxy's, v1 text and v2 binary): written ahead
//! of a stream to a backend so it sees the client's address, and read
//! from trusted peers (a load balancer in front of edge) on listeners
//! that accept it. Encoding and parsing are the `ppp` crate's.

use ppp::PartialResult;
use std::net::{IpAddr, SocketAddr};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Longest header accepted from a peer: a v1 line is at most 107 bytes;
/// a v2 header may carry TLVs, which edge reads past but bounds.
pub const MAX_HEADER: usize = 1024;

/// Which version to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// The text form.
    V1,
    /// The binary form.
    V2,
}

impl Version {
    /// The name used in the YAML file.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        }
    }
}

/// Both addresses in one family (an IPv4 one mapped into IPv6 when the
/// other is IPv6), as a header needs.
fn same_family(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    let v6 = |s: SocketAddr| match s.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), s.port()),
        IpAddr::V6(_) => s,
    };
    match (a, b) {
        (SocketAddr::V4(_), SocketAddr::V4(_)) | (SocketAddr::V6(_), SocketAddr::V6(_)) => (a, b),
        _ => (v6(a), v6(b)),
    }
}

/// The header for a stream from `client` that arrived at `local`.
pub fn header(version: Version, client: SocketAddr, local: SocketAddr) -> Vec<u8> {
    let (client, local) = same_family(client, local);
    match version {
        Version::V1 => ppp::v1::Addresses::from((client, local))
            .to_string()
            .into_bytes(),
        Version::V2 => {
            let builder = ppp::v2::Builder::with_addresses(
                ppp::v2::Version::Two | ppp::v2::Command::Proxy,
                ppp::v2::Protocol::Stream,
                (client, local),
            );
            // Building into a Vec cannot fail for addresses alone.
            builder.build().unwrap_or_default()
        }
    }
}

/// What the first bytes of a connection from a trusted peer say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed.
    Incomplete,
    /// A header of `len` bytes; `client` is the address it names (`None`
    /// for `LOCAL` / `UNKNOWN`: the peer's own connection, a health check).
    Header {
        /// The client it speaks for.
        client: Option<SocketAddr>,
        /// Its length.
        len: usize,
    },
    /// Not a PROXY header.
    Invalid,
}

/// Reads a v1 or v2 header at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    if buf.starts_with(ppp::v2::PROTOCOL_PREFIX) || ppp::v2::PROTOCOL_PREFIX.starts_with(buf) {
        let h = ppp::v2::Header::try_from(buf);
        if h.is_incomplete() {
            return bounded(buf);
        }
        return match h {
            Ok(h) => Parsed::Header {
                client: match (h.command, h.addresses) {
                    (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv4(a)) => {
                        Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                    }
                    (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv6(a)) => {
                        Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                    }
                    _ => None,
                },
                len: h.header.len(),
            },
            Err(_) => Parsed::Invalid,
        };
    }
    if b"PROXY ".starts_with(buf) && buf.len() < 6 {
        return Parsed::Incomplete;
    }
    if !buf.starts_with(b"PROXY ") {
        return Parsed::Invalid;
    }
    // A v1 line ends at its CRLF; a longer one is not a header.
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() > 107 {
            Parsed::Invalid
        } else {
            Parsed::Incomplete
        };
    };
    match ppp::v1::Header::try_from(&buf[..end + 2]) {
        Ok(h) => Parsed::Header {
            client: match h.addresses {
                ppp::v1::Addresses::Tcp4(a) => {
                    Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                ppp::v1::Addresses::Tcp6(a) => {
                    Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                ppp::v1::Addresses::Unknown => None,
            },
            len: end + 2,
        },
        Err(_) => Parsed::Invalid,
    }
}

/// Reads the PROXY header a trusted peer must send first, exactly (the
/// bytes after it are the client's); the client address it names
/// (`None` for `LOCAL`/`UNKNOWN`), or why it is not one: a metric label.
pub async fn read_header<S: AsyncRead + Unpin>(
    s: &mut S,
) -> Result<Option<SocketAddr>, &'static str> {
    // Twelve bytes tell the versions apart: v2's signature, or the start
    // of a v1 line (the shortest, "PROXY UNKNOWN\r\n", has 15).
    let mut buf = vec![0u8; 12];
    s.read_exact(&mut buf).await.map_err(|_| "closed")?;
    if buf == ppp::v2::PROTOCOL_PREFIX {
        buf.resize(16, 0);
        s.read_exact(&mut buf[12..]).await.map_err(|_| "closed")?;
        let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        if 16 + len > MAX_HEADER {
            return Err("too_large");
        }
        buf.resize(16 + len, 0);
        s.read_exact(&mut buf[16..]).await.map_err(|_| "closed")?;
    } else if buf.starts_with(b"PROXY ") {
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n") {
            if buf.len() >= 107 {
                return Err("malformed");
            }
            s.read_exact(&mut byte).await.map_err(|_| "closed")?;
            buf.push(byte[0]);
        }
    } else {
        return Err("missing");
    }
    match parse(&buf) {
        Parsed::Header { client, len } if len == buf.len() => Ok(client),
        _ => Err("malformed"),
    }
}

fn bounded(buf: &[u8]) -> Parsed {
    if buf.len() >= MAX_HEADER {
        Parsed::Invalid
    } else {
        Parsed::Incomplete
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn written_headers_read_back() {
        for v in [Version::V1, Version::V2] {
            for (c, l) in [
                ("192.0.2.7:40000", "198.51.100.1:6379"),
                ("[2001:db8::7]:40000", "[2001:db8::1]:443"),
            ] {
                let h = header(v, addr(c), addr(l));
                let mut stream = h.clone();
                stream.extend_from_slice(b"PING\r\n");
                assert_eq!(
                    parse(&stream),
                    Parsed::Header {
                        client: Some(addr(c)),
                        len: h.len()
                    },
                    "{v:?} {c}"
                );
                for cut in 0..h.len() {
                    assert_eq!(parse(&h[..cut]), Parsed::Incomplete, "{v:?} cut {cut}");
                }
            }
        }
        assert_eq!(
            String::from_utf8(header(
                Version::V1,
                addr("192.0.2.7:1"),
                addr("198.51.100.1:2")
            ))
            .unwrap(),
            "PROXY TCP4 192.0.2.7 198.51.100.1 1 2\r\n"
        );
    }

    #[test]
    fn mixed_families_are_mapped() {
        let h = header(Version::V1, addr("192.0.2.7:1"), addr("[::1]:2"));
        assert_eq!(
            String::from_utf8(h).unwrap(),
            "PROXY TCP6 ::ffff:192.0.2.7 ::1 1 2\r\n"
        );
    }

    #[tokio::test]
    async fn headers_are_read_exactly() {
        for v in [Version::V1, Version::V2] {
            let mut stream = header(v, addr("192.0.2.7:40000"), addr("198.51.100.1:80"));
            stream.extend_from_slice(b"GET / HTTP/1.1\r\n");
            let mut r = stream.as_slice();
            assert_eq!(read_header(&mut r).await, Ok(Some(addr("192.0.2.7:40000"))));
            assert_eq!(r, b"GET / HTTP/1.1\r\n", "{v:?}");
        }
        let mut r: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(read_header(&mut r).await, Err("missing"));
        let mut r: &[u8] = b"PROXY TCP4 1.2.3.4";
        assert_eq!(read_header(&mut r).await, Err("closed"));
        let long = [b"PROXY ".as_slice(), &[b'1'; 200]].concat();
        assert_eq!(read_header(&mut long.as_slice()).await, Err("malformed"));
        let mut big = ppp::v2::PROTOCOL_PREFIX.to_vec();
        big.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert_eq!(read_header(&mut big.as_slice()).await, Err("too_large"));
    }

    #[test]
    fn other_bytes_are_not_headers() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Parsed::Invalid);
        assert_eq!(parse(b"PROXY TCP4 nonsense\r\n"), Parsed::Invalid);
        assert_eq!(parse(&[b'P'; 200]), Parsed::Invalid);
        let mut long = b"PROXY TCP4 ".to_vec();
        long.extend([b'1'; 200]);
        assert_eq!(parse(&long), Parsed::Invalid);
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\nrest"),
            Parsed::Header {
                client: None,
                len: 15
            }
        );
    }
}
