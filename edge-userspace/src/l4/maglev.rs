//! Maglev table population (Eisenbud et al., NSDI 2016, §3.4), weighted,
//! with failed backends' slots refilled so that nothing else moves.
//!
//! Each backend has a permutation of the M slots, `offset + j·skip mod M`
//! (M prime, so every skip visits every slot), from two hashes of its
//! identity. Backends take turns claiming their next free preferred slot
//! until the table is full; with weights, a backend earns `weight` credits
//! a round and claims a slot per `max_weight` credits, so its share is its
//! weight share (to within a slot per round).
//!
//! The paper's table is a function of the backend set, so removing one
//! backend also shuffles a few slots among the others. edge instead builds
//! the base table from every configured backend with a non-zero weight,
//! and gives each slot of a backend that is down to the up backend that
//! ranks that slot highest in its own permutation (rendezvous-style, ranks
//! scaled by weight). So a failure moves exactly the failed backend's
//! slots (about 1/N), spread evenly over the rest, and a recovery restores
//! the base table exactly.

/// One backend as the table sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backend {
    /// A stable identity (e.g. a hash of the address): the permutation.
    pub key: u64,
    /// Relative share; 0 takes no slots (drain).
    pub weight: u32,
    /// Whether it passes its health check.
    pub up: bool,
}

/// A backend's permutation of the slots.
#[derive(Clone, Copy, Debug)]
struct Permutation {
    offset: u64,
    skip: u64,
}

impl Permutation {
    fn new(key: u64, m: u64) -> Self {
        Self {
            offset: mix(key ^ 0x9e37_79b9_7f4a_7c15) % m,
            skip: mix(key ^ 0xc2b2_ae3d_27d4_eb4f) % (m - 1) + 1,
        }
    }

    fn slot(&self, j: u64, m: u64) -> u64 {
        (self.offset + j % m * self.skip) % m
    }

    /// Where `slot` comes in this permutation: the j with slot(j) == slot.
    fn rank(&self, slot: u64, m: u64, skip_inverse: u64) -> u64 {
        (slot + m - self.offset) % m * skip_inverse % m
    }
}

/// SplitMix64's finaliser: a good 64-bit mix.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A stable key for a backend identity such as its address text (FNV-1a).
pub fn key(identity: &[u8]) -> u64 {
    identity.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn pow_mod(mut base: u64, mut exp: u64, m: u64) -> u64 {
    let mut acc = 1u64;
    base %= m;
    while exp > 0 {
        if exp & 1 == 1 {
            acc = acc * base % m;
        }
        base = base * base % m;
        exp >>= 1;
    }
    acc
}

/// The paper's weighted population over every backend with a non-zero
/// weight, up or not: `table[slot]` is an index into `backends`, or `None`
/// when no backend has weight. `m` must be a prime (≤ 2^32).
pub fn base_table(backends: &[Backend], m: u32) -> Vec<Option<usize>> {
    let m64 = u64::from(m);
    let mut table = vec![None; m as usize];
    let mut members: Vec<(usize, Permutation, u64)> = backends
        .iter()
        .enumerate()
        .filter(|(_, b)| b.weight > 0)
        .map(|(i, b)| (i, Permutation::new(b.key, m64), u64::from(b.weight)))
        .collect();
    // Turns go in key order, so listing the backends in another order in
    // the configuration does not reshuffle the table.
    members.sort_by_key(|(i, _, _)| (backends[*i].key, *i));
    let Some(max_weight) = members.iter().map(|(_, _, w)| *w).max() else {
        return table;
    };
    let mut next = vec![0u64; members.len()];
    let mut credit = vec![0u64; members.len()];
    let mut filled = 0usize;
    while filled < table.len() {
        for (k, (index, perm, weight)) in members.iter().enumerate() {
            credit[k] += weight;
            if credit[k] < max_weight {
                continue;
            }
            credit[k] -= max_weight;
            let mut c = perm.slot(next[k], m64) as usize;
            while table[c].is_some() {
                next[k] += 1;
                c = perm.slot(next[k], m64) as usize;
            }
            table[c] = Some(*index);
            next[k] += 1;
            filled += 1;
            if filled == table.len() {
                break;
            }
        }
    }
    table
}

/// The live table: the base table with every slot of a backend that is down
/// given to the up backend (non-zero weight) that ranks it first, ranks
/// divided by weight. `None` where no backend is up.
pub fn table(backends: &[Backend], m: u32) -> Vec<Option<usize>> {
    let mut table = base_table(backends, m);
    let m64 = u64::from(m);
    let live: Vec<(usize, Permutation, u64, u64)> = backends
        .iter()
        .enumerate()
        .filter(|(_, b)| b.weight > 0 && b.up)
        .map(|(i, b)| {
            let perm = Permutation::new(b.key, m64);
            // M is prime: skip^(M-2) is skip's inverse.
            let inverse = pow_mod(perm.skip, m64 - 2, m64);
            (i, perm, inverse, u64::from(b.weight))
        })
        .collect();
    for (slot, owner) in table.iter_mut().enumerate() {
        let Some(i) = *owner else { continue };
        if backends[i].up {
            continue;
        }
        *owner = live
            .iter()
            .min_by(|a, b| {
                // rank_a / w_a < rank_b / w_b, without division.
                let ra = u128::from(a.1.rank(slot as u64, m64, a.2)) * u128::from(b.3);
                let rb = u128::from(b.1.rank(slot as u64, m64, b.2)) * u128::from(a.3);
                ra.cmp(&rb).then(backends[a.0].key.cmp(&backends[b.0].key))
            })
            .map(|l| l.0);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: u32 = 65_537;

    fn backends(weights: &[u32]) -> Vec<Backend> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| Backend {
                key: key(format!("10.0.0.{}", i + 1).as_bytes()),
                weight: *w,
                up: true,
            })
            .collect()
    }

    fn shares(t: &[Option<usize>], n: usize) -> Vec<usize> {
        let mut count = vec![0; n];
        for i in t.iter().flatten() {
            count[*i] += 1;
        }
        count
    }

    fn assert_shares(t: &[Option<usize>], b: &[Backend]) {
        let total: u32 = b.iter().filter(|b| b.up).map(|b| b.weight).sum();
        let count = shares(t, b.len());
        for (i, be) in b.iter().enumerate() {
            let want = if be.up {
                f64::from(M) * f64::from(be.weight) / f64::from(total)
            } else {
                0.0
            };
            let got = count[i] as f64;
            if want == 0.0 {
                assert_eq!(count[i], 0, "backend {i} should have no slots");
            } else {
                let err = (got - want).abs() / want;
                assert!(
                    err <= 0.01,
                    "backend {i}: {got} slots, want {want:.0} (off by {:.2}%)",
                    err * 100.0
                );
            }
        }
    }

    #[test]
    fn permutations_visit_every_slot_and_ranks_invert_them() {
        let m = 13u64;
        let p = Permutation::new(key(b"x"), m);
        let inv = pow_mod(p.skip, m - 2, m);
        let mut seen = [false; 13];
        for j in 0..m {
            let s = p.slot(j, m);
            seen[s as usize] = true;
            assert_eq!(p.rank(s, m, inv), j);
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn equal_weights_share_within_one_percent() {
        for n in [2, 3, 5, 10, 33] {
            let b = backends(&vec![1; n]);
            let t = base_table(&b, M);
            assert!(t.iter().all(Option::is_some));
            assert_shares(&t, &b);
        }
    }

    #[test]
    fn weighted_shares_within_one_percent() {
        for w in [&[1, 2, 3][..], &[5, 1, 1, 1], &[10, 7, 3, 1, 1]] {
            let b = backends(w);
            assert_shares(&table(&b, M), &b);
        }
    }

    #[test]
    fn weight_zero_takes_no_slots() {
        let b = backends(&[1, 0, 1]);
        let t = table(&b, M);
        assert_eq!(shares(&t, 3)[1], 0);
        assert_shares(&t, &b);
    }

    #[test]
    fn removing_one_moves_only_its_slots_and_adding_it_back_restores() {
        for n in [3, 5, 9] {
            let mut b = backends(&vec![1; n]);
            let before = table(&b, M);
            for gone in 0..n {
                b[gone].up = false;
                let after = table(&b, M);
                let mut moved = 0;
                for (s, (x, y)) in before.iter().zip(&after).enumerate() {
                    if x != y {
                        assert_eq!(
                            *x,
                            Some(gone),
                            "slot {s} moved but was not backend {gone}'s"
                        );
                        moved += 1;
                    }
                    assert_ne!(*y, Some(gone));
                }
                // About 1/N of the table moves, and it spreads evenly.
                let want = f64::from(M) / n as f64;
                assert!((moved as f64 - want).abs() / want < 0.01, "moved {moved}");
                let rest = shares(&after, n);
                let even = f64::from(M) / (n - 1) as f64;
                for (i, c) in rest.iter().enumerate().filter(|(i, _)| *i != gone) {
                    let err = (*c as f64 - even).abs() / even;
                    assert!(
                        err < 0.03,
                        "backend {i} has {c} slots after removal, want {even:.0}"
                    );
                }
                b[gone].up = true;
                assert_eq!(table(&b, M), before, "adding backend {gone} back");
            }
        }
    }

    #[test]
    fn all_down_leaves_the_table_empty() {
        let mut b = backends(&[1, 1]);
        b[0].up = false;
        b[1].up = false;
        assert!(table(&b, 7).iter().all(Option::is_none));
        assert!(table(&[], 7).iter().all(Option::is_none));
    }

    #[test]
    fn tables_are_stable_across_runs_and_orders() {
        let b = backends(&[1, 1, 1]);
        let t = table(&b, M);
        assert_eq!(t, table(&b, M));
        // The same backends listed in another order own the same slots.
        let mut r = b.clone();
        r.reverse();
        let tr = table(&r, M);
        for (x, y) in t.iter().zip(&tr) {
            assert_eq!(x.map(|i| b[i].key), y.map(|i| r[i].key));
        }
    }
}
