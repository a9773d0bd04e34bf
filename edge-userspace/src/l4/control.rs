//! The L4 controller: writes the plan into the maps, keeps each service's
//! Maglev table in step with backend health, and exports counters.
//!
//! A table change never detaches the program: the new table goes into the
//! idle half of the service's double-buffered ring, then one `EDGE_VIPS`
//! update flips the generation. Established flows keep their backend through
//! the conntrack LRU; a backend that goes down is also marked down in its
//! real entry, so its flows are re-picked instead of black-holed.
//!
//! The kernel checks each encapsulated packet against one egress MTU, in
//! the forwarding settings: the smallest MTU of the interfaces edge is
//! attached to and of those its backends are reached through, as sysfs
//! reports them when they are registered (never below `MIN_MTU`), and of
//! `l4.forwarding.mtu` if set. A later `ip link set mtu` is not followed
//! until edge restarts.

use super::{
    neigh::{self, Route},
    plan::{self, Plan},
};
use crate::{config::l4::L4Config, dataplane::L4Maps, metrics};
use anyhow::{Context, Result};
use edge_common::MIN_MTU;
use std::{
    net::IpAddr,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

/// How long start-up waits for each real's next hop to resolve.
pub const RESOLVE_DEADLINE: Duration = Duration::from_secs(2);

/// Mutable state: health, routes and table generations.
#[derive(Debug)]
struct State {
    /// `healthy[service][backend]`: the health check's verdict.
    healthy: Vec<Vec<bool>>,
    /// `routes[service][backend]`: how to reach it, once resolved.
    routes: Vec<Vec<Option<Route>>>,
    /// Each service's live table generation.
    generation: Vec<u32>,
    /// The egress MTU written into the settings; 0 until one is known.
    mtu: u32,
}

/// Owns the L4 maps' contents.
pub struct Controller {
    maps: Arc<Mutex<L4Maps>>,
    plan: Plan,
    next_hop_mac: Option<[u8; 6]>,
    state: Mutex<State>,
}

impl Controller {
    /// Writes `cfg` into the maps: settings, interfaces, reals (resolving
    /// their next hops), rings and VIPs. A real whose next hop does not
    /// resolve stays out of its table (logged) until a later
    /// [`Controller::retry_routes`] resolves it.
    pub fn install(
        maps: Arc<Mutex<L4Maps>>,
        cfg: &L4Config,
        interfaces: &[String],
    ) -> Result<Arc<Self>> {
        let plan = plan::plan(cfg);
        let healthy = plan
            .services
            .iter()
            .map(|s| vec![true; s.backends.len()])
            .collect();
        let routes = plan
            .services
            .iter()
            .map(|s| vec![None; s.backends.len()])
            .collect();
        let generation = vec![0; plan.services.len()];
        let me = Arc::new(Self {
            maps,
            next_hop_mac: cfg.next_hop_mac,
            state: Mutex::new(State {
                healthy,
                routes,
                generation,
                mtu: cfg.mtu.unwrap_or(0),
            }),
            plan,
        });
        {
            let mut maps = me.maps();
            maps.set_settings(&me.plan.settings)?;
            for dev in interfaces {
                let (ifindex, mac) = neigh::interface(dev)?;
                maps.set_iface(ifindex, mac)
                    .with_context(|| format!("registering interface {dev}"))?;
            }
        }
        for dev in interfaces {
            me.note_mtu(dev);
        }
        me.resolve_routes(RESOLVE_DEADLINE);
        let st = me.state();
        let mut maps = me.maps();
        let mut keep = me.plan.markers.clone();
        for (s, svc) in me.plan.services.iter().enumerate() {
            write_table(&mut maps, &me.plan, &st, s, 0)?;
            maps.set_vip(&svc.key, &svc.meta(0))?;
            keep.push(svc.key);
            metrics::l4_generation(&svc.name, 0);
        }
        for marker in &me.plan.markers {
            maps.set_vip(marker, &plan::marker_meta())?;
        }
        maps.retain_vips(&keep)?;
        drop(maps);
        drop(st);
        me.export_health();
        Ok(me)
    }

    fn maps(&self) -> MutexGuard<'_, L4Maps> {
        self.maps.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The plan (services, real ids).
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Service `s`'s live table generation.
    pub fn generation(&self, s: usize) -> u32 {
        self.state().generation.get(s).copied().unwrap_or(0)
    }

    /// Resolves every real without a route (waiting up to `deadline` for
    /// each) and republishes the services that gained one.
    pub fn retry_routes(&self, deadline: Duration) {
        for s in self.resolve_routes(deadline) {
            if let Err(e) = self.publish(s) {
                tracing::error!("republishing service {}: {e:#}", self.plan.services[s].name);
            }
        }
    }

    /// Resolves every real without a route and writes its real entry;
    /// returns the services that gained a backend.
    fn resolve_routes(&self, deadline: Duration) -> Vec<usize> {
        let mut changed = Vec::new();
        for (s, svc) in self.plan.services.iter().enumerate() {
            for (b, real) in svc.backends.iter().enumerate() {
                if self.state().routes[s][b].is_some() {
                    continue;
                }
                match neigh::resolve(real.address, self.next_hop_mac, deadline) {
                    Ok(route) => {
                        tracing::info!(
                            service = %svc.name,
                            backend = %real.address,
                            dev = %route.dev,
                            mac = %mac_text(route.mac),
                            "L4 backend reachable"
                        );
                        let up = self.state().healthy[s][b];
                        let def = plan::real_def(real.address, route.mac, route.ifindex, up);
                        // The egress interface needs its MAC (the frame's
                        // source) and a devmap entry, should it not be one
                        // the program is attached to.
                        if let Err(e) = neigh::interface(&route.dev)
                            .and_then(|(i, mac)| Ok(self.maps().set_iface(i, mac)?))
                        {
                            tracing::error!("registering interface {}: {e:#}", route.dev);
                            continue;
                        }
                        self.note_mtu(&route.dev);
                        if let Err(e) = self.maps().set_real(real.id, &def) {
                            tracing::error!("writing backend {}: {e}", real.address);
                            continue;
                        }
                        self.state().routes[s][b] = Some(route);
                        if !changed.contains(&s) {
                            changed.push(s);
                        }
                    }
                    Err(e) => tracing::warn!(service = %svc.name, "{e:#}"),
                }
            }
        }
        changed
    }

    /// Lowers the settings' egress MTU to `dev`'s if that is smaller; a
    /// failure leaves the MTU as it was (logged: packets may then be handed
    /// to a driver that drops them).
    fn note_mtu(&self, dev: &str) {
        let dev_mtu = match neigh::mtu(dev) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("L4 egress MTU: {e:#}; oversized packets may be lost on {dev}");
                return;
            }
        };
        // State, then maps: the order `publish` takes them in.
        let mut st = self.state();
        let mtu = lower_mtu(st.mtu, dev_mtu);
        if mtu == st.mtu {
            return;
        }
        let mut settings = self.plan.settings;
        settings.mtu = mtu;
        match self.maps().set_settings(&settings) {
            Ok(()) => {
                st.mtu = mtu;
                tracing::info!(
                    interface = %dev,
                    mtu,
                    "L4 egress MTU: larger encapsulated packets get ICMP too big"
                );
            }
            Err(e) => tracing::error!("writing the L4 egress MTU: {e}"),
        }
    }

    /// Whether any real still lacks a route.
    pub fn unresolved(&self) -> bool {
        self.state()
            .routes
            .iter()
            .any(|r| r.iter().any(Option::is_none))
    }

    /// Records backend `b` of service `s` as healthy or not and, when that
    /// changes its table, publishes the new one.
    pub fn set_healthy(&self, s: usize, b: usize, up: bool) -> Result<()> {
        let svc = &self.plan.services[s];
        let real = &svc.backends[b];
        {
            let mut st = self.state();
            if st.healthy[s][b] == up {
                return Ok(());
            }
            st.healthy[s][b] = up;
        }
        let route = self.state().routes[s][b].clone();
        let Some(route) = route else {
            // Not in the table anyway; its real is written once resolved.
            metrics::l4_healthy(&svc.name, &real.address.to_string(), up);
            return Ok(());
        };
        let def = plan::real_def(real.address, route.mac, route.ifindex, up);
        if up {
            // Up first, then into the table: a picked real is always up.
            self.maps().set_real(real.id, &def)?;
            self.publish(s)?;
        } else {
            // Out of the table first, then down: its flows are re-picked
            // from a table that no longer has it.
            self.publish(s)?;
            self.maps().set_real(real.id, &def)?;
        }
        // The gauge changes once the kernel's table does, so whoever waits
        // on it sees the new table in effect.
        metrics::l4_healthy(&svc.name, &real.address.to_string(), up);
        tracing::info!(
            service = %svc.name,
            backend = %real.address,
            state = if up { "up" } else { "down" },
            generation = self.generation(s),
            "L4 backend health changed; Maglev table republished"
        );
        Ok(())
    }

    /// Writes service `s`'s table into its idle ring half and flips to it.
    fn publish(&self, s: usize) -> Result<()> {
        let mut st = self.state();
        let next = st.generation[s].wrapping_add(1);
        let mut maps = self.maps();
        write_table(&mut maps, &self.plan, &st, s, next)?;
        let svc = &self.plan.services[s];
        maps.set_vip(&svc.key, &svc.meta(next))?;
        st.generation[s] = next;
        metrics::l4_generation(&svc.name, next);
        Ok(())
    }

    fn export_health(&self) {
        let st = self.state();
        for (s, svc) in self.plan.services.iter().enumerate() {
            for (b, real) in svc.backends.iter().enumerate() {
                metrics::l4_healthy(&svc.name, &real.address.to_string(), st.healthy[s][b]);
            }
        }
    }

    /// Copies the kernel's per-backend counters into the metrics recorder.
    pub fn refresh_metrics(&self) {
        let maps = self.maps();
        for svc in &self.plan.services {
            for real in &svc.backends {
                match maps.real_counters(real.id) {
                    Ok(c) => metrics::l4_counters(&svc.name, &real.address.to_string(), &c),
                    Err(e) => tracing::warn!("reading L4 counters: {e}"),
                }
            }
        }
        match maps.events() {
            Ok(events) => metrics::l4_events(&events),
            Err(e) => tracing::warn!("reading L4 events: {e}"),
        }
    }

    /// Every backend that has a health check: `(service, backend, address)`.
    pub fn checked_backends(&self, cfg: &L4Config) -> Vec<(usize, usize, IpAddr)> {
        let mut out = Vec::new();
        for (s, svc) in cfg.services.iter().enumerate() {
            if svc.health_check.is_none() {
                continue;
            }
            for (b, backend) in svc.backends.iter().enumerate() {
                out.push((s, b, backend.address));
            }
        }
        out
    }
}

/// Writes service `s`'s table (reals that are healthy and reachable) into
/// the ring half of `generation`.
fn write_table(
    maps: &mut L4Maps,
    plan: &Plan,
    st: &State,
    s: usize,
    generation: u32,
) -> Result<()> {
    let svc = &plan.services[s];
    let up: Vec<bool> = st.healthy[s]
        .iter()
        .zip(&st.routes[s])
        .map(|(h, r)| *h && r.is_some())
        .collect();
    let ring = svc.ring(&up);
    maps.write_ring(svc.id, generation, &ring)
        .with_context(|| format!("writing the Maglev table of service {}", svc.name))
}

/// The egress MTU once an interface of MTU `dev_mtu` is added to those
/// already seen (`current`, 0 for none): the smallest, and never below
/// [`MIN_MTU`], under which an ICMP error could not quote the packet.
pub fn lower_mtu(current: u32, dev_mtu: u32) -> u32 {
    let dev = dev_mtu.max(MIN_MTU);
    if current == 0 { dev } else { current.min(dev) }
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_egress_mtu_is_the_smallest_seen_and_never_below_the_minimum() {
        assert_eq!(lower_mtu(0, 1500), 1500);
        assert_eq!(lower_mtu(1500, 9000), 1500);
        assert_eq!(lower_mtu(9000, 1450), 1450);
        assert_eq!(lower_mtu(0, 100), MIN_MTU);
        assert_eq!(lower_mtu(1500, 65536), 1500);
    }
}
