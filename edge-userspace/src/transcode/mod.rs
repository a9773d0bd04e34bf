//! REST→gRPC transcoding: JSON over HTTP to unary gRPC calls, as the
//! `google.api.http` annotations of a protobuf descriptor set describe
//! them, with the standard protobuf JSON mapping (prost-reflect).
//!
//! A request is matched to a method by its HTTP method and path template;
//! the path's variables, the query parameters and the JSON body (all of
//! it with `body: "*"`, or one field) make the request message, sent as
//! one length-prefixed gRPC message. The reply message comes back as
//! JSON; a gRPC error becomes the HTTP status of the standard mapping
//! with a JSON body `{"code", "message", "details"}`.

pub mod template;

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use prost_reflect::{
    DescriptorPool, DynamicMessage, ExtensionDescriptor, Kind, MessageDescriptor, MethodDescriptor,
    Value as PValue,
};
use serde_json::{Map, Value};
use std::path::Path;
use template::Template;

/// Most methods one route transcodes (each with its bindings).
pub const MAX_BINDINGS: usize = 1024;

/// Why a descriptor set cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file cannot be read.
    #[error("reading {path}: {why}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        why: std::io::Error,
    },
    /// Not a descriptor set.
    #[error("{path} is not a protobuf descriptor set: {why}")]
    Decode {
        /// The file.
        path: String,
        /// Why.
        why: String,
    },
    /// The set lacks `google/api/http.proto`.
    #[error(
        "{0} has no google.api.http extension: build it with \
         `protoc --include_imports --descriptor_set_out=...`"
    )]
    NoHttpExtension(String),
    /// A named service is not in the set.
    #[error("service {0} is not in the descriptor set")]
    UnknownService(String),
    /// A service has no method with an HTTP binding.
    #[error("service {0} has no method with a google.api.http option")]
    NoBindings(String),
    /// A method's binding is not usable.
    #[error("{method}: {why}")]
    BadBinding {
        /// `pkg.Service.Method`.
        method: String,
        /// Why.
        why: String,
    },
}

/// How a binding's body maps onto the request message.
#[derive(Clone, Debug)]
enum BodyRule {
    /// No body: only the path and the query.
    None,
    /// The whole message (`body: "*"`).
    All,
    /// One top-level field (`body: "field"`).
    Field(String),
}

/// One HTTP binding of a gRPC method.
#[derive(Clone, Debug)]
pub struct Binding {
    http_method: http::Method,
    template: Template,
    body: BodyRule,
    method: MethodDescriptor,
    /// The gRPC path, `/pkg.Service/Method`.
    pub grpc_path: String,
}

/// A route's transcoding table.
#[derive(Debug)]
pub struct Transcoder {
    bindings: Vec<Binding>,
}

/// A request edge refuses before calling (a 400 with this message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest(pub String);

impl Transcoder {
    /// Loads the descriptor set at `path` and the HTTP bindings of
    /// `services` (each must be in it, with at least one binding).
    pub fn load(path: &Path, services: &[String]) -> Result<Self, LoadError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|why| LoadError::Read {
            path: shown.clone(),
            why,
        })?;
        Self::from_bytes(&shown, &bytes, services)
    }

    /// Like [`Transcoder::load`], from the file's bytes.
    pub fn from_bytes(shown: &str, bytes: &[u8], services: &[String]) -> Result<Self, LoadError> {
        let pool = DescriptorPool::decode(bytes).map_err(|e| LoadError::Decode {
            path: shown.to_string(),
            why: e.to_string(),
        })?;
        let ext = pool
            .get_extension_by_name("google.api.http")
            .ok_or_else(|| LoadError::NoHttpExtension(shown.to_string()))?;
        let mut bindings = Vec::new();
        for name in services {
            let service = pool
                .get_service_by_name(name)
                .ok_or_else(|| LoadError::UnknownService(name.clone()))?;
            let before = bindings.len();
            for method in service.methods() {
                method_bindings(&method, &ext, &mut bindings)?;
            }
            if bindings.len() == before {
                return Err(LoadError::NoBindings(name.clone()));
            }
            if bindings.len() > MAX_BINDINGS {
                return Err(LoadError::BadBinding {
                    method: name.clone(),
                    why: format!("more than {MAX_BINDINGS} HTTP bindings"),
                });
            }
        }
        Ok(Self { bindings })
    }

    /// The binding for `method` and `path`, with the path's variables; the
    /// first in the file that matches wins.
    pub fn find(&self, method: &http::Method, path: &str) -> Option<(&Binding, template::Bound)> {
        self.bindings.iter().find_map(|b| {
            if b.http_method != *method {
                return None;
            }
            b.template.matches(path).map(|vars| (b, vars))
        })
    }

    /// How many bindings it has.
    pub fn len(&self) -> usize {
        self.bindings.len()
    }

    /// Whether it has none.
    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty()
    }
}

/// The bindings of `method` (its rule and `additional_bindings`).
fn method_bindings(
    method: &MethodDescriptor,
    ext: &ExtensionDescriptor,
    out: &mut Vec<Binding>,
) -> Result<(), LoadError> {
    let options = method.options();
    if !options.has_extension(ext) {
        return Ok(());
    }
    let bad = |why: String| LoadError::BadBinding {
        method: method.full_name().to_string(),
        why,
    };
    if method.is_client_streaming() || method.is_server_streaming() {
        return Err(bad(
            "only unary methods can be transcoded (this one streams)".to_string(),
        ));
    }
    let PValue::Message(rule) = options.get_extension(ext).into_owned() else {
        return Err(bad(
            "its google.api.http option is not an HttpRule".to_string()
        ));
    };
    let mut rules = vec![rule.clone()];
    if let Some(PValue::List(more)) = rule
        .get_field_by_name("additional_bindings")
        .map(|v| v.into_owned())
    {
        for m in more {
            if let PValue::Message(m) = m {
                rules.push(m);
            }
        }
    }
    for rule in rules {
        out.push(binding(method, &rule).map_err(bad)?);
    }
    Ok(())
}

fn string_field(m: &DynamicMessage, name: &str) -> Option<String> {
    if !m.has_field_by_name(name) {
        return None;
    }
    match m.get_field_by_name(name)?.into_owned() {
        PValue::String(s) => Some(s),
        _ => None,
    }
}

fn binding(method: &MethodDescriptor, rule: &DynamicMessage) -> Result<Binding, String> {
    let mut pattern = None;
    for (name, verb) in [
        ("get", http::Method::GET),
        ("put", http::Method::PUT),
        ("post", http::Method::POST),
        ("delete", http::Method::DELETE),
        ("patch", http::Method::PATCH),
    ] {
        if let Some(p) = string_field(rule, name) {
            pattern = Some((verb, p));
        }
    }
    if pattern.is_none()
        && rule.has_field_by_name("custom")
        && let Some(PValue::Message(c)) = rule.get_field_by_name("custom").map(|v| v.into_owned())
    {
        let kind = string_field(&c, "kind").unwrap_or_default();
        let verb = http::Method::from_bytes(kind.as_bytes())
            .map_err(|_| format!("custom method {kind:?} is not an HTTP method"))?;
        pattern = Some((verb, string_field(&c, "path").unwrap_or_default()));
    }
    let (http_method, path) = pattern.ok_or("the HttpRule has no pattern (get, post, ...)")?;
    let template = Template::parse(&path).map_err(|e| e.to_string())?;
    let input = method.input();
    for field in template.fields() {
        field_kind(
            &input,
            &field.split('.').map(str::to_string).collect::<Vec<_>>(),
        )
        .map_err(|e| format!("path {path:?}: {e}"))?;
    }
    let body = match string_field(rule, "body").as_deref() {
        None | Some("") => BodyRule::None,
        Some("*") => BodyRule::All,
        Some(f) => {
            if input.get_field_by_name(f).is_none() {
                return Err(format!(
                    "body field {f:?} is not a field of {}",
                    input.full_name()
                ));
            }
            BodyRule::Field(f.to_string())
        }
    };
    if string_field(rule, "response_body").is_some_and(|r| !r.is_empty()) {
        return Err("response_body is not supported: the whole reply is sent".to_string());
    }
    Ok(Binding {
        http_method,
        template,
        body,
        grpc_path: format!("/{}/{}", method.parent_service().full_name(), method.name()),
        method: method.clone(),
    })
}

/// The kind of the (scalar, non-repeated or repeated) field at `path` of
/// `message`, and whether it repeats.
fn field_kind(message: &MessageDescriptor, path: &[String]) -> Result<(Kind, bool), String> {
    let mut desc = message.clone();
    for (i, name) in path.iter().enumerate() {
        let field = desc
            .get_field_by_name(name)
            .or_else(|| desc.get_field_by_json_name(name))
            .ok_or_else(|| format!("{name:?} is not a field of {}", desc.full_name()))?;
        let last = i + 1 == path.len();
        match field.kind() {
            Kind::Message(m) if !last => {
                if field.is_list() || field.is_map() {
                    return Err(format!("{name:?} repeats: a path cannot go through it"));
                }
                desc = m;
            }
            Kind::Message(m) if last => {
                return Err(format!(
                    "{name:?} is a message ({}): only scalar fields come from a path or query",
                    m.full_name()
                ));
            }
            kind if last => return Ok((kind, field.is_list())),
            _ => return Err(format!("{name:?} is not a message: nothing is inside it")),
        }
    }
    Err("empty field path".to_string())
}

impl Binding {
    /// The request message from the path's `vars`, the `query` and the
    /// JSON `body`, as one length-prefixed gRPC message.
    pub fn request(
        &self,
        vars: &template::Bound,
        query: Option<&str>,
        body: &[u8],
    ) -> Result<Bytes, BadRequest> {
        let input = self.method.input();
        let mut root = Map::new();
        let parsed = if body.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            Some(
                serde_json::from_slice::<Value>(body)
                    .map_err(|e| BadRequest(format!("the body is not JSON: {e}")))?,
            )
        };
        let mut bound: Vec<String> = Vec::new();
        match (&self.body, parsed) {
            (BodyRule::None, Some(_)) => {
                return Err(BadRequest("this method takes no body".to_string()));
            }
            (BodyRule::None, None) | (BodyRule::All, None) => {}
            (BodyRule::All, Some(Value::Object(m))) => root = m,
            (BodyRule::All, Some(_)) => {
                return Err(BadRequest("the body must be a JSON object".to_string()));
            }
            (BodyRule::Field(f), value) => {
                if let Some(v) = value {
                    root.insert(f.clone(), v);
                }
                bound.push(f.clone());
            }
        }
        for (path, value) in vars {
            let (kind, _) = field_kind(&input, path).map_err(BadRequest)?;
            set(&mut root, path, scalar(&kind, value)?, false)?;
            bound.push(path.join("."));
        }
        if !matches!(self.body, BodyRule::All) {
            for (name, value) in form_pairs(query) {
                let path: Vec<String> = name.split('.').map(str::to_string).collect();
                if bound.iter().any(|b| *b == path[0] || *b == name) {
                    continue;
                }
                let (kind, repeated) = field_kind(&input, &path)
                    .map_err(|e| BadRequest(format!("query parameter {name:?}: {e}")))?;
                set(&mut root, &path, scalar(&kind, &value)?, repeated)?;
            }
        }
        let message = DynamicMessage::deserialize(input, Value::Object(root))
            .map_err(|e| BadRequest(format!("the request does not fit the message: {e}")))?;
        let encoded = message.encode_to_vec();
        let len = u32::try_from(encoded.len())
            .map_err(|_| BadRequest("the request message is too large".to_string()))?;
        let mut out = BytesMut::with_capacity(5 + encoded.len());
        out.put_u8(0);
        out.put_u32(len);
        out.put_slice(&encoded);
        Ok(out.freeze())
    }

    /// The reply, a body of length-prefixed messages, as JSON (unary:
    /// exactly one message).
    pub fn response(&self, body: &[u8]) -> Result<Vec<u8>, String> {
        let (prefix, rest) = body
            .split_at_checked(5)
            .ok_or_else(|| "the backend sent no reply message".to_string())?;
        if prefix[0] != 0 {
            return Err("the backend compressed its reply (edge asks for none)".to_string());
        }
        let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
        if rest.len() != len {
            return Err(format!(
                "the reply is not one message ({} bytes after a prefix saying {len})",
                rest.len()
            ));
        }
        let message = DynamicMessage::decode(self.method.output(), rest).map_err(|e| {
            format!(
                "the reply is not a {}: {e}",
                self.method.output().full_name()
            )
        })?;
        serde_json::to_vec(&message).map_err(|e| format!("the reply has no JSON form: {e}"))
    }
}

/// `name=value` pairs of a query string, decoded (`+` is a space).
fn form_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        percent_encoding::percent_decode_str(&s)
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// A path or query value as the JSON the mapping reads for `kind`: a
/// bool from `true`/`false`, anything else as a string (the mapping reads
/// numbers, 64-bit integers and enum names from strings).
fn scalar(kind: &Kind, value: &str) -> Result<Value, BadRequest> {
    Ok(match kind {
        Kind::Bool => match value {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err(BadRequest(format!("{value:?} is not true or false"))),
        },
        _ => Value::String(value.to_string()),
    })
}

/// Sets `path` in `root` to `value` (appending for a repeated field).
fn set(
    root: &mut Map<String, Value>,
    path: &[String],
    value: Value,
    repeated: bool,
) -> Result<(), BadRequest> {
    let Some((last, parents)) = path.split_last() else {
        return Ok(());
    };
    let mut at = root;
    for p in parents {
        let next = at
            .entry(p.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        at = next
            .as_object_mut()
            .ok_or_else(|| BadRequest(format!("{p:?} is set twice, differently")))?;
    }
    if repeated {
        match at
            .entry(last.clone())
            .or_insert_with(|| Value::Array(Vec::new()))
        {
            Value::Array(a) => a.push(value),
            _ => return Err(BadRequest(format!("{last:?} is set twice, differently"))),
        }
    } else {
        at.insert(last.clone(), value);
    }
    Ok(())
}

/// The HTTP status for gRPC `code` (the standard mapping, as
/// grpc-gateway and Envoy's transcoder use).
pub fn http_status(code: crate::grpc::Code) -> u16 {
    use crate::grpc::Code as C;
    match code {
        C::Ok => 200,
        C::Cancelled => 499,
        C::Unknown | C::Internal | C::DataLoss => 500,
        C::InvalidArgument | C::FailedPrecondition | C::OutOfRange => 400,
        C::DeadlineExceeded => 504,
        C::NotFound => 404,
        C::AlreadyExists | C::Aborted => 409,
        C::PermissionDenied => 403,
        C::ResourceExhausted => 429,
        C::Unimplemented => 501,
        C::Unavailable => 503,
        C::Unauthenticated => 401,
    }
}

/// The JSON body of a gRPC error: `{"code": N, "message": "...",
/// "details": []}` (google.rpc.Status's JSON form).
pub fn error_body(code: crate::grpc::Code, message: &str) -> Bytes {
    let v = serde_json::json!({
        "code": code.number(),
        "message": message,
        "details": [],
    });
    Bytes::from(v.to_string())
}

/// `grpc-message`, percent-decoded.
pub fn grpc_message(headers: &http::HeaderMap) -> String {
    headers
        .get("grpc-message")
        .map(|v| {
            percent_encoding::percent_decode(v.as_bytes())
                .decode_utf8_lossy()
                .into_owned()
        })
        .unwrap_or_default()
}
