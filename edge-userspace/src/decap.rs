//! `edge decap`: the backend side of L4 direct server return, in the
//! foreground until SIGTERM or SIGINT.

use crate::{config::Interface, dataplane::decap::Decap};
use anyhow::{Context, Result};
use edge_common::DecapEvent;
use std::net::IpAddr;

/// Attaches the decap program to `iface` for `sources` and waits for a
/// signal; the program is detached when this returns (or the process dies:
/// it is attached through a bpf_link).
pub fn run(iface: &Interface, sources: &[IpAddr]) -> Result<()> {
    let mut decap = Decap::load()?;
    decap.set_sources(sources)?;
    let mode = decap
        .attach(iface)
        .with_context(|| format!("attaching edge decap to {}", iface.name))?;
    let list: Vec<String> = sources.iter().map(IpAddr::to_string).collect();
    tracing::info!(
        interface = %iface.name,
        mode = mode.as_str(),
        sources = %list.join(", "),
        "decap attached; SIGTERM or SIGINT detaches"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal runtime")?;
    runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        anyhow::Ok(())
    })?;
    if let Ok(stats) = decap.stats() {
        for (e, c) in DecapEvent::ALL.iter().zip(stats) {
            tracing::info!(event = e.name(), packets = c.packets, "decap counters");
        }
    }
    drop(decap);
    Ok(())
}
