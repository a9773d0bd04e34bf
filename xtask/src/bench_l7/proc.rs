//! Benchmark processes (origin, proxies, wrk) as children that are stopped
//! by their PID when dropped, whatever way the benchmark ends.

use anyhow::{Context, Result, bail};
use std::{
    ffi::OsStr,
    fs::File,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::Duration,
};

/// How long a child gets to exit after its stop signal before the whole
/// process group it leads is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The niceness every benchmark process runs at (when xtask is root), the
/// same for all, so that other work on a shared machine disturbs the
/// measurements less.
pub const NICENESS: libc::c_int = -10;
/// [`NICENESS`] as written to `/proc/self/autogroup`.
const NICENESS_TEXT: &[u8] = b"-10";

/// A child process and its log.
pub struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    stop_signal: libc::c_int,
}

impl Proc {
    /// Starts `program args` pinned to `cpus` (a taskset list; `None`: not
    /// pinned), stdout and stderr into `log`. On drop it gets
    /// `stop_signal`, then SIGKILL for its process group.
    pub fn spawn(
        name: &str,
        cpus: Option<&str>,
        program: &Path,
        args: &[&str],
        log: &Path,
        stop_signal: libc::c_int,
    ) -> Result<Self> {
        Self::spawn_with_env(name, cpus, program, args, &[], log, stop_signal)
    }

    /// [`Proc::spawn`] with `env` (name, value) added to the child's
    /// environment.
    pub fn spawn_with_env(
        name: &str,
        cpus: Option<&str>,
        program: &Path,
        args: &[&str],
        env: &[(&str, &OsStr)],
        log: &Path,
        stop_signal: libc::c_int,
    ) -> Result<Self> {
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        // taskset execs the program, so the child's PID is the program's.
        let mut cmd = match cpus {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.args(["-c", cpus]).arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        // SAFETY: setsid, prctl, open, write, close and setpriority are
        // async-signal-safe and touch only this (forked) process.
        unsafe {
            cmd.pre_exec(move || {
                // Its own session (so process group, pgid == pid): a
                // terminal's Ctrl-C reaches only xtask, which then stops
                // the children in order, and a multi-process server (nginx)
                // can be killed whole.
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // PDEATHSIG survives execve: should xtask be killed
                // outright, the kernel still sends the child its stop
                // signal (not SIGKILL: a killed nginx master would leave
                // its workers behind).
                if libc::prctl(libc::PR_SET_PDEATHSIG, stop_signal) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // Best effort (needs root). With autogroup scheduling a new
                // session gets its own group, and a process's niceness only
                // counts inside its group: the group's niceness is what
                // weighs against other sessions' work.
                let fd = libc::open(c"/proc/self/autogroup".as_ptr(), libc::O_WRONLY);
                if fd >= 0 {
                    libc::write(fd, NICENESS_TEXT.as_ptr().cast(), NICENESS_TEXT.len());
                    libc::close(fd);
                }
                libc::setpriority(libc::PRIO_PROCESS, 0, NICENESS);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name} ({})", program.display()))?;
        Ok(Self {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
            stop_signal,
        })
    }

    /// The child's exit status if it has exited.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(c) => Ok(c.try_wait()?),
            None => bail!("{} was already stopped", self.name),
        }
    }

    /// Fails, with the end of its log, if the child has exited.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.try_wait()? {
            bail!(
                "{} exited with {status}; its log ends:\n{}",
                self.name,
                self.log_tail()
            );
        }
        Ok(())
    }

    /// CPU time (user + system) used so far by the child's process group:
    /// the process and every worker it forked, all their threads.
    pub fn cpu_time(&self) -> Result<Duration> {
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if ticks <= 0 {
            bail!("no clock tick rate");
        }
        let mut total: u64 = 0;
        for (pid, fields) in self.group()? {
            // utime and stime: the 12th and 13th fields after the name.
            for i in [11, 12] {
                total += fields
                    .get(i)
                    .and_then(|f| f.parse::<u64>().ok())
                    .with_context(|| format!("reading /proc/{pid}/stat"))?;
            }
        }
        Ok(Duration::from_secs_f64(total as f64 / ticks as f64))
    }

    /// The PIDs of the child's process group (nginx: master and worker).
    pub fn pids(&self) -> Result<Vec<u32>> {
        Ok(self.group()?.into_iter().map(|(pid, _)| pid).collect())
    }

    /// Resident memory of the child's process group, KiB: the sum of each
    /// process's `VmRSS` (pages two of them share count twice, which a
    /// difference of two readings cancels).
    pub fn rss_kib(&self) -> Result<u64> {
        let mut total = 0;
        for pid in self.pids()? {
            // A process that exits while this reads is not an error.
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                continue;
            };
            // A zombie has no VmRSS line, and no memory.
            let kib = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            total += kib;
        }
        Ok(total)
    }

    /// Every process of the child's process group (it leads its own, see
    /// [`Proc::spawn`]), each with the fields of its `/proc/PID/stat` after
    /// the parenthesised command name (state, ppid, pgrp, ...).
    fn group(&self) -> Result<Vec<(u32, Vec<String>)>> {
        let child = self.child.as_ref().context("the process was stopped")?;
        let pgid = child.id().to_string();
        let mut out = Vec::new();
        for entry in std::fs::read_dir("/proc")? {
            let entry = entry?;
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            // Processes come and go while this reads; a vanished one is
            // not an error.
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let Some((_, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let fields: Vec<String> = rest.split_whitespace().map(String::from).collect();
            if fields.get(2) == Some(&pgid) {
                out.push((pid, fields));
            }
        }
        Ok(out)
    }

    /// The last lines of the child's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// The child's whole log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the child (stop signal, then SIGKILL to its group after
    /// [`STOP_GRACE`]) and reaps it.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id() as libc::pid_t;
        if matches!(child.try_wait(), Ok(None)) {
            // SAFETY: kill(2) on a child we spawned and have not reaped, so
            // its PID cannot have been reused.
            unsafe { libc::kill(pid, self.stop_signal) };
            let waited =
                edge_tests::wait::until(&format!("{} to exit", self.name), STOP_GRACE, || {
                    Ok(child.try_wait()?)
                });
            if waited.is_err() {
                // SAFETY: the child leads its own process group (pgid ==
                // pid) and is not reaped; this ends it and its workers.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
            }
        }
        let _ = child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_autogroup_niceness_is_the_process_niceness() {
        assert_eq!(NICENESS_TEXT, NICENESS.to_string().as_bytes());
    }
}
