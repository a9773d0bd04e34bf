//! Attaching the XDP program on its own, for operators: the link is pinned
//! in bpffs so that it outlives the process, and unpinning detaches it.

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
    let path = CString::new(BPFFS).map_err(|e| DataplaneError::Pin {
        what: "bpffs path".into(),
        source: std::io::Error::other(e),
    })?;
    // SAFETY: statfs writes into the zeroed struct we own; the path is a
    // valid NUL-terminated string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(path.as_ptr(), &mut st) } == 0 && st.f_type as i64 == BPF_FS_MAGIC {
        return Ok(());
    }
    std::fs::create_dir_all(BPFFS).map_err(pin_err(format!("creating {BPFFS}")))?;
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
            what: format!("mounting bpffs on {BPFFS}"),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
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
    let link_path = dir.join("link");
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
    std::fs::create_dir_all(&dir).map_err(pin_err(format!("creating {}", dir.display())))?;
    fd_link.pin(&link_path).map_err(|e| DataplaneError::Pin {
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
