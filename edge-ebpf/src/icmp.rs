//! ICMP errors about VIP flows.
//!
//! With direct server return, a backend's replies leave with the VIP as
//! source, so a router that cannot forward one (fragmentation needed, packet
//! too big, unreachable) sends its ICMP error to the VIP: to edge. The error
//! quotes the offending packet (VIP → client); reversed, that is the
//! client's flow, and the error must go to the backend that owns it, or
//! path-MTU discovery breaks. Katran does the same.
//!
//! Handled: ICMPv4 destination unreachable (type 3, every code, including
//! fragmentation needed) and ICMPv6 destination unreachable (1) and packet
//! too big (2). Anything else (echo, time exceeded…) is ordinary traffic.

use crate::{
    PacketBuf,
    parse::{IPV4_MIN_HLEN, IPV6_HLEN, IpAddrs, IpHeader},
};
use edge_common::{FAMILY_V4, FAMILY_V6, FlowKey, IPPROTO_ICMP, IPPROTO_ICMPV6, VipKey};

/// ICMPv4 destination unreachable.
pub const ICMP_DEST_UNREACH: u8 = 3;
/// ICMPv6 destination unreachable.
pub const ICMPV6_DEST_UNREACH: u8 = 1;
/// ICMPv6 packet too big.
pub const ICMPV6_PKT_TOOBIG: u8 = 2;
/// Length of the ICMP header before the quoted packet.
pub const ICMP_HLEN: usize = 8;

/// The flow an ICMP error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpFlow {
    /// The service the quoted packet came from (its source side).
    pub vip: VipKey,
    /// The client's flow, as the client sends it (the quote reversed).
    pub flow: FlowKey,
}

/// The flow `ip`'s ICMP error is about, if `ip` carries an ICMP error whose
/// quoted packet left from the address the error was sent to. `None` for
/// everything else, including quotes too short to hold ports.
#[inline(always)]
pub fn error_flow<P: PacketBuf + ?Sized>(p: &P, ip: &IpHeader) -> Option<IcmpFlow> {
    let off = ip.l4_offset;
    match ip.addrs {
        IpAddrs::V4 { dst, .. } => {
            // Whole-header reads: a lone byte read compiles to a bounds check
            // the verifier cannot use.
            let icmp: [u8; ICMP_HLEN] = p.bytes(off)?;
            if ip.proto != IPPROTO_ICMP || icmp[0] != ICMP_DEST_UNREACH {
                return None;
            }
            let q = off + ICMP_HLEN;
            let h: [u8; IPV4_MIN_HLEN] = p.bytes(q)?;
            if h[0] >> 4 != 4 || h[0] & 0x0f < 5 {
                return None;
            }
            // A quoted later fragment has no ports.
            if u16::from_be_bytes([h[6], h[7]]) & 0x1fff != 0 {
                return None;
            }
            let src = [h[12], h[13], h[14], h[15]];
            let client = [h[16], h[17], h[18], h[19]];
            if src != dst {
                return None;
            }
            let ports: [u8; 4] = p.bytes(q + usize::from(h[0] & 0x0f) * 4)?;
            let vip_port = u16::from_be_bytes([ports[0], ports[1]]);
            let client_port = u16::from_be_bytes([ports[2], ports[3]]);
            let mut flow = FlowKey {
                src_port: client_port,
                dst_port: vip_port,
                proto: h[9],
                family: FAMILY_V4,
                ..FlowKey::default()
            };
            flow.src[..4].copy_from_slice(&client);
            flow.dst[..4].copy_from_slice(&src);
            Some(IcmpFlow {
                vip: VipKey::v4(src, vip_port, h[9]),
                flow,
            })
        }
        IpAddrs::V6 { dst, .. } => {
            if ip.proto != IPPROTO_ICMPV6 {
                return None;
            }
            let icmp: [u8; ICMP_HLEN] = p.bytes(off)?;
            let t = icmp[0];
            if t != ICMPV6_DEST_UNREACH && t != ICMPV6_PKT_TOOBIG {
                return None;
            }
            let q = off + ICMP_HLEN;
            let fixed: [u8; 8] = p.bytes(q)?;
            if fixed[0] >> 4 != 6 {
                return None;
            }
            let src: [u8; 16] = p.bytes(q + 8)?;
            let client: [u8; 16] = p.bytes(q + 24)?;
            if src != dst {
                return None;
            }
            // Extension headers in the quote are not walked: the transport
            // header must follow the fixed header, as in Katran.
            let proto = fixed[6];
            let ports: [u8; 4] = p.bytes(q + IPV6_HLEN)?;
            let vip_port = u16::from_be_bytes([ports[0], ports[1]]);
            let client_port = u16::from_be_bytes([ports[2], ports[3]]);
            Some(IcmpFlow {
                vip: VipKey::v6(src, vip_port, proto),
                flow: FlowKey {
                    src: client,
                    dst: src,
                    src_port: client_port,
                    dst_port: vip_port,
                    proto,
                    family: FAMILY_V6,
                    _pad: [0; 2],
                },
            })
        }
    }
}
