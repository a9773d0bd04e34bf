//! edge's and HAProxy's configurations for each gateway case. Everything
//! but the policies is what `bench l7` gives them for plain proxying: one
//! worker, keep-alive both ways to the one origin, X-Forwarded-For/-Proto,
//! no access log, the same timeouts.

use super::transform;
use crate::bench_l7::configs::SMALL_PATH;
use std::path::Path;

/// The one consumer's API key, sent by wrk in the `apikey` header.
pub const API_KEY: &str = "bench-key-0123456789";
/// The consumer that key belongs to.
pub const CONSUMER: &str = "bench";
/// A limit no run reaches, so that every request is counted and none is
/// refused (edge's largest, per hour: a Redis limit may not be finer than
/// one request per microsecond of window).
pub const LIMIT: u64 = 1_000_000_000;
/// The JWT verification keys, in the temporary directory next to the
/// configurations (edge resolves `pem_file` against its configuration's
/// directory; HAProxy gets absolute paths).
pub const RS256_PUBLIC: &str = "jwt-rs256.pub.pem";
/// See [`RS256_PUBLIC`].
pub const ES256_PUBLIC: &str = "jwt-es256.pub.pem";

/// What a case puts in front of the plain proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Nothing: the baseline.
    Plain,
    /// An API key in the `apikey` header, looked up among the consumers.
    ApiKey,
    /// A JWT signed with RS256 (RSA 2048) in `Authorization: Bearer`.
    JwtRs256,
    /// A JWT signed with ES256 (ECDSA P-256) in `Authorization: Bearer`.
    JwtEs256,
    /// A rate limit per client address, counted in the proxy's memory.
    LocalLimit,
    /// An API key, then a rate limit per consumer in memory.
    ApiKeyLocalLimit,
    /// An API key, then a rate limit per consumer counted in Redis.
    ApiKeyRedisLimit,
    /// A route proxying the ~1 KB JSON document of [`Policy::JsonTransform`]
    /// untouched: that row's baseline.
    PlainJson,
    /// A route removing, renaming and setting members of a ~1 KB JSON
    /// response (`transform.response.json`).
    JsonTransform,
    /// A route proxying the ~10 KB XML document of [`Policy::XmlToJson`]
    /// untouched: that row's baseline.
    PlainXml,
    /// A route turning a ~10 KB XML response into JSON
    /// (`transform.response.xml_to_json`).
    XmlToJson,
    /// A route answering with the merged JSON of three upstream calls
    /// (`aggregate`).
    Aggregate,
}

impl Policy {
    /// For file names.
    pub fn slug(self) -> &'static str {
        match self {
            Policy::Plain => "plain",
            Policy::ApiKey => "api-key",
            Policy::JwtRs256 => "jwt-rs256",
            Policy::JwtEs256 => "jwt-es256",
            Policy::LocalLimit => "local-limit",
            Policy::ApiKeyLocalLimit => "api-key-local-limit",
            Policy::ApiKeyRedisLimit => "api-key-redis-limit",
            Policy::PlainJson => "plain-json",
            Policy::JsonTransform => "json-transform",
            Policy::PlainXml => "plain-xml",
            Policy::XmlToJson => "xml-to-json",
            Policy::Aggregate => "aggregate",
        }
    }

    /// The path wrk and the probe ask for: the origin's 13-byte body, or
    /// the document of a row that works on bodies (or proxies one plain).
    pub fn path(self) -> &'static str {
        transform::path(self).unwrap_or(SMALL_PATH)
    }

    /// Whether the case's upstream is the backend of the rows that work on
    /// bodies (see [`transform`]).
    pub fn uses_backend(self) -> bool {
        transform::path(self).is_some()
    }

    /// Whether requests carry the API key.
    pub fn uses_api_key(self) -> bool {
        matches!(
            self,
            Policy::ApiKey | Policy::ApiKeyLocalLimit | Policy::ApiKeyRedisLimit
        )
    }

    /// Whether the case needs the Redis server.
    pub fn uses_redis(self) -> bool {
        self == Policy::ApiKeyRedisLimit
    }
}

/// The bearer tokens, signed before the run.
pub struct Tokens {
    /// Signed with the RS256 key.
    pub rs256: String,
    /// Signed with the ES256 key.
    pub es256: String,
}

/// The request headers (`Name: value`) wrk and the probe send for
/// `policy`: the credential it asks for, nothing else.
pub fn headers(policy: Policy, tokens: &Tokens) -> Vec<String> {
    match policy {
        Policy::Plain
        | Policy::LocalLimit
        | Policy::PlainJson
        | Policy::JsonTransform
        | Policy::PlainXml
        | Policy::XmlToJson
        | Policy::Aggregate => Vec::new(),
        Policy::ApiKey | Policy::ApiKeyLocalLimit | Policy::ApiKeyRedisLimit => {
            vec![format!("apikey: {API_KEY}")]
        }
        Policy::JwtRs256 => vec![format!("Authorization: Bearer {}", tokens.rs256)],
        Policy::JwtEs256 => vec![format!("Authorization: Bearer {}", tokens.es256)],
    }
}

/// edge's configuration for `policy`, listening on `port`; `redis` is the
/// Redis server's port (used by [`Policy::ApiKeyRedisLimit`] only),
/// `backend` the port of the rows that work on bodies (their routes and
/// pools, see [`transform::edge_parts`]). Without policies it is
/// `bench l7`'s plain configuration.
pub fn edge(policy: Policy, port: u16, origin: u16, redis: u16, backend: u16) -> String {
    let consumers = if policy.uses_api_key() {
        format!(
            "consumers:
  - name: {CONSUMER}
    api_keys: [{{key: {API_KEY}}}]
"
        )
    } else {
        String::new()
    };
    // `closed`: should Redis not answer, requests get 503 (and the cell is
    // flagged) instead of passing unchecked and looking fast.
    let gateway = if policy.uses_redis() {
        format!(
            "gateway:
  redis: {{url: \"redis://127.0.0.1:{redis}\", timeout: 50ms, on_error: closed}}
"
        )
    } else {
        String::new()
    };
    let limit = |key: &str, store: &str| {
        format!(
            "      rate_limits: [{{name: rl, key: {key}, limit: {LIMIT}, window: 1h, store: {store}}}]
      rate_limit_headers: none
"
        )
    };
    let policies = match policy {
        Policy::Plain
        | Policy::PlainJson
        | Policy::JsonTransform
        | Policy::PlainXml
        | Policy::XmlToJson
        | Policy::Aggregate => String::new(),
        Policy::ApiKey => "    policies:
      auth: {api_key: {}}
"
        .to_string(),
        Policy::JwtRs256 | Policy::JwtEs256 => {
            let (alg, pem) = jwt_key(policy);
            format!(
                "    policies:
      auth: {{jwt: {{keys: [{{algorithm: {alg}, pem_file: {pem}}}], leeway: 60s}}}}
"
            )
        }
        Policy::LocalLimit => format!("    policies:\n{}", limit("client_ip", "local")),
        Policy::ApiKeyLocalLimit => format!(
            "    policies:\n      auth: {{api_key: {{}}}}\n{}",
            limit("consumer", "local")
        ),
        Policy::ApiKeyRedisLimit => format!(
            "    policies:\n      auth: {{api_key: {{}}}}\n{}",
            limit("consumer", "redis")
        ),
    };
    let (routes, pools) = transform::edge_parts(policy, backend);
    format!(
        "# Written by `cargo xtask bench gateway`: {slug}.
{consumers}{gateway}listeners:
  - name: bench
    address: 127.0.0.1:{port}
    pool: origin
{policies}{routes}pools:
  - name: origin
    backends:
      - address: 127.0.0.1:{origin}
{pools}server:
  threads: 1
",
        slug = policy.slug(),
    )
}

/// The algorithm and public key file of a JWT policy.
fn jwt_key(policy: Policy) -> (&'static str, &'static str) {
    match policy {
        Policy::JwtEs256 => ("ES256", ES256_PUBLIC),
        _ => ("RS256", RS256_PUBLIC),
    }
}

/// HAProxy's configuration for `policy` on `port` (`bench l7`'s plain
/// frontend plus the policy's rules), or `None` where this benchmark gives
/// HAProxy no equivalent. `dir` holds the public keys.
pub fn haproxy(policy: Policy, port: u16, origin: u16, dir: &Path) -> Option<String> {
    let rules = match policy {
        Policy::Plain => String::new(),
        // jwt_verify (HAProxy 2.5+) checks the signature only, with a
        // public key in PEM loaded when the configuration is parsed; it
        // returns 1 for a valid one. http_auth_bearer (2.5+) is the token
        // of `Authorization: Bearer`.
        Policy::JwtRs256 | Policy::JwtEs256 => {
            let (alg, pem) = jwt_key(policy);
            format!(
                "    http-request deny deny_status 401 unless {{ http_auth_bearer,jwt_verify(\"{alg}\",\"{pem}\") -m int 1 }}\n",
                pem = dir.join(pem).display(),
            )
        }
        // Per source address, like edge's `key: client_ip`.
        Policy::LocalLimit => format!(
            "    stick-table type ip size 100k expire 10s store http_req_rate(1s)
    http-request track-sc0 src
    http-request deny deny_status 429 if {{ sc_http_req_rate(0) gt {LIMIT} }}
"
        ),
        Policy::ApiKey
        | Policy::ApiKeyLocalLimit
        | Policy::ApiKeyRedisLimit
        | Policy::PlainJson
        | Policy::JsonTransform
        | Policy::PlainXml
        | Policy::XmlToJson
        | Policy::Aggregate => return None,
    };
    Some(format!(
        "# Written by `cargo xtask bench gateway`: {slug}.
global
    nbthread 1
    maxconn 8192

{defaults}
frontend bench
    bind 127.0.0.1:{port} backlog 4096
{rules}    http-request set-header X-Forwarded-Proto http
    default_backend origin

backend origin
    server origin 127.0.0.1:{origin}
",
        slug = policy.slug(),
        defaults = crate::bench_l7::configs::haproxy_defaults(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_edge_configuration_is_bench_l7s() {
        let yaml = edge(Policy::Plain, 8080, 9000, 6379, 9001);
        assert!(!yaml.contains("policies"), "{yaml}");
        assert!(!yaml.contains("consumers"), "{yaml}");
        assert!(yaml.contains("    pool: origin\npools:"), "{yaml}");
        assert!(yaml.ends_with("server:\n  threads: 1\n"), "{yaml}");
        assert!(!yaml.contains("routes") && !yaml.contains("9001"), "{yaml}");
    }

    #[test]
    fn body_rows_route_to_the_backend() {
        let yaml = edge(Policy::XmlToJson, 8080, 9000, 6379, 9001);
        assert!(
            yaml.contains("    pool: origin\n    routes:\n      - name: xml\n"),
            "{yaml}"
        );
        assert!(
            yaml.contains(
                "      - address: 127.0.0.1:9000
  - name: backend
    backends:
      - address: 127.0.0.1:9001
server:"
            ),
            "{yaml}"
        );
        assert!(!yaml.contains("policies"), "{yaml}");
        assert!(haproxy(Policy::Aggregate, 8080, 9000, Path::new("/tmp/x")).is_none());
        // The baseline of the JSON row: the same route, no transformation.
        let plain_json = edge(Policy::PlainJson, 8080, 9000, 6379, 9001);
        assert!(
            plain_json.contains(
                "    pool: origin
    routes:
      - name: json
        match: {path: {exact: /item.json}}
        proxy: {pool: backend}
pools:"
            ),
            "{plain_json}"
        );
        assert!(
            plain_json.contains("      - address: 127.0.0.1:9001\nserver:"),
            "{plain_json}"
        );
        assert!(!plain_json.contains("transform"), "{plain_json}");
        assert!(!plain_json.contains("policies"), "{plain_json}");
        assert!(haproxy(Policy::PlainXml, 8080, 9000, Path::new("/tmp/x")).is_none());
    }

    #[test]
    fn policies_sit_under_the_listener() {
        let yaml = edge(Policy::ApiKeyRedisLimit, 8080, 9000, 6379, 9001);
        assert!(yaml.starts_with("# Written by"), "{yaml}");
        assert!(
            yaml.contains(
                "    pool: origin
    policies:
      auth: {api_key: {}}
      rate_limits: [{name: rl, key: consumer, limit: 1000000000, window: 1h, store: redis}]
      rate_limit_headers: none
pools:"
            ),
            "{yaml}"
        );
        assert!(
            yaml.contains("api_keys: [{key: bench-key-0123456789}]"),
            "{yaml}"
        );
        assert!(yaml.contains("redis://127.0.0.1:6379"), "{yaml}");
        let jwt = edge(Policy::JwtEs256, 8080, 9000, 6379, 9001);
        assert!(
            jwt.contains(
                "      auth: {jwt: {keys: [{algorithm: ES256, pem_file: jwt-es256.pub.pem}], leeway: 60s}}\n"
            ),
            "{jwt}"
        );
        assert!(
            !jwt.contains("gateway:") && !jwt.contains("consumers:"),
            "{jwt}"
        );
    }

    #[test]
    fn haproxy_rules_go_in_the_frontend() {
        let dir = Path::new("/tmp/x");
        let cfg = haproxy(Policy::JwtRs256, 8080, 9000, dir).unwrap();
        assert!(
            cfg.contains(
                "http-request deny deny_status 401 unless { http_auth_bearer,jwt_verify(\"RS256\",\"/tmp/x/jwt-rs256.pub.pem\") -m int 1 }"
            ),
            "{cfg}"
        );
        let limit = haproxy(Policy::LocalLimit, 8080, 9000, dir).unwrap();
        assert!(limit.contains("gt 1000000000 }"), "{limit}");
        assert!(haproxy(Policy::ApiKey, 8080, 9000, dir).is_none());
        let plain = haproxy(Policy::Plain, 8080, 9000, dir).unwrap();
        assert!(!plain.contains("deny"), "{plain}");
    }
}
