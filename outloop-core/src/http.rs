//! HTTP actions: [`HttpAction`] performs one configured `[actions."<name>"]` call through a
//! shared [`HttpClient`].
//!
//! This is step 5 of the request flow in DESIGN.md. Parameters fill only the slots the action
//! declares (path segments percent-encoded, query values, header values, JSON body leaves) and
//! never change the scheme, host or port. The credential is applied last, only where `auth`
//! says. Egress to loopback, private and link-local addresses is refused unless
//! `[egress] allow_private` covers it, and the address checked is the address connected to.
//! Redirects are followed only within the pinned origin; a redirect elsewhere is returned as
//! the result, so the credential never goes there. Responses are decoded (gzip, deflate,
//! brotli), an encoding that cannot be decoded is refused, and the decoded body is capped.
//!
//! Redirect semantics, as browsers and reqwest do them: 307 and 308 keep the method and body;
//! 303 turns anything but HEAD into a GET without a body; 301 and 302 turn a POST into a GET
//! without a body and keep other methods. After [`MAX_REDIRECTS`] followed hops, the next 3xx
//! is returned as the result rather than followed.
//!
//! Decoding is done here, not by reqwest: every coding named by every `Content-Encoding`
//! line (`gzip`, `x-gzip`, `deflate`, `br`, `identity`) is undone in reverse order, so a body
//! encoded several times is decoded in full before redaction; any other coding is refused.

mod alias;
mod egress;
mod params;
mod template;

#[cfg(test)]
mod tests;

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use futures_util::Stream;
use ipnet::IpNet;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use url::Url;

use crate::action::{Action, ActionResponse, BodyStream, Credentials, Params, RawParams};
use crate::config::{
    ActionConfig, AuthConfig, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_TIMEOUT_SECS, EgressConfig,
    HttpMethod,
};
use crate::error::{Error, ErrorKind, Result};
use crate::secret::SecretValue;

pub use alias::{ALIAS_METHODS, check_method, check_path, check_query, is_dropped_request_header};
pub(crate) use alias::{HttpAlias, Outgoing};
pub use egress::is_restricted;
pub use params::{DEFAULT_MAX_LENGTH, validate_params};

use egress::{EgressRefused, EgressResolver};
use params::CompiledParams;
use template::{Template, UrlTemplate, authority, same_origin};

/// How many same-origin redirects one call follows before returning the last 3xx response.
pub const MAX_REDIRECTS: usize = 5;

/// How long establishing one connection (TCP and TLS) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The shared HTTP client: one per broker, cheap to clone (clones share one connection pool).
///
/// It never uses proxies from the environment, never follows redirects by itself (an
/// [`HttpAction`] follows same-origin ones), and resolves host names through a resolver that
/// drops every address [`is_restricted`] refuses unless `[egress] allow_private` covers it.
/// It speaks HTTP/1.1 and HTTP/2 (negotiated over TLS), and decodes gzip, deflate and brotli
/// response bodies. Safe to share between threads and tasks.
#[derive(Clone)]
pub struct HttpClient {
    inner: reqwest::Client,
    allow: Arc<Vec<IpNet>>,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("allow_private", &self.allow)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// Builds the client for the host's `[egress]` settings.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Internal`] when the TLS backend cannot be initialised.
    pub fn new(egress: &EgressConfig) -> Result<Self> {
        let allow = Arc::new(egress.allow_private.clone());
        let mut accept = HeaderMap::new();
        accept.insert(
            reqwest::header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip, deflate, br"),
        );
        let inner = reqwest::Client::builder()
            .default_headers(accept)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .dns_resolver(Arc::new(EgressResolver {
                allow: Arc::clone(&allow),
            }))
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("outloop/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                Error::internal("cannot build the HTTP client").with_source(e.without_url())
            })?;
        Ok(Self { inner, allow })
    }
}

/// How the credential is applied, with the header name parsed once.
#[derive(Debug, Clone)]
enum Auth {
    Bearer,
    Header { name: HeaderName, format: String },
    Basic { username: String },
    Query { name: String },
}

/// Parses an `auth` table once: the header name checked, the format defaulted and checked.
/// The error text names the `auth.*` key at fault.
fn compile_auth(a: &AuthConfig) -> std::result::Result<Auth, String> {
    Ok(match a {
        AuthConfig::Bearer => Auth::Bearer,
        AuthConfig::Header { name: h, format } => {
            let header = HeaderName::from_bytes(h.as_bytes())
                .map_err(|_| format!("auth.name: `{h}` is not a valid header name"))?;
            let format = format.clone().unwrap_or_else(|| "{secret}".to_owned());
            if !format.contains("{secret}") {
                return Err("auth.format must contain `{secret}`".into());
            }
            Auth::Header {
                name: header,
                format,
            }
        }
        AuthConfig::Basic { username } => {
            if username.contains(':') {
                return Err("auth.username must not contain `:`".into());
            }
            Auth::Basic {
                username: username.clone(),
            }
        }
        AuthConfig::Query { name: q } => {
            if q.is_empty() {
                return Err("auth.name must not be empty".into());
            }
            Auth::Query { name: q.clone() }
        }
    })
}

/// One compiled HTTP action: the pinned URL, templates, parameter rules and credential
/// placement from an [`ActionConfig`], ready to execute many times.
///
/// Safe to share between tasks; [`Action::execute`] takes `&self`.
pub struct HttpAction {
    name: String,
    description: String,
    credential: Option<String>,
    auth: Option<Auth>,
    /// `credential_headers`: each header carries one more credential's value, whole.
    credential_headers: Vec<(HeaderName, String)>,
    method: Method,
    url: UrlTemplate,
    query: Vec<(String, Template)>,
    headers: Vec<(HeaderName, Template)>,
    body: Option<serde_json::Value>,
    /// `form`: field name → value template, sent form-encoded.
    form: Vec<(String, Template)>,
    params: CompiledParams,
    timeout: Duration,
    max_bytes: u64,
    client: HttpClient,
}

impl fmt::Debug for HttpAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpAction")
            .field("name", &self.name)
            .field("method", &self.method)
            .field("origin", &self.url.origin().as_str())
            .field("credential", &self.credential)
            .finish_non_exhaustive()
    }
}

fn method_of(m: HttpMethod) -> Method {
    match m {
        HttpMethod::Get => Method::GET,
        HttpMethod::Head => Method::HEAD,
        HttpMethod::Post => Method::POST,
        HttpMethod::Put => Method::PUT,
        HttpMethod::Patch => Method::PATCH,
        HttpMethod::Delete => Method::DELETE,
    }
}

fn body_placeholders(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => {
            out.extend(Template::parse(s).params().map(str::to_owned));
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| body_placeholders(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| body_placeholders(x, out)),
        _ => {}
    }
}

impl HttpAction {
    /// Compiles action `name` from its config: parses the URL and templates and compiles the
    /// parameter patterns once.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] naming the action when the URL is not a pinned http(s) URL with
    /// placeholders only in the path, a placeholder has no declared parameter, a header name is
    /// invalid, a pattern does not compile, `credential` and `auth` are not both set or both
    /// unset, a GET or HEAD action has a body, or a timeout or size cap is zero.
    pub fn new(name: &str, config: &ActionConfig, client: HttpClient) -> Result<Self> {
        let cfg_err = |msg: String| Error::config(format!("action `{name}`: {msg}"));
        let url = UrlTemplate::parse(&config.url).map_err(|m| cfg_err(format!("url: {m}")))?;
        let query: Vec<(String, Template)> = config
            .query
            .iter()
            .map(|(k, v)| (k.clone(), Template::parse(v)))
            .collect();
        let mut headers = Vec::new();
        for (k, v) in &config.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| cfg_err(format!("headers: `{k}` is not a valid header name")))?;
            headers.push((name, Template::parse(v)));
        }

        let mut used: Vec<String> = url.params().map(str::to_owned).collect();
        for (_, t) in &query {
            used.extend(t.params().map(str::to_owned));
        }
        for (_, t) in &headers {
            used.extend(t.params().map(str::to_owned));
        }
        if let Some(b) = &config.body {
            body_placeholders(b, &mut used);
        }
        let form: Vec<(String, Template)> = config
            .form
            .iter()
            .map(|(k, v)| (k.clone(), Template::parse(v)))
            .collect();
        for (_, t) in &form {
            used.extend(t.params().map(str::to_owned));
        }
        if !form.is_empty() && (config.body.is_some() || config.method.is_read_only()) {
            return Err(cfg_err(
                "form: not with `body`, and not on GET or HEAD".into(),
            ));
        }
        if let Some(p) = used
            .iter()
            .find(|p| !config.params.contains_key(p.as_str()))
        {
            return Err(cfg_err(format!(
                "placeholder `{{{p}}}` has no declared parameter in `params`"
            )));
        }
        if config.body.is_some() && config.method.is_read_only() {
            return Err(cfg_err(format!(
                "a {} request has no body",
                config.method.as_str()
            )));
        }

        let auth = match (&config.credential, &config.auth) {
            (Some(_), None) => return Err(cfg_err("`auth` is required with `credential`".into())),
            (None, Some(_)) => return Err(cfg_err("`credential` is required with `auth`".into())),
            (None, None) => None,
            (Some(_), Some(a)) => Some(compile_auth(a).map_err(cfg_err)?),
        };

        let mut credential_headers = Vec::new();
        for (h, c) in &config.credential_headers {
            let header = HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                cfg_err(format!(
                    "credential_headers: `{h}` is not a valid header name"
                ))
            })?;
            if headers.iter().any(|(n, _)| *n == header)
                || matches!(&auth, Some(Auth::Header { name, .. }) if *name == header)
                || header == AUTHORIZATION
            {
                return Err(cfg_err(format!(
                    "credential_headers: `{h}` is also set by `headers` or `auth`"
                )));
            }
            credential_headers.push((header, c.clone()));
        }

        let timeout_secs = config.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS);
        if timeout_secs == 0 {
            return Err(cfg_err("timeout_secs must be at least 1".into()));
        }
        let max_bytes = config
            .max_response_bytes
            .unwrap_or(DEFAULT_MAX_RESPONSE_BYTES);
        if max_bytes == 0 {
            return Err(cfg_err("max_response_bytes must be at least 1".into()));
        }
        let params =
            CompiledParams::compile(&config.params).map_err(|e| cfg_err(e.message().to_owned()))?;

        Ok(Self {
            name: name.to_owned(),
            description: config.description.clone().unwrap_or_default(),
            credential: config.credential.clone(),
            auth,
            credential_headers,
            method: method_of(config.method),
            url,
            query,
            headers,
            body: config.body.clone(),
            form,
            params,
            timeout: Duration::from_secs(timeout_secs),
            max_bytes,
            client,
        })
    }

    /// The request as the action declares it, before the credential: URL with query, headers,
    /// and the JSON or form body bytes (a form body sets its `Content-Type` unless `headers`
    /// does).
    fn prepare(&self, params: &Params) -> Result<(Url, HeaderMap, Option<Bytes>)> {
        let mut url = self.url.build(params)?;
        template::append_query(&mut url, &self.query, params);
        let mut headers = HeaderMap::new();
        for (k, v) in template::render_headers(&self.name, &self.headers, params)? {
            headers.insert(k, v);
        }
        let body = match &self.body {
            Some(t) => match template::render_body(t, params) {
                Some(v) => Some(Bytes::from(serde_json::to_vec(&v).map_err(|e| {
                    Error::internal(format!("action `{}`: body: {e}", self.name))
                })?)),
                None => None,
            },
            None => None,
        };
        if !self.form.is_empty() {
            let mut ser = url::form_urlencoded::Serializer::new(String::new());
            for (k, t) in &self.form {
                if !t.all_absent(params) {
                    ser.append_pair(k, &t.render(params));
                }
            }
            if !headers.contains_key(CONTENT_TYPE) {
                headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/x-www-form-urlencoded"),
                );
            }
            return Ok((url, headers, Some(Bytes::from(ser.finish()))));
        }
        Ok((url, headers, body))
    }

    /// One request with the credential applied where `auth` says, and each `extra`
    /// (header, credential name, value) from `credential_headers`, as the last step.
    #[allow(clippy::too_many_arguments)]
    fn request(
        &self,
        method: &Method,
        url: &Url,
        headers: &HeaderMap,
        body: Option<&Bytes>,
        secret: Option<&SecretValue>,
        extra: &[(&HeaderName, &str, &SecretValue)],
        timeout: Duration,
    ) -> Result<reqwest::Request> {
        let mut url = url.clone();
        let mut headers = headers.clone();
        match body {
            Some(_) => {
                if !headers.contains_key(CONTENT_TYPE) {
                    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                }
            }
            None => {
                headers.remove(CONTENT_TYPE);
            }
        }
        if let (Some(auth), Some(secret)) = (&self.auth, secret) {
            apply_auth(
                auth,
                secret,
                &mut url,
                &mut headers,
                self.credential.as_deref().unwrap_or(""),
                &format!("action `{}`", self.name),
            )?;
        }
        for (header, credential, value) in extra {
            let mut v = HeaderValue::from_bytes(value.expose_secret()).map_err(|_| {
                Error::new(
                    ErrorKind::InvalidSecret,
                    format!(
                        "credential `{credential}` of action `{}` cannot be sent in header `{header}`: it holds bytes a header cannot carry (such as CR, LF or NUL)",
                        self.name
                    ),
                )
            })?;
            v.set_sensitive(true);
            headers.insert((*header).clone(), v);
        }
        let mut req = reqwest::Request::new(method.clone(), url);
        *req.headers_mut() = headers;
        *req.timeout_mut() = Some(timeout);
        if let Some(b) = body {
            *req.body_mut() = Some(reqwest::Body::from(b.clone()));
        }
        Ok(req)
    }

    /// The next URL, method and body when `resp` is a redirect this action follows: a 301,
    /// 302, 303, 307 or 308 whose `Location` stays in the pinned origin.
    fn redirect(
        &self,
        resp: &reqwest::Response,
        current: &Url,
        method: &Method,
        body: Option<&Bytes>,
    ) -> Option<(Url, Method, Option<Bytes>)> {
        let status = resp.status();
        if !matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
            return None;
        }
        let location = resp.headers().get(LOCATION)?.to_str().ok()?;
        let mut next = current.join(location).ok()?;
        next.set_fragment(None);
        if !same_origin(&next, self.url.origin()) {
            return None;
        }
        // User info in a Location would become basic auth; it has no place here.
        let _ = next.set_username("");
        let _ = next.set_password(None);
        let to_get = (status == StatusCode::SEE_OTHER && *method != Method::HEAD)
            || (matches!(status.as_u16(), 301 | 302) && *method == Method::POST);
        if to_get {
            Some((next, Method::GET, None))
        } else {
            Some((next, method.clone(), body.cloned()))
        }
    }

    fn response(
        &self,
        resp: reqwest::Response,
        method: &Method,
        secret: Option<&SecretValue>,
    ) -> Result<ActionResponse> {
        into_response(
            resp,
            method,
            secret,
            self.max_bytes,
            &format!("action `{}`", self.name),
            self.timeout,
        )
    }
}

/// Turns an upstream response into an [`ActionResponse`]: refuses a content coding outloop
/// cannot decode and a declared length over `max_bytes`, decodes the body, and caps the
/// decoded body at `max_bytes`. `owner` (e.g. ``action `x` ``) names the caller in errors.
fn into_response(
    resp: reqwest::Response,
    method: &Method,
    secret: Option<&SecretValue>,
    max_bytes: u64,
    owner: &str,
    timeout: Duration,
) -> Result<ActionResponse> {
    let status = resp.status();
    let host = authority(resp.url());
    let is_head = *method == Method::HEAD;
    let mut codings = Vec::new();
    if !is_head {
        for value in resp.headers().get_all(CONTENT_ENCODING) {
            for token in value.as_bytes().split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.is_empty() || token.eq_ignore_ascii_case(b"identity") {
                    continue;
                }
                if let Some(c) = Coding::parse(token) {
                    codings.push(c);
                } else {
                    let shown: String = String::from_utf8_lossy(token)
                        .chars()
                        .filter(|c| c.is_ascii_graphic())
                        .take(40)
                        .collect();
                    return Err(Error::new(
                        ErrorKind::SafetyRefused,
                        scrub(
                            format!(
                                "response uses content-encoding `{shown}` that outloop cannot decode; refused rather than passed through unread"
                            ),
                            secret,
                        ),
                    ));
                }
            }
        }
        let declared = resp
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if let Some(len) = declared.filter(|&len| len > max_bytes) {
            return Err(Error::new(
                ErrorKind::SafetyRefused,
                format!(
                    "response body exceeds the {max_bytes}-byte cap of {owner} (Content-Length: {len})"
                ),
            ));
        }
    }
    let decoded = !codings.is_empty();
    let headers = resp
        .headers()
        .iter()
        // Once decoded, the encoding and the encoded length no longer describe the body.
        .filter(|(k, _)| !(decoded && (*k == CONTENT_ENCODING || *k == CONTENT_LENGTH)))
        .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect();
    let body: BodyStream = if is_head {
        Box::pin(futures_util::stream::empty())
    } else {
        Box::pin(CappedBody {
            inner: decode(resp.bytes_stream(), &codings, host, timeout),
            total: 0,
            cap: max_bytes,
            action: owner.to_owned(),
            done: false,
        })
    };
    Ok(ActionResponse {
        status: status.as_u16(),
        status_text: status.canonical_reason().unwrap_or("").to_owned(),
        headers,
        body,
    })
}

/// Applies `secret` where `auth` says: the `Authorization` header, a named header, or a query
/// parameter. `credential` and `owner` (e.g. ``action `x` ``) only name things in the error.
fn apply_auth(
    auth: &Auth,
    secret: &SecretValue,
    url: &mut Url,
    headers: &mut HeaderMap,
    credential: &str,
    owner: &str,
) -> Result<()> {
    let bytes = secret.expose_secret();
    let sensitive = |mut v: Vec<u8>| {
        let r = HeaderValue::from_bytes(&v).map(|mut h| {
            h.set_sensitive(true);
            h
        });
        zeroize::Zeroize::zeroize(&mut v);
        r.map_err(|_| {
            Error::new(
                ErrorKind::InvalidSecret,
                format!(
                    "credential `{credential}` of {owner} cannot be sent in a header: it holds bytes a header cannot carry (such as CR, LF or NUL)"
                ),
            )
        })
    };
    match auth {
        Auth::Bearer => {
            let mut v = b"Bearer ".to_vec();
            v.extend_from_slice(bytes);
            headers.insert(AUTHORIZATION, sensitive(v)?);
        }
        Auth::Header { name, format } => {
            let mut v = Vec::new();
            for (i, part) in format.split("{secret}").enumerate() {
                if i > 0 {
                    v.extend_from_slice(bytes);
                }
                v.extend_from_slice(part.as_bytes());
            }
            headers.insert(name.clone(), sensitive(v)?);
        }
        Auth::Basic { username } => {
            let mut plain = format!("{username}:").into_bytes();
            plain.extend_from_slice(bytes);
            let encoded = base64::engine::general_purpose::STANDARD.encode(&plain);
            zeroize::Zeroize::zeroize(&mut plain);
            headers.insert(AUTHORIZATION, sensitive(format!("Basic {encoded}").into())?);
        }
        Auth::Query { name } => set_query_secret(url, name, bytes),
    }
    Ok(())
}

/// Puts the secret in query parameter `name`, replacing any pair of that name already there.
fn set_query_secret(url: &mut Url, name: &str, secret: &[u8]) {
    if url.query_pairs().any(|(k, _)| k == name) {
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != name)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.set_query(None);
        if !kept.is_empty() {
            url.query_pairs_mut().extend_pairs(kept);
        }
    }
    let name: String = url::form_urlencoded::byte_serialize(name.as_bytes()).collect();
    let value: String = url::form_urlencoded::byte_serialize(secret).collect();
    let query = match url.query() {
        Some(q) if !q.is_empty() => format!("{q}&{name}={value}"),
        _ => format!("{name}={value}"),
    };
    url.set_query(Some(&query));
}

/// Replaces the secret in an upstream-derived message, in case a peer reflected it.
fn scrub(message: String, secret: Option<&SecretValue>) -> String {
    match secret.map(|s| String::from_utf8_lossy(s.expose_secret()).into_owned()) {
        Some(s) if !s.is_empty() && message.contains(&s) => message.replace(&s, "[REDACTED]"),
        _ => message,
    }
}

/// The first error of type `T` in `err`'s source chain.
fn find_source<'a, T: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        cur = e.source();
    }
    None
}

/// A short cause for a transport error: the innermost source's text (an OS, DNS or TLS
/// message), never a URL.
fn short_cause(err: &reqwest::Error, secret: Option<&SecretValue>) -> String {
    let mut deepest = None;
    let mut cur = std::error::Error::source(err);
    while let Some(e) = cur {
        deepest = Some(e);
        cur = e.source();
    }
    let text = deepest.map(|e| e.to_string()).unwrap_or_default();
    let fallback = if err.is_connect() {
        "connection failed"
    } else if err.is_body() || err.is_decode() {
        "reading the response failed"
    } else {
        "request failed"
    };
    if text.is_empty() || text.contains("://") {
        return fallback.to_owned();
    }
    let short: String = text.chars().take(200).collect();
    scrub(short, secret)
}

/// Maps a reqwest error to an outloop error naming only the host.
fn upstream_error(
    err: reqwest::Error,
    host: &str,
    timeout: Duration,
    secret: Option<&SecretValue>,
) -> Error {
    if let Some(refused) = find_source::<EgressRefused>(&err) {
        return Error::new(ErrorKind::SafetyRefused, refused.to_string());
    }
    if err.is_timeout() {
        return Error::new(
            ErrorKind::Timeout,
            format!("{host} did not answer within {} s", timeout.as_secs()),
        )
        .with_source(err.without_url());
    }
    let cause = short_cause(&err, secret);
    let what = if err.is_body() || err.is_decode() {
        format!("reading the response from {host} failed: {cause}")
    } else {
        format!("cannot reach {host}: {cause}")
    };
    Error::new(ErrorKind::UpstreamUnreachable, what).with_source(err.without_url())
}

/// A content coding outloop decodes (RFC 9110 section 8.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    /// `gzip` or `x-gzip` (RFC 1952).
    Gzip,
    /// `deflate`: the zlib format (RFC 1950), as RFC 9110 defines it.
    Deflate,
    /// `br` (RFC 7932).
    Brotli,
}

impl Coding {
    fn parse(token: &[u8]) -> Option<Self> {
        match token.to_ascii_lowercase().as_slice() {
            b"gzip" | b"x-gzip" => Some(Coding::Gzip),
            b"deflate" => Some(Coding::Deflate),
            b"br" => Some(Coding::Brotli),
            _ => None,
        }
    }
}

type Chunks = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// The body with every coding undone, last applied first; errors mapped to ours.
fn decode(
    raw: impl Stream<Item = reqwest::Result<Bytes>> + Send + 'static,
    codings: &[Coding],
    host: String,
    timeout: Duration,
) -> Chunks {
    use futures_util::{StreamExt, TryStreamExt};
    use tokio::io::{AsyncBufRead, BufReader};

    if codings.is_empty() {
        return Box::pin(raw.map_err(move |e| upstream_error(e, &host, timeout, None)));
    }
    let mut reader: Pin<Box<dyn AsyncBufRead + Send>> = Box::pin(
        tokio_util::io::StreamReader::new(raw.map_err(std::io::Error::other)),
    );
    for c in codings.iter().rev() {
        reader = match c {
            Coding::Gzip => Box::pin(BufReader::new(
                async_compression::tokio::bufread::GzipDecoder::new(reader),
            )),
            Coding::Deflate => Box::pin(BufReader::new(
                async_compression::tokio::bufread::ZlibDecoder::new(reader),
            )),
            Coding::Brotli => Box::pin(BufReader::new(
                async_compression::tokio::bufread::BrotliDecoder::new(reader),
            )),
        };
    }
    let names: Vec<&'static str> = codings
        .iter()
        .map(|c| match c {
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
            Coding::Brotli => "br",
        })
        .collect();
    let names = names.join(", ");
    Box::pin(
        tokio_util::io::ReaderStream::new(reader).map(move |item| {
            item.map_err(|e| match e.into_inner().map(|b| b.downcast::<reqwest::Error>()) {
                Some(Ok(upstream)) => upstream_error(*upstream, &host, timeout, None),
                _ => Error::new(
                    ErrorKind::SafetyRefused,
                    format!(
                        "the response from {host} is not valid `{names}` content; refused rather than passed through undecoded"
                    ),
                ),
            })
        }),
    )
}

/// The response body, failing closed once the running total of decoded bytes passes the cap.
struct CappedBody {
    inner: Chunks,
    total: u64,
    cap: u64,
    /// Who set the cap, e.g. ``action `x` ``.
    action: String,
    done: bool,
}

impl Stream for CappedBody {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let item = match self.inner.as_mut().poll_next(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(item) => item,
        };
        match item {
            None => {
                self.done = true;
                Poll::Ready(None)
            }
            Some(Ok(chunk)) => {
                self.total = self.total.saturating_add(chunk.len() as u64);
                if self.total > self.cap {
                    self.done = true;
                    return Poll::Ready(Some(Err(Error::new(
                        ErrorKind::SafetyRefused,
                        format!(
                            "response body exceeds the {}-byte cap of {}",
                            self.cap, self.action
                        ),
                    ))));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Some(Err(e)) => {
                self.done = true;
                Poll::Ready(Some(Err(e)))
            }
        }
    }
}

#[async_trait]
impl Action for HttpAction {
    fn name(&self) -> &str {
        &self.name
    }

    fn method(&self) -> &str {
        self.method.as_str()
    }

    fn description(&self) -> &str {
        &self.description
    }

    fn credentials(&self) -> Vec<String> {
        let mut out: Vec<String> = self.credential.iter().cloned().collect();
        for (_, c) in &self.credential_headers {
            if !out.contains(c) {
                out.push(c.clone());
            }
        }
        out
    }

    fn params_schema(&self) -> serde_json::Value {
        self.params.schema()
    }

    fn validate(&self, raw: &RawParams) -> Result<Params> {
        self.params.validate(Some(&self.name), raw)
    }

    async fn execute(&self, params: &Params, credentials: &Credentials) -> Result<ActionResponse> {
        let secret = match &self.credential {
            Some(c) => Some(credentials.get(c).ok_or_else(|| {
                Error::internal(format!(
                    "credential `{c}` of action `{}` was not resolved before execution",
                    self.name
                ))
            })?),
            None => None,
        };
        let mut extra = Vec::with_capacity(self.credential_headers.len());
        for (header, c) in &self.credential_headers {
            let value = credentials.get(c).ok_or_else(|| {
                Error::internal(format!(
                    "credential `{c}` of action `{}` was not resolved before execution",
                    self.name
                ))
            })?;
            extra.push((header, c.as_str(), value));
        }
        let (mut url, headers, mut body) = self.prepare(params)?;
        let mut method = self.method.clone();
        let deadline = Instant::now() + self.timeout;
        let mut hops = 0;
        loop {
            let host = authority(&url);
            egress::check_literal_host(&url, &self.client.allow)?;
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!("{host} did not answer within {} s", self.timeout.as_secs()),
                ));
            }
            let req = self.request(
                &method,
                &url,
                &headers,
                body.as_ref(),
                secret,
                &extra,
                remaining,
            )?;
            let resp = self
                .client
                .inner
                .execute(req)
                .await
                .map_err(|e| upstream_error(e, &host, self.timeout, secret))?;
            if hops < MAX_REDIRECTS
                && let Some((next, m, b)) = self.redirect(&resp, &url, &method, body.as_ref())
            {
                hops += 1;
                url = next;
                method = m;
                body = b;
                continue;
            }
            return self.response(resp, &method, secret);
        }
    }
}
