//! `cargo xtask install` and `cargo xtask deb`: edge as a systemd service
//! (config/systemd/edge.service), installed by hand or as a Debian
//! package; and [`check`], the suite's test of both: the unit passes
//! `systemd-analyze verify`, and the package installs into a scratch root,
//! runs there, and is removed and purged cleanly.

use anyhow::{Context, Result, bail, ensure};
use std::{
    fs,
    io::{Read, Seek, SeekFrom},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// The unit as shipped, relative to the workspace root.
const UNIT: &str = "config/systemd/edge.service";
/// The drop-in for a configuration with a `bgp` section (not installed:
/// see its comments), checked with the unit.
const BGP_DROP_IN: &str = "config/systemd/edge-bgp.conf";
/// Where the shipped unit expects edge (the Debian package's path).
const SHIPPED_BIN: &str = "/usr/bin/edge";
/// The configuration installed when there is none: the L7 proxy on
/// loopback, no XDP (config/edge.yaml attaches to eth0, which a host may
/// not have, and would put a deny list and an XDP program on the host's
/// main interface before anyone has read it). `edge check` passes it and
/// `edge run` runs it on any host, binding 127.0.0.1:8080 and :9100 only.
const DEFAULT_CONFIG: &str = "config/proxy-only.yaml";
/// The configuration the unit runs, relative to `/`.
const CONFIG: &str = "etc/edge/edge.yaml";
/// The package's name and unit.
const PACKAGE: &str = "edge";
const UNIT_NAME: &str = "edge.service";
const MAINTAINER: &str = "edge maintainers <edge@example.invalid>";
const HOMEPAGE: &str = "https://example.invalid/edge";

#[derive(clap::Args)]
pub struct InstallOptions {
    /// Where the binary goes (PREFIX/bin/edge); the configuration is always
    /// /etc/edge/edge.yaml.
    #[arg(long, default_value = "/usr/local")]
    prefix: PathBuf,
    /// Stage everything under this directory instead of `/` (no root
    /// needed); the unit still names PREFIX/bin/edge.
    #[arg(long)]
    destdir: Option<PathBuf>,
    /// Install the debug build instead of release.
    #[arg(long)]
    debug: bool,
}

#[derive(clap::Args)]
pub struct DebOptions {
    /// Where the .deb goes (default: the target directory).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Package this edge binary instead of building the release one.
    #[arg(long)]
    binary: Option<PathBuf>,
}

/// `cargo xtask install`: the binary, a configuration if there is none,
/// and the unit.
pub fn install(root: &Path, opts: &InstallOptions) -> Result<()> {
    ensure!(
        opts.prefix.is_absolute(),
        "--prefix {} must be an absolute path",
        opts.prefix.display()
    );
    if opts.destdir.is_none() && !is_root() {
        bail!("cargo xtask install writes under / and needs root; or stage it with --destdir DIR");
    }
    let built = crate::build(root, !opts.debug)?;
    let staged = |path: &Path| -> PathBuf {
        match &opts.destdir {
            Some(d) => d.join(path.strip_prefix("/").unwrap_or(path)),
            None => path.to_path_buf(),
        }
    };
    let bin = opts.prefix.join("bin/edge");
    let unit = unit_dir(&opts.prefix).join(UNIT_NAME);
    let config = Path::new("/").join(CONFIG);

    // Beside the old binary, then renamed over it: a running edge keeps
    // its (unlinked) file, and copying onto it would fail (ETXTBSY).
    let bin_at = staged(&bin);
    make_dirs(parent(&bin_at)?)?;
    let part = bin_at.with_extension("new");
    fs::copy(&built, &part)
        .with_context(|| format!("copying {} to {}", built.display(), part.display()))?;
    set_mode(&part, 0o755)?;
    fs::rename(&part, &bin_at)
        .with_context(|| format!("renaming {} to {}", part.display(), bin_at.display()))?;
    println!("xtask: installed {}", bin_at.display());

    let config_at = staged(&config);
    if config_at.exists() {
        println!(
            "xtask: kept {} (an existing configuration is never replaced)",
            config_at.display()
        );
    } else {
        make_dirs(parent(&config_at)?)?;
        write_file(
            &config_at,
            &fs::read(root.join(DEFAULT_CONFIG))
                .with_context(|| format!("reading {DEFAULT_CONFIG}"))?,
            // It will hold the admin token, JWT secrets, API keys: root's
            // alone (edge runs as root).
            0o600,
        )?;
        println!(
            "xtask: installed {} (from {DEFAULT_CONFIG}: the L7 proxy on loopback; edit it)",
            config_at.display()
        );
    }

    let unit_at = staged(&unit);
    make_dirs(parent(&unit_at)?)?;
    let text = unit_text(root, &bin)?;
    write_file(&unit_at, text.as_bytes(), 0o644)?;
    println!(
        "xtask: installed {} (runs {} run --config {})",
        unit_at.display(),
        bin.display(),
        config.display()
    );
    if opts.destdir.is_none() {
        println!(
            "\nthen: systemctl daemon-reload && systemctl enable --now edge\n\
             (or `systemctl restart edge` if it runs already)"
        );
    }
    Ok(())
}

/// `cargo xtask deb`: builds the package and prints its path.
pub fn deb(root: &Path, opts: &DebOptions) -> Result<()> {
    let bin = match &opts.binary {
        Some(b) => b.clone(),
        None => crate::build(root, true)?,
    };
    let out = opts
        .out
        .clone()
        .unwrap_or_else(|| target_dir(root).join("debian"));
    let deb = build_deb(root, &bin, &out, Compression::Default)?;
    println!("xtask: built {}", deb.display());
    Ok(())
}

/// The suite's check of the unit and the package, with the `edge` binary
/// `bin` (the debug build): `systemd-analyze verify` on the unit, then the
/// package built, inspected, installed into a scratch root, run there,
/// removed and purged. It never touches the host's systemd or dpkg
/// database; its temporary directories go, whatever happens.
pub fn check(root: &Path, bin: &Path) -> Result<()> {
    crate::toolchain::ensure_packages(&["systemd", "init-system-helpers"])?;
    let bin = fs::canonicalize(bin).with_context(|| format!("finding {}", bin.display()))?;
    verify_unit(root, &bin).context("systemd-analyze verify of the unit")?;
    println!("xtask: {UNIT} passes systemd-analyze verify");

    let host_before = host_status();
    let out = tempfile::Builder::new().prefix("edge-deb-out.").tempdir()?;
    let deb = build_deb(root, &bin, out.path(), Compression::None)?;
    inspect_deb(&deb).with_context(|| format!("inspecting {}", deb.display()))?;
    let scratch = tempfile::Builder::new()
        .prefix("edge-dpkg-root.")
        .tempdir()?;
    install_remove_purge(&deb, scratch.path())
        .with_context(|| format!("dpkg in the scratch root {}", scratch.path().display()))?;
    ensure!(
        host_status() == host_before,
        "the host's dpkg status of {PACKAGE} changed during the check"
    );
    println!("xtask: the .deb installs, runs, removes and purges in a scratch root");
    let staged = tempfile::Builder::new().prefix("edge-install.").tempdir()?;
    check_install(root, staged.path()).context("cargo xtask install --destdir")?;
    println!("xtask: cargo xtask install stages the binary, the unit and the configuration");
    Ok(())
}

/// `cargo xtask install --destdir DIR --debug`: the files where they
/// belong with their modes, the unit naming the prefix's binary, the
/// installed binary checking the installed configuration, and an
/// operator's edit of the configuration kept by a second install.
fn check_install(root: &Path, destdir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let prefix = PathBuf::from("/usr/local");
    let opts = InstallOptions {
        prefix: prefix.clone(),
        destdir: Some(destdir.to_path_buf()),
        debug: true,
    };
    install(root, &opts)?;
    let in_dest = |p: &Path| destdir.join(p.strip_prefix("/").unwrap_or(p));
    let bin = in_dest(&prefix.join("bin/edge"));
    let config = destdir.join(CONFIG);
    let unit = in_dest(&unit_dir(&prefix).join(UNIT_NAME));
    let mode = |p: &Path| -> Result<u32> {
        Ok(fs::metadata(p)
            .with_context(|| format!("{} was not installed", p.display()))?
            .permissions()
            .mode()
            & 0o777)
    };
    ensure!(mode(&bin)? == 0o755, "{} is not 0755", bin.display());
    ensure!(mode(&config)? == 0o600, "{} is not 0600", config.display());
    let unit_text = fs::read_to_string(&unit)?;
    ensure!(
        unit_text.contains("ExecStart=/usr/local/bin/edge run --config /etc/edge/edge.yaml"),
        "the installed unit does not run the prefix's binary:\n{unit_text}"
    );
    crate::run_status(Command::new(&bin).arg("--version"))?;
    crate::run_status(Command::new(&bin).arg("check").arg(&config))?;
    let edited = format!("{}\n# an operator's edit\n", fs::read_to_string(&config)?);
    fs::write(&config, &edited)?;
    install(root, &opts)?;
    ensure!(
        fs::read_to_string(&config)? == edited,
        "a second install replaced the configuration"
    );
    Ok(())
}

/// `systemd-analyze verify` on a copy of the unit that runs `bin`
/// (verify wants the executables to exist). Warnings about other units of
/// the host are not this unit's: only lines that name it fail.
fn verify_unit(root: &Path, bin: &Path) -> Result<()> {
    let dir = tempfile::Builder::new().prefix("edge-unit.").tempdir()?;
    let unit = dir.path().join(UNIT_NAME);
    fs::write(&unit, unit_text(root, bin)?)?;
    // The BGP drop-in beside it, read with the unit (its own errors name
    // `edge.service.d/bgp.conf`).
    let drop_ins = dir.path().join(format!("{UNIT_NAME}.d"));
    fs::create_dir(&drop_ins)?;
    fs::write(
        drop_ins.join("bgp.conf"),
        exec_lines_running(root, BGP_DROP_IN, bin, 1)?,
    )?;
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg("--man=no")
        .arg(&unit)
        .current_dir(dir.path())
        .env("SYSTEMD_LOG_LEVEL", "notice")
        .env("SYSTEMD_PAGER", "")
        .output()
        .context("running systemd-analyze")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ours: Vec<&str> = text.lines().filter(|l| l.contains(UNIT_NAME)).collect();
    if !ours.is_empty() {
        bail!(
            "systemd-analyze verify ({}) says:\n{}",
            out.status,
            ours.join("\n")
        );
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Compression {
    /// dpkg-deb's default (xz).
    Default,
    /// None: the suite packages the debug binary (hundreds of MB), where
    /// compressing costs more than the check.
    None,
}

/// Lays the package out in a temporary tree and builds
/// `out/edge_VERSION_ARCH.deb` from it with `bin` as /usr/bin/edge.
fn build_deb(root: &Path, bin: &Path, out: &Path, compression: Compression) -> Result<PathBuf> {
    ensure!(bin.is_file(), "{} is not an edge binary", bin.display());
    let version = debian_version(env!("CARGO_PKG_VERSION"));
    let arch = capture(Command::new("dpkg").arg("--print-architecture"))?
        .trim()
        .to_string();
    ensure!(
        !arch.is_empty(),
        "dpkg --print-architecture printed nothing"
    );
    let mut depends = shlib_depends(bin)?;
    // edge runs `ip route get` and `ip neigh` for the L4 next hops.
    depends.push("iproute2".into());

    let tree = tempfile::Builder::new().prefix("edge-deb.").tempdir()?;
    let t = tree.path();
    set_mode(t, 0o755)?;
    for dir in [
        "DEBIAN",
        "usr/bin",
        "etc/edge",
        "lib/systemd/system",
        "usr/share/doc/edge",
    ] {
        make_dirs(&t.join(dir))?;
    }
    fs::copy(bin, t.join("usr/bin/edge")).with_context(|| format!("copying {}", bin.display()))?;
    set_mode(&t.join("usr/bin/edge"), 0o755)?;
    write_file(
        &t.join(CONFIG),
        &fs::read(root.join(DEFAULT_CONFIG))
            .with_context(|| format!("reading {DEFAULT_CONFIG}"))?,
        // Secrets go in it: root's alone, and dpkg keeps the mode.
        0o600,
    )?;
    write_file(
        &t.join("lib/systemd/system").join(UNIT_NAME),
        unit_text(root, Path::new(SHIPPED_BIN))?.as_bytes(),
        0o644,
    )?;
    write_file(
        &t.join("usr/share/doc/edge/copyright"),
        copyright(root)?.as_bytes(),
        0o644,
    )?;

    let control = format!(
        "Package: {PACKAGE}\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: {MAINTAINER}\n\
         Installed-Size: {}\n\
         Depends: {}\n\
         Section: net\n\
         Priority: optional\n\
         Homepage: {HOMEPAGE}\n\
         Description: L4/L7 load balancer: XDP fast path and Pingora proxy\n \
         edge attaches an XDP program that drops denied sources and forwards L4\n \
         virtual services to their backends (Maglev, direct server return), and\n \
         runs an HTTP/gRPC reverse proxy and API gateway (routing, policies,\n \
         caching, health checks) built on Pingora.\n \
         .\n \
         The service is not enabled on installation: edit /etc/edge/edge.yaml,\n \
         then run `systemctl enable --now edge`.\n",
        installed_size_kib(t)?,
        depends.join(", "),
    );
    write_file(&t.join("DEBIAN/control"), control.as_bytes(), 0o644)?;
    write_file(
        &t.join("DEBIAN/conffiles"),
        format!("/{CONFIG}\n").as_bytes(),
        0o644,
    )?;
    for (name, text) in [("postinst", POSTINST), ("prerm", PRERM), ("postrm", POSTRM)] {
        write_file(&t.join("DEBIAN").join(name), text.as_bytes(), 0o755)?;
    }

    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let deb = out.join(format!("{PACKAGE}_{version}_{arch}.deb"));
    let mut cmd = Command::new("dpkg-deb");
    cmd.arg("--root-owner-group");
    if matches!(compression, Compression::None) {
        cmd.arg("-Znone");
    }
    cmd.arg("--build").arg(t).arg(&deb);
    capture(&mut cmd)?;
    Ok(deb)
}

/// What `dpkg-deb` says the package holds: the files, the conffile, the
/// fields.
fn inspect_deb(deb: &Path) -> Result<()> {
    let contents = capture(Command::new("dpkg-deb").arg("--contents").arg(deb))?;
    for path in [
        "./usr/bin/edge",
        "./etc/edge/edge.yaml",
        "./lib/systemd/system/edge.service",
        "./usr/share/doc/edge/copyright",
    ] {
        ensure!(
            contents.lines().any(|l| l.ends_with(path)),
            "{path} is not in the package:\n{contents}"
        );
    }
    let conffiles = capture(
        Command::new("dpkg-deb")
            .arg("--info")
            .arg(deb)
            .arg("conffiles"),
    )?;
    ensure!(
        conffiles.lines().any(|l| l.trim() == "/etc/edge/edge.yaml"),
        "/etc/edge/edge.yaml is not a conffile: {conffiles:?}"
    );
    let info = capture(Command::new("dpkg-deb").arg("--info").arg(deb))?;
    for field in [
        format!("Package: {PACKAGE}"),
        format!("Version: {}", debian_version(env!("CARGO_PKG_VERSION"))),
    ] {
        ensure!(
            info.contains(&field),
            "no {field:?} in the control file:\n{info}"
        );
    }
    ensure!(
        info.lines()
            .any(|l| l.trim().starts_with("Depends: ") && l.contains("libc6")),
        "the package does not depend on libc6:\n{info}"
    );
    for script in ["postinst", "prerm", "postrm"] {
        ensure!(info.contains(script), "no {script} in the package:\n{info}");
    }
    Ok(())
}

/// Installs `deb` into the scratch root `r` (a dpkg database of its own;
/// the maintainer scripts run on the host with DPKG_ROOT=r and must leave
/// the host alone), runs the edge there, then removes and purges it.
fn install_remove_purge(deb: &Path, r: &Path) -> Result<()> {
    for dir in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
        "var/log",
    ] {
        fs::create_dir_all(r.join(dir))?;
    }
    fs::write(r.join("var/lib/dpkg/status"), "")?;
    // --root also moves the database (r/var/lib/dpkg); the log would stay
    // the host's. The scripts run without chroot(2): r has no shell.
    let dpkg = |args: &[&str]| -> Result<String> {
        let mut cmd = Command::new("dpkg");
        cmd.arg(format!("--root={}", r.display()))
            .arg(format!("--log={}", r.join("var/log/dpkg.log").display()))
            .args(["--force-script-chrootless", "--force-not-root"])
            .args(args);
        capture(&mut cmd)
    };
    let status = |r: &Path| -> String {
        Command::new("dpkg-query")
            .arg(format!("--root={}", r.display()))
            .args(["-W", "-f=${Status}", PACKAGE])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let (bin, unit, config) = (
        r.join("usr/bin/edge"),
        r.join("lib/systemd/system").join(UNIT_NAME),
        r.join(CONFIG),
    );

    let deb = deb.to_str().context("the package's path is not UTF-8")?;
    // The scratch root has none of the dependencies.
    dpkg(&["--force-depends", "--install", deb])?;
    ensure!(
        status(r) == "install ok installed",
        "after dpkg --install, edge is {:?}",
        status(r)
    );
    for f in [&bin, &unit, &config] {
        ensure!(f.is_file(), "dpkg --install left no {}", f.display());
    }
    let version = capture(Command::new(&bin).arg("--version"))?;
    ensure!(
        version.contains(env!("CARGO_PKG_VERSION")),
        "{} --version printed {version:?}",
        bin.display()
    );
    capture(Command::new(&bin).arg("check").arg("--config").arg(&config))
        .context("edge check of the packaged configuration")?;

    dpkg(&["--remove", PACKAGE])?;
    ensure!(
        status(r) == "deinstall ok config-files",
        "after dpkg --remove, edge is {:?}",
        status(r)
    );
    ensure!(!bin.exists(), "dpkg --remove left {}", bin.display());
    ensure!(!unit.exists(), "dpkg --remove left {}", unit.display());
    ensure!(
        config.is_file(),
        "dpkg --remove took the conffile {} (only --purge may)",
        config.display()
    );

    dpkg(&["--purge", PACKAGE])?;
    ensure!(
        !config.exists(),
        "dpkg --purge left the conffile {}",
        config.display()
    );
    let s = status(r);
    ensure!(
        s.is_empty() || s.contains("not-installed"),
        "after dpkg --purge, edge is {s:?}"
    );
    Ok(())
}

/// The host's dpkg status of the package (empty if it has none), to show
/// the check left it alone.
fn host_status() -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status} ${Version}", PACKAGE])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// The unit with its Exec lines running `bin` instead of /usr/bin/edge.
fn unit_text(root: &Path, bin: &Path) -> Result<String> {
    exec_lines_running(root, UNIT, bin, 3)
}

/// The systemd file at `file` (in the repository) with its Exec lines
/// running `bin` instead of /usr/bin/edge; it must have at least `execs`.
fn exec_lines_running(root: &Path, file: &str, bin: &Path, execs: usize) -> Result<String> {
    let text = fs::read_to_string(root.join(file)).with_context(|| format!("reading {file}"))?;
    let bin = bin.to_str().context("edge's path is not UTF-8")?;
    ensure!(
        !bin.contains(char::is_whitespace),
        "edge's path {bin:?} has white space, which the unit's command lines would split"
    );
    let mut rewritten = 0;
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line.starts_with("Exec") && line.contains(SHIPPED_BIN) {
            out.push_str(&line.replace(SHIPPED_BIN, bin));
            rewritten += 1;
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    ensure!(
        rewritten >= execs,
        "{file}: expected {execs} Exec lines or more to run {SHIPPED_BIN}, found {rewritten}"
    );
    Ok(out)
}

/// Where the unit goes for `install --prefix`: systemd's directory for the
/// administrator's units under /usr/local, the distribution's under /usr,
/// else /etc/systemd/system (systemd looks nowhere else).
fn unit_dir(prefix: &Path) -> PathBuf {
    if prefix == Path::new("/usr/local") || prefix == Path::new("/usr") {
        prefix.join("lib/systemd/system")
    } else {
        PathBuf::from("/etc/systemd/system")
    }
}

/// A Cargo version as Debian orders it: a pre-release (`1.0.0-rc.1`)
/// sorts before its release with `~` (and `-` would start a Debian
/// revision); build metadata (`+x`) is valid as it is.
fn debian_version(cargo: &str) -> String {
    cargo.replace('-', "~")
}

/// The packages that hold the shared libraries `bin` links (ldd, then
/// dpkg -S on each): what dpkg-shlibdeps would find, without a source
/// package. libc6 gets the newest GLIBC symbol version `bin` needs.
fn shlib_depends(bin: &Path) -> Result<Vec<String>> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .context("running ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        if text.contains("not a dynamic executable")
            || String::from_utf8_lossy(&out.stderr).contains("not a dynamic executable")
        {
            return Ok(Vec::new());
        }
        bail!(
            "ldd {} failed ({}): {}",
            bin.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut packages: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.contains("not found") {
            bail!("{}: a library is missing: {line}", bin.display());
        }
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)",
        // "/lib64/ld-linux-x86-64.so.2 (0x...)", "linux-vdso.so.1 (0x...)".
        let path = line.split_once(" => ").map_or(line, |(_, p)| p);
        let path = path.split(" (").next().unwrap_or("").trim();
        if !path.starts_with('/') {
            continue;
        }
        let package = dpkg_owner(Path::new(path))?;
        if !packages.contains(&package) {
            packages.push(package);
        }
    }
    // libc6 first, as dpkg-shlibdeps orders it.
    packages.sort_by_key(|p| p != "libc6");
    let glibc = glibc_floor(bin)?;
    Ok(packages
        .into_iter()
        .map(|p| match (&glibc, p.as_str()) {
            (Some(v), "libc6") => format!("libc6 (>= {v})"),
            _ => p,
        })
        .collect())
}

/// The package that owns `path` (`dpkg -S`), trying its canonical path
/// too (/lib64/ld-linux-x86-64.so.2 is a link).
fn dpkg_owner(path: &Path) -> Result<String> {
    let mut tries = vec![path.to_path_buf()];
    if let Ok(real) = fs::canonicalize(path)
        && real != path
    {
        tries.push(real);
    }
    for p in &tries {
        let out = Command::new("dpkg")
            .arg("-S")
            .arg(p)
            .output()
            .context("running dpkg -S")?;
        if !out.status.success() {
            continue;
        }
        // "libc6:amd64: /lib/x86_64-linux-gnu/libc.so.6"; with diversions,
        // "a, b: path".
        let text = String::from_utf8_lossy(&out.stdout);
        if let Some((owners, _)) = text.lines().next().and_then(|l| l.split_once(": ")) {
            let first = owners.split(',').next().unwrap_or("").trim();
            let name = first.split(':').next().unwrap_or("").trim();
            if !name.is_empty() {
                return Ok(name.to_string());
            }
        }
    }
    bail!(
        "no Debian package owns {}, which edge links: install the library from a package",
        path.display()
    )
}

/// The newest `GLIBC_x.y[.z]` version `bin` needs, from its ELF version
/// requirements (.gnu.version_r); `None` if it needs none (or is not a
/// 64-bit little-endian ELF).
fn glibc_floor(bin: &Path) -> Result<Option<String>> {
    const SHT_GNU_VERNEED: u32 = 0x6fff_fffe;
    let mut f = fs::File::open(bin).with_context(|| format!("opening {}", bin.display()))?;
    let mut at = |offset: u64, len: usize| -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        f.seek(SeekFrom::Start(offset))?;
        f.read_exact(&mut buf)?;
        Ok(buf)
    };
    let header = at(0, 64)?;
    if &header[..4] != b"\x7fELF" || header[4] != 2 || header[5] != 1 {
        return Ok(None);
    }
    fn u16_at(b: &[u8], o: usize) -> u16 {
        u16::from_le_bytes([b[o], b[o + 1]])
    }
    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
    }
    fn u64_at(b: &[u8], o: usize) -> u64 {
        let mut x = [0u8; 8];
        x.copy_from_slice(&b[o..o + 8]);
        u64::from_le_bytes(x)
    }
    let (shoff, shentsize, shnum) = (
        u64_at(&header, 0x28),
        usize::from(u16_at(&header, 0x3a)),
        usize::from(u16_at(&header, 0x3c)),
    );
    ensure!(
        shentsize >= 64,
        "{}: odd ELF section headers",
        bin.display()
    );
    let sections = at(shoff, shentsize * shnum)?;
    let section = |i: usize| &sections[i * shentsize..(i + 1) * shentsize];
    let Some(verneed) = (0..shnum).find(|&i| u32_at(section(i), 4) == SHT_GNU_VERNEED) else {
        return Ok(None);
    };
    let vn = section(verneed);
    let link = u32_at(vn, 40) as usize;
    ensure!(link < shnum, "{}: bad .gnu.version_r link", bin.display());
    let data = at(u64_at(vn, 24), u64_at(vn, 32) as usize)?;
    let strtab = at(
        u64_at(section(link), 24),
        u64_at(section(link), 32) as usize,
    )?;
    let name = |o: usize| {
        let s: &[u8] = strtab.get(o..).unwrap_or_default();
        String::from_utf8_lossy(&s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())])
            .into_owned()
    };
    let mut best: Option<Vec<u32>> = None;
    let mut need = 0usize;
    // Verneed: version u16, cnt u16, file u32, aux u32, next u32.
    // Vernaux: hash u32, flags u16, other u16, name u32, next u32.
    loop {
        ensure!(
            need + 16 <= data.len(),
            "{}: bad .gnu.version_r",
            bin.display()
        );
        let count = u16_at(&data, need + 2);
        let mut aux = need + u32_at(&data, need + 8) as usize;
        for _ in 0..count {
            ensure!(
                aux + 16 <= data.len(),
                "{}: bad .gnu.version_r",
                bin.display()
            );
            let n = name(u32_at(&data, aux + 8) as usize);
            if let Some(v) = n.strip_prefix("GLIBC_") {
                let parts: Option<Vec<u32>> = v.split('.').map(|p| p.parse().ok()).collect();
                if let Some(parts) = parts
                    && best.as_ref().is_none_or(|b| parts > *b)
                {
                    best = Some(parts);
                }
            }
            let next = u32_at(&data, aux + 12) as usize;
            if next == 0 {
                break;
            }
            aux += next;
        }
        let next = u32_at(&data, need + 12) as usize;
        if next == 0 {
            break;
        }
        need += next;
    }
    Ok(best.map(|v| v.iter().map(u32::to_string).collect::<Vec<_>>().join(".")))
}

/// Installed-Size: the tree's files and directories in KiB, as
/// dpkg-gencontrol counts them (DEBIAN/ aside).
fn installed_size_kib(tree: &Path) -> Result<u64> {
    fn walk(dir: &Path, total: &mut u64) -> Result<()> {
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_name() == "DEBIAN" {
                continue;
            }
            let meta = entry.metadata()?;
            if meta.is_dir() {
                *total += 1;
                walk(&entry.path(), total)?;
            } else {
                *total += meta.len().div_ceil(1024);
            }
        }
        Ok(())
    }
    let mut total = 0;
    walk(tree, &mut total)?;
    Ok(total)
}

/// /usr/share/doc/edge/copyright (machine-readable, DEP-5). The workspace
/// is `MIT OR Apache-2.0`; a LICENSE-MIT or LICENSE-APACHE at the root is
/// used when there is one.
fn copyright(root: &Path) -> Result<String> {
    let mit = fs::read_to_string(root.join("LICENSE-MIT")).unwrap_or_else(|_| MIT_TEXT.into());
    let apache = fs::read_to_string(root.join("LICENSE-APACHE")).unwrap_or_else(|_| {
        "On Debian systems, the complete text of the Apache License, Version 2.0\n\
         can be found in /usr/share/common-licenses/Apache-2.0."
            .into()
    });
    Ok(format!(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: edge\n\
         Source: {HOMEPAGE}\n\
         \n\
         Files: *\n\
         Copyright: the edge authors\n\
         License: MIT or Apache-2.0\n\
         \n\
         License: MIT\n{}\n\
         License: Apache-2.0\n{}",
        dep5_text(&mit),
        dep5_text(&apache)
    ))
}

/// A licence text as a DEP-5 field body: each line indented, blank lines
/// as " .".
fn dep5_text(text: &str) -> String {
    let mut out = String::new();
    for line in text.trim().lines() {
        if line.trim().is_empty() {
            out.push_str(" .\n");
        } else {
            out.push(' ');
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    out
}

const MIT_TEXT: &str = "Copyright (c) the edge authors

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the \"Software\"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
";

// The maintainer scripts. Each honours DPKG_ROOT (an installation into
// another root: `dpkg --root`, a bootstrap): it then touches only that
// root, and never the running system's services. systemctl runs only on a
// host booted with systemd (/run/systemd/system) and never with DPKG_ROOT.

/// Registers the unit (for purge) without enabling it: edge needs a
/// configuration before it is worth starting. An upgrade restarts edge if
/// it ran (its XDP program stays attached meanwhile).
const POSTINST: &str = r#"#!/bin/sh
set -e
case "$1" in
configure|abort-upgrade|abort-deconfigure|abort-remove)
    if command -v deb-systemd-helper >/dev/null 2>&1; then
        # Records the unit so that purge can clean up; enables nothing.
        deb-systemd-helper update-state edge.service >/dev/null || true
    fi
    if [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
        systemctl --system daemon-reload >/dev/null || true
        if [ -n "$2" ]; then
            deb-systemd-invoke try-restart edge.service >/dev/null || true
        fi
    fi
    if [ "$1" = configure ] && [ -z "$2" ]; then
        echo "edge: edit /etc/edge/edge.yaml, check it with 'edge check --config /etc/edge/edge.yaml', then run 'systemctl enable --now edge'."
    fi
    ;;
esac
exit 0
"#;

/// On removal (not upgrade): stops edge, and detaches the XDP program it
/// leaves pinned, which would otherwise outlive the package.
const PRERM: &str = r#"#!/bin/sh
set -e
if [ "$1" = remove ] && [ -z "${DPKG_ROOT:-}" ]; then
    if [ -d /run/systemd/system ]; then
        deb-systemd-invoke stop edge.service >/dev/null || true
    fi
    if [ -x /usr/bin/edge ] && [ -f /etc/edge/edge.yaml ]; then
        /usr/bin/edge unload --config /etc/edge/edge.yaml >/dev/null 2>&1 || true
    fi
fi
exit 0
"#;

/// Reloads systemd after removal; on purge, forgets the unit's state and
/// removes the logs (dpkg removes the conffile).
const POSTRM: &str = r#"#!/bin/sh
set -e
case "$1" in
remove)
    if [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
        systemctl --system daemon-reload >/dev/null || true
    fi
    ;;
purge)
    if command -v deb-systemd-helper >/dev/null 2>&1; then
        deb-systemd-helper purge edge.service >/dev/null || true
    fi
    rm -rf "${DPKG_ROOT:-}/var/log/edge"
    ;;
esac
exit 0
"#;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

fn parent(path: &Path) -> Result<&Path> {
    path.parent()
        .with_context(|| format!("{} has no parent directory", path.display()))
}

/// Creates `dir` and its missing parents, mode 0755 whatever the umask
/// (a package's directories keep the mode they have in the tree).
fn make_dirs(dir: &Path) -> Result<()> {
    let mut missing = Vec::new();
    let mut d = dir;
    while !d.as_os_str().is_empty() && !d.exists() {
        missing.push(d.to_path_buf());
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    for m in missing.iter().rev() {
        fs::create_dir(m).with_context(|| format!("creating {}", m.display()))?;
        set_mode(m, 0o755)?;
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    set_mode(path, mode)
}

/// Runs `cmd`, failing with its output if it fails; returns its standard
/// output.
fn capture(cmd: &mut Command) -> Result<String> {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!(
            "{cmd:?} failed with {status}:\n{}{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        );
    }
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}
