//! The fast path's pre-filters: [`crate::MAP_FILTER`], an array of `u64`
//! words that says, for each source /16 and each destination port, which
//! of the costlier lookups could match at all, so that most packets skip
//! them: the deny-list trie (by source), the VIP hash and the L7 port set
//! (by destination port); and one word that says whether the ban maps
//! hold anything at all.
//!
//! # The contract
//! A bit may be set with nothing behind it (the lookup then runs and
//! misses: only time is lost). It must never be clear while the map it
//! stands for holds an entry it covers, or that entry would be skipped.
//! So the daemon sets a bit before it writes the entry, and clears it only
//! after the entry is gone (recomputing the whole region from the map's
//! contents). Bits only ever go from clear to set while an entry exists,
//! so a reader that sees a word half written (the kernel copies array
//! values bytewise) still sees every bit an existing entry needs.
//!
//! # Layout
//! - Source words ([`SOURCE_V4`], [`SOURCE_V6`]): two bits per /16 (the
//!   address's first two bytes), [`SOURCE_DENY`] and [`SOURCE_BAN`]; 32
//!   prefixes per word. IPv6 also uses its first two bytes: coarse (all of
//!   `2001::/16` is one slot), but exact for the bench's and most deny
//!   lists' IPv4 traffic, and never wrong.
//! - Port words ([`PORTS`]): four bits per destination port,
//!   [`PORT_VIP_TCP`], [`PORT_VIP_UDP`] (some L4 service, on any address,
//!   has this port) and [`PORT_L7_TCP`] (an L7 listener has it); 16 ports
//!   per word.
//! - The ban word ([`BANS`]): not zero while the ban maps may hold an
//!   entry. Bans have no bits of their own in the source words: during an
//!   upgrade two processes write bans, and their read-modify-writes of one
//!   word could lose a bit. This word is only ever written whole (never
//!   read, changed and written back), so the rule differs: a writer sets
//!   it before and again after inserting a ban, and whoever removes the
//!   last ban clears it and then looks at the maps again, setting it back
//!   if a ban arrived meanwhile (see the daemon's `Tables::ban`).

/// First word of the IPv4 source slots.
pub const SOURCE_V4: u32 = 0;
/// First word of the IPv6 source slots.
pub const SOURCE_V6: u32 = SOURCE_V4 + SOURCE_WORDS;
/// First word of the destination port slots.
pub const PORTS: u32 = SOURCE_V6 + SOURCE_WORDS;
/// Words of one family's source slots: 65 536 /16s, two bits each.
pub const SOURCE_WORDS: u32 = 65_536 * 2 / 64;
/// Words of the port slots: 65 536 ports, four bits each.
pub const PORT_WORDS: u32 = 65_536 * 4 / 64;
/// The ban word: zero while no ban exists, so that the program skips the
/// ban maps' lookup (see the module's documentation).
pub const BANS: u32 = PORTS + PORT_WORDS;
/// Length of [`crate::MAP_FILTER`] (64 KiB and the ban word).
pub const WORDS: u32 = BANS + 1;

/// Source bit: a deny-list prefix covers (part of) this /16.
pub const SOURCE_DENY: u64 = 1;
/// Source bit: a ban may name an address in this /16. The daemon never
/// sets it (see [`BANS`]); the program reads it as always set.
pub const SOURCE_BAN: u64 = 2;
/// Every source bit: what a missing word means (look everything up).
pub const SOURCE_ALL: u64 = SOURCE_DENY | SOURCE_BAN;
/// Bits per source slot.
pub const SOURCE_BITS: u32 = 2;

/// Port bit: an L4 service (TCP) listens on this port, on some VIP.
pub const PORT_VIP_TCP: u64 = 1;
/// Port bit: an L4 service (UDP) listens on this port, on some VIP.
pub const PORT_VIP_UDP: u64 = 2;
/// Port bit: an L7 listener (TCP) has this port.
pub const PORT_L7_TCP: u64 = 4;
/// Every port bit: what a missing word means (look everything up).
pub const PORT_ALL: u64 = PORT_VIP_TCP | PORT_VIP_UDP | PORT_L7_TCP;
/// Bits per port slot.
pub const PORT_BITS: u32 = 4;

/// Where one slot's bits are: the word's index in [`crate::MAP_FILTER`]
/// and how far its bits are shifted up within the word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot {
    /// Index of the word.
    pub index: u32,
    /// Shift of the slot's lowest bit (below 64).
    pub shift: u32,
}

impl Slot {
    /// `bits` placed at this slot within its word.
    #[inline(always)]
    pub const fn mask(self, bits: u64) -> u64 {
        bits << self.shift
    }

    /// The slot's bits, out of its word.
    #[inline(always)]
    pub const fn bits(self, word: u64, all: u64) -> u64 {
        (word >> self.shift) & all
    }
}

/// The slot of an IPv4 source whose first two bytes, read big-endian, are
/// `top`.
#[inline(always)]
pub const fn source_v4(top: u16) -> Slot {
    source(SOURCE_V4, top)
}

/// The slot of an IPv6 source whose first two bytes, read big-endian, are
/// `top`.
#[inline(always)]
pub const fn source_v6(top: u16) -> Slot {
    source(SOURCE_V6, top)
}

#[inline(always)]
const fn source(first: u32, top: u16) -> Slot {
    let top = top as u32;
    Slot {
        index: first + (top >> 5),
        shift: (top & 31) * SOURCE_BITS,
    }
}

/// The slot of destination port `port` (host order).
#[inline(always)]
pub const fn port(port: u16) -> Slot {
    let port = port as u32;
    Slot {
        index: PORTS + (port >> 4),
        shift: (port & 15) * PORT_BITS,
    }
}

/// Every bit of `bits` in every slot of a word whose slots are `width`
/// bits wide: the mask of one kind of bit across a whole word.
pub const fn every_slot(bits: u64, width: u32) -> u64 {
    let mut mask = 0u64;
    let mut shift = 0;
    while shift < 64 {
        mask |= bits << shift;
        shift += width;
    }
    mask
}

/// The first-two-byte values (`top`, as [`source_v4`] takes them) of the
/// addresses a prefix of `prefix_len` bits starting with `top` covers: one
/// for a prefix of 16 bits or more, 2^(16 - len) for a shorter one.
pub const fn prefix_tops(top: u16, prefix_len: u8) -> (u16, u16) {
    if prefix_len >= 16 {
        (top, top)
    } else if prefix_len == 0 {
        (0, u16::MAX)
    } else {
        let mask = u16::MAX << (16 - prefix_len as u32);
        (top & mask, top | !mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_disjoint_and_fill_the_map() {
        assert_eq!(source_v4(0).index, SOURCE_V4);
        assert_eq!(source_v4(u16::MAX).index + 1, SOURCE_V6);
        assert_eq!(source_v6(u16::MAX).index + 1, PORTS);
        assert_eq!(port(u16::MAX).index + 1, BANS);
        assert_eq!(BANS + 1, WORDS);
        assert_eq!(WORDS, 8193);
    }

    #[test]
    fn slots_pack_their_bits_without_overlap() {
        // Neighbouring slots of one word, and the last slot's top bit.
        assert_eq!(source_v4(0x0a4d).index, source_v4(0x0a40).index);
        assert_eq!(source_v4(0x0a5f).shift, 31 * 2);
        assert_eq!(port(15).shift + PORT_BITS - 1, 63);
        assert_eq!(port(80).index, PORTS + 5);
        assert_eq!(port(80).shift, 0);
        assert_eq!(port(81).shift, 4);
        let s = port(8080);
        let word = s.mask(PORT_L7_TCP) | port(8081).mask(PORT_ALL);
        assert_eq!(s.bits(word, PORT_ALL), PORT_L7_TCP);
        assert_eq!(every_slot(SOURCE_DENY, SOURCE_BITS), 0x5555_5555_5555_5555);
        assert_eq!(every_slot(SOURCE_BAN, SOURCE_BITS), 0xaaaa_aaaa_aaaa_aaaa);
        assert_eq!(
            every_slot(PORT_VIP_TCP | PORT_VIP_UDP, PORT_BITS),
            0x3333_3333_3333_3333
        );
        assert_eq!(every_slot(PORT_L7_TCP, PORT_BITS), 0x4444_4444_4444_4444);
    }

    #[test]
    fn prefixes_cover_their_slots() {
        // 203.0.113.0/24: one slot.
        assert_eq!(prefix_tops(0xcb00, 24), (0xcb00, 0xcb00));
        // 10.0.0.0/8: 256 slots.
        assert_eq!(prefix_tops(0x0a00, 8), (0x0a00, 0x0aff));
        // 172.16.0.0/12.
        assert_eq!(prefix_tops(0xac10, 12), (0xac10, 0xac1f));
        // Host bits below the prefix length are ignored.
        assert_eq!(prefix_tops(0xac1f, 12), (0xac10, 0xac1f));
        assert_eq!(prefix_tops(0x8000, 1), (0x8000, 0xffff));
        assert_eq!(prefix_tops(0x1234, 0), (0, u16::MAX));
        assert_eq!(prefix_tops(0x2001, 128), (0x2001, 0x2001));
    }
}
