//! What a reload cannot change in place: the process's sockets and threads
//! and the objects built once around them. A reload in place refuses a
//! file that changes any of them (the running configuration stays), each
//! change named with where it is in the file; `edge reload` then applies
//! it by a graceful upgrade.

use crate::config::{Config, Listener};

/// One setting that differs from the running configuration and cannot be
/// changed in place: its path in the file and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fixed {
    /// The path of the value (`listeners[1].address`).
    pub path: String,
    /// What changed and what applies it.
    pub message: String,
}

const UPGRADE: &str =
    "`edge reload` applies it by a graceful upgrade (a new process takes the sockets over)";

/// The settings `next` changes that only a restart applies.
pub fn fixed_changes(running: &Config, next: &Config) -> Vec<Fixed> {
    let mut out = Vec::new();
    let mut fixed = |path: String, what: &str| {
        out.push(Fixed {
            path,
            message: format!("{what} cannot change while edge runs: {UPGRADE}"),
        })
    };
    if running.server != next.server {
        fixed(
            "server".into(),
            "server settings (threads, grace period, keep-alive pool)",
        );
    }
    if running.admin.as_ref().map(|a| a.address) != next.admin.as_ref().map(|a| a.address)
        || running.admin.is_some() != next.admin.is_some()
    {
        fixed("admin".into(), "the admin endpoint's address");
    } else if running.admin != next.admin {
        fixed("admin".into(), "admin.allow and admin.token");
    }
    if running.access_log != next.access_log {
        fixed("access_log".into(), "the access log's destination");
    }
    // The announcer is started with the process; within the section,
    // every setting is taken by a reload (moving BIRD's file withdraws
    // through the old one first).
    if running.bgp.is_some() != next.bgp.is_some() {
        fixed("bgp".into(), "adding or removing the bgp section");
    }
    if running.cache != next.cache {
        fixed("cache".into(), "the cache section");
    }
    if running.xdp.interfaces != next.xdp.interfaces {
        fixed("xdp.interfaces".into(), "the set of XDP interfaces");
    }
    if running.xdp.bpffs != next.xdp.bpffs {
        fixed("xdp.bpffs".into(), "where the maps are pinned");
    }
    if running.l4.conntrack_capacity != next.l4.conntrack_capacity {
        fixed(
            "l4.conntrack_capacity".into(),
            "the size of the connection table",
        );
    }
    let names = |c: &Config| {
        c.listeners
            .iter()
            .map(|l| l.name.clone())
            .collect::<Vec<_>>()
    };
    for (i, l) in next.listeners.iter().enumerate() {
        let path = format!("listeners[{i}]");
        match running.listeners.iter().find(|r| r.name == l.name) {
            None => fixed(
                format!("{path}.name"),
                &format!("a new listener ({})", l.name),
            ),
            Some(r) => listener_changes(r, l, &path, &mut fixed),
        }
    }
    for r in &running.listeners {
        if !next.listeners.iter().any(|l| l.name == r.name) {
            fixed(
                "listeners".into(),
                &format!(
                    "removing listener {} (listeners now: {})",
                    r.name,
                    names(next).join(", ")
                ),
            );
        }
    }
    out
}

/// The socket-level settings of one listener: its address, TLS on or off
/// and its minimum version, HTTP/2, and its connection limits, which the
/// listening service is built with.
fn listener_changes(r: &Listener, l: &Listener, path: &str, fixed: &mut impl FnMut(String, &str)) {
    if r.address != l.address {
        fixed(format!("{path}.address"), "a listener's address");
    }
    let (rt, lt) = (&r.transport, &l.transport);
    if rt.tls.is_some() != lt.tls.is_some() {
        fixed(format!("{path}.tls"), "turning TLS on or off");
    } else if let (Some(a), Some(b)) = (&rt.tls, &lt.tls)
        && a.min_version != b.min_version
    {
        fixed(format!("{path}.tls.min_version"), "the minimum TLS version");
    }
    if rt.http2 != lt.http2 {
        fixed(format!("{path}.http2"), "HTTP/2 on or off");
    }
    if rt.limits != lt.limits {
        fixed(format!("{path}.limits"), "a listener's limits");
    }
    // A stream listener's pools, SNI routes and PROXY header change live;
    // what kind of service it is does not.
    if r.stream.as_ref().map(|s| s.mode) != l.stream.as_ref().map(|s| s.mode) {
        fixed(format!("{path}.mode"), "a listener's mode");
    }
    if r.proxy_accept != l.proxy_accept {
        fixed(
            format!("{path}.proxy_protocol.accept_from"),
            "the peers a listener reads PROXY headers from",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use std::path::Path;

    fn config(bgp: &str) -> Config {
        let text = format!(
            "listeners: [{{name: a, address: 127.0.0.1:8080, pool: p}}]\n\
             pools: [{{name: p, backends: [{{address: 127.0.0.1:9000}}]}}]\n{bgp}"
        );
        parse(&text, Path::new("edge.yaml")).unwrap()
    }

    fn bgp(config: &str, hold: &str) -> String {
        format!(
            "bgp:\n  router_id: 10.0.0.11\n  local_as: 65001\n  \
             neighbors: [{{address: 10.0.0.1, remote_as: 65000}}]\n  hold_time: {hold}\n  \
             bird: {{config: {config}}}\n"
        )
    }

    fn paths(a: &Config, b: &Config) -> Vec<String> {
        fixed_changes(a, b).into_iter().map(|f| f.path).collect()
    }

    #[test]
    fn bgp_needs_a_restart_only_to_come_or_go() {
        let none = config("");
        let one = config(&bgp("/var/lib/edge/bird.conf", "9s"));
        assert_eq!(paths(&none, &one), ["bgp"]);
        assert_eq!(paths(&one, &none), ["bgp"]);
        // Timers (and neighbours, communities...) are taken by a reload.
        let timers = config(&bgp("/var/lib/edge/bird.conf", "30s"));
        assert!(paths(&one, &timers).is_empty());
        // So is moving BIRD's file (the announcer withdraws through the
        // old one).
        let moved = config(&bgp("/var/lib/edge/other.conf", "9s"));
        assert!(paths(&one, &moved).is_empty());
    }
}
