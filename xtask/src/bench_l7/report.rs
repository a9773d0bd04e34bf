//! The benchmark's results as a Markdown table.

use super::wrk::Measurement;
use std::fmt::Write;

/// The proxies compared, in column order.
pub const PROXIES: [&str; 3] = ["edge", "nginx", "haproxy"];

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
pub enum Cell {
    /// Measured: medians over several runs.
    Done(Sample),
    /// Not measured, and why (edge does not support the case yet).
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

/// One case across the proxies, cells in [`PROXIES`] order.
pub struct Row {
    /// What was measured.
    pub case: String,
    /// edge, nginx, HAProxy.
    pub cells: [Cell; 3],
}

impl Row {
    /// Whether any cell failed (as opposed to being measured or n/a).
    pub fn failed(&self) -> bool {
        self.cells.iter().any(|c| matches!(c, Cell::Failed(_)))
    }
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
}

/// The report as Markdown: facts, the table, the ceiling, the method.
pub fn render(r: &Report) -> String {
    let mut s = String::from("# edge L7 benchmark\n\n");
    for (what, value) in &r.facts {
        let _ = writeln!(s, "- {what}: {value}");
    }
    s.push_str(
        "\nEach cell: requests/s / p50 / p99 latency. Ratios are requests/s \
         (above 1 means edge is faster).\n\n",
    );
    s.push_str(
        "| case | edge rps / p50 / p99 | nginx rps / p50 / p99 | haproxy rps / p50 / p99 | edge/nginx | edge/haproxy |\n",
    );
    s.push_str("| --- | --- | --- | --- | --- | --- |\n");
    for row in &r.rows {
        let [edge, nginx, haproxy] = &row.cells;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            cell_text(&row.case),
            cell_text(&edge.render()),
            cell_text(&nginx.render()),
            cell_text(&haproxy.render()),
            ratio(edge, nginx),
            ratio(edge, haproxy),
        );
    }
    s.push_str(
        "\nCPU time the proxy used per request (all its processes and threads; lower is better), \
         and how busy it kept its core. This is steadier than requests/s on a shared machine: \
         time taken by other work does not count.\n\n",
    );
    s.push_str("| case | edge | nginx | haproxy | edge/nginx | edge/haproxy |\n");
    s.push_str("| --- | --- | --- | --- | --- | --- |\n");
    for row in &r.rows {
        let [edge, nginx, haproxy] = &row.cells;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            cell_text(&row.case),
            cpu_text(edge),
            cpu_text(nginx),
            cpu_text(haproxy),
            cpu_ratio(edge, nginx),
            cpu_ratio(edge, haproxy),
        );
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
        let r = Report {
            facts: vec![("cpus".into(), "2".into())],
            method: "method".into(),
            ceiling: vec![],
            rows: vec![Row {
                case: "cache hit".into(),
                cells: [
                    Cell::NotApplicable("edge check: x.yaml:3:5: a|b".into()),
                    done(2000.0),
                    done(1000.0),
                ],
            }],
        };
        let md = render(&r);
        assert!(
            md.contains(
                "| cache hit | n/a (edge check: x.yaml:3:5: a\\|b) | 2,000 / 512 µs / 1.23 ms \
                 | 1,000 / 512 µs / 1.23 ms | – | – |"
            ),
            "{md}"
        );
        assert_eq!(ratio(&done(3000.0), &done(2000.0)), "1.50×");
        assert_eq!(cpu_ratio(&done(3000.0), &done(2000.0)), "1.50×");
        assert!(
            md.contains("| cache hit | – | 500.0 µs (100% busy) | 1000.0 µs (100% busy) | – | – |"),
            "{md}"
        );
    }
}
