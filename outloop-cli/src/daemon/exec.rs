//! The daemon's side of `outloop exec`: an exec session on one connection.
//!
//! `exec_start` runs `Broker::exec_start` for the peer's workspace (policy on
//! `exec:<credential>`, approval holds reported as `held` lines, the credentials, the
//! `started` audit record) and answers `exec_started` with the values, serialized through a
//! zeroizing buffer. The connection then waits for `exec_end` and writes the closing record
//! with `Broker::exec_finish` on the broker that started the session. When the connection
//! closes first the closing record says `client_gone`; when the daemon is told to stop
//! first it says `daemon_stopped` and the connection is closed (the daemon does not wait
//! for a command that may run for hours). Either way the daemon logs one line.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use outloop_core::broker::{Broker, ExecCredential, ExecExit, ExecRequest, ExecSession};
use outloop_core::redact::Findings;
use outloop_core::{Error, ErrorKind, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use super::protocol::{
    Body, ExecCanary, ExecEndExit, ExecEnded, ExecStarted, ExecVariable, ExecVariableSpec,
    MAX_REQUEST_BYTES, Op, Response, WireSecret, kind_from_str,
};
use super::server::{State, error_body, parse, with_held, write_frame};

/// What `exec_start` asked for.
pub(super) struct Start {
    pub credentials: Vec<ExecVariableSpec>,
    pub command: String,
    pub tenant: Option<String>,
}

/// Runs one exec session on the connection; returns whether the connection may serve
/// another request.
pub(super) async fn session(
    state: &State,
    reader: &mut BufReader<UnixStream>,
    start: Start,
    shutdown: &CancellationToken,
) -> bool {
    // The values come back in request order: one per requested credential.
    let names: Vec<String> = start.credentials.iter().map(|c| c.name.clone()).collect();
    state.in_flight.fetch_add(1, Ordering::Relaxed);
    let started = begin(state, reader, start).await;
    state.in_flight.fetch_sub(1, Ordering::Relaxed);
    state.requests.fetch_add(1, Ordering::Relaxed);
    let (broker, mut session) = match started {
        None => return false,
        Some(Err(e)) => return write_frame(reader.get_mut(), error_body(&e)).await.is_ok(),
        Some(Ok(s)) => s,
    };
    let label = format!("{} (request {})", session.tenant(), session.request_id());
    let variables = session.take_variables();
    let canaries = session.take_canaries();
    let sent = match started_frame(&broker, &session, variables, canaries, names) {
        Ok(frame) => reader.get_mut().write_all(&frame).await.is_ok(),
        Err(e) => {
            // Nothing was handed out: close the session as a failed start.
            let exit = ExecExit::Unknown {
                outcome: e.kind().as_str().into(),
                why: format!("the values could not be sent: {}", e.message()),
            };
            let _ = broker.exec_finish(session, exit, 0).await;
            return write_frame(reader.get_mut(), error_body(&e)).await.is_ok();
        }
    };
    if !sent {
        return gone(
            &broker,
            session,
            &label,
            "client_gone",
            "the outloop exec client went away before it received the values",
        )
        .await;
    }
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = {
            let mut limited = (&mut *reader).take(MAX_REQUEST_BYTES as u64 + 1);
            tokio::select! {
                biased;
                () = shutdown.cancelled() => None,
                r = limited.read_until(b'\n', &mut line) => Some(r),
            }
        };
        match read {
            None => {
                gone(
                    &broker,
                    session,
                    &label,
                    "daemon_stopped",
                    "the daemon stopped while the command ran; how it ended is not known",
                )
                .await;
                return false;
            }
            Some(Ok(0) | Err(_)) => {
                return gone(&broker, session, &label, "client_gone", CLIENT_GONE).await;
            }
            Some(Ok(_)) => {}
        }
        let answer = match parse(&line) {
            Ok(req) => match req.op {
                Op::ExecEnd {
                    exit,
                    redactions,
                    folded,
                    canaries,
                } => {
                    let id = session.request_id().to_owned();
                    let findings = Findings {
                        count: redactions,
                        folded,
                        canaries,
                    };
                    let body = match broker
                        .exec_finish_with(session, core_exit(exit), &findings)
                        .await
                    {
                        Ok(()) => Body::ExecEnded(ExecEnded { request_id: id }),
                        Err(e) => error_body(&e),
                    };
                    return write_frame(reader.get_mut(), body).await.is_ok();
                }
                _ => error_body(&Error::new(
                    ErrorKind::Usage,
                    "an exec session is open on this connection; send `exec_end` first",
                )),
            },
            Err(e) => error_body(&e),
        };
        if write_frame(reader.get_mut(), answer).await.is_err() {
            return gone(&broker, session, &label, "client_gone", CLIENT_GONE).await;
        }
    }
}

/// `Broker::exec_start` for the peer's workspace, held approvals forwarded as `held` lines.
/// `None` when the client went away while the request was held.
async fn begin(
    state: &State,
    reader: &mut BufReader<UnixStream>,
    start: Start,
) -> Option<Result<(Arc<Broker>, ExecSession)>> {
    let broker = state.current().await;
    // The peer's working directory, from the OS: a client cannot claim another workspace.
    let dir = match outloop_core::workspace::peer_dir(reader.get_ref()) {
        Ok(d) => d,
        Err(e) => return Some(Err(e)),
    };
    let request = ExecRequest {
        workspace: dir,
        tenant: start.tenant,
        credentials: start
            .credentials
            .into_iter()
            .map(|c| ExecCredential {
                name: c.name,
                variable: c.variable,
            })
            .collect(),
        command: start.command,
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let b = Arc::clone(&broker);
    let fut = with_held(tx, async move { b.exec_start(request).await });
    tokio::pin!(fut);
    let result = loop {
        tokio::select! {
            r = &mut fut => break r,
            Some(a) = rx.recv() => {
                if write_frame(reader.get_mut(), Body::Held(a)).await.is_err() {
                    // The client is gone; the held request still ends and is audited. If it
                    // was approved, nobody can run the command: close it at once.
                    if let Ok(s) = (&mut fut).await {
                        let label = format!("{} (request {})", s.tenant(), s.request_id());
                        gone(&broker, s, &label, "client_gone", "the outloop exec client went away while the request was held").await;
                    }
                    return None;
                }
            }
        }
    };
    Some(result.map(|s| (broker, s)))
}

/// Why a session whose client's connection closed before `exec_end` is recorded as
/// `client_gone`.
const CLIENT_GONE: &str =
    "the outloop exec client went away before reporting how the command ended";

/// The `exec_started` line, built in a zeroizing buffer large enough not to reallocate.
fn started_frame(
    broker: &Broker,
    session: &ExecSession,
    variables: Vec<(String, outloop_core::SecretValue)>,
    canaries: Vec<(String, outloop_core::SecretValue)>,
    names: Vec<String>,
) -> Result<Zeroizing<Vec<u8>>> {
    if names.len() != variables.len() {
        return Err(Error::internal(
            "the exec values do not match the requested credentials",
        ));
    }
    let mut estimate = 512 + session.request_id().len() + session.tenant().len();
    for (var, value) in &variables {
        estimate += 2 * var.len() + 128 + base64::encoded_len(value.len(), true).unwrap_or(0);
    }
    for (tenant, value) in &canaries {
        estimate += 2 * tenant.len() + 64 + base64::encoded_len(value.len(), true).unwrap_or(0);
    }
    estimate += names.iter().map(|n| 2 * n.len()).sum::<usize>();
    let started = ExecStarted {
        request_id: session.request_id().to_owned(),
        tenant: session.tenant().to_owned(),
        floor: broker.config().redaction.floor,
        variables: variables
            .into_iter()
            .zip(names)
            .map(|((variable, value), credential)| ExecVariable {
                variable,
                credential,
                value: WireSecret(value),
            })
            .collect(),
        canaries: canaries
            .into_iter()
            .map(|(tenant, value)| ExecCanary {
                tenant,
                value: WireSecret(value),
            })
            .collect(),
    };
    let mut buf = Zeroizing::new(Vec::with_capacity(estimate));
    serde_json::to_writer(&mut *buf, &Response::new(Body::ExecStarted(started)))
        .map_err(|e| Error::internal(format!("cannot encode the exec values: {e}")))?;
    buf.push(b'\n');
    Ok(buf)
}

/// Closes a session whose end is not known; logs one line. Returns false (the connection
/// is done).
async fn gone(
    broker: &Broker,
    session: ExecSession,
    label: &str,
    outcome: &str,
    why: &str,
) -> bool {
    let exit = ExecExit::Unknown {
        outcome: outcome.into(),
        why: why.into(),
    };
    // Logged once the record is on disk.
    match broker.exec_finish(session, exit, 0).await {
        Ok(()) => errln!("outloop serve: exec for tenant {label}: {why}; recorded as {outcome}"),
        Err(e) => errln!(
            "outloop serve: exec for tenant {label}: {why}; cannot write the closing record: {}",
            e.message()
        ),
    }
    false
}

/// The core exit for a wire one.
fn core_exit(exit: ExecEndExit) -> ExecExit {
    match exit {
        ExecEndExit::Exited(c) => ExecExit::Exited(c),
        ExecEndExit::Signaled(s) => ExecExit::Signaled(s),
        ExecEndExit::NotStarted { kind, message } => {
            ExecExit::NotStarted(kind_from_str(&kind, None), message)
        }
    }
}
