//! The checked gateway configuration: consumers and policy sets, with
//! every reference resolved and every key read.

use crate::config::Pattern;
use ipnet::IpNet;
use std::time::Duration;

/// A known caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consumer {
    /// Unique name.
    pub name: String,
    /// Groups, sorted and without repeats.
    pub groups: Vec<String>,
    /// SHA-256 digests of its API keys.
    pub api_keys: Vec<[u8; 32]>,
    /// Its Basic credential.
    pub basic: Option<BasicCredential>,
}

/// A user name and a password hash (never a password).
#[derive(Clone, PartialEq, Eq)]
pub struct BasicCredential {
    /// The user name clients send.
    pub username: String,
    /// A bcrypt or argon2 hash in its usual text form.
    pub password_hash: String,
}

impl std::fmt::Debug for BasicCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicCredential")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The policies of one route, its listener's defaults merged in.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PolicySet {
    /// Client address lists.
    pub ip: Option<IpPolicy>,
    /// CORS.
    pub cors: Option<CorsPolicy>,
    /// Authentication.
    pub auth: Option<AuthPolicy>,
    /// Authorization.
    pub authorize: Option<AuthorizePolicy>,
    /// Rate limits, the listener's first.
    pub rate_limits: Vec<RateLimitPolicy>,
    /// Rate-limit headers on answers.
    pub rate_limit_headers: RateLimitHeaders,
    /// Requests-in-flight bound.
    pub concurrency: Option<ConcurrencyPolicy>,
}

impl PolicySet {
    /// Whether no policy is set (the route pays nothing).
    pub fn is_empty(&self) -> bool {
        self.ip.is_none()
            && self.cors.is_none()
            && self.auth.is_none()
            && self.authorize.is_none()
            && self.rate_limits.is_empty()
            && self.concurrency.is_none()
    }
}

/// Allow and deny prefixes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpPolicy {
    /// Empty: everyone not denied.
    pub allow: Vec<IpNet>,
    /// Checked first.
    pub deny: Vec<IpNet>,
}

/// One allowed origin.
#[derive(Clone, Debug, PartialEq)]
pub enum OriginMatch {
    /// Any origin (`*`).
    Any,
    /// `https://app.example.com`, lower-case.
    Exact(String),
    /// `https://*.example.com`: scheme and the suffix `.example.com`
    /// (one or more labels before it).
    Subdomain {
        /// `https://`.
        scheme: String,
        /// `.example.com` (and an optional `:port`).
        suffix: String,
    },
    /// A regular expression the whole origin matches.
    Regex(Pattern),
}

/// CORS settings.
#[derive(Clone, Debug, PartialEq)]
pub struct CorsPolicy {
    /// Allowed origins.
    pub origins: Vec<OriginMatch>,
    /// Allowed methods, upper-case.
    pub methods: Vec<String>,
    /// Allowed request headers, lower-case; `*` any.
    pub headers: Vec<String>,
    /// Exposed response headers.
    pub expose_headers: Vec<String>,
    /// `Access-Control-Allow-Credentials: true`.
    pub credentials: bool,
    /// `Access-Control-Max-Age`.
    pub max_age: Option<Duration>,
    /// Status of a refused preflight.
    pub preflight_refusal_status: u16,
}

/// Authentication settings.
#[derive(Clone, Debug, PartialEq)]
pub struct AuthPolicy {
    /// API keys.
    pub api_key: Option<ApiKeyAuth>,
    /// JWT.
    pub jwt: Option<JwtAuth>,
    /// Basic.
    pub basic: Option<BasicAuth>,
    /// OAuth2 token introspection.
    pub introspection: Option<IntrospectionAuth>,
    /// The consumer of requests without credentials.
    pub anonymous: Option<String>,
    /// Identity header names, lower-case.
    pub identity_headers: IdentityHeaders,
    /// `realm` of the challenges.
    pub realm: String,
}

/// Where API keys are read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyAuth {
    /// Header name, lower-case.
    pub header: String,
    /// Query parameter.
    pub query: Option<String>,
    /// Remove before proxying.
    pub hide_credentials: bool,
}

/// Basic authentication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BasicAuth {
    /// Remove `Authorization` before proxying.
    pub hide_credentials: bool,
}

/// JWT algorithms edge verifies (never `none`).
pub use jsonwebtoken::Algorithm as JwtAlgorithm;

/// A verification key given in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtKey {
    /// Its `kid`.
    pub kid: Option<String>,
    /// The one algorithm it verifies.
    pub algorithm: JwtAlgorithm,
    /// Its material.
    pub material: KeyMaterial,
}

/// Key bytes as given.
#[derive(Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    /// An HMAC secret.
    Secret(Vec<u8>),
    /// A PEM public key or certificate.
    Pem(Vec<u8>),
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyMaterial::Secret(_) => f.write_str("Secret(<redacted>)"),
            KeyMaterial::Pem(p) => write!(f, "Pem({} bytes)", p.len()),
        }
    }
}

/// A remote key set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwksSource {
    /// Its URL.
    pub url: http::Uri,
    /// Background refresh period.
    pub refresh: Duration,
    /// Shortest time between fetches for an unknown `kid`.
    pub min_refetch: Duration,
    /// Fetch timeout.
    pub timeout: Duration,
}

/// Where a token is looked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// `Authorization: Bearer`.
    Header,
    /// A cookie.
    Cookie(String),
    /// A query parameter.
    Query(String),
}

/// JWT settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtAuth {
    /// Keys from the file.
    pub keys: Vec<JwtKey>,
    /// A key set fetched over HTTP.
    pub jwks: Option<JwksSource>,
    /// Accepted issuers.
    pub issuers: Vec<String>,
    /// Accepted audiences.
    pub audiences: Vec<String>,
    /// Leeway on `exp`/`nbf`.
    pub leeway: Duration,
    /// Token sources in order.
    pub from: Vec<TokenSource>,
    /// Claim naming the consumer.
    pub consumer_claim: Option<String>,
    /// Claim → upstream header (lower-case).
    pub forward_claims: Vec<(String, String)>,
    /// Remove the token before proxying.
    pub hide_credentials: bool,
}

/// Names of the identity headers sent upstream, lower-case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityHeaders {
    /// Consumer name.
    pub consumer: String,
    /// Its groups, comma-separated.
    pub groups: String,
    /// The credential that identified it (`api_key`, `jwt:<kid>`, `basic:<user>`).
    pub credential: String,
    /// `true` for the anonymous consumer.
    pub anonymous: String,
}

impl Default for IdentityHeaders {
    fn default() -> Self {
        Self {
            consumer: "x-consumer-username".into(),
            groups: "x-consumer-groups".into(),
            credential: "x-credential-identifier".into(),
            anonymous: "x-anonymous-consumer".into(),
        }
    }
}

/// Authorization rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthorizePolicy {
    /// Refusing rules.
    pub deny: Vec<Rule>,
    /// Allowing rules; empty: any authenticated caller.
    pub allow: Vec<Rule>,
}

/// Conditions that must all hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    /// Consumer names.
    pub consumers: Vec<String>,
    /// Group names.
    pub groups: Vec<String>,
    /// A scope.
    pub scope: Option<String>,
    /// A claim and its value.
    pub claim: Option<(String, String)>,
}

/// What a limit counts per.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LimitKey {
    /// The consumer (the client address when there is none).
    Consumer,
    /// The client address edge trusts.
    ClientIp,
    /// The whole route.
    Route,
    /// A request header's value (lower-case name); requests without it
    /// share one empty key.
    Header(String),
}

impl LimitKey {
    /// The name used in the YAML file.
    pub fn describe(&self) -> String {
        match self {
            LimitKey::Consumer => "consumer".into(),
            LimitKey::ClientIp => "client_ip".into(),
            LimitKey::Route => "route".into(),
            LimitKey::Header(h) => format!("header:{h}"),
        }
    }
}

/// Where a limit's counters live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LimitStore {
    /// In this process.
    Local,
    /// In the configured Redis, shared by every edge.
    Redis,
}

/// Where a limit's counters are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// One set for the whole listener (a listener's limits, inherited by
    /// its routes).
    Listener,
    /// One set for the route.
    Route,
}

/// One rate limit.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RateLimitPolicy {
    /// Its name.
    pub name: String,
    /// What it counts per.
    pub key: LimitKey,
    /// Requests per window.
    pub limit: u32,
    /// The window.
    pub window: Duration,
    /// Where it counts.
    pub store: LimitStore,
    /// Whose counters: the listener's or the route's.
    pub scope: Scope,
}

/// Which headers describe the limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RateLimitHeaders {
    /// `RateLimit-Policy` and `RateLimit` (IETF httpapi draft).
    #[default]
    Draft,
    /// `X-RateLimit-Limit`, `-Remaining`, `-Reset`.
    XRateLimit,
    /// None (429 still carries `Retry-After`).
    None,
}

/// Requests in flight per key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConcurrencyPolicy {
    /// What it counts per.
    pub key: LimitKey,
    /// The bound.
    pub max: u32,
    /// Whose counts: the listener's or the route's.
    pub scope: Scope,
}

/// Process-wide gateway settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Keys each local rate limit or concurrency bound remembers.
    pub max_limit_keys: usize,
    /// The shared store of `store: redis` limits.
    pub redis: Option<RedisConfig>,
    /// Banning repeated offenders.
    pub bans: Option<BanConfig>,
}

/// When a source is banned, and for how long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BanConfig {
    /// Refused answers that ban.
    pub after: u32,
    /// Within this window.
    pub within: Duration,
    /// Ban length.
    pub ban_for: Duration,
    /// Statuses that count.
    pub statuses: Vec<u16>,
    /// Most standing bans.
    pub max: usize,
    /// Never banned.
    pub never: Vec<ipnet::IpNet>,
}

/// Default of [`GatewayConfig::max_limit_keys`].
pub const DEFAULT_LIMIT_KEYS: usize = 100_000;

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            max_limit_keys: DEFAULT_LIMIT_KEYS,
            redis: None,
            bans: None,
        }
    }
}

/// The shared rate-limit store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisConfig {
    /// Its URL.
    pub url: String,
    /// Time one check may take.
    pub timeout: Duration,
    /// Whether a request passes when Redis cannot answer.
    pub fail_open: bool,
}

/// OAuth2 token introspection settings.
#[derive(Clone, PartialEq, Eq)]
pub struct IntrospectionAuth {
    /// The endpoint.
    pub url: http::Uri,
    /// edge's client id.
    pub client_id: String,
    /// Its secret.
    pub client_secret: String,
    /// Time one introspection may take.
    pub timeout: Duration,
    /// Longest reuse of an answer.
    pub cache_for: Duration,
    /// Answers kept.
    pub cache_entries: usize,
    /// Member naming the consumer.
    pub consumer_claim: Option<String>,
    /// Remove the token before proxying.
    pub hide_credentials: bool,
}

impl std::fmt::Debug for IntrospectionAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntrospectionAuth")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("timeout", &self.timeout)
            .field("cache_for", &self.cache_for)
            .field("cache_entries", &self.cache_entries)
            .field("consumer_claim", &self.consumer_claim)
            .field("hide_credentials", &self.hide_credentials)
            .finish()
    }
}
