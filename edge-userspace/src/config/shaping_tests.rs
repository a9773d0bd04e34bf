//! A route's shaping in the configuration: the model it becomes and the
//! mistakes `edge check` refuses, each where it is.

use super::tests::errors;
use super::*;
use std::path::Path;

fn route(body: &str) -> String {
    format!(
        "\
listeners:
  - name: web
    address: 127.0.0.1:8080
    routes:
      - name: r
{body}pools:
  - name: app
    backends: [{{address: 127.0.0.1:9000}}]
  - name: other
    backends: [{{address: 127.0.0.1:9001}}]
"
    )
}

fn only_error(body: &str) -> String {
    let e = errors(&route(body));
    assert_eq!(e.len(), 1, "{e:?}");
    e.into_iter().next().unwrap_or_default()
}

#[test]
fn a_full_shaping_becomes_the_model() {
    let c = parse(
        &route(concat!(
            "        match: {path: {regex: '^/p/(?P<id>[0-9]+)$'}}\n",
            "        proxy: {pool: app}\n",
            "        transform:\n",
            "          request: {path: '/v2/{id}', query: {add: {a: b}}, json: {set: {/x: 1}}}\n",
            "          response: {xml_to_json: true, max_body: 2MiB}\n",
            "        deprecated: {since: 2026-01-01T00:00:00Z, sunset: 2027-06-30T00:00:00Z}\n",
            "        split:\n",
            "          - {pool: other, percent: 12.5, sticky: 'header:x-user'}\n",
            "        mirror: {pool: other, percent: 1}\n",
        )),
        Path::new("t.yaml"),
    )
    .unwrap();
    let s = &c.listeners[0].routes[0].shaping;
    assert!(s.reads_request_body());
    assert_eq!(s.response.as_ref().unwrap().max_body, 2 << 20);
    assert_eq!(s.response.as_ref().unwrap().xml_to_json, Some(64));
    assert_eq!(
        s.deprecated,
        vec![
            ("deprecation".to_string(), "@1767225600".to_string()),
            (
                "sunset".to_string(),
                "Wed, 30 Jun 2027 00:00:00 GMT".to_string()
            ),
        ]
    );
    assert_eq!(s.split[0].when, shaping::SplitWhen::Share(1250));
    assert_eq!(s.mirror.as_ref().unwrap().share, 100);
}

#[test]
fn mistakes_are_refused_where_they_are() {
    let cases = [
        (
            "        match: {path: {prefix: /p}}\n        proxy: {pool: app}\n        transform: {request: {path: '/v2/{id}'}}\n",
            "neither {path} nor a named capture",
        ),
        (
            "        proxy: {pool: app}\n        transform: {request: {path: '/v2?x=1'}}\n",
            "transform.request.query",
        ),
        (
            "        proxy: {pool: app}\n        transform: {request: {max_body: 1MiB}}\n",
            "max_body must be between",
        ),
        (
            "        proxy: {pool: app}\n        transform: {response: {json: {remove: [x]}}}\n",
            "bad JSON pointer",
        ),
        (
            "        proxy: {pool: app}\n        split: [{pool: other, percent: 60}, {pool: app, percent: 50}]\n",
            "add up to 110%",
        ),
        (
            "        proxy: {pool: app}\n        split: [{pool: other, percent: 5, sticky: client_ip}, {pool: app, percent: 5, sticky: 'cookie:s'}]\n",
            "one sticky key",
        ),
        (
            "        proxy: {pool: app}\n        split: [{pool: other, percent: 5, header: {name: x, value: y}}]\n",
            "exactly one of percent, header and cookie",
        ),
        (
            "        respond: {status: 200}\n        mirror: {pool: other}\n",
            "mirror only applies to routes that proxy",
        ),
        (
            "        proxy: {pool: app}\n        mirror: {pool: other, max_in_flight: 0}\n",
            "max_in_flight must be between",
        ),
        (
            "        proxy: {pool: app}\n        validate: {schema: {type: 12}}\n",
            "not a usable JSON Schema",
        ),
        (
            "        proxy: {pool: app}\n        validate: {schema: {$ref: 'https://example.com/s.json'}}\n",
            "not a usable JSON Schema",
        ),
        (
            "        proxy: {pool: app}\n        deprecated: {since: yesterday}\n",
            "not an RFC 3339 time",
        ),
        (
            "        aggregate: {timeout: 1s, calls: [{pool: app, path: /a, timeout: 2s}]}\n",
            "longer than the aggregation's",
        ),
        (
            "        aggregate: {calls: [{pool: app, path: /a}, {pool: app, path: /b}]}\n",
            "two calls are named \"app\"",
        ),
        (
            "        aggregate: {calls: [{pool: app, path: /a, allow: [x], deny: [y]}]}\n",
            "allow and deny exclude each other",
        ),
        ("        aggregate: {calls: []}\n", "1 to 16 calls"),
    ];
    for (body, want) in cases {
        let e = only_error(body);
        assert!(e.contains(want), "{body}: {e}");
        assert!(e.starts_with("edge.yaml:"), "{body}: not located: {e}");
    }
}
