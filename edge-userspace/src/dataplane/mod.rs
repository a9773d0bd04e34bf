//! The kernel side as the daemon sees it: load the embedded XDP object,
//! fill its maps from the configuration, attach it to interfaces, read its
//! counters.

mod maps;
mod pin;

pub use maps::{ClassStats, Tables};
pub use pin::{pin_dir, pin_program, unpin_program};

use crate::config::{Interface, XdpMode};
use aya::{
    Ebpf, EbpfLoader,
    programs::{ProgramError, Xdp, XdpMode as AyaMode, xdp::XdpLinkId},
};
use edge_common::PROGRAM_XDP;
use std::sync::Arc;

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
}

impl AttachedMode {
    /// Lower-case name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            AttachedMode::Native => "native",
            AttachedMode::Generic => "generic",
        }
    }
}

/// The loaded XDP program and its maps.
pub struct Dataplane {
    ebpf: Ebpf,
    tables: Tables,
    stats: Arc<ClassStats>,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    links: Vec<(String, XdpLinkId)>,
}

impl Dataplane {
    /// Loads the embedded object and the program (the verifier runs here).
    pub fn load() -> Result<Self, DataplaneError> {
        let mut ebpf = EbpfLoader::new()
            .load(XDP_OBJECT)
            .map_err(DataplaneError::Load)?;
        // The logger owns the log ring buffer; it must outlive program load,
        // or the kernel sees a closed map fd.
        let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(logger) => Some(logger),
            Err(e) => {
                tracing::warn!("XDP program logs unavailable: {e}");
                None
            }
        };
        let tables = Tables::take(&mut ebpf)?;
        let stats = Arc::new(ClassStats::take(&mut ebpf)?);
        let program = program_mut(&mut ebpf)?;
        program.load().map_err(|source| DataplaneError::Program {
            what: "the kernel refused the XDP program (verifier, or missing CAP_BPF)".into(),
            source,
        })?;
        Ok(Self {
            ebpf,
            tables,
            stats,
            logger,
            links: Vec::new(),
        })
    }

    /// The program, for attaching elsewhere or for BPF_PROG_TEST_RUN.
    pub fn program(&mut self) -> Result<&mut Xdp, DataplaneError> {
        program_mut(&mut self.ebpf)
    }

    /// The maps the configuration fills.
    pub fn tables(&mut self) -> &mut Tables {
        &mut self.tables
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
    pub fn attach(&mut self, iface: &Interface) -> Result<AttachedMode, DataplaneError> {
        let (link, mode) = self.attach_link(iface)?;
        self.links.push((iface.name.clone(), link));
        Ok(mode)
    }

    /// Attaches like [`Dataplane::attach`] but leaves the link to the
    /// caller instead of detaching it on drop.
    fn attach_link(
        &mut self,
        iface: &Interface,
    ) -> Result<(XdpLinkId, AttachedMode), DataplaneError> {
        let program = program_mut(&mut self.ebpf)?;
        let (link, mode) = match iface.mode {
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
        };
        Ok((link, mode))
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
    }
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
