//! Pinning in bpffs, so the XDP program outlives the process.
//!
//! - `edge load` attaches the program on its own and pins its link in
//!   `/sys/fs/bpf/edge/IFACE`; `edge unload --iface` unpins it.
//! - `edge run` pins its maps and links in [`daemon_dir`]: the layout
//!   version is in the path. A later `edge run` of the same daemon adopts
//!   the maps (conntrack and counters go on) and replaces the program of
//!   the pinned links in place (`bpf_link_update`); after a layout change
//!   it replaces the program of the older layout's link the same way and
//!   starts from fresh maps. `edge unload --config` removes it all.

use super::{AttachedMode, Dataplane, DataplaneError, attach_in_mode, decap::Decap};
use crate::config::Interface;
use aya::programs::{
    Xdp,
    links::{FdLink, PinnedLink},
    xdp::{XdpLink, XdpLinkId},
};
use std::{
    ffi::CString,
    path::{Path, PathBuf},
};

const BPFFS: &str = "/sys/fs/bpf";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Where edge pins the link of `iface`.
pub fn pin_dir(iface: &str) -> PathBuf {
    Path::new(BPFFS).join("edge").join(iface)
}

fn pin_err(what: String) -> impl FnOnce(std::io::Error) -> DataplaneError {
    move |source| DataplaneError::Pin { what, source }
}

fn ensure_bpffs() -> Result<(), DataplaneError> {
    ensure_bpffs_at(Path::new(BPFFS))
}

/// Attaches `dp`'s program to `iface` and pins the link, so the program
/// stays attached after this process exits.
pub fn pin_program(dp: &mut Dataplane, iface: &Interface) -> Result<AttachedMode, DataplaneError> {
    check_free(iface)?;
    let (link_id, mode) = dp.attach_link(iface)?;
    pin_link(dp.program()?, link_id, iface)?;
    Ok(mode)
}

/// Attaches the decapsulation program to `iface` and pins the link, like
/// [`pin_program`]; `edge unload` removes either.
pub fn pin_decap(decap: &mut Decap, iface: &Interface) -> Result<AttachedMode, DataplaneError> {
    check_free(iface)?;
    let (link_id, mode) = attach_in_mode(decap.program()?, iface)?;
    pin_link(decap.program()?, link_id, iface)?;
    Ok(mode)
}

fn check_free(iface: &Interface) -> Result<(), DataplaneError> {
    ensure_bpffs()?;
    let link_path = pin_dir(&iface.name).join("link");
    if link_path.exists() {
        return Err(DataplaneError::Pin {
            what: format!(
                "{} already has edge attached ({} exists); unload it first",
                iface.name,
                link_path.display()
            ),
            source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
        });
    }
    Ok(())
}

fn pin_link(
    program: &mut Xdp,
    link_id: XdpLinkId,
    iface: &Interface,
) -> Result<(), DataplaneError> {
    let dir = pin_dir(&iface.name);
    std::fs::create_dir_all(&dir).map_err(pin_err(format!("creating {}", dir.display())))?;
    pin_link_at(program, link_id, iface, &dir.join("link"))
}

/// Takes link `link_id` from `program` and pins it at `link_path`, so it
/// outlives the process.
fn pin_link_at(
    program: &mut Xdp,
    link_id: XdpLinkId,
    iface: &Interface,
    link_path: &Path,
) -> Result<(), DataplaneError> {
    let link: XdpLink = program
        .take_link(link_id)
        .map_err(|source| DataplaneError::Program {
            what: "taking the XDP link".into(),
            source,
        })?;
    let fd_link = FdLink::try_from(link).map_err(|e| DataplaneError::Pin {
        what: format!(
            "{}: the kernel attached XDP without a bpf_link, which cannot be pinned",
            iface.name
        ),
        source: std::io::Error::other(e.to_string()),
    })?;
    fd_link.pin(link_path).map_err(|e| DataplaneError::Pin {
        what: format!("pinning the link at {}", link_path.display()),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(())
}

/// Removes the pinned link of `iface`, which detaches the program.
pub fn unpin_program(iface: &str) -> Result<(), DataplaneError> {
    let dir = pin_dir(iface);
    let link_path = dir.join("link");
    let pinned = PinnedLink::from_pin(&link_path).map_err(|e| DataplaneError::Pin {
        what: format!(
            "no edge XDP program pinned for {iface} at {}",
            link_path.display()
        ),
        source: std::io::Error::other(e.to_string()),
    })?;
    let link = pinned
        .unpin()
        .map_err(pin_err(format!("unpinning {}", link_path.display())))?;
    drop(link);
    std::fs::remove_dir(&dir).map_err(pin_err(format!("removing {}", dir.display())))?;
    // The shared parent goes once the last interface is unloaded; while
    // others remain it is not empty and stays.
    if let Some(parent) = dir.parent() {
        let _ = std::fs::remove_dir(parent);
    }
    Ok(())
}

/// Where `edge run` pins the maps and links of the daemon identified by
/// `instance`, under bpffs `root`: the layout version is in the path, so a
/// daemon of another layout never adopts them.
pub fn daemon_dir(root: &Path, instance: &str) -> PathBuf {
    root.join("edge")
        .join(format!("layout-{}", edge_common::PIN_LAYOUT))
        .join(instance)
}

/// The pin of the XDP link on `iface` in a daemon's directory.
pub fn link_pin(dir: &Path, iface: &str) -> PathBuf {
    dir.join(format!("link-{iface}"))
}

/// Unpins the links in daemon directory `dir` of interfaces not in `keep`.
pub(super) fn drop_stale_links(dir: &Path, keep: &[&str]) -> Result<Vec<String>, DataplaneError> {
    let mut dropped = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(pin_err(format!("reading {}", dir.display())))?;
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(iface) = name.strip_prefix("link-") else {
            continue;
        };
        if keep.contains(&iface) {
            continue;
        }
        std::fs::remove_file(entry.path())
            .map_err(pin_err(format!("removing {}", entry.path().display())))?;
        dropped.push(iface.to_string());
    }
    Ok(dropped)
}

/// What `edge run` found pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pinned {
    /// Nothing: fresh maps, pinned now.
    Nothing,
    /// Maps of this layout and size, adopted: conntrack and counters go on.
    Adopted,
    /// Maps of this layout of another size, dropped (the reason): fresh
    /// maps, filled from the configuration.
    Rebuilt(String),
}

/// Mounts bpffs at `root` if none is mounted there.
pub(super) fn ensure_bpffs_at(root: &Path) -> Result<(), DataplaneError> {
    let path =
        CString::new(root.as_os_str().as_encoded_bytes()).map_err(|e| DataplaneError::Pin {
            what: format!("bpffs path {}", root.display()),
            source: std::io::Error::other(e),
        })?;
    // SAFETY: statfs writes into the zeroed struct we own; the path is a
    // valid NUL-terminated string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(path.as_ptr(), &mut st) } == 0 && st.f_type as i64 == BPF_FS_MAGIC {
        return Ok(());
    }
    std::fs::create_dir_all(root).map_err(pin_err(format!("creating {}", root.display())))?;
    let fstype = c"bpf";
    // SAFETY: all pointers are valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            path.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(DataplaneError::Pin {
            what: format!("mounting bpffs on {}", root.display()),
            source: std::io::Error::last_os_error(),
        });
    }
    tracing::warn!(
        "mounted a bpffs on {} for edge's pins: they last as long as this mount (in a private \
         mount namespace, such as `ip netns exec` gives, as long as its processes)",
        root.display()
    );
    Ok(())
}

/// Readies `dir` for a load that pins its maps there: maps pinned by an
/// earlier daemon are kept for adoption when they fit this one (`conntrack`
/// entries exactly, at least `rings` entries of rings), and removed
/// otherwise (the links stay: the new program replaces theirs in place) —
/// or, with `keep_unfit`, refused.
pub(super) fn prepare(
    dir: &Path,
    conntrack: u32,
    rings: u32,
    keep_unfit: bool,
) -> Result<Pinned, DataplaneError> {
    std::fs::create_dir_all(dir).map_err(pin_err(format!("creating {}", dir.display())))?;
    let size = |name: &str| {
        aya::maps::MapData::from_pin(dir.join(name))
            .ok()
            .and_then(|m| m.info().ok())
            .map(|i| i.max_entries())
    };
    let found = edge_common::ALL_MAPS
        .iter()
        .filter(|m| dir.join(m).exists())
        .count();
    if found == 0 {
        return Ok(Pinned::Nothing);
    }
    let why = if found != edge_common::ALL_MAPS.len() {
        Some(format!(
            "{found} of {} maps were pinned",
            edge_common::ALL_MAPS.len()
        ))
    } else if size(edge_common::MAP_CONNTRACK) != Some(conntrack) {
        Some(format!(
            "the connection table holds {:?} entries, the configuration asks for {conntrack}",
            size(edge_common::MAP_CONNTRACK)
        ))
    } else if size(edge_common::MAP_RINGS).is_none_or(|n| n < rings) {
        Some(format!(
            "the Maglev ring map holds {:?} entries, this start needs {rings}",
            size(edge_common::MAP_RINGS)
        ))
    } else {
        None
    };
    let Some(why) = why else {
        return Ok(Pinned::Adopted);
    };
    if keep_unfit {
        return Err(DataplaneError::Pin {
            what: format!(
                "the maps pinned in {} do not fit this configuration ({why}), and the running \
                 edge uses them: stop it, then start edge again (established L4 flows are \
                 picked again)",
                dir.display()
            ),
            source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
        });
    }
    for name in edge_common::ALL_MAPS {
        let path = dir.join(name);
        if path.exists() {
            std::fs::remove_file(&path).map_err(pin_err(format!("removing {}", path.display())))?;
        }
    }
    Ok(Pinned::Rebuilt(why))
}

/// A link pinned for `iface` by a daemon `instance` of another layout
/// under `root`, if any: the new program replaces its program in place.
pub(super) fn older_link(root: &Path, instance: &str, iface: &str) -> Option<PathBuf> {
    let current = format!("layout-{}", edge_common::PIN_LAYOUT);
    std::fs::read_dir(root.join("edge"))
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("layout-") && name != current.as_str()
        })
        .map(|e| link_pin(&e.path().join(instance), iface))
        .find(|p| p.exists())
}

/// Removes what `edge run` pinned for daemon `instance` under `root`, in
/// every layout: its links (which detaches the program) and its maps.
/// Returns the directories removed.
pub fn unpin_daemon(root: &Path, instance: &str) -> Result<Vec<PathBuf>, DataplaneError> {
    let mut removed = Vec::new();
    let Ok(layouts) = std::fs::read_dir(root.join("edge")) else {
        return Ok(removed);
    };
    for layout in layouts.filter_map(Result::ok) {
        if !layout.file_name().to_string_lossy().starts_with("layout-") {
            continue;
        }
        let dir = layout.path().join(instance);
        if !dir.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(&dir)
            .map_err(pin_err(format!("reading {}", dir.display())))?
            .filter_map(Result::ok)
        {
            std::fs::remove_file(entry.path())
                .map_err(pin_err(format!("removing {}", entry.path().display())))?;
        }
        std::fs::remove_dir(&dir).map_err(pin_err(format!("removing {}", dir.display())))?;
        // The layout's directory goes with its last daemon.
        let _ = std::fs::remove_dir(layout.path());
        removed.push(dir);
    }
    let _ = std::fs::remove_dir(root.join("edge"));
    Ok(removed)
}

/// Attaches `program` to `iface` through the link pinned in `dir`, or the
/// one an older layout pinned, replacing the program in place with
/// `bpf_link_update` (no moment without a program); else attaches afresh
/// and pins the new link. Returns how it attached.
pub(super) fn attach_pinned(
    program: &mut Xdp,
    iface: &Interface,
    root: &Path,
    dir: &Path,
    instance: &str,
) -> Result<AttachedMode, DataplaneError> {
    let pin = link_pin(dir, &iface.name);
    let existing = if pin.exists() {
        Some(pin.clone())
    } else {
        older_link(root, instance, &iface.name)
    };
    if let Some(path) = existing {
        match replace_in(program, &path) {
            Ok(()) => {
                if path != pin {
                    // Moved into this layout's directory: pin it here
                    // first, so it is never unpinned everywhere at once.
                    let moved = PinnedLink::from_pin(&path)
                        .map_err(|e| DataplaneError::Pin {
                            what: format!("opening {}", path.display()),
                            source: std::io::Error::other(e.to_string()),
                        })
                        .and_then(|l| {
                            FdLink::from(l).pin(&pin).map_err(|e| DataplaneError::Pin {
                                what: format!("pinning the link at {}", pin.display()),
                                source: std::io::Error::other(e.to_string()),
                            })
                        })?;
                    drop(moved);
                    std::fs::remove_file(&path)
                        .map_err(pin_err(format!("removing {}", path.display())))?;
                }
                return Ok(AttachedMode::Replaced);
            }
            // The pinned link still carries the running program: it is
            // never unpinned here, which would take that program off.
            Err(e) => {
                return Err(DataplaneError::Pin {
                    what: format!(
                        "{}: the pinned link {} could not take the new program ({e}); \
                         `edge unload --config` removes it",
                        iface.name,
                        path.display()
                    ),
                    source: std::io::Error::other("bpf_link_update failed"),
                });
            }
        }
    }
    let (link_id, mode) = attach_in_mode(program, iface)?;
    pin_link_at(program, link_id, iface, &pin)?;
    Ok(mode)
}

/// Replaces the program of the XDP link pinned at `path` with `program`.
fn replace_in(program: &mut Xdp, path: &Path) -> Result<(), DataplaneError> {
    let err = |e: String| DataplaneError::Pin {
        what: format!("the XDP link pinned at {}", path.display()),
        source: std::io::Error::other(e),
    };
    let pinned = PinnedLink::from_pin(path).map_err(|e| err(e.to_string()))?;
    let link = XdpLink::try_from(FdLink::from(pinned)).map_err(|e| err(e.to_string()))?;
    let id = program
        .attach_to_link(link)
        .map_err(|source| DataplaneError::Program {
            what: format!("replacing the program of {}", path.display()),
            source,
        })?;
    // The link stays pinned; this handle on it is closed, not detached.
    let _ = program.take_link(id);
    Ok(())
}
