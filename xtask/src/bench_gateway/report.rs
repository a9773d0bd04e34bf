//! The gateway benchmark's results as Markdown: each case for edge and
//! HAProxy, edge against the case's baseline (the plain case unless the
//! case names another), HAProxy against its plain case, and the goals.

use crate::bench_l7::report::{Cell, cell_text, latency, thousands};
use std::fmt::Write;

/// One proxy's result for one case.
pub struct Measured {
    /// Medians over the runs, or why there are none.
    pub cell: Cell,
    /// Answers of status 400 or more, over every measured run: a policy
    /// refusing requests (a wrong key, an expired token, a limit) measures
    /// fast refusals, not the policy's cost.
    pub non_2xx: u64,
}

impl Measured {
    /// Whether the cell failed or saw refused requests.
    pub fn is_problem(&self) -> bool {
        matches!(self.cell, Cell::Failed(_)) || self.non_2xx > 0
    }
}

/// One case.
pub struct Row {
    /// What the case adds to plain proxying.
    pub case: String,
    /// Index in [`Report::rows`] of the row edge's ratio and goal are
    /// taken against: 0, the plain case, or the same document proxied
    /// without the row's transformation. HAProxy's ratio is always against
    /// HAProxy's plain case.
    pub baseline: usize,
    /// edge.
    pub edge: Measured,
    /// HAProxy, `None` where the benchmark gives it no equivalent.
    pub haproxy: Option<Measured>,
}

/// A goal: edge's requests/s with the policies of `rows[row]` at least
/// `min_ratio` × edge's requests/s in that row's baseline.
pub struct Goal {
    /// Index in [`Report::rows`].
    pub row: usize,
    /// The bound.
    pub min_ratio: f64,
}

/// Everything the report says. The first row is the plain case: HAProxy's
/// ratios are taken against it, edge's against each row's baseline.
pub struct Report {
    /// Date, machine, versions.
    pub facts: Vec<(String, String)>,
    /// How it was measured, Markdown.
    pub method: String,
    /// wrk straight to the origin.
    pub ceiling: Vec<(String, Cell)>,
    /// The cases, plain first; a baseline before the rows taken against it.
    pub rows: Vec<Row>,
    /// The goals.
    pub goals: Vec<Goal>,
}

impl Report {
    /// Cells that failed or saw refused requests.
    pub fn problems(&self) -> usize {
        self.rows
            .iter()
            .flat_map(|r| std::iter::once(&r.edge).chain(r.haproxy.as_ref()))
            .filter(|m| m.is_problem())
            .count()
    }
}

/// What a goal's check found.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// The ratio is at least the bound.
    Met(f64),
    /// It is below.
    NotMet(f64),
    /// A cell answered non-2xx: the ratio means nothing.
    Invalid(f64),
    /// A cell has no measurement.
    NotMeasured,
}

/// The row `row` is taken against, if there is one.
fn baseline<'a>(rows: &'a [Row], row: &Row) -> Option<&'a Row> {
    rows.get(row.baseline)
}

/// Checks `goal` against the rows: the goal's row against its baseline.
pub fn verdict(rows: &[Row], goal: &Goal) -> Verdict {
    let Some(row) = rows.get(goal.row) else {
        return Verdict::NotMeasured;
    };
    let Some(base) = baseline(rows, row) else {
        return Verdict::NotMeasured;
    };
    match (row.edge.cell.sample(), base.edge.cell.sample()) {
        (Some(r), Some(b)) if b.wrk.rps > 0.0 => {
            let ratio = r.wrk.rps / b.wrk.rps;
            if row.edge.non_2xx > 0 || base.edge.non_2xx > 0 {
                Verdict::Invalid(ratio)
            } else if ratio >= goal.min_ratio {
                Verdict::Met(ratio)
            } else {
                Verdict::NotMet(ratio)
            }
        }
        _ => Verdict::NotMeasured,
    }
}

/// The report as Markdown: facts, the table, the goals, the ceiling, the
/// method.
pub fn render(r: &Report) -> String {
    let mut s = String::from("# edge API gateway benchmark\n\n");
    for (what, value) in &r.facts {
        let _ = writeln!(s, "- {what}: {value}");
    }
    s.push_str(
        "\nEach proxy cell: requests/s · p99 latency · the proxy's CPU time per request \
         (medians). \"edge vs baseline\": edge's requests/s over its requests/s in the \
         row's baseline, the plain case unless the case names another (\"vs …\": the same \
         document proxied without the transformation), and the CPU time the row adds per \
         request (1.00× = it costs nothing). \"HAProxy vs plain\": the same against \
         HAProxy's plain case. ⚠ FLAGGED: some answers were not 200, so the cell measured \
         refusals, not the policy.\n\n",
    );
    s.push_str("| case | edge | edge vs baseline | HAProxy | HAProxy vs plain |\n");
    s.push_str("| --- | --- | --- | --- | --- |\n");
    let plain = r.rows.first();
    for (i, row) in r.rows.iter().enumerate() {
        let (haproxy, haproxy_vs) = match (&row.haproxy, plain.and_then(|p| p.haproxy.as_ref())) {
            (Some(h), Some(base)) => (cell_summary(&h.cell, h.non_2xx), versus(h, base)),
            (Some(h), None) => (cell_summary(&h.cell, h.non_2xx), "–".to_string()),
            (None, _) => ("– (not configured)".to_string(), "–".to_string()),
        };
        let base = baseline(&r.rows, row);
        let edge_vs = base.map_or_else(|| "–".to_string(), |b| versus(&row.edge, &b.edge));
        // A baseline other than plain is named with the case.
        let case = match base {
            Some(b) if row.baseline != 0 && row.baseline != i => {
                format!("{} (vs {})", row.case, b.case)
            }
            _ => row.case.clone(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            cell_text(&case),
            cell_text(&cell_summary(&row.edge.cell, row.edge.non_2xx)),
            edge_vs,
            cell_text(&haproxy),
            haproxy_vs,
        );
    }
    if !r.goals.is_empty() {
        s.push_str(
            "\n## Goals\n\nedge's requests/s in the row against edge's requests/s in the row \
             named after the ×, its baseline (same run).\n\n| goal | measured | verdict |\n\
             | --- | --- | --- |\n",
        );
        for goal in &r.goals {
            let row = r.rows.get(goal.row);
            let case = row.map_or("?", |row| row.case.as_str());
            let base = row
                .and_then(|row| baseline(&r.rows, row))
                .map_or("?", |b| b.case.as_str());
            let (measured, verdict) = match verdict(&r.rows, goal) {
                Verdict::Met(x) => (format!("{x:.2}×"), "met".to_string()),
                Verdict::NotMet(x) => (format!("{x:.2}×"), "**not met**".to_string()),
                Verdict::Invalid(x) => (
                    format!("{x:.2}×"),
                    "invalid: answers that were not 200 (see the table)".to_string(),
                ),
                Verdict::NotMeasured => {
                    ("–".to_string(), "not measured (see the table)".to_string())
                }
            };
            let _ = writeln!(
                s,
                "| {} ≥ {:.2} × {} | {measured} | {verdict} |",
                cell_text(case),
                goal.min_ratio,
                cell_text(base),
            );
        }
    }
    if !r.ceiling.is_empty() {
        s.push_str(
            "\nHarness ceiling (wrk straight to the origin, on the same CPU as in the runs above; \
             a result near it is limited by the client side, not the proxy):\n\n",
        );
        for (what, cell) in &r.ceiling {
            let _ = writeln!(s, "- {what}: {}", cell_summary(cell, 0));
        }
    }
    let _ = write!(s, "\n{}\n", r.method.trim_end());
    s
}

/// requests/s · p99 · CPU per request, and any warnings; `non_2xx`
/// answers of status 400 or more flag it.
fn cell_summary(cell: &Cell, non_2xx: u64) -> String {
    match cell {
        Cell::Done(sample) => {
            let mut t = format!(
                "{} · {} · {:.1} µs",
                thousands(sample.wrk.rps),
                latency(sample.wrk.p99_us),
                sample.cpu_us_per_request
            );
            if non_2xx > 0 {
                let _ = write!(
                    t,
                    " ⚠ FLAGGED: {non_2xx} answers were not 200 (a refused key or token?)"
                );
            }
            for n in &sample.notes {
                let _ = write!(t, " ⚠ {n}");
            }
            t
        }
        Cell::NotApplicable(why) => format!("n/a ({why})"),
        Cell::Failed(why) => format!("failed: {why}"),
    }
}

/// `cell` against `base` of the same proxy: the requests/s ratio and the
/// CPU time added per request.
fn versus(cell: &Measured, base: &Measured) -> String {
    match (cell.cell.sample(), base.cell.sample()) {
        (Some(c), Some(p)) if p.wrk.rps > 0.0 => format!(
            "{:.2}× ({:+.1} µs CPU)",
            c.wrk.rps / p.wrk.rps,
            c.cpu_us_per_request - p.cpu_us_per_request
        ),
        _ => "–".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench_l7::{report::Sample, wrk::Measurement};

    fn done(rps: f64, cpu: f64) -> Measured {
        Measured {
            cell: Cell::Done(Sample {
                wrk: Measurement {
                    rps,
                    p50_us: 500.0,
                    p99_us: 1234.0,
                    requests: 100,
                    errors: vec![],
                    failed: 0,
                    non_2xx: 0,
                },
                cpu_us_per_request: cpu,
                cpu_busy: 1.0,
                notes: vec![],
            }),
            non_2xx: 0,
        }
    }

    fn report() -> Report {
        let mut refused = done(90_000.0, 5.0);
        refused.non_2xx = 12;
        Report {
            facts: vec![],
            method: "method".into(),
            ceiling: vec![],
            rows: vec![
                Row {
                    case: "plain".into(),
                    baseline: 0,
                    edge: done(40_000.0, 20.0),
                    haproxy: Some(done(50_000.0, 16.0)),
                },
                Row {
                    case: "API key + local rate limit".into(),
                    baseline: 0,
                    edge: done(36_000.0, 22.5),
                    haproxy: None,
                },
                Row {
                    case: "JWT RS256".into(),
                    baseline: 0,
                    edge: done(20_000.0, 45.0),
                    haproxy: Some(Measured {
                        cell: Cell::NotApplicable("no jwt_verify".into()),
                        non_2xx: 0,
                    }),
                },
                Row {
                    case: "JWT ES256".into(),
                    baseline: 0,
                    edge: refused,
                    haproxy: None,
                },
                Row {
                    case: "plain, same JSON".into(),
                    baseline: 0,
                    edge: done(30_000.0, 25.0),
                    haproxy: None,
                },
                Row {
                    case: "JSON transform".into(),
                    baseline: 4,
                    edge: done(24_000.0, 30.0),
                    haproxy: None,
                },
            ],
            goals: vec![
                Goal {
                    row: 1,
                    min_ratio: 0.85,
                },
                Goal {
                    row: 2,
                    min_ratio: 0.75,
                },
                Goal {
                    row: 3,
                    min_ratio: 0.75,
                },
                Goal {
                    row: 5,
                    min_ratio: 0.7,
                },
            ],
        }
    }

    #[test]
    fn goals_are_checked_against_the_rows_baseline() {
        let mut r = report();
        assert_eq!(verdict(&r.rows, &r.goals[0]), Verdict::Met(0.9));
        assert_eq!(verdict(&r.rows, &r.goals[1]), Verdict::NotMet(0.5));
        assert_eq!(verdict(&r.rows, &r.goals[2]), Verdict::Invalid(2.25));
        // 24,000 against its baseline's 30,000, not plain's 40,000 (0.6×).
        assert_eq!(verdict(&r.rows, &r.goals[3]), Verdict::Met(0.8));
        assert_eq!(r.problems(), 1);
        // A flagged baseline makes the ratio meaningless too.
        r.rows[4].edge.non_2xx = 3;
        assert_eq!(verdict(&r.rows, &r.goals[3]), Verdict::Invalid(0.8));
        // So does a baseline that is not there.
        r.rows[5].baseline = 9;
        assert_eq!(verdict(&r.rows, &r.goals[3]), Verdict::NotMeasured);
    }

    #[test]
    fn the_table_shows_ratios_to_each_rows_baseline() {
        let md = render(&report());
        assert!(
            md.contains("| case | edge | edge vs baseline | HAProxy | HAProxy vs plain |\n"),
            "{md}"
        );
        assert!(
            md.contains(
                "| plain | 40,000 · 1.23 ms · 20.0 µs | 1.00× (+0.0 µs CPU) \
                 | 50,000 · 1.23 ms · 16.0 µs | 1.00× (+0.0 µs CPU) |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| API key + local rate limit | 36,000 · 1.23 ms · 22.5 µs | 0.90× (+2.5 µs CPU) \
                 | – (not configured) | – |"
            ),
            "{md}"
        );
        assert!(md.contains("| n/a (no jwt_verify) | – |"), "{md}");
        assert!(md.contains("⚠ FLAGGED: 12 answers were not 200"), "{md}");
        assert!(
            md.contains("| API key + local rate limit ≥ 0.85 × plain | 0.90× | met |"),
            "{md}"
        );
        assert!(
            md.contains("| JWT RS256 ≥ 0.75 × plain | 0.50× | **not met** |"),
            "{md}"
        );
        assert!(
            md.contains("| JWT ES256 ≥ 0.75 × plain | 2.25× | invalid"),
            "{md}"
        );
        // A baseline other than plain: named with the case, and in its goal;
        // the baseline itself is against plain.
        assert!(
            md.contains(
                "| plain, same JSON | 30,000 · 1.23 ms · 25.0 µs | 0.75× (+5.0 µs CPU) \
                 | – (not configured) | – |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| JSON transform (vs plain, same JSON) | 24,000 · 1.23 ms · 30.0 µs \
                 | 0.80× (+5.0 µs CPU) | – (not configured) | – |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| JSON transform ≥ 0.70 × plain, same JSON | 0.80× | met |"),
            "{md}"
        );
    }
}
