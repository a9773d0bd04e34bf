//! What a route does to the traffic it passes, beyond headers: request and
//! response transformations, JSON Schema validation, deprecation headers,
//! a traffic split, a mirror, and the `aggregate` action.
//!
//! Surface ([`surface`]) → checked model (this module) via [`validate`].

pub(super) mod surface;
pub(super) mod validate;

use crate::config::HashKey;
pub use crate::transform::{
    json::{JsonOps, Pointer},
    query::QueryOps,
    template::Template,
};
use std::{sync::Arc, time::Duration};

/// The largest request body read for a transformation, validation or
/// mirror: Pingora replays a body it has already read from a buffer of
/// this size, and no larger.
pub const MAX_REQUEST_BODY: u64 = 64 * 1024;
/// Default and largest response body transformed.
pub const DEFAULT_RESPONSE_BODY: u64 = 1024 * 1024;
/// Largest `max_body` of a response transformation or an aggregation call.
pub const MAX_RESPONSE_BODY: u64 = 16 * 1024 * 1024;
/// Default deepest XML nesting converted.
pub const DEFAULT_XML_DEPTH: u32 = 64;
/// Largest `max_depth` of `xml_to_json`.
pub const MAX_XML_DEPTH: u32 = 256;
/// Largest number of calls of one aggregation.
pub const MAX_CALLS: usize = 16;

/// A route's shaping; the default does nothing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Shaping {
    /// Changes to the upstream request.
    pub request: Option<RequestTransform>,
    /// Changes to the response.
    pub response: Option<ResponseTransform>,
    /// JSON Schema validation of the request body.
    pub validate: Option<Validation>,
    /// Header fields that say the route is deprecated.
    pub deprecated: Vec<(String, String)>,
    /// Other pools a share of the requests goes to.
    pub split: Vec<SplitRule>,
    /// The shadow pool requests are copied to.
    pub mirror: Option<Mirror>,
}

impl Shaping {
    /// Whether the request body must be read before the request goes on.
    pub fn reads_request_body(&self) -> bool {
        self.validate.is_some()
            || self
                .request
                .as_ref()
                .is_some_and(|r| !r.json.is_empty() || r.json_to_xml)
    }
}

/// `transform.request`, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestTransform {
    /// The upstream path template.
    pub path: Option<Template>,
    /// Query changes.
    pub query: QueryOps,
    /// JSON body changes.
    pub json: JsonOps,
    /// Whether a JSON body goes upstream as XML.
    pub json_to_xml: bool,
    /// Largest body transformed.
    pub max_body: usize,
}

/// `transform.response`, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct ResponseTransform {
    /// XML → JSON, with this deepest nesting.
    pub xml_to_json: Option<usize>,
    /// JSON body changes.
    pub json: JsonOps,
    /// Largest body transformed.
    pub max_body: usize,
}

/// A compiled JSON Schema, compared by its source.
#[derive(Clone)]
pub struct Schema {
    /// The schema document.
    pub source: serde_json::Value,
    /// Its validator.
    pub validator: Arc<jsonschema::Validator>,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Schema({})", self.source)
    }
}

impl PartialEq for Schema {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// `validate`, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Validation {
    /// The schema.
    pub schema: Schema,
    /// Largest body validated.
    pub max_body: usize,
    /// Errors listed in a 400.
    pub max_errors: usize,
}

/// Which requests a split rule takes.
#[derive(Clone, Debug, PartialEq)]
pub enum SplitWhen {
    /// Those with this header value (name lower-case).
    Header(String, String),
    /// Those with this cookie value.
    Cookie(String, String),
    /// This share, in hundredths of a percent (0..=10000).
    Share(u32),
}

/// `split[]`, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct SplitRule {
    /// The pool (by name).
    pub pool: String,
    /// Which requests.
    pub when: SplitWhen,
    /// What keeps a client on one side; `None`: each request draws.
    pub sticky: Option<HashKey>,
}

/// `mirror`, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Mirror {
    /// The shadow pool (by name).
    pub pool: String,
    /// Share copied, in hundredths of a percent.
    pub share: u32,
    /// Copies in flight at most.
    pub max_in_flight: usize,
    /// A copy's time limit.
    pub timeout: Duration,
    /// Largest body copied.
    pub max_body: usize,
    /// Whether Authorization, Proxy-Authorization and Cookie are copied.
    pub credentials: bool,
}

/// The `aggregate` action, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Aggregate {
    /// The whole aggregation's limit.
    pub timeout: Duration,
    /// Largest body of one answer.
    pub max_body: usize,
    /// The calls, in order.
    pub calls: Vec<Call>,
}

/// One call of an aggregation.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// Its name.
    pub name: String,
    /// The pool (by name).
    pub pool: String,
    /// The path template.
    pub path: Template,
    /// Method.
    pub method: http::Method,
    /// The key its result goes under; `None`: top level.
    pub group: Option<String>,
    /// Member taken first.
    pub target: Option<String>,
    /// Fields kept (empty: all).
    pub allow: Vec<String>,
    /// Fields dropped.
    pub deny: Vec<String>,
    /// Fields renamed.
    pub mapping: Vec<(String, String)>,
    /// Request headers forwarded (lower-case).
    pub headers: Vec<http::HeaderName>,
    /// Its limit.
    pub timeout: Duration,
}
