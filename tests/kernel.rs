//! The XDP program in the real kernel, through BPF_PROG_TEST_RUN: the
//! verifier accepts it, and each hand-built packet gets the expected action
//! and lands in the expected counter. Packets that pass must come out
//! byte-for-byte unchanged.

use aya::programs::{TestRun, TestRunOptions};
use edge_common::{ALL_MAPS, Counters, IPPROTO_TCP, IPPROTO_UDP, PacketClass, VipKey};
use edge_tests::packets::{Builder, L4, arp};
use edge_userspace::dataplane::{Dataplane, XDP_OBJECT};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

const CLIENT4: [u8; 4] = [192, 0, 2, 10];
const DENIED4: [u8; 4] = [203, 0, 113, 77];
const HOST4: [u8; 4] = [10, 0, 0, 1];
const VIP4: [u8; 4] = [10, 0, 0, 100];
const CLIENT6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];
const DENIED6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0x0b, 0xad, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7,
];
const HOST6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const VIP6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];
const L7_PORT: u16 = 8080;
const VIP_PORT: u16 = 443;

/// A loaded program with the fixtures' tables: 203.0.113.0/24 and
/// 2001:db8:bad::/48 denied, TCP 8080 an L7 port, VIP4/VIP6 TCP 443 and
/// VIP4 UDP 53 virtual services.
fn dataplane() -> Dataplane {
    let mut dp = Dataplane::load().expect("load the XDP object (run as root)");
    let deny = [
        "203.0.113.0/24".parse().unwrap(),
        "2001:db8:bad::/48".parse().unwrap(),
    ];
    dp.tables().set_deny(&deny).unwrap();
    dp.tables().set_l7_ports(&[L7_PORT]).unwrap();
    dp.tables()
        .set_vips(&[
            VipKey::v4(VIP4, VIP_PORT, IPPROTO_TCP),
            VipKey::v6(VIP6, VIP_PORT, IPPROTO_TCP),
            VipKey::v4(VIP4, 53, IPPROTO_UDP),
        ])
        .unwrap();
    dp
}

/// Runs `packet` once; checks the action, that a passed packet is unchanged,
/// and that exactly one packet of `class` (and its bytes) was counted.
fn expect(dp: &mut Dataplane, packet: &[u8], action: u32, class: PacketClass) {
    let before = dp.stats().read().unwrap();
    let mut out = vec![0u8; packet.len() + 256];
    let opts = TestRunOptions {
        data_in: Some(packet),
        data_out: Some(&mut out),
        ..TestRunOptions::default()
    };
    let result = dp
        .program()
        .unwrap()
        .test_run(opts)
        .expect("BPF_PROG_TEST_RUN");
    assert_eq!(
        result.return_value, action,
        "action for {class:?} packet {packet:02x?}"
    );
    if action == XDP_PASS {
        assert_eq!(
            &out[..result.data_size_out as usize],
            packet,
            "passed packet was modified"
        );
    }
    let after = dp.stats().read().unwrap();
    for c in PacketClass::ALL {
        let i = c.index() as usize;
        let want = if c == class {
            Counters {
                packets: before[i].packets + 1,
                bytes: before[i].bytes + packet.len() as u64,
            }
        } else {
            before[i]
        };
        assert_eq!(
            after[i], want,
            "counter of class {c:?} after a {class:?} packet"
        );
    }
}

fn cut(mut p: Vec<u8>, len: usize) -> Vec<u8> {
    p.truncate(len);
    p
}

#[test]
fn object_has_every_map_the_loader_expects() {
    let ebpf = aya::Ebpf::load(XDP_OBJECT).expect("load object");
    for name in ALL_MAPS {
        assert!(
            ebpf.map(name).is_some(),
            "map {name} missing from the object"
        );
    }
}

#[test]
fn ipv4_tcp_to_l7_port_passes_as_l7() {
    let mut dp = dataplane();
    let p = Builder::new().v4(CLIENT4, HOST4, L4::Tcp(40000, L7_PORT));
    expect(&mut dp, &p, XDP_PASS, PacketClass::L7);
}

#[test]
fn ipv4_udp_and_other_tcp_pass_as_other() {
    let mut dp = dataplane();
    expect(
        &mut dp,
        &Builder::new().v4(CLIENT4, HOST4, L4::Udp(5353, 53)),
        XDP_PASS,
        PacketClass::Other,
    );
    expect(
        &mut dp,
        &Builder::new().v4(CLIENT4, HOST4, L4::Tcp(40000, 22)),
        XDP_PASS,
        PacketClass::Other,
    );
    // UDP to the L7 port is not the listener's: L7 listeners are TCP.
    expect(
        &mut dp,
        &Builder::new().v4(CLIENT4, HOST4, L4::Udp(40000, L7_PORT)),
        XDP_PASS,
        PacketClass::Other,
    );
}

#[test]
fn ipv6_tcp_and_udp() {
    let mut dp = dataplane();
    expect(
        &mut dp,
        &Builder::new().v6(CLIENT6, HOST6, L4::Tcp(40000, L7_PORT)),
        XDP_PASS,
        PacketClass::L7,
    );
    expect(
        &mut dp,
        &Builder::new().v6(CLIENT6, HOST6, L4::Udp(40000, 53)),
        XDP_PASS,
        PacketClass::Other,
    );
}

#[test]
fn vip_destinations_are_classified_as_vip() {
    let mut dp = dataplane();
    expect(
        &mut dp,
        &Builder::new().v4(CLIENT4, VIP4, L4::Tcp(40000, VIP_PORT)),
        XDP_PASS,
        PacketClass::Vip,
    );
    expect(
        &mut dp,
        &Builder::new().v4(CLIENT4, VIP4, L4::Udp(40000, 53)),
        XDP_PASS,
        PacketClass::Vip,
    );
    expect(
        &mut dp,
        &Builder::new().v6(CLIENT6, VIP6, L4::Tcp(40000, VIP_PORT)),
        XDP_PASS,
        PacketClass::Vip,
    );
    // Same address, other port or protocol: not the service.
    expect(
        &mut dp,
        &Builder::new().v4(CLIENT4, VIP4, L4::Tcp(40000, 80)),
        XDP_PASS,
        PacketClass::Other,
    );
    expect(
        &mut dp,
        &Builder::new().v4(CLIENT4, VIP4, L4::Udp(40000, VIP_PORT)),
        XDP_PASS,
        PacketClass::Other,
    );
}

#[test]
fn vlan_tagged_packets_are_parsed() {
    let mut dp = dataplane();
    let b = Builder::new().vlan(42);
    expect(
        &mut dp,
        &b.v4(CLIENT4, HOST4, L4::Tcp(40000, L7_PORT)),
        XDP_PASS,
        PacketClass::L7,
    );
    expect(
        &mut dp,
        &b.v6(CLIENT6, HOST6, L4::Tcp(40000, L7_PORT)),
        XDP_PASS,
        PacketClass::L7,
    );
    expect(
        &mut dp,
        &b.v4(DENIED4, HOST4, L4::Tcp(40000, L7_PORT)),
        XDP_DROP,
        PacketClass::Denied,
    );
}

#[test]
fn ipv4_options_are_skipped() {
    let mut dp = dataplane();
    // Record Route with room for two addresses, padded to 12 bytes; and the
    // 40-byte maximum of NOPs.
    let rr = [7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    for opts in [&rr[..], &[1u8; 40][..]] {
        let p = Builder::new()
            .ipv4_options(opts)
            .v4(CLIENT4, HOST4, L4::Tcp(40000, L7_PORT));
        assert_eq!(
            p[14] & 0x0f,
            5 + (opts.len() / 4) as u8,
            "IHL covers the options"
        );
        expect(&mut dp, &p, XDP_PASS, PacketClass::L7);
    }
}

#[test]
fn non_ip_passes_as_other() {
    let mut dp = dataplane();
    expect(&mut dp, &arp(), XDP_PASS, PacketClass::Other);
}

#[test]
fn denied_sources_are_dropped() {
    let mut dp = dataplane();
    expect(
        &mut dp,
        &Builder::new().v4(DENIED4, HOST4, L4::Tcp(40000, L7_PORT)),
        XDP_DROP,
        PacketClass::Denied,
    );
    expect(
        &mut dp,
        &Builder::new().v4(DENIED4, HOST4, L4::Udp(40000, 53)),
        XDP_DROP,
        PacketClass::Denied,
    );
    expect(
        &mut dp,
        &Builder::new().v6(DENIED6, HOST6, L4::Tcp(40000, L7_PORT)),
        XDP_DROP,
        PacketClass::Denied,
    );
    // Neighbours just outside the prefixes pass.
    expect(
        &mut dp,
        &Builder::new().v4([203, 0, 114, 1], HOST4, L4::Tcp(40000, L7_PORT)),
        XDP_PASS,
        PacketClass::L7,
    );
    let mut near6 = DENIED6;
    near6[5] = 0xae;
    expect(
        &mut dp,
        &Builder::new().v6(near6, HOST6, L4::Tcp(40000, L7_PORT)),
        XDP_PASS,
        PacketClass::L7,
    );
    // A denied source is dropped even when its transport header is cut.
    let mut p = cut(
        Builder::new().v4(DENIED4, HOST4, L4::Tcp(40000, L7_PORT)),
        14 + 20 + 4,
    );
    fix_lengths(&mut p);
    expect(&mut dp, &p, XDP_DROP, PacketClass::Denied);
}

#[test]
fn deny_list_updates_take_effect() {
    let mut dp = dataplane();
    let p = Builder::new().v4(DENIED4, HOST4, L4::Tcp(40000, L7_PORT));
    expect(&mut dp, &p, XDP_DROP, PacketClass::Denied);
    dp.tables().set_deny(&[]).unwrap();
    expect(&mut dp, &p, XDP_PASS, PacketClass::L7);
}

/// Bans drop a source's packets for edge's listeners and VIPs; the ban
/// word, which lets the program skip the ban maps while no ban exists,
/// goes on with the first ban and off with the last.
#[test]
fn bans_drop_until_lifted_and_the_ban_word_follows_them() {
    let mut dp = dataplane();
    let web4 = Builder::new().v4(CLIENT4, HOST4, L4::Tcp(40000, L7_PORT));
    let web6 = Builder::new().v6(CLIENT6, HOST6, L4::Tcp(40000, L7_PORT));
    let vip4 = Builder::new().v4(CLIENT4, VIP4, L4::Udp(40000, 53));
    assert!(!dp.tables().ban_word().unwrap(), "no ban yet");
    expect(&mut dp, &web4, XDP_PASS, PacketClass::L7);

    let until = edge_userspace::dataplane::monotonic_ns() + 600_000_000_000;
    let client4 = std::net::IpAddr::from(CLIENT4);
    let client6 = std::net::IpAddr::from(CLIENT6);
    dp.tables().ban(client4, until).unwrap();
    assert!(dp.tables().ban_word().unwrap());
    expect(&mut dp, &web4, XDP_DROP, PacketClass::Banned);
    expect(&mut dp, &vip4, XDP_DROP, PacketClass::Banned);
    dp.tables().ban(client6, until).unwrap();
    expect(&mut dp, &web6, XDP_DROP, PacketClass::Banned);

    // Lifting one ban keeps the word (the other still stands).
    dp.tables().unban(client4).unwrap();
    assert!(dp.tables().ban_word().unwrap(), "one ban is left");
    expect(&mut dp, &web4, XDP_PASS, PacketClass::L7);
    expect(&mut dp, &web6, XDP_DROP, PacketClass::Banned);

    // Lifting the last clears it; lifting an absent ban changes nothing.
    dp.tables().unban(client6).unwrap();
    assert!(!dp.tables().ban_word().unwrap(), "no ban is left");
    dp.tables().unban(client6).unwrap();
    expect(&mut dp, &web6, XDP_PASS, PacketClass::L7);

    // An expired ban is ignored by the program before the sweep takes it.
    let past = edge_userspace::dataplane::monotonic_ns().saturating_sub(1);
    dp.tables().ban(client4, past).unwrap();
    assert!(dp.tables().ban_word().unwrap());
    expect(&mut dp, &web4, XDP_PASS, PacketClass::L7);
}

#[test]
fn truncated_headers_pass_as_malformed_at_every_layer() {
    let mut dp = dataplane();
    let v4 = Builder::new().v4(CLIENT4, HOST4, L4::Tcp(40000, L7_PORT));
    let v4_udp = Builder::new().v4(CLIENT4, HOST4, L4::Udp(40000, 53));
    let v4_opts =
        Builder::new()
            .ipv4_options(&[1u8; 8])
            .v4(CLIENT4, HOST4, L4::Tcp(40000, L7_PORT));
    let v6 = Builder::new().v6(CLIENT6, HOST6, L4::Tcp(40000, L7_PORT));
    let vlan = Builder::new()
        .vlan(7)
        .v4(CLIENT4, HOST4, L4::Tcp(40000, L7_PORT));
    // The kernel will not test-run a frame shorter than an Ethernet header,
    // so the shortest case is a VLAN tag cut in half (the host unit tests
    // cover shorter ones).
    // `fix`: rewrite the IP length field to match the cut, so that the
    // parser meets the cut header rather than an inconsistent length.
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("VLAN tag", cut(vlan, 16), false),
        ("IPv4 fixed header", cut(v4.clone(), 14 + 10), false),
        ("IPv4 options", cut(v4_opts, 14 + 24), false),
        (
            "IPv4 total length beyond the frame",
            cut(v4.clone(), v4.len() - 2),
            false,
        ),
        ("TCP header", cut(v4.clone(), 14 + 20 + 10), true),
        ("UDP header", cut(v4_udp, 14 + 20 + 4), true),
        ("IPv6 fixed header", cut(v6.clone(), 14 + 30), false),
        (
            "IPv6 payload length beyond the frame",
            cut(v6.clone(), v6.len() - 1),
            false,
        ),
        ("TCP header over IPv6", cut(v6, 14 + 40 + 12), true),
    ];
    for (what, mut p, fix) in cases {
        if fix {
            fix_lengths(&mut p);
        }
        eprintln!("case: truncated {what}");
        expect(&mut dp, &p, XDP_PASS, PacketClass::Malformed);
    }
}

/// Rewrites the IPv4 total length / IPv6 payload length to the bytes that
/// are actually there, when the IP header itself is complete.
fn fix_lengths(p: &mut [u8]) {
    let l3 = if p.len() >= 14 && p[12..14] == [0x81, 0x00] {
        18
    } else {
        14
    };
    if p.len() < l3 + 1 {
        return;
    }
    match p[l3] >> 4 {
        4 => {
            let ihl = usize::from(p[l3] & 0x0f) * 4;
            if p.len() >= l3 + ihl && p.len() - l3 >= 20 {
                let total = (p.len() - l3) as u16;
                p[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
            }
        }
        6 if p.len() >= l3 + 40 => {
            let payload = (p.len() - l3 - 40) as u16;
            p[l3 + 4..l3 + 6].copy_from_slice(&payload.to_be_bytes());
        }
        _ => {}
    }
}
