//! What the REST backends (Infisical, Doppler) share: settings parsing, the HTTP client,
//! reading a bounded body into zeroizing memory, and mapping transport failures and status
//! codes to [`ErrorKind`]s without echoing the vendor's body.

use std::collections::BTreeMap;
use std::time::Duration;

use outloop_core::{Error, ErrorKind, Result, SecretValue};
use reqwest::Url;
use zeroize::Zeroizing;

/// Largest response body a REST backend reads (1 MiB); a secret response is far smaller.
pub(crate) const MAX_BODY: usize = 1 << 20;

/// Reads an optional string setting `backends.<owner>.<key>`.
pub(crate) fn opt_str(
    owner: &str,
    key: &str,
    settings: &BTreeMap<String, toml::Value>,
) -> Result<Option<String>> {
    match settings.get(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(Error::config(format!(
            "backends.{owner}.{key}: expected a non-empty string"
        ))),
    }
}

/// Reads `timeout_secs` (default `default`, 1 to 600).
pub(crate) fn timeout(
    owner: &str,
    settings: &BTreeMap<String, toml::Value>,
    default: u64,
) -> Result<Duration> {
    match settings.get("timeout_secs") {
        None => Ok(Duration::from_secs(default)),
        Some(toml::Value::Integer(n)) if (1..=600).contains(n) => {
            Ok(Duration::from_secs(*n as u64))
        }
        Some(_) => Err(Error::config(format!(
            "backends.{owner}.timeout_secs: expected an integer from 1 to 600 (seconds)"
        ))),
    }
}

/// Refuses settings keys a backend does not know, naming the first one.
pub(crate) fn deny_unknown(
    owner: &str,
    settings: &BTreeMap<String, toml::Value>,
    known: &[&str],
) -> Result<()> {
    if let Some(k) = settings.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(Error::config(format!(
            "backends.{owner}.{k}: unknown key (expected one of {})",
            known.join(", ")
        )));
    }
    Ok(())
}

/// Parses an `http(s)` base URL setting, dropping a trailing `/`.
pub(crate) fn base_url(owner: &str, key: &str, raw: &str) -> Result<Url> {
    let url = Url::parse(raw.trim_end_matches('/'))
        .map_err(|e| Error::config(format!("backends.{owner}.{key}: `{raw}` is not a URL: {e}")))?;
    if !matches!(url.scheme(), "https" | "http") || url.host().is_none() {
        return Err(Error::config(format!(
            "backends.{owner}.{key}: `{raw}` must be an http(s) URL with a host"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(Error::config(format!(
            "backends.{owner}.{key}: `{raw}` must not carry a query, fragment or user"
        )));
    }
    Ok(url)
}

/// The HTTP client for a REST backend: rustls, the given timeout, and no redirects, so a
/// bearer token is never replayed to another origin.
pub(crate) fn client(timeout: Duration) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("outloop/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::internal(format!("cannot build the HTTP client: {e}")))
}

/// Maps a transport failure (no HTTP status) to [`ErrorKind::Timeout`] or
/// [`ErrorKind::Unavailable`]. The message names the backend and host, never a token.
pub(crate) fn transport(backend: &str, what: &str, e: reqwest::Error) -> Error {
    let host = e
        .url()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    let e = e.without_url();
    if e.is_timeout() {
        Error::new(
            ErrorKind::Timeout,
            format!("backend `{backend}`: {what}: {host} did not answer in time"),
        )
    } else {
        Error::new(
            ErrorKind::Unavailable,
            format!("backend `{backend}`: {what}: cannot reach {host}"),
        )
        .with_source(e)
    }
}

/// A response: status, `Retry-After` (seconds form) and the body in zeroizing memory.
pub(crate) struct Response {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: Zeroizing<Vec<u8>>,
}

/// Sends `req` and reads at most [`MAX_BODY`] bytes of the answer.
///
/// # Errors
///
/// As [`transport`]; [`ErrorKind::Unavailable`] when the body is larger than the cap.
pub(crate) async fn send(
    backend: &str,
    what: &str,
    req: reqwest::RequestBuilder,
) -> Result<Response> {
    let mut resp = req.send().await.map_err(|e| transport(backend, what, e))?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let mut body = Zeroizing::new(Vec::new());
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| transport(backend, what, e))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!("backend `{backend}`: {what}: answer larger than {MAX_BODY} bytes"),
            ));
        }
        // Grow by hand so no reallocation leaves an unzeroized copy behind.
        if body.capacity() < body.len() + chunk.len() {
            let mut bigger = Zeroizing::new(Vec::with_capacity(
                (body.len() + chunk.len()).max(body.capacity() * 2),
            ));
            bigger.extend_from_slice(&body);
            body = bigger;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Response {
        status,
        retry_after,
        body,
    })
}

/// The error kind for a non-success status, with no vendor text: 401 unauthenticated,
/// 403 permission denied, 404 not found, 429 rate limited (with `retry_after`), 408/504
/// timeout, anything else unavailable.
pub(crate) fn status_kind(status: u16, retry_after: Option<Duration>) -> ErrorKind {
    match status {
        401 => ErrorKind::Unauthenticated,
        403 => ErrorKind::PermissionDenied,
        404 => ErrorKind::NotFound,
        429 => ErrorKind::RateLimited { retry_after },
        408 | 504 => ErrorKind::Timeout,
        _ => ErrorKind::Unavailable,
    }
}

/// Deserializes a JSON string straight into a [`SecretValue`], taking the decoded buffer
/// without copying it.
pub(crate) fn secret_string<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<SecretValue>, D::Error> {
    let s: Option<String> = serde::Deserialize::deserialize(d)?;
    Ok(s.map(SecretValue::from_string))
}
