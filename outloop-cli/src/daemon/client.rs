//! The daemon's client, and the commands' choice between the daemon and the in-process
//! broker.
//!
//! [`call`], [`actions`] and [`explain`] send the request to the daemon when one answers on
//! the socket, and otherwise (no socket, a stale one, or `OUTLOOP_NO_DAEMON=1`) run the
//! broker in this process. Both paths return the same types, so the commands print the same
//! output and exit with the same codes. Once a daemon has accepted a request its answer is
//! final: a request is never retried in-process, since it may already have run.

use std::path::{Path, PathBuf};

use outloop_core::action::RawParams;
use outloop_core::approval::Approval;
use outloop_core::broker::CallRequest;
use outloop_core::config::Paths;
use outloop_core::{Error, ErrorKind, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::protocol::{
    ActionEntry, ActionsOutput, Body, CallOutput, ExplainOutput, MAX_RESPONSE_BYTES, Op, Request,
    Response, StatusOutput, VERSION,
};

/// One connection to the daemon; requests go one after another.
#[derive(Debug)]
pub struct Client {
    stream: BufReader<UnixStream>,
}

impl Client {
    /// Connects to the daemon serving `paths`, when one answers. `None` when
    /// `OUTLOOP_NO_DAEMON=1`, when there is no socket, or when nothing listens on it (a
    /// stale socket left by a killed daemon).
    pub async fn connect(paths: &Paths) -> Option<Client> {
        if super::disabled() {
            return None;
        }
        Self::connect_to(&super::socket_path(paths)).await.ok()
    }

    /// Connects to the daemon socket at `socket`.
    ///
    /// # Errors
    ///
    /// The `connect(2)` error: not found, connection refused (stale socket), permission
    /// denied.
    pub async fn connect_to(socket: &Path) -> std::io::Result<Client> {
        Ok(Client {
            stream: BufReader::new(UnixStream::connect(socket).await?),
        })
    }

    /// Sends one request and reads its answer: `held` lines go to `on_held`, the final line
    /// is returned.
    ///
    /// # Errors
    ///
    /// The daemon's error with its kind (so the exit code is the one the in-process broker
    /// gives); [`ErrorKind::Unavailable`] when the connection breaks before the answer;
    /// [`ErrorKind::Internal`] for a line that is not a version-1 response.
    pub async fn request(&mut self, op: Op, mut on_held: impl FnMut(&Approval)) -> Result<Body> {
        let broken = |what: &str, e: &dyn std::fmt::Display| {
            Error::new(
                ErrorKind::Unavailable,
                format!(
                    "the outloop daemon connection broke while {what} ({e}); the request may or may not have run (see `outloop audit tail`)"
                ),
            )
        };
        let mut line = serde_json::to_vec(&Request::new(op))
            .map_err(|e| Error::internal(format!("cannot encode the request: {e}")))?;
        line.push(b'\n');
        // A daemon that refuses the peer answers and closes at once, so the write may fail
        // with the refusal already waiting to be read: read it before reporting the write.
        let sent = self.stream.get_mut().write_all(&line).await;
        loop {
            line.clear();
            let n = (&mut self.stream)
                .take(MAX_RESPONSE_BYTES as u64 + 1)
                .read_until(b'\n', &mut line)
                .await
                .map_err(|e| broken("reading the answer", &e))?;
            if n == 0 || !line.ends_with(b"\n") {
                if let Err(e) = &sent {
                    return Err(broken("sending", e));
                }
                return Err(broken(
                    "reading the answer",
                    &"closed before a complete answer",
                ));
            }
            let resp: Response = serde_json::from_slice(&line).map_err(|e| {
                Error::internal(format!(
                    "the outloop daemon sent a line that is not a response: {e}"
                ))
            })?;
            if resp.v != VERSION {
                return Err(Error::internal(format!(
                    "the outloop daemon speaks protocol {}, this client {VERSION}; restart the daemon",
                    resp.v
                )));
            }
            match resp.body {
                Body::Held(a) => on_held(&a),
                Body::Error(e) => return Err(older_daemon(e.into())),
                other => return Ok(other),
            }
        }
    }
}

/// A daemon built before an operation existed refuses it as an unknown variant; say so
/// plainly instead of passing serde's message on.
pub(crate) fn older_daemon(e: Error) -> Error {
    if e.kind() == ErrorKind::Usage
        && e.message()
            .starts_with("not a protocol request: unknown variant")
    {
        return Error::new(
            ErrorKind::Usage,
            format!(
                "the running outloop daemon is older than this outloop and does not know this request ({}); restart it (stop it with SIGTERM, then `outloop serve`)",
                e.message()
            ),
        );
    }
    e
}

fn unexpected(op: &str, body: &Body) -> Error {
    let name = match body {
        Body::Held(_) => "held",
        Body::Call(_) => "call",
        Body::Actions(_) => "actions",
        Body::Explain(_) => "explain",
        Body::Status(_) => "status",
        Body::Reloaded(_) => "reloaded",
        Body::ExecStarted(_) => "exec_started",
        Body::ExecEnded(_) => "exec_ended",
        Body::Error(_) => "error",
    };
    Error::internal(format!("the outloop daemon answered `{name}` to `{op}`"))
}

fn cwd() -> Result<PathBuf> {
    std::env::current_dir().map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("cannot read the current directory: {e}"),
        )
    })
}

/// Prints the hold line `outloop call` prints in-process (see `commands::broker`).
pub(crate) fn print_held(a: &Approval) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    errln!(
        "outloop: held for a human's approval as {}; run `outloop approve {}` (or reject) from outside the workspace; waiting until {} s from now",
        a.id,
        a.id,
        a.expires - now
    );
}

/// Performs an action for this process's working directory, through the daemon when one runs.
///
/// # Errors
///
/// As `Broker::call`, whichever side runs it.
pub async fn call(
    paths: &Paths,
    action: String,
    params: RawParams,
    tenant: Option<String>,
) -> Result<CallOutput> {
    if let Some(mut c) = Client::connect(paths).await {
        let op = Op::Call {
            action,
            params: params.into_iter().collect(),
            tenant,
        };
        return match c.request(op, print_held).await? {
            Body::Call(r) => Ok(r),
            other => Err(unexpected("call", &other)),
        };
    }
    let broker = crate::commands::broker(paths)?;
    let r = broker
        .call(CallRequest {
            workspace: cwd()?,
            tenant,
            action,
            params,
        })
        .await?;
    Ok(r.into())
}

/// The actions and aliases this process's workspace may use, through the daemon when one
/// runs.
///
/// # Errors
///
/// As `Broker::actions_for`.
pub async fn actions(paths: &Paths) -> Result<ActionsOutput> {
    if let Some(mut c) = Client::connect(paths).await {
        return match c.request(Op::Actions, |_| {}).await? {
            Body::Actions(a) => Ok(a),
            other => Err(unexpected("actions", &other)),
        };
    }
    let broker = crate::commands::broker(paths)?;
    let (ws, list) = broker.actions_for(&cwd()?)?;
    Ok(ActionsOutput {
        workspace: ws.root,
        tenant: ws.tenant,
        actions: ActionEntry::all_from(list, broker.config()),
    })
}

/// Explains the decision for `action` from `workspace` (canonical) or this process's working
/// directory, through the daemon when one runs.
///
/// # Errors
///
/// As `Broker::explain_request`.
pub async fn explain(
    paths: &Paths,
    action: String,
    params: RawParams,
    workspace: Option<PathBuf>,
    alias_request: Option<(String, String)>,
) -> Result<ExplainOutput> {
    if let Some(mut c) = Client::connect(paths).await {
        let (method, path) = alias_request.unzip();
        let op = Op::Explain {
            action,
            params: params.into_iter().collect(),
            workspace,
            method,
            path,
        };
        return match c.request(op, |_| {}).await? {
            Body::Explain(e) => Ok(e),
            other => Err(unexpected("explain", &other)),
        };
    }
    let broker = crate::commands::broker(paths)?;
    let dir = match workspace {
        Some(w) => w,
        None => cwd()?,
    };
    let alias = alias_request
        .as_ref()
        .map(|(m, p)| (m.as_str(), p.as_str()));
    Ok(broker
        .explain_request(&dir, &action, &params, alias)?
        .into())
}

/// Asks a running daemon to reload the host config after a command edited it (or the vault),
/// so the daemon's answers match the files. Silent when no daemon runs; a refused reload
/// prints one warning line (the daemon keeps its previous config).
pub async fn reload_after_edit(paths: &Paths) {
    let Some(mut c) = Client::connect(paths).await else {
        return;
    };
    if let Err(e) = c.request(Op::Reload, |_| {}).await {
        errln!(
            "outloop: warning: the running daemon kept its previous config: {}",
            e.message()
        );
    }
}

/// The daemon's status, when one answers on the socket (whatever `OUTLOOP_NO_DAEMON` says).
///
/// # Errors
///
/// The daemon's error (e.g. [`ErrorKind::PermissionDenied`] when it serves another uid).
pub async fn query_status(paths: &Paths) -> Result<Option<StatusOutput>> {
    let Ok(mut c) = Client::connect_to(&super::socket_path(paths)).await else {
        return Ok(None);
    };
    match c.request(Op::Status, |_| {}).await? {
        Body::Status(s) => Ok(Some(s)),
        other => Err(unexpected("status", &other)),
    }
}

/// The exit code of `outloop status` when no daemon runs: 3, the LSB convention for
/// "program is not running".
pub const NOT_RUNNING: u8 = 3;

/// `outloop status [--json]`: prints whether the daemon runs and its state; returns 0 when it
/// runs and [`NOT_RUNNING`] when it does not.
///
/// # Errors
///
/// As [`query_status`].
pub async fn status(paths: &Paths, json: bool) -> Result<u8> {
    let socket = super::socket_path(paths);
    match query_status(paths).await? {
        Some(s) => {
            if json {
                let mut v = serde_json::to_value(&s)
                    .map_err(|e| Error::internal(format!("cannot encode the status: {e}")))?;
                v["running"] = serde_json::Value::Bool(true);
                outln!("{v}");
            } else {
                outln!("outloop daemon: running");
                outln!("pid:      {}", s.pid);
                outln!("socket:   {}", s.socket.display());
                outln!("config:   {}", s.config.display());
                outln!("version:  {} (protocol {})", s.version, s.protocol);
                outln!("uptime:   {} s", s.uptime_secs);
                outln!("requests: {} ({} in flight)", s.requests, s.in_flight);
                outln!("reloads:  {}", s.reloads);
            }
            Ok(0)
        }
        None => {
            if json {
                outln!(
                    "{}",
                    serde_json::json!({ "running": false, "socket": socket })
                );
            } else {
                outln!(
                    "outloop daemon: not running (no daemon answers on {}); commands run the broker in-process",
                    socket.display()
                );
            }
            Ok(NOT_RUNNING)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operation_an_older_daemon_does_not_know_says_so() {
        // What a daemon built before `exec_start` answers: its parse of an unknown op.
        let refused = super::super::server::parse(br#"{"v":1,"op":"exec_start_v9"}"#)
            .expect_err("an unknown op is refused");
        let e = older_daemon(refused);
        assert_eq!(e.kind(), ErrorKind::Usage);
        assert!(
            e.message()
                .starts_with("the running outloop daemon is older than this outloop"),
            "{}",
            e.message()
        );
        // Other errors pass unchanged.
        let other = Error::new(ErrorKind::Usage, "variable `X` is given twice");
        assert_eq!(older_daemon(other).message(), "variable `X` is given twice");
    }
}
