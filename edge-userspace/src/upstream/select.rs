//! Backend selection algorithms, over the backends that may take a request
//! now. Pure apart from their own small state, so the distributions are
//! unit-tested here.

use crate::config::{Algorithm, BackendSpec, bounds::MAX_KETAMA_WEIGHT};
use pingora_ketama::{Bucket, Continuum};
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

/// What a pick may depend on.
#[derive(Clone, Copy, Debug, Default)]
pub struct PickInput<'a> {
    /// The client's address.
    pub client: Option<IpAddr>,
    /// The consistent-hashing key (client IP, path, header or cookie).
    pub hash_key: &'a [u8],
}

/// A selector's state for one pool.
pub struct Selector {
    algorithm: Algorithm,
    weights: Vec<u32>,
    counter: AtomicUsize,
    /// Smooth weighted round robin's current weights.
    smooth: Mutex<Vec<i64>>,
    ring: Option<(Continuum, HashMap<SocketAddr, usize>)>,
    /// Points on the ketama ring: one walk around it visits every backend.
    ring_points: usize,
}

impl Selector {
    /// Whether [`Selector::pick`] reads the requests in flight (`active`):
    /// the other algorithms are given an empty slice, so that the caller
    /// collects nothing for them.
    pub fn uses_load(&self) -> bool {
        matches!(self.algorithm, Algorithm::LeastConnections | Algorithm::P2c)
    }

    /// A selector for `backends` with `algorithm`.
    pub fn new(algorithm: Algorithm, backends: &[BackendSpec]) -> Self {
        let ring = (algorithm == Algorithm::Ketama).then(|| {
            // Each unit of weight is DEFAULT_POINT_MULTIPLE ring points, and
            // the ring builder sums weights in a u32: validation bounds them
            // (MAX_KETAMA_WEIGHT, MAX_KETAMA_TOTAL_WEIGHT), and the clamp
            // keeps a model built some other way from allocating gigabytes
            // or hitting the builder's assertion on weight 0.
            let buckets: Vec<Bucket> = backends
                .iter()
                .map(|b| Bucket::new(b.address, b.weight.clamp(1, MAX_KETAMA_WEIGHT)))
                .collect();
            let index = backends
                .iter()
                .enumerate()
                .map(|(i, b)| (b.address, i))
                .collect();
            (Continuum::new(&buckets), index)
        });
        Self {
            algorithm,
            weights: backends.iter().map(|b| b.weight.max(1)).collect(),
            counter: AtomicUsize::new(0),
            smooth: Mutex::new(vec![0; backends.len()]),
            ring_points: backends
                .iter()
                .map(|b| b.weight.clamp(1, MAX_KETAMA_WEIGHT) as usize)
                .sum::<usize>()
                .saturating_mul(pingora_ketama::DEFAULT_POINT_MULTIPLE as usize),
            ring,
        }
    }

    /// Picks one of `candidates` (indices of backends, non-empty, sorted);
    /// `active[i]` is backend i's requests in flight (may be empty unless
    /// [`Selector::uses_load`]).
    pub fn pick(
        &self,
        candidates: &[usize],
        active: &[usize],
        input: PickInput<'_>,
    ) -> Option<usize> {
        match candidates {
            [] => return None,
            [only] => return Some(*only),
            _ => {}
        }
        Some(match self.algorithm {
            Algorithm::RoundRobin => {
                candidates[self.counter.fetch_add(1, Ordering::Relaxed) % candidates.len()]
            }
            Algorithm::WeightedRoundRobin => self.smooth_weighted(candidates),
            Algorithm::LeastConnections => {
                // Ties rotate, so an idle pool still spreads requests.
                let start = self.counter.fetch_add(1, Ordering::Relaxed);
                let mut best = candidates[start % candidates.len()];
                for k in 1..candidates.len() {
                    let c = candidates[(start + k) % candidates.len()];
                    if self.less_loaded(c, best, active) {
                        best = c;
                    }
                }
                best
            }
            Algorithm::P2c => {
                let a = fastrand::usize(..candidates.len());
                let mut b = fastrand::usize(..candidates.len() - 1);
                if b >= a {
                    b += 1;
                }
                let (a, b) = (candidates[a], candidates[b]);
                if self.less_loaded(b, a, active) { b } else { a }
            }
            Algorithm::Ketama => self.ketama(candidates, input.hash_key)?,
            Algorithm::IpHash => {
                let (v4, v6);
                let key: &[u8] = match input.client {
                    Some(IpAddr::V4(ip)) => {
                        v4 = ip.octets();
                        &v4
                    }
                    Some(IpAddr::V6(ip)) => {
                        v6 = ip.octets();
                        &v6
                    }
                    None => &[],
                };
                // Probe from the client's slot among all backends, so a
                // client stays on its backend for as long as it is up.
                let n = self.weights.len();
                let start = (fnv1a(key) % n as u64) as usize;
                (0..n)
                    .map(|k| (start + k) % n)
                    .find(|i| candidates.binary_search(i).is_ok())?
            }
        })
    }

    /// Whether `a` carries less load per weight than `b`.
    fn less_loaded(&self, a: usize, b: usize, active: &[usize]) -> bool {
        let load = |i: usize| active.get(i).copied().unwrap_or(0) as u64;
        load(a) * u64::from(self.weights[b]) < load(b) * u64::from(self.weights[a])
    }

    /// nginx's smooth weighted round robin: every pick adds each weight to
    /// its current value, takes the largest and subtracts the total from it.
    fn smooth_weighted(&self, candidates: &[usize]) -> usize {
        let Ok(mut current) = self.smooth.lock() else {
            return candidates[0];
        };
        let mut total = 0i64;
        let mut best = candidates[0];
        for &c in candidates {
            let w = i64::from(self.weights[c]);
            current[c] += w;
            total += w;
            if current[c] > current[best] {
                best = c;
            }
        }
        current[best] -= total;
        best
    }

    fn ketama(&self, candidates: &[usize], key: &[u8]) -> Option<usize> {
        let (ring, index) = self.ring.as_ref()?;
        // Walking the ring from the key's point skips unavailable
        // backends while keeping every other key where it was.
        // One turn of the ring at most: with weights, a heavy backend's
        // points can fill far more than a per-backend share of it.
        ring.node_iter(key)
            .take(self.ring_points)
            .filter_map(|addr| index.get(addr).copied())
            .find(|i| candidates.binary_search(i).is_ok())
            .or_else(|| candidates.first().copied())
    }
}

/// FNV-1a, 64 bits: a stable hash for sticky choices.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(weights: &[u32]) -> Vec<BackendSpec> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| BackendSpec {
                address: format!("10.0.0.{}:80", i + 1).parse().unwrap(),
                weight: *w,
            })
            .collect()
    }

    fn counts(
        sel: &Selector,
        n: usize,
        picks: usize,
        mut input: impl FnMut(usize) -> Vec<u8>,
    ) -> Vec<usize> {
        let all: Vec<usize> = (0..n).collect();
        let mut out = vec![0; n];
        for k in 0..picks {
            let key = input(k);
            let i = sel
                .pick(
                    &all,
                    &vec![0; n],
                    PickInput {
                        client: None,
                        hash_key: &key,
                    },
                )
                .unwrap();
            out[i] += 1;
        }
        out
    }

    #[test]
    fn round_robin_is_even() {
        let sel = Selector::new(Algorithm::RoundRobin, &specs(&[1, 1, 1]));
        assert_eq!(counts(&sel, 3, 300, |_| vec![]), vec![100, 100, 100]);
    }

    #[test]
    fn smooth_weighted_follows_weights_and_interleaves() {
        let sel = Selector::new(Algorithm::WeightedRoundRobin, &specs(&[5, 1, 1]));
        let all = [0, 1, 2];
        let seq: Vec<usize> = (0..7)
            .map(|_| sel.pick(&all, &[0; 3], PickInput::default()).unwrap())
            .collect();
        // nginx's documented sequence for weights 5,1,1: a a b a c a a.
        assert_eq!(seq, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn least_connections_prefers_idle_per_weight() {
        let sel = Selector::new(Algorithm::LeastConnections, &specs(&[1, 1, 2]));
        let all = [0, 1, 2];
        assert_eq!(sel.pick(&all, &[3, 1, 4], PickInput::default()), Some(1));
        // 4 in flight on weight 2 counts as 2 per weight: less than 3.
        assert_eq!(sel.pick(&all, &[3, 5, 4], PickInput::default()), Some(2));
    }

    #[test]
    fn p2c_never_picks_the_most_loaded_of_two() {
        let sel = Selector::new(Algorithm::P2c, &specs(&[1, 1]));
        for _ in 0..100 {
            assert_eq!(sel.pick(&[0, 1], &[10, 0], PickInput::default()), Some(1));
        }
    }

    #[test]
    fn ketama_is_sticky_and_moves_only_the_removed_keys() {
        let sel = Selector::new(Algorithm::Ketama, &specs(&[1, 1, 1, 1]));
        let key = |k: usize| format!("user-{k}").into_bytes();
        let pick = |cands: &[usize], k: usize| {
            sel.pick(
                cands,
                &[0; 4],
                PickInput {
                    client: None,
                    hash_key: &key(k),
                },
            )
            .unwrap()
        };
        let before: Vec<usize> = (0..1000).map(|k| pick(&[0, 1, 2, 3], k)).collect();
        let share = counts(&sel, 4, 4000, key);
        assert!(share.iter().all(|c| (700..1300).contains(c)), "{share:?}");
        for (k, b) in before.iter().enumerate() {
            let after = pick(&[0, 1, 3], k);
            if *b != 2 {
                assert_eq!(after, *b, "key {k} moved though its backend stayed");
            }
            assert_eq!(pick(&[0, 1, 2, 3], k), *b);
        }
    }

    #[test]
    fn ketama_weights_are_bounded_and_still_weigh() {
        // 10^8 is 1.6e10 ring points (25 GB, and a u32 overflow in the ring
        // builder); the selector clamps it to MAX_KETAMA_WEIGHT.
        let sel = Selector::new(Algorithm::Ketama, &specs(&[100_000_000, 1, 1]));
        let share = counts(&sel, 3, 3000, |k| format!("k{k}").into_bytes());
        assert!(share[0] > (share[1] + share[2]) * 50, "{share:?}");
        // With the heavy backend down, keys walk the ring to the others
        // and spread over them, not all to the first.
        let moved: Vec<usize> = (0..200)
            .map(|k| {
                let key = format!("k{k}").into_bytes();
                let input = PickInput {
                    client: None,
                    hash_key: &key,
                };
                sel.pick(&[1, 2], &[0; 3], input).unwrap()
            })
            .collect();
        assert!(moved.iter().filter(|i| **i == 2).count() > 40, "{moved:?}");
    }

    #[test]
    fn ip_hash_sticks_per_client() {
        let sel = Selector::new(Algorithm::IpHash, &specs(&[1, 1, 1]));
        let all = [0, 1, 2];
        let input = |ip: &str| PickInput {
            client: Some(ip.parse().unwrap()),
            hash_key: &[],
        };
        let first = sel.pick(&all, &[0; 3], input("192.0.2.7")).unwrap();
        for _ in 0..10 {
            assert_eq!(sel.pick(&all, &[0; 3], input("192.0.2.7")), Some(first));
        }
        let others: Vec<usize> = all.iter().copied().filter(|i| *i != first).collect();
        let moved = sel.pick(&others, &[0; 3], input("192.0.2.7")).unwrap();
        assert_ne!(moved, first);
    }
}
