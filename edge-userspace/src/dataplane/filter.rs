//! The XDP program's pre-filter words ([`MAP_FILTER`], laid out in
//! [`edge_common::filter`]): for each source /16 and each destination
//! port, whether the deny list, the VIPs or the L7 ports could match, so
//! that most packets skip those lookups; and the ban word, which says
//! whether any ban exists (see [`super::Tables::ban`]).
//!
//! The map's writers ([`super::Tables`] for the deny list and the L7
//! ports; [`super::L4Maps`] for the VIPs) share one handle. They keep the
//! contract of `edge_common::filter`: a bit is set before the entry it
//! stands for is written, and cleared only after that entry is gone, by
//! recomputing one kind of bit over a whole region from what the map then
//! holds. A stale set bit only costs a lookup; a clear bit with an entry
//! behind it would skip the entry, so none is ever left. A word is read,
//! changed and written back under this process's lock; only the edge that
//! owns the kernel side writes these (the deny list, the L7 ports and the
//! VIPs are written after an upgrade's hand-over), so no other process's
//! write can be lost between the read and the write.

use super::{DataplaneError, maps::take};
use aya::{
    Ebpf,
    maps::{Array, MapData},
};
use edge_common::{
    IPPROTO_TCP, IPPROTO_UDP, MAP_FILTER, VipKey,
    filter::{
        self, PORT_BITS, PORT_L7_TCP, PORT_VIP_TCP, PORT_VIP_UDP, SOURCE_BITS, SOURCE_DENY, Slot,
    },
};
use ipnet::IpNet;
use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

/// Bits to set or keep, by word index.
pub type Bits = BTreeMap<u32, u64>;

/// A range of words and one kind of bit in each of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kind {
    /// First word.
    first: u32,
    /// Number of words.
    words: u32,
    /// The kind's bits in every slot of a word.
    mask: u64,
}

/// The deny bits of every source slot, both families.
pub const DENY: Kind = Kind {
    first: filter::SOURCE_V4,
    words: 2 * filter::SOURCE_WORDS,
    mask: filter::every_slot(SOURCE_DENY, SOURCE_BITS),
};
/// The VIP bits (TCP and UDP) of every port slot.
pub const VIP: Kind = Kind {
    first: filter::PORTS,
    words: filter::PORT_WORDS,
    mask: filter::every_slot(PORT_VIP_TCP | PORT_VIP_UDP, PORT_BITS),
};
/// The L7 bits of every port slot.
pub const L7: Kind = Kind {
    first: filter::PORTS,
    words: filter::PORT_WORDS,
    mask: filter::every_slot(PORT_L7_TCP, PORT_BITS),
};

fn map_err(source: aya::maps::MapError) -> DataplaneError {
    DataplaneError::Map {
        map: MAP_FILTER,
        source,
    }
}

/// The filter map, behind the lock its writers share.
#[derive(Clone)]
pub struct SharedFilter(Arc<Mutex<Filter>>);

impl SharedFilter {
    /// Takes the map from `ebpf`.
    pub(super) fn take(ebpf: &mut Ebpf) -> Result<Self, DataplaneError> {
        Ok(Self(Arc::new(Mutex::new(Filter {
            map: take(ebpf, MAP_FILTER)?,
        }))))
    }

    /// The map, locked (held only for its own reads and writes).
    pub fn lock(&self) -> MutexGuard<'_, Filter> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Reads and writes of the filter words.
pub struct Filter {
    map: Array<MapData, u64>,
}

impl Filter {
    /// Sets `bits` (on top of what each word holds): before the entries
    /// they stand for are written.
    pub fn set(&mut self, bits: &Bits) -> Result<(), DataplaneError> {
        for (&index, &mask) in bits {
            let word = self.map.get(&index, 0).map_err(map_err)?;
            if word & mask != mask {
                self.map.set(index, word | mask, 0).map_err(map_err)?;
            }
        }
        Ok(())
    }

    /// Writes the ban word whole ([`filter::BANS`]): `true` while the ban
    /// maps may hold an entry. Never a read-modify-write (see the word's
    /// rule in `edge_common::filter`).
    pub fn set_bans(&mut self, present: bool) -> Result<(), DataplaneError> {
        self.map
            .set(filter::BANS, u64::from(present), 0)
            .map_err(map_err)
    }

    /// Whether the ban word says the ban maps may hold an entry.
    pub fn bans(&self) -> Result<bool, DataplaneError> {
        Ok(self.map.get(&filter::BANS, 0).map_err(map_err)? != 0)
    }

    /// Makes `kind`'s bits exactly `bits` in every word of its region,
    /// leaving the other kinds' bits alone: after entries are removed, with
    /// `bits` computed from what the maps hold then.
    pub fn replace(&mut self, kind: Kind, bits: &Bits) -> Result<(), DataplaneError> {
        for index in kind.first..kind.first + kind.words {
            let want = bits.get(&index).copied().unwrap_or(0) & kind.mask;
            let word = self.map.get(&index, 0).map_err(map_err)?;
            if word & kind.mask != want {
                self.map
                    .set(index, (word & !kind.mask) | want, 0)
                    .map_err(map_err)?;
            }
        }
        Ok(())
    }
}

fn add(bits: &mut Bits, slot: Slot, b: u64) {
    *bits.entry(slot.index).or_default() |= slot.mask(b);
}

/// The first two bytes of an address, as the filter reads them.
fn top(ip: IpAddr) -> u16 {
    match ip {
        IpAddr::V4(a) => {
            let [b0, b1, ..] = a.octets();
            u16::from_be_bytes([b0, b1])
        }
        IpAddr::V6(a) => {
            let [b0, b1, ..] = a.octets();
            u16::from_be_bytes([b0, b1])
        }
    }
}

/// The source slot of `ip` (canonical: an IPv4-mapped IPv6 address is the
/// IPv4 address).
#[cfg(test)]
pub fn source_slot(ip: IpAddr) -> Slot {
    let ip = ip.to_canonical();
    match ip {
        IpAddr::V4(_) => filter::source_v4(top(ip)),
        IpAddr::V6(_) => filter::source_v6(top(ip)),
    }
}

/// The deny bits of the prefixes `nets`: every /16 each of them touches.
pub fn deny_bits(nets: &[IpNet]) -> Bits {
    let mut bits = Bits::new();
    for net in nets {
        let addr = net.network();
        let (lo, hi) = filter::prefix_tops(top(addr), net.prefix_len());
        for t in lo..=hi {
            let slot = match addr {
                IpAddr::V4(_) => filter::source_v4(t),
                IpAddr::V6(_) => filter::source_v6(t),
            };
            add(&mut bits, slot, SOURCE_DENY);
        }
    }
    bits
}

/// The VIP bits of the services `keys`; address markers (protocol 0) have
/// none: the kernel looks them up by address, for fragments, unfiltered.
pub fn vip_bits<'a>(keys: impl IntoIterator<Item = &'a VipKey>) -> Bits {
    let mut bits = Bits::new();
    for key in keys {
        let b = match key.proto {
            IPPROTO_TCP => PORT_VIP_TCP,
            IPPROTO_UDP => PORT_VIP_UDP,
            _ => continue,
        };
        add(&mut bits, filter::port(key.port), b);
    }
    bits
}

/// The L7 bits of the (TCP) listener ports `ports`.
pub fn l7_bits(ports: impl IntoIterator<Item = u16>) -> Bits {
    let mut bits = Bits::new();
    for port in ports {
        add(&mut bits, filter::port(port), PORT_L7_TCP);
    }
    bits
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_common::filter::{PORT_ALL, SOURCE_ALL};

    /// The bits of `slot` in `bits`.
    fn at(bits: &Bits, slot: Slot, all: u64) -> u64 {
        slot.bits(bits.get(&slot.index).copied().unwrap_or(0), all)
    }

    fn v4(a: [u8; 4]) -> IpAddr {
        IpAddr::from(a)
    }

    #[test]
    fn deny_prefixes_mark_every_slash_16_they_touch() {
        let nets: Vec<IpNet> = ["203.0.113.0/24", "10.0.0.0/8", "2001:db8:bad::/48"]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect();
        let bits = deny_bits(&nets);
        let v4_slot = |a| source_slot(v4(a));
        assert_eq!(
            at(&bits, v4_slot([203, 0, 113, 5]), SOURCE_ALL),
            SOURCE_DENY
        );
        assert_eq!(
            at(&bits, v4_slot([203, 0, 114, 1]), SOURCE_ALL),
            SOURCE_DENY,
            "same /16"
        );
        assert_eq!(at(&bits, v4_slot([203, 1, 0, 1]), SOURCE_ALL), 0);
        assert_eq!(at(&bits, v4_slot([10, 0, 0, 1]), SOURCE_ALL), SOURCE_DENY);
        assert_eq!(at(&bits, v4_slot([10, 255, 9, 9]), SOURCE_ALL), SOURCE_DENY);
        assert_eq!(at(&bits, v4_slot([11, 0, 0, 1]), SOURCE_ALL), 0);
        assert_eq!(at(&bits, v4_slot([192, 0, 2, 10]), SOURCE_ALL), 0);
        let six: IpAddr = "2001:db8:bad::7".parse().unwrap();
        assert_eq!(at(&bits, source_slot(six), SOURCE_ALL), SOURCE_DENY);
        // IPv6 slots are apart from IPv4 ones with the same first bytes.
        let v4_twin = v4([0x20, 0x01, 0, 1]);
        assert_eq!(at(&bits, source_slot(v4_twin), SOURCE_ALL), 0);
        // Only deny bits, within their kind.
        assert!(bits.values().all(|w| w & !DENY.mask == 0));
        // 10/8 is 256 slots, 32 to a word; the other two one word each.
        assert_eq!(bits.len(), 8 + 2);
    }

    #[test]
    fn vip_and_l7_ports_have_their_own_bits() {
        let keys = [
            VipKey::v4([10, 0, 0, 1], 443, IPPROTO_TCP),
            VipKey::v6([0; 16], 443, IPPROTO_TCP),
            VipKey::v4([10, 0, 0, 1], 53, IPPROTO_UDP),
            // An address marker.
            VipKey::v4([10, 0, 0, 1], 0, 0),
        ];
        let vips = vip_bits(&keys);
        assert_eq!(at(&vips, filter::port(443), PORT_ALL), PORT_VIP_TCP);
        assert_eq!(at(&vips, filter::port(53), PORT_ALL), PORT_VIP_UDP);
        assert_eq!(at(&vips, filter::port(0), PORT_ALL), 0);
        assert_eq!(vips.len(), 2);
        assert!(vips.values().all(|w| w & !VIP.mask == 0));
        let l7 = l7_bits([8080, 8443]);
        assert_eq!(at(&l7, filter::port(8080), PORT_ALL), PORT_L7_TCP);
        assert!(l7.values().all(|w| w & !L7.mask == 0));
        // The kinds of one region never overlap.
        assert_eq!(VIP.mask & L7.mask, 0);
        assert_eq!(
            DENY.mask & filter::every_slot(filter::SOURCE_BAN, SOURCE_BITS),
            0
        );
    }
}
