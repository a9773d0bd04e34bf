//! Host tests of the L4 pieces: classification of VIP traffic, ICMP error
//! flows, the hash, the token bucket, encapsulation and decapsulation.

use crate::{
    classify::{Action, Tables, Verdict, classify, classify_into, same_vip},
    decap::{self, Plan, Sources},
    encap::{self, Outer},
    hash, icmp,
    parse::{self, IpAddrs},
    token, toobig,
};
use edge_common::{
    DecapEvent, FAMILY_V4, FlowKey, FlowState, IPPROTO_TCP, L4Event, NANOTOKENS_PER_TOKEN,
    PacketClass, PortKey, TokenBucket, VIP_FLAG_SOURCE_HASH, VipKey, VipMeta,
};
use edge_tests::l4packets::{
    Ip, Tcp, decapsulated, icmp4_frag_needed, icmp6_too_big, ip_part, ip6ip6, ipip, tcp, tcp_with,
    too_big_reply, udp, with_tags, with_v6_ext, without_df,
};

const SMAC: [u8; 6] = [2, 0, 0, 0, 0xaa, 1];
const DMAC: [u8; 6] = [2, 0, 0, 0, 0xee, 1];
const RMAC: [u8; 6] = [2, 0, 0, 0, 0xbb, 2];
const CLIENT: [u8; 4] = [192, 0, 2, 10];
const VIP: [u8; 4] = [10, 77, 0, 100];
const CLIENT6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
const VIP6: [u8; 16] = [0xfd, 0, 0, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];

/// The previous table's deadline the fixture service carries.
const PREV_UNTIL_NS: u64 = 1 << 40;

/// One VIP (VIP:80/tcp and its address marker); `flags` for the service.
struct T {
    flags: u32,
}

impl Tables for T {
    fn denied(&self, _: &IpAddrs) -> bool {
        false
    }
    fn vip(&self, key: &VipKey) -> Option<VipMeta> {
        let meta = VipMeta {
            id: 3,
            flags: self.flags,
            ring_size: 7,
            generation: 0,
            prev_ring_size: 5,
            _pad: 0,
            prev_until_ns: PREV_UNTIL_NS,
        };
        if *key == VipKey::v4(VIP, 80, IPPROTO_TCP) || *key == VipKey::v6(VIP6, 80, IPPROTO_TCP) {
            Some(meta)
        } else if *key == VipKey::v4(VIP, 0, 0) || *key == VipKey::v6(VIP6, 0, 0) {
            Some(VipMeta::default())
        } else {
            None
        }
    }
    fn is_l7_port(&self, _: &PortKey) -> bool {
        false
    }
}

/// The fixture flow's packet with `flags`.
fn flow_packet(flags: Tcp) -> Vec<u8> {
    tcp(
        SMAC,
        DMAC,
        None,
        Ip::V4(CLIENT),
        Ip::V4(VIP),
        40000,
        80,
        flags,
    )
}

fn syn() -> Vec<u8> {
    flow_packet(Tcp::Syn)
}

#[test]
fn vip_packets_are_balanced_with_their_flow() {
    let v = classify(&syn()[..], &T { flags: 0 });
    assert_eq!((v.class, v.action), (PacketClass::Vip, Action::Balance));
    let b = v.balance;
    assert_eq!(b.meta.id, 3);
    // The previous table travels with the service into the verdict, for
    // the second-chance pick.
    assert_eq!(
        (b.meta.prev_ring_size, b.meta.prev_until_ns),
        (5, PREV_UNTIL_NS)
    );
    assert_eq!(b.l2_len, 14);
    assert!(!b.v6 && !b.mid_flow && !b.icmp);
    assert_eq!(b.flow.src[..4], CLIENT);
    assert_eq!(b.flow.dst[..4], VIP);
    assert_eq!((b.flow.src_port, b.flow.dst_port), (40000, 80));
    assert_eq!((b.flow.proto, b.flow.family), (IPPROTO_TCP, FAMILY_V4));
    let ack = tcp(
        SMAC,
        DMAC,
        None,
        Ip::V4(CLIENT),
        Ip::V4(VIP),
        40000,
        80,
        Tcp::Ack,
    );
    assert!(classify(&ack[..], &T { flags: 0 }).balance.mid_flow);
    // Source hashing keeps the client port in the flow (the conntrack
    // key); the hash leaves it out.
    let v = classify(
        &syn()[..],
        &T {
            flags: VIP_FLAG_SOURCE_HASH,
        },
    );
    assert_eq!(v.balance.flow.src_port, 40000);
}

#[test]
fn source_hashing_ignores_the_client_port_but_the_flow_keeps_it() {
    let base = classify(
        &syn()[..],
        &T {
            flags: VIP_FLAG_SOURCE_HASH,
        },
    )
    .balance
    .flow;
    let other = FlowKey {
        src_port: 40001,
        ..base
    };
    assert_ne!(base, other, "two connections, two conntrack keys");
    assert_eq!(
        hash::flow_hash(&base, true),
        hash::flow_hash(&other, true),
        "one client, one slot"
    );
    assert_ne!(
        hash::flow_hash(&base, false),
        hash::flow_hash(&other, false)
    );
}

#[test]
fn fragments_to_a_vip_address_are_dropped_and_counted() {
    let mut p = syn();
    p[14 + 6] |= 0x20;
    let v = classify(&p[..], &T { flags: 0 });
    assert_eq!((v.class, v.action), (PacketClass::Vip, Action::Drop));
    assert_eq!(v.event, Some(L4Event::FragmentDropped));
    // Any port: a later fragment has none.
    let mut other = tcp(
        SMAC,
        DMAC,
        None,
        Ip::V4(CLIENT),
        Ip::V4(VIP),
        1,
        9999,
        Tcp::Syn,
    );
    other[14 + 6] = 0x00;
    other[14 + 7] = 0x10;
    assert_eq!(classify(&other[..], &T { flags: 0 }).action, Action::Drop);
}

/// The VIP's reply on the fixture flow (what an ICMP error quotes).
fn flow_reply() -> Vec<u8> {
    tcp(
        SMAC,
        DMAC,
        None,
        Ip::V4(VIP),
        Ip::V4(CLIENT),
        80,
        40000,
        Tcp::Ack,
    )
}

/// A router's "fragmentation needed" about the fixture flow's reply.
fn frag_needed_about_the_flow() -> Vec<u8> {
    icmp4_frag_needed(SMAC, DMAC, [198, 51, 100, 1], VIP, ip_part(&flow_reply()))
}

#[test]
fn icmp_errors_map_back_to_the_client_flow() {
    let reply = flow_reply();
    let p = frag_needed_about_the_flow();
    let ip = parse::ipv4(&p[..], 14).unwrap();
    let e = icmp::error_flow(&p[..], &ip).unwrap();
    assert_eq!(e.vip, VipKey::v4(VIP, 80, IPPROTO_TCP));
    let direct = classify(&syn()[..], &T { flags: 0 }).balance.flow;
    assert_eq!(
        e.flow, direct,
        "the quoted flow reversed is the client's flow"
    );
    let v = classify(&p[..], &T { flags: 0 });
    assert_eq!(v.action, Action::Balance);
    assert!(v.balance.icmp);
    assert_eq!(v.event, Some(L4Event::IcmpForwarded));

    let reply6 = tcp(
        SMAC,
        DMAC,
        None,
        Ip::V6(VIP6),
        Ip::V6(CLIENT6),
        80,
        40000,
        Tcp::Ack,
    );
    let p6 = icmp6_too_big(SMAC, DMAC, CLIENT6, VIP6, ip_part(&reply6));
    let v = classify(&p6[..], &T { flags: 0 });
    assert_eq!(v.action, Action::Balance);
    assert_eq!(v.balance.flow.src, CLIENT6);
    assert_eq!(
        (v.balance.flow.src_port, v.balance.flow.dst_port),
        (40000, 80)
    );
    // A quote that did not leave the address the error came to is ignored.
    let p = icmp4_frag_needed(
        SMAC,
        DMAC,
        [198, 51, 100, 1],
        [10, 77, 0, 1],
        ip_part(&reply),
    );
    assert_eq!(classify(&p[..], &T { flags: 0 }).class, PacketClass::Other);
}

#[test]
fn the_hash_is_deterministic_and_spreads_ports() {
    let base = classify(&syn()[..], &T { flags: 0 }).balance.flow;
    assert_eq!(hash::flow_hash(&base, false), hash::flow_hash(&base, false));
    let m = 13u32;
    let mut count = [0u32; 13];
    for port in 0..13_000u16 {
        let f = FlowKey {
            src_port: port,
            ..base
        };
        count[hash::slot(&f, false, m) as usize] += 1;
    }
    for c in count {
        assert!((900..1100).contains(&c), "slot counts {count:?}");
    }
}

#[test]
fn token_bucket_refills_at_its_rate_up_to_its_burst() {
    let mut b = token::first(0, 3);
    assert_eq!(b.nanotokens, 2 * NANOTOKENS_PER_TOKEN);
    assert!(token::take(&mut b, 0, 10, 3));
    assert!(token::take(&mut b, 0, 10, 3));
    assert!(!token::take(&mut b, 0, 10, 3), "burst used up");
    // 10 per second: one token every 100 ms.
    assert!(!token::take(&mut b, 50_000_000, 10, 3));
    assert!(token::take(&mut b, 100_000_000, 10, 3));
    // A long idle refills to the burst, no more.
    let mut idle = TokenBucket {
        nanotokens: 0,
        last_ns: 0,
    };
    assert!(token::take(&mut idle, 3_600_000_000_000, 10, 3));
    assert_eq!(idle.nanotokens, 2 * NANOTOKENS_PER_TOKEN);
}

#[test]
fn encapsulation_matches_an_independent_ipip_frame() {
    for (frame, l2) in [
        (syn(), 14),
        (
            tcp(
                SMAC,
                DMAC,
                Some(9),
                Ip::V4(CLIENT),
                Ip::V4(VIP),
                40000,
                80,
                Tcp::Syn,
            ),
            18,
        ),
        (udp(SMAC, DMAC, Ip::V4(CLIENT), Ip::V4(VIP), 1, 80), 14),
    ] {
        let inner = encap::inner(&frame[..], l2, false).unwrap();
        let outer = Outer::V4 {
            src: [10, 77, 2, 1],
            dst: [10, 77, 2, 11],
        };
        let mut buf = vec![0u8; outer.len()];
        buf.extend_from_slice(&frame);
        encap::write(&mut buf[..], &inner, &outer, RMAC, DMAC).unwrap();
        assert_eq!(
            buf,
            ipip(&frame, DMAC, RMAC, [10, 77, 2, 1], [10, 77, 2, 11])
        );
    }
    let frame6 = tcp(
        SMAC,
        DMAC,
        None,
        Ip::V6(CLIENT6),
        Ip::V6(VIP6),
        40000,
        80,
        Tcp::Syn,
    );
    let inner = encap::inner(&frame6[..], 14, true).unwrap();
    let outer = Outer::V6 {
        src: VIP6,
        dst: CLIENT6,
    };
    let mut buf = vec![0u8; 40];
    buf.extend_from_slice(&frame6);
    encap::write(&mut buf[..], &inner, &outer, RMAC, DMAC).unwrap();
    assert_eq!(buf, ip6ip6(&frame6, DMAC, RMAC, VIP6, CLIENT6));
}

#[test]
fn ipv4_checksum_matches_rfc_1071_example() {
    // The header from RFC 1071's worked examples (checksum field zeroed).
    let h = [
        0x45, 0, 0, 0x73, 0, 0, 0x40, 0, 0x40, 0x11, 0, 0, 0xc0, 0xa8, 0, 1, 0xc0, 0xa8, 0, 0xc7,
    ];
    assert_eq!(encap::ipv4_checksum(&h), 0xb861);
}

struct Allow;

impl Sources for Allow {
    fn allowed(&self, addrs: &IpAddrs) -> bool {
        matches!(
            addrs,
            IpAddrs::V4 {
                src: [10, 77, 2, 1],
                ..
            }
        )
    }
}

#[test]
fn decap_plans_and_rewrites() {
    let tunnel = ipip(&syn(), DMAC, RMAC, [10, 77, 2, 1], [10, 77, 2, 11]);
    let Plan::Strip(s) = decap::plan(&tunnel[..], &Allow) else {
        panic!("an allowed tunnel is stripped");
    };
    assert_eq!((s.l2_len, s.outer_len, s.ether_type), (14, 20, 0x0800));
    let mut rest = tunnel[s.outer_len..].to_vec();
    decap::write_l2(&mut rest[..], &s).unwrap();
    assert_eq!(rest, decapsulated(&tunnel, 20, 0x0800));
    let other = ipip(&syn(), DMAC, RMAC, [10, 77, 2, 9], [10, 77, 2, 11]);
    assert_eq!(
        decap::plan(&other[..], &Allow),
        Plan::Pass(DecapEvent::NotAllowed)
    );
    assert_eq!(
        decap::plan(&syn()[..], &Allow),
        Plan::Pass(DecapEvent::Other)
    );
    assert_eq!(
        decap::plan(&tunnel[..14 + 20], &Allow),
        Plan::Pass(DecapEvent::Malformed)
    );
}

#[test]
fn vip_fragments_behind_a_long_extension_chain_are_dropped() {
    let syn6 = tcp(
        SMAC,
        DMAC,
        None,
        Ip::V6(CLIENT6),
        Ip::V6(VIP6),
        40000,
        80,
        Tcp::Syn,
    );
    let long = with_v6_ext(&syn6, 5, Some((100, false)));
    let v = classify(&long[..], &T { flags: 0 });
    assert_eq!((v.class, v.action), (PacketClass::Vip, Action::Drop));
    assert_eq!(v.event, Some(L4Event::ExtHeadersDropped));
    let short = with_v6_ext(&syn6, 2, Some((100, false)));
    assert_eq!(
        classify(&short[..], &T { flags: 0 }).event,
        Some(L4Event::FragmentDropped)
    );
}

#[test]
fn qinq_frames_are_encapsulated_and_decapsulated_with_both_tags() {
    let frame = with_tags(&syn(), &[(0x88a8, 100), (0x8100, 42)]);
    let v = classify(&frame[..], &T { flags: 0 });
    assert_eq!(v.action, Action::Balance);
    assert_eq!(v.balance.l2_len, 22);
    let inner = encap::inner(&frame[..], 22, false).unwrap();
    let outer = Outer::V4 {
        src: [10, 77, 2, 1],
        dst: [10, 77, 2, 11],
    };
    let mut buf = vec![0u8; outer.len()];
    buf.extend_from_slice(&frame);
    encap::write(&mut buf[..], &inner, &outer, RMAC, DMAC).unwrap();
    let tunnel = ipip(&frame, DMAC, RMAC, [10, 77, 2, 1], [10, 77, 2, 11]);
    assert_eq!(buf, tunnel);
    let Plan::Strip(s) = decap::plan(&tunnel[..], &Allow) else {
        panic!("an allowed QinQ tunnel is stripped");
    };
    assert_eq!((s.l2_len, s.outer_len), (22, 20));
    let mut rest = tunnel[s.outer_len..].to_vec();
    decap::write_l2(&mut rest[..], &s).unwrap();
    assert_eq!(rest, decapsulated(&tunnel, 20, 0x0800));
}

#[test]
fn the_outer_ipv4_header_has_df_set() {
    let inner = encap::inner(&syn()[..], 14, false).unwrap();
    let h = encap::ipv4_header([10, 77, 2, 1], [10, 77, 2, 11], 0, inner.ip_len).unwrap();
    assert_eq!(u16::from_be_bytes([h[4], h[5]]), 0, "ID 0");
    assert_eq!(u16::from_be_bytes([h[6], h[7]]), 0x4000, "DF, offset 0");
    let mut zeroed = h;
    zeroed[10] = 0;
    zeroed[11] = 0;
    assert_eq!(
        encap::ipv4_checksum(&zeroed),
        u16::from_be_bytes([h[10], h[11]])
    );
}

/// Applies a too-big reply to `frame` as the kernel does: trim to the
/// quote, grow in front, write.
fn apply(frame: &[u8], r: &toobig::Reply) -> Vec<u8> {
    let mut out = vec![0u8; r.headroom()];
    out.extend_from_slice(&frame[..r.l2_len + r.quote()]);
    toobig::write(&mut out[..], r).unwrap();
    out
}

fn big(vlan: Option<u16>, src: Ip, dst: Ip, payload: usize) -> Vec<u8> {
    tcp_with(
        SMAC,
        DMAC,
        vlan,
        src,
        dst,
        40000,
        80,
        Tcp::Ack,
        &vec![7u8; payload],
    )
}

#[test]
fn too_big_replies_match_independent_icmp_frames() {
    assert!(!toobig::exceeds(1480, 20, 1500));
    assert!(toobig::exceeds(1481, 20, 1500));
    assert!(toobig::exceeds(1481, 20, 0), "zero: the default MTU");
    assert!(!toobig::exceeds(8000, 40, 9000));
    for (frame, l2) in [
        (big(None, Ip::V4(CLIENT), Ip::V4(VIP), 1460), 14),
        (big(Some(9), Ip::V4(CLIENT), Ip::V4(VIP), 1460), 18),
    ] {
        let r = toobig::reply(&frame[..], l2, false, 1480).unwrap();
        assert_eq!(apply(&frame, &r), too_big_reply(&frame, 1480));
    }
    let qinq = with_tags(
        &big(None, Ip::V4(CLIENT), Ip::V4(VIP), 1460),
        &[(0x88a8, 5), (0x8100, 6)],
    );
    let r = toobig::reply(&qinq[..], 22, false, 1480).unwrap();
    assert_eq!(apply(&qinq, &r), too_big_reply(&qinq, 1480));
    let v6 = big(None, Ip::V6(CLIENT6), Ip::V6(VIP6), 1440);
    let r = toobig::reply(&v6[..], 14, true, 1460).unwrap();
    assert_eq!(apply(&v6, &r), too_big_reply(&v6, 1460));
    // No DF: no reply.
    let no_df = without_df(&big(None, Ip::V4(CLIENT), Ip::V4(VIP), 1460));
    assert_eq!(toobig::reply(&no_df[..], 14, false, 1480), None);
    // Shorter than the quote: no reply.
    let small = big(None, Ip::V4(CLIENT), Ip::V4(VIP), 10);
    assert_eq!(toobig::reply(&small[..], 14, false, 1480), None);
    // A frame to a group MAC: no reply from a multicast source MAC.
    let mut group = big(None, Ip::V4(CLIENT), Ip::V4(VIP), 1460);
    group[0] |= 1;
    assert_eq!(toobig::reply(&group[..], 14, false, 1480), None);
}

/// The fixture VIP with a conntrack table of one flow, `entry`, whose
/// service `serving` owns the fixture VIP and whose real `up` is up;
/// counts its conntrack lookups.
struct Ct {
    entry: Option<FlowState>,
    serving: u32,
    up: u32,
    banned: bool,
    lookups: core::cell::Cell<u32>,
}

impl Ct {
    fn new(entry: Option<FlowState>) -> Self {
        Self {
            entry,
            serving: 3,
            up: 9,
            banned: false,
            lookups: core::cell::Cell::new(0),
        }
    }
}

impl Tables for Ct {
    fn denied(&self, _: &IpAddrs) -> bool {
        false
    }
    fn banned(&self, _: &IpAddrs) -> bool {
        self.banned
    }
    fn vip(&self, key: &VipKey) -> Option<VipMeta> {
        T { flags: 0 }.vip(key)
    }
    fn is_l7_port(&self, _: &PortKey) -> bool {
        false
    }
    fn flow(&self, _: &FlowKey) -> Option<FlowState> {
        self.lookups.set(self.lookups.get() + 1);
        self.entry
    }
    fn serves(&self, id: u32, flow: &FlowKey) -> bool {
        id == self.serving && same_vip(&VipKey::v4(VIP, 80, IPPROTO_TCP), flow)
    }
    fn real_up(&self, id: u32) -> bool {
        id == self.up
    }
}

fn ack() -> Vec<u8> {
    flow_packet(Tcp::Ack)
}

const ENTRY: FlowState = FlowState {
    real: 9,
    service: 3,
};

#[test]
fn a_mid_flow_packet_with_a_vouched_entry_is_a_hit_without_the_vip_map() {
    let t = Ct::new(Some(ENTRY));
    let v = classify(&ack()[..], &t);
    assert_eq!((v.class, v.action), (PacketClass::Vip, Action::Balance));
    assert!(v.balance.hit && v.balance.ct_checked && v.balance.mid_flow);
    assert_eq!((v.balance.ct, v.balance.meta.id), (ENTRY, 3));
    assert_eq!(
        v.balance.flow,
        classify(&syn()[..], &T { flags: 0 }).balance.flow
    );
    assert_eq!(t.lookups.get(), 1);
    // UDP has no SYN: every packet looks conntrack up first.
    let u = udp(SMAC, DMAC, Ip::V4(CLIENT), Ip::V4(VIP), 1, 80);
    let t = Ct::new(None);
    let v = classify(&u[..], &t);
    assert_eq!(t.lookups.get(), 1);
    assert!(v.balance.ct_checked && !v.balance.hit);
}

#[test]
fn an_entry_the_classifier_cannot_vouch_for_goes_the_full_way_with_what_it_found() {
    // Another service's entry (the VIP's id changed or the VIP went), and
    // an entry whose real is down: not hits; the VIP map decides, and the
    // balancer judges the entry found as it did before conntrack came first.
    let other = FlowState {
        real: 9,
        service: 4,
    };
    let down = FlowState {
        real: 8,
        service: 3,
    };
    for entry in [other, down] {
        let v = classify(&ack()[..], &Ct::new(Some(entry)));
        assert_eq!((v.class, v.action), (PacketClass::Vip, Action::Balance));
        assert!(!v.balance.hit && v.balance.ct_checked);
        assert_eq!(v.balance.ct, entry);
        assert_eq!(v.balance.meta.ring_size, 7, "from the VIP map");
    }
    // No entry: the same, with nothing found.
    let v = classify(&ack()[..], &Ct::new(None));
    assert!(!v.balance.hit && v.balance.ct_checked);
    assert_eq!(v.balance.ct, FlowState::default());
    // A VIP port on an address that is no VIP: looked up, then passed.
    let p = tcp(
        SMAC,
        DMAC,
        None,
        Ip::V4(CLIENT),
        Ip::V4([10, 77, 0, 1]),
        40000,
        80,
        Tcp::Ack,
    );
    let v = classify(&p[..], &Ct::new(None));
    assert_eq!((v.class, v.action), (PacketClass::Other, Action::Pass));
}

#[test]
fn a_syn_and_an_icmp_error_never_take_the_conntrack_first_path() {
    let t = Ct::new(Some(ENTRY));
    let v = classify(&syn()[..], &t);
    assert_eq!(t.lookups.get(), 0, "a SYN goes to the live table");
    assert!(!v.balance.hit && !v.balance.ct_checked && !v.balance.mid_flow);
    let p = frag_needed_about_the_flow();
    let v = classify(&p[..], &t);
    assert_eq!(v.action, Action::Balance);
    assert!(v.balance.icmp && !v.balance.hit && !v.balance.ct_checked);
}

#[test]
fn a_banned_source_loses_its_established_flows_too() {
    let mut t = Ct::new(Some(ENTRY));
    t.banned = true;
    let v = classify(&ack()[..], &t);
    assert_eq!((v.class, v.action), (PacketClass::Banned, Action::Drop));
}

#[test]
fn same_vip_compares_address_port_protocol_and_family() {
    let flow = classify(&ack()[..], &Ct::new(None)).balance.flow;
    assert!(same_vip(&VipKey::v4(VIP, 80, IPPROTO_TCP), &flow));
    for other in [
        VipKey::v4([10, 77, 0, 101], 80, IPPROTO_TCP),
        VipKey::v4(VIP, 81, IPPROTO_TCP),
        VipKey::v4(VIP, 80, edge_common::IPPROTO_UDP),
        VipKey {
            family: edge_common::FAMILY_V6,
            ..VipKey::v4(VIP, 80, IPPROTO_TCP)
        },
        VipKey::default(),
    ] {
        assert!(!same_vip(&other, &flow), "{other:?}");
    }
}

#[test]
fn a_verdict_reused_across_packets_never_carries_a_hit_or_a_lookup_over() {
    // The kernel keeps one verdict per CPU and does not clear it: each
    // packet must set what the balancer reads.
    let mut v = Verdict::default();
    let hit = Ct::new(Some(ENTRY));
    classify_into(&ack()[..], &hit, &mut v);
    assert!(v.balance.hit && v.balance.ct_checked);
    classify_into(&syn()[..], &hit, &mut v);
    assert!(!v.balance.hit && !v.balance.ct_checked && !v.balance.mid_flow);
    assert_eq!(v.balance.meta.ring_size, 7, "the SYN's own meta");
    classify_into(&ack()[..], &hit, &mut v);
    let p = frag_needed_about_the_flow();
    classify_into(&p[..], &hit, &mut v);
    assert!(v.balance.icmp && !v.balance.hit && !v.balance.ct_checked);
    classify_into(&ack()[..], &hit, &mut v);
    classify_into(&ack()[..], &Ct::new(None), &mut v);
    assert!(!v.balance.hit && v.balance.ct_checked);
    assert_eq!(
        v.balance.ct,
        FlowState::default(),
        "nothing found this time"
    );
}
