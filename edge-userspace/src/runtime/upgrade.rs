//! `edge upgrade`: a new process takes over from the running daemon without
//! refusing a connection (Pingora's listening-socket hand-over).
//!
//! 1. The running daemon must answer on its control socket.
//! 2. `edge run --config F --upgrade` starts in its own process group. It
//!    loads and checks everything (configuration, XDP adopted in place)
//!    and then waits on the upgrade socket for the listening sockets.
//! 3. Once that socket is there, the old daemon is asked to hand over: it
//!    gives up its control socket, sends its listening sockets, accepts
//!    beside the new process for a few seconds, stops accepting and drains
//!    what it has in flight (keep-alive connections are closed after their
//!    current request), then exits.
//! 4. The upgrade is done when the new process answers on the control
//!    socket.
//!
//! The new process is not a child that `edge upgrade` waits for: it goes
//! on when this command ends (under a service manager, let it follow the
//! main PID: `edge upgrade` prints it).

use super::control::{self, Answer};
use anyhow::{Context, Result, bail};
use std::{
    os::unix::{fs::FileTypeExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// Longest wait for the new process to be ready for the sockets (it loads
/// the XDP object and resolves L4 next hops first).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for the new process to answer once it has the sockets.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the waits look.
const POLL: Duration = Duration::from_millis(50);

/// What an upgrade did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upgraded {
    /// The PID of the daemon that handed over (it drains, then exits).
    pub old: u32,
    /// The PID of the daemon now running.
    pub new: u32,
}

/// Replaces the daemon that runs `config` by a new process of `binary`
/// (this one, by default) on the same file.
///
/// The new process writes its log to `log` (appended), or else to this
/// command's standard output and error, which it keeps: under a service
/// manager that is the service's log; a caller that reads this command's
/// output to its end (`$(edge upgrade ...)`) must give `log`.
pub fn upgrade(config: &Path, binary: Option<PathBuf>, log: Option<&Path>) -> Result<Upgraded> {
    let socket = control::socket_for(config)?;
    let old = match control::request(&socket, "ping")? {
        Answer::Ok(pid, _) => u32::try_from(pid).context("a malformed PID")?,
        Answer::Upgrade(_) => bail!("a malformed answer to ping"),
    };
    control::socket_dir()?;
    let waiting = control::upgrade_socket_for(config)?;
    // A socket left by an upgrade that failed half-way; a file that is not
    // a socket is not ours to remove.
    if let Ok(meta) = std::fs::symlink_metadata(&waiting) {
        if !meta.file_type().is_socket() {
            bail!(
                "{} exists and is not a socket: remove it",
                waiting.display()
            );
        }
        std::fs::remove_file(&waiting)
            .with_context(|| format!("removing {}", waiting.display()))?;
    }
    let binary = match binary {
        Some(b) => b,
        None => std::env::current_exe().context("finding this edge binary")?,
    };
    let mut command = Command::new(&binary);
    if let Some(log) = log {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        command.stdout(file.try_clone()?).stderr(file);
    }
    let mut child = command
        .arg("run")
        .arg("--config")
        .arg(config)
        .arg("--upgrade")
        .stdin(Stdio::null())
        // Its own process group: a Ctrl-C meant for this command does not
        // reach the daemon it starts.
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let new = child.id();
    // Said at once, so whoever runs this knows the new process even if the
    // upgrade fails from here on.
    started(new);
    wait_for(
        &mut child,
        READY_TIMEOUT,
        "be ready for the sockets",
        true,
        || std::fs::symlink_metadata(&waiting).is_ok_and(|m| m.file_type().is_socket()),
    )?;
    if let Err(e) = control::request(&socket, "upgrade") {
        // Refused, or no clear answer: if the old daemon still answers on
        // its control socket it has not begun the hand-over and serves on,
        // and the new one is stopped; otherwise the new one may hold the
        // sockets already, and is left to take over.
        let old_serves = matches!(control::request(&socket, "ping"), Ok(Answer::Ok(pid, _)) if pid == u64::from(old));
        if old_serves {
            stop(&mut child);
            return Err(e.context("the running edge refused to hand over; it serves on"));
        }
        tracing::warn!("no clear answer from the running edge ({e:#}); waiting for the new one");
    }
    // From here the new process may hold the sockets: never stopped.
    wait_for(
        &mut child,
        TAKEOVER_TIMEOUT,
        "take over",
        false,
        || matches!(control::request(&socket, "ping"), Ok(Answer::Ok(pid, _)) if pid == u64::from(new)),
    )?;
    Ok(Upgraded { old, new })
}

/// Waits until `ready` holds, failing when `child` exits first or
/// `timeout` passes (then stopping it if `stop_late`).
fn wait_for(
    child: &mut Child,
    timeout: Duration,
    what: &str,
    stop_late: bool,
    mut ready: impl FnMut() -> bool,
) -> Result<()> {
    let started = Instant::now();
    loop {
        if ready() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("the new edge exited ({status}) before it could {what}: see its log");
        }
        if started.elapsed() > timeout {
            if stop_late {
                stop(child);
                bail!("the new edge did not {what} within {timeout:?}: stopped it; see its log");
            }
            bail!(
                "the new edge (PID {}) did not {what} within {timeout:?}: see its log",
                child.id()
            );
        }
        std::thread::sleep(POLL);
    }
}

/// Says that the new process `pid` started (on standard output).
fn started(pid: u32) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stdout(),
        "edge upgrade: started the new edge, pid {pid}"
    );
}

/// Stops a new process that will not take over.
fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}
