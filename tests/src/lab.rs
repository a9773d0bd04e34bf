//! Network labs: namespaces joined by veth pairs and bridges, deleted when
//! the [`Lab`] is dropped, even when a test fails.
//!
//! Names carry the creating process's id (`edget-<pid>-<n>-<host>`), so labs
//! of parallel tests never collide, and a later run can remove what a killed
//! run left behind.

use anyhow::{Context, Result, bail};
use std::{
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

const PREFIX: &str = "edget";
static NEXT: AtomicU32 = AtomicU32::new(0);

/// Runs `cmd`, returning its stdout, or failing with its stderr.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `ip` (iproute2) with `args`.
pub fn ip(args: &[&str]) -> Result<String> {
    output(Command::new("ip").args(args))
}

/// A set of network namespaces owned by this process.
pub struct Lab {
    tag: String,
    namespaces: Vec<String>,
    root_links: Vec<String>,
}

impl Lab {
    /// A new, empty lab; first removes namespaces left by dead processes.
    pub fn new() -> Result<Self> {
        sweep_stale()?;
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Ok(Self {
            tag: format!("{PREFIX}-{}-{n}", std::process::id()),
            namespaces: Vec::new(),
            root_links: Vec::new(),
        })
    }

    /// A lab with fixed, readable names (`<tag>-<host>`), for the
    /// interactive lab of `cargo xtask run`; namespaces of an earlier lab
    /// with the same tag are deleted first.
    pub fn fixed(tag: &str) -> Result<Self> {
        let list = ip(&["netns", "list"])?;
        let prefix = format!("{tag}-");
        for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if name.starts_with(&prefix) {
                ip(&["netns", "del", name])?;
            }
        }
        Ok(Self {
            tag: tag.to_string(),
            namespaces: Vec::new(),
            root_links: Vec::new(),
        })
    }

    /// Creates namespace `host` (with `lo` up) and returns its full name.
    pub fn host(&mut self, host: &str) -> Result<String> {
        let ns = format!("{}-{host}", self.tag);
        ip(&["netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Joins `a_ns` and `b_ns` with a veth pair named `a_if` / `b_if`, both up.
    pub fn link(&self, a_ns: &str, a_if: &str, b_ns: &str, b_if: &str) -> Result<()> {
        ip(&[
            "-n", a_ns, "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b_ns,
        ])?;
        ip(&["-n", a_ns, "link", "set", a_if, "up"])?;
        ip(&["-n", b_ns, "link", "set", b_if, "up"])?;
        Ok(())
    }

    /// Creates a veth pair in this process's own namespace, named
    /// `et<pid>a` / `et<pid>b` plus `suffix` (unique per process), both up;
    /// deleted with the lab. Returns the two names.
    pub fn root_veth(&mut self, suffix: &str) -> Result<(String, String)> {
        let base = format!("et{}{suffix}", std::process::id());
        let (a, b) = (format!("{base}a"), format!("{base}b"));
        if a.len() > 15 {
            bail!("interface name {a} is too long");
        }
        ip(&["link", "add", &a, "type", "veth", "peer", "name", &b])?;
        self.root_links.push(a.clone());
        ip(&["link", "set", &a, "up"])?;
        ip(&["link", "set", &b, "up"])?;
        Ok((a, b))
    }

    /// Creates bridge `name` in `ns`, up.
    pub fn bridge(&self, ns: &str, name: &str) -> Result<()> {
        ip(&["-n", ns, "link", "add", name, "type", "bridge"])?;
        ip(&["-n", ns, "link", "set", name, "up"])?;
        Ok(())
    }

    /// Enslaves `iface` to `bridge`, both in `ns`.
    pub fn enslave(&self, ns: &str, iface: &str, bridge: &str) -> Result<()> {
        ip(&["-n", ns, "link", "set", iface, "master", bridge])?;
        Ok(())
    }

    /// Adds `cidr` to `iface` in `ns` (IPv6 without duplicate detection, so
    /// it is usable at once).
    pub fn addr(&self, ns: &str, iface: &str, cidr: &str) -> Result<()> {
        if cidr.contains(':') {
            ip(&["-n", ns, "addr", "add", cidr, "dev", iface, "nodad"])?;
        } else {
            ip(&["-n", ns, "addr", "add", cidr, "dev", iface])?;
        }
        Ok(())
    }

    /// Adds a route in `ns`.
    pub fn route(&self, ns: &str, dest: &str, via: &str) -> Result<()> {
        ip(&["-n", ns, "route", "add", dest, "via", via])?;
        Ok(())
    }

    /// The mode of the XDP program attached to `iface` in `ns` (`None`:
    /// this process's namespace): `Some("native")`, `Some("generic")`, or
    /// `None` when nothing is attached.
    pub fn xdp_mode(&self, ns: Option<&str>, iface: &str) -> Result<Option<&'static str>> {
        let out = match ns {
            Some(ns) => ip(&["-n", ns, "-d", "link", "show", "dev", iface])?,
            None => ip(&["-d", "link", "show", "dev", iface])?,
        };
        // iproute2 shows `xdp` for driver mode and `xdpgeneric` for skb mode.
        Ok(if out.contains("xdpgeneric") {
            Some("generic")
        } else if out.contains("prog/xdp") {
            Some("native")
        } else {
            None
        })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting one end of a veth deletes the pair.
        for link in &self.root_links {
            if let Err(e) = ip(&["link", "del", link]) {
                eprintln!("lab cleanup: {e:#}");
            }
        }
        // Deleting a namespace removes its veths and bridges with it.
        for ns in self.namespaces.iter().rev() {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("lab cleanup: {e:#}");
            }
        }
    }
}

/// Deletes lab namespaces whose creating process no longer exists.
fn sweep_stale() -> Result<()> {
    let list = ip(&["netns", "list"])?;
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let mut parts = name.splitn(3, '-');
        if parts.next() != Some(PREFIX) {
            continue;
        }
        let Some(pid) = parts.next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
    Ok(())
}
