//! The configuration as the admin API shows it: the live file's YAML as
//! JSON, with every secret replaced by `"<redacted>"`.
//!
//! Redaction is by the key a value sits under, since that is what the
//! schema fixes: tokens, client secrets, password hashes, API keys and
//! their digests; any scalar under a name that says credential (a header
//! or query parameter such as `Authorization`, `X-Api-Key`, `Cookie`,
//! `session`), and the `value` beside such a `name` (header conditions);
//! the user information and credential-named query parameters of URLs
//! (`redis://user:pass@host`, `?token=`); and header values that carry
//! credentials (`Bearer …`, `Basic …`). A hash is redacted too: a bcrypt
//! hash or an unsalted SHA-256 of a key can be attacked offline. When in
//! doubt it redacts: the view is for reading, not for copying back.

use serde_json::{Map, Value};

/// What a secret is replaced by.
pub const REDACTED: &str = "<redacted>";

/// Keys whose value is always a secret, wherever they are.
const SECRET_KEYS: &[&str] = &["sha256", "password_hash"];

/// Parts of a name (a key, a header, a query parameter) that say what it
/// carries is a credential.
const SECRET_WORDS: &[&str] = &[
    "auth",
    "token",
    "secret",
    "passw",
    "apikey",
    "api-key",
    "api_key",
    "cookie",
    "session",
    "credential",
    "signature",
    "private",
];

/// Whether a scalar under `name` is to be hidden. A policy's own settings
/// (`auth:`, `hide_credentials:`) hold mappings or booleans, which are
/// never redacted by name alone.
fn secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_KEYS.contains(&lower.as_str()) || SECRET_WORDS.iter().any(|w| lower.contains(w))
}

/// The YAML `text` as JSON with secrets redacted; `Value::Null` when it
/// does not parse (the live configuration was read from it, so it does).
pub fn config_json(text: &str) -> Value {
    match serde_yaml::from_str::<serde_yaml::Value>(text) {
        Ok(v) => convert(&v, false),
        Err(_) => Value::Null,
    }
}

/// Converts `v`, redacting; `in_api_keys`: inside a consumer's `api_keys`,
/// where `key` is a literal API key (elsewhere `key` names a TLS key file
/// or a rate-limit key).
fn convert(v: &serde_yaml::Value, in_api_keys: bool) -> Value {
    use serde_yaml::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(*b),
        Y::Number(n) => serde_json::to_value(n).unwrap_or(Value::Null),
        Y::String(s) => Value::String(redact_string(s)),
        Y::Sequence(items) => Value::Array(items.iter().map(|i| convert(i, in_api_keys)).collect()),
        Y::Mapping(m) => {
            // `{name: X-Shared-Secret, value: ...}`: the value is as secret
            // as its name says.
            let named_secret = m
                .get(Y::String("name".into()))
                .and_then(|n| n.as_str())
                .is_some_and(secret_name);
            let mut out = Map::new();
            for (k, v) in m {
                let key = match k {
                    Y::String(s) => s.clone(),
                    other => serde_yaml::to_string(other)
                        .map(|s| s.trim().to_string())
                        .unwrap_or_default(),
                };
                let scalar = matches!(v, Y::String(_) | Y::Number(_));
                let secret = (scalar && secret_name(&key))
                    || (scalar && named_secret && key == "value")
                    || (in_api_keys && key == "key" && !v.is_null());
                let value = if secret {
                    Value::String(REDACTED.to_string())
                } else {
                    convert(v, in_api_keys || key == "api_keys")
                };
                out.insert(key, value);
            }
            Value::Object(out)
        }
        Y::Tagged(t) => convert(&t.value, in_api_keys),
    }
}

/// A string with the credentials it may carry redacted: a whole `Bearer` or
/// `Basic` credential, or a URL's user information and credential-named
/// query parameters.
fn redact_string(s: &str) -> String {
    let lower = s.trim_start().to_ascii_lowercase();
    if lower.starts_with("bearer ") || lower.starts_with("basic ") {
        return REDACTED.to_string();
    }
    let Some((scheme, rest)) = s.split_once("://") else {
        return s.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    // All of the user information: `https://TOKEN@host` has no password
    // part, and its user is the secret.
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("{REDACTED}@{host}"),
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let (query, fragment) = match query.split_once('#') {
                Some((q, f)) => (q, format!("#{f}")),
                None => (query, String::new()),
            };
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if secret_name(k) => format!("{k}={REDACTED}"),
                    _ => pair.to_string(),
                })
                .collect();
            format!("{path}?{}{fragment}", query.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_and_the_rest_kept() {
        let text = r#"
admin: { address: "127.0.0.1:9100", token: s3cret }
consumers:
  - name: alice
    api_keys: [ { key: abc123 }, { sha256: deadbeef } ]
    basic: { username: alice, password_hash: "$2b$12$x" }
gateway:
  redis: { url: "redis://user:pw@127.0.0.1:6379/0" }
listeners:
  - name: web
    policies:
      auth:
        api_key: { header: apikey, hide_credentials: true }
        jwt: { keys: [ { kid: k1, algorithm: HS256, secret: hs-s3cret } ], jwks: "https://tok3n@idp.example/keys?access_token=qs-s3cret&v=2" }
        introspection: { url: "http://127.0.0.1:9/i", client_id: edge, client_secret: cl-s3cret }
    routes:
      - name: r
        match: { headers: [ { name: X-Shared-Secret, value: cdn-s3cret }, { name: X-Env, value: prod } ] }
        policies:
          rate_limits: [ { key: consumer, requests: 5, per: 1s } ]
        transform: { request: { headers: { set: { Authorization: "Token xyz", X-Api-Key: k3y, Cookie: "sid=c00kie", X-Trace: keep-me } } } }
    tls: { certificates: [ { cert: a.pem, key: a.key } ] }
"#;
        let v = config_json(text);
        let s = v.to_string();
        for secret in [
            "s3cret", "abc123", "deadbeef", "$2b$12$x", ":pw@", "xyz", "k3y", "c00kie", "tok3n",
        ] {
            assert!(!s.contains(secret), "{secret} leaked in {s}");
        }
        assert_eq!(v["admin"]["address"], "127.0.0.1:9100");
        assert_eq!(v["consumers"][0]["basic"]["username"], "alice");
        assert_eq!(
            v["gateway"]["redis"]["url"],
            "redis://<redacted>@127.0.0.1:6379/0"
        );
        // What is not a secret stays, policy settings included.
        for kept in ["keep-me", "v=2", "prod", "X-Shared-Secret", "edge"] {
            assert!(s.contains(kept), "{kept} lost in {s}");
        }
        let api_key = &v["listeners"][0]["policies"]["auth"]["api_key"];
        assert_eq!(api_key["header"], "apikey");
        assert_eq!(api_key["hide_credentials"], true);
        // `key` outside api_keys is not a secret.
        assert_eq!(
            v["listeners"][0]["routes"][0]["policies"]["rate_limits"][0]["key"],
            "consumer"
        );
        assert_eq!(v["listeners"][0]["tls"]["certificates"][0]["key"], "a.key");
    }
}
