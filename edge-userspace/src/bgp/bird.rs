//! A client of BIRD's control socket, the protocol `birdc` speaks.
//!
//! BIRD greets with `0001 BIRD x.y.z ready.`; each command is one line;
//! each reply line starts with a four-digit code followed by `-` (more
//! lines follow) or a space (the reply's last line). A line starting with
//! a space continues the previous code, and one starting with `+` is an
//! asynchronous message. Codes 0xxx are successes (`0003 Reconfigured`,
//! `0004 Reconfiguration in progress`…), 8xxx and 9xxx errors (`8002
//! /etc/bird.conf:3:5 syntax error`). Not every success of `configure`
//! means the file was taken: see [`CONFIGURE_APPLIED`].
//!
//! BIRD's answers are untrusted input: a line is at most [`MAX_LINE`]
//! bytes, a reply at most [`MAX_LINES`] lines, and the whole exchange must
//! end within [`DEADLINE`]. Text kept from an answer has its control
//! characters replaced, so it stays one line in logs and status pages.

use std::{
    io,
    path::{Path, PathBuf},
    time::Duration,
};
use tokio::{
    io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::UnixStream,
};

/// Longest line read from BIRD, its newline included.
pub const MAX_LINE: usize = 4096;
/// Most lines read from BIRD in one exchange, the greeting included.
pub const MAX_LINES: usize = 256;
/// Longest time one exchange (connect, greeting, command, reply) may take.
pub const DEADLINE: Duration = Duration::from_secs(5);
/// The final reply codes of `configure` that mean BIRD took the file:
/// `0003 Reconfigured` and `0004 Reconfiguration in progress` (the new
/// file is in force; protocols are still being restarted). Other 0xxx
/// codes are not: `0005 Reconfiguration already in progress, queueing new
/// config` may still be overtaken, and `0006 Reconfiguration ignored,
/// shutting down` never happens; the announcer must try again.
pub const CONFIGURE_APPLIED: [u16; 2] = [3, 4];

/// Why BIRD did not take a command.
#[derive(Debug, thiserror::Error)]
pub enum BirdError {
    /// Nothing answers at the control socket (BIRD not running, or another
    /// path configured).
    #[error("cannot connect to BIRD's control socket {}: {source} (is BIRD running, with this socket?)", path.display())]
    Connect {
        /// The socket.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The connection failed during the exchange.
    #[error("BIRD's control socket {}: {source}", path.display())]
    Io {
        /// The socket.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The exchange took longer than allowed.
    #[error("BIRD's control socket {} did not answer within {waited:?}", path.display())]
    Timeout {
        /// The socket.
        path: PathBuf,
        /// The deadline.
        waited: Duration,
    },
    /// BIRD answered with an error code.
    #[error("BIRD refused `{command}` ({code:04}): {text}")]
    Refused {
        /// The command.
        command: String,
        /// BIRD's reply code.
        code: u16,
        /// BIRD's message (control characters replaced).
        text: String,
    },
    /// BIRD answered a success code that does not mean the command took
    /// effect (such as `0005`, a reconfiguration queued behind another).
    #[error("BIRD did not apply `{command}` ({code:04}): {text}")]
    NotApplied {
        /// The command.
        command: String,
        /// BIRD's reply code.
        code: u16,
        /// BIRD's message (control characters replaced).
        text: String,
    },
    /// What came back is not BIRD's protocol (or breaks its bounds).
    #[error("BIRD's control socket {} answered outside the protocol: {why}", path.display())]
    Protocol {
        /// The socket.
        path: PathBuf,
        /// What was wrong.
        why: String,
    },
}

/// Asks BIRD at `socket` to re-read its configuration (`configure`), and
/// returns its success message (`Reconfigured`) when the final code is
/// one of [`CONFIGURE_APPLIED`]; any other code is an error.
pub async fn configure(socket: &Path) -> Result<String, BirdError> {
    const CONFIGURE: &str = "configure";
    let reply = command(socket, CONFIGURE, DEADLINE).await?;
    if CONFIGURE_APPLIED.contains(&reply.code) {
        Ok(reply.text)
    } else {
        Err(BirdError::NotApplied {
            command: CONFIGURE.to_string(),
            code: reply.code,
            text: reply.text,
        })
    }
}

/// Sends `command` (one line, no newline) to BIRD at `socket` and reads
/// the reply, all within `deadline`; returns the reply's final code and
/// text when the code is a success (0xxx).
pub(crate) async fn command(
    socket: &Path,
    command: &str,
    deadline: Duration,
) -> Result<Reply, BirdError> {
    if command.contains(['\n', '\r']) {
        return Err(BirdError::Protocol {
            path: socket.to_path_buf(),
            why: "a command must be one line".into(),
        });
    }
    match tokio::time::timeout(deadline, exchange(socket, command)).await {
        Ok(result) => result,
        Err(_) => Err(BirdError::Timeout {
            path: socket.to_path_buf(),
            waited: deadline,
        }),
    }
}

async fn exchange(socket: &Path, command: &str) -> Result<Reply, BirdError> {
    let path = || socket.to_path_buf();
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|source| BirdError::Connect {
            path: path(),
            source,
        })?;
    let (read, mut write) = stream.into_split();
    let mut reader = Reader {
        inner: BufReader::with_capacity(MAX_LINE, read),
        line: Vec::with_capacity(128),
        lines: 0,
        socket,
    };
    let greeting = reader.reply().await?;
    if greeting.code != 1 {
        return Err(BirdError::Protocol {
            path: path(),
            why: format!(
                "expected the greeting `0001 BIRD … ready.`, got code {:04}: {}",
                greeting.code, greeting.text
            ),
        });
    }
    let mut request = Vec::with_capacity(command.len() + 1);
    request.extend_from_slice(command.as_bytes());
    request.push(b'\n');
    write
        .write_all(&request)
        .await
        .map_err(|source| BirdError::Io {
            path: path(),
            source,
        })?;
    let reply = reader.reply().await?;
    if reply.code < 1000 {
        Ok(reply)
    } else {
        Err(BirdError::Refused {
            command: command.to_string(),
            code: reply.code,
            text: reply.text,
        })
    }
}

/// One reply: its final code, and the text of the final code's lines
/// (continuations joined with `; `).
#[derive(Debug)]
pub(crate) struct Reply {
    /// The code of the reply's last line.
    pub(crate) code: u16,
    /// The text of that code's lines, control characters replaced.
    pub(crate) text: String,
}

/// Reads bounded lines off the socket.
struct Reader<'a, R> {
    inner: R,
    line: Vec<u8>,
    /// Lines read so far, over the whole exchange.
    lines: usize,
    socket: &'a Path,
}

impl<R: AsyncBufRead + Unpin> Reader<'_, R> {
    fn protocol(&self, why: impl Into<String>) -> BirdError {
        BirdError::Protocol {
            path: self.socket.to_path_buf(),
            why: why.into(),
        }
    }

    /// Reads one line into `self.line`, without its line end. An end of
    /// stream before a whole line is an error: a reply is never cut short.
    async fn next_line(&mut self) -> Result<(), BirdError> {
        self.line.clear();
        self.lines += 1;
        if self.lines > MAX_LINES {
            return Err(self.protocol(format!("more than {MAX_LINES} lines")));
        }
        loop {
            let buf = match self.inner.fill_buf().await {
                Ok(buf) => buf,
                Err(source) => {
                    return Err(BirdError::Io {
                        path: self.socket.to_path_buf(),
                        source,
                    });
                }
            };
            if buf.is_empty() {
                return Err(self.protocol("the connection closed in the middle of a reply"));
            }
            let (take, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            if self.line.len() + take > MAX_LINE {
                return Err(self.protocol(format!("a line longer than {MAX_LINE} bytes")));
            }
            self.line.extend_from_slice(&buf[..take]);
            self.inner.consume(take);
            if done {
                self.line.pop();
                if self.line.last() == Some(&b'\r') {
                    self.line.pop();
                }
                return Ok(());
            }
        }
    }

    /// Reads lines up to and including the one that ends a reply.
    async fn reply(&mut self) -> Result<Reply, BirdError> {
        // The code of the current group of lines and their text.
        let mut current: Option<u16> = None;
        let mut text = String::new();
        loop {
            self.next_line().await?;
            match self.line.first() {
                // Asynchronous messages (log lines of other events) are not
                // part of the reply.
                Some(b'+') => continue,
                Some(b' ') => {
                    if current.is_none() {
                        return Err(self.protocol("a continuation line before any code"));
                    }
                    append(&mut text, &self.line[1..]);
                    continue;
                }
                _ => {}
            }
            let Some((code, last)) = parse_code(&self.line) else {
                return Err(self.protocol(format!(
                    "a line that is not `NNNN-text` or `NNNN text`: {:?}",
                    clean(&self.line[..self.line.len().min(80)])
                )));
            };
            if current != Some(code) {
                text.clear();
                current = Some(code);
            }
            append(&mut text, &self.line[5..]);
            if last {
                return Ok(Reply { code, text });
            }
        }
    }
}

/// The code of a line `NNNN-…` or `NNNN …`, and whether it ends the reply.
fn parse_code(line: &[u8]) -> Option<(u16, bool)> {
    if line.len() < 5 || !line[..4].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code = line[..4]
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    match line[4] {
        b' ' => Some((code, true)),
        b'-' => Some((code, false)),
        _ => None,
    }
}

/// Appends a line's text to `text`, joined with `; `, keeping at most
/// [`MAX_LINE`] bytes in all (a long reply's message is for a log line).
fn append(text: &mut String, line: &[u8]) {
    if text.len() >= MAX_LINE {
        return;
    }
    let line = clean(line);
    let line = line.trim();
    if line.is_empty() {
        return;
    }
    if !text.is_empty() {
        if text.len() + 2 >= MAX_LINE {
            return;
        }
        text.push_str("; ");
    }
    for c in line.chars() {
        if text.len() + c.len_utf8() > MAX_LINE {
            break;
        }
        text.push(c);
    }
}

/// `bytes` as text, invalid UTF-8 and control characters replaced.
fn clean(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// A fake BIRD for tests: answers each connection on a unix socket with a
/// script.
#[cfg(test)]
pub(crate) mod fake {
    use std::{
        path::PathBuf,
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
    };
    use tokio::{
        io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
        net::UnixListener,
    };

    /// What the fake does on each connection.
    #[derive(Clone)]
    pub(crate) enum Script {
        /// Sends the greeting, reads a command, sends `reply` (whole lines).
        Answer(&'static str),
        /// Sends these bytes at once, without waiting for a command, then
        /// closes its side of the connection (BIRD's reading side stays).
        Raw(Vec<u8>),
        /// Sends the greeting, reads a command, and never answers.
        Silent,
    }

    /// A running fake; the socket lives as long as `_dir`.
    pub(crate) struct Fake {
        /// The socket's path.
        pub(crate) socket: PathBuf,
        /// Commands received, in order.
        pub(crate) commands: Arc<parking_lot::Mutex<Vec<String>>>,
        /// Connections accepted.
        pub(crate) connections: Arc<AtomicUsize>,
        _dir: tempfile::TempDir,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for Fake {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    /// Starts a fake BIRD answering every connection with `script`.
    pub(crate) fn start(script: Script) -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("bird.ctl");
        let listener = UnixListener::bind(&socket).unwrap();
        let commands = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (c, n) = (Arc::clone(&commands), Arc::clone(&connections));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                n.fetch_add(1, Ordering::SeqCst);
                let (script, c) = (script.clone(), Arc::clone(&c));
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut read = BufReader::new(read);
                    let mut line = String::new();
                    match script {
                        Script::Raw(bytes) => {
                            let _ = write.write_all(&bytes).await;
                            let _ = write.shutdown().await;
                        }
                        Script::Answer(reply) => {
                            let _ = write.write_all(b"0001 BIRD 2.15.1 ready.\n").await;
                            if read.read_line(&mut line).await.is_ok() {
                                c.lock().push(line.trim_end().to_string());
                                let _ = write.write_all(reply.as_bytes()).await;
                            }
                        }
                        Script::Silent => {
                            let _ = write.write_all(b"0001 BIRD 2.15.1 ready.\n").await;
                            if read.read_line(&mut line).await.is_ok() {
                                c.lock().push(line.trim_end().to_string());
                            }
                            std::future::pending::<()>().await;
                        }
                    }
                    // Like BIRD, keep the connection until the client goes.
                    let mut rest = Vec::new();
                    let _ = tokio::io::AsyncReadExt::read_to_end(&mut read, &mut rest).await;
                });
            }
        });
        Fake {
            socket,
            commands,
            connections,
            _dir: dir,
            task,
        }
    }

    /// BIRD's answer to a `configure` that worked.
    pub(crate) const RECONFIGURED: &str =
        "0002-Reading configuration from /run/edge/bird.conf\n0003 Reconfigured\n";
}

#[cfg(test)]
mod tests {
    use super::fake::{RECONFIGURED, Script, start};
    use super::*;

    #[tokio::test]
    async fn a_configure_that_works() {
        let fake = start(Script::Answer(RECONFIGURED));
        assert_eq!(configure(&fake.socket).await.unwrap(), "Reconfigured");
        assert_eq!(*fake.commands.lock(), ["configure"]);
    }

    #[tokio::test]
    async fn in_progress_and_continuations_are_successes() {
        let fake = start(Script::Answer(
            "+0100 an asynchronous log line\n0002-Reading configuration\n from a file\n0004 Reconfiguration in progress\n",
        ));
        assert_eq!(
            configure(&fake.socket).await.unwrap(),
            "Reconfiguration in progress"
        );
    }

    #[tokio::test]
    async fn a_queued_reconfiguration_is_not_applied() {
        let fake = start(Script::Answer(
            "0002-Reading configuration from /run/edge/bird.conf\n0005 Reconfiguration already in progress, queueing new config\n",
        ));
        match configure(&fake.socket).await {
            Err(e @ BirdError::NotApplied { code: 5, .. }) => {
                assert_eq!(
                    e.to_string(),
                    "BIRD did not apply `configure` (0005): Reconfiguration already in progress, \
                     queueing new config"
                );
            }
            other => panic!("expected NotApplied 0005, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_ignored_reconfiguration_is_not_applied() {
        let fake = start(Script::Answer(
            "0002-Reading configuration from /run/edge/bird.conf\n0006 Reconfiguration ignored, shutting down\n",
        ));
        match configure(&fake.socket).await {
            Err(e @ BirdError::NotApplied { code: 6, .. }) => {
                assert!(
                    e.to_string()
                        .contains("(0006): Reconfiguration ignored, shutting down"),
                    "{e}"
                );
            }
            other => panic!("expected NotApplied 0006, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn another_success_code_is_not_applied() {
        // `0020 Configuration OK` answers `configure check`: the file was
        // read, not put in force.
        let fake = start(Script::Answer("0020 Configuration OK\n"));
        match configure(&fake.socket).await {
            Err(e @ BirdError::NotApplied { code: 20, .. }) => {
                assert!(e.to_string().contains("(0020): Configuration OK"), "{e}");
            }
            other => panic!("expected NotApplied 0020, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_syntax_error_is_refused_with_its_text() {
        let fake = start(Script::Answer(
            "0002-Reading configuration from /run/edge/bird.conf\n8002 /run/edge/bird.conf:3:5 syntax error\n",
        ));
        match configure(&fake.socket).await {
            Err(e @ BirdError::Refused { code: 8002, .. }) => {
                assert_eq!(
                    e.to_string(),
                    "BIRD refused `configure` (8002): /run/edge/bird.conf:3:5 syntax error"
                );
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn garbage_is_a_protocol_error() {
        let fake = start(Script::Raw(b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec()));
        let e = configure(&fake.socket).await.unwrap_err();
        assert!(matches!(e, BirdError::Protocol { .. }), "{e:?}");
        assert!(e.to_string().contains("HTTP/1.1 400"), "{e}");
    }

    #[tokio::test]
    async fn an_oversized_line_is_refused() {
        let mut bytes = b"0001 BIRD 2.15.1 ready.\n0002-".to_vec();
        bytes.extend(std::iter::repeat_n(b'a', 3 * MAX_LINE));
        let fake = start(Script::Raw(bytes));
        let e = configure(&fake.socket).await.unwrap_err();
        assert!(
            e.to_string().contains("a line longer than 4096 bytes"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn too_many_lines_are_refused() {
        let mut bytes = b"0001 BIRD 2.15.1 ready.\n".to_vec();
        for _ in 0..MAX_LINES {
            bytes.extend_from_slice(b"1000-a line of a table\n");
        }
        let fake = start(Script::Raw(bytes));
        let e = configure(&fake.socket).await.unwrap_err();
        assert!(e.to_string().contains("more than 256 lines"), "{e}");
    }

    #[tokio::test]
    async fn a_cut_reply_is_an_error() {
        let fake = start(Script::Raw(
            b"0001 BIRD 2.15.1 ready.\n0002-Reading".to_vec(),
        ));
        let e = configure(&fake.socket).await.unwrap_err();
        assert!(
            e.to_string()
                .contains("the connection closed in the middle of a reply"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_silent_bird_times_out() {
        let fake = start(Script::Silent);
        let e = command(&fake.socket, "configure", Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(e, BirdError::Timeout { .. }), "{e:?}");
        assert_eq!(*fake.commands.lock(), ["configure"]);
    }

    #[tokio::test]
    async fn a_missing_socket_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("bird.ctl");
        let e = configure(&socket).await.unwrap_err();
        assert!(matches!(e, BirdError::Connect { .. }), "{e:?}");
        assert!(e.to_string().contains("is BIRD running"), "{e}");
    }

    #[tokio::test]
    async fn a_multi_line_command_is_not_sent() {
        let fake = start(Script::Answer(RECONFIGURED));
        let e = command(&fake.socket, "configure\nshutdown", DEADLINE)
            .await
            .unwrap_err();
        assert!(matches!(e, BirdError::Protocol { .. }), "{e:?}");
        assert_eq!(
            fake.connections.load(std::sync::atomic::Ordering::SeqCst),
            0
        );
    }

    #[test]
    fn codes() {
        assert_eq!(parse_code(b"0003 Reconfigured"), Some((3, true)));
        assert_eq!(parse_code(b"0002-Reading"), Some((2, false)));
        assert_eq!(parse_code(b"8002 "), Some((8002, true)));
        assert_eq!(parse_code(b"0003"), None);
        assert_eq!(parse_code(b"00a3 x"), None);
        assert_eq!(parse_code(b"0003:x"), None);
    }

    #[test]
    fn kept_text_is_one_bounded_line() {
        let mut text = String::new();
        append(&mut text, b"first\x1b[31m");
        append(&mut text, b"second\xff");
        assert_eq!(text, "first?[31m; second\u{fffd}");
        let mut long = String::new();
        for _ in 0..10 {
            append(&mut long, &[b'x'; 1000]);
        }
        assert!(long.len() <= MAX_LINE);
    }
}
