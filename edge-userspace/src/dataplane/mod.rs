//! The kernel side as the daemon sees it: load the embedded XDP object,
//! fill its maps from the configuration, attach it to interfaces, read its
//! counters.

pub mod decap;
mod filter;
mod l4maps;
mod maps;
mod pin;

pub use l4maps::L4Maps;
pub use maps::{ClassStats, Tables};

/// `CLOCK_MONOTONIC` now, in nanoseconds: the clock `bpf_ktime_get_ns`
/// reads, which ban expiries are written in.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write; CLOCK_MONOTONIC always
    // exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}
pub use pin::{Pinned, daemon_dir, pin_decap, pin_dir, pin_program, unpin_daemon, unpin_program};

use crate::config::{Interface, XdpMode};
use aya::{
    Ebpf, EbpfLoader,
    programs::{ProgramError, Xdp, XdpMode as AyaMode, xdp::XdpLinkId},
};
use edge_common::{
    DEFAULT_CONNTRACK_CAPACITY, MAP_CONNTRACK, MAP_RINGS, MAP_VIPS, MAX_L4_SERVICES, PROGRAM_XDP,
    ring_entries,
};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The XDP object built from edge-ebpf by this crate's build script.
pub static XDP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/edge-xdp"));

/// The backend-side decapsulation object (see `edge decap`).
pub static DECAP_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/edge-decap"));

/// Why the XDP side could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// The kernel refused the object or one of its maps.
    #[error("loading the XDP object failed (edge needs root, or CAP_BPF and CAP_NET_ADMIN): {0}")]
    Load(#[source] aya::EbpfError),
    /// The object lacks something the daemon expects: a build mismatch.
    #[error("the XDP object has no {kind} named {name}; was it built from this tree?")]
    Missing {
        /// "map" or "program".
        kind: &'static str,
        /// Its name.
        name: &'static str,
    },
    /// A map has an unexpected type or could not be read or written.
    #[error("XDP map {map}: {source}")]
    Map {
        /// Map name.
        map: &'static str,
        /// What went wrong.
        source: aya::maps::MapError,
    },
    /// The verifier rejected the program or an attach failed.
    #[error("{what}: {source}")]
    Program {
        /// What was being done.
        what: String,
        /// The error from the kernel.
        source: ProgramError,
    },
    /// A devmap update failed.
    #[error("XDP map {map}: {source}")]
    Devmap {
        /// Map name.
        map: &'static str,
        /// What went wrong.
        source: aya::maps::xdp::XdpMapError,
    },
    /// Pinning to bpffs failed.
    #[error("{what}: {source}")]
    Pin {
        /// What was being done.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The mode an interface actually got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachedMode {
    /// Native (driver) mode.
    Native,
    /// Generic (skb) mode.
    Generic,
    /// The program replaced the one on a link pinned by an earlier edge,
    /// in place, in the mode that link was attached in.
    Replaced,
}

impl AttachedMode {
    /// Lower-case name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            AttachedMode::Native => "native",
            AttachedMode::Generic => "generic",
            AttachedMode::Replaced => "replaced",
        }
    }
}

/// Map sizes chosen at load time, and where the maps are pinned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// Per-CPU conntrack entries.
    pub conntrack_capacity: u32,
    /// L4 services to make Maglev rings for (each costs 2 × 65537 × 4 bytes).
    pub l4_services: u32,
    /// Pin the maps and links (`edge run`), adopting those an earlier
    /// daemon pinned; `None`: nothing outlives the process.
    pub pin: Option<PinAt>,
}

/// Where a daemon pins its maps and links.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinAt {
    /// A bpffs mount (mounted there if none is).
    pub root: std::path::PathBuf,
    /// The daemon's name among others on this host.
    pub instance: String,
    /// Refuse, rather than drop, pinned maps that do not fit (an upgrade:
    /// the running edge uses them).
    pub keep_unfit: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            conntrack_capacity: DEFAULT_CONNTRACK_CAPACITY,
            l4_services: 4,
            pin: None,
        }
    }
}

/// The loaded XDP program and its maps.
pub struct Dataplane {
    ebpf: Ebpf,
    tables: Tables,
    l4: Arc<Mutex<L4Maps>>,
    stats: Arc<ClassStats>,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    links: Vec<(String, XdpLinkId)>,
    /// Each interface attached to, and how (for the admin API).
    attached: Vec<(String, AttachedMode)>,
    /// Where the maps and links are pinned, and what was found there.
    pinned: Option<(PinAt, std::path::PathBuf, Pinned)>,
}

impl Dataplane {
    /// Loads the embedded object and the program (the verifier runs here),
    /// with default map sizes.
    pub fn load() -> Result<Self, DataplaneError> {
        Self::load_with(&LoadOptions::default())
    }

    /// Loads the embedded object with the given map sizes.
    pub fn load_with(options: &LoadOptions) -> Result<Self, DataplaneError> {
        let services = options.l4_services.clamp(1, MAX_L4_SERVICES);
        // The connection table keeps an LRU list per CPU (Katran's layout:
        // no lock shared by the CPUs on insert), for which the kernel
        // rounds its size up to a multiple of the possible CPUs; asking for
        // that size makes the pinned map's size the one asked for.
        let cpus = aya::util::nr_cpus().map_err(|(what, source)| DataplaneError::Pin {
            what: format!("reading the possible CPUs ({what}) to size the connection table"),
            source,
        })?;
        let cpus = u32::try_from(cpus).unwrap_or(u32::MAX).max(1);
        let conntrack = options
            .conntrack_capacity
            .max(1)
            .div_ceil(cpus)
            .saturating_mul(cpus);
        let mut loader = EbpfLoader::new();
        loader
            .map_max_entries(MAP_CONNTRACK, conntrack)
            .map_max_entries(MAP_RINGS, ring_entries(services));
        let pinned = match &options.pin {
            Some(at) => {
                pin::ensure_bpffs_at(&at.root)?;
                let dir = pin::daemon_dir(&at.root, &at.instance);
                let found = pin::prepare(&dir, conntrack, ring_entries(services), at.keep_unfit)?;
                for name in edge_common::ALL_MAPS {
                    loader.map_pin_path(name, dir.join(name));
                }
                Some((at.clone(), dir, found))
            }
            None => None,
        };
        let mut ebpf = loader.load(XDP_OBJECT).map_err(DataplaneError::Load)?;
        // The logger owns the log ring buffer; it must outlive program load,
        // or the kernel sees a closed map fd.
        let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(logger) => Some(logger),
            Err(e) => {
                tracing::warn!("XDP program logs unavailable: {e}");
                None
            }
        };
        let vips = second_handle(&ebpf, MAP_VIPS)?;
        // The pre-filter words: Tables writes the deny and L7 bits and the
        // ban word, L4Maps the VIP bits, through one shared handle.
        let filter = filter::SharedFilter::take(&mut ebpf)?;
        let tables = Tables::take(&mut ebpf, filter.clone())?;
        let l4 = Arc::new(Mutex::new(L4Maps::take(&mut ebpf, vips, filter)?));
        let stats = Arc::new(ClassStats::take(&mut ebpf)?);
        let program = program_mut(&mut ebpf)?;
        program.load().map_err(|source| DataplaneError::Program {
            what: "the kernel refused the XDP program (verifier, or missing CAP_BPF)".into(),
            source,
        })?;
        Ok(Self {
            ebpf,
            tables,
            l4,
            stats,
            logger,
            links: Vec::new(),
            attached: Vec::new(),
            pinned,
        })
    }

    /// Unpins the links an earlier edge pinned for interfaces not in
    /// `keep` (which takes the program off them); returns those interfaces.
    pub fn drop_stale_links(&self, keep: &[&str]) -> Result<Vec<String>, DataplaneError> {
        let Some((_, dir, _)) = &self.pinned else {
            return Ok(Vec::new());
        };
        pin::drop_stale_links(dir, keep)
    }

    /// What a pinned load found (`None`: not pinned).
    pub fn pinned(&self) -> Option<(&std::path::Path, &Pinned)> {
        self.pinned
            .as_ref()
            .map(|(_, dir, found)| (dir.as_path(), found))
    }

    /// The program, for attaching elsewhere or for BPF_PROG_TEST_RUN.
    pub fn program(&mut self) -> Result<&mut Xdp, DataplaneError> {
        program_mut(&mut self.ebpf)
    }

    /// The maps the configuration fills.
    pub fn tables(&mut self) -> &mut Tables {
        &mut self.tables
    }

    /// The L4 balancer's maps (locked; the L4 controller shares them).
    pub fn l4(&self) -> MutexGuard<'_, L4Maps> {
        self.l4.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The L4 maps, shareable with the L4 controller and its health checks.
    pub fn l4_shared(&self) -> Arc<Mutex<L4Maps>> {
        Arc::clone(&self.l4)
    }

    /// A program of the object by name (e.g. the `edge_pass` baseline),
    /// loaded on first use; for BPF_PROG_TEST_RUN.
    pub fn extra_program(&mut self, name: &'static str) -> Result<&mut Xdp, DataplaneError> {
        let program: &mut Xdp = self
            .ebpf
            .program_mut(name)
            .ok_or(DataplaneError::Missing {
                kind: "program",
                name,
            })?
            .try_into()
            .map_err(|source| DataplaneError::Program {
                what: format!("{name} is not an XDP program"),
                source,
            })?;
        if program.fd().is_err() {
            program.load().map_err(|source| DataplaneError::Program {
                what: format!("the kernel refused {name}"),
                source,
            })?;
        }
        Ok(program)
    }

    /// The per-class counters, shareable with the metrics endpoint.
    pub fn stats(&self) -> Arc<ClassStats> {
        Arc::clone(&self.stats)
    }

    /// Takes the reader of the program's log records, to be polled.
    pub fn take_logger(&mut self) -> Option<aya_log::EbpfLogger<&'static dyn log::Log>> {
        self.logger.take()
    }

    /// Attaches to `iface` in its configured mode; native falls back to
    /// generic only when the configuration allows it, and says so.
    ///
    /// A pinned dataplane replaces the program of the link an earlier edge
    /// pinned for `iface` in place, or pins its new link: either way it
    /// stays attached when this process exits.
    pub fn attach(&mut self, iface: &Interface) -> Result<AttachedMode, DataplaneError> {
        let mode = if let Some((at, dir, _)) = self.pinned.clone() {
            pin::attach_pinned(
                program_mut(&mut self.ebpf)?,
                iface,
                &at.root,
                &dir,
                &at.instance,
            )?
        } else {
            let (link, mode) = self.attach_link(iface)?;
            self.links.push((iface.name.clone(), link));
            mode
        };
        self.attached.retain(|(name, _)| *name != iface.name);
        self.attached.push((iface.name.clone(), mode));
        Ok(mode)
    }

    /// Each interface the program was attached to, and how.
    pub fn attached(&self) -> &[(String, AttachedMode)] {
        &self.attached
    }

    /// Attaches like [`Dataplane::attach`] but leaves the link to the
    /// caller instead of detaching it on drop.
    fn attach_link(
        &mut self,
        iface: &Interface,
    ) -> Result<(XdpLinkId, AttachedMode), DataplaneError> {
        attach_in_mode(program_mut(&mut self.ebpf)?, iface)
    }

    /// Detaches from every interface, in reverse order of attachment.
    pub fn detach_all(&mut self) {
        while let Some((iface, link)) = self.links.pop() {
            match program_mut(&mut self.ebpf).and_then(|p| {
                p.detach(link).map_err(|source| DataplaneError::Program {
                    what: format!("detaching XDP from {iface}"),
                    source,
                })
            }) {
                Ok(()) => tracing::info!(interface = %iface, "XDP detached"),
                Err(e) => tracing::error!("{e}"),
            }
        }
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        self.detach_all();
        if let Some((_, dir, _)) = &self.pinned {
            tracing::info!(
                dir = %dir.display(),
                "XDP stays attached with its maps pinned: L4 flows go on being forwarded and \
                 the next edge on this configuration adopts them; `edge unload --config` \
                 detaches it"
            );
        }
    }
}

/// A second handle on map `name`, from a duplicate of its descriptor:
/// opening it again by id (`BPF_MAP_GET_FD_BY_ID`) would need
/// CAP_SYS_ADMIN, which the systemd unit does not grant.
fn second_handle(ebpf: &Ebpf, name: &'static str) -> Result<aya::maps::MapData, DataplaneError> {
    use std::os::fd::AsFd;
    let data = match ebpf.map(name) {
        Some(aya::maps::Map::HashMap(data)) => data,
        _ => return Err(DataplaneError::Missing { kind: "map", name }),
    };
    let fd = data
        .fd()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| DataplaneError::Map {
            map: name,
            source: aya::maps::MapError::SyscallError(aya::sys::SyscallError {
                call: "dup",
                io_error: e,
            }),
        })?;
    aya::maps::MapData::from_fd(fd).map_err(|source| DataplaneError::Map { map: name, source })
}

fn program_mut(ebpf: &mut Ebpf) -> Result<&mut Xdp, DataplaneError> {
    let missing = DataplaneError::Missing {
        kind: "program",
        name: PROGRAM_XDP,
    };
    ebpf.program_mut(PROGRAM_XDP)
        .ok_or(missing)?
        .try_into()
        .map_err(|source| DataplaneError::Program {
            what: format!("{PROGRAM_XDP} is not an XDP program"),
            source,
        })
}

/// Attaches `program` to `iface` in its configured mode; native falls back
/// to generic only when the configuration allows it, and says so.
fn attach_in_mode(
    program: &mut Xdp,
    iface: &Interface,
) -> Result<(XdpLinkId, AttachedMode), DataplaneError> {
    Ok(match iface.mode {
        XdpMode::Generic => (
            attach(program, &iface.name, AyaMode::Skb)?,
            AttachedMode::Generic,
        ),
        XdpMode::Native => match attach(program, &iface.name, AyaMode::Driver) {
            Ok(link) => (link, AttachedMode::Native),
            Err(e) if iface.fallback_to_generic => {
                tracing::warn!(
                    interface = %iface.name,
                    "native XDP attach failed ({e}); falling back to generic mode as configured \
                     (fallback_to_generic: true), which is much slower"
                );
                (
                    attach(program, &iface.name, AyaMode::Skb)?,
                    AttachedMode::Generic,
                )
            }
            Err(e) => return Err(e),
        },
    })
}

fn attach(program: &mut Xdp, iface: &str, mode: AyaMode) -> Result<XdpLinkId, DataplaneError> {
    let name = if mode == AyaMode::Skb {
        "generic"
    } else {
        "native"
    };
    program
        .attach(iface, mode)
        .map_err(|source| DataplaneError::Program {
            what: format!("attaching XDP to {iface} in {name} mode failed"),
            source,
        })
}
