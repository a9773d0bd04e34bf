//! The rows that work on bodies: a JSON response transformation, XML
//! turned into JSON, and an aggregation of three upstream calls, with the
//! JSON and the XML documents also proxied untouched on the same route
//! (the baselines of the first two). Their upstream is a backend of their
//! own (nginx, one worker, on the origin's CPU) serving fixed files with
//! the content type each row needs; the probe checks that edge's answer is
//! the transformed document, not the upstream's (for the plain rows, the
//! upstream's document as it is).

use super::configs::Policy;
use crate::bench_l7::{self, proc::Proc};
use anyhow::{Context, Result, bail};
use std::{fmt::Write, path::Path, process::Command};

/// Where the backend serves [`json_body`], and what wrk asks edge for in
/// the JSON transformation row and its plain baseline.
pub const JSON_PATH: &str = "/item.json";
/// Where the backend serves [`xml_body`], and what wrk asks edge for in
/// the XML → JSON row and its plain baseline.
pub const XML_PATH: &str = "/catalog.xml";
/// What wrk asks edge for in the aggregation row (`id` 42).
pub const AGGREGATE_PATH: &str = "/dashboard/42";
/// The size [`json_body`] is filled up to (it ends a little above).
const JSON_SIZE: usize = 1000;
/// The size [`xml_body`] is filled up to (it ends a little above).
const XML_SIZE: usize = 10 * 1024;
/// The three answers the aggregation combines, at `/users/42`,
/// `/orders/42` and `/prefs/42`.
const PARTS: [(&str, &str); 3] = [
    (
        "users",
        r#"{"id":"42","name":"Ada Lovelace","email":"ada@example.com","password":"not-for-clients"}"#,
    ),
    (
        "orders",
        r#"{"data":{"count":3,"last":"2026-01-02","total":"41.50"},"page":1}"#,
    ),
    (
        "prefs",
        r#"{"theme":"dark","lang":"en","tz":"Europe/Paris"}"#,
    ),
];

/// The JSON document (an object of about [`JSON_SIZE`] bytes): a user with
/// a name to rename and a password hash to remove, an internal member to
/// remove, a `meta` object to add to, and items filling it up.
pub fn json_body() -> String {
    let mut s = String::from(
        r#"{"id":42,"user":{"name":"Ada Lovelace","email":"ada@example.com","password_hash":"bcrypt-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ","roles":["admin","reader"]},"internal":{"shard":7,"trace":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},"meta":{"version":1},"items":["#,
    );
    let mut i = 0;
    while s.len() < JSON_SIZE - 2 {
        if i > 0 {
            s.push(',');
        }
        i += 1;
        let _ = write!(
            s,
            r#"{{"sku":"SKU-{i:04}","qty":{},"price":"{}.99"}}"#,
            i % 5 + 1,
            i + 3
        );
    }
    s.push_str("]}");
    s
}

/// The XML document (about [`XML_SIZE`] bytes): a root with a namespace
/// and an attribute, repeated elements with attributes, nested repeated
/// elements, and text with entity references.
pub fn xml_body() -> String {
    const END: &str = "</catalog>\n";
    let mut s = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <catalog xmlns=\"urn:example:catalog\" generated=\"2026-01-01T00:00:00Z\">\n",
    );
    let mut i = 0;
    while s.len() + END.len() < XML_SIZE {
        i += 1;
        let _ = write!(
            s,
            "  <book id=\"bk{i:03}\" lang=\"en\">\n    \
             <title>Book number {i}</title>\n    \
             <author>Author {}</author>\n    \
             <price currency=\"EUR\">{}.99</price>\n    \
             <tags><tag>fiction</tag><tag>series {}</tag></tags>\n    \
             <description>A short description of book {i} &amp; its &lt;edition&gt;.</description>\n  \
             </book>\n",
            i % 17,
            5 + i % 40,
            i % 7
        );
    }
    s.push_str(END);
    s
}

/// The path wrk and the probe ask edge for in `policy`'s row.
pub fn path(policy: Policy) -> Option<&'static str> {
    match policy {
        Policy::PlainJson | Policy::JsonTransform => Some(JSON_PATH),
        Policy::PlainXml | Policy::XmlToJson => Some(XML_PATH),
        Policy::Aggregate => Some(AGGREGATE_PATH),
        _ => None,
    }
}

/// edge's routes (under the listener) and extra pools (after the origin's)
/// for `policy`'s row, the pools on the backend at `backend`; empty for
/// the other rows.
pub fn edge_parts(policy: Policy, backend: u16) -> (String, String) {
    let pool = |name: &str| {
        format!(
            "  - name: {name}
    backends:
      - address: 127.0.0.1:{backend}
"
        )
    };
    // A route to the backend's document at `doc`, `then` (the
    // transformation, if any) after it.
    let route = |name: &str, doc: &str, then: &str| {
        format!(
            "    routes:
      - name: {name}
        match: {{path: {{exact: {doc}}}}}
        proxy: {{pool: backend}}
{then}"
        )
    };
    let routes = match policy {
        Policy::PlainJson => route("json", JSON_PATH, ""),
        Policy::JsonTransform => route(
            "json",
            JSON_PATH,
            "        transform:
          response:
            json:
              remove: [\"/internal\", \"/user/password_hash\"]
              rename: {\"/user/name\": \"/user/full_name\"}
              set: {\"/meta/via\": \"edge\"}
",
        ),
        Policy::PlainXml => route("xml", XML_PATH, ""),
        Policy::XmlToJson => route(
            "xml",
            XML_PATH,
            "        transform:
          response:
            xml_to_json: true
",
        ),
        Policy::Aggregate => "    routes:
      - name: dashboard
        match: {path: {regex: \"^/dashboard/(?P<id>[0-9]+)$\"}}
        aggregate:
          timeout: 3s
          calls:
            - {name: user, pool: users, path: \"/users/{id}\", group: user, deny: [password], mapping: {name: full_name}}
            - {name: orders, pool: orders, path: \"/orders/{id}\", group: orders, target: data}
            - {name: prefs, pool: prefs, path: \"/prefs/{id}\"}
"
        .to_string(),
        _ => return (String::new(), String::new()),
    };
    let pools = match policy {
        Policy::Aggregate => ["users", "orders", "prefs"].map(pool).concat(),
        _ => pool("backend"),
    };
    (routes, pools)
}

/// Writes the documents and starts the backend (nginx, one worker) on
/// 127.0.0.1:`port` pinned to `cpus`, under `dir/backend`; waits until it
/// answers. Stopped when dropped.
pub fn start_backend(dir: &Path, port: u16, cpus: Option<&str>) -> Result<Proc> {
    let prefix = dir.join("backend");
    let www = prefix.join("www");
    for (what, _) in PARTS {
        std::fs::create_dir_all(www.join(what))?;
    }
    let json = json_body();
    std::fs::write(www.join(&JSON_PATH[1..]), &json)?;
    std::fs::write(www.join(&XML_PATH[1..]), xml_body())?;
    for (what, body) in PARTS {
        std::fs::write(www.join(what).join("42"), body)?;
    }
    let conf = prefix.join("nginx.conf");
    std::fs::write(&conf, nginx_conf(&prefix, port))?;
    let utf8 = |p: &Path| -> Result<String> {
        Ok(p.to_str()
            .context("temporary path is not UTF-8")?
            .to_string())
    };
    let (prefix_s, conf_s, err_s) = (
        format!("{}/", utf8(&prefix)?),
        utf8(&conf)?,
        utf8(&prefix.join("error.log"))?,
    );
    let mut backend = Proc::spawn(
        "backend",
        cpus,
        Path::new("nginx"),
        &["-e", &err_s, "-p", &prefix_s, "-c", &conf_s],
        &prefix.join("stderr.log"),
        libc::SIGTERM,
    )?;
    bench_l7::wait_answers_with(
        &mut backend,
        &bench_l7::plain_url(port, JSON_PATH),
        &[],
        json.len() as u64,
    )?;
    Ok(backend)
}

/// The backend's nginx configuration: `bench l7`'s origin settings, the
/// files under `prefix/www` as `application/json`, the XML document as
/// `application/xml`.
fn nginx_conf(prefix: &Path, port: u16) -> String {
    let p = prefix.display();
    format!(
        "daemon off;
master_process on;
worker_processes 1;
user root;
pid {p}/nginx.pid;
error_log {p}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    sendfile on;
    tcp_nodelay on;
    keepalive_timeout 60s;
    keepalive_requests 1000000;
    types {{ }}
    default_type application/json;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {p}/www;
        location = {XML_PATH} {{
            default_type application/xml;
        }}
    }}
}}
"
    )
}

/// Waits until edge at `url` answers as [`expect`] wants, failing early
/// (with its log) if it exits; a failure says what the last try got.
pub fn wait_answers(
    server: &mut Proc,
    policy: Policy,
    url: &str,
    headers: &[String],
) -> Result<()> {
    bench_l7::wait_until_answers(server, url, || expect(policy, url, headers))
}

/// One GET of `url` (with `headers`) through edge: fails unless it
/// answers 200, `application/json`, with a JSON object that shows
/// `policy`'s work (see [`marks`]) and, for the aggregation,
/// `X-Edge-Completed: true`. For a plain row, the answer must be the
/// backend's document untouched: its content type (`application/xml` for
/// the XML), its shape and its marks.
pub fn expect(policy: Policy, url: &str, headers: &[String]) -> Result<()> {
    let (status, head, body) = get(url, headers)?;
    let header = |name: &str| {
        head.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    if status != 200 {
        bail!(
            "GET {url}: status {status}, expected 200: {}",
            snippet(&body)
        );
    }
    let xml = policy == Policy::PlainXml;
    let wanted = if xml {
        "application/xml"
    } else {
        "application/json"
    };
    let content_type = header("content-type").unwrap_or("");
    if !content_type.starts_with(wanted) {
        bail!("GET {url}: Content-Type {content_type:?}, expected {wanted}");
    }
    let body = body.trim();
    if xml {
        if !(body.starts_with("<?xml") && body.ends_with("</catalog>")) {
            bail!("GET {url}: not the XML document: {}", snippet(body));
        }
    } else if !(body.starts_with('{') && body.ends_with('}')) {
        bail!("GET {url}: not a JSON object: {}", snippet(body));
    }
    let (present, absent) = marks(policy)?;
    if let Some(m) = present.iter().find(|m| !body.contains(*m)) {
        bail!("GET {url}: no {m} in the answer: {}", snippet(body));
    }
    if let Some(m) = absent.iter().find(|m| body.contains(*m)) {
        bail!("GET {url}: {m} still in the answer: {}", snippet(body));
    }
    if policy == Policy::Aggregate {
        let completed = header("x-edge-completed");
        if completed != Some("true") || header("x-edge-failed").is_some() {
            bail!(
                "GET {url}: X-Edge-Completed {completed:?}, X-Edge-Failed {:?}: not every call answered",
                header("x-edge-failed")
            );
        }
    }
    Ok(())
}

/// What the answer of `policy`'s row must contain, and must not.
fn marks(policy: Policy) -> Result<(&'static [&'static str], &'static [&'static str])> {
    let pair: (&'static [&'static str], &'static [&'static str]) = match policy {
        // The upstream's JSON as it is: nothing removed, renamed or set.
        Policy::PlainJson => (
            &[
                "\"internal\"",
                "\"password_hash\"",
                "\"name\"",
                "\"SKU-0001\"",
                "\"version\"",
            ],
            &["\"full_name\"", "\"via\""],
        ),
        // remove /internal and /user/password_hash, rename /user/name,
        // set /meta/via.
        Policy::JsonTransform => (
            &[
                "\"full_name\"",
                "\"via\"",
                "\"edge\"",
                "\"SKU-0001\"",
                "\"version\"",
            ],
            &["\"internal\"", "\"password_hash\"", "\"name\""],
        ),
        // The upstream's XML as it is: declaration, attributes, entity
        // references, not turned into JSON.
        Policy::PlainXml => (
            &[
                "<?xml",
                "<catalog xmlns=",
                "<book id=\"bk001\"",
                "<tag>",
                "&amp;",
            ],
            &["\"@xmlns\"", "\"@id\""],
        ),
        // Attributes as "@name", repeated elements, decoded entities.
        Policy::XmlToJson => (
            &[
                "\"catalog\"",
                "\"@xmlns\"",
                "\"book\"",
                "\"@id\"",
                "\"bk001\"",
                "\"tag\"",
            ],
            &["<?xml", "</", "&amp;"],
        ),
        // user: password denied, name mapped; orders: its `data`; prefs
        // merged at the top.
        Policy::Aggregate => (
            &[
                "\"user\"",
                "\"full_name\"",
                "\"orders\"",
                "\"count\"",
                "\"theme\"",
            ],
            &["\"password\"", "\"data\"", "\"page\"", "\"name\""],
        ),
        _ => bail!("{} is not a body row", policy.slug()),
    };
    Ok(pair)
}

/// A response: status, header fields (names lower case), body.
type Got = (u16, Vec<(String, String)>, String);

/// GET with curl: the status, the response's header fields (names in
/// lower case) and its body.
fn get(url: &str, headers: &[String]) -> Result<Got> {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "5", "-i"]);
    for h in headers {
        cmd.arg("-H").arg(h);
    }
    let out = cmd.arg(url).output().context("running curl")?;
    if !out.status.success() {
        bail!(
            "GET {url}: curl exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("GET {url}: no end of the header in {:?}", snippet(&text)))?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .with_context(|| format!("GET {url}: no status line in {:?}", snippet(head)))?;
    let fields: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok((status, fields, body.to_string()))
}

/// The start of `s`, for messages.
fn snippet(s: &str) -> String {
    s.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documents_have_their_sizes() {
        let json = json_body();
        assert!((JSON_SIZE..JSON_SIZE + 60).contains(&json.len()), "{json}");
        assert!(
            json.starts_with("{\"id\":42,") && json.ends_with("}]}"),
            "{json}"
        );
        let xml = xml_body();
        assert!((XML_SIZE..XML_SIZE + 400).contains(&xml.len()), "{xml}");
        assert!(xml.ends_with("</book>\n</catalog>\n"), "{xml}");
        assert_eq!(
            xml.matches("<book ").count(),
            xml.matches("</book>").count()
        );
    }

    #[test]
    fn the_marks_tell_the_upstream_documents_apart() {
        // The untransformed documents must fail the probe's checks.
        let untouched = [
            (Policy::JsonTransform, json_body()),
            (Policy::XmlToJson, xml_body()),
            (Policy::Aggregate, PARTS.map(|(_, b)| b).concat()),
        ];
        for (policy, body) in untouched {
            let (present, absent) = marks(policy).unwrap();
            assert!(
                present.iter().any(|m| !body.contains(m))
                    || absent.iter().any(|m| body.contains(m)),
                "{policy:?}"
            );
        }
        assert!(marks(Policy::Plain).is_err());
    }

    #[test]
    fn the_plain_rows_want_the_upstream_documents_as_they_are() {
        let documents = [
            (Policy::PlainJson, json_body()),
            (Policy::PlainXml, xml_body()),
        ];
        for (policy, body) in documents {
            let (present, absent) = marks(policy).unwrap();
            assert!(present.iter().all(|m| body.contains(m)), "{policy:?}");
            assert!(!absent.iter().any(|m| body.contains(m)), "{policy:?}");
        }
        // The body the probe sees is trimmed.
        assert!(xml_body().trim().ends_with("</catalog>"));
        // A transformed answer is not the plain row's: its marks say so.
        let (present, absent) = marks(Policy::PlainJson).unwrap();
        let transformed = r#"{"user":{"full_name":"Ada"},"meta":{"via":"edge"}}"#;
        assert!(
            present.iter().any(|m| !transformed.contains(m))
                && absent.iter().any(|m| transformed.contains(m))
        );
        let (_, absent) = marks(Policy::PlainXml).unwrap();
        let converted = r#"{"catalog":{"@xmlns":"x"}}"#;
        assert!(absent.iter().any(|m| converted.contains(m)));
    }

    #[test]
    fn routes_and_pools() {
        assert_eq!(
            edge_parts(Policy::Plain, 9001),
            (String::new(), String::new())
        );
        let (routes, pools) = edge_parts(Policy::JsonTransform, 9001);
        assert!(
            routes.contains("match: {path: {exact: /item.json}}\n"),
            "{routes}"
        );
        assert!(
            routes.contains("rename: {\"/user/name\": \"/user/full_name\"}\n"),
            "{routes}"
        );
        assert_eq!(
            pools,
            "  - name: backend\n    backends:\n      - address: 127.0.0.1:9001\n"
        );
        let (routes, pools) = edge_parts(Policy::Aggregate, 9001);
        assert!(routes.contains("path: \"/users/{id}\""), "{routes}");
        assert_eq!(pools.matches("127.0.0.1:9001\n").count(), 3, "{pools}");
        assert!(pools.contains("  - name: prefs\n"), "{pools}");
        assert_eq!(path(Policy::XmlToJson), Some(XML_PATH));
        assert_eq!(path(Policy::ApiKey), None);
        // The plain rows: the same route and pool, no transformation.
        let (routes, pools) = edge_parts(Policy::PlainXml, 9001);
        assert_eq!(
            routes,
            "    routes:
      - name: xml
        match: {path: {exact: /catalog.xml}}
        proxy: {pool: backend}
"
        );
        assert_eq!(pools, edge_parts(Policy::XmlToJson, 9001).1);
        assert!(
            edge_parts(Policy::XmlToJson, 9001).0.starts_with(&routes),
            "the XML row's route is its baseline's plus the transformation"
        );
        let (plain, _) = edge_parts(Policy::PlainJson, 9001);
        let (transformed, _) = edge_parts(Policy::JsonTransform, 9001);
        assert!(transformed.starts_with(&plain), "{plain}");
        assert_eq!(path(Policy::PlainJson), Some(JSON_PATH));
        assert_eq!(path(Policy::PlainXml), Some(XML_PATH));
    }
}
