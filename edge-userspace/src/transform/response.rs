//! The response side: JSON changes and XML → JSON conversion of a
//! response body, read whole (bounded) and decoded first when the
//! upstream compressed it.
//!
//! Pingora sends the response head before the body arrives. So what can be
//! decided from the head is decided there (a declared XML body over the
//! limit or in an encoding edge cannot decode is a 502); what is only found
//! in the body cannot change the status any more: a JSON body that cannot
//! be changed goes out as it came, and an XML body that cannot be
//! converted ends the response abnormally (the client sees a failed
//! response, never the unconverted or half a document).

use super::{is_json, is_xml, xml};
use crate::config::shaping::ResponseTransform;
use bytes::{Bytes, BytesMut};
use pingora::http::ResponseHeader;
use std::io::Read;

/// What a response's body goes through.
#[derive(Debug, Default)]
pub struct ResponseShape {
    state: State,
    what: Option<What>,
    encoding: Encoding,
    buf: BytesMut,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum State {
    /// Nothing to do.
    #[default]
    Off,
    /// Collecting a JSON body.
    Json,
    /// Collecting an XML body.
    Xml,
    /// A JSON body over the limit: the rest passes as it comes.
    Passing,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Encoding {
    #[default]
    Identity,
    Gzip,
    Deflate,
    Brotli,
}

/// Which transformation ran, for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum What {
    /// JSON changes.
    Json,
    /// XML → JSON.
    Xml,
}

impl What {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            What::Json => "response_json",
            What::Xml => "xml_to_json",
        }
    }
}

/// How a transformation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Done {
    /// Transformed.
    Ok(What),
    /// Passed on unchanged (not JSON, too large, unknown encoding).
    Skipped(What),
}

/// A response edge refuses at its head: 502 with this message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HeadRefusal(pub String);

/// A body that could not be converted after its head went out.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Larger than `max_body`, once decoded.
    #[error("the body is larger than {0} bytes")]
    TooLarge(usize),
    /// The compressed body does not decode.
    #[error("the {0} body does not decode")]
    Decode(&'static str),
    /// Not convertible XML.
    #[error("{0}")]
    Xml(#[from] xml::XmlError),
}

fn header(resp: &ResponseHeader, name: http::header::HeaderName) -> Option<&str> {
    resp.headers.get(name).and_then(|v| v.to_str().ok())
}

impl ResponseShape {
    /// Decides from the response head what the body goes through and
    /// makes the head say what will be sent; `Ok(Some(skipped))` when a
    /// transformation applies but is passed over.
    pub fn start(
        &mut self,
        resp: &mut ResponseHeader,
        t: &ResponseTransform,
        head_request: bool,
    ) -> Result<Option<Done>, HeadRefusal> {
        // A retry's answer starts afresh.
        *self = Self::default();
        let status = resp.status.as_u16();
        if status < 200 || status == 204 || status == 304 {
            return Ok(None);
        }
        let ct = header(resp, http::header::CONTENT_TYPE);
        let what = if t.xml_to_json.is_some() && is_xml(ct) {
            What::Xml
        } else if !t.json.is_empty() && is_json(ct) {
            What::Json
        } else {
            return Ok(None);
        };
        // A slice of a document cannot be transformed, and passing it on
        // would hand out what `remove` is there to hold back (edge asks
        // upstream for whole bodies on these routes: this is a backend
        // that answers ranges unasked).
        if status == 206 {
            return Err(HeadRefusal(
                "the upstream answered a range (206), which cannot be transformed".into(),
            ));
        }
        let encoding = match header(resp, http::header::CONTENT_ENCODING)
            .map(|e| e.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("") | Some("identity") => Encoding::Identity,
            Some("gzip") | Some("x-gzip") => Encoding::Gzip,
            Some("deflate") => Encoding::Deflate,
            Some("br") => Encoding::Brotli,
            Some(other) => {
                if what == What::Xml {
                    return Err(HeadRefusal(format!(
                        "the upstream's XML could not be converted: content-encoding {other:?} is not decoded"
                    )));
                }
                return Ok(Some(Done::Skipped(what)));
            }
        };
        let declared = crate::proxy::limits::declared_length(&resp.headers);
        if declared.is_some_and(|n| n > t.max_body as u64) {
            if what == What::Xml {
                return Err(HeadRefusal(format!(
                    "the upstream's XML could not be converted: it is larger than {} bytes",
                    t.max_body
                )));
            }
            return Ok(Some(Done::Skipped(what)));
        }
        self.what = Some(what);
        // A HEAD answer gets the head a GET would get, and no body.
        self.state = match (head_request, what) {
            (true, _) => State::Off,
            (false, What::Xml) => State::Xml,
            (false, What::Json) => State::Json,
        };
        self.encoding = encoding;
        resp.remove_header(&http::header::CONTENT_LENGTH);
        let _ = resp.insert_header(http::header::TRANSFER_ENCODING, "chunked");
        // The body changes: ranges and digests of the upstream's bytes no
        // longer describe it, and a strong validator names exact bytes.
        resp.remove_header(&http::header::ACCEPT_RANGES);
        resp.remove_header("content-md5");
        let _ = crate::proxy::headers::weaken_etag(resp);
        if encoding != Encoding::Identity {
            resp.remove_header(&http::header::CONTENT_ENCODING);
        }
        if what == What::Xml {
            let _ = resp.insert_header(http::header::CONTENT_TYPE, "application/json");
        }
        Ok(None)
    }

    /// The transformation this response goes through, if any.
    pub fn what(&self) -> Option<What> {
        self.what
    }

    /// Whether the body is being collected.
    pub fn active(&self) -> bool {
        matches!(self.state, State::Json | State::Xml)
    }

    /// Takes one piece of the body; at its end, puts the transformed body
    /// in its place. `Ok(Some(_))` once the transformation has ended.
    pub fn body(
        &mut self,
        t: &ResponseTransform,
        body: &mut Option<Bytes>,
        end: bool,
    ) -> Result<Option<Done>, BodyError> {
        let what = match self.state {
            State::Off | State::Passing => return Ok(None),
            State::Json => What::Json,
            State::Xml => What::Xml,
        };
        let chunk = body.take().unwrap_or_default();
        if self.buf.len() + chunk.len() > t.max_body {
            if what == What::Json && self.encoding == Encoding::Identity {
                self.state = State::Passing;
                let mut out = std::mem::take(&mut self.buf);
                out.extend_from_slice(&chunk);
                *body = Some(out.freeze());
                return Ok(Some(Done::Skipped(what)));
            }
            self.state = State::Off;
            return Err(BodyError::TooLarge(t.max_body));
        }
        self.buf.extend_from_slice(&chunk);
        if !end {
            // Nothing goes out until the whole body is here.
            *body = Some(Bytes::new());
            return Ok(None);
        }
        self.state = State::Off;
        let raw = std::mem::take(&mut self.buf).freeze();
        let plain = decode(self.encoding, raw, t.max_body)?;
        let mut doc = match what {
            What::Xml => xml::xml_to_json(
                &plain,
                &xml::XmlLimits {
                    max_depth: t.xml_to_json.unwrap_or(64),
                },
            )?,
            What::Json => match serde_json::from_slice(&plain) {
                Ok(doc) => doc,
                Err(_) => {
                    // Not JSON after all: the service's bytes, as sent.
                    *body = Some(plain);
                    return Ok(Some(Done::Skipped(what)));
                }
            },
        };
        t.json.apply(&mut doc);
        let out = serde_json::to_vec(&doc).unwrap_or_default();
        *body = Some(Bytes::from(out));
        Ok(Some(Done::Ok(what)))
    }
}

/// The body decoded, at most `max` bytes.
fn decode(encoding: Encoding, raw: Bytes, max: usize) -> Result<Bytes, BodyError> {
    let limit = max as u64 + 1;
    let mut out = Vec::new();
    let read = match encoding {
        Encoding::Identity => return Ok(raw),
        Encoding::Gzip => flate2::read::MultiGzDecoder::new(&raw[..])
            .take(limit)
            .read_to_end(&mut out)
            .map_err(|_| BodyError::Decode("gzip")),
        // RFC 9110's deflate is zlib-wrapped; some servers send it raw.
        Encoding::Deflate => flate2::read::ZlibDecoder::new(&raw[..])
            .take(limit)
            .read_to_end(&mut out)
            .or_else(|_| {
                out.clear();
                flate2::read::DeflateDecoder::new(&raw[..])
                    .take(limit)
                    .read_to_end(&mut out)
            })
            .map_err(|_| BodyError::Decode("deflate")),
        Encoding::Brotli => brotli::Decompressor::new(&raw[..], 4096)
            .take(limit)
            .read_to_end(&mut out)
            .map_err(|_| BodyError::Decode("br")),
    };
    read?;
    if out.len() > max {
        return Err(BodyError::TooLarge(max));
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::shaping::{JsonOps, Pointer};
    use std::io::Write;

    fn transform(xml: bool, max_body: usize) -> ResponseTransform {
        ResponseTransform {
            xml_to_json: xml.then_some(64),
            json: JsonOps {
                remove: vec![Pointer::parse("/secret").unwrap()],
                ..Default::default()
            },
            max_body,
        }
    }

    fn head(ct: &str, extra: &[(&str, &str)]) -> ResponseHeader {
        let mut h = ResponseHeader::build(200, None).unwrap();
        h.insert_header("content-type", ct).unwrap();
        for (k, v) in extra {
            h.insert_header(k.to_string(), *v).unwrap();
        }
        h
    }

    fn run(
        shape: &mut ResponseShape,
        t: &ResponseTransform,
        pieces: &[&[u8]],
    ) -> Result<Vec<u8>, BodyError> {
        let mut out = Vec::new();
        for (i, p) in pieces.iter().enumerate() {
            let mut b = Some(Bytes::copy_from_slice(p));
            shape.body(t, &mut b, i + 1 == pieces.len())?;
            out.extend_from_slice(&b.unwrap_or_default());
        }
        Ok(out)
    }

    #[test]
    fn json_is_changed_across_pieces() {
        let t = transform(false, 1024);
        let mut s = ResponseShape::default();
        let mut h = head(
            "application/json",
            &[("content-length", "30"), ("etag", "\"x\"")],
        );
        assert_eq!(s.start(&mut h, &t, false).unwrap(), None);
        assert!(h.headers.get("content-length").is_none());
        assert_eq!(h.headers.get("etag").unwrap().as_bytes(), b"W/\"x\"");
        let out = run(&mut s, &t, &[b"{\"a\":1,", b"\"secret\":2}"]).unwrap();
        assert_eq!(out, b"{\"a\":1}");
    }

    #[test]
    fn gzip_json_is_decoded_and_changed() {
        let t = transform(false, 1024);
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b"{\"a\":1,\"secret\":2}").unwrap();
        let gz = e.finish().unwrap();
        let mut s = ResponseShape::default();
        let mut h = head("application/json", &[("content-encoding", "gzip")]);
        s.start(&mut h, &t, false).unwrap();
        assert!(h.headers.get("content-encoding").is_none());
        let (a, b) = gz.split_at(5);
        assert_eq!(run(&mut s, &t, &[a, b]).unwrap(), b"{\"a\":1}");
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_limit() {
        let t = transform(false, 1024);
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&vec![b' '; 10 << 20]).unwrap();
        let gz = e.finish().unwrap();
        let mut s = ResponseShape::default();
        let mut h = head("application/json", &[("content-encoding", "gzip")]);
        s.start(&mut h, &t, false).unwrap();
        assert!(matches!(
            run(&mut s, &t, &[&gz]),
            Err(BodyError::TooLarge(1024))
        ));
    }

    #[test]
    fn json_over_the_limit_and_non_json_pass_unchanged() {
        let t = transform(false, 8);
        let mut s = ResponseShape::default();
        let mut h = head("application/json", &[]);
        s.start(&mut h, &t, false).unwrap();
        assert_eq!(
            run(&mut s, &t, &[b"{\"secret\":", b"1,\"b\":2}"]).unwrap(),
            b"{\"secret\":1,\"b\":2}"
        );
        let t = transform(false, 1024);
        let mut s = ResponseShape::default();
        let mut h = head("application/json", &[]);
        s.start(&mut h, &t, false).unwrap();
        assert_eq!(run(&mut s, &t, &[b"not json"]).unwrap(), b"not json");
        let mut s = ResponseShape::default();
        let mut h = head("text/plain", &[("content-length", "3")]);
        s.start(&mut h, &t, false).unwrap();
        assert!(!s.active() && h.headers.get("content-length").is_some());
    }

    #[test]
    fn xml_is_converted_and_refused_at_the_head_when_too_large() {
        let t = transform(true, 64);
        let mut s = ResponseShape::default();
        let mut h = head("application/xml", &[("content-length", "65")]);
        assert!(s.start(&mut h, &t, false).is_err());
        let mut s = ResponseShape::default();
        let mut h = head("text/xml", &[]);
        s.start(&mut h, &t, false).unwrap();
        assert_eq!(
            h.headers.get("content-type").unwrap().as_bytes(),
            b"application/json"
        );
        let out = run(&mut s, &t, &[b"<a><b>1</b>", b"<secret>x</secret></a>"]).unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(doc, serde_json::json!({"a": {"b": "1", "secret": "x"}}));
        let mut s = ResponseShape::default();
        let mut h = head("text/xml", &[]);
        s.start(&mut h, &t, false).unwrap();
        assert!(run(&mut s, &t, &[b"<a><b></a>"]).is_err());
    }
}
