//! The command line: `edge run | check | reload | ctl | load | unload | decap`.

use crate::{
    config::{self, Interface, XdpMode},
    daemon,
    dataplane::{self, Dataplane, decap::Decap},
    decap,
};
use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use std::{io::Write, net::IpAddr, path::PathBuf};

/// edge: an L4/L7 load balancer (XDP fast path + Pingora proxy).
#[derive(Debug, Parser)]
#[command(name = "edge", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon: attach XDP, serve the listeners, until SIGINT/SIGTERM.
    Run {
        /// Configuration file (YAML).
        #[arg(short, long)]
        config: PathBuf,
        /// Take the listening sockets over from the running edge (started
        /// by `edge upgrade`).
        #[arg(long, hide = true)]
        upgrade: bool,
    },
    /// Replace the running edge by a new process (of this binary, or of
    /// `--binary`) on the same configuration, without refusing a
    /// connection: the old one hands its listening sockets over and drains.
    Upgrade {
        /// The configuration file the daemon runs.
        #[arg(short, long)]
        config: PathBuf,
        /// The edge binary to run instead of this one.
        #[arg(long)]
        binary: Option<PathBuf>,
        /// Where the new process logs (appended); by default, to this
        /// command's standard output and error, which it keeps open.
        #[arg(long)]
        log: Option<PathBuf>,
    },
    /// Ask the running edge to reload its configuration file (as SIGHUP and
    /// `POST /reload` do), and print what it did or every error; the
    /// running configuration stays when the file has any.
    Reload {
        /// The configuration file the daemon runs (names its control socket).
        #[arg(short, long)]
        config: PathBuf,
        /// The daemon's control socket, if not the one `--config` names.
        #[arg(long)]
        socket: Option<PathBuf>,
        /// When the change needs a graceful upgrade: where the new process
        /// logs (see `edge upgrade --log`).
        #[arg(long)]
        log: Option<PathBuf>,
    },
    /// Talk to a running edge's admin API: status, backends, drain,
    /// undrain, reload, drain-host (tables by default, `--json` for
    /// scripts).
    Ctl {
        /// The admin endpoint (http://HOST:PORT); by default the one the
        /// `--config` file names, else http://127.0.0.1:9100.
        #[arg(long, global = true)]
        admin: Option<String>,
        /// The configuration file whose `admin.address` to use.
        #[arg(short, long, global = true)]
        config: Option<PathBuf>,
        /// Bearer token for changes (`admin.token`); or EDGE_ADMIN_TOKEN.
        #[arg(long, global = true, env = "EDGE_ADMIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Print the API's JSON instead of tables.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        action: CtlAction,
    },
    /// Check configuration files; print every error with its line and column.
    Check {
        /// Configuration file (YAML); may be repeated.
        #[arg(short, long = "config")]
        configs: Vec<PathBuf>,
        /// More configuration files.
        files: Vec<PathBuf>,
    },
    /// Read a password (or an API key with `--api-key`) from standard input
    /// and print what a consumer's `basic.password_hash` (bcrypt) or
    /// `api_keys[].sha256` holds, so the file never holds the secret.
    Hash {
        /// Print the SHA-256 of an API key instead of a bcrypt hash.
        #[arg(long)]
        api_key: bool,
        /// bcrypt cost (4 to 31).
        #[arg(long, default_value_t = 12)]
        cost: u32,
    },
    /// Attach the XDP program to an interface on its own and leave it there
    /// (pinned in /sys/fs/bpf/edge/IFACE) after this command exits.
    Load {
        /// Interface name.
        #[arg(long)]
        iface: String,
        /// Attach mode.
        #[arg(long, value_enum, default_value_t = Mode::Native)]
        mode: Mode,
        /// Fill the deny list and L7 ports from this configuration.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Which program: the edge fast path, or backend-side decapsulation.
        #[arg(long, value_enum, default_value_t = Program::Xdp)]
        program: Program,
        /// With `--program decap`: an allowed outer source (edge's
        /// forwarding address); may be repeated.
        #[arg(long = "source", required_if_eq("program", "decap"))]
        sources: Vec<IpAddr>,
    },
    /// Backend side of L4 direct server return: attach the decapsulation
    /// program to an interface and run until SIGTERM/SIGINT, then detach.
    /// It strips the outer IPIP/IP6IP6 header of packets from the given
    /// sources and passes the inner packet (to the VIP on `lo`).
    Decap {
        /// Interface name.
        #[arg(long)]
        iface: String,
        /// Attach mode.
        #[arg(long, value_enum, default_value_t = Mode::Native)]
        mode: Mode,
        /// An allowed outer source (edge's forwarding address); may be repeated.
        #[arg(long = "source", required = true)]
        sources: Vec<IpAddr>,
    },
    /// Withdraw every BGP route of a configuration's `bgp` section: write
    /// BIRD's file without routes and ask BIRD to read it. For a service
    /// manager after edge has ended, a crash included (`ExecStopPost=`),
    /// so that BIRD does not go on attracting traffic to a host without
    /// edge. Refused while an edge runs the configuration.
    BgpWithdraw {
        /// The configuration file the daemon ran.
        #[arg(short, long)]
        config: PathBuf,
        /// Withdraw even though an edge still runs this configuration.
        #[arg(long)]
        force: bool,
    },
    /// Detach an XDP program attached with `edge load --iface`, or remove
    /// everything `edge run --config` left pinned (its program stays
    /// attached after it exits, for the next `edge run` to adopt).
    Unload {
        /// Interface name (what `edge load` attached).
        #[arg(long, required_unless_present = "config", conflicts_with = "config")]
        iface: Option<String>,
        /// The configuration an `edge run` ran (names its pins).
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// The bpffs it pinned under, if the configuration cannot be read
        /// (else its `xdp.bpffs`).
        #[arg(long, requires = "config")]
        bpffs: Option<PathBuf>,
        /// Unload even though an edge still runs this configuration.
        #[arg(long, requires = "config")]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
enum CtlAction {
    /// Generation, listeners, pools and L4 services at a glance.
    Status,
    /// Every backend of every pool and L4 service, with its state.
    Backends,
    /// Take a backend out: no new requests (L7) or flows (L4) until
    /// undrained; kept across reloads.
    Drain {
        /// The pool or L4 service.
        name: String,
        /// The backend: IP:port in a pool, IP in an L4 service.
        address: String,
    },
    /// Put a drained backend back.
    Undrain {
        /// The pool or L4 service.
        name: String,
        /// The backend: IP:port in a pool, IP in an L4 service.
        address: String,
    },
    /// Reload the configuration file (the running one stays on an error).
    Reload,
    /// Drain the whole host: withdraw every BGP route, then stop edge
    /// (as SIGTERM) once its L4 traffic has moved to other edges, or at
    /// the deadline.
    DrainHost {
        /// Longest wait for the traffic to move before edge stops anyway
        /// (`30s`, `5m`; at most `1h`); 30s by default.
        #[arg(long)]
        deadline: Option<String>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    Native,
    Generic,
}

impl Mode {
    fn interface(self, name: String) -> Interface {
        Interface {
            name,
            mode: match self {
                Mode::Native => XdpMode::Native,
                Mode::Generic => XdpMode::Generic,
            },
            fallback_to_generic: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Program {
    /// The fast path (deny, L4, pass).
    Xdp,
    /// Backend-side IPIP/IP6IP6 decapsulation.
    Decap,
}

/// Parses the command line and runs the command.
pub fn main() -> Result<()> {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Run { config, upgrade } => daemon::run(&config, upgrade),
        Command::Upgrade {
            config,
            binary,
            log,
        } => upgrade(&config, binary, log.as_deref()),
        Command::Reload {
            config,
            socket,
            log,
        } => reload(&config, socket, log.as_deref()),
        Command::Check { configs, files } => check(configs.into_iter().chain(files).collect()),
        Command::Hash { api_key, cost } => hash_secret(api_key, cost),
        Command::Ctl {
            admin,
            config,
            token,
            json,
            action,
        } => ctl(admin, config, token, json, action),
        Command::Load {
            iface,
            mode,
            config,
            program: Program::Xdp,
            ..
        } => load(iface, mode, config),
        Command::Load {
            iface,
            mode,
            program: Program::Decap,
            sources,
            ..
        } => load_decap(mode.interface(iface), &sources),
        Command::Decap {
            iface,
            mode,
            sources,
        } => decap::run(&mode.interface(iface), &sources),
        Command::Unload {
            iface: Some(iface), ..
        } => {
            dataplane::unpin_program(&iface)?;
            say(format_args!("edge XDP detached from {iface}"));
            Ok(())
        }
        Command::Unload {
            config: Some(path),
            bpffs,
            force,
            ..
        } => unload_daemon(&path, bpffs, force),
        Command::Unload { .. } => bail!("edge unload: name --iface or --config"),
        Command::BgpWithdraw { config, force } => bgp_withdraw(&config, force),
    }
}

fn ctl(
    admin: Option<String>,
    config: Option<PathBuf>,
    token: Option<String>,
    json: bool,
    action: CtlAction,
) -> Result<()> {
    let admin = match (admin, config) {
        (Some(a), _) => a,
        (None, Some(path)) => {
            let c = config::load(&path)?;
            let a = c
                .admin
                .with_context(|| format!("{}: has no admin endpoint", path.display()))?;
            // A wildcard bind is reached on loopback.
            let ip = if a.address.ip().is_unspecified() {
                match a.address.ip() {
                    IpAddr::V4(_) => IpAddr::from([127, 0, 0, 1]),
                    IpAddr::V6(_) => IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
                }
            } else {
                a.address.ip()
            };
            format!("http://{}", std::net::SocketAddr::new(ip, a.address.port()))
        }
        (None, None) => "http://127.0.0.1:9100".to_string(),
    };
    let target = crate::ctl::Target::parse(&admin, token)?;
    let action = match action {
        CtlAction::Status => crate::ctl::Action::Status,
        CtlAction::Backends => crate::ctl::Action::Backends,
        CtlAction::Drain { name, address } => crate::ctl::Action::Drain {
            name,
            address,
            drained: true,
        },
        CtlAction::Undrain { name, address } => crate::ctl::Action::Drain {
            name,
            address,
            drained: false,
        },
        CtlAction::Reload => crate::ctl::Action::Reload,
        CtlAction::DrainHost { deadline } => crate::ctl::Action::DrainHost { deadline },
    };
    crate::ctl::run(&target, action, json)
}

fn hash_secret(api_key: bool, cost: u32) -> Result<()> {
    let mut secret = String::new();
    std::io::stdin().read_line(&mut secret)?;
    let secret = secret.trim_end_matches(['\r', '\n']);
    if secret.is_empty() {
        bail!("edge hash: nothing on standard input");
    }
    if api_key {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(secret.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        say(format_args!("{hex}"));
    } else {
        let hash = bcrypt::hash(secret, cost).map_err(|e| anyhow::anyhow!("edge hash: {e}"))?;
        say(format_args!("{hash}"));
    }
    Ok(())
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EDGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn check(files: Vec<PathBuf>) -> Result<()> {
    if files.is_empty() {
        bail!("edge check: name at least one configuration file");
    }
    let mut out = Output::default();
    let mut failed = 0;
    for file in &files {
        match config::check(file) {
            Ok(checked) => {
                for w in &checked.warnings {
                    out.err(w.warning_in(file));
                }
                for w in crate::policy::probe::unreachable(&checked.config) {
                    out.err(format_args!("{}: {w}", file.display()));
                }
                out.out(format_args!("{}: OK", file.display()));
                for line in checked.config.summary().lines() {
                    out.out(format_args!("  {line}"));
                }
            }
            Err(e) => {
                out.err(&e);
                failed += 1;
            }
        }
    }
    if failed > 0 {
        if out.stderr_gone {
            // main() would print this error to the closed stderr, and
            // eprintln! panics there: exit with the check's status instead.
            std::process::exit(1);
        }
        bail!(
            "{failed} of {} configuration files have errors",
            files.len()
        );
    }
    Ok(())
}

/// Writes lines to standard output and standard error, and stops writing
/// to one quietly once its reader has gone (`edge check ... | head -1`):
/// the print macros would panic there, since Rust ignores SIGPIPE and every
/// write to a closed pipe then fails with EPIPE.
#[derive(Default)]
struct Output {
    stdout_gone: bool,
    stderr_gone: bool,
}

impl Output {
    /// A line to standard output.
    fn out(&mut self, line: impl std::fmt::Display) {
        if !self.stdout_gone {
            self.stdout_gone = writeln!(std::io::stdout().lock(), "{line}").is_err();
        }
    }

    /// A line to standard error.
    fn err(&mut self, line: impl std::fmt::Display) {
        if !self.stderr_gone {
            self.stderr_gone = writeln!(std::io::stderr().lock(), "{line}").is_err();
        }
    }
}

/// Prints a one-line report of a command that has done its work; a closed
/// standard output loses the line but is no reason to fail (or panic).
fn say(line: impl std::fmt::Display) {
    Output::default().out(line);
}

fn reload(
    config: &std::path::Path,
    socket: Option<PathBuf>,
    log: Option<&std::path::Path>,
) -> Result<()> {
    let socket = match socket {
        Some(s) => s,
        None => crate::runtime::control::socket_for(config)?,
    };
    match crate::runtime::control::request(&socket, "reload")? {
        crate::runtime::control::Answer::Ok(generation, warnings) => {
            if !warnings.is_empty() {
                Output::default().err(warnings.trim_end());
            }
            say(format_args!(
                "{}: reloaded in place, generation {generation} is live",
                config.display()
            ));
            Ok(())
        }
        crate::runtime::control::Answer::Upgrade(why) => {
            Output::default().err(format_args!("{why}\nthese need a new process: upgrading"));
            upgrade(config, None, log)
        }
    }
}

fn upgrade(
    config: &std::path::Path,
    binary: Option<PathBuf>,
    log: Option<&std::path::Path>,
) -> Result<()> {
    let done = crate::runtime::upgrade::upgrade(config, binary, log)?;
    say(format_args!(
        "{}: upgraded, edge {} took over from edge {} (which drains, then exits)",
        config.display(),
        done.new,
        done.old
    ));
    Ok(())
}

/// `edge bgp-withdraw`: BIRD's file without routes, read by BIRD, unless
/// an edge runs `path` (or `force`).
fn bgp_withdraw(path: &std::path::Path, force: bool) -> Result<()> {
    let socket = crate::runtime::control::socket_for(path)?;
    // A running edge owns the file (an upgrade's new process, say): its
    // announcer would not notice its routes gone.
    if !force
        && let Ok(crate::runtime::control::Answer::Ok(pid, _)) =
            crate::runtime::control::request(&socket, "ping")
    {
        bail!(
            "edge {pid} still runs {} and announces its routes: nothing withdrawn (stop it, \
             or give --force)",
            path.display()
        );
    }
    let cfg = config::load(path)?;
    let Some(bgp) = cfg.bgp else {
        say(format_args!(
            "{} has no bgp section: nothing to withdraw",
            path.display()
        ));
        return Ok(());
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime")?;
    rt.block_on(crate::bgp::withdraw_once(&bgp))
        .with_context(|| format!("withdrawing through BIRD at {}", bgp.bird_socket.display()))?;
    say(format_args!(
        "every route withdrawn: {} holds none, and BIRD has read it",
        bgp.bird_config.display()
    ));
    Ok(())
}

/// Removes what `edge run --config path` pinned: its links (so the program
/// leaves the interfaces) and its maps.
fn unload_daemon(path: &std::path::Path, bpffs: Option<PathBuf>, force: bool) -> Result<()> {
    let socket = crate::runtime::control::socket_for(path)?;
    if !force
        && let Ok(crate::runtime::control::Answer::Ok(pid, _)) =
            crate::runtime::control::request(&socket, "ping")
    {
        bail!(
            "edge {pid} still runs {}: stop it first (or give --force)",
            path.display()
        );
    }
    let root = match bpffs {
        Some(root) => root,
        None => {
            config::load(path)
                .with_context(|| {
                    format!(
                        "reading xdp.bpffs from {} (or give --bpffs)",
                        path.display()
                    )
                })?
                .xdp
                .bpffs
        }
    };
    let instance = crate::runtime::control::instance(path)?;
    // Taken off the host for good: its drains go too.
    let drains = crate::runtime::drains::path_for(path)?;
    match std::fs::remove_file(&drains) {
        Ok(()) => say(format_args!("removed {}", drains.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => say(format_args!("could not remove {}: {e}", drains.display())),
    }
    let removed = dataplane::unpin_daemon(&root, &instance)?;
    if removed.is_empty() {
        say(format_args!(
            "nothing pinned for {} under {}",
            path.display(),
            root.display()
        ));
    }
    for dir in removed {
        say(format_args!(
            "removed {}: edge's XDP program detached and its maps freed",
            dir.display()
        ));
    }
    Ok(())
}

fn load(iface: String, mode: Mode, config: Option<PathBuf>) -> Result<()> {
    let mut dp = Dataplane::load()?;
    if let Some(path) = config {
        let cfg = config::load(&path)?;
        dp.tables().set_deny(&cfg.xdp.deny)?;
        dp.tables().set_l7_ports(&cfg.l7_ports())?;
    }
    let iface = mode.interface(iface);
    let attached = dataplane::pin_program(&mut dp, &iface)
        .with_context(|| format!("attaching edge XDP to {}", iface.name))?;
    say(format_args!(
        "edge XDP attached to {} ({} mode), pinned at {}",
        iface.name,
        attached.as_str(),
        dataplane::pin_dir(&iface.name).display()
    ));
    Ok(())
}

fn load_decap(iface: Interface, sources: &[IpAddr]) -> Result<()> {
    let mut decap = Decap::load()?;
    decap.set_sources(sources)?;
    let attached = dataplane::pin_decap(&mut decap, &iface)
        .with_context(|| format!("attaching edge decap to {}", iface.name))?;
    say(format_args!(
        "edge decap attached to {} ({} mode), pinned at {}",
        iface.name,
        attached.as_str(),
        dataplane::pin_dir(&iface.name).display()
    ));
    Ok(())
}
