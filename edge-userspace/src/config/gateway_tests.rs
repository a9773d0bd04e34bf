//! The gateway's configuration: consumers and policies, with the messages
//! a user sees for the mistakes the issue names.

use super::tests::errors;
use super::*;
use std::path::Path;

fn with(policies: &str, extra: &str) -> String {
    format!(
        "\
consumers:
  - name: alice
    groups: [admins]
    api_keys: [{{key: alice-key-0123456789}}]
{extra}listeners:
  - name: web
    address: 127.0.0.1:8080
    routes:
      - name: api
        proxy: {{pool: app}}
        policies:
{policies}pools:
  - name: app
    backends: [{{address: 127.0.0.1:9000}}]
"
    )
}

#[test]
fn a_full_policy_set_becomes_the_model_with_listener_defaults_merged() {
    let yaml = "\
consumers:
  - name: alice
    groups: [b, a, a]
    api_keys: [{sha256: 27bd930f113c36b2f4c39089a95cda91f447384b7d8872483001b15c0aff5c91}]
listeners:
  - name: web
    address: 127.0.0.1:8080
    policies:
      cors: {origins: ['https://*.example.com']}
      rate_limits: [{name: ip, limit: 10, window: 1s}]
    routes:
      - name: api
        proxy: {pool: app}
        policies:
          auth: {api_key: {}}
          rate_limits: [{name: me, key: consumer, limit: 5, window: 1h}]
          rate_limit_headers: x-ratelimit
      - name: open
        proxy: {pool: app}
        policies: {inherit: false}
pools:
  - name: app
    backends: [{address: 127.0.0.1:9000}]
";
    let c = parse(yaml, Path::new("edge.yaml")).unwrap();
    assert_eq!(c.consumers[0].groups, vec!["a", "b"]);
    let api = &c.listeners[0].routes[0].policies;
    assert!(api.cors.is_some() && api.auth.is_some());
    let names: Vec<&str> = api.rate_limits.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["ip", "me"]);
    assert_eq!(
        api.rate_limit_headers,
        gateway::RateLimitHeaders::XRateLimit
    );
    assert_eq!(
        api.auth.as_ref().unwrap().api_key.as_ref().unwrap().header,
        "apikey"
    );
    assert!(c.listeners[0].routes[1].policies.is_empty());
}

#[test]
fn an_unknown_consumer_in_a_rule_is_named_with_its_place() {
    let e = errors(&with(
        "          auth: {api_key: {}}\n          authorize:\n            allow: [{consumers: [mallory]}]\n",
        "",
    ));
    assert_eq!(
        e,
        [
            "edge.yaml:14:34: listeners[0].routes[0].policies.authorize.allow[0].consumers[0]: consumer \"mallory\" is not defined under consumers:"
        ]
    );
}

#[test]
fn bad_keys_and_algorithms_are_refused() {
    let e = errors(&with(
        "          auth:\n            jwt:\n              keys:\n                - {algorithm: RS257, secret: x}\n                - {algorithm: RS256, secret: 'a-secret-that-is-long-enough-000000'}\n                - {algorithm: RS256, pem_file: missing.pem}\n                - {algorithm: ES256, public_key: 'not a key'}\n                - {algorithm: HS256, secret: short}\n",
        "",
    ));
    let text = e.join("\n");
    assert!(
        text.contains("keys[0].algorithm: unsupported algorithm \"RS257\": expected one of HS256"),
        "{text}"
    );
    assert!(
        text.contains("keys[1].secret: RS256 verifies with a public key, not a secret"),
        "{text}"
    );
    assert!(text.contains("keys[2].pem_file: cannot read"), "{text}");
    assert!(
        text.contains("keys[3].public_key: not a ES256 public key in PEM"),
        "{text}"
    );
    assert!(
        text.contains("keys[4].secret: an HMAC secret must be at least 32 bytes"),
        "{text}"
    );
    assert_eq!(e.len(), 5, "{text}");
}

#[test]
fn secrets_are_never_plain_and_keys_name_one_consumer() {
    let e = errors(&with(
        "          auth: {basic: {}}\n",
        "  - name: bob\n    api_keys: [{key: alice-key-0123456789}, {key: short}, {sha256: abc}]\n    basic: {password_hash: hunter2}\n",
    ));
    let text = e.join("\n");
    assert!(
        text.contains("consumers[1].api_keys[0]: this API key is already alice's"),
        "{text}"
    );
    assert!(
        text.contains("consumers[1].api_keys[1].key: an API key must be at least 8 characters"),
        "{text}"
    );
    assert!(
        text.contains("consumers[1].api_keys[2].sha256: sha256 must be 64 hex digits"),
        "{text}"
    );
    assert!(
        text.contains("consumers[1].basic.password_hash: password_hash must be a bcrypt"),
        "{text}"
    );
}

#[test]
fn policies_that_cannot_work_are_refused() {
    let e = errors(&with(
        "          authorize: {allow: [{groups: [admins]}]}\n          rate_limits:\n            - {name: a, limit: 0, window: 1s, store: redis}\n            - {name: b, limit: 1, window: 50ms, key: 'header:'}\n          cors: {origins: ['*'], credentials: true}\n          concurrency: {max: 0}\n",
        "",
    ));
    let text = e.join("\n");
    for want in [
        "authorize needs auth on the same route",
        "rate_limits[0].limit: limit must be 1 to",
        "a rate limit has store: redis but gateway.redis is not configured",
        "rate_limits[1].window: window must be between 100ms and 24h",
        "rate_limits[1].key: key \"header:\": expected consumer",
        "origins[0]: origin * cannot go with credentials: true",
        "concurrency.max: max must be 1 to",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
}

#[test]
fn bans_and_redis_have_bounds() {
    let e = errors(&with(
        "          ip: {deny: [10.0.0.0/33]}\n",
        "gateway:\n  redis: {url: 'http://x', timeout: 1h, on_error: maybe}\n  bans: {after: 0, within: 0s, ban_for: 800h, statuses: [200], max: 1000000, never: [nope]}\n",
    ));
    let text = e.join("\n");
    for want in [
        "gateway.redis.url: bad Redis URL",
        "gateway.redis.timeout: must be between",
        "gateway.redis.on_error: on_error is \"maybe\"",
        "gateway.bans.after: after must be 1 to 1000000",
        "gateway.bans.within: must be between",
        "gateway.bans.ban_for: must be between",
        "gateway.bans.statuses[0]: status 200",
        "gateway.bans.max: max must be 1 to 65536",
        "gateway.bans.never[0]",
        "policies.ip.deny[0]",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
}

#[test]
fn a_key_file_that_is_not_a_small_regular_file_is_not_read() {
    let e = errors(&with(
        "          auth:\n            jwt:\n              keys: [{algorithm: RS256, pem_file: /dev/zero}]\n",
        "",
    ));
    assert!(
        e[0].contains("pem_file: /dev/zero is not a regular file of at most 65536 bytes"),
        "{e:?}"
    );
}

#[test]
fn review_findings_are_refused_at_check_time() {
    let yaml = "\
consumers:
  - name: slow
    basic: {password_hash: '$2b$15$abcdefghijklmnopqrstuu5JeDAZ3tSm5W7YJp2WnJ6kJXDM1b9J.'}
gateway:
  redis: {url: 'redis://127.0.0.1:6379'}
listeners:
  - name: web
    address: 127.0.0.1:8080
    pool: app
    routes:
      - proxy: {pool: app}
        policies:
          rate_limits: [{name: a, limit: 1, window: 1s}, {name: a, limit: 2, window: 1s}]
      - name: fast
        proxy: {pool: app}
        policies:
          rate_limits: [{name: b, limit: 2000000, window: 1s, store: redis}]
          cors: {origins: ['https://a.test'], preflight_refusal_status: 204}
pools:
  - name: app
    backends: [{address: 127.0.0.1:9000}]
";
    let text = errors(yaml).join("\n");
    for want in [
        "consumers[0].basic.password_hash: bcrypt cost 15 is outside 4..=14",
        "listeners[0].routes[0].policies: name this route",
        "rate_limits[1].name: rate limit \"a\" is defined twice",
        "rate_limits[0].limit: a Redis limit counts in microseconds",
        "preflight_refusal_status is a client error status (400-499)",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
}

#[test]
fn a_listeners_limits_count_for_the_whole_listener() {
    let yaml = "\
listeners:
  - name: web
    address: 127.0.0.1:8080
    pool: app
    policies:
      rate_limits: [{name: all, limit: 10, window: 1s}]
    routes:
      - name: r
        proxy: {pool: app}
        policies:
          rate_limits: [{name: own, limit: 5, window: 1s}]
pools:
  - name: app
    backends: [{address: 127.0.0.1:9000}]
";
    let c = parse(yaml, Path::new("edge.yaml")).unwrap();
    for r in &c.listeners[0].routes {
        let all = r
            .policies
            .rate_limits
            .iter()
            .find(|l| l.name == "all")
            .unwrap();
        assert_eq!(all.scope, gateway::Scope::Listener, "route {}", r.name);
    }
    let own = &c.listeners[0].routes[0].policies.rate_limits[1];
    assert_eq!(
        (own.name.as_str(), own.scope),
        ("own", gateway::Scope::Route)
    );
}

#[test]
fn redis_over_tls_is_refused_until_edge_speaks_it() {
    let e = errors(&with(
        "          ip: {deny: [192.0.2.0/24]}\n",
        "gateway:\n  redis: {url: 'rediss://cache.example:6380'}\n",
    ));
    assert!(
        e[0].contains("gateway.redis.url: TLS to Redis (rediss://) is not supported yet"),
        "{e:?}"
    );
}
