//! Configuration parsing and validation, with the exact messages a user sees.

use super::*;
use std::path::Path;

/// The file name the messages show.
pub(super) const FILE: &str = "edge.yaml";

/// The messages `yaml` gets, as `edge check` prints them.
pub(super) fn errors(yaml: &str) -> Vec<String> {
    match parse(yaml, Path::new(FILE)) {
        Ok(c) => panic!("expected errors, got {c:?}"),
        Err(ConfigError::Invalid { diagnostics, .. }) => diagnostics
            .iter()
            .map(|d| d.display_in(Path::new(FILE)).to_string())
            .collect(),
        Err(e) => panic!("unexpected error {e}"),
    }
}

const GOOD: &str = "\
xdp:
  interfaces:
    - name: eth0
      mode: generic
  deny: [192.0.2.0/24, 2001:db8::/32, 198.51.100.7]
listeners:
  - name: web
    address: 0.0.0.0:8080
    pool: app
  - name: alt
    address: '[::1]:8081'
    pool: app
pools:
  - name: app
    backends:
      - address: 10.0.0.1:80
      - address: '[2001:db8::1]:80'
admin:
  address: 127.0.0.1:9100
server:
  threads: 3
";

#[test]
fn a_good_file_becomes_the_model() {
    let c = parse(GOOD, Path::new(FILE)).unwrap();
    assert_eq!(c.xdp.interfaces[0].name, "eth0");
    assert_eq!(c.xdp.interfaces[0].mode, XdpMode::Generic);
    assert_eq!(c.xdp.deny.len(), 3);
    assert_eq!(c.xdp.deny[2].to_string(), "198.51.100.7/32");
    assert_eq!(c.listeners[1].address.to_string(), "[::1]:8081");
    assert!(matches!(
        &c.listeners[1].routes[0].action,
        Action::Proxy { pool, .. } if pool == "app"
    ));
    assert_eq!(c.pools[0].algorithm, Algorithm::RoundRobin);
    assert_eq!(c.l7_ports(), vec![8080, 8081]);
    assert_eq!(c.admin.unwrap().address.to_string(), "127.0.0.1:9100");
    assert_eq!(c.server.threads, 3);
}

#[test]
fn unknown_key() {
    assert_eq!(
        errors("listeners:\n  - name: a\n    adress: 1.2.3.4:80\n"),
        [
            "edge.yaml:3:5: listeners[0]: unknown field `adress`, expected one of `name`, `address`, `pool`, `routes`, `trusted_proxies`, `untrusted_headers`, `merge_slashes`, `encoded_slashes`, `pass_upstream_headers`, `tls`, `http2`, `limits`, `cache`, `compression`, `policies`, `mode`, `sni`, `proxy_protocol`, `request_id`, `tracing`"
        ]
    );
    assert_eq!(
        errors("listners: []\n"),
        [
            "edge.yaml:1:1: unknown field `listners`, expected one of `xdp`, `l4`, `listeners`, `pools`, `admin`, `server`, `cache`, `access_log`, `consumers`, `gateway`, `bgp`"
        ]
    );
}

#[test]
fn wrong_type() {
    assert_eq!(
        errors("server:\n  threads: many\n"),
        ["edge.yaml:2:12: server.threads: invalid type: string \"many\", expected usize"]
    );
    assert_eq!(
        errors("xdp:\n  interfaces:\n    - name: eth0\n      mode: turbo\n"),
        [
            "edge.yaml:4:13: xdp.interfaces[0].mode: unknown variant `turbo`, expected `native` or `generic`"
        ]
    );
}

#[test]
fn bad_cidrs_are_all_reported() {
    assert_eq!(
        errors(
            "xdp:\n  interfaces: [{name: eth0}]\n  deny:\n    - 10.0.0.0/33\n    - 10.1.2.3/8\n    - 10.0.0.0/8\n    - bogus\n    - 10.0.0.0/8\n"
        ),
        [
            "edge.yaml:4:7: xdp.deny[0]: bad CIDR \"10.0.0.0/33\": expected an IPv4 or IPv6 prefix such as 192.0.2.0/24 or 2001:db8::/32",
            "edge.yaml:5:7: xdp.deny[1]: CIDR \"10.1.2.3/8\" has host bits set: did you mean 10.0.0.0/8?",
            "edge.yaml:7:7: xdp.deny[3]: bad CIDR \"bogus\": expected an IPv4 or IPv6 prefix such as 192.0.2.0/24 or 2001:db8::/32",
            "edge.yaml:8:7: xdp.deny[4]: prefix 10.0.0.0/8 is listed twice (first defined at line 6)",
        ]
    );
}

#[test]
fn duplicate_listeners() {
    let yaml = "\
listeners:
  - name: web
    address: 0.0.0.0:80
    pool: app
  - name: web
    address: 0.0.0.0:81
    pool: app
  - name: other
    address: 10.0.0.1:80
    pool: app
pools:
  - name: app
    backends: [{address: 10.0.0.2:80}]
";
    assert_eq!(
        errors(yaml),
        [
            "edge.yaml:5:11: listeners[1].name: listener \"web\" is defined twice (first defined at line 2)",
            "edge.yaml:9:14: listeners[2].address: listener \"other\" on 10.0.0.1:80 overlaps 0.0.0.0:80 (line 3)",
        ]
    );
}

#[test]
fn references_and_addresses() {
    let yaml = "\
listeners:
  - name: web
    address: localhost:80
    pool: ghost
pools:
  - name: app
    backends: []
  - name: app
    backends: [{address: 10.0.0.2}]
admin:
  address: 0.0.0.0:9100
server:
  threads: 0
";
    assert_eq!(
        errors(yaml),
        [
            "edge.yaml:3:14: listeners[0].address: bad address \"localhost:80\": expected IP:port, such as 0.0.0.0:8080 or [::]:8080",
            "edge.yaml:4:11: listeners[0].pool: pool \"ghost\" is not defined (defined: app, app)",
            "edge.yaml:7:15: pools[0].backends: pool \"app\" has no backends",
            "edge.yaml:8:11: pools[1].name: pool \"app\" is defined twice (first defined at line 6)",
            "edge.yaml:9:26: pools[1].backends[0].address: bad address \"10.0.0.2\": expected IP:port, such as 0.0.0.0:8080 or [::]:8080",
            "edge.yaml:13:12: server.threads: threads must be at least 1",
        ]
    );
}

#[test]
fn admin_may_not_overlap_a_listener() {
    let yaml = "\
listeners:
  - {name: web, address: '0.0.0.0:9100', pool: app}
pools:
  - {name: app, backends: [{address: '10.0.0.2:80'}]}
admin:
  address: 127.0.0.1:9100
";
    assert_eq!(
        errors(yaml),
        [
            "edge.yaml:6:12: admin.address: 127.0.0.1:9100 overlaps listener \"web\" on 0.0.0.0:9100 (line 2)"
        ]
    );
}

#[test]
fn interfaces() {
    let yaml = "\
xdp:
  interfaces:
    - name: eth0
    - name: eth0
    - name: a-name-that-is-too-long
    - {name: eth1, mode: generic, fallback_to_generic: true}
";
    assert_eq!(
        errors(yaml),
        [
            "edge.yaml:4:13: xdp.interfaces[1].name: interface \"eth0\" is listed twice (first defined at line 3)",
            "edge.yaml:5:13: xdp.interfaces[2].name: bad interface name \"a-name-that-is-too-long\": 1 to 15 characters, no '/'",
            "edge.yaml:6:56: xdp.interfaces[3].fallback_to_generic: fallback_to_generic only applies to mode: native",
        ]
    );
}

#[test]
fn empty_and_idle_files() {
    assert_eq!(
        errors(""),
        ["edge.yaml: the file is empty: configure listeners and/or xdp.interfaces"]
    );
    assert_eq!(
        errors("xdp:\n  deny: [10.0.0.0/8]\n"),
        ["edge.yaml: nothing to run: configure listeners and/or xdp.interfaces"]
    );
}

#[test]
fn yaml_syntax_errors_have_a_position() {
    assert_eq!(
        errors("listeners: [\n"),
        ["edge.yaml:2:1: did not find expected node content, while parsing a flow node"]
    );
}

#[test]
fn unknown_algorithm() {
    assert_eq!(
        errors(
            "pools:\n  - name: a\n    algorithm: fastest\n    backends: [{address: 10.0.0.1:80}]\n"
        ),
        [
            "edge.yaml:3:16: pools[0].algorithm: unknown variant `fastest`, expected one of `round_robin`, `weighted_round_robin`, `least_connections`, `p2c`, `ketama`, `ip_hash`"
        ]
    );
}

#[test]
fn routes_and_pools_are_checked_together() {
    let yaml = "\
listeners:
  - name: web
    address: 127.0.0.1:8080
    routes:
      - name: api
        match: { path: { prefix: api } }
        proxy: { pool: ghost }
      - match: { path: { regex: '([a-z' }, hosts: ['*bad.example.com'] }
        respond: { status: 200 }
      - redirect: { location: /x, status: 200 }
        respond: { status: 200 }
      - static: { root: /nonexistent/edge }
pools:
  - name: app
    algorithm: round_robin
    hash_key: header:X-User
    backends: [{address: 10.0.0.1:80, weight: 0}]
    health_check: { type: tcp, path: /healthz, interval: 1s, timeout: 2s, rise: 0 }
    circuit_breaker: { error_ratio: 1.5 }
    timeouts: { connect: 5 }
";
    assert_eq!(
        errors(yaml),
        [
            "edge.yaml:6:34: listeners[0].routes[0].match.path.prefix: path \"api\" must start with '/'",
            "edge.yaml:7:24: listeners[0].routes[0].proxy.pool: pool \"ghost\" is not defined (defined: app)",
            "edge.yaml:8:33: listeners[0].routes[1].match.path.regex: bad regex \"([a-z\": error: unclosed character class",
            "edge.yaml:8:52: listeners[0].routes[1].match.hosts[0]: bad host \"*bad.example.com\": expected a name such as example.com or *.example.com",
            "edge.yaml:10:17: listeners[0].routes[2]: a route has one action, this one has redirect and respond",
            "edge.yaml:12:25: listeners[0].routes[3].static.root: /nonexistent/edge is not a readable directory",
            "edge.yaml:16:15: pools[0].hash_key: hash_key only applies to algorithm: ketama (this pool uses round_robin)",
            "edge.yaml:17:47: pools[0].backends[0].weight: weight must be at least 1 (remove the backend to take it out)",
            "edge.yaml:18:38: pools[0].health_check.path: path only applies to type: http",
            "edge.yaml:18:71: pools[0].health_check.timeout: timeout (2000ms) is longer than interval (1000ms)",
            "edge.yaml:18:81: pools[0].health_check.rise: rise must be at least 1",
            "edge.yaml:19:37: pools[0].circuit_breaker.error_ratio: error_ratio 1.5 is out of range: more than 0, at most 1",
            "edge.yaml:20:26: pools[0].timeouts.connect: bad duration \"5\": expected a number with a unit, such as 250ms, 5s, 2m or 1h",
        ]
    );
}

#[test]
fn a_listener_needs_somewhere_to_send_requests() {
    assert_eq!(
        errors("listeners:\n  - name: web\n    address: 127.0.0.1:8080\n"),
        [
            "edge.yaml:2:11: listeners[0].name: listener \"web\" has neither routes nor a pool: requests would have nowhere to go"
        ]
    );
}

#[test]
fn request_ids_and_tracing() {
    // On without a line of configuration.
    let c = parse(GOOD, Path::new(FILE)).unwrap();
    assert_eq!(c.listeners[0].request_trace, RequestTrace::default());
    assert_eq!(c.listeners[0].request_trace.header, "X-Request-Id");
    assert!(c.listeners[0].request_trace.trust_incoming);
    assert_eq!(c.listeners[0].request_trace.sample_ratio, 0.0);
    let yaml = "\
listeners:
  - name: web
    address: 127.0.0.1:80
    pool: app
    request_id: {header: X-Correlation-Id, trust_incoming: false}
    tracing: {sample_ratio: 0.25}
pools:
  - name: app
    backends: [{address: 10.0.0.2:80}]
";
    let c = parse(yaml, Path::new(FILE)).unwrap();
    let t = &c.listeners[0].request_trace;
    assert_eq!(
        (t.header_str(), t.trust_incoming, t.sample_ratio),
        ("X-Correlation-Id", false, 0.25)
    );
    let bad = "\
listeners:
  - name: web
    address: 127.0.0.1:80
    pool: app
    request_id:
      header: Traceparent
    tracing:
      sample_ratio: 1.5
  - name: alt
    address: 127.0.0.1:81
    pool: app
    request_id:
      header: X(Id
pools:
  - name: app
    backends: [{address: 10.0.0.2:80}]
";
    assert_eq!(
        errors(bad),
        [
            "edge.yaml:6:15: listeners[0].request_id.header: Traceparent cannot carry the request id: HTTP, gRPC or edge itself gives it a meaning (use a name such as X-Request-Id)",
            "edge.yaml:8:21: listeners[0].tracing.sample_ratio: sample_ratio 1.5 is out of range: 0 to 1",
            "edge.yaml:13:15: listeners[1].request_id.header: bad header name \"X(Id\": letters, digits and !#$%&'*+-.^_`|~ only",
        ]
    );
}
