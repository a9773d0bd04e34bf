//! What a reload changes in the XDP program's maps: the deny list (new
//! prefixes in before stale ones out, so no denied source slips through
//! between) and the L4 services ([`crate::l4::L4Reload`]).

use super::KernelApply;
use crate::{config::Config, dataplane::Dataplane, l4::L4Reload};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// The kernel side of a running edge.
pub struct Kernel {
    /// The loaded program and its maps (`None` once edge is stopping).
    pub dataplane: Arc<Mutex<Option<Dataplane>>>,
    /// The L4 controller's reload handle, once the kernel side is taken
    /// over.
    pub l4: Arc<OnceLock<L4Reload>>,
}

impl KernelApply for Kernel {
    fn apply(&self, running: &Config, next: &Config) -> anyhow::Result<()> {
        if running.l4 != next.l4
            && let Some(l4) = self.l4.get()
        {
            l4.apply(&next.l4)?;
            tracing::info!(services = next.l4.services.len(), "L4 services applied");
        }
        if running.xdp.deny != next.xdp.deny {
            let mut dp = self
                .dataplane
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(dp) = dp.as_mut() {
                dp.tables().set_deny(&next.xdp.deny)?;
                tracing::info!(prefixes = next.xdp.deny.len(), "deny list replaced");
            }
        }
        Ok(())
    }
}
