//! `edge ctl`: the operator's side of the admin API — status, backends,
//! drain, undrain, reload, draining the whole host — as tables for people
//! or JSON for scripts.
//!
//! It speaks plain HTTP/1.1 to the admin listener, one request per
//! connection, with a deadline on every step: the admin endpoint is on
//! loopback or a management network, and a tool that hangs on a stuck
//! daemon is worse than one that says so.

use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream, ToSocketAddrs},
    time::Duration,
};

/// Longest wait for each of connect, send and receive.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read (a status of many pools is tens of kilobytes).
const MAX_ANSWER: u64 = 16 * 1024 * 1024;

/// Where and how to reach the admin API.
pub struct Target {
    /// host:port of the admin listener.
    pub authority: String,
    /// Bearer token for changes.
    pub token: Option<String>,
}

impl Target {
    /// From `--admin` (`http://host:port`, or `host:port`).
    pub fn parse(admin: &str, token: Option<String>) -> Result<Self> {
        let rest = match admin.split_once("://") {
            Some(("http", rest)) => rest,
            Some((scheme, _)) => bail!("--admin {admin}: only http:// is spoken (not {scheme})"),
            None => admin,
        };
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            bail!("--admin {admin}: expected http://HOST:PORT");
        }
        Ok(Self {
            authority: authority.to_string(),
            token: token.filter(|t| !t.is_empty()),
        })
    }

    /// Sends one request without a body; returns the status and the body.
    pub fn request(&self, method: &str, path: &str) -> Result<(u16, Vec<u8>)> {
        self.request_with(method, path, None)
    }

    /// Sends one request, with `json` as its body when given; returns the
    /// status and the body.
    pub fn request_with(
        &self,
        method: &str,
        path: &str,
        json: Option<&Value>,
    ) -> Result<(u16, Vec<u8>)> {
        let body = match json {
            Some(v) => serde_json::to_vec(v)?,
            None => Vec::new(),
        };
        let addrs: Vec<SocketAddr> = self
            .authority
            .to_socket_addrs()
            .with_context(|| format!("resolving the admin address {}", self.authority))?
            .collect();
        let mut last = None;
        let mut stream = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, TIMEOUT) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let Some(mut stream) = stream else {
            return Err(match last {
                Some(e) => anyhow::Error::new(e),
                None => anyhow::anyhow!("no address"),
            })
            .with_context(|| format!("connecting to edge's admin endpoint at {}", self.authority));
        };
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: edge-ctl/{}\r\n\
             Accept: application/json\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.authority,
            env!("CARGO_PKG_VERSION"),
            body.len()
        );
        if json.is_some() {
            head.push_str("Content-Type: application/json\r\n");
        }
        if let Some(t) = &self.token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        stream.write_all(&body)?;
        let mut raw = Vec::new();
        stream
            .take(MAX_ANSWER)
            .read_to_end(&mut raw)
            .context("reading the admin endpoint's answer")?;
        parse_response(&raw)
    }
}

/// The status and body of a whole HTTP/1.1 response (Content-Length or
/// chunked framing, or up to the close).
fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>)> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("the admin endpoint's answer has no complete head")?;
    let head = std::str::from_utf8(&raw[..end]).context("a non-UTF-8 answer head")?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .context("the admin endpoint's answer has no status")?;
    let mut chunked = false;
    let mut length = None;
    for l in lines {
        if let Some((name, value)) = l.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("transfer-encoding")
                && value.eq_ignore_ascii_case("chunked")
            {
                chunked = true;
            } else if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<usize>().ok();
            }
        }
    }
    let body = &raw[end + 4..];
    let body = if chunked {
        dechunk(body)?
    } else if let Some(n) = length {
        body.get(..n).context("the answer ended early")?.to_vec()
    } else {
        body.to_vec()
    };
    Ok((status, body))
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("a chunk without its size line")?;
        let size_text = std::str::from_utf8(&body[..line_end])?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .context("a bad chunk size")?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(body.get(..size).context("a chunk cut short")?);
        body = body.get(size + 2..).context("a chunk cut short")?;
    }
}

/// What `edge ctl` does.
pub enum Action {
    /// Generation, listeners, pools and services at a glance.
    Status,
    /// Every backend's state.
    Backends,
    /// Drain (`true`) or undrain a backend of a pool or L4 service.
    Drain {
        /// The pool or service.
        name: String,
        /// IP:port (a pool's backend) or IP (an L4 service's).
        address: String,
        /// Drain or undrain.
        drained: bool,
    },
    /// Reload the configuration file.
    Reload,
    /// Withdraw every BGP route and stop edge once its traffic has moved,
    /// or at the deadline.
    DrainHost {
        /// How long to wait for the traffic to move (`30s`, `5m`); the
        /// API's default when not given.
        deadline: Option<String>,
    },
}

/// Runs `action` against `target`; prints JSON with `json`, else tables.
pub fn run(target: &Target, action: Action, json: bool) -> Result<()> {
    let mut body = None;
    let (method, path) = match &action {
        Action::Status | Action::Backends => ("GET", "/api/status".to_string()),
        Action::Drain {
            name,
            address,
            drained,
        } => {
            // A pool's backend has a port; an L4 service's is an address.
            let kind = if address.parse::<std::net::IpAddr>().is_ok() {
                "services"
            } else if address.parse::<SocketAddr>().is_ok() {
                "pools"
            } else {
                bail!("{address}: expected IP:port (a pool's backend) or IP (an L4 service's)");
            };
            let verb = if *drained { "drain" } else { "undrain" };
            (
                "POST",
                format!(
                    "/api/{kind}/{}/backends/{}/{verb}",
                    encode(name),
                    encode(address)
                ),
            )
        }
        Action::Reload => ("POST", "/api/reload".to_string()),
        Action::DrainHost { deadline } => {
            if let Some(text) = deadline {
                // Checked here too, so a typo never reaches the daemon.
                crate::drain::parse_host_deadline(text)
                    .map_err(|why| anyhow::anyhow!("--deadline: {why}"))?;
                body = Some(serde_json::json!({ "deadline": text }));
            }
            ("POST", "/api/host/drain".to_string())
        }
    };
    let (status, body) = target.request_with(method, &path, body.as_ref())?;
    let value: Value = serde_json::from_slice(&body).with_context(|| {
        format!(
            "{method} {path}: {status}, not JSON: {}",
            String::from_utf8_lossy(&body).trim()
        )
    })?;
    if !(200..300).contains(&status) {
        let why = value["error"].as_str().unwrap_or("(no reason given)");
        bail!("{method} {path}: {status}: {why}");
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    match action {
        Action::Status => print!("{}", status_table(&value)),
        Action::Backends => print!("{}", backends_table(&value)),
        Action::Drain { drained, .. } => {
            let what = value["pool"]
                .as_str()
                .map(|p| format!("pool {p}"))
                .or_else(|| value["service"].as_str().map(|s| format!("L4 service {s}")))
                .unwrap_or_default();
            let address = value["address"].as_str().unwrap_or("");
            if drained {
                println!("{address} of {what} drained: it takes no new requests until undrained");
            } else {
                println!("{address} of {what} undrained");
            }
        }
        Action::Reload => {
            println!("reloaded: generation {}", value["generation"]);
            for w in value["warnings"].as_array().into_iter().flatten() {
                println!("warning: {}", w.as_str().unwrap_or(""));
            }
        }
        Action::DrainHost { .. } => print!("{}", drain_host_text(&value)),
    }
    Ok(())
}

/// `edge ctl drain-host`: what was withdrawn and when edge stops.
fn drain_host_text(v: &Value) -> String {
    let withdrawn: Vec<String> = v["withdrawn"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    let mut out = if withdrawn.is_empty() {
        "withdrawn: nothing was announced\n".to_string()
    } else {
        format!(
            "withdrawn: {} (the router sends no new flow here)\n",
            withdrawn.join(", ")
        )
    };
    let deadline = v["deadline_ms"]
        .as_u64()
        .map(|ms| format!("{:.1} s", ms as f64 / 1000.0))
        .unwrap_or_else(|| "-".to_string());
    out.push_str(&format!(
        "edge stops once its L4 traffic has moved (no packet for {} s), at the latest in \
         {deadline}; requests in flight then drain\n",
        crate::drain::QUIET_FOR.as_secs()
    ));
    out
}

/// Percent-encodes a path segment, leaving RFC 3986's unreserved
/// characters as they are (pool names such as `app-v2`).
fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, crate::transform::query::UNRESERVED).to_string()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    }
}

/// Rows as left-aligned columns under a header.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  "));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out.push_str(&line(r.clone()));
    }
    out
}

/// `edge ctl status`.
pub fn status_table(v: &Value) -> String {
    let mut out = format!(
        "edge {}  generation {}  up {:.0} s\n\n",
        text(&v["version"]),
        text(&v["generation"]),
        v["uptime_seconds"].as_f64().unwrap_or(0.0)
    );
    let listeners: Vec<Vec<String>> = v["listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            vec![
                text(&l["name"]),
                text(&l["address"]),
                text(&l["kind"]),
                text(&l["connections_active"]),
                text(&l["connections_total"]),
            ]
        })
        .collect();
    out.push_str(&table(
        &["LISTENER", "ADDRESS", "KIND", "OPEN", "ACCEPTED"],
        &listeners,
    ));
    let pools: Vec<Vec<String>> = v["pools"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let backends = p["backends"].as_array().cloned().unwrap_or_default();
            let healthy = backends.iter().filter(|b| b["state"] == "healthy").count();
            let latency = &p["latency_ms"];
            vec![
                text(&p["name"]),
                format!("{healthy}/{}", backends.len()),
                text(&p["breaker"]),
                text(&p["requests_total"]),
                text(&p["failures_total"]),
                if latency.is_null() {
                    "-".to_string()
                } else {
                    format!("{}/{}", text(&latency["p50"]), text(&latency["p99"]))
                },
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&table(
        &[
            "POOL",
            "HEALTHY",
            "BREAKER",
            "REQUESTS",
            "FAILURES",
            "P50/P99 MS",
        ],
        &pools,
    ));
    let services: Vec<Vec<String>> = v["services"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let backends = s["backends"].as_array().cloned().unwrap_or_default();
            let healthy = backends.iter().filter(|b| b["state"] == "healthy").count();
            vec![
                text(&s["name"]),
                format!(
                    "{}:{}/{}",
                    text(&s["vip"]),
                    text(&s["port"]),
                    text(&s["protocol"])
                ),
                format!("{healthy}/{}", backends.len()),
            ]
        })
        .collect();
    if !services.is_empty() {
        out.push('\n');
        out.push_str(&table(&["L4 SERVICE", "VIP", "HEALTHY"], &services));
    }
    if let Some(xdp) = v["xdp"].as_object() {
        let ifaces: Vec<String> = xdp
            .get("interfaces")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|i| format!("{} ({})", text(&i["name"]), text(&i["mode"])))
            .collect();
        out.push_str(&format!("\nXDP on {}\n", ifaces.join(", ")));
    }
    if v["host_draining"].as_bool() == Some(true) {
        out.push_str("\nhost draining: routes withdrawn, edge stops once its traffic has moved\n");
    }
    out
}

/// `edge ctl backends`.
pub fn backends_table(v: &Value) -> String {
    let mut rows = Vec::new();
    for p in v["pools"].as_array().into_iter().flatten() {
        for b in p["backends"].as_array().into_iter().flatten() {
            rows.push(vec![
                format!("pool {}", text(&p["name"])),
                text(&b["address"]),
                text(&b["state"]),
                text(&b["weight"]),
                text(&b["in_flight"]),
                text(&b["requests_total"]),
                format!("{:.1}%", b["error_ratio"].as_f64().unwrap_or(0.0) * 100.0),
            ]);
        }
    }
    for s in v["services"].as_array().into_iter().flatten() {
        for b in s["backends"].as_array().into_iter().flatten() {
            rows.push(vec![
                format!("l4 {}", text(&s["name"])),
                text(&b["address"]),
                text(&b["state"]),
                text(&b["weight"]),
                "-".to_string(),
                text(&b["packets_total"]),
                "-".to_string(),
            ]);
        }
    }
    table(
        &[
            "OF",
            "BACKEND",
            "STATE",
            "WEIGHT",
            "IN FLIGHT",
            "REQUESTS/PACKETS",
            "ERRORS (10 s)",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse_with_either_framing() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(parse_response(raw).unwrap(), (200, b"{}".to_vec()));
        let raw = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n";
        assert_eq!(parse_response(raw).unwrap(), (404, b"{\"a\":1}".to_vec()));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
    }

    #[test]
    fn the_admin_address_takes_either_form() {
        assert_eq!(
            Target::parse("http://127.0.0.1:9100/", None)
                .unwrap()
                .authority,
            "127.0.0.1:9100"
        );
        assert_eq!(
            Target::parse("[::1]:9100", None).unwrap().authority,
            "[::1]:9100"
        );
        assert!(Target::parse("https://x:1", None).is_err());
        assert!(Target::parse("http://x:1/api", None).is_err());
    }

    #[test]
    fn tables_show_every_backend() {
        let v: Value = serde_json::json!({
            "version": "1", "generation": 2, "uptime_seconds": 3.0,
            "listeners": [{"name": "web", "address": "127.0.0.1:80", "kind": "http",
                           "connections_active": 1, "connections_total": 5}],
            "pools": [{"name": "app", "breaker": null, "requests_total": 7, "failures_total": 1,
                       "latency_ms": null,
                       "backends": [{"address": "127.0.0.1:81", "state": "draining", "weight": 1,
                                     "in_flight": 0, "requests_total": 7, "error_ratio": 0.5}]}],
            "services": [], "xdp": null,
        });
        let t = backends_table(&v);
        assert!(
            t.contains("pool app") && t.contains("draining") && t.contains("50.0%"),
            "{t}"
        );
        let s = status_table(&v);
        assert!(s.contains("generation 2") && s.contains("0/1"), "{s}");
    }

    #[test]
    fn a_host_drain_says_what_went_and_when_edge_stops() {
        let v = serde_json::json!({
            "draining": true, "withdrawn": ["192.0.2.10", "2001:db8::10"], "deadline_ms": 30000,
        });
        let t = drain_host_text(&v);
        assert!(
            t.contains("192.0.2.10, 2001:db8::10") && t.contains("30.0 s"),
            "{t}"
        );
        let none = drain_host_text(&serde_json::json!({ "withdrawn": [], "deadline_ms": 500 }));
        assert!(
            none.contains("nothing was announced") && none.contains("0.5 s"),
            "{none}"
        );
    }
}
