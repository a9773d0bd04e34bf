//! The operations files: Prometheus alerting rules
//! (`config/prometheus/alerts.yaml`, with their unit tests in
//! `alerts_test.yaml`) and the Grafana dashboard (`config/grafana/edge.json`).
//!
//! - the rules pass `promtool check rules` and `promtool test rules`, and
//!   every alert has a `for:`, a severity, a summary, a description and a
//!   unit test;
//! - the dashboard is well-formed (unique panel ids, every panel queries
//!   the `${datasource}` variable) and its queries parse as PromQL;
//! - every metric the dashboard or the alerts query is one a *running*
//!   edge exports: the L7 ones from an edge on loopback that served,
//!   retried, cached, refused and banned, and answered a gRPC call; the
//!   XDP and L4 ones from an edge with XDP attached and an L4 service in a
//!   network lab (`edge_tests::dsr`). A renamed metric fails here, not on
//!   an operator's empty graph.
//!
//! promtool comes from Debian's `prometheus` package (2.42); without it
//! the promtool tests fail under `CI` and are skipped elsewhere.

use anyhow::{Context, Result, bail, ensure};
use edge_tests::{
    backend::Backend,
    dsr::{DsrLab, DsrPlan, HealthCheck},
    edge::Edge,
    grpc::{GRPC_HEADERS, frame, raw_call},
    http, netns,
    proxy::{Proxy, refusing_port},
};
use serde_json::{Value, json};
use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

/// Where Debian's prometheus package puts promtool.
const PROMTOOL: &str = "/usr/bin/promtool";
/// The rules, relative to the repository.
const ALERTS: &str = "config/prometheus/alerts.yaml";
/// Their unit tests, relative to the repository.
const ALERTS_TEST: &str = "config/prometheus/alerts_test.yaml";
/// The dashboard, relative to the repository.
const DASHBOARD: &str = "config/grafana/edge.json";
/// The alerts operators are promised (README, alerts.yaml).
const REQUIRED_ALERTS: [&str; 11] = [
    "EdgeDown",
    "EdgeBackendDown",
    "EdgeL4BackendDown",
    "EdgeAllBackendsDown",
    "EdgeL4AllBackendsDown",
    "EdgeCircuitBreakerOpen",
    "EdgeHighErrorRatio",
    "EdgeXdpDrops",
    "EdgeConfigReloadFailed",
    "EdgeBansSpike",
    "EdgeBgpConfigureFailing",
];
/// How long a running edge gets to export what it is expected to.
const DEADLINE: Duration = Duration::from_secs(20);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> Result<String> {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

// ---------------------------------------------------------------- promtool

/// promtool, if installed. Missing: an error under `CI`, else `None`
/// (the caller skips, saying so).
fn promtool() -> Result<Option<PathBuf>> {
    let path = Path::new(PROMTOOL);
    if path.exists() {
        return Ok(Some(path.to_path_buf()));
    }
    if std::env::var_os("CI").is_some() {
        bail!("{PROMTOOL} is missing: install Debian's prometheus package");
    }
    eprintln!("skipped: {PROMTOOL} is missing (install Debian's prometheus package)");
    Ok(None)
}

/// Runs `promtool args` in the repository; fails with its output unless
/// it succeeds. `Ok(false)`: skipped, promtool is not installed.
fn run_promtool(args: &[&str]) -> Result<bool> {
    let Some(bin) = promtool()? else {
        return Ok(false);
    };
    let out = Command::new(&bin)
        .args(args)
        .current_dir(repo())
        .output()
        .with_context(|| format!("running {} {}", bin.display(), args.join(" ")))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        out.status.success(),
        "promtool {} failed ({}):\n{text}",
        args.join(" "),
        out.status
    );
    Ok(true)
}

#[test]
fn alert_rules_pass_promtool_check() -> Result<()> {
    run_promtool(&["check", "rules", ALERTS])?;
    Ok(())
}

#[test]
fn alert_rules_pass_their_unit_tests() -> Result<()> {
    run_promtool(&["test", "rules", ALERTS_TEST])?;
    Ok(())
}

// ---------------------------------------------------------------- alerts

/// The rules of alerts.yaml as (alert name, text of its rule).
fn alert_blocks(yaml: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in yaml.lines() {
        let trimmed = line.trim_start();
        if let Some(name) = trimmed.strip_prefix("- alert:") {
            out.push((name.trim().to_string(), String::new()));
        }
        if let Some((_, block)) = out.last_mut() {
            block.push_str(line);
            block.push('\n');
        }
    }
    out
}

/// The `expr:` of every alert in alerts.yaml (a plain one-liner, a quoted
/// one, or a `|` / `>` block), with the alert it belongs to.
fn alert_exprs(yaml: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut out = Vec::new();
    let mut alert = String::from("?");
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        i += 1;
        if let Some(name) = trimmed.strip_prefix("- alert:") {
            alert = name.trim().to_string();
            continue;
        }
        let Some(rest) = trimmed.strip_prefix("expr:") else {
            continue;
        };
        let rest = rest.trim();
        if rest.starts_with('|') || rest.starts_with('>') {
            // A block scalar: the lines indented deeper than `expr:`.
            let indent = line.len() - trimmed.len();
            let mut block = String::new();
            while i < lines.len() {
                let l = lines[i];
                let t = l.trim_start();
                if !t.is_empty() && l.len() - t.len() <= indent {
                    break;
                }
                block.push_str(l);
                block.push('\n');
                i += 1;
            }
            out.push((alert.clone(), block));
        } else {
            let unquoted = if rest.len() >= 2
                && ((rest.starts_with('\'') && rest.ends_with('\''))
                    || (rest.starts_with('"') && rest.ends_with('"')))
            {
                rest[1..rest.len() - 1].replace("''", "'")
            } else {
                rest.to_string()
            };
            out.push((alert.clone(), unquoted));
        }
    }
    out
}

#[test]
fn every_alert_has_for_severity_summary_description_and_a_unit_test() -> Result<()> {
    let rules = read(ALERTS)?;
    let tests = read(ALERTS_TEST)?;
    let blocks = alert_blocks(&rules);
    let names: BTreeSet<&str> = blocks.iter().map(|(n, _)| n.as_str()).collect();
    ensure!(
        names.len() == blocks.len(),
        "an alert name is used twice: {names:?}"
    );
    for required in REQUIRED_ALERTS {
        ensure!(names.contains(required), "{ALERTS} has no alert {required}");
    }
    let mut problems = Vec::new();
    for (name, block) in &blocks {
        for key in ["expr:", "for:", "severity:", "summary:", "description:"] {
            if !block.contains(key) {
                problems.push(format!("{name}: no `{key}`"));
            }
        }
        if !tests.contains(&format!("alertname: {name}\n")) {
            problems.push(format!("{name}: no unit test in {ALERTS_TEST}"));
        }
    }
    ensure!(problems.is_empty(), "{}", problems.join("\n"));
    ensure!(
        alert_exprs(&rules).len() == blocks.len(),
        "one `expr:` per alert expected: {:?}",
        alert_exprs(&rules)
    );
    Ok(())
}

// ---------------------------------------------------------------- dashboard

fn dashboard() -> Result<Value> {
    serde_json::from_str(&read(DASHBOARD)?).with_context(|| format!("{DASHBOARD} is not JSON"))
}

/// Every panel, rows' inner panels included, depth first.
fn all_panels(panels: &Value, out: &mut Vec<Value>) {
    for p in panels.as_array().into_iter().flatten() {
        out.push(p.clone());
        all_panels(&p["panels"], out);
    }
}

/// Every panel target's `expr`, with the title of its panel.
fn panel_exprs(dash: &Value) -> Vec<(String, String)> {
    let mut panels = Vec::new();
    all_panels(&dash["panels"], &mut panels);
    let mut out = Vec::new();
    for p in &panels {
        let title = p["title"].as_str().unwrap_or("?");
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(e) = t["expr"].as_str() {
                out.push((format!("panel {title:?}"), e.to_string()));
            }
        }
    }
    out
}

/// The queries of the template variables (`label_values(metric, label)`).
fn variable_queries(dash: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for v in dash["templating"]["list"].as_array().into_iter().flatten() {
        if v["type"] != "query" {
            continue;
        }
        let name = v["name"].as_str().unwrap_or("?");
        let query = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .or(v["definition"].as_str());
        if let Some(q) = query {
            out.push((format!("variable ${name}"), q.to_string()));
        }
    }
    out
}

#[test]
fn dashboard_is_well_formed() -> Result<()> {
    let dash = dashboard()?;
    ensure!(dash["schemaVersion"].as_u64().is_some_and(|v| v >= 36));
    let vars: BTreeMap<&str, &Value> = dash["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| Some((v["name"].as_str()?, v)))
        .collect();
    ensure!(
        vars.get("datasource")
            .is_some_and(|v| v["type"] == "datasource" && v["query"] == "prometheus"),
        "a Prometheus `datasource` variable: {vars:?}"
    );
    for name in ["listener", "pool"] {
        ensure!(
            vars.get(name).is_some_and(|v| v["type"] == "query"),
            "a `{name}` query variable"
        );
    }
    let mut panels = Vec::new();
    all_panels(&dash["panels"], &mut panels);
    let mut ids = BTreeSet::new();
    let mut problems = Vec::new();
    for p in &panels {
        let title = p["title"].as_str().unwrap_or("?");
        match p["id"].as_u64() {
            Some(id) if ids.insert(id) => {}
            other => problems.push(format!("{title}: id {other:?} missing or repeated")),
        }
        if p["gridPos"]["w"].as_u64().is_none() || p["gridPos"]["h"].as_u64().is_none() {
            problems.push(format!("{title}: no gridPos"));
        }
        if p["type"] == "row" {
            continue;
        }
        if p["datasource"]["uid"] != "${datasource}" {
            problems.push(format!("{title}: datasource is not ${{datasource}}"));
        }
        let targets = p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        if targets.is_empty() {
            problems.push(format!("{title}: no query"));
        }
        for t in targets {
            if t["expr"].as_str().is_none_or(|e| e.trim().is_empty()) {
                problems.push(format!("{title}: a target without expr"));
            }
        }
    }
    ensure!(problems.is_empty(), "{}", problems.join("\n"));
    ensure!(
        panel_exprs(&dash).len() >= 20,
        "the dashboard has few queries: {:?}",
        panel_exprs(&dash)
    );
    Ok(())
}

/// `expr` with Grafana's variables replaced so that Prometheus can parse
/// it: `$__rate_interval` and the other `$__` durations by `5m`, the
/// others (used in `=~"$pool"` matchers) by `.*`.
fn without_variables(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let braced = chars.peek() == Some(&'{');
        if braced {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphanumeric() || n == '_' {
                name.push(n);
                chars.next();
            } else {
                break;
            }
        }
        if braced && chars.peek() == Some(&'}') {
            chars.next();
        }
        out.push_str(if name.starts_with("__") { "5m" } else { ".*" });
    }
    out
}

#[test]
fn dashboard_queries_are_valid_promql() -> Result<()> {
    // Each query as a recording rule: `promtool check rules` parses it.
    let rules: Vec<Value> = panel_exprs(&dashboard()?)
        .iter()
        .enumerate()
        .map(|(i, (_, e))| {
            json!({
                "record": format!("dashboard:query_{i}"),
                "expr": without_variables(e),
            })
        })
        .collect();
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("dashboard_queries.json");
    let groups = json!({"groups": [{"name": "dashboard", "rules": rules}]});
    let text = serde_json::to_string_pretty(&groups)?;
    std::fs::write(&file, &text)?;
    let file = file.to_str().context("temporary path is not UTF-8")?;
    run_promtool(&["check", "rules", file]).with_context(|| format!("the queries:\n{text}"))?;
    Ok(())
}

// ---------------------------------------------------------------- metric names

/// The metric names (identifiers starting `edge_`) in a PromQL expression;
/// string literals (label values, regexes) and comments are skipped.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut out = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                if chars[i] == '\\' && c != '`' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c.is_ascii_digit() {
            // A number or a duration (`5m`, `1e3`): not a name.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && ident(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if word.starts_with("edge_") {
                out.insert(word);
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The names a Prometheus exposition holds: every sample's name, and for
/// a histogram (`name_bucket` samples) its base name too.
fn exported_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name = line
            .split(|c: char| c == '{' || c.is_whitespace())
            .next()
            .unwrap_or_default();
        if let Some(base) = name.strip_suffix("_bucket") {
            out.insert(base.to_string());
        }
        out.insert(name.to_string());
    }
    out
}

/// Every metric the dashboard and the alerts use, with where.
fn used_metrics() -> Result<BTreeMap<String, BTreeSet<String>>> {
    let dash = dashboard()?;
    let mut queries = panel_exprs(&dash);
    queries.extend(variable_queries(&dash));
    let alerts = alert_exprs(&read(ALERTS)?);
    ensure!(!alerts.is_empty(), "no `expr:` found in {ALERTS}");
    queries.extend(alerts.into_iter().map(|(n, e)| (format!("alert {n}"), e)));
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (place, expr) in queries {
        for name in metric_names(&expr) {
            used.entry(name).or_default().insert(place.clone());
        }
    }
    Ok(used)
}

/// Scrapes until every name of `needed` is exported or [`DEADLINE`]
/// passes (some metrics appear a moment after the request that makes
/// them, or on the next second's copy of the kernel counters); returns
/// the names of the last scrape either way.
fn exports_when(
    mut scrape: impl FnMut() -> Result<String>,
    needed: &BTreeSet<String>,
) -> Result<BTreeSet<String>> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let names = exported_names(&scrape()?);
        if needed.is_subset(&names) || Instant::now() >= deadline {
            return Ok(names);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The L7 edge: pool `app` (circuit breaker) and pool `flaky` (a refusing
/// backend, retried on the good one), the cache on, a route refusing one
/// source by address, and bans after one refusal.
const L7: &str = "\
cache: {}
gateway:
  bans: {after: 1, within: 1m, ban_for: 1h}
listeners:
  - name: web
    address: @LISTEN@
    pool: app
    cache: {}
    routes:
      - name: app
        match: {path: {prefix: /}}
        proxy: {pool: app}
      - name: flaky
        match: {path: {prefix: /flaky}}
        proxy: {pool: flaky}
      - name: guarded
        match: {path: {prefix: /guarded}}
        proxy: {pool: app}
        policies: {ip: {deny: ['@OFFENDER@/32']}}
pools:
  - name: app
    backends: [{address: '@GOOD@'}]
    circuit_breaker:
      {error_ratio: 0.5, min_requests: 1000, window: 10s, open_for: 1s, half_open_requests: 1}
  - name: flaky
    backends: [{address: '@DEAD@'}, {address: '@GOOD@'}]
    retries: {attempts: 1, min_per_window: 100}
";
/// The source the `guarded` route refuses (and that is then banned).
const OFFENDER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 77));
/// Requests to `flaky`: round robin sends half of them to the refusing
/// backend first.
const FLAKY_REQUESTS: usize = 4;

/// What an edge on loopback exports once it has served a request, retried
/// another, answered a gRPC call and refused (and banned) a source.
fn l7_exports(needed: &BTreeSet<String>) -> Result<BTreeSet<String>> {
    let good = Backend::start("good", None, "127.0.0.1:0".parse()?)?;
    let (_reserved, dead) = refusing_port()?;
    let p = Proxy::start_template(
        L7,
        &[
            ("GOOD", good.addr().to_string()),
            ("DEAD", dead.to_string()),
            ("OFFENDER", OFFENDER.to_string()),
        ],
    )?;
    let r = http::get(p.listen, "/")?;
    ensure!(r.status() == Some(200), "GET /: {r:?}");
    for i in 0..FLAKY_REQUESTS {
        let r = http::get(p.listen, &format!("/flaky/{i}"))?;
        ensure!(r.status() == Some(200), "GET /flaky/{i}: {r:?}");
    }
    // A gRPC call to an HTTP/1.1 pool: edge answers it UNAVAILABLE, and
    // counts it by that status.
    let a = raw_call(p.listen, "/test.Echo/Unary", GRPC_HEADERS, &frame(b""))?;
    ensure!(
        a.grpc_status().is_some(),
        "a gRPC answer has a status: {a:?}"
    );
    let r = http::get_from(OFFENDER, p.listen, "/guarded", Duration::from_secs(5))?;
    ensure!(
        r.status() == Some(403),
        "GET /guarded from {OFFENDER}: {r:?}"
    );
    exports_when(|| p.metrics(), needed)
}

/// The L4 lab: one backend behind a VIP, health-checked.
const LAB: DsrPlan<'static> = DsrPlan {
    client_net: "10.79.1",
    backend_net: "10.79.2",
    vip: Ipv4Addr::new(10, 79, 0, 100),
    port: 80,
    backends: &["be1"],
    net6: None,
};
const HEALTH: HealthCheck<'static> = HealthCheck {
    interval: "200ms",
    timeout: "200ms",
    rise: 2,
    fall: 2,
};

/// What an edge exports with XDP attached and an L4 service: the XDP
/// class counters (read at scrape time), the L4 per-backend counters and
/// events (copied every second), health and table generation. No packet
/// has to reach the VIP: the counters are exported from zero.
fn xdp_l4_exports(needed: &BTreeSet<String>) -> Result<BTreeSet<String>> {
    let lab = DsrLab::build(LAB)?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("edge.yaml");
    // A bgp section, for the BGP metrics: with no BIRD behind the socket
    // the announcer exports them all the same (and counts its errors).
    let bgp = format!(
        "bgp:\n  router_id: {edge}\n  local_as: 65001\n  \
         neighbors: [{{address: {client}, remote_as: 65000}}]\n  \
         bird: {{config: {conf}, socket: {sock}}}\n",
        edge = LAB.edge_front_ip(),
        client = LAB.client_ip(),
        conf = dir.path().join("bird.conf").display(),
        sock = dir.path().join("bird.ctl").display(),
    );
    std::fs::write(&config, LAB.edge_config(Some(HEALTH)) + &bgp)?;
    // Declared after the lab: dropped (stopped) before it.
    let mut edge = Edge::start(Some(&lab.edge), &config)?;
    edge.wait_ready(Some(&lab.client), LAB.admin(), DEADLINE)?;
    let admin = LAB.admin();
    let client = lab.client.clone();
    let names = exports_when(
        || Ok(netns::run_in(&client, move || http::get(admin, "/metrics"))?.text()),
        needed,
    )
    .map_err(|e| e.context(format!("log:\n{}", edge.log_text())))?;
    edge.stop(Duration::from_secs(15))?;
    Ok(names)
}

/// Metrics only an edge with XDP attached (or, in the same lab, a `bgp`
/// section) exports.
fn from_kernel(name: &str) -> bool {
    name.starts_with("edge_xdp_") || name.starts_with("edge_l4_") || name.starts_with("edge_bgp_")
}

#[test]
fn dashboard_queries_use_only_metrics_edge_exports() -> Result<()> {
    let used = used_metrics()?;
    ensure!(
        used.len() >= 15,
        "the dashboard and the alerts use few metrics: {used:?}"
    );
    let all: BTreeSet<String> = used.keys().cloned().collect();
    let l7_needed: BTreeSet<String> = all.iter().filter(|n| !from_kernel(n)).cloned().collect();
    let mut exported = l7_exports(&l7_needed)?;
    let lab_needed: BTreeSet<String> = all.difference(&exported).cloned().collect();
    exported.extend(xdp_l4_exports(&lab_needed)?);
    let missing: Vec<String> = used
        .iter()
        .filter(|(name, _)| !exported.contains(*name))
        .map(|(name, places)| {
            let places: Vec<&str> = places.iter().map(String::as_str).collect();
            format!("{name} (used by {})", places.join(", "))
        })
        .collect();
    ensure!(
        missing.is_empty(),
        "metrics the dashboard or the alerts use that a running edge does not export:\n  {}\n\
         exported:\n  {}",
        missing.join("\n  "),
        exported.iter().cloned().collect::<Vec<_>>().join("\n  ")
    );
    Ok(())
}

#[test]
fn the_name_scanners_read_promql_and_the_exposition() {
    let names = metric_names(
        "histogram_quantile(0.99, sum by (le) (rate(edge_http_request_duration_seconds_bucket\
         {listener=~\"$listener\", route!=\"edge_not_a_metric\"}[$__rate_interval]))) \
         / on() edge_config_generation > 1e3 # edge_in_a_comment",
    );
    let want: BTreeSet<String> = [
        "edge_http_request_duration_seconds_bucket",
        "edge_config_generation",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(names, want);
    let exported = exported_names(
        "# TYPE edge_x_seconds histogram\nedge_x_seconds_bucket{le=\"0.1\"} 1\n\
         edge_x_seconds_sum 0.1\nedge_x_seconds_count 1\nedge_bans_total 3\n",
    );
    for n in [
        "edge_x_seconds",
        "edge_x_seconds_bucket",
        "edge_x_seconds_count",
        "edge_bans_total",
    ] {
        assert!(exported.contains(n), "{n} in {exported:?}");
    }
    let exprs = alert_exprs(
        "  - alert: A\n    expr: up{job=\"edge\"} == 0\n    for: 1m\n\
           \x20 - alert: B\n    expr: |\n      rate(edge_a_total[5m])\n      > 1\n    for: 1m\n\
           \x20 - alert: C\n    expr: 'edge_b == 0'\n",
    );
    assert_eq!(
        exprs,
        vec![
            ("A".to_string(), "up{job=\"edge\"} == 0".to_string()),
            (
                "B".to_string(),
                "      rate(edge_a_total[5m])\n      > 1\n".to_string()
            ),
            ("C".to_string(), "edge_b == 0".to_string()),
        ]
    );
    assert_eq!(
        without_variables("rate(x{a=~\"$pool\",b=~\"${listener}\"}[$__rate_interval])"),
        "rate(x{a=~\".*\",b=~\".*\"}[5m])"
    );
}
