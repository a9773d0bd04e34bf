//! `cargo xtask bench gateway`: what edge's API gateway policies cost,
//! next to HAProxy doing the equivalent, all on 127.0.0.1.
//!
//! One run measures requests/s, p99 latency (wrk) and the proxy's CPU
//! time per request for plain proxying of a 13-byte response, then for
//! the same with an API key, a JWT (RS256, ES256), a local rate limit,
//! an API key with a local rate limit, and an API key with a rate limit
//! counted in Redis; HAProxy plain, with `jwt_verify` and with a
//! stick-table rate limit. Then edge working on bodies: a JSON response
//! transformation (~1 KB), XML turned into JSON (~10 KB), each after the
//! same document proxied plain on the same route, and an aggregation of
//! three upstream calls, their upstream a backend of their own (see
//! [`transform`]). Each case is set against its baseline (see
//! [`Case::baseline`]: the same proxy's plain case, or for the JSON and
//! XML rows the same document proxied plain), and edge's against the
//! goals (API key + local rate limit at least 0.85 × plain, JWT at least
//! 0.75 × plain, JSON transformation at least 0.7 × the same JSON proxied
//! plain, XML → JSON at least 0.5 × the same XML proxied plain).
//!
//! It reuses `bench l7`'s machinery: the origin, the CPU layout (the proxy
//! on one core with one worker; origin, Redis and wrk on the other), the
//! process guards, wrk and its parsing, medians over [`ROUNDS`] runs.
//! Every run starts the proxy with the case's configuration (checked once
//! first: one edge or HAProxy rejects is n/a), checks that a request with
//! the case's credential answers 200, warms up and measures; a cell whose
//! answers were not all 200 is flagged, not reported as a fast refusal.

mod configs;
mod jwt;
mod redis;
mod report;
mod transform;

use crate::{
    bench_l7::{
        self, Cpus, LOAD, ROUNDS, SMALL, WARMUP,
        configs::SMALL_PATH,
        interrupted,
        proc::{NICENESS, Proc},
        report::{Cell, Sample},
        wrk,
    },
    toolchain,
};
use anyhow::{Context, Result, bail};
use configs::Policy;
use report::{Goal, Measured, Report, Row};
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

/// What the benchmark runs: the origin (nginx), HAProxy, the load
/// generator, the key tool, the probe, and Redis.
const PACKAGES: &[&str] = &["nginx", "haproxy", "wrk", "openssl", "curl", "redis-server"];

/// The proxies compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proxy {
    Edge,
    Haproxy,
}

impl Proxy {
    fn name(self) -> &'static str {
        match self {
            Proxy::Edge => "edge",
            Proxy::Haproxy => "HAProxy",
        }
    }

    /// For file names.
    fn slug(self) -> &'static str {
        match self {
            Proxy::Edge => "edge",
            Proxy::Haproxy => "haproxy",
        }
    }

    fn config_extension(self) -> &'static str {
        match self {
            Proxy::Edge => "yaml",
            Proxy::Haproxy => "cfg",
        }
    }
}

/// One row of the table.
struct Case {
    /// What the row says.
    name: &'static str,
    /// What edge (and HAProxy) put in front of plain proxying.
    policy: Policy,
    /// Whether HAProxy runs the case too (see [`configs::haproxy`]).
    /// Its ratio is always against HAProxy's plain case.
    haproxy: bool,
    /// Index in [`CASES`] of the row edge's ratio and goal are taken
    /// against: 0 (plain) unless the row works on a body that the plain
    /// case does not have, then the same document proxied plain.
    baseline: usize,
    /// edge's goal: at least this share of its baseline's requests/s.
    goal: Option<f64>,
}

/// The row of [`Policy::PlainJson`] in [`CASES`]: the JSON row's baseline.
const PLAIN_JSON_ROW: usize = 7;
/// The row of [`Policy::PlainXml`] in [`CASES`]: the XML row's baseline.
const PLAIN_XML_ROW: usize = 9;

/// The cases, plain first: the baseline of every row but the JSON and
/// XML ones, which have theirs right before them.
const CASES: [Case; 12] = [
    Case {
        name: "plain proxy (no policies)",
        policy: Policy::Plain,
        haproxy: true,
        baseline: 0,
        goal: None,
    },
    Case {
        name: "API key",
        policy: Policy::ApiKey,
        haproxy: false,
        baseline: 0,
        goal: None,
    },
    Case {
        name: "JWT RS256 (RSA 2048)",
        policy: Policy::JwtRs256,
        haproxy: true,
        baseline: 0,
        goal: Some(0.75),
    },
    Case {
        name: "JWT ES256 (P-256)",
        policy: Policy::JwtEs256,
        haproxy: true,
        baseline: 0,
        goal: Some(0.75),
    },
    Case {
        name: "local rate limit per client IP",
        policy: Policy::LocalLimit,
        haproxy: true,
        baseline: 0,
        goal: None,
    },
    Case {
        name: "API key + local rate limit per consumer",
        policy: Policy::ApiKeyLocalLimit,
        haproxy: false,
        baseline: 0,
        goal: Some(0.85),
    },
    Case {
        name: "API key + Redis rate limit per consumer",
        policy: Policy::ApiKeyRedisLimit,
        haproxy: false,
        baseline: 0,
        goal: None,
    },
    Case {
        name: "plain proxy, same ~1 KB JSON",
        policy: Policy::PlainJson,
        haproxy: false,
        baseline: 0,
        goal: None,
    },
    Case {
        name: "JSON response transform (remove, rename, set), ~1 KB",
        policy: Policy::JsonTransform,
        haproxy: false,
        baseline: PLAIN_JSON_ROW,
        goal: Some(0.7),
    },
    Case {
        name: "plain proxy, same ~10 KB XML",
        policy: Policy::PlainXml,
        haproxy: false,
        baseline: 0,
        goal: None,
    },
    Case {
        name: "XML → JSON, ~10 KB XML",
        policy: Policy::XmlToJson,
        haproxy: false,
        baseline: PLAIN_XML_ROW,
        goal: Some(0.5),
    },
    // One client request answered from three upstream calls against one
    // proxied small answer: against plain.
    Case {
        name: "aggregate of 3 upstream calls (small JSON each)",
        policy: Policy::Aggregate,
        haproxy: false,
        baseline: 0,
        goal: None,
    },
];

/// One proxy on one case: its configuration, where it listens, what each
/// request carries, and the results so far.
struct Slot {
    proxy: Proxy,
    policy: Policy,
    case: &'static str,
    port: u16,
    config: PathBuf,
    headers: Vec<String>,
    samples: Vec<Sample>,
    /// Answers of status 400 or more over its measured runs.
    non_2xx: u64,
    /// The cell, once decided without (more) runs: n/a or failed.
    fixed: Option<Cell>,
}

impl Slot {
    /// Medians over its runs, unless decided otherwise.
    fn finish(self) -> Measured {
        let samples = self.samples;
        let cell = self
            .fixed
            .or_else(|| Cell::median(samples))
            .unwrap_or_else(|| Cell::Failed("no run".into()));
        Measured {
            cell,
            non_2xx: self.non_2xx,
        }
    }
}

/// Installs what is missing, builds edge (release), runs every case, prints
/// the table and writes it to `target/bench/gateway.md`.
pub fn run(root: &Path) -> Result<()> {
    toolchain::ensure_packages(PACKAGES)?;
    let edge_bin = crate::build(root, true)?;
    bench_l7::catch_signals();
    let nproc = std::thread::available_parallelism().map_or(1, usize::from);
    let cpus = Cpus::for_machine(nproc);
    let mut facts = bench_l7::machine_facts(root, &edge_bin, nproc);
    facts.push((
        "Redis".into(),
        bench_l7::first_line("redis-server", &["--version"]),
    ));

    // Declared first, dropped last: every process is stopped before the
    // directory goes.
    let tmp = tempfile::Builder::new()
        .prefix("edge-bench-gateway-")
        .tempdir()?;
    let dir = tmp.path();
    println!("xtask: {}", cpus.describe());
    println!("xtask: making the JWT keys and tokens");
    let tokens = jwt::make(dir)?;

    let slot_count = CASES.len() + CASES.iter().filter(|c| c.haproxy).count();
    let ports = bench_l7::free_ports(3 + slot_count)?;
    let (origin_port, redis_port, backend_port) = (ports[0], ports[1], ports[2]);
    let mut origin = bench_l7::start_origin(dir, origin_port, cpus.origin.as_deref())?;
    // Redis shares the origin's CPU: client-side work, off the proxy's core.
    let redis_server = redis::start(dir, redis_port, cpus.origin.as_deref()).map_err(|e| {
        let why = format!("Redis did not start: {e:#}");
        println!("xtask: {why}");
        why
    });
    interrupted()?;
    // The body rows' upstream, also on the origin's CPU.
    let mut backend =
        transform::start_backend(dir, backend_port, cpus.origin.as_deref()).map_err(|e| {
            let why = format!("the backend of the body rows did not start: {e:#}");
            println!("xtask: {why}");
            why
        });
    interrupted()?;

    let mut slots = Vec::with_capacity(slot_count);
    let mut free = ports[3..].iter().copied();
    for case in &CASES {
        for proxy in [Proxy::Edge, Proxy::Haproxy] {
            if proxy == Proxy::Haproxy && !case.haproxy {
                continue;
            }
            let port = free.next().context("too few ports")?;
            let text = match proxy {
                Proxy::Edge => {
                    configs::edge(case.policy, port, origin_port, redis_port, backend_port)
                }
                Proxy::Haproxy => configs::haproxy(case.policy, port, origin_port, dir)
                    .with_context(|| format!("no HAProxy configuration for {}", case.name))?,
            };
            let config = dir.join(format!(
                "{}-{}.{}",
                proxy.slug(),
                case.policy.slug(),
                proxy.config_extension()
            ));
            std::fs::write(&config, text)?;
            let mut fixed = check(proxy, &edge_bin, dir, &config)?;
            if let Some(Cell::NotApplicable(why)) = &fixed {
                println!("xtask: {}, {}: n/a ({why})", proxy.name(), case.name);
            }
            if fixed.is_none()
                && case.policy.uses_redis()
                && let Err(why) = &redis_server
            {
                fixed = Some(Cell::Failed(why.clone()));
            }
            if fixed.is_none()
                && case.policy.uses_backend()
                && let Err(why) = &backend
            {
                fixed = Some(Cell::Failed(why.clone()));
            }
            slots.push(Slot {
                proxy,
                policy: case.policy,
                case: case.name,
                port,
                config,
                headers: configs::headers(case.policy, &tokens),
                samples: Vec::new(),
                non_2xx: 0,
                fixed,
            });
        }
    }

    println!("xtask: measuring the harness ceiling, 13 B");
    let url = bench_l7::plain_url(origin_port, SMALL_PATH);
    let ceiling = match measure(&mut origin, Policy::Plain, &url, &[], &cpus, dir, None) {
        Ok((sample, _)) => Cell::Done(sample),
        Err(e) => {
            interrupted()?;
            Cell::Failed(format!("{e:#}"))
        }
    };

    // Round-robin over every cell, so that a disturbance of the shared
    // machine hits a case and its baseline alike.
    for round in 1..=ROUNDS {
        for slot in slots.iter_mut() {
            if slot.fixed.is_some() {
                continue;
            }
            println!(
                "xtask: {}, {}, run {round}/{ROUNDS}",
                slot.proxy.name(),
                slot.case
            );
            let counted_in = slot.policy.uses_redis().then_some(redis_port);
            match run_once(slot, &edge_bin, &cpus, dir, counted_in) {
                Ok((sample, non_2xx)) => {
                    slot.samples.push(sample);
                    slot.non_2xx += non_2xx;
                }
                Err(e) => {
                    // Ctrl-C ends the run; anything else this cell.
                    interrupted()?;
                    println!("xtask:   {} failed: {e:#}", slot.proxy.name());
                    slot.fixed = Some(Cell::Failed(format!("{e:#}")));
                }
            }
            origin.check_running()?;
            if slot.policy.uses_backend()
                && let Ok(backend) = backend.as_mut()
            {
                backend.check_running()?;
            }
        }
    }
    drop(backend);
    drop(redis_server);
    drop(origin);

    let mut finished: Vec<(Proxy, Policy, Measured)> = slots
        .into_iter()
        .map(|s| (s.proxy, s.policy, s.finish()))
        .collect();
    let mut take = |proxy: Proxy, policy: Policy| -> Option<Measured> {
        let i = finished
            .iter()
            .position(|(p, q, _)| *p == proxy && *q == policy)?;
        Some(finished.swap_remove(i).2)
    };
    let mut rows = Vec::new();
    let mut goals = Vec::new();
    for (i, case) in CASES.iter().enumerate() {
        let edge = take(Proxy::Edge, case.policy).unwrap_or_else(|| Measured {
            cell: Cell::Failed("not run".into()),
            non_2xx: 0,
        });
        rows.push(Row {
            case: case.name.to_string(),
            baseline: case.baseline,
            edge,
            haproxy: take(Proxy::Haproxy, case.policy),
        });
        if let Some(min_ratio) = case.goal {
            goals.push(Goal { row: i, min_ratio });
        }
    }

    facts.push(("load average at end".into(), bench_l7::loadavg()));
    let report = Report {
        facts,
        method: method(&cpus),
        ceiling: vec![("origin, 13 B".into(), ceiling)],
        rows,
        goals,
    };
    bench_l7::write_report(root, "gateway.md", &report::render(&report))?;
    let problems = report.problems();
    if problems > 0 {
        bail!("{problems} cells failed or had answers that were not 200 (see the table)");
    }
    Ok(())
}

/// Whether the proxy accepts `config`: `None` if so, else an n/a cell with
/// the first complaint.
fn check(proxy: Proxy, edge_bin: &Path, dir: &Path, config: &Path) -> Result<Option<Cell>> {
    let rejected = match proxy {
        Proxy::Edge => {
            bench_l7::edge_check(edge_bin, dir, config)?.map(|first| format!("edge check: {first}"))
        }
        Proxy::Haproxy => haproxy_check(dir, config)?.map(|first| format!("haproxy -c: {first}")),
    };
    Ok(rejected.map(Cell::NotApplicable))
}

/// `haproxy -c -f FILE`: `None` if HAProxy accepts it, else its first
/// alert (an older HAProxy lacks `jwt_verify`, for one), the file named
/// without the temporary directory `dir`.
fn haproxy_check(dir: &Path, config: &Path) -> Result<Option<String>> {
    let out = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(config)
        .output()
        .context("running haproxy -c")?;
    if out.status.success() {
        return Ok(None);
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let lines = || text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines()
        .find(|l| l.contains("ALERT"))
        .or_else(|| lines().next())
        .unwrap_or("rejected, no message");
    Ok(Some(first.replace(&format!("{}/", dir.display()), "")))
}

/// One run of `slot`: starts its proxy, waits until a request with its
/// headers answers 200, measures (see [`measure`]), stops the proxy.
fn run_once(
    slot: &Slot,
    edge_bin: &Path,
    cpus: &Cpus,
    dir: &Path,
    redis_port: Option<u16>,
) -> Result<(Sample, u64)> {
    interrupted()?;
    let config = slot
        .config
        .to_str()
        .context("temporary path is not UTF-8")?;
    let log = dir.join(format!("{}-{}.log", slot.proxy.slug(), slot.policy.slug()));
    let mut server = match slot.proxy {
        Proxy::Edge => Proc::spawn(
            "edge",
            cpus.proxy.as_deref(),
            edge_bin,
            &["run", "--config", config],
            &log,
            // SIGINT stops at once; SIGTERM would wait out the drain period.
            libc::SIGINT,
        )?,
        Proxy::Haproxy => bench_l7::spawn_haproxy(&slot.config, cpus.proxy.as_deref(), &log)?,
    };
    let url = bench_l7::plain_url(slot.port, slot.policy.path());
    if slot.policy.uses_backend() {
        transform::wait_answers(&mut server, slot.policy, &url, &slot.headers)?;
    } else {
        bench_l7::wait_answers_with(&mut server, &url, &slot.headers, SMALL)?;
    }
    let measured = measure(
        &mut server,
        slot.policy,
        &url,
        &slot.headers,
        cpus,
        dir,
        redis_port,
    );
    server.stop();
    measured
}

/// One measurement through `server` at `url`, every request with
/// `headers`: checks that one answers 200 with the 13-byte body (for a
/// body row, with `policy`'s document, transformed or, for a plain one,
/// untouched: [`transform::expect`]),
/// warms up, measures with wrk and accounts `server`'s CPU time. With
/// `redis_port`, checks that Redis processed at least one command per
/// measured request. Returns the sample and how many answers had a status
/// of 400 or more.
fn measure(
    server: &mut Proc,
    policy: Policy,
    url: &str,
    headers: &[String],
    cpus: &Cpus,
    dir: &Path,
    redis_port: Option<u16>,
) -> Result<(Sample, u64)> {
    let wrk_cpus = cpus.wrk.as_deref();
    let log = dir.join("wrk.log");
    if policy.uses_backend() {
        transform::expect(policy, url, headers)?;
    } else {
        bench_l7::expect_with(url, headers, SMALL)?;
    }
    wrk::run_with_headers(url, headers, wrk_cpus, LOAD.for_time(WARMUP), &log)?;
    server.check_running()?;

    let redis_before = redis_port.map(redis::commands_processed).transpose()?;
    let cpu_before = server.cpu_time()?;
    let started = Instant::now();
    let m = wrk::run_with_headers(url, headers, wrk_cpus, LOAD, &log)?;
    let wall = started.elapsed();
    let cpu = server.cpu_time()?.saturating_sub(cpu_before);
    server.check_running()?;

    // The refusals are counted (and flagged) apart; the other errors are
    // notes, as in `bench l7`.
    let mut notes: Vec<String> = m
        .errors
        .iter()
        .filter(|e| !e.ends_with("non-2xx/3xx responses"))
        .cloned()
        .collect();
    if let (Some(port), Some(before)) = (redis_port, redis_before) {
        let counted = redis::commands_processed(port)?.saturating_sub(before);
        if counted < m.requests {
            notes.push(format!(
                "Redis processed {counted} commands for {} requests: not every request was \
                 counted there",
                m.requests
            ));
        }
    }
    let non_2xx = m.non_2xx;
    let sample = Sample {
        cpu_us_per_request: cpu.as_secs_f64() * 1e6 / m.requests.max(1) as f64,
        cpu_busy: cpu.as_secs_f64() / wall.as_secs_f64(),
        wrk: m,
        notes,
    };
    println!(
        "xtask:   {:.0} requests/s, p50 {:.0} µs, p99 {:.0} µs, {:.1} µs CPU/request, {:.0}% busy{}{}",
        sample.wrk.rps,
        sample.wrk.p50_us,
        sample.wrk.p99_us,
        sample.cpu_us_per_request,
        sample.cpu_busy * 100.0,
        if non_2xx > 0 {
            format!(" (FLAGGED: {non_2xx} answers were not 200)")
        } else {
            String::new()
        },
        if sample.notes.is_empty() {
            String::new()
        } else {
            format!(" ({})", sample.notes.join("; "))
        }
    );
    Ok((sample, non_2xx))
}

/// How it was measured, for the report.
fn method(cpus: &Cpus) -> String {
    format!(
        "## How it was measured

- Everything on 127.0.0.1. One origin (nginx, 1 worker; `bench l7`'s) answers a 13-byte body; \
the body rows have a backend of their own (below).
- Each proxy runs 1 worker (edge `server.threads: 1`, HAProxy `nbthread 1`), all its threads \
pinned to one CPU: {layout}. Redis, for its case, runs on the origin's CPU.
- Plain proxying is configured as in `cargo xtask bench l7` (keep-alive to clients and to the \
origin, X-Forwarded-For/-Proto added, no access log); each case adds only its policies, on the \
listener:
  - API key: `auth: {{api_key: {{}}}}` and one consumer with one key; wrk sends `apikey: …`.
  - JWT: `auth: {{jwt: {{keys: [{{algorithm: RS256 or ES256, pem_file: …}}], leeway: 60s}}}}`. \
The RSA 2048 and ECDSA P-256 key pairs are made with `openssl` at bench time, and one token each \
(`exp` years ahead) is signed before the run; wrk sends it as `Authorization: Bearer …`. edge \
checks the signature and `exp`.
  - Local rate limit: `rate_limits: [{{name: rl, key: client_ip, limit: 1000000000, window: 1h}}]`, \
`rate_limit_headers: none`. The limit is never reached: every request is counted, none refused.
  - API key + local rate limit: the same limit with `key: consumer`.
  - API key + Redis rate limit: the same with `store: redis`, in a `redis-server` of its own \
(no persistence) on loopback, `gateway.redis: {{timeout: 50ms, on_error: closed}}` (should Redis \
fail, answers are 503 and the cell is flagged, rather than requests passing unchecked). Each run \
checks that Redis processed at least one command per request.
  - Body rows (edge only), each on a route of its own (a listener `routes:` entry) to a second \
nginx (1 worker, on the origin's CPU) serving fixed files: plain JSON: a {json} B JSON object \
proxied untouched (a route `exact: {json_path}` to that nginx, no `transform`); JSON \
transformation: the same route and document with `transform.response.json` removing two \
members, renaming one and setting one; plain XML: a {xml} B XML document \
(`Content-Type: application/xml`; attributes, repeated elements, entity references) proxied \
untouched (`exact: {xml_path}`); XML → JSON: the same with \
`transform.response.xml_to_json: true`; aggregation: `aggregate` of three calls \
(`/users/{{id}}`, `/orders/{{id}}`, `/prefs/{{id}}`, three pools on that nginx, under 100 B of \
JSON each, with `deny`, `mapping`, `target`, a top-level merge), so three upstream requests \
per request. The probe before each run checks edge's answer: for a transformation or the \
aggregation, `application/json` showing the transformation (and, for the aggregation, \
`X-Edge-Completed: true`); for a plain row, the document untouched (its content type, \
`application/xml` for the XML, and its marks). wrk does not look at bodies or headers, so an \
aggregation some of whose calls failed during a run (still 200) is not flagged, only one where \
all did (502).
  - Baselines: the JSON transformation's ratio and goal are against the plain JSON row, the \
XML → JSON's against the plain XML row (same route, document and backend), so they show the \
transformation's cost alone. The plain JSON and XML rows are against the plain case, so they \
show what the route, the larger body and the other upstream cost. The aggregation's is against \
the plain case (13 B from the origin, no route): it compares one client request answered from \
three upstream calls against one proxied small answer.
- HAProxy: `bench l7`'s plain frontend. JWT: `http-request deny deny_status 401 unless \
{{ http_auth_bearer,jwt_verify(\"RS256\",\"….pem\") -m int 1 }}` (HAProxy 2.5 and later; it checks \
the signature only, not `exp`). Rate limit: a stick-table of `http_req_rate(1s)` per source, \
`http-request track-sc0 src`, `deny deny_status 429` above 1000000000. A HAProxy cell is n/a \
when `haproxy -c` rejects its configuration (a version without the converter). This benchmark \
gives HAProxy no API-key, Redis or body case.
- Each run starts the proxy afresh with the case's configuration, checks that one request with \
the case's credential answers 200 with the body, warms up for {w} s, then measures: wrk, {t} \
thread, {c} keep-alive connections (a closed loop), {d} s, latency as wrk measures it. Figures \
are medians of {rounds} runs; the runs go round-robin over every cell, so a disturbance hits a \
case and its baseline alike.
- Every cell checks that the answers were 200: wrk counts answers of status 400 or more, and a \
cell with any is flagged (a wrong key or token would otherwise measure fast 401s) and its goal \
(or a goal against it as the baseline) not judged.
- Every benchmark process runs at nice {nice}. CPU time per request is the proxy's user + system \
time over the measured run, divided by the requests wrk completed; the difference from the \
baseline is the row's cost, steadier than requests/s on a shared machine.
- Compare within a column: edge's rows against their baseline (plain unless the case names \
another), HAProxy's against HAProxy's plain case.
",
        layout = cpus.describe(),
        t = LOAD.threads,
        c = LOAD.connections,
        d = LOAD.duration.as_secs(),
        w = WARMUP.as_secs(),
        rounds = ROUNDS,
        nice = NICENESS,
        json = transform::json_body().len(),
        xml = transform::xml_body().len(),
        json_path = transform::JSON_PATH,
        xml_path = transform::XML_PATH,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_baseline_comes_first_and_proxies_the_same_thing_plain() {
        assert_eq!(CASES[0].policy, Policy::Plain);
        for (i, case) in CASES.iter().enumerate() {
            let base = &CASES[case.baseline];
            assert!(case.baseline <= i, "{}", case.name);
            assert!(base.goal.is_none(), "{}", case.name);
            let want = match case.policy {
                Policy::JsonTransform => Policy::PlainJson,
                Policy::XmlToJson => Policy::PlainXml,
                _ => Policy::Plain,
            };
            assert_eq!(base.policy, want, "{}", case.name);
            if want != Policy::Plain {
                // The same document, from the same backend.
                assert_eq!(base.policy.path(), case.policy.path(), "{}", case.name);
                assert!(base.policy.uses_backend(), "{}", case.name);
            }
            // HAProxy's rows are against its plain case: only plain's.
            assert!(!case.haproxy || case.baseline == 0, "{}", case.name);
        }
        assert_eq!(CASES[PLAIN_JSON_ROW + 1].policy, Policy::JsonTransform);
        assert_eq!(CASES[PLAIN_XML_ROW + 1].policy, Policy::XmlToJson);
        let goals: Vec<_> = CASES
            .iter()
            .filter_map(|c| Some((c.policy, c.goal?)))
            .collect();
        assert_eq!(
            goals,
            [
                (Policy::JwtRs256, 0.75),
                (Policy::JwtEs256, 0.75),
                (Policy::ApiKeyLocalLimit, 0.85),
                (Policy::JsonTransform, 0.7),
                (Policy::XmlToJson, 0.5),
            ]
        );
    }
}
