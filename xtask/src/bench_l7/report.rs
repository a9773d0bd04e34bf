//! The benchmark's results as Markdown tables.

use super::wrk::Measurement;
use std::fmt::Write;

/// How many proxies are compared.
pub const COUNT: usize = 4;
/// The proxies compared, in column order: edge, a bare Pingora proxy (the
/// `bare_pingora` example: Pingora without edge's code), nginx, HAProxy.
pub const PROXIES: [&str; COUNT] = ["edge", "pingora", "nginx", "haproxy"];
/// edge's column.
pub const EDGE: usize = 0;
/// The bare Pingora proxy's column.
pub const PINGORA: usize = 1;

/// One of edge's figures in the README before this benchmark had a
/// Pingora column, printed beside the new one so that a regression shows.
pub struct Previous {
    /// The row's case, as the benchmark names it.
    pub case: &'static str,
    /// Requests (or calls, or connections) per second.
    pub rps: f64,
    /// CPU time per request, µs.
    pub cpu_us: f64,
    /// The commit the README measured.
    pub commit: &'static str,
}

/// The README's edge column (HTTP rows measured at 66470bf, the gRPC and
/// TCP rows at 688c360).
pub const PREVIOUS: [Previous; 6] = [
    Previous {
        case: "proxied, 13 B response",
        rps: 22_556.0,
        cpu_us: 40.9,
        commit: "66470bf",
    },
    Previous {
        case: "proxied, 64 KiB response",
        rps: 9_958.0,
        cpu_us: 89.3,
        commit: "66470bf",
    },
    Previous {
        case: "cache hit, 13 B response",
        rps: 40_864.0,
        cpu_us: 22.5,
        commit: "66470bf",
    },
    Previous {
        case: "HTTPS (TLS 1.3, keep-alive), 13 B",
        rps: 17_452.0,
        cpu_us: 51.8,
        commit: "66470bf",
    },
    Previous {
        case: "gRPC unary (h2c), 13 B message",
        rps: 16_174.0,
        cpu_us: 35.0,
        commit: "688c360",
    },
    Previous {
        case: "TCP, new connection per request, 13 B",
        rps: 17_544.0,
        cpu_us: 55.8,
        commit: "688c360",
    },
];

/// One measured run of one proxy on one case.
#[derive(Clone, Debug)]
pub struct Sample {
    /// What wrk saw.
    pub wrk: Measurement,
    /// The proxy's CPU time (all its processes and threads) per request.
    pub cpu_us_per_request: f64,
    /// The proxy's CPU time over the wall time of the run: near 1.0 it was
    /// busy on its one core all along; well below, something else held it
    /// back (the client side, or other work on its CPU).
    pub cpu_busy: f64,
    /// Anything worth flagging (errors, cache misses).
    pub notes: Vec<String>,
}

/// One proxy's result for one case.
#[derive(Clone)]
pub enum Cell {
    /// Measured: medians over several runs.
    Done(Sample),
    /// Not measured, and why (edge does not support the case yet, or bare
    /// Pingora has no equivalent).
    NotApplicable(String),
    /// Measuring went wrong.
    Failed(String),
}

impl Cell {
    /// Each figure's median over `samples` (taken on its own: the runs
    /// are noisy in different ways), with every run's notes; `None` if
    /// there are none.
    pub fn median(samples: Vec<Sample>) -> Option<Cell> {
        let of = |f: fn(&Sample) -> f64| median(samples.iter().map(f).collect());
        let mut notes: Vec<String> = Vec::new();
        for n in samples.iter().flat_map(|s| &s.notes) {
            if !notes.contains(n) {
                notes.push(n.clone());
            }
        }
        Some(Cell::Done(Sample {
            wrk: Measurement {
                rps: of(|s| s.wrk.rps)?,
                p50_us: of(|s| s.wrk.p50_us)?,
                p99_us: of(|s| s.wrk.p99_us)?,
                requests: of(|s| s.wrk.requests as f64)? as u64,
                errors: Vec::new(),
                failed: 0,
                non_2xx: 0,
            },
            cpu_us_per_request: of(|s| s.cpu_us_per_request)?,
            cpu_busy: of(|s| s.cpu_busy)?,
            notes,
        }))
    }

    fn rps(&self) -> Option<f64> {
        self.sample().map(|s| s.wrk.rps)
    }

    fn cpu(&self) -> Option<f64> {
        self.sample().map(|s| s.cpu_us_per_request)
    }

    /// The measurement, if there is one.
    pub fn sample(&self) -> Option<&Sample> {
        match self {
            Cell::Done(s) => Some(s),
            _ => None,
        }
    }

    fn render(&self) -> String {
        match self {
            Cell::Done(sample) => {
                let m = &sample.wrk;
                let mut s = format!(
                    "{} / {} / {}",
                    thousands(m.rps),
                    latency(m.p50_us),
                    latency(m.p99_us)
                );
                for n in &sample.notes {
                    let _ = write!(s, " ⚠ {n}");
                }
                s
            }
            Cell::NotApplicable(why) => format!("n/a ({why})"),
            Cell::Failed(why) => format!("failed: {why}"),
        }
    }
}

/// What one proxy did per request besides answering, over the measured
/// run: heap allocations and system calls. `None`: not counted
/// (allocations: nginx and HAProxy, or an edge build without the
/// `alloc-count` feature; system calls: perf failed).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Counts {
    /// Heap allocations (alloc, alloc_zeroed, realloc) per request.
    pub allocations: Option<f64>,
    /// System calls (every thread, every process) per request.
    pub syscalls: Option<f64>,
}

impl Counts {
    /// Each count's median over the runs that have it.
    pub fn median(runs: &[Counts]) -> Counts {
        Counts {
            allocations: median(runs.iter().filter_map(|c| c.allocations).collect()),
            syscalls: median(runs.iter().filter_map(|c| c.syscalls).collect()),
        }
    }
}

/// One case across the proxies, cells in [`PROXIES`] order.
pub struct Row {
    /// What was measured.
    pub case: String,
    /// edge, bare Pingora, nginx, HAProxy.
    pub cells: [Cell; COUNT],
    /// The same proxies' counts per request (medians over the runs).
    pub counts: [Counts; COUNT],
}

impl Row {
    /// Whether any cell failed (as opposed to being measured or n/a).
    pub fn failed(&self) -> bool {
        self.cells.iter().any(|c| matches!(c, Cell::Failed(_)))
    }
}

/// One proxy's resident memory before and after it took idle keep-alive
/// connections.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IdleMemory {
    /// How many connections were open at the second reading.
    pub connections: usize,
    /// RSS (all its processes) before they were opened, KiB.
    pub before_kib: u64,
    /// RSS with all of them open, KiB.
    pub after_kib: u64,
}

impl IdleMemory {
    /// The growth per connection, KiB (negative if the proxy shrank).
    pub fn kib_per_connection(&self) -> f64 {
        (self.after_kib as f64 - self.before_kib as f64) / self.connections.max(1) as f64
    }
}

/// Memory per idle connection across the proxies, in [`PROXIES`] order.
pub struct MemoryRow {
    /// What was measured.
    pub case: String,
    /// Each proxy's readings, or why there are none.
    pub cells: [Result<IdleMemory, String>; COUNT],
}

/// Everything the report says.
pub struct Report {
    /// The machine, versions and date, one `(what, value)` per line.
    pub facts: Vec<(String, String)>,
    /// How it was measured, Markdown.
    pub method: String,
    /// wrk straight to the origin: what the client side can drive at most.
    pub ceiling: Vec<(String, Cell)>,
    /// The comparison.
    pub rows: Vec<Row>,
    /// Memory per idle connection (the scale rows).
    pub memory: Vec<MemoryRow>,
}

impl Report {
    /// Whether any cell failed.
    pub fn failed(&self) -> bool {
        self.rows.iter().any(Row::failed)
            || self
                .memory
                .iter()
                .any(|m| m.cells.iter().any(Result::is_err))
    }
}

/// A Markdown table's header line and its separator.
fn header(s: &mut String, columns: &[String]) {
    let _ = writeln!(s, "| {} |", columns.join(" | "));
    let _ = writeln!(s, "|{}", " --- |".repeat(columns.len()));
}

/// A Markdown table line; every cell is made one line first.
fn line(s: &mut String, cells: &[String]) {
    let cells: Vec<String> = cells.iter().map(String::as_str).map(cell_text).collect();
    let _ = writeln!(s, "| {} |", cells.join(" | "));
}

/// The report as Markdown: facts, the tables, the ceiling, the method.
pub fn render(r: &Report) -> String {
    let mut s = String::from("# edge L7 benchmark\n\n");
    for (what, value) in &r.facts {
        let _ = writeln!(s, "- {what}: {value}");
    }
    s.push_str(
        "\nEach cell: requests/s / p50 / p99 latency. Ratios are requests/s \
         (above 1 means edge is faster). `pingora` is a bare Pingora proxy with none of \
         edge's code: edge/pingora is what edge adds to Pingora.\n\n",
    );
    let mut columns = vec!["case".to_string()];
    columns.extend(PROXIES.iter().map(|p| format!("{p} rps / p50 / p99")));
    columns.extend(PROXIES[1..].iter().map(|p| format!("edge/{p}")));
    header(&mut s, &columns);
    for row in &r.rows {
        let mut cells = vec![row.case.clone()];
        cells.extend(row.cells.iter().map(Cell::render));
        cells.extend(row.cells[1..].iter().map(|c| ratio(&row.cells[EDGE], c)));
        line(&mut s, &cells);
    }
    s.push_str(
        "\nCPU time the proxy used per request (all its processes and threads; lower is better), \
         and how busy it kept its core. This is steadier than requests/s on a shared machine: \
         time taken by other work does not count. The last two columns put edge's figure from \
         the README beside it (measured before the Pingora column and the counters of the next \
         table existed) and how many times less CPU edge needs now (below 1: a regression, or \
         a noisier machine).\n\n",
    );
    let mut columns = vec!["case".to_string()];
    columns.extend(PROXIES.iter().map(|p| p.to_string()));
    columns.extend(PROXIES[1..].iter().map(|p| format!("edge/{p}")));
    columns.push("edge, previous README figure".into());
    columns.push("edge now vs then".into());
    header(&mut s, &columns);
    for row in &r.rows {
        let edge = &row.cells[EDGE];
        let previous = PREVIOUS.iter().find(|p| p.case == row.case);
        let mut cells = vec![row.case.clone()];
        cells.extend(row.cells.iter().map(cpu_text));
        cells.extend(row.cells[1..].iter().map(|c| cpu_ratio(edge, c)));
        match previous {
            Some(p) => {
                cells.push(format!(
                    "{:.1} µs, {} rps ({})",
                    p.cpu_us,
                    thousands(p.rps),
                    p.commit
                ));
                cells.push(match edge.cpu() {
                    Some(now) if now > 0.0 => format!("{:.2}×", p.cpu_us / now),
                    _ => "–".to_string(),
                });
            }
            None => cells.extend(["–".to_string(), "–".to_string()]),
        }
        line(&mut s, &cells);
    }
    s.push_str(
        "\nPer request, over the measured run: heap allocations / system calls. Allocations \
         are counted in edge and bare Pingora (the same counting allocator in both); nginx \
         and HAProxy are not instrumented (n/a). System calls: every thread of every process \
         of the proxy.\n\n",
    );
    let mut columns = vec!["case".to_string()];
    columns.extend(PROXIES.iter().map(|p| p.to_string()));
    header(&mut s, &columns);
    for row in &r.rows {
        let mut cells = vec![row.case.clone()];
        for (i, (cell, counts)) in row.cells.iter().zip(&row.counts).enumerate() {
            cells.push(counts_text(i, cell, counts));
        }
        line(&mut s, &cells);
    }
    if !r.memory.is_empty() {
        s.push_str(
            "\nMemory per idle keep-alive connection: the growth of the proxy's resident memory \
             (all its processes) once the connections are open and idle, divided by their \
             number; in brackets the two readings.\n\n",
        );
        let mut columns = vec!["case".to_string()];
        columns.extend(PROXIES.iter().map(|p| p.to_string()));
        header(&mut s, &columns);
        for row in &r.memory {
            let mut cells = vec![row.case.clone()];
            cells.extend(row.cells.iter().map(memory_text));
            line(&mut s, &cells);
        }
    }
    if !r.ceiling.is_empty() {
        s.push_str(
            "\nHarness ceiling (wrk straight to the origin, on the same CPU as in the runs above; \
             a proxied result near it is limited by the client side, not the proxy):\n\n",
        );
        for (what, cell) in &r.ceiling {
            let _ = writeln!(s, "- {what}: {}", cell.render());
        }
    }
    let _ = write!(s, "\n{}\n", r.method.trim_end());
    s
}

/// The middle value (the mean of the middle two for an even count).
fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

fn ratio(edge: &Cell, other: &Cell) -> String {
    match (edge.rps(), other.rps()) {
        (Some(e), Some(o)) if o > 0.0 => format!("{:.2}×", e / o),
        _ => "–".to_string(),
    }
}

/// A proxy's allocations / system calls per request; n/a where the proxy
/// is not instrumented, – where nothing was measured.
fn counts_text(proxy: usize, cell: &Cell, counts: &Counts) -> String {
    if cell.sample().is_none() {
        return "–".to_string();
    }
    let allocations = match counts.allocations {
        Some(n) => format!("{n:.1}"),
        None if proxy == EDGE || proxy == PINGORA => "–".to_string(),
        None => "n/a".to_string(),
    };
    let syscalls = counts
        .syscalls
        .map_or_else(|| "–".to_string(), |n| format!("{n:.2}"));
    format!("{allocations} / {syscalls}")
}

/// KiB per idle connection, with the two readings.
fn memory_text(cell: &Result<IdleMemory, String>) -> String {
    match cell {
        Ok(m) => format!(
            "{:.1} KiB ({:.1} → {:.1} MiB)",
            m.kib_per_connection(),
            m.before_kib as f64 / 1024.0,
            m.after_kib as f64 / 1024.0
        ),
        Err(why) => format!("failed: {why}"),
    }
}

fn cpu_text(cell: &Cell) -> String {
    match cell.sample() {
        Some(s) => format!(
            "{:.1} µs ({:.0}% busy)",
            s.cpu_us_per_request,
            s.cpu_busy * 100.0
        ),
        None => "–".to_string(),
    }
}

/// How many times less CPU edge needs per request (above 1: edge is
/// cheaper), to read the same way as the requests/s ratio.
fn cpu_ratio(edge: &Cell, other: &Cell) -> String {
    match (edge.cpu(), other.cpu()) {
        (Some(e), Some(o)) if e > 0.0 => format!("{:.2}×", o / e),
        _ => "–".to_string(),
    }
}

/// One line, no column separators.
pub fn cell_text(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// 41234.6 → "41,235".
pub fn thousands(n: f64) -> String {
    let digits = format!("{:.0}", n.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// µs below a millisecond, else ms (or s).
pub fn latency(us: f64) -> String {
    if us < 1e3 {
        format!("{us:.0} µs")
    } else if us < 1e6 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(rps: f64) -> Sample {
        Sample {
            wrk: Measurement {
                rps,
                p50_us: 512.0,
                p99_us: 1234.0,
                requests: 1,
                errors: vec![],
                failed: 0,
                non_2xx: 0,
            },
            cpu_us_per_request: 1e6 / rps,
            cpu_busy: 1.0,
            notes: vec![],
        }
    }

    fn done(rps: f64) -> Cell {
        Cell::Done(sample(rps))
    }

    #[test]
    fn medians_are_per_figure_and_keep_every_runs_notes() {
        let mut noisy = sample(10.0);
        noisy.notes.push("3 non-2xx/3xx responses".into());
        noisy.wrk.p99_us = 9000.0;
        let mut slow = sample(30.0);
        slow.wrk.p99_us = 5000.0;
        let cell = Cell::median(vec![slow, noisy, sample(20.0)]).unwrap();
        let s = cell.sample().unwrap();
        assert_eq!(s.wrk.rps, 20.0);
        assert_eq!(s.wrk.p99_us, 5000.0);
        assert_eq!(s.cpu_us_per_request, 1e6 / 20.0);
        assert_eq!(s.notes, ["3 non-2xx/3xx responses"]);
        assert!(Cell::median(vec![]).is_none());
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn formats() {
        assert_eq!(thousands(41234.6), "41,235");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1_000_000.0), "1,000,000");
        assert_eq!(latency(512.0), "512 µs");
        assert_eq!(latency(1234.0), "1.23 ms");
        assert_eq!(latency(2.5e6), "2.50 s");
    }

    #[test]
    fn a_row_with_an_unsupported_case() {
        let counted = Counts {
            allocations: Some(41.3),
            syscalls: Some(4.0),
        };
        let syscalls_only = Counts {
            allocations: None,
            syscalls: Some(3.5),
        };
        let r = Report {
            facts: vec![("cpus".into(), "2".into())],
            method: "method".into(),
            ceiling: vec![],
            rows: vec![Row {
                case: "cache hit".into(),
                cells: [
                    Cell::NotApplicable("edge check: x.yaml:3:5: a|b".into()),
                    done(4000.0),
                    done(2000.0),
                    done(1000.0),
                ],
                counts: [Counts::default(), counted, syscalls_only, syscalls_only],
            }],
            memory: vec![MemoryRow {
                case: "idle".into(),
                cells: [
                    Ok(IdleMemory {
                        connections: 1000,
                        before_kib: 1024,
                        after_kib: 3072,
                    }),
                    Err("no".into()),
                    Ok(IdleMemory {
                        connections: 1000,
                        before_kib: 2048,
                        after_kib: 2048,
                    }),
                    Ok(IdleMemory {
                        connections: 0,
                        before_kib: 0,
                        after_kib: 0,
                    }),
                ],
            }],
        };
        let md = render(&r);
        assert!(
            md.contains(
                "| cache hit | n/a (edge check: x.yaml:3:5: a\\|b) | 4,000 / 512 µs / 1.23 ms \
                 | 2,000 / 512 µs / 1.23 ms | 1,000 / 512 µs / 1.23 ms | – | – | – |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| case | edge rps / p50 / p99 | pingora rps / p50 / p99 | nginx rps / p50 / p99 \
                 | haproxy rps / p50 / p99 | edge/pingora | edge/nginx | edge/haproxy |\n\
                 | --- | --- | --- | --- | --- | --- | --- | --- |\n"
            ),
            "{md}"
        );
        assert_eq!(ratio(&done(3000.0), &done(2000.0)), "1.50×");
        assert_eq!(cpu_ratio(&done(3000.0), &done(2000.0)), "1.50×");
        assert!(
            md.contains(
                "| cache hit | – | 250.0 µs (100% busy) | 500.0 µs (100% busy) \
                 | 1000.0 µs (100% busy) | – | – | – | – | – |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| cache hit | – | 41.3 / 4.00 | n/a / 3.50 | n/a / 3.50 |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| idle | 2.0 KiB (1.0 → 3.0 MiB) | failed: no | 0.0 KiB (2.0 → 2.0 MiB) \
                 | 0.0 KiB (0.0 → 0.0 MiB) |"
            ),
            "{md}"
        );
        assert!(r.failed());
    }

    #[test]
    fn edge_is_shown_beside_its_previous_figure() {
        let mut fast = sample(1e6 / 20.45);
        fast.cpu_us_per_request = 20.45;
        let r = Report {
            facts: vec![],
            method: String::new(),
            ceiling: vec![],
            rows: vec![Row {
                case: PREVIOUS[0].case.to_string(),
                cells: [Cell::Done(fast), done(1000.0), done(1000.0), done(1000.0)],
                counts: Default::default(),
            }],
            memory: vec![],
        };
        let md = render(&r);
        assert!(
            md.contains("| 40.9 µs, 22,556 rps (66470bf) | 2.00× |"),
            "{md}"
        );
        assert!(!r.failed());
    }

    #[test]
    fn counts_take_medians_of_what_was_counted() {
        let runs = [
            Counts {
                allocations: Some(3.0),
                syscalls: Some(9.0),
            },
            Counts {
                allocations: None,
                syscalls: Some(1.0),
            },
            Counts {
                allocations: Some(5.0),
                syscalls: Some(2.0),
            },
        ];
        assert_eq!(
            Counts::median(&runs),
            Counts {
                allocations: Some(4.0),
                syscalls: Some(2.0),
            }
        );
        assert_eq!(Counts::median(&[]), Counts::default());
    }
}
