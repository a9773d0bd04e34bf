//! Hand-built packets for the kernel tests, made with etherparse so the
//! fixtures do not share code with the parser they check.

use etherparse::{IpHeaders, Ipv4Header, Ipv4Options, PacketBuilder, VlanId, ip_number};

/// Source MAC of every fixture.
pub const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
/// Destination MAC of every fixture.
pub const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];
const TTL: u8 = 64;
const PAYLOAD: &[u8] = b"edge";

/// A transport for [`Builder`].
#[derive(Clone, Copy, Debug)]
pub enum L4 {
    /// TCP SYN from `src` to `dst` port.
    Tcp(u16, u16),
    /// UDP from `src` to `dst` port.
    Udp(u16, u16),
}

/// Builds one Ethernet frame.
#[derive(Clone, Debug, Default)]
pub struct Builder {
    vlan: Option<u16>,
    ipv4_options: Option<Vec<u8>>,
}

impl Builder {
    /// A builder for untagged frames without IP options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one 802.1Q tag.
    pub fn vlan(mut self, id: u16) -> Self {
        self.vlan = Some(id);
        self
    }

    /// Adds IPv4 options (a multiple of 4 bytes, at most 40).
    pub fn ipv4_options(mut self, options: &[u8]) -> Self {
        self.ipv4_options = Some(options.to_vec());
        self
    }

    /// An IPv4 packet.
    pub fn v4(&self, src: [u8; 4], dst: [u8; 4], l4: L4) -> Vec<u8> {
        let mut ip = Ipv4Header::new(0, TTL, ip_number::TCP, src, dst).expect("valid IPv4 header");
        if let Some(opts) = &self.ipv4_options {
            ip.options = Ipv4Options::try_from(opts.as_slice()).expect("valid IPv4 options");
        }
        self.finish(IpHeaders::Ipv4(ip, Default::default()), l4)
    }

    /// An IPv6 packet.
    pub fn v6(&self, src: [u8; 16], dst: [u8; 16], l4: L4) -> Vec<u8> {
        let ip = etherparse::Ipv6Header {
            hop_limit: TTL,
            source: src,
            destination: dst,
            ..Default::default()
        };
        self.finish(IpHeaders::Ipv6(ip, Default::default()), l4)
    }

    fn finish(&self, ip: IpHeaders, l4: L4) -> Vec<u8> {
        let eth = PacketBuilder::ethernet2(SRC_MAC, DST_MAC);
        let ip_step = match self.vlan {
            Some(id) => eth
                .single_vlan(VlanId::try_new(id).expect("VLAN id below 4096"))
                .ip(ip),
            None => eth.ip(ip),
        };
        let mut out = Vec::new();
        let written = match l4 {
            L4::Tcp(s, d) => ip_step.tcp(s, d, 1, 64240).syn().write(&mut out, PAYLOAD),
            L4::Udp(s, d) => ip_step.udp(s, d).write(&mut out, PAYLOAD),
        };
        written.expect("writing to a Vec cannot fail");
        out
    }
}

/// An ARP request (not IP).
pub fn arp() -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&[0xff; 6]);
    p.extend_from_slice(&SRC_MAC);
    p.extend_from_slice(&[0x08, 0x06]);
    p.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    p.extend_from_slice(&SRC_MAC);
    p.extend_from_slice(&[10, 0, 0, 1]);
    p.extend_from_slice(&[0; 6]);
    p.extend_from_slice(&[10, 0, 0, 2]);
    p
}
