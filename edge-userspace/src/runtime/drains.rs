//! Drains made through the admin API, kept in a file beside the control
//! socket (`/run/edge/<instance>.drains`), so that they outlive the
//! process: a restart, or the new process of a graceful upgrade, reads
//! them back. `/run` is emptied at boot, and a drain is an operator's
//! decision about a running fleet, not configuration: after a reboot the
//! file says what counts.
//!
//! Written whole (a temporary file renamed over it) at every drain and
//! undrain; read at start. A file that cannot be read or parsed is
//! logged and ignored: edge starts with no drains rather than not at all.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::{
    io::Read,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
};

/// Largest drains file read (4096 drains of each kind fit many times).
const MAX_FILE: u64 = 4 << 20;

/// What the file holds.
// Unknown fields are ignored, not refused: a file a later version wrote
// must not lose an older one (after a downgrade) every drain.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    /// Drained pool backends: (pool, address).
    #[serde(default)]
    pub pools: Vec<(String, SocketAddr)>,
    /// Drained L4 backends: (service, address).
    #[serde(default)]
    pub services: Vec<(String, IpAddr)>,
}

/// The drains file of the daemon that runs configuration `config`.
pub fn path_for(config: &Path) -> Result<PathBuf> {
    Ok(Path::new(super::control::SOCKET_DIR)
        .join(format!("{}.drains", super::control::instance(config)?)))
}

/// Reads `path`: nothing when it is absent; nothing, and a warning, when
/// it cannot be read or parsed.
pub fn load(path: &Path) -> Saved {
    let read = || -> Result<Option<Saved>> {
        // A regular file only: not a link someone left, nor a FIFO that
        // would hold the start up.
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_file() => {}
            Ok(_) => anyhow::bail!("it is not a regular file"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).context("inspecting it"),
        }
        let file = std::fs::File::open(path).context("opening it")?;
        let mut text = String::new();
        file.take(MAX_FILE)
            .read_to_string(&mut text)
            .context("reading it")?;
        Ok(Some(serde_json::from_str(&text).context("parsing it")?))
    };
    match read() {
        Ok(Some(saved)) => {
            if !saved.pools.is_empty() || !saved.services.is_empty() {
                tracing::info!(
                    file = %path.display(),
                    pools = saved.pools.len(),
                    services = saved.services.len(),
                    "drains made through the admin API restored"
                );
            }
            saved
        }
        Ok(None) => Saved::default(),
        Err(e) => {
            tracing::warn!(file = %path.display(), "drains file ignored: {e:#}");
            Saved::default()
        }
    }
}

/// Writes `saved` to `path` whole: a temporary file, renamed over it.
pub fn save(path: &Path, saved: &Saved) -> Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    // This process's own temporary name: the edge that hands over and the
    // one that takes over may both write for a moment.
    let tmp = path.with_extension(format!("drains.{}.tmp", std::process::id()));
    let text = serde_json::to_vec(saved).context("encoding the drains")?;
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(&text)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming over {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drains_round_trip_and_a_bad_file_is_ignored() {
        let dir = std::env::temp_dir().join(format!("edge-drains-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.drains");
        assert_eq!(load(&path), Saved::default());
        let saved = Saved {
            pools: vec![("app-v2".into(), "10.0.0.1:80".parse().unwrap())],
            services: vec![("vip".into(), "10.0.0.2".parse().unwrap())],
        };
        save(&path, &saved).unwrap();
        assert_eq!(load(&path), saved);
        std::fs::write(&path, b"{not json").unwrap();
        assert_eq!(load(&path), Saved::default());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
