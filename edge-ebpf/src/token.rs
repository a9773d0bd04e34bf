//! The per-source new-flow budget: a token bucket refilled from the clock.
//!
//! Tokens are kept in nano-tokens so that refilling at `rate` per second is
//! one multiplication by elapsed nanoseconds, with no division on the fast
//! path. Elapsed time is clamped to [`MAX_REFILL_NS`] before multiplying so
//! the product cannot overflow (rate ≤ [`MAX_RATE`]); a source idle for
//! longer simply gets a full bucket.

use edge_common::{NANOTOKENS_PER_TOKEN, TokenBucket};

/// Largest rate the budget accepts, in new flows per second (< 2^24).
pub const MAX_RATE: u32 = 10_000_000;
/// Largest burst the budget accepts (keeps the bucket below 2^54).
pub const MAX_BURST: u32 = 10_000_000;
/// Longest idle time credited exactly (about 17 s); longer idles refill
/// the bucket completely.
pub const MAX_REFILL_NS: u64 = 1 << 34;

/// A bucket for a source first seen at `now_ns`, after taking its first
/// token (`burst` ≥ 1).
#[inline(always)]
pub fn first(now_ns: u64, burst: u32) -> TokenBucket {
    TokenBucket {
        nanotokens: u64::from(burst).saturating_sub(1) * NANOTOKENS_PER_TOKEN,
        last_ns: now_ns,
    }
}

/// Refills `bucket` up to `now_ns` and takes one token; `false` when the
/// source is over budget (the bucket still records the refill).
#[inline(always)]
pub fn take(bucket: &mut TokenBucket, now_ns: u64, rate: u32, burst: u32) -> bool {
    let cap = u64::from(burst) * NANOTOKENS_PER_TOKEN;
    let elapsed = now_ns.saturating_sub(bucket.last_ns);
    let refill = if elapsed >= MAX_REFILL_NS {
        cap
    } else {
        elapsed * u64::from(rate)
    };
    let level = bucket.nanotokens.saturating_add(refill);
    bucket.nanotokens = if level > cap { cap } else { level };
    bucket.last_ns = now_ns;
    if bucket.nanotokens >= NANOTOKENS_PER_TOKEN {
        bucket.nanotokens -= NANOTOKENS_PER_TOKEN;
        true
    } else {
        false
    }
}
