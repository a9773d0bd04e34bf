//! Bounds, wire values, start-up conditions, warnings and hostile YAML:
//! what `edge check` must refuse (or warn about) so that `edge run` does
//! not allocate gigabytes, abort, never exit, or fail every request.

use super::*;
use std::{
    path::Path,
    time::{Duration, Instant},
};

use super::tests::{FILE, errors};

/// A listener and a pool to hang the value under test on.
const HEAD: &str = "\
listeners:
  - { name: web, address: '127.0.0.1:8080', pool: app }
";

#[test]
fn the_values_that_made_edge_run_allocate_or_abort_are_refused() {
    let yaml = format!(
        "{HEAD}pools:
  - name: app
    backends: [{{ address: '10.0.0.1:80' }}]
    circuit_breaker: {{ error_ratio: 0.5, window: 100000h }}
    outlier_detection: {{ consecutive_failures: 5, ejection_time: 100000h }}
  - name: ring
    algorithm: ketama
    backends: [{{ address: '10.0.0.2:80', weight: 100000000 }}]
server:
  threads: 100000
  grace_period_seconds: 18446744073709551615
"
    );
    assert_eq!(
        errors(&yaml),
        [
            "edge.yaml:6:50: pools[0].circuit_breaker.window: window is 100000h: must be at most 1h",
            "edge.yaml:7:66: pools[0].outlier_detection.ejection_time: ejection_time is 100000h: must be at most 1h",
            "edge.yaml:10:15: pools[1].backends: the weights of ketama pool \"ring\" add up to 100000000: must be at most 10000 (each unit is 160 ring points)",
            "edge.yaml:10:50: pools[1].backends[0].weight: weight is 100000000: must be at most 1000 in a ketama pool",
            "edge.yaml:12:12: server.threads: threads is 100000: must be at most 1024",
            "edge.yaml:13:25: server.grace_period_seconds: grace_period_seconds is 18446744073709551615: must be at most 3600",
        ]
    );
}

#[test]
fn every_duration_count_and_size_of_a_pool_has_a_bound() {
    let yaml = format!(
        "{HEAD}pools:
  - name: app
    backends: [{{ address: '10.0.0.1:80', weight: 2000000 }}]
    health_check: {{ interval: 10ms, timeout: 5ms, rise: 101, fall: 1000 }}
    timeouts: {{ connect: 6m, read: 2h, write: 1h, total: 61m }}
    retries: {{ attempts: 11, min_per_window: 10001 }}
    circuit_breaker: {{ error_ratio: 0.5, window: 500ms, min_requests: 1000001, open_for: 2h, half_open_requests: 1001 }}
    keepalive: {{ idle_timeout: 2h }}
    outlier_detection: {{ consecutive_failures: 10001 }}
"
    );
    assert_eq!(
        errors(&yaml),
        [
            "edge.yaml:5:50: pools[0].backends[0].weight: weight is 2000000: must be at most 1000000",
            "edge.yaml:6:31: pools[0].health_check.interval: interval is 10ms: must be at least 100ms",
            "edge.yaml:6:57: pools[0].health_check.rise: rise is 101: must be at most 100",
            "edge.yaml:6:68: pools[0].health_check.fall: fall is 1000: must be at most 100",
            "edge.yaml:7:26: pools[0].timeouts.connect: connect is 6m: must be at most 5m",
            "edge.yaml:7:36: pools[0].timeouts.read: read is 2h: must be at most 1h",
            "edge.yaml:7:58: pools[0].timeouts.total: total is 61m: must be at most 1h",
            "edge.yaml:8:26: pools[0].retries.attempts: attempts is 11: must be at most 10",
            "edge.yaml:8:46: pools[0].retries.min_per_window: min_per_window is 10001: must be at most 10000",
            "edge.yaml:9:50: pools[0].circuit_breaker.window: window is 500ms: must be at least 1s",
            "edge.yaml:9:71: pools[0].circuit_breaker.min_requests: min_requests is 1000001: must be at most 1000000",
            "edge.yaml:9:90: pools[0].circuit_breaker.open_for: open_for is 2h: must be at most 1h",
            "edge.yaml:9:114: pools[0].circuit_breaker.half_open_requests: half_open_requests is 1001: must be at most 1000",
            "edge.yaml:10:32: pools[0].keepalive.idle_timeout: idle_timeout is 2h: must be at most 1h",
            "edge.yaml:11:48: pools[0].outlier_detection.consecutive_failures: consecutive_failures is 10001: must be at most 10000",
        ]
    );
}

#[test]
fn listener_cache_and_l4_values_have_bounds() {
    let body = "x".repeat(1024 * 1024 + 1);
    let token = "t".repeat(4097);
    let untrusted = vec!["x-a"; 65].join(", ");
    let yaml = format!(
        "listeners:
  - name: web
    address: '127.0.0.1:8080'
    limits: {{ header_read_timeout: 6m, idle_timeout: 2h, max_body_size: 65GiB, max_connections: 1000001, body_read_timeout: 2h, min_body_rate: 2GiB }}
    untrusted_headers: [{untrusted}]
    compression: {{ min_size: 2GiB }}
    cache: {{ heuristic_freshness: true, default_ttl: 8761h }}
    routes:
      - respond: {{ status: 200, body: {body} }}
cache: {{ max_size: 65GiB, max_object_size: 2GiB, lock_timeout: 2m }}
admin: {{ address: '127.0.0.1:9100', token: {token} }}
server: {{ upstream_keepalive_pool_size: 65537 }}
xdp:
  interfaces: [{{ name: eth0 }}]
l4:
  forwarding: {{ source_v4: 10.0.0.9 }}
  services:
    - name: s
      vip: 10.0.0.2
      port: 80
      backends: [{{ address: 10.0.0.1 }}]
      health_check: {{ type: tcp, interval: 2h, timeout: 1s, rise: 101 }}
"
    );
    assert_eq!(
        errors(&yaml),
        [
            "edge.yaml:4:36: listeners[0].limits.header_read_timeout: header_read_timeout is 6m: must be at most 5m",
            "edge.yaml:4:54: listeners[0].limits.idle_timeout: idle_timeout is 2h: must be at most 1h",
            "edge.yaml:4:73: listeners[0].limits.max_body_size: max_body_size is 65GiB: must be at most 64GiB",
            "edge.yaml:4:97: listeners[0].limits.max_connections: max_connections is 1000001: must be at most 1000000",
            "edge.yaml:4:125: listeners[0].limits.body_read_timeout: body_read_timeout is 2h: must be at most 1h",
            "edge.yaml:4:144: listeners[0].limits.min_body_rate: min_body_rate is 2GiB: must be at most 1GiB",
            "edge.yaml:5:24: listeners[0].untrusted_headers: untrusted_headers has 65 entries: must have at most 64",
            "edge.yaml:6:30: listeners[0].compression.min_size: min_size is 2GiB: must be at most 1GiB",
            "edge.yaml:7:54: listeners[0].cache.default_ttl: default_ttl is 8761h: must be at most 8760h",
            "edge.yaml:9:39: listeners[0].routes[0].respond.body: body is 1048577 bytes: must be at most 1MiB",
            "edge.yaml:10:20: cache.max_size: max_size is 65GiB: must be at most 64GiB",
            "edge.yaml:10:44: cache.max_object_size: max_object_size is 2GiB: must be at most 1GiB",
            "edge.yaml:10:64: cache.lock_timeout: lock_timeout is 2m: must be at most 1m",
            "edge.yaml:11:44: admin.token: token is 4097 bytes long: must be at most 4KiB",
            "edge.yaml:12:41: server.upstream_keepalive_pool_size: upstream_keepalive_pool_size is 65537: must be at most 65536",
            "edge.yaml:22:44: l4.services[0].health_check.interval: interval is 2h: must be at most 1h",
            "edge.yaml:22:67: l4.services[0].health_check.rise: rise is 101: must be at most 100",
        ]
    );
}

#[test]
fn lists_have_bounds() {
    let backends: Vec<String> = (0..1025)
        .map(|i| format!("{{ address: '10.0.{}.{}:80' }}", i / 250, i % 250))
        .collect();
    let hosts: Vec<String> = (0..65).map(|i| format!("h{i}.example.com")).collect();
    let yaml = format!(
        "listeners:
  - name: web
    address: '127.0.0.1:8080'
    routes:
      - match: {{ hosts: [{}] }}
        proxy: {{ pool: app }}
pools:
  - name: app
    backends: [{}]
",
        hosts.join(", "),
        backends.join(", ")
    );
    assert_eq!(
        errors(&yaml),
        [
            "edge.yaml:5:25: listeners[0].routes[0].match.hosts: hosts has 65 entries: must have at most 64",
            "edge.yaml:9:15: pools[0].backends: backends has 1025 entries: must have at most 1024",
        ]
    );
}

#[test]
fn listeners_times_threads_is_bounded() {
    let listeners: String = (0..20)
        .map(|i| {
            format!(
                "  - {{ name: l{i}, address: '127.0.0.1:{}', pool: app }}\n",
                8000 + i
            )
        })
        .collect();
    let yaml = format!(
        "listeners:\n{listeners}pools: [{{ name: app, backends: [{{ address: '10.0.0.1:80' }}] }}]\nserver: {{ threads: 1000 }}\n"
    );
    assert_eq!(
        errors(&yaml),
        [
            "edge.yaml:23:20: server.threads: 20 listeners with 1000 server.threads each are 20000 worker threads: must be at most 16384 (lower server.threads)"
        ]
    );
}

#[test]
fn a_redirect_location_must_be_a_valid_header_value() {
    let yaml = "\
listeners:
  - name: web
    address: '127.0.0.1:8080'
    routes:
      - redirect: { location: \"https://example.com/\\r\\nSet-Cookie: x=1\" }
      - redirect: { location: \"/a\\0b\" }
      - redirect: { location: '' }
      - redirect: { location: 'https://www.example.com{path}{query}' }
";
    assert_eq!(
        errors(yaml),
        [
            "edge.yaml:5:31: listeners[0].routes[0].redirect.location: location \"https://example.com/\\r\\nSet-Cookie: x=1\" cannot be sent as a Location header: CR (\\r) at byte 20 is not allowed in a header value",
            "edge.yaml:6:31: listeners[0].routes[1].redirect.location: location \"/a\\0b\" cannot be sent as a Location header: NUL at byte 2 is not allowed in a header value",
            "edge.yaml:7:31: listeners[0].routes[2].redirect.location: location is empty: give the URL to redirect to",
        ]
    );
}

#[test]
fn header_fields_with_cr_lf_nul_or_bad_names_are_refused() {
    // Refused before issue 8 too (through the http crate's checks), but as
    // "bad header field": now the message says which half and why.
    let yaml = "\
listeners:
  - name: web
    address: '127.0.0.1:8080'
    routes:
      - respond: { status: 200, headers: { X-A: \"a\\r\\nb\" } }
        response_headers: { set: { X-B: \"\\0\" }, add: { 'Bad Name': x } }
      - proxy: { pool: app }
        request_headers: { add: { X-C: \"c\\nd\" }, remove: ['x:y'] }
pools:
  - { name: app, backends: [{ address: '10.0.0.1:80' }] }
";
    assert_eq!(
        errors(yaml),
        [
            "edge.yaml:5:49: listeners[0].routes[0].respond.headers.X-A: header X-A: value \"a\\r\\nb\" cannot be sent: CR (\\r) at byte 1 is not allowed in a header value",
            "edge.yaml:6:41: listeners[0].routes[0].response_headers.set.X-B: header X-B: value \"\\0\" cannot be sent: NUL at byte 0 is not allowed in a header value",
            "edge.yaml:6:68: listeners[0].routes[0].response_headers.add.Bad Name: bad header name \"Bad Name\": letters, digits and !#$%&'*+-.^_`|~ only",
            "edge.yaml:8:40: listeners[0].routes[1].request_headers.add.X-C: header X-C: value \"c\\nd\" cannot be sent: LF (\\n) at byte 1 is not allowed in a header value",
            "edge.yaml:8:59: listeners[0].routes[1].request_headers.remove[0]: bad header name \"x:y\"",
        ]
    );
}

#[test]
fn values_sent_to_backends_and_upstream_header_names_are_checked() {
    let yaml = "\
listeners:
  - name: web
    address: '127.0.0.1:8080'
    pool: app
    pass_upstream_headers: ['Server', 'X Powered']
pools:
  - name: app
    algorithm: ketama
    hash_key: 'header:X User'
    backends: [{ address: '10.0.0.1:80' }]
    health_check: { path: \"/health\\r\\nX: y\", host: 'a b' }
";
    assert_eq!(
        errors(yaml),
        [
            "edge.yaml:5:39: listeners[0].pass_upstream_headers[1]: bad header name \"X Powered\": letters, digits and !#$%&'*+-.^_`|~ only",
            "edge.yaml:9:15: pools[0].hash_key: bad header name \"X User\": letters, digits and !#$%&'*+-.^_`|~ only",
            "edge.yaml:11:27: pools[0].health_check.path: health check path \"/health\\r\\nX: y\" cannot be sent in a request line: CR (\\r) at byte 7 (percent-encode it)",
            "edge.yaml:11:52: pools[0].health_check.host: health check host \"a b\" cannot be sent as a Host header: a space is not allowed in a host",
        ]
    );
}

#[test]
fn an_access_log_edge_run_could_not_open_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("edge.yaml");
    let yaml = |log: &str| {
        format!(
            "{HEAD}pools: [{{ name: app, backends: [{{ address: '10.0.0.1:80' }}] }}]\naccess_log: {{ path: '{log}' }}\n"
        )
    };
    let missing = dir.path().join("no-such-dir/access.log");
    let msg = |log: &str| match parse(&yaml(log), &file) {
        Ok(_) => "OK".to_string(),
        Err(e) => e.to_string(),
    };
    assert_eq!(
        msg(missing.to_str().unwrap()),
        format!(
            "{}:4:21: access_log.path: directory {} does not exist: create it, or log elsewhere",
            file.display(),
            dir.path().join("no-such-dir").display()
        )
    );
    assert_eq!(
        msg("."),
        format!(
            "{}:4:21: access_log.path: {} is a directory: give a file to append to",
            file.display(),
            dir.path().join(".").display()
        )
    );
    // Relative to the configuration file's directory, which exists.
    assert_eq!(msg("access.log"), "OK");
    assert_eq!(msg("-"), "OK");
}

#[test]
fn a_backend_that_is_one_of_edges_own_listeners_is_a_warning() {
    let yaml = "\
listeners:
  - { name: web, address: '0.0.0.0:8080', pool: app }
  - { name: local, address: '127.0.0.1:9000', pool: app }
pools:
  - name: app
    backends:
      - address: '127.0.0.1:8080'
      - address: '10.0.0.1:8080'
      - address: '127.0.0.1:9000'
      - address: '[::1]:8080'
      - address: '0.0.0.0:9000'
";
    let checked = check_text(yaml, Path::new(FILE)).unwrap();
    let shown: Vec<String> = checked
        .warnings
        .iter()
        .map(|w| w.warning_in(Path::new(FILE)).to_string())
        .collect();
    assert_eq!(
        shown,
        [
            "edge.yaml:7:18: warning: pools[0].backends[0].address: backend 127.0.0.1:8080 of pool \"app\" is edge's own listener \"web\" (0.0.0.0:8080, line 2): requests sent to it come back to edge in a loop",
            "edge.yaml:9:18: warning: pools[0].backends[2].address: backend 127.0.0.1:9000 of pool \"app\" is edge's own listener \"local\" (127.0.0.1:9000, line 3): requests sent to it come back to edge in a loop",
            "edge.yaml:11:18: warning: pools[0].backends[4].address: backend 0.0.0.0:9000 of pool \"app\" is edge's own listener \"local\" (127.0.0.1:9000, line 3): requests sent to it come back to edge in a loop",
        ]
    );
    // A warning does not stop the file from loading.
    assert!(parse(yaml, Path::new(FILE)).is_ok());
}

#[test]
fn which_backends_reach_a_listener() {
    use preflight::reaches;
    let r = |b: &str, l: &str| reaches(b.parse().unwrap(), l.parse().unwrap());
    assert!(r("10.0.0.1:80", "10.0.0.1:80"));
    assert!(r("127.0.0.1:80", "0.0.0.0:80"));
    assert!(r("127.0.0.5:80", "0.0.0.0:80"));
    assert!(r("127.0.0.1:80", "[::]:80"), "[::] also takes IPv4");
    assert!(r("[::1]:80", "[::]:80"));
    assert!(r("[::ffff:127.0.0.1]:80", "0.0.0.0:80"));
    assert!(r("0.0.0.0:80", "127.0.0.1:80"));
    assert!(!r("[::1]:80", "0.0.0.0:80"), "0.0.0.0 takes IPv4 only");
    assert!(!r("127.0.0.1:81", "0.0.0.0:80"));
    assert!(!r("10.0.0.2:80", "0.0.0.0:80"));
    assert!(!r("127.0.0.1:80", "127.0.0.2:80"));
}

#[test]
fn deep_nesting_is_refused_quickly() {
    let n = 100_000;
    let yaml = format!("listeners: {}{}\n", "[".repeat(n), "]".repeat(n));
    let start = Instant::now();
    let e = errors(&yaml);
    let took = start.elapsed();
    assert_eq!(
        e,
        [
            "edge.yaml:1:267: collections are nested more than 64 deep: nesting must be at most 64 levels"
        ]
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // Block nesting is counted by its events: refused at its 65th level.
    let yaml: String = (0..100)
        .map(|i| format!("{}- \n", "  ".repeat(i)))
        .collect();
    assert_eq!(
        errors(&yaml),
        [
            "edge.yaml:65:129: collections are nested more than 64 deep: nesting must be at most 64 levels"
        ]
    );
    // Nesting within the bound (the root mapping is the first level) is
    // left to the schema.
    let yaml = format!("listeners: {}{}\n", "[".repeat(63), "]".repeat(63));
    assert!(errors(&yaml)[0].contains("invalid type"));
}

#[test]
fn an_alias_bomb_is_refused_before_it_is_expanded() {
    let mut yaml = String::from(
        "pools: [{ name: app, backends: [{ address: '10.0.0.1:80' }] }]\nlisteners:\n  - &l\n    name: web\n    address: '127.0.0.1:8080'\n    routes:\n",
    );
    for i in 0..500 {
        yaml.push_str(&format!(
            "      - {{ name: r{i}, match: {{ path: {{ prefix: /p{i} }} }}, respond: {{ status: 200 }} }}\n"
        ));
    }
    for _ in 0..3000 {
        yaml.push_str("  - *l\n");
    }
    let start = Instant::now();
    let e = errors(&yaml);
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(
        e,
        [
            "edge.yaml:607:5: more than 100 aliases (*name): alias uses must be at most 100, since each is expanded again and a few nested ones can cost gigabytes"
        ]
    );
}

#[test]
fn pem_files_must_be_small_regular_files() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.pem");
    std::fs::write(&big, vec![b'A'; (1 << 20) + 1]).unwrap();
    let yaml = format!(
        "listeners:
  - name: web
    address: '127.0.0.1:8443'
    pool: app
    tls:
      certificates: [{{ cert: {}, key: /dev/zero }}]
pools: [{{ name: app, backends: [{{ address: '10.0.0.1:80' }}] }}]
",
        big.display()
    );
    assert_eq!(
        errors(&yaml),
        [
            format!(
                "edge.yaml:6:30: listeners[0].tls.certificates[0].cert: {} is 1048577 bytes: a PEM file must be at most 1MiB",
                big.display()
            ),
            // The key's column is after the certificate's path.
            format!(
                "edge.yaml:6:{}: listeners[0].tls.certificates[0].key: /dev/zero is not a regular file",
                30 + big.display().to_string().len() + ", key: ".len()
            ),
        ]
    );
}

#[test]
fn a_file_over_the_size_bound_is_refused() {
    let yaml = format!("{HEAD}# {}\n", "x".repeat(4 << 20));
    assert_eq!(
        errors(&yaml),
        ["edge.yaml: the file is larger than 4MiB: a configuration must be at most 4MiB"]
    );
}

#[test]
fn bounds_render_as_the_yaml_writes_them() {
    assert_eq!(bounds::show_duration(Duration::from_secs(3600)), "1h");
    assert_eq!(bounds::show_duration(Duration::from_secs(300)), "5m");
    assert_eq!(bounds::show_duration(Duration::from_millis(100)), "100ms");
    assert_eq!(bounds::show_size(64 << 30), "64GiB");
    assert_eq!(bounds::show_size(1 << 20), "1MiB");
    assert_eq!(bounds::show_size(1000), "1000 bytes");
}

#[test]
fn routes_that_no_normalised_request_can_match_are_refused() {
    let yaml = "\
listeners:
  - name: web
    address: '127.0.0.1:8080'
    pool: app
    encoded_slashes: sometimes
    routes:
      - { match: { path: { prefix: /a/../admin } }, respond: { status: 403 } }
      - { match: { path: { exact: /%7euser } }, respond: { status: 403 } }
      - { match: { path: { prefix: /admin;x } }, respond: { status: 403 } }
      - { match: { hosts: [admin.example.] }, respond: { status: 403 } }
      - { match: { hosts: ['*.a..b'] }, respond: { status: 403 } }
      - { match: { path: { prefix: /ok/path }, hosts: [ok.example, '*.ok.example'] }, respond: { status: 200 } }
pools:
  - name: app
    backends: [{ address: '10.0.0.1:80' }]
";
    let e = errors(yaml);
    let has = |needle: &str| e.iter().any(|m| m.contains(needle));
    assert!(
        has("encoded_slashes is \"sometimes\": expected reject or keep"),
        "{e:#?}"
    );
    assert!(
        has("path \"/a/../admin\" can never match: requests are matched as \"/admin\""),
        "{e:#?}"
    );
    assert!(
        has("path \"/%7euser\" can never match: requests are matched as \"/~user\""),
        "{e:#?}"
    );
    assert!(
        has("path \"/admin;x\" can never match: requests are matched as \"/admin\""),
        "{e:#?}"
    );
    assert!(has("host \"admin.example.\" can never match"), "{e:#?}");
    assert!(has("host \"*.a..b\" can never match"), "{e:#?}");
    assert_eq!(e.len(), 6, "only the bad ones: {e:#?}");
}
