//! Alias requests over HTTP: one agent request sent below an alias's pinned base URL, with the
//! credential applied as the alias's `auth` says.
//!
//! The agent chooses the method, the path below the base URL, the raw query, headers and body;
//! it never chooses the scheme, host, port or base path. Paths that could climb out of the base
//! path (`.` and `..` segments, also percent-encoded; encoded `/` or `\`; empty segments such as
//! `//host`; backslashes; absolute URLs) are refused before anything is sent, and the built URL
//! is checked once more against the pinned origin and base path. The agent's `Authorization`,
//! `Cookie`, `Proxy-*`, hop-by-hop, `Host`, framing and `Accept-Encoding` headers are dropped:
//! the credential and the response decoding are outloop's. Redirects are followed (up to
//! [`super::MAX_REDIRECTS`]) only while they stay in the origin and below the base path.

use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, LOCATION};
use url::Url;

use super::template::{authority, same_origin};
use super::{Auth, HttpClient, MAX_REDIRECTS, compile_auth, egress, into_response, upstream_error};
use crate::action::ActionResponse;
use crate::config::AliasConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::secret::SecretValue;

/// The methods an alias request may use (the methods `allow` rules can name).
pub const ALIAS_METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];

/// Request headers an agent may not set: the credential's places, cookies, proxy credentials,
/// hop-by-hop and framing headers (RFC 9110 section 7.6.1), and the encodings outloop decodes.
const DROPPED_REQUEST: [&str; 12] = [
    "authorization",
    "cookie",
    "host",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "accept-encoding",
    "expect",
];

/// Whether the agent's request header `name` (any case) is dropped before sending.
pub fn is_dropped_request_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    DROPPED_REQUEST.contains(&lower.as_str()) || lower.starts_with("proxy-")
}

/// Checks a method: one of [`ALIAS_METHODS`], any case; returns it upper-case.
///
/// # Errors
///
/// [`ErrorKind::InvalidParameter`] naming `method` otherwise.
pub fn check_method(method: &str) -> Result<&'static str> {
    ALIAS_METHODS
        .iter()
        .find(|m| m.eq_ignore_ascii_case(method))
        .copied()
        .ok_or_else(|| {
            let shown: String = method
                .chars()
                .filter(char::is_ascii_graphic)
                .take(20)
                .collect();
            Error::new(
                ErrorKind::InvalidParameter,
                format!(
                    "method: `{shown}` is not one of {}",
                    ALIAS_METHODS.join(", ")
                ),
            )
        })
}

/// Checks a path below an alias base URL: it starts with `/`, holds no backslash, no empty,
/// `.` or `..` segment (also percent-encoded), no encoded `/` or `\`, no `?` or `#`, no
/// whitespace or control bytes, and only valid percent escapes.
///
/// # Errors
///
/// [`ErrorKind::InvalidParameter`] naming `path` and the problem.
pub fn check_path(path: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::new(
            ErrorKind::InvalidParameter,
            format!("path: {why}; the path stays below the alias's base URL"),
        ))
    };
    if !path.starts_with('/') {
        return bad("must start with `/` (an absolute URL or a relative path is refused)");
    }
    if path.contains('\\') {
        return bad("holds a backslash");
    }
    if path.contains(['?', '#']) {
        return bad("holds `?` or `#` (pass the query separately)");
    }
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return bad("holds whitespace or control characters");
    }
    // Every segment after the leading `/`; a trailing `/` (an empty last segment) is fine.
    let segments: Vec<&str> = path[1..].split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        if seg.is_empty() && i + 1 < segments.len() {
            return bad("holds an empty segment (`//`)");
        }
        let decoded: Vec<u8> = percent_encoding::percent_decode_str(seg).collect();
        if seg.contains('%') && !valid_escapes(seg) {
            return bad("holds a `%` that does not start a percent escape");
        }
        if decoded.contains(&b'/') || decoded.contains(&b'\\') {
            return bad("holds an encoded `/` or `\\`");
        }
        if decoded == b"." || decoded == b".." {
            return bad("holds a `.` or `..` segment");
        }
    }
    Ok(())
}

fn valid_escapes(seg: &str) -> bool {
    let b = seg.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

/// Checks a raw query string (without `?`): no `#`, whitespace or control bytes.
///
/// # Errors
///
/// [`ErrorKind::InvalidParameter`] naming `query`.
pub fn check_query(query: &str) -> Result<()> {
    if query.contains('#') || query.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(Error::new(
            ErrorKind::InvalidParameter,
            "query: holds `#`, whitespace or control characters; percent-encode them",
        ));
    }
    Ok(())
}

/// One compiled alias: the pinned base URL and the credential placement, ready to send many
/// requests. Safe to share between tasks.
#[derive(Debug, Clone)]
pub(crate) struct HttpAlias {
    name: String,
    base: Url,
    credential: Option<String>,
    auth: Option<Auth>,
    client: HttpClient,
}

/// One agent request, checked by the broker before it gets here.
pub(crate) struct Outgoing<'a> {
    pub method: &'static str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

impl HttpAlias {
    /// Compiles `[aliases.<name>]`.
    pub(crate) fn new(name: &str, cfg: &AliasConfig, client: HttpClient) -> Result<Self> {
        let cfg_err = |m: String| Error::config(format!("alias `{name}`: {m}"));
        let mut base = Url::parse(&cfg.base_url)
            .map_err(|e| cfg_err(format!("base_url: `{}` is not a URL: {e}", cfg.base_url)))?;
        base.set_query(None);
        base.set_fragment(None);
        let auth = match (&cfg.credential, &cfg.auth) {
            (Some(_), Some(a)) => Some(compile_auth(a).map_err(cfg_err)?),
            (None, None) => None,
            _ => {
                return Err(cfg_err(
                    "`credential` and `auth` go together (set both or neither)".into(),
                ));
            }
        };
        Ok(Self {
            name: name.to_owned(),
            base,
            credential: cfg.credential.clone(),
            auth,
            client,
        })
    }

    /// The credential name the alias applies, if any.
    pub(crate) fn credential(&self) -> Option<&str> {
        self.credential.as_deref()
    }

    /// The base path without its trailing `/` (empty for the root).
    fn base_path(&self) -> &str {
        self.base.path().trim_end_matches('/')
    }

    /// Whether `url` is in the pinned origin and at or below the base path.
    fn contains(&self, url: &Url) -> bool {
        let base = self.base_path();
        same_origin(url, &self.base)
            && url.username().is_empty()
            && url.password().is_none()
            && (base.is_empty()
                || url.path() == base
                || url
                    .path()
                    .strip_prefix(base)
                    .is_some_and(|r| r.starts_with('/')))
    }

    /// The URL for a checked path and query.
    pub(crate) fn url_for(&self, path: &str, query: Option<&str>) -> Result<Url> {
        check_path(path)?;
        let mut url = self.base.clone();
        url.set_path(&format!("{}{path}", self.base_path()));
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            check_query(q)?;
            url.set_query(Some(q));
        }
        if !self.contains(&url) {
            return Err(Error::new(
                ErrorKind::SafetyRefused,
                format!(
                    "path: the request would leave the base URL of alias `{}`",
                    self.name
                ),
            ));
        }
        Ok(url)
    }

    /// Sends one request with the credential applied, following same-origin redirects that
    /// stay below the base path, and returns the decoded, capped response.
    pub(crate) async fn send(
        &self,
        out: Outgoing<'_>,
        secret: Option<&SecretValue>,
        max_bytes: u64,
        timeout: Duration,
    ) -> Result<ActionResponse> {
        let mut url = self.url_for(out.path, out.query)?;
        let mut headers = HeaderMap::new();
        for (k, v) in out.headers {
            if is_dropped_request_header(k) {
                continue;
            }
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                Error::new(
                    ErrorKind::InvalidParameter,
                    format!(
                        "headers: `{}` is not a valid header name",
                        k.chars()
                            .filter(char::is_ascii_graphic)
                            .take(40)
                            .collect::<String>()
                    ),
                )
            })?;
            if let Some(Auth::Header { name: n, .. }) = &self.auth
                && *n == name
            {
                continue;
            }
            let value = HeaderValue::from_str(v).map_err(|_| {
                Error::new(
                    ErrorKind::InvalidParameter,
                    format!("headers: the value of `{name}` holds bytes a header cannot carry"),
                )
            })?;
            headers.append(name, value);
        }
        let owner = format!("alias `{}`", self.name);
        let mut method = Method::from_bytes(out.method.as_bytes())
            .map_err(|_| Error::internal("a checked method did not parse"))?;
        let mut body = (!out.body.is_empty()).then(|| Bytes::copy_from_slice(out.body));
        let mut hops = 0;
        loop {
            let host = authority(&url);
            egress::check_literal_host(&url, &self.client.allow)?;
            let mut send_url = url.clone();
            let mut send_headers = headers.clone();
            if let (Some(auth), Some(secret)) = (&self.auth, secret) {
                super::apply_auth(
                    auth,
                    secret,
                    &mut send_url,
                    &mut send_headers,
                    self.credential.as_deref().unwrap_or(""),
                    &owner,
                )?;
            }
            let mut req = reqwest::Request::new(method.clone(), send_url);
            *req.headers_mut() = send_headers;
            if let Some(b) = &body {
                *req.body_mut() = Some(reqwest::Body::from(b.clone()));
            }
            // The timeout bounds the wait for the response head only: a streamed body (server-
            // sent events) may last as long as the client keeps reading.
            let resp = tokio::time::timeout(timeout, self.client.inner.execute(req))
                .await
                .map_err(|_| {
                    Error::new(
                        ErrorKind::Timeout,
                        format!("{host} did not answer within {} s", timeout.as_secs()),
                    )
                })?
                .map_err(|e| upstream_error(e, &host, timeout, secret))?;
            if hops < MAX_REDIRECTS
                && let Some((next, m, b)) = self.redirect(&resp, &url, &method, body.as_ref())
            {
                hops += 1;
                url = next;
                method = m;
                body = b;
                continue;
            }
            return into_response(resp, &method, secret, max_bytes, &owner, timeout);
        }
    }

    /// The next URL, method and body when `resp` is a redirect that stays in the alias.
    fn redirect(
        &self,
        resp: &reqwest::Response,
        current: &Url,
        method: &Method,
        body: Option<&Bytes>,
    ) -> Option<(Url, Method, Option<Bytes>)> {
        let status = resp.status().as_u16();
        if !matches!(status, 301 | 302 | 303 | 307 | 308) {
            return None;
        }
        let location = resp.headers().get(LOCATION)?.to_str().ok()?;
        let mut next = current.join(location).ok()?;
        next.set_fragment(None);
        if !self.contains(&next) {
            return None;
        }
        let to_get = (status == 303 && *method != Method::HEAD)
            || (matches!(status, 301 | 302) && *method == Method::POST);
        if to_get {
            Some((next, Method::GET, None))
        } else {
            Some((next, method.clone(), body.cloned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_table() {
        let cases: &[(&str, bool)] = &[
            ("/", true),
            ("/anything", true),
            ("/anything/a/b/", true),
            ("/a%20b", true),
            ("/v1/x.json", true),
            ("/..", false),
            ("/a/../b", false),
            ("/a/%2e%2e/b", false),
            ("/a/%2E./b", false),
            ("/a/.", false),
            ("/a/%2fb", false),
            ("/a/%5cb", false),
            ("/a\\b", false),
            ("//evil.example/x", false),
            ("/a//b", false),
            ("http://evil.example/x", false),
            ("evil", false),
            ("", false),
            ("/a?b=1", false),
            ("/a#b", false),
            ("/a b", false),
            ("/a%zz", false),
            ("/a%2", false),
        ];
        for (path, ok) in cases {
            assert_eq!(check_path(path).is_ok(), *ok, "{path}");
        }
    }

    #[test]
    fn methods_and_headers() {
        assert_eq!(check_method("get").unwrap(), "GET");
        assert!(check_method("TRACE").is_err());
        assert!(check_method("CONNECT").is_err());
        for h in [
            "Authorization",
            "cookie",
            "Proxy-Authorization",
            "proxy-connection",
            "Host",
            "Connection",
            "Transfer-Encoding",
        ] {
            assert!(is_dropped_request_header(h), "{h}");
        }
        assert!(!is_dropped_request_header("X-Custom"));
        assert!(!is_dropped_request_header("Content-Type"));
    }

    #[test]
    fn urls_stay_below_the_base() {
        let cfg = AliasConfig {
            description: None,
            credential: None,
            base_url: "https://api.example.com/v1/".into(),
            auth: None,
            allow: vec![],
        };
        let client = HttpClient::new(&Default::default()).unwrap();
        let a = HttpAlias::new("x", &cfg, client).unwrap();
        let u = a.url_for("/items/1", Some("a=1&b=2")).unwrap();
        assert_eq!(u.as_str(), "https://api.example.com/v1/items/1?a=1&b=2");
        assert!(a.url_for("/../admin", None).is_err());
        assert!(a.url_for("//other.example/x", None).is_err());
        assert!(a.contains(&Url::parse("https://api.example.com/v1").unwrap()));
        assert!(!a.contains(&Url::parse("https://api.example.com/v10/x").unwrap()));
        assert!(!a.contains(&Url::parse("https://other.example/v1/x").unwrap()));
        assert!(!a.contains(&Url::parse("http://api.example.com/v1/x").unwrap()));
    }
}
