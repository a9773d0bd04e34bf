//! The end-to-end results as Markdown: each figure's median over the
//! rounds with its spread, the ratios of the medians with the range of the
//! same ratio round by round, and every round's own figures.

use super::{Lb, Load, Options, PLAN, WARMUP_SECS, fmt_us, paths::PORT_RANGE};
use crate::bench_l7::wrk::Measurement;
use std::fmt::Write as _;

/// Where a cell ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Slot {
    /// The round (from 0).
    pub round: u32,
    /// The path's place in that round's order (from 0).
    pub position: usize,
    /// The path.
    pub lb: Lb,
}

/// One measured cell: one path, one load, one round.
#[derive(Clone, Debug)]
pub(super) struct Sample {
    /// Where it ran.
    pub slot: Slot,
    /// Which load.
    pub load: Load,
    /// What wrk saw.
    pub wrk: Measurement,
    /// CPU of the whole lab per request, microseconds.
    pub lab_cpu_us: f64,
    /// CPU of the LB itself per request, microseconds, where measurable.
    pub lb_cpu_us: Option<f64>,
    /// Share of the machine's CPU (0 to 1) that other work used meanwhile.
    pub others: f64,
    /// SYNs the client and the LB host had to send again.
    pub syn_retrans: u64,
    /// What makes the cell suspect, if anything.
    pub notes: Vec<String>,
}

/// A figure over the rounds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Spread {
    /// The middle value (the mean of the middle two for an even count).
    pub median: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
    /// How many values.
    pub n: usize,
}

impl Spread {
    /// Median, minimum and maximum of the finite `values`; `None` if there
    /// are none.
    pub(super) fn of(values: impl IntoIterator<Item = f64>) -> Option<Self> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = match n {
            0 => return None,
            _ if n % 2 == 1 => v[n / 2],
            _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        };
        Some(Self {
            median,
            min: v[0],
            max: v[n - 1],
            n,
        })
    }

    /// Half the range as a percentage of the median.
    pub(super) fn half_range_pct(&self) -> f64 {
        if self.median.abs() > 0.0 {
            (self.max - self.min) / 2.0 / self.median.abs() * 100.0
        } else {
            0.0
        }
    }

    /// The median in `unit`, and half the range as a share of it:
    /// `6104/s ±4%` (the median alone for a single value).
    fn show(&self, unit: impl Fn(f64) -> String) -> String {
        if self.n < 2 {
            unit(self.median)
        } else {
            format!("{} ±{:.0}%", unit(self.median), self.half_range_pct())
        }
    }
}

/// The results as Markdown, rows in the order of `lbs`.
pub(super) fn render(samples: &[Sample], lbs: &[Lb], opts: &Options) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "wrk -t1 -c{c} -d{d}s (after {w}s of the same load) from the client namespace to the VIP, \
         {b} backends; {r} rounds, each path set up afresh in each, in an order rotated from round \
         to round, the two loads swapped every other round. Each figure is the median over the \
         rounds ± half their range as a share of the median; CPU per request in microseconds; \
         errors and SYN retransmissions are totals over the rounds. The client and the LB host \
         run with ip_local_port_range {ports} and tcp_tw_reuse 1; nftables' conntrack table is \
         emptied before each of its cells; the baseline reaches the same backends through an \
         ECMP route on the client.",
        ports = PORT_RANGE,
        c = opts.connections,
        d = opts.duration,
        w = WARMUP_SECS,
        b = PLAN.backends.len(),
        r = opts.rounds,
    );
    if opts.rounds < 3 {
        let _ = writeln!(
            t,
            "\nFewer than three rounds: the spreads say little; run with --rounds 3 or more."
        );
    }
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "| load | through | rate | p50 | p99 | errors | SYN retransmits | lab CPU µs/req | LB's own CPU µs/req |"
    );
    let _ = writeln!(
        t,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for load in Load::ALL {
        for &lb in lbs {
            let c = cells(samples, lb, load);
            if c.is_empty() {
                continue;
            }
            let show = |s: Option<Spread>, unit: fn(f64) -> String| {
                s.map_or_else(|| "–".to_string(), |s| s.show(unit))
            };
            let own = figure(&c, |s| s.lb_cpu_us);
            let own = match lb {
                Lb::Edge => format!("{} (XDP program)", show(own, us2)),
                Lb::Haproxy => format!("{} (process)", show(own, us2)),
                Lb::Nftables => "in softirq, see lab".to_string(),
                Lb::Direct => "–".to_string(),
            };
            let _ = writeln!(
                t,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {own} |",
                load.label(),
                lb.label(),
                show(figure(&c, |s| Some(s.wrk.rps)), rate),
                show(figure(&c, |s| Some(s.wrk.p50_us)), fmt_us),
                show(figure(&c, |s| Some(s.wrk.p99_us)), fmt_us),
                errors(&c),
                c.iter().map(|s| s.syn_retrans).sum::<u64>(),
                show(figure(&c, |s| Some(s.lab_cpu_us)), us1),
            );
        }
    }
    ratios(&mut t, samples);
    if let Some(o) = Spread::of(samples.iter().map(|s| s.others * 100.0)) {
        let _ = writeln!(
            t,
            "\nOther work on the machine while the cells ran: median {:.0}%, at most {:.0}% of \
             its CPU.",
            o.median, o.max
        );
    }
    let notes: Vec<String> = samples
        .iter()
        .flat_map(|s| {
            s.notes.iter().map(move |n| {
                format!(
                    "- round {}, {}, {}: {n}",
                    s.slot.round + 1,
                    s.slot.lb.label(),
                    s.load.label()
                )
            })
        })
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(t, "\nNotes:\n{}", notes.join("\n"));
    }
    rounds(&mut t, samples);
    t
}

/// The ratio rows: edge against nftables and HAProxy, from the medians.
fn ratios(t: &mut String, samples: &[Sample]) {
    let mut rows = Vec::new();
    for load in Load::ALL {
        let base = cells(samples, Lb::Direct, load);
        let edge = cells(samples, Lb::Edge, load);
        if edge.is_empty() {
            continue;
        }
        for other in [Lb::Nftables, Lb::Haproxy] {
            let o = cells(samples, other, load);
            if o.is_empty() {
                continue;
            }
            let ratio = |f: fn(&Sample) -> f64| {
                let m = match (median_of(&edge, f), median_of(&o, f)) {
                    (Some(e), Some(x)) if x > 0.0 => Some(e / x),
                    _ => None,
                };
                ratio_text(m, round_ratios(&edge, &o, f))
            };
            let over = match (
                median_of(&base, lab_cpu),
                median_of(&edge, lab_cpu),
                median_of(&o, lab_cpu),
            ) {
                (Some(b), Some(e), Some(x)) => {
                    let (e, x) = (e - b, x - b);
                    if x > 0.0 {
                        let rounds = round_over_base(&edge, &o, &base);
                        format!("{} ({e:.1} vs {x:.1} µs)", ratio_text(Some(e / x), rounds))
                    } else {
                        format!("{e:.1} vs {x:.1} µs")
                    }
                }
                _ => "–".to_string(),
            };
            rows.push(format!(
                "| {} | edge / {} | {} | {} | {} | {over} |",
                load.label(),
                other.label(),
                ratio(rps),
                ratio(p99),
                ratio(lab_cpu),
            ));
        }
    }
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        t,
        "\nRatios of the medians; in brackets the lowest and highest of the same ratio taken \
         within each round. \"Over baseline\" is lab CPU per request minus the direct \
         baseline's: what the load balancer adds to the lab.\n"
    );
    let _ = writeln!(
        t,
        "| load | ratio | rate | p99 | lab CPU per request | lab CPU over baseline |"
    );
    let _ = writeln!(t, "| --- | --- | ---: | ---: | ---: | ---: |");
    for row in rows {
        let _ = writeln!(t, "{row}");
    }
}

/// Every cell, in the order it ran, with its round and its place in the
/// round's order.
fn rounds(t: &mut String, samples: &[Sample]) {
    let _ = writeln!(t, "\nEvery cell, in the order measured:\n");
    let _ = writeln!(
        t,
        "| round | place | load | through | rate | p99 | errors | SYN retransmits | lab CPU µs/req | LB's own CPU µs/req | other work |"
    );
    let _ = writeln!(
        t,
        "| ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for s in samples {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {} | {:.0}% |",
            s.slot.round + 1,
            s.slot.position + 1,
            s.load.label(),
            s.slot.lb.label(),
            rate(s.wrk.rps),
            fmt_us(s.wrk.p99_us),
            s.wrk.failed,
            s.syn_retrans,
            s.lab_cpu_us,
            s.lb_cpu_us.map_or_else(|| "–".to_string(), us2),
            s.others * 100.0,
        );
    }
}

/// The samples of `lb` under `load`, in the order they ran.
fn cells(samples: &[Sample], lb: Lb, load: Load) -> Vec<&Sample> {
    samples
        .iter()
        .filter(|s| s.slot.lb == lb && s.load == load)
        .collect()
}

/// `f` over `cells`, where it has a value.
fn figure(cells: &[&Sample], f: impl Fn(&Sample) -> Option<f64>) -> Option<Spread> {
    Spread::of(cells.iter().copied().filter_map(f))
}

/// The median of `f` over `cells`.
fn median_of(cells: &[&Sample], f: fn(&Sample) -> f64) -> Option<f64> {
    Spread::of(cells.iter().copied().map(f)).map(|s| s.median)
}

/// `f(a) / f(b)` within each round that measured both: how steady the
/// ratio was from round to round.
fn round_ratios(a: &[&Sample], b: &[&Sample], f: fn(&Sample) -> f64) -> Option<Spread> {
    Spread::of(a.iter().filter_map(|x| {
        let y = b.iter().find(|y| y.slot.round == x.slot.round)?;
        let d = f(y);
        (d > 0.0).then_some(f(x) / d)
    }))
}

/// `(edge - base) / (other - base)` of lab CPU within each round that
/// measured all three.
fn round_over_base(edge: &[&Sample], other: &[&Sample], base: &[&Sample]) -> Option<Spread> {
    Spread::of(edge.iter().filter_map(|e| {
        let round = e.slot.round;
        let o = other.iter().find(|s| s.slot.round == round)?;
        let b = base.iter().find(|s| s.slot.round == round)?;
        let d = o.lab_cpu_us - b.lab_cpu_us;
        (d > 0.0).then_some((e.lab_cpu_us - b.lab_cpu_us) / d)
    }))
}

/// A ratio, and the range of the same ratio over the rounds.
fn ratio_text(median: Option<f64>, rounds: Option<Spread>) -> String {
    match (median, rounds) {
        (None, _) => "–".to_string(),
        (Some(m), Some(r)) if r.n > 1 => format!("{m:.2} ({:.2}–{:.2})", r.min, r.max),
        (Some(m), _) => format!("{m:.2}"),
    }
}

/// Total failed requests, and in how many rounds any failed.
fn errors(cells: &[&Sample]) -> String {
    let total: u64 = cells.iter().map(|s| s.wrk.failed).sum();
    let rounds = cells.iter().filter(|s| s.wrk.failed > 0).count();
    if total == 0 {
        "0".to_string()
    } else {
        format!("{total} ({rounds} of {} rounds)", cells.len())
    }
}

fn rps(s: &Sample) -> f64 {
    s.wrk.rps
}

fn p99(s: &Sample) -> f64 {
    s.wrk.p99_us
}

fn lab_cpu(s: &Sample) -> f64 {
    s.lab_cpu_us
}

fn rate(v: f64) -> String {
    format!("{v:.0}/s")
}

fn us1(v: f64) -> String {
    format!("{v:.1}")
}

fn us2(v: f64) -> String {
    format!("{v:.2}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(round: u32, lb: Lb, load: Load, rps: f64, lab_cpu_us: f64) -> Sample {
        Sample {
            slot: Slot {
                round,
                position: 0,
                lb,
            },
            load,
            wrk: Measurement {
                rps,
                p50_us: 500.0,
                p99_us: 2000.0,
                requests: 1000,
                errors: Vec::new(),
                failed: 0,
                non_2xx: 0,
            },
            lab_cpu_us,
            lb_cpu_us: None,
            others: 0.1,
            syn_retrans: 0,
            notes: Vec::new(),
        }
    }

    fn opts(rounds: u32) -> Options {
        Options {
            duration: 6,
            connections: 32,
            rounds,
            no_testrun: true,
            only: Vec::new(),
        }
    }

    #[test]
    fn spread_is_median_and_range() {
        let s = Spread::of([4.0, 1.0, 3.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (3.0, 1.0, 4.0, 3));
        assert_eq!(Spread::of([4.0, 1.0, 3.0, 2.0]).unwrap().median, 2.5);
        assert_eq!(Spread::of([f64::NAN, 2.0]).unwrap().n, 1);
        assert!(Spread::of(Vec::<f64>::new()).is_none());
        let s = Spread::of([90.0, 100.0, 110.0]).unwrap();
        assert!((s.half_range_pct() - 10.0).abs() < 1e-9);
        assert_eq!(s.show(rate), "100/s ±10%");
        assert_eq!(Spread::of([7.0]).unwrap().show(rate), "7/s");
    }

    #[test]
    fn ratios_come_from_the_medians_with_the_rounds_range() {
        let nc = Load::NewConnections;
        let mut samples = Vec::new();
        // Baseline 100 µs; edge adds 10, 12, 14; nftables 30, 40, 50; the
        // third round's outlier rate does not move the medians.
        let figures = [
            (110.0, 130.0, 1000.0),
            (112.0, 140.0, 1000.0),
            (114.0, 150.0, 9000.0),
        ];
        for (round, (e, n, edge_rps)) in (0..).zip(figures) {
            samples.push(sample(round, Lb::Direct, nc, 1000.0, 100.0));
            samples.push(sample(round, Lb::Edge, nc, edge_rps, e));
            samples.push(sample(round, Lb::Nftables, nc, 1000.0, n));
        }
        let lbs = [Lb::Direct, Lb::Edge, Lb::Nftables];
        let md = render(&samples, &lbs, &opts(3));
        let row = md
            .lines()
            .find(|l| l.starts_with("| new connections/s | edge / nftables DNAT |"))
            .unwrap_or_else(|| panic!("no ratio row in:\n{md}"));
        // Rate: medians 1000 / 1000; per round 1, 1, 9.
        assert!(row.contains("| 1.00 (1.00–9.00) |"), "{row}");
        // Over baseline: medians 12 / 40 = 0.30; per round 0.33, 0.30, 0.28.
        assert!(
            row.contains("| 0.30 (0.28–0.33) (12.0 vs 40.0 µs) |"),
            "{row}"
        );
        assert!(
            md.contains("| new connections/s | edge XDP (DSR) | 1000/s ±400% |"),
            "{md}"
        );
        assert!(!md.contains("Fewer than three rounds"));
        assert!(render(&samples, &lbs, &opts(1)).contains("Fewer than three rounds"));
    }

    #[test]
    fn errors_and_notes_are_shown() {
        let mut a = sample(0, Lb::Haproxy, Load::KeepAlive, 10.0, 1.0);
        a.wrk.failed = 5;
        a.notes.push("something odd".into());
        let b = sample(1, Lb::Haproxy, Load::KeepAlive, 10.0, 1.0);
        let md = render(&[a, b], &[Lb::Haproxy], &opts(2));
        assert!(md.contains("| 5 (1 of 2 rounds) |"), "{md}");
        assert!(
            md.contains("- round 1, HAProxy tcp, requests/s (keep-alive): something odd"),
            "{md}"
        );
        // No edge, no ratio table.
        assert!(!md.contains("| load | ratio |"), "{md}");
    }
}
