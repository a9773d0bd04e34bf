//! Running wrk and reading its report.

use super::{interrupted, poll, proc::Proc};
use anyhow::{Context, Result, bail};
use std::{path::Path, time::Duration};

/// The load one wrk run puts on: a closed loop of `connections` keep-alive
/// connections driven by `threads` threads for `duration`.
#[derive(Clone, Copy)]
pub struct Load {
    /// wrk threads.
    pub threads: u32,
    /// Open connections, each with one request in flight.
    pub connections: u32,
    /// How long it runs.
    pub duration: Duration,
}

impl Load {
    /// The same load for a different time.
    pub fn for_time(self, duration: Duration) -> Self {
        Self { duration, ..self }
    }
}

/// What one wrk run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    /// Requests per second.
    pub rps: f64,
    /// Median latency, microseconds.
    pub p50_us: f64,
    /// 99th percentile latency, microseconds.
    pub p99_us: f64,
    /// Requests completed.
    pub requests: u64,
    /// Socket errors and non-2xx/3xx responses, as wrk words them.
    pub errors: Vec<String>,
    /// How many of those there were in all.
    pub failed: u64,
    /// How many of those were answers with a status of 400 or more
    /// (wrk's "Non-2xx or 3xx responses").
    pub non_2xx: u64,
}

/// Runs wrk on `url` pinned to `cpus`, every request with `headers`
/// (`Name: value`, wrk's `-H`), output to `log`; returns what it measured.
/// Stops early (and fails) on Ctrl-C.
pub fn run_with_headers(
    url: &str,
    headers: &[String],
    cpus: Option<&str>,
    load: Load,
    log: &Path,
) -> Result<Measurement> {
    let secs = format!("{}s", load.duration.as_secs().max(1));
    let (t, c) = (load.threads.to_string(), load.connections.to_string());
    let mut args: Vec<&str> = vec![
        "-t",
        t.as_str(),
        "-c",
        c.as_str(),
        "-d",
        secs.as_str(),
        "--timeout",
        "5s",
        "--latency",
    ];
    for h in headers {
        args.push("-H");
        args.push(h.as_str());
    }
    args.push(url);
    let mut wrk = Proc::spawn("wrk", cpus, Path::new("wrk"), &args, log, libc::SIGINT)?;
    // wrk ends by itself after `duration`; this bound only catches a hang.
    let bound = load.duration + Duration::from_secs(15);
    let status = poll("wrk to finish", bound, || {
        interrupted()?;
        wrk.try_wait()
    })?;
    let text = wrk.log_text();
    if !status.success() {
        bail!("wrk {} exited with {status}:\n{text}", args.join(" "));
    }
    parse(&text).with_context(|| format!("reading wrk's report:\n{text}"))
}

/// Reads requests/s, p50, p99 and errors from wrk's `--latency` report.
pub fn parse(text: &str) -> Result<Measurement> {
    let mut rps = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut requests = None;
    let mut errors = Vec::new();
    let mut failed = 0;
    let mut non_2xx = 0;
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = Some(v.trim().parse::<f64>().context("Requests/sec")?);
        } else if let Some(v) = line.strip_prefix("50%") {
            p50 = Some(duration_us(v.trim())?);
        } else if let Some(v) = line.strip_prefix("99%") {
            p99 = Some(duration_us(v.trim())?);
        } else if let Some((n, _)) = line.split_once(" requests in ") {
            requests = Some(n.trim().parse::<u64>().context("request count")?);
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            // connect N, read N, write N, timeout N
            for part in v.split(',') {
                let n = part.split_whitespace().nth(1).unwrap_or("0");
                failed += n.parse::<u64>().context("socket error count")?;
            }
            errors.push(format!("socket errors:{v}"));
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            let n = v.trim().parse::<u64>().context("non-2xx/3xx count")?;
            failed += n;
            non_2xx += n;
            errors.push(format!("{} non-2xx/3xx responses", v.trim()));
        }
    }
    match (rps, p50, p99, requests) {
        (Some(rps), Some(p50_us), Some(p99_us), Some(requests)) => Ok(Measurement {
            rps,
            p50_us,
            p99_us,
            requests,
            errors,
            failed,
            non_2xx,
        }),
        _ => bail!("no Requests/sec, 50%, 99% or request count in wrk's output"),
    }
}

/// wrk's latency figures ("512.00us", "1.23ms", "2.00s", "1.50m") in µs.
fn duration_us(s: &str) -> Result<f64> {
    let split = s
        .find(|c: char| c.is_ascii_alphabetic())
        .with_context(|| format!("no unit in {s:?}"))?;
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().with_context(|| format!("number in {s:?}"))?;
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        "h" => 3600e6,
        _ => bail!("unknown unit in {s:?}"),
    };
    Ok(n * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 10s test @ http://127.0.0.1:8080/small
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   550.00us  100.00us   5.00ms   90.00%
    Req/Sec    90.00k     5.00k   100.00k    70.00%
  Latency Distribution
     50%  500.00us
     75%  600.00us
     90%  700.00us
     99%    1.25ms
  900000 requests in 10.00s, 120.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 5
  Non-2xx or 3xx responses: 3
Requests/sec:  90000.50
Transfer/sec:     12.00MB
";

    #[test]
    fn reads_a_latency_report() {
        let m = parse(REPORT).unwrap();
        assert_eq!(
            m,
            Measurement {
                rps: 90000.5,
                p50_us: 500.0,
                p99_us: 1250.0,
                requests: 900_000,
                errors: vec![
                    "socket errors: connect 0, read 2, write 0, timeout 5".into(),
                    "3 non-2xx/3xx responses".into()
                ],
                failed: 10,
                non_2xx: 3,
            }
        );
    }

    #[test]
    fn a_report_without_latency_distribution_is_an_error() {
        let cut = REPORT.replace("     50%  500.00us\n", "");
        assert!(parse(&cut).is_err());
    }

    #[test]
    fn units() {
        assert_eq!(duration_us("2.00s").unwrap(), 2e6);
        assert_eq!(duration_us("1.50m").unwrap(), 90e6);
        assert!(duration_us("3.0x").is_err());
    }
}
