//! `edge run`: assemble the dataplane, the proxy and the admin endpoint
//! from a checked configuration, run until SIGINT/SIGTERM, then detach.
//!
//! Beside Pingora's runtimes runs one small control runtime: the pools'
//! health checks, SIGHUP and the control socket, which reload the
//! configuration through one [`Reloader`], and the BGP announcer (with a
//! `bgp:` section), which announces the L4 VIPs once edge is ready and
//! withdraws them before it stops.

use crate::{
    access_log::AccessLog,
    admin::Admin,
    cache,
    config::{self, Config},
    dataplane::{AttachedMode, Dataplane, PinAt, Pinned},
    metrics, proxy,
    runtime::{
        Reloader,
        control::{self, Handover},
        kernel::Kernel,
    },
};
use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use pingora::{
    server::{
        RunArgs, Server, ShutdownWatch,
        configuration::{Opt, ServerConf},
    },
    services::background::{BackgroundService, background_service},
};
use std::{
    net::TcpListener,
    path::Path,
    sync::{Arc, Mutex, OnceLock, PoisonError},
    time::Duration,
};
use tokio::io::unix::AsyncFd;

/// Runs edge with the configuration at `path` until a shutdown signal.
///
/// SIGTERM drains in-flight requests for `server.grace_period_seconds`;
/// SIGINT stops at once. Either way the XDP program stays attached with
/// its maps pinned, for the next edge on this configuration to adopt
/// (`edge unload --config` takes it off). With a `bgp:` section, either
/// stop first withdraws the announced routes (for at most 2 s).
///
/// With `upgrade`, the listening sockets come from the edge running the
/// same configuration (see `edge upgrade`), once everything else is ready.
pub fn run(path: &Path, upgrade: bool) -> Result<()> {
    // SIGHUP means "reload" to service managers; until the reload handler
    // is installed (below), one is ignored rather than fatal.
    // SAFETY: setting a signal's disposition to SIG_IGN has no
    // preconditions; no handler of ours is replaced.
    unsafe { libc::signal(libc::SIGHUP, libc::SIG_IGN) };
    let (config, config_text) = config::load_with_text(path)?;
    for line in config.summary().lines() {
        tracing::info!("{line}");
    }
    // One edge per configuration: two would write the same pinned maps. In
    // an upgrade the running edge holds the lock until it hands over.
    let lock = if upgrade {
        None
    } else {
        Some(control::lock(path)?)
    };
    preflight_binds(&config, upgrade)?;
    // Nothing may be recorded that nothing can read: without an admin
    // endpoint no recorder is installed and recording costs nothing.
    let prometheus = match config.admin {
        Some(_) => Some(metrics::install().context("installing the metrics recorder")?),
        None => None,
    };

    let mut dataplane = if config.xdp.interfaces.is_empty() {
        None
    } else {
        Some(load_dataplane(&config, path, upgrade)?)
    };
    let xdp_stats = dataplane.as_ref().map(Dataplane::stats);
    let xdp_logger = dataplane.as_mut().and_then(Dataplane::take_logger);
    // Shared with the reloads (the deny list) and the last steps.
    let dataplane = Arc::new(Mutex::new(dataplane));
    let l4_reload = Arc::new(OnceLock::new());
    // Filled once edge is ready to serve (see `start_bgp`); the admin API
    // and the stop read it from the start.
    let announcer: Arc<OnceLock<Arc<crate::bgp::Announcer>>> = Arc::new(OnceLock::new());
    // Closed by a stop or a hand-over: an announcer that has not started
    // by then never does (see `start_bgp`).
    let bgp_closed = Arc::new(Mutex::new(false));
    // The kernel's tables and program are taken over now, or, in an
    // upgrade, once the running edge has handed over and stopped writing
    // them (nothing is written before: an upgrade that fails leaves the
    // running edge's kernel side as it was).
    // Drains made through the admin API outlive the process (see
    // runtime::drains): known before the first table is written, so a
    // restart never puts a drained backend back into rotation. Only from
    // a directory edge owns, and only with an admin endpoint to lift them.
    let drains_file = match control::socket_dir() {
        Ok(_) if config.admin.is_some() => crate::runtime::drains::path_for(path).ok(),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!("{e:#}: edge reload and edge upgrade will not reach this edge");
            None
        }
    };
    let saved_drains = drains_file
        .as_deref()
        .map(crate::runtime::drains::load)
        .unwrap_or_default();
    let mut l4_background = None;
    if !upgrade {
        l4_background = take_over_kernel(&dataplane, &config, &l4_reload, &saved_drains.services)?;
    }
    let grace = Duration::from_secs(config.server.grace_period_seconds);

    let upgrade_socket = control::upgrade_socket_for(path)?;
    let conf = ServerConf {
        upgrade_sock: upgrade_socket.to_string_lossy().into_owned(),
        threads: config.server.threads,
        grace_period_seconds: Some(config.server.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(config.server.grace_period_seconds),
        upstream_keepalive_pool_size: config.server.upstream_keepalive_pool_size,
        work_stealing: config.server.work_stealing,
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);

    let conf = server.configuration.clone();
    let access_log = match &config.access_log {
        Some(target) => Some(Arc::new(
            AccessLog::open(target).context("opening the access log")?,
        )),
        None => None,
    };
    let log_for_exit = access_log.clone();
    let cache = config.cache.as_ref().map(cache::Cache::new);
    let control_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("edge-control")
        .enable_all()
        .build()
        .context("starting the control runtime")?;
    let reloader = Arc::new(
        Reloader::start(
            path,
            config.clone(),
            config_text,
            control_rt.handle().clone(),
            cache,
            Some(Box::new(Kernel {
                dataplane: Arc::clone(&dataplane),
                l4: Arc::clone(&l4_reload),
            })),
            // Bans go into the kernel only where XDP runs.
            (!config.xdp.interfaces.is_empty()).then(|| {
                Arc::new(crate::runtime::kernel::KernelBans {
                    dataplane: Arc::clone(&dataplane),
                }) as Arc<dyn crate::policy::bans::BanMap>
            }),
        )
        .context("compiling the configuration")?,
    );
    reloader.restore_drains(&saved_drains.pools);
    watch_sighup(&control_rt, &reloader)?;
    for service in proxy::services(&conf, &reloader, &config.listeners, access_log)
        .context("building the listeners")?
    {
        server.add_boxed_service(service);
    }
    if let (Some(admin), Some(prometheus)) = (&config.admin, prometheus) {
        server.add_service(
            Admin::new(prometheus, xdp_stats)
                .with_cache(cache)
                .with_reloader(Arc::clone(&reloader))
                .with_bans(reloader.bans())
                .with_kernel(Arc::clone(&dataplane), Arc::clone(&l4_reload))
                .with_drains_file(drains_file.clone())
                .with_bgp(Arc::clone(&announcer))
                .with_access(admin.allow.clone(), admin.token.clone())
                .service(admin.address),
        );
    }
    if let Some(logger) = xdp_logger {
        server.add_service(background_service(
            "xdp log",
            XdpLog(Mutex::new(Some(logger))),
        ));
    }

    let start_upgrade = Arc::new(tokio::sync::Notify::new());
    let handover = Arc::new(Handover::new(
        upgrade_socket,
        control::socket_for(path)?,
        Arc::clone(&start_upgrade),
    ));
    if let Some(lock) = lock {
        handover.hold_lock(lock);
    }
    {
        // From the hand-over on, the new process owns the kernel's tables
        // and the configuration: this one writes neither.
        let (l4, reloader) = (Arc::clone(&l4_reload), Arc::clone(&reloader));
        let (announcer, closed) = (Arc::clone(&announcer), Arc::clone(&bgp_closed));
        handover.on_begin(Box::new(move || {
            reloader.retire();
            if let Some(l4) = l4.get() {
                l4.controller().freeze();
            }
            // The new process announces in turn; two writers of BIRD's
            // file could leave the older one's routes in it.
            *closed.lock().unwrap_or_else(PoisonError::into_inner) = true;
            if let Some(a) = announcer.get() {
                a.freeze();
            }
        }));
    }
    // The drain may end the process itself (see `drain`): it then runs
    // the same last steps as the end of this function.
    let last_steps = {
        let dataplane = Arc::clone(&dataplane);
        let log = log_for_exit.clone();
        let handover = Arc::clone(&handover);
        move || finish(log.as_deref(), &dataplane, &handover)
    };
    let phases = server.watch_execution_phase();
    let mut watch = crate::drain::Watch::new(grace, Box::new(last_steps), phases, start_upgrade);
    if config.bgp.is_some() {
        watch = watch.with_before_stop(withdraw_before_stop(
            &announcer,
            &bgp_closed,
            control_rt.handle(),
        ));
    }
    if upgrade {
        tracing::info!("waiting for the running edge's listening sockets");
    }
    // Last: with `upgrade`, this takes the sockets over, and nothing that
    // can fail is left after it.
    server.bootstrap();
    if upgrade {
        // The running edge let go of the lock before it sent the sockets.
        let lock = take_lock_after_handover(path)?;
        handover.hold_lock(lock);
        // The running edge took drains until it handed over (it refuses
        // them from then on): read the file again.
        let saved = drains_file
            .as_deref()
            .map(crate::runtime::drains::load)
            .unwrap_or_default();
        reloader.restore_drains(&saved.pools);
        l4_background = take_over_kernel(&dataplane, &config, &l4_reload, &saved.services)
            .context("taking the kernel side over after the hand-over")?;
    }
    if let Some(l4) = l4_background {
        server.add_service(background_service("l4", l4));
    }
    serve_control(&control_rt, &reloader, &handover, path);
    // Announced only now: the kernel's tables are this process's and the
    // listeners are about to be served.
    let start_announcing = start_bgp(
        &config,
        &control_rt,
        &l4_reload,
        &reloader,
        &announcer,
        &bgp_closed,
    );
    tell_when_ready(&control_rt, &config, upgrade, start_announcing);
    tracing::info!("edge running; SIGTERM drains, SIGINT stops, a second signal stops at once");
    server.run(RunArgs {
        shutdown_signal: Box::new(watch),
    });
    tracing::info!("edge stopping");
    finish(log_for_exit.as_deref(), &dataplane, &handover);
    Ok(())
}

/// With a `bgp:` section, what starts announcing once every listener is
/// bound (nothing attracts traffic to a host that cannot take it yet): an
/// announcer for the L4 VIPs that have a usable backend and the addresses
/// of `bgp.listeners`, kept in `slot` (for the admin API and the stop).
/// Each reloaded `bgp:` section goes to it from now on; the announcer
/// starts from the section live when it starts, so a reload in between is
/// not lost.
fn start_bgp(
    config: &Config,
    control_rt: &tokio::runtime::Runtime,
    l4_reload: &Arc<OnceLock<crate::l4::L4Reload>>,
    reloader: &Arc<Reloader>,
    slot: &Arc<OnceLock<Arc<crate::bgp::Announcer>>>,
    closed: &Arc<Mutex<bool>>,
) -> Option<OnReady> {
    config.bgp.as_ref()?;
    {
        let slot = Arc::clone(slot);
        reloader.on_applied(Box::new(move |next: &Config| {
            let Some(announcer) = slot.get() else {
                return;
            };
            match &next.bgp {
                Some(bgp) => announcer.update(bgp.clone()),
                None => tracing::warn!(
                    "the reloaded file has no bgp section: the running announcer carries on \
                     with the last one until edge restarts"
                ),
            }
        }));
    }
    let (l4, reloader, slot, closed) = (
        Arc::clone(l4_reload),
        Arc::clone(reloader),
        Arc::clone(slot),
        Arc::clone(closed),
    );
    let rt = control_rt.handle().clone();
    Some(Box::new(move || {
        // Held while the announcer starts: a stop or a hand-over either
        // came first (nothing starts) or finds it started.
        let closed = closed.lock().unwrap_or_else(PoisonError::into_inner);
        if *closed {
            tracing::info!("a stop or a hand-over came before edge was ready: not announcing");
            return;
        }
        let Some(bgp) = reloader.view().config.bgp.clone() else {
            return;
        };
        // Read at each announcement: the set follows health checks,
        // drains and reloads.
        let vips: crate::bgp::VipSource = Arc::new(move || {
            l4.get()
                .map(|l| l.controller().announceable())
                .unwrap_or_default()
        });
        let announcer = crate::bgp::Announcer::start(bgp.clone(), &rt, vips);
        let _ = slot.set(Arc::clone(&announcer));
        drop(closed);
        // A reload between reading the section and filling the slot found
        // no announcer to tell.
        if let Some(now) = reloader.view().config.bgp.clone()
            && now != bgp
        {
            announcer.update(now);
        }
        tracing::info!("BGP announcer started: the L4 VIPs with a usable backend are announced");
    }))
}

/// What runs once every listener is bound.
type OnReady = Box<dyn FnOnce() + Send>;

/// The before-stop step of a stop signal: every route withdrawn, for at
/// most `deadline`, on the control runtime (where the announcer runs).
fn withdraw_before_stop(
    slot: &Arc<OnceLock<Arc<crate::bgp::Announcer>>>,
    closed: &Arc<Mutex<bool>>,
    control: &tokio::runtime::Handle,
) -> crate::drain::BeforeStop {
    let (slot, closed, control) = (Arc::clone(slot), Arc::clone(closed), control.clone());
    Arc::new(move |deadline: Duration| -> crate::drain::StepFuture {
        // An announcer not started yet never will be.
        let announcer = {
            let mut closed = closed.lock().unwrap_or_else(PoisonError::into_inner);
            *closed = true;
            slot.get().cloned()
        };
        let control = control.clone();
        Box::pin(async move {
            // A stop before edge was ready: nothing was announced.
            let Some(announcer) = announcer else {
                return;
            };
            let withdrawn = control
                .spawn(async move { announcer.withdraw_all(deadline).await })
                .await;
            match withdrawn {
                Ok(Ok(())) => {
                    tracing::info!(
                        "every BGP route withdrawn before the stop: new flows go to another \
                         edge; the listeners close in {:?}",
                        crate::drain::ROUTE_SETTLE
                    );
                    // Connections that arrive while the router changes
                    // its forwarding are still accepted and served.
                    tokio::time::sleep(crate::drain::ROUTE_SETTLE).await;
                }
                Ok(Err(e)) => tracing::warn!(
                    "withdrawing the BGP routes before the stop: {e}; stopping anyway"
                ),
                Err(e) => tracing::warn!("the BGP withdrawal task failed: {e}; stopping anyway"),
            }
        })
    })
}

/// The last steps before the process exits: the access log written out,
/// the dataplane dropped (what is pinned stays, for the next edge to
/// adopt), the control socket removed.
fn finish(log: Option<&AccessLog>, dataplane: &Mutex<Option<Dataplane>>, handover: &Handover) {
    if let Some(log) = log {
        log.flush(LOG_FLUSH_TIMEOUT);
    }
    tracing::debug!("last steps: the dataplane");
    if let Ok(mut dp) = dataplane.lock() {
        dp.take();
    }
    handover.release_socket();
    handover.release_lock();
    tracing::debug!("last steps done");
}

/// SIGHUP reloads the configuration. Its handler is installed before this
/// returns, so from here on a SIGHUP (which service managers send for
/// "reload") never ends the process.
fn watch_sighup(control_rt: &tokio::runtime::Runtime, reloader: &Arc<Reloader>) -> Result<()> {
    let _in = control_rt.enter();
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("watching SIGHUP")?;
    let r = Arc::clone(reloader);
    control_rt.spawn(async move {
        while hangup.recv().await.is_some() {
            let r = Arc::clone(&r);
            // A refused reload is logged and counted by the reloader.
            let _ = tokio::task::spawn_blocking(move || r.reload("SIGHUP")).await;
        }
    });
    Ok(())
}

/// Serves the control socket (`edge reload`, `edge upgrade`); a daemon that
/// cannot bind it runs without, saying so.
fn serve_control(
    control_rt: &tokio::runtime::Runtime,
    reloader: &Arc<Reloader>,
    handover: &Arc<Handover>,
    path: &Path,
) {
    let _in = control_rt.enter();
    let socket = &handover.control_socket;
    match control::bind(socket) {
        Ok(listener) => {
            handover.own_socket();
            tracing::info!(socket = %socket.display(), "control socket ready: `edge reload --config {}` reloads", path.display());
            control_rt.spawn(control::serve(
                listener,
                Arc::clone(reloader),
                Arc::clone(handover),
            ));
        }
        Err(e) => tracing::warn!(
            "{e:#}; `edge reload` and `edge upgrade` cannot reach this daemon (SIGHUP and POST \
             /reload still reload)"
        ),
    }
}

/// Longest wait for every listener to be bound before edge tells the
/// service manager it failed to become ready.
const READY_DEADLINE: Duration = Duration::from_secs(60);

/// Tells the service manager `READY=1` once every listener (and the admin
/// endpoint) is listening: Pingora binds them in its service threads after
/// this function's caller hands over, so readiness is looked up, not
/// assumed.
///
/// After an upgrade (the sockets and the kernel's tables are this
/// process's by now) it also says `MAINPID=`: the service manager started
/// the old process, and this one takes its place. `on_ready` (announcing
/// by BGP) runs at the same moment.
fn tell_when_ready(
    control_rt: &tokio::runtime::Runtime,
    config: &Config,
    upgrade: bool,
    on_ready: Option<OnReady>,
) {
    let addrs: Vec<std::net::SocketAddr> = config
        .listeners
        .iter()
        .map(|l| l.address)
        .chain(config.admin.as_ref().map(|a| a.address))
        .collect();
    control_rt.spawn(async move {
        let deadline = std::time::Instant::now() + READY_DEADLINE;
        loop {
            let waiting: Vec<_> = addrs
                .iter()
                .filter(|a| !crate::notify::listening(**a))
                .collect();
            if waiting.is_empty() {
                tracing::info!("every listener is bound: ready");
                if let Some(start) = on_ready {
                    start();
                }
                let main = if upgrade {
                    format!("MAINPID={}\n", std::process::id())
                } else {
                    String::new()
                };
                crate::notify::ready(&main);
                return;
            }
            if std::time::Instant::now() >= deadline {
                tracing::error!(
                    ?waiting,
                    "listeners still not bound after {READY_DEADLINE:?}: not telling the \
                     service manager edge is ready"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

/// Longest wait for the access log to be written out at exit.
const LOG_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Loads the XDP object with its maps pinned under `xdp.bpffs`, adopting
/// what an earlier edge on this configuration pinned. In an `upgrade`, the
/// pinned maps must fit: the running edge uses them.
fn load_dataplane(config: &Config, path: &Path, upgrade: bool) -> Result<Dataplane> {
    let pin = PinAt {
        root: config.xdp.bpffs.clone(),
        instance: control::instance(path)?,
        keep_unfit: upgrade,
    };
    let dp = Dataplane::load_with(&crate::l4::load_options(&config.l4, Some(pin)))?;
    if let Some((dir, found)) = dp.pinned() {
        match found {
            Pinned::Nothing => {
                tracing::info!(dir = %dir.display(), "XDP maps pinned afresh")
            }
            Pinned::Adopted => tracing::info!(
                dir = %dir.display(),
                "adopted the pinned XDP maps of an earlier edge: conntrack and counters go on"
            ),
            Pinned::Rebuilt(why) => tracing::warn!(
                dir = %dir.display(),
                "the pinned XDP maps do not fit ({why}): fresh maps, filled from the \
                 configuration; established L4 flows are picked again"
            ),
        }
    }
    Ok(dp)
}

/// Writes the configuration into the maps (deny list, L7 ports, the L4
/// services) and then puts the program on the interfaces, so a program
/// that replaces a running one in place finds every table; returns the L4
/// background service, and leaves the L4 reload handle in `l4`.
fn take_over_kernel(
    dataplane: &Mutex<Option<Dataplane>>,
    config: &Config,
    l4: &OnceLock<crate::l4::L4Reload>,
    drained: &[(String, std::net::IpAddr)],
) -> Result<Option<crate::l4::L4Background>> {
    let mut guard = dataplane.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(dp) = guard.as_mut() else {
        return Ok(None);
    };
    dp.tables().set_deny(&config.xdp.deny)?;
    dp.tables().set_l7_ports(&config.l7_ports())?;
    let (background, reload) =
        crate::l4::start(dp, config, drained).context("setting up the L4 services")?;
    let _ = l4.set(reload);
    attach(dp, config)?;
    Ok(Some(background))
}

/// The lock, taken by a new process of an upgrade once it has the sockets
/// (the running edge released it first; a little patience covers the gap).
fn take_lock_after_handover(path: &Path) -> Result<control::Lock> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match control::lock(path) {
            Ok(lock) => return Ok(lock),
            Err(e) if std::time::Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Puts the program on every configured interface (in place of the
/// program of a link an earlier edge pinned).
fn attach(dp: &mut Dataplane, config: &Config) -> Result<()> {
    for iface in &config.xdp.interfaces {
        let mode = dp.attach(iface)?;
        metrics::xdp_attached(&iface.name, mode.as_str());
        let how = if mode == AttachedMode::Replaced {
            "XDP program replaced in place on the pinned link (bpf_link_update)"
        } else {
            "XDP attached"
        };
        tracing::info!(interface = %iface.name, mode = mode.as_str(), "{how}");
    }
    let keep: Vec<&str> = config
        .xdp
        .interfaces
        .iter()
        .map(|i| i.name.as_str())
        .collect();
    for iface in dp.drop_stale_links(&keep)? {
        tracing::info!(interface = %iface, "XDP taken off an interface no longer configured");
    }
    Ok(())
}

/// Pingora binds listeners inside its service threads and panics there if
/// it cannot; binding once here first turns that into a clear error. With
/// `upgrade`, an address in use is the running edge's, whose socket comes
/// over.
fn preflight_binds(config: &Config, upgrade: bool) -> Result<()> {
    let admin = config
        .admin
        .as_ref()
        .map(|a| ("admin".to_string(), a.address));
    let all = config
        .listeners
        .iter()
        .map(|l| (format!("listener {}", l.name), l.address))
        .chain(admin);
    for (what, addr) in all {
        match TcpListener::bind(addr) {
            Ok(_) => {}
            Err(e) if upgrade && e.kind() == std::io::ErrorKind::AddrInUse => {}
            Err(e) => bail!("{what}: cannot listen on {addr}: {e}"),
        }
    }
    Ok(())
}

type Logger = aya_log::EbpfLogger<&'static dyn log::Log>;

/// Forwards the XDP program's (rare) log records to our log.
struct XdpLog(Mutex<Option<Logger>>);

#[async_trait]
impl BackgroundService for XdpLog {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(logger) = self.0.lock().ok().and_then(|mut l| l.take()) else {
            return;
        };
        // SAFETY: the logger owns the ring buffer's fd and keeps it open and
        // unchanged until the AsyncFd (which owns the logger) is dropped.
        let mut fd = match unsafe { AsyncFd::register(logger) } {
            Ok(fd) => fd,
            Err(e) => {
                tracing::warn!("cannot poll XDP logs: {e}");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                ready = fd.readable_mut() => match ready {
                    Ok(mut guard) => {
                        guard.get_inner_mut().flush();
                        guard.clear_ready();
                    }
                    Err(e) => {
                        tracing::warn!("polling XDP logs: {e}");
                        return;
                    }
                },
            }
        }
    }
}
