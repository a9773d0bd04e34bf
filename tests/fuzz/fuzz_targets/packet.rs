//! The XDP program's packet path on the host: the parsers, the decision
//! (`classify`), the ICMP error lookup, the flow hash, and the DSR
//! encapsulation and the backend's decapsulation, over arbitrary frames.
//!
//! The first byte picks the tables the decision sees (bit 0: every source
//! is denied; bit 1: every destination is an L4 VIP; bit 2: the VIP is
//! source-hashed; bit 3: every port is an L7 listener's); the rest is the
//! Ethernet frame.
//!
//! Invariants, beyond not panicking:
//! - a malformed or unparsed verdict carries its parse error, and only
//!   these do; an unparsed packet (three VLAN tags) is dropped;
//! - a balanced packet has a 14-, 18- or 22-byte L2 header and whole ports, and
//!   its Maglev slot is in the ring (for a source-hashed service, whatever
//!   the client port);
//! - a balanced packet, encapsulated as the fast path does and stripped as
//!   the backend does, is the original frame with the new MACs;
//! - a decapsulation plan never moves past the end of the packet.

#![no_main]

use edge_common::{PacketClass, PortKey, VIP_FLAG_SOURCE_HASH, VipKey, VipMeta};
use edge_ebpf::{
    classify::{Action, Tables, classify},
    decap::{self, Plan, Sources},
    encap, hash,
    parse::{self, ETH_HLEN, IpAddrs, MAX_L2_HLEN, VLAN_HLEN},
};
use libfuzzer_sys::fuzz_target;

const DENY: u8 = 1;
const VIP: u8 = 2;
const SOURCE_HASH: u8 = 4;
const L7: u8 = 8;
const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0d];
const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x05];

struct Fixed(u8);

impl Tables for Fixed {
    fn denied(&self, _: &IpAddrs) -> bool {
        self.0 & DENY != 0
    }
    fn vip(&self, _: &VipKey) -> Option<VipMeta> {
        (self.0 & VIP != 0).then(|| VipMeta {
            id: 1,
            flags: if self.0 & SOURCE_HASH != 0 {
                VIP_FLAG_SOURCE_HASH
            } else {
                0
            },
            ring_size: 65_537,
            generation: 1,
            ..VipMeta::default()
        })
    }
    fn is_l7_port(&self, _: &PortKey) -> bool {
        self.0 & L7 != 0
    }
}

/// No tag, one, or two.
fn l2_len_ok(len: usize) -> bool {
    len == ETH_HLEN || len == ETH_HLEN + VLAN_HLEN || len == MAX_L2_HLEN
}

struct AnySource;

impl Sources for AnySource {
    fn allowed(&self, _: &IpAddrs) -> bool {
        true
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, frame)) = data.split_first() else {
        return;
    };
    let v = classify(frame, &Fixed(mode));
    let unparsed = matches!(v.class, PacketClass::Malformed | PacketClass::Unparsed);
    assert_eq!(unparsed, v.error.is_some(), "{v:?}");
    if v.class == PacketClass::Unparsed {
        assert_eq!(v.action, Action::Drop, "{v:?}");
    }
    if v.class == PacketClass::Denied {
        assert_eq!(v.action, Action::Drop);
    }
    check_decap(frame);
    if v.action != Action::Balance {
        return;
    }
    assert_eq!(v.class, PacketClass::Vip);
    let b = v.balance;
    assert!(l2_len_ok(b.l2_len), "{b:?}");
    let source_only = b.meta.flags & VIP_FLAG_SOURCE_HASH != 0;
    let slot = hash::slot(&b.flow, source_only, b.meta.ring_size);
    assert!(slot < b.meta.ring_size);
    if source_only {
        let mut other = b.flow;
        other.src_port ^= 0x5a5a;
        assert_eq!(
            hash::slot(&other, true, b.meta.ring_size),
            slot,
            "a source-hashed flow's slot depends on its client port"
        );
    }
    if !b.icmp {
        let eth = parse::ethernet(frame).expect("a balanced frame's Ethernet header");
        let ip = if b.v6 {
            parse::ipv6(frame, eth.l3_offset)
        } else {
            parse::ipv4(frame, eth.l3_offset)
        }
        .expect("a balanced frame's IP header");
        assert!(
            parse::ports(frame, &ip)
                .expect("a balanced frame's ports")
                .is_some()
        );
    }
    round_trip(frame, b.l2_len, b.v6);
});

/// Encapsulates `frame` as the fast path does (room in front, then L2 and
/// outer header written into it), strips it as the backend does, and
/// compares.
fn round_trip(frame: &[u8], l2_len: usize, v6: bool) {
    let Some(inner) = encap::inner(frame, l2_len, v6) else {
        return;
    };
    let outer = if v6 {
        IpAddrs::V6 {
            src: [0x20; 16],
            dst: [0x30; 16],
        }
    } else {
        IpAddrs::V4 {
            src: [10, 0, 0, 1],
            dst: [10, 0, 0, 2],
        }
    };
    let mut tunnel = vec![0u8; outer.len()];
    tunnel.extend_from_slice(frame);
    if encap::write(&mut tunnel[..], &inner, &outer, DST_MAC, SRC_MAC).is_none() {
        // Only an IPv4 packet too long to wrap in another 20 bytes.
        assert!(!v6 && usize::from(inner.ip_len) + outer.len() > usize::from(u16::MAX));
        return;
    }
    let Plan::Strip(s) = decap::plan(&tunnel[..], &AnySource) else {
        panic!(
            "the backend does not strip what the fast path built: {:?}",
            decap::plan(&tunnel[..], &AnySource)
        );
    };
    assert_eq!(s.outer_len, outer.len());
    let stripped = &mut tunnel[s.outer_len..];
    decap::write_l2(stripped, &s).expect("writing the L2 header back");
    let mut expected = frame.to_vec();
    expected[..6].copy_from_slice(&DST_MAC);
    expected[6..12].copy_from_slice(&SRC_MAC);
    assert_eq!(
        stripped,
        &expected[..],
        "decap(encap(frame)) is not the frame"
    );
}

fn check_decap(frame: &[u8]) {
    if let Plan::Strip(s) = decap::plan(frame, &AnySource) {
        assert!(l2_len_ok(s.l2_len), "{s:?}");
        assert!(
            s.l2_len + s.outer_len < frame.len(),
            "{s:?} past a {}-byte frame",
            frame.len()
        );
        let mut rest = frame[s.outer_len..].to_vec();
        decap::write_l2(&mut rest[..], &s).expect("room for the L2 header");
    }
}
