//! IPIP and IP6IP6 encapsulation for direct server return.
//!
//! The caller makes room in front of the packet (`bpf_xdp_adjust_head` in
//! the kernel, a longer buffer in tests); [`write`] then lays down the
//! Ethernet header (and VLAN tags) with the next hop's MACs, and the outer
//! IP header, in the room. The inner packet is not touched. The outer family
//! is always the inner family (IPv4 VIPs have IPv4 reals, IPv6 VIPs IPv6
//! reals: the configuration enforces it), so the EtherType stays as it was.
//!
//! The outer IPv4 header has ID 0 and DF set, always. With DF clear, every
//! outer packet having the same ID would let a router's fragments of two
//! different packets be reassembled into one (RFC 6864 allows a constant ID
//! only for atomic datagrams, those with DF set); edge itself checks the
//! egress MTU and answers packets that would need fragmenting with ICMP
//! instead (see [`crate::toobig`]). Katran leaves DF clear.

use crate::{
    PacketBuf, PacketBufMut,
    parse::{ETH_HLEN, IPV4_MIN_HLEN, IPV6_HLEN, MAX_L2_HLEN, VLAN_HLEN},
};
use edge_common::{IPPROTO_IPIP, IPPROTO_IPV6};

/// TTL / hop limit of the outer header.
pub const OUTER_TTL: u8 = 64;
/// The DF bit in the flags / fragment offset field of an IPv4 header.
pub const IPV4_DF: u16 = 0x4000;

/// Where the packet goes (the real) and from where (edge's configured
/// source): an address pair, as the parser reports the inner one.
pub type Outer = crate::parse::IpAddrs;

impl Outer {
    /// Bytes the outer header adds.
    #[inline(always)]
    pub const fn len(&self) -> usize {
        match self {
            Outer::V4 { .. } => IPV4_MIN_HLEN,
            Outer::V6 { .. } => IPV6_HLEN,
        }
    }

    /// Never empty; for clippy's `len_without_is_empty`.
    #[inline(always)]
    pub const fn is_empty(&self) -> bool {
        false
    }
}

/// What [`write`] needs from the original packet, read before the room is
/// made (the inner IP header's place moves).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inner {
    /// The original Ethernet header (its MACs are replaced).
    pub eth: [u8; ETH_HLEN],
    /// The VLAN tags after it (`l2_len` says how many; the rest is zero).
    pub tags: Tags,
    /// Length of the L2 header: 14, 18 with a tag, 22 with two.
    pub l2_len: usize,
    /// IPv4 TOS / IPv6 traffic class, copied to the outer header.
    pub tos: u8,
    /// Length of the inner IP packet (header and payload).
    pub ip_len: u16,
}

/// Up to two VLAN tags, as they follow the Ethernet header.
pub type Tags = [u8; MAX_L2_HLEN - ETH_HLEN];

/// Reads the VLAN tags of a frame whose L2 header is `l2_len` long (14,
/// 18 or 22); zero where there is no tag.
#[inline(always)]
pub fn read_tags<P: PacketBuf + ?Sized>(p: &P, l2_len: usize) -> Option<Tags> {
    let mut tags = [0u8; MAX_L2_HLEN - ETH_HLEN];
    if l2_len >= ETH_HLEN + VLAN_HLEN {
        let t: [u8; VLAN_HLEN] = p.bytes(ETH_HLEN)?;
        tags[..VLAN_HLEN].copy_from_slice(&t);
    }
    if l2_len >= MAX_L2_HLEN {
        let t: [u8; VLAN_HLEN] = p.bytes(ETH_HLEN + VLAN_HLEN)?;
        tags[VLAN_HLEN..].copy_from_slice(&t);
    }
    Some(tags)
}

/// Writes `eth` and the first `l2_len - 14` bytes of `tags` at the start of
/// `p`.
#[inline(always)]
pub fn write_l2_header<P: PacketBufMut + ?Sized>(
    p: &mut P,
    eth: [u8; ETH_HLEN],
    tags: &Tags,
    l2_len: usize,
) -> Option<()> {
    p.write(0, eth)?;
    if l2_len >= ETH_HLEN + VLAN_HLEN {
        p.write(ETH_HLEN, [tags[0], tags[1], tags[2], tags[3]])?;
    }
    if l2_len >= MAX_L2_HLEN {
        p.write(ETH_HLEN + VLAN_HLEN, [tags[4], tags[5], tags[6], tags[7]])?;
    }
    Some(())
}

/// Reads [`Inner`] from a packet whose IP header starts at `l2_len`.
#[inline(always)]
pub fn inner<P: PacketBuf + ?Sized>(p: &P, l2_len: usize, v6: bool) -> Option<Inner> {
    let eth: [u8; ETH_HLEN] = p.bytes(0)?;
    let tags = read_tags(p, l2_len)?;
    let h: [u8; 6] = p.bytes(l2_len)?;
    let (tos, ip_len) = if v6 {
        let payload = u16::from_be_bytes([h[4], h[5]]);
        (
            (h[0] << 4) | (h[1] >> 4),
            payload.checked_add(IPV6_HLEN as u16)?,
        )
    } else {
        (h[1], u16::from_be_bytes([h[2], h[3]]))
    };
    Some(Inner {
        eth,
        tags,
        l2_len,
        tos,
        ip_len,
    })
}

/// The RFC 1071 checksum of an IPv4 header whose checksum field is zero.
#[inline(always)]
pub fn ipv4_checksum(h: &[u8; IPV4_MIN_HLEN]) -> u16 {
    let mut sum: u32 = 0;
    let mut i = 0;
    while i < IPV4_MIN_HLEN {
        sum += u32::from(u16::from_be_bytes([h[i], h[i + 1]]));
        i += 2;
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// The outer IPv4 header for an inner packet of `inner_len` bytes: ID 0,
/// DF set (see the module docs).
#[inline(always)]
pub fn ipv4_header(src: [u8; 4], dst: [u8; 4], tos: u8, inner_len: u16) -> Option<[u8; 20]> {
    let total = inner_len.checked_add(IPV4_MIN_HLEN as u16)?.to_be_bytes();
    let df = IPV4_DF.to_be_bytes();
    let mut h = [
        0x45,
        tos,
        total[0],
        total[1],
        0,
        0,
        df[0],
        df[1],
        OUTER_TTL,
        IPPROTO_IPIP,
        0,
        0,
        src[0],
        src[1],
        src[2],
        src[3],
        dst[0],
        dst[1],
        dst[2],
        dst[3],
    ];
    let sum = ipv4_checksum(&h).to_be_bytes();
    h[10] = sum[0];
    h[11] = sum[1];
    Some(h)
}

/// The outer IPv6 header for an inner packet of `inner_len` bytes.
#[inline(always)]
pub fn ipv6_header(src: [u8; 16], dst: [u8; 16], tclass: u8, inner_len: u16) -> [u8; 40] {
    let mut h = [0u8; 40];
    h[0] = 0x60 | (tclass >> 4);
    h[1] = tclass << 4;
    let len = inner_len.to_be_bytes();
    h[4] = len[0];
    h[5] = len[1];
    h[6] = IPPROTO_IPV6;
    h[7] = OUTER_TTL;
    let mut i = 0;
    while i < 16 {
        h[8 + i] = src[i];
        h[24 + i] = dst[i];
        i += 1;
    }
    h
}

/// Writes the L2 header (destination `dst_mac`, source `src_mac`) and the
/// outer header into the first `inner.l2_len + outer.len()` bytes of `p`.
#[inline(always)]
pub fn write<P: PacketBufMut + ?Sized>(
    p: &mut P,
    inner: &Inner,
    outer: &Outer,
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
) -> Option<()> {
    write_l2(p, inner, dst_mac, src_mac)?;
    match *outer {
        Outer::V4 { src, dst } => p.write(
            inner.l2_len,
            ipv4_header(src, dst, inner.tos, inner.ip_len)?,
        ),
        Outer::V6 { src, dst } => {
            p.write(inner.l2_len, ipv6_header(src, dst, inner.tos, inner.ip_len))
        }
    }
}

#[inline(always)]
fn write_l2<P: PacketBufMut + ?Sized>(
    p: &mut P,
    inner: &Inner,
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
) -> Option<()> {
    let mut eth = inner.eth;
    eth[..6].copy_from_slice(&dst_mac);
    eth[6..12].copy_from_slice(&src_mac);
    write_l2_header(p, eth, &inner.tags, inner.l2_len)
}
