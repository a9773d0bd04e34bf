//! Attach modes: native is what is asked for; where the driver cannot do
//! it, edge falls back to generic only when the configuration allows it,
//! and says so; otherwise it refuses to start with a clear error.
//!
//! A Linux bridge has no native XDP support, which makes it the test device.

use anyhow::Result;
use edge_tests::{edge::Edge, http, lab::Lab, netns};
use std::time::Duration;

const ADMIN: &str = "127.0.0.1:9100";

fn config(fallback: bool) -> String {
    format!(
        "xdp:\n  interfaces:\n    - name: br0\n      mode: native\n      fallback_to_generic: {fallback}\n\
         admin:\n  address: {ADMIN}\nserver:\n  grace_period_seconds: 0\n"
    )
}

/// A namespace with a bridge, and edge started on it with `fallback`. The
/// temporary directory holds the config and log; keep it while edge runs.
fn start(fallback: bool) -> Result<(Lab, String, tempfile::TempDir, Edge)> {
    let mut lab = Lab::new()?;
    let ns = lab.host("edge")?;
    lab.bridge(&ns, "br0")?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("edge.yaml");
    std::fs::write(&path, config(fallback))?;
    let edge = Edge::start(Some(&ns), &path)?;
    Ok((lab, ns, dir, edge))
}

#[test]
fn native_falls_back_to_generic_when_allowed() -> Result<()> {
    let (lab, ns, _dir, mut edge) = start(true)?;
    edge.wait_ready(Some(&ns), ADMIN.parse()?, Duration::from_secs(30))?;
    assert_eq!(lab.xdp_mode(Some(&ns), "br0")?, Some("generic"));
    let log = edge.log_text();
    assert!(log.contains("falling back to generic mode"), "{log}");
    let admin = ADMIN.parse()?;
    let metrics = netns::run_in(&ns, move || http::get(admin, "/metrics"))?.text();
    assert!(
        metrics.contains("edge_xdp_attached{interface=\"br0\",mode=\"generic\"} 1"),
        "{metrics}"
    );
    assert_eq!(edge.stop(Duration::from_secs(15))?, Some(0));
    assert_eq!(lab.xdp_mode(Some(&ns), "br0")?, None);
    Ok(())
}

#[test]
fn native_failure_is_fatal_without_fallback() -> Result<()> {
    let (lab, ns, _dir, mut edge) = start(false)?;
    let code = edge.wait_exit(Duration::from_secs(30))?;
    assert_eq!(code, Some(1), "log:\n{}", edge.log_text());
    let log = edge.log_text();
    assert!(
        log.contains("error: attaching XDP to br0 in native mode failed"),
        "{log}"
    );
    assert_eq!(lab.xdp_mode(Some(&ns), "br0")?, None);
    Ok(())
}
