//! The backend side of direct server return: recognise an IPIP / IP6IP6
//! (or 6in4 / 4in6) packet from an allowed edge and say how to strip it.
//!
//! The kernel program then moves the start of the packet past the outer
//! header (`bpf_xdp_adjust_head`) and rewrites the L2 header in front of the
//! inner packet with [`write_l2`]; the stack sees the client's packet to the
//! VIP, which lives on the backend's `lo`.

use crate::{
    PacketBuf, PacketBufMut,
    encap::{self, Tags},
    parse::{self, ETH_HLEN, ETH_P_IPV4, ETH_P_IPV6, Fragment, IpAddrs, MAX_L2_HLEN, VLAN_HLEN},
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
    /// The VLAN tags after it (`l2_len` says how many; the rest is zero).
    pub tags: Tags,
    /// Length of the L2 header: 14, 18 with a tag, 22 with two.
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
    let (Some(head), Some(tags)) = (p.bytes::<ETH_HLEN>(0), encap::read_tags(p, eth.l3_offset))
    else {
        return Plan::Pass(DecapEvent::Malformed);
    };
    Plan::Strip(Strip {
        eth: head,
        tags,
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
    let mut tags = s.tags;
    // The EtherType is the last two bytes of the L2 header: the innermost
    // tag's, or the Ethernet header's.
    if s.l2_len >= MAX_L2_HLEN {
        tags[6] = et[0];
        tags[7] = et[1];
    } else if s.l2_len >= ETH_HLEN + VLAN_HLEN {
        tags[2] = et[0];
        tags[3] = et[1];
    } else {
        eth[12] = et[0];
        eth[13] = et[1];
    }
    encap::write_l2_header(p, eth, &tags, s.l2_len)
}
