//! What a namespace's kernel counts that tells whether a cell ran clean:
//! sockets left in TIME_WAIT, handshakes that had to be retried, and
//! conntrack's fill and drops.
//!
//! wrk times a request from its write, after the handshake, so a SYN lost
//! (a full conntrack table, a SYN the LB host's TIME_WAIT answered with a
//! challenge) costs a whole retransmission timeout without showing in its
//! latency; the SYN retransmission counter is the one place it shows.

use anyhow::{Context, Result};
use edge_tests::netns;

/// One namespace's counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct NsCounters {
    /// TCP sockets in TIME_WAIT.
    pub time_wait: u64,
    /// SYNs sent again so far (`TcpExt: TCPSynRetrans`).
    pub syn_retrans: u64,
    /// Connections conntrack tracks (`None`: conntrack is not loaded).
    pub conntrack: Option<u64>,
    /// Packets conntrack has dropped, dropped early to make room, or failed
    /// to insert, summed over CPUs (`None`: conntrack is not loaded).
    pub conntrack_drops: Option<u64>,
}

impl NsCounters {
    /// Reads the counters of network namespace `ns`.
    pub(super) fn read(ns: &str) -> Result<Self> {
        netns::run_in(ns, || {
            // /proc/net follows the process's namespace; thread-self and
            // /proc/sys/net follow this thread's, which run_in moved.
            let read = |p: &str| std::fs::read_to_string(p).with_context(|| format!("reading {p}"));
            let sockstat = read("/proc/thread-self/net/sockstat")?;
            let netstat = read("/proc/thread-self/net/netstat")?;
            let conntrack = std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_count")
                .ok()
                .and_then(|v| v.trim().parse().ok());
            let conntrack_drops =
                std::fs::read_to_string("/proc/thread-self/net/stat/nf_conntrack")
                    .ok()
                    .and_then(|s| conntrack_drops(&s));
            Ok(Self {
                time_wait: time_wait(&sockstat).context("no TCP tw count in sockstat")?,
                syn_retrans: netstat_field(&netstat, "TcpExt", "TCPSynRetrans").unwrap_or(0),
                conntrack,
                conntrack_drops,
            })
        })
    }
}

/// The host's `nf_conntrack_max`: one limit for every namespace's table
/// (writable only in the host's namespace, which this thread is in).
pub(super) fn conntrack_max() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_max")
        .ok()
        .and_then(|v| v.trim().parse().ok())
}

/// TIME_WAIT sockets from the `TCP:` line of `/proc/net/sockstat`
/// (`TCP: inuse 5 orphan 0 tw 2 alloc 7 mem 1`).
fn time_wait(sockstat: &str) -> Option<u64> {
    let line = sockstat.lines().find_map(|l| l.strip_prefix("TCP:"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    words
        .chunks(2)
        .find(|kv| kv.first() == Some(&"tw"))
        .and_then(|kv| kv.get(1)?.parse().ok())
}

/// Field `name` of section `section` (e.g. `TcpExt`) of `/proc/net/netstat`,
/// where each section is a line of names followed by a line of values.
fn netstat_field(netstat: &str, section: &str, name: &str) -> Option<u64> {
    let prefix = format!("{section}:");
    let mut lines = netstat
        .lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()));
    let names = lines.next()?;
    let values = lines.next()?;
    let i = names.split_whitespace().position(|n| n == name)?;
    values.split_whitespace().nth(i)?.parse().ok()
}

/// `drop` + `early_drop` + `insert_failed` over every CPU's line of
/// `/proc/net/stat/nf_conntrack` (a line of names, then a line of
/// hexadecimal counters per CPU; the columns vary between kernels).
fn conntrack_drops(stat: &str) -> Option<u64> {
    let mut lines = stat.lines();
    let names: Vec<&str> = lines.next()?.split_whitespace().collect();
    let wanted: Vec<usize> = names
        .iter()
        .enumerate()
        .filter(|(_, n)| ["drop", "early_drop", "insert_failed"].contains(*n))
        .map(|(i, _)| i)
        .collect();
    if wanted.is_empty() {
        return None;
    }
    let mut total = 0u64;
    for line in lines {
        let values: Vec<&str> = line.split_whitespace().collect();
        for &i in &wanted {
            total += values
                .get(i)
                .and_then(|v| u64::from_str_radix(v, 16).ok())
                .unwrap_or(0);
        }
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_time_wait() {
        let s =
            "sockets: used 130\nTCP: inuse 5 orphan 0 tw 2345 alloc 7 mem 1\nUDP: inuse 1 mem 0\n";
        assert_eq!(time_wait(s), Some(2345));
        assert_eq!(time_wait("sockets: used 1\n"), None);
    }

    #[test]
    fn reads_a_netstat_field() {
        let s = "TcpExt: SyncookiesSent TCPSynRetrans TCPTimeouts\n\
                 TcpExt: 0 17 3\n\
                 IpExt: InNoRoutes TCPSynRetrans\n\
                 IpExt: 9 99\n";
        assert_eq!(netstat_field(s, "TcpExt", "TCPSynRetrans"), Some(17));
        assert_eq!(netstat_field(s, "IpExt", "InNoRoutes"), Some(9));
        assert_eq!(netstat_field(s, "TcpExt", "Nope"), None);
        assert_eq!(netstat_field(s, "MPTcpExt", "TCPSynRetrans"), None);
    }

    #[test]
    fn sums_conntrack_drops_over_cpus() {
        let s = "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart\n\
                 0000001a  00000000  00000000 00000000 00000003 00000000 00000000 00000000 00000000 00000001 0000000a 00000002 00000000 00000000 00000000 00000000 00000000\n\
                 0000001a  00000000  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000010 00000000 00000000 00000000 00000000 00000000 00000000\n";
        assert_eq!(conntrack_drops(s), Some(1 + 0xa + 2 + 0x10));
        assert_eq!(conntrack_drops("entries found\n00000001 00000002\n"), None);
        assert_eq!(conntrack_drops(""), None);
    }
}
