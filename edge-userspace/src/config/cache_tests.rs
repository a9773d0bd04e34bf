//! The `cache:` and `compression:` sections: defaults, the model they
//! become, and the exact messages of every mistake.

use super::tests::{FILE, errors};
use super::*;
use std::{path::Path, time::Duration};

const POOLS: &str = "pools:\n  - {name: app, backends: [{address: '10.0.0.2:80'}]}\n";

#[test]
fn a_full_cache_section_becomes_the_model() {
    let yaml = format!(
        "\
cache:
  max_size: 64MiB
  max_object_size: 1MiB
  lock_timeout: 500ms
  status_header: X-Edge-Cache
  purge_allow: [127.0.0.1, '::1/128', 10.0.0.0/8]
listeners:
  - name: web
    address: 0.0.0.0:8080
    pool: app
    cache:
      heuristic_freshness: true
      default_ttl: 2m
      stale_while_revalidate: 10s
      stale_if_error: 1h
      targeted_cache_control: Edge-Cache-Control
    compression:
      algorithms: [gzip, br]
      content_types: [text/html, Application/JSON]
      min_size: 1KiB
      level: 5
  - name: plain
    address: 0.0.0.0:8081
    pool: app
    compression: off
{POOLS}"
    );
    let c = parse(&yaml, Path::new(FILE)).unwrap();
    let cache = c.cache.unwrap();
    assert_eq!(cache.max_size, 64 << 20);
    assert_eq!(cache.max_object_size, 1 << 20);
    assert_eq!(cache.lock_timeout, Duration::from_millis(500));
    assert_eq!(cache.status_header.unwrap().as_str(), "x-edge-cache");
    assert_eq!(cache.purge_allow.len(), 3);
    let policy = c.listeners[0].cache.clone().unwrap();
    assert_eq!(
        policy,
        CachePolicy {
            enabled: true,
            heuristic_freshness: true,
            default_ttl: Duration::from_secs(120),
            stale_while_revalidate: Duration::from_secs(10),
            stale_if_error: Duration::from_secs(3600),
            targeted_cache_control: Some(http::HeaderName::from_static("edge-cache-control")),
        }
    );
    let comp = c.listeners[0].compression.clone().unwrap();
    assert_eq!(
        comp.algorithms,
        vec![(Encoding::Gzip, 5), (Encoding::Brotli, 5)]
    );
    assert_eq!(comp.content_types, vec!["text/html", "application/json"]);
    assert_eq!(comp.min_size, 1024);
    assert_eq!(c.listeners[1].cache, None);
    assert_eq!(c.listeners[1].compression, None);
}

#[test]
fn defaults() {
    let yaml = format!(
        "cache: {{}}\nlisteners:\n  - {{name: web, address: '0.0.0.0:80', pool: app, cache: {{}}, compression: {{}}}}\n{POOLS}"
    );
    let c = parse(&yaml, Path::new(FILE)).unwrap();
    let cache = c.cache.unwrap();
    assert_eq!(cache.max_size, 256 << 20);
    assert_eq!(cache.max_object_size, 8 << 20);
    assert_eq!(cache.lock_timeout, Duration::from_secs(3));
    assert_eq!(cache.status_header.unwrap().as_str(), "x-cache-status");
    assert!(cache.purge_allow.is_empty());
    assert_eq!(c.listeners[0].cache, Some(CachePolicy::default()));
    assert_eq!(
        CachePolicy::default()
            .targeted_cache_control
            .as_ref()
            .map(|h| h.as_str()),
        Some("cdn-cache-control"),
        "CDN-Cache-Control is obeyed unless configured otherwise"
    );
    let off = format!(
        "cache: {{}}\nlisteners:\n  - {{name: web, address: '0.0.0.0:80', pool: app, cache: {{targeted_cache_control: ''}}}}\n{POOLS}"
    );
    let c2 = parse(&off, Path::new(FILE)).unwrap();
    assert_eq!(
        c2.listeners[0]
            .cache
            .clone()
            .unwrap()
            .targeted_cache_control,
        None
    );
    let comp = c.listeners[0].compression.clone().unwrap();
    assert_eq!(
        comp.algorithms,
        vec![
            (Encoding::Zstd, 3),
            (Encoding::Brotli, 4),
            (Encoding::Gzip, 6)
        ]
    );
    assert_eq!(comp.min_size, 256);
    assert!(comp.content_types.contains(&"text/*".to_string()));

    let off = "cache:\n  status_header: ''\n  max_size: 1MiB\nlisteners:\n  - {name: web, address: '0.0.0.0:80', pool: app}\n";
    let c = parse(&format!("{off}{POOLS}"), Path::new(FILE)).unwrap();
    let cache = c.cache.unwrap();
    assert_eq!(cache.status_header, None);
    assert_eq!(
        cache.max_object_size,
        1 << 20,
        "max_object_size defaults to at most max_size"
    );
}

#[test]
fn bad_cache_section() {
    let yaml = format!(
        "\
cache:
  max_size: 0
  max_object_size: 2GiB
  lock_timeout: 0s
  status_header: 'X Cache'
  purge_allow: [10.0.0.1/8, nowhere]
listeners:
  - name: web
    address: 0.0.0.0:80
    pool: app
{POOLS}"
    );
    assert_eq!(
        errors(&yaml),
        [
            "edge.yaml:2:13: cache.max_size: max_size must be at least 1 byte",
            "edge.yaml:3:20: cache.max_object_size: max_object_size (2147483648 bytes) exceeds max_size (268435456 bytes)",
            "edge.yaml:4:17: cache.lock_timeout: lock_timeout must be longer than 0",
            "edge.yaml:5:18: cache.status_header: bad header name \"X Cache\": letters, digits and !#$%&'*+-.^_`|~ only, or \"\" to disable",
            "edge.yaml:6:17: cache.purge_allow[0]: CIDR \"10.0.0.1/8\" has host bits set: did you mean 10.0.0.0/8?",
            "edge.yaml:6:29: cache.purge_allow[1]: bad CIDR \"nowhere\": expected an IPv4 or IPv6 prefix such as 192.0.2.0/24 or 2001:db8::/32",
        ]
    );
}

#[test]
fn bad_policy() {
    let yaml = format!(
        "\
listeners:
  - name: web
    address: 0.0.0.0:80
    pool: app
    cache:
      default_ttl: 5s
      stale_if_error: soon
  - name: alt
    address: 0.0.0.0:81
    pool: app
    cache:
      enabled: false
      heuristic_freshness: true
      default_ttl: 0s
      targeted_cache_control: 'CDN Cache Control'
  - name: third
    address: 0.0.0.0:82
    pool: app
    cache:
      enabled: false
      targeted_cache_control: Cache-Control
{POOLS}"
    );
    assert_eq!(
        errors(&yaml),
        [
            "edge.yaml:6:18: listeners[0].cache: caching is enabled here but there is no top-level `cache:` section to store responses in",
            "edge.yaml:6:20: listeners[0].cache.default_ttl: default_ttl only applies with heuristic_freshness: true",
            "edge.yaml:7:23: listeners[0].cache.stale_if_error: bad duration \"soon\": expected a number with a unit, such as 250ms, 5s, 2m or 1h",
            "edge.yaml:14:20: listeners[1].cache.default_ttl: default_ttl must be longer than 0 (or turn heuristic_freshness off)",
            "edge.yaml:15:31: listeners[1].cache.targeted_cache_control: bad header name \"CDN Cache Control\": letters, digits and !#$%&'*+-.^_`|~ only, or \"\" to obey Cache-Control only",
            "edge.yaml:21:31: listeners[2].cache.targeted_cache_control: targeted_cache_control names a field other than Cache-Control (e.g. CDN-Cache-Control), or \"\" to obey Cache-Control only",
        ]
    );
    assert_eq!(
        errors(&format!(
            "listeners:\n  - {{name: web, address: '0.0.0.0:80', pool: app, cache: {{ttl: 5s}}}}\n{POOLS}"
        )),
        [
            "edge.yaml:2:59: listeners[0].cache: unknown field `ttl`, expected one of `enabled`, `heuristic_freshness`, `default_ttl`, `stale_while_revalidate`, `stale_if_error`, `targeted_cache_control`"
        ]
    );
}

#[test]
fn bad_compression() {
    let yaml = format!(
        "\
listeners:
  - name: web
    address: 0.0.0.0:80
    pool: app
    compression:
      algorithms: [gzip, br, gzip]
      content_types: [text/html, html, 'text/html; charset=utf-8']
      min_size: lots
      level: 10
{POOLS}"
    );
    assert_eq!(
        errors(&yaml),
        [
            "edge.yaml:6:30: listeners[0].compression.algorithms[2]: algorithm gzip is listed twice (first defined at line 6)",
            "edge.yaml:7:34: listeners[0].compression.content_types[1]: bad content type \"html\": expected type/subtype, such as text/html or text/*",
            "edge.yaml:7:40: listeners[0].compression.content_types[2]: bad content type \"text/html; charset=utf-8\": expected type/subtype, such as text/html or text/*",
            "edge.yaml:8:17: listeners[0].compression.min_size: bad size \"lots\": expected bytes, optionally with a unit, such as 512, 64KiB, 10MiB or 1GiB",
            "edge.yaml:9:14: listeners[0].compression.level: level 10 is out of range for gzip (1..=9)",
        ]
    );
    assert_eq!(
        errors(&format!(
            "listeners:\n  - {{name: web, address: '0.0.0.0:80', pool: app, compression: {{algorithms: [lzma]}}}}\n{POOLS}"
        )),
        [
            "edge.yaml:2:78: listeners[0].compression.algorithms[0]: unknown variant `lzma`, expected one of `zstd`, `br`, `gzip`"
        ]
    );
    assert_eq!(
        errors(&format!(
            "listeners:\n  - {{name: web, address: '0.0.0.0:80', pool: app, compression: sometimes}}\n{POOLS}"
        )),
        [
            "edge.yaml:2:64: listeners[0].compression: invalid value: string \"sometimes\", expected `off` or a map of compression settings"
        ]
    );
    assert_eq!(
        errors(&format!(
            "listeners:\n  - {{name: web, address: '0.0.0.0:80', pool: app, compression: {{algorithms: []}}}}\n{POOLS}"
        )),
        [
            "edge.yaml:2:77: listeners[0].compression.algorithms: no algorithms: list some of zstd, br, gzip (or write `compression: off`)"
        ]
    );
}
