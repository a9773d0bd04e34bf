//! Request ids and W3C trace context through a real edge on loopback with
//! real backends: an id made for each request (or kept from a trusted
//! proxy), sent upstream, returned (on edge's own errors too) and logged;
//! `traceparent` continued with a new span id or started, sampled by the
//! caller's flag or the listener's ratio; `tracestate` passed along;
//! aggregation calls carrying the same identity.

use anyhow::{Result, ensure};
use edge_tests::{
    backend::{Backend, Response},
    http::{self, Message},
    proxy::{Proxy, refusing_port},
    wait,
};
use std::{net::SocketAddr, sync::Arc, time::Duration};

const DEADLINE: Duration = Duration::from_secs(15);
/// The W3C specification's example trace.
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

/// A backend echoing the request head; one answering JSON with the
/// request id and trace context it was sent (for aggregation calls).
fn backends() -> Result<(Backend, Backend)> {
    let echo = Backend::start("echo", None, "127.0.0.1:0".parse()?)?;
    let json = Backend::start_with(
        "json",
        None,
        "127.0.0.1:0".parse()?,
        Arc::new(|req: &Message| {
            let body = serde_json::json!({
                "rid": req.header("x-request-id"),
                "tp": req.header("traceparent"),
            });
            Response::new(200, body.to_string()).header("Content-Type", "application/json")
        }),
    )?;
    Ok((echo, json))
}

/// edge with one listener (`extra`: more listener keys, indented by four
/// spaces) whose routes are `/app` (the echo backend), `/agg` (an
/// aggregation of one call to the JSON backend) and `/gone` (a refused
/// port), nothing else; and an access log.
fn start(echo: &Backend, json: &Backend, refused: SocketAddr, extra: &str) -> Result<Proxy> {
    let (app, data, extra) = (echo.addr(), json.addr(), extra.to_string());
    Proxy::start_with(
        |_| Ok(()),
        move |listen, dir| {
            format!(
                "\
access_log: {{path: '{log}'}}
listeners:
  - name: web
    address: '{listen}'
{extra}    routes:
      - name: app
        match: {{path: {{prefix: /app}}}}
        proxy: {{pool: app}}
      - name: agg
        match: {{path: {{prefix: /agg}}}}
        aggregate:
          calls:
            - {{name: one, pool: data, path: /one, group: one}}
      - name: gone
        match: {{path: {{prefix: /gone}}}}
        proxy: {{pool: gone}}
pools:
  - name: app
    backends: [{{address: '{app}'}}]
  - name: data
    backends: [{{address: '{data}'}}]
  - name: gone
    backends: [{{address: '{refused}'}}]
",
                log = dir.join("access.log").display()
            )
        },
    )
}

fn get(p: &Proxy, path: &str, headers: &[(&str, &str)]) -> Result<Message> {
    http::request(p.listen, "GET", path, headers)
}

/// The values of field `name` the echo backend was sent.
fn seen(m: &Message, name: &str) -> Vec<String> {
    m.text()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(": "))
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.to_string())
        .collect()
}

/// The one value of field `name` the echo backend was sent.
fn seen_one(m: &Message, name: &str) -> Result<String> {
    let all = seen(m, name);
    ensure!(
        all.len() == 1,
        "the backend saw {name}: {all:?}\n{}",
        m.text()
    );
    Ok(all[0].clone())
}

/// The request id of a response.
fn id_of(m: &Message, header: &str) -> Result<String> {
    m.header(header)
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("no {header} in the answer {:?}: {:?}", m.start, m.headers))
}

/// `n` lower-case hex digits.
fn hex(s: &str, n: usize) -> bool {
    s.len() == n
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether `s` is a version-4 UUID in lower case, as edge makes them.
fn is_uuid4(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && [8, 4, 4, 4, 12].iter().zip(&parts).all(|(n, p)| hex(p, *n))
        && parts[2].starts_with('4')
}

/// The trace id, parent id and flags of a version-00 `traceparent`.
fn fields(tp: &str) -> Result<(String, String, String)> {
    let p: Vec<&str> = tp.split('-').collect();
    ensure!(
        p.len() == 4 && p[0] == "00" && hex(p[1], 32) && hex(p[2], 16) && hex(p[3], 2),
        "not a version-00 traceparent: {tp:?}"
    );
    ensure!(
        p[1] != "0".repeat(32) && p[2] != "0".repeat(16),
        "an all-zero id: {tp:?}"
    );
    Ok((p[1].to_string(), p[2].to_string(), p[3].to_string()))
}

/// The access log entry of the request with id `id`, once written.
fn logged(p: &Proxy, id: &str) -> Result<serde_json::Value> {
    let log = p.dir().join("access.log");
    wait::until(&format!("the access log line of {id}"), DEADLINE, || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|e| e["request_id"] == id))
    })
}

#[test]
fn each_request_gets_an_id_sent_upstream_returned_and_logged() -> Result<()> {
    let (echo, json) = backends()?;
    let (_held, refused) = refusing_port()?;
    // No trusted proxies: every incoming id is replaced.
    let p = start(&echo, &json, refused, "")?;
    let first = get(&p, "/app/1", &[])?;
    ensure!(first.status() == Some(200), "{:?}", first.start);
    let id = id_of(&first, "x-request-id")?;
    ensure!(is_uuid4(&id), "{id:?} is not a UUID");
    ensure!(seen_one(&first, "x-request-id")? == id);
    let second = get(&p, "/app/2", &[])?;
    let other = id_of(&second, "x-request-id")?;
    ensure!(other != id, "two requests got the same id {id}");
    ensure!(seen_one(&second, "x-request-id")? == other);

    // A new trace for each request, not sampled (the default ratio is 0).
    let tp = seen_one(&first, "traceparent")?;
    let (trace, span, flags) = fields(&tp)?;
    ensure!(flags == "00", "{tp}");
    let (trace2, _, _) = fields(&seen_one(&second, "traceparent")?)?;
    ensure!(trace2 != trace, "two requests in one trace {trace}");

    let entry = logged(&p, &id)?;
    ensure!(entry["trace_id"] == trace.as_str(), "{entry}");
    ensure!(entry["span_id"] == span.as_str(), "{entry}");
    ensure!(entry["parent_span_id"].is_null(), "{entry}");
    ensure!(entry["status"] == 200 && entry["route"] == "app", "{entry}");

    // A client's own id is not believed: it could reuse anyone's.
    let claimed = get(&p, "/app/3", &[("X-Request-Id", "client-chosen")])?;
    let given = id_of(&claimed, "x-request-id")?;
    ensure!(given != "client-chosen" && is_uuid4(&given), "{given:?}");
    ensure!(seen(&claimed, "x-request-id") == std::slice::from_ref(&given));
    logged(&p, &given)?;
    Ok(())
}

#[test]
fn edges_own_answers_carry_the_id() -> Result<()> {
    let (echo, json) = backends()?;
    let (_held, refused) = refusing_port()?;
    let p = start(&echo, &json, refused, "")?;
    // No route: edge's 404.
    let none = get(&p, "/nothing", &[])?;
    ensure!(none.status() == Some(404), "{:?}", none.start);
    let id = id_of(&none, "x-request-id")?;
    ensure!(is_uuid4(&id), "{id:?}");
    let entry = logged(&p, &id)?;
    ensure!(entry["status"] == 404, "{entry}");
    // A backend that refuses connections: edge's 502.
    let gone = get(&p, "/gone", &[])?;
    ensure!(gone.status() == Some(502), "{:?}", gone.start);
    let id = id_of(&gone, "x-request-id")?;
    ensure!(is_uuid4(&id), "{id:?}");
    let entry = logged(&p, &id)?;
    ensure!(entry["status"] == 502 && entry["pool"] == "gone", "{entry}");
    // A request edge cannot read: its 400.
    let bad = get(&p, "/app/%2F", &[])?;
    ensure!(bad.status() == Some(400), "{:?}", bad.start);
    ensure!(is_uuid4(&id_of(&bad, "x-request-id")?));
    Ok(())
}

#[test]
fn trusted_proxies_ids_are_kept_when_well_formed() -> Result<()> {
    let (echo, json) = backends()?;
    let (_held, refused) = refusing_port()?;
    let p = start(
        &echo,
        &json,
        refused,
        "    trusted_proxies: [127.0.0.0/8]\n",
    )?;
    let kept = get(&p, "/app", &[("X-Request-Id", "lb-7f3a.42")])?;
    ensure!(id_of(&kept, "x-request-id")? == "lb-7f3a.42");
    ensure!(seen_one(&kept, "x-request-id")? == "lb-7f3a.42");
    logged(&p, "lb-7f3a.42")?;
    // Kept on edge's own errors too.
    let gone = get(&p, "/gone", &[("X-Request-Id", "lb-err-1")])?;
    ensure!(gone.status() == Some(502), "{:?}", gone.start);
    ensure!(id_of(&gone, "x-request-id")? == "lb-err-1");
    // Too long, or with a space or a tab: replaced.
    let long = "x".repeat(129);
    for bad in [long.as_str(), "has space", "has\ttab"] {
        let m = get(&p, "/app", &[("X-Request-Id", bad)])?;
        let id = id_of(&m, "x-request-id")?;
        ensure!(is_uuid4(&id), "{bad:?} became {id:?}");
        ensure!(seen(&m, "x-request-id") == [id.clone()], "{bad:?}");
    }
    Ok(())
}

#[test]
fn an_incoming_trace_is_continued_with_a_new_span() -> Result<()> {
    let (echo, json) = backends()?;
    let (_held, refused) = refusing_port()?;
    // Ratio 0: the caller's sampling decision still holds.
    let p = start(&echo, &json, refused, "")?;
    let state = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";
    let incoming = format!("00-{TRACE}-{PARENT}-01");
    let m = get(
        &p,
        "/app",
        &[("traceparent", incoming.as_str()), ("tracestate", state)],
    )?;
    let tp = seen_one(&m, "traceparent")?;
    let (trace, span, flags) = fields(&tp)?;
    ensure!(trace == TRACE, "{tp}");
    ensure!(span != PARENT, "edge's hop kept the caller's span: {tp}");
    ensure!(flags == "01", "{tp}");
    ensure!(seen_one(&m, "tracestate")? == state);
    let entry = logged(&p, &id_of(&m, "x-request-id")?)?;
    ensure!(entry["trace_id"] == TRACE, "{entry}");
    ensure!(entry["span_id"] == span.as_str(), "{entry}");
    ensure!(entry["parent_span_id"] == PARENT, "{entry}");
    // Not sampled by the caller: not sampled here.
    let unsampled = format!("00-{TRACE}-{PARENT}-00");
    let m = get(&p, "/app", &[("traceparent", unsampled.as_str())])?;
    let (trace, _, flags) = fields(&seen_one(&m, "traceparent")?)?;
    ensure!(trace == TRACE && flags == "00");
    ensure!(seen(&m, "tracestate").is_empty());
    // A later version is read by the fields it shares with 00.
    let future = format!("cc-{TRACE}-{PARENT}-01-what-the-future-will-be-like");
    let m = get(&p, "/app", &[("traceparent", future.as_str())])?;
    let (trace, _, flags) = fields(&seen_one(&m, "traceparent")?)?;
    ensure!(trace == TRACE && flags == "01");
    // The aggregation's call is part of the same request and hop.
    let m = get(&p, "/agg", &[("traceparent", incoming.as_str())])?;
    ensure!(m.status() == Some(200), "{:?} {}", m.start, m.text());
    let body: serde_json::Value = serde_json::from_slice(&m.body)?;
    let id = id_of(&m, "x-request-id")?;
    ensure!(body["one"]["rid"] == id.as_str(), "{body}");
    let entry = logged(&p, &id)?;
    let expected = format!("00-{TRACE}-{}-01", entry["span_id"].as_str().unwrap_or("?"));
    ensure!(body["one"]["tp"] == expected.as_str(), "{body} {entry}");
    Ok(())
}

#[test]
fn new_traces_are_sampled_by_the_ratio_and_bad_ones_restarted() -> Result<()> {
    let (echo, json) = backends()?;
    let (_held, refused) = refusing_port()?;
    let p = start(
        &echo,
        &json,
        refused,
        "    request_id: {header: X-Correlation-Id}\n    tracing: {sample_ratio: 1.0}\n",
    )?;
    let m = get(&p, "/app", &[])?;
    let (_, _, flags) = fields(&seen_one(&m, "traceparent")?)?;
    ensure!(flags == "01", "ratio 1 samples every new trace");
    // The id travels in the configured field.
    let id = id_of(&m, "x-correlation-id")?;
    ensure!(is_uuid4(&id) && seen_one(&m, "x-correlation-id")? == id);
    ensure!(m.header("x-request-id").is_none());
    // Invalid (upper-case hex): a new trace, its tracestate dropped.
    let bad = format!("00-{}-{PARENT}-00", TRACE.to_uppercase());
    let m = get(
        &p,
        "/app",
        &[
            ("traceparent", bad.as_str()),
            ("tracestate", "rojo=00f067aa0ba902b7"),
        ],
    )?;
    let tp = seen_one(&m, "traceparent")?;
    let (trace, span, flags) = fields(&tp)?;
    ensure!(trace != TRACE && span != PARENT, "{tp}");
    ensure!(flags == "01", "{tp}");
    ensure!(seen(&m, "tracestate").is_empty());
    // Two traceparent fields: neither is believed.
    let good = format!("00-{TRACE}-{PARENT}-00");
    let m = get(
        &p,
        "/app",
        &[
            ("traceparent", good.as_str()),
            ("traceparent", good.as_str()),
        ],
    )?;
    let (trace, _, _) = fields(&seen_one(&m, "traceparent")?)?;
    ensure!(trace != TRACE);
    Ok(())
}
