//! The control socket: how `edge reload` reaches the running daemon.
//!
//! A Unix socket, mode 0600 in a 0700 directory, so only the daemon's
//! user (root) can reload. Its path is derived from the configuration
//! file's canonical path ([`socket_for`]), so `edge reload --config F`
//! finds the daemon that runs F without further settings, and two daemons
//! on two files never share one.
//!
//! The exchange is one line each way and then text: the client sends
//! `ping`, `reload` or `upgrade`; the daemon answers `ok N` (its PID, or
//! the new generation followed by any warnings), `upgrade` (the reload
//! needs a graceful upgrade, followed by why) or `error` (followed by every
//! error), and closes.

use super::Reloader;
use anyhow::{Context, Result, bail};
use std::{
    io::{Read, Write},
    os::unix::{
        fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt},
        net::UnixStream as StdUnixStream,
    },
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::UnixListener,
    sync::Notify,
};

/// Where control sockets live.
pub const SOCKET_DIR: &str = "/run/edge";

/// Longest request line the daemon reads.
const MAX_REQUEST: u64 = 64;
/// Longest a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest `edge reload` waits for the daemon's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest answer `edge reload` reads.
const MAX_ANSWER: u64 = 1 << 20;

/// The control socket of the daemon that runs configuration `config`.
///
/// The path is made absolute but symbolic links are not resolved: a file
/// deployed by switching a link (a Kubernetes ConfigMap, a release
/// directory) keeps naming the same daemon.
pub fn socket_for(config: &Path) -> Result<PathBuf> {
    Ok(Path::new(SOCKET_DIR).join(format!("{}.sock", instance(config)?)))
}

/// The socket a new process of the daemon that runs `config` waits on for
/// the listening sockets during a graceful upgrade (Pingora's).
pub fn upgrade_socket_for(config: &Path) -> Result<PathBuf> {
    Ok(Path::new(SOCKET_DIR).join(format!("{}.upgrade", instance(config)?)))
}

/// The lock of the daemon that runs a configuration: held while this lives.
pub struct Lock {
    file: std::fs::File,
    path: PathBuf,
}

impl Lock {
    /// Releases the lock and removes its file (a stopping daemon's last
    /// step). Another edge that opened the file before cannot have taken
    /// it: it tries once and gives up.
    pub fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
        drop(self.file);
    }
}

/// Takes the lock of the daemon that runs `config` (a `flock` on
/// `/run/edge/<instance>.lock`): two edges on one configuration would
/// write the same pinned maps. The kernel releases it when the process
/// ends, however it ends.
pub fn lock(config: &Path) -> Result<Lock> {
    use std::os::fd::AsRawFd;
    let dir = socket_dir()?;
    let path = dir.join(format!("{}.lock", instance(config)?));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::WouldBlock {
            bail!(
                "another edge runs {} ({} is locked): stop it, or use `edge upgrade`",
                config.display(),
                path.display()
            );
        }
        return Err(e).with_context(|| format!("locking {}", path.display()));
    }
    Ok(Lock { file, path })
}

/// Makes [`SOCKET_DIR`]: a real directory, owned by this process's user,
/// mode 0700. Whoever owns it could replace a socket and answer `edge
/// reload` in edge's name, or take the listening sockets of an upgrade.
pub fn socket_dir() -> Result<&'static Path> {
    let dir = Path::new(SOCKET_DIR);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let meta =
        std::fs::symlink_metadata(dir).with_context(|| format!("inspecting {}", dir.display()))?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if !meta.is_dir() || meta.uid() != me {
        bail!(
            "{} must be a directory owned by uid {me}, not a link or another user's",
            dir.display()
        );
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting {}", dir.display()))?;
    Ok(dir)
}

/// The name of the daemon that runs configuration `config` among others on
/// this host (`edge-` and a hash of the file's absolute path): it names
/// its control socket and its pinned maps.
pub fn instance(config: &Path) -> Result<String> {
    let absolute = std::path::absolute(config)
        .with_context(|| format!("{}: cannot make the path absolute", config.display()))?;
    // FNV-1a: stable across builds and processes, unlike std's hasher.
    let hash = absolute
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        });
    Ok(format!("edge-{hash:016x}"))
}

/// Binds the control socket at `path`. A socket file left by a daemon that
/// is gone is replaced; one that a running daemon answers on is an error
/// (two daemons on one configuration file).
pub fn bind(path: &Path) -> Result<UnixListener> {
    socket_dir()?;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            bail!("{} exists and is not a socket: remove it", path.display());
        }
        match StdUnixStream::connect(path) {
            Ok(_) => bail!(
                "control socket {} is in use: is another edge running this configuration?",
                path.display()
            ),
            // Nobody listens: left by a daemon that is gone.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path)
                    .with_context(|| format!("removing the stale socket {}", path.display()))?;
            }
            Err(e) => bail!("control socket {}: {e}", path.display()),
        }
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    Ok(listener)
}

/// What the control socket needs to hand the daemon over to a new process.
pub struct Handover {
    /// The socket a new process (`edge run --upgrade`) waits on for the
    /// listening sockets.
    pub upgrade_socket: PathBuf,
    /// This daemon's control socket.
    pub control_socket: PathBuf,
    /// Asks the server for the graceful upgrade.
    pub start: Arc<Notify>,
    /// Whether this daemon owns the control socket's path (it bound it and
    /// has not handed it over): its exit then removes it.
    owned: AtomicBool,
    stop: Notify,
    on_begin: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
    /// The daemon's lock ([`lock`]), released when the hand-over begins.
    lock: std::sync::Mutex<Option<Lock>>,
}

impl Handover {
    /// A hand-over through `upgrade_socket`, started by `start`.
    pub fn new(upgrade_socket: PathBuf, control_socket: PathBuf, start: Arc<Notify>) -> Self {
        Self {
            upgrade_socket,
            control_socket,
            start,
            owned: AtomicBool::new(false),
            stop: Notify::new(),
            on_begin: std::sync::Mutex::new(None),
            lock: std::sync::Mutex::new(None),
        }
    }

    /// Holds the daemon's lock until the hand-over begins.
    pub fn hold_lock(&self, lock: Lock) {
        if let Ok(mut slot) = self.lock.lock() {
            *slot = Some(lock);
        }
    }

    /// Runs `f` when a hand-over begins (the L4 controller stops writing).
    pub fn on_begin(&self, f: Box<dyn FnOnce() + Send>) {
        if let Ok(mut slot) = self.on_begin.lock() {
            *slot = Some(f);
        }
    }

    /// Records that this daemon bound the control socket.
    pub fn own_socket(&self) {
        self.owned.store(true, Ordering::SeqCst);
    }

    /// Removes the control socket at exit, unless it was handed over.
    pub fn release_socket(&self) {
        if self.owned.swap(false, Ordering::SeqCst) {
            let _ = std::fs::remove_file(&self.control_socket);
        }
    }

    /// Removes the lock at exit, unless it was handed over (the file is
    /// then the new process's).
    pub fn release_lock(&self) {
        if let Some(lock) = self.lock.lock().ok().and_then(|mut l| l.take()) {
            lock.remove();
        }
    }

    /// Starts the upgrade if a new process waits for the sockets: the
    /// control socket goes first (its path is the new process's from now).
    fn begin(&self) -> Result<()> {
        let waiting = std::fs::symlink_metadata(&self.upgrade_socket)
            .is_ok_and(|m| m.file_type().is_socket());
        if !waiting {
            bail!(
                "no new edge waits at {}: start one with `edge upgrade`",
                self.upgrade_socket.display()
            );
        }
        if let Some(f) = self.on_begin.lock().ok().and_then(|mut f| f.take()) {
            f();
        }
        self.release_socket();
        // The new process takes the lock once it has the sockets.
        if let Ok(mut lock) = self.lock.lock() {
            lock.take();
        }
        self.stop.notify_one();
        self.start.notify_one();
        Ok(())
    }
}

/// Serves requests on `listener` until the daemon is handed over.
pub async fn serve(listener: UnixListener, reloader: Arc<Reloader>, handover: Arc<Handover>) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("control socket: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = handover.stop.notified() => return,
        };
        let (reloader, handover) = (Arc::clone(&reloader), Arc::clone(&handover));
        tokio::spawn(async move {
            if let Err(e) = answer(stream, reloader, handover).await {
                tracing::warn!("control socket: {e:#}");
            }
        });
    }
}

async fn answer(
    mut stream: tokio::net::UnixStream,
    reloader: Arc<Reloader>,
    handover: Arc<Handover>,
) -> Result<()> {
    let mut line = String::new();
    let (read, mut write) = stream.split();
    let mut reader = BufReader::new(read.take(MAX_REQUEST));
    tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line))
        .await
        .context("no request in time")??;
    let pid = std::process::id();
    let reply = match line.trim() {
        "ping" => format!("ok {pid}\n"),
        "reload" => {
            let r = Arc::clone(&reloader);
            match tokio::task::spawn_blocking(move || r.reload("edge reload")).await {
                Ok(Ok(applied)) => {
                    format!("ok {}\n{}", applied.generation, applied.warning_lines())
                }
                Ok(Err(e @ super::ReloadError::NeedsUpgrade(_))) => format!("upgrade\n{e}\n"),
                Ok(Err(e)) => format!("error\n{e}\n"),
                Err(e) => format!("error\nthe reload task failed: {e}\n"),
            }
        }
        "upgrade" => match handover.begin() {
            Ok(()) => {
                tracing::info!("edge upgrade: handing over to the new process");
                format!("ok {pid}\n")
            }
            Err(e) => format!("error\n{e:#}\n"),
        },
        other => format!(
            "error\nunknown request {other:?}: expected \"ping\", \"reload\" or \"upgrade\"\n"
        ),
    };
    write.write_all(reply.as_bytes()).await?;
    write.shutdown().await?;
    Ok(())
}

/// What the daemon answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Done: a number (the generation, or the daemon's PID) and text.
    Ok(u64, String),
    /// The reload needs a graceful upgrade; the text says why.
    Upgrade(String),
}

/// Sends `request` to the daemon at `socket` and reads its answer; `Err`
/// carries a refusal with every reason.
pub fn request(socket: &Path, request: &str) -> Result<Answer> {
    let mut stream = StdUnixStream::connect(socket).with_context(|| {
        format!(
            "cannot reach edge at {} (is it running with this configuration?)",
            socket.display()
        )
    })?;
    let at = || format!("control socket {}", socket.display());
    stream
        .set_read_timeout(Some(ANSWER_TIMEOUT))
        .with_context(at)?;
    stream
        .write_all(format!("{request}\n").as_bytes())
        .with_context(at)?;
    let mut bytes = Vec::new();
    stream
        .take(MAX_ANSWER)
        .read_to_end(&mut bytes)
        .with_context(|| {
            format!(
                "{}: no complete answer within {ANSWER_TIMEOUT:?}; whether the {request} was \
                 done is unknown: see edge's log",
                at()
            )
        })?;
    let answer = String::from_utf8_lossy(&bytes);
    let (first, rest) = answer.split_once('\n').unwrap_or((&answer, ""));
    match (first.strip_prefix("ok "), first) {
        (Some(n), _) => Ok(Answer::Ok(
            n.trim()
                .parse()
                .with_context(|| format!("{}: a malformed answer {first:?}", at()))?,
            rest.to_string(),
        )),
        (None, "upgrade") => Ok(Answer::Upgrade(rest.trim_end().to_string())),
        (None, "error") => bail!(
            "{request} refused; the running configuration stays:\n{}",
            rest.trim_end()
        ),
        (None, _) => bail!(
            "{}: edge closed the connection without an answer (stopping?); whether the \
             {request} was done is unknown: see edge's log",
            at()
        ),
    }
}
