//! The `l4:` section: virtual services balanced in XDP with Maglev and
//! forwarded to their backends by IPIP / IP6IP6 (direct server return).
//!
//! This module holds the section's surface structs (as written), its model
//! (as the rest of edge reads it) and the validation between them.

use super::{units::Quantity, validate::Validator};
use edge_common::{
    DEFAULT_CONNTRACK_CAPACITY, DEFAULT_RING_SIZE, MAX_L4_SERVICES, MAX_REALS, MAX_RING_SIZE,
    MIN_MTU,
};
use serde::Deserialize;
use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

/// Largest per-CPU conntrack table accepted.
pub const MAX_CONNTRACK_CAPACITY: u32 = 16 << 20;
/// Smallest Maglev table accepted.
pub const MIN_RING_SIZE: u32 = 7;
/// Largest new-flow rate and burst of the SYN budget (the kernel's bound).
pub const MAX_SYN_BUDGET: u32 = 10_000_000;
/// Default health-check interval.
pub const DEFAULT_HC_INTERVAL: Duration = Duration::from_secs(1);
/// Default health-check timeout.
pub const DEFAULT_HC_TIMEOUT: Duration = Duration::from_millis(500);
/// Default rise / fall thresholds.
pub const DEFAULT_HC_THRESHOLD: u32 = 2;
/// Largest `l4.forwarding.mtu` accepted (an IP packet's length field).
pub const MAX_MTU: u32 = 65_535;
/// Default `l4.second_chance`: how long after a table change the previous
/// table still steers TCP packets that have no conntrack entry. A minute
/// covers an ECMP reshuffle that follows the change (a host withdrawn or
/// added) and the retransmissions of flows caught in it.
pub const DEFAULT_SECOND_CHANCE: Duration = Duration::from_secs(60);
/// Largest `l4.second_chance` accepted: beyond an hour, the previous table
/// says more about flows that have since ended than about live ones.
pub const MAX_SECOND_CHANCE: Duration = Duration::from_secs(3600);

// ---------------------------------------------------------------- surface

/// `l4:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Surface {
    /// How packets reach the backends.
    #[serde(default)]
    pub forwarding: Option<ForwardingSurface>,
    /// Per-CPU conntrack entries.
    #[serde(default)]
    pub conntrack_capacity: Option<u32>,
    /// Per-source new-flow budget; absent = off.
    #[serde(default)]
    pub syn_budget: Option<SynBudgetSurface>,
    /// How long after a table change its previous table still steers TCP
    /// packets with no conntrack entry; `0s` = off.
    #[serde(default)]
    pub second_chance: Option<Quantity>,
    /// The virtual services.
    #[serde(default)]
    pub services: Vec<ServiceSurface>,
}

/// `l4.forwarding`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardingSurface {
    /// Outer source of IPIP packets.
    #[serde(default)]
    pub source_v4: Option<String>,
    /// Outer source of IP6IP6 packets.
    #[serde(default)]
    pub source_v6: Option<String>,
    /// A fixed next-hop MAC for every real.
    #[serde(default)]
    pub next_hop_mac: Option<String>,
    /// A cap on the egress MTU (default: the interfaces' own).
    #[serde(default)]
    pub mtu: Option<u32>,
}

/// `l4.syn_budget`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SynBudgetSurface {
    /// New flows per second per source address.
    pub rate: u32,
    /// Bucket depth.
    pub burst: u32,
}

/// `l4.services[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSurface {
    /// Unique name, used in metrics.
    pub name: String,
    /// The virtual IP.
    pub vip: String,
    /// The service port.
    pub port: u16,
    /// `tcp` or `udp`.
    #[serde(default)]
    pub protocol: L4Protocol,
    /// Maglev table size, a prime.
    #[serde(default)]
    pub maglev_table_size: Option<u32>,
    /// What the Maglev hash covers.
    #[serde(default)]
    pub hash: L4Hash,
    /// The reals.
    pub backends: Vec<BackendSurface>,
    /// Optional health check.
    #[serde(default)]
    pub health_check: Option<HealthCheckSurface>,
}

/// `l4.services[].backends[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSurface {
    /// The real's address (no port: DSR keeps the VIP's port).
    pub address: String,
    /// Relative share of new flows; 0 drains.
    #[serde(default)]
    pub weight: Option<u32>,
}

/// `l4.services[].health_check`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckSurface {
    /// `tcp` or `http`.
    #[serde(rename = "type")]
    pub kind: HealthCheckKind,
    /// Port to check; default the service port.
    #[serde(default)]
    pub port: Option<u16>,
    /// HTTP path (http only).
    #[serde(default)]
    pub path: Option<String>,
    /// Expected HTTP status (http only).
    #[serde(default)]
    pub expected_status: Option<u16>,
    /// Time between checks.
    #[serde(default)]
    pub interval: Option<Quantity>,
    /// Time a check may take.
    #[serde(default)]
    pub timeout: Option<Quantity>,
    /// Consecutive successes that bring a backend up.
    #[serde(default)]
    pub rise: Option<u32>,
    /// Consecutive failures that take it down.
    #[serde(default)]
    pub fall: Option<u32>,
}

/// Transport of an L4 service.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum L4Protocol {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl L4Protocol {
    /// The name used in the YAML file.
    pub fn as_str(self) -> &'static str {
        match self {
            L4Protocol::Tcp => "tcp",
            L4Protocol::Udp => "udp",
        }
    }

    /// The IANA protocol number.
    pub fn number(self) -> u8 {
        match self {
            L4Protocol::Tcp => edge_common::IPPROTO_TCP,
            L4Protocol::Udp => edge_common::IPPROTO_UDP,
        }
    }
}

/// What the Maglev hash covers.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum L4Hash {
    /// Source and destination address and port, protocol.
    #[default]
    FiveTuple,
    /// The source address only: every flow of a client goes to one backend.
    SourceIp,
}

/// Health-check kinds.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HealthCheckKind {
    /// A TCP connect.
    Tcp,
    /// An HTTP/1.1 GET.
    Http,
}

// ------------------------------------------------------------------ model

/// The validated `l4:` section.
#[derive(Clone, Debug, PartialEq)]
pub struct L4Config {
    /// Outer source of IPIP packets.
    pub source_v4: Option<Ipv4Addr>,
    /// Outer source of IP6IP6 packets.
    pub source_v6: Option<Ipv6Addr>,
    /// A fixed next-hop MAC for every real, instead of the neighbour table.
    pub next_hop_mac: Option<[u8; 6]>,
    /// A cap on the MTU encapsulated packets are checked against, for a
    /// path to the backends narrower than edge's interfaces; the smallest
    /// interface MTU applies below it (and alone when this is `None`).
    pub mtu: Option<u32>,
    /// Per-CPU conntrack entries.
    pub conntrack_capacity: u32,
    /// The SYN budget, if on.
    pub syn_budget: Option<SynBudget>,
    /// How long after a service's table changes its previous table still
    /// sends TCP packets other than a SYN that have no conntrack entry
    /// (flows another edge host behind the same ECMP router established)
    /// to the previous backend, when that is up; zero: never.
    pub second_chance: Duration,
    /// The services, in file order (the index is the kernel's service id).
    pub services: Vec<L4Service>,
}

impl Default for L4Config {
    fn default() -> Self {
        Self {
            source_v4: None,
            source_v6: None,
            next_hop_mac: None,
            mtu: None,
            conntrack_capacity: DEFAULT_CONNTRACK_CAPACITY,
            syn_budget: None,
            second_chance: DEFAULT_SECOND_CHANCE,
            services: Vec::new(),
        }
    }
}

/// The per-source new-flow budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynBudget {
    /// New flows per second.
    pub rate: u32,
    /// Bucket depth.
    pub burst: u32,
}

/// One virtual service.
#[derive(Clone, Debug, PartialEq)]
pub struct L4Service {
    /// Unique name.
    pub name: String,
    /// The VIP.
    pub vip: IpAddr,
    /// The port.
    pub port: u16,
    /// The transport.
    pub protocol: L4Protocol,
    /// Maglev table size (prime).
    pub table_size: u32,
    /// Hash mode.
    pub hash: L4Hash,
    /// The reals (same family as the VIP).
    pub backends: Vec<L4Backend>,
    /// The health check, if any.
    pub health_check: Option<HealthCheck>,
}

/// One real of a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L4Backend {
    /// Its address.
    pub address: IpAddr,
    /// Its weight; 0 drains.
    pub weight: u32,
}

/// How a service's backends are checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// TCP connect or HTTP GET.
    pub kind: HealthCheckKind,
    /// Port to check.
    pub port: u16,
    /// HTTP path (http only).
    pub path: String,
    /// Expected HTTP status (http only).
    pub expected_status: u16,
    /// Time between checks.
    pub interval: Duration,
    /// Time a check may take.
    pub timeout: Duration,
    /// Successes to come up.
    pub rise: u32,
    /// Failures to go down.
    pub fall: u32,
}

// ------------------------------------------------------------- validation

/// Checks the `l4:` section; `has_interfaces` says whether `xdp.interfaces`
/// names any interface for the program to run on.
pub(super) fn validate(
    v: &mut Validator<'_>,
    l4: Option<&Surface>,
    has_interfaces: bool,
) -> L4Config {
    let Some(l4) = l4 else {
        return L4Config::default();
    };
    let mut out = L4Config::default();
    if let Some(f) = &l4.forwarding {
        out.source_v4 = f.source_v4.as_ref().and_then(|s| {
            address(v, "l4.forwarding.source_v4".into(), s).and_then(|a| match a {
                IpAddr::V4(a) => Some(a),
                IpAddr::V6(_) => {
                    v.error(
                        "l4.forwarding.source_v4".into(),
                        format!("source_v4 must be an IPv4 address, not {a}"),
                    );
                    None
                }
            })
        });
        out.source_v6 = f.source_v6.as_ref().and_then(|s| {
            address(v, "l4.forwarding.source_v6".into(), s).and_then(|a| match a {
                IpAddr::V6(a) => Some(a),
                IpAddr::V4(_) => {
                    v.error(
                        "l4.forwarding.source_v6".into(),
                        format!("source_v6 must be an IPv6 address, not {a}"),
                    );
                    None
                }
            })
        });
        if let Some(mac) = &f.next_hop_mac {
            match parse_mac(mac) {
                Some(m) => out.next_hop_mac = Some(m),
                None => v.error(
                    "l4.forwarding.next_hop_mac".into(),
                    format!(
                        "bad MAC address {mac:?}: expected six hex pairs such as 02:00:00:00:00:01"
                    ),
                ),
            }
        }
        if let Some(mtu) = f.mtu {
            if (MIN_MTU..=MAX_MTU).contains(&mtu) {
                out.mtu = Some(mtu);
            } else {
                v.error(
                    "l4.forwarding.mtu".into(),
                    format!(
                        "mtu must be {MIN_MTU} to {MAX_MTU}, not {mtu} (IPv4 hosts must accept \
                         {MIN_MTU}-byte packets; edge's ICMP replies quote up to 248 bytes)"
                    ),
                );
            }
        }
    }
    if let Some(c) = l4.conntrack_capacity {
        if c == 0 || c > MAX_CONNTRACK_CAPACITY {
            v.error(
                "l4.conntrack_capacity".into(),
                format!("conntrack_capacity must be 1 to {MAX_CONNTRACK_CAPACITY}, not {c}"),
            );
        } else {
            out.conntrack_capacity = c;
        }
    }
    if let Some(b) = &l4.syn_budget {
        let mut ok = true;
        for (what, n) in [("rate", b.rate), ("burst", b.burst)] {
            if n == 0 || n > MAX_SYN_BUDGET {
                v.error(
                    format!("l4.syn_budget.{what}"),
                    format!("syn_budget.{what} must be 1 to {MAX_SYN_BUDGET}, not {n}"),
                );
                ok = false;
            }
        }
        if ok {
            out.syn_budget = Some(SynBudget {
                rate: b.rate,
                burst: b.burst,
            });
        }
    }
    if let Some(q) = &l4.second_chance
        && let Some(d) = v.duration("l4.second_chance".into(), q)
    {
        if d > MAX_SECOND_CHANCE {
            v.error(
                "l4.second_chance".into(),
                format!(
                    "second_chance must be 0s (off) to {}s, not {}",
                    MAX_SECOND_CHANCE.as_secs(),
                    q.0.trim()
                ),
            );
        } else {
            out.second_chance = d;
        }
    }
    if l4.services.len() > MAX_L4_SERVICES as usize {
        v.error(
            "l4.services".into(),
            format!(
                "{} services configured; the XDP program holds at most {MAX_L4_SERVICES}",
                l4.services.len()
            ),
        );
    }
    if !l4.services.is_empty() && !has_interfaces {
        v.error(
            "l4.services".into(),
            "L4 services need the XDP program: list its interfaces under xdp.interfaces",
        );
    }
    let mut names = HashMap::new();
    let mut vips = HashMap::new();
    let mut need_v4: Option<String> = None;
    let mut need_v6: Option<String> = None;
    let mut reals = 0usize;
    for (i, s) in l4.services.iter().enumerate() {
        if let Some(svc) = service(v, i, s, &mut names, &mut vips) {
            reals += svc.backends.len();
            match svc.vip {
                IpAddr::V4(_) => {
                    need_v4.get_or_insert_with(|| svc.name.clone());
                }
                IpAddr::V6(_) => {
                    need_v6.get_or_insert_with(|| svc.name.clone());
                }
            }
            out.services.push(svc);
        }
    }
    if reals >= MAX_REALS as usize {
        v.error(
            "l4.services".into(),
            format!(
                "{reals} backends over all services; the XDP program holds at most {}",
                MAX_REALS - 1
            ),
        );
    }
    let fpath = if l4.forwarding.is_some() {
        "l4.forwarding"
    } else {
        "l4"
    };
    if let Some(name) = need_v4
        && out.source_v4.is_none()
        && l4.forwarding.as_ref().is_none_or(|f| f.source_v4.is_none())
    {
        v.error(
            fpath.into(),
            format!(
                "forwarding.source_v4 is required: service {name:?} has IPv4 backends, and IPIP \
                 packets need an outer source address (one of this host's)"
            ),
        );
    }
    if let Some(name) = need_v6
        && out.source_v6.is_none()
        && l4.forwarding.as_ref().is_none_or(|f| f.source_v6.is_none())
    {
        v.error(
            fpath.into(),
            format!(
                "forwarding.source_v6 is required: service {name:?} has IPv6 backends, and \
                 IP6IP6 packets need an outer source address (one of this host's)"
            ),
        );
    }
    out
}

fn service(
    v: &mut Validator<'_>,
    i: usize,
    s: &ServiceSurface,
    names: &mut HashMap<String, String>,
    vips: &mut HashMap<(IpAddr, u16, L4Protocol), String>,
) -> Option<L4Service> {
    let path = format!("l4.services[{i}]");
    if s.name.is_empty() {
        v.error(format!("{path}.name"), "service name is empty");
    }
    v.unique(names, s.name.clone(), format!("{path}.name"), || {
        format!("L4 service {:?} is defined twice", s.name)
    });
    if s.port == 0 {
        v.error(format!("{path}.port"), "port must be 1 to 65535");
    }
    let vip = address(v, format!("{path}.vip"), &s.vip);
    if let Some(vip) = vip {
        v.unique(
            vips,
            (vip, s.port, s.protocol),
            format!("{path}.vip"),
            || {
                format!(
                    "VIP {} port {}/{} is already a service",
                    vip,
                    s.port,
                    s.protocol.as_str()
                )
            },
        );
    }
    let table_size = s.maglev_table_size.unwrap_or(DEFAULT_RING_SIZE);
    if s.maglev_table_size.is_some() {
        table_check(v, format!("{path}.maglev_table_size"), table_size);
    }
    if s.backends.is_empty() {
        v.error(
            format!("{path}.backends"),
            format!("service {:?} has no backends", s.name),
        );
    }
    let mut seen = HashMap::new();
    let mut backends = Vec::new();
    let mut total_weight: u64 = 0;
    for (j, b) in s.backends.iter().enumerate() {
        let bpath = format!("{path}.backends[{j}]");
        let Some(addr) = address(v, format!("{bpath}.address"), &b.address) else {
            continue;
        };
        v.unique(&mut seen, addr, format!("{bpath}.address"), || {
            format!("backend {addr} is listed twice in service {:?}", s.name)
        });
        if let Some(vip) = vip {
            match (vip, addr) {
                (IpAddr::V4(_), IpAddr::V6(_)) => v.error(
                    format!("{bpath}.address"),
                    format!(
                        "IPv4 VIP {vip} with IPv6 backend {addr}: IPv4-in-IPv6 forwarding is not \
                         supported yet; give this service IPv4 backends"
                    ),
                ),
                (IpAddr::V6(_), IpAddr::V4(_)) => v.error(
                    format!("{bpath}.address"),
                    format!(
                        "IPv6 VIP {vip} with IPv4 backend {addr}: IPv6-in-IPv4 forwarding is not \
                         supported; give this service IPv6 backends"
                    ),
                ),
                _ => {}
            }
        }
        let weight = b.weight.unwrap_or(1);
        if u64::from(weight) > u64::from(table_size) {
            v.error(
                format!("{bpath}.weight"),
                format!("weight {weight} is larger than the Maglev table ({table_size} slots)"),
            );
        }
        total_weight += u64::from(weight);
        backends.push(L4Backend {
            address: addr,
            weight,
        });
    }
    if !backends.is_empty() && total_weight == 0 {
        v.error(
            format!("{path}.backends"),
            format!(
                "every backend of service {:?} has weight 0: at least one must take new flows \
                 (weight 0 drains a backend)",
                s.name
            ),
        );
    }
    if backends.len() as u64 >= u64::from(table_size) {
        v.error(
            format!("{path}.backends"),
            format!(
                "{} backends do not fit a Maglev table of {table_size} slots: use a larger \
                 maglev_table_size",
                backends.len()
            ),
        );
    }
    let health_check = s
        .health_check
        .as_ref()
        .and_then(|h| health_check(v, &format!("{path}.health_check"), h, s.port));
    Some(L4Service {
        name: s.name.clone(),
        vip: vip?,
        port: s.port,
        protocol: s.protocol,
        table_size,
        hash: s.hash,
        backends,
        health_check,
    })
}

fn table_check(v: &mut Validator<'_>, path: String, m: u32) {
    if !(MIN_RING_SIZE..=MAX_RING_SIZE).contains(&m) {
        v.error(
            path,
            format!(
                "maglev_table_size must be a prime from {MIN_RING_SIZE} to {MAX_RING_SIZE}, not {m}"
            ),
        );
    } else if !is_prime(m) {
        let below = (MIN_RING_SIZE..m).rev().find(|&n| is_prime(n));
        let above = (m..=MAX_RING_SIZE).find(|&n| is_prime(n));
        let near: Vec<String> = below
            .into_iter()
            .chain(above)
            .map(|n| n.to_string())
            .collect();
        v.error(
            path,
            format!(
                "maglev_table_size {m} is not prime (Maglev needs a prime): nearest primes {}",
                near.join(" and ")
            ),
        );
    }
}

fn health_check(
    v: &mut Validator<'_>,
    path: &str,
    h: &HealthCheckSurface,
    service_port: u16,
) -> Option<HealthCheck> {
    let mut ok = true;
    if h.kind == HealthCheckKind::Tcp {
        for (field, set) in [
            ("path", h.path.is_some()),
            ("expected_status", h.expected_status.is_some()),
        ] {
            if set {
                v.error(
                    format!("{path}.{field}"),
                    format!("{field} only applies to type: http"),
                );
                ok = false;
            }
        }
    }
    let path_value = h.path.clone().unwrap_or_else(|| "/".into());
    if !path_value.starts_with('/') {
        v.error(
            format!("{path}.path"),
            format!("path {path_value:?} must start with '/'"),
        );
        ok = false;
    }
    let expected_status = h.expected_status.unwrap_or(200);
    if !(100..=599).contains(&expected_status) {
        v.error(
            format!("{path}.expected_status"),
            format!("expected_status must be an HTTP status (100 to 599), not {expected_status}"),
        );
        ok = false;
    }
    if h.port == Some(0) {
        v.error(format!("{path}.port"), "port must be 1 to 65535");
        ok = false;
    }
    let interval = match &h.interval {
        Some(q) => v.duration(format!("{path}.interval"), q),
        None => Some(DEFAULT_HC_INTERVAL),
    };
    let timeout = match &h.timeout {
        Some(q) => v.duration(format!("{path}.timeout"), q),
        None => Some(DEFAULT_HC_TIMEOUT),
    };
    for (field, d) in [("interval", interval), ("timeout", timeout)] {
        if d == Some(Duration::ZERO) {
            v.error(
                format!("{path}.{field}"),
                format!("{field} must be longer than zero"),
            );
            ok = false;
        }
    }
    if let (Some(i), Some(t)) = (interval, timeout)
        && t > i
    {
        v.error(
            format!("{path}.timeout"),
            format!(
                "timeout {t:?} is longer than interval {i:?}: checks would overlap; shorten the \
                 timeout"
            ),
        );
        ok = false;
    }
    let rise = h.rise.unwrap_or(DEFAULT_HC_THRESHOLD);
    let fall = h.fall.unwrap_or(DEFAULT_HC_THRESHOLD);
    for (field, n) in [("rise", rise), ("fall", fall)] {
        if n == 0 {
            v.error(
                format!("{path}.{field}"),
                format!("{field} must be at least 1"),
            );
            ok = false;
        }
    }
    if !ok {
        return None;
    }
    Some(HealthCheck {
        kind: h.kind,
        port: h.port.unwrap_or(service_port),
        path: path_value,
        expected_status,
        interval: interval?,
        timeout: timeout?,
        rise,
        fall,
    })
}

/// Parses a bare IP address (no prefix length, no port).
fn address(v: &mut Validator<'_>, path: String, text: &str) -> Option<IpAddr> {
    match text.parse::<IpAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            // Say what was wrong when the text is a prefix or has a port.
            let hint = if parse_cidr_quiet(text) {
                ": give a single address, not a prefix"
            } else if text.contains(':')
                && text
                    .rsplit_once(':')
                    .is_some_and(|(h, _)| h.parse::<IpAddr>().is_ok())
            {
                ": give the address without a port (the service port is kept)"
            } else {
                ""
            };
            v.error(
                path,
                format!("bad address {text:?}: expected an IPv4 or IPv6 address{hint}"),
            );
            None
        }
    }
}

fn parse_cidr_quiet(text: &str) -> bool {
    text.contains('/') && text.parse::<ipnet::IpNet>().is_ok()
}

/// Parses `aa:bb:cc:dd:ee:ff` (or with `-`).
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = text.split([':', '-']);
    for b in out.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// Whether `n` is prime (trial division; n ≤ 65537).
pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2u32;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse, tests::errors};
    use std::path::Path;

    const HEAD: &str = "xdp:\n  interfaces: [{ name: eth0 }]\n";

    #[test]
    fn the_example_file_is_the_model() {
        let text = include_str!("../../../config/l4.yaml");
        let c = parse(text, Path::new("l4.yaml")).unwrap();
        let l4 = &c.l4;
        assert_eq!(l4.source_v4, Some(Ipv4Addr::new(10, 77, 2, 1)));
        assert_eq!(l4.conntrack_capacity, 65536);
        assert_eq!(
            l4.syn_budget,
            Some(SynBudget {
                rate: 1000,
                burst: 2000
            })
        );
        let web = &l4.services[0];
        assert_eq!(web.table_size, 65537);
        assert_eq!(web.backends[0].weight, 2);
        assert_eq!(web.backends[2].weight, 0);
        let hc = web.health_check.as_ref().unwrap();
        assert_eq!(hc.kind, HealthCheckKind::Http);
        assert_eq!(hc.path, "/healthz");
        assert_eq!(hc.timeout, Duration::from_millis(500));
        let dns = &l4.services[1];
        assert_eq!(dns.protocol, L4Protocol::Udp);
        assert_eq!(dns.hash, L4Hash::SourceIp);
        assert_eq!(dns.backends[0].weight, 1);
        assert_eq!(l4.services[2].health_check, None);
    }

    #[test]
    fn every_problem_is_reported_with_its_position() {
        let yaml = format!(
            "{HEAD}l4:
  forwarding:
    next_hop_mac: \"02:00:00:00:00\"
  services:
    - name: web
      vip: 10.77.0.100
      port: 80
      maglev_table_size: 65536
      backends:
        - {{ address: fd00::1 }}
        - {{ address: 10.0.0.2, weight: 0 }}
    - name: web
      vip: 10.77.0.100
      port: 80
      backends:
        - {{ address: 10.0.0.2, weight: 0 }}
"
        );
        assert_eq!(
            errors(&yaml),
            [
                "edge.yaml:5:17: l4.forwarding: forwarding.source_v4 is required: service \"web\" has IPv4 backends, and IPIP packets need an outer source address (one of this host's)",
                "edge.yaml:5:19: l4.forwarding.next_hop_mac: bad MAC address \"02:00:00:00:00\": expected six hex pairs such as 02:00:00:00:00:01",
                "edge.yaml:10:26: l4.services[0].maglev_table_size: maglev_table_size 65536 is not prime (Maglev needs a prime): nearest primes 65521 and 65537",
                "edge.yaml:12:22: l4.services[0].backends[0].address: IPv4 VIP 10.77.0.100 with IPv6 backend fd00::1: IPv4-in-IPv6 forwarding is not supported yet; give this service IPv4 backends",
                "edge.yaml:14:13: l4.services[1].name: L4 service \"web\" is defined twice (first defined at line 7)",
                "edge.yaml:15:12: l4.services[1].vip: VIP 10.77.0.100 port 80/tcp is already a service (first defined at line 8)",
                "edge.yaml:18:9: l4.services[1].backends: every backend of service \"web\" has weight 0: at least one must take new flows (weight 0 drains a backend)",
            ]
        );
    }

    #[test]
    fn addresses_budget_and_health_checks() {
        let yaml = format!(
            "{HEAD}l4:
  forwarding: {{ source_v4: fd00::1, source_v6: fd00::2 }}
  conntrack_capacity: 0
  syn_budget: {{ rate: 0, burst: 10 }}
  services:
    - name: a
      vip: 10.0.0.0/24
      port: 80
      backends: [{{ address: '10.0.0.1:80' }}]
    - name: b
      vip: 10.0.0.2
      port: 80
      maglev_table_size: 5
      backends: [{{ address: 10.0.0.1, weight: 9 }}]
      health_check: {{ type: tcp, path: /x, interval: 1s, timeout: 2s, rise: 0 }}
"
        );
        assert_eq!(
            errors(&yaml),
            [
                "edge.yaml:4:28: l4.forwarding.source_v4: source_v4 must be an IPv4 address, not fd00::1",
                "edge.yaml:5:23: l4.conntrack_capacity: conntrack_capacity must be 1 to 16777216, not 0",
                "edge.yaml:6:23: l4.syn_budget.rate: syn_budget.rate must be 1 to 10000000, not 0",
                "edge.yaml:9:12: l4.services[0].vip: bad address \"10.0.0.0/24\": expected an IPv4 or IPv6 address: give a single address, not a prefix",
                "edge.yaml:11:29: l4.services[0].backends[0].address: bad address \"10.0.0.1:80\": expected an IPv4 or IPv6 address: give the address without a port (the service port is kept)",
                "edge.yaml:15:26: l4.services[1].maglev_table_size: maglev_table_size must be a prime from 7 to 65537, not 5",
                "edge.yaml:16:47: l4.services[1].backends[0].weight: weight 9 is larger than the Maglev table (5 slots)",
                "edge.yaml:17:40: l4.services[1].health_check.path: path only applies to type: http",
                "edge.yaml:17:67: l4.services[1].health_check.timeout: timeout 2s is longer than interval 1s: checks would overlap; shorten the timeout",
                "edge.yaml:17:77: l4.services[1].health_check.rise: rise must be at least 1",
            ]
        );
    }

    #[test]
    fn the_mtu_cap_is_bounded() {
        let cfg = |mtu: u32| {
            format!(
                "{HEAD}l4:
  forwarding: {{ source_v4: 10.0.0.9, mtu: {mtu} }}
  services: [{{ name: a, vip: 10.0.0.2, port: 80, backends: [{{ address: 10.0.0.1 }}] }}]
"
            )
        };
        let c = parse(&cfg(1400), Path::new("edge.yaml")).unwrap();
        assert_eq!(c.l4.mtu, Some(1400));
        assert_eq!(
            errors(&cfg(500)),
            [
                "edge.yaml:4:43: l4.forwarding.mtu: mtu must be 576 to 65535, not 500 (IPv4 hosts must accept 576-byte packets; edge's ICMP replies quote up to 248 bytes)"
            ]
        );
    }

    #[test]
    fn the_second_chance_window_is_a_bounded_duration() {
        let cfg = |window: Option<&str>| {
            let line = window.map_or(String::new(), |w| format!("  second_chance: {w}\n"));
            format!(
                "{HEAD}l4:
{line}  forwarding: {{ source_v4: 10.0.0.9 }}
  services: [{{ name: a, vip: 10.0.0.2, port: 80, backends: [{{ address: 10.0.0.1 }}] }}]
"
            )
        };
        let window = |w| {
            parse(&cfg(w), Path::new("edge.yaml"))
                .unwrap()
                .l4
                .second_chance
        };
        assert_eq!(window(None), DEFAULT_SECOND_CHANCE);
        assert_eq!(window(Some("90s")), Duration::from_secs(90));
        assert_eq!(window(Some("1h")), MAX_SECOND_CHANCE);
        assert_eq!(window(Some("0s")), Duration::ZERO, "0s turns it off");
        assert_eq!(
            errors(&cfg(Some("2h"))),
            ["edge.yaml:4:18: l4.second_chance: second_chance must be 0s (off) to 3600s, not 2h"]
        );
        assert_eq!(
            errors(&cfg(Some("soon"))),
            [
                "edge.yaml:4:18: l4.second_chance: bad duration \"soon\": expected a number with a unit, such as 250ms, 5s, 2m or 1h"
            ]
        );
    }

    #[test]
    fn services_need_interfaces() {
        assert_eq!(
            errors(
                "listeners: [{ name: w, address: '0.0.0.0:80', pool: p }]
pools: [{ name: p, backends: [{ address: '10.0.0.1:80' }] }]
l4:
  forwarding: { source_v4: 10.0.0.9 }
  services: [{ name: a, vip: 10.0.0.2, port: 80, backends: [{ address: 10.0.0.1 }] }]
"
            ),
            [
                "edge.yaml:5:13: l4.services: L4 services need the XDP program: list its interfaces under xdp.interfaces"
            ]
        );
    }

    #[test]
    fn primes_and_macs() {
        assert!(is_prime(65537) && is_prime(7) && is_prime(2));
        assert!(!is_prime(65536) && !is_prime(1) && !is_prime(9));
        assert_eq!(parse_mac("02:00:0a:FF:00:01"), Some([2, 0, 10, 255, 0, 1]));
        assert_eq!(parse_mac("02-00-0a-ff-00-01"), Some([2, 0, 10, 255, 0, 1]));
        assert_eq!(parse_mac("02:00:0a:ff:00"), None);
        assert_eq!(parse_mac("02:00:0a:ff:00:01:02"), None);
        assert_eq!(parse_mac("2:00:0a:ff:00:01"), None);
    }
}
