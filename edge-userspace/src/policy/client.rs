//! The client address policies decide on, and the address allow/deny
//! policy.

use super::Rejection;
use crate::config::gateway::IpPolicy;
use ipnet::IpNet;
use std::net::IpAddr;

/// The client address edge trusts: the peer, unless the peer is a trusted
/// proxy; then the right-most `X-Forwarded-For` entry that is not a
/// trusted proxy (each proxy appends the address it saw, so entries to
/// the left of an untrusted one are claims nobody checked). An entry
/// that is not an address stops the walk at the last address known.
pub fn trusted_client<'a>(
    peer: Option<IpAddr>,
    forwarded_for: impl Iterator<Item = &'a str>,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let peer = peer?.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let entries: Vec<&str> = forwarded_for
        .flat_map(|line| line.split(','))
        .map(str::trim)
        .collect();
    let mut known = peer;
    for entry in entries.iter().rev() {
        let Some(ip) = parse_entry(entry) else {
            return Some(known);
        };
        if !is_trusted(&ip) {
            return Some(ip);
        }
        known = ip;
    }
    Some(known)
}

/// `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1` or `[2001:db8::1]:80`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = entry.parse::<std::net::SocketAddr>() {
        return Some(sa.ip().to_canonical());
    }
    None
}

/// The address a per-client limit counts by: an IPv4 address, or the /64
/// of an IPv6 one (one subscriber usually holds a whole /64, and could
/// otherwise take a fresh budget with every address in it).
pub fn limit_address(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => {
            let s = a.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// Refuses a client in `deny`, or outside a non-empty `allow`.
pub fn check_ip(p: &IpPolicy, client: Option<IpAddr>) -> Result<(), Rejection> {
    let refuse = || Rejection::new(403, "ip", "denied", "Your address may not call this route");
    let Some(ip) = client else {
        // Not an IP peer (a Unix socket): only an allow-list-free policy
        // can say anything about it.
        return if p.allow.is_empty() {
            Ok(())
        } else {
            Err(refuse())
        };
    };
    if p.deny.iter().any(|n| n.contains(&ip)) {
        return Err(refuse());
    }
    if !p.allow.is_empty() && !p.allow.iter().any(|n| n.contains(&ip)) {
        return Err(refuse());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let peer = "203.0.113.9".parse().ok();
        let got = trusted_client(peer, ["1.1.1.1"].into_iter(), &nets(&["10.0.0.0/8"]));
        assert_eq!(got, peer);
    }

    #[test]
    fn the_right_most_untrusted_entry_behind_trusted_proxies_is_the_client() {
        let peer = "10.0.0.1".parse().ok();
        let xff = ["6.6.6.6, 198.51.100.7", "10.0.0.2"];
        let got = trusted_client(peer, xff.into_iter(), &nets(&["10.0.0.0/8"]));
        assert_eq!(got, "198.51.100.7".parse().ok());
    }

    #[test]
    fn garbage_stops_the_walk_at_the_last_known_address() {
        let peer = "10.0.0.1".parse().ok();
        let got = trusted_client(
            peer,
            ["nonsense, 10.0.0.3"].into_iter(),
            &nets(&["10.0.0.0/8"]),
        );
        assert_eq!(got, "10.0.0.3".parse().ok());
    }

    #[test]
    fn limits_count_ipv6_clients_by_their_64() {
        let a = limit_address("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = limit_address("2001:db8:1:2:bbbb::9".parse().unwrap());
        assert_eq!(a, b);
        assert_eq!(a, "2001:db8:1:2::/64");
        assert_eq!(
            limit_address("::ffff:192.0.2.1".parse().unwrap()),
            "192.0.2.1"
        );
    }

    #[test]
    fn deny_wins_over_allow_and_allow_is_exclusive() {
        let p = IpPolicy {
            allow: nets(&["192.0.2.0/24", "2001:db8::/32"]),
            deny: nets(&["192.0.2.66/32"]),
        };
        assert!(check_ip(&p, "192.0.2.1".parse().ok()).is_ok());
        assert!(check_ip(&p, "2001:db8::5".parse().ok()).is_ok());
        assert_eq!(
            check_ip(&p, "192.0.2.66".parse().ok()).unwrap_err().status,
            403
        );
        assert_eq!(
            check_ip(&p, "198.51.100.1".parse().ok())
                .unwrap_err()
                .status,
            403
        );
    }
}
