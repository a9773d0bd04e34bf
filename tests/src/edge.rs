//! The `edge` binary as a child process, stopped by its PID when dropped.

use crate::{http, wait};
use anyhow::{Context, Result, bail};
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

/// Where the `edge` binary is: `$EDGE_BIN`, else next to the test binary's
/// directory (`target/<profile>/edge`), where cargo puts it.
pub fn binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("EDGE_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().context("test binary has no directory")?;
    if dir.ends_with("deps") {
        dir = dir.parent().context("deps has no parent")?;
    }
    let bin = dir.join("edge");
    if !bin.exists() {
        bail!(
            "{} not found: build it first (cargo build -p edge-userspace) or set EDGE_BIN",
            bin.display()
        );
    }
    Ok(bin)
}

/// What edge logs (at `info`, the level these tests run it at) once every
/// listener and the admin endpoint are bound (`daemon::tell_when_ready`).
pub const READY_LINE: &str = "every listener is bound: ready";

/// A running `edge run`.
pub struct Edge {
    child: Option<Child>,
    log: PathBuf,
}

impl Edge {
    /// Starts `edge run --config <config>` inside namespace `ns` (or here),
    /// logging to `<config>.log`.
    pub fn start(ns: Option<&str>, config: &Path) -> Result<Self> {
        Self::start_bin(&binary()?, ns, config)
    }

    /// Like [`Edge::start`], with the binary at `bin`.
    pub fn start_bin(bin: &Path, ns: Option<&str>, config: &Path) -> Result<Self> {
        Self::start_env(bin, ns, config, &[])
    }

    /// Like [`Edge::start_bin`], with more environment variables.
    pub fn start_env(
        bin: &Path,
        ns: Option<&str>,
        config: &Path,
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let log = config.with_extension("log");
        let out = std::fs::File::create(&log)?;
        let mut cmd = match ns {
            // `ip netns exec` execs the program, so the child's PID is edge's.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let child = cmd
            .arg("run")
            .arg("--config")
            .arg(config)
            .env(
                "EDGE_LOG",
                std::env::var("EDGE_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Self {
            child: Some(child),
            log,
        })
    }

    /// Waits until the admin endpoint at `admin` answers `/healthz`
    /// (from namespace `ns`) and edge has logged that every listener is
    /// bound, failing early if edge exits. `/healthz` alone is not enough:
    /// the admin endpoint starts first, and a request sent the moment it
    /// answers could find a listener not yet bound (refused).
    pub fn wait_ready(
        &mut self,
        ns: Option<&str>,
        admin: SocketAddr,
        timeout: Duration,
    ) -> Result<()> {
        let ns = ns.map(str::to_string);
        wait::until(
            "edge to answer /healthz with every listener bound",
            timeout,
            || {
                if let Some(child) = self.child.as_mut()
                    && let Some(status) = child.try_wait()?
                {
                    bail!("edge exited with {status}; log:\n{}", self.log_text());
                }
                if !self.log_text().contains(READY_LINE) {
                    return Ok(None);
                }
                let probe = move || http::get(admin, "/healthz");
                let r = match &ns {
                    Some(ns) => crate::netns::run_in(ns, probe),
                    None => probe(),
                };
                Ok(r.ok().filter(|m| m.status() == Some(200)).map(|_| ()))
            },
        )
    }

    /// Whether edge has exited, and how (`None` while it runs).
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// edge's PID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What edge has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for edge to exit by itself; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<i32>> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        let status = wait::until("edge to exit", timeout, || Ok(child.try_wait()?));
        match status {
            Ok(s) => Ok(s.code()),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }

    /// Sends SIGTERM and waits for edge to exit; returns its exit code.
    pub fn stop(&mut self, timeout: Duration) -> Result<Option<i32>> {
        if let Some(child) = &self.child {
            // SAFETY: kill(2) on the PID of a child we spawned and have not
            // reaped, so the PID cannot have been reused.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        }
        self.wait_exit(timeout)
    }
}

impl Drop for Edge {
    /// SIGTERM first, so edge removes its control socket on the way out
    /// (with nothing in flight it exits at once); SIGKILL if it lingers.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on the PID of a child we spawned and have not
            // reaped, so the PID cannot have been reused.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let exited = wait::until("edge to exit", Duration::from_secs(5), || {
                Ok(child.try_wait()?.map(|_| ()))
            });
            if exited.is_err() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

/// `edge check FILES…`: whether it passed, and everything it said.
pub fn check(files: &[&Path]) -> Result<(bool, String)> {
    let out = Command::new(binary()?).arg("check").args(files).output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

/// Whether `text` reports something at `file:line:COLUMN: `.
pub fn reports_line(text: &str, file: &Path, line: usize) -> bool {
    let head = format!("{}:{line}:", file.display());
    text.match_indices(&head).any(|(i, _)| {
        let rest = &text[i + head.len()..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        digits > 0 && rest[digits..].starts_with(": ")
    })
}

/// The 1-based line of the first line of `text` containing `marker`.
pub fn line_of(text: &str, marker: &str) -> Result<usize> {
    text.lines()
        .position(|l| l.contains(marker))
        .map(|i| i + 1)
        .with_context(|| format!("{marker:?} is not in the text"))
}

/// One configuration `edge check` must refuse: its name (the file is
/// `NAME.yaml`), its text, a marker on the line the error must be
/// reported at, and a word the message must have.
pub struct Refused<'a> {
    /// File name, without `.yaml`.
    pub name: &'a str,
    /// The YAML.
    pub yaml: String,
    /// Text on the faulty line.
    pub marker: &'a str,
    /// A word the message must contain.
    pub word: &'a str,
}

/// Writes each case into `dir` and runs `edge check` on it: each must be
/// refused, with an error on its marker's line that says its word. Fails
/// listing every case that was not.
pub fn expect_refused(dir: &Path, cases: Vec<Refused<'_>>) -> Result<()> {
    let mut failures = Vec::new();
    for c in cases {
        let file = dir.join(format!("{}.yaml", c.name));
        std::fs::write(&file, &c.yaml)?;
        let line = line_of(&c.yaml, c.marker)?;
        let (ok, text) = check(&[file.as_path()])?;
        if ok {
            failures.push(format!("{}: edge check accepted it", c.name));
        } else if !reports_line(&text, &file, line) {
            failures.push(format!(
                "{}: no error at {}:{line}:COLUMN:\n{text}",
                c.name,
                file.display()
            ));
        } else if !text.contains(c.word) {
            failures.push(format!(
                "{}: the message does not say {:?}:\n{text}",
                c.name, c.word
            ));
        }
    }
    anyhow::ensure!(failures.is_empty(), "{}", failures.join("\n---\n"));
    Ok(())
}
