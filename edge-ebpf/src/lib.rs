//! Packet parsing and the classification decision of edge's XDP program.
//!
//! Everything here is pure: it reads a packet through [`PacketBuf`] and never
//! touches a map, so the same code runs in the kernel (over the XDP context,
//! see `main.rs`) and in host unit tests (over a byte slice).
#![cfg_attr(not(test), no_std)]

pub mod classify;
pub mod decap;
pub mod encap;
pub mod hash;
pub mod icmp;
pub mod parse;
pub mod token;
pub mod toobig;
pub mod xdp;

/// Read-only, bounds-checked access to a packet.
///
/// The kernel implementation is the one place that dereferences packet
/// memory; every parser goes through [`PacketBuf::bytes`], so each read is
/// checked against the end of the packet in a form the verifier accepts.
/// Reads are byte arrays, so no alignment or validity question arises.
pub trait PacketBuf {
    /// The `N` bytes at `offset`, or `None` if they would run past the end.
    fn bytes<const N: usize>(&self, offset: usize) -> Option<[u8; N]>;
    /// Length of the packet in bytes.
    fn len(&self) -> usize;
    /// Whether the packet is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The byte at `offset`.
    fn u8_at(&self, offset: usize) -> Option<u8> {
        self.bytes::<1>(offset).map(|[b]| b)
    }
    /// The big-endian `u16` at `offset`.
    fn be16_at(&self, offset: usize) -> Option<u16> {
        self.bytes::<2>(offset).map(u16::from_be_bytes)
    }
    /// The one's-complement sum (RFC 1071, folded, not complemented) of the
    /// `N` bytes at `offset` read as big-endian 16-bit words, for checksums
    /// over packet data; `N` is a multiple of 4. `None` if they would run
    /// past the end.
    fn sum16<const N: usize>(&self, offset: usize) -> Option<u16> {
        let mut sum = 0u32;
        let mut i = 0;
        while i < N {
            sum += u32::from(self.be16_at(offset + i)?);
            i += 2;
        }
        sum = (sum & 0xffff) + (sum >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        Some(sum as u16)
    }
}

impl PacketBuf for [u8] {
    fn bytes<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let end = offset.checked_add(N)?;
        self.get(offset..end)?.try_into().ok()
    }

    fn len(&self) -> usize {
        <[u8]>::len(self)
    }
}

/// Bounds-checked writes, for the programs that rewrite packets.
///
/// As with [`PacketBuf`], the kernel implementation is the one place that
/// writes packet memory.
pub trait PacketBufMut: PacketBuf {
    /// Writes `bytes` at `offset`; `None` (and nothing written) if they
    /// would run past the end.
    fn write<const N: usize>(&mut self, offset: usize, bytes: [u8; N]) -> Option<()>;
}

impl PacketBufMut for [u8] {
    fn write<const N: usize>(&mut self, offset: usize, bytes: [u8; N]) -> Option<()> {
        let end = offset.checked_add(N)?;
        self.get_mut(offset..end)?.copy_from_slice(&bytes);
        Some(())
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_l4;
