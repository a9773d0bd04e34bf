//! Running a closure inside a network namespace.
//!
//! A socket belongs to the namespace it was created in, whatever thread
//! uses it later; so a thread that enters the namespace, creates sockets and
//! hands them back lets one test process own servers and clients in several
//! namespaces at once, without spawning a process per host.

use anyhow::{Context, Result, bail};
use std::{fs::File, os::fd::AsRawFd, path::Path};

/// Runs `f` on a fresh thread that has entered network namespace `ns`
/// (as created by `ip netns add`), and returns its result.
pub fn run_in<T, F>(ns: &str, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    let path = Path::new("/run/netns").join(ns);
    let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let handle = std::thread::spawn(move || -> Result<T> {
        // SAFETY: setns on a valid namespace fd only changes this thread's
        // network namespace; the thread ends when `f` returns.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns: {}", std::io::Error::last_os_error());
        }
        f()
    });
    match handle.join() {
        Ok(r) => r,
        Err(_) => bail!("the thread running in namespace {ns} panicked"),
    }
}
