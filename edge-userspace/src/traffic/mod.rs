//! Where a route's requests go besides its pool: a traffic split
//! ([`split`]), copies to a shadow pool ([`mirror`]) and aggregations of
//! several calls ([`aggregate`]).

pub mod aggregate;
pub mod mirror;
pub mod split;

/// Hundredths of a percent drawn at random (0..10000).
pub(crate) fn draw() -> u32 {
    fastrand::u32(0..10_000)
}

/// Hundredths of a percent from `key`: the same key always draws the same
/// number, in this process and the next (SipHash with fixed keys).
pub(crate) fn draw_for(key: &[u8]) -> u32 {
    use std::hash::{Hash, Hasher};
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new_with_keys(0x6564_6765, 0x7370_6c69);
    key.hash(&mut h);
    (h.finish() % 10_000) as u32
}
