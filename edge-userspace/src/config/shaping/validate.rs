//! Checks a route's shaping and its `aggregate` action.

use super::{
    super::{HashKey, Pool, units::Quantity, validate::Validator},
    Aggregate, Call, DEFAULT_RESPONSE_BODY, DEFAULT_XML_DEPTH, JsonOps, MAX_CALLS,
    MAX_REQUEST_BODY, MAX_RESPONSE_BODY, MAX_XML_DEPTH, Mirror, Pointer, QueryOps,
    RequestTransform, ResponseTransform, Schema, Shaping, SplitRule, SplitWhen, Template,
    Validation, surface,
};
use std::{collections::HashMap, sync::Arc, time::Duration};

const DEFAULT_MAX_ERRORS: u32 = 5;
const MAX_MAX_ERRORS: u32 = 100;
const DEFAULT_MIRROR_IN_FLIGHT: u32 = 16;
const MAX_MIRROR_IN_FLIGHT: u32 = 1024;
const DEFAULT_MIRROR_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_AGGREGATE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most bytes one aggregated request may hold in its calls' answers.
const MAX_AGGREGATE_BYTES: u64 = 16 * 1024 * 1024;
/// Fields of the client's request an aggregation call cannot take, besides
/// the hop-by-hop ones: edge names the host, frames the call and marks it.
const NOT_FORWARDED: [&str; 6] = [
    "host",
    "content-length",
    "transfer-encoding",
    "expect",
    "cdn-loop",
    "via",
];
/// Longest time limit of a mirror copy or an aggregation: a request that
/// waits longer holds its connection and memory for nothing.
const MAX_TIMEOUT: Duration = Duration::from_secs(300);

/// What a route's shaping is checked against.
pub(in crate::config) struct Context<'a> {
    /// The route's YAML path.
    pub path: &'a str,
    /// Named captures of the route's path regex (template variables).
    pub captures: &'a [String],
    /// The pools.
    pub pools: &'a [Pool],
    /// Whether the route proxies.
    pub proxied: bool,
    /// Whether the route sets strip_prefix or rewrite.
    pub rewrites_path: bool,
}

/// The route's shaping fields, checked.
pub(in crate::config) fn shaping(
    v: &mut Validator<'_>,
    cx: &Context<'_>,
    r: &super::super::surface::Route,
) -> Shaping {
    let path = cx.path;
    let mut out = Shaping::default();
    for (key, set) in [
        ("transform", r.transform.is_some()),
        ("validate", r.validate.is_some()),
        ("split", !r.split.is_empty()),
        ("mirror", r.mirror.is_some()),
    ] {
        if set && !cx.proxied {
            v.error(
                format!("{path}.{key}"),
                format!("{key} only applies to routes that proxy"),
            );
        }
    }
    if let Some(t) = &r.transform {
        if let Some(req) = &t.request {
            out.request = Some(request(v, cx, &format!("{path}.transform.request"), req));
        }
        if let Some(resp) = &t.response {
            out.response = Some(response(v, &format!("{path}.transform.response"), resp));
        }
    }
    if let Some(val) = &r.validate {
        out.validate = validation(v, &format!("{path}.validate"), val);
    }
    if let Some(d) = &r.deprecated {
        out.deprecated = deprecated(v, &format!("{path}.deprecated"), d);
    }
    out.split = split(v, cx, &r.split);
    if let Some(m) = &r.mirror {
        out.mirror = mirror(v, cx, &format!("{path}.mirror"), m);
    }
    out
}

fn template(
    v: &mut Validator<'_>,
    cx: &Context<'_>,
    path: String,
    text: &str,
    query_allowed: bool,
) -> Option<Template> {
    // The literal text goes into the request line as written: visible
    // ASCII only (encode the rest), nothing that would end or split it,
    // and a query only where one is expected
    // (a transformed request keeps its own, changed by `query:`).
    if let Some(c) = text
        .chars()
        .find(|c| !c.is_ascii_graphic() || *c == '#' || (!query_allowed && *c == '?'))
    {
        v.error(
            path,
            format!(
                "the path template {text:?} contains {c:?}{}",
                if c == '?' {
                    ": change the query with transform.request.query"
                } else {
                    ""
                }
            ),
        );
        return None;
    }
    let t = match Template::parse(text) {
        Ok(t) => t,
        Err(e) => {
            v.error(path, format!("bad path template {text:?}: {e}"));
            return None;
        }
    };
    if !crate::transform::template::renders_a_uri(&t) {
        v.error(
            path,
            format!("the path template {text:?} is not a valid URI path"),
        );
        return None;
    }
    let unknown: Vec<&str> = t
        .vars()
        .filter(|name| *name != "path" && !cx.captures.iter().any(|c| c == name))
        .collect();
    if !unknown.is_empty() {
        let known = if cx.captures.is_empty() {
            "the route's path regex has no named captures".to_string()
        } else {
            format!("named captures: {}", cx.captures.join(", "))
        };
        v.error(
            path,
            format!(
                "{{{}}} in {text:?} is neither {{path}} nor a named capture of the route's path regex ({known})",
                unknown.join("}, {")
            ),
        );
        return None;
    }
    Some(t)
}

fn body_size(
    v: &mut Validator<'_>,
    path: String,
    q: &Option<Quantity>,
    default: u64,
    max: u64,
) -> usize {
    let n = match q {
        Some(q) => v.size(path.clone(), q).unwrap_or(default),
        None => default,
    };
    if n == 0 || n > max {
        v.error(
            path,
            format!("max_body must be between 1 byte and {max} bytes (it is {n})"),
        );
        return default as usize;
    }
    usize::try_from(n).unwrap_or(default as usize)
}

fn request(
    v: &mut Validator<'_>,
    cx: &Context<'_>,
    path: &str,
    r: &surface::RequestTransform,
) -> RequestTransform {
    let template = r
        .path
        .as_ref()
        .and_then(|t| template(v, cx, format!("{path}.path"), t, false));
    if r.path.is_some() && cx.rewrites_path {
        v.error(
            format!("{path}.path"),
            "transform.request.path replaces the upstream path: drop proxy.strip_prefix and proxy.rewrite",
        );
    }
    RequestTransform {
        path: template,
        query: r
            .query
            .as_ref()
            .map(|q| query(v, &format!("{path}.query"), q))
            .unwrap_or_default(),
        json: r
            .json
            .as_ref()
            .map(|j| json(v, &format!("{path}.json"), j))
            .unwrap_or_default(),
        json_to_xml: r.json_to_xml.unwrap_or(false),
        max_body: body_size(
            v,
            format!("{path}.max_body"),
            &r.max_body,
            MAX_REQUEST_BODY,
            MAX_REQUEST_BODY,
        ),
    }
}

fn response(
    v: &mut Validator<'_>,
    path: &str,
    r: &surface::ResponseTransform,
) -> ResponseTransform {
    let xml_to_json = match &r.xml_to_json {
        None | Some(surface::XmlToJson::On(false)) => None,
        Some(surface::XmlToJson::On(true)) => Some(DEFAULT_XML_DEPTH as usize),
        Some(surface::XmlToJson::Options(o)) => {
            let depth = o.max_depth.unwrap_or(DEFAULT_XML_DEPTH);
            if depth == 0 || depth > MAX_XML_DEPTH {
                v.error(
                    format!("{path}.xml_to_json.max_depth"),
                    format!("max_depth must be between 1 and {MAX_XML_DEPTH}"),
                );
            }
            Some(depth.clamp(1, MAX_XML_DEPTH) as usize)
        }
    };
    ResponseTransform {
        xml_to_json,
        json: r
            .json
            .as_ref()
            .map(|j| json(v, &format!("{path}.json"), j))
            .unwrap_or_default(),
        max_body: body_size(
            v,
            format!("{path}.max_body"),
            &r.max_body,
            DEFAULT_RESPONSE_BODY,
            MAX_RESPONSE_BODY,
        ),
    }
}

fn query(v: &mut Validator<'_>, path: &str, q: &surface::QueryOps) -> QueryOps {
    let check = |v: &mut Validator<'_>, at: String, name: &str| {
        if name.is_empty() {
            v.error(at, "a query parameter name is empty");
        }
    };
    for (i, n) in q.remove.iter().enumerate() {
        check(v, format!("{path}.remove[{i}]"), n);
    }
    for (k, n) in &q.rename {
        check(v, format!("{path}.rename.{k}"), k);
        check(v, format!("{path}.rename.{k}"), n);
    }
    for k in q.set.keys() {
        check(v, format!("{path}.set.{k}"), k);
    }
    for k in q.add.keys() {
        check(v, format!("{path}.add.{k}"), k);
    }
    let pairs = |m: &std::collections::BTreeMap<String, String>| {
        m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    QueryOps {
        remove: q.remove.clone(),
        rename: pairs(&q.rename),
        set: pairs(&q.set),
        add: pairs(&q.add),
    }
}

fn pointer(v: &mut Validator<'_>, path: String, text: &str) -> Option<Pointer> {
    Pointer::parse(text)
        .map_err(|e| v.error(path, format!("bad JSON pointer {text:?}: {e}")))
        .ok()
}

fn json(v: &mut Validator<'_>, path: &str, j: &surface::JsonOps) -> JsonOps {
    let mut ops = JsonOps::default();
    for (i, p) in j.remove.iter().enumerate() {
        ops.remove
            .extend(pointer(v, format!("{path}.remove[{i}]"), p));
    }
    for (from, to) in &j.rename {
        let at = format!("{path}.rename.{from}");
        if let (Some(f), Some(t)) = (pointer(v, at.clone(), from), pointer(v, at, to)) {
            ops.rename.push((f, t));
        }
    }
    for (p, value) in &j.set {
        ops.set
            .extend(pointer(v, format!("{path}.set.{p}"), p).map(|p| (p, value.clone())));
    }
    for (p, value) in &j.add {
        ops.add
            .extend(pointer(v, format!("{path}.add.{p}"), p).map(|p| (p, value.clone())));
    }
    ops
}

fn validation(v: &mut Validator<'_>, path: &str, s: &surface::Validate) -> Option<Validation> {
    let source = match (&s.schema, &s.schema_file) {
        (Some(schema), None) => schema.clone(),
        (None, Some(file)) => {
            let full = v.base_dir().join(file);
            let text = match std::fs::read_to_string(&full) {
                Ok(t) => t,
                Err(e) => {
                    v.error(
                        format!("{path}.schema_file"),
                        format!("cannot read {}: {e}", full.display()),
                    );
                    return None;
                }
            };
            match serde_json::from_str(&text) {
                Ok(doc) => doc,
                Err(e) => {
                    v.error(
                        format!("{path}.schema_file"),
                        format!("{} is not JSON: {e}", full.display()),
                    );
                    return None;
                }
            }
        }
        _ => {
            v.error(
                path.to_string(),
                "validate needs exactly one of schema and schema_file",
            );
            return None;
        }
    };
    // No resolver is compiled in: a `$ref` to another document is refused
    // here rather than fetched.
    let validator = match jsonschema::validator_for(&source) {
        Ok(val) => val,
        Err(e) => {
            let at = if s.schema.is_some() {
                "schema"
            } else {
                "schema_file"
            };
            v.error(
                format!("{path}.{at}"),
                format!("not a usable JSON Schema: {e}"),
            );
            return None;
        }
    };
    let max_errors = s.max_errors.unwrap_or(DEFAULT_MAX_ERRORS);
    if max_errors == 0 || max_errors > MAX_MAX_ERRORS {
        v.error(
            format!("{path}.max_errors"),
            format!("max_errors must be between 1 and {MAX_MAX_ERRORS}"),
        );
    }
    Some(Validation {
        schema: Schema {
            source,
            validator: Arc::new(validator),
        },
        max_body: body_size(
            v,
            format!("{path}.max_body"),
            &s.max_body,
            MAX_REQUEST_BODY,
            MAX_REQUEST_BODY,
        ),
        max_errors: max_errors.clamp(1, MAX_MAX_ERRORS) as usize,
    })
}

fn deprecated(v: &mut Validator<'_>, path: &str, d: &surface::Deprecated) -> Vec<(String, String)> {
    let mut headers = Vec::new();
    match unix_seconds(&d.since) {
        Some(secs) => headers.push(("deprecation".to_string(), format!("@{secs}"))),
        None => v.error(
            format!("{path}.since"),
            format!(
                "since {:?} is not an RFC 3339 time such as 2026-01-01T00:00:00Z",
                d.since
            ),
        ),
    }
    if let Some(sunset) = &d.sunset {
        match unix_seconds(sunset) {
            Some(secs) if secs >= 0 => {
                let at = std::time::UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs());
                headers.push(("sunset".to_string(), httpdate::fmt_http_date(at)));
            }
            _ => v.error(
                format!("{path}.sunset"),
                format!("sunset {sunset:?} is not an RFC 3339 time after 1970"),
            ),
        }
    }
    if let Some(link) = &d.link {
        if link.parse::<http::Uri>().is_err() || link.contains(['<', '>', '"', ' ']) {
            v.error(
                format!("{path}.link"),
                format!("link {link:?} is not a URI"),
            );
        } else {
            headers.push(("link".to_string(), format!("<{link}>; rel=\"deprecation\"")));
        }
    }
    headers
}

/// Seconds since the Unix epoch of an RFC 3339 time
/// (`2026-01-01T00:00:00Z`, fractions ignored, `+hh:mm` offsets).
pub(crate) fn unix_seconds(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut rest = &text[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (oh, om) = rest.get(1..)?.split_once(':')?;
            if oh.len() != 2 || om.len() != 2 {
                return None;
            }
            let (oh, om): (i64, i64) = (oh.parse().ok()?, om.parse().ok()?);
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 3600 + om * 60)
        }
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + s - offset)
}

/// A share in percent (`10`, `0.5`) as hundredths of a percent.
fn share(v: &mut Validator<'_>, path: String, p: f64) -> Option<u32> {
    let hundredths = (p * 100.0).round();
    if !p.is_finite() || p <= 0.0 || p > 100.0 || (p * 100.0 - hundredths).abs() > 1e-6 {
        v.error(
            path,
            format!("percent {p} must be more than 0 and at most 100, with at most two decimals"),
        );
        return None;
    }
    Some(hundredths as u32)
}

fn sticky(v: &mut Validator<'_>, path: String, text: &str) -> Option<HashKey> {
    // The pool's hash_key syntax, less `path` (the split's key is who
    // the client is, not what it asks for).
    match super::super::l7::parse_hash_key(text) {
        Some(HashKey::Header(name)) if http::HeaderName::from_bytes(name.as_bytes()).is_ok() => {
            Some(HashKey::Header(name))
        }
        Some(key @ (HashKey::ClientIp | HashKey::Cookie(_))) => Some(key),
        _ => {
            v.error(
                path,
                format!("bad sticky {text:?}: expected client_ip, header:NAME or cookie:NAME"),
            );
            None
        }
    }
}

fn split(v: &mut Validator<'_>, cx: &Context<'_>, rules: &[surface::Split]) -> Vec<SplitRule> {
    let mut out = Vec::new();
    let mut total = 0u32;
    for (i, s) in rules.iter().enumerate() {
        let path = format!("{}.split[{i}]", cx.path);
        let Some(pool) = super::super::l7::pool_ref(v, format!("{path}.pool"), &s.pool, cx.pools)
        else {
            continue;
        };
        let set = [s.percent.is_some(), s.header.is_some(), s.cookie.is_some()];
        if set.iter().filter(|b| **b).count() != 1 {
            v.error(
                path,
                "a split rule needs exactly one of percent, header and cookie",
            );
            continue;
        }
        let when = if let Some(p) = s.percent {
            let Some(h) = share(v, format!("{path}.percent"), p) else {
                continue;
            };
            total += h;
            SplitWhen::Share(h)
        } else if let Some(h) = &s.header {
            if http::HeaderName::from_bytes(h.name.as_bytes()).is_err() {
                v.error(
                    format!("{path}.header.name"),
                    format!("{:?} is not a header name", h.name),
                );
                continue;
            }
            SplitWhen::Header(h.name.to_ascii_lowercase(), h.value.clone())
        } else if let Some(c) = &s.cookie {
            if c.name.is_empty() {
                v.error(format!("{path}.cookie.name"), "the cookie name is empty");
                continue;
            }
            SplitWhen::Cookie(c.name.clone(), c.value.clone())
        } else {
            continue;
        };
        let sticky = match &s.sticky {
            Some(text) => {
                if !matches!(when, SplitWhen::Share(_)) {
                    v.error(
                        format!("{path}.sticky"),
                        "sticky applies to a percent split (a header or cookie rule is sticky by itself)",
                    );
                }
                sticky(v, format!("{path}.sticky"), text)
            }
            None => None,
        };
        out.push(SplitRule { pool, when, sticky });
    }
    let stickies: Vec<&HashKey> = out.iter().filter_map(|r| r.sticky.as_ref()).collect();
    if stickies.windows(2).any(|w| w[0] != w[1]) {
        v.error(
            format!("{}.split", cx.path),
            "the percent rules of a split keep clients by one sticky key: give them the same one",
        );
    }
    if total > 10_000 {
        v.error(
            format!("{}.split", cx.path),
            format!(
                "the split's percents add up to {}%: at most 100",
                f64::from(total) / 100.0
            ),
        );
    }
    out
}

fn timeout(
    v: &mut Validator<'_>,
    path: String,
    q: &Option<Quantity>,
    default: Duration,
) -> Duration {
    let Some(q) = q else {
        return default;
    };
    match v.duration(path.clone(), q) {
        Some(d) if !d.is_zero() && d <= MAX_TIMEOUT => d,
        Some(_) => {
            v.error(
                path,
                format!("timeout must be more than 0 and at most {MAX_TIMEOUT:?}"),
            );
            default
        }
        None => default,
    }
}

fn mirror(
    v: &mut Validator<'_>,
    cx: &Context<'_>,
    path: &str,
    m: &surface::Mirror,
) -> Option<Mirror> {
    let pool = super::super::l7::pool_ref(v, format!("{path}.pool"), &m.pool, cx.pools)?;
    let share = match m.percent {
        Some(p) => share(v, format!("{path}.percent"), p)?,
        None => 10_000,
    };
    let max_in_flight = m.max_in_flight.unwrap_or(DEFAULT_MIRROR_IN_FLIGHT);
    if max_in_flight == 0 || max_in_flight > MAX_MIRROR_IN_FLIGHT {
        v.error(
            format!("{path}.max_in_flight"),
            format!("max_in_flight must be between 1 and {MAX_MIRROR_IN_FLIGHT}"),
        );
    }
    let credentials = match m.credentials.as_deref() {
        None | Some("strip") => false,
        Some("keep") => true,
        Some(other) => {
            v.error(
                format!("{path}.credentials"),
                format!("credentials is {other:?}: expected strip or keep"),
            );
            false
        }
    };
    Some(Mirror {
        pool,
        credentials,
        share,
        max_in_flight: max_in_flight.clamp(1, MAX_MIRROR_IN_FLIGHT) as usize,
        timeout: timeout(
            v,
            format!("{path}.timeout"),
            &m.timeout,
            DEFAULT_MIRROR_TIMEOUT,
        ),
        max_body: body_size(
            v,
            format!("{path}.max_body"),
            &m.max_body,
            MAX_REQUEST_BODY,
            MAX_REQUEST_BODY,
        ),
    })
}

/// The `aggregate` action, checked.
pub(in crate::config) fn aggregate(
    v: &mut Validator<'_>,
    cx: &Context<'_>,
    a: &surface::Aggregate,
) -> Option<Aggregate> {
    let path = format!("{}.aggregate", cx.path);
    if a.calls.is_empty() || a.calls.len() > MAX_CALLS {
        v.error(
            format!("{path}.calls"),
            format!("an aggregation makes 1 to {MAX_CALLS} calls"),
        );
        return None;
    }
    let total = timeout(
        v,
        format!("{path}.timeout"),
        &a.timeout,
        DEFAULT_AGGREGATE_TIMEOUT,
    );
    let max_body = body_size(
        v,
        format!("{path}.max_body"),
        &a.max_body,
        DEFAULT_RESPONSE_BODY,
        MAX_RESPONSE_BODY,
    );
    if (a.calls.len() as u64).saturating_mul(max_body as u64) > MAX_AGGREGATE_BYTES {
        v.error(
            format!("{path}.max_body"),
            format!(
                "{} calls of max_body {max_body} bytes could hold more than {MAX_AGGREGATE_BYTES} bytes per request: lower max_body",
                a.calls.len()
            ),
        );
    }
    let mut names = HashMap::new();
    let mut groups = HashMap::new();
    let mut calls = Vec::new();
    for (i, c) in a.calls.iter().enumerate() {
        let cpath = format!("{path}.calls[{i}]");
        let name = c
            .name
            .clone()
            .or_else(|| c.group.clone())
            .unwrap_or_else(|| c.pool.clone());
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
            v.error(
                format!("{cpath}.name"),
                format!("call name {name:?} must be printable ASCII without spaces or commas"),
            );
        }
        v.unique(&mut names, name.clone(), format!("{cpath}.name"), || {
            format!("two calls are named {name:?}: name them (name:)")
        });
        if let Some(g) = &c.group {
            v.unique(&mut groups, g.clone(), format!("{cpath}.group"), || {
                format!("two calls put their result under {g:?}")
            });
        }
        let pool = super::super::l7::pool_ref(v, format!("{cpath}.pool"), &c.pool, cx.pools);
        let template = template(v, cx, format!("{cpath}.path"), &c.path, true);
        let method = match c.method.as_deref().unwrap_or("GET").parse::<http::Method>() {
            Ok(m) if m == http::Method::GET || m == http::Method::POST => m,
            _ => {
                v.error(
                    format!("{cpath}.method"),
                    "an aggregation call's method is GET or POST (its answer's body is what is merged)",
                );
                continue;
            }
        };
        if !c.allow.is_empty() && !c.deny.is_empty() {
            v.error(
                format!("{cpath}.allow"),
                "allow and deny exclude each other: use one",
            );
        }
        let mut headers = Vec::new();
        for (j, h) in c.headers.iter().enumerate() {
            match http::HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()) {
                // edge frames each call itself and names its host: the
                // client's would contradict it.
                Ok(n)
                    if NOT_FORWARDED.contains(&n.as_str())
                        || crate::proxy::headers::HOP_BY_HOP.contains(&n.as_str()) =>
                {
                    v.error(
                        format!("{cpath}.headers[{j}]"),
                        format!("{h:?} cannot be forwarded to a call: edge sets it for the call"),
                    );
                }
                Ok(n) => headers.push(n),
                Err(_) => v.error(
                    format!("{cpath}.headers[{j}]"),
                    format!("{h:?} is not a header name"),
                ),
            }
        }
        let call_timeout = timeout(v, format!("{cpath}.timeout"), &c.timeout, total);
        if call_timeout > total {
            v.error(
                format!("{cpath}.timeout"),
                format!("the call's timeout is longer than the aggregation's ({total:?})"),
            );
        }
        let (Some(pool), Some(path_t)) = (pool, template) else {
            continue;
        };
        calls.push(Call {
            name,
            pool,
            path: path_t,
            method,
            group: c.group.clone(),
            target: c.target.clone(),
            allow: c.allow.clone(),
            deny: c.deny.clone(),
            mapping: c
                .mapping
                .iter()
                .map(|(a, b)| (a.clone(), b.clone()))
                .collect(),
            headers,
            timeout: call_timeout.min(total),
        });
    }
    Some(Aggregate {
        timeout: total,
        max_body,
        calls,
    })
}

#[cfg(test)]
mod tests {
    use super::unix_seconds;

    #[test]
    fn rfc3339_times_are_read() {
        assert_eq!(unix_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(unix_seconds("2026-01-01T00:00:00Z"), Some(1_767_225_600));
        assert_eq!(
            unix_seconds("2026-01-01T01:00:00+01:00"),
            Some(1_767_225_600)
        );
        assert_eq!(unix_seconds("2000-02-29T12:30:15.25Z"), Some(951_827_415));
        assert_eq!(unix_seconds("2026-13-01T00:00:00Z"), None);
        assert_eq!(unix_seconds("2026-01-01"), None);
        assert_eq!(unix_seconds("2026-01-01T00:00:00"), None);
        assert_eq!(unix_seconds("2026-01-01T00:00:00+1:00"), None);
    }
}
