//! The gateway's part of the YAML file as written: `consumers:` and the
//! `policies:` of listeners and routes.

use crate::config::units::Quantity;
use serde::Deserialize;
use std::collections::BTreeMap;

/// `consumers[]`: a caller edge knows by name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consumer {
    /// Unique name; a metric label and the `X-Consumer-Username` value.
    pub name: String,
    /// Groups, for authorization rules.
    #[serde(default)]
    pub groups: Vec<String>,
    /// API keys, each plain (`key`) or as its SHA-256 (`sha256`, hex).
    #[serde(default)]
    pub api_keys: Vec<ApiKey>,
    /// HTTP Basic credentials.
    #[serde(default)]
    pub basic: Option<Basic>,
}

/// `consumers[].api_keys[]`: exactly one of the two.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// The key itself (kept in memory only as its digest).
    #[serde(default)]
    pub key: Option<String>,
    /// The key's SHA-256, 64 hex digits: the file holds no usable key.
    #[serde(default)]
    pub sha256: Option<String>,
}

/// `consumers[].basic`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Basic {
    /// User name; default the consumer's name.
    #[serde(default)]
    pub username: Option<String>,
    /// A bcrypt (`$2b$...`) or argon2 (`$argon2id$...`) hash.
    pub password_hash: String,
}

/// `policies:` of a listener (defaults) or a route.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policies {
    /// On a route: whether the listener's policies apply underneath the
    /// route's own (default true).
    #[serde(default)]
    pub inherit: Option<bool>,
    /// Client address allow/deny lists.
    #[serde(default)]
    pub ip: Option<IpPolicy>,
    /// Cross-origin resource sharing.
    #[serde(default)]
    pub cors: Option<Cors>,
    /// Authentication.
    #[serde(default)]
    pub auth: Option<Auth>,
    /// Authorization rules.
    #[serde(default)]
    pub authorize: Option<Authorize>,
    /// Rate limits; a route's are added to its listener's.
    #[serde(default)]
    pub rate_limits: Option<Vec<RateLimit>>,
    /// Which rate-limit headers answers carry: `draft` (default), `x-ratelimit` or `none`.
    #[serde(default)]
    pub rate_limit_headers: Option<String>,
    /// A bound on requests in flight.
    #[serde(default)]
    pub concurrency: Option<Concurrency>,
}

/// `policies.ip`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpPolicy {
    /// Only these prefixes may call; empty: everyone not denied.
    #[serde(default)]
    pub allow: Vec<String>,
    /// These prefixes may not call (checked first).
    #[serde(default)]
    pub deny: Vec<String>,
}

/// `policies.cors`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cors {
    /// Origins: `https://app.example.com`, `https://*.example.com`, or `*`.
    #[serde(default)]
    pub origins: Vec<String>,
    /// Regular expressions a whole origin may match instead.
    #[serde(default)]
    pub origin_regex: Vec<String>,
    /// Methods allowed; default GET, HEAD, POST.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Request headers allowed (`*` for any, without credentials).
    #[serde(default)]
    pub headers: Vec<String>,
    /// Response headers the page may read.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// Whether the page may send cookies and read the answer.
    #[serde(default)]
    pub credentials: bool,
    /// How long a browser may cache a preflight answer.
    #[serde(default)]
    pub max_age: Option<Quantity>,
    /// Status of a refused preflight; default 403.
    #[serde(default)]
    pub preflight_refusal_status: Option<u16>,
}

/// `policies.auth`: the credential types a route accepts.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// API keys of consumers.
    #[serde(default)]
    pub api_key: Option<ApiKeyAuth>,
    /// JSON Web Tokens.
    #[serde(default)]
    pub jwt: Option<Jwt>,
    /// HTTP Basic against consumers' password hashes.
    #[serde(default)]
    pub basic: Option<BasicAuth>,
    /// Opaque bearer tokens checked by OAuth2 token introspection.
    #[serde(default)]
    pub introspection: Option<Introspection>,
    /// The consumer a request without any credential becomes; without
    /// it, such a request gets 401.
    #[serde(default)]
    pub anonymous: Option<String>,
    /// Names of the identity headers sent upstream.
    #[serde(default)]
    pub identity_headers: Option<IdentityHeaders>,
    /// `realm` of the `WWW-Authenticate` challenges; default `edge`.
    #[serde(default)]
    pub realm: Option<String>,
}

/// `auth.api_key`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyAuth {
    /// Request header the key is read from; default `apikey`.
    #[serde(default)]
    pub header: Option<String>,
    /// Query parameter the key may also come in.
    #[serde(default)]
    pub query: Option<String>,
    /// Remove the key before the request goes upstream.
    #[serde(default)]
    pub hide_credentials: bool,
}

/// `auth.basic`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// Remove `Authorization` before the request goes upstream.
    #[serde(default)]
    pub hide_credentials: bool,
}

/// `auth.jwt`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Jwt {
    /// Keys given in the file.
    #[serde(default)]
    pub keys: Vec<JwtKey>,
    /// A JWKS document fetched, cached and refreshed in the background.
    #[serde(default)]
    pub jwks: Option<Jwks>,
    /// Accepted `iss` values; empty: any.
    #[serde(default)]
    pub issuers: Vec<String>,
    /// Accepted `aud` values (one must be in the token); empty: any.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`; default 60s.
    #[serde(default)]
    pub leeway: Option<Quantity>,
    /// Where the token is looked for, in order: `header` (Authorization:
    /// Bearer), `cookie:NAME`, `query:NAME`; default `[header]`.
    #[serde(default)]
    pub from: Option<Vec<String>>,
    /// The claim whose value names the consumer.
    #[serde(default)]
    pub consumer_claim: Option<String>,
    /// Claims copied to upstream request headers: claim → header.
    #[serde(default)]
    pub forward_claims: BTreeMap<String, String>,
    /// Remove the token before the request goes upstream.
    #[serde(default)]
    pub hide_credentials: bool,
}

/// `auth.jwt.keys[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKey {
    /// The `kid` a token names this key by; without it the key is tried
    /// for tokens without a `kid`.
    #[serde(default)]
    pub kid: Option<String>,
    /// The one algorithm this key verifies.
    pub algorithm: String,
    /// An HMAC secret (HS256/384/512).
    #[serde(default)]
    pub secret: Option<String>,
    /// A PEM public key or certificate, inline.
    #[serde(default)]
    pub public_key: Option<String>,
    /// A PEM file, relative to the configuration file.
    #[serde(default)]
    pub pem_file: Option<String>,
}

/// `auth.jwt.jwks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Jwks {
    /// `http://` or `https://` URL of the key set.
    pub url: String,
    /// How often it is fetched again; default 10m.
    #[serde(default)]
    pub refresh: Option<Quantity>,
    /// Shortest time between fetches triggered by an unknown `kid`;
    /// default 30s.
    #[serde(default)]
    pub min_refetch: Option<Quantity>,
    /// Time a fetch may take; default 5s.
    #[serde(default)]
    pub timeout: Option<Quantity>,
}

/// `auth.identity_headers`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityHeaders {
    /// Default `X-Consumer-Username`.
    #[serde(default)]
    pub consumer: Option<String>,
    /// Default `X-Consumer-Groups`.
    #[serde(default)]
    pub groups: Option<String>,
    /// Default `X-Credential-Identifier`.
    #[serde(default)]
    pub credential: Option<String>,
    /// Default `X-Anonymous-Consumer`.
    #[serde(default)]
    pub anonymous: Option<String>,
}

/// `policies.authorize`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authorize {
    /// A request matching any of these is refused (checked first).
    #[serde(default)]
    pub deny: Vec<Rule>,
    /// A request must match one of these.
    #[serde(default)]
    pub allow: Vec<Rule>,
}

/// One authorization rule: every condition given must hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The consumer is one of these.
    #[serde(default)]
    pub consumers: Vec<String>,
    /// The consumer is in one of these groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The token's `scope` (space-separated) or `scp` contains this.
    #[serde(default)]
    pub scope: Option<String>,
    /// A token claim equals a value.
    #[serde(default)]
    pub claim: Option<ClaimEquals>,
}

/// `claim: {name, equals}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimEquals {
    /// Claim name.
    pub name: String,
    /// The value (a string claim, or one element of an array claim).
    pub equals: String,
}

/// `policies.rate_limits[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Unique on its route; its counters are kept under this name across
    /// reloads.
    pub name: String,
    /// What is counted: `consumer`, `client_ip`, `route` or `header:NAME`.
    #[serde(default)]
    pub key: Option<String>,
    /// Requests allowed per `window`.
    pub limit: u32,
    /// The window: `1s`, `1m`, `1h`.
    pub window: Quantity,
    /// `local` (default) or `redis`.
    #[serde(default)]
    pub store: Option<String>,
}

/// `policies.concurrency`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Concurrency {
    /// What is counted: `consumer`, `client_ip` or `route` (default).
    #[serde(default)]
    pub key: Option<String>,
    /// Requests in flight allowed per key.
    pub max: u32,
}

/// `gateway:`: process-wide gateway settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    /// Keys each local rate limit remembers; default 100000.
    #[serde(default)]
    pub max_limit_keys: Option<u64>,
    /// The Redis server `store: redis` limits count in.
    #[serde(default)]
    pub redis: Option<Redis>,
    /// Banning sources that keep being refused, in XDP.
    #[serde(default)]
    pub bans: Option<Bans>,
}

/// `gateway.bans`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bans {
    /// Refused answers that ban a source.
    pub after: u32,
    /// The window they must fall in.
    pub within: Quantity,
    /// How long a ban lasts.
    pub ban_for: Quantity,
    /// Statuses that count; default 401, 403, 429.
    #[serde(default)]
    pub statuses: Option<Vec<u16>>,
    /// Most bans standing at once; default 10000.
    #[serde(default)]
    pub max: Option<u32>,
    /// Prefixes never banned (the operator's own networks).
    #[serde(default)]
    pub never: Vec<String>,
}

/// `gateway.redis`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redis {
    /// `redis://host:port[/db]`.
    pub url: String,
    /// Time one limit check may take; default 50ms.
    #[serde(default)]
    pub timeout: Option<Quantity>,
    /// `open` (default: let the request through) or `closed` (503) when
    /// Redis cannot answer.
    #[serde(default)]
    pub on_error: Option<String>,
}

/// `auth.introspection` (RFC 7662).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Introspection {
    /// The introspection endpoint.
    pub url: String,
    /// edge's client id at the authorization server.
    pub client_id: String,
    /// Its secret.
    pub client_secret: String,
    /// Time one introspection may take; default 2s.
    #[serde(default)]
    pub timeout: Option<Quantity>,
    /// Longest time an answer is reused (never past the token's `exp`);
    /// default 60s.
    #[serde(default)]
    pub cache_for: Option<Quantity>,
    /// Answers kept; default 10000.
    #[serde(default)]
    pub cache_entries: Option<u32>,
    /// The answer's member whose value names the consumer.
    #[serde(default)]
    pub consumer_claim: Option<String>,
    /// Remove the token before the request goes upstream.
    #[serde(default)]
    pub hide_credentials: bool,
}
