//! The backend side of direct server return: recognise an IPIP / IP6IP6
//! (or 6in4 / 4in6) packet from an allowed edge and say how to strip it.
//!
//! The kernel program then moves the start of the packet past the outer
//! header (`bpf_xdp_adjust_head`) and rewrites the L2 header in front of the
//! inner packet with [`write_l2`]; the stack sees the client's packet to the
//! VIP, which lives on the backend's `lo`.

use crate::{
    PacketBuf, PacketBufMut,
    parse::{self, ETH_HLEN, ETH_P_IPV4, ETH_P_IPV6, Fragment, IpAddrs, VLAN_HLEN},
};
use edge_common::{DecapEvent, IPPROTO_IPIP, IPPROTO_IPV6};

/// Which outer sources may be stripped.
pub trait Sources {
    /// Whether the outer source of `addrs` is an allowed edge.
    fn allowed(&self, addrs: &IpAddrs) -> bool;
}

/// How to strip one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Strip {
    /// The original Ethernet header (the EtherType is replaced).
    pub eth: [u8; ETH_HLEN],
    /// The VLAN tag after it, if `l2_len` is 18.
    pub vlan: [u8; VLAN_HLEN],
    /// Length of the L2 header: 14, or 18 with a tag.
    pub l2_len: usize,
    /// Length of the outer IP header, options and extension headers
    /// included: how far the packet start moves.
    pub outer_len: usize,
    /// EtherType of the inner packet.
    pub ether_type: u16,
}

/// What to do with one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Strip the outer header.
    Strip(Strip),
    /// Pass it unchanged, counted as this.
    Pass(DecapEvent),
}

/// Decides what to do with the packet in `p`.
#[inline(always)]
pub fn plan<P: PacketBuf + ?Sized, S: Sources>(p: &P, sources: &S) -> Plan {
    let Ok(eth) = parse::ethernet(p) else {
        return Plan::Pass(DecapEvent::Malformed);
    };
    let ip = match eth.ether_type {
        ETH_P_IPV4 => parse::ipv4(p, eth.l3_offset),
        ETH_P_IPV6 => parse::ipv6(p, eth.l3_offset),
        _ => return Plan::Pass(DecapEvent::Other),
    };
    let Ok(ip) = ip else {
        return Plan::Pass(DecapEvent::Malformed);
    };
    let (ether_type, version) = match ip.proto {
        IPPROTO_IPIP => (ETH_P_IPV4, 4),
        IPPROTO_IPV6 => (ETH_P_IPV6, 6),
        _ => return Plan::Pass(DecapEvent::Other),
    };
    // A fragmented tunnel packet is left to the stack to reassemble.
    if ip.fragment != Fragment::No {
        return Plan::Pass(DecapEvent::Other);
    }
    if !sources.allowed(&ip.addrs) {
        return Plan::Pass(DecapEvent::NotAllowed);
    }
    match p.u8_at(ip.l4_offset) {
        Some(b) if b >> 4 == version => {}
        _ => return Plan::Pass(DecapEvent::Malformed),
    }
    let (Some(head), Some(vlan)) = (
        p.bytes::<ETH_HLEN>(0),
        if eth.l3_offset == ETH_HLEN + VLAN_HLEN {
            p.bytes::<VLAN_HLEN>(ETH_HLEN)
        } else {
            Some([0; VLAN_HLEN])
        },
    ) else {
        return Plan::Pass(DecapEvent::Malformed);
    };
    Plan::Strip(Strip {
        eth: head,
        vlan,
        l2_len: eth.l3_offset,
        outer_len: ip.l4_offset - eth.l3_offset,
        ether_type,
    })
}

/// Writes the L2 header of `s` (with the inner EtherType) at the start of
/// `p`, after the packet start has moved past the outer header.
#[inline(always)]
pub fn write_l2<P: PacketBufMut + ?Sized>(p: &mut P, s: &Strip) -> Option<()> {
    let et = s.ether_type.to_be_bytes();
    let mut eth = s.eth;
    if s.l2_len == ETH_HLEN + VLAN_HLEN {
        p.write(0, eth)?;
        let mut vlan = s.vlan;
        vlan[2] = et[0];
        vlan[3] = et[1];
        p.write(ETH_HLEN, vlan)
    } else {
        eth[12] = et[0];
        eth[13] = et[1];
        p.write(0, eth)
    }
}
