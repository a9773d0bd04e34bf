//! The fast path's decision for one packet: which class it is and what to do.
//!
//! The order is fixed and cheap-first: a packet edge cannot read as IP goes
//! up the stack; a denied source is dropped before its transport header is
//! even looked at; then the destination decides between an L4 virtual
//! service, an L7 listener and everything else.

use crate::{
    PacketBuf,
    parse::{self, ETH_P_IPV4, ETH_P_IPV6, IpAddrs, IpHeader, ParseError},
};
use edge_common::{PacketClass, PortKey, VipKey};

/// What the program does with the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Hand it to the kernel stack.
    Pass,
    /// Drop it here.
    Drop,
}

/// The outcome for one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The class the packet is counted under.
    pub class: PacketClass,
    /// What to do with it.
    pub action: Action,
    /// Why parsing stopped, for malformed packets.
    pub error: Option<ParseError>,
}

impl Verdict {
    const fn pass(class: PacketClass) -> Self {
        Self {
            class,
            action: Action::Pass,
            error: None,
        }
    }

    // Malformed packets are passed: the kernel stack is the authority on
    // traffic edge does not own, and it drops and counts bad headers itself.
    const fn malformed(error: ParseError) -> Self {
        Self {
            class: PacketClass::Malformed,
            action: Action::Pass,
            error: Some(error),
        }
    }
}

/// The lookups the decision needs; the kernel answers them from BPF maps,
/// tests from plain data.
pub trait Tables {
    /// Whether the source address falls in a denied prefix.
    fn denied(&self, addrs: &IpAddrs) -> bool;
    /// Whether the destination is an L4 virtual service.
    fn is_vip(&self, key: &VipKey) -> bool;
    /// Whether the destination port belongs to an L7 listener.
    fn is_l7_port(&self, key: &PortKey) -> bool;
}

/// Classifies one packet.
pub fn classify<P: PacketBuf + ?Sized, T: Tables>(p: &P, tables: &T) -> Verdict {
    let eth = match parse::ethernet(p) {
        Ok(eth) => eth,
        Err(e) => return Verdict::malformed(e),
    };
    let ip = match eth.ether_type {
        ETH_P_IPV4 => parse::ipv4(p, eth.l3_offset),
        ETH_P_IPV6 => parse::ipv6(p, eth.l3_offset),
        _ => return Verdict::pass(PacketClass::Other),
    };
    let ip = match ip {
        Ok(ip) => ip,
        Err(e) => return Verdict::malformed(e),
    };
    if tables.denied(&ip.addrs) {
        return Verdict {
            class: PacketClass::Denied,
            action: Action::Drop,
            error: None,
        };
    }
    let ports = match parse::ports(p, &ip) {
        Ok(Some(ports)) => ports,
        Ok(None) => return Verdict::pass(PacketClass::Other),
        Err(e) => return Verdict::malformed(e),
    };
    if tables.is_vip(&vip_key(&ip, ports.dst)) {
        return Verdict::pass(PacketClass::Vip);
    }
    if tables.is_l7_port(&PortKey::new(ports.dst, ip.proto)) {
        return Verdict::pass(PacketClass::L7);
    }
    Verdict::pass(PacketClass::Other)
}

/// The VIP key a packet's destination would have.
pub fn vip_key(ip: &IpHeader, dst_port: u16) -> VipKey {
    match ip.addrs {
        IpAddrs::V4 { dst, .. } => VipKey::v4(dst, dst_port, ip.proto),
        IpAddrs::V6 { dst, .. } => VipKey::v6(dst, dst_port, ip.proto),
    }
}
