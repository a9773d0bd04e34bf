//! Fuzzing the XDP program in the real kernel, through BPF_PROG_TEST_RUN,
//! with the fixtures' VIPs configured: random frames, and valid VIP and
//! host packets mutated (truncated, bytes flipped, length fields broken,
//! IPv4 options and IPv6 extension chains inserted, VLAN tags stacked,
//! fragment bits set, padded).
//!
//! Every run must keep the invariants:
//! - the action is DROP, PASS or TX (never ABORTED; nothing here is
//!   configured for REDIRECT, which would be held to the same rules as TX);
//! - DROP and PASS leave the frame as it came;
//! - TX only for a packet to a VIP address, and what leaves is either the
//!   packet in an IPIP / IP6IP6 tunnel to a configured backend (outer
//!   header right, inner packet untouched, within the egress MTU), or an
//!   ICMP / ICMPv6 "too big" back to its sender with valid checksums;
//! - a well-formed IPv4 packet from the denied prefix is dropped, behind
//!   up to two VLAN tags, and so is any frame with a third tag (its source
//!   cannot be checked);
//! - the per-class counters grow by exactly one per run.
//!
//! The generator is seeded: a failure prints the seed and the case, and
//! `EDGE_FUZZ_SEED=<seed>` replays it; `EDGE_FUZZ_CASES` changes the
//! number of cases. The run stops early at [`TIME_BUDGET`] so that a slow
//! machine still finishes.

#[path = "l4_fixtures/setup.rs"]
mod setup;

use edge_common::{DEFAULT_MTU, PacketClass};
use edge_tests::l4packets::{
    Ip, Tcp, icmp4_frag_needed, icmp6_too_big, ip_part, l2_len, tcp_with, udp, with_tags,
};
use edge_userspace::dataplane::Dataplane;
use etherparse::SlicedPacket;
use setup::*;
use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

/// The seed when `EDGE_FUZZ_SEED` is not set.
const DEFAULT_SEED: u64 = 0x6564_6765_7864_7066;
/// Cases when `EDGE_FUZZ_CASES` is not set.
const DEFAULT_CASES: u64 = 50_000;
/// Wall-clock bound of the run, whatever the case count.
const TIME_BUDGET: Duration = Duration::from_secs(45);
/// Longest frame generated (BPF_PROG_TEST_RUN takes up to a page, less
/// head- and tailroom).
const MAX_FRAME: usize = 3_000;
/// XDP_REDIRECT, as BPF_PROG_TEST_RUN returns it.
const XDP_REDIRECT: u32 = 4;

/// Where generated packets come from and go to.
const SOURCES4: [[u8; 4]; 4] = [CLIENT4, CLIENT4B, DENIED4, ROUTER4];
const DESTS4: [([u8; 4], u16); 5] = [
    (VIP4, 80),
    (VIP4, 53),
    (VIP4_THREE, 80),
    (VIP4_THREE, 443),
    (HOST4, 8080),
];

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => {
            let v = v.trim();
            let parsed = match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.parse(),
            };
            parsed.unwrap_or_else(|e| panic!("{name}={v}: {e}"))
        }
        Err(_) => default,
    }
}

/// Packets of every class, summed over classes and CPUs.
fn packets_counted(dp: &Dataplane) -> u64 {
    let classes = dp.stats().read().expect("read the class counters");
    assert_eq!(classes.len(), PacketClass::ALL.len());
    classes.iter().map(|c| c.packets).sum()
}

#[test]
fn random_and_mutated_frames_keep_the_invariants() {
    let seed = env_u64("EDGE_FUZZ_SEED", DEFAULT_SEED);
    let cases = env_u64("EDGE_FUZZ_CASES", DEFAULT_CASES);
    eprintln!("xdp_fuzz: seed {seed:#x} (EDGE_FUZZ_SEED replays it), up to {cases} cases");
    pin_cpu();
    let cfg = config(CONFIG);
    let (mut dp, plan) = dataplane(&cfg);
    let vips: Vec<IpAddr> = plan.markers.iter().map(key_addr).collect();
    let reals: Vec<IpAddr> = plan
        .services
        .iter()
        .flat_map(|s| s.backends.iter().map(|b| b.address))
        .collect();
    let mut rng = fastrand::Rng::with_seed(seed);
    let start = Instant::now();
    let mut counted = packets_counted(&dp);
    let mut actions = [0u64; 5];
    let mut replies = 0u64;
    let mut runs = 0u64;
    while runs < cases && start.elapsed() < TIME_BUDGET {
        let (kind, frame) = generate(&mut rng);
        let (action, out) = run(&mut dp, &frame);
        let verdict = check(&frame, action, &out, &vips, &reals);
        let now = packets_counted(&dp);
        let verdict = verdict.and_then(|icmp| {
            if now == counted + 1 {
                Ok(icmp)
            } else {
                Err(format!("the class counters grew by {}", now - counted))
            }
        });
        match verdict {
            Ok(icmp) => replies += u64::from(icmp),
            Err(why) => panic!(
                "seed {seed:#x}, case {runs} ({kind}): action {action}: {why}\n input {}\n output {}",
                hex(&frame),
                hex(&out)
            ),
        }
        counted = now;
        actions[action.min(4) as usize] += 1;
        runs += 1;
    }
    let elapsed = start.elapsed();
    eprintln!(
        "xdp_fuzz: {runs} cases in {elapsed:.1?}: drop {}, pass {}, tx {} ({replies} ICMP too big)",
        actions[XDP_DROP as usize], actions[XDP_PASS as usize], actions[XDP_TX as usize],
    );
    // The generator must reach the balancing path, or the invariants on
    // what is transmitted were never exercised.
    assert!(
        actions[XDP_TX as usize] * 20 > runs,
        "fewer than 5% of the cases were transmitted"
    );
    assert!(replies > 0, "no case was answered with ICMP too big");
}

fn key_addr(key: &edge_common::VipKey) -> IpAddr {
    if key.family == edge_common::FAMILY_V4 {
        IpAddr::from([key.addr[0], key.addr[1], key.addr[2], key.addr[3]])
    } else {
        IpAddr::from(key.addr)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// ------------------------------------------------------------ generation

/// One frame, and a word on how it was made.
fn generate(rng: &mut fastrand::Rng) -> (String, Vec<u8>) {
    if rng.u8(..) < 26 {
        return ("random bytes".into(), random_frame(rng));
    }
    let (base, mut frame) = valid(rng);
    let mut kind = base.to_string();
    let mutations = match rng.u8(..4) {
        0 => 0,
        1 | 2 => 1,
        _ => rng.usize(2..5),
    };
    for _ in 0..mutations {
        let (name, next) = mutate(rng, frame);
        kind.push_str(", ");
        kind.push_str(name);
        frame = next;
    }
    frame.truncate(MAX_FRAME);
    if frame.len() < 14 {
        frame.resize(14, 0);
    }
    (kind, frame)
}

/// Random bytes, sometimes with an IP or VLAN EtherType so the parsers
/// get past the first check.
fn random_frame(rng: &mut fastrand::Rng) -> Vec<u8> {
    let len = rng.usize(14..200);
    let mut f: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
    let et: [u8; 2] = match rng.u8(..5) {
        0 => [0x08, 0x00],
        1 => [0x86, 0xdd],
        2 => [0x81, 0x00],
        3 => [0x88, 0xa8],
        _ => [f[12], f[13]],
    };
    f[12..14].copy_from_slice(&et);
    if len > 14 && rng.bool() {
        // An IP version nibble that matches the EtherType.
        f[14] = if et == [0x86, 0xdd] { 0x60 } else { 0x45 };
    }
    f
}

fn payload(rng: &mut fastrand::Rng) -> Vec<u8> {
    let len = match rng.u8(..4) {
        0 => 0,
        1 => rng.usize(1..64),
        2 => rng.usize(64..1400),
        // Around the point where encapsulation no longer fits the MTU.
        _ => rng.usize(1380..1500),
    };
    (0..len).map(|_| rng.u8(..)).collect()
}

/// A well-formed packet: to a VIP most of the time, else to the host.
fn valid(rng: &mut fastrand::Rng) -> (&'static str, Vec<u8>) {
    let flags = if rng.bool() { Tcp::Syn } else { Tcp::Ack };
    let sport = rng.u16(1024..);
    let vlan = if rng.u8(..4) == 0 {
        Some(rng.u16(1..4095))
    } else {
        None
    };
    match rng.u8(..10) {
        0..=3 => {
            let src = SOURCES4[rng.usize(..SOURCES4.len())];
            let (dst, dport) = DESTS4[rng.usize(..DESTS4.len())];
            let data = payload(rng);
            let f = tcp_with(
                ROUTER_MAC,
                EDGE_MAC,
                vlan,
                Ip::V4(src),
                Ip::V4(dst),
                sport,
                dport,
                flags,
                &data,
            );
            ("IPv4 TCP", f)
        }
        4 => {
            let src = SOURCES4[rng.usize(..SOURCES4.len())];
            let f = udp(ROUTER_MAC, EDGE_MAC, Ip::V4(src), Ip::V4(VIP4), sport, 53);
            ("IPv4 UDP", f)
        }
        5..=6 => {
            let dst = if rng.u8(..4) == 0 { ROUTER6 } else { VIP6 };
            let data = payload(rng);
            let f = tcp_with(
                ROUTER_MAC,
                EDGE_MAC,
                vlan,
                Ip::V6(CLIENT6),
                Ip::V6(dst),
                sport,
                443,
                flags,
                &data,
            );
            ("IPv6 TCP", f)
        }
        7 => {
            let (vip, port) = DESTS4[rng.usize(..4)];
            let reply = tcp_with(
                EDGE_MAC,
                ROUTER_MAC,
                None,
                Ip::V4(vip),
                Ip::V4(CLIENT4),
                port,
                sport,
                Tcp::Ack,
                &payload(rng),
            );
            let quote = ip_part(&reply);
            let cut = rng.usize(..=quote.len());
            let f = icmp4_frag_needed(ROUTER_MAC, EDGE_MAC, ROUTER4, vip, &quote[..cut]);
            ("ICMP fragmentation needed about a VIP flow", f)
        }
        8 => {
            let reply = tcp_with(
                EDGE_MAC,
                ROUTER_MAC,
                None,
                Ip::V6(VIP6),
                Ip::V6(CLIENT6),
                443,
                sport,
                Tcp::Ack,
                &payload(rng),
            );
            let quote = ip_part(&reply);
            let cut = rng.usize(..=quote.len().min(1200));
            let f = icmp6_too_big(ROUTER_MAC, EDGE_MAC, ROUTER6, VIP6, &quote[..cut]);
            ("ICMPv6 packet too big about a VIP flow", f)
        }
        _ => {
            let f = tcp_with(
                ROUTER_MAC,
                EDGE_MAC,
                vlan,
                Ip::V4(CLIENT4),
                Ip::V4(HOST4),
                sport,
                rng.u16(..),
                flags,
                &payload(rng),
            );
            ("IPv4 TCP to the host", f)
        }
    }
}

/// Offset of the IP header and its version, as the frame's tags say.
fn ip_at(f: &[u8]) -> Option<(usize, u8)> {
    let l2 = if f.len() >= 22 { l2_len(f) } else { 14 };
    let v = *f.get(l2)? >> 4;
    Some((l2, v))
}

fn mutate(rng: &mut fastrand::Rng, mut f: Vec<u8>) -> (&'static str, Vec<u8>) {
    match rng.u8(..9) {
        0 => {
            let len = rng.usize(14..=f.len().max(14));
            f.truncate(len);
            ("truncated", f)
        }
        1 => {
            for _ in 0..rng.usize(1..8) {
                let i = rng.usize(..f.len());
                f[i] ^= 1 << rng.u8(..8);
            }
            ("bits flipped", f)
        }
        2 => {
            if let Some((l2, v)) = ip_at(&f) {
                let field = if v == 4 { l2 + 2 } else { l2 + 4 };
                if f.len() >= field + 2 {
                    let len = match rng.u8(..3) {
                        0 => rng.u16(..),
                        1 => u16::from_be_bytes([f[field], f[field + 1]]).wrapping_add(1),
                        _ => u16::from_be_bytes([f[field], f[field + 1]]).wrapping_sub(1),
                    };
                    f[field..field + 2].copy_from_slice(&len.to_be_bytes());
                }
                if v == 4 && rng.bool() && f.len() > l2 {
                    f[l2] = 0x40 | rng.u8(..16);
                }
            }
            ("length field broken", f)
        }
        3 => ("IPv4 options", ipv4_options(rng, f)),
        4 => ("IPv6 extension headers", ipv6_ext(rng, f)),
        5 => {
            let n = rng.usize(1..4);
            let tags: Vec<(u16, u16)> = (0..n)
                .map(|_| {
                    let tpid = match rng.u8(..5) {
                        0..=1 => 0x8100,
                        2..=3 => 0x88a8,
                        _ => rng.u16(..),
                    };
                    (tpid, rng.u16(..))
                })
                .collect();
            // Tags go after an untagged header only: strip what is there.
            let l2 = if f.len() >= 22 { l2_len(&f) } else { 14 };
            let mut untagged = f[..12].to_vec();
            untagged.extend_from_slice(&f[l2 - 2..]);
            ("VLAN tags stacked", with_tags(&untagged, &tags))
        }
        6 => {
            if let Some((l2, 4)) = ip_at(&f)
                && f.len() >= l2 + 8
            {
                let frag = match rng.u8(..3) {
                    0 => 0x2000,
                    1 => rng.u16(1..0x2000),
                    _ => rng.u16(..),
                };
                f[l2 + 6..l2 + 8].copy_from_slice(&frag.to_be_bytes());
            }
            ("fragment bits", f)
        }
        7 => {
            let n = rng.usize(1..64);
            f.extend((0..n).map(|_| rng.u8(..)));
            ("padded", f)
        }
        _ => {
            // A different source, possibly denied.
            if let Some((l2, 4)) = ip_at(&f)
                && f.len() >= l2 + 16
            {
                let src = SOURCES4[rng.usize(..SOURCES4.len())];
                f[l2 + 12..l2 + 16].copy_from_slice(&src);
            }
            ("source changed", f)
        }
    }
}

/// Inserts random IPv4 options, fixing the header and total lengths most
/// of the time.
fn ipv4_options(rng: &mut fastrand::Rng, f: Vec<u8>) -> Vec<u8> {
    let Some((l2, 4)) = ip_at(&f) else {
        return f;
    };
    if f.len() < l2 + 20 || f[l2] & 0x0f != 5 {
        return f;
    }
    let words = rng.usize(1..=10);
    let mut out = f[..l2 + 20].to_vec();
    out.extend((0..words * 4).map(|_| rng.u8(..)));
    out.extend_from_slice(&f[l2 + 20..]);
    if rng.u8(..4) != 0 {
        out[l2] = 0x40 | (5 + words as u8);
        let total = u16::from_be_bytes([out[l2 + 2], out[l2 + 3]]).wrapping_add((words * 4) as u16);
        out[l2 + 2..l2 + 4].copy_from_slice(&total.to_be_bytes());
    }
    out
}

/// Inserts a random chain of IPv6 extension headers (known and unknown
/// types, random lengths), fixing the payload length most of the time.
fn ipv6_ext(rng: &mut fastrand::Rng, f: Vec<u8>) -> Vec<u8> {
    const TYPES: [u8; 9] = [0, 43, 44, 60, 51, 135, 139, 59, 253];
    let Some((l2, 6)) = ip_at(&f) else {
        return f;
    };
    if f.len() < l2 + 40 {
        return f;
    }
    let n = rng.usize(1..9);
    let types: Vec<u8> = (0..n)
        .map(|_| {
            if rng.u8(..8) == 0 {
                rng.u8(..)
            } else {
                TYPES[rng.usize(..TYPES.len())]
            }
        })
        .collect();
    let transport = f[l2 + 6];
    let mut chain = Vec::new();
    for (i, t) in types.iter().enumerate() {
        let next = types.get(i + 1).copied().unwrap_or(transport);
        let len = match *t {
            44 => 0,
            _ => rng.u8(..3),
        };
        let body = match *t {
            44 => 8,
            51 => (usize::from(len) + 2) * 4,
            _ => (usize::from(len) + 1) * 8,
        };
        let mut h = vec![0u8; body];
        h[0] = next;
        h[1] = len;
        for b in h.iter_mut().skip(2) {
            *b = rng.u8(..);
        }
        chain.extend_from_slice(&h);
    }
    let mut out = f[..l2 + 40].to_vec();
    out[l2 + 6] = types[0];
    if rng.u8(..4) != 0 {
        let payload =
            u16::from_be_bytes([out[l2 + 4], out[l2 + 5]]).wrapping_add(chain.len() as u16);
        out[l2 + 4..l2 + 6].copy_from_slice(&payload.to_be_bytes());
    }
    out.extend_from_slice(&chain);
    out.extend_from_slice(&f[l2 + 40..]);
    out
}

// ------------------------------------------------------------ invariants

/// The IP destination of `f`, read independently of the program: after up
/// to two VLAN tags, an IPv4 or IPv6 header.
fn ip_dst(f: &[u8]) -> Option<IpAddr> {
    let mut l2 = 14;
    let mut et = u16::from_be_bytes([*f.get(12)?, *f.get(13)?]);
    for _ in 0..2 {
        if et == 0x8100 || et == 0x88a8 {
            et = u16::from_be_bytes([*f.get(l2 + 2)?, *f.get(l2 + 3)?]);
            l2 += 4;
        }
    }
    match et {
        0x0800 => {
            let d: [u8; 4] = f.get(l2 + 16..l2 + 20)?.try_into().ok()?;
            Some(IpAddr::from(d))
        }
        0x86dd => {
            let d: [u8; 16] = f.get(l2 + 24..l2 + 40)?.try_into().ok()?;
            Some(IpAddr::from(d))
        }
        _ => None,
    }
}

/// The RFC 1071 sum of `b` (padded with a zero byte if odd), unfolded.
fn sum(b: &[u8]) -> u32 {
    b.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

fn folds_to_zero(mut s: u32) -> bool {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s == 0xffff
}

/// What the deny list must make of a frame, read independently of the
/// program.
#[derive(Debug, PartialEq)]
enum Deny {
    /// A well-formed IPv4 header from the denied prefix (203.0.113.0/24,
    /// as the fixtures' configuration says).
    Denied,
    /// More than two VLAN tags: the source is unknown.
    TooManyTags,
    /// Neither.
    Other,
}

fn deny(f: &[u8]) -> Deny {
    let tag = |et: u16| et == 0x8100 || et == 0x88a8;
    let Some(mut et) = f.get(12..14).map(|b| u16::from_be_bytes([b[0], b[1]])) else {
        return Deny::Other;
    };
    let mut l2 = 14;
    while tag(et) {
        if l2 == 22 {
            return Deny::TooManyTags;
        }
        match f.get(l2 + 2..l2 + 4) {
            Some(b) => et = u16::from_be_bytes([b[0], b[1]]),
            None => return Deny::Other,
        }
        l2 += 4;
    }
    let Some(h) = f.get(l2..l2 + 20) else {
        return Deny::Other;
    };
    let ihl = usize::from(h[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
    let well_formed =
        et == 0x0800 && h[0] >> 4 == 4 && ihl >= 20 && total >= ihl && l2 + total <= f.len();
    if well_formed && h[12..15] == DENIED4[..3] {
        Deny::Denied
    } else {
        Deny::Other
    }
}

/// Checks one run; `Ok(true)` for an ICMP too-big reply.
fn check(
    input: &[u8],
    action: u32,
    out: &[u8],
    vips: &[IpAddr],
    reals: &[IpAddr],
) -> Result<bool, String> {
    let d = deny(input);
    if d != Deny::Other && action != XDP_DROP {
        return Err(format!("{d:?} but not dropped"));
    }
    match action {
        XDP_DROP | XDP_PASS => {
            if out == input {
                Ok(false)
            } else {
                Err("a dropped or passed frame was changed".into())
            }
        }
        XDP_TX | XDP_REDIRECT => {
            let dst = ip_dst(input).ok_or("transmitted a frame without an IP destination")?;
            if !vips.contains(&dst) {
                return Err(format!("transmitted a packet to {dst}, not a VIP"));
            }
            transmitted(input, out, reals)
        }
        XDP_ABORTED => Err("XDP_ABORTED".into()),
        other => Err(format!("unknown action {other}")),
    }
}

fn transmitted(input: &[u8], out: &[u8], reals: &[IpAddr]) -> Result<bool, String> {
    SlicedPacket::from_ethernet(out).map_err(|e| format!("output does not parse: {e}"))?;
    let l2 = l2_len(input);
    if out.len() < l2 + 40 || l2_len(out) != l2 || out[12..l2] != input[12..l2] {
        return Err("the L2 header's tags or EtherType changed".into());
    }
    let mtu = DEFAULT_MTU as usize;
    let ip = &out[l2..];
    let inner = &input[l2..];
    match (ip[0] >> 4, ip[0] & 0x0f) {
        (4, 5) if ip[9] == 4 => {
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            let inner_len = usize::from(u16::from_be_bytes([inner[2], inner[3]]));
            let real = IpAddr::from([ip[16], ip[17], ip[18], ip[19]]);
            let checks = [
                (ip[12..16] == SOURCE4, "outer source is edge's"),
                (reals.contains(&real), "outer destination is a backend"),
                (
                    out[..6] == real_mac(real),
                    "destination MAC is the backend's",
                ),
                (ip[4..8] == [0, 0, 0x40, 0], "ID 0, DF set, no fragment"),
                (folds_to_zero(sum(&ip[..20])), "outer header checksum"),
                (
                    total == inner_len + 20,
                    "outer length is the inner's plus 20",
                ),
                (total <= mtu, "within the egress MTU"),
                (ip[20..] == *inner, "inner packet untouched"),
            ];
            first_failure(&checks).map(|()| false)
        }
        (6, _) if ip[6] == 41 => {
            let payload = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            let inner_len = usize::from(u16::from_be_bytes([inner[4], inner[5]])) + 40;
            let mut a = [0u8; 16];
            a.copy_from_slice(&ip[24..40]);
            let real = IpAddr::from(a);
            let checks = [
                (ip[8..24] == SOURCE6, "outer source is edge's"),
                (reals.contains(&real), "outer destination is a backend"),
                (
                    out[..6] == real_mac(real),
                    "destination MAC is the backend's",
                ),
                (payload == inner_len, "outer payload is the inner packet"),
                (payload + 40 <= mtu, "within the egress MTU"),
                (ip[40..] == *inner, "inner packet untouched"),
            ];
            first_failure(&checks).map(|()| false)
        }
        (4, 5) if ip[9] == 1 => {
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            let checks = [
                (ip[12..16] == inner[16..20], "from the VIP"),
                (ip[16..20] == inner[12..16], "to the client"),
                (
                    out[..6] == input[6..12] && out[6..12] == input[..6],
                    "MACs swapped",
                ),
                (folds_to_zero(sum(&ip[..20])), "IP header checksum"),
                (total == ip.len(), "IP length is the frame's"),
                (ip[20] == 3 && ip[21] == 4, "fragmentation needed"),
                (folds_to_zero(sum(&ip[20..])), "ICMP checksum"),
                (inner[6] & 0x40 != 0, "only for packets with DF"),
                (
                    inner.get(..ip.len() - 28) == Some(&ip[28..]),
                    "quotes the packet",
                ),
            ];
            first_failure(&checks).map(|()| true)
        }
        (6, _) if ip[6] == 58 => {
            let icmp = &ip[40..];
            let pseudo = sum(&ip[8..40]) + icmp.len() as u32 + 58;
            let checks = [
                (ip[8..24] == inner[24..40], "from the VIP"),
                (ip[24..40] == inner[8..24], "to the client"),
                (
                    out[..6] == input[6..12] && out[6..12] == input[..6],
                    "MACs swapped",
                ),
                (icmp[0] == 2 && icmp[1] == 0, "packet too big"),
                (folds_to_zero(pseudo + sum(icmp)), "ICMPv6 checksum"),
                (
                    inner.get(..icmp.len() - 8) == Some(&icmp[8..]),
                    "quotes the packet",
                ),
            ];
            first_failure(&checks).map(|()| true)
        }
        _ => Err("transmitted something that is neither a tunnel nor ICMP too big".into()),
    }
}

fn first_failure(checks: &[(bool, &str)]) -> Result<(), String> {
    match checks.iter().find(|(ok, _)| !ok) {
        Some((_, what)) => Err(format!("output: {what}: no")),
        None => Ok(()),
    }
}
