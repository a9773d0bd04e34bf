//! The YAML surface of a route's shaping: transformations, validation,
//! deprecation, traffic split, mirroring and the `aggregate` action.

use super::super::units::Quantity;
use serde::Deserialize;
use std::collections::BTreeMap;

/// `routes[].transform`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transform {
    /// Changes to the request sent upstream.
    #[serde(default)]
    pub request: Option<RequestTransform>,
    /// Changes to the response sent to the client.
    #[serde(default)]
    pub response: Option<ResponseTransform>,
}

/// `transform.request`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestTransform {
    /// The upstream path, a template over the route's named captures.
    #[serde(default)]
    pub path: Option<String>,
    /// Query parameter changes.
    #[serde(default)]
    pub query: Option<QueryOps>,
    /// JSON body changes.
    #[serde(default)]
    pub json: Option<JsonOps>,
    /// Send a JSON body as XML (after the JSON changes).
    #[serde(default)]
    pub json_to_xml: Option<bool>,
    /// The largest request body transformed.
    #[serde(default)]
    pub max_body: Option<Quantity>,
}

/// `transform.response`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseTransform {
    /// Convert XML responses to JSON.
    #[serde(default)]
    pub xml_to_json: Option<XmlToJson>,
    /// JSON body changes.
    #[serde(default)]
    pub json: Option<JsonOps>,
    /// The largest response body transformed.
    #[serde(default)]
    pub max_body: Option<Quantity>,
}

/// `xml_to_json: true` or its options.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum XmlToJson {
    /// On or off with the defaults.
    On(bool),
    /// On, with options.
    Options(XmlOptions),
}

/// `xml_to_json: {max_depth}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XmlOptions {
    /// Deepest element nesting accepted.
    #[serde(default)]
    pub max_depth: Option<u32>,
}

/// Query parameter changes: remove, rename, set, add.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryOps {
    /// Names removed.
    #[serde(default)]
    pub remove: Vec<String>,
    /// Old name → new name.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Replaced (or added).
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Appended.
    #[serde(default)]
    pub add: BTreeMap<String, String>,
}

/// JSON body changes by JSON pointer: remove, rename, set, add.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonOps {
    /// Pointers removed.
    #[serde(default)]
    pub remove: Vec<String>,
    /// Pointer → pointer.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Written always.
    #[serde(default)]
    pub set: BTreeMap<String, serde_json::Value>,
    /// Written when absent.
    #[serde(default)]
    pub add: BTreeMap<String, serde_json::Value>,
}

/// `routes[].validate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Validate {
    /// The JSON Schema, inline.
    #[serde(default)]
    pub schema: Option<serde_json::Value>,
    /// The JSON Schema, in a file (relative to the config file).
    #[serde(default)]
    pub schema_file: Option<String>,
    /// The largest body validated.
    #[serde(default)]
    pub max_body: Option<Quantity>,
    /// How many errors the 400 lists.
    #[serde(default)]
    pub max_errors: Option<u32>,
}

/// `routes[].deprecated`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deprecated {
    /// When the API was deprecated (RFC 3339).
    pub since: String,
    /// When it goes away (RFC 3339).
    #[serde(default)]
    pub sunset: Option<String>,
    /// Where to read about it.
    #[serde(default)]
    pub link: Option<String>,
}

/// A name and an exact value.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameValue {
    /// Header, cookie or parameter name.
    pub name: String,
    /// Exact value.
    pub value: String,
}

/// `routes[].split[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Split {
    /// The pool this share goes to.
    pub pool: String,
    /// Share of requests, in percent.
    #[serde(default)]
    pub percent: Option<f64>,
    /// Requests with this header value.
    #[serde(default)]
    pub header: Option<NameValue>,
    /// Requests with this cookie value.
    #[serde(default)]
    pub cookie: Option<NameValue>,
    /// What keeps a client on one side: `client_ip`, `header:NAME`, `cookie:NAME`.
    #[serde(default)]
    pub sticky: Option<String>,
}

/// `routes[].mirror`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    /// The shadow pool.
    pub pool: String,
    /// Share of requests copied, in percent.
    #[serde(default)]
    pub percent: Option<f64>,
    /// Copies in flight at most.
    #[serde(default)]
    pub max_in_flight: Option<u32>,
    /// How long a copy may take.
    #[serde(default)]
    pub timeout: Option<Quantity>,
    /// Largest request body copied.
    #[serde(default)]
    pub max_body: Option<Quantity>,
    /// `strip` (default) or `keep` the client's Authorization and Cookie.
    #[serde(default)]
    pub credentials: Option<String>,
}

/// `routes[].aggregate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Aggregate {
    /// The whole aggregation's time limit.
    #[serde(default)]
    pub timeout: Option<Quantity>,
    /// Largest body of one call's response.
    #[serde(default)]
    pub max_body: Option<Quantity>,
    /// The upstream calls.
    pub calls: Vec<Call>,
}

/// `aggregate.calls[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Call {
    /// Name in `X-Edge-Failed` and metrics; default: group, else pool.
    #[serde(default)]
    pub name: Option<String>,
    /// The pool called.
    pub pool: String,
    /// The path, a template over the route's named captures.
    pub path: String,
    /// Method; default GET.
    #[serde(default)]
    pub method: Option<String>,
    /// The key the result goes under; none: merged at the top level.
    #[serde(default)]
    pub group: Option<String>,
    /// A member of the response taken first.
    #[serde(default)]
    pub target: Option<String>,
    /// Fields kept.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Fields dropped.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Fields renamed.
    #[serde(default)]
    pub mapping: BTreeMap<String, String>,
    /// Client request headers forwarded.
    #[serde(default)]
    pub headers: Vec<String>,
    /// This call's time limit.
    #[serde(default)]
    pub timeout: Option<Quantity>,
}
