//! `edge load` attaches the XDP program on its own and pins the link, so it
//! stays after the command exits; `edge unload` removes it.
//!
//! bpffs pins are global, not per network namespace, and `ip netns exec`
//! gives the command a private /sys; so this test uses a veth pair in the
//! test's own namespace, with a name unique to this process.

use anyhow::Result;
use edge_tests::{edge::binary, lab::Lab};
use std::process::Command;

fn edge(args: &[&str]) -> Result<(bool, String)> {
    let out = Command::new(binary()?).args(args).output()?;
    Ok((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

#[test]
fn load_pins_and_unload_detaches() -> Result<()> {
    let mut lab = Lab::new()?;
    let (iface, _peer) = lab.root_veth("l")?;
    let pin = format!("/sys/fs/bpf/edge/{iface}/link");

    let (ok, out) = edge(&["load", "--iface", &iface, "--mode", "native"])?;
    // Whatever happens next, do not leave the program pinned.
    struct Unpin(String);
    impl Drop for Unpin {
        fn drop(&mut self) {
            let _ = edge(&["unload", "--iface", &self.0]);
        }
    }
    let _guard = Unpin(iface.clone());
    assert!(ok, "edge load: {out}");
    assert!(out.contains("native mode"), "{out}");
    assert_eq!(
        lab.xdp_mode(None, &iface)?,
        Some("native"),
        "attached after edge load exited"
    );
    assert!(std::path::Path::new(&pin).exists(), "{pin} pinned");

    let (ok, out) = edge(&["load", "--iface", &iface])?;
    assert!(!ok, "a second load must refuse: {out}");
    assert!(out.contains("unload it first"), "{out}");

    let (ok, out) = edge(&["unload", "--iface", &iface])?;
    assert!(ok, "edge unload: {out}");
    assert_eq!(lab.xdp_mode(None, &iface)?, None, "detached after unload");
    assert!(!std::path::Path::new(&pin).exists(), "{pin} removed");

    let (ok, out) = edge(&["unload", "--iface", &iface])?;
    assert!(!ok, "unloading twice must fail clearly: {out}");
    assert!(out.contains("no edge XDP program pinned"), "{out}");
    Ok(())
}
