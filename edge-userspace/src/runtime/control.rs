//! The control socket: how `edge reload` reaches the running daemon.
//!
//! A Unix socket, mode 0600 in a 0700 directory, so only the daemon's
//! user (root) can reload. Its path is derived from the configuration
//! file's canonical path ([`socket_for`]), so `edge reload --config F`
//! finds the daemon that runs F without further settings, and two daemons
//! on two files never share one.
//!
//! The exchange is one line each way and then text: the client sends
//! `reload\n`; the daemon answers `ok GENERATION\n` followed by any
//! warnings, or `error\n` followed by every error, and closes.

use super::Reloader;
use anyhow::{Context, Result, bail};
use std::{
    io::{Read, Write},
    os::unix::{
        fs::{FileTypeExt, MetadataExt, PermissionsExt},
        net::UnixStream as StdUnixStream,
    },
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::UnixListener,
};

/// Where control sockets live.
pub const SOCKET_DIR: &str = "/run/edge";

/// Longest request line the daemon reads.
const MAX_REQUEST: u64 = 64;
/// Longest a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest `edge reload` waits for the daemon's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest answer `edge reload` reads.
const MAX_ANSWER: u64 = 1 << 20;

/// The control socket of the daemon that runs configuration `config`.
///
/// The path is made absolute but symbolic links are not resolved: a file
/// deployed by switching a link (a Kubernetes ConfigMap, a release
/// directory) keeps naming the same daemon.
pub fn socket_for(config: &Path) -> Result<PathBuf> {
    Ok(Path::new(SOCKET_DIR).join(format!("{}.sock", instance(config)?)))
}

/// The name of the daemon that runs configuration `config` among others on
/// this host (`edge-` and a hash of the file's absolute path): it names
/// its control socket and its pinned maps.
pub fn instance(config: &Path) -> Result<String> {
    let absolute = std::path::absolute(config)
        .with_context(|| format!("{}: cannot make the path absolute", config.display()))?;
    // FNV-1a: stable across builds and processes, unlike std's hasher.
    let hash = absolute
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        });
    Ok(format!("edge-{hash:016x}"))
}

/// Binds the control socket at `path`. A socket file left by a daemon that
/// is gone is replaced; one that a running daemon answers on is an error
/// (two daemons on one configuration file).
pub fn bind(path: &Path) -> Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        // Whoever owns the directory could replace the socket and answer
        // `edge reload` in edge's name: it must be a real directory of ours.
        let meta = std::fs::symlink_metadata(dir)
            .with_context(|| format!("inspecting {}", dir.display()))?;
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        if !meta.is_dir() || meta.uid() != me {
            bail!(
                "{} must be a directory owned by uid {me}, not a link or another user's",
                dir.display()
            );
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {}", dir.display()))?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            bail!("{} exists and is not a socket: remove it", path.display());
        }
        match StdUnixStream::connect(path) {
            Ok(_) => bail!(
                "control socket {} is in use: is another edge running this configuration?",
                path.display()
            ),
            // Nobody listens: left by a daemon that is gone.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path)
                    .with_context(|| format!("removing the stale socket {}", path.display()))?;
            }
            Err(e) => bail!("control socket {}: {e}", path.display()),
        }
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    Ok(listener)
}

/// Serves reload requests on `listener` until the task is dropped.
pub async fn serve(listener: UnixListener, reloader: Arc<Reloader>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!("control socket: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let reloader = Arc::clone(&reloader);
        tokio::spawn(async move {
            if let Err(e) = answer(stream, reloader).await {
                tracing::warn!("control socket: {e:#}");
            }
        });
    }
}

async fn answer(mut stream: tokio::net::UnixStream, reloader: Arc<Reloader>) -> Result<()> {
    let mut line = String::new();
    let (read, mut write) = stream.split();
    let mut reader = BufReader::new(read.take(MAX_REQUEST));
    tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line))
        .await
        .context("no request in time")??;
    let reply = match line.trim() {
        "reload" => {
            let r = Arc::clone(&reloader);
            match tokio::task::spawn_blocking(move || r.reload("edge reload")).await {
                Ok(Ok(applied)) => {
                    format!("ok {}\n{}", applied.generation, applied.warning_lines())
                }
                Ok(Err(e)) => format!("error\n{e}\n"),
                Err(e) => format!("error\nthe reload task failed: {e}\n"),
            }
        }
        other => format!("error\nunknown request {other:?}: expected \"reload\"\n"),
    };
    write.write_all(reply.as_bytes()).await?;
    write.shutdown().await?;
    Ok(())
}

/// `edge reload`: asks the daemon at `socket` to reload; `Ok` carries the
/// new generation and any warnings, `Err` every reason it kept the running
/// configuration.
pub fn request_reload(socket: &Path) -> Result<(u64, String)> {
    let mut stream = StdUnixStream::connect(socket).with_context(|| {
        format!(
            "cannot reach edge at {} (is it running with this configuration?)",
            socket.display()
        )
    })?;
    let at = || format!("control socket {}", socket.display());
    stream
        .set_read_timeout(Some(ANSWER_TIMEOUT))
        .with_context(at)?;
    stream.write_all(b"reload\n").with_context(at)?;
    let mut bytes = Vec::new();
    stream
        .take(MAX_ANSWER)
        .read_to_end(&mut bytes)
        .with_context(|| {
            format!(
                "{}: no complete answer within {ANSWER_TIMEOUT:?}; whether the reload was \
                 applied is unknown: see edge's log or edge_config_generation",
                at()
            )
        })?;
    let answer = String::from_utf8_lossy(&bytes);
    let (first, rest) = answer.split_once('\n').unwrap_or((&answer, ""));
    match (first.strip_prefix("ok "), first) {
        (Some(generation), _) => Ok((
            generation
                .trim()
                .parse()
                .with_context(|| format!("{}: a malformed answer {first:?}", at()))?,
            rest.to_string(),
        )),
        (None, "error") => bail!(
            "reload refused; the running configuration stays:\n{}",
            rest.trim_end()
        ),
        (None, _) => bail!(
            "{}: edge closed the connection without an answer (stopping?); whether the \
             reload was applied is unknown: see edge's log",
            at()
        ),
    }
}
