//! A real browser for tests: headless Chromium driven through chromedriver
//! with a minimal W3C WebDriver client (JSON over HTTP/1.1 on loopback, one
//! connection per command). Navigate, run a script, take a screenshot;
//! dropping the [`Browser`] ends the session (chromedriver then closes
//! Chromium) and stops chromedriver.

use crate::{http, proxy::free_port, wait};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::{
    io::{BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

/// Where Debian's chromium package puts chromedriver.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Where Debian's chromium package puts the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// How long chromedriver gets to answer `/status` after it starts.
const DRIVER_START: Duration = Duration::from_secs(20);
/// How many ports chromedriver is started on before giving up.
const DRIVER_TRIES: u32 = 3;
/// What chromedriver logs when its port is taken.
const IN_USE: &str = "Address already in use";
/// How long a new session (Chromium starting) may take.
const SESSION_START: Duration = Duration::from_secs(60);
/// How long one ordinary command (navigate, script, screenshot) may take.
const COMMAND: Duration = Duration::from_secs(30);
/// How long ending the session may take.
const SESSION_END: Duration = Duration::from_secs(10);
/// How long chromedriver gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How often [`Browser::wait_for`] asks the page again.
const SCRIPT_POLL: Duration = Duration::from_millis(100);

/// A headless Chromium session; ended, with its chromedriver, when dropped.
pub struct Browser {
    driver: SocketAddr,
    session: Option<String>,
    child: Option<Child>,
    log: PathBuf,
    // Holds chromedriver's log and Chromium's profile; removed last.
    _dir: tempfile::TempDir,
}

impl Browser {
    /// Whether chromedriver and Chromium are installed where Debian puts
    /// them.
    pub fn available() -> bool {
        Path::new(CHROMEDRIVER).is_file() && Path::new(CHROMIUM).is_file()
    }

    /// Starts chromedriver on a free loopback port and opens a headless
    /// Chromium session with a fresh profile.
    pub fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("chromedriver.log");
        let profile = dir.path().join("profile");
        std::fs::create_dir(&profile)?;
        let out =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut browser = Self {
            driver: SocketAddr::from(([127, 0, 0, 1], 0)),
            session: None,
            child: None,
            log,
            _dir: dir,
        };
        // A port found free can be taken before chromedriver binds it (by
        // any outgoing connection of a test running beside this one: it is
        // one of the kernel's ephemeral ports): then chromedriver exits
        // saying so, and another port is tried.
        let mut tries = 0;
        loop {
            tries += 1;
            match browser.spawn_driver(&out) {
                Ok(()) => break,
                Err(e) if tries < DRIVER_TRIES && browser.log_text().contains(IN_USE) => {
                    eprintln!("chromedriver's port was taken, trying another: {e:#}");
                    browser.stop_driver();
                }
                Err(e) => return Err(e),
            }
        }
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": CHROMIUM,
                        "args": [
                            "--headless=new",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-dev-shm-usage",
                            "--disable-quic",
                            "--no-first-run",
                            "--disable-background-networking",
                            "--disable-component-update",
                            "--disable-sync",
                            format!("--user-data-dir={}", profile.display()),
                            "--window-size=1280,1600",
                        ],
                    },
                },
            },
        });
        let created = browser
            .command("POST", "/session", Some(&caps), SESSION_START)
            .with_context(|| {
                format!(
                    "starting Chromium; chromedriver's log:\n{}",
                    browser.log_text()
                )
            })?;
        let id = created["sessionId"]
            .as_str()
            .with_context(|| format!("no sessionId in chromedriver's answer: {created}"))?;
        browser.session = Some(id.to_string());
        Ok(browser)
    }

    /// Opens `url` and waits until it has loaded.
    pub fn navigate(&self, url: &str) -> Result<()> {
        self.session_command("POST", "/url", Some(&json!({ "url": url })))
            .with_context(|| format!("opening {url}"))?;
        Ok(())
    }

    /// Runs `script` (a function body: `return ...` gives the result) in
    /// the page with `args` as `arguments`, and returns its result.
    pub fn execute(&self, script: &str, args: &[Value]) -> Result<Value> {
        self.session_command(
            "POST",
            "/execute/sync",
            Some(&json!({ "script": script, "args": args })),
        )
        .with_context(|| format!("running in the page: {script}"))
    }

    /// Runs `script` with `args` until it returns something other than
    /// `null`, `false` or `undefined`, and returns that; fails after
    /// `timeout`.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        script: &str,
        args: &[Value],
    ) -> Result<Value> {
        wait::until(what, timeout, || {
            let v = self.execute(script, args)?;
            if v.is_null() || v == Value::Bool(false) {
                std::thread::sleep(SCRIPT_POLL);
                return Ok(None);
            }
            Ok(Some(v))
        })
    }

    /// A PNG screenshot of the viewport.
    pub fn screenshot_png(&self) -> Result<Vec<u8>> {
        let v = self
            .session_command("GET", "/screenshot", None)
            .context("taking a screenshot")?;
        let b64 = v
            .as_str()
            .with_context(|| format!("a screenshot is base64 text, got {v}"))?;
        base64_decode(b64).context("decoding the screenshot")
    }

    /// What chromedriver has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn session_command(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let id = self.session.as_deref().context("no WebDriver session")?;
        self.command(method, &format!("/session/{id}{path}"), body, COMMAND)
    }

    /// Waits until chromedriver says it is ready, failing early if it exits.
    /// Starts chromedriver on a free loopback port, its output going to
    /// `out` (appended), and waits until it is ready.
    fn spawn_driver(&mut self, out: &std::fs::File) -> Result<()> {
        let port = free_port()?;
        self.driver = SocketAddr::from(([127, 0, 0, 1], port));
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            // Its own process group, so that whatever is left of Chromium
            // can be stopped with it (see `stop_driver`).
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out.try_clone()?)
            .spawn()
            .with_context(|| format!("starting {CHROMEDRIVER}"))?;
        self.child = Some(child);
        self.wait_driver()
    }

    fn wait_driver(&mut self) -> Result<()> {
        let driver = self.driver;
        let child = self.child.as_mut().context("chromedriver is not running")?;
        let log = self.log.clone();
        wait::until("chromedriver to be ready", DRIVER_START, || {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "chromedriver exited with {status}; its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            let Ok(v) = call(driver, "GET", "/status", None, Duration::from_secs(2)) else {
                return Ok(None);
            };
            Ok((v["ready"] == Value::Bool(true)).then_some(()))
        })
    }

    /// Sends one WebDriver command; returns the answer's `value`.
    fn command(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Value> {
        call(self.driver, method, path, body, timeout)
    }

    /// SIGTERM to chromedriver's process group (chromedriver and any
    /// Chromium process it left), SIGKILL after a grace period.
    fn stop_driver(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let group = -(child.id() as libc::pid_t);
        // SAFETY: kill(2) on the process group of a child we spawned as its
        // group leader and have not reaped, so the group cannot be reused.
        unsafe { libc::kill(group, libc::SIGTERM) };
        let exited = wait::until("chromedriver to exit", STOP_GRACE, || Ok(child.try_wait()?));
        // SAFETY: as above; the leader is reaped only below, after this.
        unsafe { libc::kill(group, libc::SIGKILL) };
        if exited.is_err() {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(id) = self.session.take()
            && let Err(e) = self.command("DELETE", &format!("/session/{id}"), None, SESSION_END)
        {
            eprintln!("ending the WebDriver session: {e:#}");
        }
        self.stop_driver();
    }
}

/// One WebDriver call to `driver` on a new connection: `method path` with
/// a JSON `body`; the answer's `value`, or an error with WebDriver's error
/// code and message.
fn call(
    driver: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<Value> {
    let mut stream = TcpStream::connect_timeout(&driver, Duration::from_secs(5))
        .with_context(|| format!("connecting to chromedriver at {driver}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {driver}\r\nConnection: close\r\n");
    if method != "GET" && method != "DELETE" {
        req.push_str("Content-Type: application/json; charset=utf-8\r\n");
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    stream.write_all(req.as_bytes())?;
    let mut reader = BufReader::new(stream);
    let mut msg = http::read_message(&mut reader)
        .with_context(|| format!("reading chromedriver's answer to {method} {path}"))?
        .with_context(|| format!("chromedriver closed the connection on {method} {path}"))?;
    // Without a length the body runs to the end of the connection.
    if msg.header("content-length").is_none() && msg.header("transfer-encoding").is_none() {
        reader.read_to_end(&mut msg.body)?;
    }
    let answer: Value = serde_json::from_slice(&msg.body).with_context(|| {
        format!(
            "chromedriver's answer to {method} {path} is not JSON ({}): {}",
            msg.start,
            msg.text()
        )
    })?;
    let value = answer.get("value").cloned().unwrap_or(Value::Null);
    if msg.status() != Some(200) {
        bail!(
            "{method} {path}: {} {}: {}",
            msg.start,
            value["error"].as_str().unwrap_or("unknown error"),
            value["message"].as_str().unwrap_or("")
        );
    }
    Ok(value)
}

/// Decodes standard base64 (padding optional, whitespace ignored).
pub fn base64_decode(text: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            _ => bail!("byte {c:#04x} is not base64"),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::base64_decode;

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(base64_decode("").unwrap(), b"");
        assert_eq!(base64_decode("TWFu").unwrap(), b"Man");
        assert_eq!(base64_decode("TWE=").unwrap(), b"Ma");
        assert_eq!(base64_decode("TQ==").unwrap(), b"M");
        assert_eq!(base64_decode("TQ").unwrap(), b"M");
        assert_eq!(base64_decode("iVBORw0KGgo=").unwrap(), b"\x89PNG\r\n\x1a\n");
        assert_eq!(base64_decode("+/+/\n").unwrap(), [0xfbu8, 0xff, 0xbf]);
        assert!(base64_decode("TW*u").is_err());
    }
}
