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

/// The XDP program's ban map, for [`crate::policy::bans`].
pub struct KernelBans {
    /// The loaded program and its maps.
    pub dataplane: Arc<Mutex<Option<Dataplane>>>,
}

impl KernelBans {
    fn with<T>(
        &self,
        f: impl FnOnce(&mut crate::dataplane::Tables) -> Result<T, crate::dataplane::DataplaneError>,
    ) -> Result<Option<T>, String> {
        let mut dp = self
            .dataplane
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match dp.as_mut() {
            Some(dp) => f(dp.tables()).map(Some).map_err(|e| e.to_string()),
            None => Ok(None),
        }
    }
}

impl crate::policy::bans::BanMap for KernelBans {
    fn ban(&self, ip: std::net::IpAddr, time: std::time::Duration) -> Result<(), String> {
        let until = crate::dataplane::monotonic_ns()
            .saturating_add(u64::try_from(time.as_nanos()).unwrap_or(u64::MAX));
        self.with(|t| t.ban(ip, until)).map(drop)
    }

    fn unban(&self, ip: std::net::IpAddr) -> Result<(), String> {
        self.with(|t| t.unban(ip)).map(drop)
    }

    fn entries(&self) -> Result<Vec<(std::net::IpAddr, std::time::Duration)>, String> {
        let now = crate::dataplane::monotonic_ns();
        let list = self.with(|t| t.bans())?.unwrap_or_default();
        let (live, expired): (Vec<_>, Vec<_>) =
            list.into_iter().partition(|(_, until)| *until > now);
        // Expired entries left by an earlier edge would fill the map.
        for (ip, _) in expired {
            self.unban(ip)?;
        }
        Ok(live
            .into_iter()
            .map(|(ip, until)| (ip, std::time::Duration::from_nanos(until - now)))
            .collect())
    }
}
