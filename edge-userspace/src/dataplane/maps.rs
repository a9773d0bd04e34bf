//! Typed handles on the XDP program's maps.

use super::{
    DataplaneError,
    filter::{self, SharedFilter},
};
use aya::{
    Ebpf,
    maps::{HashMap, LpmTrie, MapData, PerCpuArray, lpm_trie::Key},
};
use edge_common::{
    BanValue, Counters, DenyValue, IPPROTO_TCP, MAP_BANS_V4, MAP_BANS_V6, MAP_CLASS_STATS,
    MAP_DENY_V4, MAP_DENY_V6, MAP_L7_PORTS, MAP_VIPS, PacketClass, PortKey, VipKey, VipMeta,
};
use ipnet::IpNet;
use std::collections::HashSet;

pub(super) fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, DataplaneError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or(DataplaneError::Missing { kind: "map", name })?;
    T::try_from(map).map_err(|source| DataplaneError::Map { map: name, source })
}

/// A delete that found nothing (another process, an upgrade's other edge,
/// removed the entry first) as success.
fn absent_is_done(r: Result<(), aya::maps::MapError>) -> Result<(), aya::maps::MapError> {
    match r {
        Err(aya::maps::MapError::SyscallError(e))
            if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
        {
            Ok(())
        }
        other => other,
    }
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> DataplaneError {
    move |source| DataplaneError::Map { map, source }
}

/// The keys of `map` that `keep` rejects. They are collected before any is
/// removed: deleting while iterating a BPF hash can skip entries. A failed
/// read is an error, not a skipped key, so no stale entry survives silently.
fn stale_keys<K>(
    map: &'static str,
    keys: impl Iterator<Item = Result<K, aya::maps::MapError>>,
    keep: impl Fn(&K) -> bool,
) -> Result<Vec<K>, DataplaneError> {
    let mut stale = Vec::new();
    for key in keys {
        let key = key.map_err(map_err(map))?;
        if !keep(&key) {
            stale.push(key);
        }
    }
    Ok(stale)
}

/// The maps the configuration fills.
///
/// Each change keeps the pre-filter words ([`super::filter`]) in step: a
/// bit goes on before its entry is written, and off only once the entries
/// it stood for are gone.
pub struct Tables {
    deny_v4: LpmTrie<MapData, [u8; 4], DenyValue>,
    deny_v6: LpmTrie<MapData, [u8; 16], DenyValue>,
    l7_ports: HashMap<MapData, PortKey, u8>,
    vips: HashMap<MapData, VipKey, VipMeta>,
    bans_v4: HashMap<MapData, [u8; 4], BanValue>,
    bans_v6: HashMap<MapData, [u8; 16], BanValue>,
    filter: SharedFilter,
}

impl Tables {
    pub(super) fn take(ebpf: &mut Ebpf, filter: SharedFilter) -> Result<Self, DataplaneError> {
        Ok(Self {
            deny_v4: take(ebpf, MAP_DENY_V4)?,
            deny_v6: take(ebpf, MAP_DENY_V6)?,
            l7_ports: take(ebpf, MAP_L7_PORTS)?,
            vips: take(ebpf, MAP_VIPS)?,
            bans_v4: take(ebpf, MAP_BANS_V4)?,
            bans_v6: take(ebpf, MAP_BANS_V6)?,
            filter,
        })
    }

    /// Whether either ban map holds an entry.
    fn any_ban(&self) -> Result<bool, DataplaneError> {
        Ok(match self.bans_v4.keys().next() {
            Some(k) => {
                k.map_err(map_err(MAP_BANS_V4))?;
                true
            }
            None => match self.bans_v6.keys().next() {
                Some(k) => {
                    k.map_err(map_err(MAP_BANS_V6))?;
                    true
                }
                None => false,
            },
        })
    }

    /// Bans `ip` until `expires_ns` (`CLOCK_MONOTONIC`).
    ///
    /// Bans have no pre-filter bits: during an upgrade the old and the new
    /// edge both write bans, and two processes' read-modify-writes of one
    /// filter word could lose a bit and let a banned source through. One
    /// word written whole says whether any ban exists
    /// ([`edge_common::filter::BANS`]): set before the entry goes in, so
    /// the ban holds at once, and again after it, so that a concurrent
    /// [`Tables::unban`] of the last other ban (which clears the word) can
    /// not leave this one unseen for longer than the insert takes.
    pub fn ban(&mut self, ip: std::net::IpAddr, expires_ns: u64) -> Result<(), DataplaneError> {
        let v = BanValue { expires_ns };
        self.filter.lock().set_bans(true)?;
        match ip.to_canonical() {
            std::net::IpAddr::V4(a) => self
                .bans_v4
                .insert(a.octets(), v, 0)
                .map_err(map_err(MAP_BANS_V4))?,
            std::net::IpAddr::V6(a) => self
                .bans_v6
                .insert(a.octets(), v, 0)
                .map_err(map_err(MAP_BANS_V6))?,
        }
        self.filter.lock().set_bans(true)
    }

    /// Lifts the ban of `ip` (absent, or just lifted by another process:
    /// nothing to do). Removing the last ban clears the ban word, then
    /// looks at the maps again and sets it back if another process banned
    /// a source meanwhile; if that second look fails, the word is set back
    /// too (a set word only costs a lookup, a clear one could hide a ban).
    pub fn unban(&mut self, ip: std::net::IpAddr) -> Result<(), DataplaneError> {
        match ip.to_canonical() {
            std::net::IpAddr::V4(a) => {
                let k = a.octets();
                if self.bans_v4.get(&k, 0).is_ok() {
                    absent_is_done(self.bans_v4.remove(&k)).map_err(map_err(MAP_BANS_V4))?;
                }
            }
            std::net::IpAddr::V6(a) => {
                let k = a.octets();
                if self.bans_v6.get(&k, 0).is_ok() {
                    absent_is_done(self.bans_v6.remove(&k)).map_err(map_err(MAP_BANS_V6))?;
                }
            }
        }
        if !self.any_ban()? {
            let mut filter = self.filter.lock();
            if filter.bans()? {
                filter.set_bans(false)?;
                match self.any_ban() {
                    Ok(false) => {}
                    Ok(true) => filter.set_bans(true)?,
                    Err(e) => {
                        filter.set_bans(true)?;
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether the ban word says a ban may exist (for tests and the
    /// benchmark: the program skips the ban maps while it is clear).
    pub fn ban_word(&self) -> Result<bool, DataplaneError> {
        self.filter.lock().bans()
    }

    /// Every ban in the maps (a restarted edge adopts them; the daemon
    /// reads them again every sweep). When there are any, the ban word is
    /// set: it repairs a word left clear by a process that died between
    /// its insert and its second write of the word, which a concurrent
    /// lift of the last other ban could otherwise leave unseen.
    pub fn bans(&self) -> Result<Vec<(std::net::IpAddr, u64)>, DataplaneError> {
        let mut out = Vec::new();
        for item in self.bans_v4.iter() {
            let (k, v) = item.map_err(map_err(MAP_BANS_V4))?;
            out.push((std::net::IpAddr::from(k), v.expires_ns));
        }
        for item in self.bans_v6.iter() {
            let (k, v) = item.map_err(map_err(MAP_BANS_V6))?;
            out.push((std::net::IpAddr::from(k), v.expires_ns));
        }
        if !out.is_empty() {
            self.filter.lock().set_bans(true)?;
        }
        Ok(out)
    }

    /// Makes the deny list exactly `nets`: new prefixes are added before
    /// stale ones are removed, so a prefix kept across a reload never opens.
    pub fn set_deny(&mut self, nets: &[IpNet]) -> Result<(), DataplaneError> {
        // The pre-filter bits of the new list, on before its prefixes go in.
        let bits = filter::deny_bits(nets);
        self.filter.lock().set(&bits)?;
        let mut want4 = HashSet::new();
        let mut want6 = HashSet::new();
        for (rule, net) in nets.iter().enumerate() {
            let value = DenyValue { rule: rule as u32 };
            let len = u32::from(net.prefix_len());
            match net {
                IpNet::V4(n) => {
                    let data = n.addr().octets();
                    self.deny_v4
                        .insert(&Key::new(len, data), value, 0)
                        .map_err(map_err(MAP_DENY_V4))?;
                    want4.insert((len, data));
                }
                IpNet::V6(n) => {
                    let data = n.addr().octets();
                    self.deny_v6
                        .insert(&Key::new(len, data), value, 0)
                        .map_err(map_err(MAP_DENY_V6))?;
                    want6.insert((len, data));
                }
            }
        }
        let stale4 = stale_keys(MAP_DENY_V4, self.deny_v4.keys(), |k| {
            want4.contains(&(k.prefix_len(), k.data()))
        })?;
        for k in stale4 {
            self.deny_v4.remove(&k).map_err(map_err(MAP_DENY_V4))?;
        }
        let stale6 = stale_keys(MAP_DENY_V6, self.deny_v6.keys(), |k| {
            want6.contains(&(k.prefix_len(), k.data()))
        })?;
        for k in stale6 {
            self.deny_v6.remove(&k).map_err(map_err(MAP_DENY_V6))?;
        }
        // Off where no prefix is left.
        self.filter.lock().replace(filter::DENY, &bits)
    }

    /// Makes the L7 port set exactly `ports` (TCP).
    pub fn set_l7_ports(&mut self, ports: &[u16]) -> Result<(), DataplaneError> {
        let want: HashSet<PortKey> = ports
            .iter()
            .map(|p| PortKey::new(*p, IPPROTO_TCP))
            .collect();
        let bits = filter::l7_bits(ports.iter().copied());
        self.filter.lock().set(&bits)?;
        for key in &want {
            self.l7_ports
                .insert(key, 1, 0)
                .map_err(map_err(MAP_L7_PORTS))?;
        }
        for k in stale_keys(MAP_L7_PORTS, self.l7_ports.keys(), |k| want.contains(k))? {
            self.l7_ports.remove(&k).map_err(map_err(MAP_L7_PORTS))?;
        }
        self.filter.lock().replace(filter::L7, &bits)
    }

    /// Makes the VIP table exactly `vips` (ids in list order, no tables):
    /// for tests of classification. It leaves the services map alone; the
    /// L4 controller's next reload clears the slots it left unbacked.
    pub fn set_vips(&mut self, vips: &[VipKey]) -> Result<(), DataplaneError> {
        let bits = filter::vip_bits(vips);
        self.filter.lock().set(&bits)?;
        for (id, key) in vips.iter().enumerate() {
            let meta = VipMeta {
                id: id as u32,
                ..VipMeta::default()
            };
            self.vips.insert(key, meta, 0).map_err(map_err(MAP_VIPS))?;
        }
        for k in stale_keys(MAP_VIPS, self.vips.keys(), |k| vips.contains(k))? {
            self.vips.remove(&k).map_err(map_err(MAP_VIPS))?;
        }
        self.filter.lock().replace(filter::VIP, &bits)
    }
}

/// The per-CPU, per-class packet and byte counters.
pub struct ClassStats {
    map: PerCpuArray<MapData, Counters>,
}

impl ClassStats {
    pub(super) fn take(ebpf: &mut Ebpf) -> Result<Self, DataplaneError> {
        Ok(Self {
            map: take(ebpf, MAP_CLASS_STATS)?,
        })
    }

    /// Each class's counters, summed over CPUs, in [`PacketClass::ALL`] order.
    pub fn read(&self) -> Result<[Counters; PacketClass::COUNT as usize], DataplaneError> {
        let mut out = [Counters::default(); PacketClass::COUNT as usize];
        for (slot, class) in out.iter_mut().zip(PacketClass::ALL) {
            let per_cpu = self
                .map
                .get(&class.index(), 0)
                .map_err(map_err(MAP_CLASS_STATS))?;
            for c in per_cpu.iter() {
                slot.packets += c.packets;
                slot.bytes += c.bytes;
            }
        }
        Ok(out)
    }
}
