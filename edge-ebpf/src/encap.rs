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
/// made (the inner IP header's place moves). The L2 header's bytes are kept
/// as the little-endian words they are read and written as (see
/// [`PacketBuf::le32_at`]): a handful of loads and stores instead of one
/// per byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inner {
    /// The frame's destination MAC: edge's own, for a unicast frame.
    pub dst_mac: [u8; 6],
    /// Bytes 12-13: the EtherType, or the first tag's TPID.
    pub ether: u16,
    /// Bytes 14-17 and 18-21: the VLAN tags, as many as `l2_len` says
    /// (zero otherwise), each TCI and the EtherType or TPID after it.
    pub tags: [u32; 2],
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

/// Reads [`Inner`] from a packet whose IP header (at least its first 8
/// bytes) starts at `l2_len`.
#[inline(always)]
pub fn inner<P: PacketBuf + ?Sized>(p: &P, l2_len: usize, v6: bool) -> Option<Inner> {
    let mac = p.le32_at(0)?.to_le_bytes();
    let mac_end = p.le16_at(4)?.to_le_bytes();
    let ether = p.le16_at(ETH_HLEN - 2)?;
    let mut tags = [0u32; 2];
    if l2_len >= ETH_HLEN + VLAN_HLEN {
        tags[0] = p.le32_at(ETH_HLEN)?;
    }
    if l2_len >= MAX_L2_HLEN {
        tags[1] = p.le32_at(ETH_HLEN + VLAN_HLEN)?;
    }
    let h = p.le64_at(l2_len)?.to_le_bytes();
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
        dst_mac: [mac[0], mac[1], mac[2], mac[3], mac_end[0], mac_end[1]],
        ether,
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
/// DF set (see the module docs), as the little-endian words of its bytes
/// 0-7, 8-11 and 12-19, which [`write`] stores. The checksum is summed
/// from the fields, not from the bytes.
#[inline(always)]
pub fn ipv4_words(src: [u8; 4], dst: [u8; 4], tos: u8, inner_len: u16) -> Option<(u64, u32, u64)> {
    let total = inner_len.checked_add(IPV4_MIN_HLEN as u16)?;
    let s = u32::from_be_bytes(src);
    let d = u32::from_be_bytes(dst);
    // RFC 1071 over the header's ten big-endian 16-bit words (the ID and
    // the checksum itself are zero); at most about 2^19, no overflow.
    let mut sum = (0x4500 | u32::from(tos))
        + u32::from(total)
        + u32::from(IPV4_DF)
        + ((u32::from(OUTER_TTL) << 8) | u32::from(IPPROTO_IPIP))
        + (s >> 16)
        + (s & 0xffff)
        + (d >> 16)
        + (d & 0xffff);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    let check = (!(sum as u16)).to_be_bytes();
    let total = total.to_be_bytes();
    let df = IPV4_DF.to_be_bytes();
    let w0 = u64::from_le_bytes([0x45, tos, total[0], total[1], 0, 0, df[0], df[1]]);
    let w1 = u32::from_le_bytes([OUTER_TTL, IPPROTO_IPIP, check[0], check[1]]);
    let w2 = u64::from(u32::from_le_bytes(src)) | (u64::from(u32::from_le_bytes(dst)) << 32);
    Some((w0, w1, w2))
}

/// The outer IPv4 header as bytes (see [`ipv4_words`]).
pub fn ipv4_header(src: [u8; 4], dst: [u8; 4], tos: u8, inner_len: u16) -> Option<[u8; 20]> {
    let (w0, w1, w2) = ipv4_words(src, dst, tos, inner_len)?;
    let mut h = [0u8; IPV4_MIN_HLEN];
    h[..8].copy_from_slice(&w0.to_le_bytes());
    h[8..12].copy_from_slice(&w1.to_le_bytes());
    h[12..].copy_from_slice(&w2.to_le_bytes());
    Some(h)
}

/// Bytes 0-7 of the outer IPv6 header for an inner packet of `inner_len`
/// bytes, as a little-endian word: version, traffic class, flow label 0,
/// payload length, next header, hop limit. The addresses follow.
#[inline(always)]
pub fn ipv6_word0(tclass: u8, inner_len: u16) -> u64 {
    let len = inner_len.to_be_bytes();
    u64::from_le_bytes([
        0x60 | (tclass >> 4),
        tclass << 4,
        0,
        0,
        len[0],
        len[1],
        IPPROTO_IPV6,
        OUTER_TTL,
    ])
}

/// The outer IPv6 header as bytes (see [`ipv6_word0`]).
pub fn ipv6_header(src: [u8; 16], dst: [u8; 16], tclass: u8, inner_len: u16) -> [u8; 40] {
    let mut h = [0u8; IPV6_HLEN];
    h[..8].copy_from_slice(&ipv6_word0(tclass, inner_len).to_le_bytes());
    h[8..24].copy_from_slice(&src);
    h[24..].copy_from_slice(&dst);
    h
}

/// Sixteen bytes as the little-endian words of bytes 0-7 and 8-15.
#[inline(always)]
fn halves(a: [u8; 16]) -> (u64, u64) {
    let v = u128::from_le_bytes(a);
    (v as u64, (v >> 64) as u64)
}

/// Writes the L2 header (destination `dst_mac`, source `src_mac`, the
/// original tags and EtherType) and the outer header into the first
/// `inner.l2_len + outer.len()` bytes of `p`, in words.
#[inline(always)]
pub fn write<P: PacketBufMut + ?Sized>(
    p: &mut P,
    inner: &Inner,
    outer: &Outer,
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
) -> Option<()> {
    let (d, s) = (dst_mac, src_mac);
    p.write_le64(
        0,
        u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], s[0], s[1]]),
    )?;
    p.write_le32(8, u32::from_le_bytes([s[2], s[3], s[4], s[5]]))?;
    p.write_le16(ETH_HLEN - 2, inner.ether)?;
    if inner.l2_len >= ETH_HLEN + VLAN_HLEN {
        p.write_le32(ETH_HLEN, inner.tags[0])?;
    }
    if inner.l2_len >= MAX_L2_HLEN {
        p.write_le32(ETH_HLEN + VLAN_HLEN, inner.tags[1])?;
    }
    let at = inner.l2_len;
    match *outer {
        Outer::V4 { src, dst } => {
            let (w0, w1, w2) = ipv4_words(src, dst, inner.tos, inner.ip_len)?;
            p.write_le64(at, w0)?;
            p.write_le32(at + 8, w1)?;
            p.write_le64(at + 12, w2)
        }
        Outer::V6 { src, dst } => {
            let (src0, src1) = halves(src);
            let (dst0, dst1) = halves(dst);
            p.write_le64(at, ipv6_word0(inner.tos, inner.ip_len))?;
            p.write_le64(at + 8, src0)?;
            p.write_le64(at + 16, src1)?;
            p.write_le64(at + 24, dst0)?;
            p.write_le64(at + 32, dst1)
        }
    }
}
