//! The alias proxy: `http://127.0.0.1:<port>/<token>/<alias>/<path>` goes to the alias's pinned
//! base URL with the credential applied, through [`Broker::request`].
//!
//! An unmodified SDK uses it through its base-URL setting: `outloop proxy url <alias>` prints
//! the base URL for the current workspace, token included. The token may also be sent in an
//! `X-Outloop-Token` header, with URLs of the form `/<alias>/<path>`.
//!
//! # Tokens
//!
//! The proxy listens on TCP, where it cannot see the peer's working directory, so the token
//! names the workspace: `olp_` + base64url(HMAC-SHA256(key, `outloop-proxy-v1\0` + the bound
//! workspace root)). The 32-byte key is random, created once in the state directory as
//! `proxy.key` (mode 0600), so only a process that can read the user's state directory can
//! mint a token, and each token works for its own workspace only. Deleting `proxy.key`
//! revokes every token.
//!
//! # What is dropped
//!
//! The token (path segment or header) never goes upstream. The broker drops the agent's
//! `Authorization`, `Cookie`, `Proxy-*`, hop-by-hop, `Host`, `Content-Length`, `Expect` and
//! `Accept-Encoding` headers and the alias's own auth header. Responses keep the upstream
//! status; headers and body are redacted, the body (server-sent events included) while it
//! streams, each chunk released as soon as no byte of it could begin a secret.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::TryStreamExt;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full, Limited, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use outloop_core::broker::{AliasRequest, Broker};
use outloop_core::config::{HostConfig, Paths};
use outloop_core::workspace;
use outloop_core::{Error, ErrorKind, Result};
use sha2::Sha256;
use tokio::net::TcpListener;

/// The port `outloop proxy` listens on when no `--port` is given.
pub const DEFAULT_PORT: u16 = 7787;

/// The header that may carry the token instead of the URL path.
pub const TOKEN_HEADER: &str = "x-outloop-token";

/// Every token starts with this, so the proxy tells a token segment from an alias name.
pub const TOKEN_PREFIX: &str = "olp_";

/// The largest request body the proxy forwards, in bytes (10 MiB).
pub const MAX_REQUEST_BODY: usize = 10 * 1024 * 1024;

const KEY_FILE: &str = "proxy.key";
pub(crate) const PORT_FILE: &str = "proxy.port";

/// How long a client may take to send its request line and headers.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The largest request head (request line and headers) the proxy reads, in bytes.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Gives the broker to use for each request (the daemon swaps it on reload; the standalone
/// proxy always returns the same one).
pub type BrokerSource = Arc<dyn Fn() -> Arc<Broker> + Send + Sync>;

/// The proxy's secret: the HMAC key tokens are made with. Its `Debug` shows no bytes.
#[derive(Clone)]
pub struct TokenKey(Arc<zeroize::Zeroizing<Vec<u8>>>);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    /// Reads `<state_dir>/proxy.key`, creating it (32 random bytes, mode 0600) when missing.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] naming the file when it cannot be created or read, or holds fewer
    /// than 32 bytes; [`ErrorKind::Internal`] when the OS gives no randomness.
    pub fn load_or_create(paths: &Paths) -> Result<Self> {
        let path = paths.state_dir.join(KEY_FILE);
        outloop_core::audit::create_private_dir(&paths.state_dir)
            .map_err(|e| Error::io("cannot create directory", &paths.state_dir, e))?;
        match std::fs::read(&path) {
            Ok(bytes) if bytes.len() >= 32 => return Ok(Self(Arc::new(bytes.into()))),
            Ok(_) => {
                return Err(Error::new(
                    ErrorKind::Io,
                    format!(
                        "{}: holds fewer than 32 bytes; delete it to make a new key (this revokes every proxy token)",
                        path.display()
                    ),
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("cannot read", &path, e)),
        }
        let mut key = zeroize::Zeroizing::new(vec![0u8; 32]);
        getrandom::getrandom(&mut key)
            .map_err(|e| Error::internal(format!("no randomness for the proxy key: {e}")))?;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        match opts.open(&path) {
            Ok(mut f) => {
                use std::io::Write;
                f.write_all(&key)
                    .and_then(|()| f.sync_all())
                    .map_err(|e| Error::io("cannot write", &path, e))?;
                Ok(Self(Arc::new(key)))
            }
            // Another process made it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load_or_create(paths),
            Err(e) => Err(Error::io("cannot create", &path, e)),
        }
    }

    /// The token for a bound workspace root (canonical path).
    pub fn token_for(&self, root: &Path) -> String {
        let mac = self.mac(root).finalize().into_bytes();
        format!(
            "{TOKEN_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac)
        )
    }

    fn mac(&self, root: &Path) -> Hmac<Sha256> {
        // new_from_slice accepts keys of any length for HMAC.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(b"outloop-proxy-v1\0");
        mac.update(root.as_os_str().as_encoded_bytes());
        mac
    }

    /// The bound workspace root `token` was made for, among the roots of `config`; `None`
    /// when it matches none (compared in constant time per root).
    pub fn workspace_of(&self, config: &HostConfig, token: &str) -> Option<PathBuf> {
        let raw = token.strip_prefix(TOKEN_PREFIX)?;
        let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(raw)
            .ok()?;
        bound_roots(config)
            .into_iter()
            .find(|root| self.mac(root).verify_slice(&tag).is_ok())
    }
}

/// Every bound workspace root of the config, canonical, as the broker resolves them.
fn bound_roots(config: &HostConfig) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for t in config.tenants.values() {
        for w in &t.workspaces {
            if let Ok(ws) = workspace::resolve(config, w) {
                out.push(ws.root);
            }
        }
    }
    out
}

/// Records the port a running proxy listens on (`<state_dir>/proxy.port`), so `outloop proxy
/// url` prints the right URL. The daemon calls it when it starts the proxy.
///
/// # Errors
///
/// [`ErrorKind::Io`] naming the file.
pub fn announce(paths: &Paths, addr: SocketAddr) -> Result<()> {
    let path = paths.state_dir.join(PORT_FILE);
    outloop_core::audit::create_private_dir(&paths.state_dir)
        .map_err(|e| Error::io("cannot create directory", &paths.state_dir, e))?;
    std::fs::write(&path, format!("{}\n", addr.port()))
        .map_err(|e| Error::io("cannot write", &path, e))
}

/// The port recorded by [`announce`], if any.
pub fn announced_port(paths: &Paths) -> Option<u16> {
    std::fs::read_to_string(paths.state_dir.join(PORT_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The base URL of `alias` for the workspace at `dir`: `http://127.0.0.1:<port>/<token>/<alias>`.
///
/// # Errors
///
/// [`ErrorKind::UnboundWorkspace`] when `dir` is in no bound workspace;
/// [`ErrorKind::UnknownAction`] when there is no such alias; the errors of
/// [`TokenKey::load_or_create`].
pub fn url_for(
    paths: &Paths,
    config: &HostConfig,
    dir: &Path,
    alias: &str,
    port: u16,
) -> Result<String> {
    let ws = workspace::resolve(config, dir)?;
    if !config.aliases.contains_key(alias) {
        return Err(Error::new(
            ErrorKind::UnknownAction,
            format!("no alias `{alias}` in the host config (see `outloop actions`)"),
        ));
    }
    let key = TokenKey::load_or_create(paths)?;
    Ok(format!(
        "http://127.0.0.1:{port}/{}/{alias}",
        key.token_for(&ws.root)
    ))
}

type ProxyBody = UnsyncBoxBody<Bytes, Error>;

fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// The HTTP status a refused or failed request gets.
fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::PolicyDenied | ErrorKind::UnboundWorkspace | ErrorKind::ApprovalRequired => {
            StatusCode::FORBIDDEN
        }
        ErrorKind::UnknownAction => StatusCode::NOT_FOUND,
        ErrorKind::InvalidParameter | ErrorKind::Usage => StatusCode::BAD_REQUEST,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::UpstreamUnreachable | ErrorKind::SafetyRefused => StatusCode::BAD_GATEWAY,
        ErrorKind::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::NotFound
        | ErrorKind::Unauthenticated
        | ErrorKind::PermissionDenied
        | ErrorKind::Unavailable
        | ErrorKind::InvalidReference
        | ErrorKind::InvalidSecret => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A JSON error response, `{"error":{"kind","message"}}`, with `X-Outloop-Error: <kind>`.
fn error_response(status: StatusCode, kind: &str, message: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({ "error": { "kind": kind, "message": message } }).to_string();
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = hyper::header::HeaderValue::from_str(kind) {
        h.insert("x-outloop-error", v);
    }
    resp
}

fn from_error(e: &Error) -> Response<ProxyBody> {
    error_response(status_of(e.kind()), e.kind().as_str(), e.message())
}

/// Serves the alias proxy on `listener` until `shutdown` completes; each connection runs in
/// its own task (HTTP/1.1, keep-alive). Requests in flight when `shutdown` completes run to
/// their end in their tasks.
///
/// `broker` is called once per request; `key` checks tokens (see [`TokenKey`]).
///
/// # Errors
///
/// None so far: accept errors are reported on stderr and the loop goes on.
pub async fn serve(
    broker: BrokerSource,
    key: TokenKey,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let broker = Arc::clone(&broker);
                    let key = key.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let broker = broker();
                            let key = key.clone();
                            async move { Ok::<_, std::convert::Infallible>(handle(&broker, &key, req).await) }
                        });
                        // A client that never finishes its request head is cut off.
                        let _ = hyper::server::conn::http1::Builder::new()
                            .timer(hyper_util::rt::TokioTimer::new())
                            .header_read_timeout(HEADER_READ_TIMEOUT)
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
                Err(e) => {
                    errln!("outloop proxy: accept failed: {e}");
                    tokio::task::yield_now().await;
                }
            }
        }
    }
}

/// One proxied request: token → workspace, then [`Broker::request`].
pub async fn handle(
    broker: &Broker,
    key: &TokenKey,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let (parts, body) = req.into_parts();
    let head_bytes: usize = parts
        .headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + parts.uri.to_string().len();
    if head_bytes > MAX_HEAD_BYTES {
        return error_response(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "invalid_parameter",
            &format!("request line and headers exceed {MAX_HEAD_BYTES} bytes"),
        );
    }
    let path = parts.uri.path();
    let mut segments = path.trim_start_matches('/').splitn(2, '/');
    let first = segments.next().unwrap_or("");
    let (token, rest) = if first.starts_with(TOKEN_PREFIX) {
        (Some(first.to_owned()), segments.next().unwrap_or(""))
    } else {
        (
            parts
                .headers
                .get(TOKEN_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            path.trim_start_matches('/'),
        )
    };
    let Some(token) = token else {
        return error_response(
            StatusCode::UNAUTHORIZED,
            "policy_denied",
            "no proxy token: use the base URL `outloop proxy url <alias>` prints in the workspace",
        );
    };
    let Some(root) = key.workspace_of(broker.config(), &token) else {
        return error_response(
            StatusCode::FORBIDDEN,
            "policy_denied",
            "the proxy token matches no bound workspace; get a fresh base URL with `outloop proxy url <alias>`",
        );
    };
    let (alias, rest) = match rest.split_once('/') {
        Some((a, r)) => (a, format!("/{r}")),
        None => (rest, "/".to_owned()),
    };
    if alias.is_empty() {
        return error_response(
            StatusCode::NOT_FOUND,
            "unknown_action",
            "no alias in the URL: /<token>/<alias>/<path>",
        );
    }
    let mut headers = Vec::new();
    for (name, value) in &parts.headers {
        if name.as_str() == TOKEN_HEADER {
            continue;
        }
        match value.to_str() {
            Ok(v) => headers.push((name.as_str().to_owned(), v.to_owned())),
            Err(_) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    "invalid_parameter",
                    &format!("headers: the value of `{name}` is not visible ASCII"),
                );
            }
        }
    }
    let body = match Limited::new(body, MAX_REQUEST_BODY).collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(_) => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_parameter",
                &format!("the request body is over {MAX_REQUEST_BODY} bytes or broke off"),
            );
        }
    };
    let request = AliasRequest {
        workspace: root,
        tenant: None,
        alias: alias.to_owned(),
        method: parts.method.as_str().to_owned(),
        path: rest,
        query: parts.uri.query().map(str::to_owned),
        headers,
        body,
    };
    match broker.request(request).await {
        Err(e) => from_error(&e),
        Ok(r) => {
            let stream = r.body.map_ok(Frame::data);
            let mut resp = Response::new(BodyExt::boxed_unsync(StreamBody::new(stream)));
            *resp.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_GATEWAY);
            for (name, value) in &r.headers {
                if let (Ok(n), Ok(v)) = (
                    hyper::header::HeaderName::from_bytes(name.as_bytes()),
                    hyper::header::HeaderValue::from_str(value),
                ) {
                    resp.headers_mut().append(n, v);
                }
            }
            resp
        }
    }
}

/// `outloop proxy [--port N]`: serves the proxy on 127.0.0.1 until SIGINT or SIGTERM, printing
/// `outloop proxy: ready on http://127.0.0.1:<port>` on stderr once it accepts connections.
///
/// # Errors
///
/// [`ErrorKind::Config`] for a bad host config; [`ErrorKind::Io`] when the port cannot be
/// bound or the key or port file cannot be written.
pub async fn run(paths: &Paths, broker: Broker, port: u16) -> Result<u8> {
    let key = TokenKey::load_or_create(paths)?;
    let listener = TcpListener::bind(("127.0.0.1", port)).await.map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("cannot listen on 127.0.0.1:{port}: {e}"),
        )
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::new(ErrorKind::Io, format!("cannot read the bound address: {e}")))?;
    announce(paths, addr)?;
    errln!("outloop proxy: ready on http://{addr}");
    let broker = Arc::new(broker);
    let source: BrokerSource = Arc::new(move || Arc::clone(&broker));
    let shutdown = async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    };
    serve(source, key, listener, shutdown).await?;
    let _ = std::fs::remove_file(paths.state_dir.join(PORT_FILE));
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_one_workspace_and_cannot_be_made_without_the_key() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let (a, b) = (root.join("a"), root.join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let paths = Paths::under(root.join("home"));
        let text = format!(
            "[tenants.acme]\nworkspaces = [{a:?}]\n[tenants.globex]\nworkspaces = [{b:?}]\n"
        );
        let cfg = HostConfig::from_str_at(&paths, &paths.config_file(), &text).unwrap();
        let key = TokenKey::load_or_create(&paths).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(paths.state_dir.join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (ta, tb) = (key.token_for(&a), key.token_for(&b));
        assert_ne!(ta, tb);
        assert_eq!(key.workspace_of(&cfg, &ta), Some(a.clone()));
        assert_eq!(key.workspace_of(&cfg, &tb), Some(b));
        // The same key file gives the same tokens; another key gives none that match.
        let again = TokenKey::load_or_create(&paths).unwrap();
        assert_eq!(again.token_for(&a), ta);
        let other = TokenKey::load_or_create(&Paths::under(root.join("other"))).unwrap();
        assert_eq!(other.workspace_of(&cfg, &ta), None);
        assert_eq!(key.workspace_of(&cfg, "olp_AAAA"), None);
        assert_eq!(key.workspace_of(&cfg, &ta[..ta.len() - 1]), None);
        assert_eq!(format!("{key:?}"), "TokenKey(..)");
    }

    /// One HTTP/1.1 exchange over a fresh connection; returns the raw response text.
    async fn exchange(addr: SocketAddr, request: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn serve_routes_by_token_and_alias_over_a_real_socket() {
        use std::io::{BufRead, BufReader, Write};
        use std::sync::atomic::{AtomicUsize, Ordering};
        // A loopback upstream that answers with the request line it received.
        let up = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let up_url = format!("http://{}", up.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        std::thread::spawn(move || {
            for s in up.incoming() {
                let Ok(mut s) = s else { continue };
                counter.fetch_add(1, Ordering::SeqCst);
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                let _ = r.read_line(&mut line);
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                let body = line.trim_end();
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let ws = root.join("acme");
        std::fs::create_dir_all(&ws).unwrap();
        let paths = Paths::under(root.join("home"));
        let text = format!(
            "[egress]\nallow_private = [\"127.0.0.0/8\"]\n[tenants.acme]\nworkspaces = [{ws:?}]\n[aliases.up]\nbase_url = \"{up_url}/v1\"\nallow = [\"GET /ok\"]\n[policy.tenants.acme]\nallow = [\"alias:*\"]\n"
        );
        let cfg = HostConfig::from_str_at(&paths, &paths.config_file(), &text).unwrap();
        let broker = Arc::new(Broker::builder(cfg.clone()).build().unwrap());
        let key = TokenKey::load_or_create(&paths).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let source: BrokerSource = Arc::new(move || Arc::clone(&broker));
        let server = tokio::spawn(serve(source, key.clone(), listener, async {
            let _ = stopped.await;
        }));
        let token = key.token_for(&ws);
        let url = url_for(&paths, &cfg, &ws, "up", addr.port()).unwrap();
        assert_eq!(url, format!("http://127.0.0.1:{}/{token}/up", addr.port()));

        let ok = exchange(
            addr,
            &format!("GET /{token}/up/ok?x=1 HTTP/1.1\r\nHost: a\r\nCookie: c=FAKE-cookie\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(ok.starts_with("HTTP/1.1 200 OK"), "{ok}");
        // The body is chunked (redaction streams it); its one chunk is the upstream's echo.
        assert!(ok.contains("\r\nGET /v1/ok?x=1 HTTP/1.1\r\n0\r\n"), "{ok}");
        let by_header = exchange(
            addr,
            &format!("GET /up/ok HTTP/1.1\r\nHost: a\r\nX-Outloop-Token: {token}\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(by_header.starts_with("HTTP/1.1 200 OK"), "{by_header}");
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        for (target, status) in [
            ("/up/ok".to_owned(), "401"),
            (format!("/{}x/up/ok", &token[..token.len() - 1]), "403"),
            (format!("/{token}/up/admin"), "403"),
            (format!("/{token}/nosuch/ok"), "404"),
            (format!("/{token}/up/%2e%2e/ok"), "400"),
        ] {
            let r = exchange(
                addr,
                &format!("GET {target} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
            )
            .await;
            assert!(
                r.starts_with(&format!("HTTP/1.1 {status}")),
                "{target}: {r}"
            );
            assert!(r.contains("x-outloop-error"), "{r}");
        }
        // A request head over MAX_HEAD_BYTES is refused before anything is sent upstream.
        let big = "a".repeat(MAX_HEAD_BYTES + 1024);
        let r = exchange(
            addr,
            &format!("GET /{token}/up/ok HTTP/1.1\r\nHost: a\r\nX-Big: {big}\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(r.starts_with("HTTP/1.1 431"), "{}", &r[..r.len().min(200)]);
        assert_eq!(
            hits.load(Ordering::SeqCst),
            2,
            "nothing refused reached the upstream"
        );
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
