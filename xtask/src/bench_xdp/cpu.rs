//! CPU accounting of a cell: the lab's processes, the load balancer's own
//! share, and what the rest of the machine used meanwhile.
//!
//! Process times come from `/proc/<pid>/stat` and `getrusage`, which this
//! kernel (tick-based accounting, no `IRQ_TIME_ACCOUNTING`) scales to each
//! task's exact run time, softirq work done in its context included.

use anyhow::{Context, Result, bail};
use edge_tests::edge::Edge;
use std::{
    os::fd::{FromRawFd, OwnedFd},
    time::Duration,
};

/// Nanoseconds per clock tick of /proc/<pid>/stat and /proc/stat.
pub(super) fn tick_ns() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    1e9 / if hz > 0 { hz as f64 } else { 100.0 }
}

/// utime + stime of process `pid` (all its threads, living and dead), in
/// clock ticks.
pub(super) fn process_ticks(pid: &str) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name may hold spaces; the fields follow its last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("odd /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `rest` starts at field 3.
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    Ok(utime + stime)
}

/// CPU ticks of the lab so far, but for the LB's process: the backends'
/// processes (`backends`), this process, its reaped children (each
/// finished wrk), and every ksoftirqd thread (softirq work the kernel
/// deferred there instead of running it in the interrupted task).
pub(super) fn lab_cpu_ticks(backends: &[u32]) -> Result<u64> {
    let mut ticks = process_ticks("self")?;
    for pid in backends {
        ticks += process_ticks(&pid.to_string())?;
    }
    ticks += children_ticks();
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.starts_with("ksoftirqd/") {
            ticks += process_ticks(pid).unwrap_or(0);
        }
    }
    Ok(ticks)
}

/// User + system time of reaped children, in clock ticks.
fn children_ticks() -> u64 {
    // SAFETY: getrusage fills the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let us = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    ((us(ru.ru_utime) + us(ru.ru_stime)) * 1e3 / tick_ns()) as u64
}

/// The whole machine's CPU time so far, from /proc/stat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct MachineTicks {
    /// Clock ticks any CPU spent on anything but idling (steal included:
    /// the hypervisor gave that time to someone else, not to the lab).
    pub busy: u64,
    /// CPUs the kernel counts.
    pub cpus: u64,
}

/// Reads [`MachineTicks`] now.
pub(super) fn machine_ticks() -> Result<MachineTicks> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    parse_stat(&stat).context("no total `cpu` line in /proc/stat")
}

fn parse_stat(stat: &str) -> Option<MachineTicks> {
    let total = stat.lines().find_map(|l| l.strip_prefix("cpu "))?;
    let v: Vec<u64> = total
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is
    // already in user and nice).
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| v.get(i)).sum();
    let cpus = stat
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count() as u64;
    Some(MachineTicks {
        busy,
        cpus: cpus.max(1),
    })
}

/// Share of the machine's CPU (0 to 1) that went to anything but the lab
/// over `wall`: `busy` ticks of the whole machine less the lab's `lab`
/// ticks, over what `cpus` CPUs offer in that time.
pub(super) fn others_share(busy: u64, lab: u64, cpus: u64, wall: Duration) -> f64 {
    let capacity = wall.as_secs_f64() * cpus as f64 * 1e9 / tick_ns();
    if capacity <= 0.0 {
        return 0.0;
    }
    (busy.saturating_sub(lab) as f64 / capacity).clamp(0.0, 1.0)
}

/// The CPU an LB has used so far.
pub(super) struct LbSample {
    /// User + system time of its process (if any), in clock ticks.
    pub process_ticks: u64,
    /// What the LB itself has used, in nanoseconds, where measurable.
    pub own_ns: Option<u64>,
}

/// Samples the CPU an LB has used.
pub(super) trait LbCpu {
    /// What it has used so far.
    fn sample(&mut self) -> Result<LbSample>;
}

/// No process of its own to measure.
pub(super) struct NoLbCpu;

impl LbCpu for NoLbCpu {
    fn sample(&mut self) -> Result<LbSample> {
        Ok(LbSample {
            process_ticks: 0,
            own_ns: None,
        })
    }
}

/// A process's user + system time, by its PID.
pub(super) struct ProcessCpu(pub u32);

impl LbCpu for ProcessCpu {
    fn sample(&mut self) -> Result<LbSample> {
        let ticks = process_ticks(&self.0.to_string())?;
        Ok(LbSample {
            process_ticks: ticks,
            own_ns: Some((ticks as f64 * tick_ns()) as u64),
        })
    }
}

/// edge's XDP program run time (BPF statistics, which must be on: see
/// [`enable_bpf_stats`]); the daemon's own process time counts in the
/// lab's total.
pub(super) struct EdgeCpu {
    pid: u32,
}

impl EdgeCpu {
    /// Measures the running `edge`.
    pub(super) fn new(edge: &Edge) -> Result<Self> {
        let pid = edge.pid().context("edge is not running")?;
        Ok(Self { pid })
    }
}

impl LbCpu for EdgeCpu {
    fn sample(&mut self) -> Result<LbSample> {
        Ok(LbSample {
            process_ticks: process_ticks(&self.pid.to_string())?,
            own_ns: Some(xdp_run_time_ns(self.pid)?),
        })
    }
}

/// BPF_ENABLE_STATS: the kernel times every BPF program run while the
/// returned descriptor is open (and stops when it closes, even if this
/// process dies).
pub(super) fn enable_bpf_stats() -> Result<OwnedFd> {
    const BPF_ENABLE_STATS: libc::c_long = 32;
    const BPF_STATS_RUN_TIME: u32 = 0;
    let attr: [u32; 4] = [BPF_STATS_RUN_TIME, 0, 0, 0];
    // SAFETY: bpf(2) reads `size_of_val(&attr)` bytes from a valid buffer.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_ENABLE_STATS,
            attr.as_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    if fd < 0 {
        bail!("BPF_ENABLE_STATS: {}", std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Total run time of the XDP programs process `pid` holds, from the
/// fdinfo of its BPF program descriptors.
fn xdp_run_time_ns(pid: u32) -> Result<u64> {
    const BPF_PROG_TYPE_XDP: &str = "6";
    let mut seen = Vec::new();
    let mut total = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))?.flatten() {
        let Ok(info) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let field = |k: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
        };
        if field("prog_type:").as_deref() != Some(BPF_PROG_TYPE_XDP) {
            continue;
        }
        let id = field("prog_id:");
        if seen.contains(&id) {
            continue;
        }
        seen.push(id);
        total += field("run_time_ns:")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_machines_busy_time() {
        let stat = "cpu  100 10 50 1000 7 3 20 5 4 0\n\
                    cpu0 50 5 25 500 3 1 10 2 2 0\n\
                    cpu1 50 5 25 500 4 2 10 3 2 0\n\
                    intr 12345\nctxt 999\n";
        assert_eq!(
            parse_stat(stat),
            Some(MachineTicks {
                busy: 100 + 10 + 50 + 3 + 20 + 5,
                cpus: 2
            })
        );
        assert_eq!(parse_stat("intr 1\n"), None);
    }

    #[test]
    fn others_share_is_what_the_lab_did_not_use() {
        let ticks_per_s = 1e9 / tick_ns();
        // Two CPUs for a second; the machine busy for one CPU-second, the
        // lab for half of it.
        let busy = ticks_per_s as u64;
        let share = others_share(busy, busy / 2, 2, Duration::from_secs(1));
        assert!((share - 0.25).abs() < 0.01, "{share}");
        // Accounting noise never makes it negative.
        assert!(others_share(10, 20, 2, Duration::from_secs(1)).abs() < 1e-12);
        assert!(others_share(10, 0, 2, Duration::ZERO).abs() < 1e-12);
    }
}
