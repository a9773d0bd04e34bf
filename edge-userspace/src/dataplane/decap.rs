//! The backend-side decapsulation program (`edge decap`): its own object,
//! its allow-list of edge sources, its counters.

use super::{AttachedMode, DECAP_OBJECT, DataplaneError, attach_in_mode, maps::take};
use crate::config::Interface;
use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, MapData, PerCpuArray},
    programs::{Xdp, xdp::XdpLinkId},
};
use edge_common::{
    Counters, DecapEvent, MAP_DECAP_STATS, MAP_DECAP_V4, MAP_DECAP_V6, MAX_DECAP_SOURCES,
    PROGRAM_DECAP,
};
use std::{collections::HashSet, net::IpAddr};

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> DataplaneError {
    move |source| DataplaneError::Map { map, source }
}

/// The loaded decapsulation program.
pub struct Decap {
    ebpf: Ebpf,
    v4: HashMap<MapData, [u8; 4], u8>,
    v6: HashMap<MapData, [u8; 16], u8>,
    stats: PerCpuArray<MapData, Counters>,
    links: Vec<(String, XdpLinkId)>,
}

impl Decap {
    /// Loads the embedded decap object (the verifier runs here).
    pub fn load() -> Result<Self, DataplaneError> {
        let mut ebpf = EbpfLoader::new()
            .load(DECAP_OBJECT)
            .map_err(DataplaneError::Load)?;
        let v4 = take(&mut ebpf, MAP_DECAP_V4)?;
        let v6 = take(&mut ebpf, MAP_DECAP_V6)?;
        let stats = take(&mut ebpf, MAP_DECAP_STATS)?;
        let mut decap = Self {
            ebpf,
            v4,
            v6,
            stats,
            links: Vec::new(),
        };
        decap
            .program()?
            .load()
            .map_err(|source| DataplaneError::Program {
                what: "the kernel refused the decap program (verifier, or missing CAP_BPF)".into(),
                source,
            })?;
        Ok(decap)
    }

    /// The program, for attaching or BPF_PROG_TEST_RUN.
    pub fn program(&mut self) -> Result<&mut Xdp, DataplaneError> {
        self.ebpf
            .program_mut(PROGRAM_DECAP)
            .ok_or(DataplaneError::Missing {
                kind: "program",
                name: PROGRAM_DECAP,
            })?
            .try_into()
            .map_err(|source| DataplaneError::Program {
                what: format!("{PROGRAM_DECAP} is not an XDP program"),
                source,
            })
    }

    /// Makes the allowed outer sources exactly `sources`.
    pub fn set_sources(&mut self, sources: &[IpAddr]) -> Result<(), DataplaneError> {
        if sources.len() > MAX_DECAP_SOURCES as usize {
            return Err(DataplaneError::Map {
                map: MAP_DECAP_V4,
                source: aya::maps::MapError::OutOfBounds {
                    index: sources.len() as u32,
                    max_entries: MAX_DECAP_SOURCES,
                },
            });
        }
        let mut want4 = HashSet::new();
        let mut want6 = HashSet::new();
        for s in sources {
            match s {
                IpAddr::V4(a) => {
                    self.v4
                        .insert(a.octets(), 1, 0)
                        .map_err(map_err(MAP_DECAP_V4))?;
                    want4.insert(a.octets());
                }
                IpAddr::V6(a) => {
                    self.v6
                        .insert(a.octets(), 1, 0)
                        .map_err(map_err(MAP_DECAP_V6))?;
                    want6.insert(a.octets());
                }
            }
        }
        let stale4: Vec<_> = self
            .v4
            .keys()
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_err(MAP_DECAP_V4))?
            .into_iter()
            .filter(|k| !want4.contains(k))
            .collect();
        for k in stale4 {
            self.v4.remove(&k).map_err(map_err(MAP_DECAP_V4))?;
        }
        let stale6: Vec<_> = self
            .v6
            .keys()
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_err(MAP_DECAP_V6))?
            .into_iter()
            .filter(|k| !want6.contains(k))
            .collect();
        for k in stale6 {
            self.v6.remove(&k).map_err(map_err(MAP_DECAP_V6))?;
        }
        Ok(())
    }

    /// Attaches to `iface`; detached again on drop.
    pub fn attach(&mut self, iface: &Interface) -> Result<AttachedMode, DataplaneError> {
        let (link, mode) = attach_in_mode(self.program()?, iface)?;
        self.links.push((iface.name.clone(), link));
        Ok(mode)
    }

    /// Each event's counters, summed over CPUs, in [`DecapEvent::ALL`] order.
    pub fn stats(&self) -> Result<[Counters; DecapEvent::COUNT as usize], DataplaneError> {
        let mut out = [Counters::default(); DecapEvent::COUNT as usize];
        for (slot, e) in out.iter_mut().zip(DecapEvent::ALL) {
            for c in self
                .stats
                .get(&e.index(), 0)
                .map_err(map_err(MAP_DECAP_STATS))?
                .iter()
            {
                slot.packets += c.packets;
                slot.bytes += c.bytes;
            }
        }
        Ok(out)
    }
}

impl Drop for Decap {
    fn drop(&mut self) {
        while let Some((iface, link)) = self.links.pop() {
            match self.program().and_then(|p| {
                p.detach(link).map_err(|source| DataplaneError::Program {
                    what: format!("detaching decap from {iface}"),
                    source,
                })
            }) {
                Ok(()) => tracing::info!(interface = %iface, "decap detached"),
                Err(e) => tracing::error!("{e}"),
            }
        }
    }
}
