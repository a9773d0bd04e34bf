//! A long-running helper program (edge's decapsulator, HAProxy, ...) as a
//! child process inside a namespace, stopped by its PID when dropped.

use crate::wait;
use anyhow::{Context, Result, bail};
use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

/// How long a stopped child gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A running child process, its output in a log file.
pub struct Process {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    /// Runs `program args...` inside namespace `ns` (or here), writing its
    /// stdout and stderr to `log`. `name` is for messages.
    pub fn spawn<S: AsRef<OsStr>>(
        name: &str,
        ns: Option<&str>,
        program: &Path,
        args: &[S],
        log: &Path,
    ) -> Result<Self> {
        let out = std::fs::File::create(log)
            .with_context(|| format!("creating log file {}", log.display()))?;
        let mut cmd = match ns {
            // `ip netns exec` execs the program, so the child's PID is its.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(program);
                c
            }
            None => Command::new(program),
        };
        let child = cmd
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {name} ({})", program.display()))?;
        Ok(Self {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
        })
    }

    /// The child's PID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What the child has written so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails, with the log, if the child has already exited.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(child) = self.child.as_mut()
            && let Some(status) = child.try_wait()?
        {
            bail!(
                "{} exited with {status}; its log:\n{}",
                self.name,
                self.log_text()
            );
        }
        Ok(())
    }

    /// Sends SIGTERM and waits for the child to exit (SIGKILL after a
    /// grace period); returns its exit code (`None`: killed by a signal).
    pub fn stop(&mut self) -> Result<Option<i32>> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        // SAFETY: kill(2) on the PID of a child we spawned and have not
        // reaped, so the PID cannot have been reused.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let exited = wait::until(&format!("{} to exit", self.name), STOP_GRACE, || {
            Ok(child.try_wait()?)
        });
        match exited {
            Ok(status) => Ok(status.code()),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("stopping {}: {e:#}", self.name);
        }
    }
}

/// A process this test caused but did not start itself (the new daemon
/// that `edge upgrade` starts): stopped by its PID when dropped, SIGTERM
/// then SIGKILL.
pub struct Adopted(pub u32);

impl Adopted {
    /// Whether it still runs.
    pub fn running(&self) -> bool {
        Path::new(&format!("/proc/{}", self.0)).exists()
    }
}

impl Drop for Adopted {
    fn drop(&mut self) {
        let pid = self.0 as libc::pid_t;
        // SAFETY: kill(2) on the PID `edge upgrade` reported for the process
        // it started for this test.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let gone = wait::until("the adopted process to exit", STOP_GRACE, || {
            Ok((!self.running()).then_some(()))
        });
        if gone.is_err() {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// The PID of the new process in `edge upgrade`'s (or `edge reload`'s)
/// output: said as soon as it starts, so also when the upgrade fails.
pub fn upgraded_pid(said: &str) -> Option<u32> {
    said.split("started the new edge, pid ")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Program `name`: in a directory of `$PATH`, or in the `sbin`
/// directories where Debian puts daemons (nginx, haproxy), which a
/// non-root `$PATH` may lack.
pub fn program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|d| d.join(name))
        .find(|f| f.is_file())
}
