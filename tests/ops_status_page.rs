//! The admin status page (`GET /` of the admin listener) in a real browser:
//! headless Chromium through chromedriver opens it, waits until it has
//! rendered `/api/status`, sees both backends of a pool healthy, then sees
//! one go down within seconds of it stopping. The page loads nothing but
//! itself and the API from the admin address; a screenshot is kept in
//! `target/test-artifacts/status-page.png`.
//!
//! Needs Debian's chromium and chromium-driver. Without chromedriver the
//! test says so and passes, except under CI (`CI` set), where it fails.

use anyhow::{Context, Result, bail, ensure};
use edge_tests::{
    backend::Backend,
    browser::{self, Browser},
    http,
    proxy::Proxy,
};
use serde_json::{Value, json};
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

/// How long the page may take to render both backends healthy.
const READY: Duration = Duration::from_secs(20);
/// How long a stopped backend may take to show as down.
const DOWN: Duration = Duration::from_secs(15);

/// The first bytes of every PNG file.
const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

/// The backend rows of pool `app`, by address: `{address: {state, text}}`
/// once the page has rendered, else `null`.
const BACKENDS: &str = r#"
if (document.body.dataset.ready !== '1') return null;
const out = {};
for (const row of document.querySelectorAll('tr.backend')) {
  if (row.dataset.pool !== 'app') continue;
  const cell = row.querySelector('td.state');
  out[row.dataset.address] = {
    state: row.dataset.state,
    classes: row.className,
    text: cell ? cell.textContent.trim() : null,
  };
}
return out;
"#;

/// What the page shows, for failure messages.
const PAGE_STATE: &str = r#"
return {
  ready: document.body.dataset.ready || null,
  generation: document.getElementById('generation')?.textContent ?? null,
  error: document.getElementById('error')?.textContent ?? null,
  backends: [...document.querySelectorAll('tr.backend')].map((r) => r.outerHTML.slice(0, 300)),
};
"#;

#[test]
fn status_page_shows_backends_going_down() -> Result<()> {
    if !Path::new(browser::CHROMEDRIVER).is_file() {
        if std::env::var_os("CI").is_some() {
            bail!(
                "{} is missing: the status page test needs the Debian packages \
                 chromium and chromium-driver (CI must run it)",
                browser::CHROMEDRIVER
            );
        }
        eprintln!(
            "SKIPPED: {} is not installed (Debian packages chromium and chromium-driver); \
             the status page test did not run",
            browser::CHROMEDRIVER
        );
        return Ok(());
    }

    let a = Backend::start("a", None, "127.0.0.1:0".parse()?)?;
    let b = Backend::start("b", None, "127.0.0.1:0".parse()?)?;
    let (a_addr, b_addr) = (a.addr().to_string(), b.addr().to_string());
    let p = Proxy::start(|listen| {
        format!(
            "\
listeners:
  - name: web
    address: {listen}
    pool: app
pools:
  - name: app
    algorithm: round_robin
    backends: [{{address: {a_addr}}}, {{address: {b_addr}}}]
    health_check: {{ path: /, interval: 250ms, timeout: 250ms, rise: 1, fall: 1 }}
"
        )
    })?;
    for i in 0..6 {
        let r = http::get(p.listen, &format!("/warm-up/{i}"))?;
        ensure!(
            r.status() == Some(200),
            "request {i} through edge: {}",
            r.start
        );
    }
    let page = http::get(p.admin, "/")?;
    ensure!(
        page.status() == Some(200)
            && page
                .header("content-type")
                .is_some_and(|t| t.starts_with("text/html")),
        "GET / of the admin listener: {} ({:?})",
        page.start,
        page.header("content-type")
    );

    let browser = Browser::start()?;
    let origin = format!("http://{}/", p.admin);
    browser.navigate(&origin)?;

    // Both backends listed, healthy, with the state in words.
    let healthy = browser
        .wait_for(
            "the page to show both backends healthy",
            READY,
            &format!(
                "const rows = (function () {{ {BACKENDS} }})();
                 if (!rows) return null;
                 const [a, b] = arguments;
                 return rows[a]?.state === 'healthy' && rows[b]?.state === 'healthy' ? rows : null;"
            ),
            &[json!(a_addr), json!(b_addr)],
        )
        .with_context(|| diagnose(&browser, p.admin))?;
    for addr in [&a_addr, &b_addr] {
        let row = &healthy[addr.as_str()];
        ensure!(
            row["text"] == "healthy" && row["classes"] == "backend state-healthy",
            "row of {addr}: {row}"
        );
    }

    // The header shows the live generation, and the listener is listed.
    let api: Value = serde_json::from_slice(&http::get(p.admin, "/api/status")?.body)
        .context("/api/status is not JSON")?;
    let shown = browser.execute(
        "return [document.getElementById('generation').textContent.trim(),
                 [...document.querySelectorAll('tr.listener')].map((r) => r.textContent),
                 document.getElementById('bgp').textContent.trim()];",
        &[],
    )?;
    // No bgp section: the BGP panel says so.
    ensure!(
        shown[2].as_str() == Some("No bgp section: nothing is announced."),
        "the BGP panel shows {}",
        shown[2]
    );
    ensure!(
        shown[0].as_str() == Some(api["generation"].to_string().as_str()),
        "the page shows generation {} where /api/status says {}",
        shown[0],
        api["generation"]
    );
    let port = p.listen.port().to_string();
    let listed = |row: &Value| {
        row.as_str()
            .is_some_and(|text| text.starts_with("web") && text.contains(&port))
    };
    ensure!(
        shown[1]
            .as_array()
            .is_some_and(|rows| rows.iter().any(listed)),
        "listener web ({}) is not listed: {}",
        p.listen,
        shown[1]
    );

    // A backend that stops shows as down, the other stays healthy.
    drop(b);
    let down = browser
        .wait_for(
            "the page to show the stopped backend down",
            DOWN,
            &format!(
                "const rows = (function () {{ {BACKENDS} }})();
                 return rows && rows[arguments[0]]?.state === 'down' ? rows : null;"
            ),
            &[json!(b_addr)],
        )
        .with_context(|| diagnose(&browser, p.admin))?;
    let (row_a, row_b) = (&down[a_addr.as_str()], &down[b_addr.as_str()]);
    ensure!(
        row_b["text"] == "down" && row_b["classes"] == "backend state-down",
        "row of the stopped backend {b_addr}: {row_b}"
    );
    ensure!(
        row_a["state"] == "healthy",
        "the running backend {a_addr}: {row_a}"
    );

    // A screenshot for people (and CI artifacts).
    let png = browser.screenshot_png()?;
    ensure!(
        png.starts_with(PNG_MAGIC),
        "the screenshot is not a PNG ({} bytes starting {:02x?})",
        png.len(),
        &png[..png.len().min(8)]
    );
    let dir = target_dir()?.join("test-artifacts");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = dir.join("status-page.png");
    std::fs::write(&file, &png).with_context(|| format!("writing {}", file.display()))?;
    eprintln!("screenshot: {}", file.display());

    // Nothing but the page's own origin was fetched.
    let loaded = browser.execute(
        "return performance.getEntriesByType('resource').map((e) => e.name);",
        &[],
    )?;
    let loaded: Vec<&str> = loaded
        .as_array()
        .context("resource entries are a list")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    ensure!(
        loaded.iter().any(|u| u.ends_with("/api/status")),
        "the page never fetched /api/status: {loaded:?}"
    );
    let foreign: Vec<&&str> = loaded.iter().filter(|u| !u.starts_with(&origin)).collect();
    ensure!(
        foreign.is_empty(),
        "the page loaded resources from elsewhere than {origin}: {foreign:?}"
    );
    ensure!(
        origin.starts_with("http://127."),
        "the admin address {origin} is not loopback"
    );
    Ok(())
}

/// What the page and the API show, for a failed wait.
fn diagnose(browser: &Browser, admin: SocketAddr) -> String {
    let page = browser.execute(PAGE_STATE, &[]).map_or_else(
        |e| format!("(cannot read the page: {e:#})"),
        |v| v.to_string(),
    );
    let api = http::get(admin, "/api/status")
        .map_or_else(|e| format!("(no answer: {e:#})"), |m| m.text());
    format!("the page shows {page}\n/api/status says {api}")
}

/// Cargo's target directory: `$CARGO_TARGET_DIR`, else `target` beside
/// this crate.
fn target_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return Ok(PathBuf::from(dir));
    }
    Ok(Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the tests crate has no parent directory")?
        .join("target"))
}
