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

pub mod bird;
pub mod render;

use crate::config::BgpConfig;
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

/// The L4 VIP addresses that have at least one usable backend now.
pub type VipSource = Arc<dyn Fn() -> Vec<IpAddr> + Send + Sync>;

/// How often the wanted set is computed and compared.
pub const TICK: Duration = Duration::from_millis(200);
/// Longest wait between two attempts while BIRD keeps failing.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Most prefixes given an `edge_bgp_announced` series (they come from the
/// configuration, and reloads can only add to them).
pub const MAX_TRACKED_PREFIXES: usize = 1024;

/// Gauge: 1 while a prefix is announced, 0 after it was withdrawn.
const ANNOUNCED: &str = "edge_bgp_announced";
/// Counter: `configure` exchanges with BIRD, by result.
const CONFIGURE: &str = "edge_bgp_configure_total";
/// Gauge: 1 once the host is drained.
const HOST_DRAINED: &str = "edge_bgp_host_drained";

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
    /// The announcing task is gone.
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
    /// The last attempt's error, if it failed.
    pub last_error: Option<String>,
    /// How many times BIRD accepted a new file.
    pub reconfigurations: u64,
}

/// State shared by the [`Announcer`] and its task.
struct Shared {
    cfg: Mutex<BgpConfig>,
    drained: AtomicBool,
    /// Wakes the task before its next tick (a reload, a drain).
    wake: Notify,
    status: Mutex<BgpStatus>,
    /// True once BIRD has accepted a file written for the drained host.
    drained_accepted: watch::Sender<bool>,
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
        metrics::gauge!(HOST_DRAINED).set(0.0);
        for result in ["ok", "error"] {
            metrics::counter!(CONFIGURE, "result" => result).absolute(0);
        }
        let shared = Arc::new(Shared {
            cfg: Mutex::new(cfg),
            drained: AtomicBool::new(false),
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
    /// once).
    pub fn update(&self, cfg: BgpConfig) {
        *self.shared.cfg.lock() = cfg;
        self.shared.wake.notify_one();
    }

    /// Withdraws every route (the host is drained from now on, for good)
    /// and resolves once BIRD has accepted the file without routes, or
    /// fails at `deadline`.
    pub async fn withdraw_all(&self, deadline: Duration) -> Result<(), BgpError> {
        if !self.shared.drained.swap(true, Ordering::SeqCst) {
            tracing::info!("BGP: host drained, withdrawing every route");
            metrics::gauge!(HOST_DRAINED).set(1.0);
        }
        let mut accepted = self.shared.drained_accepted.subscribe();
        let drained_known = *accepted.borrow();
        if self.task.is_finished() && !drained_known {
            return Err(BgpError::Stopped);
        }
        self.shared.wake.notify_one();
        // The reference `wait_for` returns is dropped at once: it holds a
        // lock and is not `Send`.
        let waited = tokio::time::timeout(deadline, accepted.wait_for(|drained| *drained))
            .await
            .map(|r| r.is_ok());
        match waited {
            Ok(true) => Ok(()),
            Ok(false) => Err(BgpError::Stopped),
            Err(_) => Err(BgpError::Deadline {
                waited: deadline,
                last_error: self.shared.status.lock().last_error.clone(),
            }),
        }
    }

    /// Whether the host was drained (withdraw_all called).
    pub fn host_drained(&self) -> bool {
        self.shared.drained.load(Ordering::SeqCst)
    }

    /// What is announced now (the routes of the last file BIRD accepted),
    /// whether the host is drained, the last error if the last attempt
    /// failed, and how many times BIRD accepted a new file.
    pub fn status(&self) -> BgpStatus {
        let mut status = self.shared.status.lock().clone();
        status.host_drained = self.host_drained();
        status
    }
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
    /// Prefixes with an `edge_bgp_announced` series.
    tracked: BTreeSet<IpAddr>,
}

async fn run(shared: Arc<Shared>, vips: VipSource) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut progress = Progress::default();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shared.wake.notified() => {}
        }
        pass(&shared, &vips, &mut progress).await;
    }
}

/// One look at the wanted set; BIRD is reconfigured if it changed (or the
/// last attempt failed and its backoff is over).
async fn pass(shared: &Shared, vips: &VipSource, p: &mut Progress) {
    let cfg = shared.cfg.lock().clone();
    // Read once, before anything: the file written is for this value.
    let drained = shared.drained.load(Ordering::SeqCst);
    let wanted: Vec<IpAddr> = if drained {
        Vec::new()
    } else {
        let mut w = (**vips)();
        w.extend(cfg.listener_addresses.iter().copied());
        w
    };
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
    match apply(&cfg, &text).await {
        Ok(reply) => {
            metrics::counter!(CONFIGURE, "result" => "ok").increment(1);
            if p.logged_error.take().is_some() {
                tracing::info!("BGP: BIRD accepted the configuration again ({reply})");
            }
            log_changes(&p.announced, &routes);
            track(&mut p.tracked, &routes);
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
            metrics::counter!(CONFIGURE, "result" => "error").increment(1);
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
async fn apply(cfg: &BgpConfig, text: &str) -> Result<String, BgpError> {
    let path = cfg.bird_config.clone();
    let (file, body) = (path.clone(), text.to_string());
    tokio::task::spawn_blocking(move || write_atomically(&file, &body))
        .await
        .unwrap_or_else(|e| Err(io::Error::other(format!("the writing task failed: {e}"))))
        .map_err(|source| BgpError::Write { path, source })?;
    Ok(bird::configure(&cfg.bird_socket).await?)
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
/// prefix announced before and not now.
fn track(tracked: &mut BTreeSet<IpAddr>, announced: &[IpAddr]) {
    for a in announced {
        if !tracked.contains(a) && tracked.len() < MAX_TRACKED_PREFIXES {
            tracked.insert(*a);
        }
    }
    for a in tracked.iter() {
        let on = announced.binary_search(a).is_ok();
        metrics::gauge!(ANNOUNCED, "prefix" => render::prefix(a)).set(if on { 1.0 } else { 0.0 });
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
        let fake = start(Script::Answer(RECONFIGURED));
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path(), &fake.socket);
        let file = c.bird_config.clone();
        let vips = Arc::new(Mutex::new(vec![IpAddr::from([10, 77, 9, 1])]));
        let source: VipSource = {
            let vips = Arc::clone(&vips);
            Arc::new(move || vips.lock().clone())
        };
        let a = Announcer::start(c, &tokio::runtime::Handle::current(), source);

        let both: Vec<IpAddr> = vec![[10, 77, 9, 1].into(), [10, 77, 9, 2].into()];
        eventually(|| a.status().announced == both).await;
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
