//! `outloop serve`: the per-user daemon.
//!
//! It hardens the process (no core dumps, not dumpable), builds the broker from the host
//! config (a bad config refuses to start), takes the runtime directory's lock file so only one
//! daemon serves a socket, replaces a stale socket file, listens, and prints one readiness
//! line on stderr: `outloop serve: ready on <socket> (pid <pid>, config <file>)`.
//!
//! Signals: SIGHUP reloads the host config into a new broker that later requests use, while
//! requests in flight finish on the old one; a bad config is logged (one line) and the old
//! broker kept. SIGTERM or SIGINT stops accepting, removes the socket, lets every request in
//! flight finish and its audit record reach the disk, then exits 0; a second signal during
//! the drain exits 1 at once. An `outloop exec` session whose command still runs is not
//! waited for: its closing record says `daemon_stopped` (see `daemon::exec`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;
use outloop_core::approval::Approval;
use outloop_core::broker::{AliasRequest, Broker, CallRequest};
use outloop_core::config::{HostConfig, Paths};
use outloop_core::{Error, ErrorKind, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::protocol::{
    ActionEntry, ActionsOutput, Body, CallOutput, ExplainOutput, MAX_REQUEST_BYTES, Op,
    ReloadOutput, Request, Response, StatusOutput, VERSION, WireError,
};
use super::{LOCK_NAME, SOCKET_NAME, check_peer_uid, ensure_private_dir, own_uid, run_dir};

tokio::task_local! {
    /// Where the broker's on-hold callback sends a held approval: the connection whose
    /// request is being answered forwards it to its client as a `held` line.
    static HELD: mpsc::UnboundedSender<Approval>;
}

/// How often the daemon looks at the whole config for changes (requests re-stat the known
/// files themselves).
const CONFIG_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// The daemon's shared state.
pub struct State {
    /// The broker every request uses, swapped whole on reload. Load it per request
    /// (`broker.load_full()`) so a reload applies to the next request and never to one in
    /// flight.
    pub broker: Arc<ArcSwap<Broker>>,
    paths: Paths,
    socket: PathBuf,
    started: Instant,
    pub(super) requests: AtomicU64,
    pub(super) in_flight: AtomicU64,
    reloads: AtomicU64,
    /// The config files as they were when the current broker was built (or a reload of
    /// them was refused).
    stamps: std::sync::Mutex<Vec<crate::config_watch::Stamp>>,
    /// Serializes reloads.
    reloading: tokio::sync::Mutex<()>,
}

/// Builds the daemon's broker from the host config; a held request is reported to the
/// client that made it (and logged without its parameters).
///
/// # Errors
///
/// As `HostConfig::load`, `outloop_backends::from_config` and `BrokerBuilder::build`:
/// [`ErrorKind::Config`] with `file:line: key: problem` for a bad config.
pub fn build_broker(paths: &Paths) -> Result<Broker> {
    let cfg = HostConfig::load(paths)?;
    let backends = outloop_backends::from_config(&cfg)?;
    Broker::builder(cfg)
        .backends(backends)
        .on_hold(Arc::new(|a: &Approval| {
            errln!(
                "outloop serve: held {} for tenant `{}` as {}",
                a.action,
                a.tenant,
                a.id
            );
            let _ = HELD.try_with(|tx| {
                // A gone client only means nobody is told; the request still waits.
                let _ = tx.send(a.clone());
            });
        }))
        .build()
}

/// Runs `fut` with held approvals reported on `tx` (see [`build_broker`]).
pub(super) async fn with_held<F: std::future::Future>(
    tx: mpsc::UnboundedSender<Approval>,
    fut: F,
) -> F::Output {
    HELD.scope(tx, fut).await
}

impl State {
    fn status(&self) -> StatusOutput {
        StatusOutput {
            pid: std::process::id(),
            socket: self.socket.clone(),
            config: self.paths.config_file(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            protocol: VERSION,
            uptime_secs: self.started.elapsed().as_secs(),
            requests: self.requests.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            reloads: self.reloads.load(Ordering::Relaxed),
        }
    }

    /// The broker for the next request. When a config file changed since the current broker
    /// was built (a re-stat of each, microseconds), reloads first, so an edit by hand (a
    /// revoked permission, say) applies to the very next request.
    pub(super) async fn current(&self) -> Arc<Broker> {
        if self.config_changed() {
            let _one = self.reloading.lock().await;
            if self.config_changed() {
                let _ = self.reload().await;
            }
        }
        self.broker.load_full()
    }

    fn config_changed(&self) -> bool {
        !crate::config_watch::unchanged(&self.stamps.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Loads the host config into a new broker and swaps it in; on error the old broker
    /// stays. Logs one line either way.
    async fn reload(&self) -> Result<ReloadOutput> {
        let paths = self.paths.clone();
        let (seen, built) = tokio::task::spawn_blocking(move || {
            // Taken before the build, so an edit made during it is seen next time.
            let seen = crate::config_watch::fingerprint(&paths);
            (seen, build_broker(&paths))
        })
        .await
        .map_err(|e| Error::internal(format!("reload task failed: {e}")))?;
        // A refused config is not retried on every request: the next edit triggers a reload.
        *self.stamps.lock().unwrap_or_else(|p| p.into_inner()) = seen;
        match built {
            Ok(b) => {
                let out = ReloadOutput {
                    config: b.config().file.clone(),
                    actions: b.config().actions.len(),
                };
                self.broker.store(Arc::new(b));
                self.reloads.fetch_add(1, Ordering::Relaxed);
                errln!(
                    "outloop serve: reloaded {} ({} actions)",
                    out.config.display(),
                    out.actions
                );
                Ok(out)
            }
            Err(e) => {
                errln!(
                    "outloop serve: reload refused, keeping the previous config: {}",
                    e.message()
                );
                Err(e)
            }
        }
    }
}

/// Runs the daemon until SIGTERM or SIGINT, with the alias proxy on `127.0.0.1:<proxy_port>`
/// when `proxy_port` is given; returns the exit code.
///
/// # Errors
///
/// [`ErrorKind::Config`] for a bad host config; [`ErrorKind::Usage`] when another daemon
/// already serves the socket; [`ErrorKind::Io`] when the runtime directory, lock or socket
/// cannot be set up or the process cannot be hardened.
pub async fn serve(paths: &Paths, proxy_port: Option<u16>) -> Result<u8> {
    super::harden_process()?;
    let seen = crate::config_watch::fingerprint(paths);
    let broker = build_broker(paths)?;
    let dir = run_dir(paths);
    ensure_private_dir(&dir)?;
    let socket = dir.join(SOCKET_NAME);
    let _lock = take_lock(&dir.join(LOCK_NAME), &socket).await?;
    clear_stale_socket(&socket).await?;
    let listener =
        UnixListener::bind(&socket).map_err(|e| Error::io("cannot listen on", &socket, e))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io("cannot make private (0600)", &socket, e))?;
    }
    let sig = |kind: SignalKind, name: &str| {
        signal(kind).map_err(|e| Error::internal(format!("cannot handle {name}: {e}")))
    };
    let mut term = sig(SignalKind::terminate(), "SIGTERM")?;
    let mut int = sig(SignalKind::interrupt(), "SIGINT")?;
    let mut hup = sig(SignalKind::hangup(), "SIGHUP")?;

    let state = Arc::new(State {
        broker: Arc::new(ArcSwap::from_pointee(broker)),
        paths: paths.clone(),
        socket: socket.clone(),
        started: Instant::now(),
        requests: AtomicU64::new(0),
        in_flight: AtomicU64::new(0),
        reloads: AtomicU64::new(0),
        stamps: std::sync::Mutex::new(seen),
        reloading: tokio::sync::Mutex::new(()),
    });
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();

    // Every POLL, a full look at the config (new files an `include` glob matches, too): keeps
    // the alias proxy current, which takes its broker without waiting on a reload.
    {
        let state = Arc::clone(&state);
        let stop = shutdown.clone();
        tracker.spawn(async move {
            let mut tick = tokio::time::interval(CONFIG_POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let paths = state.paths.clone();
                let now =
                    tokio::task::spawn_blocking(move || crate::config_watch::fingerprint(&paths))
                        .await
                        .unwrap_or_default();
                let stale = *state.stamps.lock().unwrap_or_else(|p| p.into_inner()) != now;
                if stale {
                    let _one = state.reloading.lock().await;
                    let _ = state.reload().await;
                }
            }
        });
    }

    // The alias proxy, when asked for: it loads the current broker per request, so SIGHUP
    // reloads reach it, and SIGTERM drains its requests with the socket's.
    if let Some(port) = proxy_port {
        let key = crate::proxy::TokenKey::load_or_create(paths)?;
        let proxy_listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!("--proxy-port: cannot listen on 127.0.0.1:{port}: {e}"),
                )
            })?;
        let addr = proxy_listener.local_addr().map_err(|e| {
            Error::new(ErrorKind::Io, format!("cannot read the bound address: {e}"))
        })?;
        crate::proxy::announce(paths, addr)?;
        let shared = Arc::clone(&state.broker);
        let source: crate::proxy::BrokerSource = Arc::new(move || shared.load_full());
        let stop = shutdown.clone();
        tracker.spawn(async move {
            if let Err(e) =
                crate::proxy::serve(source, key, proxy_listener, stop.cancelled_owned()).await
            {
                errln!("outloop serve: alias proxy stopped: {e}");
            }
        });
        errln!("outloop serve: alias proxy on http://{addr}");
    }

    errln!(
        "outloop serve: ready on {} (pid {}, config {})",
        socket.display(),
        std::process::id(),
        paths.config_file().display()
    );

    let signal_name = loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let state = Arc::clone(&state);
                    let shutdown = shutdown.clone();
                    tracker.spawn(async move { connection(state, stream, shutdown).await });
                }
                Err(e) => {
                    errln!("outloop serve: accept failed: {e}");
                    // Out of descriptors and the like: give in-flight requests a moment to
                    // release theirs instead of spinning.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = hup.recv() => {
                let _ = state.reload().await;
            }
            _ = term.recv() => break "SIGTERM",
            _ = int.recv() => break "SIGINT",
        }
    };

    // Drain: new clients find no socket and run in-process; requests in flight finish.
    drop(listener);
    let _ = std::fs::remove_file(&socket);
    errln!(
        "outloop serve: {signal_name}: stopped listening; draining {} request(s) in flight",
        state.in_flight.load(Ordering::Relaxed)
    );
    shutdown.cancel();
    tracker.close();
    tokio::select! {
        () = tracker.wait() => {}
        _ = term.recv() => {
            errln!("outloop serve: second signal: exiting without draining");
            return Ok(1);
        }
        _ = int.recv() => {
            errln!("outloop serve: second signal: exiting without draining");
            return Ok(1);
        }
    }
    if proxy_port.is_some() {
        let _ = std::fs::remove_file(paths.state_dir.join(crate::proxy::PORT_FILE));
    }
    // Every answered request's audit record was fsynced before its answer was written.
    errln!(
        "outloop serve: stopped after {} request(s); audit log {} is flushed",
        state.requests.load(Ordering::Relaxed),
        paths.audit_file().display()
    );
    Ok(0)
}

/// Takes the daemon lock for the socket's lifetime, or reports the daemon that holds it.
async fn take_lock(lock_path: &Path, socket: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(lock_path)
        .map_err(|e| Error::io("cannot open", lock_path, e))?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => {
            let pid = match super::client::Client::connect_to(socket).await {
                Ok(mut c) => match c.request(Op::Status, |_| {}).await {
                    Ok(Body::Status(s)) => format!(" (pid {})", s.pid),
                    _ => String::new(),
                },
                Err(_) => String::new(),
            };
            Err(Error::new(
                ErrorKind::Usage,
                format!(
                    "an outloop daemon{pid} is already serving {}; stop it (SIGTERM) before starting another",
                    socket.display()
                ),
            ))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io("cannot lock", lock_path, e)),
    }
}

/// Removes a socket file no daemon answers on (left by a daemon that was killed). Called with
/// the lock held, so no live daemon of ours can be behind it.
async fn clear_stale_socket(socket: &Path) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(socket) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("cannot read", socket, e)),
        Ok(m) if !m.file_type().is_socket() => Err(Error::new(
            ErrorKind::Io,
            format!(
                "{} exists and is not a socket; move it aside",
                socket.display()
            ),
        )),
        Ok(_) => {
            if UnixStream::connect(socket).await.is_ok() {
                return Err(Error::new(
                    ErrorKind::Usage,
                    format!(
                        "a daemon is already answering on {}; stop it (SIGTERM) before starting another",
                        socket.display()
                    ),
                ));
            }
            errln!("outloop serve: replacing stale socket {}", socket.display());
            std::fs::remove_file(socket).map_err(|e| Error::io("cannot remove", socket, e))
        }
    }
}

pub(super) async fn write_frame(stream: &mut UnixStream, body: Body) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(&Response::new(body)).map_err(std::io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line).await
}

pub(super) fn error_body(e: &Error) -> Body {
    Body::Error(WireError::from(e))
}

/// Serves one connection: requests one after another until EOF, a protocol error, or
/// shutdown (which waits for the request being answered, then closes).
async fn connection(state: Arc<State>, stream: UnixStream, shutdown: CancellationToken) {
    let mut reader = BufReader::new(stream);
    match reader.get_ref().peer_cred() {
        Ok(cred) => {
            if let Err(e) = check_peer_uid(cred.uid(), own_uid()) {
                errln!(
                    "outloop serve: refused a peer of uid {} (pid {})",
                    cred.uid(),
                    cred.pid().map_or_else(|| "?".into(), |p| p.to_string())
                );
                let _ = write_frame(reader.get_mut(), error_body(&e)).await;
                return;
            }
        }
        Err(e) => {
            let e = Error::new(
                ErrorKind::PermissionDenied,
                format!("cannot read the socket peer's credentials: {e}"),
            );
            let _ = write_frame(reader.get_mut(), error_body(&e)).await;
            return;
        }
    }
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = {
            let mut limited = (&mut reader).take(MAX_REQUEST_BYTES as u64 + 1);
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                r = limited.read_until(b'\n', &mut line) => r,
            }
        };
        match read {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if !line.ends_with(b"\n") {
            let e = Error::new(
                ErrorKind::Usage,
                format!("request longer than {MAX_REQUEST_BYTES} bytes or not newline-terminated"),
            );
            let _ = write_frame(reader.get_mut(), error_body(&e)).await;
            return;
        }
        let body = match parse(&line) {
            Ok(Request {
                op:
                    Op::ExecStart {
                        credentials,
                        command,
                        tenant,
                    },
                ..
            }) => {
                let start = super::exec::Start {
                    credentials,
                    command,
                    tenant,
                };
                if super::exec::session(&state, &mut reader, start, &shutdown).await {
                    continue;
                }
                return;
            }
            Ok(req) => match answer(&state, &mut reader, req).await {
                Some(b) => b,
                None => return,
            },
            Err(e) => error_body(&e),
        };
        if write_frame(reader.get_mut(), body).await.is_err() {
            return;
        }
    }
}

pub(super) fn parse(line: &[u8]) -> Result<Request> {
    let value: serde_json::Value = serde_json::from_slice(line)
        .map_err(|e| Error::new(ErrorKind::Usage, format!("request is not JSON: {e}")))?;
    match value.get("v").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(VERSION) => {}
        other => {
            return Err(Error::new(
                ErrorKind::Usage,
                format!(
                    "protocol version {} is not supported; this daemon speaks {VERSION}",
                    other.map_or_else(|| "(missing)".into(), |v| v.to_string())
                ),
            ));
        }
    }
    serde_json::from_value(value)
        .map_err(|e| Error::new(ErrorKind::Usage, format!("not a protocol request: {e}")))
}

/// Answers one request; `None` when the client went away while it was answered.
async fn answer(state: &State, reader: &mut BufReader<UnixStream>, req: Request) -> Option<Body> {
    if matches!(req.op, Op::Status) {
        return Some(Body::Status(state.status()));
    }
    if matches!(req.op, Op::Reload) {
        return Some(match state.reload().await {
            Ok(r) => Body::Reloaded(r),
            Err(e) => error_body(&e),
        });
    }
    state.in_flight.fetch_add(1, Ordering::Relaxed);
    let body = answer_broker(state, reader, req.op).await;
    state.in_flight.fetch_sub(1, Ordering::Relaxed);
    state.requests.fetch_add(1, Ordering::Relaxed);
    body
}

/// Runs `fut` (a broker request) with each approval hold written to the client as a `held`
/// line. `None` when the client went away: the request still runs to its end (approved,
/// rejected or expired) and is audited, but nobody is told.
async fn forward_holds<T>(
    reader: &mut BufReader<UnixStream>,
    fut: impl std::future::Future<Output = T>,
) -> Option<T> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let call = HELD.scope(tx, fut);
    tokio::pin!(call);
    loop {
        tokio::select! {
            r = &mut call => return Some(r),
            Some(a) = rx.recv() => {
                if write_frame(reader.get_mut(), Body::Held(a)).await.is_err() {
                    let _ = (&mut call).await;
                    return None;
                }
            }
        }
    }
}

async fn answer_broker(state: &State, reader: &mut BufReader<UnixStream>, op: Op) -> Option<Body> {
    let broker = state.current().await;
    // The peer's working directory, from the OS: a client cannot claim another workspace.
    let peer_dir = || outloop_core::workspace::peer_dir(reader.get_ref());
    let result = match op {
        Op::Call {
            action,
            params,
            tenant,
        } => {
            let dir = match peer_dir() {
                Ok(d) => d,
                Err(e) => return Some(error_body(&e)),
            };
            let req = CallRequest {
                workspace: dir,
                tenant,
                action,
                params: params.into_iter().collect(),
            };
            forward_holds(reader, broker.call(req))
                .await?
                .map(|r| Body::Call(CallOutput::from(r)))
        }
        Op::Request {
            alias,
            method,
            path,
            query,
            headers,
            body,
            tenant,
        } => {
            let dir = match peer_dir() {
                Ok(d) => d,
                Err(e) => return Some(error_body(&e)),
            };
            let req = AliasRequest {
                workspace: dir,
                tenant,
                alias,
                method,
                path,
                query,
                headers,
                body: body.into_bytes(),
            };
            let fut = async {
                // As the MCP server does in-process: the result names the workspace's tenant.
                let tenant =
                    outloop_core::workspace::resolve(broker.config(), &req.workspace)?.tenant;
                let alias = req.alias.clone();
                broker.request(req).await?.collect(&alias, &tenant).await
            };
            forward_holds(reader, fut)
                .await?
                .map(|r| Body::Call(CallOutput::from(r)))
        }
        Op::Actions => peer_dir()
            .and_then(|dir| broker.actions_for(&dir))
            .map(|(ws, list)| {
                Body::Actions(ActionsOutput {
                    workspace: ws.root,
                    tenant: ws.tenant,
                    actions: ActionEntry::all_from(list, broker.config()),
                })
            }),
        Op::ExecStart { .. } => Err(Error::internal("answered by the exec session")),
        Op::ExecEnd { .. } => Err(Error::new(
            ErrorKind::Usage,
            "`exec_end` without an exec session on this connection (send `exec_start` first)",
        )),
        Op::Explain {
            action,
            params,
            workspace,
            method,
            path,
        } => {
            let dir = match workspace {
                Some(w) => Ok(w),
                None => peer_dir(),
            };
            let params = params.into_iter().collect();
            dir.and_then(|dir| {
                broker.explain_request(
                    &dir,
                    &action,
                    &params,
                    method.as_deref().zip(path.as_deref()),
                )
            })
            .map(|e| Body::Explain(ExplainOutput::from(e)))
        }
        Op::Status | Op::Reload => Err(Error::internal("answered above")),
    };
    Some(result.unwrap_or_else(|e| error_body(&e)))
}
