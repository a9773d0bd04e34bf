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
/// memory; every parser goes through these methods, so each read is
/// checked against the end of the packet in a form the verifier accepts.
///
/// [`PacketBuf::bytes`] copies bytes; the word reads (`u8_at`, `be16_at`,
/// `le16_at`, `le32_at`, `le64_at`) are one load each in the kernel, where
/// a byte array becomes one load per byte (the BPF target has no
/// unaligned loads). `le*` words hold the bytes in memory order: byte `i`
/// of the packet is bits `8i..8i+8` of the word (`to_le_bytes` gives them
/// back), which is a plain load on the little-endian BPF target.
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
    /// The 2 bytes at `offset` as a little-endian word (memory order).
    fn le16_at(&self, offset: usize) -> Option<u16> {
        self.bytes::<2>(offset).map(u16::from_le_bytes)
    }
    /// The 4 bytes at `offset` as a little-endian word (memory order).
    fn le32_at(&self, offset: usize) -> Option<u32> {
        self.bytes::<4>(offset).map(u32::from_le_bytes)
    }
    /// The 8 bytes at `offset` as a little-endian word (memory order).
    fn le64_at(&self, offset: usize) -> Option<u64> {
        self.bytes::<8>(offset).map(u64::from_le_bytes)
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
    /// Writes the little-endian word `v` (its bytes in memory order, as
    /// [`PacketBuf::le16_at`] reads them) at `offset`; one store in the
    /// kernel.
    fn write_le16(&mut self, offset: usize, v: u16) -> Option<()> {
        self.write(offset, v.to_le_bytes())
    }
    /// Writes the little-endian word `v` at `offset`.
    fn write_le32(&mut self, offset: usize, v: u32) -> Option<()> {
        self.write(offset, v.to_le_bytes())
    }
    /// Writes the little-endian word `v` at `offset`.
    fn write_le64(&mut self, offset: usize, v: u64) -> Option<()> {
        self.write(offset, v.to_le_bytes())
    }
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
