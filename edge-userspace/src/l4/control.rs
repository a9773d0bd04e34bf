//! The L4 controller: writes the plan into the maps, keeps each service's
//! Maglev table in step with backend health and with the configuration,
//! and exports counters.
//!
//! A table change never detaches the program: the new table goes into the
//! idle half of the service's double-buffered ring, then one `EDGE_VIPS`
//! update flips the generation. Established flows keep their backend through
//! the conntrack LRU; a backend that goes down is also marked down in its
//! real entry, so its flows are re-picked instead of black-holed.
//!
//! A flip also names the table it leaves in the other half, for
//! `l4.second_chance` ([`PrevTable`]): behind an ECMP router, a flow moved
//! here from another edge host has no conntrack entry here, and was most
//! likely established under the previous table if the table changed
//! recently; the kernel sends its packets (TCP, not a SYN) to that table's
//! backend while it is up. Before the idle half is rewritten, the entry
//! stops naming it.
//!
//! A configuration change ([`Controller::apply`]) is planned with the ids
//! the maps already hold ([`plan::Assigned`]): a service keeps its id while
//! its VIP:port/proto stays, a real its id while its address is in the
//! maps. A backend drained (weight 0) or removed leaves the tables, so it
//! gets no new flows, but its real entry stays up: flows that conntrack
//! holds for it carry on until they end or the LRU evicts them. A removed
//! service's VIP entry goes, and its traffic goes up the stack.
//!
//! The kernel checks each encapsulated packet against one egress MTU, in
//! the forwarding settings: the smallest MTU of the interfaces edge is
//! attached to and of those its backends are reached through, as sysfs
//! reports them when they are registered (never below `MIN_MTU`), and of
//! `l4.forwarding.mtu` if set. A later `ip link set mtu` is not followed
//! until edge restarts.

use super::{
    neigh::{self, Route},
    plan::{self, Plan, PrevTable, ServicePlan},
};
use crate::{
    config::l4::{HealthCheck, L4Config},
    dataplane::L4Maps,
    metrics,
};
use anyhow::{Context, Result};
use edge_common::{MIN_MTU, VipKey, VipMeta};
use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

/// Most L4 drains kept (including backends that have since left the file).
pub const MAX_DRAINS: usize = 4096;

/// How long start-up and a reload wait for each new real's next hop.
pub const RESOLVE_DEADLINE: Duration = Duration::from_secs(2);

/// One backend of one service that has a health check.
#[derive(Clone, Debug, PartialEq)]
pub struct Checked {
    /// The service's VIP key.
    pub service: VipKey,
    /// The service's name, for logs.
    pub name: String,
    /// The backend.
    pub address: IpAddr,
    /// How it is checked.
    pub check: HealthCheck,
    /// Its health now (a check task starts from it).
    pub healthy: bool,
}

/// The controller's state; always locked before the maps.
#[derive(Debug)]
struct State {
    cfg: L4Config,
    plan: Plan,
    /// The health check's verdict, by service and backend.
    healthy: HashMap<(VipKey, IpAddr), bool>,
    /// How each real is reached, once resolved.
    routes: HashMap<IpAddr, Route>,
    /// Each service's live table generation.
    generation: HashMap<VipKey, u32>,
    /// What each service's live table holds, as this process wrote it.
    digests: HashMap<VipKey, Written>,
    /// The smallest interface MTU seen; 0 until one is known.
    dev_mtu: u32,
    /// The egress MTU written into the settings; 0 until one is known.
    mtu: u32,
    /// Whether a configuration has been applied (the first one seeds the
    /// health verdicts from the maps).
    installed: bool,
    /// Backends drained through the admin API, by service name and
    /// address: out of the service's table (no new flows) with their real
    /// entry up (established flows carry on), across reloads until
    /// undrained.
    drained: HashSet<(String, IpAddr)>,
}

/// One L4 service as the admin API shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceView {
    /// Its name.
    pub name: String,
    /// Its VIP.
    pub vip: IpAddr,
    /// Its port.
    pub port: u16,
    /// Its protocol, as in the file.
    pub protocol: &'static str,
    /// Its backends, in file order.
    pub backends: Vec<RealView>,
    /// Its Maglev table size.
    pub table_size: u32,
    /// The digest of its live table by backend address: the same on every
    /// host whose configuration and health agree, whatever the order of
    /// the file and the ids in the maps. `None` before the first table.
    pub table_digest: Option<u64>,
}

/// One L4 backend as the admin API shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct RealView {
    /// Its address.
    pub address: IpAddr,
    /// Its configured weight.
    pub weight: u32,
    /// The health check's verdict (true without a check).
    pub healthy: bool,
    /// Drained through the admin API.
    pub drained: bool,
    /// Whether its next hop is known (it is in the table only then).
    pub resolved: bool,
    /// Packets the kernel forwarded to it.
    pub packets: u64,
    /// Bytes the kernel forwarded to it.
    pub bytes: u64,
}

/// Owns the L4 maps' contents.
pub struct Controller {
    maps: Arc<Mutex<L4Maps>>,
    interfaces: Vec<String>,
    state: Mutex<State>,
    /// Set when another edge takes the maps over (a graceful upgrade):
    /// nothing is written from then on.
    frozen: std::sync::atomic::AtomicBool,
}

impl Controller {
    /// Writes `cfg` into the maps: settings, interfaces, reals (resolving
    /// their next hops), rings and VIPs, keeping the ids and table
    /// generations the maps already hold. A real whose next hop does not
    /// resolve stays out of its tables (logged) until a later
    /// [`Controller::retry_routes`] resolves it.
    ///
    /// `drained` (service, address) are out of the tables from the first
    /// write on: drains an earlier process saved, which a restart must not
    /// put back into rotation even for a moment.
    pub fn install(
        maps: Arc<Mutex<L4Maps>>,
        cfg: &L4Config,
        interfaces: &[String],
        drained: &[(String, IpAddr)],
    ) -> Result<Arc<Self>> {
        let me = Arc::new(Self {
            maps,
            interfaces: interfaces.to_vec(),
            frozen: std::sync::atomic::AtomicBool::new(false),
            state: Mutex::new(State {
                cfg: L4Config::default(),
                plan: Plan {
                    services: Vec::new(),
                    markers: Vec::new(),
                    settings: Default::default(),
                },
                healthy: HashMap::new(),
                routes: HashMap::new(),
                generation: HashMap::new(),
                digests: HashMap::new(),
                dev_mtu: 0,
                mtu: 0,
                installed: false,
                drained: drained.iter().take(MAX_DRAINS).cloned().collect(),
            }),
        });
        {
            let mut maps = me.maps();
            for dev in interfaces {
                let (ifindex, mac) = neigh::interface(dev)?;
                maps.set_iface(ifindex, mac)
                    .with_context(|| format!("registering interface {dev}"))?;
            }
        }
        me.apply(cfg)?;
        Ok(me)
    }

    /// Stops writing the maps: another edge owns them now.
    ///
    /// It does not wait for the state lock (a next-hop lookup may hold it
    /// for seconds, longer than the new process waits for its sockets):
    /// every write checks the flag under the maps lock instead.
    pub fn freeze(&self) {
        self.frozen.store(true, std::sync::atomic::Ordering::SeqCst);
        tracing::info!("L4 tables handed over: this edge writes them no more");
    }

    fn frozen(&self) -> bool {
        self.frozen.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn maps(&self) -> MutexGuard<'_, L4Maps> {
        self.maps.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The maps, to write: `None` once frozen. The flag is read under the
    /// maps lock, so no write starts after [`Controller::freeze`].
    fn maps_to_write(&self) -> Option<MutexGuard<'_, L4Maps>> {
        let maps = self.maps();
        (!self.frozen()).then_some(maps)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The plan in force (services, real ids).
    pub fn plan(&self) -> Plan {
        self.state().plan.clone()
    }

    /// Makes `cfg` the L4 configuration: plans it with the ids in the maps,
    /// resolves new reals, writes every service's table into its idle half
    /// and flips to it (naming the table it leaves behind as the previous
    /// one for `l4.second_chance`, for a service the maps had already),
    /// then removes the VIPs of services that are gone.
    /// Health verdicts carry over by service and backend; a new backend
    /// starts up. On error the maps may hold new reals and idle halves,
    /// but every VIP still points at its old table.
    pub fn apply(&self, cfg: &L4Config) -> Result<()> {
        let mut st = self.state();
        if self.frozen() {
            anyhow::bail!("this edge has handed its L4 tables over to a new process");
        }
        let (assigned, capacity) = {
            let maps = self.maps();
            (maps.assigned()?, maps.service_capacity())
        };
        let plan = plan::plan(cfg, &assigned, capacity)?;
        if st.cfg.next_hop_mac != cfg.next_hop_mac {
            // Every next hop is looked up again with the new setting.
            st.routes.clear();
        }
        let new_keys: Vec<VipKey> = plan.services.iter().map(|s| s.key).collect();
        if st.dev_mtu == 0 {
            for dev in &self.interfaces {
                note_mtu(&mut st, dev);
            }
        }
        // Health verdicts, before any real is written: carried over by
        // service and backend; at start-up, a backend an earlier edge left
        // down in the maps starts down; a service without a health check
        // has every backend up (nothing else would ever bring one back).
        let first = !st.installed;
        let mut healthy = HashMap::new();
        for (svc, s) in plan.services.iter().zip(&cfg.services) {
            for real in &svc.backends {
                let up = if s.health_check.is_none() {
                    true
                } else if let Some(up) = st.healthy.get(&(svc.key, real.address)) {
                    *up
                } else {
                    !(first && assigned.down.contains(&real.address))
                };
                healthy.insert((svc.key, real.address), up);
            }
        }
        st.healthy = healthy;
        // Reals: resolve and write those without a route yet.
        self.resolve(&mut st, &plan, cfg, RESOLVE_DEADLINE);
        // The settings before any table names a new real: outer sources,
        // SYN budget, and the egress MTU of every interface seen.
        self.write_settings(&mut st, &plan, cfg.mtu)?;
        // Tables: each service's new table into its idle half, then flip.
        // Every table first, each into its idle half: a failure here leaves
        // every VIP on its old table. Then one VIP update per service flips.
        let Some(mut maps) = self.maps_to_write() else {
            anyhow::bail!("this edge has handed its L4 tables over to a new process");
        };
        // Services that are gone leave first: a new service may take one's
        // id, and then writes a ring half that no VIP names any more.
        let mut keep = plan.markers.clone();
        keep.extend(new_keys.iter().copied());
        maps.retain_vips(&keep)?;
        let mut flips = Vec::with_capacity(plan.services.len());
        for svc in &plan.services {
            let ring = live_ring(&st, svc);
            let written = Written::of(svc, &ring);
            // A table that would not change is not flipped: a reload of
            // something else keeps the previous table the kernel still
            // consults (second chance) and costs no table write.
            if assigned.services.contains_key(&svc.key) && unchanged(&maps, &st, svc, written)? {
                // Second chance turned off: the previous table it names
                // is not consulted any more.
                if cfg.second_chance.is_zero()
                    && let Some(cleared) = maps
                        .vip(&svc.key)?
                        .as_ref()
                        .and_then(plan::without_previous)
                {
                    maps.set_vip(&svc.key, &cleared)?;
                }
                continue;
            }
            // A service new to the maps has no previous table: its other
            // half, if any, is another (removed) service's.
            let (next, live) = match assigned.services.get(&svc.key) {
                Some(_) => (
                    svc.generation.wrapping_add(1),
                    retire_previous(&mut maps, &svc.key)?,
                ),
                None => (0, None),
            };
            write_table(&mut maps, svc, &ring, next)?;
            flips.push((svc, next, live, written));
        }
        // The window starts at the flip, not before the (slow) table writes.
        let now = crate::dataplane::monotonic_ns();
        for (svc, next, live, written) in flips {
            let prev = PrevTable::after(svc, live.as_ref(), next, cfg.second_chance, now);
            maps.set_vip(&svc.key, &svc.meta(next, prev))?;
            st.generation.insert(svc.key, next);
            st.digests.insert(svc.key, written);
            metrics::l4_generation(&svc.name, next);
        }
        for marker in &plan.markers {
            maps.set_vip(marker, &plan::marker_meta())?;
        }
        drop(maps);
        st.generation.retain(|k, _| new_keys.contains(k));
        st.digests.retain(|k, _| new_keys.contains(k));
        st.installed = true;
        for svc in &plan.services {
            for real in &svc.backends {
                let up = st
                    .healthy
                    .get(&(svc.key, real.address))
                    .copied()
                    .unwrap_or(true);
                metrics::l4_healthy(&svc.name, &real.address.to_string(), up);
            }
        }
        st.cfg = cfg.clone();
        st.plan = plan;
        Ok(())
    }

    /// Resolves every real without a route (waiting up to `deadline` for
    /// each) and republishes the services that gained one.
    pub fn retry_routes(&self, deadline: Duration) {
        let mut st = self.state();
        if self.frozen() {
            return;
        }
        let plan = st.plan.clone();
        let cfg = st.cfg.clone();
        let changed = self.resolve(&mut st, &plan, &cfg, deadline);
        if let Err(e) = self.write_settings(&mut st, &plan, cfg.mtu) {
            tracing::error!("writing the L4 settings: {e:#}");
        }
        for key in changed {
            if let Err(e) = self.publish(&mut st, key) {
                tracing::error!("republishing an L4 service after a route resolved: {e:#}");
            }
        }
    }

    /// Resolves every real of `plan` without a route and writes its real
    /// entry; returns the services that gained a backend.
    fn resolve(
        &self,
        st: &mut State,
        plan: &Plan,
        cfg: &L4Config,
        deadline: Duration,
    ) -> Vec<VipKey> {
        let mut changed = Vec::new();
        for svc in &plan.services {
            for real in &svc.backends {
                if st.routes.contains_key(&real.address) {
                    // Known: written again, as its health now says (it may
                    // come back after a reload removed it while down).
                    self.write_real(st, svc, real.address, real.id);
                    continue;
                }
                match neigh::resolve(real.address, cfg.next_hop_mac, deadline) {
                    Ok(route) => {
                        tracing::info!(
                            service = %svc.name,
                            backend = %real.address,
                            dev = %route.dev,
                            mac = %mac_text(route.mac),
                            "L4 backend reachable"
                        );
                        // The egress interface needs its MAC (the frame's
                        // source) and a devmap entry, should it not be one
                        // the program is attached to.
                        if let Err(e) = neigh::interface(&route.dev)
                            .and_then(|(i, mac)| Ok(self.maps().set_iface(i, mac)?))
                        {
                            tracing::error!("registering interface {}: {e:#}", route.dev);
                            continue;
                        }
                        note_mtu(st, &route.dev);
                        st.routes.insert(real.address, route);
                        self.write_real(st, svc, real.address, real.id);
                        if !changed.contains(&svc.key) {
                            changed.push(svc.key);
                        }
                    }
                    Err(e) => tracing::warn!(service = %svc.name, "{e:#}"),
                }
            }
        }
        changed
    }

    /// Writes real `id` at `address`: up unless every service that has it
    /// found it down.
    fn write_real(&self, st: &State, svc: &ServicePlan, address: IpAddr, id: u32) {
        let Some(route) = st.routes.get(&address) else {
            return;
        };
        let up = real_up(st, address);
        let def = plan::real_def(address, route.mac, route.ifindex, up);
        let Some(mut maps) = self.maps_to_write() else {
            return;
        };
        if let Err(e) = maps.set_real(id, &def) {
            tracing::error!(service = %svc.name, "writing backend {address}: {e}");
        }
    }

    /// Writes `plan`'s settings with the egress MTU: the smallest of the
    /// interfaces seen, capped by `cap`.
    fn write_settings(&self, st: &mut State, plan: &Plan, cap: Option<u32>) -> Result<()> {
        let mut settings = plan.settings;
        settings.mtu = effective_mtu(cap, st.dev_mtu);
        let Some(mut maps) = self.maps_to_write() else {
            return Ok(());
        };
        maps.set_settings(&settings)?;
        drop(maps);
        if settings.mtu != st.mtu {
            tracing::info!(
                mtu = settings.mtu,
                "L4 egress MTU: larger encapsulated packets get ICMP too big"
            );
            st.mtu = settings.mtu;
        }
        Ok(())
    }

    /// Whether any real still lacks a route.
    pub fn unresolved(&self) -> bool {
        let st = self.state();
        st.plan.services.iter().any(|s| {
            s.backends
                .iter()
                .any(|b| !st.routes.contains_key(&b.address))
        })
    }

    /// Records backend `address` of service `service` as healthy or not
    /// and, when that changes its table, publishes the new one.
    pub fn set_healthy(&self, service: VipKey, address: IpAddr, up: bool) -> Result<()> {
        let mut st = self.state();
        if self.frozen() {
            return Ok(());
        }
        let Some(svc) = st.plan.services.iter().find(|s| s.key == service).cloned() else {
            // The service went in a reload while the check ran.
            return Ok(());
        };
        let Some(real) = svc.backends.iter().find(|b| b.address == address).cloned() else {
            return Ok(());
        };
        match st.healthy.insert((service, address), up) {
            Some(was) if was == up => return Ok(()),
            _ => {}
        }
        if !st.routes.contains_key(&address) {
            // Not in the table anyway; its real is written once resolved.
            metrics::l4_healthy(&svc.name, &address.to_string(), up);
            return Ok(());
        }
        if up {
            // Up first, then into the table: a picked real is always up.
            self.write_real(&st, &svc, address, real.id);
            self.publish(&mut st, service)?;
        } else {
            // Out of the table first, then down: its flows are re-picked
            // from a table that no longer has it.
            self.publish(&mut st, service)?;
            self.write_real(&st, &svc, address, real.id);
        }
        // The gauge changes once the kernel's table does, so whoever waits
        // on it sees the new table in effect.
        metrics::l4_healthy(&svc.name, &address.to_string(), up);
        tracing::info!(
            service = %svc.name,
            backend = %address,
            state = if up { "up" } else { "down" },
            generation = st.generation.get(&service).copied().unwrap_or(0),
            "L4 backend health changed; Maglev table republished"
        );
        Ok(())
    }

    /// Writes service `key`'s table into its idle ring half and flips to it;
    /// the table live until then becomes the previous one.
    fn publish(&self, st: &mut State, key: VipKey) -> Result<()> {
        let Some(svc) = st.plan.services.iter().find(|s| s.key == key).cloned() else {
            return Ok(());
        };
        let next = st
            .generation
            .get(&key)
            .copied()
            .unwrap_or(0)
            .wrapping_add(1);
        let Some(mut maps) = self.maps_to_write() else {
            return Ok(());
        };
        // A service whose VIP is not in the maps (a reload that failed
        // after removing it) is not brought back by a health change.
        if maps.vip(&svc.key)?.is_none() {
            return Ok(());
        }
        let ring = live_ring(st, &svc);
        let written = Written::of(&svc, &ring);
        if unchanged(&maps, st, &svc, written)? {
            return Ok(());
        }
        let live = retire_previous(&mut maps, &svc.key)?;
        write_table(&mut maps, &svc, &ring, next)?;
        let prev = PrevTable::after(
            &svc,
            live.as_ref(),
            next,
            st.cfg.second_chance,
            crate::dataplane::monotonic_ns(),
        );
        maps.set_vip(&svc.key, &svc.meta(next, prev))?;
        st.generation.insert(key, next);
        st.digests.insert(key, written);
        metrics::l4_generation(&svc.name, next);
        Ok(())
    }

    /// Clears the service slots the VIP map does not back (see
    /// [`L4Maps::sync_services`]): run every second, it bounds how long
    /// the kernel could trust a removed VIP's flows through a slot another
    /// process left.
    ///
    /// Not before this process's first write of the tables: the new process
    /// of an upgrade writes nothing before it has the sockets.
    pub fn repair_services(&self) {
        let st = self.state();
        if !st.installed {
            return;
        }
        let Some(mut maps) = self.maps_to_write() else {
            return;
        };
        if let Err(e) = maps.sync_services() {
            tracing::warn!("checking the L4 service slots: {e}");
        }
    }

    /// Copies the kernel's per-backend counters into the metrics recorder.
    /// A backend in several services is one real: each service shows its
    /// whole count.
    pub fn refresh_metrics(&self) {
        let plan = self.plan();
        let maps = self.maps();
        for svc in &plan.services {
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

    /// Drains (`true`) or undrains backend `address` of service `name`
    /// and publishes its table; `Ok(false)` when there is no such backend.
    pub fn set_drained(&self, name: &str, address: IpAddr, drained: bool) -> Result<bool> {
        let mut st = self.state();
        if self.frozen() {
            anyhow::bail!("this edge has handed its L4 tables over to a new process");
        }
        let key = (name.to_string(), address);
        let svc = st.plan.services.iter().find(|s| s.name == name).cloned();
        let Some(svc) = svc.filter(|s| s.backends.iter().any(|b| b.address == address)) else {
            // A drain of a backend that has left the file can still be
            // lifted (it would come back drained).
            return Ok(!drained && st.drained.remove(&key));
        };
        if drained && st.drained.len() >= MAX_DRAINS && !st.drained.contains(&key) {
            anyhow::bail!("{MAX_DRAINS} L4 backends are drained already: undrain some first");
        }
        let changed = if drained {
            st.drained.insert(key.clone())
        } else {
            st.drained.remove(&key)
        };
        if changed {
            if let Err(e) = self.publish(&mut st, svc.key) {
                // Not in force: not recorded either.
                if drained {
                    st.drained.remove(&key);
                } else {
                    st.drained.insert(key);
                }
                return Err(e);
            }
            tracing::info!(
                service = %svc.name,
                backend = %address,
                state = if drained { "drained" } else { "undrained" },
                "L4 backend drain changed; Maglev table republished"
            );
        }
        Ok(true)
    }

    /// Every L4 drain in force (service, address), for the drains file.
    pub fn drained(&self) -> Vec<(String, IpAddr)> {
        let mut out: Vec<_> = self.state().drained.iter().cloned().collect();
        out.sort();
        out
    }

    /// Every service with its backends' state and counters.
    pub fn services(&self) -> Vec<ServiceView> {
        let st = self.state();
        let maps = self.maps();
        st.plan
            .services
            .iter()
            .zip(&st.cfg.services)
            .map(|(svc, cfg)| ServiceView {
                name: svc.name.clone(),
                vip: cfg.vip,
                port: cfg.port,
                protocol: cfg.protocol.as_str(),
                backends: svc
                    .backends
                    .iter()
                    .map(|real| {
                        let counters = maps.real_counters(real.id).ok();
                        RealView {
                            address: real.address,
                            weight: real.weight,
                            healthy: st
                                .healthy
                                .get(&(svc.key, real.address))
                                .copied()
                                .unwrap_or(true),
                            drained: st.drained.contains(&(svc.name.clone(), real.address)),
                            resolved: st.routes.contains_key(&real.address),
                            packets: counters.as_ref().map_or(0, |c| c.packets),
                            bytes: counters.as_ref().map_or(0, |c| c.bytes),
                        }
                    })
                    .collect(),
                table_size: svc.table_size,
                table_digest: st.digests.get(&svc.key).map(|w| w.digest),
            })
            .collect()
    }

    /// The distinct VIP addresses (sorted) of the services that have at
    /// least one backend in their table (healthy, resolved, not drained):
    /// what BGP announces. A VIP with no usable backend is withdrawn, so
    /// that the router sends its traffic to hosts that can serve it.
    pub fn announceable(&self) -> Vec<IpAddr> {
        announceable(&self.state())
    }

    /// Every backend that has a health check, with its health now.
    pub fn checked_backends(&self) -> Vec<Checked> {
        let st = self.state();
        let mut out = Vec::new();
        for (svc, cfg) in st.plan.services.iter().zip(&st.cfg.services) {
            let Some(check) = &cfg.health_check else {
                continue;
            };
            for b in &cfg.backends {
                out.push(Checked {
                    service: svc.key,
                    name: svc.name.clone(),
                    address: b.address,
                    check: check.clone(),
                    healthy: st
                        .healthy
                        .get(&(svc.key, b.address))
                        .copied()
                        .unwrap_or(true),
                });
            }
        }
        out
    }
}

/// Lowers the smallest interface MTU seen to `dev`'s; a failure leaves it
/// as it was (logged: packets may then be handed to a driver that drops
/// them).
fn note_mtu(st: &mut State, dev: &str) {
    match neigh::mtu(dev) {
        Ok(m) => st.dev_mtu = lower_mtu(st.dev_mtu, m),
        Err(e) => {
            tracing::warn!("L4 egress MTU: {e:#}; oversized packets may be lost on {dev}");
        }
    }
}

/// Whether the real at `address` is up: not found down by any service
/// that has it (a real found down by one service's check is down for all:
/// it is one host).
fn real_up(st: &State, address: IpAddr) -> bool {
    !st.healthy.iter().any(|((_, a), up)| *a == address && !*up)
}

/// Whether backend `address` of service `svc` belongs in its table: its
/// health check passes (or it has none), its next hop is known and it is
/// not drained. The one definition of "usable" for the tables and for
/// announcing the VIP.
fn in_table(st: &State, svc: &ServicePlan, address: IpAddr) -> bool {
    st.healthy.get(&(svc.key, address)).copied().unwrap_or(true)
        && st.routes.contains_key(&address)
        && !st.drained.contains(&(svc.name.clone(), address))
}

/// The distinct VIP addresses, sorted, of the services of `st` with a
/// backend [`in_table`] that has a weight.
fn announceable(st: &State) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = st
        .plan
        .services
        .iter()
        // Weight 0 owns no slot: a service whose usable backends all have
        // it has an empty table, and would black-hole what it attracts.
        .filter(|svc| {
            svc.backends
                .iter()
                .any(|b| b.weight > 0 && in_table(st, svc, b.address))
        })
        .map(|svc| plan::vip_addr(&svc.key))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Reads service `key`'s VIP entry before its idle half is rewritten and
/// clears the previous table it names, if any: the kernel must not read
/// that half while it is being written. Returns the entry as it was (the
/// live table the flip will leave behind); `None` when there is none.
fn retire_previous(maps: &mut L4Maps, key: &VipKey) -> Result<Option<VipMeta>> {
    let live = maps.vip(key)?;
    if let Some(cleared) = live.as_ref().and_then(plan::without_previous) {
        maps.set_vip(key, &cleared)?;
    }
    Ok(live)
}

/// Service `svc`'s table now: its reals that are [`in_table`].
fn live_ring(st: &State, svc: &ServicePlan) -> Vec<u32> {
    let up: Vec<bool> = svc
        .backends
        .iter()
        .map(|b| in_table(st, svc, b.address))
        .collect();
    svc.ring(&up)
}

/// Writes `ring`, service `svc`'s table, into the ring half of `generation`.
fn write_table(maps: &mut L4Maps, svc: &ServicePlan, ring: &[u32], generation: u32) -> Result<()> {
    maps.write_ring(svc.id, generation, ring)
        .with_context(|| format!("writing the Maglev table of service {}", svc.name))
}

/// What a written table holds, to tell whether a new one would differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Written {
    /// By backend address ([`ServicePlan::digest`]): what hosts compare.
    digest: u64,
    /// By real id and length: the bytes in the map.
    ids: u64,
}

impl Written {
    fn of(svc: &ServicePlan, ring: &[u32]) -> Self {
        let mut ids: u64 = 0xcbf2_9ce4_8422_2325;
        for b in (ring.len() as u64)
            .to_le_bytes()
            .into_iter()
            .chain(ring.iter().flat_map(|id| id.to_le_bytes()))
        {
            ids = (ids ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        Self {
            digest: svc.digest(ring),
            ids,
        }
    }
}

/// Whether service `svc`'s live table already is `written`, under the
/// entry (id, generation, size, hash mode) it would be flipped to anyway.
fn unchanged(maps: &L4Maps, st: &State, svc: &ServicePlan, written: Written) -> Result<bool> {
    if st.digests.get(&svc.key) != Some(&written) {
        return Ok(false);
    }
    let Some(generation) = st.generation.get(&svc.key) else {
        return Ok(false);
    };
    Ok(maps.vip(&svc.key)?.is_some_and(|live| {
        live.id == svc.id
            && live.generation == *generation
            && live.ring_size == svc.table_size
            && live.flags == svc.flags
    }))
}

/// The egress MTU from the configured cap (if any) and the smallest
/// interface MTU seen (0: none yet).
fn effective_mtu(cap: Option<u32>, seen: u32) -> u32 {
    match (cap, seen) {
        (Some(cap), 0) => cap,
        (Some(cap), seen) => cap.min(seen),
        (None, seen) => seen,
    }
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

    /// A controller's state with `services` (YAML list items) planned and
    /// nothing resolved, checked or drained yet.
    fn state(services: &str) -> State {
        let yaml = format!(
            "xdp: {{interfaces: [{{name: eth0}}]}}\nl4:\n  forwarding: {{source_v4: 10.0.0.1}}\n  services:\n{services}"
        );
        let cfg = crate::config::parse(&yaml, std::path::Path::new("l4.yaml"))
            .unwrap()
            .l4;
        let plan = plan::plan(&cfg, &plan::Assigned::default(), 8).unwrap();
        State {
            cfg,
            plan,
            healthy: HashMap::new(),
            routes: HashMap::new(),
            generation: HashMap::new(),
            digests: HashMap::new(),
            dev_mtu: 0,
            mtu: 0,
            installed: true,
            drained: HashSet::new(),
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_vip_is_announced_while_a_service_on_it_has_a_usable_backend() {
        let mut st = state(
            "    - {name: a, vip: 10.1.0.1, port: 80, backends: [{address: 10.2.0.1}, {address: 10.2.0.2}]}
    - {name: b, vip: 10.1.0.1, port: 443, backends: [{address: 10.2.0.3}]}
    - {name: c, vip: 10.1.0.2, port: 80, backends: [{address: 10.2.0.4}]}
    - {name: d, vip: 10.1.0.3, port: 80, backends: [{address: 10.2.0.5}]}
",
        );
        assert!(announceable(&st).is_empty(), "no next hop known yet");
        for last in 1..=5 {
            st.routes.insert(
                ip(&format!("10.2.0.{last}")),
                Route {
                    dev: "eth0".into(),
                    ifindex: 2,
                    mac: [2, 0, 0, 0, 0, last],
                },
            );
        }
        // Sorted, one entry per address (a and b share 10.1.0.1).
        assert_eq!(
            announceable(&st),
            [ip("10.1.0.1"), ip("10.1.0.2"), ip("10.1.0.3")]
        );
        // d's only backend loses its next hop, c's fails its check.
        st.routes.remove(&ip("10.2.0.5"));
        let c = st.plan.services[2].clone();
        st.healthy.insert((c.key, ip("10.2.0.4")), false);
        assert!(!in_table(&st, &c, ip("10.2.0.4")));
        assert_eq!(announceable(&st), [ip("10.1.0.1")]);
        // a drained entirely: b still serves 10.1.0.1.
        st.drained.insert(("a".into(), ip("10.2.0.1")));
        st.drained.insert(("a".into(), ip("10.2.0.2")));
        let a = st.plan.services[0].clone();
        assert!(!in_table(&st, &a, ip("10.2.0.1")));
        assert_eq!(announceable(&st), [ip("10.1.0.1")]);
        // And once b's backend is down too, nothing is announced.
        let b = st.plan.services[1].clone();
        st.healthy.insert((b.key, ip("10.2.0.3")), false);
        assert!(announceable(&st).is_empty());
        // A check that passes brings it back.
        st.healthy.insert((c.key, ip("10.2.0.4")), true);
        assert!(in_table(&st, &c, ip("10.2.0.4")));
        assert_eq!(announceable(&st), [ip("10.1.0.2")]);
        // A usable backend of weight 0 owns no slot: not announced.
        let c = st.plan.services.iter_mut().find(|s| s.name == "c").unwrap();
        c.backends[0].weight = 0;
        assert!(announceable(&st).is_empty());
    }

    #[test]
    fn the_egress_mtu_is_the_smallest_seen_and_never_below_the_minimum() {
        assert_eq!(lower_mtu(0, 1500), 1500);
        assert_eq!(lower_mtu(1500, 9000), 1500);
        assert_eq!(lower_mtu(9000, 1450), 1450);
        assert_eq!(lower_mtu(0, 100), MIN_MTU);
        assert_eq!(lower_mtu(1500, 65536), 1500);
        assert_eq!(effective_mtu(Some(1400), 1500), 1400);
        assert_eq!(effective_mtu(None, 1500), 1500);
        assert_eq!(effective_mtu(Some(1400), 0), 1400);
    }
}
