//! The server name a TLS client asks for, read from its ClientHello
//! without terminating TLS (the bytes read are forwarded unchanged).
//!
//! The ClientHello may span several TLS records; they are reassembled up
//! to [`MAX_CLIENT_HELLO`] bytes. The handshake message is then parsed
//! with `tls-parser`, and the `server_name` extension read.

use tls_parser::{
    SNIType, TlsExtension, TlsMessage, TlsMessageHandshake, parse_tls_extensions,
    parse_tls_message_handshake,
};

/// Largest ClientHello accepted (handshake message bytes). Real ones are
/// a few hundred bytes to 2 KiB (post-quantum key shares); 16 KiB is
/// what one TLS record holds.
pub const MAX_CLIENT_HELLO: usize = 16 * 1024;
/// Most bytes read while looking for it: the message and the headers of
/// the records it may be split over.
pub const MAX_READ: usize = MAX_CLIENT_HELLO + 64 * 5;
/// Longest TLS plaintext record (RFC 8446 §5.1).
const MAX_RECORD: usize = 16 * 1024;
/// Longest DNS name.
const MAX_NAME: usize = 253;

/// Why no server name could be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The bytes are not a TLS handshake (a plain HTTP request, say).
    NotTls,
    /// A TLS handshake that does not parse as a ClientHello.
    Malformed,
    /// Larger than [`MAX_CLIENT_HELLO`].
    TooLarge,
}

impl Refusal {
    /// A metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::NotTls => "not_tls",
            Refusal::Malformed => "malformed",
            Refusal::TooLarge => "too_large",
        }
    }
}

/// What the bytes so far say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// More bytes are needed.
    Incomplete,
    /// The ClientHello is whole: its server name (lower case), if any.
    Name(Option<String>),
    /// It cannot be a usable ClientHello.
    Refused(Refusal),
}

/// Reads `buf`, the first bytes of a connection, at once.
pub fn parse(buf: &[u8]) -> Hello {
    Reader::default().read(buf)
}

/// Reads the first bytes of a connection as they arrive, each record
/// once: a client sending one byte at a time costs no more than one
/// sending the whole ClientHello.
#[derive(Debug, Default)]
pub struct Reader {
    /// Where the next record starts.
    at: usize,
    /// The handshake bytes of the records read so far.
    handshake: Vec<u8>,
}

impl Reader {
    /// Reads on in `buf`, every byte received so far (those given before
    /// first, unchanged).
    pub fn read(&mut self, buf: &[u8]) -> Hello {
        loop {
            let Some(header) = buf.get(self.at..self.at + 5) else {
                return incomplete(buf);
            };
            if header[0] != 0x16 || header[1] != 3 {
                return Hello::Refused(Refusal::NotTls);
            }
            let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
            if len == 0 || len > MAX_RECORD {
                return Hello::Refused(Refusal::Malformed);
            }
            let Some(fragment) = buf.get(self.at + 5..self.at + 5 + len) else {
                return incomplete(buf);
            };
            self.handshake.extend_from_slice(fragment);
            self.at += 5 + len;
            let h = &self.handshake;
            if h.len() < 4 {
                continue;
            }
            if h[0] != 1 {
                return Hello::Refused(Refusal::Malformed);
            }
            let msg_len = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
            if msg_len > MAX_CLIENT_HELLO {
                return Hello::Refused(Refusal::TooLarge);
            }
            if h.len() >= 4 + msg_len {
                return server_name(&h[..4 + msg_len]);
            }
        }
    }
}

fn incomplete(buf: &[u8]) -> Hello {
    if buf.len() >= MAX_READ {
        Hello::Refused(Refusal::TooLarge)
    } else {
        Hello::Incomplete
    }
}

/// The server name of a whole ClientHello handshake message.
fn server_name(message: &[u8]) -> Hello {
    let Ok((_, TlsMessage::Handshake(TlsMessageHandshake::ClientHello(hello)))) =
        parse_tls_message_handshake(message)
    else {
        return Hello::Refused(Refusal::Malformed);
    };
    let Some(ext) = hello.ext else {
        return Hello::Name(None);
    };
    let Ok((_, extensions)) = parse_tls_extensions(ext) else {
        return Hello::Refused(Refusal::Malformed);
    };
    for e in extensions {
        if let TlsExtension::SNI(names) = e {
            for (kind, name) in names {
                if kind != SNIType::HostName {
                    continue;
                }
                return match std::str::from_utf8(name) {
                    Ok(n) if valid_name(n) => {
                        Hello::Name(Some(n.trim_end_matches('.').to_ascii_lowercase()))
                    }
                    _ => Hello::Refused(Refusal::Malformed),
                };
            }
        }
    }
    Hello::Name(None)
}

/// A DNS name as SNI carries it (RFC 6066 §3: ASCII, no trailing dot
/// needed, no IP literals required to be refused but no spaces or
/// control bytes either).
fn valid_name(n: &str) -> bool {
    let n = n.strip_suffix('.').unwrap_or(n);
    !n.is_empty()
        && n.len() <= MAX_NAME
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello with `sni` (if any), as a handshake message.
    fn hello_message(sni: Option<&str>, padding: usize) -> Vec<u8> {
        let mut ext = Vec::new();
        if let Some(name) = sni {
            let mut list = vec![0u8];
            list.extend_from_slice(&(name.len() as u16).to_be_bytes());
            list.extend_from_slice(name.as_bytes());
            let mut data = (list.len() as u16).to_be_bytes().to_vec();
            data.extend(list);
            ext.extend_from_slice(&[0, 0]);
            ext.extend_from_slice(&(data.len() as u16).to_be_bytes());
            ext.extend(data);
        }
        if padding > 0 {
            ext.extend_from_slice(&[0, 21]);
            ext.extend_from_slice(&(padding as u16).to_be_bytes());
            ext.extend(std::iter::repeat_n(0u8, padding));
        }
        let mut body = vec![3, 3];
        body.extend([7u8; 32]);
        body.push(0); // session id
        body.extend_from_slice(&[0, 2, 0x13, 0x01]); // one cipher
        body.extend_from_slice(&[1, 0]); // null compression
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend(ext);
        let mut m = vec![1];
        m.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        m.extend(body);
        m
    }

    /// `message` in TLS records of at most `max` bytes each.
    fn records(message: &[u8], max: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in message.chunks(max) {
            out.extend_from_slice(&[0x16, 3, 1]);
            out.extend_from_slice(&(piece.len() as u16).to_be_bytes());
            out.extend_from_slice(piece);
        }
        out
    }

    #[test]
    fn names_are_read_from_one_record_or_many() {
        let m = hello_message(Some("API.Example.com"), 0);
        assert_eq!(
            parse(&records(&m, 1 << 14)),
            Hello::Name(Some("api.example.com".into()))
        );
        assert_eq!(
            parse(&records(&m, 7)),
            Hello::Name(Some("api.example.com".into()))
        );
        assert_eq!(
            parse(&records(&hello_message(None, 0), 100)),
            Hello::Name(None)
        );
    }

    #[test]
    fn every_prefix_is_incomplete_never_wrong() {
        let bytes = records(&hello_message(Some("a.example"), 300), 120);
        let mut reader = Reader::default();
        for cut in 0..bytes.len() {
            assert_eq!(parse(&bytes[..cut]), Hello::Incomplete, "cut at {cut}");
            assert_eq!(
                reader.read(&bytes[..cut]),
                Hello::Incomplete,
                "fed to {cut}"
            );
        }
        assert_eq!(parse(&bytes), Hello::Name(Some("a.example".into())));
        assert_eq!(reader.read(&bytes), Hello::Name(Some("a.example".into())));
    }

    #[test]
    fn what_is_not_a_usable_client_hello_is_refused() {
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\n"),
            Hello::Refused(Refusal::NotTls)
        );
        assert_eq!(
            parse(&[0x16, 3, 1, 0, 0]),
            Hello::Refused(Refusal::Malformed)
        );
        // A ServerHello where a ClientHello belongs.
        let mut m = hello_message(Some("x.test"), 0);
        m[0] = 2;
        assert_eq!(
            parse(&records(&m, 1000)),
            Hello::Refused(Refusal::Malformed)
        );
        // Oversized, declared or sent.
        let big = hello_message(Some("x.test"), MAX_CLIENT_HELLO);
        assert_eq!(
            parse(&records(&big, 1 << 14)),
            Hello::Refused(Refusal::TooLarge)
        );
        // A small message spread over one-byte records costs six times
        // its size to read: reading stops at MAX_READ.
        let thin = records(&hello_message(Some("x.test"), 4000), 1);
        assert!(thin.len() > MAX_READ);
        assert_eq!(parse(&thin[..MAX_READ]), Hello::Refused(Refusal::TooLarge));
        // Garbage inside a well-framed record.
        let mut m = hello_message(Some("x.test"), 0);
        let n = m.len();
        m[n - 3] = 0xff;
        assert!(matches!(
            parse(&records(&m, 1000)),
            Hello::Refused(Refusal::Malformed) | Hello::Name(_)
        ));
        // Names that are not DNS names.
        for bad in ["", "a b", "1.2.3.4\0", "x..y"] {
            let m = hello_message(Some(bad), 0);
            assert_eq!(
                parse(&records(&m, 1000)),
                Hello::Refused(Refusal::Malformed),
                "{bad:?}"
            );
        }
    }
}
