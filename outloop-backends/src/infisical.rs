//! The Infisical backend: `infisical://<project-id>/<environment>/<secret-path…>/<NAME>` read
//! over Infisical's REST API with a machine identity's Universal Auth.
//!
//! Requests (Infisical/infisical `backend/src/server/routes/v1/identity-universal-auth-router.ts`,
//! `routes/v4/secret-router.ts`, `routes/v3/secret-router.ts`, `server/plugins/error-handler.ts`;
//! infisical.com/docs/documentation/platform/identities/universal-auth,
//! infisical.com/docs/api-reference/endpoints/secrets/read):
//!
//! - login: `POST /api/v1/auth/universal-auth/login` with `{"clientId","clientSecret"}`,
//!   answered with `{"accessToken","expiresIn","accessTokenMaxTTL","tokenType":"Bearer"}`;
//! - read: `GET /api/v4/secrets/{name}?projectId=&environment=&secretPath=`, answered with
//!   `{"secret":{"secretKey","secretValue","secretValueHidden",…}}`; on servers without v4
//!   (a Fastify route 404) the deprecated `GET /api/v3/secrets/raw/{name}?workspaceId=…`;
//! - list: `GET /api/v4/secrets?projectId=&environment=&secretPath=` (`{"secrets":[…]}`);
//! - errors: `{"reqId","statusCode","message","error"}`; an expired or malformed token is a
//!   403 with `"error":"TokenError"`, a TTL that ran out server-side a 401.
//!
//! The access token lives in memory with its expiry. When it is within 60 s of expiring, or
//! a read answers 401 or 403 `TokenError`, the backend logs in again (it does not renew) and
//! retries that read once. A refused login is never retried automatically: Universal Auth
//! locks an identity after 3 failed logins, so after a refusal the backend answers
//! [`ErrorKind::Unauthenticated`] without calling Infisical for [`LOGIN_BACKOFF`].
//! A value Infisical hides (`"secretValueHidden": true`, `"<hidden-by-infisical>"`) is
//! permission denied, never a value.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use outloop_core::backend::{Capabilities, Health, Probe, SecretBackend, expect_kind};
use outloop_core::{BackendKind, Error, ErrorKind, Result, SecretRef, SecretValue};
use reqwest::Url;
use serde::Deserialize;

use crate::credential::{CredentialSource, Registry};
use crate::rest;

/// Infisical Cloud (US) when `url` is not set; the EU cloud is `https://eu.infisical.com`.
pub const DEFAULT_URL: &str = "https://app.infisical.com";

/// How long a refused login blocks further logins (Universal Auth's lockout is 300 s).
pub const LOGIN_BACKOFF: Duration = Duration::from_secs(300);

/// A token this close to its expiry is replaced by a fresh login before use.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// The placeholder Infisical sends instead of a value the caller may not read.
const HIDDEN: &[u8] = b"<hidden-by-infisical>";

const KEYS: &[&str] = &[
    "url",
    "client_id",
    "client_secret",
    "timeout_secs",
    "project_id",
    "environment",
    "secret_path",
];

struct Token {
    value: SecretValue,
    /// `None`: Infisical gave no expiry (`expiresIn` 0).
    stale_at: Option<Instant>,
}

#[derive(Default)]
struct AuthState {
    token: Option<Token>,
    refused_at: Option<Instant>,
    client_secret: Option<SecretValue>,
}

/// An Infisical backend instance (`[backends.<name>] kind = "infisical"`).
///
/// Settings: `url` (default `https://app.infisical.com`; a trailing `/api` is accepted),
/// `client_id` (the machine identity's client ID), `client_secret` (required: a secret
/// reference, never a literal), `timeout_secs` (default 30), and, for `list` only,
/// `project_id`, `environment` and `secret_path` (default `/`).
pub struct InfisicalBackend {
    name: String,
    api: Url,
    client_id: String,
    secret_source: CredentialSource,
    auth: tokio::sync::Mutex<AuthState>,
    own: Mutex<Vec<SecretValue>>,
    v3_only: AtomicBool,
    list_scope: Option<(String, String, String)>,
    http: reqwest::Client,
}

impl std::fmt::Debug for InfisicalBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InfisicalBackend")
            .field("name", &self.name)
            .field("api", &self.api.as_str())
            .field("client_id", &self.client_id)
            .field("client_secret", &self.secret_source.reference())
            .field("v3_only", &self.v3_only.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The Universal Auth login body; borrowed, so no unzeroized copy of the secret is made.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct LoginRequest<'a> {
    client_id: &'a str,
    client_secret: &'a str,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoginAnswer {
    #[serde(deserialize_with = "rest::secret_string")]
    access_token: Option<SecretValue>,
    #[serde(default)]
    expires_in: u64,
}

#[derive(Deserialize)]
struct SecretAnswer {
    secret: SecretBody,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecretBody {
    #[serde(default, deserialize_with = "rest::secret_string")]
    secret_value: Option<SecretValue>,
    #[serde(default)]
    secret_value_hidden: bool,
}

#[derive(Deserialize)]
struct ListAnswer {
    secrets: Vec<ListItem>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListItem {
    secret_key: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: String,
    #[serde(default)]
    message: serde_json::Value,
}

/// What one authenticated request came to.
enum Outcome {
    Ok(rest::Response),
    /// 401, or 403 `TokenError`: log in again and retry once.
    Relogin,
    /// 404 from a server that has no such route (Fastify's default 404), not Infisical's.
    NoRoute,
    Err(Error),
}

impl InfisicalBackend {
    /// Builds the backend from its `[backends.<name>]` settings; the client secret is read
    /// through `registry` at the first login.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] naming the key when a setting is missing, unknown or malformed,
    /// or when `client_secret` is not a secret reference.
    pub fn from_settings(
        name: &str,
        settings: &BTreeMap<String, toml::Value>,
        registry: &Registry,
    ) -> Result<Self> {
        rest::deny_unknown(name, settings, KEYS)?;
        let secret_source =
            CredentialSource::from_settings(name, "client_secret", settings, registry, true)?
                .ok_or_else(|| Error::internal("a required credential came back empty"))?;
        let client_id = rest::opt_str(name, "client_id", settings)?.ok_or_else(|| {
            Error::config(format!(
                "backends.{name}.client_id: missing; give the machine identity's client ID"
            ))
        })?;
        let raw = rest::opt_str(name, "url", settings)?;
        let raw = raw.as_deref().unwrap_or(DEFAULT_URL);
        let mut api = rest::base_url(name, "url", raw)?;
        // Accept the CLI's form with `/api` (Infisical/cli packages/cmd/root.go) and store the
        // root; paths below add `/api/…` themselves.
        let path = api.path().trim_end_matches('/').to_owned();
        api.set_path(path.strip_suffix("/api").unwrap_or(&path));
        let list_scope = match (
            rest::opt_str(name, "project_id", settings)?,
            rest::opt_str(name, "environment", settings)?,
        ) {
            (Some(p), Some(e)) => Some((
                p,
                e,
                rest::opt_str(name, "secret_path", settings)?.unwrap_or_else(|| "/".into()),
            )),
            (None, None) => None,
            _ => {
                return Err(Error::config(format!(
                    "backends.{name}: `project_id` and `environment` go together (they name what `list` lists)"
                )));
            }
        };
        let timeout = rest::timeout(name, settings, 30)?;
        Ok(Self {
            name: name.to_owned(),
            api,
            client_id,
            secret_source,
            auth: tokio::sync::Mutex::new(AuthState::default()),
            own: Mutex::new(Vec::new()),
            v3_only: AtomicBool::new(false),
            list_scope,
            http: rest::client(timeout)?,
        })
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.api.clone();
        if let Ok(mut p) = url.path_segments_mut() {
            p.pop_if_empty().extend(segments);
        }
        url
    }

    fn remember(&self, v: &SecretValue) {
        self.own
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(v.clone());
    }

    /// A usable access token: the cached one, or a fresh login when there is none, it is
    /// stale, or `force` (the server rejected it).
    async fn access_token(&self, force: bool) -> Result<SecretValue> {
        let mut st = self.auth.lock().await;
        if !force
            && let Some(t) = &st.token
            && t.stale_at.is_none_or(|at| Instant::now() < at)
        {
            return Ok(t.value.clone());
        }
        st.token = None;
        if let Some(at) = st.refused_at {
            let waited = at.elapsed();
            if waited < LOGIN_BACKOFF {
                return Err(Error::new(
                    ErrorKind::Unauthenticated,
                    format!(
                        "backend `{}`: Infisical refused the last login {} s ago; not logging in again for {} s so the identity is not locked out (check client_id and client_secret)",
                        self.name,
                        waited.as_secs(),
                        (LOGIN_BACKOFF - waited).as_secs()
                    ),
                ));
            }
        }
        if st.client_secret.is_none() {
            let s = self.secret_source.fetch().await?;
            self.remember(&s);
            st.client_secret = Some(s);
        }
        let secret = st
            .client_secret
            .as_ref()
            .ok_or_else(|| Error::internal("client secret set just above"))?;
        let secret = std::str::from_utf8(secret.expose_secret()).map_err(|_| {
            Error::new(
                ErrorKind::Unauthenticated,
                format!(
                    "backend `{}`: the client secret at `{}` is not text",
                    self.name,
                    self.secret_source.reference()
                ),
            )
        })?;
        let body = zeroize::Zeroizing::new(
            serde_json::to_vec(&LoginRequest {
                client_id: &self.client_id,
                client_secret: secret,
            })
            .map_err(|_| Error::internal("a struct of two strings serializes"))?,
        );
        let req = self
            .http
            .post(self.url(&["api", "v1", "auth", "universal-auth", "login"]))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec());
        let what = "logging in with Universal Auth";
        let resp = rest::send(&self.name, what, req).await?;
        if resp.status != 200 {
            let kind = rest::status_kind(resp.status, resp.retry_after);
            if matches!(resp.status, 400 | 401 | 403 | 404) {
                st.refused_at = Some(Instant::now());
            }
            let kind = match kind {
                ErrorKind::PermissionDenied | ErrorKind::NotFound => ErrorKind::Unauthenticated,
                k => k,
            };
            return Err(Error::new(
                kind,
                format!(
                    "backend `{}`: {what}: Infisical refused it (HTTP {}){}",
                    self.name,
                    resp.status,
                    retry_hint(&resp)
                ),
            ));
        }
        let answer: LoginAnswer =
            serde_json::from_slice(&resp.body).map_err(|_| bad_answer(&self.name, what))?;
        let value = answer
            .access_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| bad_answer(&self.name, what))?;
        self.remember(&value);
        let stale_at = (answer.expires_in > 0).then(|| {
            Instant::now() + Duration::from_secs(answer.expires_in).saturating_sub(EXPIRY_MARGIN)
        });
        st.refused_at = None;
        st.token = Some(Token {
            value: value.clone(),
            stale_at,
        });
        Ok(value)
    }

    async fn request(&self, url: Url, token: &SecretValue, what: &str) -> Outcome {
        let Ok(t) = std::str::from_utf8(token.expose_secret()) else {
            return Outcome::Err(bad_answer(&self.name, "logging in"));
        };
        let bearer = zeroize::Zeroizing::new(format!("Bearer {t}"));
        let Ok(mut auth) = reqwest::header::HeaderValue::from_str(&bearer) else {
            return Outcome::Err(bad_answer(&self.name, "logging in"));
        };
        auth.set_sensitive(true);
        let req = self
            .http
            .get(url)
            .header(reqwest::header::AUTHORIZATION, auth)
            .header(reqwest::header::ACCEPT, "application/json");
        let resp = match rest::send(&self.name, what, req).await {
            Ok(r) => r,
            Err(e) => return Outcome::Err(e),
        };
        if resp.status == 200 {
            return Outcome::Ok(resp);
        }
        let body: Option<ErrorBody> = serde_json::from_slice(&resp.body).ok();
        let error = body.as_ref().map(|b| b.error.as_str()).unwrap_or("");
        match resp.status {
            401 => return Outcome::Relogin,
            403 if error == "TokenError" => return Outcome::Relogin,
            // Fastify's own 404 (`"error":"Not Found"`, "Route GET:… not found") means the
            // server has no such endpoint; Infisical's is `"error":"NotFound"`.
            404 if error != "NotFound"
                && body
                    .as_ref()
                    .and_then(|b| b.message.as_str())
                    .is_none_or(|m| m.starts_with("Route ")) =>
            {
                return Outcome::NoRoute;
            }
            _ => {}
        }
        let kind = rest::status_kind(resp.status, resp.retry_after);
        let why = match kind {
            ErrorKind::PermissionDenied => "the identity may not read it (403)".to_owned(),
            ErrorKind::NotFound => "Infisical has no such secret, path or environment (404)".into(),
            ErrorKind::RateLimited { .. } => {
                format!("Infisical is rate limiting (429){}", retry_hint(&resp))
            }
            _ => format!("Infisical answered HTTP {}", resp.status),
        };
        // A 429 without `Retry-After`: Infisical's message says "try again in N seconds".
        let kind = match kind {
            ErrorKind::RateLimited { retry_after: None } => ErrorKind::RateLimited {
                retry_after: body
                    .as_ref()
                    .and_then(|b| b.message.as_str())
                    .and_then(seconds_in_message),
            },
            k => k,
        };
        Outcome::Err(Error::new(
            kind,
            format!("backend `{}`: {what}: {why}", self.name),
        ))
    }

    /// Runs an authenticated GET, logging in again and retrying once on 401/403 TokenError.
    async fn authed(&self, url: Url, what: &str) -> Result<Outcome> {
        let token = self.access_token(false).await?;
        match self.request(url.clone(), &token, what).await {
            Outcome::Relogin => {
                let token = self.access_token(true).await?;
                match self.request(url, &token, what).await {
                    Outcome::Relogin => Err(Error::new(
                        ErrorKind::Unauthenticated,
                        format!(
                            "backend `{}`: {what}: Infisical rejected a freshly issued access token",
                            self.name
                        ),
                    )),
                    o => Ok(o),
                }
            }
            o => Ok(o),
        }
    }

    fn scope(reference: &SecretRef) -> (&str, &str, String, &str) {
        let s = reference.segments();
        let n = s.len();
        let path = format!("/{}", s[2..n - 1].join("/"));
        (&s[0], &s[1], path, &s[n - 1])
    }

    fn secret_url(&self, v3: bool, project: &str, env: &str, path: &str, name: &str) -> Url {
        let mut url = if v3 {
            self.url(&["api", "v3", "secrets", "raw", name])
        } else {
            self.url(&["api", "v4", "secrets", name])
        };
        url.query_pairs_mut()
            .append_pair(if v3 { "workspaceId" } else { "projectId" }, project)
            .append_pair("environment", env)
            .append_pair("secretPath", path)
            .append_pair("type", "shared")
            .append_pair("viewSecretValue", "true");
        url
    }
}

fn retry_hint(resp: &rest::Response) -> String {
    resp.retry_after
        .map(|d| format!("; retry after {} s", d.as_secs()))
        .unwrap_or_default()
}

/// The `N` of Infisical's "Rate limit exceeded. Please try again in N seconds".
fn seconds_in_message(m: &str) -> Option<Duration> {
    let rest = m.split("try again in ").nth(1)?;
    let n: String = rest.chars().take_while(char::is_ascii_digit).collect();
    n.parse().ok().map(Duration::from_secs)
}

fn bad_answer(backend: &str, what: &str) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!("backend `{backend}`: {what}: Infisical's answer is not the documented JSON"),
    )
}

#[async_trait]
impl SecretBackend for InfisicalBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Infisical
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            read: true,
            list: self.list_scope.is_some(),
            ..Capabilities::default()
        }
    }

    /// Reads `infisical://<project-id>/<environment>/<path…>/<NAME>` (v4, falling back to v3
    /// on servers without v4).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`] (404); [`ErrorKind::Unauthenticated`] (login refused, or a
    /// fresh token rejected); [`ErrorKind::PermissionDenied`] (403, or a hidden value);
    /// [`ErrorKind::RateLimited`] (429, with `Retry-After` or the seconds in Infisical's
    /// message); [`ErrorKind::Timeout`]; [`ErrorKind::Unavailable`] (unreachable, 5xx,
    /// undocumented answer); [`ErrorKind::InvalidReference`] for another kind.
    async fn get(&self, reference: &SecretRef) -> Result<SecretValue> {
        expect_kind(&self.name, BackendKind::Infisical, reference)?;
        let (project, env, path, name) = Self::scope(reference);
        let what = format!("reading `{reference}`");
        let mut v3 = self.v3_only.load(Ordering::Relaxed);
        let resp = loop {
            let url = self.secret_url(v3, project, env, &path, name);
            match self.authed(url, &what).await? {
                Outcome::Ok(r) => break r,
                Outcome::NoRoute if !v3 => {
                    self.v3_only.store(true, Ordering::Relaxed);
                    v3 = true;
                }
                Outcome::NoRoute => {
                    return Err(Error::new(
                        ErrorKind::NotFound,
                        format!(
                            "backend `{}`: {what}: Infisical has no such secret (404)",
                            self.name
                        ),
                    ));
                }
                Outcome::Relogin => return Err(Error::internal("relogin handled in authed")),
                Outcome::Err(e) => return Err(e),
            }
        };
        let answer: SecretAnswer =
            serde_json::from_slice(&resp.body).map_err(|_| bad_answer(&self.name, &what))?;
        let value = answer.secret.secret_value;
        if answer.secret.secret_value_hidden
            || value.as_ref().is_some_and(|v| v.expose_secret() == HIDDEN)
        {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "backend `{}`: {what}: Infisical hides this value from the identity (secretValueHidden)",
                    self.name
                ),
            ));
        }
        value.ok_or_else(|| bad_answer(&self.name, &what))
    }

    /// Lists the secret names at the configured `project_id`/`environment`/`secret_path`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Unavailable`] when no list scope is configured; otherwise as for `get`.
    async fn list(&self) -> Result<Vec<SecretRef>> {
        let Some((project, env, path)) = &self.list_scope else {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "backend `{}` cannot list: set `project_id` and `environment` in [backends.{}]",
                    self.name, self.name
                ),
            ));
        };
        let what = format!("listing {project}/{env}{path}");
        let v3 = self.v3_only.load(Ordering::Relaxed);
        let mut url = if v3 {
            self.url(&["api", "v3", "secrets", "raw"])
        } else {
            self.url(&["api", "v4", "secrets"])
        };
        url.query_pairs_mut()
            .append_pair(if v3 { "workspaceId" } else { "projectId" }, project)
            .append_pair("environment", env)
            .append_pair("secretPath", path)
            .append_pair("viewSecretValue", "false");
        let resp = match self.authed(url, &what).await? {
            Outcome::Ok(r) => r,
            Outcome::Err(e) => return Err(e),
            _ => {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!("backend `{}`: {what}: this server cannot list", self.name),
                ));
            }
        };
        let answer: ListAnswer =
            serde_json::from_slice(&resp.body).map_err(|_| bad_answer(&self.name, &what))?;
        let mut segs: Vec<&str> = vec![project, env];
        segs.extend(path.split('/').filter(|s| !s.is_empty()));
        let mut out = answer
            .secrets
            .iter()
            .map(|s| {
                let mut all = segs.clone();
                all.push(&s.secret_key);
                SecretRef::from_parts(BackendKind::Infisical, &all)
            })
            .collect::<Result<Vec<_>>>()?;
        out.sort();
        Ok(out)
    }

    fn own_secrets(&self) -> Vec<SecretValue> {
        self.own.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Checks the server and the machine identity without reading any secret value:
    ///
    /// - installed: built in (HTTP, no CLI);
    /// - reachable: a `GET` of the login route (`/api/v1/auth/universal-auth/login`) gets an
    ///   HTTP answer, whatever its status (the route takes `POST`; no credential is sent);
    /// - authenticated: a usable access token, as reads get it: the cached one while valid,
    ///   else a Universal Auth login with the client secret read from its reference. The
    ///   lockout guard applies: within [`LOGIN_BACKOFF`] of a refused login no login is
    ///   sent and this fails at once.
    async fn health(&self) -> Health {
        let installed = Probe::ok("built in (HTTP)");
        let what = "checking that Infisical answers";
        let req = self
            .http
            .get(self.url(&["api", "v1", "auth", "universal-auth", "login"]));
        let reachable = match rest::send(&self.name, what, req).await {
            Ok(resp) => Probe::ok(format!("{} answered (HTTP {})", self.api, resp.status)),
            Err(e) => return Health::unreachable(installed, &e),
        };
        let authenticated = match self.access_token(false).await {
            Ok(_) => Probe::ok("Universal Auth login accepted (or its token still valid)"),
            Err(e) => Probe::failed(&e),
        };
        Health {
            installed,
            reachable,
            authenticated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_seconds_come_from_infisicals_message() {
        assert_eq!(
            seconds_in_message("Rate limit exceeded. Please try again in 42 seconds"),
            Some(Duration::from_secs(42))
        );
        assert_eq!(seconds_in_message("Something went wrong"), None);
    }
}
