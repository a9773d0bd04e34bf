//! Stopping: SIGTERM (or SIGQUIT) drains, SIGINT (or a second signal)
//! stops at once.
//!
//! Pingora on SIGTERM stops accepting and then sleeps the whole grace
//! period before it shuts its runtimes down, whether or not anything is in
//! flight, and listens for no further signal while it sleeps. edge counts
//! the requests in flight ([`InFlight`]) and watches the signals itself:
//! once SIGTERM has stopped the listeners, the process exits as soon as
//! nothing is in flight, when the grace period ends, or at a second
//! SIGTERM or a SIGINT, whichever comes first. Before it exits it runs the
//! hooks given to [`Watch::new`] (flushing the access log, detaching XDP).
//!
//! A graceful upgrade (`edge upgrade`, or `edge reload` of a change only a
//! new process can make) asks through [`Watch::upgrade`]: Pingora then
//! hands the listening sockets to the new process, keeps accepting for a
//! few seconds while it takes over, and stops; this process then drains
//! like after SIGTERM.

use async_trait::async_trait;
use pingora::server::{ExecutionPhase, ShutdownSignal, ShutdownSignalWatch};
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{Notify, broadcast},
};

/// Longest wait, after an upgrade was asked for, for Pingora to have handed
/// the sockets over and stopped accepting (it tries for about 5 s, then
/// accepts beside the new process for 5 s more).
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(30);

/// Requests being served and downstream connections open, over every
/// listener.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// How often the drain looks at the count.
const POLL: Duration = Duration::from_millis(20);

/// Time after the listeners stop before an empty count is believed: a
/// connection accepted just before, still in its TLS handshake, is counted
/// only once the handshake is done (then, until it closes).
const SETTLE: Duration = Duration::from_millis(300);

/// One request in flight, for as long as it lives.
pub struct InFlight(());

impl InFlight {
    /// Counts a request that has begun.
    pub fn start() -> Self {
        IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
        Self(())
    }

    /// Requests in flight now.
    pub fn count() -> usize {
        IN_FLIGHT.load(Ordering::Relaxed)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
    }
}

type Hook = Box<dyn FnOnce() + Send>;

/// The shutdown signal watch given to Pingora.
pub struct Watch {
    grace: Duration,
    hooks: Mutex<Option<Hook>>,
    upgrade: Arc<Notify>,
    phases: Mutex<Option<broadcast::Receiver<ExecutionPhase>>>,
}

impl Watch {
    /// A watch that drains for at most `grace` and runs `on_exit` before
    /// it ends the process early; `phases` is the server's execution phase
    /// (an upgrade drains once the hand-over is done).
    /// `upgrade.notify_one()` asks for a graceful upgrade: the listening
    /// sockets go to the process waiting on the upgrade socket.
    pub fn new(
        grace: Duration,
        on_exit: Hook,
        phases: broadcast::Receiver<ExecutionPhase>,
        upgrade: Arc<Notify>,
    ) -> Self {
        Self {
            grace,
            hooks: Mutex::new(Some(on_exit)),
            upgrade,
            phases: Mutex::new(Some(phases)),
        }
    }

    fn take_hooks(&self) -> Option<Hook> {
        self.hooks.lock().ok().and_then(|mut h| h.take())
    }
}

/// Why the drain ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Drained,
    GraceOver,
    Signal,
}

/// Resolves at the next SIGTERM, SIGINT or SIGQUIT (never, if they
/// cannot be watched: the grace period still bounds the drain).
async fn another_signal() {
    let (Ok(mut term), Ok(mut int), Ok(mut quit)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::quit()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        _ = quit.recv() => {}
    }
}

/// Longest the last steps (access log, dataplane, control socket) may take
/// before a drained process exits without them.
const LAST_STEPS_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the last steps, for at most [`LAST_STEPS_TIMEOUT`], and ends the
/// process with status 0.
fn exit_after(hooks: Option<Hook>) -> ! {
    if let Some(hooks) = hooks {
        let (done, finished) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("edge-exit".into())
            .spawn(move || {
                hooks();
                let _ = done.send(());
            });
        if spawned.is_ok() && finished.recv_timeout(LAST_STEPS_TIMEOUT).is_err() {
            tracing::warn!(
                "the last steps took longer than {LAST_STEPS_TIMEOUT:?}: exiting without them"
            );
        }
    }
    // _exit: the C library's exit handlers run nothing edge needs, and one
    // of them waiting on a lock that another thread holds would keep a
    // drained process alive (seen once after an upgrade, not understood).
    // SAFETY: _exit has no preconditions; it ends the process at once.
    unsafe { libc::_exit(0) }
}

/// Waits until Pingora has handed the sockets over and stopped accepting
/// (the shutdown has started), at most [`HANDOVER_TIMEOUT`].
async fn handed_over(mut phases: broadcast::Receiver<ExecutionPhase>) {
    let started = async {
        loop {
            match phases.recv().await {
                Ok(ExecutionPhase::ShutdownStarted | ExecutionPhase::ShutdownGracePeriod)
                | Err(broadcast::error::RecvError::Closed) => return,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            }
        }
    };
    if tokio::time::timeout(HANDOVER_TIMEOUT, started)
        .await
        .is_err()
    {
        tracing::warn!("the socket hand-over took longer than {HANDOVER_TIMEOUT:?}: draining now");
    }
}

/// Waits until nothing is in flight (after [`SETTLE`]), `grace` has
/// passed, or `stop` resolves.
async fn drain(grace: Duration, stop: impl std::future::Future<Output = ()>) -> End {
    let started = Instant::now();
    tokio::pin!(stop);
    loop {
        let elapsed = started.elapsed();
        if elapsed >= grace {
            return End::GraceOver;
        }
        if elapsed >= SETTLE && InFlight::count() == 0 {
            return End::Drained;
        }
        tokio::select! {
            _ = &mut stop => return End::Signal,
            _ = tokio::time::sleep(POLL.min(grace - elapsed)) => {}
        }
    }
}

#[async_trait]
impl ShutdownSignalWatch for Watch {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut term), Ok(mut int), Ok(mut quit)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
        ) else {
            tracing::error!("cannot watch for signals: stop edge with SIGKILL");
            return std::future::pending().await;
        };
        // SIGQUIT drains like SIGTERM (nginx users send it for a graceful
        // stop): Pingora's reading of it, handing the listening sockets to
        // a new process through a socket in /tmp, is not set up by edge.
        let signal = tokio::select! {
            _ = int.recv() => ShutdownSignal::FastShutdown,
            _ = self.upgrade.notified() => {
                let grace = self.grace;
                let hooks = self.take_hooks();
                let phases = self.phases.lock().ok().and_then(|mut p| p.take());
                tokio::spawn(async move {
                    if let Some(phases) = phases {
                        handed_over(phases).await;
                    }
                    let end = drain(grace, another_signal()).await;
                    tracing::info!(
                        in_flight = InFlight::count(),
                        "drain after the upgrade ended ({end:?}): exiting"
                    );
                    exit_after(hooks);
                });
                tracing::info!("graceful upgrade: handing the listening sockets to the new edge");
                ShutdownSignal::GracefulUpgrade
            }
            _ = async { tokio::select! { _ = term.recv() => {}, _ = quit.recv() => {} } } => {
                // Before the drain starts: an idle drain ends the process
                // at once, on another worker, and could beat a later send.
                crate::notify::notify("STOPPING=1\nSTATUS=draining");
                let grace = self.grace;
                let hooks = self.take_hooks();
                // Pingora stops the listeners once this returns, then
                // sleeps out the grace period; the drain ends the process
                // sooner when it can.
                tokio::spawn(async move {
                    let end = drain(grace, another_signal()).await;
                    tracing::info!(
                        in_flight = InFlight::count(),
                        "drain ended ({end:?}): exiting"
                    );
                    exit_after(hooks);
                });
                ShutdownSignal::GracefulTerminate
            }
        };
        // A drain said STOPPING=1 above. In an upgrade the new process
        // takes over as the service's main process (it says MAINPID=): a
        // STOPPING=1 from this one would stop the whole unit, the new
        // process with it.
        if matches!(signal, ShutdownSignal::FastShutdown) {
            crate::notify::notify("STOPPING=1\nSTATUS=stopping");
        }
        signal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_idle_drain_ends_at_once_and_a_busy_one_at_the_grace() {
        let never = std::future::pending::<()>;
        let t = Instant::now();
        assert_eq!(drain(Duration::from_secs(30), never()).await, End::Drained);
        assert!(t.elapsed() < Duration::from_secs(5));
        let busy = InFlight::start();
        let t = Instant::now();
        assert_eq!(
            drain(Duration::from_millis(300), never()).await,
            End::GraceOver
        );
        assert!(t.elapsed() >= Duration::from_millis(300));
        assert_eq!(
            drain(Duration::from_secs(30), std::future::ready(())).await,
            End::Signal
        );
        drop(busy);
    }
}
