//! From the `l4:` configuration to what the maps hold: service ids, real
//! ids, VIP keys and address markers, settings. Pure, so it is unit-tested.
//!
//! Ids are stable: [`Assigned`] holds the ids already in the kernel's maps
//! (read back from them, so a reload and a restart that adopts pinned maps
//! see the same), and a service keeps its id as long as its VIP:port/proto
//! stays, a real its id as long as its address is in the maps. A real
//! serving several services has one id. New reals take ids after the
//! highest in use, wrapping, so a freed id is not handed to another
//! address while flows may still name it.

use crate::config::l4::{L4Config, L4Hash};
use edge_common::{
    FAMILY_V4, FAMILY_V6, L4Settings, MAX_REALS, MAX_RING_SIZE, REAL_FLAG_UP, RealDef,
    SETTINGS_SYN_BUDGET, VIP_FLAG_ADDRESS, VIP_FLAG_SOURCE_HASH, VipKey, VipMeta,
};
use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    time::Duration,
};

use super::maglev;

/// The ids already in the kernel's maps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Assigned {
    /// Each service's id and live table generation, by VIP key.
    pub services: HashMap<VipKey, (u32, u32)>,
    /// Each real's id, by address.
    pub reals: HashMap<IpAddr, u32>,
    /// The reals written down (a health check found them down).
    pub down: HashSet<IpAddr>,
}

/// Why a configuration cannot be planned into the maps as loaded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    /// More services than the ring map was sized for at start-up.
    #[error(
        "{wanted} L4 services, but the Maglev ring map was sized for {capacity} when edge \
         started: restart edge to grow it"
    )]
    Services {
        /// Services configured.
        wanted: usize,
        /// Services the map holds.
        capacity: u32,
    },
    /// More distinct backend addresses than real ids.
    #[error("{0} distinct L4 backend addresses: at most {max} fit", max = MAX_REALS - 1)]
    Reals(usize),
}

/// Every service, with the ids the kernel knows it and its reals by.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Services, in configuration order, with their stable ids.
    pub services: Vec<ServicePlan>,
    /// One marker per distinct VIP address (port 0, protocol 0).
    pub markers: Vec<VipKey>,
    /// Forwarding settings for the kernel.
    pub settings: L4Settings,
}

/// One service.
#[derive(Clone, Debug, PartialEq)]
pub struct ServicePlan {
    /// Kernel service id (stats slot, ring pair).
    pub id: u32,
    /// Name, for metrics and logs.
    pub name: String,
    /// The VIP key.
    pub key: VipKey,
    /// `VIP_FLAG_*` bits.
    pub flags: u32,
    /// Maglev table size.
    pub table_size: u32,
    /// Its reals.
    pub backends: Vec<RealPlan>,
    /// The generation its live table has in the maps (0 for a new one).
    pub generation: u32,
}

/// One real of a service (a real serving two services has one id in
/// both).
#[derive(Clone, Debug, PartialEq)]
pub struct RealPlan {
    /// Kernel real id, from 1.
    pub id: u32,
    /// Its address.
    pub address: IpAddr,
    /// Its weight.
    pub weight: u32,
    /// Its Maglev identity.
    pub key: u64,
}

/// The table a flip leaves behind in the idle half, which the kernel
/// still consults for a while for TCP packets other than a SYN that have
/// no conntrack entry (see `VipMeta::prev_ring_size`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrevTable {
    /// Its size M; 0: no previous table.
    pub ring_size: u32,
    /// `CLOCK_MONOTONIC` nanoseconds until which it is trusted.
    pub until_ns: u64,
}

impl PrevTable {
    /// No previous table: a new service, or second chances off.
    pub const NONE: PrevTable = PrevTable {
        ring_size: 0,
        until_ns: 0,
    };

    /// The previous table when `svc` flips from `live` (its VIP entry in
    /// the maps now; `None` for a service new to them) to generation
    /// `next` at `now_ns`, trusted for `window` (zero: not at all).
    ///
    /// None when the live entry is not the other half of `svc`'s ring
    /// pair under the same hash mode: a table hashed another way, or of
    /// another service, would send moved flows to arbitrary backends.
    pub fn after(
        svc: &ServicePlan,
        live: Option<&VipMeta>,
        next: u32,
        window: Duration,
        now_ns: u64,
    ) -> Self {
        let Some(live) = live else {
            return Self::NONE;
        };
        let usable = !window.is_zero()
            && live.ring_size != 0
            && live.ring_size <= MAX_RING_SIZE
            && live.id == svc.id
            && live.flags == svc.flags
            && (live.generation ^ next) & 1 == 1;
        if !usable {
            return Self::NONE;
        }
        let window_ns = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        Self {
            ring_size: live.ring_size,
            until_ns: now_ns.saturating_add(window_ns),
        }
    }
}

/// `live` without its previous table, when it names one: written before
/// the idle half is rewritten, so that the kernel never reads a half
/// while it is half old, half new. `None`: nothing to write.
pub fn without_previous(live: &VipMeta) -> Option<VipMeta> {
    (live.prev_ring_size != 0 || live.prev_until_ns != 0).then_some(VipMeta {
        prev_ring_size: 0,
        prev_until_ns: 0,
        ..*live
    })
}

/// The address of a VIP key.
pub fn vip_addr(key: &VipKey) -> IpAddr {
    if key.family == FAMILY_V4 {
        let [a, b, c, d, ..] = key.addr;
        IpAddr::from([a, b, c, d])
    } else {
        IpAddr::from(key.addr)
    }
}

impl ServicePlan {
    /// The VIP entry for table generation `generation`, with `prev` the
    /// table the flip to it leaves in the other half.
    pub fn meta(&self, generation: u32, prev: PrevTable) -> VipMeta {
        VipMeta {
            id: self.id,
            flags: self.flags,
            ring_size: self.table_size,
            generation,
            prev_ring_size: prev.ring_size,
            _pad: 0,
            prev_until_ns: prev.until_ns,
        }
    }

    /// The Maglev ring (real ids; 0 = none) for the backends whose `up` is
    /// true.
    pub fn ring(&self, up: &[bool]) -> Vec<u32> {
        let backends: Vec<maglev::Backend> = self
            .backends
            .iter()
            .zip(up)
            .map(|(b, up)| maglev::Backend {
                key: b.key,
                weight: b.weight,
                up: *up,
            })
            .collect();
        maglev::table(&backends, self.table_size)
            .into_iter()
            .map(|slot| slot.map_or(0, |i| self.backends[i].id))
            .collect()
    }

    /// A digest of `ring` (real ids, as [`ServicePlan::ring`] makes) by
    /// backend address (FNV-1a over each slot's address, an empty slot as
    /// a marker): independent of the ids, which differ between hosts, so
    /// hosts can compare their tables slot by slot in one number.
    pub fn digest(&self, ring: &[u32]) -> u64 {
        let by_id: HashMap<u32, [u8; 16]> = self
            .backends
            .iter()
            .map(|b| {
                let octets = match b.address {
                    IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
                    IpAddr::V6(a) => a.octets(),
                };
                (b.id, octets)
            })
            .collect();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |bytes: &[u8]| {
            for b in bytes {
                h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
            }
        };
        for id in ring {
            match by_id.get(id) {
                Some(octets) => {
                    feed(&[1]);
                    feed(octets);
                }
                None => feed(&[0]),
            }
        }
        h
    }
}

/// Builds the plan of `cfg` with the ids `assigned` already holds, for a
/// ring map of `capacity` services.
pub fn plan(cfg: &L4Config, assigned: &Assigned, capacity: u32) -> Result<Plan, PlanError> {
    if cfg.services.len() > capacity as usize {
        return Err(PlanError::Services {
            wanted: cfg.services.len(),
            capacity,
        });
    }
    let keys: Vec<VipKey> = cfg
        .services
        .iter()
        .map(|s| vip_key(s.vip, s.port, s.protocol.number()))
        .collect();
    // Service ids: kept by key; a new key takes the lowest id no kept
    // service holds, preferring ids no service held before.
    let kept: HashSet<u32> = keys
        .iter()
        .filter_map(|k| assigned.services.get(k).map(|(id, _)| *id))
        .collect();
    let held: HashSet<u32> = assigned.services.values().map(|(id, _)| *id).collect();
    let mut free: Vec<u32> = (0..capacity).filter(|id| !kept.contains(id)).collect();
    free.sort_by_key(|id| (held.contains(id), *id));
    let mut free = free.into_iter();
    // Real ids: kept by address; a new address takes the next id after the
    // highest in use, wrapping, skipping every id in use.
    let addresses: Vec<IpAddr> = {
        let mut seen = HashSet::new();
        cfg.services
            .iter()
            .flat_map(|s| s.backends.iter().map(|b| b.address))
            .filter(|a| seen.insert(*a))
            .collect()
    };
    if addresses.len() >= MAX_REALS as usize {
        return Err(PlanError::Reals(addresses.len()));
    }
    let mut in_use: HashSet<u32> = assigned.reals.values().copied().collect();
    let mut cursor = in_use.iter().copied().max().unwrap_or(0);
    let mut real_ids: HashMap<IpAddr, u32> = HashMap::new();
    for a in &addresses {
        if let Some(id) = assigned.reals.get(a) {
            real_ids.insert(*a, *id);
        }
    }
    let wanted: HashSet<u32> = real_ids.values().copied().collect();
    for a in &addresses {
        if real_ids.contains_key(a) {
            continue;
        }
        // Ids from 1; 0 means "no backend". With every id taken, the id of
        // an address no service uses any more is overwritten.
        let mut next = None;
        for _ in 0..MAX_REALS {
            cursor = if cursor + 1 >= MAX_REALS {
                1
            } else {
                cursor + 1
            };
            if !in_use.contains(&cursor) {
                next = Some(cursor);
                break;
            }
        }
        let id = match next {
            Some(id) => id,
            None => (1..MAX_REALS)
                .find(|id| !wanted.contains(id) && !real_ids.values().any(|v| v == id))
                .ok_or(PlanError::Reals(addresses.len()))?,
        };
        in_use.insert(id);
        real_ids.insert(*a, id);
    }
    let mut services = Vec::new();
    let mut markers: Vec<VipKey> = Vec::new();
    for (s, key) in cfg.services.iter().zip(keys) {
        let marker = vip_key(s.vip, 0, 0);
        if !markers.contains(&marker) {
            markers.push(marker);
        }
        let (id, generation) = match assigned.services.get(&key) {
            Some(&(id, generation)) => (id, generation),
            None => (
                free.next().ok_or(PlanError::Services {
                    wanted: cfg.services.len(),
                    capacity,
                })?,
                0,
            ),
        };
        let backends = s
            .backends
            .iter()
            .map(|b| RealPlan {
                id: real_ids.get(&b.address).copied().unwrap_or(0),
                address: b.address,
                weight: b.weight,
                key: maglev::key(b.address.to_string().as_bytes()),
            })
            .collect();
        services.push(ServicePlan {
            id,
            name: s.name.clone(),
            key,
            flags: if s.hash == L4Hash::SourceIp {
                VIP_FLAG_SOURCE_HASH
            } else {
                0
            },
            table_size: s.table_size,
            backends,
            generation,
        });
    }
    let mut settings = L4Settings::default();
    if let Some(a) = cfg.source_v4 {
        settings.source_v4 = a.octets();
    }
    if let Some(a) = cfg.source_v6 {
        settings.source_v6 = a.octets();
    }
    // The cap, if configured; the controller lowers it to the interfaces'.
    settings.mtu = cfg.mtu.unwrap_or(0);
    if let Some(b) = cfg.syn_budget {
        settings.syn_rate = b.rate;
        settings.syn_burst = b.burst;
        settings.flags |= SETTINGS_SYN_BUDGET;
    }
    Ok(Plan {
        services,
        markers,
        settings,
    })
}

/// The marker entry of a VIP address.
pub fn marker_meta() -> VipMeta {
    VipMeta {
        flags: VIP_FLAG_ADDRESS,
        ..VipMeta::default()
    }
}

/// The key of `addr:port/proto`.
pub fn vip_key(addr: IpAddr, port: u16, proto: u8) -> VipKey {
    match addr {
        IpAddr::V4(a) => VipKey::v4(a.octets(), port, proto),
        IpAddr::V6(a) => VipKey::v6(a.octets(), port, proto),
    }
}

/// The kernel's view of a real.
pub fn real_def(address: IpAddr, mac: [u8; 6], ifindex: u32, up: bool) -> RealDef {
    let (addr, family) = match address {
        IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            (b, FAMILY_V4)
        }
        IpAddr::V6(a) => (a.octets(), FAMILY_V6),
    };
    RealDef {
        addr,
        mac,
        family,
        flags: if up { REAL_FLAG_UP } else { 0 },
        ifindex,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use std::path::Path;

    #[test]
    fn ids_markers_and_settings() {
        let text = include_str!("../../../config/l4.yaml");
        let cfg = parse(text, Path::new("l4.yaml")).unwrap();
        let p = plan(&cfg.l4, &Assigned::default(), 8).unwrap();
        assert_eq!(p.services.len(), 3);
        assert_eq!(p.services[1].id, 1);
        let ids: Vec<u32> = p
            .services
            .iter()
            .flat_map(|s| s.backends.iter().map(|b| b.id))
            .collect();
        // The second service has the first two backends of the first: one
        // real id per address.
        assert_eq!(ids, [1, 2, 3, 1, 2, 4, 5]);
        // Each VIP address gets one marker.
        assert_eq!(p.markers.len(), 3);
        assert_eq!(p.services[1].flags, VIP_FLAG_SOURCE_HASH);
        assert_eq!(p.settings.source_v4, [10, 77, 2, 1]);
        assert_eq!(p.settings.flags, SETTINGS_SYN_BUDGET);
        assert_eq!((p.settings.syn_rate, p.settings.syn_burst), (1000, 2000));
        // The drained backend (weight 0) owns no slot.
        let ring = p.services[0].ring(&[true, true, true]);
        assert_eq!(ring.len(), 65537);
        assert!(!ring.contains(&3));
        assert!(ring.iter().all(|r| *r == 1 || *r == 2));
    }

    #[test]
    fn the_table_digest_ignores_file_order_and_ids() {
        let one = l4("    - {name: a, vip: 10.1.0.1, port: 80, backends: [{address: 10.2.0.1}, {address: 10.2.0.2, weight: 2}, {address: 10.2.0.3}]}
");
        let other = l4("    - {name: z, vip: 10.9.0.9, port: 81, backends: [{address: 10.2.0.4}]}
    - {name: a, vip: 10.1.0.1, port: 80, backends: [{address: 10.2.0.3}, {address: 10.2.0.1}, {address: 10.2.0.2, weight: 2}]}
");
        let p1 = plan(&one, &Assigned::default(), 4).unwrap();
        let p2 = plan(&other, &Assigned::default(), 4).unwrap();
        let (a1, a2) = (&p1.services[0], &p2.services[1]);
        // Other ids (the other file names 10.2.0.4 first) ...
        assert_ne!(
            a1.backends.iter().map(|b| b.id).collect::<Vec<_>>(),
            a2.backends.iter().map(|b| b.id).collect::<Vec<_>>()
        );
        // ... the same table, slot by slot, by address.
        let (r1, r2) = (a1.ring(&[true; 3]), a2.ring(&[true; 3]));
        let addr = |svc: &ServicePlan, id: u32| {
            svc.backends.iter().find(|b| b.id == id).map(|b| b.address)
        };
        assert!(
            r1.iter()
                .zip(&r2)
                .all(|(x, y)| addr(a1, *x) == addr(a2, *y))
        );
        assert_eq!(a1.digest(&r1), a2.digest(&r2));
        // A backend down changes it; another weight too.
        assert_ne!(a1.digest(&r1), a1.digest(&a1.ring(&[true, false, true])));
        let heavier = l4("    - {name: a, vip: 10.1.0.1, port: 80, backends: [{address: 10.2.0.1}, {address: 10.2.0.2, weight: 3}, {address: 10.2.0.3}]}
");
        let p3 = plan(&heavier, &Assigned::default(), 4).unwrap();
        let a3 = &p3.services[0];
        assert_ne!(a1.digest(&r1), a3.digest(&a3.ring(&[true; 3])));
    }

    #[test]
    fn a_flip_names_the_table_it_leaves_behind() {
        let cfg = l4("    - {name: a, vip: 10.1.0.1, port: 80, maglev_table_size: 13, backends: [{address: 10.2.0.1}]}
");
        let p = plan(&cfg, &Assigned::default(), 4).unwrap();
        let svc = &p.services[0];
        let minute = Duration::from_secs(60);
        // The live entry: generation 4, a table of 7 slots.
        let mut live = svc.meta(4, PrevTable::NONE);
        live.ring_size = 7;
        let prev = PrevTable::after(svc, Some(&live), 5, minute, 1_000);
        assert_eq!(
            prev,
            PrevTable {
                ring_size: 7,
                until_ns: 1_000 + 60_000_000_000
            }
        );
        let meta = svc.meta(5, prev);
        assert_eq!(
            (
                meta.ring_size,
                meta.generation,
                meta.prev_ring_size,
                meta._pad
            ),
            (13, 5, 7, 0)
        );
        assert_eq!(meta.prev_until_ns, 60_000_001_000);
        // Nothing to fall back on: a new service, second chances off, a
        // live entry of the same half, of another hash mode, or empty.
        assert_eq!(PrevTable::after(svc, None, 0, minute, 1), PrevTable::NONE);
        assert_eq!(
            PrevTable::after(svc, Some(&live), 5, Duration::ZERO, 1),
            PrevTable::NONE
        );
        assert_eq!(
            PrevTable::after(svc, Some(&live), 6, minute, 1),
            PrevTable::NONE
        );
        let mut hashed = live;
        hashed.flags = VIP_FLAG_SOURCE_HASH;
        assert_eq!(
            PrevTable::after(svc, Some(&hashed), 5, minute, 1),
            PrevTable::NONE
        );
        let mut empty = live;
        empty.ring_size = 0;
        assert_eq!(
            PrevTable::after(svc, Some(&empty), 5, minute, 1),
            PrevTable::NONE
        );
        // Far deadlines saturate instead of wrapping into the past.
        assert_eq!(
            PrevTable::after(svc, Some(&live), 5, minute, u64::MAX - 1).until_ns,
            u64::MAX
        );
        // Clearing the previous table before the idle half is rewritten.
        assert_eq!(without_previous(&live), None);
        let cleared = without_previous(&meta).unwrap();
        assert_eq!(cleared, svc.meta(5, PrevTable::NONE));
        assert_eq!(vip_addr(&svc.key), "10.1.0.1".parse::<IpAddr>().unwrap());
        let six: IpAddr = "fd00::1".parse().unwrap();
        assert_eq!(vip_addr(&vip_key(six, 80, 6)), six);
    }

    /// What the maps would hold after `p` is written.
    fn written(p: &Plan) -> Assigned {
        Assigned {
            services: p
                .services
                .iter()
                .map(|s| (s.key, (s.id, s.generation)))
                .collect(),
            reals: p
                .services
                .iter()
                .flat_map(|s| s.backends.iter().map(|b| (b.address, b.id)))
                .collect(),
            down: HashSet::new(),
        }
    }

    fn l4(text: &str) -> L4Config {
        let yaml = format!(
            "xdp: {{interfaces: [{{name: eth0}}]}}\nl4:\n  forwarding: {{source_v4: 10.0.0.1}}\n  services:\n{text}"
        );
        parse(&yaml, Path::new("l4.yaml")).unwrap().l4
    }

    #[test]
    fn ids_stay_with_their_vip_and_address_across_changes() {
        let before = l4("    - {name: a, vip: 10.1.0.1, port: 80, backends: [{address: 10.2.0.1}, {address: 10.2.0.2}]}
    - {name: b, vip: 10.1.0.2, port: 80, backends: [{address: 10.2.0.2}]}
");
        let first = plan(&before, &Assigned::default(), 4).unwrap();
        let ids = |p: &Plan, s: usize| {
            p.services[s]
                .backends
                .iter()
                .map(|b| b.id)
                .collect::<Vec<_>>()
        };
        // One id per address, shared across services.
        assert_eq!(ids(&first, 0), [1, 2]);
        assert_eq!(ids(&first, 1), [2]);
        // Reordered services, a removed backend, a new one, a new service.
        let after = l4(
            "    - {name: c, vip: 10.1.0.3, port: 80, backends: [{address: 10.2.0.3}]}
    - {name: b, vip: 10.1.0.2, port: 80, backends: [{address: 10.2.0.2}, {address: 10.2.0.1}]}
",
        );
        let mut seen = written(&first);
        seen.services.get_mut(&first.services[1].key).unwrap().1 = 7;
        let second = plan(&after, &seen, 4).unwrap();
        assert_eq!(
            second.services[1].id, first.services[1].id,
            "b keeps its id"
        );
        assert_eq!(second.services[1].generation, 7, "and its live generation");
        assert_eq!(ids(&second, 1), [2, 1], "addresses keep their ids");
        assert_eq!(ids(&second, 0), [3], "a new address takes a new id");
        // The new service prefers an id no service held (a's was 0).
        assert_eq!(second.services[0].id, 2);
        assert_eq!(
            plan(&after, &seen, 1),
            Err(PlanError::Services {
                wanted: 2,
                capacity: 1
            })
        );
    }
}
