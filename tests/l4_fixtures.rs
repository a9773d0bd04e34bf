//! The L4 fast path in the real kernel, Katran-style: each fixture is an
//! input frame, the action the XDP program must return and the exact frame
//! it must leave (built independently with etherparse), run through
//! BPF_PROG_TEST_RUN with the maps filled as the daemon fills them (from a
//! parsed configuration, through the same plan and Maglev code).
//!
//! Conntrack is per CPU, so the tests that depend on remembered flows pin
//! their thread to one CPU first.

#[path = "l4_fixtures/setup.rs"]
mod setup;

use edge_common::{DecapEvent, L4Event, PacketClass, REAL_FLAG_UP};
use edge_tests::l4packets::{
    Ip, Tcp, decapsulated, icmp4_echo, icmp4_frag_needed, icmp6_too_big, ip_part, ip6ip6, ipip,
    tcp, tcp_with, too_big_reply, udp, with_tags, with_v6_ext, without_df,
};
use edge_userspace::{
    dataplane::{Dataplane, decap::Decap},
    l4::plan,
};
use setup::*;
use std::net::IpAddr;

/// One Katran-style fixture.
struct Fixture {
    name: &'static str,
    input: Vec<u8>,
    action: u32,
    /// The frame expected out; `None`: the input, unchanged.
    output: Option<Vec<u8>>,
}

fn check(dp: &mut Dataplane, fixtures: &[Fixture]) {
    for f in fixtures {
        let (action, out) = run(dp, &f.input);
        assert_eq!(action, f.action, "{}: action", f.name);
        let want = f.output.as_ref().unwrap_or(&f.input);
        assert_eq!(&out, want, "{}: output frame", f.name);
    }
}

fn v4_tcp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, flags: Tcp) -> Vec<u8> {
    tcp(
        ROUTER_MAC,
        EDGE_MAC,
        None,
        Ip::V4(src),
        Ip::V4(dst),
        sport,
        dport,
        flags,
    )
}

fn v6_tcp(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16, flags: Tcp) -> Vec<u8> {
    tcp(
        ROUTER_MAC,
        EDGE_MAC,
        None,
        Ip::V6(src),
        Ip::V6(dst),
        sport,
        dport,
        flags,
    )
}

fn to_real1(frame: &[u8]) -> Vec<u8> {
    ipip(
        frame,
        EDGE_MAC,
        real_mac(IpAddr::from(REAL1)),
        SOURCE4,
        REAL1,
    )
}

fn to_real6(frame: &[u8]) -> Vec<u8> {
    ip6ip6(
        frame,
        EDGE_MAC,
        real_mac(IpAddr::from(REAL6)),
        SOURCE6,
        REAL6,
    )
}

/// Sets the "more fragments" bit of an untagged IPv4 frame.
fn more_fragments(mut frame: Vec<u8>) -> Vec<u8> {
    frame[14 + 6] |= 0x20;
    frame
}

/// Inserts an IPv6 fragment header (offset `offset` units of 8 bytes,
/// more-fragments `more`) after the fixed header of an untagged frame.
fn v6_fragment(frame: &[u8], offset: u16, more: bool) -> Vec<u8> {
    let next = frame[14 + 6];
    let mut out = frame[..14 + 40].to_vec();
    out[14 + 6] = 44;
    let payload = u16::from_be_bytes([out[18], out[19]]) + 8;
    out[18..20].copy_from_slice(&payload.to_be_bytes());
    let frag = (offset << 3) | u16::from(more);
    out.extend_from_slice(&[next, 0]);
    out.extend_from_slice(&frag.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 7]);
    out.extend_from_slice(&frame[14 + 40..]);
    out
}

#[test]
fn fixtures() {
    pin_cpu();
    let cfg = config(CONFIG);
    let (mut dp, _) = dataplane(&cfg);
    let syn4 = v4_tcp(CLIENT4, VIP4, 40000, 80, Tcp::Syn);
    let ack4 = v4_tcp(CLIENT4, VIP4, 40000, 80, Tcp::Ack);
    let syn6 = v6_tcp(CLIENT6, VIP6, 40000, 443, Tcp::Syn);
    let ack6 = v6_tcp(CLIENT6, VIP6, 40000, 443, Tcp::Ack);
    let udp4 = udp(
        ROUTER_MAC,
        EDGE_MAC,
        Ip::V4(CLIENT4),
        Ip::V4(VIP4),
        5353,
        53,
    );
    let vlan_syn = tcp(
        ROUTER_MAC,
        EDGE_MAC,
        Some(42),
        Ip::V4(CLIENT4),
        Ip::V4(VIP4),
        40001,
        80,
        Tcp::Syn,
    );
    // The reply the backend sent (VIP:80 → client:40000), as a router
    // quotes it back in its ICMP error.
    let reply4 = v4_tcp(VIP4, CLIENT4, 80, 40000, Tcp::Ack);
    let frag_needed = icmp4_frag_needed(ROUTER_MAC, EDGE_MAC, ROUTER4, VIP4, ip_part(&reply4));
    let reply6 = v6_tcp(VIP6, CLIENT6, 443, 40000, Tcp::Ack);
    let too_big = icmp6_too_big(ROUTER_MAC, EDGE_MAC, ROUTER6, VIP6, ip_part(&reply6));
    let other_reply = v4_tcp(HOST4, CLIENT4, 80, 40000, Tcp::Ack);
    let frag_needed_other =
        icmp4_frag_needed(ROUTER_MAC, EDGE_MAC, ROUTER4, HOST4, ip_part(&other_reply));
    let fixtures = vec![
        Fixture {
            name: "IPv4 TCP SYN to a VIP: IPIP to its backend",
            output: Some(to_real1(&syn4)),
            input: syn4.clone(),
            action: XDP_TX,
        },
        Fixture {
            name: "IPv4 TCP mid-flow to a VIP: same backend",
            output: Some(to_real1(&ack4)),
            input: ack4.clone(),
            action: XDP_TX,
        },
        Fixture {
            name: "IPv6 TCP SYN to a VIP: IP6IP6 to its backend",
            output: Some(to_real6(&syn6)),
            input: syn6.clone(),
            action: XDP_TX,
        },
        Fixture {
            name: "IPv6 TCP mid-flow to a VIP",
            output: Some(to_real6(&ack6)),
            input: ack6.clone(),
            action: XDP_TX,
        },
        Fixture {
            name: "UDP to a source-hashed VIP",
            output: Some(ipip(
                &udp4,
                EDGE_MAC,
                real_mac(IpAddr::from(REAL_DNS)),
                SOURCE4,
                REAL_DNS,
            )),
            input: udp4.clone(),
            action: XDP_TX,
        },
        Fixture {
            name: "VLAN-tagged SYN to a VIP: the tag stays",
            output: Some(to_real1(&vlan_syn)),
            input: vlan_syn.clone(),
            action: XDP_TX,
        },
        Fixture {
            name: "ICMP fragmentation needed about a VIP flow: to the flow's backend",
            output: Some(to_real1(&frag_needed)),
            input: frag_needed.clone(),
            action: XDP_TX,
        },
        Fixture {
            name: "ICMPv6 packet too big about a VIP flow: to the flow's backend",
            output: Some(to_real6(&too_big)),
            input: too_big.clone(),
            action: XDP_TX,
        },
        Fixture {
            name: "ICMP error about a non-VIP flow: passed",
            input: frag_needed_other,
            action: XDP_PASS,
            output: None,
        },
        Fixture {
            name: "ICMP echo to a VIP address: passed",
            input: icmp4_echo(ROUTER_MAC, EDGE_MAC, CLIENT4, VIP4),
            action: XDP_PASS,
            output: None,
        },
        Fixture {
            name: "first IPv4 fragment to a VIP: dropped",
            input: more_fragments(v4_tcp(CLIENT4, VIP4, 40002, 80, Tcp::Syn)),
            action: XDP_DROP,
            output: None,
        },
        Fixture {
            name: "later IPv6 fragment to a VIP address: dropped",
            input: v6_fragment(&v6_tcp(CLIENT6, VIP6, 40002, 443, Tcp::Syn), 100, false),
            action: XDP_DROP,
            output: None,
        },
        Fixture {
            name: "IPv4 fragment to another address: passed",
            input: more_fragments(v4_tcp(CLIENT4, HOST4, 40002, 80, Tcp::Syn)),
            action: XDP_PASS,
            output: None,
        },
        Fixture {
            name: "VIP address, port that is no service: passed unchanged",
            input: v4_tcp(CLIENT4, VIP4, 40000, 22, Tcp::Syn),
            action: XDP_PASS,
            output: None,
        },
        Fixture {
            name: "UDP to a TCP service's port: passed unchanged",
            input: udp(
                ROUTER_MAC,
                EDGE_MAC,
                Ip::V4(CLIENT4),
                Ip::V4(VIP4),
                5353,
                80,
            ),
            action: XDP_PASS,
            output: None,
        },
        Fixture {
            name: "L7 listener packet: passed unchanged",
            input: v4_tcp(CLIENT4, HOST4, 40000, 8080, Tcp::Syn),
            action: XDP_PASS,
            output: None,
        },
        Fixture {
            name: "denied source to a VIP: dropped",
            input: v4_tcp(DENIED4, VIP4, 40000, 80, Tcp::Syn),
            action: XDP_DROP,
            output: None,
        },
    ];
    check(&mut dp, &fixtures);

    let one = dp.l4().vip_counters(0).unwrap();
    // SYN, VLAN SYN, ICMP error (no new flow), and one mid-flow hit.
    assert_eq!(one.packets, 4, "service one's packets: {one:?}");
    assert_eq!(one.new_flows, 2, "service one's new flows");
    assert_eq!(one.lru_misses, 0);
    assert_eq!(
        one.bytes,
        (syn4.len() + ack4.len() + vlan_syn.len() + frag_needed.len()) as u64
    );
    let real = dp.l4().real_counters(1).unwrap();
    assert_eq!(real, one, "one backend: its counters are the service's");
    let events = dp.l4().events().unwrap();
    assert_eq!(events[L4Event::FragmentDropped.index() as usize], 2);
    assert_eq!(events[L4Event::IcmpForwarded.index() as usize], 2);
    assert_eq!(events[L4Event::SynBudgetDropped.index() as usize], 0);
}

#[test]
fn mid_flow_miss_counts_as_lru_miss_and_still_forwards() {
    pin_cpu();
    let cfg = config(CONFIG);
    let (mut dp, _) = dataplane(&cfg);
    let ack = v4_tcp(CLIENT4B, VIP4, 41000, 80, Tcp::Ack);
    check(
        &mut dp,
        &[Fixture {
            name: "mid-flow packet of a flow never seen",
            output: Some(to_real1(&ack)),
            input: ack,
            action: XDP_TX,
        }],
    );
    let c = dp.l4().vip_counters(0).unwrap();
    assert_eq!((c.new_flows, c.lru_misses), (0, 1));
}

#[test]
fn truncated_and_malformed_vip_packets_pass_unchanged() {
    let cfg = config(CONFIG);
    let (mut dp, _) = dataplane(&cfg);
    let syn = v4_tcp(CLIENT4, VIP4, 40000, 80, Tcp::Syn);
    // Cut inside the TCP header, IPv4 length made to match.
    let mut cut_tcp = syn[..14 + 20 + 10].to_vec();
    cut_tcp[16..18].copy_from_slice(&30u16.to_be_bytes());
    // IHL 4: an IPv4 header shorter than its minimum.
    let mut bad_ihl = syn.clone();
    bad_ihl[14] = 0x44;
    // Total length beyond the frame.
    let long = syn[..syn.len() - 3].to_vec();
    // An ICMP error whose quote is too short to hold ports.
    let reply = v4_tcp(VIP4, CLIENT4, 80, 40000, Tcp::Ack);
    let short_quote =
        icmp4_frag_needed(ROUTER_MAC, EDGE_MAC, ROUTER4, VIP4, &ip_part(&reply)[..22]);
    // An IPv6 header cut short.
    let v6 = v6_tcp(CLIENT6, VIP6, 40000, 443, Tcp::Syn);
    let cut6 = v6[..14 + 30].to_vec();
    let fixtures: Vec<Fixture> = [
        ("TCP header cut short", cut_tcp),
        ("IPv4 IHL below 5", bad_ihl),
        ("IPv4 total length beyond the frame", long),
        ("ICMP quote without ports", short_quote),
        ("IPv6 header cut short", cut6),
        ("Ethernet header only", syn[..14].to_vec()),
    ]
    .into_iter()
    .map(|(name, input)| Fixture {
        name,
        input,
        action: XDP_PASS,
        output: None,
    })
    .collect();
    check(&mut dp, &fixtures);
    assert_eq!(dp.l4().vip_counters(0).unwrap().packets, 0);
}

#[test]
fn same_flow_same_backend_and_table_changes_keep_existing_flows() {
    pin_cpu();
    let cfg = config(CONFIG);
    let (mut dp, plan) = dataplane(&cfg);
    let svc = &plan.services[3];
    let backend_of = |frame: &[u8]| ipip_backend(frame, &THREE);
    let flow = |port: u16, flags| v4_tcp(CLIENT4, VIP4_THREE, port, 80, flags);

    let (action, first) = run(&mut dp, &flow(50000, Tcp::Syn));
    assert_eq!(action, XDP_TX);
    let chosen = backend_of(&first);
    assert_eq!(
        first,
        ipip(
            &flow(50000, Tcp::Syn),
            EDGE_MAC,
            first[..6].try_into().unwrap(),
            SOURCE4,
            chosen
        )
    );
    let (_, again) = run(&mut dp, &flow(50000, Tcp::Syn));
    assert_eq!(again, first, "the same flow twice goes to the same backend");

    // Flows spread over all three backends.
    let mut seen = std::collections::HashSet::new();
    for port in 30000..30060 {
        let (_, out) = run(&mut dp, &flow(port, Tcp::Syn));
        seen.insert(backend_of(&out));
    }
    assert_eq!(seen.len(), 3, "60 flows reach every backend");

    // Drain the chosen backend (weight 0: out of the table, still up) by
    // publishing generation 1, as the controller does.
    let idx = THREE.iter().position(|b| *b == chosen).unwrap();
    let mut up = vec![true; 3];
    up[idx] = false;
    let ring = svc.ring(&up);
    {
        let mut m = dp.l4();
        m.write_ring(svc.id, 1, &ring).unwrap();
        m.set_vip(&svc.key, &svc.meta(1, plan::PrevTable::NONE))
            .unwrap();
    }
    let (_, kept) = run(&mut dp, &flow(50000, Tcp::Ack));
    assert_eq!(
        backend_of(&kept),
        chosen,
        "an existing flow keeps its backend"
    );
    for port in 20000..20060 {
        let (_, out) = run(&mut dp, &flow(port, Tcp::Syn));
        assert_ne!(
            backend_of(&out),
            chosen,
            "no new flow goes to a drained backend"
        );
    }
    // Down (health check failed): its flows are re-picked.
    let real = &svc.backends[idx];
    let mut def = plan::real_def(real.address, real_mac(real.address), 0, false);
    assert_eq!(def.flags & REAL_FLAG_UP, 0);
    dp.l4().set_real(real.id, &def).unwrap();
    let (_, moved) = run(&mut dp, &flow(50000, Tcp::Ack));
    assert_ne!(backend_of(&moved), chosen, "a down backend's flow moves");
    // And back: generation 2 is generation 0's table again.
    def.flags = REAL_FLAG_UP;
    dp.l4().set_real(real.id, &def).unwrap();
    let full = svc.ring(&[true; 3]);
    {
        let mut m = dp.l4();
        m.write_ring(svc.id, 2, &full).unwrap();
        m.set_vip(&svc.key, &svc.meta(2, plan::PrevTable::NONE))
            .unwrap();
        assert_eq!(m.ring_slot(svc.id, 2, 12345).unwrap(), full[12345]);
    }
}

#[test]
fn syn_budget_drops_a_sources_excess_new_flows() {
    pin_cpu();
    let text = CONFIG.replace(
        "  conntrack_capacity: 65536\n",
        "  conntrack_capacity: 65536\n  syn_budget: { rate: 1, burst: 2 }\n",
    );
    let cfg = config(&text);
    let (mut dp, _) = dataplane(&cfg);
    let syn = |src, port| v4_tcp(src, VIP4, port, 80, Tcp::Syn);
    let s1 = syn(CLIENT4, 42001);
    let s2 = syn(CLIENT4, 42002);
    let s3 = syn(CLIENT4, 42003);
    let other = syn(CLIENT4B, 42001);
    let ack1 = v4_tcp(CLIENT4, VIP4, 42001, 80, Tcp::Ack);
    check(
        &mut dp,
        &[
            Fixture {
                name: "first new flow: within budget",
                output: Some(to_real1(&s1)),
                input: s1,
                action: XDP_TX,
            },
            Fixture {
                name: "second new flow: within the burst",
                output: Some(to_real1(&s2)),
                input: s2,
                action: XDP_TX,
            },
            Fixture {
                name: "third new flow in the same second: over budget",
                input: s3,
                action: XDP_DROP,
                output: None,
            },
            Fixture {
                name: "an established flow is not charged",
                output: Some(to_real1(&ack1)),
                input: ack1,
                action: XDP_TX,
            },
            Fixture {
                name: "another source has its own budget",
                output: Some(to_real1(&other)),
                input: other,
                action: XDP_TX,
            },
        ],
    );
    let events = dp.l4().events().unwrap();
    assert_eq!(events[L4Event::SynBudgetDropped.index() as usize], 1);
}

#[test]
fn decap_object_has_its_maps() {
    let ebpf = aya::Ebpf::load(edge_userspace::dataplane::DECAP_OBJECT).expect("load object");
    for name in edge_common::DECAP_MAPS {
        assert!(
            ebpf.map(name).is_some(),
            "map {name} missing from the decap object"
        );
    }
    assert!(ebpf.program(edge_common::PROGRAM_DECAP).is_some());
}

#[test]
fn decap_strips_tunnels_from_allowed_sources_only() {
    let mut decap = Decap::load().expect("load the decap object (run as root)");
    decap
        .set_sources(&[IpAddr::from(SOURCE4), IpAddr::from(SOURCE6)])
        .unwrap();
    let syn4 = v4_tcp(CLIENT4, VIP4, 40000, 80, Tcp::Syn);
    let tunnel4 = to_real1(&syn4);
    let vlan_syn = tcp(
        ROUTER_MAC,
        EDGE_MAC,
        Some(7),
        Ip::V4(CLIENT4),
        Ip::V4(VIP4),
        40000,
        80,
        Tcp::Syn,
    );
    let vlan_tunnel = to_real1(&vlan_syn);
    let syn6 = v6_tcp(CLIENT6, VIP6, 40000, 443, Tcp::Syn);
    let tunnel6 = to_real6(&syn6);
    let stranger = ipip(
        &syn4,
        EDGE_MAC,
        [2, 0, 0, 0, 0xbb, 11],
        [10, 77, 2, 99],
        REAL1,
    );
    let qinq_tunnel = to_real1(&with_tags(&syn4, &[(0x88a8, 100), (0x8100, 42)]));
    let cut = tunnel4[..14 + 20].to_vec();
    let cases = [
        (
            "IPIP from edge: stripped",
            tunnel4.clone(),
            Some(decapsulated(&tunnel4, 20, 0x0800)),
        ),
        (
            "VLAN-tagged IPIP: stripped, tag kept",
            vlan_tunnel.clone(),
            Some(decapsulated(&vlan_tunnel, 20, 0x0800)),
        ),
        (
            "QinQ IPIP: stripped, both tags kept",
            qinq_tunnel.clone(),
            Some(decapsulated(&qinq_tunnel, 20, 0x0800)),
        ),
        (
            "IP6IP6 from edge: stripped",
            tunnel6.clone(),
            Some(decapsulated(&tunnel6, 40, 0x86dd)),
        ),
        ("IPIP from another source: unchanged", stranger, None),
        ("plain TCP: unchanged", syn4.clone(), None),
        ("IPIP with no inner packet: unchanged", cut, None),
    ];
    let program = decap.program().unwrap();
    for (name, input, want) in cases {
        let (action, out) = run_on(program, &input);
        assert_eq!(action, XDP_PASS, "{name}: action");
        assert_eq!(&out, want.as_ref().unwrap_or(&input), "{name}: output");
    }
    // The stripped frame carries exactly the client's packet.
    let (_, out) = run_on(program, &tunnel4);
    assert_eq!(ip_part(&out), ip_part(&syn4));
    let stats = decap.stats().unwrap();
    assert_eq!(stats[DecapEvent::Decapsulated.index() as usize].packets, 5);
    assert_eq!(stats[DecapEvent::NotAllowed.index() as usize].packets, 1);
    assert_eq!(stats[DecapEvent::Malformed.index() as usize].packets, 1);
}

/// The outer destination of an IPIP frame, checked to be one of `pool`
/// and to match the frame's destination MAC.
fn ipip_backend(frame: &[u8], pool: &[[u8; 4]]) -> [u8; 4] {
    assert_eq!(frame[14 + 9], 4, "an IPIP frame");
    let dst: [u8; 4] = frame[14 + 16..14 + 20].try_into().unwrap();
    assert!(
        pool.contains(&dst),
        "outer destination {dst:?} is a backend"
    );
    assert_eq!(
        frame[..6],
        real_mac(IpAddr::from(dst)),
        "MAC of that backend"
    );
    dst
}

#[test]
fn source_hashed_flows_keep_their_backend_after_a_table_change() {
    pin_cpu();
    let cfg = config(CONFIG);
    let (mut dp, plan) = dataplane(&cfg);
    let svc = &plan.services[4];
    assert_eq!(svc.name, "sticky");
    let flow = |port: u16, flags| v4_tcp(CLIENT4, VIP4_THREE, port, 443, flags);
    let (action, first) = run(&mut dp, &flow(50000, Tcp::Syn));
    assert_eq!(action, XDP_TX);
    let chosen = ipip_backend(&first, &STICKY);
    let (_, ack) = run(&mut dp, &flow(50000, Tcp::Ack));
    assert_eq!(ipip_backend(&ack, &STICKY), chosen);
    let (_, other) = run(&mut dp, &flow(50001, Tcp::Syn));
    assert_eq!(
        ipip_backend(&other, &STICKY),
        chosen,
        "source hashing: the client's other flows go to the same backend"
    );

    // Drain the client's backend: the client's source now hashes elsewhere.
    let idx = STICKY.iter().position(|b| *b == chosen).unwrap();
    let mut up = vec![true; 3];
    up[idx] = false;
    {
        let mut m = dp.l4();
        m.write_ring(svc.id, 1, &svc.ring(&up)).unwrap();
        m.set_vip(&svc.key, &svc.meta(1, plan::PrevTable::NONE))
            .unwrap();
    }
    let (_, new_flow) = run(&mut dp, &flow(50002, Tcp::Syn));
    let moved = ipip_backend(&new_flow, &STICKY);
    assert_ne!(moved, chosen, "a new flow goes to the new owner");
    for port in [50000, 50001] {
        let (_, out) = run(&mut dp, &flow(port, Tcp::Ack));
        assert_eq!(
            ipip_backend(&out, &STICKY),
            chosen,
            "established flow {port} keeps its backend after the client's new SYN"
        );
    }
    let (_, out) = run(&mut dp, &flow(50002, Tcp::Ack));
    assert_eq!(ipip_backend(&out, &STICKY), moved, "and the new flow stays");
}

/// The fixture's services "three" and "sticky" (one address, ports 80
/// and 443).
fn three_and_sticky(plan: &plan::Plan) -> (&plan::ServicePlan, &plan::ServicePlan) {
    let (three, sticky) = (&plan.services[3], &plan.services[4]);
    assert_eq!(
        (three.name.as_str(), sticky.name.as_str()),
        ("three", "sticky")
    );
    (three, sticky)
}

#[test]
fn a_conntrack_entry_of_another_service_is_not_used() {
    pin_cpu();
    let cfg = config(CONFIG);
    let (mut dp, plan) = dataplane(&cfg);
    let (three, sticky) = three_and_sticky(&plan);
    let flow = |flags| v4_tcp(CLIENT4, VIP4_THREE, 50100, 80, flags);
    let (action, syn) = run(&mut dp, &flow(Tcp::Syn));
    assert_eq!(action, XDP_TX);
    let chosen = ipip_backend(&syn, &THREE);
    let (_, ack) = run(&mut dp, &flow(Tcp::Ack));
    assert_eq!(
        ipip_backend(&ack, &THREE),
        chosen,
        "the flow's entry is used"
    );

    // A reload gives VIP 10.77.0.200:80 the id of another service, whose
    // table holds other reals: the flow's entry, written for the old id,
    // must not steer it.
    let mut meta = sticky.meta(0, plan::PrevTable::NONE);
    meta.flags = three.flags;
    dp.l4().set_vip(&three.key, &meta).unwrap();
    let (action, ack) = run(&mut dp, &flow(Tcp::Ack));
    assert_eq!(action, XDP_TX);
    let now = ipip_backend(&ack, &STICKY);
    assert!(
        STICKY.contains(&now),
        "re-picked from the service's own table"
    );
    // And the re-pick is remembered for the new service.
    let (_, again) = run(&mut dp, &flow(Tcp::Ack));
    assert_eq!(ipip_backend(&again, &STICKY), now);
}

#[test]
fn a_removed_vips_flows_stop_at_once_and_its_id_serves_only_its_new_vip() {
    pin_cpu();
    let cfg = config(CONFIG);
    let (mut dp, plan) = dataplane(&cfg);
    let (three, sticky) = three_and_sticky(&plan);
    assert_eq!(dp.l4().service_slot(three.id).unwrap(), three.key);
    let flow = |flags| v4_tcp(CLIENT4, VIP4_THREE, 50200, 80, flags);
    let (action, syn) = run(&mut dp, &flow(Tcp::Syn));
    assert_eq!(action, XDP_TX);
    let chosen = ipip_backend(&syn, &THREE);
    let (_, ack) = run(&mut dp, &flow(Tcp::Ack));
    assert_eq!(ipip_backend(&ack, &THREE), chosen, "a conntrack hit");

    // A reload removes the service: its established flow, whose entry is
    // still in conntrack, goes up the stack from the next packet on (a
    // hit no longer reads the VIP map, so its slot must say it is gone).
    let keep: Vec<_> = plan
        .services
        .iter()
        .filter(|s| s.key != three.key)
        .map(|s| s.key)
        .chain(plan.markers.iter().copied())
        .collect();
    dp.l4().retain_vips(&keep).unwrap();
    let ack = flow(Tcp::Ack);
    assert_eq!(run(&mut dp, &ack), (XDP_PASS, ack.clone()));
    assert_eq!(
        dp.l4().service_slot(three.id).unwrap(),
        edge_common::VipKey::default(),
        "the removed service's slot is cleared"
    );
    // A slot the VIP map does not back (as the old process of an upgrade
    // can write just after the hand-over) would make the flow a hit
    // again; the next reload clears it.
    dp.l4().write_service_slot(three.id, &three.key).unwrap();
    assert_eq!(run(&mut dp, &ack).0, XDP_TX, "a stale slot is trusted");
    dp.l4().retain_vips(&keep).unwrap();
    assert_eq!(run(&mut dp, &ack), (XDP_PASS, ack.clone()));
    dp.l4().write_service_slot(three.id, &three.key).unwrap();
    dp.l4().sync_services().unwrap();
    assert_eq!(run(&mut dp, &ack), (XDP_PASS, ack.clone()));

    // Its id goes to another VIP (sticky's address, port 8443): the old
    // flow's entry names that id, and still must not be used.
    let mut moved = sticky.meta(0, plan::PrevTable::NONE);
    moved.id = three.id;
    let key = edge_common::VipKey::v4(VIP4, 8443, edge_common::IPPROTO_TCP);
    {
        let mut m = dp.l4();
        m.write_ring(three.id, 0, &sticky.ring(&[true; 3])).unwrap();
        m.set_vip(&key, &moved).unwrap();
        assert_eq!(m.service_slot(three.id).unwrap(), key);
    }
    assert_eq!(run(&mut dp, &ack), (XDP_PASS, ack.clone()));
    // And the id's new VIP balances (a SYN, then its hit).
    let new = |flags| v4_tcp(CLIENT4, VIP4, 50201, 8443, flags);
    let (action, syn) = run(&mut dp, &new(Tcp::Syn));
    assert_eq!(action, XDP_TX);
    let picked = ipip_backend(&syn, &STICKY);
    let (_, ack) = run(&mut dp, &new(Tcp::Ack));
    assert_eq!(ipip_backend(&ack, &STICKY), picked);
}

#[test]
fn mid_flow_packets_without_a_flow_entry_get_a_second_chance_on_the_previous_table() {
    pin_cpu();
    let cfg = config(CONFIG);
    let (mut dp, plan) = dataplane(&cfg);
    let svc = &plan.services[3];
    assert_eq!(svc.name, "three");
    // A: the previous table's backend, B: the live one's, C: what the
    // previous half holds beyond its table (reached only through a wrong
    // modulus).
    let [a, b, _] = THREE;
    let (a_id, b_id, c_id) = (svc.backends[0].id, svc.backends[1].id, svc.backends[2].id);
    // The live half (generation 1) is B everywhere; the previous one
    // (generation 0) a table of 13 slots, all A, followed by C.
    const PREV_SIZE: u32 = 13;
    let mut prev_half = vec![c_id; edge_common::MAX_RING_SIZE as usize];
    prev_half[..PREV_SIZE as usize].fill(a_id);
    {
        let mut m = dp.l4();
        m.write_ring(svc.id, 0, &prev_half).unwrap();
        m.write_ring(svc.id, 1, &vec![b_id; svc.table_size as usize])
            .unwrap();
    }
    let later = edge_userspace::dataplane::monotonic_ns() + 3_600_000_000_000;
    let set_prev = |dp: &Dataplane, ring_size: u32, until_ns: u64| {
        let prev = plan::PrevTable {
            ring_size,
            until_ns,
        };
        dp.l4().set_vip(&svc.key, &svc.meta(1, prev)).unwrap();
    };
    let set_up = |dp: &Dataplane, addr: [u8; 4], up: bool| {
        let real = svc
            .backends
            .iter()
            .find(|r| r.address == IpAddr::from(addr))
            .unwrap();
        let def = plan::real_def(real.address, real_mac(real.address), 0, up);
        dp.l4().set_real(real.id, &def).unwrap();
    };
    let second_chances =
        |dp: &Dataplane| dp.l4().events().unwrap()[L4Event::SecondChance.index() as usize];
    let flow = |port: u16, flags| v4_tcp(CLIENT4, VIP4_THREE, port, 80, flags);
    let to = |frame: &[u8], real: [u8; 4]| {
        ipip(frame, EDGE_MAC, real_mac(IpAddr::from(real)), SOURCE4, real)
    };
    set_prev(&dp, PREV_SIZE, later);

    // (a) An ACK with no flow entry: the previous table's backend, once
    // counted; then the flow's entry keeps it there.
    let ack = flow(51000, Tcp::Ack);
    check(
        &mut dp,
        &[
            Fixture {
                name: "ACK without a flow entry: the previous table's backend",
                output: Some(to(&ack, a)),
                input: ack.clone(),
                action: XDP_TX,
            },
            Fixture {
                name: "the flow's next packet: remembered on the previous backend",
                output: Some(to(&ack, a)),
                input: ack.clone(),
                action: XDP_TX,
            },
        ],
    );
    assert_eq!(second_chances(&dp), 1, "one second chance, then conntrack");

    // (d) A SYN starts afresh on the live table.
    let syn = flow(51003, Tcp::Syn);
    check(
        &mut dp,
        &[Fixture {
            name: "SYN: the live table's backend, whatever the previous one says",
            output: Some(to(&syn, b)),
            input: syn,
            action: XDP_TX,
        }],
    );

    // (e) A previous size beyond a ring half is not trusted: a slot past
    // the half would be another service's.
    set_prev(&dp, edge_common::MAX_RING_SIZE + 1, later);
    let beyond = flow(51004, Tcp::Ack);
    check(
        &mut dp,
        &[Fixture {
            name: "previous table larger than a half: ignored",
            output: Some(to(&beyond, b)),
            input: beyond,
            action: XDP_TX,
        }],
    );

    // (b) Past its deadline the previous table is ignored.
    set_prev(&dp, PREV_SIZE, 0);
    let expired = flow(51001, Tcp::Ack);
    check(
        &mut dp,
        &[Fixture {
            name: "ACK after the second-chance window: the live table's backend",
            output: Some(to(&expired, b)),
            input: expired,
            action: XDP_TX,
        }],
    );

    // (c) A previous backend that is down is no second chance; the flow
    // remembered on it is re-picked from the live table too.
    set_prev(&dp, PREV_SIZE, later);
    set_up(&dp, a, false);
    let down = flow(51002, Tcp::Ack);
    check(
        &mut dp,
        &[
            Fixture {
                name: "ACK whose previous backend is down: the live table's backend",
                output: Some(to(&down, b)),
                input: down,
                action: XDP_TX,
            },
            Fixture {
                name: "a flow remembered on the previous backend, now down: re-picked",
                output: Some(to(&ack, b)),
                input: ack.clone(),
                action: XDP_TX,
            },
        ],
    );
    assert_eq!(
        second_chances(&dp),
        1,
        "no other packet took the previous table"
    );
}

/// A TCP ACK to `dst:dport` whose IP packet is `ip_len` bytes long.
fn sized(vlan: Option<u16>, src: Ip, dst: Ip, dport: u16, ip_len: usize) -> Vec<u8> {
    let headers = match dst {
        Ip::V4(_) => 20 + 20,
        Ip::V6(_) => 40 + 20,
    };
    let payload = vec![0x5a; ip_len - headers];
    tcp_with(
        ROUTER_MAC,
        EDGE_MAC,
        vlan,
        src,
        dst,
        40100,
        dport,
        Tcp::Ack,
        &payload,
    )
}

#[test]
fn oversized_vip_packets_are_answered_with_icmp_too_big() {
    pin_cpu();
    let cfg = config(CONFIG);
    let (mut dp, _) = dataplane(&cfg);
    // Egress MTU 1500 (the default): IPIP adds 20 bytes, IP6IP6 40.
    let fits4 = sized(None, Ip::V4(CLIENT4), Ip::V4(VIP4), 80, 1480);
    let big4 = sized(None, Ip::V4(CLIENT4), Ip::V4(VIP4), 80, 1481);
    let big4_vlan = sized(Some(42), Ip::V4(CLIENT4), Ip::V4(VIP4), 80, 1500);
    let fits6 = sized(None, Ip::V6(CLIENT6), Ip::V6(VIP6), 443, 1460);
    let big6 = sized(None, Ip::V6(CLIENT6), Ip::V6(VIP6), 443, 1461);
    let big4_no_df = without_df(&big4);
    check(
        &mut dp,
        &[
            Fixture {
                name: "IPv4 packet that fits the MTU once encapsulated",
                output: Some(to_real1(&fits4)),
                input: fits4.clone(),
                action: XDP_TX,
            },
            Fixture {
                name: "IPv4 packet one byte too big, DF set: fragmentation needed, MTU 1480",
                output: Some(too_big_reply(&big4, 1480)),
                input: big4.clone(),
                action: XDP_TX,
            },
            Fixture {
                name: "VLAN-tagged IPv4 packet too big: the reply keeps the tag",
                output: Some(too_big_reply(&big4_vlan, 1480)),
                input: big4_vlan,
                action: XDP_TX,
            },
            Fixture {
                name: "IPv4 packet too big without DF: dropped",
                input: big4_no_df,
                action: XDP_DROP,
                output: None,
            },
            Fixture {
                name: "IPv6 packet that fits the MTU once encapsulated",
                output: Some(to_real6(&fits6)),
                input: fits6.clone(),
                action: XDP_TX,
            },
            Fixture {
                name: "IPv6 packet one byte too big: packet too big, MTU 1460",
                output: Some(too_big_reply(&big6, 1460)),
                input: big6,
                action: XDP_TX,
            },
        ],
    );
    // Only the packets that fit were forwarded.
    let one = dp.l4().vip_counters(0).unwrap();
    assert_eq!(one.packets, 1, "service one forwarded only what fits");
    let events = dp.l4().events().unwrap();
    assert_eq!(events[L4Event::TooBigReplied.index() as usize], 3);
    assert_eq!(events[L4Event::TooBigDropped.index() as usize], 1);

    // A smaller egress MTU, as the daemon writes it from the interfaces.
    let mut settings = plan::plan(&cfg.l4, &Default::default(), edge_common::MAX_L4_SERVICES)
        .expect("plan")
        .settings;
    settings.mtu = 1400;
    dp.l4().set_settings(&settings).unwrap();
    let fits = sized(None, Ip::V4(CLIENT4), Ip::V4(VIP4), 80, 1380);
    let big = sized(None, Ip::V4(CLIENT4), Ip::V4(VIP4), 80, 1381);
    let big6 = sized(None, Ip::V6(CLIENT6), Ip::V6(VIP6), 443, 1361);
    check(
        &mut dp,
        &[
            Fixture {
                name: "MTU 1400: 1380 bytes fit",
                output: Some(to_real1(&fits)),
                input: fits.clone(),
                action: XDP_TX,
            },
            Fixture {
                name: "MTU 1400: 1381 bytes get fragmentation needed, MTU 1380",
                output: Some(too_big_reply(&big, 1380)),
                input: big,
                action: XDP_TX,
            },
            Fixture {
                name: "MTU 1400: IPv6 1361 bytes get packet too big, MTU 1360",
                output: Some(too_big_reply(&big6, 1360)),
                input: big6,
                action: XDP_TX,
            },
        ],
    );
}

#[test]
fn stacked_vlan_tags_are_parsed_and_checked_against_the_deny_list() {
    pin_cpu();
    let cfg = config(CONFIG);
    let (mut dp, _) = dataplane(&cfg);
    let syn = v4_tcp(CLIENT4, VIP4, 40010, 80, Tcp::Syn);
    let denied = v4_tcp(DENIED4, VIP4, 40010, 80, Tcp::Syn);
    let qinq = with_tags(&syn, &[(0x88a8, 100), (0x8100, 42)]);
    let stacked = with_tags(&syn, &[(0x8100, 100), (0x8100, 42)]);
    check(
        &mut dp,
        &[
            Fixture {
                name: "QinQ (802.1ad + 802.1Q) SYN to a VIP: IPIP, both tags kept",
                output: Some(to_real1(&qinq)),
                input: qinq.clone(),
                action: XDP_TX,
            },
            Fixture {
                name: "two stacked 802.1Q tags: IPIP, both tags kept",
                output: Some(to_real1(&stacked)),
                input: stacked,
                action: XDP_TX,
            },
            Fixture {
                name: "QinQ from a denied source: dropped",
                input: with_tags(&denied, &[(0x88a8, 100), (0x8100, 42)]),
                action: XDP_DROP,
                output: None,
            },
            Fixture {
                name: "stacked 802.1Q from a denied source to a host address: dropped",
                input: with_tags(
                    &v4_tcp(DENIED4, HOST4, 40010, 22, Tcp::Syn),
                    &[(0x8100, 100), (0x8100, 42)],
                ),
                action: XDP_DROP,
                output: None,
            },
            Fixture {
                name: "three tags (more than edge parses): dropped, whatever the source",
                input: with_tags(&syn, &[(0x88a8, 100), (0x8100, 42), (0x8100, 7)]),
                action: XDP_DROP,
                output: None,
            },
        ],
    );
    let classes = dp.stats().read().unwrap();
    assert_eq!(classes[PacketClass::Denied.index() as usize].packets, 2);
    assert_eq!(classes[PacketClass::Unparsed.index() as usize].packets, 1);
}

#[test]
fn ipv6_beyond_the_extension_header_walk_never_skips_the_fragment_check() {
    pin_cpu();
    let cfg = config(CONFIG);
    let (mut dp, _) = dataplane(&cfg);
    let syn6 = v6_tcp(CLIENT6, VIP6, 40020, 443, Tcp::Syn);
    let host6 = v6_tcp(CLIENT6, ROUTER6, 40020, 443, Tcp::Syn);
    let two = with_v6_ext(&syn6, 2, None);
    check(
        &mut dp,
        &[
            Fixture {
                name: "two destination-options headers: walked, balanced",
                output: Some(to_real6(&two)),
                input: two.clone(),
                action: XDP_TX,
            },
            Fixture {
                name: "a later fragment behind five extension headers to a VIP: dropped",
                input: with_v6_ext(&syn6, 5, Some((100, false))),
                action: XDP_DROP,
                output: None,
            },
            Fixture {
                name: "eight extension headers to a VIP: dropped",
                input: with_v6_ext(&syn6, 8, None),
                action: XDP_DROP,
                output: None,
            },
            Fixture {
                name: "eight extension headers to another address: passed",
                input: with_v6_ext(&host6, 8, None),
                action: XDP_PASS,
                output: None,
            },
        ],
    );
    let events = dp.l4().events().unwrap();
    assert_eq!(events[L4Event::ExtHeadersDropped.index() as usize], 2);
    assert_eq!(events[L4Event::FragmentDropped.index() as usize], 0);
}

#[test]
fn too_big_replies_are_rate_limited_per_cpu() {
    use edge_common::{TOO_BIG_BURST, TOO_BIG_RATE};
    pin_cpu();
    let cfg = config(CONFIG);
    let (mut dp, _) = dataplane(&cfg);
    let big = sized(None, Ip::V4(CLIENT4), Ip::V4(VIP4), 80, 1481);
    let sent = 2 * u64::from(TOO_BIG_BURST);
    let start = std::time::Instant::now();
    for _ in 0..sent {
        let (action, _) = run(&mut dp, &big);
        assert!(action == XDP_TX || action == XDP_DROP, "action {action}");
    }
    let elapsed = start.elapsed();
    let events = dp.l4().events().unwrap();
    let replied = events[L4Event::TooBigReplied.index() as usize];
    let limited = events[L4Event::TooBigRateLimited.index() as usize];
    assert_eq!(replied + limited, sent, "every packet answered or counted");
    // The burst, then what the rate refilled while the loop ran.
    let refilled = (elapsed.as_secs_f64() * f64::from(TOO_BIG_RATE)).ceil() as u64 + 1;
    assert!(
        replied >= u64::from(TOO_BIG_BURST).min(sent),
        "replied {replied}"
    );
    assert!(
        replied <= u64::from(TOO_BIG_BURST) + refilled,
        "replied {replied} in {elapsed:?}"
    );
}
