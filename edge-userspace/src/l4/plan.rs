//! From the `l4:` configuration to what the maps hold: service ids, real
//! ids, VIP keys and address markers, settings. Pure, so it is unit-tested.

use crate::config::l4::{L4Config, L4Hash};
use edge_common::{
    FAMILY_V4, FAMILY_V6, L4Settings, REAL_FLAG_UP, RealDef, SETTINGS_SYN_BUDGET, VIP_FLAG_ADDRESS,
    VIP_FLAG_SOURCE_HASH, VipKey, VipMeta,
};
use std::net::IpAddr;

use super::maglev;

/// Every service, with the ids the kernel knows it and its reals by.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Services, in configuration order; `services[i].id == i`.
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
}

/// One real of a service (a real serving two services has two ids, so
/// counters are per service and backend).
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

impl ServicePlan {
    /// The VIP entry for table generation `generation`.
    pub fn meta(&self, generation: u32) -> VipMeta {
        VipMeta {
            id: self.id,
            flags: self.flags,
            ring_size: self.table_size,
            generation,
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
}

/// Builds the plan of `cfg`.
pub fn plan(cfg: &L4Config) -> Plan {
    let mut next_real = 1u32;
    let mut services = Vec::new();
    let mut markers: Vec<VipKey> = Vec::new();
    for (i, s) in cfg.services.iter().enumerate() {
        let key = vip_key(s.vip, s.port, s.protocol.number());
        let marker = vip_key(s.vip, 0, 0);
        if !markers.contains(&marker) {
            markers.push(marker);
        }
        let backends = s
            .backends
            .iter()
            .map(|b| {
                let id = next_real;
                next_real += 1;
                RealPlan {
                    id,
                    address: b.address,
                    weight: b.weight,
                    key: maglev::key(b.address.to_string().as_bytes()),
                }
            })
            .collect();
        services.push(ServicePlan {
            id: i as u32,
            name: s.name.clone(),
            key,
            flags: if s.hash == L4Hash::SourceIp {
                VIP_FLAG_SOURCE_HASH
            } else {
                0
            },
            table_size: s.table_size,
            backends,
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
    Plan {
        services,
        markers,
        settings,
    }
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
        let p = plan(&cfg.l4);
        assert_eq!(p.services.len(), 3);
        assert_eq!(p.services[1].id, 1);
        let ids: Vec<u32> = p
            .services
            .iter()
            .flat_map(|s| s.backends.iter().map(|b| b.id))
            .collect();
        assert_eq!(ids, [1, 2, 3, 4, 5, 6, 7]);
        // Two services share nothing but each VIP address gets one marker.
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
}
