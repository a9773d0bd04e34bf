//! Typed handles on the L4 balancer's maps: reals, Maglev rings, settings,
//! egress interfaces, and the per-service / per-real counters.

use super::{
    DataplaneError,
    filter::{self, SharedFilter},
    maps::take,
};
use aya::{
    Ebpf,
    maps::{Array, HashMap, Map, MapData, PerCpuArray, xdp::DevMapHash},
};
use edge_common::{
    FAMILY_V4, FAMILY_V6, IfaceDef, L4Counters, L4Event, L4Settings, MAP_IFACES, MAP_L4_EVENTS,
    MAP_L4_SETTINGS, MAP_REAL_STATS, MAP_REALS, MAP_RINGS, MAP_SERVICES, MAP_TX_PORTS,
    MAP_VIP_STATS, MAP_VIPS, MAX_RING_SIZE, REAL_FLAG_UP, RealDef, VIP_FLAG_ADDRESS, VipKey,
    VipMeta, ring_index,
};

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> DataplaneError {
    move |source| DataplaneError::Map { map, source }
}

/// The L4 maps the daemon writes and reads.
pub struct L4Maps {
    vips: HashMap<MapData, VipKey, VipMeta>,
    /// The VIP key of each service id, which the kernel's conntrack-first
    /// hit checks instead of reading the VIP map (see `edge_common::l4`).
    services: Array<MapData, VipKey>,
    reals: Array<MapData, RealDef>,
    rings: Array<MapData, u32>,
    settings: Array<MapData, L4Settings>,
    ifaces: HashMap<MapData, u32, IfaceDef>,
    tx_ports: DevMapHash<MapData>,
    vip_stats: PerCpuArray<MapData, L4Counters>,
    real_stats: PerCpuArray<MapData, L4Counters>,
    events: PerCpuArray<MapData, u64>,
    /// The pre-filter words, whose VIP port bits follow the VIP map.
    filter: SharedFilter,
}

impl L4Maps {
    /// Takes the L4 maps from `ebpf`, with `vips`, a second handle on the
    /// VIP map, which [`super::Tables`] also holds, and the pre-filter
    /// words they share.
    pub(super) fn take(
        ebpf: &mut Ebpf,
        vips: MapData,
        filter: SharedFilter,
    ) -> Result<Self, DataplaneError> {
        let vips = HashMap::try_from(Map::HashMap(vips)).map_err(map_err(MAP_VIPS))?;
        Ok(Self {
            filter,
            vips,
            services: take(ebpf, MAP_SERVICES)?,
            reals: take(ebpf, MAP_REALS)?,
            rings: take(ebpf, MAP_RINGS)?,
            settings: take(ebpf, MAP_L4_SETTINGS)?,
            ifaces: take(ebpf, MAP_IFACES)?,
            tx_ports: take(ebpf, MAP_TX_PORTS)?,
            vip_stats: take(ebpf, MAP_VIP_STATS)?,
            real_stats: take(ebpf, MAP_REAL_STATS)?,
            events: take(ebpf, MAP_L4_EVENTS)?,
        })
    }

    /// Writes one VIP entry; a service's ring size, generation and
    /// previous table change together, in one update. Its port's
    /// pre-filter bit goes on first.
    ///
    /// A service's slot in the services map is written after its VIP
    /// entry, and a slot that named this VIP under another id is cleared
    /// before: the kernel trusts a conntrack entry for (VIP, id) only while
    /// the slot of `id` names that VIP.
    pub fn set_vip(&mut self, key: &VipKey, meta: &VipMeta) -> Result<(), DataplaneError> {
        let service = meta.flags & VIP_FLAG_ADDRESS == 0;
        if service
            && let Some(old) = self.vip(key)?
            && old.id != meta.id
        {
            self.release(old.id, key)?;
        }
        self.filter.lock().set(&filter::vip_bits([key]))?;
        self.vips.insert(key, meta, 0).map_err(map_err(MAP_VIPS))?;
        if service {
            self.services
                .set(meta.id, key, 0)
                .map_err(map_err(MAP_SERVICES))?;
        }
        Ok(())
    }

    /// Clears service `id`'s slot if it still names `key`: the kernel stops
    /// trusting conntrack entries of `id` for that VIP.
    fn release(&mut self, id: u32, key: &VipKey) -> Result<(), DataplaneError> {
        match self.services.get(&id, 0) {
            Ok(named) if named == *key => self
                .services
                .set(id, VipKey::default(), 0)
                .map_err(map_err(MAP_SERVICES)),
            Ok(_) => Ok(()),
            // An id beyond the map was never written there.
            Err(aya::maps::MapError::OutOfBounds { .. }) => Ok(()),
            Err(e) => Err(map_err(MAP_SERVICES)(e)),
        }
    }

    /// Clears every slot of the services map that the VIP map does not
    /// back (its VIP gone, or under another id). The writes above keep the
    /// two in step within one process; this repairs what they cannot see:
    /// a slot the old process of an upgrade wrote after the hand-over (a
    /// reload it had begun goes on to its end), or VIPs replaced through
    /// [`super::Tables::set_vips`]. At most two reads per service id; run
    /// on every reload and every second (see `l4::service`).
    pub fn sync_services(&mut self) -> Result<(), DataplaneError> {
        let none = VipKey::default();
        for id in 0..self.services.len() {
            let named = self.services.get(&id, 0).map_err(map_err(MAP_SERVICES))?;
            if named == none {
                continue;
            }
            let backed = self
                .vip(&named)?
                .is_some_and(|meta| meta.flags & VIP_FLAG_ADDRESS == 0 && meta.id == id);
            if !backed {
                self.services
                    .set(id, none, 0)
                    .map_err(map_err(MAP_SERVICES))?;
            }
        }
        Ok(())
    }

    /// The VIP key service `id`'s slot names (zeroed: none), for tests.
    pub fn service_slot(&self, id: u32) -> Result<VipKey, DataplaneError> {
        self.services.get(&id, 0).map_err(map_err(MAP_SERVICES))
    }

    /// Writes service `id`'s slot as it is, for tests that need a slot the
    /// VIP map does not back (as a race in an upgrade's hand-over can leave).
    #[doc(hidden)]
    pub fn write_service_slot(&mut self, id: u32, key: &VipKey) -> Result<(), DataplaneError> {
        self.services.set(id, key, 0).map_err(map_err(MAP_SERVICES))
    }

    /// The VIP entry at `key`, if any.
    pub fn vip(&self, key: &VipKey) -> Result<Option<VipMeta>, DataplaneError> {
        match self.vips.get(key, 0) {
            Ok(meta) => Ok(Some(meta)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(map_err(MAP_VIPS)(e)),
        }
    }

    /// Removes every VIP entry not in `keep` (each service's slot in the
    /// services map first), clears any slot the VIP map does not back,
    /// then the port pre-filter bits that only the removed VIPs needed.
    pub fn retain_vips(&mut self, keep: &[VipKey]) -> Result<(), DataplaneError> {
        let mut stale = Vec::new();
        let mut kept = Vec::new();
        for entry in self.vips.iter() {
            let (key, meta) = entry.map_err(map_err(MAP_VIPS))?;
            if keep.contains(&key) {
                kept.push(key);
            } else {
                stale.push((key, meta));
            }
        }
        for (key, meta) in stale {
            if meta.flags & VIP_FLAG_ADDRESS == 0 {
                self.release(meta.id, &key)?;
            }
            self.vips.remove(&key).map_err(map_err(MAP_VIPS))?;
        }
        self.sync_services()?;
        self.filter
            .lock()
            .replace(filter::VIP, &filter::vip_bits(&kept))
    }

    /// Makes the VIP port pre-filter bits those of the VIP map's entries
    /// now, after a removal.
    fn refilter_vips(&mut self) -> Result<(), DataplaneError> {
        let mut keys = Vec::new();
        for key in self.vips.keys() {
            keys.push(key.map_err(map_err(MAP_VIPS))?);
        }
        self.filter
            .lock()
            .replace(filter::VIP, &filter::vip_bits(&keys))
    }

    /// The service and real ids the maps hold now (services by VIP key,
    /// with their live generation; reals by address), from which a plan
    /// keeps its ids stable.
    pub fn assigned(&self) -> Result<crate::l4::plan::Assigned, DataplaneError> {
        let mut out = crate::l4::plan::Assigned::default();
        for entry in self.vips.iter() {
            let (key, meta) = entry.map_err(map_err(MAP_VIPS))?;
            if meta.flags & VIP_FLAG_ADDRESS == 0 {
                out.services.insert(key, (meta.id, meta.generation));
            }
        }
        for id in 1..self.reals.len() {
            let real = self.reals.get(&id, 0).map_err(map_err(MAP_REALS))?;
            if let Some(addr) = real_address(&real) {
                out.reals.insert(addr, id);
                if real.flags & REAL_FLAG_UP == 0 {
                    out.down.insert(addr);
                }
            }
        }
        Ok(out)
    }

    /// How many services the ring map was sized for.
    pub fn service_capacity(&self) -> u32 {
        self.rings.len() / (2 * MAX_RING_SIZE)
    }

    /// Removes the VIP entry at `key`, if any.
    pub fn remove_vip(&mut self, key: &VipKey) -> Result<(), DataplaneError> {
        if let Some(meta) = self.vip(key)?
            && meta.flags & VIP_FLAG_ADDRESS == 0
        {
            self.release(meta.id, key)?;
        }
        match self.vips.remove(key) {
            Ok(()) => self.refilter_vips(),
            Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(map_err(MAP_VIPS)(e)),
        }
    }

    /// Writes the forwarding settings (outer sources, SYN budget).
    pub fn set_settings(&mut self, settings: &L4Settings) -> Result<(), DataplaneError> {
        self.settings
            .set(0, settings, 0)
            .map_err(map_err(MAP_L4_SETTINGS))
    }

    /// Writes real `id` (ids start at 1; 0 means "no backend").
    pub fn set_real(&mut self, id: u32, real: &RealDef) -> Result<(), DataplaneError> {
        self.reals.set(id, real, 0).map_err(map_err(MAP_REALS))
    }

    /// Writes `table` into the half of service `service`'s rings that
    /// `generation` selects. Write the idle half, then publish the
    /// generation in the service's `VipMeta`.
    pub fn write_ring(
        &mut self,
        service: u32,
        generation: u32,
        table: &[u32],
    ) -> Result<(), DataplaneError> {
        if table.len() > MAX_RING_SIZE as usize {
            return Err(DataplaneError::Map {
                map: MAP_RINGS,
                source: aya::maps::MapError::OutOfBounds {
                    index: table.len() as u32,
                    max_entries: MAX_RING_SIZE,
                },
            });
        }
        for (slot, real) in table.iter().enumerate() {
            self.rings
                .set(ring_index(service, generation, slot as u32), real, 0)
                .map_err(map_err(MAP_RINGS))?;
        }
        Ok(())
    }

    /// The real in `slot` of the half `generation` selects (for tests).
    pub fn ring_slot(
        &self,
        service: u32,
        generation: u32,
        slot: u32,
    ) -> Result<u32, DataplaneError> {
        self.rings
            .get(&ring_index(service, generation, slot), 0)
            .map_err(map_err(MAP_RINGS))
    }

    /// Declares interface `ifindex` (with its MAC) as a place reals may be
    /// reached through: `XDP_TX` when it is the ingress, otherwise
    /// `XDP_REDIRECT` through the devmap.
    pub fn set_iface(&mut self, ifindex: u32, mac: [u8; 6]) -> Result<(), DataplaneError> {
        self.ifaces
            .insert(ifindex, IfaceDef { mac, _pad: [0; 2] }, 0)
            .map_err(map_err(MAP_IFACES))?;
        self.tx_ports
            .insert(ifindex, ifindex, None, 0)
            .map_err(|source| DataplaneError::Devmap {
                map: MAP_TX_PORTS,
                source,
            })
    }

    /// Service `id`'s counters, summed over CPUs.
    pub fn vip_counters(&self, id: u32) -> Result<L4Counters, DataplaneError> {
        sum(&self.vip_stats, id, MAP_VIP_STATS)
    }

    /// Real `id`'s counters, summed over CPUs.
    pub fn real_counters(&self, id: u32) -> Result<L4Counters, DataplaneError> {
        sum(&self.real_stats, id, MAP_REAL_STATS)
    }

    /// Every L4 event's count, summed over CPUs, in [`L4Event::ALL`] order.
    pub fn events(&self) -> Result<[u64; L4Event::COUNT as usize], DataplaneError> {
        let mut out = [0u64; L4Event::COUNT as usize];
        for (slot, e) in out.iter_mut().zip(L4Event::ALL) {
            let per_cpu = self
                .events
                .get(&e.index(), 0)
                .map_err(map_err(MAP_L4_EVENTS))?;
            *slot = per_cpu.iter().sum();
        }
        Ok(out)
    }
}

/// The address of a written real entry (`None` for an unused slot).
fn real_address(real: &RealDef) -> Option<std::net::IpAddr> {
    match real.family {
        FAMILY_V4 => {
            let [a, b, c, d, ..] = real.addr;
            Some(std::net::IpAddr::from([a, b, c, d]))
        }
        FAMILY_V6 => Some(std::net::IpAddr::from(real.addr)),
        _ => None,
    }
}

fn sum(
    map: &PerCpuArray<MapData, L4Counters>,
    id: u32,
    name: &'static str,
) -> Result<L4Counters, DataplaneError> {
    let per_cpu = map.get(&id, 0).map_err(map_err(name))?;
    let mut total = L4Counters::default();
    for c in per_cpu.iter() {
        total.packets += c.packets;
        total.bytes += c.bytes;
        total.new_flows += c.new_flows;
        total.lru_misses += c.lru_misses;
    }
    Ok(total)
}
