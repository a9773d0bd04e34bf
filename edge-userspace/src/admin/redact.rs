//! The configuration as the admin API shows it: the live file's YAML as
//! JSON, with every secret replaced by `"<redacted>"`.
//!
//! Redaction is by the key a value sits under, since that is what the
//! schema fixes: tokens, client secrets, password hashes, API keys and
//! their digests, credentials inside URLs (`redis://user:pass@host`) and
//! header values that carry credentials (`Bearer …`, `Basic …`). A hash
//! is redacted too: a bcrypt hash or an unsalted SHA-256 of a key can be
//! attacked offline.

use serde_json::{Map, Value};

/// What a secret is replaced by.
pub const REDACTED: &str = "<redacted>";

/// Keys whose value is always a secret, wherever they are.
const SECRET_KEYS: &[&str] = &[
    "token",
    "secret",
    "client_secret",
    "password",
    "password_hash",
    "sha256",
];

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
            let mut out = Map::new();
            for (k, v) in m {
                let key = match k {
                    Y::String(s) => s.clone(),
                    other => serde_yaml::to_string(other)
                        .map(|s| s.trim().to_string())
                        .unwrap_or_default(),
                };
                let secret = SECRET_KEYS.contains(&key.as_str()) || (in_api_keys && key == "key");
                let value = if secret && !v.is_null() {
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

/// A string with the credentials it may carry redacted: the password of a
/// URL's user information, or a whole `Bearer`/`Basic` credential.
fn redact_string(s: &str) -> String {
    let lower = s.trim_start().to_ascii_lowercase();
    if lower.starts_with("bearer ") || lower.starts_with("basic ") {
        return REDACTED.to_string();
    }
    if let Some((scheme, rest)) = s.split_once("://") {
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        if let Some((userinfo, host)) = authority.rsplit_once('@') {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            return format!(
                "{scheme}://{user}:{REDACTED}@{host}{}",
                &rest[authority_end..]
            );
        }
    }
    s.to_string()
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
    routes:
      - name: r
        policies:
          rate_limits: [ { key: consumer, requests: 5, per: 1s } ]
        transform: { request: { headers: { set: { Authorization: "Bearer xyz" } } } }
    tls: { certificates: [ { cert: a.pem, key: a.key } ] }
"#;
        let v = config_json(text);
        let s = v.to_string();
        for secret in ["s3cret", "abc123", "deadbeef", "$2b$12$x", ":pw@", "xyz"] {
            assert!(!s.contains(secret), "{secret} leaked in {s}");
        }
        assert_eq!(v["admin"]["address"], "127.0.0.1:9100");
        assert_eq!(v["consumers"][0]["basic"]["username"], "alice");
        assert_eq!(
            v["gateway"]["redis"]["url"],
            "redis://user:<redacted>@127.0.0.1:6379/0"
        );
        // `key` outside api_keys is not a secret.
        assert_eq!(
            v["listeners"][0]["routes"][0]["policies"]["rate_limits"][0]["key"],
            "consumer"
        );
        assert_eq!(v["listeners"][0]["tls"]["certificates"][0]["key"], "a.key");
    }
}
