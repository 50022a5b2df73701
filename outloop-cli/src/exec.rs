//! `outloop exec`: runs a command with credentials as environment variables and redacts its
//! output while it streams.
//!
//! The broker decides and hands out the values (`Broker::exec_start`): the daemon's when one
//! answers (see [`crate::daemon::exec_client`]: it also writes both audit records), else an
//! in-process one. This module builds
//! the child's environment from scratch (the minimal base of [`outloop_core::exec`], the
//! `--env` names, one variable per credential), starts the command directly from its argv
//! (never through a shell), and copies its stdout and stderr through one streaming redactor
//! each, releasing every byte that cannot begin a secret at once. With `--pty` the command
//! runs on a pseudo-terminal instead (stdout and stderr merged, as on a terminal), with stdin
//! forwarded and the window size passed on. The exit code is the command's, or 128 + N when
//! signal N ended it.
//!
//! The child holds the secret: it can print it transformed beyond redaction's reach or send
//! it anywhere. Exec is weaker than HTTP injection and the README says so.

use std::ffi::{OsStr, OsString};
use std::io::{IsTerminal, Read as _};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::task::{Context, Poll, ready};

use clap::Args;
use outloop_core::broker::{ExecCredential, ExecExit, ExecRequest};
use outloop_core::config::Paths;
use outloop_core::redact::{Findings, RedactReader, SecretRedactor};
use outloop_core::{Error, ErrorKind, Result, SecretValue};
use rustix::process::{Pid, Signal};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinHandle;

/// `outloop exec [--credential NAME[=VAR]]… [--env NAME]… [--pty] -- cmd [args…]`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// A credential for the command: `NAME` puts it in the variable NAME upper-cased (other
    /// characters as `_`), `NAME=VAR` in VAR. Repeatable; at least one. Policy decides on
    /// `exec:NAME` for each.
    #[arg(long = "credential", value_name = "NAME[=VAR]", required = true)]
    pub credentials: Vec<String>,
    /// Also pass this variable from outloop's own environment (repeatable). Loader,
    /// interpreter and shell variables and backend tokens are refused.
    #[arg(long = "env", value_name = "NAME")]
    pub env: Vec<String>,
    /// Run the command on a pseudo-terminal (colours, prompts, full-screen programs); its
    /// stdout and stderr both arrive on stdout, redacted.
    #[arg(long)]
    pub pty: bool,
    /// The tenant the caller expects; a tenant other than the workspace's is denied.
    #[arg(long)]
    pub tenant: Option<String>,
    /// The command and its arguments, after `--`. Run directly, not through a shell.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// How many bytes are read from the child at a time.
const CHUNK: usize = 8 * 1024;

/// The window size used when outloop's own stdout and stdin are not terminals.
const DEFAULT_SIZE: (u16, u16) = (24, 80);

/// Runs `outloop exec`; returns the command's exit code (see the module docs).
///
/// # Errors
///
/// [`ErrorKind::Usage`] for a malformed or refused `--credential`/`--env`; the broker's
/// errors from [`Broker::exec_start`] (denied, unbound, backend); [`ErrorKind::Audit`] when
/// the closing audit record cannot be written. A command that cannot be started is not an
/// error: it is audited and reported with exit code 127 (not found) or 126.
///
/// [`Broker::exec_start`]: outloop_core::broker::Broker::exec_start
pub async fn run(paths: &Paths, args: ExecArgs) -> Result<u8> {
    // Everything about the request is checked before the broker is built.
    let credentials = args
        .credentials
        .iter()
        .map(|s| ExecCredential::parse(s))
        .collect::<Result<Vec<_>>>()?;
    let base = outloop_core::exec::base_environment(std::env::vars_os(), &args.env)?;
    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| Error::new(ErrorKind::Usage, "give the command after `--`"))?;
    let workspace = std::env::current_dir().map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("cannot read the current directory: {e}"),
        )
    })?;

    let command = program.to_string_lossy().into_owned();

    // Through the daemon when one runs: it decides, hands out the values and audits; this
    // process runs the command and redacts its output.
    if let Some(mut remote) = crate::daemon::exec_client::ExecRemote::connect(paths).await {
        let granted = remote
            .start(
                &credentials,
                &command,
                args.tenant,
                crate::daemon::client::print_held,
            )
            .await?;
        let child = Child {
            program,
            args: rest,
            base: &base,
            variables: &granted.variables,
        };
        let (exit, findings) = run_child(&child, &granted.redactor, args.pty).await;
        drop(granted);
        match remote.finish(&exit, &findings).await {
            Ok(()) => {}
            // The daemon recorded the end itself (`client_gone` or `daemon_stopped`).
            Err(e) if e.kind() == ErrorKind::Unavailable => errln!(
                "outloop: warning: {}; the daemon's audit record of this command's end may say `daemon_stopped`",
                e.message()
            ),
            Err(e) => return Err(e),
        }
        return Ok(report(&exit, program));
    }

    let broker = crate::commands::broker(paths)?;
    let mut session = broker
        .exec_start(ExecRequest {
            workspace,
            tenant: args.tenant,
            credentials,
            command,
        })
        .await?;
    let variables = session.take_variables();
    let redactor = session.redactor().clone();
    let child = Child {
        program,
        args: rest,
        base: &base,
        variables: &variables,
    };
    let (exit, findings) = run_child(&child, &redactor, args.pty).await;
    drop(variables);
    broker
        .exec_finish_with(session, exit.clone(), &findings)
        .await?;
    Ok(report(&exit, program))
}

/// Runs the command on a pty or with pipes; returns how it ended and what redaction found
/// in its output (replacements, case-folded hits, canaries seen).
async fn run_child(
    child: &Child<'_>,
    redactor: &SecretRedactor,
    pty: bool,
) -> (ExecExit, Findings) {
    if pty {
        run_pty(child, redactor).await
    } else {
        run_pipes(child, redactor).await
    }
}

/// Says why a command could not be started; returns the exit code.
fn report(exit: &ExecExit, program: &OsStr) -> u8 {
    if let ExecExit::NotStarted(_, message) = exit {
        errln!(
            "outloop: cannot run `{}`: {message}",
            program.to_string_lossy()
        );
    }
    u8::try_from(exit.code()).unwrap_or(1)
}

/// What to start: argv and the environment (base entries, then the credentials).
struct Child<'a> {
    program: &'a OsStr,
    args: &'a [OsString],
    base: &'a [(OsString, OsString)],
    variables: &'a [(String, SecretValue)],
}

impl Child<'_> {
    /// A command with a cleared environment holding only the base and the credentials.
    /// `Command` keeps its own copy of each value until it is dropped, right after spawning.
    fn command(&self) -> std::result::Result<tokio::process::Command, ExecExit> {
        let mut cmd = tokio::process::Command::new(self.program);
        cmd.args(self.args).env_clear();
        for (k, v) in self.base {
            cmd.env(k, v);
        }
        for (name, value) in self.variables {
            if value.expose_secret().contains(&0) {
                return Err(ExecExit::NotStarted(
                    ErrorKind::InvalidSecret,
                    format!(
                        "the value for `{name}` holds a NUL byte, which an environment variable cannot"
                    ),
                ));
            }
            cmd.env(name, OsStr::from_bytes(value.expose_secret()));
        }
        Ok(cmd)
    }
}

fn not_started(e: &std::io::Error) -> ExecExit {
    // std's spawn errors name the OS error only, never the environment.
    let kind = if e.kind() == std::io::ErrorKind::NotFound {
        ErrorKind::NotFound
    } else {
        ErrorKind::Io
    };
    ExecExit::NotStarted(kind, e.to_string())
}

fn exit_of(status: std::io::Result<ExitStatus>) -> ExecExit {
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(c), _) => ExecExit::Exited(c),
            (None, Some(sig)) => ExecExit::Signaled(sig),
            (None, None) => ExecExit::Exited(1),
        },
        Err(e) => ExecExit::NotStarted(ErrorKind::Io, format!("waiting for the command: {e}")),
    }
}

/// Pipe mode: stdin inherited, stdout and stderr each through their own redacting stream.
async fn run_pipes(child: &Child<'_>, redactor: &SecretRedactor) -> (ExecExit, Findings) {
    let mut cmd = match child.command() {
        Ok(c) => c,
        Err(exit) => return (exit, Findings::default()),
    };
    cmd.stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // The child shares our process group, so a terminal's Ctrl-C and Ctrl-\ reach it
    // directly; outloop only outlives them. TERM and HUP sent to outloop are passed on.
    let mut forward = Forwarder::new(&[SignalKind::terminate(), SignalKind::hangup()]);
    forward.ignore(&[SignalKind::interrupt(), SignalKind::quit()]);
    let spawned = cmd.spawn();
    drop(cmd);
    let mut proc = match spawned {
        Ok(p) => p,
        Err(e) => return (not_started(&e), Findings::default()),
    };
    forward.start(proc.id());
    let (Some(out), Some(err)) = (proc.stdout.take(), proc.stderr.take()) else {
        return (
            exit_of(proc.wait().await),
            Findings::default(), // unreachable: both were configured as pipes
        );
    };
    let (status, n_out, n_err) = tokio::join!(
        proc.wait(),
        pump(RedactReader::new(redactor, out), tokio::io::stdout()),
        pump(RedactReader::new(redactor, err), tokio::io::stderr()),
    );
    forward.stop();
    (exit_of(status), merge(n_out, n_err))
}

/// Copies a redacting reader to `out`, writing and flushing each released chunk at once.
/// Stops at end of input, or when `out` fails (the child then sees a closed pipe). Returns
/// what the redactor found.
async fn pump<R: AsyncRead + Unpin>(
    mut reader: RedactReader<R>,
    mut out: impl AsyncWrite + Unpin,
) -> Findings {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if out.write_all(&buf[..n]).await.is_err() || out.flush().await.is_err() {
                    break;
                }
            }
        }
    }
    reader.findings()
}

/// The findings of stdout and stderr together: counts added, canary tenants united.
fn merge(a: Findings, b: Findings) -> Findings {
    let mut canaries = a.canaries;
    for t in b.canaries {
        if !canaries.contains(&t) {
            canaries.push(t);
        }
    }
    Findings {
        count: a.count + b.count,
        folded: a.folded + b.folded,
        canaries,
    }
}

/// Passes signals outloop receives on to the child, and keeps others from ending outloop.
struct Forwarder {
    streams: Vec<(tokio::signal::unix::Signal, Option<Signal>)>,
    tasks: Vec<JoinHandle<()>>,
}

impl Forwarder {
    /// Registers handlers for `kinds` (before the child starts, so none is missed).
    fn new(kinds: &[SignalKind]) -> Self {
        let mut f = Self {
            streams: Vec::new(),
            tasks: Vec::new(),
        };
        for k in kinds {
            if let (Ok(s), Some(sig)) = (signal(*k), to_rustix(*k)) {
                f.streams.push((s, Some(sig)));
            }
        }
        f
    }

    /// Registers handlers that swallow `kinds`.
    fn ignore(&mut self, kinds: &[SignalKind]) {
        for k in kinds {
            if let Ok(s) = signal(*k) {
                self.streams.push((s, None));
            }
        }
    }

    /// Starts forwarding to the process `pid`.
    fn start(&mut self, pid: Option<u32>) {
        let pid = pid
            .and_then(|p| i32::try_from(p).ok())
            .and_then(Pid::from_raw);
        for (mut stream, sig) in self.streams.drain(..) {
            self.tasks.push(tokio::spawn(async move {
                while stream.recv().await.is_some() {
                    if let (Some(pid), Some(sig)) = (pid, sig) {
                        // The child may have exited already; nothing to do then.
                        let _ = rustix::process::kill_process(pid, sig);
                    }
                }
            }));
        }
    }

    fn stop(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

fn to_rustix(kind: SignalKind) -> Option<Signal> {
    [
        (SignalKind::terminate(), Signal::TERM),
        (SignalKind::hangup(), Signal::HUP),
        (SignalKind::interrupt(), Signal::INT),
        (SignalKind::quit(), Signal::QUIT),
    ]
    .into_iter()
    .find(|(k, _)| *k == kind)
    .map(|(_, s)| s)
}

/// Reads from a pty, treating `EIO` (what Linux returns once every slave side is closed) as
/// end of file, so the redactor's held tail is released at the end instead of lost.
struct PtyReader<R>(R);

impl<R: AsyncRead + Unpin> AsyncRead for PtyReader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match ready!(Pin::new(&mut self.0).poll_read(cx, buf)) {
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) => {
                Poll::Ready(Ok(()))
            }
            other => Poll::Ready(other),
        }
    }
}

/// Puts outloop's terminal (stdin) into raw mode while the guard lives, so keys (Ctrl-C
/// included) go to the child's pty as bytes and its line discipline handles them.
struct RawMode(Option<rustix::termios::Termios>);

impl RawMode {
    fn enable() -> Self {
        let stdin = std::io::stdin();
        let Ok(saved) = rustix::termios::tcgetattr(&stdin) else {
            return Self(None);
        };
        let mut raw = saved.clone();
        raw.make_raw();
        match rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw) {
            Ok(()) => Self(Some(saved)),
            Err(_) => Self(None),
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = rustix::termios::tcsetattr(
                std::io::stdin(),
                rustix::termios::OptionalActions::Now,
                saved,
            );
        }
    }
}

/// The size of outloop's terminal (stdout, else stdin), if either is one.
fn window_size() -> Option<pty_process::Size> {
    let ws = rustix::termios::tcgetwinsize(std::io::stdout())
        .or_else(|_| rustix::termios::tcgetwinsize(std::io::stdin()))
        .ok()?;
    (ws.ws_row > 0 && ws.ws_col > 0).then(|| pty_process::Size::new(ws.ws_row, ws.ws_col))
}

/// Reads outloop's stdin on a thread of its own (a blocking read cannot be cancelled, and
/// must not keep the runtime from shutting down) and sends the chunks on.
fn stdin_chunks() -> tokio::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = vec![0u8; CHUNK];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}

/// PTY mode: the child on a new pseudo-terminal as its controlling terminal; its output
/// through one redacting stream to stdout; stdin forwarded; window size changes passed on.
async fn run_pty(child: &Child<'_>, redactor: &SecretRedactor) -> (ExecExit, Findings) {
    let cmd = match child.command() {
        Ok(c) => c,
        Err(exit) => return (exit, Findings::default()),
    };
    let (pty, pts) = match pty_process::open() {
        Ok(p) => p,
        Err(e) => {
            return (
                ExecExit::NotStarted(ErrorKind::Io, format!("cannot open a pty: {e}")),
                Findings::default(),
            );
        }
    };
    let interactive = std::io::stdin().is_terminal();
    let size =
        window_size().unwrap_or_else(|| pty_process::Size::new(DEFAULT_SIZE.0, DEFAULT_SIZE.1));
    let _ = pty.resize(size);
    // The child is the leader of a new session on the pty, so signals sent to outloop do
    // not reach it by themselves: pass them all on.
    let mut forward = Forwarder::new(&[
        SignalKind::terminate(),
        SignalKind::hangup(),
        SignalKind::interrupt(),
        SignalKind::quit(),
    ]);
    let winch = signal(SignalKind::window_change()).ok();
    let spawned = pty_process::Command::from(cmd).spawn(pts);
    let mut proc = match spawned {
        Ok(p) => p,
        Err(e) => {
            let exit = match e {
                pty_process::Error::Io(io) => not_started(&io),
                other => ExecExit::NotStarted(ErrorKind::Io, other.to_string()),
            };
            return (exit, Findings::default());
        }
    };
    forward.start(proc.id());
    let raw = interactive.then(RawMode::enable);
    let (read_half, mut write_half) = pty.into_split();

    // stdin → pty, and window size changes → pty.
    let mut input = stdin_chunks();
    let feeder = tokio::spawn(async move {
        let mut winch = winch;
        let mut open = true;
        let mut last = b'\n';
        loop {
            tokio::select! {
                chunk = input.recv(), if open => match chunk {
                    Some(c) => {
                        last = c.last().copied().unwrap_or(last);
                        if write_half.write_all(&c).await.is_err() {
                            open = false;
                        }
                    }
                    None => {
                        open = false;
                        if !interactive {
                            // End of piped input: VEOF (Ctrl-D) ends a read on the pty; a
                            // partial line needs one to flush it and one more for EOF.
                            let eof: &[u8] = if last == b'\n' { b"\x04" } else { b"\x04\x04" };
                            let _ = write_half.write_all(eof).await;
                        }
                    }
                },
                Some(()) = async {
                    match winch.as_mut() {
                        Some(w) => w.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    if let Some(size) = window_size() {
                        let _ = write_half.resize(size);
                    }
                }
                else => break,
            }
        }
    });

    let (status, findings) = tokio::join!(
        proc.wait(),
        pump(
            RedactReader::new(redactor, PtyReader(read_half)),
            tokio::io::stdout()
        ),
    );
    feeder.abort();
    drop(raw);
    forward.stop();
    (exit_of(status), findings)
}
