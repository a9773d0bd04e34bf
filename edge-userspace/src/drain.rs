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
//!
//! An edge that announces its VIPs over BGP withdraws them before it stops
//! (SIGTERM, SIGQUIT or SIGINT, not an upgrade: the new process keeps
//! announcing), through the hook given to [`Watch::with_before_stop`], so
//! the router sends new flows elsewhere while the listeners still accept.
//! Draining a whole host (`POST /api/host/drain`) withdraws first, waits
//! until the host's L4 traffic has moved ([`Quiet`]), then stops like
//! SIGTERM; its deadline is read by [`parse_host_deadline`].

use async_trait::async_trait;
use pingora::server::{ExecutionPhase, ShutdownSignal, ShutdownSignalWatch};
use std::{
    future::Future,
    pin::Pin,
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

/// What runs when a stop signal arrives, before the listeners close (the
/// BGP withdrawal): called with the time it has, it logs its own outcome.
/// [`Watch`] never waits for it longer than [`WITHDRAW_BEFORE_STOP`].
pub type BeforeStop = Arc<dyn Fn(Duration) -> StepFuture + Send + Sync>;

/// The work of a [`BeforeStop`] hook.
pub type StepFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How long the listeners keep accepting once BIRD has taken the
/// withdrawal: the time for the BGP update to reach the router and change
/// its forwarding (milliseconds over one hop in the lab; a second covers a
/// few hops), so that connections arriving meanwhile are still served.
pub const ROUTE_SETTLE: Duration = Duration::from_secs(1);

/// Longest a stop waits for the routes to be withdrawn and to settle
/// ([`ROUTE_SETTLE`]): long enough for BIRD to take a new file, short
/// enough that a stop stays prompt.
pub const WITHDRAW_BEFORE_STOP: Duration = Duration::from_secs(3);

/// What the hook keeps of [`WITHDRAW_BEFORE_STOP`] for the withdrawal
/// itself: the rest is the settling time and a margin, so that its own
/// reason, not the outer timeout, is what a slow withdrawal logs.
pub const WITHDRAW_OWN: Duration = Duration::from_millis(1_800);

/// The shutdown signal watch given to Pingora.
pub struct Watch {
    grace: Duration,
    hooks: Mutex<Option<Hook>>,
    upgrade: Arc<Notify>,
    phases: Mutex<Option<broadcast::Receiver<ExecutionPhase>>>,
    before_stop: Option<BeforeStop>,
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
            before_stop: None,
        }
    }

    /// Runs `hook` when SIGTERM, SIGQUIT or SIGINT arrives, before the
    /// listeners close (not before a graceful upgrade: the new process
    /// serves the same addresses), for at most [`WITHDRAW_BEFORE_STOP`].
    pub fn with_before_stop(mut self, hook: BeforeStop) -> Self {
        self.before_stop = Some(hook);
        self
    }

    fn take_hooks(&self) -> Option<Hook> {
        self.hooks.lock().ok().and_then(|mut h| h.take())
    }

    /// Runs the before-stop hook for `why` (the signal), bounded by
    /// [`WITHDRAW_BEFORE_STOP`]; a further signal cuts it short, as it
    /// cuts a drain short, and then the stop is at once: returns whether
    /// one did.
    async fn before_stop(&self, why: &str) -> bool {
        let Some(hook) = &self.before_stop else {
            return false;
        };
        let started = Instant::now();
        let cut = tokio::select! {
            done = tokio::time::timeout(WITHDRAW_BEFORE_STOP, hook(WITHDRAW_OWN)) => {
                if done.is_err() {
                    tracing::warn!(
                        "{why}: the routes were not withdrawn within {WITHDRAW_BEFORE_STOP:?}: \
                         stopping anyway (the router notices when the BGP session ends)"
                    );
                }
                false
            }
            _ = another_signal() => {
                tracing::warn!(
                    "{why}: another signal while the routes were being withdrawn: stopping now"
                );
                true
            }
        };
        tracing::debug!(took = ?started.elapsed(), "{why}: before-stop steps done");
        cut
    }
}

/// The default deadline of a host drain (`POST /api/host/drain`).
pub const HOST_DRAIN_DEADLINE: Duration = Duration::from_secs(30);

/// The longest deadline a host drain accepts.
pub const MAX_HOST_DRAIN_DEADLINE: Duration = Duration::from_secs(3600);

/// How long a drained host's L4 counters must stay still before its
/// traffic is believed to have moved: flows the router still hashed here
/// a moment ago send a packet at least this often while they live.
pub const QUIET_FOR: Duration = Duration::from_secs(2);

/// How often a host drain reads the L4 counters.
pub const QUIET_POLL: Duration = Duration::from_millis(250);

/// Reads a host drain's deadline (`250ms`, `30s`, `5m`): more than zero,
/// at most [`MAX_HOST_DRAIN_DEADLINE`].
pub fn parse_host_deadline(text: &str) -> Result<Duration, String> {
    let d = crate::config::units::parse_duration(text)?;
    if d.is_zero() {
        return Err(format!(
            "deadline {text:?}: must be more than zero (such as 30s)"
        ));
    }
    if d > MAX_HOST_DRAIN_DEADLINE {
        return Err(format!(
            "deadline {text:?}: at most {}s",
            MAX_HOST_DRAIN_DEADLINE.as_secs()
        ));
    }
    Ok(d)
}

/// Follows the total of a drained host's L4 packet counters, sample by
/// sample, and says when it has not moved for a while.
#[derive(Debug, Default)]
pub struct Quiet {
    /// The last total seen and when it was first seen.
    last: Option<(u64, Duration)>,
}

impl Quiet {
    /// Takes the total at `at` (time since the watch began; `None`: the
    /// host has no L4 service, so nothing can still be arriving) and says
    /// whether it has stayed the same for `window`. Any change counts as
    /// traffic, a fall too (a reload replaced a service's counters), so
    /// the window starts again from it.
    pub fn observe(&mut self, at: Duration, total: Option<u64>, window: Duration) -> bool {
        let Some(total) = total else {
            return true;
        };
        match self.last {
            Some((seen, since)) if seen == total => at.saturating_sub(since) >= window,
            _ => {
                self.last = Some((total, at));
                false
            }
        }
    }
}

/// When a sequence of samples (time, counter total) first shows `window`
/// without traffic, if it does.
pub fn quiet_at(
    samples: impl IntoIterator<Item = (Duration, Option<u64>)>,
    window: Duration,
) -> Option<Duration> {
    let mut quiet = Quiet::default();
    samples
        .into_iter()
        .find(|(at, total)| quiet.observe(*at, *total, window))
        .map(|(at, _)| at)
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
            _ = int.recv() => {
                // Routes first, even in a fast stop: a router that still
                // sends here after the listeners close black-holes flows.
                let _ = self.before_stop("SIGINT").await;
                ShutdownSignal::FastShutdown
            }
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
                // The routes go before the listeners close: new flows
                // then land on another edge instead of a closed port. A
                // second signal meanwhile stops at once, as in a drain.
                if self.before_stop("SIGTERM").await {
                    ShutdownSignal::FastShutdown
                } else {
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

    #[test]
    fn host_deadlines_are_bounded() {
        assert_eq!(parse_host_deadline("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_host_deadline("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_host_deadline("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_host_deadline("1h"), Ok(MAX_HOST_DRAIN_DEADLINE));
        for bad in ["", "30", "0s", "3601s", "61m", "-1s", "1.5s", "soon"] {
            assert!(parse_host_deadline(bad).is_err(), "{bad:?} was taken");
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_host_is_quiet_once_its_counters_stop_for_the_window() {
        let w = QUIET_FOR;
        // No L4 service: quiet at the first look.
        assert_eq!(quiet_at([(ms(0), None)], w), Some(ms(0)));
        // Still from the start: quiet 2 s after the first sample.
        let still: Vec<_> = (0..=10).map(|i| (ms(i * 250), Some(7))).collect();
        assert_eq!(quiet_at(still, w), Some(ms(2000)));
        // Moving until 1 s, then still: quiet at 3 s.
        let moving: Vec<_> = (0..=20u64)
            .map(|i| (ms(i * 250), Some(if i <= 4 { i * 10 } else { 40 })))
            .collect();
        assert_eq!(quiet_at(moving, w), Some(ms(3000)));
        // One packet in the middle of a still stretch starts it again.
        let blip = [
            (ms(0), Some(5)),
            (ms(1500), Some(5)),
            (ms(1750), Some(6)),
            (ms(3500), Some(6)),
            (ms(3750), Some(6)),
        ];
        assert_eq!(quiet_at(blip, w), Some(ms(3750)));
        // A fall (counters replaced) is a change, not quiet.
        let fall = [(ms(0), Some(9)), (ms(1000), Some(3)), (ms(2500), Some(3))];
        assert_eq!(quiet_at(fall, w), None);
        // Never still for the window: never quiet.
        let busy: Vec<_> = (0..=40u64).map(|i| (ms(i * 250), Some(i))).collect();
        assert_eq!(quiet_at(busy, w), None);
    }
}
