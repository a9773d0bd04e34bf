//! Announcing the VIPs over BGP, through BIRD 2.
//!
//! edge never speaks BGP itself: the [`Announcer`] writes a complete BIRD
//! configuration ([`render`]) announcing a host route for each L4 VIP that
//! has a usable backend and each address of the listeners in
//! `bgp.listeners`, and asks BIRD to re-read its configuration over its
//! control socket ([`bird`]). An operator runs `bird -c <that file>` or
//! `include`s it from their own bird.conf.
//!
//! Draining ([`Announcer::withdraw_all`]) withdraws every route for good,
//! so that the routers move traffic away before edge stops serving.
//! Freezing ([`Announcer::freeze`]) stops announcing without withdrawing,
//! for a new edge process that announces in turn. [`withdraw_once`] is the
//! same withdrawal without a running edge, for a service manager to run
//! after edge stopped or crashed.

pub mod bird;
pub mod render;

use crate::config::BgpConfig;
use crate::metrics::{BGP_ANNOUNCED, BGP_CONFIGURE, BGP_HOST_DRAINED, BGP_PREFIXES_UNTRACKED};
use parking_lot::Mutex;
use std::{
    collections::BTreeSet,
    io,
    net::IpAddr,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};
use tokio::{
    sync::{Notify, watch},
    task::JoinHandle,
    time::{Instant, MissedTickBehavior},
};

/// The L4 VIP addresses that have at least one usable backend now. It may
/// block (for seconds, while a reload holds the controller): the announcer
/// calls it on a blocking thread.
pub type VipSource = Arc<dyn Fn() -> Vec<IpAddr> + Send + Sync>;

/// How often the wanted set is computed and compared.
pub const TICK: Duration = Duration::from_millis(200);
/// Longest wait between two attempts while BIRD keeps failing.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Most prefixes given an `edge_bgp_announced` series (they come from the
/// configuration, and reloads can only add to them); prefixes announced
/// beyond it are counted in `edge_bgp_prefixes_untracked_total`.
pub const MAX_TRACKED_PREFIXES: usize = 1024;

/// Why announcing failed.
#[derive(Debug, thiserror::Error)]
pub enum BgpError {
    /// The BIRD configuration file could not be written.
    #[error("cannot write the BIRD configuration {}: {source}", path.display())]
    Write {
        /// The file.
        path: std::path::PathBuf,
        /// The error.
        source: io::Error,
    },
    /// BIRD did not take the new file.
    #[error(transparent)]
    Bird(#[from] bird::BirdError),
    /// BIRD had not accepted a file without routes when the deadline came.
    #[error(
        "BIRD did not accept the configuration without routes within {waited:?}{}",
        last_error.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
    )]
    Deadline {
        /// The deadline.
        waited: Duration,
        /// The last attempt's error, if it failed.
        last_error: Option<String>,
    },
    /// The announcing task is gone (stopped, or frozen for another edge
    /// process).
    #[error("the BGP announcer has stopped")]
    Stopped,
}

/// What the announcer has done, for the admin API.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct BgpStatus {
    /// The addresses announced now (host routes): those of the last file
    /// BIRD accepted, sorted.
    pub announced: Vec<IpAddr>,
    /// Whether the host is drained (every route withdrawn, for good).
    pub host_drained: bool,
    /// Whether the announcer is frozen: stopped for good without
    /// withdrawing, another edge process announcing in its place.
    pub frozen: bool,
    /// The last attempt's error, if it failed.
    pub last_error: Option<String>,
    /// How many times BIRD accepted a new file.
    pub reconfigurations: u64,
}

/// State shared by the [`Announcer`] and its task.
struct Shared {
    cfg: Mutex<BgpConfig>,
    drained: AtomicBool,
    /// True once frozen; a watch, so that a waiting `withdraw_all` hears it.
    frozen: watch::Sender<bool>,
    /// Held while the file is written: `freeze` takes it after setting
    /// `frozen`, so no write of this process lands after it returned.
    writing: Mutex<()>,
    /// Wakes the task before its next tick (a reload, a drain).
    wake: Notify,
    status: Mutex<BgpStatus>,
    /// True once BIRD has accepted a file written for the drained host.
    drained_accepted: watch::Sender<bool>,
}

impl Shared {
    fn is_frozen(&self) -> bool {
        *self.frozen.borrow()
    }
}

/// Keeps BIRD's configuration in step with the VIPs that should be
/// announced; its task stops when it is dropped.
pub struct Announcer {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for Announcer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Announcer {
    /// Starts the announcing task on `rt`; it writes the file and
    /// configures BIRD at once, then whenever the wanted set changes.
    pub fn start(cfg: BgpConfig, rt: &tokio::runtime::Handle, vips: VipSource) -> Arc<Self> {
        // Every series from the start, so a dashboard sees 0 rather than
        // nothing.
        metrics::gauge!(BGP_HOST_DRAINED).set(0.0);
        for result in ["ok", "error"] {
            metrics::counter!(BGP_CONFIGURE, "result" => result).absolute(0);
        }
        metrics::counter!(BGP_PREFIXES_UNTRACKED).absolute(0);
        let shared = Arc::new(Shared {
            cfg: Mutex::new(cfg),
            drained: AtomicBool::new(false),
            frozen: watch::Sender::new(false),
            writing: Mutex::new(()),
            wake: Notify::new(),
            status: Mutex::new(BgpStatus::default()),
            drained_accepted: watch::Sender::new(false),
        });
        // The task holds the shared state, not the announcer: dropping the
        // announcer aborts it.
        let task = rt.spawn(run(Arc::clone(&shared), vips));
        Arc::new(Self { shared, task })
    }

    /// A reload's new `bgp:` section (takes effect on the next pass, at
    /// once). When it moves BIRD's file or socket, the old file is
    /// rewritten without routes and the old socket told to read it, so
    /// that BIRD does not go on announcing what the old file held.
    pub fn update(&self, cfg: BgpConfig) {
        let old = std::mem::replace(&mut *self.shared.cfg.lock(), cfg.clone());
        if old.bird_config != cfg.bird_config || old.bird_socket != cfg.bird_socket {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(async move {
                        match withdraw_once(&old).await {
                            Ok(()) => tracing::info!(
                                file = %old.bird_config.display(),
                                "BGP: BIRD's file moved; the old one holds no route now"
                            ),
                            Err(e) => tracing::warn!(
                                file = %old.bird_config.display(),
                                "BGP: BIRD's file moved, and withdrawing through the old one \
                                 failed: {e}; if a BIRD still reads it, run `birdc configure` \
                                 there"
                            ),
                        }
                    });
                }
                Err(_) => tracing::warn!(
                    file = %old.bird_config.display(),
                    "BGP: BIRD's file moved; the old one was left as it was"
                ),
            }
        }
        self.shared.wake.notify_one();
    }

    /// Withdraws every route (the host is drained from now on, for good)
    /// and resolves once BIRD has accepted the file without routes, or
    /// fails at `deadline`. Fails with [`BgpError::Stopped`] at once when
    /// the announcer is frozen, or as soon as it is frozen while waiting.
    pub async fn withdraw_all(&self, deadline: Duration) -> Result<(), BgpError> {
        let mut frozen = self.shared.frozen.subscribe();
        if *frozen.borrow_and_update() {
            return Err(BgpError::Stopped);
        }
        if !self.shared.drained.swap(true, Ordering::SeqCst) {
            tracing::info!("BGP: host drained, withdrawing every route");
            metrics::gauge!(BGP_HOST_DRAINED).set(1.0);
        }
        let mut accepted = self.shared.drained_accepted.subscribe();
        let drained_known = *accepted.borrow();
        if self.task.is_finished() && !drained_known {
            return Err(BgpError::Stopped);
        }
        self.shared.wake.notify_one();
        // The references `wait_for` returns are dropped at once: they hold
        // a lock and are not `Send`.
        let until_accepted = async { accepted.wait_for(|drained| *drained).await.is_ok() };
        let until_frozen = async {
            let _ = frozen.wait_for(|f| *f).await;
        };
        let waited = tokio::time::timeout(deadline, async {
            tokio::select! {
                ok = until_accepted => ok,
                () = until_frozen => false,
            }
        })
        .await;
        match waited {
            Ok(true) => Ok(()),
            Ok(false) => Err(BgpError::Stopped),
            Err(_) => Err(BgpError::Deadline {
                waited: deadline,
                last_error: self.shared.status.lock().last_error.clone(),
            }),
        }
    }

    /// Stops the announcing task for good without withdrawing anything: the
    /// routes BIRD announces now stay, for the new edge process of a
    /// graceful upgrade to announce in turn. Once it returns, this process
    /// writes BIRD's file no more (it waits for a write under way, a file
    /// of a few kilobytes); a `configure` already sent only makes BIRD read
    /// whatever file is there. [`Self::withdraw_all`] fails with
    /// [`BgpError::Stopped`] from now on; calling it again does nothing.
    pub fn freeze(&self) {
        if self.shared.frozen.send_replace(true) {
            return;
        }
        self.task.abort();
        // A write that started before `frozen` was set ends before this
        // lock is ours; any later one sees `frozen` and writes nothing.
        drop(self.shared.writing.lock());
        tracing::info!("BGP: announcer frozen: the routes stay for the next edge process");
    }

    /// Whether the host was drained (withdraw_all called).
    pub fn host_drained(&self) -> bool {
        self.shared.drained.load(Ordering::SeqCst)
    }

    /// What is announced now (the routes of the last file BIRD accepted),
    /// whether the host is drained or the announcer frozen, the last error
    /// if the last attempt failed, and how many times BIRD accepted a new
    /// file.
    pub fn status(&self) -> BgpStatus {
        let mut status = self.shared.status.lock().clone();
        status.host_drained = self.host_drained();
        status.frozen = self.shared.is_frozen();
        status
    }
}

/// Writes the BIRD file of `cfg` without routes, atomically as the
/// announcer does, and asks BIRD once to read it: for `edge bgp-withdraw`,
/// which a service manager runs after edge stopped or crashed (systemd's
/// `ExecStopPost`), so that a dead edge's routes do not stay announced.
///
/// The file is written first: a BIRD that is not running now reads no
/// routes when it starts. Nothing is retried: an error says whether the
/// file could not be written or BIRD did not take it.
pub async fn withdraw_once(cfg: &BgpConfig) -> Result<(), BgpError> {
    let text = render::render(cfg, &[]);
    write_file(&cfg.bird_config, &text, None).await?;
    bird::configure(&cfg.bird_socket).await?;
    Ok(())
}

/// The task's memory between passes.
#[derive(Default)]
struct Progress {
    /// The text, file and socket of the last file BIRD accepted.
    accepted: Option<(String, BgpConfig)>,
    /// The routes of that file.
    announced: Vec<IpAddr>,
    /// Whether the last attempt was for the drained host, and whether it
    /// failed.
    attempted_drained: bool,
    failing: bool,
    /// While failing, no new attempt before this (but for a drain).
    retry_at: Option<Instant>,
    backoff: Duration,
    /// The last error logged (a warning is logged when it changes).
    logged_error: Option<String>,
    /// The VIPs the source last gave, kept for a pass whose call fails.
    last_vips: Vec<IpAddr>,
    /// Prefixes with an `edge_bgp_announced` series.
    tracked: Tracked,
}

/// The prefixes with an `edge_bgp_announced` series.
#[derive(Default)]
struct Tracked {
    /// At most [`MAX_TRACKED_PREFIXES`].
    series: BTreeSet<IpAddr>,
    /// Whether reaching the bound was logged (once per process: every
    /// pass after would log it again).
    warned: bool,
}

async fn run(shared: Arc<Shared>, vips: VipSource) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut progress = Progress::default();
    // Set when the host was drained while the source was asked: the
    // drained pass runs at once, not at the next tick.
    let mut again = false;
    loop {
        if !std::mem::take(&mut again) {
            tokio::select! {
                _ = tick.tick() => {}
                () = shared.wake.notified() => {}
            }
        }
        // Read once, before anything: the file written is for this value.
        let drained = shared.drained.load(Ordering::SeqCst);
        // A drained host announces nothing: the source, which can wait
        // seconds for the controller, is not asked.
        let wanted = if drained {
            Vec::new()
        } else {
            match wanted_vips(&shared, &vips, &mut progress).await {
                Some(w) => w,
                None => {
                    again = true;
                    continue;
                }
            }
        };
        pass(&shared, drained, wanted, &mut progress).await;
    }
}

/// Asks `vips` on a blocking thread: it can wait seconds for the
/// controller's lock, and the runtime's one worker also handles signals.
/// A call that fails (the source panicked) gives the last set again.
/// `None` when the host is drained meanwhile: the drain does not wait for
/// the answer, which is dropped when the call ends.
async fn wanted_vips(shared: &Shared, vips: &VipSource, p: &mut Progress) -> Option<Vec<IpAddr>> {
    let source = Arc::clone(vips);
    let mut call = tokio::task::spawn_blocking(move || (*source)());
    loop {
        tokio::select! {
            joined = &mut call => {
                return Some(match joined {
                    Ok(v) => {
                        p.last_vips.clone_from(&v);
                        v
                    }
                    Err(e) => {
                        tracing::warn!("BGP: asking for the VIPs failed ({e}); keeping the last set");
                        p.last_vips.clone()
                    }
                });
            }
            () = shared.wake.notified() => {
                if shared.drained.load(Ordering::SeqCst) {
                    return None;
                }
                // A reload: the pass that follows reads the new section.
            }
        }
    }
}

/// One look at the wanted set (`vips`, empty when `drained`); BIRD is
/// reconfigured if it changed (or the last attempt failed and its backoff
/// is over).
async fn pass(shared: &Arc<Shared>, drained: bool, vips: Vec<IpAddr>, p: &mut Progress) {
    let cfg = shared.cfg.lock().clone();
    let mut wanted = vips;
    if !drained {
        wanted.extend(cfg.listener_addresses.iter().copied());
    }
    let routes = render::announceable(&cfg, &wanted);
    let text = render::render(&cfg, &routes);
    let same_as_accepted = p.accepted.as_ref().is_some_and(|(t, c)| {
        *t == text && c.bird_config == cfg.bird_config && c.bird_socket == cfg.bird_socket
    });
    if same_as_accepted && !p.failing {
        // Nothing to write; a drain that changes no route (nothing was
        // announced) is accepted as it stands.
        let known = *shared.drained_accepted.borrow();
        if drained && !known {
            shared.drained_accepted.send_replace(true);
        }
        return;
    }
    // While BIRD fails, attempts wait for the backoff; a drain does not.
    let drain_news = drained && !p.attempted_drained;
    if p.failing && !drain_news && p.retry_at.is_some_and(|at| Instant::now() < at) {
        return;
    }
    p.attempted_drained = drained;
    match apply(shared, &cfg, &text).await {
        Ok(reply) => {
            metrics::counter!(BGP_CONFIGURE, "result" => "ok").increment(1);
            if p.logged_error.take().is_some() {
                tracing::info!("BGP: BIRD accepted the configuration again ({reply})");
            }
            log_changes(&p.announced, &routes);
            track(&mut p.tracked, &p.announced, &routes);
            p.failing = false;
            p.retry_at = None;
            p.backoff = Duration::ZERO;
            p.announced = routes.clone();
            p.accepted = Some((text, cfg));
            {
                let mut status = shared.status.lock();
                status.announced = routes;
                status.last_error = None;
                status.reconfigurations += 1;
            }
            if drained {
                shared.drained_accepted.send_replace(true);
            }
        }
        Err(e) => {
            metrics::counter!(BGP_CONFIGURE, "result" => "error").increment(1);
            let message = e.to_string();
            if p.logged_error.as_ref() != Some(&message) {
                tracing::warn!("BGP: {message}; retrying");
                p.logged_error = Some(message.clone());
            }
            p.failing = true;
            p.backoff = (p.backoff * 2).clamp(TICK, MAX_BACKOFF);
            p.retry_at = Some(Instant::now() + p.backoff);
            shared.status.lock().last_error = Some(message);
        }
    }
}

/// Writes `text` to the configured file and has BIRD read it.
async fn apply(shared: &Arc<Shared>, cfg: &BgpConfig, text: &str) -> Result<String, BgpError> {
    write_file(&cfg.bird_config, text, Some(Arc::clone(shared))).await?;
    Ok(bird::configure(&cfg.bird_socket).await?)
}

/// Writes `text` to `path` ([`write_atomically`]) on a blocking thread.
/// With `shared`, the write holds its `writing` lock and does not happen
/// once the announcer is frozen ([`BgpError::Stopped`]).
async fn write_file(path: &Path, text: &str, shared: Option<Arc<Shared>>) -> Result<(), BgpError> {
    let (file, body) = (path.to_path_buf(), text.to_string());
    let written = tokio::task::spawn_blocking(move || {
        let _writing = shared.as_ref().map(|s| s.writing.lock());
        if shared.as_ref().is_some_and(|s| s.is_frozen()) {
            return Ok(false);
        }
        write_atomically(&file, &body).map(|()| true)
    })
    .await
    .unwrap_or_else(|e| Err(io::Error::other(format!("the writing task failed: {e}"))))
    .map_err(|source| BgpError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    if written {
        Ok(())
    } else {
        Err(BgpError::Stopped)
    }
}

/// Replaces `path` with `text` at once: BIRD, reading it at any moment,
/// sees the old file or the new one, never half of one.
fn write_atomically(path: &Path, text: &str) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let invalid = || io::Error::new(io::ErrorKind::InvalidInput, "not a file path");
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .ok_or_else(invalid)?;
    let name = path.file_name().ok_or_else(invalid)?;
    if !dir.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)?;
        // The mode above is masked by the umask (the unit's is 0077), and
        // BIRD, as its own user, must get through the directory.
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    }
    // The process id keeps an old and a new edge (during an upgrade) off
    // each other's temporary file; one left by a task stopped mid-write
    // is removed first, so that `create_new` can succeed.
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let written = write_new(&tmp, text).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Creates `path`, which must not exist (nor be a symlink), holding `text`.
fn write_new(path: &Path, text: &str) -> io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    // BIRD often runs as its own user: it must be able to read the file
    // whatever edge's umask.
    f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
    f.write_all(text.as_bytes())
}

/// Logs the prefixes announced and withdrawn between `before` and `after`
/// (both sorted).
fn log_changes(before: &[IpAddr], after: &[IpAddr]) {
    let added: Vec<String> = after
        .iter()
        .filter(|a| before.binary_search(*a).is_err())
        .map(render::prefix)
        .collect();
    let removed: Vec<String> = before
        .iter()
        .filter(|a| after.binary_search(*a).is_err())
        .map(render::prefix)
        .collect();
    if added.is_empty() && removed.is_empty() {
        return;
    }
    let (added, removed) = (added.join(" "), removed.join(" "));
    tracing::info!(
        announced = %added,
        withdrawn = %removed,
        "BGP: BIRD now announces {} prefix{}",
        after.len(),
        if after.len() == 1 { "" } else { "es" }
    );
}

/// Sets `edge_bgp_announced` to 1 for each of `announced` and to 0 for each
/// prefix announced before and not now. Past [`MAX_TRACKED_PREFIXES`], a
/// prefix newly announced (not in `before`, the routes of the file BIRD
/// had accepted) gets no series and is counted instead; the first such is
/// logged.
fn track(tracked: &mut Tracked, before: &[IpAddr], announced: &[IpAddr]) {
    let mut untracked: u64 = 0;
    for a in announced {
        if tracked.series.contains(a) {
            continue;
        }
        if tracked.series.len() < MAX_TRACKED_PREFIXES {
            tracked.series.insert(*a);
        } else if before.binary_search(a).is_err() {
            untracked += 1;
            if !tracked.warned {
                tracked.warned = true;
                tracing::warn!(
                    "BGP: {MAX_TRACKED_PREFIXES} prefixes have an {BGP_ANNOUNCED} series, the \
                     most edge keeps: {} and later prefixes are announced without one (counted \
                     in {BGP_PREFIXES_UNTRACKED})",
                    render::prefix(a)
                );
            }
        }
    }
    if untracked > 0 {
        metrics::counter!(BGP_PREFIXES_UNTRACKED).increment(untracked);
    }
    for a in &tracked.series {
        let value = if announced.binary_search(a).is_ok() {
            1.0
        } else {
            0.0
        };
        metrics::gauge!(BGP_ANNOUNCED, "prefix" => render::prefix(a)).set(value);
    }
}

#[cfg(test)]
mod tests {
    use super::bird::fake::{RECONFIGURED, Script, start};
    use super::*;
    use crate::config::bgp::Neighbor;
    use std::net::Ipv4Addr;

    fn cfg(dir: &Path, socket: &Path) -> BgpConfig {
        BgpConfig {
            router_id: Ipv4Addr::new(10, 0, 0, 11),
            local_as: 65001,
            neighbors: vec![Neighbor {
                address: "10.0.0.1".parse().unwrap(),
                remote_as: 65000,
                source_address: None,
            }],
            communities: vec![],
            next_hop: None,
            hold_time: Duration::from_secs(9),
            connect_retry: Duration::from_secs(5),
            listener_addresses: vec!["10.77.9.2".parse().unwrap()],
            // A directory that does not exist yet: the announcer makes it.
            bird_config: dir.join("edge").join("bird.conf"),
            bird_socket: socket.to_path_buf(),
        }
    }

    /// A VIP source the test changes: what it holds is what is wanted.
    fn vip_source(initial: &[[u8; 4]]) -> (Arc<Mutex<Vec<IpAddr>>>, VipSource) {
        let vips = Arc::new(Mutex::new(
            initial.iter().map(|a| IpAddr::from(*a)).collect::<Vec<_>>(),
        ));
        let source: VipSource = {
            let vips = Arc::clone(&vips);
            Arc::new(move || vips.lock().clone())
        };
        (vips, source)
    }

    /// An announcer on a fake BIRD that takes every reconfiguration, once
    /// it announces VIP 10.77.9.1 and listener address 10.77.9.2 (`both`).
    struct Announcing {
        fake: super::bird::fake::Fake,
        dir: tempfile::TempDir,
        /// BIRD's configuration file.
        file: std::path::PathBuf,
        /// The VIPs the announcer is given.
        vips: Arc<Mutex<Vec<IpAddr>>>,
        a: Arc<Announcer>,
        both: Vec<IpAddr>,
    }

    async fn announcing() -> Announcing {
        let fake = start(Script::Answer(RECONFIGURED));
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path(), &fake.socket);
        let file = c.bird_config.clone();
        let (vips, source) = vip_source(&[[10, 77, 9, 1]]);
        let a = Announcer::start(c, &tokio::runtime::Handle::current(), source);
        let both: Vec<IpAddr> = vec![[10, 77, 9, 1].into(), [10, 77, 9, 2].into()];
        eventually(|| a.status().announced == both).await;
        Announcing {
            fake,
            dir,
            file,
            vips,
            a,
            both,
        }
    }

    /// Waits (up to 5 s) for `check` to hold.
    async fn eventually(mut check: impl FnMut() -> bool) {
        let until = Instant::now() + Duration::from_secs(5);
        while !check() {
            assert!(Instant::now() < until, "timed out");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn announces_follows_the_vips_and_withdraws_for_good() {
        let Announcing {
            fake,
            dir: _dir,
            file,
            vips,
            a,
            both,
        } = announcing().await;
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains("  route 10.77.9.1/32 blackhole;\n"), "{text}");
        assert!(text.contains("  route 10.77.9.2/32 blackhole;\n"), "{text}");
        let status = a.status();
        assert_eq!(status.reconfigurations, 1);
        assert_eq!(status.last_error, None);
        assert!(!status.host_drained);
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o644);
        }

        // Nothing changes: BIRD is not asked again.
        tokio::time::sleep(TICK * 3).await;
        assert_eq!(a.status().reconfigurations, 1);
        assert_eq!(fake.commands.lock().len(), 1);

        // The VIP loses its backends: only the listener address stays.
        vips.lock().clear();
        eventually(|| a.status().announced == both[1..]).await;
        assert_eq!(a.status().reconfigurations, 2);

        a.withdraw_all(Duration::from_secs(2)).await.unwrap();
        assert!(a.host_drained());
        let status = a.status();
        assert!(
            status.host_drained && status.announced.is_empty(),
            "{status:?}"
        );
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains("route "), "{text}");

        // Drained for good: VIPs coming back change nothing.
        vips.lock().push([10, 77, 9, 1].into());
        tokio::time::sleep(TICK * 3).await;
        assert!(a.status().announced.is_empty());
        // A second drain resolves at once.
        a.withdraw_all(Duration::from_millis(500)).await.unwrap();
    }

    #[tokio::test]
    async fn moving_birds_file_withdraws_through_the_old_one() {
        let (old_bird, new_bird) = (
            start(Script::Answer(RECONFIGURED)),
            start(Script::Answer(RECONFIGURED)),
        );
        let dir = tempfile::tempdir().unwrap();
        let old = cfg(dir.path(), &old_bird.socket);
        let old_file = old.bird_config.clone();
        let source: VipSource = Arc::new(|| vec![IpAddr::from([10, 77, 9, 1])]);
        let a = Announcer::start(old.clone(), &tokio::runtime::Handle::current(), source);
        eventually(|| a.status().announced.len() == 2).await;
        assert!(
            std::fs::read_to_string(&old_file)
                .unwrap()
                .contains("route ")
        );

        let mut moved = old.clone();
        moved.bird_config = dir.path().join("elsewhere").join("bird.conf");
        moved.bird_socket = new_bird.socket.clone();
        a.update(moved.clone());
        // The new file announces; the old one is emptied and its BIRD
        // told to read it.
        eventually(|| {
            std::fs::read_to_string(&moved.bird_config).is_ok_and(|t| t.contains("route "))
        })
        .await;
        eventually(|| old_bird.commands.lock().len() == 2).await;
        let text = std::fs::read_to_string(&old_file).unwrap();
        assert!(!text.contains("route "), "{text}");
        assert_eq!(new_bird.commands.lock().len(), 1);
    }

    #[tokio::test]
    async fn a_refusing_bird_is_retried_and_reported() {
        let fake = start(Script::Answer("8002 /x:3:5 syntax error\n"));
        let dir = tempfile::tempdir().unwrap();
        let a = Announcer::start(
            cfg(dir.path(), &fake.socket),
            &tokio::runtime::Handle::current(),
            Arc::new(Vec::<IpAddr>::new),
        );
        eventually(|| a.status().last_error.is_some()).await;
        let status = a.status();
        assert_eq!(status.reconfigurations, 0);
        assert!(status.announced.is_empty());
        assert!(
            status
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("/x:3:5 syntax error")),
            "{status:?}"
        );
        // Retried on later ticks (with backoff).
        eventually(|| fake.commands.lock().len() >= 3).await;
        match a.withdraw_all(Duration::from_millis(300)).await {
            Err(BgpError::Deadline { last_error, .. }) => {
                assert!(last_error.is_some_and(|e| e.contains("syntax error")));
            }
            other => panic!("expected a missed deadline, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_missing_bird_fails_the_drain_at_its_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("no-bird.ctl");
        let a = Announcer::start(
            cfg(dir.path(), &socket),
            &tokio::runtime::Handle::current(),
            Arc::new(Vec::<IpAddr>::new),
        );
        let e = a
            .withdraw_all(Duration::from_millis(500))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("is BIRD running"), "{e}");
        assert!(a.host_drained());
    }

    #[tokio::test]
    async fn dropping_the_announcer_stops_its_task() {
        let fake = start(Script::Answer(RECONFIGURED));
        let dir = tempfile::tempdir().unwrap();
        let a = Announcer::start(
            cfg(dir.path(), &fake.socket),
            &tokio::runtime::Handle::current(),
            Arc::new(Vec::<IpAddr>::new),
        );
        eventually(|| a.status().reconfigurations == 1).await;
        let shared = Arc::downgrade(&a.shared);
        drop(a);
        // The aborted task lets go of the shared state.
        eventually(|| shared.strong_count() == 0).await;
    }

    #[tokio::test]
    #[expect(
        clippy::await_holding_lock,
        reason = "the test holds the controller's lock across the drain on purpose: a reload \
                  that takes its time"
    )]
    async fn a_drain_does_not_wait_for_a_blocked_source_nor_ask_it_again() {
        let fake = start(Script::Answer(RECONFIGURED));
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path(), &fake.socket);
        let file = c.bird_config.clone();
        // The controller's lock, held by a reload that takes its time.
        let controller = Arc::new(Mutex::new(()));
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let source: VipSource = {
            let (controller, calls) = (Arc::clone(&controller), Arc::clone(&calls));
            Arc::new(move || {
                calls.fetch_add(1, Ordering::SeqCst);
                let _held = controller.lock();
                vec![IpAddr::from([10, 77, 9, 1])]
            })
        };
        let reload = controller.lock();
        let a = Announcer::start(c, &tokio::runtime::Handle::current(), source);
        eventually(|| calls.load(Ordering::SeqCst) == 1).await;

        // The first pass waits on the source; the drain goes ahead.
        tokio::time::timeout(
            Duration::from_secs(2),
            a.withdraw_all(Duration::from_secs(2)),
        )
        .await
        .expect("the drain waited for the source")
        .unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains("route "), "{text}");
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // The reload ends: the abandoned answer changes nothing, and the
        // drained host never asks again.
        drop(reload);
        tokio::time::sleep(TICK * 3).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let status = a.status();
        assert!(
            status.host_drained && status.announced.is_empty(),
            "{status:?}"
        );
        assert_eq!(fake.commands.lock().len(), 1);
    }

    #[tokio::test]
    async fn a_failing_source_keeps_the_last_set() {
        let fake = start(Script::Answer(RECONFIGURED));
        let dir = tempfile::tempdir().unwrap();
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let source: VipSource = {
            let calls = Arc::clone(&calls);
            Arc::new(move || {
                if calls.fetch_add(1, Ordering::SeqCst) > 0 {
                    panic!("the controller is gone (a test)");
                }
                vec![IpAddr::from([10, 77, 9, 1])]
            })
        };
        let a = Announcer::start(
            cfg(dir.path(), &fake.socket),
            &tokio::runtime::Handle::current(),
            source,
        );
        let both: Vec<IpAddr> = vec![[10, 77, 9, 1].into(), [10, 77, 9, 2].into()];
        eventually(|| a.status().announced == both).await;
        eventually(|| calls.load(Ordering::SeqCst) >= 3).await;
        let status = a.status();
        assert_eq!(status.announced, both);
        assert_eq!(status.reconfigurations, 1);
    }

    #[tokio::test]
    async fn freeze_stops_for_good_without_withdrawing() {
        let Announcing {
            fake,
            dir,
            file,
            vips,
            a,
            both,
        } = announcing().await;
        let before = std::fs::read_to_string(&file).unwrap();

        a.freeze();
        a.freeze();
        let status = a.status();
        assert!(status.frozen && !status.host_drained, "{status:?}");
        assert_eq!(status.announced, both);

        // Nothing follows the VIPs any more, and nothing is withdrawn.
        vips.lock().clear();
        a.update(cfg(dir.path(), &fake.socket));
        tokio::time::sleep(TICK * 3).await;
        assert_eq!(std::fs::read_to_string(&file).unwrap(), before);
        assert_eq!(fake.commands.lock().len(), 1);

        let drained = tokio::time::timeout(
            Duration::from_millis(500),
            a.withdraw_all(Duration::from_secs(10)),
        )
        .await
        .expect("withdraw_all after freeze waited");
        assert!(matches!(drained, Err(BgpError::Stopped)), "{drained:?}");
        assert!(!a.host_drained());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), before);
    }

    #[tokio::test]
    async fn freeze_ends_a_drain_under_way() {
        let fake = start(Script::Answer("8002 /x:3:5 syntax error\n"));
        let dir = tempfile::tempdir().unwrap();
        let a = Announcer::start(
            cfg(dir.path(), &fake.socket),
            &tokio::runtime::Handle::current(),
            Arc::new(Vec::<IpAddr>::new),
        );
        let waiting = {
            let a = Arc::clone(&a);
            tokio::spawn(async move { a.withdraw_all(Duration::from_secs(10)).await })
        };
        eventually(|| a.host_drained()).await;
        a.freeze();
        let drained = tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("the drain under way waited on")
            .unwrap();
        assert!(matches!(drained, Err(BgpError::Stopped)), "{drained:?}");
    }

    #[tokio::test]
    async fn withdraw_once_writes_no_route_and_configures_once() {
        let fake = start(Script::Answer(RECONFIGURED));
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path(), &fake.socket);
        write_atomically(&c.bird_config, "  route 10.77.9.1/32 blackhole;\n").unwrap();
        withdraw_once(&c).await.unwrap();
        let text = std::fs::read_to_string(&c.bird_config).unwrap();
        assert_eq!(text, render::render(&c, &[]));
        assert!(!text.contains("route "), "{text}");
        assert_eq!(*fake.commands.lock(), ["configure"]);
    }

    #[tokio::test]
    async fn withdraw_once_reports_a_bird_that_did_not_apply_it() {
        let fake = start(Script::Answer(
            "0005 Reconfiguration already in progress, queueing new config\n",
        ));
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path(), &fake.socket);
        let e = withdraw_once(&c).await.unwrap_err();
        assert!(
            matches!(
                e,
                BgpError::Bird(bird::BirdError::NotApplied { code: 5, .. })
            ),
            "{e:?}"
        );
        // The file is written all the same: BIRD reads it next time.
        let text = std::fs::read_to_string(&c.bird_config).unwrap();
        assert!(!text.contains("route "), "{text}");
    }

    #[tokio::test]
    async fn withdraw_once_without_bird_still_writes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path(), &dir.path().join("no-bird.ctl"));
        let e = withdraw_once(&c).await.unwrap_err();
        assert!(e.to_string().contains("is BIRD running"), "{e}");
        assert_eq!(
            std::fs::read_to_string(&c.bird_config).unwrap(),
            render::render(&c, &[])
        );
    }

    #[test]
    fn tracking_is_bounded_and_warned_about_once() {
        let addr = |i: usize| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i as u32));
        let mut all: Vec<IpAddr> = (0..MAX_TRACKED_PREFIXES + 2).map(addr).collect();
        all.sort_unstable();
        let mut t = Tracked::default();
        track(&mut t, &[], &all[..MAX_TRACKED_PREFIXES]);
        assert_eq!(t.series.len(), MAX_TRACKED_PREFIXES);
        assert!(!t.warned);
        track(&mut t, &all[..MAX_TRACKED_PREFIXES], &all);
        assert_eq!(t.series.len(), MAX_TRACKED_PREFIXES);
        assert!(t.warned);
        assert!(!t.series.contains(&all[MAX_TRACKED_PREFIXES]));
    }

    #[test]
    fn the_file_is_replaced_whole_and_its_directory_made() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a").join("b").join("bird.conf");
        write_atomically(&file, "one\n").unwrap();
        write_atomically(&file, "two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "two\n");
        let names: Vec<_> = std::fs::read_dir(file.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("bird.conf")]);
    }
}
